//! Fixture stores for the tests outside Rust (the Python reader's pytest suite):
//!
//! - `store-fixture query-runs --db LOCATOR`: writes the query language's fixture runs (`a` to
//!   `d`, the runs `store/query-conformance.json` is written against) into the store at
//!   LOCATOR, a SQLite path or a PostgreSQL URL, creating its schema.
//! - `store-fixture postgres [--databases N]`: starts a throwaway PostgreSQL cluster on
//!   127.0.0.1, prints the URLs of N fresh databases (one per line), then `ready`, and keeps it
//!   running until its standard input closes; then stops and removes it.

use std::io::{Read, Write};

use anyhow::{Context, bail};

use store::testing::{Cluster, ClusterOptions};
use store::{Locator, OpenOptions};

const USAGE: &str = "usage: store-fixture query-runs --db LOCATOR | store-fixture postgres [--databases N]";

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["query-runs", "--db", locator] => {
            let locator = Locator::parse(locator).with_context(|| format!("--db {locator}"))?;
            let store = store::open(&locator, &OpenOptions::default())?;
            store::conformance::query_fixture(&*store);
            Ok(())
        }
        ["postgres"] => postgres(1),
        ["postgres", "--databases", count] => {
            postgres(count.parse().with_context(|| format!("--databases {count}: not a number"))?)
        }
        _ => bail!("{USAGE}"),
    }
}

fn postgres(databases: usize) -> anyhow::Result<()> {
    let cluster = Cluster::start(ClusterOptions::default())?;
    let mut out = std::io::stdout().lock();
    for _ in 0..databases {
        writeln!(out, "{}", cluster.create_database()?)?;
    }
    writeln!(out, "ready")?;
    out.flush()?;
    drop(out);
    // Until the test closes our standard input (or dies, which closes it).
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    drop(cluster);
    Ok(())
}
