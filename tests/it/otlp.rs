//! Distributed tracing (`--features otlp`): a short backfill's spans reach a loopback OTLP/HTTP
//! receiver, with the span names and parent/child links the docs promise (`backfill` holding
//! every `fetch` and `commit`). The receiver decodes the protobuf by hand: the few fields of
//! `ExportTraceServiceRequest` it needs are stable parts of OTLP.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::sync::{Arc, Mutex};

use crate::helpers::Anvil;

/// One decoded span.
#[derive(Debug, Clone, Default)]
struct Span {
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    parent: Vec<u8>,
    name: String,
    attributes: Vec<String>,
}

/// Protobuf fields of one message: (field number, wire type, payload or varint value).
fn fields(mut b: &[u8]) -> Vec<(u64, u8, Vec<u8>)> {
    fn varint(b: &mut &[u8]) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = b.split_first()?;
            *b = rest;
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }
    let mut out = Vec::new();
    while !b.is_empty() {
        let Some(key) = varint(&mut b) else { break };
        let (field, wire) = (key >> 3, u8::try_from(key & 7).unwrap_or(7));
        let payload = match wire {
            0 => varint(&mut b).map(|v| v.to_le_bytes().to_vec()),
            1 if b.len() >= 8 => {
                let (p, rest) = b.split_at(8);
                b = rest;
                Some(p.to_vec())
            }
            2 => varint(&mut b).and_then(|n| usize::try_from(n).ok()).filter(|n| *n <= b.len()).map(|n| {
                let (p, rest) = b.split_at(n);
                b = rest;
                p.to_vec()
            }),
            5 if b.len() >= 4 => {
                let (p, rest) = b.split_at(4);
                b = rest;
                Some(p.to_vec())
            }
            _ => None,
        };
        let Some(p) = payload else { break };
        out.push((field, wire, p));
    }
    out
}

fn sub(msg: &[u8], field: u64) -> Vec<Vec<u8>> {
    fields(msg).into_iter().filter(|(f, w, _)| *f == field && *w == 2).map(|(_, _, p)| p).collect()
}

/// ExportTraceServiceRequest { resource_spans = 1 { scope_spans = 2 { spans = 2 {
/// trace_id = 1, span_id = 2, parent_span_id = 4, name = 5, attributes = 9 { key = 1 } } } } }
fn spans_of(request: &[u8]) -> Vec<Span> {
    let mut out = Vec::new();
    for rs in sub(request, 1) {
        for ss in sub(&rs, 2) {
            for sp in sub(&ss, 2) {
                let mut s = Span::default();
                for (f, w, p) in fields(&sp) {
                    match (f, w) {
                        (1, 2) => s.trace_id = p,
                        (2, 2) => s.span_id = p,
                        (4, 2) => s.parent = p,
                        (5, 2) => s.name = String::from_utf8_lossy(&p).into_owned(),
                        (9, 2) => {
                            s.attributes.extend(sub(&p, 1).iter().map(|k| String::from_utf8_lossy(k).into_owned()))
                        }
                        _ => {}
                    }
                }
                out.push(s);
            }
        }
    }
    out
}

/// A loopback OTLP/HTTP receiver: every POST body's spans are collected; each gets 200.
fn receiver() -> (String, Arc<Mutex<Vec<Span>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/v1/traces", listener.local_addr().expect("addr"));
    let got: Arc<Mutex<Vec<Span>>> = Arc::default();
    let sink = got.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let sink = sink.clone();
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 65536];
                loop {
                    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n");
                    if let Some(h) = head_end {
                        let head = String::from_utf8_lossy(&buf[..h]).to_ascii_lowercase();
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        if buf.len() >= h + 4 + len {
                            let body = buf[h + 4..h + 4 + len].to_vec();
                            buf.drain(..h + 4 + len);
                            sink.lock().map(|mut g| g.extend(spans_of(&body))).ok();
                            let reply =
                                "HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n";
                            if s.write_all(reply.as_bytes()).is_err() {
                                return;
                            }
                            continue;
                        }
                    }
                    match s.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    (url, got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_is_one_trace_of_fetches_and_commits() {
    let anvil = Anvil::start(&[]).await;
    anvil.mine_with_txs(60, 3).await;
    let (endpoint, got) = receiver();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_blockstreamer"))
        .args(["--otlp-endpoint", &endpoint, "backfill", "--from", "0", "--to", "60", "--rpc", &anvil.url(), "--db"])
        .arg(dir.path().join("t.db"))
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let spans = got.lock().map(|g| g.clone()).unwrap_or_default();
    let roots: Vec<&Span> = spans.iter().filter(|s| s.name == "backfill").collect();
    assert_eq!(roots.len(), 1, "one backfill span: {:?}", spans.iter().map(|s| &s.name).collect::<Vec<_>>());
    let root = roots[0];
    assert!(root.parent.is_empty(), "backfill is the root");
    assert!(root.attributes.iter().any(|a| a == "from") && root.attributes.iter().any(|a| a == "to"));
    let by_id: HashMap<&[u8], &Span> = spans.iter().map(|s| (s.span_id.as_slice(), s)).collect();
    for name in ["fetch", "commit"] {
        let kids: Vec<&Span> = spans.iter().filter(|s| s.name == name).collect();
        assert!(!kids.is_empty(), "no {name} span exported");
        for k in &kids {
            assert_eq!(k.trace_id, root.trace_id, "{name} is in the backfill's trace");
            let parent = by_id.get(k.parent.as_slice()).unwrap_or_else(|| panic!("{name}'s parent was not exported"));
            assert_eq!(parent.name, "backfill", "{name} is a child of backfill");
        }
    }
    let fetch = spans.iter().find(|s| s.name == "fetch").expect("fetch");
    assert!(fetch.attributes.iter().any(|a| a == "from" || a == "height"), "{:?}", fetch.attributes);
}
