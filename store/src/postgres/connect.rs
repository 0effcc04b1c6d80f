//! Connecting to PostgreSQL: the URL's options, the password (from the URL, `PGPASSWORD` or
//! the password file, never stored or shown), TLS through rustls, and errors turned into one
//! line that names the server and the fix.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use postgres::error::SqlState;
use postgres::{Client, Config};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::locator::PostgresUrl;

/// How to reach one database, and how it is named in messages.
pub struct Connector {
    config: Config,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
    /// The server is reached through a Unix socket (a folder as the host): no TLS there.
    unix_socket: bool,
    /// `host:port`, for messages.
    pub address: String,
    pub user: String,
    pub database: String,
    pub connect_timeout: Duration,
}

/// Accepts the server's certificate without checking it, as libpq's `sslmode=require` does:
/// the connection is encrypted, the server not authenticated. `sslrootcert=FILE` in the URL
/// checks it against that CA instead.
#[derive(Debug)]
struct EncryptOnly(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The rustls client configuration: a CA file's certificates, or encryption only.
fn tls_config(root_cert: Option<&str>) -> anyhow::Result<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder =
        rustls::ClientConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions()?;
    Ok(match root_cert {
        Some(file) => {
            let mut roots = rustls::RootCertStore::empty();
            let text = std::fs::read(file).map_err(|e| anyhow::anyhow!("sslrootcert {file}: {e}"))?;
            for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(&text) {
                let cert: CertificateDer<'static> =
                    cert.map_err(|e| anyhow::anyhow!("sslrootcert {file}: not a PEM certificate: {e:?}"))?;
                roots.add(cert).map_err(|e| anyhow::anyhow!("sslrootcert {file}: {e}"))?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        None => {
            builder.dangerous().with_custom_certificate_verifier(Arc::new(EncryptOnly(provider))).with_no_client_auth()
        }
    })
}

/// The password file libpq reads: `PGPASSFILE`, else `~/.pgpass`.
fn password_file() -> Option<PathBuf> {
    std::env::var_os("PGPASSFILE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".pgpass")))
}

/// The password for `host:port/database` and `user` in a password file's text
/// (`host:port:database:user:password` lines, `*` matching anything, `\` escaping `:`).
pub fn password_from_file(text: &str, host: &str, port: u16, database: &str, user: &str) -> Option<String> {
    for line in text.lines().filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty()) {
        let mut fields = Vec::new();
        let mut field = String::new();
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => field.extend(chars.next()),
                ':' if fields.len() < 4 => fields.push(std::mem::take(&mut field)),
                other => field.push(other),
            }
        }
        fields.push(field);
        if fields.len() != 5 {
            continue;
        }
        let port = port.to_string();
        let matches = |pattern: &str, value: &str| pattern == "*" || pattern == value;
        if matches(&fields[0], host)
            && matches(&fields[1], &port)
            && matches(&fields[2], database)
            && matches(&fields[3], user)
        {
            return fields.pop();
        }
    }
    None
}

impl Connector {
    /// Reads the URL (our own `sslrootcert` option taken out), fills in the password and the
    /// timeouts.
    pub fn new(url: &PostgresUrl, connect_timeout: Duration) -> anyhow::Result<Self> {
        let (base, query) = url.url.split_once('?').unwrap_or((&url.url, ""));
        let mut root_cert = None;
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("sslrootcert", file)) => root_cert = Some(file.to_owned()),
                _ => kept.push(pair),
            }
        }
        let text = if kept.is_empty() { base.to_owned() } else { format!("{base}?{}", kept.join("&")) };
        let mut config: Config = text.parse().map_err(|e: postgres::Error| {
            let reason = std::error::Error::source(&e).map(|s| format!(" ({s})")).unwrap_or_default();
            anyhow::anyhow!("{}: not a PostgreSQL URL this host reads: {e}{reason}", url.url)
        })?;
        let unix_socket = matches!(config.get_hosts().first(), Some(postgres::config::Host::Unix(_)));
        let host = match config.get_hosts().first() {
            Some(postgres::config::Host::Tcp(host)) => host.clone(),
            Some(postgres::config::Host::Unix(path)) => path.display().to_string(),
            None => {
                config.host("localhost");
                "localhost".to_owned()
            }
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let user = match config.get_user() {
            Some(user) => user.to_owned(),
            None => {
                let user =
                    std::env::var("PGUSER").or_else(|_| std::env::var("USER")).unwrap_or_else(|_| "postgres".into());
                config.user(&user);
                user
            }
        };
        let database = config.get_dbname().unwrap_or(&user).to_owned();
        let password = url.password.clone().or_else(|| std::env::var("PGPASSWORD").ok()).or_else(|| {
            let text = std::fs::read_to_string(password_file()?).ok()?;
            password_from_file(&text, &host, port, &database, &user)
        });
        if let Some(password) = password {
            config.password(password);
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(connect_timeout);
        }
        let connect_timeout = config.get_connect_timeout().copied().unwrap_or(connect_timeout);
        config.application_name("host");
        Ok(Connector {
            config,
            tls: tokio_postgres_rustls::MakeRustlsConnect::new(tls_config(root_cert.as_deref())?),
            unix_socket,
            address: format!("{host}:{port}"),
            user,
            database,
            connect_timeout,
        })
    }

    /// A new connection, or one line saying why not.
    pub fn connect(&self) -> anyhow::Result<Client> {
        self.connect_raw().map_err(|failure| anyhow::anyhow!("{}", self.describe_connect(&failure)))
    }

    /// A new connection, or why not (for deciding whether to retry). The client's own timeout
    /// covers reaching the server, not a server that accepts and then says nothing: a watchdog
    /// gives up on those after the connect timeout too, so nothing hangs.
    pub fn connect_raw(&self) -> Result<Client, ConnectFailure> {
        let (config, tls, unix_socket) = (self.config.clone(), self.tls.clone(), self.unix_socket);
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // A Unix socket is local: no TLS (and no server name to check one against).
            let _ = sender.send(if unix_socket { config.connect(postgres::NoTls) } else { config.connect(tls) });
        });
        match receiver.recv_timeout(self.connect_timeout + Duration::from_millis(500)) {
            Ok(result) => result.map_err(ConnectFailure::Client),
            Err(_) => Err(ConnectFailure::Silent),
        }
    }

    /// One line for a failed connection.
    pub fn describe_connect(&self, failure: &ConnectFailure) -> String {
        match failure {
            ConnectFailure::Client(error) => self.describe(error),
            ConnectFailure::Silent => format!(
                "PostgreSQL at {} accepted the connection but did not answer within {} s; is that port a PostgreSQL server?",
                self.address,
                self.connect_timeout.as_secs_f64()
            ),
        }
    }

    /// One line for an error from this server: what failed and the fix.
    pub fn describe(&self, error: &postgres::Error) -> String {
        let address = &self.address;
        if let Some(db) = error.as_db_error() {
            let code = db.code();
            let message = db.message();
            return if code == &SqlState::INVALID_PASSWORD {
                format!(
                    "PostgreSQL at {address} refused user {}: {message}; check the password (in the URL, PGPASSWORD or ~/.pgpass)",
                    self.user
                )
            } else if code == &SqlState::INVALID_AUTHORIZATION_SPECIFICATION {
                let hint = if message.contains("no encryption") {
                    "; the server asks for TLS: add ?sslmode=require to the URL"
                } else {
                    ""
                };
                format!("PostgreSQL at {address} refused the connection: {message}{hint}")
            } else if code == &SqlState::INVALID_CATALOG_NAME {
                format!(
                    "database {} does not exist on PostgreSQL at {address}; create it (createdb -h HOST -p PORT {}) or fix the URL",
                    self.database, self.database
                )
            } else if code == &SqlState::TOO_MANY_CONNECTIONS {
                format!(
                    "PostgreSQL at {address} has no free connection ({message}); retry later or raise max_connections"
                )
            } else {
                format!("PostgreSQL at {address}: {message} ({})", code.code())
            };
        }
        let detail = std::error::Error::source(error).map(|s| s.to_string()).unwrap_or_else(|| error.to_string());
        if detail.contains("timed out") || detail.contains("timeout") {
            format!(
                "cannot reach PostgreSQL at {address}: no answer within {} s; check the host and port, or the network",
                self.connect_timeout.as_secs_f64()
            )
        } else if detail.contains("refused") {
            format!(
                "cannot reach PostgreSQL at {address}: connection refused; is the server running and listening there?"
            )
        } else if detail.contains("does not support TLS") {
            format!("PostgreSQL at {address} does not offer TLS, but the URL asks for sslmode=require")
        } else if detail.contains("password missing") {
            format!(
                "PostgreSQL at {address} asks user {} for a password: give it in the URL (postgres://USER:PASSWORD@...), \
                 PGPASSWORD or ~/.pgpass",
                self.user
            )
        } else if error.is_closed() {
            format!("the connection to PostgreSQL at {address} closed: {detail}")
        } else {
            format!("PostgreSQL at {address}: {detail}")
        }
    }
}

/// Why a connection could not be made.
pub enum ConnectFailure {
    /// The client's error: refused, timed out, rejected by the server.
    Client(postgres::Error),
    /// The server accepted the connection and never answered.
    Silent,
}

/// Whether an error is one a retry after reconnecting may cure: the connection was lost, the
/// server is restarting, or the transaction lost a race (deadlock, serialization).
pub fn transient(error: &postgres::Error) -> bool {
    if error.is_closed() {
        return true;
    }
    match error.code() {
        Some(code) => {
            let class = &code.code()[..2];
            class == "08"
                || [
                    SqlState::ADMIN_SHUTDOWN,
                    SqlState::CRASH_SHUTDOWN,
                    SqlState::CANNOT_CONNECT_NOW,
                    SqlState::T_R_SERIALIZATION_FAILURE,
                    SqlState::T_R_DEADLOCK_DETECTED,
                ]
                .contains(code)
        }
        // No server code: an I/O error on the socket.
        None => {
            std::error::Error::source(error).is_some_and(|source| source.downcast_ref::<std::io::Error>().is_some())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_file_matches_by_host_port_database_and_user_with_wildcards() {
        let text = "# comment\ndb.example:5432:runs:ana:first\n*:*:other:ana:second\nh\\:x:5432:*:*:pass\\:word\n";
        assert_eq!(password_from_file(text, "db.example", 5432, "runs", "ana"), Some("first".into()));
        assert_eq!(password_from_file(text, "elsewhere", 1, "other", "ana"), Some("second".into()));
        assert_eq!(password_from_file(text, "h:x", 5432, "any", "bob"), Some("pass:word".into()));
        assert_eq!(password_from_file(text, "db.example", 5433, "runs", "ana"), None);
    }
}
