//! The offline demo: a simulated chain served by loopback providers, each behind a fault proxy
//! with the profile of `src/demo_profiles.toml`, followed into a fresh file with the API on.

use std::path::PathBuf;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{App, AppError, AppOptions};
use crate::config::Config;

/// Options for `blockstreamer demo`.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub db: PathBuf,
    pub block_time: Duration,
    pub providers: usize,
    pub seed: u64,
    /// Where the API listens (None: no API).
    pub listen: Option<std::net::SocketAddr>,
}

/// Run the offline demo: a simulated chain served by loopback providers, followed into `db`.
pub async fn run_demo(opts: DemoOptions, cancel: CancellationToken) -> Result<(), AppError> {
    use crate::sim::{self, SimChain, SimOptions, SimProviderOptions};

    // The simulated chain is new on every start, so an old demo file would not link to it.
    for suffix in ["", "-wal", "-shm"] {
        let mut p = opts.db.clone().into_os_string();
        p.push(suffix);
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(AppError::Other(format!("cannot remove old demo database {p:?}: {e}")));
            }
        }
    }
    // A bounded window: the demo may run for days (ingest follows the tip, so it never asks
    // for blocks this old).
    let chain = SimChain::new(SimOptions {
        block_time: opts.block_time,
        seed: opts.seed,
        keep_blocks: Some(DEMO_KEEP_BLOCKS),
        ..SimOptions::default()
    });
    let profiles: std::collections::BTreeMap<String, DemoProfile> =
        toml::from_str(include_str!("../demo_profiles.toml"))
            .map_err(|e| AppError::Other(format!("demo_profiles.toml: {e}")))?;
    let mut servers = Vec::new();
    let mut proxies = Vec::new();
    let mut config = Config { poll_interval_ms: 250, ..Config::default() };
    for name in DEMO_PROFILES.iter().take(opts.providers.clamp(1, DEMO_PROFILES.len())) {
        let sp = sim::serve(chain.clone(), SimProviderOptions { name: format!("sim-{name}"), lag: 0 })
            .await
            .map_err(|e| AppError::Other(format!("cannot start simulated provider: {e}")))?;
        let profile = profiles.get(*name).cloned().unwrap_or_default();
        let script = profile.faults.validated().map_err(|e| AppError::Other(format!("demo profile {name}: {e}")))?;
        let rules = script.rules.len();
        let proxy = crate::fault::FaultProxy::start(&sp.url(), std::net::SocketAddr::from(([127, 0, 0, 1], 0)), script)
            .await
            .map_err(|e| AppError::Other(format!("cannot start the {name} fault proxy: {e}")))?;
        tracing::info!(provider = %name, url = %proxy.url(), rules, "demo provider listening");
        let entry = crate::config::ProviderConfig {
            name: Some((*name).to_string()),
            weight: profile.weight,
            max_rps: profile.max_rps,
            burst: profile.burst,
            price_per_million_credits: profile.price_per_million_credits,
            ws_url: profile.websocket.then(|| sp.ws_url()),
            ..provider_entry(proxy.url())
        };
        config.providers.push(entry);
        servers.push(sp);
        proxies.push(proxy);
    }
    config.index.contracts = vec![demo_contract()];
    // Spot checks every second: the liar serves nothing once caught, but is still asked for a
    // block's receipts now and then, and its forged logs are caught (shown on the dashboard).
    config.index.audit_secs = 1;
    // Short alert windows, so an alert opens and resolves within the demo's first minute.
    config.alerts.window_secs = 20;
    config.alerts.interval_ms = 1000;
    config.alerts.min_samples = 5;
    let clock = tokio::spawn(sim::run_clock(chain.clone(), cancel.clone()));
    tracing::info!(db = %opts.db.display(), head = chain.head_number(), "demo: following the simulated chain (Ctrl-C to stop)");
    if opts.listen.is_none() {
        config.api.enabled = false;
    }
    let app = App::start(AppOptions { db: opts.db.clone(), config, progress: false }).await?;
    let api = match app.start_api(opts.listen, &cancel).await {
        Ok(a) => a,
        Err(e) => {
            app.shutdown().await;
            return Err(e);
        }
    };
    if let Some(a) = &api {
        let base = format!("http://{}", a.addr());
        println!("api listening on {base}");
        println!("dashboard: {base}/");
        println!("try:  curl {base}/v1/blocks/latest");
        println!("      curl {base}/v1/providers");
        println!("      curl -N {base}/v1/stream/blocks");
        println!(
            "      curl -s {base}/v1/sql -d '{{\"sql\": \"SELECT provider, count(*) FROM provider_requests_view GROUP BY 1\"}}'"
        );
    }
    let res = app.follow(Some(0), &cancel).await;
    if let Some(a) = api {
        a.stop().await;
    }
    app.shutdown().await;
    let _ = clock.await;
    for p in &proxies {
        p.stop().await;
    }
    for sp in &servers {
        sp.stop();
    }
    res
}

/// The simulated token the demo decodes: its `Transfer` and `Approval` events become the tables
/// `evt_token_transfer` and `evt_token_approval` (and their `_view`s).
pub fn demo_contract() -> crate::config::ContractConfig {
    crate::config::ContractConfig {
        name: "token".into(),
        address: vec![crate::sim::token(0).to_string()],
        events: vec![
            "event Transfer(address indexed from, address indexed to, uint256 value)".into(),
            "event Approval(address indexed owner, address indexed spender, uint256 value)".into(),
        ],
        ..crate::config::ContractConfig::default()
    }
}

/// Blocks the demo's simulated chain keeps in memory (~12 KB each).
pub const DEMO_KEEP_BLOCKS: usize = 2048;

/// The demo's providers, each behind a fault proxy running the script of the same name in
/// `demo_profiles.toml`.
pub const DEMO_PROFILES: [&str; 5] = ["steady", "flaky", "laggard", "throttled", "liar"];

/// One demo provider as `demo_profiles.toml` describes it: settings of its fleet entry and the
/// fault script of the proxy in front of it.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct DemoProfile {
    weight: Option<f64>,
    max_rps: Option<f64>,
    burst: Option<u32>,
    price_per_million_credits: Option<f64>,
    /// Subscribe to `newHeads` on the simulated server's WebSocket face (straight to it: the
    /// fault proxy speaks HTTP only).
    #[serde(default)]
    websocket: bool,
    #[serde(default)]
    faults: crate::fault::Script,
}

fn provider_entry(url: String) -> crate::config::ProviderConfig {
    let mut c = Config::default();
    c.add_rpc_urls(&[url]);
    c.providers.remove(0)
}
