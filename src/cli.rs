//! The command line: every subcommand and flag (clap), and how a command's flags become the
//! library's options.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;

use blockstreamer::app::AppOptions;
use blockstreamer::config::Config;
use blockstreamer::export::Format;
use blockstreamer::store::Access;
use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "blockstreamer",
    version,
    about = "Follow an EVM chain through a fleet of JSON-RPC providers into one SQLite file"
)]
pub(crate) struct Cli {
    /// Log lines as `pretty` text or `json` (one object per line: time, level, target, the
    /// event's fields — provider, method, height, latency_ms, outcome, request_id for calls —
    /// and the current span: fetch, commit, reorg, repair). Filter with RUST_LOG, e.g.
    /// `RUST_LOG=info,blockstreamer::rpc=debug` for one line per JSON-RPC call.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Pretty)]
    pub(crate) log_format: LogFormat,
    /// Export the spans (fetch, commit, reorg, repair, and the calls inside them) to this
    /// OTLP/HTTP collector, e.g. http://127.0.0.1:4318/v1/traces (needs `--features otlp`).
    #[arg(long, global = true, env = "BLOCKSTREAMER_OTLP_ENDPOINT")]
    pub(crate) otlp_endpoint: Option<String>,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Offline demo: a simulated chain served by loopback providers, followed into SQLite.
    Demo {
        /// Database file (recreated on every demo start).
        #[arg(long, default_value = "./blockstreamer-demo.db")]
        db: PathBuf,
        /// Simulated block time in milliseconds.
        #[arg(long, default_value_t = 1000)]
        block_time_ms: u64,
        /// How many of the five fault profiles to run, in order: steady, flaky, laggard,
        /// throttled, liar (see src/demo_profiles.toml).
        #[arg(long, default_value_t = 5)]
        providers: usize,
        /// Seed of the simulated chain.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Stop after this many seconds (default: run until Ctrl-C).
        #[arg(long)]
        run_for: Option<u64>,
        /// Where the API listens.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
    },
    /// Follow the chain head from the providers into the database, serving the API.
    Run {
        #[command(flatten)]
        common: Common,
        /// Where the API listens (default: `[api] listen`, 127.0.0.1:8080). Use port 0 for any.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Start height for an empty database (default: the current head).
        #[arg(long)]
        from_block: Option<u64>,
        /// Stop after this many seconds (default: run until Ctrl-C).
        #[arg(long)]
        run_for: Option<u64>,
    },
    /// Fetch and store a range of heights, then exit.
    Backfill {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        from: u64,
        #[arg(long)]
        to: u64,
    },
    /// Serve the API over an existing database without following (a read-only local indexer).
    ///
    /// The file is opened read-only and never written, so it can be served beside the `run`
    /// that writes it, or from a file this user may not write.
    Serve {
        #[command(flatten)]
        file: ReadFile,
        /// TOML config file (only its [api] table is used).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Where the API listens (default: `[api] listen`).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Stop after this many seconds (default: run until Ctrl-C).
        #[arg(long)]
        run_for: Option<u64>,
    },
    /// Export a table to CSV, JSON lines or Parquet files, chunked like cryo.
    ///
    /// Tables: blocks, transactions, receipts, logs, block_sightings, reorgs, gap_repairs and
    /// the file's decoded event tables (evt_<contract>_<event>), by height (--from/--to); and
    /// provider_requests, by time (--since/--until). Finished chunks are skipped on a re-run.
    Export {
        /// The table to export (blocks, transactions, receipts, logs, provider_requests,
        /// block_sightings, reorgs, gap_repairs, or a decoded table such as evt_token_transfer).
        table: String,
        #[command(flatten)]
        file: ReadFile,
        /// File format.
        #[arg(long, value_enum, default_value_t = Format::Parquet)]
        format: Format,
        /// Output directory.
        #[arg(long, default_value = "./export")]
        out: PathBuf,
        /// First height (default: the lowest stored).
        #[arg(long)]
        from: Option<u64>,
        /// Last height, inclusive (default: the highest stored).
        #[arg(long)]
        to: Option<u64>,
        /// Telemetry from this time: ms, 2026-11-28T14:00:00Z, 2026-11-28, or a span ago (24h, 7d).
        #[arg(long)]
        since: Option<String>,
        /// Telemetry before this time (same forms as --since).
        #[arg(long)]
        until: Option<String>,
        /// Heights per file.
        #[arg(long, default_value_t = 1000)]
        chunk_size: u64,
        /// Minutes per file for telemetry.
        #[arg(long, default_value_t = 60)]
        chunk_minutes: u64,
        /// Rewrite chunks that already exist.
        #[arg(long)]
        overwrite: bool,
        /// Also export orphaned (non-canonical) blocks and their transactions (`canonical` = false).
        #[arg(long, conflicts_with = "final_only")]
        include_orphaned: bool,
        /// Only final heights: at least `confirmations` (the writer's setting) under the stored tip.
        #[arg(long = "final")]
        final_only: bool,
    },
    /// Run one read-only SQL query (the /v1/sql sandbox) and print the result.
    ///
    /// Example: `blockstreamer sql -f sql/reports/leaderboard.sql`.
    Sql {
        /// The SELECT statement (or use -f).
        query: Option<String>,
        /// Read the statement from a file.
        #[arg(short = 'f', long = "file", conflicts_with = "query")]
        sql_file: Option<PathBuf>,
        #[command(flatten)]
        file: ReadFile,
        /// Output format (default: table on a terminal, else csv).
        #[arg(long, value_enum)]
        format: Option<SqlFormat>,
        /// Positional parameter ?1, ?2, … (repeat). JSON scalars (5, 1.5, null, true, "text")
        /// are taken as such; anything else is text.
        #[arg(long = "param")]
        params: Vec<String>,
        /// Stop the query after this many milliseconds.
        #[arg(long, default_value_t = 30_000)]
        timeout_ms: u64,
        /// Print at most this many rows.
        #[arg(long, default_value_t = 100_000)]
        max_rows: usize,
    },
    /// List open gaps (missing heights, broken parent links) and recent repair attempts.
    Gaps {
        #[command(flatten)]
        file: ReadFile,
        /// How many recent repairs to show.
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Read a sink's NATS JetStream stream: print each message as a JSON line, or apply the
    /// blocks and undos into another blockstreamer file (--db), resuming where it stopped.
    ///
    /// Applied blocks are checked again (header hash, receipts root) and the stream position
    /// is committed with them, so a restart neither skips nor repeats a message.
    Consume {
        /// NATS server URL(s), comma-separated.
        #[arg(long = "nats", env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
        url: String,
        /// The stream (the sink's `[sink.nats] stream`).
        #[arg(long, default_value = "blockstreamer")]
        stream: String,
        /// Apply into this file (created when missing) instead of printing.
        #[arg(long)]
        db: Option<PathBuf>,
        /// TOML config whose [index] contracts are decoded into the file's event tables.
        #[arg(long, requires = "db")]
        config: Option<PathBuf>,
        /// Print only subjects matching this filter, e.g. `blockstreamer.1.logs.>`.
        #[arg(long, conflicts_with = "db")]
        subject: Option<String>,
        /// Print from this stream sequence (default: the first message).
        #[arg(long, conflicts_with = "db")]
        from_seq: Option<u64>,
        /// NATS token.
        #[arg(long, env = "NATS_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// NATS credentials file (.creds).
        #[arg(long)]
        creds: Option<PathBuf>,
        /// Stop after this many seconds (default: run until Ctrl-C).
        #[arg(long)]
        run_for: Option<u64>,
    },
    /// Forget where a broker sink stands so it publishes again: after its stream was lost or
    /// recreated. A running `run` picks the reset up within a second.
    SinkReset {
        /// The sink (`nats`).
        #[arg(default_value = "nats")]
        sink: String,
        /// Database file.
        #[arg(long, default_value = "./blockstreamer.db")]
        db: PathBuf,
        /// Publish again from this height (default: the first stored block).
        #[arg(long)]
        from_block: Option<u64>,
    },
    /// A fault-injecting JSON-RPC proxy in front of any node, to test your own setup.
    ///
    /// Every call is forwarded to --upstream unless a rule of the script takes it. Swap the
    /// script at run time with `curl -X POST --data @script.json http://LISTEN/__fault/script`;
    /// read every call seen with `curl http://LISTEN/__fault/log`.
    Faultproxy {
        /// The node to forward to (http or https).
        #[arg(long)]
        upstream: String,
        /// Where to listen (loopback by default).
        #[arg(long, default_value = "127.0.0.1:8546")]
        listen: std::net::SocketAddr,
        /// Fault script, TOML or JSON (docs/fault-scripts.md); none = forward everything.
        #[arg(long)]
        script: Option<PathBuf>,
        /// Stop after this many seconds (default: run until Ctrl-C).
        #[arg(long)]
        run_for: Option<u64>,
    },
}

#[derive(Debug, Args)]
pub(crate) struct Common {
    /// TOML config file (providers, limits; see docs/configuration.md).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Provider URL; repeat for several. `${VAR}` is expanded from the environment.
    #[arg(long = "rpc")]
    rpc: Vec<String>,
    /// Database file.
    #[arg(long, default_value = "./blockstreamer.db")]
    db: PathBuf,
}

/// A database file opened read-only (`serve`, `sql`, `export`, `gaps`).
#[derive(Debug, Args)]
pub(crate) struct ReadFile {
    /// Database file.
    #[arg(long, default_value = "./blockstreamer.db")]
    pub(crate) db: PathBuf,
    /// Open it as immutable: for a file on read-only media or in a directory this user may not
    /// write (SQLite cannot make its `-shm` file there). Nothing may write the file meanwhile.
    #[arg(long)]
    pub(crate) immutable: bool,
}

impl ReadFile {
    pub(crate) fn access(&self) -> Access {
        if self.immutable { Access::Immutable } else { Access::ReadOnly }
    }

    /// Refuse a missing file, or one that is not a blockstreamer database at this binary's
    /// schema, before anything else happens.
    pub(crate) fn check(&self) -> anyhow::Result<()> {
        blockstreamer::store::sqlite::check_readable(&self.db, self.access())?;
        Ok(())
    }
}

/// How `sql` prints its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum SqlFormat {
    /// An aligned table.
    Table,
    Csv,
    /// An array of objects.
    Json,
}

impl Common {
    pub(crate) fn app_options(&self) -> anyhow::Result<AppOptions> {
        let mut config = match &self.config {
            Some(p) => Config::load(p)?,
            None => Config::default(),
        };
        config.add_rpc_urls(&self.rpc);
        Ok(AppOptions { db: self.db.clone(), config, progress: std::io::stderr().is_terminal() })
    }
}
