//! Handling a batch: retried while what it needs does not answer, split when the stage
//! refuses it, until only the inputs it is refused for are left to dead-letter.

use std::collections::HashSet;
use std::time::Instant;

use motcua_schemas::Codec;

use crate::config::RuntimeConfig;
use crate::consumer::Received;
use crate::dead_letter::DeadLetterReason;
use crate::owed::OwedStatuses;
use crate::shutdown::Shutdown;
use crate::{telemetry, Envelope, Error, Outcome, Result, Stage, StageError};

/// Handles a batch. When the stage refuses it ([`StageError::Refused`]: the database
/// refused a row), the batch is split in halves and each is handled again, down to the
/// single input(s) it is refused for; only those are dead-lettered, with the stage's
/// reason, and every other input is processed. `None`: shutdown while retrying.
pub(crate) fn handle_isolating<'a, S: Stage>(
    stage: &'a S,
    inputs: &'a [Envelope<S::Input>],
    cfg: &'a RuntimeConfig,
    shutdown: &'a Shutdown,
) -> futures::future::BoxFuture<'a, Result<Option<Vec<Outcome>>>> {
    Box::pin(async move {
        let refused = match handle_with_retry(stage, inputs, cfg, shutdown).await? {
            None => return Ok(None),
            Some(Ok(outcomes)) => return Ok(Some(outcomes)),
            Some(Err(refused)) => refused,
        };
        if inputs.len() == 1 {
            return Ok(Some(vec![refused.into()]));
        }
        telemetry::batch_split(stage.name(), inputs.len(), &refused.code);
        let (left, right) = inputs.split_at(inputs.len() / 2);
        let Some(mut outcomes) = handle_isolating(stage, left, cfg, shutdown).await? else {
            return Ok(None);
        };
        let Some(rest) = handle_isolating(stage, right, cfg, shutdown).await? else {
            return Ok(None);
        };
        outcomes.extend(rest);
        Ok(Some(outcomes))
    })
}

/// Makes every writer schema of the batch known to the codec (see
/// [`Codec::learn_writers`]), retrying within the retry budget. `Ok(false)`: shutdown.
pub(crate) async fn learn_writers(
    codec: &Codec,
    batch: &[Received],
    cfg: &RuntimeConfig,
    stage: &'static str,
    shutdown: &Shutdown,
) -> Result<bool> {
    let learned = retrying(stage, cfg, shutdown, || async {
        Ok(
            match codec
                .learn_writers(batch.iter().filter_map(|m| m.payload.as_deref()))
                .await
            {
                Ok(_) => Attempt::Done(()),
                Err(e) => Attempt::Retry(e.to_string()),
            },
        )
    })
    .await?;
    Ok(learned.is_some())
}

/// Handles a batch, retrying retryable failures within the budget. `Some(Err(..))`: the
/// stage refused the batch (reason code and reason).
async fn handle_with_retry<S: Stage>(
    stage: &S,
    inputs: &[Envelope<S::Input>],
    cfg: &RuntimeConfig,
    shutdown: &Shutdown,
) -> Result<Option<std::result::Result<Vec<Outcome>, DeadLetterReason>>> {
    if inputs.is_empty() {
        return Ok(Some(Ok(Vec::new())));
    }
    retrying(stage.name(), cfg, shutdown, || async {
        match stage.handle_batch(inputs).await {
            Ok(o) => Ok(Attempt::Done(Ok(o))),
            Err(StageError::Refused { reason_code, reason }) => {
                Ok(Attempt::Done(Err(DeadLetterReason::new(reason_code, reason))))
            }
            Err(StageError::Fatal(reason)) => Err(Error::Fatal {
                stage: stage.name().to_owned(),
                reason,
            }),
            Err(StageError::Retryable(reason)) => Ok(Attempt::Retry(reason)),
        }
    })
    .await
}

/// One try of something the runtime retries.
pub(crate) enum Attempt<T> {
    Done(T),
    /// Failed for a reason that may pass (a store or registry not answering).
    Retry(String),
}

/// Runs `attempt` until it is done, with doubling delays from `retry_initial` up to
/// `retry_max`; past `retry_budget` the worker stops (fatal). `Ok(None)`: shutdown.
pub(crate) async fn retrying<T, F, Fut>(
    stage: &'static str,
    cfg: &RuntimeConfig,
    shutdown: &Shutdown,
    mut attempt: F,
) -> Result<Option<T>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Attempt<T>>>,
{
    let started = Instant::now();
    let mut delay = cfg.retry_initial;
    loop {
        let reason = match attempt().await? {
            Attempt::Done(t) => return Ok(Some(t)),
            Attempt::Retry(reason) => reason,
        };
        if started.elapsed() >= cfg.retry_budget {
            telemetry::batch_retries_exhausted(stage);
            return Err(Error::Fatal {
                stage: stage.to_owned(),
                reason: format!("still failing after {:?} of retries: {reason}", cfg.retry_budget),
            });
        }
        telemetry::batch_retrying(stage, &reason, delay);
        let mut sd = shutdown.clone();
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = sd.wait() => return Ok(None),
        }
        delay = (delay * 2).min(cfg.retry_max);
    }
}

/// One try at recording a batch's statuses as owed: the dossiers that ended first, or a
/// retry when the store does not answer (like the batch's own effects).
pub(crate) async fn owe(owed: &OwedStatuses, owing: &[(String, String)]) -> Result<Attempt<HashSet<String>>> {
    match owed.record(owing).await {
        Ok(ended) => Ok(Attempt::Done(ended)),
        Err(StageError::Fatal(reason)) => Err(Error::Fatal {
            stage: owed.stage().to_owned(),
            reason,
        }),
        Err(e) => Ok(Attempt::Retry(e.to_string())),
    }
}
