//! RELIABILITY.md §4.4: ordering and duplicates (REORG-04). REORG-01 is in `anvil_follow`,
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
