//! Calls the fleet passes on for `/rpc` clients: reads with the usual selection, retries and
//! failover (never to a provider whose head is below the height a call is pinned to), and
//! writes sent to exactly one provider, never hedged and never retried once sent.

use std::time::Instant;

use super::{Fleet, FleetError};
use crate::provider::forward::{Answer, RawParams};
use crate::provider::{CallCtx, ProviderError};

/// A forwarded call's answer and who gave it.
#[derive(Debug, Clone)]
pub struct Forwarded {
    pub provider: String,
    pub answer: Answer,
}

impl Fleet {
    /// A read: failover across providers like a block fetch (no hedging: a state read is not
    /// at the tip race); `need` keeps it off providers whose head is below that height.
    pub async fn forward_read(
        &self,
        method: &'static str,
        wire_method: &str,
        params: RawParams,
        need: Option<u64>,
    ) -> Result<Forwarded, FleetError> {
        self.with_failover(
            || wire_method.to_string(),
            method,
            need,
            false,
            |p, ctx| {
                let params = params.clone();
                async move {
                    let answer = p.forward(method, wire_method, params, need, ctx).await?;
                    Ok(Forwarded { provider: p.name().to_string(), answer })
                }
            },
        )
        .await
    }

    /// A write (`eth_sendRawTransaction`…): one provider at a time, chosen like a read, never
    /// hedged. The next provider is asked only when the last one certainly never got the
    /// request (connection refused, an HTTP refusal); after a timeout or a dropped connection
    /// the error is returned: sending it again elsewhere could broadcast it twice (alloy #3186).
    pub async fn forward_write(
        &self,
        method: &'static str,
        wire_method: &str,
        params: RawParams,
    ) -> Result<Forwarded, FleetError> {
        let what = || wire_method.to_string();
        let mut tries = super::Attempts::new(self, &[]);
        loop {
            let lease = tries.lease(method, 1, None, &what).await?;
            let id = lease.id();
            let p = lease.slot.provider.clone();
            let started = Instant::now();
            let ctx = CallCtx { attempt: tries.attempt(), hedged: false };
            let r = p.forward(method, wire_method, params.clone(), None, ctx).await;
            self.settle(lease, started, r.as_ref().map(|_| ()), false);
            match r {
                Ok(answer) => return Ok(Forwarded { provider: p.name().to_string(), answer }),
                Err(e) if never_arrived(&e) => tries.failed(id, &e, &what)?,
                Err(e) => {
                    return Err(FleetError::WriteUncertain { provider: p.name().to_string(), error: e.to_string() });
                }
            }
        }
    }
}

/// Did the request certainly not reach the node? A refused connection, or an HTTP status or
/// JSON-RPC error that turned it away (throttled, unauthorised, unavailable) before it ran.
fn never_arrived(e: &ProviderError) -> bool {
    match e {
        ProviderError::Connect(m) => m.to_ascii_lowercase().contains("refused"),
        ProviderError::Http { status, .. } => matches!(status, 401..=404 | 429 | 503),
        ProviderError::Rpc { code, .. } => matches!(code, -32005 | -32029 | -32601 | 429),
        _ => false,
    }
}
