//! Tags and notes on runs (`host runs tag`, `host runs note`, the UI): checked here, appended to
//! the store beside the run's record (never part of it, so verify and replay ignore them).

use anyhow::bail;
use store::{Annotation, AnnotationKind};

/// The longest tag key, tag value and note accepted.
pub const MAX_KEY: usize = 128;
pub const MAX_VALUE: usize = 4096;
pub const MAX_NOTE: usize = 64 * 1024;

/// Who is annotating: the user and machine (`ana@node-1`).
pub fn author() -> String {
    let user = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| account_name());
    format!("{user}@{}", crate::liveness::hostname())
}

/// The name of this process's user account, from the password database.
fn account_name() -> String {
    // SAFETY: getuid cannot fail; getpwuid returns null or a pointer to a static entry whose
    // name is a NUL-terminated string, read at once, before any other call could replace it.
    unsafe {
        let uid = libc::getuid();
        let entry = libc::getpwuid(uid);
        if entry.is_null() || (*entry).pw_name.is_null() {
            return format!("uid{uid}");
        }
        std::ffi::CStr::from_ptr((*entry).pw_name).to_string_lossy().into_owned()
    }
}

/// A tag key must be usable in a query as `tags.KEY` without quotes.
fn check_key(key: &str) -> anyhow::Result<()> {
    if key.is_empty() || key.len() > MAX_KEY {
        bail!("a tag key is 1 to {MAX_KEY} characters; got {}", key.len());
    }
    if let Some(bad) = key.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))) {
        bail!(
            "tag key {key:?} has {bad:?}; keys are letters, digits, '_', '-' and '.' (so `tags.KEY` works in --filter)"
        );
    }
    if key.starts_with('.') || key.ends_with('.') || key.contains("..") {
        bail!("tag key {key:?}: dots only between names");
    }
    Ok(())
}

fn check_text(what: &str, text: &str, max: usize) -> anyhow::Result<()> {
    if text.len() > max {
        bail!("a {what} is at most {max} bytes; this one is {}", text.len());
    }
    if text.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        bail!("a {what} cannot hold control characters");
    }
    // Characters that reorder or hide text would let a tag show as something else.
    if let Some(c) = text
        .chars()
        .find(|c| matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}'))
    {
        bail!("a {what} cannot hold {:?} (it reorders or hides text)", c);
    }
    Ok(())
}

/// `key=value` sets a tag; `key=` (nothing after `=`) removes it.
pub fn tag(assignment: &str) -> anyhow::Result<Annotation> {
    let Some((key, value)) = assignment.split_once('=') else {
        bail!("{assignment:?}: a tag is key=value (key= removes it)");
    };
    tag_pair(key.trim(), value)
}

/// A tag `key` set to `value`; an empty value removes it.
pub fn tag_pair(key: &str, value: &str) -> anyhow::Result<Annotation> {
    check_key(key)?;
    check_text("tag value", value, MAX_VALUE)?;
    if value.contains(['\n', '\t']) {
        bail!("a tag value is one line; a note can hold several");
    }
    Ok(Annotation {
        kind: AnnotationKind::Tag,
        name: Some(key.to_owned()),
        value: (!value.is_empty()).then(|| value.to_owned()),
        author: author(),
        created_at: record::now_rfc3339(),
    })
}

/// A note of free text.
pub fn note(text: &str) -> anyhow::Result<Annotation> {
    if text.trim().is_empty() {
        bail!("a note needs some text");
    }
    check_text("note", text, MAX_NOTE)?;
    Ok(Annotation {
        kind: AnnotationKind::Note,
        name: None,
        value: Some(text.to_owned()),
        author: author(),
        created_at: record::now_rfc3339(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_key_value_and_an_empty_value_removes() {
        let set = tag("owner=ana=b").unwrap();
        assert_eq!((set.name.as_deref(), set.value.as_deref()), (Some("owner"), Some("ana=b")));
        assert_eq!(tag("owner=").unwrap().value, None);
        assert!(tag("owner").unwrap_err().to_string().contains("key=value"));
        assert!(tag("own er=x").unwrap_err().to_string().contains("' '"));
        assert!(tag("a..b=x").is_err());
        assert!(tag("k=a\u{1b}[31m").unwrap_err().to_string().contains("control"));
        assert!(tag(&format!("{}=x", "k".repeat(MAX_KEY + 1))).is_err());
        assert!(note("  ").is_err());
        assert_eq!(note("two\nlines").unwrap().value.as_deref(), Some("two\nlines"));
        assert!(tag("k=two\nlines").unwrap_err().to_string().contains("one line"));
        assert!(tag("k=a\u{202e}live").unwrap_err().to_string().contains("reorders"));
        assert!(tag_pair("x=y", "z").is_err(), "a key cannot hold '='");
    }
}
