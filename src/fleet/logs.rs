//! Logs by filter, for blocks already fetched, without receipts: `eth_getLogs` per filter over
//! each run of consecutive heights, in ranges each provider accepts (a range refusal is halved,
//! or the provider's suggestion taken, and remembered). Every log is checked against its block
//! — the hash it names, its transaction, the filter asked, the header's logs bloom — and a block
//! whose bloom says it may hold a selected log, but for which none came back, is asked for its
//! receipts on another provider before "no logs" is believed.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use alloy_primitives::{B256, Bloom, BloomInput, keccak256};

use super::failover::Attempts;
use super::{Fleet, FleetError};
use crate::index::{LogFilter, LogSelection};
use crate::model::{Block, BlockLogs, Log, ProviderId};
use crate::provider::logs::{FetchedLog, range_refusal};
use crate::provider::{CallCtx, ProviderError, Reject, method};

/// One filter's answer for a run: the logs per height, and who answered each height.
struct Answer {
    logs: Vec<FetchedLog>,
    by: BTreeMap<u64, ProviderId>,
}

impl Fleet {
    /// Fetch, check and attach the selected logs of every block of `blocks` that has none yet;
    /// `range` is the widest `eth_getLogs` range asked.
    #[tracing::instrument(name = "logs", skip_all, fields(from = blocks.first().map(|b| b.number), to = blocks.last().map(|b| b.number)))]
    pub async fn attach_logs(&self, blocks: &mut [Block], sel: &LogSelection, range: u64) -> Result<(), FleetError> {
        for b in blocks.iter_mut().filter(|b| b.logs.is_none() && b.tx_count == 0) {
            b.logs = Some(BlockLogs { logs: Vec::new(), provider: b.provider });
        }
        let mut start = 0;
        while start < blocks.len() {
            if blocks[start].logs.is_some() {
                start += 1;
                continue;
            }
            let mut end = start + 1;
            while end < blocks.len() && blocks[end].logs.is_none() && blocks[end].number == blocks[end - 1].number + 1 {
                end += 1;
            }
            self.logs_for_run(&mut blocks[start..end], sel, range).await?;
            start = end;
        }
        Ok(())
    }

    /// The selected logs of consecutive blocks without logs.
    async fn logs_for_run(&self, run: &mut [Block], sel: &LogSelection, range: u64) -> Result<(), FleetError> {
        let mut per_block: HashMap<u64, BTreeMap<u32, Log>> = HashMap::new();
        let mut suspects: HashMap<u64, Vec<ProviderId>> = HashMap::new();
        for f in sel.filters() {
            let answer = self.filter_logs(run, f, range).await?;
            let mut found: HashMap<u64, usize> = HashMap::new();
            for fl in answer.logs {
                *found.entry(fl.block_number).or_default() += 1;
                per_block.entry(fl.block_number).or_default().insert(fl.log.log_index, fl.log);
            }
            for b in run.iter() {
                let may = b.logs_bloom.as_ref().is_none_or(|bl| f.bloom_may_match(bl));
                if may && !found.contains_key(&b.number) && b.tx_count > 0 {
                    let by = answer.by.get(&b.number).copied().unwrap_or(b.provider);
                    suspects.entry(b.number).or_default().push(by);
                }
            }
        }
        for b in run.iter_mut() {
            let logs: Vec<Log> = per_block.remove(&b.number).map(|m| m.into_values().collect()).unwrap_or_default();
            let provider = b.provider;
            b.logs = Some(BlockLogs { logs, provider });
        }
        for (number, by) in suspects {
            if let Some(b) = run.iter_mut().find(|b| b.number == number) {
                self.second_opinion(b, sel, &by).await?;
            }
        }
        Ok(())
    }

    /// One filter over the whole run, range by range, each range with its own failover.
    async fn filter_logs(&self, run: &[Block], f: &LogFilter, range: u64) -> Result<Answer, FleetError> {
        let (Some(lo), Some(hi)) = (run.first().map(|b| b.number), run.last().map(|b| b.number)) else {
            return Ok(Answer { logs: Vec::new(), by: BTreeMap::new() });
        };
        let mut out = Answer { logs: Vec::new(), by: BTreeMap::new() };
        let mut from = lo;
        while from <= hi {
            let what = move || format!("logs of blocks {from}..={hi}");
            let mut tries = Attempts::new(self, &[]);
            loop {
                let lease = tries.lease(method::LOGS, 1, Some(hi), &what).await?;
                let id = lease.id();
                let p = lease.slot.provider.clone();
                if !p.logs_supported() {
                    drop(lease);
                    tries.failed(id, &ProviderError::Invalid("eth_getLogs is not supported here".into()), &what)?;
                    continue;
                }
                let span = p.logs_span(range.min(hi - from + 1));
                let to = from + span - 1;
                let started = Instant::now();
                let checked = |logs| check(run, f, from, to, logs);
                let r = p.logs(f, from, to, checked, CallCtx { attempt: tries.attempt(), hedged: false }).await;
                match r {
                    Ok(logs) => {
                        self.settle(lease, started, Ok(()), false);
                        out.logs.extend(logs);
                        out.by.extend((from..=to).map(|n| (n, id)));
                        from = to + 1;
                        break;
                    }
                    Err(e) => {
                        if let Some(next) = range_refusal(&e, span) {
                            // Not the provider's fault: it said what it accepts. Ask again, narrower.
                            self.settle(lease, started, Ok(()), false);
                            p.learn_logs_range(next, &e.to_string());
                            self.tell_learned();
                            continue;
                        }
                        self.settle(lease, started, Err(&e), false);
                        self.tell_learned();
                        tries.failed(id, &e, &what)?;
                    }
                }
            }
        }
        Ok(out)
    }

    /// A block for which `by` returned no logs although its bloom allows a selected one: its
    /// receipts, on another provider, decide. Logs they hold were withheld (the providers that
    /// answered are penalised) and replace the block's.
    async fn second_opinion(&self, b: &mut Block, sel: &LogSelection, by: &[ProviderId]) -> Result<(), FleetError> {
        let mut copy = b.clone();
        copy.receipts = None;
        copy.logs = None;
        self.receipts_avoiding(std::slice::from_mut(&mut copy), by).await?;
        let Some(receipts) = copy.receipts else { return Ok(()) };
        let selected: Vec<Log> = receipts
            .receipts
            .into_iter()
            .flat_map(|r| r.logs)
            .filter(|l| sel.selects(&l.inner.address, l.inner.data.topics()))
            .collect();
        let had: Vec<u32> = b.logs.iter().flat_map(|l| l.logs.iter().map(|l| l.log_index)).collect();
        let held: Vec<u32> = selected.iter().map(|l| l.log_index).collect();
        if held != had {
            let e = ProviderError::Rejected(Reject::LogsWithheld { number: b.number, held: held.len() });
            tracing::warn!(
                block = b.number,
                held = held.len(),
                returned = had.len(),
                "eth_getLogs answers disagree with the verified receipts; the receipts' logs are kept"
            );
            let mut blamed = by.to_vec();
            blamed.sort_unstable();
            blamed.dedup();
            for id in blamed {
                self.penalize(id, &e);
            }
            b.logs = Some(BlockLogs { logs: selected, provider: receipts.provider });
        }
        Ok(())
    }
}

/// Check an answer for `from..=to` of filter `f` against the fetched blocks: each log names a
/// block of the run by its hash, a transaction the block has, matches the filter, and is in the
/// header's bloom; no log index twice.
fn check(
    run: &[Block],
    f: &LogFilter,
    from: u64,
    to: u64,
    logs: Vec<FetchedLog>,
) -> Result<Vec<FetchedLog>, ProviderError> {
    let mut seen: HashMap<(u64, u32), ()> = HashMap::new();
    // The same address and topics recur across a filter's logs: hash each value once.
    let mut hashes: HashMap<Vec<u8>, B256> = HashMap::new();
    let mut in_bloom = |bloom: &Bloom, raw: &[u8]| {
        let h = match hashes.get(raw) {
            Some(h) => *h,
            None => *hashes.entry(raw.to_vec()).or_insert_with(|| keccak256(raw)),
        };
        bloom.contains_input(BloomInput::Hash(h))
    };
    for (i, fl) in logs.iter().enumerate() {
        let bad = |why: String| ProviderError::Rejected(Reject::Log { index: i, why });
        if fl.block_number < from || fl.block_number > to {
            return Err(bad(format!("block {} is outside the range {from}..={to} asked", fl.block_number)));
        }
        let Some(b) = run.iter().find(|b| b.number == fl.block_number) else {
            return Err(bad(format!("block {} is not one asked for", fl.block_number)));
        };
        if fl.block_hash != b.hash {
            // Another fork than the block fetched (the tip moved): not forgery, try elsewhere.
            return Err(ProviderError::Invalid(format!(
                "log {i} is from block {} {}, not the fetched {}",
                fl.block_number, fl.block_hash, b.hash
            )));
        }
        let l = &fl.log;
        if l.tx_index >= b.tx_count {
            return Err(bad(format!("transaction {} of a block of {}", l.tx_index, b.tx_count)));
        }
        if let Some(t) = b.transactions.get(l.tx_index as usize)
            && b.full_txs
            && t.hash != l.tx_hash
        {
            return Err(bad(format!("transactionHash {} is not the block's transaction {}", l.tx_hash, l.tx_index)));
        }
        if !f.matches(&l.inner.address, l.inner.data.topics()) {
            return Err(bad("does not match the filter asked".into()));
        }
        if let Some(bloom) = &b.logs_bloom {
            let mut missing = Vec::new();
            if !in_bloom(bloom, l.inner.address.as_slice()) {
                missing.push(format!("address {}", l.inner.address));
            }
            for (k, t) in l.inner.data.topics().iter().enumerate() {
                if !in_bloom(bloom, t.as_slice()) {
                    missing.push(format!("topic{k}"));
                }
            }
            if !missing.is_empty() {
                return Err(ProviderError::Rejected(Reject::NotInBloom {
                    number: b.number,
                    log_index: l.log_index,
                    what: missing.join(", "),
                }));
            }
        }
        if seen.insert((fl.block_number, l.log_index), ()).is_some() {
            return Err(bad(format!("log index {} twice in block {}", l.log_index, fl.block_number)));
        }
    }
    Ok(logs)
}
