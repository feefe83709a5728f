//! blockstreamer: follow an EVM chain through a fleet of JSON-RPC providers into one SQLite file.
//!
//! Reading guide, in data-flow order (a module never imports one further down this list,
//! except through the shared vocabulary in `model` and `types`):
//! - [`provider`]: one upstream — jsonrpsee HTTP or WebSocket client, timeouts, size caps, an
//!   HTTP layer that sees status codes and `Retry-After`, outcome classification, one telemetry
//!   sample per call, the `newHeads` subscription.
//! - [`fleet`]: many providers — head tracking (subscriptions, polls scheduled by role, price
//!   and block time), selection, failover and retries.
//! - [`ingest`]: follow the head, validate parent links, walk back through reorgs, backfill
//!   ranges, long catch-ups through the store's bulk path.
//! - [`store`]: SQLite — migrations, one writer, batched commits, the telemetry writer and its
//!   minute rollups, retention, the read side the API uses.
//! - [`api`]: HTTP — blocks, transactions, provider health, alerts, the SSE stream, read-only
//!   SQL, exports, Prometheus metrics and the built-in dashboard, served by its own hyper
//!   accept loop.
//! - [`export`]: files out — CSV, JSON lines and Parquet in chunks, from read-only connections.
//! - [`sim`]: a simulated chain served by jsonrpsee servers on loopback, HTTP and WebSocket
//!   (demo and tests).
//! - [`fault`]: a scriptable fault-injecting JSON-RPC proxy (tests, demo, `faultproxy` command).
//! - [`index`]: what is indexed besides blocks (shared vocabulary): log filters, contracts'
//!   events as typed tables, decoding a log into a row.
//! - [`app`]: the composition root that wires them together (and the demo's fault profiles).

pub mod api;
pub mod app;
pub mod config;
pub mod consume;
pub mod export;
pub mod failpoint;
pub mod fault;
pub mod fleet;
pub mod index;
pub mod ingest;
pub mod model;
pub mod provider;
pub mod rawjson;
pub mod rawlogs;
pub mod sim;
pub mod sink;
pub mod store;
pub mod types;
