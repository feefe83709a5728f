//! the fault matrix (docs/testing.md) DB-01: storage full, and a long reader pinning the WAL.

use std::time::{Duration, Instant};

use crate::bed::{Bed, Truth, invariants, sim_chain, stored_max};
use crate::helpers::init_tracing;

/// DB-01 (a): the file hits its size cap mid-backlog. Ingest pauses without a partial block,
/// reads keep working, and once the cap is lifted it catches up with no hole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn db01a_storage_full_pauses_then_resumes() {
    init_tracing();
    // The cap must hold at least one commit batch (a catch-up commits up to 1,000 blocks, ≈ 4 MB
    // here plus ~3 MB of kept JSON), or nothing is ever stored — which is correct behaviour, but
    // not what this test looks at.
    let chain = sim_chain(4_000, 61);
    let mut bed = Bed::new(Truth::Sim(chain), 2, |c| {
        c.max_db_size_mb = Some(10);
        c.batch_size = 10;
    })
    .await;
    bed.follow(0);
    // Wait until it stops advancing short of the head: the cap bit.
    let end = Instant::now() + Duration::from_secs(30);
    let mut last = -1;
    let mut still = 0;
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let max = stored_max(&bed.pool).await;
        // Stillness counts only once something was stored (start-up can be slow on a busy box).
        if max == last && max >= 0 {
            still += 1;
        } else {
            still = 0;
        }
        last = max;
        if still >= 5 {
            break;
        }
        assert!(Instant::now() < end, "never stalled (at {max})");
    }
    assert!(last > 0 && last < 4_000, "stalled at {last}, not inside the backlog");
    assert_eq!(bed.app.health().0.as_str(), "storage_full");
    // Reads still work through the app's read pool, and nothing is half-written.
    let inv = bed.app.store.chain_invariants().await.expect("reads work while full");
    assert!(inv.ok(), "{inv:?}");
    let (_, missing, dups, breaks, partial) = invariants(&bed.pool).await;
    assert_eq!((missing, dups, breaks, partial), (0, 0, 0, 0));
    bed.app.store.set_max_size(None).await.expect("lift the cap");
    bed.settle(Duration::from_secs(30)).await;
    assert_eq!(bed.app.health().0.as_str(), "ok", "healthy again once space is back");
    let (bed, res) = bed.stop().await;
    res.expect("follow ended cleanly");
    bed.assert_final().await;
}

/// DB-01 (b): a reader holds one snapshot for 8 s while a 3,000-block backlog is written. The
/// writer never stalls, the WAL stays under 64 MiB, and within 5 s of the reader leaving it is
/// truncated to ≤ 1 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn db01b_long_reader_does_not_starve_the_writer() {
    init_tracing();
    let chain = sim_chain(3_000, 62);
    let mut bed = Bed::new(Truth::Sim(chain), 2, |_| {}).await;
    let mut reader = bed.pool.acquire().await.expect("conn");
    sqlx::query("BEGIN").execute(&mut *reader).await.expect("begin");
    let _: i64 = sqlx::query_scalar("SELECT count(*) FROM blocks").fetch_one(&mut *reader).await.expect("snapshot");
    bed.follow(0);
    let wal = |bed: &Bed| {
        let mut p = bed.app.store.path().to_path_buf().into_os_string();
        p.push("-wal");
        std::fs::metadata(p).map_or(0, |m| m.len())
    };
    let mut peak = 0;
    let held = Instant::now();
    while held.elapsed() < Duration::from_secs(8) {
        peak = peak.max(wal(&bed));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let progress = stored_max(&bed.pool).await;
    sqlx::query("COMMIT").execute(&mut *reader).await.expect("end the read");
    drop(reader);
    assert!(progress >= 2_000, "the writer stalled behind the reader (stored {progress} of 3000)");
    assert!(peak > 1 << 20, "the WAL never grew ({peak} bytes): the reader did not pin anything");
    assert!(peak <= 64 << 20, "WAL grew to {peak} bytes");
    let released = Instant::now();
    loop {
        if wal(&bed) <= 1 << 20 {
            break;
        }
        assert!(released.elapsed() < Duration::from_secs(5), "WAL still {} bytes 5 s after the reader", wal(&bed));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("db01b: WAL peak {peak} bytes, truncated {:?} after the reader ended", released.elapsed());
    bed.settle(Duration::from_secs(10)).await;
    let (bed, res) = bed.stop().await;
    res.expect("follow ended cleanly");
    bed.assert_final().await;
}

/// DB-01 (a) again on anvil behind fault proxies: 3,000 empty blocks against a 1 MiB cap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn db01a_storage_full_on_anvil() {
    init_tracing();
    let anvil = crate::helpers::Anvil::start(&[]).await;
    anvil.mine(3_000).await;
    let mut bed = Bed::new(Truth::Anvil(anvil), 2, |c| {
        c.max_db_size_mb = Some(2); // 1 MB no longer holds the schema and one batch with its kept JSON
        c.batch_size = 25;
    })
    .await;
    bed.follow(0);
    let end = Instant::now() + Duration::from_secs(60);
    let (mut last, mut still) = (-1, 0);
    while still < 5 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let max = stored_max(&bed.pool).await;
        still = if max == last && max >= 0 { still + 1 } else { 0 };
        last = max;
        assert!(Instant::now() < end, "never stalled (at {max})");
    }
    assert!(last > 0 && last < 3_000, "stalled at {last}, not inside the backlog");
    let (_, missing, dups, breaks, partial) = invariants(&bed.pool).await;
    assert_eq!((missing, dups, breaks, partial), (0, 0, 0, 0));
    bed.app.store.set_max_size(None).await.expect("lift the cap");
    bed.settle(Duration::from_secs(60)).await;
    let (bed, res) = bed.stop().await;
    res.expect("follow ended cleanly");
    bed.assert_final().await;
}

/// DB-01 (a) during a bulk-load backfill, whose block commits go through their own connection
/// (`store/bulk.rs`): the cap stops the backfill with a storage-full error (not the index
/// rebuild's, which fails too) and no partial block; a bulk connection stops at the cap, and a
/// cap lifted while it is open reaches it; the backfill then finishes with every height, the
/// truth's hashes and the tx-hash index rebuilt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn db01a_storage_full_during_a_bulk_backfill() {
    use blockstreamer::ingest::IngestError;
    use blockstreamer::model::CommitBatch;
    use blockstreamer::provider::wire::{DecodeOptions, Want, decode_block};
    use blockstreamer::store::StoreError;
    init_tracing();
    let chain = sim_chain(4_000, 63);
    let bed = Bed::new(Truth::Sim(chain.clone()), 2, |c| {
        c.max_db_size_mb = Some(10);
        c.bulk_load_min_blocks = 100;
    })
    .await;
    let cancel = tokio_util::sync::CancellationToken::new();
    let err = bed.app.backfill(0, 4_000, &cancel).await.expect_err("the cap stops the backfill");
    assert!(
        matches!(err, blockstreamer::app::AppError::Ingest(IngestError::StorageFull(_))),
        "storage full, not {err:?}"
    );
    let stopped = u64::try_from(stored_max(&bed.pool).await).expect("something was stored");
    assert!(stopped > 0 && stopped < 3_500, "stopped at {stopped}, inside the range");
    let (_, missing, dups, breaks, partial) = invariants(&bed.pool).await;
    assert_eq!((missing, dups, breaks, partial), (0, 0, 0, 0), "nothing half-written");
    // Through a bulk connection opened under the cap, blocks go in until the file is full
    // again; the cap lifted while that connection is open must reach it, or the next ones fail.
    bed.app.store.begin_bulk_load(true).await.expect("bulk");
    let opts = DecodeOptions { full_transactions: true, verify_header_hash: true, keep_raw: false };
    let decode = |from: u64, n: u64| -> Vec<_> {
        (from..from + n)
            .map(|k| {
                let b = chain.block(k).expect("in the chain");
                decode_block(b.json(true).get(), Want::Number(k), opts, blockstreamer::model::ProviderId(0))
                    .expect("decode")
            })
            .collect()
    };
    let mut next = stopped + 1;
    loop {
        assert!(next + 100 < 4_000, "the bulk connection never hit the cap");
        match bed.app.store.commit_owned(CommitBatch { reorg: None, blocks: decode(next, 25) }).await {
            Ok(()) => next += 25,
            Err(StoreError::Full) => break,
            Err(e) => panic!("expected storage full, got {e:?}"),
        }
    }
    bed.app.store.set_max_size(None).await.expect("lift the cap");
    bed.app.store.commit_owned(CommitBatch { reorg: None, blocks: decode(next, 100) }).await.expect("fits once lifted");
    bed.app.store.end_bulk_load().await.expect("end");
    bed.app.backfill(next + 100, 4_000, &cancel).await.expect("the backfill finishes once there is room");
    assert_eq!(stored_max(&bed.pool).await, 4_000);
    let idx: i64 =
        sqlx::query_scalar("SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = 'transactions_hash'")
            .fetch_one(&bed.pool)
            .await
            .expect("index");
    assert_eq!(idx, 1, "tx-hash index rebuilt");
    bed.assert_final().await;
}
