//! The HTML reports in a real browser: headless Chromium (Debian's `chromium`, installed by the
//! set-up) loads every page with no console message, draws every chart (counted in a
//! screenshot), lays every page out within its width (the shared layout check), fetches
//! nothing, and shows a script-injection payload as text.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cdp::Browser;
use crate::support::{Project, library, on_every_store, target_dir, write_tiny_mnist};

const PAGES: [&str; 4] = ["index.html", "data.html", "training.html", "evaluation.html"];

fn chromium(profile: &Path, args: &[&str]) -> std::process::Output {
    let binary = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .expect("chromium is missing: scripts/setup.sh installs Debian's chromium package");
    Command::new(binary)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            // No network: any attempt to resolve a host fails.
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output()
        .expect("run chromium")
}

/// The page's DOM after loading, and the console messages it logged.
pub fn load(profile: &Path, page: &Path) -> (String, Vec<String>) {
    load_url(profile, &format!("file://{}", page.display()))
}

/// Like [`load`], for a URL (a page with a fragment, say).
pub fn load_url(profile: &Path, url: &str) -> (String, Vec<String>) {
    let output = chromium(profile, &["--dump-dom", url]);
    assert!(output.status.success(), "chromium failed on {url}: {}", String::from_utf8_lossy(&output.stderr));
    let console =
        String::from_utf8_lossy(&output.stderr).lines().filter(|l| l.contains(":CONSOLE")).map(str::to_owned).collect();
    (String::from_utf8_lossy(&output.stdout).into_owned(), console)
}

/// Runs the shared layout check ([`crate::cdp::LAYOUT_CHECK`]) on each page, in a window as wide
/// as the screenshots' (1280px) and in a narrow one (800px); keeps a screenshot of each page at
/// 1280px as `target/test-outputs/reports/NAME.png`.
pub fn assert_layout(pages: &[(&str, &Path)]) {
    let mut browser = Browser::start();
    for width in [1280, 800] {
        browser.set_width(width);
        for (name, page) in pages {
            let url = format!("file://{}", page.display());
            browser.open(
                &url,
                &format!("location.href === {} && document.readyState === 'complete'", serde_json::json!(url)),
            );
            if width == 1280 {
                browser.screenshot(&target_dir().join("test-outputs/reports").join(format!("{name}.png")));
            }
            browser.assert_layout(&format!("{name} at {width}px"));
        }
    }
    browser.settle();
    assert!(browser.problems.is_empty(), "console messages or failures: {:#?}", browser.problems);
}

/// The running test's store backend, to tell its screenshots apart.
pub fn backend_name() -> &'static str {
    match crate::support::backend() {
        crate::support::Backend::Sqlite => "sqlite",
        crate::support::Backend::Postgres => "postgres",
    }
}

/// RGB pixels of a screenshot of the page, with the image width.
fn screenshot(profile: &Path, page: &Path, out: &Path) -> (Vec<[u8; 3]>, u32) {
    let output = chromium(
        profile,
        &[
            "--window-size=1280,4000",
            "--hide-scrollbars",
            &format!("--screenshot={}", out.display()),
            &format!("file://{}", page.display()),
        ],
    );
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(out).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buffer = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buffer).unwrap();
    let channels = info.color_type.samples();
    let pixels = buffer[..info.buffer_size()].chunks_exact(channels).map(|p| [p[0], p[1], p[2]]).collect();
    (pixels, info.width)
}

fn near(pixel: [u8; 3], color: [u8; 3]) -> bool {
    pixel.iter().zip(color).all(|(&a, b)| (a as i32 - b as i32).abs() <= 24)
}

fn report_project(experiment_name: &str) -> (Project, PathBuf) {
    let project = Project::new();
    write_tiny_mnist(&project.path().join("data"), 300, 100);
    let path = library("mnist-plugin").display().to_string();
    project.mapping(&format!(
        "Loader:\n  MNISTLoader: {path}\nModel:\n  MNISTMLP: {path}\nReportGenerator:\n  MNISTReportGenerator: {path}\n"
    ));
    let name = serde_json::to_string(experiment_name).unwrap();
    project.write(
        "config/report.yaml",
        &format!(
            "experiment_name: {name}\nthreads: 1\nplugins: {{data_loader: MNISTLoader, model: MNISTMLP, report_generator: MNISTReportGenerator}}\n\
             data_loader: {{data_dir: data}}\ndata_splitting: {{validation_fraction: 0.2}}\n\
             training: {{epochs: 4, early_stopping: true, patience: 1, learning_rate: 0.003}}\n"
        ),
    );
    let summary = project.host(&["run", "config/report.yaml", "--json"]).success().json();
    let reports = PathBuf::from(summary["output_dir"].as_str().unwrap()).join("reports");
    (project, reports)
}

#[test]
fn every_report_page_loads_without_console_messages_or_fetches_and_draws_its_charts() {
    let (project, reports) = report_project("browser check");
    let profile = project.path().join("chromium-profile");

    // The check itself catches console errors: a page with a broken script is flagged.
    let broken = project.write("broken.html", "<html><body><script>undefinedFunction();</script></body></html>");
    let (_, console) = load(&profile, &broken);
    assert!(console.iter().any(|l| l.contains("undefinedFunction is not defined")), "{console:?}");

    for page in PAGES {
        let path = reports.join(page);
        let (dom, console) = load(&profile, &path);
        assert!(console.is_empty(), "{page} logged: {console:?}");
        assert!(dom.contains("<svg"), "{page} has no chart");
        // Self-contained: nothing is fetched when the page is viewed.
        for reference in ["src=\"http", "href=\"http", "url(http", "<link", "<script", "@import"] {
            assert!(!dom.contains(reference), "{page} refers to something outside it: {reference}");
        }
    }
    let pages: Vec<(String, PathBuf)> =
        PAGES.iter().map(|page| (format!("mnist-{page}"), reports.join(page))).collect();
    assert_layout(&pages.iter().map(|(name, path)| (name.as_str(), path.as_path())).collect::<Vec<_>>());
    let evaluation = std::fs::read_to_string(reports.join("evaluation.html")).unwrap();
    for part in ["row-normalised", "ROC", "AUC", "Confidence in the predicted class", "Misclassified test images"] {
        assert!(evaluation.contains(part), "evaluation.html lacks {part}");
    }
    let training = std::fs::read_to_string(reports.join("training.html")).unwrap();
    for part in ["Learning rate", "Time per epoch", "Best epoch"] {
        assert!(training.contains(part), "training.html lacks {part}");
    }
    let index = std::fs::read_to_string(reports.join("index.html")).unwrap();
    for part in ["environment", "Plugins", "Lineage", "config"] {
        assert!(index.contains(part), "index.html lacks {part}");
    }

    // The charts were drawn: each page's screenshot holds many pixels of its chart colours.
    let blue = [0x25, 0x63, 0xeb]; // first series
    let orange = [0xf9, 0x73, 0x16]; // second series
    let indigo = [0x63, 0x66, 0xf1]; // lineage boxes
    for (page, colors, minimum) in [
        ("data.html", vec![blue, orange], 400),
        ("training.html", vec![blue, orange], 400),
        ("evaluation.html", vec![blue, orange], 400),
        ("index.html", vec![indigo], 200),
    ] {
        let (pixels, width) = screenshot(&profile, &reports.join(page), &project.path().join(format!("{page}.png")));
        assert_eq!(width, 1280);
        for color in colors {
            let count = pixels.iter().filter(|&&p| near(p, color)).count();
            assert!(count >= minimum, "{page}: only {count} pixels of {color:?}; its charts were not drawn");
        }
        let blank = pixels.iter().filter(|p| p.iter().all(|&c| c > 245)).count();
        assert!(blank < pixels.len(), "{page} rendered blank");
    }
}

#[test]
fn an_experiment_name_that_is_a_script_is_shown_as_text() {
    let payload = "<script>document.title='pwned'</script><img src=x onerror=\"document.title='pwned'\">";
    let (project, reports) = report_project(payload);
    let profile = project.path().join("chromium-profile");
    for page in PAGES {
        let (dom, console) = load(&profile, &reports.join(page));
        assert!(console.is_empty(), "{page} logged: {console:?}");
        let title = dom.split("<title>").nth(1).and_then(|t| t.split("</title>").next()).unwrap_or_default();
        assert!(title.contains("&lt;script&gt;"), "{page}: the payload ran or vanished: {title}");
        assert!(!dom.contains("<script>document.title"), "{page}: the payload is markup, not text");
        assert!(
            dom.contains("&lt;script&gt;document.title='pwned'&lt;/script&gt;"),
            "{page}: the payload is not shown as text"
        );
        assert!(!dom.contains("<img src=\"x\""), "{page}: the img payload became an element");
    }
}

on_every_store! {
fn report_generators_swap_by_config_and_past_runs_get_reports_again() {
    let (project, reports) = report_project("regenerated");
    let record = project.host(&["runs", "list", "--json"]).success().json();
    let run_id = record[0]["run_id"].as_str().unwrap().to_owned();
    let markdown = library("markdown-report").display().to_string();
    let mapping = std::fs::read_to_string(project.path().join("config/class_mapping_config.yaml")).unwrap();
    project.mapping(&format!("{mapping}  MarkdownReport: {markdown}\n"));

    // Another report generator, by config alone.
    let config = std::fs::read_to_string(project.path().join("config/report.yaml")).unwrap();
    project.write(
        "config/markdown.yaml",
        &config.replace("report_generator: MNISTReportGenerator", "report_generator: MarkdownReport"),
    );
    let summary = project.host(&["run", "config/markdown.yaml", "--json"]).success().json();
    let page =
        std::fs::read_to_string(PathBuf::from(summary["output_dir"].as_str().unwrap()).join("reports/report.md"))
            .unwrap();
    assert!(page.starts_with("# regenerated\n") && page.contains("| test accuracy | "), "{page}");

    // The past run's reports again, with its own generator and with another, beside the
    // recorded ones (which still verify).
    let again = project.host(&["report", &run_id, "--json"]).success().json();
    let folder = PathBuf::from(again["output_dir"].as_str().unwrap());
    assert_eq!(folder, reports.parent().unwrap().join("regenerated/MNISTReportGenerator"));
    let index = std::fs::read_to_string(folder.join("index.html")).unwrap();
    assert!(index.contains(&run_id), "the regenerated page names the run");
    let original = std::fs::read_to_string(reports.join("evaluation.html")).unwrap();
    let regenerated = std::fs::read_to_string(folder.join("evaluation.html")).unwrap();
    assert_eq!(regenerated, original, "the same generator on the same record draws the same page");
    project.host(&["verify", &run_id]).success();

    // Without the stage cache, the data is loaded and prepared again.
    std::fs::remove_dir_all(project.path().join("provenance.cache")).unwrap();
    let other =
        project.host(&["report", &run_id, "--generator", "MarkdownReport", "-o", "md"]).success().stdout.clone();
    assert!(other.contains("with MarkdownReport"), "{other}");
    let page = std::fs::read_to_string(project.path().join("md/report.md")).unwrap();
    assert!(page.contains(&format!("| run | `{run_id}` |")), "{page}");

    // Data that no longer matches the record is refused, not drawn.
    let labels = project.path().join("data/t10k-labels-idx1-ubyte");
    let mut bytes = std::fs::read(&labels).unwrap();
    let last = bytes.len() - 1;
    bytes[last] = (bytes[last] + 1) % 10;
    std::fs::write(&labels, &bytes).unwrap();
    let refused = project.host(&["report", &run_id, "-o", "stale"]);
    assert!(refused.failure().contains("the data changed since run"), "{}", refused.stderr);
    let unknown = project.host(&["report", &run_id, "--generator", "NoSuchReport"]);
    assert!(unknown.failure().contains("NoSuchReport"), "{}", unknown.stderr);
}}

on_every_store! {
fn compare_html_overlays_the_runs_curves_in_a_page_that_renders() {
    let (project, _) = report_project("compared");
    let config = std::fs::read_to_string(project.path().join("config/report.yaml")).unwrap();
    project.write(
        "config/other.yaml",
        &format!(
            "{}description: \"<script>document.title='pwned'</script>\"\n",
            config.replace("learning_rate: 0.003", "learning_rate: 0.01")
        ),
    );
    project.host(&["run", "config/other.yaml"]).success();
    let runs = project.host(&["runs", "list", "--json"]).success().json();
    let ids: Vec<&str> = runs.as_array().unwrap().iter().map(|r| r["run_id"].as_str().unwrap()).collect();
    let compared = project.host(&["runs", "compare", ids[0], ids[1], "--html", "compare.html"]);
    assert!(compared.success().stderr.contains("wrote compare.html"), "{}", compared.stderr);
    let page = project.path().join("compare.html");
    let text = std::fs::read_to_string(&page).unwrap();
    for part in ["training.learning_rate=0.01", "training.learning_rate=0.003", "<h3>val_loss</h3>", "Final metrics"] {
        assert!(text.contains(part), "compare.html lacks {part}");
    }
    let profile = project.path().join("chromium-profile");
    let (dom, console) = load(&profile, &page);
    assert!(console.is_empty(), "{console:?}");
    assert!(
        dom.contains("&lt;script&gt;document.title='pwned'&lt;/script&gt;")
            && dom.contains("<title>Run comparison</title>")
    );
    assert_layout(&[(&format!("compare-{}", backend_name()), &page)]);
    let (pixels, _) = screenshot(&profile, &page, &project.path().join("compare.png"));
    for color in [[0x25, 0x63, 0xeb], [0xf9, 0x73, 0x16]] {
        let count = pixels.iter().filter(|&&p| near(p, color)).count();
        assert!(count >= 400, "only {count} pixels of {color:?}: the overlaid curves were not drawn");
    }
}}

#[test]
fn reports_restyle_from_a_templates_folder_without_recompiling() {
    let (project, _) = report_project("restyled");
    let base =
        std::fs::read_to_string(crate::support::workspace_root().join("plugins/mnist-plugin/templates/base.html"))
            .unwrap();
    assert!(base.contains("background: #0f172a"), "the built-in header colour changed; update this test");
    project.write(
        "house-style/base.html",
        &base.replace("background: #0f172a", "background: #7c2d12").replace("<body>", "<body><p>House style</p>"),
    );
    let config = std::fs::read_to_string(project.path().join("config/report.yaml")).unwrap();
    project.write("config/styled.yaml", &format!("{config}reporting: {{templates_dir: house-style}}\n"));
    let summary = project.host(&["run", "config/styled.yaml", "--json"]).success().json();
    let reports = PathBuf::from(summary["output_dir"].as_str().unwrap()).join("reports");
    let profile = project.path().join("chromium-profile");
    for page in PAGES {
        let (dom, console) = load(&profile, &reports.join(page));
        assert!(console.is_empty(), "{page} logged: {console:?}");
        assert!(dom.contains("House style"), "{page} kept the built-in base template");
    }
    let (pixels, _) = screenshot(&profile, &reports.join("index.html"), &project.path().join("styled.png"));
    let header = pixels.iter().filter(|&&p| near(p, [0x7c, 0x2d, 0x12])).count();
    assert!(header > 10_000, "the restyled header is not drawn ({header} pixels)");

    project.write("config/missing.yaml", &format!("{config}reporting: {{templates_dir: no-such-folder}}\n"));
    let missing = project.host(&["run", "config/missing.yaml"]);
    assert!(
        missing.failure().contains("reporting.templates_dir: no-such-folder is not a folder"),
        "{}",
        missing.stderr
    );
    std::fs::create_dir_all(project.path().join("empty-style")).unwrap();
    project.write("config/empty.yaml", &format!("{config}reporting: {{templates_dir: empty-style}}\n"));
    let empty = project.host(&["run", "config/empty.yaml"]);
    assert!(empty.failure().contains("empty-style holds none of base.html"), "{}", empty.stderr);
}
