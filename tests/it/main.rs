//! The integration suite: one binary (faster to link), real anvil, real SQLite files.

// Test helpers are `pub` for sibling modules; the lint is about library APIs.
#![allow(unreachable_pub)]

mod bed;
mod helpers;
mod http;
mod relay;

mod anvil_backfill;
mod anvil_follow;
mod anvil_logs;
mod api;
mod api_alerts;
mod api_guard;
mod api_security;
mod api_stream;
mod cli;
mod dashboard;
mod db_faults;
mod decoded;
mod demo;
mod deploy;
mod docs;
mod export;
mod heads;
mod kill9;
mod logs_faults;
mod logs_reorg;
mod migrations;
mod net_faults;
#[cfg(feature = "otlp")]
mod otlp;
mod read_scale;
mod readonly;
mod receipt_faults;
mod reorg_faults;
mod repair_crash;
mod reports;
mod rpc_endpoint;
mod rpc_faults;
mod rpc_ws;
mod sim_fleet;
mod sink_faults;
mod sink_nats;
mod startup;
mod val_faults;
