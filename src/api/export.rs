//! `GET /v1/export/{table}`: stream a table's range as CSV, JSON lines or Parquet, the same
//! encoding `blockstreamer export` writes, from a blocking thread through a bounded channel.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use tokio::sync::mpsc;

use super::blocks::{Params, params, uint_param};
use super::{ApiError, ApiState, guard};
use crate::export::{ExportError, ExportOptions, Format, Prepared, Table};

/// Bytes handed to the HTTP body at a time.
const PIECE: usize = 64 * 1024;

/// A `Write` that hands full pieces to the response body; fails once the client is gone, or
/// when it has read nothing for `stall` (its buffers full), so a stalled client cannot hold an
/// export slot and a blocking thread forever.
struct ChannelWriter {
    tx: mpsc::Sender<Bytes>,
    buf: Vec<u8>,
    runtime: tokio::runtime::Handle,
    stall: Duration,
}

impl ChannelWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let piece = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(PIECE)));
        // On a blocking-pool thread, so blocking on the runtime here is allowed.
        match self.runtime.block_on(tokio::time::timeout(self.stall, self.tx.send(piece))) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away")),
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("the client read nothing for {} ms", self.stall.as_millis()),
            )),
        }
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= PIECE {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

fn bad(e: ExportError) -> ApiError {
    match e {
        ExportError::BadRange(m) => ApiError::BadRequest(m),
        ExportError::UnknownTable(m) => ApiError::NotFound(m),
        other => ApiError::Internal(other.to_string()),
    }
}

/// `GET /v1/export/{table}?from=&to=&since=&until=&format=&include_orphaned=&final=`.
pub(super) async fn export(
    State(state): State<ApiState>,
    Path(table): Path<String>,
    headers: HeaderMap,
    q: Params,
) -> Result<Response, ApiError> {
    guard::check_sql(&state, &headers)?;
    let map = params(q, &["from", "to", "since", "until", "format", "include_orphaned", "final"])?;
    let format = Format::parse(map.get("format").map_or("csv", String::as_str)).map_err(ApiError::BadRequest)?;
    let now = crate::types::now_ms();
    let time = |key: &str| {
        map.get(key).map(|v| crate::export::parse_time(v, now).map_err(|e| ApiError::BadRequest(format!("{key}: {e}"))))
    };
    let include_orphaned = match map.get("include_orphaned").map(String::as_str) {
        None | Some("false" | "0") => false,
        Some("true" | "1") => true,
        Some(v) => return Err(ApiError::BadRequest(format!("include_orphaned must be true or false, got {v:?}"))),
    };
    let mut opts = ExportOptions {
        db: state.0.store.path().to_path_buf(),
        access: state.0.store.access(),
        // Looked up in the file below (decoded tables are the file's), off the async threads.
        table: Table::Blocks,
        format,
        out: std::path::PathBuf::new(),
        from: uint_param(&map, "from")?,
        to: uint_param(&map, "to")?,
        since_ms: time("since").transpose()?,
        until_ms: time("until").transpose()?,
        chunk_size: 1,
        chunk_minutes: 1,
        overwrite: false,
        include_orphaned,
        final_only: super::blocks::final_param(&map)?,
        progress: false,
    };
    let permit = state
        .0
        .exports
        .clone()
        .try_acquire_owned()
        .map_err(|_| ApiError::Busy("too many exports running; try again shortly".into()))?;
    let prepared = tokio::task::spawn_blocking(move || {
        opts.table = crate::export::resolve(&opts.db, opts.access, &table)?;
        Prepared::new(opts)
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
    .map_err(bad)?;
    let table = prepared.table().clone();
    // Named as `blockstreamer export` would name the range as one chunk.
    let name = prepared
        .range()
        .and_then(|(lo, hi)| crate::export::plan(&table, format, lo, hi, i64::MAX).pop())
        .map_or_else(|| format!("{}__empty.{}", table.name(), format.ext()), |c| c.name);
    let (tx, mut rx) = mpsc::channel::<Bytes>(8);
    // Set when the export fails: the body then ends with an error after the pieces already
    // queued, so the client sees a broken transfer, never a short file that looks complete.
    let failed: Arc<Mutex<Option<String>>> = Arc::default();
    // Stops the export when the server shuts down.
    let cancel = state.0.cancel.child_token();
    let runtime = tokio::runtime::Handle::current();
    let stall = state.0.opts.stream_send_timeout;
    let failure = failed.clone();
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let mut w = ChannelWriter { tx, buf: Vec::with_capacity(PIECE), runtime, stall };
        let result =
            prepared.write_to(&mut w, &cancel).and_then(|_| w.flush().map_err(|e| ExportError::Write(e.to_string())));
        if let Err(e) = result {
            tracing::warn!(table = table.name(), error = %e, "http export stopped");
            if let Ok(mut f) = failure.lock() {
                *f = Some(e.to_string());
            }
        }
        // `w` (the sender) is dropped here, after the failure is recorded: the body sees the
        // end of the pieces only once it can tell whether they are all there is.
    });
    let stream = futures::stream::poll_fn(move |cx| match rx.poll_recv(cx) {
        Poll::Ready(Some(piece)) => Poll::Ready(Some(Ok(piece))),
        Poll::Ready(None) => {
            let why = failed.lock().ok().and_then(|mut f| f.take());
            Poll::Ready(why.map(|why| Err(std::io::Error::other(why))))
        }
        Poll::Pending => Poll::Pending,
    });
    let mut resp = Body::from_stream(stream).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(format.content_type()));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}
