//! The bare jsonrpsee proxy `/rpc` is compared with (BENCHMARKS.md §9): a jsonrpsee server that
//! forwards the benchmarked methods to one node with a jsonrpsee HTTP client, params and
//! results passed through as raw JSON. No store, no fleet, no telemetry.
//!
//! `cargo run --release --example rpc_proxy -- 127.0.0.1:9545 http://127.0.0.1:8545`

use jsonrpsee::core::client::ClientT;
use jsonrpsee::http_client::{HttpClient, HttpClientBuilder};
use jsonrpsee::server::{RpcModule, Server};
use jsonrpsee::types::ErrorObjectOwned;
use serde_json::value::RawValue;

use blockstreamer::provider::forward::RawParams;

const METHODS: [&str; 6] =
    ["eth_chainId", "eth_blockNumber", "eth_getBlockByNumber", "eth_getLogs", "eth_call", "eth_getBalance"];

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:9545".into());
    let upstream = args.next().unwrap_or_else(|| "http://127.0.0.1:8545".into());
    let client = HttpClientBuilder::default().max_concurrent_requests(1024).build(&upstream)?;
    let mut module = RpcModule::new(client);
    for method in METHODS {
        module.register_async_method(method, move |params, node: std::sync::Arc<HttpClient>, _| async move {
            let raw = params.as_str().map(|p| RawValue::from_string(p.to_string())).transpose();
            let raw = raw.map_err(|e| ErrorObjectOwned::owned(-32602, e.to_string(), None::<()>))?;
            node.request::<Box<RawValue>, _>(method, RawParams(raw))
                .await
                .map_err(|e| ErrorObjectOwned::owned(-32000, e.to_string(), None::<()>))
        })?;
    }
    let server = Server::builder().build(&listen).await?;
    eprintln!("proxy {} -> {upstream}", server.local_addr()?);
    server.start(module).stopped().await;
    Ok(())
}
