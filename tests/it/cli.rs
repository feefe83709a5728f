//! The binary's command-line contract: bad config is a clear error naming the field, exit ≠ 0;
//! API keys never reach the log.

use std::process::Command;

fn run(args: &[&str], envs: &[(&str, &str)]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_blockstreamer"))
        .args(args)
        .envs(envs.iter().copied())
        .output()
        .expect("run binary");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn bad_config_names_the_field_and_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("x.db");
    let db = db.to_str().expect("utf8");
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "poll_interval_ms = \"fast\"\n").expect("write");
    let (code, text) = run(&["run", "--config", cfg.to_str().expect("utf8"), "--db", db], &[]);
    assert_ne!(code, 0);
    assert!(text.contains("poll_interval_ms"), "{text}");

    std::fs::write(&cfg, "max_reorg_depht = 3\n").expect("write");
    let (code, text) = run(&["run", "--config", cfg.to_str().expect("utf8"), "--db", db], &[]);
    assert_ne!(code, 0);
    assert!(text.contains("max_reorg_depht"), "{text}");

    let (code, text) = run(&["run", "--db", db], &[]);
    assert_ne!(code, 0);
    assert!(text.contains("providers"), "{text}");

    std::fs::write(&cfg, "[[providers]]\nname = \"x\"\nurl = \"https://h.example/v2/${BS_TEST_KEY_UNSET}\"\n")
        .expect("write");
    let (code, text) = run(&["run", "--config", cfg.to_str().expect("utf8"), "--db", db], &[]);
    assert_ne!(code, 0);
    assert!(text.contains("providers[0].url") && text.contains("BS_TEST_KEY_UNSET"), "{text}");
}

#[test]
fn api_keys_never_reach_the_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("x.db");
    let cfg = dir.path().join("c.toml");
    // A provider that refuses connections: start-up logs its URL and the failures.
    let port = crate::helpers::free_port();
    std::fs::write(
        &cfg,
        format!("[[providers]]\nname = \"keyed\"\nurl = \"http://127.0.0.1:{port}/v2/${{BS_TEST_KEY}}\"\n"),
    )
    .expect("write");
    // It keeps retrying the unreachable provider; stop it after a few retries.
    let child = Command::new(env!("CARGO_BIN_EXE_blockstreamer"))
        .args([
            "backfill",
            "--config",
            cfg.to_str().expect("utf8"),
            "--db",
            db.to_str().expect("utf8"),
            "--from",
            "0",
            "--to",
            "1",
        ])
        .env("BS_TEST_KEY", "sekr1t-KEY-value")
        .env("RUST_LOG", "debug")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let pid = child.id();
    let killer = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(2));
        let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
    });
    let out = child.wait_with_output().expect("output");
    let _ = killer.join();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("keyed"), "the provider is logged: {text}");
    assert!(!text.contains("sekr1t-KEY-value"), "the key leaked: {text}");
}
