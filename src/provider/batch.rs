//! Many calls of one method to one provider: one JSON-RPC batch when the provider takes
//! batches (learned: a provider that refuses one gets single calls from then on), else one call
//! each; every answer decoded by the caller, one telemetry sample per call either way.

use std::sync::atomic::Ordering;
use std::time::Instant;

use jsonrpsee::core::params::{ArrayParams, BatchRequestBuilder};

use super::http::with_meta;
use super::{CallCtx, InFlight, Provider, ProviderError, retry_hint};

impl Provider {
    /// Call `method` once per entry of `heights` (the height each call names, for telemetry),
    /// with `params(k)`, and decode answer `k` with `decode(k, raw)`. Results in order.
    pub(super) async fn calls<T>(
        &self,
        method: &'static str,
        heights: &[Option<u64>],
        params: impl Fn(usize) -> ArrayParams,
        decode: impl Fn(usize, &str) -> Result<T, ProviderError>,
        ctx: CallCtx,
    ) -> Vec<Result<T, ProviderError>> {
        if heights.len() > 1 && self.batches_ok.load(Ordering::Relaxed) {
            match self.batch(method, heights, &params, &decode, ctx).await {
                Some(out) => return out,
                None => {
                    // The provider refused the batch itself: remember, and fall back to single calls.
                    self.batches_ok.store(false, Ordering::Relaxed);
                    tracing::info!(provider = self.name(), "provider refuses JSON-RPC batches; using single calls");
                }
            }
        }
        let mut out = Vec::with_capacity(heights.len());
        for (k, height) in heights.iter().enumerate() {
            let (res, s) =
                self.call(&self.block_client, self.spec.block_timeout, method, params(k), *height, ctx).await;
            let decoded = res.and_then(|raw| decode(k, raw.get()));
            out.push(self.settle(decoded, s, |_, _| {}));
        }
        out
    }

    /// One batch; `None` when the batch as a whole was refused in a way that says "no batches".
    async fn batch<T>(
        &self,
        method: &'static str,
        heights: &[Option<u64>],
        params: &impl Fn(usize) -> ArrayParams,
        decode: &impl Fn(usize, &str) -> Result<T, ProviderError>,
        ctx: CallCtx,
    ) -> Option<Vec<Result<T, ProviderError>>> {
        let mut batch = BatchRequestBuilder::new();
        for k in 0..heights.len() {
            if batch.insert(method, params(k)).is_err() {
                return None;
            }
        }
        let started = Instant::now();
        let size = u32::try_from(heights.len()).unwrap_or(u32::MAX);
        let guard = InFlight { provider: self, method, numbers: heights.to_vec(), started, ctx, done: false };
        let fut = self.block_client.batch(batch);
        let (res, meta) = with_meta(tokio::time::timeout(self.spec.block_timeout, fut)).await;
        guard.finish();
        let whole: Result<_, ProviderError> = match res {
            Err(_) => Err(ProviderError::Timeout(self.spec.block_timeout)),
            Ok(Err(e)) => Err(self.classify(e, meta)),
            Ok(Ok(r)) => Ok(r),
        };
        let mut out = Vec::with_capacity(heights.len());
        let sample = |height: Option<u64>| {
            let mut s = self.sample(method, height, started, ctx);
            s.http_status = meta.status;
            s.batch_size = size;
            s
        };
        match whole {
            Err(e) => {
                for &h in heights {
                    let mut s = sample(h);
                    self.fail_sample(&mut s, &e);
                    self.emit(s);
                    out.push(Err(e.clone()));
                }
                if super::refuses_batches(&e) {
                    return None;
                }
            }
            Ok(resp) => {
                let mut items = resp.into_iter();
                for (k, &h) in heights.iter().enumerate() {
                    let mut s = sample(h);
                    let r = match items.next() {
                        Some(Ok(raw)) if raw.get() == "null" => Err(ProviderError::Null),
                        Some(Ok(raw)) => {
                            s.bytes = Some(raw.get().len() as u64);
                            decode(k, raw.get())
                        }
                        Some(Err(obj)) => Err(ProviderError::Rpc {
                            code: obj.code(),
                            message: obj.message().chars().take(200).collect(),
                            retry_after: meta.retry_after.or_else(|| retry_hint(obj.message())),
                        }),
                        None => Err(ProviderError::Invalid("batch response is missing an item".into())),
                    };
                    if let Err(e) = &r {
                        self.fail_sample(&mut s, e);
                    }
                    self.emit(s);
                    out.push(r);
                }
            }
        }
        Some(out)
    }
}
