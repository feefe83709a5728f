//! `eth_subscribe` over the WebSocket: `newHeads` and `logs`, followed from the store as blocks
//! commit. The follower keeps a cursor (the last block it told about) and always reads from the
//! database, as the SSE streams do; a commit only wakes it. On a reorg, `logs` sends each log of
//! the dropped blocks again with `removed: true` (newest first, as a node undoes them) before
//! the logs of the replacement blocks; `newHeads` sends the replacement heads.

use std::borrow::Cow;
use std::sync::Arc;

use alloy_primitives::B256;
use serde_json::value::RawValue;

use super::envelope::RpcError;
use super::local::rebuild;
use super::params::{self, LogFilter};
use super::ws::Conn;
use crate::api::ApiState;
use crate::api::stream::wait_for_commit;
use crate::store::{BlockAt, BlockRow, Kept};

/// Blocks read per database page while catching up after a wake-up.
const PAGE: u32 = 200;

/// Block fields a node leaves out of a `newHeads` header (geth's header form; anvil sends the
/// whole block).
const NOT_IN_HEADERS: [&str; 5] = ["transactions", "uncles", "withdrawals", "size", "totalDifficulty"];

/// What a subscription follows.
#[derive(Debug, Clone)]
pub(super) enum Topic {
    NewHeads,
    Logs(LogFilter),
}

impl Topic {
    /// The metrics label.
    pub(super) fn as_str(&self) -> &'static str {
        match self {
            Self::NewHeads => "newHeads",
            Self::Logs(_) => "logs",
        }
    }
}

/// Read `eth_subscribe`'s params.
pub(super) fn topic(p: Option<&RawValue>) -> Result<Topic, RpcError> {
    let p = params::positional(p)?;
    let kind: &str = p
        .first()
        .and_then(|k| serde_json::from_str(k.get()).ok())
        .ok_or_else(|| RpcError::invalid_params("eth_subscribe needs a subscription name: \"newHeads\" or \"logs\""))?;
    match kind {
        "newHeads" if p.len() == 1 => Ok(Topic::NewHeads),
        "logs" if p.len() <= 2 => {
            let Some(f) = p.get(1) else { return Ok(Topic::Logs(LogFilter::default())) };
            let f = params::log_filter(f)?;
            if f.from.is_some() || f.to.is_some() || f.block_hash.is_some() {
                return Err(RpcError::invalid_params(
                    "a logs subscription follows new blocks: fromBlock, toBlock and blockHash do not apply (use eth_getLogs for past ones)",
                ));
            }
            Ok(Topic::Logs(f))
        }
        "newHeads" | "logs" => Err(RpcError::invalid_params(format!("too many params for a {kind} subscription"))),
        other => Err(RpcError::invalid_params(format!(
            "unsupported subscription {other:?}: this endpoint serves \"newHeads\" and \"logs\" (pending transactions live in one node's pool)"
        ))),
    }
}

/// The last block a subscriber was told about.
#[derive(Debug, Clone)]
struct Cursor {
    number: u64,
    hash: B256,
}

/// One subscription's follower, from the stored head at subscribe time until the client
/// unsubscribes, leaves or is cut off. Sends nothing before `ready` (the subscribe reply went).
pub(super) async fn follow(
    state: ApiState,
    conn: Arc<Conn>,
    id: String,
    topic: Topic,
    ready: tokio::sync::oneshot::Receiver<()>,
) {
    let start =
        state.0.store.stored_tip().await.ok().flatten().map(|t| Cursor { number: t.number, hash: t.hash.into() });
    let _ = ready.await;
    let f = Follower { state: &state, conn: &conn, id: &id, topic: &topic };
    if let Err(why) = f.run(start).await {
        tracing::info!(subscription = %id, reason = %why, "subscription ended");
        conn.cut_off(why);
    }
}

struct Follower<'a> {
    state: &'a ApiState,
    conn: &'a Conn,
    id: &'a str,
    topic: &'a Topic,
}

/// `Ok(false)`: the client is gone (stop quietly); Err: end with this reason.
type Sent = Result<bool, String>;

fn db(e: impl std::fmt::Display) -> String {
    format!("database error: {e}")
}

fn hash_of(s: &str) -> Result<B256, String> {
    s.parse().map_err(|_| format!("stored hash {s:?}"))
}

impl Follower<'_> {
    async fn run(&self, mut cursor: Option<Cursor>) -> Result<(), String> {
        let store = &self.state.0.store;
        let mut changes = store.subscribe_changes();
        loop {
            if let Some(c) = cursor.clone()
                && store.canonical_hash_at(c.number).await.map_err(db)?.map(B256::from) != Some(c.hash)
            {
                match self.unwind(&c).await? {
                    Some(fork) => cursor = Some(fork),
                    None => return Ok(()),
                }
            }
            let next = cursor.as_ref().map_or(0, |c| c.number + 1);
            let rows = store.blocks_range(next, i64::MAX.unsigned_abs(), PAGE, false).await.map_err(db)?;
            let mut stalled = rows.len() < usize::try_from(PAGE).unwrap_or(usize::MAX);
            for b in rows {
                let linked = cursor.as_ref().is_none_or(|c| hash_of(&b.parent_hash).is_ok_and(|p| p == c.hash));
                // A hole (repair fills it) or a branch that changed since we looked: look again.
                if cursor.as_ref().is_some_and(|c| b.number != c.number + 1) || !linked {
                    stalled = true;
                    break;
                }
                if !self.added(&b).await? {
                    return Ok(());
                }
                cursor = Some(Cursor { number: b.number, hash: hash_of(&b.hash)? });
            }
            if stalled && !wait_for_commit(&self.state.0.cancel, self.conn.closed(), &mut changes).await? {
                return Ok(());
            }
        }
    }

    async fn notify(&self, result: &str) -> Sent {
        let text = format!(
            r#"{{"jsonrpc":"2.0","method":"eth_subscription","params":{{"subscription":"{}","result":{result}}}}}"#,
            self.id
        );
        Ok(self.conn.send(text).await)
    }

    /// A new canonical block: its header, or its matching logs.
    async fn added(&self, b: &BlockRow) -> Sent {
        let h = hash_of(&b.hash)?;
        match self.topic {
            Topic::NewHeads => {
                let kept =
                    self.state.0.store.kept_json(BlockAt::Hash(h), Kept::Block).map_err(db)?.ok_or_else(|| {
                        format!("block {}'s JSON is not kept ([index] raw_json = false): newHeads needs it", b.number)
                    })?;
                let text = kept.json.text().map_err(|e| format!("stored block JSON: {e}"))?;
                self.notify(&header(&text)?).await
            }
            Topic::Logs(m) => self.logs(b, h, m, false).await,
        }
    }

    /// Every matching log of block `b` (newest first when `removed`).
    async fn logs(&self, b: &BlockRow, h: B256, m: &LogFilter, removed: bool) -> Sent {
        if b.tx_count == 0 {
            return Ok(true);
        }
        let not_kept = || {
            format!(
                "the receipts of block {} are not kept in full ([index] receipts / raw_json): logs cannot be followed",
                b.number
            )
        };
        let kept = self.state.0.store.kept_logs(BlockAt::Hash(h)).map_err(db)?.ok_or_else(not_kept)?;
        let logs = kept.logs.ok_or_else(not_kept)?;
        let mut matching = Vec::new();
        for log in logs.entries() {
            let log = log.map_err(|e| e.to_string())?;
            if m.matches(&log) {
                matching.push(log.json);
            }
        }
        if removed {
            matching.reverse();
        }
        for log in matching {
            let sent = if removed { self.notify(&with_removed(log)?).await? } else { self.notify(log).await? };
            if !sent {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The cursor's block left the canonical chain: for `logs`, every matching log of the old
    /// branch (walked by parent hash down to the fork point) with `removed: true`. Returns the
    /// fork point as the new cursor (`None`: the client left).
    async fn unwind(&self, c: &Cursor) -> Result<Option<Cursor>, String> {
        let store = &self.state.0.store;
        let Some(branch) = store.dropped_branch(&c.hash.0).await.map_err(db)? else {
            return Err(format!("block {} {} is no longer stored; subscribe again", c.number, c.hash));
        };
        metrics::counter!("blockstreamer_rpc_subscription_reorgs_total", "topic" => self.topic.as_str()).increment(1);
        if let Topic::Logs(m) = self.topic {
            for b in &branch.blocks {
                if !self.logs(b, hash_of(&b.hash)?, m, true).await? {
                    return Ok(None);
                }
            }
        }
        Ok(Some(Cursor { number: branch.fork.0, hash: branch.fork.1.into() }))
    }
}

/// A stored block object as a `newHeads` header: the same fields, in the node's order, without
/// the body.
fn header(block: &str) -> Result<String, String> {
    rebuild(block, |k, v| Ok((!NOT_IN_HEADERS.contains(&k)).then_some(Cow::Borrowed(v)))).map_err(|e| e.message)
}

/// A stored log object with `removed: true`.
fn with_removed(log: &str) -> Result<String, String> {
    let mut out =
        rebuild(log, |k, v| Ok(Some(Cow::Borrowed(if k == "removed" { "true" } else { v })))).map_err(|e| e.message)?;
    if !log.contains("\"removed\"") {
        out.pop();
        out.push_str(if out.len() > 1 { r#","removed":true}"# } else { r#""removed":true}"# });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::rpc::test_raw as raw;

    #[test]
    fn headers_leave_the_body_out_and_keep_the_order() {
        let b = r#"{"hash":"0x1","number":"0x2","size":"0x3","transactions":["0xaa"],"uncles":[],"withdrawals":[],"totalDifficulty":"0x0","extraData":"0x"}"#;
        assert_eq!(header(b).unwrap(), r#"{"hash":"0x1","number":"0x2","extraData":"0x"}"#);
    }

    #[test]
    fn removed_logs_say_so() {
        assert_eq!(with_removed(r#"{"a":1,"removed":false,"b":2}"#).unwrap(), r#"{"a":1,"removed":true,"b":2}"#);
        assert_eq!(with_removed(r#"{"a":1}"#).unwrap(), r#"{"a":1,"removed":true}"#);
    }

    #[test]
    fn subscriptions_are_read_and_bad_ones_refused() {
        assert!(matches!(topic(Some(&raw(r#"["newHeads"]"#))), Ok(Topic::NewHeads)));
        let a = "0x00000000000000000000000000000000000000aa";
        let t = topic(Some(&raw(&format!(r#"["logs",{{"address":"{a}","topics":[null]}}]"#)))).unwrap();
        let Topic::Logs(m) = t else { panic!("logs") };
        let mut aa = [0u8; 20];
        aa[19] = 0xaa;
        let log = crate::rawlogs::LogEntry { address: &aa, topics: &[[0x11; 32]], json: "{}" };
        assert!(m.matches(&log));
        assert!(!m.matches(&crate::rawlogs::LogEntry { address: &[0xbb; 20], ..log }));
        for bad in [r#"["newPendingTransactions"]"#, r#"[]"#, r#"["logs",{"fromBlock":"0x1"}]"#, r#"["newHeads",{}]"#] {
            assert!(topic(Some(&raw(bad))).is_err(), "{bad}");
        }
    }
}
