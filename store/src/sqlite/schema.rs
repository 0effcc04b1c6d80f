//! The SQLite schema as append-only migrations: migration N brings `PRAGMA user_version` from
//! N to N+1. Never edit a released migration; add a new one.

use crate::migration::Migration;

pub const MIGRATIONS: &[Migration] = &[
    // 1: the run record, content-addressed artifacts, lineage in W3C PROV terms.
    Migration {
        version: 1,
        additive: false,
        sql: r#"
    CREATE TABLE experiments (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        created_at TEXT NOT NULL
    );
    CREATE TABLE runs (
        run_id TEXT PRIMARY KEY,
        experiment_id INTEGER NOT NULL REFERENCES experiments(id),
        status TEXT NOT NULL CHECK (status IN ('running', 'completed', 'failed', 'cancelled', 'interrupted')),
        config_file TEXT NOT NULL,
        config_json TEXT NOT NULL,
        config_sha256 TEXT NOT NULL,
        seed INTEGER NOT NULL,
        threads INTEGER NOT NULL,
        host_version TEXT NOT NULL,
        git_commit TEXT,
        git_dirty INTEGER,
        output_dir TEXT NOT NULL,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        heartbeat_at TEXT NOT NULL,
        pid INTEGER NOT NULL,
        hostname TEXT NOT NULL,
        error TEXT,
        failed_stage TEXT,
        summary_json TEXT
    );
    CREATE INDEX runs_by_experiment ON runs (experiment_id, started_at);
    CREATE INDEX runs_by_status ON runs (status);
    CREATE TABLE environments (
        run_id TEXT PRIMARY KEY REFERENCES runs(run_id) ON DELETE CASCADE,
        os TEXT NOT NULL,
        arch TEXT NOT NULL,
        cpu TEXT NOT NULL,
        cores INTEGER NOT NULL,
        threads INTEGER NOT NULL,
        rustc TEXT NOT NULL,
        libtorch TEXT,
        device TEXT
    );
    CREATE TABLE plugin_libraries (
        sha256 TEXT PRIMARY KEY,
        path TEXT NOT NULL,
        plugin_name TEXT NOT NULL,
        plugin_version TEXT NOT NULL,
        sdk_version TEXT NOT NULL,
        size INTEGER NOT NULL
    );
    CREATE TABLE run_plugins (
        run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
        kind TEXT NOT NULL,
        class TEXT NOT NULL,
        library_sha256 TEXT NOT NULL REFERENCES plugin_libraries(sha256),
        PRIMARY KEY (run_id, kind)
    );
    CREATE INDEX run_plugins_by_library ON run_plugins (library_sha256);
    CREATE TABLE artifacts (
        sha256 TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        size INTEGER
    );
    CREATE TABLE run_artifacts (
        run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
        sha256 TEXT NOT NULL REFERENCES artifacts(sha256),
        role TEXT NOT NULL,
        path TEXT NOT NULL DEFAULT '',
        UNIQUE (run_id, role, path, sha256)
    );
    CREATE INDEX run_artifacts_by_sha256 ON run_artifacts (sha256);
    CREATE TABLE stages (
        run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        status TEXT NOT NULL,
        seconds REAL NOT NULL,
        parameters_json TEXT,
        cache_hit INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (run_id, name)
    );
    CREATE TABLE lineage_edges (
        id INTEGER PRIMARY KEY,
        run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
        relation TEXT NOT NULL CHECK (relation IN ('used', 'wasGeneratedBy', 'wasDerivedFrom', 'wasAssociatedWith')),
        subject TEXT NOT NULL,
        object TEXT NOT NULL,
        activity TEXT,
        parameters_json TEXT
    );
    CREATE INDEX lineage_by_subject ON lineage_edges (subject);
    CREATE INDEX lineage_by_object ON lineage_edges (object);
    CREATE INDEX lineage_by_run ON lineage_edges (run_id);
    CREATE TABLE parameters (
        run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        type TEXT NOT NULL,
        value_json TEXT NOT NULL,
        PRIMARY KEY (run_id, name)
    );
    CREATE TABLE metrics (
        run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        step INTEGER,
        value REAL,
        value_json TEXT
    );
    CREATE INDEX metrics_by_run ON metrics (run_id, name, step);
    "#,
    },
    // 2: the stage cache (which key each stage had, which run's outputs it reused), replays,
    // and newest-first listing without sorting every run.
    Migration {
        version: 2,
        additive: false,
        sql: r#"
    ALTER TABLE stages ADD COLUMN cache_key TEXT;
    ALTER TABLE stages ADD COLUMN reused_from TEXT REFERENCES runs(run_id) ON DELETE SET NULL;
    CREATE INDEX stages_by_cache_key ON stages (cache_key) WHERE cache_key IS NOT NULL;
    ALTER TABLE runs ADD COLUMN replay_of TEXT REFERENCES runs(run_id) ON DELETE SET NULL;
    CREATE INDEX runs_by_start ON runs (started_at, run_id);
    "#,
    },
    // 3: hyperparameter sweeps and their trials, each trial a run.
    Migration {
        version: 3,
        additive: false,
        sql: r#"
    CREATE TABLE sweeps (
        sweep_id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        config_json TEXT NOT NULL,
        metric TEXT NOT NULL,
        maximize INTEGER NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE TABLE sweep_trials (
        sweep_id TEXT NOT NULL REFERENCES sweeps(sweep_id) ON DELETE CASCADE,
        trial INTEGER NOT NULL,
        parameters_json TEXT NOT NULL,
        run_id TEXT REFERENCES runs(run_id) ON DELETE SET NULL,
        status TEXT NOT NULL,
        metric REAL,
        PRIMARY KEY (sweep_id, trial)
    );
    CREATE INDEX runs_by_config_file ON runs (config_file, started_at);
    "#,
    },
    // 4: the schema's compatibility (the oldest schema a host must know), and where a run's
    // process id means something: the machine's boot and the PID namespace.
    Migration {
        version: 4,
        additive: true,
        sql: r#"
    CREATE TABLE schema_info (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
    ALTER TABLE runs ADD COLUMN boot_id TEXT;
    ALTER TABLE runs ADD COLUMN pid_namespace TEXT;
    "#,
    },
    // 5: runs by the sweep trial they are (a trial's attempts), and the scheduler jobs a sweep
    // submitted for its trials.
    Migration {
        version: 5,
        additive: true,
        sql: r#"
    ALTER TABLE runs ADD COLUMN sweep_id TEXT;
    ALTER TABLE runs ADD COLUMN trial INTEGER;
    CREATE INDEX runs_by_trial ON runs (sweep_id, trial, started_at);
    CREATE TABLE sweep_jobs (
        sweep_id TEXT NOT NULL REFERENCES sweeps(sweep_id) ON DELETE CASCADE,
        trial INTEGER NOT NULL,
        scheduler TEXT NOT NULL,
        job_id TEXT NOT NULL,
        submitted_at TEXT NOT NULL,
        state TEXT NOT NULL,
        reason TEXT,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (sweep_id, trial, job_id)
    );
    "#,
    },
    // 6: the lease of the process driving a sweep (its owner as JSON, its latest renewal).
    Migration {
        version: 6,
        additive: true,
        sql: r#"
    ALTER TABLE sweeps ADD COLUMN driver_json TEXT;
    ALTER TABLE sweeps ADD COLUMN driver_heartbeat TEXT;
    "#,
    },
    // 7: annotations (tags and notes) and verifications, outside the hashed record: appended,
    // never rewritten; a tag's value is its newest row's (NULL: removed).
    Migration {
        version: 7,
        additive: true,
        sql: r#"
    CREATE TABLE annotations (
        id INTEGER PRIMARY KEY,
        run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
        kind TEXT NOT NULL CHECK (kind IN ('tag', 'note')),
        name TEXT,
        value TEXT,
        author TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE INDEX annotations_by_run ON annotations (run_id, kind, name, id);
    CREATE TABLE verifications (
        id INTEGER PRIMARY KEY,
        run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
        ok INTEGER NOT NULL,
        problems INTEGER NOT NULL,
        checked_at TEXT NOT NULL,
        hostname TEXT NOT NULL
    );
    CREATE INDEX verifications_by_run ON verifications (run_id, id);
    "#,
    },
    // 8: what the run query language's implied conditions read: metric rows by name and value,
    // tags by key and value.
    Migration {
        version: 8,
        additive: true,
        sql: r#"
    CREATE INDEX metrics_by_name_value ON metrics (name, value);
    CREATE INDEX annotations_by_value ON annotations (kind, name, value);
    "#,
    },
    // 9: the read views (`crate::READ_VIEWS`): a stable interface for readers outside the host.
    Migration { version: 9, additive: true, sql: crate::READ_VIEWS_SQL },
    // 10: non-finite metric values as NULL on both backends; `annotations_v1.seq`.
    Migration { version: 10, additive: true, sql: crate::MIGRATION_10_SQLITE },
];
