//! The stage's timer work, beside the consume loop and through the same producer.

use motcua_schemas::Topic;

use crate::destinations::outputs;
use crate::ledger::lock;
use crate::producer::{Awaited, DeliveryToken};
use crate::shutdown::Shutdown;
use crate::worker::Worker;
use crate::{telemetry, Error, Result, Stage, StageError};

impl<S: Stage> Worker<'_, S> {
    /// Runs the stage's timer work until shutdown: every `tick_interval` (at once again after
    /// a tick that produced events), the events of a tick are produced through the worker's
    /// producer and, once all are acknowledged, the stage is told ([`Stage::ticked`]). A
    /// failing tick is retried at the next interval; a fatal one stops the worker.
    pub(crate) async fn tick_loop(&self, shutdown: &mut Shutdown, consume_ended: &tokio::sync::Notify) -> Result<u64> {
        let owed = self.producer.owed();
        let Some(every) = self.stage.tick_interval() else {
            return Ok(0);
        };
        let name = self.name;
        let mut again = false;
        let mut produced = 0u64;
        loop {
            if !again {
                tokio::select! {
                    _ = shutdown.wait() => return Ok(produced),
                    _ = consume_ended.notified() => return Ok(produced),
                    _ = tokio::time::sleep(every) => {}
                }
            }
            again = false;
            if lock(&self.ledger).fatal().is_some() || shutdown.is_triggered() {
                return Ok(produced);
            }
            let mut tick = match self.stage.tick(now_ms()).await {
                Ok(t) => t,
                Err(StageError::Fatal(reason)) => {
                    return Err(Error::Fatal {
                        stage: name.to_owned(),
                        reason: format!("timer: {reason}"),
                    })
                }
                Err(e) => {
                    telemetry::tick_failed(name, &e.to_string());
                    continue;
                }
            };
            if tick.events.is_empty() && tick.done.is_empty() {
                continue;
            }
            if let Some(owed) = owed {
                if let Err(e) = owed.gate(&mut [&mut tick.events]).await {
                    telemetry::tick_failed(name, &e.to_string());
                    continue;
                }
            }
            let destinations = self.destinations.current();
            let statuses_topic = destinations.of(Topic::Status).0.clone();
            let out = match outputs(self.codec, &destinations, None, 512, &tick.events) {
                Ok(out) => out,
                Err(why) => {
                    telemetry::tick_failed(name, &format!("{}: {}", why.code, why.reason));
                    continue;
                }
            };
            let deliveries = Awaited::expecting(out.len());
            let out = out
                .into_iter()
                .map(|o| (DeliveryToken::Tick(deliveries.clone()), o))
                .collect();
            // A status not delivered is reported to `deliveries` too: the tick fails below.
            self.producer.produce_in_order(&statuses_topic, out).await?;
            if let Some(f) = deliveries.wait().await {
                telemetry::tick_failed(name, &f);
                continue;
            }
            if let Err(e) = self.stage.ticked(&tick).await {
                // The events are out; they will be produced again with the same ids.
                telemetry::tick_failed(name, &e.to_string());
                continue;
            }
            telemetry::tick_done(name, tick.events.len());
            produced += tick.events.len() as u64;
            again = !tick.events.is_empty();
        }
    }
}

/// Milliseconds since the epoch, now.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
