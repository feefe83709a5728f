//! The accept loop: hyper HTTP/1.1 with a timer, so a client that never finishes its request
//! header is cut off (`axum::serve` gives hyper no timer, so its header timeout never fires);
//! a cap on connections in all and per peer IP, so one client cannot hold every slot.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

#[derive(Debug, Clone, Copy)]
pub(super) struct ServeOptions {
    pub header_read_timeout: Duration,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
}

/// Largest request head hyper buffers. Heads up to it get the API's JSON 414 / 431 from the
/// request guard (whose limits are far lower); only a bigger one gets hyper's bare 431.
const MAX_HEAD_BUFFER: usize = 256 << 10;

/// Connections held per peer IP.
#[derive(Debug)]
struct PerIp {
    cap: usize,
    held: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection counted against its peer IP until dropped.
#[derive(Debug)]
struct IpSlot {
    per_ip: Arc<PerIp>,
    ip: IpAddr,
}

impl PerIp {
    fn take(self: &Arc<Self>, ip: IpAddr) -> Option<IpSlot> {
        let mut held = self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = held.entry(ip).or_insert(0);
        if *n >= self.cap {
            return None;
        }
        *n += 1;
        Some(IpSlot { per_ip: self.clone(), ip })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut held = self.per_ip.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = held.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                held.remove(&self.ip);
            }
        }
    }
}

/// Tell a peer over its cap why, in the API's error shape, and close.
async fn refuse(mut stream: tokio::net::TcpStream, cap: usize) {
    use tokio::io::AsyncWriteExt;
    let body = format!(
        "{{\"error\":{{\"code\":\"too_many_connections\",\"message\":\"this address already holds {cap} connections\"}}}}"
    );
    let reply = format!(
        "HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(reply.as_bytes())).await;
    let _ = stream.shutdown().await;
}

/// Serve `router` on `listener` until `cancel`; each connection runs on `tasks`.
pub(super) async fn serve(
    listener: TcpListener,
    router: axum::Router,
    opts: ServeOptions,
    cancel: CancellationToken,
    tasks: TaskTracker,
) {
    let slots = Arc::new(Semaphore::new(opts.max_connections.max(1)));
    let per_ip = Arc::new(PerIp { cap: opts.max_connections_per_ip.max(1), held: Mutex::default() });
    loop {
        // At the cap, stop accepting: the kernel backlog holds new clients instead of us.
        let permit = tokio::select! {
            () = cancel.cancelled() => return,
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
        };
        let (stream, peer) = tokio::select! {
            () = cancel.cancelled() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let Some(ip_slot) = per_ip.take(peer.ip()) else {
            metrics::counter!("blockstreamer_api_connections_refused_total").increment(1);
            drop(permit);
            tasks.spawn(refuse(stream, per_ip.cap));
            continue;
        };
        let router = router.clone();
        let cancel = cancel.clone();
        tasks.spawn(async move {
            let _permit = permit;
            let _ip_slot = ip_slot;
            connection(stream, peer, router, opts, cancel).await;
        });
    }
}

async fn connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    router: axum::Router,
    opts: ServeOptions,
    cancel: CancellationToken,
) {
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        let router = router.clone();
        async move {
            match router.oneshot(req.map(axum::body::Body::new)).await {
                Ok(resp) => Ok::<_, Infallible>(resp),
                Err(never) => match never {},
            }
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(opts.header_read_timeout)
        .max_buf_size(MAX_HEAD_BUFFER)
        .max_headers(1000)
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        }
        () = cancel.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
        }
    }
}
