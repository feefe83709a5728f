//! `serve`, `sql`, `export` and `gaps` never write the file they read, refuse files that are not
//! blockstreamer databases (or are at a schema this binary does not know) before touching them,
//! and validate their configuration first; `run` validates before it creates a database.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::api::fixture_db;
use crate::api_security::sha256_file;
use crate::helpers::{inspect, scalar_i64};
use crate::http::{client, get};

fn bin(args: &[&str], db: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_blockstreamer")).args(args).arg("--db").arg(db).output().expect("run");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// Every reading command over `db`, each refused with a message containing `why`.
fn all_refuse(db: &Path, why: &str) {
    let before = sha256_file(db);
    for args in [
        &["serve", "--listen", "127.0.0.1:0", "--run-for", "1"][..],
        &["sql", "SELECT 1"][..],
        &["export", "blocks", "--out", "/dev/null/never"][..],
        &["gaps"][..],
    ] {
        let (ok, text) = bin(args, db);
        assert!(!ok, "{args:?} accepted {}: {text}", db.display());
        assert!(text.contains(why), "{args:?}: {text}");
        assert_eq!(sha256_file(db), before, "{args:?} changed the file");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_never_writes_and_refuses_what_it_cannot_read() {
    let db = fixture_db().await;
    // A live writer holds the file open: its shutdown marker says 0 until it closes.
    let pool = inspect(&db.path).await;
    sqlx::query("UPDATE meta SET value = 0 WHERE key = 'clean_shutdown'").execute(&pool).await.expect("mark");
    pool.close().await;
    let before = sha256_file(&db.path);
    let (ok, text) = bin(&["serve", "--listen", "127.0.0.1:0", "--run-for", "2"], &db.path);
    assert!(ok, "{text}");
    assert!(!text.contains("unclean shutdown"), "a reader does not judge the writer's shutdown: {text}");
    for args in [&["sql", "SELECT count(*) FROM canonical_blocks"][..], &["gaps"][..]] {
        let (ok, text) = bin(args, &db.path);
        assert!(ok, "{args:?}: {text}");
    }
    assert_eq!(sha256_file(&db.path), before, "serve, sql and gaps wrote to the file");
    let pool = inspect(&db.path).await;
    let marker = scalar_i64(&pool, "SELECT value FROM meta WHERE key = 'clean_shutdown'").await;
    assert_eq!(marker, 0, "the writer's kill -9 must stay detectable");

    // A schema this binary does not know: refused, the file unchanged.
    let newer = db.dir.path().join("newer.db");
    std::fs::copy(&db.path, &newer).expect("copy");
    let p = inspect(&newer).await;
    sqlx::query("INSERT INTO refinery_schema_history (version, name, applied_on, checksum) VALUES (999, 'future', '2030-01-01T00:00:00Z', '1')")
        .execute(&p)
        .await
        .expect("future migration");
    p.close().await;
    all_refuse(&newer, "newer blockstreamer");
    pool.close().await;

    // An empty file and a foreign SQLite file: refused, still what they were.
    let empty = db.dir.path().join("empty.db");
    std::fs::write(&empty, b"").expect("empty");
    all_refuse(&empty, "not a blockstreamer database");
    assert_eq!(std::fs::metadata(&empty).expect("stat").len(), 0);
    let foreign = db.dir.path().join("foreign.db");
    let p = inspect_create(&foreign).await;
    sqlx::query("CREATE TABLE notes (body TEXT)").execute(&p).await.expect("create");
    p.close().await;
    all_refuse(&foreign, "another program");
    let p = inspect(&foreign).await;
    assert_eq!(scalar_i64(&p, "SELECT count(*) FROM sqlite_schema").await, 1, "no schema added");
    p.close().await;
    let junk = db.dir.path().join("junk.db");
    std::fs::write(&junk, vec![b'x'; 8192]).expect("junk");
    all_refuse(&junk, "not a SQLite database");
    let (ok, text) = bin(&["serve"], &db.dir.path().join("absent.db"));
    assert!(!ok && text.contains("no database at"), "{text}");
}

/// A pool that may create the file (the test's own fixture of a foreign database).
async fn inspect_create(path: &Path) -> sqlx::SqlitePool {
    use std::str::FromStr;
    let opts =
        sqlx::sqlite::SqliteConnectOptions::from_str("sqlite:").expect("opts").filename(path).create_if_missing(true);
    sqlx::SqlitePool::connect_with(opts).await.expect("create")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_starts_leave_the_file_untouched_and_create_nothing() {
    let db = fixture_db().await;
    let before = sha256_file(&db.path);
    let dir = db.dir.path();
    // A public address without a key (nothing is bound: the check comes first). A key of
    // spaces is no key.
    let cfg = dir.join("spaces.toml");
    std::fs::write(&cfg, "[api]\napi_key = \"   \"\n").expect("write");
    let cfg = cfg.to_str().expect("utf8");
    for extra in [&[][..], &["--config", cfg][..]] {
        let args = [&["serve", "--listen", "192.0.2.1:0", "--run-for", "1"][..], extra].concat();
        let (ok, text) = bin(&args, &db.path);
        assert!(!ok && text.contains("needs an API key"), "{extra:?}: {text}");
    }
    assert_eq!(sha256_file(&db.path), before, "a refused serve changed the file");
    // `run` with a key from an unset variable creates no database.
    let fresh = dir.join("fresh.db");
    let cfg = dir.join("unset.toml");
    std::fs::write(&cfg, "[api]\napi_key = \"${BS_TEST_UNSET_API_KEY}\"\n").expect("write");
    let (ok, text) = bin(
        &["run", "--listen", "127.0.0.1:0", "--config", cfg.to_str().expect("utf8"), "--rpc", "http://127.0.0.1:9"],
        &fresh,
    );
    assert!(!ok && text.contains("BS_TEST_UNSET_API_KEY"), "{text}");
    assert!(!fresh.exists(), "a refused run created {}", fresh.display());
    let (ok, text) = bin(&["run", "--listen", "192.0.2.1:0", "--rpc", "http://127.0.0.1:9", "--run-for", "1"], &fresh);
    assert!(!ok && text.contains("needs an API key"), "{text}");
    assert!(!fresh.exists(), "a refused run created {}", fresh.display());
}

/// A file this user may not write, in a directory it may not write: as another user (root runs
/// the suite in CI), `serve` explains what to do, and serves it with `--immutable`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_the_user_may_not_write_is_served_immutable() {
    if !Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n")) {
        eprintln!("skipped: needs root to run the binary as another user");
        return;
    }
    let db = fixture_db().await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod dir");
    let ro = dir.path().join("ro.db");
    std::fs::copy(&db.path, &ro).expect("copy");
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o444)).expect("chmod file");
    let as_nobody = |args: &[&str]| {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(env!("CARGO_BIN_EXE_blockstreamer"))
            .args(args)
            .arg("--db")
            .arg(&ro);
        c
    };
    let out = as_nobody(&["serve", "--listen", "127.0.0.1:0", "--run-for", "1"]).output().expect("setpriv");
    let text = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("--immutable"), "says what to do: {text}");
    let mut child = as_nobody(&["serve", "--immutable", "--listen", "127.0.0.1:0", "--run-for", "20"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let base = crate::helpers::api_url(child.stdout.take().expect("stdout"));
    let r = tokio::time::timeout(Duration::from_secs(10), get(&client(), &format!("{base}/v1/blocks/latest")))
        .await
        .expect("answered");
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json()["number"].as_u64().is_some(), "{}", r.text());
    let files: Vec<_> = std::fs::read_dir(dir.path()).expect("ls").filter_map(Result::ok).collect();
    assert_eq!(files.len(), 1, "nothing made beside the file");
}
