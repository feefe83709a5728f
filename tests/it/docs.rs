//! The documentation cannot drift from the code: every relative link (and anchor) resolves,
//! every configuration key is in `docs/configuration.md` with its real default, every table,
//! view and view column of the schema is named in `docs/schema.md`, and no file points at a
//! document that is not in the repository.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use blockstreamer::config::Config;
use serde_json::Value;

use crate::helpers::{inspect, temp_db};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

/// The markdown files users read.
fn pages() -> Vec<PathBuf> {
    let mut v = vec![root().join("README.md"), root().join("BENCHMARKS.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .expect("docs/")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    docs.sort();
    v.extend(docs);
    v
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(text: &str) -> Vec<String> {
    text.lines().filter_map(|l| l.strip_prefix('#')).map(|h| slug(h.trim_start_matches('#'))).collect()
}

/// `](target)` links of a markdown text.
fn links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("](") {
        rest = &rest[i + 2..];
        if let Some(end) = rest.find(')') {
            out.push(rest[..end].to_string());
        }
    }
    out
}

#[test]
fn every_relative_link_and_anchor_resolves() {
    let mut checked = 0;
    for page in pages() {
        let text = read(&page);
        let dir = page.parent().expect("dir");
        for link in links(&text) {
            if link.starts_with("http://") || link.starts_with("https://") || link.starts_with("mailto:") {
                continue;
            }
            let (file, anchor) = link.split_once('#').map_or((link.as_str(), None), |(f, a)| (f, Some(a)));
            let target = if file.is_empty() { page.clone() } else { dir.join(file) };
            assert!(target.exists(), "{}: link to {link} — {} does not exist", page.display(), target.display());
            if let Some(a) = anchor {
                let there = read(&target);
                assert!(
                    anchors(&there).iter().any(|s| s == a),
                    "{}: no heading #{a} in {}",
                    page.display(),
                    target.display()
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 15, "only {checked} links found");
}

#[test]
fn no_file_points_at_a_document_outside_the_repository() {
    let needles = [format!("{}{}", "RELIABILITY", ".md"), format!("{}{}", "shared", "/")];
    let mut files = pages();
    for dir in ["src", "tests", "bench", "deploy", "examples", "sql", "migrations"] {
        let mut stack = vec![root().join(dir)];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).expect("dir").filter_map(Result::ok) {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| {
                    ["rs", "md", "sql", "toml", "sh", "yml", "json"].contains(&x.to_str().unwrap_or(""))
                }) {
                    files.push(p);
                }
            }
        }
    }
    for f in files {
        let text = read(&f);
        for n in &needles {
            assert!(!text.contains(n.as_str()), "{} refers to {n}, which is not in the repository", f.display());
        }
    }
}

/// Dotted keys and values of a JSON object (`routing.strategy` → "best").
fn flatten(prefix: &str, v: &Value, out: &mut BTreeMap<String, Value>) {
    match v {
        Value::Object(m) if !(prefix.ends_with("credits") && prefix.starts_with("providers")) => {
            for (k, v) in m {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                flatten(&key, v, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.clone());
        }
    }
}

/// The rows of the key tables in configuration.md: key → default cell.
fn documented_keys() -> BTreeMap<String, String> {
    let text = read(&root().join("docs/configuration.md"));
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.split(" | ").collect();
        let key = cells[0].trim_start_matches("| ").trim_matches('`').to_string();
        if let Some(default) = cells.get(1) {
            out.insert(key, default.trim_matches('`').to_string());
        }
    }
    out
}

fn same(documented: &str, real: &Value) -> bool {
    if documented == "unset" || documented == "required" {
        return real.is_null();
    }
    match (serde_json::from_str::<Value>(documented), real) {
        (Ok(Value::Number(a)), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (Ok(a), b) => a == *b,
        (Err(_), _) => false,
    }
}

#[test]
fn every_configuration_key_is_documented_with_its_default() {
    let mut real = BTreeMap::new();
    let defaults = serde_json::to_value(Config::default()).expect("config as JSON");
    flatten("", &defaults, &mut real);
    real.remove("providers");
    let mut c = Config::default();
    c.add_rpc_urls(&["http://x".into()]);
    let mut provider = serde_json::to_value(&c.providers[0]).expect("provider as JSON");
    provider["url"] = Value::Null; // required: no default
    flatten("providers[]", &provider, &mut real);
    let filter = serde_json::to_value(blockstreamer::config::LogFilterConfig::default()).expect("filter as JSON");
    flatten("index.logs[]", &filter, &mut real);
    let mut contract = serde_json::to_value(blockstreamer::config::ContractConfig::default()).expect("contract");
    contract["name"] = Value::Null; // required: no default
    flatten("index.contracts[]", &contract, &mut real);
    let with_key = Config::from_toml("[[rpc.keys]]\nname = \"n\"\nkey = \"k\"\n", "t.toml").expect("a key");
    let mut key = serde_json::to_value(&with_key.rpc.keys[0]).expect("key");
    (key["name"], key["key"]) = (Value::Null, Value::Null); // required: no default
    flatten("rpc.keys[]", &key, &mut real);
    let nats = serde_json::to_value(blockstreamer::config::NatsSinkConfig::default()).expect("nats");
    flatten("sink.nats", &nats, &mut real);
    let documented = documented_keys();
    for (key, value) in &real {
        let Some(d) = documented.get(key) else { panic!("docs/configuration.md does not list `{key}`") };
        assert!(same(d, value), "docs/configuration.md says `{key}` defaults to {d}, the code says {value}");
    }
    let config_keys: Vec<&String> = documented.keys().filter(|k| real.contains_key(*k) || !k.contains('.')).collect();
    for key in documented
        .keys()
        .filter(|k| !k.starts_with("--") && k.chars().all(|c| c.is_ascii_lowercase() || "_.[]".contains(c)))
    {
        assert!(real.contains_key(key), "docs/configuration.md lists `{key}`, which is not a configuration key");
    }
    assert!(config_keys.len() > 60, "{} keys", config_keys.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_table_view_and_view_column_is_in_the_schema_page() {
    let db = temp_db();
    blockstreamer::store::Store::open(&blockstreamer::store::StoreOptions::new(&db.path))
        .await
        .expect("migrate")
        .close()
        .await;
    let pool = inspect(&db.path).await;
    let page = read(&root().join("docs/schema.md"));
    let named = |name: &str| page.contains(&format!("`{name}`"));
    let objects: Vec<(String, String)> = sqlx::query_as(
        "SELECT type, name FROM sqlite_schema WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite_%'",
    )
    .fetch_all(&pool)
    .await
    .expect("schema");
    assert!(objects.len() > 25, "{objects:?}");
    for (kind, name) in &objects {
        assert!(named(name), "docs/schema.md does not name the {kind} `{name}`");
        if kind == "view" && !name.starts_with("api_") {
            let cols: Vec<(String,)> =
                sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT name FROM pragma_table_info('{name}')")))
                    .fetch_all(&pool)
                    .await
                    .expect("columns");
            for (c,) in cols {
                assert!(named(&c), "docs/schema.md does not describe column `{c}` of `{name}`");
            }
        }
    }
    pool.close().await;
}
