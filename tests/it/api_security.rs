//! the fault matrix (docs/testing.md): API-01 (SQL escape attempts), API-02 (runaway queries), API-03 (bind,
//! keys, body limit, per-IP rate limit), API-04 (slow-loris under load).

use std::path::Path;
use std::time::{Duration, Instant};

use blockstreamer::api::{ApiOptions, ApiServer, ApiState, ServeError};
use blockstreamer::store::{Store, StoreOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::api::{fixture_db, serve_db};
use crate::bed::{Bed, Truth, sim_chain};
use crate::helpers::init_tracing;
use crate::http::{self, client, get, post};

pub fn sha256_file(path: &Path) -> String {
    let out = std::process::Command::new("sha256sum").arg(path).output().expect("sha256sum");
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap_or_default().to_string()
}

pub fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// The API-01 list: statements that try to write, attach, vacuum into, change pragmas, read
/// internals or call dangerous functions. `target` is a path outside the data dir, `attached`
/// one inside it; neither may come to exist.
pub fn escape_attempts(t: &str, a: &str) -> Vec<String> {
    vec![
        "INSERT INTO meta (key, value) VALUES ('x', 1)".into(),
        "UPDATE blocks SET canonical = 0".into(),
        "DELETE FROM provider_requests".into(),
        "REPLACE INTO meta (key, value) VALUES ('chain_id', 2)".into(),
        "INSERT INTO meta (key, value) VALUES ('chain_id', 2) ON CONFLICT(key) DO UPDATE SET value = 3".into(),
        "CREATE TABLE evil (x)".into(),
        "CREATE TEMP TABLE evil (x)".into(),
        "CREATE INDEX evil ON blocks (timestamp)".into(),
        "CREATE VIEW evil AS SELECT 1".into(),
        "CREATE TRIGGER evil AFTER INSERT ON meta BEGIN SELECT 1; END".into(),
        "DROP TABLE blocks".into(),
        "DROP VIEW canonical_blocks".into(),
        format!("ATTACH '{a}' AS evil"),
        format!("ATTACH 'file:{a}?mode=rwc' AS evil"),
        format!("VACUUM INTO '{t}'"),
        "VACUUM".into(),
        "PRAGMA writable_schema = ON".into(),
        "PRAGMA journal_mode = DELETE".into(),
        "PRAGMA query_only = OFF".into(),
        "PRAGMA user_version = 1".into(),
        "PRAGMA table_info(blocks)".into(),
        "SELECT 1; DELETE FROM blocks".into(),
        "SELECT 1; SELECT 2".into(),
        "WITH x AS (SELECT 1) DELETE FROM blocks".into(),
        "SELECT load_extension('x')".into(),
        "SELECT readfile('/etc/passwd')".into(),
        format!("SELECT writefile('{t}', 'x')"),
        "BEGIN".into(),
        "BEGIN IMMEDIATE".into(),
        "SAVEPOINT s1".into(),
        "COMMIT".into(),
        "SELECT * FROM sqlite_schema".into(),
        "SELECT * FROM sqlite_master".into(),
        "SELECT * FROM sqlite_temp_master".into(),
        "SELECT * FROM dbstat".into(),
        "SELECT * FROM pragma_table_info('blocks')".into(),
        "SELECT fts3_tokenizer('simple')".into(),
        "ANALYZE".into(),
        "REINDEX".into(),
        "DETACH main".into(),
        "".into(),
        "-- only a comment".into(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_01_sql_readonly_escape_attempts() {
    init_tracing();
    let db = fixture_db().await;
    // `serve` opens the file read-only: nothing may change it, not even a checkpoint.
    let (server, store, base) = serve_db(&db, ApiOptions::default()).await;
    let before = sha256_file(&db.path);
    let dir = db.dir.path();
    let files_before = listing(dir);
    let outside = tempfile::tempdir().expect("tempdir");
    let target = outside.path().join("x.db");
    let attached = dir.join("new.db");
    let t = target.display().to_string();
    let a = attached.display().to_string();
    let attacks = escape_attempts(&t, &a);
    let c = client();
    for sql in &attacks {
        let r = http::sql(&c, &base, sql).await;
        assert!((400..500).contains(&r.status), "{sql:?} answered {}: {}", r.status, r.text());
        r.error_code();
    }
    // A legitimate query still works afterwards on the same pooled connections.
    let r = http::sql(&c, &base, "SELECT count(*) FROM canonical_blocks").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let checked = server.state().sandbox().self_check().expect("query_only still on");
    assert!(checked >= 1, "pooled connections checked");
    server.stop().await;
    assert!(store.checkpoint().await.is_err(), "a read-only store refuses to checkpoint");
    assert_eq!(sha256_file(&db.path), before, "the database file is unchanged");
    assert!(!target.exists() && !attached.exists(), "no file written at the target paths");
    assert_eq!(listing(outside.path()), Vec::<String>::new());
    assert_eq!(listing(dir), files_before, "no new files in the data dir");
    store.close().await;
}

/// Resident bytes of this process. Panics when /proc cannot be read: a check that read 0
/// would pass whatever the memory did.
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("read /proc/self/statm");
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).expect("resident pages in statm");
    assert!(pages > 0, "statm says 0 resident pages: {statm}");
    pages * 4096
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_02_sql_resource_limits() {
    init_tracing();
    let chain = sim_chain(200, 21);
    let mut bed = Bed::new(Truth::Sim(chain.clone()), 2, |c| {
        c.alerts.enabled = false;
    })
    .await;
    let (api, base) = bed.serve_api().await;
    bed.follow(0);
    bed.settle(Duration::from_secs(30)).await;
    // Ingest keeps running at 200 ms blocks throughout.
    let runner = bed.spawn_chain(Duration::from_millis(200));
    // Enough telemetry that a 3-way join of it is a runaway on any machine (2,000³ rows).
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000)
         INSERT INTO provider_requests (ts_ms, provider_id, method, latency_us, outcome, attempt)
         SELECT 0, (SELECT min(id) FROM providers), 'eth_blockNumber', i, 'ok', 1 FROM n",
    )
    .execute(&bed.pool)
    .await
    .expect("synthetic telemetry");
    let started = bed.started.elapsed();
    let c = client();
    let rss0 = rss_bytes();
    let nested = format!("SELECT {}1{}", "1 + (".repeat(1000), ")".repeat(1000));
    let runaway: Vec<(&str, String)> = vec![
        (
            "recursive CTE",
            "WITH RECURSIVE r(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM r) SELECT count(*) FROM r".into(),
        ),
        (
            "3-way cartesian join",
            "SELECT count(*) FROM provider_requests a, provider_requests b, provider_requests c
             WHERE a.latency_us + b.latency_us + c.latency_us > a.id"
                .into(),
        ),
        ("randomblob", "SELECT randomblob(1000000000)".into()),
        ("zeroblob", "SELECT zeroblob(2000000000)".into()),
        ("printf", "SELECT printf('%.*c', 1000000000, 'x')".into()),
        ("nested expression", nested),
        (
            // The classic backtracking pattern ('%a%a…%b' over 'aaaa…') returns in 0.3 ms on
            // SQLite 3.51 (it gives up early when the literal is absent), so this one runs a
            // many-wildcard LIKE over a cartesian product instead.
            "pathological LIKE",
            format!(
                "SELECT count(*) FROM provider_requests a, provider_requests b, provider_requests c
                 WHERE a.method || b.outcome || c.method LIKE '{}%'",
                "%e_t%o".repeat(12)
            ),
        ),
    ];
    for (what, sql) in &runaway {
        let t = Instant::now();
        let r = http::sql(&c, &base, sql).await;
        let took = t.elapsed();
        assert!((400..500).contains(&r.status), "{what}: answered {} {}", r.status, r.text());
        assert!(took <= Duration::from_millis(1200), "{what}: stopped after {took:?}");
    }
    // 1 MB of SQL: refused from the request header alone. Written by hand: the server answers
    // 413 and closes before the body is sent, which a client still writing sees as a broken pipe.
    let t = Instant::now();
    let mut conn = tokio::net::TcpStream::connect(api.addr()).await.expect("connect");
    let head = format!(
        "POST /v1/sql HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        (1 << 20) + 20
    );
    conn.write_all(head.as_bytes()).await.expect("header");
    let _ = conn.write_all(format!("{{\"sql\": \"SELECT 1 {}", " ".repeat(4096)).as_bytes()).await;
    let mut answer = vec![0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut answer)).await.expect("answer").expect("read");
    let status = String::from_utf8_lossy(&answer[..n]).split_whitespace().nth(1).unwrap_or("").to_string();
    assert_eq!(status, "413", "1 MB of SQL");
    assert!(t.elapsed() <= Duration::from_millis(1200), "1 MB of SQL: stopped after {:?}", t.elapsed());
    // Rows and bytes are capped.
    let r = http::sql(&c, &base, "SELECT * FROM provider_requests a, provider_requests b").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert!(v["rows"].as_array().is_some_and(|a| a.len() <= 1000));
    assert_eq!(v["truncated"], serde_json::Value::Bool(true));
    assert!(r.body.len() <= 4 << 20);
    let wide = "WITH RECURSIVE s(x) AS (SELECT 'ab' UNION ALL SELECT x || x FROM s WHERE length(x) < 8000)
                SELECT s.x FROM s, provider_requests a, provider_requests b WHERE length(s.x) >= 8000";
    let r = http::sql(&c, &base, wide).await;
    assert_eq!(r.status, 413, "{}", r.text());
    // 10 slow queries at once: 2 run, the rest are refused at once.
    let slow = "WITH RECURSIVE r(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM r) SELECT count(*) FROM r";
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let (c, base) = (c.clone(), base.clone());
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let r = http::sql(&c, &base, slow).await;
            (r.status, t.elapsed(), r.headers.contains_key("retry-after"))
        }));
    }
    let mut refused = 0;
    for t in tasks {
        let (status, took, retry) = t.await.expect("task");
        if status == 503 {
            refused += 1;
            assert!(retry, "503 carries Retry-After");
            assert!(took < Duration::from_millis(300), "refused at once, not after {took:?}");
        } else {
            assert_eq!(status, 400, "timed out");
        }
    }
    assert!(refused >= 8, "{refused} of 10 refused (cap 2)");
    let grew = rss_bytes().saturating_sub(rss0);
    assert!(grew <= 128 << 20, "RSS grew {} MiB", grew >> 20);
    let worst = bed.samples_between(started, bed.started.elapsed()).iter().map(|s| s.head_lag).max().unwrap_or(0);
    assert!(worst <= 2, "ingest head lag reached {worst} during the attack");
    runner.abort();
    api.stop().await;
    let (_bed, res) = bed.stop().await;
    res.expect("follow");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_03_auth_bind_body_ratelimit() {
    init_tracing();
    let db = fixture_db().await;
    // A non-loopback bind without a key refuses to start.
    let store = Store::open(&StoreOptions::new(&db.path)).await.expect("open");
    let state = ApiState::new(store.clone(), None, ApiOptions::default());
    let r = ApiServer::start("0.0.0.0:0".parse().expect("addr"), state, &CancellationToken::new()).await;
    assert!(matches!(r, Err(ServeError::NeedsKey(_))), "refused: {r:?}");
    store.close().await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_blockstreamer"))
        .args(["serve", "--db"])
        .arg(&db.path)
        .args(["--listen", "0.0.0.0:0", "--run-for", "5"])
        .output()
        .expect("run binary");
    assert!(!out.status.success(), "the binary refuses a public bind without a key");
    assert!(String::from_utf8_lossy(&out.stderr).contains("API key"), "{}", String::from_utf8_lossy(&out.stderr));

    // With a key: loopback by default, SQL and admin need it, bodies are capped, peers limited.
    let opts = ApiOptions {
        api_key: Some("correct horse".into()),
        rate_limit_rps: 5.0,
        rate_limit_burst: 20,
        rate_limit_loopback: true,
        ..ApiOptions::default()
    };
    let (server, store, base) = serve_db(&db, opts).await;
    assert!(server.addr().ip().is_loopback());
    let c = client();
    let body = serde_json::json!({ "sql": "SELECT 1" }).to_string();
    let sql_url = format!("{base}/v1/sql");
    for (auth, want) in [
        (None, 401),
        (Some("Bearer wrong"), 401),
        (Some("Bearer correct hors"), 401),
        (Some("Basic correct horse"), 401),
        (Some("Bearer correct horse"), 200),
    ] {
        let h: Vec<(&str, &str)> = auth.map(|a| vec![("authorization", a)]).unwrap_or_default();
        let r = post(&c, &sql_url, body.clone(), &h).await;
        assert_eq!(r.status, want, "{auth:?}: {}", r.text());
        // With the key: 409, because `serve` never writes (the writing process checkpoints).
        let r = post(&c, &format!("{base}/v1/admin/checkpoint"), "", &h).await;
        assert_eq!(r.status, if want == 200 { 409 } else { want }, "checkpoint {auth:?}: {}", r.text());
    }
    let cfg = crate::http::send(
        &c,
        ::http::Request::get(format!("{base}/v1/admin/config"))
            .header("authorization", "Bearer correct horse")
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .expect("req"),
    )
    .await;
    assert_eq!(cfg.status, 200);
    // A body of 64 KiB + 1 is refused before it is read.
    let big = vec![b' '; 64 * 1024 + 1];
    let r = post(&c, &sql_url, big, &[("authorization", "Bearer correct horse")]).await;
    assert_eq!(r.status, 413);
    // Let the bucket refill, then a 200-request burst: at least 200 - burst refused with Retry-After,
    // whatever X-Forwarded-For claims.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut limited = 0;
    for i in 0..200 {
        let spoof = format!("10.0.{}.{}", i / 256, i % 256);
        let r = crate::http::send(
            &c,
            ::http::Request::get(format!("{base}/healthz"))
                .header("x-forwarded-for", spoof.as_str())
                .body(http_body_util::Full::new(bytes::Bytes::new()))
                .expect("req"),
        )
        .await;
        if r.status == 429 {
            assert!(r.headers.get("retry-after").is_some(), "429 carries Retry-After");
            limited += 1;
        }
    }
    assert!(limited >= 200 - 20 - 2, "{limited} of 200 limited (burst 20)");
    server.stop().await;
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_04_slowloris_and_load() {
    init_tracing();
    let chain = sim_chain(50, 31);
    let mut bed = Bed::new(Truth::Sim(chain.clone()), 2, |c| {
        c.alerts.enabled = false;
        c.api.header_read_timeout_ms = 3000;
        // Every client here is 127.0.0.1: the per-IP cap would refuse the loris connections
        // before the header timeout is what closes them (the cap has its own test).
        c.api.max_connections_per_ip = 1024;
    })
    .await;
    let (api, base) = bed.serve_api().await;
    let addr = api.addr();
    bed.follow(0);
    bed.settle(Duration::from_secs(30)).await;
    let started = bed.started.elapsed();
    let runner = bed.spawn_chain(Duration::from_millis(200));
    // 256 slow-loris connections: a partial request header, one byte every 5 s.
    let mut loris = Vec::new();
    for _ in 0..256 {
        loris.push(tokio::spawn(async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
            let opened = Instant::now();
            let header = b"GET /v1/blocks/latest HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ";
            if s.write_all(&header[..10]).await.is_err() {
                return opened.elapsed();
            }
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                if s.write_all(b"a").await.is_err() || s.flush().await.is_err() {
                    return opened.elapsed();
                }
                if opened.elapsed() > Duration::from_secs(30) {
                    return opened.elapsed();
                }
            }
        }));
    }
    // Meanwhile: 32 connections hammer /v1/blocks/latest for 5 s.
    let c = client();
    let end = Instant::now() + Duration::from_secs(5);
    let mut workers = Vec::new();
    for _ in 0..32 {
        let (c, url) = (c.clone(), format!("{base}/v1/blocks/latest"));
        workers.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut bad = 0u32;
            while Instant::now() < end {
                let t = Instant::now();
                let r = get(&c, &url).await;
                lat.push(t.elapsed());
                if r.status != 200 {
                    bad += 1;
                }
            }
            (lat, bad)
        }));
    }
    let mut all = Vec::new();
    let mut bad = 0;
    for w in workers {
        let (l, b) = w.await.expect("worker");
        all.extend(l);
        bad += b;
    }
    all.sort();
    let p99 = all[(all.len() * 99 / 100).min(all.len() - 1)];
    assert_eq!(bad, 0, "non-2xx answers under load");
    assert!(p99 <= Duration::from_millis(50), "p99 {p99:?} over {} requests", all.len());
    // Every stalled connection is closed by the server within 10 s.
    for l in loris {
        let closed_after = l.await.expect("loris");
        assert!(closed_after <= Duration::from_secs(11), "a stalled connection lived {closed_after:?}");
    }
    let worst = bed.samples_between(started, bed.started.elapsed()).iter().map(|s| s.head_lag).max().unwrap_or(0);
    assert!(worst <= 2, "ingest head lag reached {worst} under load");
    runner.abort();
    api.stop().await;
    let (_bed, res) = bed.stop().await;
    res.expect("follow");
}
