//! A TCP relay on loopback for WebSocket tests: it passes bytes both ways, can be stopped
//! (every connection dropped, the port closed) and resumed on the same port, and can be muted
//! (the upstream's bytes are swallowed, so the connection stays open but says nothing).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

pub struct Relay {
    pub addr: SocketAddr,
    upstream: SocketAddr,
    muted: Arc<AtomicBool>,
    cancel: Mutex<CancellationToken>,
}

impl Relay {
    /// Relay a free loopback port to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let addr = listener.local_addr().expect("addr");
        let r = Self {
            addr,
            upstream,
            muted: Arc::new(AtomicBool::new(false)),
            cancel: Mutex::new(CancellationToken::new()),
        };
        r.spawn(listener);
        r
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    fn spawn(&self, listener: TcpListener) {
        let cancel = self.cancel.lock().expect("lock").clone();
        let (upstream, muted) = (self.upstream, self.muted.clone());
        tokio::spawn(async move {
            loop {
                let (client, _) = tokio::select! {
                    () = cancel.cancelled() => return,
                    a = listener.accept() => match a { Ok(a) => a, Err(_) => return },
                };
                let (cancel, muted) = (cancel.clone(), muted.clone());
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream).await else { return };
                    pipe(client, server, muted, cancel).await;
                });
            }
        });
    }

    /// Drop every connection and close the port.
    pub fn stop(&self) {
        self.cancel.lock().expect("lock").cancel();
    }

    /// Listen on the same port again.
    pub async fn resume(&self) {
        *self.cancel.lock().expect("lock") = CancellationToken::new();
        let listener = TcpListener::bind(self.addr).await.expect("rebind relay");
        self.spawn(listener);
    }

    /// Swallow (or pass again) what the upstream sends.
    pub fn mute(&self, on: bool) {
        self.muted.store(on, Ordering::Relaxed);
    }
}

async fn pipe(client: TcpStream, server: TcpStream, muted: Arc<AtomicBool>, cancel: CancellationToken) {
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let up = async {
        let mut buf = vec![0u8; 64 << 10];
        while let Ok(n) = cr.read(&mut buf).await {
            if n == 0 || sw.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    let down = async {
        let mut buf = vec![0u8; 64 << 10];
        while let Ok(n) = sr.read(&mut buf).await {
            if n == 0 {
                return;
            }
            if !muted.load(Ordering::Relaxed) && cw.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        () = cancel.cancelled() => {}
        () = up => {}
        () = down => {}
    }
}
