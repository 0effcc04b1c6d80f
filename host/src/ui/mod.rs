//! `host ui`: the runs of a store in a browser. One binary with its assets embedded (no Node,
//! no CDN, works offline); a small synchronous HTTP server (`http.rs`) whose workers each hold
//! their own store connection. Pages are one client-side app (`assets/`) routed by path, so every page
//! and query has a deep link; it reads JSON from `/api/...` (`api.rs`).
//!
//! Security: binds 127.0.0.1 unless told; another address needs `--token` or `--no-auth`.
//! Read-only except annotations (tags and notes), which need the token when one is set and a
//! JSON body (so a cross-origin form cannot post one). Requests whose `Host` is not the
//! server's own name are refused (DNS rebinding), no CORS header is ever sent, every page has a
//! Content-Security-Policy that allows only this server, and only files a run recorded are
//! served, and only while their content still has the recorded SHA-256 (no path traversal, no
//! symlink escape).

mod api;
mod http;

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::sync::Arc;

use anyhow::bail;
use http::Request;

use crate::storage::StoreSettings;

/// What `host ui` was asked.
pub struct UiOptions {
    pub settings: StoreSettings,
    pub bind: IpAddr,
    pub port: u16,
    pub token: Option<String>,
    pub no_auth: bool,
    /// Worker threads (each with its own store connection).
    pub workers: usize,
}

const INDEX: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");

/// The largest request body read (a note is at most 64 KiB).
const MAX_BODY: usize = 128 * 1024;

/// Who may call: the token a request must carry to annotate, and the names the server answers
/// to.
struct Access {
    token: Option<String>,
    /// `Host` header values accepted (`127.0.0.1:8080`, `localhost:8080`, ...); empty: any
    /// (bound to a non-loopback address with --no-auth or a token).
    hosts: Vec<String>,
}

/// Runs the server until the process is stopped.
pub fn serve(options: UiOptions) -> anyhow::Result<()> {
    if !options.bind.is_loopback() {
        if options.token.is_none() && !options.no_auth {
            bail!(
                "binding {} needs --token TOKEN (annotations then need it) or an explicit --no-auth; the default, 127.0.0.1, needs neither",
                options.bind
            );
        }
        tracing::warn!(
            "host ui: binding {} makes the runs readable from other machines{}",
            options.bind,
            if options.no_auth {
                ", and lets anyone who reaches it add tags and notes"
            } else {
                "; annotations need the token"
            }
        );
    }
    if let Some(token) = &options.token
        && token.len() < 16
    {
        bail!("--token: use at least 16 characters (for example `openssl rand -hex 16`)");
    }
    // Each worker opens its own connection; the first open here reports a bad store at once.
    drop(crate::storage::open_read(&options.settings)?);
    let address = SocketAddr::new(options.bind, options.port);
    let listener = TcpListener::bind(address)
        .map_err(|e| anyhow::anyhow!("cannot listen on {address}: {e} (another --port, or stop what uses it)"))?;
    let bound = listener.local_addr()?;
    let hosts = if options.bind.is_loopback() {
        let port = bound.port();
        vec![format!("127.0.0.1:{port}"), format!("localhost:{port}"), format!("[::1]:{port}"), bound.to_string()]
    } else {
        Vec::new()
    };
    let access = Arc::new(Access { token: options.token.clone(), hosts });
    println!("host ui: the runs of {} at http://{bound}/ (Ctrl-C stops)", options.settings.locator);
    use std::io::Write;
    std::io::stdout().flush().ok();
    let settings = Arc::new(options.settings);
    let workers: Vec<_> = (0..options.workers.max(1))
        .map(|index| {
            let listener = listener.try_clone().expect("share the listening socket");
            let (settings, access) = (settings.clone(), access.clone());
            std::thread::Builder::new()
                .name(format!("ui-{index}"))
                .spawn(move || worker(&listener, &settings, &access))
                .expect("start a UI worker")
        })
        .collect();
    for worker in workers {
        let _ = worker.join();
    }
    Ok(())
}

/// One worker: its own store connections (a reader, and a writer opened on the first
/// annotation), answering one request per connection it accepts.
fn worker(listener: &TcpListener, settings: &StoreSettings, access: &Access) {
    let mut context = api::Context::new(settings);
    loop {
        match listener.accept() {
            Ok((stream, _)) => answer(&mut context, access, &stream),
            Err(error) => tracing::debug!("host ui: accept: {error}"),
        }
    }
}

/// A response: status, content type, body, and extra headers.
pub(crate) struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    pub headers: Vec<(&'static str, String)>,
}

impl Reply {
    pub fn json(status: u16, value: &serde_json::Value) -> Reply {
        Reply {
            status,
            content_type: "application/json",
            body: serde_json::to_vec(value).unwrap_or_default(),
            headers: Vec::new(),
        }
    }

    pub fn error(status: u16, message: impl Into<String>) -> Reply {
        Reply::json(status, &serde_json::json!({"error": message.into()}))
    }

    fn text(status: u16, content_type: &'static str, body: &str) -> Reply {
        Reply { status, content_type, body: body.as_bytes().to_vec(), headers: Vec::new() }
    }
}

/// The policy of the app's own pages: nothing from anywhere but this server.
const APP_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                          connect-src 'self'; frame-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

fn answer(context: &mut api::Context, access: &Access, stream: &std::net::TcpStream) {
    let reply = match http::read_request(stream, MAX_BODY) {
        Ok(request) => route(context, access, &request),
        Err(http::Refused(status, message)) => Reply::error(status, message),
    };
    let mut headers = vec![
        ("Content-Type", reply.content_type.to_owned()),
        ("X-Content-Type-Options", "nosniff".to_owned()),
        ("Referrer-Policy", "no-referrer".to_owned()),
        ("Cache-Control", "no-store".to_owned()),
        ("Cross-Origin-Resource-Policy", "same-origin".to_owned()),
    ];
    if !reply.headers.iter().any(|(name, _)| *name == "Content-Security-Policy") {
        headers.push(("Content-Security-Policy", APP_POLICY.to_owned()));
        headers.push(("X-Frame-Options", "DENY".to_owned()));
    }
    headers.extend(reply.headers);
    http::respond(stream, reply.status, &headers, &reply.body);
}

fn route(context: &mut api::Context, access: &Access, request: &Request) -> Reply {
    if !access.hosts.is_empty() {
        let host = request.header("Host").unwrap_or_default();
        if !access.hosts.iter().any(|h| h.eq_ignore_ascii_case(host)) {
            return Reply::error(421, format!("this server answers to {} only", access.hosts[0]));
        }
    }
    let url = request.target.clone();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    let params = parse_query(query);
    let Some(segments) = path.strip_prefix('/').map(|p| p.split('/').map(percent_decode).collect::<Vec<_>>()) else {
        return Reply::error(400, "a path starts with /");
    };
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    match (request.method.as_str(), segments.as_slice()) {
        (
            "GET",
            [""]
            | ["runs"]
            | ["run", _]
            | ["compare"]
            | ["sweeps"]
            | ["sweep", _]
            | ["sha256"]
            | ["sha256", _]
            | ["plugins"],
        ) => Reply::text(200, "text/html; charset=utf-8", INDEX),
        ("GET", ["assets", "app.js"]) => Reply::text(200, "text/javascript; charset=utf-8", APP_JS),
        ("GET", ["assets", "app.css"]) => Reply::text(200, "text/css; charset=utf-8", APP_CSS),
        ("GET", ["favicon.ico"]) => {
            Reply { status: 204, content_type: "image/x-icon", body: Vec::new(), headers: Vec::new() }
        }
        ("GET", ["api", rest @ ..]) => context.get(rest, &params),
        ("GET", ["files", run_id, rest @ ..]) if !rest.is_empty() => context.file(run_id, &rest.join("/")),
        ("POST", ["api", "runs", run_id, what @ ("tags" | "notes")]) => {
            if let Some(token) = &access.token {
                let given = request.header("Authorization").and_then(|v| v.strip_prefix("Bearer ")).unwrap_or_default();
                if !constant_time_eq(given.as_bytes(), token.as_bytes()) {
                    return Reply::error(401, "annotations need the server's token (Authorization: Bearer TOKEN)");
                }
            }
            // A JSON body only: a cross-origin page cannot send one without a preflight this
            // server never grants.
            let media = request.header("Content-Type").unwrap_or_default().split(';').next().unwrap_or_default().trim();
            if !media.eq_ignore_ascii_case("application/json") {
                return Reply::error(415, "send the annotation as application/json");
            }
            context.annotate(run_id, what, &request.body)
        }
        ("GET" | "POST", _) => Reply::error(404, format!("nothing at {path}")),
        _ => Reply::error(405, "only GET, and POST for annotations"),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `%XX` and `+` decoded; invalid sequences kept as written.
pub(crate) fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                match u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"), 16) {
                    Ok(byte) => {
                        out.push(byte);
                        i += 3;
                    }
                    Err(_) => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key), percent_decode(value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_decode() {
        assert_eq!(percent_decode("a%20b+c%27%"), "a b c'%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("%C3%A9"), "é");
        assert_eq!(
            parse_query("filter=seed%20%3D%203&limit=5&x"),
            [
                ("filter".to_owned(), "seed = 3".to_owned()),
                ("limit".to_owned(), "5".to_owned()),
                ("x".to_owned(), String::new())
            ]
        );
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
