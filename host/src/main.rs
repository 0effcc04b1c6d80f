//! `host`: runs ML experiments from YAML with plugins loaded at runtime, recording provenance.
//! This file only parses arguments, sets up logging and prints errors; the commands live in
//! the library's `commands/`. The host never links libtorch: model plugins bring their own.

use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};
use host::commands;
use host::registry::RegistryOptions;
use host::storage::StoreOptions;
use tracing_subscriber::EnvFilter;

/// Run ML experiments from YAML with runtime-loaded plugins, and record their provenance.
#[derive(Parser)]
#[command(name = "host", version, about, long_about = None)]
struct Cli {
    /// More log output (-v info, -vv debug); HOST_LOG=<filter> overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Only errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate an experiment config and its plugins, then run the experiment.
    Run {
        /// The experiment config, e.g. config/mnist_config.yaml.
        config: PathBuf,
        #[command(flatten)]
        plugins: PluginArgs,
        /// Print the run summary as JSON (run id, status, metrics, output paths).
        #[arg(long)]
        json: bool,
        /// Write the run folder under DIR instead of the config's output_dir.
        #[arg(long, value_name = "DIR")]
        output_dir: Option<PathBuf>,
        /// Evaluate the model saved by an earlier run (its folder, or its model/ folder)
        /// instead of training.
        #[arg(long, value_name = "RUN_DIR")]
        model_from: Option<PathBuf>,
        /// Recompute every stage: never reuse the outputs of an earlier run's stage with the
        /// same inputs, config, plugin build and seed (the stage cache).
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        store: StoreArgs,
        /// The sweep trial this run is, as SWEEP_ID/TRIAL (given to a sweep's workers).
        #[arg(long, value_name = "SWEEP/TRIAL", hide = true, value_parser = parse_trial)]
        trial: Option<record::TrialRef>,
        /// Where the run runs: here, or as a Slurm batch job [default: the config's
        /// executor.kind, else local].
        #[arg(long, value_enum)]
        executor: Option<host::config::executor::ExecutorKind>,
        /// With --executor slurm: follow the job to its end and print the run's results.
        #[arg(long)]
        wait: bool,
        /// The run id to record under (given to a submitted run's job).
        #[arg(long, value_name = "ID", hide = true)]
        run_id: Option<String>,
    },
    /// Rehash every file a run recorded (data, weights, outputs, plugin libraries); exit 1 when
    /// any changed or is missing.
    Verify {
        /// The run id.
        run: String,
        /// Print the checks as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Re-execute a recorded run with its recorded config and plugin library files,
    /// recomputing every stage, and report stage by stage whether the outputs are
    /// bit-identical (exit 1 when any differs).
    Replay {
        /// The run id.
        run: String,
        /// Replay even when a recorded plugin library's SHA-256 no longer matches.
        #[arg(long)]
        force: bool,
        /// Use recorded plugin libraries that another user owns or anyone may write.
        #[arg(long, env = "HOST_ALLOW_UNTRUSTED", value_parser = clap::builder::BoolishValueParser::new())]
        allow_untrusted: bool,
        /// Print the comparison as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Regenerate a completed run's reports from the store, with the report generator it used
    /// or another one, into <run folder>/regenerated/<generator>/ (or -o DIR).
    Report {
        /// The run id.
        run: String,
        /// Another report generator class (e.g. MarkdownReport).
        #[arg(long, value_name = "CLASS")]
        generator: Option<String>,
        /// Write the reports into DIR.
        #[arg(short, long, value_name = "DIR")]
        output: Option<PathBuf>,
        /// Print the files as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        plugins: PluginArgs,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Run a hyperparameter sweep: the config's `sweep` section varies keys by grid or seeded
    /// random search; each trial is a run, in parallel workers. Running the same config again
    /// resumes it. `host sweep show [SWEEP]` lists trials.
    #[command(args_conflicts_with_subcommands = true)]
    Sweep {
        #[command(subcommand)]
        command: Option<SweepCommand>,
        /// The sweep config, e.g. config/mnist_hyperparam.yaml.
        config: Option<PathBuf>,
        /// Trials at once [default: 1 locally, each with cores / jobs threads unless the config
        /// sets threads; with Slurm, the array throttle unless executor.array_throttle is set].
        #[arg(long, short)]
        jobs: Option<usize>,
        /// Where trials run: child processes here, or Slurm job arrays [default: the config's
        /// executor.kind, else local].
        #[arg(long, value_enum)]
        executor: Option<host::config::executor::ExecutorKind>,
        /// Submit the trials and exit (Slurm): `host sweep watch` or `show` follows them.
        #[arg(long)]
        detach: bool,
        /// Write trial run folders under DIR instead of the config's output_dir.
        #[arg(long, value_name = "DIR")]
        output_dir: Option<PathBuf>,
        /// Print the sweep's trials as JSON at the end.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        plugins: PluginArgs,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Browse the store's runs in a browser: search, compare, sweeps, lineage, plugin builds.
    Ui {
        /// The port to listen on (0: any free one).
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// The address to listen on; another than 127.0.0.1 needs --token or --no-auth.
        #[arg(long, default_value = "127.0.0.1")]
        bind: std::net::IpAddr,
        /// A secret that adding tags and notes needs (at least 16 characters).
        #[arg(long, env = "HOST_UI_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Serve another address than 127.0.0.1 without a token (anyone who reaches it may add
        /// tags and notes).
        #[arg(long)]
        no_auth: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// What the provenance store holds: runs by status, experiments with their best test
    /// accuracy, plugin builds, artifacts, lineage edges.
    Summary {
        /// Print as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Export a run: W3C PROV-JSON (entities, activities, agents and their relations), the
    /// whole run record as JSON, or runs into MLflow (`--format mlflow --to URI`: a tracking
    /// server or an MLflow SQLite store; exporting again adds nothing twice).
    Export {
        /// The run id (with mlflow, or --filter instead).
        run: Option<String>,
        /// prov-json, json or mlflow.
        #[arg(long, default_value = "prov-json", value_parser = ["prov-json", "json", "mlflow"])]
        format: String,
        /// Write to FILE instead of standard output (prov-json and json).
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// mlflow: where to, `http://HOST:PORT` (a tracking server) or `sqlite:///PATH` (an MLflow
        /// SQLite store).
        #[arg(long, value_name = "URI", env = "MLFLOW_TRACKING_URI", hide_env_values = true)]
        to: Option<String>,
        /// mlflow: the runs to export, in the query language of `runs list --filter`.
        #[arg(long, value_name = "EXPR")]
        filter: Option<String>,
        /// mlflow: the MLflow experiment (default: each run's experiment_name).
        #[arg(long, value_name = "NAME")]
        experiment: Option<String>,
        /// mlflow: print what was exported as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Lineage across runs: a run's data from raw files to reports, or for one SHA-256 its
    /// ancestors, descendants and every run that used it (a data file or a plugin build).
    Lineage {
        /// A run id, or a SHA-256 (8 or more leading hex digits) of data, an artifact or a plugin.
        target: String,
        /// At most this many entities per list (ancestors, descendants, runs); 0 for all.
        #[arg(long, default_value_t = 500)]
        limit: usize,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Query the runs recorded in the provenance store.
    Runs {
        #[command(subcommand)]
        command: RunsCommand,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// The provenance store itself: what it holds, and copying runs between stores.
    Store {
        #[command(subcommand)]
        command: StoreCommand,
    },
    /// List and inspect plugins.
    Plugins {
        #[command(subcommand)]
        command: PluginsCommand,
    },
}

#[derive(Subcommand)]
enum SweepCommand {
    /// One sweep's trials (parameters, status, run, metric; the best marked), or every sweep.
    Show {
        /// The sweep id (printed when the sweep starts).
        sweep: Option<String>,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
        /// Also write the sweep's HTML report (sortable trials, metric against each key).
        #[arg(long, value_name = "FILE", requires = "sweep")]
        html: Option<PathBuf>,
    },
    /// Follow a sweep's queued and running Slurm jobs to their end (from any machine with the
    /// store), pruning as the sweep says, then print it and write its report.
    Watch {
        /// The sweep id.
        sweep: String,
        /// Write the report under DIR/sweeps/ [default: the sweep config's output_dir].
        #[arg(long, value_name = "DIR")]
        output_dir: Option<PathBuf>,
        /// Print as JSON at the end.
        #[arg(long)]
        json: bool,
    },
    /// Cancel a sweep's queued and running trials: Slurm jobs from any machine with the store,
    /// local trial processes on this machine. Runs stop after their batch and record
    /// `cancelled`.
    Cancel {
        /// The sweep id.
        sweep: String,
        /// Kill at once instead of after the current batch.
        #[arg(long)]
        hard: bool,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum StoreCommand {
    /// The store's backend, schema version, and how many runs, sweeps, files and edges it holds.
    Info {
        /// Print as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Copy every run (stages, lineage, parameters, metrics, files) and sweep of one store into
    /// another: a SQLite file into PostgreSQL, or back. Copying twice adds nothing.
    Copy {
        /// The store to copy from (a SQLite file or postgres://user@host:port/database).
        #[arg(long, value_name = "LOCATOR")]
        from: String,
        /// The store to copy into (created and migrated if new).
        #[arg(long, value_name = "LOCATOR")]
        to: String,
        /// Print the counts as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum PluginsCommand {
    /// Every class the host can use: from the class mapping and from libraries in plugins/.
    List {
        #[command(flatten)]
        plugins: PluginArgs,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Load one plugin library and show its manifest, classes and config keys.
    Inspect {
        /// The library file (.so, .dylib or .dll).
        path: PathBuf,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Create a plugin crate that builds and loads as it is: one class of the given kind, its
    /// config keys, tests and a README (docs/writing-a-plugin.md explains the rules).
    New {
        /// The crate's name (my-loader): the library is libmy_loader.so.
        name: String,
        /// The kind of class.
        #[arg(long, value_enum)]
        kind: commands::scaffold::ScaffoldKind,
        /// The class's name, as configs name it (default: the crate's name in CamelCase, MyLoader).
        #[arg(long, value_name = "NAME")]
        class: Option<String>,
        /// The folder the crate's own folder (DIR/NAME) is created in.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// The plugin SDK's folder (default: the one this host was built from).
        #[arg(long, value_name = "PATH", conflicts_with = "sdk_version")]
        sdk: Option<PathBuf>,
        /// Depend on this version of plugin-sdk from the package registry instead of a folder.
        #[arg(long, value_name = "VERSION")]
        sdk_version: Option<String>,
    },
}

#[derive(Subcommand)]
enum RunsCommand {
    /// Runs, newest first, or those a query selects, in its order, with its columns.
    #[command(
        after_help = "Examples:\n  host runs list --filter \"metrics.test.accuracy > 0.9 and params.training.learning_rate = 0.001\"\n  host runs list --filter \"(tags.owner = 'ana' or tags.owner = 'ben') and not status in ('failed')\"\n  host runs list --filter \"metrics.loss.min < 0.3 and plugin.model = 'MNISTMLP'\" --order-by \"metrics.test.accuracy desc\"\n  host runs list --columns run_id,metrics.test.accuracy,params.training.learning_rate --format csv\n\nKeys: metrics.NAME (.min .max .first .last .mean, @epoch=N), params.KEY, tags.KEY, attributes or bare:\nrun_id experiment status started_at finished_at duration seed threads config_file config_sha256 hostname\nhost_version git_commit error failed_stage sweep trial replay_of; data.sha256, plugin.sha256, sha256 (by\nprefix), plugin.model/loader/report, verified. Operators: = != < <= > >= in, not in, like, is [not] null,\nand, or, not, parentheses."
    )]
    List {
        /// Only runs of this experiment.
        #[arg(long)]
        experiment: Option<String>,
        /// Only runs with this status (running, completed, failed, cancelled, interrupted).
        #[arg(long)]
        status: Option<String>,
        /// Only runs matching this query expression (see below).
        #[arg(long, value_name = "EXPR")]
        filter: Option<String>,
        /// Sort keys, each with asc or desc, by commas [default: newest first].
        #[arg(long, value_name = "KEY [asc|desc],...")]
        order_by: Option<String>,
        /// The keys to show, by commas.
        #[arg(long, value_name = "KEY,...")]
        columns: Option<String>,
        /// At most this many runs; 0 for all.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Skip this many matching runs first (paging).
        #[arg(long, default_value_t = 0)]
        offset: usize,
        /// How to print.
        #[arg(long, value_enum, default_value = "table")]
        format: commands::runs::Format,
        /// Print as JSON (as --format json).
        #[arg(long)]
        json: bool,
    },
    /// Set tags on a run (key=value; key= removes the tag). Kept beside the run's record, so
    /// verify and replay are unaffected.
    Tag {
        /// The run id.
        run: String,
        /// key=value pairs.
        #[arg(required = true, value_name = "KEY=VALUE")]
        tags: Vec<String>,
    },
    /// Add a note to a run (kept beside its record, as tags are).
    Note {
        /// The run id.
        run: String,
        /// The note's text.
        text: String,
    },
    /// Parameters and final metrics of runs side by side, differences marked.
    Compare {
        /// Two or more run ids.
        #[arg(required = true, num_args = 2..)]
        runs: Vec<String>,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
        /// Also write a self-contained HTML page with the runs' per-epoch curves overlaid.
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
    },
    /// Follow a run's epochs from another terminal until it ends.
    Watch {
        /// The run id.
        run: String,
    },
    /// Delete a run: its rows and its output folder (files other runs still record are kept).
    Delete {
        /// The run id.
        run: String,
    },
    /// One run's record: config, plugins with hashes, stages, metrics.
    Show {
        /// The run id.
        run: String,
        /// Print the whole record as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// The database config every command reads (relative to the folder it runs in).
const DATABASE_CONFIG: &str = "config/database_config.yaml";

#[derive(Args)]
struct StoreArgs {
    /// The provenance store: a SQLite file or postgres://user@host:port/database [default: url
    /// or path in config/database_config.yaml, else provenance.db].
    #[arg(long, env = "HOST_DB", value_name = "LOCATOR", global = true)]
    db: Option<String>,
}

impl StoreArgs {
    fn into_options(self) -> StoreOptions {
        StoreOptions { db: self.db, database_config: PathBuf::from(DATABASE_CONFIG) }
    }
}

/// `SWEEP_ID/TRIAL` -> the trial.
fn parse_trial(text: &str) -> Result<record::TrialRef, String> {
    let (sweep_id, trial) = text.rsplit_once('/').ok_or("expected SWEEP_ID/TRIAL")?;
    let trial = trial.parse().map_err(|_| format!("trial `{trial}` is not a number"))?;
    Ok(record::TrialRef { sweep_id: sweep_id.to_owned(), trial })
}

#[derive(Args)]
struct PluginArgs {
    /// A class mapping file; repeat it (or separate files with `:`, so a path holding `:`
    /// cannot be given) to layer several, the first winning. They add to the project's
    /// config/class_mapping_config.yaml and to the libraries in plugins/ [default:
    /// class_mapping_config.yaml beside the experiment config].
    #[arg(long, env = "HOST_CLASS_MAPPING", value_name = "FILE", value_delimiter = ':')]
    class_mapping: Vec<PathBuf>,
    /// Where plugin libraries are discovered [default: plugins/ in the project root, the
    /// parent of the class mapping's folder].
    #[arg(long, env = "HOST_PLUGINS_DIR", value_name = "DIR")]
    plugins_dir: Option<PathBuf>,
    /// Use plugin libraries and class mappings that another user owns or anyone may write
    /// (refused by default: loading a library runs its code).
    #[arg(long, env = "HOST_ALLOW_UNTRUSTED", value_parser = clap::builder::BoolishValueParser::new())]
    allow_untrusted: bool,
}

impl PluginArgs {
    /// The class mappings, first winning: those given (else the one beside `config`), then the
    /// project's `config/class_mapping_config.yaml`.
    fn into_options(self, config: Option<&Path>) -> RegistryOptions {
        let mut class_mappings = self.class_mapping;
        if class_mappings.is_empty() {
            let beside = config.and_then(Path::parent).map(|dir| dir.join("class_mapping_config.yaml"));
            class_mappings.extend(beside.filter(|p| p.is_file()));
        }
        let project = PathBuf::from("config/class_mapping_config.yaml");
        // The folder the host runs in is the project when it has the project's layout: a user's
        // mapping elsewhere adds classes, it does not move plugins/ or target/.
        let is_project = ["config", "plugins"].iter().any(|folder| Path::new(folder).is_dir());
        if project.is_file() {
            class_mappings.push(project);
        }
        RegistryOptions {
            class_mappings,
            plugins_dir: self.plugins_dir,
            project_root: is_project.then(|| PathBuf::from(".")),
            manifest_cache: None,
            allow_untrusted: self.allow_untrusted,
        }
    }
}

fn init_logging(verbose: u8, quiet: bool) {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, _) => "debug",
    };
    let filter = EnvFilter::try_from_env("HOST_LOG").unwrap_or_else(|_| EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only for a terminal: a sweep trial's log is a file.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .without_time()
        .init();
}

fn main() {
    host::interrupt::catch_early_signals();
    // `host runs show X | head`: a closed pipe ends the host quietly, as it ends other tools.
    // SAFETY: restores the default action of SIGPIPE, before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    init_logging(cli.verbose, cli.quiet);
    let code = match execute(cli.command, !cli.quiet) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            1
        }
    };
    exit_now(code)
}

/// Runs one command; the exit status on success.
fn execute(command: Command, show_progress: bool) -> anyhow::Result<u8> {
    match command {
        Command::Run { config, plugins, json, output_dir, model_from, force, store, trial, executor, wait, run_id } => {
            let registry = plugins.into_options(Some(&config));
            commands::run::run(commands::run::RunOptions {
                config,
                store: store.into_options(),
                registry,
                json,
                output_dir,
                model_from,
                show_progress,
                force,
                trial,
                executor,
                wait,
                run_id,
            })
        }
        Command::Replay { run, force, allow_untrusted, json, store } => {
            commands::replay::replay(commands::replay::ReplayOptions {
                store: store.into_options(),
                run,
                force,
                allow_untrusted,
                json,
                show_progress,
            })
        }
        Command::Report { run, generator, output, json, plugins, store } => {
            commands::report::report(commands::report::ReportOptions {
                store: store.into_options(),
                run,
                generator,
                registry: plugins.into_options(None),
                output,
                json,
            })
        }
        Command::Sweep { command: Some(SweepCommand::Show { sweep, json, html }), store, .. } => {
            commands::sweep::show(&store.into_options(), sweep.as_deref(), json, html.as_deref()).map(|()| 0)
        }
        Command::Sweep { command: None, config: None, .. } => {
            Err(anyhow::anyhow!("give a sweep config (host sweep config/mnist_hyperparam.yaml) or `host sweep show`"))
        }
        Command::Sweep { command: Some(SweepCommand::Watch { sweep, output_dir, json }), store, .. } => {
            commands::sweep::watch(&store.into_options(), &sweep, output_dir.as_deref(), json, show_progress)
        }
        Command::Sweep { command: Some(SweepCommand::Cancel { sweep, hard, json }), store, .. } => {
            commands::sweep::cancel(&store.into_options(), &sweep, hard, json)
        }
        Command::Sweep {
            command: None,
            config: Some(config),
            jobs,
            output_dir,
            json,
            plugins,
            store,
            executor,
            detach,
        } => {
            let registry = plugins.into_options(Some(&config));
            commands::sweep::sweep(commands::sweep::SweepCommand {
                config,
                jobs,
                store: store.into_options(),
                registry,
                output_dir,
                json,
                show_progress,
                executor,
                detach,
            })
        }
        Command::Ui { port, bind, token, no_auth, store } => {
            commands::ui::ui(&store.into_options(), bind, port, token, no_auth).map(|()| 0)
        }
        Command::Summary { json, store } => commands::runs::summary(&store.into_options(), json).map(|()| 0),
        Command::Export { run, format, output, to, filter, experiment, json, store } if format == "mlflow" => {
            if output.is_some() {
                anyhow::bail!("--output is for prov-json and json; an MLflow export goes to --to");
            }
            let to = anyhow::Context::context(
                to,
                "--to is required with --format mlflow: an MLflow tracking server (http://127.0.0.1:5000) or SQLite store (sqlite:///mlflow.db); or set MLFLOW_TRACKING_URI",
            )?;
            let options = host::mlflow::ExportOptions {
                run: run.as_deref(),
                filter: filter.as_deref(),
                to: &to,
                experiment: experiment.as_deref(),
                json,
                show_progress,
            };
            host::mlflow::export(&store.into_options(), &options).map(|()| 0)
        }
        // --to may come from MLFLOW_TRACKING_URI, so only the flags given here are refused.
        Command::Export { run, format, output, filter, experiment, json, store, .. } => {
            if filter.is_some() || experiment.is_some() || json {
                anyhow::bail!("--filter, --experiment and --json are for --format mlflow");
            }
            let run = anyhow::Context::context(run, "name the run to export: host export RUN_ID")?;
            commands::export::export(&store.into_options(), &run, &format, output).map(|()| 0)
        }
        Command::Lineage { target, limit, json, store } => {
            commands::lineage::lineage(&store.into_options(), &target, limit, json).map(|()| 0)
        }
        Command::Verify { run, json, store } => commands::verify::verify(&store.into_options(), &run, json),
        Command::Runs { command, store } => runs(command, &store.into_options()).map(|()| 0),
        Command::Plugins { command } => plugins(command).map(|()| 0),
        Command::Store { command: StoreCommand::Info { json, store } } => {
            commands::store::info(&store.into_options(), json).map(|()| 0)
        }
        Command::Store { command: StoreCommand::Copy { from, to, json } } => {
            commands::store::copy(&from, &to, PathBuf::from(DATABASE_CONFIG), json, show_progress).map(|()| 0)
        }
    }
}

fn runs(command: RunsCommand, store: &StoreOptions) -> anyhow::Result<()> {
    match command {
        RunsCommand::List { experiment, status, filter, order_by, columns, limit, offset, format, json } => {
            let options = commands::runs::ListOptions {
                experiment: experiment.as_deref(),
                status: status.as_deref(),
                filter: filter.as_deref(),
                order_by: order_by.as_deref(),
                columns: columns.as_deref(),
                limit,
                offset,
                format: if json { commands::runs::Format::Json } else { format },
            };
            commands::runs::list(store, &options)
        }
        RunsCommand::Tag { run, tags } => commands::runs::tag(store, &run, &tags),
        RunsCommand::Note { run, text } => commands::runs::note(store, &run, &text),
        RunsCommand::Show { run, json } => commands::runs::show(store, &run, json),
        RunsCommand::Compare { runs, json, html } => commands::runs::compare(store, &runs, json, html.as_deref()),
        RunsCommand::Delete { run } => commands::runs::delete(store, &run),
        RunsCommand::Watch { run } => commands::runs::watch(store, &run),
    }
}

fn plugins(command: PluginsCommand) -> anyhow::Result<()> {
    match command {
        PluginsCommand::List { plugins, json } => commands::plugins::list(plugins.into_options(None), json),
        PluginsCommand::Inspect { path, json } => commands::plugins::inspect(&path, json),
        PluginsCommand::New { name, kind, class, dir, sdk, sdk_version } => {
            use commands::scaffold::{Scaffold, SdkSource};
            let sdk = match (sdk, sdk_version) {
                (Some(path), _) => SdkSource::Path(path),
                (None, Some(version)) => SdkSource::Version(version),
                (None, None) => SdkSource::Built,
            };
            let request = Scaffold { name: &name, kind, class: class.as_deref(), dir: &dir, sdk };
            let (root, class) = commands::scaffold::new_plugin(&request)?;
            let library = commands::scaffold::library_file(&name);
            println!("created {} ({kind:?} plugin, class {class})", root.display());
            println!("next: cd {} && cargo build --release", root.display());
            println!(
                "then: cp target/release/{library} <project>/plugins/.{library}.tmp && \
                 mv <project>/plugins/.{library}.tmp <project>/plugins/{library} && host plugins list"
            );
            Ok(())
        }
    }
}

/// Flushes what the host printed and ends the process without running the exit-time
/// destructors of loaded plugins: libtorch's alone take about 0.3 s and free nothing that
/// outlives the process. Everything the host owns (files, the store) is closed by now.
fn exit_now(status: u8) -> ! {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: `_exit` ends the process immediately; no Rust state is used after it.
    unsafe { libc::_exit(i32::from(status)) }
}
