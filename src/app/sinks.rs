//! The composition root's broker sinks: start them beside ingest, and after a backfill wait
//! until they have published it.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{App, AppError};

impl App {
    /// Start the broker sinks (`[sink.nats]`) in the background: each reads what is committed and
    /// publishes it; ingest never waits for them. A sink that stops (its stream lost data) says
    /// why in `sink_positions` and the log; ingest goes on.
    pub(super) async fn start_sinks(&self, chain_id: u64) -> Result<(), AppError> {
        let Some(n) = &self.config.sink.nats else { return Ok(()) };
        let env = |k: &str| std::env::var(k).ok();
        let secrets = n.secrets(&env)?;
        let handle = crate::sink::start_nats(
            self.store.clone(),
            chain_id,
            n,
            secrets,
            self.index.clone(),
            self.poll_cancel.clone(),
        )
        .await
        .map_err(|e| AppError::Other(format!("[sink.nats]: {e}")))?;
        let stopped = self.sink_stopped.clone();
        self.workers.spawn(async move {
            let res = handle.await;
            stopped.store(true, std::sync::atomic::Ordering::SeqCst);
            match res {
                Ok(Err(e)) => tracing::error!(error = %e, "the NATS sink stopped"),
                Err(e) => tracing::error!(error = %e, "the NATS sink task failed"),
                Ok(Ok(())) => {}
            }
        });
        Ok(())
    }

    /// Messages every sink has published so far (0 without sinks).
    pub(super) async fn sink_messages(&self) -> Result<u64, AppError> {
        if self.config.sink.nats.is_none() {
            return Ok(0);
        }
        Ok(self.store.sinks().await?.iter().map(|s| s.position.messages).sum())
    }

    /// After a backfill: wait until every sink has published up to the stored head (Ctrl-C
    /// leaves the rest to the next `run`), then say how fast it published.
    pub(super) async fn drain_sinks(
        &self,
        started: (std::time::Instant, u64),
        cancel: &CancellationToken,
    ) -> Result<(), AppError> {
        if self.config.sink.nats.is_none() {
            return Ok(());
        }
        let Some(tip) = self.store.stored_tip().await? else { return Ok(()) };
        let mut said = std::time::Instant::now();
        loop {
            let sinks = self.store.sinks().await?;
            let left: u64 = sinks.iter().filter_map(|s| s.position.backlog(Some(tip.number))).sum();
            if left == 0 && !sinks.is_empty() {
                break;
            }
            if self.sink_stopped.load(std::sync::atomic::Ordering::SeqCst) {
                let error = sinks.iter().find_map(|s| s.last_error.clone()).unwrap_or_default();
                return Err(AppError::Other(format!(
                    "the backfill is stored, but the sink stopped with {left} blocks unpublished: {error}"
                )));
            }
            if said.elapsed() >= Duration::from_secs(10) {
                let error = sinks.iter().find_map(|s| s.last_error.clone()).unwrap_or_default();
                tracing::info!(
                    blocks_left = left,
                    error,
                    "waiting for the sink to publish the backfill (Ctrl-C leaves the rest to the next run)"
                );
                said = std::time::Instant::now();
            }
            tokio::select! {
                () = cancel.cancelled() => return Ok(()),
                () = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
        }
        let messages = self.sink_messages().await?.saturating_sub(started.1);
        let secs = started.0.elapsed().as_secs_f64();
        #[allow(clippy::cast_precision_loss)]
        let rate = messages as f64 / secs.max(1e-9);
        tracing::info!(
            messages,
            seconds = format!("{secs:.2}"),
            messages_per_sec = format!("{rate:.0}"),
            "sink caught up"
        );
        Ok(())
    }
}
