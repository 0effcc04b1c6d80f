//! `host ui` on both stores: in headless Chromium (load, search, a query error, open a run,
//! follow a lineage link, add a tag, compare three runs, sweeps), with no console message, no
//! request to another host and no layout problem on any page (`cdp::LAYOUT_CHECK`: nothing wider
//! than its container, unique legend labels, no chart text outside its chart, whole-number ticks
//! on integer axes), screenshots kept under `target/test-outputs/ui/`; and its security
//! over plain HTTP (the Host check, the token, only recorded files, no cross-origin access).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};

use serde_json::Value;

use crate::cdp::Browser;
use crate::store::faulty_project;
use crate::support::{Project, on_every_store, target_dir};

/// A running `host ui` and the address it serves.
struct Ui {
    child: Child,
    url: String,
}

impl Ui {
    fn start(project: &Project, extra: &[&str]) -> Ui {
        let mut args = vec!["ui", "--port", "0"];
        args.extend(extra);
        let mut child =
            project.command(&args).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().expect("start host ui");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let url = line
            .split(" at ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no address in {line:?}"));
        Ui { child, url: url.trim_end_matches('/').to_owned() }
    }

    fn address(&self) -> String {
        self.url.trim_start_matches("http://").to_owned()
    }
}

impl Drop for Ui {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One raw HTTP/1.1 request: status, headers (lowercased names), body.
fn http(address: &str, request: &str) -> (u16, String, String) {
    let mut stream = TcpStream::connect(address).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, head.to_ascii_lowercase(), body.to_owned())
}

fn get(ui: &Ui, path: &str) -> (u16, String, String) {
    http(&ui.address(), &format!("GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", ui.address()))
}

/// Three runs (seeds 42, 5, 3) and a two-trial sweep; the runs' ids, oldest first.
fn runs_and_a_sweep(project: &Project) -> Vec<String> {
    let base = std::fs::read_to_string(project.path().join("config/run.yaml")).unwrap();
    let mut ids = Vec::new();
    for seed in [42, 5, 3] {
        project.write("config/seeded.yaml", &format!("{base}seed: {seed}\n"));
        let summary = project.host(&["run", "config/seeded.yaml", "--json"]).success().json();
        ids.push(summary["run_id"].as_str().unwrap().to_owned());
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }
    project.write("config/sweep.yaml", &format!("{base}sweep:\n  method: grid\n  parameters:\n    seed: [1, 2]\n"));
    project.host(&["sweep", "config/sweep.yaml", "--json"]).success();
    ids
}

fn screenshots() -> std::path::PathBuf {
    target_dir().join("test-outputs/ui")
}

on_every_store! {
/// A user's path through the UI in a real browser, every page without a console message, a
/// layout problem or a request to another host.
fn the_ui_searches_opens_compares_follows_lineage_and_tags_in_a_browser() {
    let project = faulty_project();
    let runs = runs_and_a_sweep(&project);
    let ui = Ui::start(&project, &[]);
    let backend = match crate::support::backend() {
        crate::support::Backend::Sqlite => "sqlite",
        crate::support::Backend::Postgres => "postgres",
    };
    let shots = screenshots();
    let mut browser = Browser::start();

    // The runs page: every run, the sweep's two as one folded group.
    browser.open(&format!("{}/", ui.url), "document.querySelectorAll('#runs tr.run').length === 5");
    assert_eq!(browser.eval("document.querySelectorAll('#runs tr.group').length"), 1);
    assert_eq!(browser.eval("document.querySelectorAll('#runs tr.run.hidden').length"), 2);
    browser.eval("document.querySelector('#runs tr.group').click()");
    assert_eq!(browser.eval("document.querySelectorAll('#runs tr.run.hidden').length"), 0);
    browser.screenshot(&shots.join(format!("runs-{backend}.png")));
    browser.assert_layout("the runs page");

    // Search: the query bar, a deep link, one match.
    browser.eval("document.getElementById('filter').value = 'seed = 3 and status = \\'completed\\''; document.getElementById('search').click()");
    browser.wait_for("location.search.includes('filter=') && document.querySelectorAll('#runs tr.run').length === 1");
    assert_eq!(browser.eval("document.querySelector('#runs tr.run').dataset.run"), Value::from(runs[2].clone()));
    // A mistake shows where it is.
    browser.eval("document.getElementById('filter').value = 'seed = '; document.getElementById('search').click()");
    browser.wait_for("document.getElementById('query-error')");
    let error = browser.eval("document.getElementById('query-error').textContent + '|' + document.querySelector('pre.caret').textContent");
    assert!(error.as_str().unwrap().contains("expected a value") && error.as_str().unwrap().ends_with("seed =\n      ^"), "{error}");

    // Open a run from the list.
    browser.open(&format!("{}/runs?filter=seed%20%3D%205", ui.url), "document.querySelectorAll('#runs tr.run').length === 1");
    browser.eval("document.querySelector('#runs tr.run a').click()");
    browser.wait_for(&format!("document.getElementById('run-id') && document.getElementById('run-id').textContent === '{}'", runs[1]));
    browser.wait_for("document.querySelectorAll('#lineage a.node').length > 0 && document.querySelector('#curve svg')");
    browser.eval("document.getElementById('verify').click()");
    browser.wait_for("document.getElementById('verify-result').textContent.includes('verified')");
    browser.screenshot(&shots.join(format!("run-{backend}.png")));
    browser.assert_layout("a run's page");
    // In a narrow window the charts and the lineage are drawn again to the width there is.
    browser.set_width(760);
    browser.wait_for("Number(document.querySelector('#curve svg').getAttribute('viewBox').split(' ')[2]) < 760");
    browser.assert_layout("a run's page at 760px");
    browser.set_width(1280);

    // Add a tag; the store has it.
    browser.eval("document.getElementById('tag-key').value = 'owner'; document.getElementById('tag-value').value = 'ana'; document.getElementById('add-tag').click()");
    browser.wait_for("document.getElementById('tags').textContent.includes('owner=ana')");
    let shown = project.host(&["runs", "show", &runs[1], "--json"]).success().json();
    assert_eq!(shown["tags"]["owner"], "ana");

    // Follow a lineage link: the entity's page lists the other runs that share it.
    browser.eval("document.querySelector('#lineage a.node').dispatchEvent(new MouseEvent('click', {bubbles: true}))");
    browser.wait_for("location.pathname.startsWith('/sha256/') && document.querySelector('section.found')");
    let listed = browser.eval("[...document.querySelectorAll('section.found li a')].map((a) => a.textContent)");
    assert!(listed.as_array().unwrap().len() >= 2, "a dataset every run shares: {listed}");

    // Compare the three runs from the runs page; only the differences.
    browser.open(&format!("{}/runs?filter=sweep%20is%20null", ui.url), "document.querySelectorAll('#runs tr.run').length === 3");
    browser.eval("document.querySelectorAll('input.pick').forEach((pick) => pick.click()); document.getElementById('compare').click()");
    browser.wait_for("document.getElementById('compare-params')");
    browser.eval("document.getElementById('only-diff').click()");
    browser.wait_for("document.querySelector('#compare-params[data-only-diff]')");
    let keys = browser.eval("[...document.querySelectorAll('#compare-params tbody td:first-child')].map((td) => td.textContent)");
    assert_eq!(keys, serde_json::json!(["seed"]), "only the parameter that differs");
    browser.wait_for("document.querySelectorAll('#compare-curves .legend-label').length === 3");
    browser.screenshot(&shots.join(format!("compare-{backend}.png")));
    browser.assert_layout("the comparison page");
    browser.set_width(760);
    browser.wait_for("Number(document.querySelector('#compare-curves svg').getAttribute('viewBox').split(' ')[2]) < 760");
    browser.assert_layout("the comparison page at 760px");
    browser.set_width(1280);
    // Each run's curve is named by what differs: its seed.
    let legend = browser.eval("[...document.querySelectorAll('#compare-curves .legend-label')].map((l) => l.textContent).sort()");
    assert_eq!(legend, serde_json::json!(["seed=3", "seed=42", "seed=5"]));

    // Sweeps: the list and one sweep with its trials.
    browser.open(&format!("{}/sweeps", ui.url), "document.querySelectorAll('#sweeps tbody tr').length === 1");
    browser.assert_layout("the sweeps page");
    browser.eval("document.querySelector('#sweeps tbody a').click()");
    browser.wait_for("document.querySelectorAll('#trials tbody tr').length === 2 && document.querySelector('#parallel svg')");
    browser.screenshot(&shots.join(format!("sweep-{backend}.png")));
    browser.assert_layout("a sweep's page");
    browser.open(&format!("{}/plugins", ui.url), "document.querySelectorAll('#plugins tbody tr').length === 1");
    browser.assert_layout("the plugin builds page");

    browser.settle();
    assert!(browser.problems.is_empty(), "console messages or failures: {:#?}", browser.problems);
    let elsewhere: Vec<&String> = browser
        .requests
        .iter()
        .filter(|url| !url.starts_with(&ui.url) && !url.starts_with("about:") && !url.starts_with("data:"))
        .collect();
    assert!(elsewhere.is_empty(), "requests to another host: {elsewhere:?}");
}
}

/// Security over plain HTTP: another Host refused, no CORS, a CSP on every page, only recorded
/// files served (no traversal, no link swapped in), annotations need JSON and the token.
#[test]
fn the_ui_serves_only_recorded_files_to_its_own_host_and_annotates_only_with_the_token() {
    let project = faulty_project();
    let summary = project.host(&["run", "config/run.yaml", "--json"]).success().json();
    let run = summary["run_id"].as_str().unwrap().to_owned();
    let token = "0123456789abcdef0123";
    let ui = Ui::start(&project, &["--token", token]);

    let (status, head, _) = get(&ui, "/");
    assert_eq!(status, 200);
    assert!(head.contains("content-security-policy: default-src 'none'; script-src 'self'"), "{head}");
    assert!(!head.contains("access-control-allow-origin"), "{head}");
    // DNS rebinding: a page of another name that resolves here is refused.
    let (status, _, body) =
        http(&ui.address(), "GET /api/runs HTTP/1.1\r\nHost: attacker.example:80\r\nConnection: close\r\n\r\n");
    assert_eq!(status, 421, "{body}");

    // Recorded files: by their path in the run's folder; nothing else.
    let (status, head, body) = get(&ui, &format!("/files/{run}/metrics.json"));
    assert_eq!(status, 200, "{body}");
    assert!(head.contains("sandbox") && body.contains("accuracy"), "{head}");
    for path in [
        format!("/files/{run}/../../../../etc/passwd"),
        format!("/files/{run}/%2e%2e/%2e%2e/etc/passwd"),
        format!("/files/{run}/~999"),
    ] {
        let (status, _, body) = get(&ui, &path);
        assert_eq!(status, 404, "{path}: {body}");
    }
    // A recorded file replaced by a link to another file is not served.
    let metrics = project.path().join(format!("runs/{run}/metrics.json"));
    std::fs::remove_file(&metrics).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", &metrics).unwrap();
    let (status, _, body) = get(&ui, &format!("/files/{run}/metrics.json"));
    assert_eq!(status, 403, "{body}");
    assert!(!body.contains("root:"), "{body}");

    // Annotations: JSON only (no cross-origin form), and the token.
    let post = |headers: &str, body: &str| {
        http(
            &ui.address(),
            &format!(
                "POST /api/runs/{run}/tags HTTP/1.1\r\nHost: {}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                ui.address(),
                body.len()
            ),
        )
    };
    let tag = r#"{"key": "owner", "value": "ana"}"#;
    assert_eq!(post("Content-Type: application/json\r\n", tag).0, 401);
    assert_eq!(post(&format!("Authorization: Bearer {token}\r\nContent-Type: text/plain\r\n"), tag).0, 415);
    let (status, _, body) = post(&format!("Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"), tag);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"owner\":\"ana\""), "{body}");
    let (status, _, body) = post(
        &format!("Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"),
        r#"{"key": "a b", "value": "x"}"#,
    );
    assert_eq!(status, 400, "{body}");
    for (body, what) in [
        (r#"{"key": "x=y", "value": "z"}"#, "a key holding '='"),
        (r#"{"key": "num", "value": 5}"#, "a value that is no text"),
        (r#"{"key": "owner"}"#, "no value"),
        ("[]", "no object"),
    ] {
        let (status, _, answer) =
            post(&format!("Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"), body);
        assert_eq!(status, 400, "{what}: {answer}");
    }
    let shown = project.host(&["runs", "show", &run, "--json"]).success().json();
    assert_eq!(shown["tags"], serde_json::json!({"owner": "ana"}), "nothing refused was recorded");
    // A body declared larger than any annotation is refused unread, and the server stays up.
    let (status, _, _) = http(
        &ui.address(),
        &format!(
            "POST /api/runs/{run}/tags HTTP/1.1\r\nHost: {}\r\nContent-Length: 99999999999\r\n\r\n{{}}",
            ui.address()
        ),
    );
    assert_eq!(status, 413);
    assert_eq!(get(&ui, "/api/plugins").0, 200, "still serving");
    // Every other write is refused.
    let (status, _, _) = http(
        &ui.address(),
        &format!("DELETE /api/runs/{run} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", ui.address()),
    );
    assert_eq!(status, 405);
    // A query error names the column; values are bound, never SQL.
    let (status, _, body) = get(&ui, "/api/runs?filter=seed%20%3D");
    assert_eq!(status, 400);
    assert!(body.contains("\"column\":7"), "{body}");
    let (status, _, body) = get(&ui, "/api/runs?filter=experiment%20%3D%20%27x%27%27%20or%201%3D1%20--%27");
    assert_eq!(status, 200);
    assert!(body.contains("\"total\":0"), "{body}");
}

/// Another address than 127.0.0.1 needs a token or an explicit --no-auth (checked before
/// listening: these tests never listen beyond loopback).
#[test]
fn binding_another_address_needs_a_token_or_no_auth() {
    let project = faulty_project();
    project.host(&["run", "config/run.yaml"]).success();
    let refused = project.host(&["ui", "--bind", "0.0.0.0", "--port", "0"]);
    assert!(refused.failure().contains("--token"), "{}", refused.stderr);
    let short = project.host(&["ui", "--port", "0", "--token", "short"]);
    assert!(short.failure().contains("16 characters"), "{}", short.stderr);
    // With --no-auth it goes on to listen, warning; a port this test holds makes it stop there.
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port().to_string();
    let allowed = project.host(&["ui", "--bind", "0.0.0.0", "--no-auth", "--port", &port]);
    let error = allowed.failure();
    assert!(error.contains("readable from other machines") && error.contains("cannot listen on 0.0.0.0"), "{error}");
}
