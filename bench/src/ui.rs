//! `bench ui`: `host ui` on the generated 100,000-run stores (SQLite and PostgreSQL). The server
//! time of the runs page's first answer and of filtered queries (as the server reports it,
//! `server_ms`, and as a client waits for it), medians of N; the server's resident memory at
//! its peak after them all.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, bail};
use serde_json::Value;

use crate::store::{Backends, STORE_RUNS, generated_stores, synthetic_run};
use crate::{median, sibling};

/// One GET: the body and the seconds the client waited.
fn get(address: &str, path: &str) -> anyhow::Result<(String, f64)> {
    let started = Instant::now();
    let mut stream = TcpStream::connect(address)?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n")?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    let seconds = started.elapsed().as_secs_f64();
    let (head, body) = answer.split_once("\r\n\r\n").context("no HTTP answer")?;
    if !head.starts_with("HTTP/1.1 200") {
        bail!("GET {path}: {head}\n{body}");
    }
    Ok((body.to_owned(), seconds))
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Peak and current resident memory of a process, in MiB.
fn memory(pid: u32) -> anyhow::Result<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> anyhow::Result<f64> {
        let line = status.lines().find(|l| l.starts_with(name)).with_context(|| format!("no {name}"))?;
        let kib: f64 = line.split_whitespace().nth(1).context("no value")?.parse()?;
        Ok(kib / 1024.0)
    };
    Ok((field("VmHWM:")?, field("VmRSS:")?))
}

pub fn ui(runs: usize, backends: Backends) -> anyhow::Result<()> {
    let host = sibling("host")?;
    let generated = generated_stores(backends)?;
    let middle = synthetic_run(STORE_RUNS / 2);
    let rate = middle.config["training"]["learning_rate"].clone();
    // The synthetic runs' accuracies reach 0.9499; a few hundred are above this.
    let rare = "metrics.test.accuracy > 0.9497".to_owned();
    let common = format!("metrics.test.accuracy > 0.9 and params.training.learning_rate = {rate}");
    let experiment = format!("experiment = '{}' and status = 'completed'", middle.experiment_name);
    let cases: Vec<(&str, String)> = vec![
        ("runs page (/api/runs, newest 50)", "/api/runs".into()),
        ("filter: a metric and a parameter", format!("/api/runs?filter={}", encode(&common))),
        ("filter: a metric few runs reach", format!("/api/runs?filter={}", encode(&rare))),
        ("filter: an experiment's completed runs", format!("/api/runs?filter={}", encode(&experiment))),
        (
            "filter: a data file's runs (sha256)",
            format!("/api/runs?filter={}", encode(&format!("data.sha256 = '{}'", &middle.data.dataset_sha256[..12]))),
        ),
        (
            "filter and sort by a metric",
            format!("/api/runs?filter={}&order_by={}", encode(&common), encode("metrics.test.accuracy desc")),
        ),
        ("page 100 (offset 4,950)", "/api/runs?offset=4950".into()),
    ];
    for (backend, db) in &generated.stores {
        let started = Instant::now();
        let mut server = Command::new(&host)
            .args(["ui", "--port", "0", "--db", db])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let mut line = String::new();
        BufReader::new(server.stdout.take().context("no stdout")?).read_line(&mut line)?;
        let address = line.split("http://").nth(1).and_then(|r| r.split('/').next()).context("no address")?.to_owned();
        // Starting includes bringing the store to this host's schema (once: an upgrade builds
        // indexes).
        eprintln!("{backend}: host ui answering after {:.1} s", started.elapsed().as_secs_f64());
        let measured = (|| -> anyhow::Result<()> {
            println!(
                "host ui on a store of {STORE_RUNS} runs ({backend}), medians of {runs} (first answer, then warm):"
            );
            let (_, first) = get(&address, "/")?;
            println!("  {:<42} {:>7.1} ms response", "the page itself (GET /)", first * 1000.0);
            for (name, path) in &cases {
                let (mut server_ms, mut client_ms) = (Vec::new(), Vec::new());
                let mut first_server = 0.0;
                let mut total = Value::Null;
                for attempt in 0..runs.max(1) {
                    let (body, seconds) = get(&address, path)?;
                    let page: Value = serde_json::from_str(&body)?;
                    let ms = page["server_ms"].as_f64().context("no server_ms")?;
                    if attempt == 0 {
                        first_server = ms;
                    }
                    server_ms.push(ms);
                    client_ms.push(seconds * 1000.0);
                    total = page["total"].clone();
                }
                println!(
                    "  {name:<42} {:>7.1} ms server ({:.1} ms response; first {first_server:.1} ms; {total} matching; target under 100 ms)",
                    median(&mut server_ms),
                    median(&mut client_ms),
                );
            }
            let (peak, now) = memory(server.id())?;
            println!("  resident memory of the server: peak {peak:.1} MiB, now {now:.1} MiB (target under 100 MiB)");
            Ok(())
        })();
        let _ = server.kill();
        let _ = server.wait();
        measured?;
    }
    Ok(())
}
