//! One stage worker: it owns its consumer, its producer, the ledger of what is in flight
//! and the destinations, and runs a batch through the five steps ARCHITECTURE.md names
//! (consume, decode, handle, produce, commit), with the stage's timer beside them.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use motcua_schemas::{AnyEvent, Codec, Topic};
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use tracing::{debug, debug_span, info, info_span, warn, Instrument};

use crate::config::{RunSummary, RuntimeConfig};
use crate::consumer::{collect_batch, reach_brokers, store_committable, Received, StageConsumer, StageContext};
use crate::dead_letter::{dead_letter, DeadLetterReason};
use crate::decode::{decode, owns};
use crate::destinations::{outputs, Destinations, SharedDestinations};
use crate::ledger::{lock, Ledger};
use crate::owed::OwedStatuses;
use crate::producer::{DeliveryToken, Outgoing, Reports, StageProducer};
use crate::retry::{handle_isolating, learn_writers, owe, retrying};
use crate::shutdown::Shutdown;
use crate::{telemetry, Door, Envelope, Error, Input, Origin, Outcome, Result, Stage};

/// Runs one stage worker until `shutdown` fires (Ok) or a fatal error (Err).
pub async fn run<S: Stage>(stage: Arc<S>, codec: Codec, cfg: RuntimeConfig, shutdown: Shutdown) -> Result<RunSummary> {
    cfg.kafka.validate()?;
    let worker = Worker::start(&*stage, &codec, &cfg).await?;
    let (outcome, summary) = worker.work(shutdown).await;
    worker.stop(outcome, summary).await
}

/// A running worker of one stage.
pub(crate) struct Worker<'a, S: Stage> {
    pub(crate) stage: &'a S,
    pub(crate) name: &'static str,
    pub(crate) codec: &'a Codec,
    pub(crate) cfg: &'a RuntimeConfig,
    consumer: Arc<StageConsumer>,
    pub(crate) producer: StageProducer,
    pub(crate) ledger: Arc<Mutex<Ledger>>,
    pub(crate) destinations: SharedDestinations,
    /// The statuses recorded as owed until acknowledged, and their settling task.
    owed: Option<(Arc<OwedStatuses>, tokio::task::JoinHandle<()>)>,
    discovery: tokio::task::JoinHandle<()>,
}

/// A batch decoded: the inputs the stage gets, and for each message its input's index or
/// why it is set aside.
struct Decoded<I> {
    inputs: Vec<Envelope<I>>,
    slots: Vec<std::result::Result<usize, DeadLetterReason>>,
}

impl<'a, S: Stage> Worker<'a, S> {
    /// Creates the clients, checks the brokers answer, and joins the stage's group.
    async fn start(stage: &'a S, codec: &'a Codec, cfg: &'a RuntimeConfig) -> Result<Self> {
        let name = stage.name();
        let ledger = Arc::new(Mutex::new(Ledger::default()));
        let client_id = format!("motcua-{name}-{}", cfg.instance_id);
        let group = cfg.group.clone().unwrap_or_else(|| cfg.kafka.group(name));
        let mut consumer_cfg = cfg.kafka.consumer_config(&group, &client_id);
        consumer_cfg.set("statistics.interval.ms", "5000");
        if let Some(id) = &cfg.group_instance_id {
            consumer_cfg.set("group.instance.id", id);
        }
        let reports = Arc::new(Reports::default());
        let owed = stage
            .owed_statuses()
            .map(|store| OwedStatuses::new(store.clone(), name, !stage.speaks_after_decision()));
        let input_topics: Vec<String> = <S::Input as Input>::topics()
            .into_iter()
            .map(|t| cfg.kafka.topic(t))
            .collect();
        let consumer: Arc<StageConsumer> = Arc::new(consumer_cfg.create_with_context(StageContext {
            last_error: Mutex::new(None),
            ledger: ledger.clone(),
            reports: reports.clone(),
            assigned: cfg.assigned.clone(),
            joined: cfg.joined.clone(),
            brokers_down: cfg.brokers_down.clone(),
            drain_timeout: cfg.drain_timeout,
            stage: name,
            group: group.clone(),
            inputs: input_topics.clone(),
        })?);
        let producer = StageProducer::create(cfg, &client_id, name, ledger.clone(), reports, owed.clone())?;
        let refs: Vec<&str> = input_topics.iter().map(String::as_str).collect();
        reach_brokers(&consumer, cfg).await?;
        consumer.subscribe(&refs)?;
        let (destinations, discovery) = SharedDestinations::discovering(&cfg.kafka, name);
        let owed = owed.map(|o| {
            let settling = tokio::spawn(o.clone().settle_forever());
            (o, settling)
        });
        info!(stage = name, topics = ?input_topics, group = %group, "worker started");
        Ok(Self {
            stage,
            name,
            codec,
            cfg,
            consumer,
            producer,
            ledger,
            destinations,
            owed,
            discovery,
        })
    }

    /// The consume loop and the timer, until shutdown or a fatal error of either.
    async fn work(&self, mut shutdown: Shutdown) -> (Result<()>, RunSummary) {
        let mut summary = RunSummary::default();
        let mut tick_shutdown = shutdown.clone();
        // The timer stops with the consume loop (a fatal error there must not wait for the
        // timer's next round, which may be a minute away).
        let consume_ended = tokio::sync::Notify::new();
        let (outcome, ticks) = tokio::join!(
            async {
                let outcome = self.consume(&mut shutdown, &mut summary).await;
                consume_ended.notify_one();
                outcome
            },
            self.tick_loop(&mut tick_shutdown, &consume_ended),
        );
        // A fatal error of the timer stops the worker like one of the consume loop.
        let outcome = match ticks {
            Ok(n) => {
                summary.tick_events = n;
                outcome
            }
            Err(e) => outcome.and(Err(e)),
        };
        (outcome, summary)
    }

    /// Drains: whatever happened, acknowledged work gets its commit, and nothing else.
    async fn stop(self, outcome: Result<()>, summary: RunSummary) -> Result<RunSummary> {
        let name = self.name;
        self.discovery.abort();
        let deadline = Instant::now() + self.cfg.drain_timeout;
        while self.in_flight() > 0 && self.fatal().is_none() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        store_committable(&self.consumer, &self.ledger, name);
        if let Some((owed, settling)) = &self.owed {
            settling.abort();
            owed.settle().await;
        }
        let committer = self.consumer.clone();
        let commit = tokio::task::spawn_blocking(move || committer.commit_consumer_state(CommitMode::Sync)).await;
        match commit {
            Ok(Ok(())) | Ok(Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset))) => {}
            Ok(Err(e)) => warn!(stage = name, error = %e, "final commit failed"),
            Err(e) => warn!(stage = name, error = %e, "final commit task failed"),
        }
        let left = self.in_flight();
        if left > 0 {
            warn!(
                stage = name,
                left, "stopped with unacknowledged messages; they will be redelivered"
            );
        }
        let fatal = self.fatal();
        info!(stage = name, ?summary, "worker stopped");
        outcome?;
        if let Some(reason) = fatal {
            return Err(Error::Fatal {
                stage: name.to_owned(),
                reason,
            });
        }
        Ok(summary)
    }

    fn in_flight(&self) -> usize {
        lock(&self.ledger).in_flight()
    }

    /// Why the worker must stop (a delivery failed, the broker refused the group), if so.
    fn fatal(&self) -> Option<String> {
        lock(&self.ledger).fatal().map(str::to_owned)
    }

    /// Batch after batch until shutdown: consume, decode, handle, produce; offsets are
    /// committed as their outputs are acknowledged.
    async fn consume(&self, shutdown: &mut Shutdown, summary: &mut RunSummary) -> Result<()> {
        let mut first_received: Option<Instant> = None;
        let mut paused = false;
        loop {
            if let Some(reason) = self.fatal() {
                return Err(Error::Fatal {
                    stage: self.name.to_owned(),
                    reason,
                });
            }
            // 5. commit: what the broker acknowledged since the last turn.
            store_committable(&self.consumer, &self.ledger, self.name);
            self.hold_back(&mut paused, summary);
            // 1. consume
            let batch = tokio::select! {
                _ = shutdown.wait() => break,
                b = self.receive(summary) => b,
            };
            if batch.is_empty() {
                continue;
            }
            first_received.get_or_insert_with(Instant::now);
            if !self.process(batch, shutdown, summary).await? {
                // Shutdown while retrying: nothing more of this batch is produced or stored.
                return Ok(());
            }
        }
        // Shutdown: wait (bounded) for the last outputs, so the busy time covers them.
        let deadline = Instant::now() + self.cfg.drain_timeout;
        while self.in_flight() > 0 && self.fatal().is_none() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        if let (Some(first), Some(drained)) = (first_received, lock(&self.ledger).last_drained()) {
            summary.busy = drained.checked_duration_since(first);
        }
        Ok(())
    }

    /// Backpressure without leaving the group: with too much in flight the assigned
    /// partitions are paused, and the consumer is still polled (rebalances and the poll
    /// interval stay served); they resume once half has drained.
    fn hold_back(&self, paused: &mut bool, summary: &mut RunSummary) {
        let (name, max) = (self.name, self.cfg.max_in_flight);
        let in_flight = self.in_flight();
        telemetry::in_flight(name, in_flight);
        if in_flight >= max {
            if let Ok(assignment) = self.consumer.assignment() {
                if self.consumer.pause(&assignment).is_ok() && !*paused {
                    *paused = true;
                    summary.pauses += 1;
                    telemetry::backpressure(name, true, in_flight);
                }
            }
        } else if *paused && in_flight <= max / 2 {
            if let Ok(assignment) = self.consumer.assignment() {
                if self.consumer.resume(&assignment).is_ok() {
                    *paused = false;
                    telemetry::backpressure(name, false, in_flight);
                }
            }
        }
    }

    /// Step 1, consume: a batch, without the messages of partitions revoked while it was
    /// gathered (rebalances run inside the polls): they belong to another worker now.
    async fn receive(&self, summary: &mut RunSummary) -> Vec<Received> {
        let mut batch = collect_batch(&self.consumer, &self.ledger, self.cfg).await;
        let gathered = batch.len();
        {
            let l = lock(&self.ledger);
            batch.retain(|m| l.epoch(&m.tp) == Some(m.epoch));
        }
        summary.stale += (gathered - batch.len()) as u64;
        batch
    }

    /// One batch through decode, handle and produce. `Ok(false)`: shutdown while retrying.
    async fn process(&self, batch: Vec<Received>, shutdown: &Shutdown, summary: &mut RunSummary) -> Result<bool> {
        let name = self.name;
        let started = Instant::now();
        let batch_span = info_span!("batch", stage = name, messages = batch.len());
        let mut spans: Vec<tracing::Span> = batch
            .iter()
            .map(|m| telemetry::process_span(name, &m.tp.0, m.tp.1, m.offset, m.traceparent.as_deref()))
            .collect();
        let destinations = self.destinations.current();
        summary.consumed += batch.len() as u64;
        summary.batches += 1;

        // Writer schemas published after this worker started (a newer worker's version)
        // are fetched from the registry first; while it cannot answer, the batch waits
        // like any retryable failure: these messages are not at fault.
        if !learn_writers(self.codec, &batch, self.cfg, name, shutdown).await? {
            return Ok(false);
        }
        let decoded = self.decode(&batch, &destinations, &mut spans);
        let Some(mut outcomes) = self.handle(&decoded.inputs, shutdown, &batch_span).await? else {
            return Ok(false);
        };
        if !self.withhold_ended(&mut outcomes, shutdown).await? {
            return Ok(false);
        }
        let (pending, processed) = self.frame(&batch, decoded, outcomes, &destinations, spans, &batch_span, summary)?;
        // 4. produce. A status not delivered failed the worker (the ledger holds why):
        // the next turn of the loop stops it.
        self.producer
            .produce_in_order(destinations.of(Topic::Status).0, pending)
            .await?;
        summary.processed += processed;
        telemetry::batch_done(name, started.elapsed(), batch.len(), processed);
        Ok(true)
    }

    /// Step 2, decode: what does not decode, or breaks a limit at the door, is set aside with
    /// its reason and never reaches the stage.
    fn decode(
        &self,
        batch: &[Received],
        destinations: &Destinations,
        spans: &mut [tracing::Span],
    ) -> Decoded<S::Input> {
        let door = Arc::new(Door {
            limits: self.cfg.limits.clone(),
            topic_limit: destinations.smallest(),
        });
        let mut inputs = Vec::with_capacity(batch.len());
        let mut slots = Vec::with_capacity(batch.len());
        for (m, span) in batch.iter().zip(spans.iter_mut()) {
            slots.push(decode::<S::Input>(self.codec, self.cfg, &door, m).map(|event| {
                // No header: the trace the event itself names, or its dossier's (derived
                // only when a span is exported: it costs two hashes).
                if m.traceparent.is_none() && !span.is_disabled() {
                    if let Some(tp) = event.dossier_trace() {
                        telemetry::reparent(span, &tp);
                    }
                }
                inputs.push(Envelope {
                    event,
                    origin: Origin {
                        topic: m.tp.0.clone(),
                        partition: m.tp.1,
                        offset: m.offset,
                        timestamp_ms: m.timestamp_ms,
                    },
                    door: door.clone(),
                });
                inputs.len() - 1
            }));
        }
        Decoded { inputs, slots }
    }

    /// Step 3, handle: the stage's outcomes, one per input, its effects committed; retried
    /// while what it needs does not answer, split when it refuses the batch. `None`:
    /// shutdown while retrying.
    async fn handle(
        &self,
        inputs: &[Envelope<S::Input>],
        shutdown: &Shutdown,
        batch_span: &tracing::Span,
    ) -> Result<Option<Vec<Option<Outcome>>>> {
        let Some(outcomes) = handle_isolating(self.stage, inputs, self.cfg, shutdown)
            .instrument(batch_span.clone())
            .await?
        else {
            return Ok(None);
        };
        if outcomes.len() != inputs.len() {
            return Err(Error::Fatal {
                stage: self.name.to_owned(),
                reason: format!("stage returned {} outcomes for {} inputs", outcomes.len(), inputs.len()),
            });
        }
        Ok(Some(outcomes.into_iter().map(Some).collect()))
    }

    /// The statuses about to go out are recorded as owed, and those of dossiers another
    /// stage ended first are left out ([`crate::owed`]). `false`: shutdown while retrying.
    async fn withhold_ended(&self, outcomes: &mut [Option<Outcome>], shutdown: &Shutdown) -> Result<bool> {
        let Some(owed) = self.producer.owed() else {
            return Ok(true);
        };
        let mut lists: Vec<&mut Vec<AnyEvent>> = outcomes
            .iter_mut()
            .filter_map(|o| match o {
                Some(Outcome::Emit(events)) => Some(events),
                _ => None,
            })
            .collect();
        let owing = crate::owed::owed_in(&lists);
        let Some(ended) = retrying(self.name, self.cfg, shutdown, || owe(owed, &owing)).await? else {
            return Ok(false);
        };
        crate::owed::withhold(self.name, &mut lists, &ended);
        Ok(true)
    }

    /// Each message's outputs, framed for their topics (or its dead letter), and tracked
    /// in the ledger so that its offset waits for them; with the count processed.
    #[allow(clippy::too_many_arguments)]
    fn frame(
        &self,
        batch: &[Received],
        decoded: Decoded<S::Input>,
        mut outcomes: Vec<Option<Outcome>>,
        destinations: &Destinations,
        spans: Vec<tracing::Span>,
        batch_span: &tracing::Span,
        summary: &mut RunSummary,
    ) -> Result<(Vec<(DeliveryToken, Outgoing)>, u64)> {
        let name = self.name;
        let dlq_topic = destinations.of(Topic::DeadLetter).0;
        let Decoded { inputs, slots } = decoded;
        let mut processed = 0;
        let mut pending = Vec::with_capacity(batch.len() * 2);
        for ((m, slot), process_span) in batch.iter().zip(slots).zip(spans) {
            // `process_span` ends (is exported) when this iteration ends: its outputs
            // handed over.
            let at = telemetry::At {
                dossier_id: slot.as_ref().ok().map_or("", |&i| Input::key(&inputs[i].event)),
                topic: &m.tp.0,
                partition: m.tp.1,
                offset: m.offset,
            };
            // Per-message spans are for debugging (a formatted span per message costs more
            // than the runtime's whole bookkeeping); what is logged about one message at
            // info and above names the message itself. Entered only for the synchronous
            // part: a span must not stay entered across an await.
            let span = debug_span!(parent: batch_span, "message", dossier_id = at.dossier_id, topic = at.topic, partition = at.partition, offset = at.offset);
            let entered = span.enter();
            let outcome = match slot {
                // Each input has one slot: its outcome is moved out, not copied.
                Ok(i) => outcomes[i].take().expect("one outcome per input"),
                Err(why) if !owns(self.cfg, &m.tp.0) => {
                    telemetry::message_skipped(name, &at, &why.code, &why.reason);
                    Outcome::Emit(Vec::new())
                }
                Err(why) => why.into(),
            };
            // Outputs that cannot be encoded or would not fit a Kafka message are about
            // this input: it is dead-lettered instead, and the stream goes on. The stage
            // has acted by now; the room checked at the door keeps this for outputs that
            // outgrew `limits.output_room_bytes` (see `decode`).
            let framed = match outcome {
                Outcome::Emit(events) => outputs(
                    self.codec,
                    destinations,
                    m.traceparent.as_deref(),
                    m.payload.as_ref().map_or(0, Vec::len),
                    &events,
                ),
                Outcome::DeadLetter { reason_code, reason } => Err(DeadLetterReason::new(reason_code, reason)),
            };
            let outgoing = match framed {
                Ok(out) => {
                    processed += 1;
                    process_span.record("motcua.outcome", "processed");
                    out
                }
                Err(why) => {
                    process_span.record("motcua.outcome", "dead_lettered");
                    telemetry::message_dead_lettered(name, &at, &why.code, &why.reason);
                    summary.dead_lettered += 1;
                    vec![dead_letter(self.codec, name, dlq_topic, m, &why)?]
                }
            };
            if !lock(&self.ledger).track(&m.tp, m.epoch, m.offset, outgoing.len() as u32) {
                summary.stale += 1;
                debug!("partition revoked before producing; skipping");
                continue;
            }
            drop(entered);
            summary.produced += outgoing.len() as u64;
            pending.extend(outgoing.into_iter().map(|o| {
                let token = DeliveryToken::Input {
                    tp: m.tp.clone(),
                    epoch: m.epoch,
                    offset: m.offset,
                };
                (token, o)
            }));
        }
        Ok((pending, processed))
    }
}
