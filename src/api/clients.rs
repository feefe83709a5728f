//! `GET /v1/clients`: who called `/rpc` lately, per key and method: calls, how many the store
//! answered, errors, refusals, latency and bytes (the dashboard's client panel).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;

use super::blocks::{Params, params, uint_param};
use super::dashboard::nearest_rank;
use super::{ApiError, ApiState};
use crate::store::ClientCallRow;

/// Most raw calls one answer reads (newest first; `truncated` says when there were more).
const MAX_ROWS: u32 = 200_000;

/// `GET /v1/clients`.
#[derive(Debug, serde::Serialize)]
pub(super) struct Clients {
    pub(super) since_ms: i64,
    pub(super) truncated: bool,
    /// Busiest first.
    pub(super) clients: Vec<ClientMethod>,
}

/// One key's calls of one method in the window.
#[derive(Debug, Default, PartialEq, serde::Serialize)]
pub(super) struct ClientMethod {
    /// The key's name; `null`: calls without a key.
    pub(super) key: Option<String>,
    pub(super) method: String,
    pub(super) calls: u64,
    /// Answered by the store (the rest: by a provider, or refused).
    pub(super) from_store: u64,
    pub(super) rpc_errors: u64,
    pub(super) refused: u64,
    pub(super) p50_ms: Option<f64>,
    pub(super) p95_ms: Option<f64>,
    pub(super) bytes: u64,
}

/// (key, method) → the sums so far and the latencies seen.
type PerMethod<'a> = BTreeMap<(Option<&'a str>, &'a str), (ClientMethod, Vec<i64>)>;

fn summarise(rows: &[ClientCallRow]) -> Vec<ClientMethod> {
    let mut per: PerMethod<'_> = BTreeMap::new();
    for r in rows {
        let (m, lat) = per.entry((r.key_name.as_deref(), r.method.as_str())).or_insert_with(|| {
            (ClientMethod { key: r.key_name.clone(), method: r.method.clone(), ..ClientMethod::default() }, Vec::new())
        });
        m.calls += 1;
        m.from_store += u64::from(r.source == "store");
        m.rpc_errors += u64::from(r.outcome == "rpc_error");
        m.refused += u64::from(r.outcome == "refused");
        m.bytes += u64::try_from(r.bytes).unwrap_or(0);
        lat.push(r.latency_us);
    }
    let mut out: Vec<ClientMethod> = per
        .into_values()
        .map(|(mut m, mut lat)| {
            lat.sort_unstable();
            m.p50_ms = nearest_rank(&lat, 50).map(crate::store::us_to_ms);
            m.p95_ms = nearest_rank(&lat, 95).map(crate::store::us_to_ms);
            m
        })
        .collect();
    out.sort_by(|a, b| b.calls.cmp(&a.calls).then_with(|| a.key.cmp(&b.key)).then_with(|| a.method.cmp(&b.method)));
    out
}

/// `GET /v1/clients?minutes=10`: the `/rpc` calls of the last `minutes` (1..=1440), per key and
/// method.
pub(super) async fn clients(State(state): State<ApiState>, q: Params) -> Result<Json<Clients>, ApiError> {
    let map = params(q, &["minutes"])?;
    let minutes = uint_param(&map, "minutes")?.unwrap_or(10);
    if !(1..=1440).contains(&minutes) {
        return Err(ApiError::BadRequest(format!("minutes must be within 1..=1440, got {minutes}")));
    }
    let since_ms = crate::types::now_ms() - i64::try_from(minutes * 60_000).unwrap_or(i64::MAX);
    let rows = state.0.store.client_calls_since(since_ms, MAX_ROWS).await?;
    Ok(Json(Clients {
        since_ms,
        truncated: rows.len() == usize::try_from(MAX_ROWS).unwrap_or(usize::MAX),
        clients: summarise(&rows),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_summed_per_key_and_method_busiest_first() {
        let row = |key: Option<&str>, method: &str, source: &str, outcome: &str, us| ClientCallRow {
            key_name: key.map(str::to_string),
            method: method.into(),
            source: source.into(),
            outcome: outcome.into(),
            latency_us: us,
            bytes: 10,
        };
        let rows = [
            row(Some("bot"), "eth_call", "p1", "ok", 3000),
            row(Some("bot"), "eth_call", "p1", "rpc_error", 1000),
            row(None, "eth_getBlockByNumber", "store", "ok", 200),
            row(Some("bot"), "eth_call", "blockstreamer", "refused", 5),
        ];
        let out = summarise(&rows);
        assert_eq!(out.len(), 2);
        let bot = &out[0];
        assert_eq!(
            (bot.key.as_deref(), bot.calls, bot.from_store, bot.rpc_errors, bot.refused),
            (Some("bot"), 3, 0, 1, 1)
        );
        assert_eq!((bot.p50_ms, bot.p95_ms, bot.bytes), (Some(1.0), Some(3.0), 30));
        assert_eq!((out[1].key.as_deref(), out[1].from_store), (None, 1));
    }
}
