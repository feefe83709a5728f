//! the fault matrix (docs/testing.md): ordering and duplicates (REORG-04). REORG-01 is in `anvil_follow`,
//! REORG-02 in `sim_fleet`.

use std::time::Duration;

use blockstreamer::config::Strategy;
use blockstreamer::fault::{Fault, Rule, Script};

use crate::bed::{Bed, Truth, sim_chain};
use crate::helpers::{init_tracing, scalar_i64};

/// REORG-04 (simulated chain): p1 answers higher heights first (delays fall with height), p2
/// answers every batch with each block twice. No block is ever stored before its parent, and
/// duplicates change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reorg04_out_of_order_and_duplicates() {
    init_tracing();
    let chain = sim_chain(400, 41);
    let mut bed = Bed::new(Truth::Sim(chain), 2, |c| {
        c.routing.strategy = Strategy::RoundRobin;
        c.routing.hedge = false;
        c.batch_size = 5;
        c.concurrency = 8;
    })
    .await;
    // p1: heights in steps of 50, the lowest delayed most.
    let rules = (0..8u64)
        .map(|k| {
            Rule::always(&format!("delay{k}"), Fault::Delay { ms: 40 * (8 - k) })
                .methods(&["eth_getBlockByNumber"])
                .heights(k * 50, k * 50 + 49)
        })
        .collect();
    bed.proxies[0].set_script(Script { seed: 4, rules });
    bed.proxies[1].set_script(Script::single(
        Rule::always("twice", Fault::Duplicate).methods(&["eth_getBlockByNumber"]).heights(0, u64::MAX),
    ));
    bed.follow(0);
    bed.settle(Duration::from_secs(30)).await;
    bed.run_chain(Duration::from_millis(100), Duration::from_secs(2)).await;
    bed.settle(Duration::from_secs(10)).await;
    let samples = bed.all_samples();
    assert!(samples.len() >= 5, "sampled {} times", samples.len());
    assert!(
        samples.iter().all(|s| s.link_breaks == 0 && s.dups == 0 && s.missing == 0),
        "a reader saw a hole, dup or link break"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (bed, res) = bed.stop().await;
    res.expect("follow ended cleanly");
    let twice = bed.log(1).iter().filter(|c| c.fault.is_some()).count();
    assert!(twice >= 5, "p2 duplicated {twice} answers");
    // jsonrpsee matches batch answers by id and drops the repeats, so a duplicated delivery is a
    // no-op: every p2 answer is an ordinary success and nothing is stored twice.
    let failed = scalar_i64(
        &bed.pool,
        "SELECT count(*) FROM provider_requests_view WHERE provider = 'p2' AND block_number IS NOT NULL AND outcome <> 'ok'",
    )
    .await;
    assert_eq!(failed, 0, "duplicated answers caused failures");
    let stored = scalar_i64(&bed.pool, "SELECT count(*) FROM blocks").await;
    let canonical = scalar_i64(&bed.pool, "SELECT count(*) FROM blocks WHERE canonical = 1").await;
    assert_eq!(stored, canonical, "a duplicate left an extra row");
    bed.assert_final().await;
}

/// REORG-03 (simulated chains): p1 and p2 on branch A, p3 on branch B for 20 blocks, then B
/// grows longer and A's providers move to it. No reader ever sees a broken link, the stored
/// chain ends equal to B, and the canonical tip switched branches at most twice (one true switch
/// plus one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reorg03_providers_disagree_fork() {
    init_tracing();
    let a = sim_chain(30, 71);
    // Fork voting needs each provider's hash at the top: header polls.
    let mut bed = Bed::new(Truth::Sim(a.clone()), 3, |c| c.heads.poll = blockstreamer::config::HeadPoll::Header).await;
    let b = a.fork();
    let sb = blockstreamer::sim::serve(b.clone(), blockstreamer::sim::SimProviderOptions { name: "b".into(), lag: 0 })
        .await
        .expect("serve");
    bed.proxies[2].set_upstream(&sb.url()).expect("upstream");
    bed.follow(0);
    bed.settle(Duration::from_secs(10)).await;
    for _ in 0..20 {
        a.tick();
        b.tick();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // During the split the majority branch is followed.
    let head = a.head_number();
    let stored = crate::helpers::canonical_hashes(&bed.pool, head - 5, head).await;
    let on_a = stored.iter().all(|(n, h)| a.block(*n).is_some_and(|blk| format!("{:#x}", blk.hash) == *h));
    assert!(on_a, "not on the majority branch during the split");
    // B grows longer; A's providers follow it.
    for _ in 0..3 {
        b.tick();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bed.proxies[0].set_upstream(&sb.url()).expect("upstream");
    bed.proxies[1].set_upstream(&sb.url()).expect("upstream");
    for _ in 0..5 {
        b.tick();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let end = std::time::Instant::now() + Duration::from_secs(10);
    let head = b.head_number();
    loop {
        let stored = crate::helpers::canonical_hashes(&bed.pool, 0, head).await;
        let same = stored.len() as u64 == head + 1
            && stored.iter().all(|(n, h)| b.block(*n).is_some_and(|blk| format!("{:#x}", blk.hash) == *h));
        if same {
            break;
        }
        assert!(std::time::Instant::now() < end, "stored chain never became branch B");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let samples = bed.all_samples();
    assert!(samples.iter().all(|s| s.link_breaks == 0 && s.dups == 0), "a reader saw a link break or dup");
    let switches = scalar_i64(&bed.pool, "SELECT count(*) FROM reorgs").await;
    assert!((1..=2).contains(&switches), "canonical tip switched branches {switches} times");
    let forks = scalar_i64(&bed.pool, "SELECT count(*) FROM forks_view").await;
    assert!(forks >= 10, "the fork ledger recorded {forks} heights with disagreeing providers");
    let (_bed, res) = bed.stop().await;
    res.expect("follow ended cleanly");
}
