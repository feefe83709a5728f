//! deploy/: the Prometheus rules and config pass `promtool` (check + the rule unit tests), and
//! every metric the Grafana dashboard and the rules use is one the binary exports.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn promtool() -> PathBuf {
    crate::helpers::find_tool("PROMTOOL", &["promtool"], ".ci/run extracts it from Debian's prometheus package")
}

fn run_promtool(args: &[&str]) {
    let out = Command::new(promtool())
        .args(args)
        .current_dir(root().join("deploy/prometheus"))
        .output()
        .expect("run promtool");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool {args:?}: {text}");
    assert!(text.contains("SUCCESS"), "promtool {args:?}: {text}");
}

#[test]
fn prometheus_rules_and_config_pass_promtool() {
    run_promtool(&["check", "rules", "alerts.yml"]);
    run_promtool(&["check", "config", "prometheus.yml"]);
    run_promtool(&["test", "rules", "alerts_test.yml"]);
}

/// `blockstreamer_*` names in a text, with histogram suffixes folded to the metric's name.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("blockstreamer_") {
        let tail = &rest[i..];
        let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
        let name = &tail[..end];
        let base = ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(name);
        out.insert(base.to_string());
        rest = &tail[end..];
    }
    out
}

fn rust_sources(dir: &Path, out: &mut String) {
    for e in std::fs::read_dir(dir).expect("read src").filter_map(Result::ok) {
        let p = e.path();
        if p.is_dir() {
            rust_sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push_str(&std::fs::read_to_string(&p).expect("read source"));
        }
    }
}

#[test]
fn dashboards_and_rules_use_only_exported_metrics() {
    let mut src = String::new();
    rust_sources(&root().join("src"), &mut src);
    // Names the code passes to the metrics macros (string literals).
    let exported: BTreeSet<String> =
        metric_names(&src).into_iter().filter(|n| src.contains(&format!("\"{n}\""))).collect();
    assert!(exported.len() > 20, "{exported:?}");
    let dashboard = std::fs::read_to_string(root().join("deploy/grafana/blockstreamer.json")).expect("dashboard");
    let parsed: serde_json::Value = serde_json::from_str(&dashboard).expect("dashboard is JSON");
    assert!(parsed["panels"].as_array().is_some_and(|p| p.len() >= 10), "panels");
    let rules = std::fs::read_to_string(root().join("deploy/prometheus/alerts.yml")).expect("rules");
    for (what, text) in [("dashboard", &dashboard), ("alert rules", &rules)] {
        let used = metric_names(text);
        assert!(used.len() >= 5, "{what} uses {used:?}");
        let unknown: Vec<&String> = used.iter().filter(|n| !exported.contains(*n)).collect();
        assert!(unknown.is_empty(), "{what} uses metrics the binary does not export: {unknown:?}");
    }
    // The panels the issue asks for are there.
    for needle in ["latency", "error rate", "throttle rate", "lag", "head", "Ingest rate", "Reorgs", "gaps", "Credits"]
    {
        assert!(
            parsed["panels"].as_array().is_some_and(|p| p
                .iter()
                .any(|x| x["title"].as_str().is_some_and(|t| t.to_lowercase().contains(&needle.to_lowercase())))),
            "a panel about {needle}"
        );
    }
}

#[test]
fn the_scale_out_config_loads_and_resolves() {
    let c = blockstreamer::config::Config::load(&root().join("deploy/scale-out/fleet.toml")).expect("fleet.toml loads");
    let env = |k: &str| match k {
        "RPC_URL" => Some("https://rpc.example/v2/key".to_string()),
        "API_KEY" => Some("k".repeat(32)),
        _ => None,
    };
    c.check_env(env).expect("environment checks");
    let providers = c.resolve(env).expect("resolves");
    assert_eq!(providers.len(), 1);
    let sink = c.sink.nats.as_ref().expect("[sink.nats]");
    assert_eq!((sink.url.as_str(), sink.stream.as_str()), ("nats://nats:4222", "blockstreamer"));
    let compose = std::fs::read_to_string(root().join("deploy/scale-out/docker-compose.yml")).expect("compose");
    for needle in ["-js", "deploy/scale-out/Dockerfile", "consume", "fleet.toml"] {
        assert!(compose.contains(needle), "the compose file has {needle}");
    }
}
