//! The simulated fleet: one simulated chain served as several JSON-RPC providers on loopback,
//! each a real jsonrpsee server (HTTP, and WebSocket with `newHeads` on the same port), so the
//! whole pipeline runs with no network.

mod block;
mod chain;

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use alloy_primitives::B256;
use jsonrpsee::RpcModule;
use jsonrpsee::server::{Server, ServerConfig, ServerHandle};
use jsonrpsee::types::{ErrorObjectOwned, Params};
use serde_json::value::RawValue;
use tokio_util::sync::CancellationToken;

pub use block::{SimBlock, SimLog, TOKENS, approval_topic, token, transfer_topic};
pub use chain::{SimChain, SimOptions};

/// How one simulated provider sees the chain.
#[derive(Debug, Clone, Default)]
pub struct SimProviderOptions {
    pub name: String,
    /// Blocks behind the real head this provider reports and serves.
    pub lag: u64,
}

/// Shared state of one simulated provider's server.
#[derive(Debug)]
struct Ctx {
    chain: Arc<SimChain>,
    lag: u64,
    calls: Arc<AtomicU64>,
}

impl Ctx {
    fn visible_head(&self) -> u64 {
        self.chain.head_number().saturating_sub(self.lag)
    }
}

/// A running simulated provider.
#[derive(Debug)]
pub struct SimProvider {
    pub name: String,
    pub addr: SocketAddr,
    calls: Arc<AtomicU64>,
    handle: ServerHandle,
}

impl SimProvider {
    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `ws://127.0.0.1:PORT` (the same server; `eth_subscribe("newHeads")` works there).
    pub fn ws_url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// JSON-RPC calls served so far (each element of a batch counts once).
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Stop serving.
    pub fn stop(&self) {
        let _ = self.handle.stop();
    }
}

fn invalid_params(msg: impl Into<String>) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(-32602, msg.into(), None::<()>)
}

fn parse_number(tag: &str, head: u64) -> Result<Option<u64>, ErrorObjectOwned> {
    match tag {
        "latest" | "safe" | "finalized" | "pending" => Ok(Some(head)),
        "earliest" => Ok(Some(0)),
        s => {
            let digits = s.strip_prefix("0x").ok_or_else(|| invalid_params(format!("bad block tag {s:?}")))?;
            let n = u64::from_str_radix(digits, 16).map_err(|_| invalid_params(format!("bad block number {s:?}")))?;
            Ok((n <= head).then_some(n))
        }
    }
}

fn module(ctx: Ctx) -> Result<RpcModule<Ctx>, jsonrpsee::core::RegisterMethodError> {
    let mut m = RpcModule::new(ctx);
    m.register_method("eth_chainId", |_, c, _| {
        c.calls.fetch_add(1, Ordering::Relaxed);
        format!("{:#x}", c.chain.chain_id())
    })?;
    m.register_method("net_version", |_, c, _| {
        c.calls.fetch_add(1, Ordering::Relaxed);
        c.chain.chain_id().to_string()
    })?;
    m.register_method("eth_blockNumber", |_, c, _| {
        c.calls.fetch_add(1, Ordering::Relaxed);
        format!("{:#x}", c.visible_head())
    })?;
    m.register_method(
        "eth_getBlockByNumber",
        |p: Params<'_>, c, _| -> Result<Option<Box<RawValue>>, ErrorObjectOwned> {
            c.calls.fetch_add(1, Ordering::Relaxed);
            let (tag, full): (String, bool) = p.parse()?;
            let head = c.visible_head();
            let Some(n) = parse_number(&tag, head)? else {
                return Ok(None);
            };
            Ok(c.chain.block(n).map(|b| b.json(full)))
        },
    )?;
    m.register_method(
        "eth_getBlockByHash",
        |p: Params<'_>, c, _| -> Result<Option<Box<RawValue>>, ErrorObjectOwned> {
            c.calls.fetch_add(1, Ordering::Relaxed);
            let (hash, full): (String, bool) = p.parse()?;
            let hash = B256::from_str(&hash).map_err(|_| invalid_params(format!("bad block hash {hash:?}")))?;
            let head = c.visible_head();
            Ok(c.chain.block_by_hash(&hash).filter(|b| b.number <= head).map(|b| b.json(full)))
        },
    )?;
    m.register_method(
        "eth_getBlockReceipts",
        |p: Params<'_>, c, _| -> Result<Option<Box<RawValue>>, ErrorObjectOwned> {
            c.calls.fetch_add(1, Ordering::Relaxed);
            let (id,): (String,) = p.parse()?;
            let head = c.visible_head();
            let block = if id.len() == 66 {
                let hash = B256::from_str(&id).map_err(|_| invalid_params(format!("bad block hash {id:?}")))?;
                c.chain.block_by_hash(&hash).filter(|b| b.number <= head)
            } else {
                parse_number(&id, head)?.and_then(|n| c.chain.block(n))
            };
            Ok(block.map(|b| b.receipts_json()))
        },
    )?;
    m.register_method(
        "eth_getTransactionReceipt",
        |p: Params<'_>, c, _| -> Result<Option<Box<RawValue>>, ErrorObjectOwned> {
            c.calls.fetch_add(1, Ordering::Relaxed);
            let (hash,): (String,) = p.parse()?;
            let hash = B256::from_str(&hash).map_err(|_| invalid_params(format!("bad transaction hash {hash:?}")))?;
            let head = c.visible_head();
            Ok(c.chain.block_of_tx(&hash).filter(|b| b.number <= head).and_then(|b| b.receipt_json(&hash)))
        },
    )?;
    m.register_subscription("eth_subscribe", "eth_subscription", "eth_unsubscribe", new_heads)?;
    Ok(m)
}

/// `eth_subscribe("newHeads")`: the provider's visible head each time it changes (a new block,
/// or the new branch's head after a reorg), as a header.
async fn new_heads(
    p: Params<'static>,
    pending: jsonrpsee::PendingSubscriptionSink,
    c: Arc<Ctx>,
    _: jsonrpsee::Extensions,
) -> jsonrpsee::core::SubscriptionResult {
    c.calls.fetch_add(1, Ordering::Relaxed);
    let kind = match p.parse::<(String,)>() {
        Ok((k,)) => k,
        Err(e) => {
            pending.reject(e).await;
            return Ok(());
        }
    };
    if kind != "newHeads" {
        pending.reject(invalid_params(format!("unsupported subscription {kind:?}"))).await;
        return Ok(());
    }
    let sink = pending.accept().await?;
    let mut changes = c.chain.changes();
    let mut last = None;
    loop {
        if let Some(b) = c.chain.block(c.visible_head())
            && last != Some(b.hash)
        {
            last = Some(b.hash);
            sink.send(b.json(false)).await?;
        }
        tokio::select! {
            () = sink.closed() => return Ok(()),
            r = changes.changed() => if r.is_err() { return Ok(()) },
        }
    }
}

/// Serve `chain` as one provider on 127.0.0.1 (an OS-chosen port).
pub async fn serve(chain: Arc<SimChain>, opts: SimProviderOptions) -> std::io::Result<SimProvider> {
    let config = ServerConfig::builder().max_response_body_size(u32::MAX).max_connections(1024).build();
    let server = Server::builder().set_config(config).build("127.0.0.1:0").await?;
    let addr = server.local_addr()?;
    let calls = Arc::new(AtomicU64::new(0));
    let m =
        module(Ctx { chain, lag: opts.lag, calls: calls.clone() }).map_err(|e| std::io::Error::other(e.to_string()))?;
    let handle = server.start(m);
    Ok(SimProvider { name: opts.name, addr, calls, handle })
}

/// Mine on the chain's block clock until cancelled.
pub async fn run_clock(chain: Arc<SimChain>, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(chain.block_time());
    tick.tick().await;
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = tick.tick() => {
                let before = chain.reorgs();
                let head = chain.tick();
                if chain.reorgs() > before {
                    tracing::info!(head, "sim: the simulated chain reorganised");
                }
            }
        }
    }
}
