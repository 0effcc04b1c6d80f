//! The one place user-facing output is printed: aligned tables for people, JSON for scripts.
//! Logs go to stderr through tracing; results go to stdout through here.

use serde::Serialize;

/// Prints `value` as pretty JSON on stdout.
pub fn print_json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Formats rows under headers with columns padded to their widest cell.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
        padded.join("  ").trim_end().to_owned()
    };
    let mut out = line(headers.to_vec());
    for row in rows {
        out.push('\n');
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// The first 12 hex digits of a SHA-256, enough to tell builds apart in a table.
pub fn short_hash(sha256: &str) -> &str {
    &sha256[..sha256.len().min(12)]
}

#[cfg(test)]
mod tests {
    #[test]
    fn table_pads_columns() {
        let rows = vec![vec!["MNISTLoader".into(), "Loader".into()], vec!["M".into(), "Model".into()]];
        assert_eq!(
            super::table(&["CLASS", "KIND"], &rows),
            "CLASS        KIND\nMNISTLoader  Loader\nM            Model"
        );
    }
}
