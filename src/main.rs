//! The `blockstreamer` binary: parse the command line, set up logging, run a command.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;

use blockstreamer::api::{ApiOptions, ApiServer, ApiState, Sandbox, SandboxLimits};
use blockstreamer::app::{self, App, AppError, DemoOptions};
use blockstreamer::config::Config;
use blockstreamer::consume::ConsumeOptions;
use blockstreamer::export::{self, ExportOptions};
use blockstreamer::ingest::IngestError;
use blockstreamer::store::Store;
use clap::Parser;
use tokio_util::sync::CancellationToken;

mod cli;
mod logging;

use cli::{Cli, Command, Common, LogFormat, ReadFile, SqlFormat};

/// A `--param` value: a JSON scalar when it reads as one, else text.
fn sql_param(raw: &str) -> serde_json::Value {
    match serde_json::from_str::<serde_json::Value>(raw) {
        Ok(v) if !v.is_array() && !v.is_object() => v,
        _ => serde_json::Value::String(raw.to_string()),
    }
}

/// Cancel on Ctrl-C, SIGTERM, or after `run_for` seconds.
fn shutdown_token(run_for: Option<u64>) -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let ctrl_c = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        #[cfg(unix)]
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        let timer = async {
            match run_for {
                Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            () = ctrl_c => tracing::info!("interrupted; shutting down"),
            () = term => tracing::info!("terminated; shutting down"),
            () = timer => tracing::info!("run time elapsed; shutting down"),
        }
        t.cancel();
    });
    token
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let format = cli.log_format;
    let _otlp = logging::init_logging(
        matches!(cli.command, Command::Sql { .. } | Command::Export { .. }),
        format,
        cli.otlp_endpoint.as_deref(),
    )?;
    match run(cli.command).await {
        // A log collector reading JSON lines gets the fatal error as one more JSON line.
        Err(e) if format == LogFormat::Json => {
            tracing::error!(error = format!("{e:#}"), "fatal");
            std::process::exit(1);
        }
        other => other,
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Demo { db, block_time_ms, providers, seed, run_for, listen } => {
            let block_time = Duration::from_millis(block_time_ms.max(10));
            let opts = DemoOptions { db, block_time, providers, seed, listen: Some(listen) };
            app::run_demo(opts, shutdown_token(run_for)).await.context("demo failed")
        }
        Command::Run { common, listen, from_block, run_for } => cmd_run(&common, listen, from_block, run_for).await,
        Command::Serve { file, config, listen, run_for } => cmd_serve(&file, config.as_deref(), listen, run_for).await,
        Command::Backfill { common, from, to } => cmd_backfill(&common, from, to).await,
        Command::Export {
            table,
            file,
            format,
            out,
            from,
            to,
            since,
            until,
            chunk_size,
            chunk_minutes,
            overwrite,
            include_orphaned,
            final_only,
        } => {
            let now = blockstreamer::types::now_ms();
            let time = |v: Option<String>, flag: &str| -> anyhow::Result<Option<i64>> {
                v.map(|s| export::parse_time(&s, now).map_err(|e| anyhow::anyhow!("{flag}: {e}"))).transpose()
            };
            file.check()?;
            let table = export::resolve(&file.db, file.access(), &table)?;
            let opts = ExportOptions {
                db: file.db.clone(),
                access: file.access(),
                table,
                format,
                out,
                from,
                to,
                since_ms: time(since, "--since")?,
                until_ms: time(until, "--until")?,
                chunk_size,
                chunk_minutes,
                overwrite,
                include_orphaned,
                final_only,
                progress: std::io::stderr().is_terminal(),
            };
            cmd_export(opts).await
        }
        Command::Sql { query, sql_file, file, format, params, timeout_ms, max_rows } => {
            let sql = match (query, sql_file) {
                (Some(q), None) => q,
                (None, Some(f)) => {
                    std::fs::read_to_string(&f).with_context(|| format!("cannot read {}", f.display()))?
                }
                _ => anyhow::bail!("give a query or -f FILE"),
            };
            let limits = SandboxLimits {
                timeout: Duration::from_millis(timeout_ms.max(1)),
                max_rows,
                max_bytes: 1 << 30,
                concurrency: 1,
            };
            cmd_sql(&file, sql, format, &params, limits).await
        }
        Command::Gaps { file, limit } => cmd_gaps(&file, limit).await,
        Command::Consume { url, stream, db, config, subject, from_seq, token, creds, run_for } => {
            let index = match &config {
                Some(p) => {
                    let c = Config::load(p)?;
                    blockstreamer::index::Indexing::from_config(&c.index, true)?
                }
                None => blockstreamer::index::Indexing::default(),
            };
            let opts = ConsumeOptions { url, stream, token, credentials_file: creds, db, subject, from_seq, index };
            cmd_consume(&opts, run_for).await
        }
        Command::SinkReset { sink, db, from_block } => cmd_sink_reset(&sink, &db, from_block).await,
        Command::Faultproxy { upstream, listen, script, run_for } => {
            cmd_faultproxy(upstream, listen, script.as_deref(), run_for).await
        }
    }
}

/// `run`: follow the head, serving the API. Everything that can be refused (config, keys from
/// the environment, the listen address) is checked before the database is opened.
async fn cmd_run(
    common: &Common,
    listen: Option<SocketAddr>,
    from_block: Option<u64>,
    run_for: Option<u64>,
) -> anyhow::Result<()> {
    let opts = common.app_options()?;
    if opts.config.api.enabled {
        let addr = match listen {
            Some(a) => a,
            None => opts.config.api_listen()?,
        };
        let api = ApiOptions::resolve(&opts.config, |k| std::env::var(k).ok())?;
        blockstreamer::api::check_listen(addr, &api).context("cannot start the API")?;
    }
    let cancel = shutdown_token(run_for);
    let app = App::start(opts).await.context("start-up failed")?;
    let api = match app.start_api(listen, &cancel).await {
        Ok(a) => a,
        Err(e) => {
            app.shutdown().await;
            return Err(e).context("cannot start the API");
        }
    };
    if let Some(a) = &api {
        // Printed plainly so scripts can find the port.
        println!("api listening on http://{}", a.addr());
    }
    let res = app.follow(from_block, &cancel).await;
    if let (Err(AppError::Ingest(e @ IngestError::DeepReorg { .. })), Some(_)) = (&res, &api) {
        // Nothing was rewritten; keep answering (health says reorg_too_deep) so operators
        // and monitors can see why, until told to stop.
        tracing::error!(error = %e, "ingest stopped; the API keeps serving until Ctrl-C");
        cancel.cancelled().await;
    }
    if let Some(a) = api {
        a.stop().await;
    }
    app.shutdown().await;
    res.context("ingest stopped")
}

/// `serve`: the API over an existing file, read-only. The config, the key and the listen
/// address are checked before the file is opened; the file is never written.
async fn cmd_serve(
    file: &ReadFile,
    config: Option<&std::path::Path>,
    listen: Option<SocketAddr>,
    run_for: Option<u64>,
) -> anyhow::Result<()> {
    let config = match config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    let addr = match listen {
        Some(a) => a,
        None => config.api_listen()?,
    };
    let opts = ApiOptions::resolve(&config, |k| std::env::var(k).ok())?;
    blockstreamer::api::check_listen(addr, &opts)?;
    file.check()?;
    let cancel = shutdown_token(run_for);
    let store = Store::open_read_only(&file.db, file.access()).await.context("cannot open the database")?;
    let state = ApiState::new(store.clone(), None, opts);
    let server = match ApiServer::start(addr, state, &cancel).await {
        Ok(s) => s,
        Err(e) => {
            store.close().await;
            return Err(e.into());
        }
    };
    println!("api listening on http://{}", server.addr());
    cancel.cancelled().await;
    server.stop().await;
    store.close().await;
    Ok(())
}

/// `backfill`: fetch a range, then exit.
async fn cmd_backfill(common: &Common, from: u64, to: u64) -> anyhow::Result<()> {
    let cancel = shutdown_token(None);
    let app = App::start(common.app_options()?).await.context("start-up failed")?;
    let started = std::time::Instant::now();
    let res = app.backfill(from, to, &cancel).await;
    app.shutdown().await;
    let report = res.context("backfill failed")?;
    let secs = started.elapsed().as_secs_f64();
    #[allow(clippy::cast_precision_loss)]
    let rate = report.fetched as f64 / secs.max(1e-9);
    tracing::info!(
        from = report.from,
        to = report.to,
        fetched = report.fetched,
        seconds = format!("{secs:.2}"),
        blocks_per_sec = format!("{rate:.0}"),
        "backfill done"
    );
    Ok(())
}

/// `export` (the file already checked, the table resolved): chunk files from a read-only
/// connection; Ctrl-C stops between pages.
async fn cmd_export(opts: ExportOptions) -> anyhow::Result<()> {
    let cancel = shutdown_token(None);
    let started = std::time::Instant::now();
    let summary = tokio::task::spawn_blocking(move || export::export(&opts, &cancel)).await??;
    let secs = started.elapsed().as_secs_f64();
    let mut notes = String::new();
    if summary.missing_heights > 0 {
        notes.push_str(&format!("; {} heights missing (open gaps)", summary.missing_heights));
    }
    if summary.reread_after_reorg > 0 {
        notes.push_str(&format!("; {} chunks read again after a reorg touched them", summary.reread_after_reorg));
    }
    eprintln!(
        "exported {} rows into {} files ({} bytes) in {secs:.2} s; {} chunks already done{notes}",
        summary.rows,
        summary.written.len(),
        summary.bytes,
        summary.skipped.len(),
    );
    Ok(())
}

/// `sql`: one read-only statement through the sandbox, printed as a table, CSV or JSON.
async fn cmd_sql(
    file: &ReadFile,
    sql: String,
    format: Option<SqlFormat>,
    params: &[String],
    limits: SandboxLimits,
) -> anyhow::Result<()> {
    file.check()?;
    let format = match format {
        Some(f) => f,
        None if std::io::stdout().is_terminal() => SqlFormat::Table,
        None => SqlFormat::Csv,
    };
    let max_rows = limits.max_rows;
    let sandbox = Sandbox::new(&file.db, file.access(), limits);
    let params = params.iter().map(|p| sql_param(p)).collect();
    let result = sandbox.query(sql, params).await.context("query refused")?;
    let text = match format {
        SqlFormat::Table => result.to_table(),
        SqlFormat::Json => format!("{}\n", serde_json::to_string_pretty(&result.to_json_objects())?),
        SqlFormat::Csv => result.to_csv(),
    };
    print!("{text}");
    if result.truncated {
        eprintln!("(stopped at {max_rows} rows; raise --max-rows for more)");
    } else if format == SqlFormat::Table {
        eprintln!("({} rows, {:.1} ms)", result.rows.len(), result.elapsed_ms);
    }
    Ok(())
}

/// `gaps`: open holes and recent repair attempts, read-only.
async fn cmd_gaps(file: &ReadFile, limit: u32) -> anyhow::Result<()> {
    file.check()?;
    let store = Store::open_read_only(&file.db, file.access()).await.context("cannot open the database")?;
    let scan = store.scan_gaps().await;
    let repairs = store.recent_repairs(limit).await;
    store.close().await;
    let (scan, repairs) = (scan?, repairs?);
    match (scan.floor, scan.tip) {
        (Some(lo), Some(hi)) => println!("canonical blocks stored: {lo}..={hi}"),
        _ => println!("no blocks stored"),
    }
    if scan.missing.is_empty() && scan.broken_links.is_empty() {
        println!("open gaps: none");
    }
    for (a, b) in &scan.missing {
        println!("open gap: missing {a}..={b} ({} blocks)", b - a + 1);
    }
    for n in &scan.broken_links {
        println!("open gap: broken parent link at {n}");
    }
    println!("recent repairs ({}):", repairs.len());
    for r in &repairs {
        println!(
            "  #{} {}..={} {} via {} → {} ({} blocks){}",
            r.id,
            r.from,
            r.to,
            r.reason,
            r.provider.as_deref().unwrap_or("-"),
            r.outcome,
            r.blocks,
            r.error.as_deref().map(|e| format!(": {e}")).unwrap_or_default()
        );
    }
    Ok(())
}

/// `consume`: print or apply a sink's stream until stopped; a summary on stderr.
async fn cmd_consume(opts: &ConsumeOptions, run_for: Option<u64>) -> anyhow::Result<()> {
    let cancel = shutdown_token(run_for);
    let mut out = std::io::LineWriter::new(std::io::stdout());
    let report = blockstreamer::consume::consume(opts, &cancel, &mut out).await.context("consume stopped")?;
    let a = report.applied;
    eprintln!(
        "consumed {} messages up to stream sequence {}: {} blocks applied, {} already held, {} reorgs ({} blocks undone)",
        a.messages, report.last_seq, a.blocks, a.skipped, a.reorgs, a.undone
    );
    Ok(())
}

/// `sink-reset`: clear a sink's position (it replays from the first stored block or a height).
async fn cmd_sink_reset(sink: &str, db: &std::path::Path, from_block: Option<u64>) -> anyhow::Result<()> {
    if !Store::reset_sink_in(db, sink, from_block).await.context("reset failed")? {
        anyhow::bail!("{} has no sink named {sink:?}", db.display());
    }
    match from_block {
        Some(n) => eprintln!("sink {sink:?} reset: it publishes again from block {n}"),
        None => eprintln!("sink {sink:?} reset: it publishes again from the first stored block"),
    }
    Ok(())
}

/// `faultproxy`: forward to an upstream, faulting what the script says, until stopped.
async fn cmd_faultproxy(
    upstream: String,
    listen: SocketAddr,
    script: Option<&std::path::Path>,
    run_for: Option<u64>,
) -> anyhow::Result<()> {
    let script = match script {
        Some(p) => blockstreamer::fault::Script::load(p)?,
        None => blockstreamer::fault::Script::default(),
    };
    let rules = script.rules.len();
    let cancel = shutdown_token(run_for);
    let proxy = blockstreamer::fault::FaultProxy::start(&upstream, listen, script).await?;
    let shown_upstream = blockstreamer::provider::SecretUrl::new(upstream).redacted();
    tracing::info!(listen = %proxy.addr(), upstream = %shown_upstream, rules, "fault proxy listening");
    // Printed plainly so scripts can wait for it.
    println!("listening on {}", proxy.url());
    cancel.cancelled().await;
    proxy.stop().await;
    let log = proxy.log();
    let faulted = log.iter().filter(|c| c.fault.is_some()).count();
    tracing::info!(calls = log.len(), faulted, "fault proxy stopped");
    Ok(())
}
