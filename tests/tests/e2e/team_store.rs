//! The team store end to end: PostgreSQL chosen by `--db`, `HOST_DB` or the database config;
//! its password never shown or recorded; 32 processes writing at once; copying a SQLite store
//! in and back; a server restart in the middle of a run; faults as one clear line.

use std::process::Stdio;
use std::time::Duration;

use store::testing::{Cluster, ClusterOptions};

use crate::store::faulty_project;
use crate::support::{Project, endless_training_project, files_under, spawn_host, wait_until_running};

const SECRET: &str = "hunter2-not-shown";

/// Every text a run left behind: its folder's files and the store's views of it.
fn everything_about(project: &Project, run_id: &str, db: &str) -> String {
    let mut text = String::new();
    for args in [
        vec!["runs", "show", run_id, "--json", "--db", db],
        vec!["runs", "show", run_id, "--db", db],
        vec!["export", run_id, "--format", "json", "--db", db],
        vec!["export", run_id, "--db", db],
        vec!["store", "info", "--db", db],
        vec!["runs", "list", "--db", db],
    ] {
        let run = project.host(&args);
        run.success();
        text.push_str(&run.stdout);
        text.push_str(&run.stderr);
    }
    for file in files_under(&project.path().join("runs")) {
        text.push_str(&String::from_utf8_lossy(&std::fs::read(file).unwrap()));
    }
    text
}

#[test]
fn a_password_from_the_url_pgpassword_or_pgpass_is_used_and_never_shown() {
    let cluster =
        Cluster::start(ClusterOptions { password: Some(SECRET.into()), ..ClusterOptions::default() }).unwrap();
    let project = faulty_project();
    let url = cluster.url("postgres");
    let with_password = url.replace("postgres@", &format!("postgres:{SECRET}@"));
    let run = project.host(&["run", "config/run.yaml", "--json", "--db", &with_password]);
    run.success();
    assert!(!run.stdout.contains(SECRET) && !run.stderr.contains(SECRET));
    let run_id = run.json()["run_id"].as_str().unwrap().to_owned();
    assert!(!everything_about(&project, &run_id, &with_password).contains(SECRET));
    // The password from PGPASSWORD, then from a password file.
    let mut command = project.command(&["runs", "list", "--json", "--db", &url]);
    let listed = crate::support::Run::from(command.env("PGPASSWORD", SECRET).output().unwrap()).success().json();
    assert_eq!(listed[0]["run_id"], run_id.as_str());
    let home = tempfile::tempdir().unwrap();
    let pgpass = home.path().join(".pgpass");
    std::fs::write(&pgpass, format!("127.0.0.1:{}:*:postgres:{SECRET}\n", cluster.port())).unwrap();
    let mut command = project.command(&["runs", "list", "--json", "--db", &url]);
    command.env("HOME", home.path()).env_remove("PGPASSWORD");
    crate::support::Run::from(command.output().unwrap()).success();
    // A wrong one: one line, naming the server and the fix, not the password tried.
    let wrong = project.host(&["runs", "list", "--db", &url.replace("postgres@", "postgres:nope-nope@")]);
    let stderr = wrong.failure();
    assert!(stderr.contains(&format!("PostgreSQL at 127.0.0.1:{} refused user postgres", cluster.port())), "{stderr}");
    assert!(stderr.contains("check the password") && !stderr.contains("nope-nope"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    // Sweep workers get the store without the password on their command lines.
    project.write(
        "config/sweep.yaml",
        "experiment_name: swept\nplugins: {data_loader: FaultyLoader, model: FaultyModel}\n\
         data_splitting: {use_predefined_test: false, train_ratio: 0.6, val_ratio: 0.2, test_ratio: 0.2}\n\
         sweep:\n  method: grid\n  parameters:\n    seed: [1, 2]\n",
    );
    let swept = project.host(&["sweep", "config/sweep.yaml", "--json", "--db", &with_password]).success().json();
    assert!(swept["trials"].as_array().unwrap().iter().all(|t| t["status"] == "completed"), "{swept:#}");
    for file in files_under(&project.path().join("runs/sweeps")) {
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(!text.contains(SECRET), "{}", file.display());
    }
}

#[test]
fn the_database_config_url_or_host_db_choose_postgres() {
    let project = faulty_project();
    let url = Cluster::shared().create_database().unwrap();
    project.write("config/database_config.yaml", &format!("url: {url}\n"));
    project.host(&["run", "config/run.yaml"]).success();
    let info = project.host(&["store", "info", "--json"]).success().json();
    assert_eq!((info["backend"].as_str(), info["runs_by_status"]["completed"].as_i64()), (Some("postgres"), Some(1)));
    assert!(!project.path().join("provenance.db").exists());
    // --db wins over the config; HOST_DB is --db.
    let sqlite = project.path().join("local.db");
    project.host(&["run", "config/run.yaml", "--db", sqlite.to_str().unwrap()]).success();
    let mut command = project.command(&["store", "info", "--json"]);
    let local = crate::support::Run::from(command.env("HOST_DB", &sqlite).output().unwrap()).success().json();
    assert_eq!((local["backend"].as_str(), local["runs_by_status"]["completed"].as_i64()), (Some("sqlite"), Some(1)));
}

#[test]
fn thirty_two_processes_write_runs_to_one_postgres_store_at_once_and_every_row_is_there() {
    let project = faulty_project();
    let url = Cluster::shared().create_database().unwrap();
    let children: Vec<_> = (0..32)
        .map(|_| {
            project
                .command(&["-q", "run", "config/run.yaml", "--json", "--force", "--db", &url])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut records = Vec::new();
    for child in children {
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        records.push(serde_json::from_slice::<serde_json::Value>(&output.stdout).unwrap());
    }
    let runs = project.host(&["runs", "list", "--json", "--limit", "100", "--db", &url]).success().json();
    assert_eq!(runs.as_array().unwrap().iter().filter(|r| r["status"] == "completed").count(), 32);
    for record in &records {
        let run_id = record["run_id"].as_str().unwrap();
        let stored = project.host(&["export", run_id, "--format", "json", "--db", &url]).success().json();
        assert_eq!(stored["stages"], record["stages"]);
        assert_eq!(stored["artifacts"], record["artifacts"]);
        assert_eq!(stored["metrics"], record["metrics"]);
        assert!(!stored["lineage"].as_array().unwrap().is_empty());
    }
    let info = project.host(&["store", "info", "--json", "--db", &url]).success().json();
    assert_eq!(info["runs_by_status"]["completed"], 32);
}

#[test]
fn store_copy_brings_a_sqlite_store_into_postgres_and_back_once() {
    let project = faulty_project();
    for _ in 0..3 {
        project.host(&["run", "config/run.yaml", "--force"]).success();
    }
    let laptop = project.path().join("provenance.db").display().to_string();
    let team = Cluster::shared().create_database().unwrap();
    let copy = project.host(&["store", "copy", "--from", &laptop, "--to", &team]);
    copy.success();
    assert!(
        copy.stdout.starts_with("copied 3 runs and 0 new sweeps (the trials of others merged) from "),
        "{}",
        copy.stdout
    );
    let again = project.host(&["store", "copy", "--from", &laptop, "--to", &team, "--json"]).success().json();
    assert_eq!((again["runs"].as_i64(), again["skipped"].as_i64()), (Some(0), Some(3)));
    let runs = project.host(&["runs", "list", "--json", "--db", &laptop]).success().json();
    for run in runs.as_array().unwrap() {
        let run_id = run["run_id"].as_str().unwrap();
        let here = project.host(&["export", run_id, "--format", "json", "--db", &laptop]).success().json();
        let there = project.host(&["export", run_id, "--format", "json", "--db", &team]).success().json();
        assert_eq!(here, there);
        project.host(&["verify", run_id, "--db", &team]).success();
    }
    let back = project.path().join("back.db").display().to_string();
    let copied = project.host(&["store", "copy", "--from", &team, "--to", &back, "--json"]).success().json();
    assert_eq!(copied["runs"], 3);
}

#[test]
fn a_run_keeps_going_through_a_server_restart() {
    let mut cluster = Cluster::start(ClusterOptions::default()).unwrap();
    let project = endless_training_project(4);
    let url = cluster.create_database().unwrap();
    project.write("config/database_config.yaml", &format!("url: {url}\nretry_seconds: 120\n"));
    let mut child = spawn_host(&project, &["-q", "run", "config/long.yaml"], Stdio::null());
    let run_id = wait_until_running(&project);
    std::thread::sleep(Duration::from_millis(500));
    cluster.stop_server();
    std::thread::sleep(Duration::from_secs(3));
    assert!(child.try_wait().unwrap().is_none(), "the run waited for the server instead of failing");
    cluster.start_server().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(130));
    let record = project.host(&["runs", "show", &run_id, "--json"]).success().json();
    assert_eq!(record["status"], "cancelled", "{record:#}");
    let stages: Vec<&str> = record["stages"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(stages, ["load", "prepare", "train"], "{record:#}");
    assert!(record["history"].as_object().unwrap().len() > 1, "epochs were recorded after the restart");
}

#[test]
fn an_unknown_scheme_or_an_unreachable_server_is_one_clear_line() {
    let project = Project::new();
    let unknown = project.host(&["runs", "list", "--db", "mysql://h/db"]);
    assert_eq!(
        unknown.failure().trim(),
        "error: the store given by --db or HOST_DB: unknown store URL scheme `mysql`; use postgres://user@host:port/database or a SQLite file path"
    );
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let refused = project.host(&["runs", "list", "--db", &format!("postgres://postgres@127.0.0.1:{free}/db")]);
    assert_eq!(
        refused.failure().trim(),
        format!(
            "error: cannot reach PostgreSQL at 127.0.0.1:{free}: connection refused; is the server running and listening there?"
        )
    );
}
