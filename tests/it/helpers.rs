//! Test helpers: a real anvil on a free loopback port, temp databases, and DB inspection.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::sync::Once;
use std::time::{Duration, Instant};

use jsonrpsee::core::client::ClientT;
use jsonrpsee::http_client::{HttpClient, HttpClientBuilder};
use jsonrpsee::rpc_params;
use serde_json::Value;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::{Row, SqlitePool};

/// Tracing for tests, once, only when TEST_LOG is set.
pub fn init_tracing() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(
                    std::env::var("TEST_LOG").unwrap_or_else(|_| "info".into()),
                ))
                .with_test_writer()
                .try_init();
        }
    });
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

/// An external tool: `$var` if set, else the first of `names` on PATH; panics with `hint`.
pub fn find_tool(var: &str, names: &[&str], hint: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(var) {
        return PathBuf::from(p);
    }
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        for name in names {
            let p = Path::new(dir).join(name);
            if p.is_file() {
                return p;
            }
        }
    }
    panic!("{} not found: set {var} or put it on PATH ({hint})", names.join(" / "));
}

fn anvil_bin() -> PathBuf {
    find_tool("ANVIL_BIN", &["anvil"], ".ci/run installs it from npm")
}

/// A running anvil, killed (SIGKILL by PID) on drop.
pub struct Anvil {
    child: Child,
    pub port: u16,
    pub client: HttpClient,
}

impl Anvil {
    /// Start anvil on a free loopback port with extra arguments; waits until it answers.
    pub async fn start(extra: &[&str]) -> Self {
        for _ in 0..5 {
            let port = free_port();
            // `--max-persisted-states 0`: anvil otherwise dumps old states under
            // ~/.foundry/anvil/tmp and, when killed, never removes them (84 GB on this machine).
            let child = Command::new(anvil_bin())
                .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--silent", "--max-persisted-states", "0"])
                .args(extra)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn anvil");
            let client = HttpClientBuilder::default()
                .request_timeout(Duration::from_secs(30))
                .build(format!("http://127.0.0.1:{port}"))
                .expect("client");
            let mut a = Self { child, port, client };
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if a.client.request::<String, _>("eth_chainId", rpc_params![]).await.is_ok() {
                    return a;
                }
                if let Ok(Some(_)) = a.child.try_wait() {
                    break; // port taken; try another
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let _ = a.child.kill();
        }
        panic!("anvil did not start");
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub async fn call(&self, method: &str, params: jsonrpsee::core::params::ArrayParams) -> Value {
        self.client.request::<Value, _>(method, params).await.unwrap_or_else(|e| panic!("anvil {method}: {e}"))
    }

    pub async fn head(&self) -> u64 {
        let v = self.call("eth_blockNumber", rpc_params![]).await;
        hex_u64(&v)
    }

    pub async fn mine(&self, n: u64) {
        self.call("anvil_mine", rpc_params![format!("{n:#x}")]).await;
    }

    pub async fn accounts(&self) -> Vec<String> {
        let v = self.call("eth_accounts", rpc_params![]).await;
        v.as_array().expect("accounts").iter().map(|a| a.as_str().expect("addr").to_string()).collect()
    }

    /// Mine `blocks` blocks with `txs` value transfers each (automine off, then evm_mine).
    pub async fn mine_with_txs(&self, blocks: u64, txs: usize) {
        let accts = self.accounts().await;
        self.call("evm_setAutomine", rpc_params![false]).await;
        for b in 0..blocks {
            let mut batch = jsonrpsee::core::params::BatchRequestBuilder::new();
            for i in 0..txs {
                let from = &accts[i % accts.len()];
                let to = &accts[(i + 1 + usize::try_from(b).unwrap_or(0)) % accts.len()];
                let value = format!("{:#x}", 1_000 + b * 100 + i as u64);
                batch
                    .insert(
                        "eth_sendTransaction",
                        rpc_params![serde_json::json!({"from": from, "to": to, "value": value})],
                    )
                    .expect("batch");
            }
            let r = self.client.batch_request::<Value>(batch).await.expect("send txs");
            assert_eq!(r.num_successful_calls(), txs, "all transactions accepted");
            self.call("evm_mine", rpc_params![]).await;
        }
        self.call("evm_setAutomine", rpc_params![true]).await;
    }

    pub async fn block(&self, number: u64, full: bool) -> Value {
        self.call("eth_getBlockByNumber", rpc_params![format!("{number:#x}"), full]).await
    }

    /// Replace the newest `depth` blocks; one transfer in the first new block makes the new
    /// branch differ from the old even when timestamps coincide.
    pub async fn reorg(&self, depth: u64) {
        let accts = self.accounts().await;
        let tx = serde_json::json!({"from": accts[3], "to": accts[4], "value": format!("{:#x}", 7_777 + depth)});
        self.call("anvil_reorg", rpc_params![depth, vec![(tx, 0u64)]]).await;
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn hex_u64(v: &Value) -> u64 {
    let s = v.as_str().unwrap_or_else(|| panic!("expected hex string, got {v}"));
    u64::from_str_radix(s.trim_start_matches("0x"), 16).expect("hex")
}

/// A temp dir holding one database file.
pub struct TempDb {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
}

pub fn temp_db() -> TempDb {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("test.db");
    TempDb { dir, path }
}

/// A separate read-write pool for inspecting a database from a test.
pub async fn inspect(path: &Path) -> SqlitePool {
    let opts =
        SqliteConnectOptions::from_str("sqlite:").expect("opts").filename(path).busy_timeout(Duration::from_secs(10));
    SqlitePoolOptions::new().max_connections(2).connect_with(opts).await.expect("open db")
}

pub async fn scalar_i64(pool: &SqlitePool, sql: &'static str) -> i64 {
    sqlx::query_scalar::<_, i64>(sql).fetch_one(pool).await.unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// `PRAGMA integrity_check` must say ok.
pub async fn integrity_ok(pool: &SqlitePool) {
    let rows = sqlx::query("PRAGMA integrity_check").fetch_all(pool).await.expect("integrity_check");
    let first: String = rows[0].try_get(0).expect("text");
    assert_eq!(first, "ok", "integrity_check");
    let fk = sqlx::query("PRAGMA foreign_key_check").fetch_all(pool).await.expect("fk check");
    assert!(fk.is_empty(), "foreign_key_check found {} rows", fk.len());
}

/// Canonical (number, hash) pairs from the DB for `from..=to`.
pub async fn canonical_hashes(pool: &SqlitePool, from: u64, to: u64) -> Vec<(u64, String)> {
    let rows = sqlx::query("SELECT number, hash FROM canonical_blocks WHERE number BETWEEN ?1 AND ?2 ORDER BY number")
        .bind(i64::try_from(from).expect("i64"))
        .bind(i64::try_from(to).expect("i64"))
        .fetch_all(pool)
        .await
        .expect("canonical");
    rows.iter().map(|r| (u64::try_from(r.get::<i64, _>(0)).expect("u64"), r.get::<String, _>(1))).collect()
}

/// Run `app.follow(Some(0))` in a task until `cancel`.
pub fn spawn_follow(
    app: &std::sync::Arc<blockstreamer::app::App>,
    cancel: &tokio_util::sync::CancellationToken,
) -> tokio::task::JoinHandle<Result<(), blockstreamer::app::AppError>> {
    let app = app.clone();
    let cancel = cancel.clone();
    tokio::spawn(async move { app.follow(Some(0), &cancel).await })
}

/// The height in a `committed tip=N` log line (the binary's acknowledgement of a commit).
pub fn committed_tip(line: &str) -> Option<u64> {
    let rest = line.split("committed tip=").nth(1)?;
    rest.chars().take_while(char::is_ascii_digit).collect::<String>().parse().ok()
}

/// Every height the child acknowledges on stdout, as it prints them.
pub fn acks(out: std::process::ChildStdout) -> std::sync::mpsc::Receiver<u64> {
    use std::io::BufRead;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if let Some(n) = committed_tip(&line) {
                let _ = tx.send(n);
            }
        }
    });
    rx
}

/// The base URL a child prints as `api listening on URL` (`run`, `serve`), read from its stdout.
pub fn api_url(out: std::process::ChildStdout) -> String {
    use std::io::BufRead;
    std::io::BufReader::new(out)
        .lines()
        .map_while(Result::ok)
        .find_map(|l| l.strip_prefix("api listening on ").map(str::to_string))
        .expect("listening line")
}
