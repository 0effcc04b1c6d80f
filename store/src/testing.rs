//! A throwaway PostgreSQL cluster for tests and benchmarks (feature `testing`): `initdb` into a
//! temporary folder (as the `postgres` user when this process is root, which PostgreSQL
//! refuses), the server on a free port of 127.0.0.1 as a child that dies with this process
//! (`PR_SET_PDEATHSIG`), stopped and removed when dropped or, for the shared one, at exit. A
//! missing PostgreSQL is an error naming the package to install, never a reason to skip.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// How to set up a cluster.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Require this password (scram-sha-256) for TCP connections; `None`: trust.
    pub password: Option<String>,
    /// Offer TLS with a fresh self-signed certificate and accept only TLS connections.
    pub ssl: bool,
    pub max_connections: u32,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions { password: None, ssl: false, max_connections: 200 }
    }
}

/// A running throwaway cluster whose superuser is `postgres`.
pub struct Cluster {
    dir: PathBuf,
    /// Keep the folder when dropped (a cluster kept between benchmark runs).
    keep: bool,
    port: u16,
    bin: PathBuf,
    owner: Option<(libc::uid_t, libc::gid_t)>,
    options: ClusterOptions,
    server: Option<Child>,
    databases: AtomicUsize,
}

/// PostgreSQL's programs: `HOST_PG_BIN`, else the newest `/usr/lib/postgresql/*/bin`.
fn binaries() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("HOST_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, bin)| bin.join("initdb").is_file())
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).context(
        "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): run scripts/setup.sh, \
         which installs Debian's postgresql package, or set HOST_PG_BIN",
    )
}

/// The `postgres` user's ids when this process is root (PostgreSQL refuses to run as root).
fn postgres_user() -> anyhow::Result<Option<(libc::uid_t, libc::gid_t)>> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let name = std::ffi::CString::new("postgres")?;
    // SAFETY: getpwnam returns a pointer into static storage or null; read at once.
    let entry = unsafe { libc::getpwnam(name.as_ptr()) };
    if entry.is_null() {
        bail!(
            "running as root, and there is no `postgres` user to run PostgreSQL as; install Debian's postgresql package"
        );
    }
    // SAFETY: non-null, as checked.
    Ok(Some(unsafe { ((*entry).pw_uid, (*entry).pw_gid) }))
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A command run as `owner` (when given), dying with this process.
fn command(program: &Path, owner: Option<(libc::uid_t, libc::gid_t)>) -> Command {
    use std::os::unix::process::CommandExt;
    let mut command = Command::new(program);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        command.pre_exec(move || {
            if let Some((uid, gid)) = owner
                && (libc::setgroups(0, std::ptr::null()) != 0 || libc::setgid(gid) != 0 || libc::setuid(uid) != 0)
            {
                return Err(std::io::Error::last_os_error());
            }
            // After the change of user, which clears it.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGINT);
            Ok(())
        });
    }
    command
}

fn chown(path: &Path, owner: Option<(libc::uid_t, libc::gid_t)>) -> anyhow::Result<()> {
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).with_context(|| format!("{}: chown", path.display()))?;
    }
    Ok(())
}

fn run(command: &mut Command, what: &str) -> anyhow::Result<()> {
    let output = command.output().with_context(|| format!("starting {what}"))?;
    if !output.status.success() {
        bail!("{what} failed: {}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    }
    Ok(())
}

impl Cluster {
    /// Creates and starts a cluster in a temporary folder, removed when dropped.
    pub fn start(options: ClusterOptions) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!(
            "host-pg-{}-{}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
        ));
        Self::create(dir, options, false)
    }

    /// Starts the cluster kept in `dir`, creating it there first if it is not: for benchmarks
    /// that reuse a large generated store. The folder stays when the cluster is dropped.
    pub fn kept_in(dir: &Path, options: ClusterOptions) -> anyhow::Result<Self> {
        if dir.join("data/PG_VERSION").is_file() {
            let mut cluster = Cluster {
                dir: dir.to_owned(),
                keep: true,
                port: free_port()?,
                bin: binaries()?,
                owner: postgres_user()?,
                options,
                server: None,
                databases: AtomicUsize::new(0),
            };
            cluster.start_server()?;
            return Ok(cluster);
        }
        Self::create(dir.to_owned(), options, true)
    }

    fn create(dir: PathBuf, options: ClusterOptions, keep: bool) -> anyhow::Result<Self> {
        let bin = binaries()?;
        let owner = postgres_user()?;
        std::fs::create_dir_all(&dir)?;
        chown(&dir, owner)?;
        let data = dir.join("data");
        let mut initdb = command(&bin.join("initdb"), owner);
        initdb.args(["-D"]).arg(&data).args(["-U", "postgres", "--no-sync", "-E", "UTF8", "--locale=C"]);
        match &options.password {
            Some(password) => {
                let file = dir.join("password");
                std::fs::write(&file, password)?;
                chown(&file, owner)?;
                initdb.args(["--auth-local=trust", "--auth-host=scram-sha-256", "--pwfile"]).arg(&file);
            }
            None => {
                initdb.arg("--auth=trust");
            }
        }
        run(&mut initdb, "initdb")?;
        if options.ssl {
            let (key, cert) = (data.join("server.key"), data.join("server.crt"));
            run(
                Command::new("openssl")
                    .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1"])
                    .arg("-keyout")
                    .arg(&key)
                    .arg("-out")
                    .arg(&cert),
                "openssl (making the test cluster's certificate; Debian's openssl package)",
            )?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))?;
            chown(&key, owner)?;
            chown(&cert, owner)?;
            let method = if options.password.is_some() { "scram-sha-256" } else { "trust" };
            std::fs::write(
                data.join("pg_hba.conf"),
                format!("local all all trust\nhostssl all all 127.0.0.1/32 {method}\n"),
            )?;
        }
        let mut cluster = Cluster {
            dir,
            keep,
            port: free_port()?,
            bin,
            owner,
            options,
            server: None,
            databases: AtomicUsize::new(0),
        };
        cluster.start_server()?;
        Ok(cluster)
    }

    /// Starts the server (again) on the cluster's port and waits until it answers.
    pub fn start_server(&mut self) -> anyhow::Result<()> {
        let log = std::fs::File::create(self.dir.join("server.log"))?;
        let mut server = command(&self.bin.join("postgres"), self.owner);
        server
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-p", &self.port.to_string(), "-k"])
            .arg(&self.dir)
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off"])
            .args(["-c", "full_page_writes=off", "-c", &format!("max_connections={}", self.options.max_connections)])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        if self.options.ssl {
            server.args(["-c", "ssl=on"]);
        }
        self.server = Some(server.spawn().context("starting postgres")?);
        let started = Instant::now();
        loop {
            match self.admin() {
                Ok(_) => return Ok(()),
                Err(error) if started.elapsed() > Duration::from_secs(30) => {
                    let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
                    bail!("the test cluster did not answer within 30 s: {error:#}\n{log}");
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// Stops the server (fast shutdown) and waits for it.
    pub fn stop_server(&mut self) {
        if let Some(mut server) = self.server.take() {
            // SAFETY: a signal to our own child.
            unsafe {
                libc::kill(server.id() as libc::pid_t, libc::SIGINT);
            }
            let _ = server.wait();
        }
    }

    /// A connection as the superuser over the socket folder (no TLS, no password).
    fn admin(&self) -> anyhow::Result<postgres::Client> {
        let mut config = postgres::Config::new();
        config.host_path(&self.dir).port(self.port).user("postgres").dbname("postgres");
        config.connect_timeout(Duration::from_secs(2));
        Ok(config.connect(postgres::NoTls)?)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of `database` as the superuser, over TCP (no password in it).
    pub fn url(&self, database: &str) -> String {
        let tls = if self.options.ssl { "?sslmode=require" } else { "" };
        format!("postgres://postgres@127.0.0.1:{}/{database}{tls}", self.port)
    }

    /// The database `name`, created when it is not there yet; returns its URL and whether it
    /// was created now.
    pub fn database(&self, name: &str) -> anyhow::Result<(String, bool)> {
        let mut admin = self.admin()?;
        let exists = admin.query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])?.is_some();
        if !exists {
            admin.batch_execute(&format!("CREATE DATABASE {name}"))?;
        }
        Ok((self.url(name), !exists))
    }

    /// A new, empty database; returns its URL.
    pub fn create_database(&self) -> anyhow::Result<String> {
        let name = format!("test_{}", self.databases.fetch_add(1, Ordering::SeqCst));
        self.admin()?.batch_execute(&format!("CREATE DATABASE {name}"))?;
        Ok(self.url(&name))
    }

    /// Runs SQL as the superuser in `database` (for tests that change the server's state).
    pub fn execute(&self, database: &str, sql: &str) -> anyhow::Result<()> {
        let mut config = postgres::Config::new();
        config.host_path(&self.dir).port(self.port).user("postgres").dbname(database);
        config.connect(postgres::NoTls)?.batch_execute(sql)?;
        Ok(())
    }

    /// The cluster shared by every test of this process, started on first use from a thread
    /// that lives as long as the process (a parent-death signal follows the forking thread),
    /// and stopped and removed at exit.
    pub fn shared() -> &'static Cluster {
        static SHARED: OnceLock<Result<&'static Cluster, String>> = OnceLock::new();
        let result = SHARED.get_or_init(|| {
            let (sender, receiver) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                match Cluster::start(ClusterOptions::default()) {
                    Ok(cluster) => {
                        let cluster: &'static Cluster = Box::leak(Box::new(cluster));
                        SHARED_PID.store(cluster.server.as_ref().map_or(0, |s| s.id() as i32), Ordering::SeqCst);
                        *SHARED_DIR.lock().unwrap_or_else(|e| e.into_inner()) = Some(cluster.dir.clone());
                        // SAFETY: registers a plain function to run at exit.
                        unsafe { libc::atexit(stop_shared) };
                        let _ = sender.send(Ok(cluster));
                    }
                    Err(error) => {
                        let _ = sender.send(Err(format!("{error:#}")));
                    }
                }
                loop {
                    std::thread::park();
                }
            });
            receiver.recv().unwrap_or_else(|_| Err("the cluster's thread ended".into()))
        });
        match result {
            Ok(cluster) => cluster,
            Err(error) => panic!("cannot start the test PostgreSQL cluster: {error}"),
        }
    }
}

static SHARED_PID: AtomicI32 = AtomicI32::new(0);
static SHARED_DIR: Mutex<Option<PathBuf>> = Mutex::new(None);

extern "C" fn stop_shared() {
    let pid = SHARED_PID.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: our child's id; waiting reaps it.
        unsafe {
            libc::kill(pid, libc::SIGINT);
            let mut status = 0;
            libc::waitpid(pid, &mut status, 0);
        }
    }
    if let Some(dir) = SHARED_DIR.lock().ok().and_then(|mut d| d.take()) {
        let _ = std::fs::remove_dir_all(dir);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop_server();
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Rewrites a run's recorded output folder in the store at `locator`, as someone editing the
/// store could (tests of what the host trusts in a row).
pub fn rewrite_output_dir(locator: &str, run_id: &str, output_dir: &str) -> anyhow::Result<()> {
    match crate::Locator::parse(locator)? {
        crate::Locator::Sqlite(path) => {
            rusqlite::Connection::open(path)?
                .execute("UPDATE runs SET output_dir = ?1 WHERE run_id = ?2", [output_dir, run_id])?;
        }
        crate::Locator::Postgres(_) => {
            postgres::Client::connect(locator, postgres::NoTls)?
                .execute("UPDATE runs SET output_dir = $1 WHERE run_id = $2", &[&output_dir, &run_id])?;
        }
    }
    Ok(())
}

/// Gives the lease on driving `sweep_id` to a process on another machine, renewed now, as a
/// second driver that took the sweep over would (tests of a driver losing its lease).
pub fn steal_sweep_lease(locator: &str, sweep_id: &str) -> anyhow::Result<()> {
    let owner = r#"{"hostname":"elsewhere","pid":1,"boot_id":"b","pid_namespace":"pid:[1]"}"#;
    let now = record::now_rfc3339();
    match crate::Locator::parse(locator)? {
        crate::Locator::Sqlite(path) => {
            rusqlite::Connection::open(path)?.execute(
                "UPDATE sweeps SET driver_json = ?2, driver_heartbeat = ?3 WHERE sweep_id = ?1",
                [sweep_id, owner, &now],
            )?;
        }
        crate::Locator::Postgres(_) => {
            postgres::Client::connect(locator, postgres::NoTls)?.execute(
                "UPDATE sweeps SET driver_json = $2, driver_heartbeat = $3 WHERE sweep_id = $1",
                &[&sweep_id, &owner, &now],
            )?;
        }
    }
    Ok(())
}

/// Sets the CPU id (`environment.cpu_id`) a run's stored record names, as a run recorded on
/// another machine would have it (tests of what a replay says about the machine).
pub fn rewrite_recorded_cpu_id(locator: &str, run_id: &str, cpu_id: &str) -> anyhow::Result<()> {
    let rewrite = |summary: String| -> anyhow::Result<String> {
        let mut record: serde_json::Value = serde_json::from_str(&summary)?;
        record["environment"]["cpu_id"] = cpu_id.into();
        Ok(record.to_string())
    };
    match crate::Locator::parse(locator)? {
        crate::Locator::Sqlite(path) => {
            let connection = rusqlite::Connection::open(path)?;
            let summary: String =
                connection.query_row("SELECT summary_json FROM runs WHERE run_id = ?1", [run_id], |r| r.get(0))?;
            connection.execute("UPDATE runs SET summary_json = ?1 WHERE run_id = ?2", [&rewrite(summary)?, run_id])?;
        }
        crate::Locator::Postgres(_) => {
            let mut client = postgres::Client::connect(locator, postgres::NoTls)?;
            let summary: String =
                client.query_one("SELECT summary_json FROM runs WHERE run_id = $1", &[&run_id])?.get(0);
            client.execute("UPDATE runs SET summary_json = $1 WHERE run_id = $2", &[&rewrite(summary)?, &run_id])?;
        }
    }
    Ok(())
}
