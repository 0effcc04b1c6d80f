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
    let rows: Vec<Vec<String>> = rows.iter().map(|row| row.iter().map(|cell| printable(cell)).collect()).collect();
    let rows = &rows;
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

/// `text` with control characters escaped (`\u{1b}` for ESC), so names and messages from a
/// store or a plugin can never drive the terminal they are printed to.
pub fn printable(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_owned();
    }
    text.chars().map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() }).collect()
}

/// The first 12 hex digits of a SHA-256, enough to tell builds apart in a table.
pub fn short_hash(sha256: &str) -> &str {
    &sha256[..sha256.len().min(12)]
}

#[cfg(test)]
mod tests {
    #[test]
    fn control_characters_are_shown_escaped_never_sent_to_the_terminal() {
        assert_eq!(super::printable("plain ünïcode"), "plain ünïcode");
        assert_eq!(super::printable("red\u{1b}[31mtext\r\n"), "red\\u{1b}[31mtext\\r\\n");
        let table = super::table(&["NAME"], &[vec!["\u{1b}]0;pwned\u{7}".into()]]);
        assert!(!table.chars().any(char::is_control) || table.chars().filter(|c| c.is_control()).all(|c| c == '\n'));
        assert!(table.contains("\\u{1b}]0;pwned\\u{7}"), "{table}");
    }

    #[test]
    fn table_pads_columns() {
        let rows = vec![vec!["MNISTLoader".into(), "Loader".into()], vec!["M".into(), "Model".into()]];
        assert_eq!(
            super::table(&["CLASS", "KIND"], &rows),
            "CLASS        KIND\nMNISTLoader  Loader\nM            Model"
        );
    }
}
