//! The SSE stream: replay then live, resume with Last-Event-ID across a reorg that happened
//! while the client was away, a reorg while connected, `?from=`, and a client that stops reading.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::bed::{Bed, Truth, sim_chain};
use crate::helpers::{canonical_hashes, init_tracing};
use crate::http::{Sse, SseEvent, client};

/// What a client holds: height → hash, kept by applying events. Panics on a duplicate, a gap
/// or a broken parent link, which is what the stream promises never to send.
#[derive(Default)]
struct Model {
    chain: BTreeMap<u64, String>,
    last_id: Option<String>,
    reorgs: usize,
}

impl Model {
    fn apply(&mut self, ev: &SseEvent) {
        let v: Value = serde_json::from_str(&ev.data).expect("event data is JSON");
        match ev.event.as_str() {
            "block" => {
                let n = v["number"].as_u64().expect("number");
                let hash = v["hash"].as_str().expect("hash").to_string();
                assert!(!self.chain.contains_key(&n), "duplicate block {n}");
                if let Some((&top, top_hash)) = self.chain.iter().next_back() {
                    assert_eq!(n, top + 1, "gap: block {n} after {top}");
                    assert_eq!(v["parent_hash"].as_str(), Some(top_hash.as_str()), "block {n} does not link");
                }
                assert_eq!(ev.id.as_deref(), Some(format!("{n}:{hash}").as_str()));
                self.chain.insert(n, hash);
            }
            "reorg" => {
                let from = v["drop_from"].as_u64().expect("drop_from");
                let to = v["drop_to"].as_u64().expect("drop_to");
                assert_eq!(self.chain.keys().next_back().copied(), Some(to), "a reorg drops from the client's top");
                assert_eq!(
                    self.chain.get(&(from - 1)).map(String::as_str),
                    v["fork_hash"].as_str(),
                    "the fork point is a block the client holds"
                );
                let listed: Vec<u64> =
                    v["heights"].as_array().expect("heights").iter().filter_map(Value::as_u64).collect();
                assert_eq!(listed, (from..=to).collect::<Vec<_>>());
                self.chain.retain(|k, _| *k < from);
                self.reorgs += 1;
            }
            other => panic!("unexpected event {other}: {}", ev.data),
        }
        self.last_id = ev.id.clone();
    }

    fn top(&self) -> Option<u64> {
        self.chain.keys().next_back().copied()
    }
}

async fn read_until(s: &mut Sse, m: &mut Model, tip: u64) {
    while m.top() != Some(tip) {
        let ev = s.next(Duration::from_secs(10)).await.unwrap_or_else(|| panic!("stream stalled at {:?}", m.top()));
        m.apply(&ev);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_resumes_across_reorgs_without_gap_or_duplicate() {
    init_tracing();
    let chain = sim_chain(30, 11);
    let mut bed = Bed::new(Truth::Sim(chain.clone()), 2, |c| {
        c.alerts.enabled = false;
        c.api.stream_send_timeout_ms = 1000;
    })
    .await;
    let (api, base) = bed.serve_api().await;
    let c = client();
    bed.follow(0);
    bed.settle(Duration::from_secs(20)).await;

    // Replay from 0 up to the tip, then disconnect.
    let mut m = Model::default();
    let mut s = Sse::open(&c, &format!("{base}/v1/stream/blocks?from=0"), None).await;
    assert_eq!(s.status, 200);
    read_until(&mut s, &mut m, chain.head_number()).await;
    drop(s);

    // While the client is away: a depth-3 reorg and two more blocks.
    chain.reorg(3);
    chain.tick();
    chain.tick();
    bed.settle(Duration::from_secs(20)).await;
    let mut s = Sse::open(&c, &format!("{base}/v1/stream/blocks?from=0"), m.last_id.as_deref()).await;
    let first = s.next(Duration::from_secs(10)).await.expect("first event after resume");
    assert_eq!(first.event, "reorg", "the resumed stream starts by dropping the replaced blocks: {first:?}");
    m.apply(&first);
    read_until(&mut s, &mut m, chain.head_number()).await;

    // While connected: another reorg, then the chain moves on.
    chain.reorg(2);
    bed.settle(Duration::from_secs(20)).await;
    for _ in 0..3 {
        chain.tick();
    }
    bed.settle(Duration::from_secs(20)).await;
    read_until(&mut s, &mut m, chain.head_number()).await;
    assert_eq!(m.reorgs, 2);
    let db: BTreeMap<u64, String> = canonical_hashes(&bed.pool, 0, chain.head_number()).await.into_iter().collect();
    assert_eq!(m.chain, db, "the client's chain equals the stored canonical chain");
    drop(s);

    // ?from=N starts at N.
    let n = chain.head_number() - 5;
    let mut s = Sse::open(&c, &format!("{base}/v1/stream/blocks?from={n}"), None).await;
    let ev = s.next(Duration::from_secs(10)).await.expect("event");
    assert_eq!(ev.id.as_deref().and_then(|i| i.split(':').next()), Some(n.to_string().as_str()));
    drop(s);

    // A bad Last-Event-ID is a 400; an unknown one ends with an error event.
    let plain = Sse::open(&c, &format!("{base}/v1/stream/blocks"), None).await;
    assert_eq!(plain.status, 200, "a plain request opens a stream of new blocks");
    drop(plain);
    let bad = Sse::open(&c, &format!("{base}/v1/stream/blocks"), Some("12:0x12")).await;
    assert_eq!(bad.status, 400);
    let unknown = format!("5:0x{}", "ee".repeat(32));
    let mut s = Sse::open(&c, &format!("{base}/v1/stream/blocks"), Some(&unknown)).await;
    let ev = s.next(Duration::from_secs(5)).await.expect("error event");
    assert_eq!(ev.event, "error");
    assert!(ev.data.contains("not in this database"), "{}", ev.data);

    api.stop().await;
    let (_bed, res) = bed.stop().await;
    res.expect("follow");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_cut_off_with_a_reason() {
    init_tracing();
    let chain = sim_chain(8000, 12);
    let mut bed = Bed::new(Truth::Sim(chain.clone()), 1, |c| {
        c.alerts.enabled = false;
        c.api.stream_send_timeout_ms = 500;
    })
    .await;
    let (api, _base) = bed.serve_api().await;

    bed.follow(0);
    bed.settle(Duration::from_secs(60)).await;
    // A client with a tiny receive window that reads nothing while 8,000 blocks (~6 MB of
    // events) wait: the server gives up on it instead of queueing for it.
    let sock = tokio::net::TcpSocket::new_v4().expect("socket");
    sock.set_recv_buffer_size(4096).expect("rcvbuf");
    let mut conn = sock.connect(api.addr()).await.expect("connect");
    conn.write_all(b"GET /v1/stream/blocks?from=0 HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n")
        .await
        .expect("request");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    let end = Instant::now() + Duration::from_secs(20);
    while Instant::now() < end {
        match tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf)).await {
            Ok(Ok(0)) | Err(_) => break,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Ok(Err(e)) => panic!("read: {e}"),
        }
        if String::from_utf8_lossy(&got).contains("event: error") {
            break;
        }
    }
    let text = String::from_utf8_lossy(&got);
    let blocks = text.matches("event: block").count();
    let err = text.split("event: error").nth(1).unwrap_or_else(|| panic!("no error event after {blocks} blocks"));
    assert!(err.contains("slow consumer"), "{err}");
    assert!(blocks < 8000, "cut off before the end ({blocks} blocks sent)");
    api.stop().await;
    let (_bed, res) = bed.stop().await;
    res.expect("follow");
}
