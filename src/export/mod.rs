//! Export stored tables to CSV, JSON lines or Parquet files: split into chunks by height or
//! time like cryo, in bounded memory, each file written atomically (temp file, fsync, rename),
//! finished chunks skipped on a re-run.
//!
//! Reads go through their own read-only SQLite connection in short transactions (one per page
//! of 8,192 rows), so an export of any size never pins the WAL. A reorg stored between two
//! pages of blocks or transactions would mix both branches in one output, so the reorg log is
//! checked after every page: a file chunk is read again (up to 5 times), an HTTP stream ends
//! with an error.
//!
//! Heights are chunked on multiples of `chunk_size` (`blocks__00001000_to_00001999.parquet`);
//! telemetry on multiples of `chunk_minutes`
//! (`provider_requests__20261128T140000Z_to_20261128T150000Z.parquet`, end exclusive). A chunk
//! clipped by the range (say the stored tip is 1,500) is named by what it holds
//! (`..._00001000_to_00001500...`); a later run that can write the whole chunk replaces it, and
//! a chunk is skipped when a file for it already reaches at least as far — unless it was
//! written with heights missing (open gaps), which a hidden `.NAME.gaps` file records until a
//! run writes it whole.

mod events;
mod read;
pub mod schema;
mod when;
mod write;

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use thiserror::Error;
use tokio_util::sync::CancellationToken;

use crate::store::Access;

pub use schema::{Format, KeyKind, Table};
pub use when::parse_time;
use when::utc_stamp;

/// Why an export failed.
#[derive(Debug, Error)]
pub enum ExportError {
    #[error("cannot open the database {0}: {1}")]
    Open(String, String),
    #[error("reading the database: {0}")]
    Sql(String),
    #[error("{table}.{column}: {reason}")]
    BadValue { table: String, column: String, reason: String },
    #[error("{0}")]
    UnknownTable(String),
    #[error("encoding: {0}")]
    Encode(String),
    #[error("writing: {0}")]
    Write(String),
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{0}")]
    BadRange(String),
    #[error("export cancelled")]
    Cancelled,
    /// A reorg above `fork` was stored while heights `lo..=hi` were being read, so what was read
    /// may mix both branches. Files are written again; an HTTP body ends with this error.
    #[error(
        "the chain reorganised above height {fork} while heights {lo}..={hi} were being read; \
         the output would mix both branches (request the range again, or stay further from the tip)"
    )]
    Reorged { fork: i64, lo: i64, hi: i64 },
}

/// What to export; `from/to` are heights, `since_ms/until_ms` times (ms), by the table's key.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    pub db: PathBuf,
    /// Read-only, or immutable (nothing may change the file while it is read).
    pub access: Access,
    pub table: Table,
    pub format: Format,
    /// Output directory (created if missing).
    pub out: PathBuf,
    /// First height (default: the lowest stored).
    pub from: Option<u64>,
    /// Last height, inclusive (default: the highest stored).
    pub to: Option<u64>,
    /// First time, ms, inclusive (default: the oldest row).
    pub since_ms: Option<i64>,
    /// End time, ms, exclusive (default: just past the newest row).
    pub until_ms: Option<i64>,
    /// Heights per file.
    pub chunk_size: u64,
    /// Minutes per file (time-keyed tables).
    pub chunk_minutes: u64,
    pub overwrite: bool,
    pub include_orphaned: bool,
    /// Only heights at least `confirmations` under the stored tip (the writer's setting).
    pub final_only: bool,
    /// Draw a progress bar (on a terminal); otherwise one log line per chunk.
    pub progress: bool,
}

/// What an export did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportSummary {
    pub written: Vec<PathBuf>,
    pub skipped: Vec<PathBuf>,
    pub rows: u64,
    pub bytes: u64,
    /// Heights in the range with no canonical block (open gaps), for chain tables.
    pub missing_heights: u64,
    /// Chunks read again from the start because a reorg touched them while they were read.
    pub reread_after_reorg: u64,
}

/// How many times in a row one chunk is read again after reorgs before the export gives up.
const REORG_RETRIES: u32 = 5;

/// One output file's key range (both ends inclusive) and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub lo: i64,
    pub hi: i64,
    pub name: String,
    /// The part of the name after `_to_`, without the extension.
    end: String,
}

/// Order chunk ends: zero-padded heights and fixed-width stamps compare as (length, text).
fn end_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    (a.len(), a).cmp(&(b.len(), b))
}

/// The file name prefix shared by every version of the chunk starting at `lo`.
fn chunk_prefix(table: &Table, lo: i64) -> String {
    match table.key_kind() {
        KeyKind::Height => format!("{}__{lo:08}_to_", table.name()),
        KeyKind::Time => format!("{}__{}_to_", table.name(), utc_stamp(lo)),
    }
}

/// Split `lo..=hi` into chunks aligned on multiples of `size`.
pub fn plan(table: &Table, format: Format, lo: i64, hi: i64, size: i64) -> Vec<Chunk> {
    let mut out = Vec::new();
    if size <= 0 || hi < lo {
        return out;
    }
    let mut start = lo;
    loop {
        let aligned_end = (start.div_euclid(size) + 1).saturating_mul(size).saturating_sub(1);
        let end = aligned_end.min(hi);
        let last = match table.key_kind() {
            KeyKind::Height => format!("{end:08}"),
            KeyKind::Time => utc_stamp(end.saturating_add(1)),
        };
        let name = format!("{}{last}.{}", chunk_prefix(table, start), format.ext());
        out.push(Chunk { lo: start, hi: end, name, end: last });
        if end >= hi {
            return out;
        }
        start = end + 1;
    }
}

/// What one read of the output directory found for `table` in `format`.
#[derive(Default)]
struct Existing {
    /// Chunk prefix (the part up to `_to_`, which names the chunk's start) → (path, the end it
    /// reaches), for every finished file.
    chunks: HashMap<String, Vec<(PathBuf, String)>>,
    /// File names of chunks written with heights missing (each has a `.NAME.gaps` marker).
    gappy: HashSet<String>,
}

/// The finished files of `table` in `format` already in `dir` and their gap markers, read once.
fn existing_chunks(dir: &Path, table: &Table, format: Format) -> Existing {
    let head = format!("{}__", table.name());
    let suffix = format!(".{}", format.ext());
    let mut out = Existing::default();
    let Ok(entries) = fs::read_dir(dir) else { return out };
    for e in entries.filter_map(Result::ok) {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(chunk) = name.strip_prefix('.').and_then(|n| n.strip_suffix(GAPS_SUFFIX)) {
            out.gappy.insert(chunk.to_string());
            continue;
        }
        let Some(stem) = name.strip_prefix(&head).and_then(|n| n.strip_suffix(&suffix)) else { continue };
        let Some((_, end)) = stem.split_once("_to_") else { continue };
        let prefix = name[..head.len() + stem.len() - end.len()].to_string();
        out.chunks.entry(prefix).or_default().push((e.path(), end.to_string()));
    }
    out
}

const GAPS_SUFFIX: &str = ".gaps";

/// The hidden file that marks chunk `name` as written with heights missing (globs over the data
/// files do not match it).
fn gaps_marker(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!(".{name}{GAPS_SUFFIX}"))
}

/// Remove temp files left by an exporter that was killed (`.NAME.tmp-PID` whose PID is gone).
fn remove_stale_temps(dir: &Path, table: &Table) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    let mine = format!(".{}__", table.name());
    for e in entries.filter_map(Result::ok) {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some((_, pid)) = name.rsplit_once(".tmp-") else { continue };
        if !name.starts_with(&mine) {
            continue;
        }
        let alive =
            pid.parse::<u32>().is_ok_and(|p| p == std::process::id() || Path::new(&format!("/proc/{p}")).exists());
        if !alive {
            let _ = fs::remove_file(e.path());
        }
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ExportError + '_ {
    move |source| ExportError::Io { path: path.display().to_string(), source }
}

/// Stream `lo..=hi` of a table into `out` as one output; returns (rows, the sink).
fn encode_range<W: Write + Send>(
    conn: &rusqlite::Connection,
    opts: &ExportOptions,
    (lo, hi): (i64, i64),
    out: W,
    cancel: &CancellationToken,
) -> Result<(u64, W), ExportError> {
    let table = &opts.table;
    // Pages are separate read transactions (so the WAL is never pinned); a reorg committed
    // between two of them would leave blocks of both branches in one output. The reorg log says
    // whether that happened: checked after every page, so an HTTP stream stops early.
    let mark = if table.has_orphans() { Some(read::reorg_mark(conn)?) } else { None };
    let check = || -> Result<(), ExportError> {
        if let Some(mark) = mark
            && let Some(fork) = read::reorged_since(conn, mark)?
            && fork < hi
        {
            return Err(ExportError::Reorged { fork, lo, hi });
        }
        Ok(())
    };
    let mut enc = write::Encoder::new(table, opts.format, out)?;
    let mut pager = read::Pager::new(conn, table, lo, hi, opts.include_orphaned && table.has_orphans())?;
    let mut rows = 0u64;
    while let Some(batch) = pager.next_page()? {
        if cancel.is_cancelled() {
            return Err(ExportError::Cancelled);
        }
        check()?;
        rows += batch.num_rows() as u64;
        enc.write(&batch)?;
    }
    Ok((rows, enc.finish()?))
}

/// One chunk's length in keys (heights or ms), at least 1.
fn chunk_len(opts: &ExportOptions) -> i64 {
    let n = match opts.table.key_kind() {
        KeyKind::Height => opts.chunk_size,
        KeyKind::Time => opts.chunk_minutes.saturating_mul(60_000),
    };
    i64::try_from(n).unwrap_or(i64::MAX).max(1)
}

/// Resolve the key range to export: explicit ends, else the stored bounds. None = nothing stored.
fn key_range(conn: &rusqlite::Connection, opts: &ExportOptions) -> Result<Option<(i64, i64)>, ExportError> {
    let stored = read::bounds(conn, &opts.table, opts.include_orphaned)?;
    match opts.table.key_kind() {
        KeyKind::Height => {
            if opts.since_ms.is_some() || opts.until_ms.is_some() {
                return Err(ExportError::BadRange(format!(
                    "{} is exported by height: use --from/--to, not --since/--until",
                    opts.table.name()
                )));
            }
            let conv = |what: &'static str, v: u64| {
                crate::types::to_sql(what, v).map_err(|e| ExportError::BadRange(e.to_string()))
            };
            let from = opts.from.map(|v| conv("--from", v)).transpose()?;
            let to = opts.to.map(|v| conv("--to", v)).transpose()?;
            if let (Some(f), Some(t)) = (from, to)
                && f > t
            {
                return Err(ExportError::BadRange(format!("--from {f} is above --to {t}")));
            }
            let Some((slo, shi)) = stored else { return Ok(None) };
            // Past the stored tip (or, final only, past the final height) there is nothing to
            // write yet; clipping keeps the last chunk's name honest so a later run completes it.
            // A defaulted start is aligned down so chunk names stay the same from run to run.
            let lo = from.unwrap_or(slo - slo.rem_euclid(chunk_len(opts)));
            let mut hi = to.unwrap_or(shi).min(shi);
            if opts.final_only {
                if opts.include_orphaned {
                    return Err(ExportError::BadRange(
                        "final blocks are canonical: --final excludes --include-orphaned".into(),
                    ));
                }
                match read::final_height(conn)? {
                    Some(f) => hi = hi.min(f),
                    None => return Ok(None),
                }
            }
            Ok((lo <= hi).then_some((lo, hi)))
        }
        KeyKind::Time => {
            if opts.from.is_some() || opts.to.is_some() {
                return Err(ExportError::BadRange(format!(
                    "{} is exported by time: use --since/--until, not --from/--to",
                    opts.table.name()
                )));
            }
            if let (Some(s), Some(u)) = (opts.since_ms, opts.until_ms)
                && s >= u
            {
                return Err(ExportError::BadRange("--since must be before --until".into()));
            }
            let Some((slo, shi)) = stored else { return Ok(None) };
            let lo = opts.since_ms.unwrap_or(slo - slo.rem_euclid(chunk_len(opts))).max(0);
            // By default the last minute is left out: its rows may still be in the telemetry
            // writer's queue, and a chunk written now would be skipped on the next run.
            let settled = crate::types::now_ms().saturating_sub(60_000);
            let hi = opts.until_ms.map_or(shi.min(settled), |u| u.saturating_sub(1)).min(shi);
            Ok((lo <= hi).then_some((lo, hi)))
        }
    }
}

/// Export to chunk files (blocking; run it on a blocking thread). `cancel` stops between pages,
/// leaving no file under a final name for the unfinished chunk.
pub fn export(opts: &ExportOptions, cancel: &CancellationToken) -> Result<ExportSummary, ExportError> {
    let conn = read::open(&opts.db, opts.access)?;
    let mut summary = ExportSummary::default();
    let Some((lo, hi)) = key_range(&conn, opts)? else {
        tracing::info!(table = opts.table.name(), "nothing stored in the range; no files written");
        return Ok(summary);
    };
    if opts.chunk_size == 0 || opts.chunk_minutes == 0 {
        return Err(ExportError::BadRange("--chunk-size and --chunk-minutes must be at least 1".into()));
    }
    let size = chunk_len(opts);
    fs::create_dir_all(&opts.out).map_err(io(&opts.out))?;
    remove_stale_temps(&opts.out, &opts.table);
    let chunks = plan(&opts.table, opts.format, lo, hi, size);
    let bar = if opts.progress {
        let b = indicatif::ProgressBar::new(chunks.len() as u64);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{spinner} {prefix} [{bar:30}] {pos}/{len} chunks {msg} ({elapsed}, eta {eta})",
        ) {
            b.set_style(style.progress_chars("=> "));
        }
        b.set_prefix(opts.table.name().to_string());
        b
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut done = existing_chunks(&opts.out, &opts.table, opts.format);
    for chunk in chunks {
        let final_path = opts.out.join(&chunk.name);
        let existing = done.chunks.remove(&chunk_prefix(&opts.table, chunk.lo)).unwrap_or_default();
        let covered = existing.iter().any(|(_, end)| end_cmp(end, &chunk.end).is_ge());
        let marker = gaps_marker(&opts.out, &chunk.name);
        // A chunk written while some of its heights had no block is done again on every run
        // until it is whole: the gap repair may have filled it since.
        let had_gaps = done.gappy.contains(&chunk.name);
        if covered && !opts.overwrite && !had_gaps {
            summary.skipped.push(final_path);
            bar.inc(1);
            continue;
        }
        // Whether a gaps marker may exist for this chunk: from an earlier run, or written by an
        // attempt a reorg cut short.
        let mut marked = had_gaps;
        let mut attempt = 0;
        let (rows, bytes, missing) = loop {
            attempt += 1;
            match write_chunk(&conn, opts, &chunk, &final_path, &marker, cancel) {
                Ok(done) => break done,
                Err(ExportError::Reorged { fork, .. }) if attempt <= REORG_RETRIES => {
                    marked = marked || marker.exists();
                    summary.reread_after_reorg += 1;
                    tracing::info!(
                        chunk = %chunk.name,
                        fork,
                        attempt,
                        "a reorg touched the chunk while it was read; reading it again"
                    );
                }
                Err(e) => {
                    bar.abandon();
                    return Err(e);
                }
            }
        };
        summary.missing_heights += missing;
        // Unmarked only once the whole chunk is under its final name: a crash before this point
        // leaves it marked, and it is redone.
        if missing == 0 && marked {
            fs::remove_file(&marker).map_err(io(&marker))?;
        }
        // Shorter versions of this chunk (written when the range ended inside it) are superseded.
        for (path, end) in existing {
            if path != final_path && end_cmp(&end, &chunk.end).is_lt() {
                if let Some(name) = path.file_name().and_then(|n| n.to_str())
                    && done.gappy.contains(name)
                {
                    let _ = fs::remove_file(gaps_marker(&opts.out, name));
                }
                let _ = fs::remove_file(path);
            }
        }
        summary.rows += rows;
        summary.bytes += bytes;
        if !opts.progress {
            tracing::info!(file = %final_path.display(), rows, bytes, "chunk written");
        }
        bar.set_message(format!("{} rows", summary.rows));
        bar.inc(1);
        summary.written.push(final_path);
    }
    bar.finish_and_clear();
    Ok(summary)
}

/// Write one chunk: count its missing heights (marking it if any), encode it into a temp file,
/// fsync and rename into place. Returns (rows, bytes, missing heights); the temp file is gone
/// on error.
fn write_chunk(
    conn: &rusqlite::Connection,
    opts: &ExportOptions,
    chunk: &Chunk,
    final_path: &Path,
    marker: &Path,
    cancel: &CancellationToken,
) -> Result<(u64, u64, u64), ExportError> {
    let missing = if opts.table.has_orphans() {
        let have = read::canonical_count(conn, chunk.lo, chunk.hi)?;
        let missing = u64::try_from(chunk.hi - chunk.lo + 1 - have).unwrap_or(0);
        if missing > 0 {
            tracing::warn!(
                chunk = %chunk.name,
                missing,
                "heights without a stored canonical block (open gaps; see `blockstreamer gaps`); \
                 the next export run writes this chunk again"
            );
        }
        missing
    } else {
        0
    };
    // Marked before the file can appear under its final name, so no crash leaves a gappy
    // chunk looking finished.
    if missing > 0 {
        fs::write(marker, format!("{missing} heights missing\n")).map_err(io(marker))?;
    }
    let tmp = opts.out.join(format!(".{}.tmp-{}", chunk.name, std::process::id()));
    let result = (|| {
        let file = fs::File::create(&tmp).map_err(io(&tmp))?;
        let buf = std::io::BufWriter::with_capacity(1 << 20, file);
        let (rows, buf) = encode_range(conn, opts, (chunk.lo, chunk.hi), buf, cancel)?;
        let file = buf.into_inner().map_err(|e| ExportError::Write(e.to_string()))?;
        file.sync_all().map_err(io(&tmp))?;
        let bytes = file.metadata().map_err(io(&tmp))?.len();
        fs::rename(&tmp, final_path).map_err(io(final_path))?;
        if let Ok(d) = fs::File::open(&opts.out) {
            let _ = d.sync_all();
        }
        Ok::<_, ExportError>((rows, bytes))
    })();
    match result {
        Ok((rows, bytes)) => Ok((rows, bytes, missing)),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// The table called `name` in the file at `db`: a stored table (`blocks`, `logs`, …) or one of
/// its decoded event tables (`evt_<contract>_<event>`). The error lists what there is.
pub fn resolve(db: &Path, access: Access, name: &str) -> Result<Table, ExportError> {
    if let Some(t) = Table::stored(name) {
        return Ok(t);
    }
    events::resolve_decoded(&read::open(db, access)?, name)
}

/// One table range resolved and ready to stream as a single output (HTTP export).
#[derive(Debug)]
pub struct Prepared {
    conn: rusqlite::Connection,
    opts: ExportOptions,
    range: Option<(i64, i64)>,
}

impl Prepared {
    /// Open the database and resolve the range (`from/to` or `since/until` as for files), so a
    /// bad request fails before any byte is sent.
    pub fn new(opts: ExportOptions) -> Result<Self, ExportError> {
        let conn = read::open(&opts.db, opts.access)?;
        let range = key_range(&conn, &opts)?;
        Ok(Self { conn, opts, range })
    }

    /// The table it writes.
    pub fn table(&self) -> &Table {
        &self.opts.table
    }

    /// The key range that will be written (None: nothing stored in it).
    pub fn range(&self) -> Option<(i64, i64)> {
        self.range
    }

    /// Write the whole range into `out` (blocking); returns the rows written.
    pub fn write_to<W: Write + Send>(self, out: W, cancel: &CancellationToken) -> Result<u64, ExportError> {
        let range = self.range.unwrap_or((0, -1));
        let (rows, _) = encode_range(&self.conn, &self.opts, range, out, cancel)?;
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_align_on_multiples_and_clip_at_the_range() {
        let c = plan(&Table::Blocks, Format::Parquet, 1500, 3200, 1000);
        let names: Vec<&str> = c.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "blocks__00001500_to_00001999.parquet",
                "blocks__00002000_to_00002999.parquet",
                "blocks__00003000_to_00003200.parquet"
            ]
        );
        assert_eq!((c[1].lo, c[1].hi), (2000, 2999));
        let t = plan(&Table::ProviderRequests, Format::Csv, 1_764_338_400_000, 1_764_345_599_999, 3_600_000);
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].name, "provider_requests__20251128T140000Z_to_20251128T150000Z.csv");
        assert!(plan(&Table::Blocks, Format::Csv, 5, 4, 10).is_empty());
    }
}
