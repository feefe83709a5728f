//! Multi-row INSERTs from a one-row statement in `sql/`: the VALUES tuple is repeated n times.
//!
//! sqlx pays a fixed cost per executed statement (its worker-thread hand-off), so one statement
//! per row caps ingest far below what SQLite can do; one statement per few dozen rows does not.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// Rows per statement. Fixed, so the prepared-statement cache holds few distinct texts.
pub(crate) const ROWS_PER_STATEMENT: usize = 256;

/// The statement text for `n` rows of `template` (which has exactly one `VALUES (...)` tuple
/// of `?` placeholders). Texts are built once and cached.
pub(crate) fn statement(template: &'static str, n: usize) -> Arc<str> {
    /// (template address, rows) → statement text.
    type Cache = Mutex<HashMap<(usize, usize), Arc<str>>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let key = (template.as_ptr() as usize, n);
    let cache = CACHE.get_or_init(Mutex::default);
    if let Ok(g) = cache.lock()
        && let Some(s) = g.get(&key)
    {
        return s.clone();
    }
    let built: Arc<str> = Arc::from(expand(template, n));
    if let Ok(mut g) = cache.lock() {
        g.insert(key, built.clone());
    }
    built
}

fn expand(template: &str, n: usize) -> String {
    // The templates are ours (sql/store/insert_*.sql); a test checks the shape.
    // `VALUES` at the start of a line: the keyword, not a mention of it in a comment.
    let Some(v) = template.find("\nVALUES").map(|i| i + 1) else { return template.to_string() };
    let Some(open) = template[v..].find('(').map(|i| v + i) else { return template.to_string() };
    let Some(close) = template[open..].find(')').map(|i| open + i) else { return template.to_string() };
    let tuple = &template[open..=close];
    let mut out = String::with_capacity(template.len() + (tuple.len() + 2) * n);
    out.push_str(&template[..open]);
    for i in 0..n.max(1) {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(tuple);
    }
    out.push_str(&template[close + 1..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_the_tuple() {
        let t = "-- repeats the VALUES (x)\nINSERT INTO t (a, b)\nVALUES (?, ?)\nON CONFLICT DO NOTHING";
        assert_eq!(
            expand(t, 3),
            "-- repeats the VALUES (x)\nINSERT INTO t (a, b)\nVALUES (?, ?), (?, ?), (?, ?)\nON CONFLICT DO NOTHING"
        );
        assert_eq!(&*statement(t, 1), t);
    }
}
