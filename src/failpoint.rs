//! Crash-test failpoints: `BLOCKSTREAMER_FAILPOINT=name` aborts the process when `hit(name)` runs.
//!
//! Used by the crash tests to kill the process at an exact point inside a transaction (for
//! example between demoting the old branch and inserting the new one during a reorg).

use std::sync::OnceLock;

fn armed() -> Option<&'static str> {
    static ARMED: OnceLock<Option<String>> = OnceLock::new();
    ARMED.get_or_init(|| std::env::var("BLOCKSTREAMER_FAILPOINT").ok()).as_deref()
}

/// Abort the process, without unwinding or flushing anything, if failpoint `name` is armed.
pub fn hit(name: &str) {
    if armed() == Some(name) {
        eprintln!("failpoint {name} hit: aborting");
        std::process::abort();
    }
}
