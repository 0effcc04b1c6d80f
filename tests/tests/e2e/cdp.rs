//! A headless Chromium driven over the DevTools protocol (a WebSocket): pages loaded, script
//! evaluated in them, screenshots taken, and every console message, uncaught exception and
//! network request seen, so a test can require none of the first two and only local requests.
//! [`LAYOUT_CHECK`] is the layout check every browser test runs on the pages it visits.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};
use tungstenite::{Message, WebSocket};

/// A script that lists what is wrong with the layout of the page it runs in, each problem naming
/// the element (tag, id, class, text) and the sizes involved; an empty list when nothing is:
///
/// 1. an element wider than its container: its box reaches past its parent's content box left
///    or right, or its own text overflows it. Exempt is what lies inside a container that
///    scrolls by design, named in `SCROLLERS` (the UI's `.table-wrap` around wide tables); the
///    scroller itself must fit. Inside an SVG, check 3 applies instead.
/// 2. the same label twice in one chart's legend (`.legend-label` within a `.chart`), or one
///    cut short with "..." or "…";
/// 3. an SVG text reaching past its `<svg>` element's box (where the SVG clips it);
/// 4. a tick label that is not a whole number, or repeated, on an integer axis: a `.axis` with
///    `data-integer`, or one whose caption (`.axis-label`) is "epoch".
///
/// The charts crate and the UI's app.js draw to these conventions.
pub const LAYOUT_CHECK: &str = r#"(() => {
  const SCROLLERS = '.table-wrap';
  const problems = [];
  const px = (value) => parseFloat(value) || 0;
  const r = (value) => Math.round(value * 10) / 10;
  const describe = (el) => {
    const cls = el.getAttribute('class');
    const chart = el.matches('.chart') && (el.matches('svg') ? el : el.querySelector('svg'));
    const label = chart && chart.getAttribute('aria-label');
    const text = (el.textContent || '').replace(/\s+/g, ' ').trim();
    return `<${el.tagName.toLowerCase()}${el.id ? ' id="' + el.id + '"' : ''}${cls ? ' class="' + cls + '"' : ''}${label ? ' (chart "' + label + '")' : ''}> "${text.length > 60 ? text.slice(0, 60) + '…' : text}"`;
  };
  const span = (box) => `${r(box.width)}px wide (x ${r(box.left)} to ${r(box.right)})`;
  const drawn = (box) => box.width > 0 || box.height > 0;

  // 1. No element wider than its container.
  for (const el of document.body.querySelectorAll('*')) {
    if (el.ownerSVGElement) continue;
    const parent = el.parentElement;
    if (!parent || parent.closest(SCROLLERS)) continue;
    const style = getComputedStyle(el);
    if (style.display === 'none' || style.position === 'fixed' || style.position === 'absolute') continue;
    const box = el.getBoundingClientRect();
    if (!drawn(box)) continue;
    const outer = parent.getBoundingClientRect();
    const ps = getComputedStyle(parent);
    const left = outer.left + px(ps.borderLeftWidth) + px(ps.paddingLeft);
    const right = outer.right - px(ps.borderRightWidth) - px(ps.paddingRight);
    if (box.left < left - 1 || box.right > right + 1) {
      problems.push(`too wide: ${describe(el)} is ${span(box)}, beyond the content box of its container ${describe(parent)}, ${r(right - left)}px wide (x ${r(left)} to ${r(right)})`);
    }
    const control = /^(input|textarea|select|button|svg)$/i.test(el.tagName);
    if (!control && !el.children.length && style.display !== 'inline' && el.clientWidth > 0 && el.scrollWidth > el.clientWidth + 1) {
      problems.push(`text too wide: ${describe(el)} holds ${el.scrollWidth}px of text in ${el.clientWidth}px`);
    }
  }

  // 2. Legend labels within a chart are unique and whole.
  for (const chart of document.querySelectorAll('.chart')) {
    const labels = [...chart.querySelectorAll('.legend-label')].map((l) => l.textContent.trim());
    labels.forEach((label, i) => {
      if (labels.indexOf(label) !== i) problems.push(`legend label "${label}" twice in ${describe(chart)}: ${JSON.stringify(labels)}`);
      if (/(\.\.\.|…)$/.test(label) || !label) problems.push(`legend label "${label}" cut short or empty in ${describe(chart)}: ${JSON.stringify(labels)}`);
    });
  }

  // 3. No SVG text beyond its SVG's bounds.
  for (const text of document.querySelectorAll('svg text')) {
    let root = text.ownerSVGElement;
    while (root.ownerSVGElement) root = root.ownerSVGElement;
    const box = text.getBoundingClientRect();
    if (!drawn(box) || !text.textContent.trim()) continue;
    const frame = root.getBoundingClientRect();
    if (box.left < frame.left - 1 || box.right > frame.right + 1 || box.top < frame.top - 1 || box.bottom > frame.bottom + 1) {
      problems.push(`SVG text outside its chart: ${describe(text)} spans x ${r(box.left)} to ${r(box.right)}, y ${r(box.top)} to ${r(box.bottom)}; its ${describe(root)} spans x ${r(frame.left)} to ${r(frame.right)}, y ${r(frame.top)} to ${r(frame.bottom)}`);
    }
  }

  // 4. Integer axes have whole-number ticks.
  for (const axis of document.querySelectorAll('svg .axis')) {
    const caption = axis.querySelector('.axis-label');
    const name = caption ? caption.textContent.trim() : '';
    if (!axis.hasAttribute('data-integer') && !/^epochs?$/i.test(name)) continue;
    const ticks = [...axis.querySelectorAll('.tick')].map((t) => t.textContent.trim());
    const bad = ticks.filter((t, i) => !/^-?\d+$/.test(t) || ticks.indexOf(t) !== i);
    if (!ticks.length || bad.length) {
      problems.push(`integer axis "${name}" (${describe(axis)}) has tick labels ${JSON.stringify(ticks)}: ${bad.length ? JSON.stringify(bad) + ' are not distinct whole numbers' : 'none'}`);
    }
  }
  return problems;
})()"#;

pub struct Browser {
    child: Child,
    socket: WebSocket<TcpStream>,
    session: String,
    next_id: u64,
    _profile: tempfile::TempDir,
    /// Console errors and warnings, uncaught exceptions, failed loads.
    pub problems: Vec<String>,
    /// Every URL the page requested.
    pub requests: Vec<String>,
}

fn chromium_binary() -> PathBuf {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .expect("chromium is missing: scripts/setup.sh installs Debian's chromium package")
}

impl Browser {
    /// Starts Chromium with no network but this machine's loopback, and opens one page.
    pub fn start() -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let mut child = Command::new(chromium_binary())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-quic",
                // Names resolve nowhere but this machine: a request to another host fails (and
                // is seen).
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                "--window-size=1280,900",
                "--remote-debugging-port=0",
                "--remote-allow-origins=*",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start chromium");
        // It prints "DevTools listening on ws://127.0.0.1:PORT/devtools/browser/ID".
        let stderr = child.stderr.take().unwrap();
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.split("DevTools listening on ").nth(1) {
                    let _ = sender.send(url.trim().to_owned());
                }
            }
        });
        let url = receiver.recv_timeout(Duration::from_secs(60)).expect("chromium never opened its DevTools socket");
        let address = url.trim_start_matches("ws://").split('/').next().unwrap().to_owned();
        let stream = TcpStream::connect(&address).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let (socket, _) = tungstenite::client(url.as_str(), stream).expect("DevTools handshake");
        let mut browser = Browser {
            child,
            socket,
            session: String::new(),
            next_id: 0,
            _profile: profile,
            problems: Vec::new(),
            requests: Vec::new(),
        };
        let target = browser.call_browser("Target.createTarget", json!({"url": "about:blank"}));
        let attached =
            browser.call_browser("Target.attachToTarget", json!({"targetId": target["targetId"], "flatten": true}));
        browser.session = attached["sessionId"].as_str().unwrap().to_owned();
        for domain in ["Page.enable", "Runtime.enable", "Log.enable", "Network.enable"] {
            browser.call(domain, json!({}));
        }
        browser
    }

    fn send(&mut self, method: &str, params: Value, session: bool) -> Value {
        match self.try_send(method, params, session) {
            Ok(result) => result,
            Err(error) => panic!("{method} failed: {error}"),
        }
    }

    fn try_send(&mut self, method: &str, params: Value, session: bool) -> Result<Value, Value> {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if session {
            message["sessionId"] = json!(self.session);
        }
        self.socket.send(Message::text(message.to_string())).unwrap();
        loop {
            let text = match self.socket.read() {
                Ok(Message::Text(text)) => text.to_string(),
                Ok(_) => continue,
                // A signal meant for another test's child (the suite sends several) interrupts the
                // read; the frame is still in tungstenite's buffer or on the socket.
                Err(tungstenite::Error::Io(error)) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(error) => panic!("read from DevTools: {error}"),
            };
            let message: Value = serde_json::from_str(&text).unwrap();
            if message["id"] == id {
                if let Some(error) = message.get("error") {
                    return Err(error.clone());
                }
                return Ok(message["result"].clone());
            }
            self.event(&message);
        }
    }

    fn call_browser(&mut self, method: &str, params: Value) -> Value {
        self.send(method, params, false)
    }

    /// A command to the page.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        self.send(method, params, true)
    }

    fn event(&mut self, message: &Value) {
        let params = &message["params"];
        match message["method"].as_str().unwrap_or_default() {
            "Runtime.consoleAPICalled" if matches!(params["type"].as_str(), Some("error" | "warning" | "assert")) => {
                self.problems.push(format!("console {}: {}", params["type"], params["args"]));
            }
            "Runtime.exceptionThrown" => self.problems.push(format!("exception: {}", params["exceptionDetails"])),
            "Log.entryAdded" if matches!(params["entry"]["level"].as_str(), Some("error" | "warning")) => {
                self.problems.push(format!("log: {}", params["entry"]));
            }
            "Network.requestWillBeSent" => {
                self.requests.push(params["request"]["url"].as_str().unwrap_or_default().to_owned());
            }
            "Network.loadingFailed" if params["canceled"] != true => {
                self.problems.push(format!("failed load: {params}"));
            }
            _ => {}
        }
    }

    /// Evaluates `expression` in the page (awaiting a promise) and returns its value.
    pub fn eval(&mut self, expression: &str) -> Value {
        let result = self
            .call("Runtime.evaluate", json!({"expression": expression, "awaitPromise": true, "returnByValue": true}));
        if let Some(exception) = result.get("exceptionDetails") {
            panic!("{expression} threw: {exception}");
        }
        result["result"]["value"].clone()
    }

    /// Loads `url` and waits until `ready` (a script expression) is true.
    pub fn open(&mut self, url: &str, ready: &str) {
        self.call("Page.navigate", json!({"url": url}));
        self.wait_for(ready);
    }

    /// Polls `condition` (a script expression) until it is true; fails after 30 s.
    #[track_caller]
    pub fn wait_for(&mut self, condition: &str) {
        let started = Instant::now();
        loop {
            // A page between two documents has no context to evaluate in: try again.
            let evaluated = self.try_send(
                "Runtime.evaluate",
                json!({"expression": format!("!!({condition})"), "returnByValue": true}),
                true,
            );
            if evaluated.is_ok_and(|result| result["result"]["value"] == json!(true)) {
                return;
            }
            if started.elapsed() > Duration::from_secs(30) {
                let page = self.eval("document.body ? document.body.innerText.slice(0, 2000) : ''");
                panic!("never true: {condition}\npage: {page}\nproblems: {:?}", self.problems);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Fails, naming every problem, unless [`LAYOUT_CHECK`] finds none in the page as it is now.
    #[track_caller]
    pub fn assert_layout(&mut self, page: &str) {
        let problems = self.eval(LAYOUT_CHECK);
        let problems: Vec<&str> =
            problems.as_array().expect("the layout check returns a list").iter().filter_map(Value::as_str).collect();
        assert!(problems.is_empty(), "{page}: {} layout problem(s):\n  {}", problems.len(), problems.join("\n  "));
    }

    /// Lays the page out at `width` CSS pixels, as in a window that wide.
    pub fn set_width(&mut self, width: u32) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": false}),
        );
    }

    /// Drains pending events for a moment (late console messages, requests).
    pub fn settle(&mut self) {
        self.eval("new Promise((done) => setTimeout(done, 300))");
    }

    /// A PNG of the page as it is now, written to `path`.
    pub fn screenshot(&mut self, path: &Path) {
        let shot = self.call("Page.captureScreenshot", json!({"format": "png", "captureBeyondViewport": true}));
        let png = base64::engine::general_purpose::STANDARD.decode(shot["data"].as_str().unwrap()).unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
