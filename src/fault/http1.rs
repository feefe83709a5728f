//! The fault proxy's side of HTTP/1.1, on raw TCP so that replies can be dripped, cut short,
//! reset or never ended: reading one request, and writing one reply as the fault says.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest request body read.
const MAX_REQUEST: usize = 16 << 20;

/// One parsed HTTP request.
#[derive(Debug)]
pub(super) struct Request {
    pub(super) method: String,
    pub(super) path: String,
    pub(super) close: bool,
    pub(super) body: Vec<u8>,
}

/// Read one request; `None` when the peer closed or sent something we cannot serve.
pub(super) async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Request> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(buf) {
            Ok(httparse::Status::Complete(head_len)) => {
                let mut len = 0usize;
                let mut close = req.version == Some(0);
                for h in req.headers.iter() {
                    if h.name.eq_ignore_ascii_case("content-length") {
                        len = std::str::from_utf8(h.value).ok()?.trim().parse().ok()?;
                    } else if h.name.eq_ignore_ascii_case("connection") {
                        close = h.value.eq_ignore_ascii_case(b"close");
                    } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                        // JSON-RPC clients send a length; chunked requests are not worth the code.
                        return None;
                    }
                }
                if len > MAX_REQUEST {
                    return None;
                }
                let method = req.method.unwrap_or("GET").to_string();
                let path = req.path.unwrap_or("/").to_string();
                while buf.len() < head_len + len {
                    if read_more(stream, buf).await == 0 {
                        return None;
                    }
                }
                let body = buf[head_len..head_len + len].to_vec();
                buf.drain(..head_len + len);
                return Some(Request { method, path, close, body });
            }
            Ok(httparse::Status::Partial) => {
                if buf.len() > 64 << 10 || read_more(stream, buf).await == 0 {
                    return None;
                }
            }
            Err(_) => return None,
        }
    }
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> usize {
    let mut chunk = [0u8; 16 << 10];
    match stream.read(&mut chunk).await {
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            n
        }
        Err(_) => 0,
    }
}

/// What goes back on the wire.
#[derive(Debug)]
pub(super) enum Reply {
    Plain { status: u16, headers: Vec<(String, String)>, content_type: &'static str, body: Vec<u8> },
    Slow { body: Vec<u8>, chunk: usize, interval: Duration },
    Truncated { body: Vec<u8>, fraction: f64 },
    Reset { body: Vec<u8>, after: usize },
    Hang,
    Endless,
}

/// `fraction` (validated to 0..1) of `len`, rounded down.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
fn share(len: usize, fraction: f64) -> usize {
    ((len as f64) * fraction.clamp(0.0, 1.0)).floor() as usize
}

fn reason(status: u16) -> &'static str {
    http::StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("Unknown")
}

fn head_bytes(status: u16, content_type: &str, len: Option<usize>, extra: &[(String, String)], keep: bool) -> Vec<u8> {
    let mut h = format!("HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\n", reason(status));
    match len {
        Some(n) => h.push_str(&format!("Content-Length: {n}\r\n")),
        None => h.push_str("Transfer-Encoding: chunked\r\n"),
    }
    for (k, v) in extra {
        h.push_str(&format!("{k}: {v}\r\n"));
    }
    if !keep {
        h.push_str("Connection: close\r\n");
    }
    h.push_str("\r\n");
    h.into_bytes()
}

/// Write the reply; returns whether the connection may serve another request.
pub(super) async fn write_reply(stream: &mut TcpStream, reply: Reply, keep: bool) -> bool {
    match reply {
        Reply::Plain { status, headers, content_type, body } => {
            let mut out = head_bytes(status, content_type, Some(body.len()), &headers, keep);
            out.extend_from_slice(&body);
            stream.write_all(&out).await.is_ok() && keep
        }
        Reply::Slow { body, chunk, interval } => {
            if stream.write_all(&head_bytes(200, "application/json", Some(body.len()), &[], keep)).await.is_err() {
                return false;
            }
            for part in body.chunks(chunk) {
                tokio::time::sleep(interval).await;
                if stream.write_all(part).await.is_err() {
                    return false;
                }
            }
            keep
        }
        Reply::Truncated { body, fraction } => {
            let cut = share(body.len(), fraction);
            let mut out = head_bytes(200, "application/json", Some(body.len()), &[], false);
            out.extend_from_slice(&body[..cut.min(body.len())]);
            let _ = stream.write_all(&out).await;
            let _ = stream.shutdown().await;
            false
        }
        Reply::Reset { body, after } => {
            if after > 0 {
                let mut out = head_bytes(200, "application/json", Some(body.len()), &[], false);
                out.extend_from_slice(&body);
                out.truncate(after);
                let _ = stream.write_all(&out).await;
                let _ = stream.flush().await;
            }
            // Zero linger turns the close into an RST.
            let _ = stream.set_zero_linger();
            false
        }
        Reply::Hang => {
            std::future::pending::<()>().await;
            false
        }
        Reply::Endless => {
            if stream.write_all(&head_bytes(200, "application/json", None, &[], false)).await.is_err() {
                return false;
            }
            let chunk = format!("{:x}\r\n{}\r\n", 64 << 10, "x".repeat(64 << 10));
            let prefix = r#"{"jsonrpc":"2.0","id":1,"result":""#;
            let first = format!("{:x}\r\n{prefix}\r\n", prefix.len());
            if stream.write_all(first.as_bytes()).await.is_err() {
                return false;
            }
            while stream.write_all(chunk.as_bytes()).await.is_ok() {
                tokio::task::yield_now().await;
            }
            false
        }
    }
}
