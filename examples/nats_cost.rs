//! What JetStream itself costs per message and per byte: publish `--count` messages of
//! `--size` bytes, each with a `Nats-Msg-Id` (as the sink does), `--window` acknowledgements
//! outstanding, into a fresh file-backed stream with a duplicate window; print the wall time.
//! `bench/sink.sh` reads nats-server's CPU around two runs (many small, few large messages) to
//! separate the broker's per-message and per-byte costs from the sink's (BENCHMARKS.md §10).
//!
//!   cargo run --release --example nats_cost -- --url nats://127.0.0.1:4222 --count 20000 --size 64

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, message::PublishMessage, stream};
use clap::Parser;

#[derive(Parser)]
struct Args {
    #[arg(long)]
    url: String,
    #[arg(long, default_value_t = 20_000)]
    count: usize,
    #[arg(long, default_value_t = 64)]
    size: usize,
    #[arg(long, default_value_t = 256)]
    window: usize,
    #[arg(long, default_value = "natscost")]
    stream: String,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a = Args::parse();
    let js = jetstream::new(async_nats::connect(a.url.as_str()).await?);
    let _ = js.delete_stream(&a.stream).await;
    js.create_stream(stream::Config {
        name: a.stream.clone(),
        subjects: vec![format!("{}.>", a.stream)],
        duplicate_window: Duration::from_secs(600),
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await?;
    let payload = bytes::Bytes::from(vec![b'x'; a.size]);
    let subject = format!("{}.m", a.stream);
    let started = Instant::now();
    let mut acks = std::collections::VecDeque::with_capacity(a.window);
    for i in 0..a.count {
        let id = format!("1:log:{i}:0x00");
        let m = PublishMessage::build().payload(payload.clone()).message_id(id.as_str());
        acks.push_back(js.send_publish(subject.clone(), m).await?);
        if acks.len() >= a.window
            && let Some(ack) = acks.pop_front()
        {
            ack.await?;
        }
    }
    for ack in acks {
        ack.await?;
    }
    let secs = started.elapsed().as_secs_f64();
    #[allow(clippy::cast_precision_loss)]
    let rate = a.count as f64 / secs;
    println!("nats_cost: {} messages of {} bytes in {secs:.2} s = {rate:.0} messages/s", a.count, a.size);
    js.delete_stream(&a.stream).await?;
    Ok(())
}
