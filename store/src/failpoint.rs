//! Failpoints for the fault tests: with `HOST_FAILPOINT=NAME` (or `NAME@N`, the Nth time) the
//! process stops where it reaches `pause(NAME)`, says so on stderr and waits to be killed, so a
//! test can `kill -9` it at an exact point (inside a store transaction, half-way through the
//! reports). Without the variable a failpoint costs one comparison. It lives in the store crate
//! because the store's transaction is the innermost point that needs one; the host uses it too.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The variable's name and the hit it waits for.
fn armed() -> Option<&'static (String, usize)> {
    static ARMED: OnceLock<Option<(String, usize)>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let value = std::env::var("HOST_FAILPOINT").ok()?;
            Some(match value.split_once('@') {
                Some((name, hit)) => (name.to_owned(), hit.parse().unwrap_or(1)),
                None => (value, 1),
            })
        })
        .as_ref()
}

/// Whether `HOST_FAILPOINT` names this point (for code that must be in a shape the point can
/// stop inside, such as an open transaction).
pub fn armed_at(name: &str) -> bool {
    armed().is_some_and(|(wanted, _)| wanted == name)
}

/// Stops here for good if `HOST_FAILPOINT` names this point and this is the hit it asks for.
pub fn pause(name: &str) {
    static HITS: AtomicUsize = AtomicUsize::new(0);
    let Some((wanted, hit)) = armed() else { return };
    if wanted != name || HITS.fetch_add(1, Ordering::SeqCst) + 1 != *hit {
        return;
    }
    eprintln!("failpoint {name}@{hit} reached: waiting to be killed (pid {})", std::process::id());
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}
