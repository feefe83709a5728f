//! Fleet-level rules over real `Fleet` values with providers that are never called: who `pick`
//! chooses, and what `publish_head` decides, at simulated times.

use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy_primitives::B256;

use super::route::{Pick, Request};
use super::*;
use crate::model::Head;
use crate::provider::wire::Reject;
use crate::provider::{ProviderError, ProviderSpec, SecretUrl};

/// A fleet of providers named `p0`, `p1`… with these weights; nothing listens at their URL.
fn fleet_with(weights: &[f64], opts: FleetOptions) -> (Fleet, tokio::sync::mpsc::Receiver<TelemetryEvent>) {
    let policies = weights.iter().map(|w| ProviderPolicy { weight: *w, ..ProviderPolicy::default() }).collect();
    fleet_of(policies, opts)
}

fn fleet_of(policies: Vec<ProviderPolicy>, opts: FleetOptions) -> (Fleet, tokio::sync::mpsc::Receiver<TelemetryEvent>) {
    let (sink, rx) = TelemetrySink::new(1024);
    let providers = policies
        .into_iter()
        .enumerate()
        .map(|(i, policy)| {
            let id = ProviderId(u16::try_from(i).unwrap_or(u16::MAX));
            let spec = ProviderSpec::new(format!("p{i}"), SecretUrl::new("http://127.0.0.1:9"));
            let p = Provider::new(id, spec, sink.clone()).unwrap_or_else(|e| panic!("provider: {e}"));
            (Arc::new(p), policy)
        })
        .collect();
    (Fleet::new(providers, opts, sink).unwrap_or_else(|e| panic!("fleet: {e}")), rx)
}

fn hash(n: u64) -> B256 {
    B256::left_padding_from(&n.to_be_bytes())
}

fn set_head(f: &Fleet, id: u16, number: u64, at: Instant) {
    let mut st = f.slot(ProviderId(id)).lock();
    st.head = Some(Head { number, hash: hash(number), parent_hash: hash(number.saturating_sub(1)) }.into());
    st.head_at = Some(at);
}

fn forge(f: &Fleet, id: u16, at: Instant) {
    let e = ProviderError::Rejected(Reject::WrongNumber { want: 5, got: 6 });
    f.slot(ProviderId(id)).lock().health.on_failure(at, &e, false);
}

fn block(need: u64) -> Request {
    Request { method: method::BLOCK_BY_NUMBER, calls: 1, need: Some(need), patient: false }
}

/// Who `pick` leases at `now` (the lease is dropped at once).
fn picked(f: &Fleet, req: &Request, skip: &[ProviderId], now: Instant) -> Option<u16> {
    match f.pick_at(req, skip, now, now_ms()) {
        Pick::Got(lease) => Some(lease.id().0),
        Pick::Wait(_) | Pick::Nothing => None,
    }
}

fn kinds(rx: &mut tokio::sync::mpsc::Receiver<TelemetryEvent>) -> Vec<(u16, &'static str)> {
    let mut out = Vec::new();
    while let Ok(ev) = rx.try_recv() {
        if let TelemetryEvent::Provider(p) = ev {
            out.push((p.provider.0, p.kind.as_str()));
        }
    }
    out
}

#[test]
fn pick_never_asks_a_provider_for_a_height_above_its_head() {
    let (f, _rx) = fleet_with(&[1.0, 1.0], FleetOptions::default());
    let t0 = Instant::now();
    set_head(&f, 0, 100, t0);
    set_head(&f, 1, 105, t0);
    f.publish_head();
    assert_eq!(picked(&f, &block(103), &[], t0), Some(1));
    assert_eq!(picked(&f, &block(106), &[], t0), None, "nobody has 106");
    assert_eq!(picked(&f, &block(103), &[ProviderId(1)], t0), None, "the only one that has it is skipped");
}

#[test]
fn pick_keeps_the_sticky_primary_and_puts_lagging_providers_last() {
    let (f, mut rx) = fleet_with(&[1.0, 1.1, 1.0], FleetOptions::default());
    let t0 = Instant::now();
    for id in 0..3 {
        set_head(&f, id, 50, t0);
    }
    f.publish_head();
    // p1 weighs most: first primary, and it stays first
    assert_eq!(picked(&f, &block(50), &[], t0), Some(1));
    assert_eq!(picked(&f, &block(50), &[], t0), Some(1));
    // p1 falls 10 behind for longer than the grace period: excluded, asked last
    for n in 51..=60 {
        set_head(&f, 0, n, t0);
        set_head(&f, 2, n, t0);
        f.publish_head_at(t0);
    }
    let later = t0 + Duration::from_secs(2);
    set_head(&f, 0, 60, later);
    set_head(&f, 2, 60, later);
    f.publish_head_at(later);
    assert!(f.slot(ProviderId(1)).lock().lagging);
    let got = picked(&f, &block(50), &[], later);
    assert!(matches!(got, Some(0 | 2)), "a laggard is a last resort: {got:?}");
    assert_eq!(picked(&f, &block(50), &[ProviderId(0), ProviderId(2)], later), Some(1));
    let ev = kinds(&mut rx);
    assert!(ev.contains(&(1, "primary_switch")) && ev.contains(&(1, "excluded")), "{ev:?}");
}

#[test]
fn pick_skips_a_provider_whose_budget_is_spent() {
    let rich = ProviderPolicy { weight: 2.0, daily_credit_budget: Some(1_000), ..ProviderPolicy::default() };
    let (f, mut rx) = fleet_of(vec![rich, ProviderPolicy::default()], FleetOptions::default());
    let t0 = Instant::now();
    set_head(&f, 0, 10, t0);
    set_head(&f, 1, 10, t0);
    f.publish_head();
    assert_eq!(picked(&f, &block(10), &[], t0), Some(0));
    // what the telemetry says was spent today: the next call would overrun the budget
    f.slot(ProviderId(0)).lock().spend.seed(now_ms(), 1_000, 1_000);
    assert_eq!(picked(&f, &block(10), &[], t0), Some(1));
    assert_eq!(picked(&f, &block(10), &[ProviderId(1)], t0), None, "never over budget, even as a last resort");
    let ev = kinds(&mut rx);
    assert_eq!(ev.iter().filter(|e| **e == (0, "budget_exhausted")).count(), 1, "told once: {ev:?}");
    assert_eq!(f.status()[0].state, ProviderState::Excluded);
}

#[test]
fn a_forger_is_not_the_primary_five_minutes_after_its_last_forgery() {
    // p0 looks best on paper (weight 1.5) until it forges a block at t0.
    let (f, mut rx) = fleet_with(&[1.5, 1.0], FleetOptions::default());
    let t0 = Instant::now();
    set_head(&f, 0, 10, t0);
    set_head(&f, 1, 10, t0);
    f.publish_head();
    assert_eq!(picked(&f, &block(10), &[], t0), Some(0));
    forge(&f, 0, t0);
    assert_eq!(picked(&f, &block(10), &[], t0), Some(1), "demoted at once");
    // Five minutes on, the window forgot the error; the integrity memory (1 h) did not.
    let t5 = t0 + Duration::from_secs(300);
    for _ in 0..20 {
        assert_eq!(picked(&f, &block(10), &[], t5), Some(1));
    }
    assert_eq!(f.lock_primary().current(), Some(ProviderId(1)));
    let parts = f.slot(ProviderId(0)).lock().score(&ProviderPolicy::default(), t5, false).1;
    assert!(parts.integrity > 4.0, "{parts:?}");
    // It still serves when the clean provider cannot.
    assert_eq!(picked(&f, &block(10), &[ProviderId(1)], t5), Some(0));
    let ev = kinds(&mut rx);
    assert!(ev.contains(&(1, "primary_switch")) && ev.contains(&(0, "integrity_penalty")), "{ev:?}");
}

#[test]
fn with_a_short_integrity_memory_a_forger_earns_the_primary_back() {
    let mut opts = FleetOptions::default();
    opts.health.integrity_memory = Duration::from_secs(60);
    let (f, _rx) = fleet_with(&[1.5, 1.0], opts);
    let t0 = Instant::now();
    set_head(&f, 0, 10, t0);
    set_head(&f, 1, 10, t0);
    f.publish_head();
    forge(&f, 0, t0);
    assert_eq!(picked(&f, &block(10), &[], t0), Some(1));
    let t5 = t0 + Duration::from_secs(300);
    // prune happens on the next sample; the weight is 0 past the memory either way
    f.slot(ProviderId(0)).lock().health.on_success(t5, Duration::from_millis(5), false, true);
    assert_eq!(picked(&f, &block(10), &[], t5), Some(0), "forgotten, and clearly better by weight");
}

#[test]
fn publish_head_tells_subscribers_and_excludes_and_readmits_laggards() {
    let (f, mut rx) = fleet_with(&[1.0, 1.0], FleetOptions::default());
    let mut heads = f.subscribe_head();
    let t0 = Instant::now();
    set_head(&f, 0, 20, t0);
    f.publish_head();
    assert!(heads.has_changed().unwrap_or(false));
    assert_eq!(heads.borrow_and_update().map(|h| (h.number, h.provider)), Some((20, ProviderId(0))));
    f.publish_head();
    assert!(!heads.has_changed().unwrap_or(true), "no change, no wake-up");
    // p1 reports 10 blocks behind; the fleet saw those heights well over a second ago
    {
        let mut tr = f.lock_tracker();
        let old = t0.checked_sub(Duration::from_secs(5)).unwrap_or(t0);
        let reports: Vec<head::HeadReport> = (11..=20)
            .map(|n| head::HeadReport {
                provider: ProviderId(0),
                number: n,
                hash: Some(hash(n)),
                parent_hash: Some(hash(n - 1)),
                fresh: true,
            })
            .collect();
        for r in &reports {
            tr.publish(std::slice::from_ref(r), old);
        }
    }
    // (reported after the fleet saw 20: judged against it)
    set_head(&f, 1, 10, Instant::now());
    f.publish_head();
    assert!(f.slot(ProviderId(1)).lock().lagging);
    set_head(&f, 1, 19, Instant::now());
    f.publish_head();
    assert!(!f.slot(ProviderId(1)).lock().lagging);
    let ev = kinds(&mut rx);
    assert_eq!(ev, [(1, "excluded"), (1, "readmitted")]);
    let st = f.status();
    assert_eq!((st[1].state, st[1].lag_blocks), (ProviderState::Healthy, 1));
}

#[test]
fn paid_standbys_are_polled_seldom_the_tip_server_and_free_ones_often_a_subscription_never() {
    let paid = |price: f64| ProviderPolicy { price_per_million: price, ..ProviderPolicy::default() };
    let (f, _rx) = fleet_of(vec![paid(0.0), paid(0.45), paid(0.45)], FleetOptions::default());
    let (fast, slow) = (f.opts.heads.interval, f.opts.heads.standby_interval);
    let interval = |id: u16| f.poll_interval(f.slot(ProviderId(id)));
    // nobody served the tip yet: everyone polled at the fleet's interval
    assert_eq!((interval(0), interval(1), interval(2)), (fast, fast, fast));
    // p1 serves the tip: p2, paid and idle, is a standby; p0 is free
    f.learned_block(7, hash(7), ProviderId(1));
    assert_eq!((interval(0), interval(1), interval(2)), (fast, fast, slow));

    // 12 s blocks: right after its height rose, a provider waits 0.75 of that before its next poll
    let t0 = Instant::now();
    for k in 0..4u32 {
        f.lock_clock().observe(100 + u64::from(k), t0 + Duration::from_secs(12) * k);
    }
    let slot = f.slot(ProviderId(0));
    let now = t0 + Duration::from_secs(36);
    {
        let mut st = slot.lock();
        st.polled_at = Some(now);
        st.moved_at = Some(now);
    }
    assert_eq!(f.next_poll(slot, now), Some(now + Duration::from_secs(9)));
    slot.lock().moved_at = Some(now - Duration::from_secs(20));
    assert_eq!(f.next_poll(slot, now), Some(now + fast), "long after the rise: every interval");
    slot.lock().sub = slot::SubState::Live;
    assert_eq!(f.next_poll(slot, now), None, "a live subscription is not polled");
}
