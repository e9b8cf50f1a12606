//! What the demo sees on the topics, as a downstream consumer would: every event of every
//! dossier with its broker timestamp, folded into counts, a throughput timeline, stage
//! latencies and each dossier's terminal state.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use motcua_kafka::KafkaConfig;
use motcua_runtime::Shutdown;
use motcua_schemas::{AnyEvent, Codec, DossierStatus, Topic};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::Message;

/// The steps of a dossier's life the demo follows, in pipeline order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Step {
    Submitted,
    Accepted,
    IntakeStopped,
    Verified,
    VerifyStopped,
    Billed,
    Paid,
    Routed,
    Decided,
    Completed,
}

impl Step {
    pub(crate) const ALL: [Step; 10] = [
        Step::Submitted,
        Step::Accepted,
        Step::IntakeStopped,
        Step::Verified,
        Step::VerifyStopped,
        Step::Billed,
        Step::Paid,
        Step::Routed,
        Step::Decided,
        Step::Completed,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Step::Submitted => "submitted",
            Step::Accepted => "accepted",
            Step::IntakeStopped => "stopped at intake",
            Step::Verified => "verified",
            Step::VerifyStopped => "stopped at verify",
            Step::Billed => "billed",
            Step::Paid => "paid",
            Step::Routed => "routed",
            Step::Decided => "decided",
            Step::Completed => "result returned",
        }
    }

    fn bit(self) -> u16 {
        1 << self as u16
    }
}

/// How a dossier's life ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Terminal {
    /// Signed result delivered (status 10).
    ResultReturned,
    /// Refused at the counter by intake (status 3).
    RejectedAtReception,
    /// The citizen withdrew it before the decision (status 7).
    Withdrawn,
    /// Asked for papers that never came: stopped after the wait (status 8).
    Stopped,
    /// Registries could not answer in time: handed to an officer (status 4, by verify).
    Escalated,
}

impl Terminal {
    pub(crate) const ALL: [Terminal; 5] = [
        Terminal::ResultReturned,
        Terminal::RejectedAtReception,
        Terminal::Withdrawn,
        Terminal::Stopped,
        Terminal::Escalated,
    ];

    pub(crate) fn label(self) -> &'static str {
        match self {
            Terminal::ResultReturned => "result returned",
            Terminal::RejectedAtReception => "rejected at reception",
            Terminal::Withdrawn => "withdrawn",
            Terminal::Stopped => "stopped",
            Terminal::Escalated => "escalated to an officer",
        }
    }

    /// The national status code the projection holds for a dossier that ended so.
    pub(crate) fn status_code(self) -> i32 {
        match self {
            Terminal::ResultReturned => 10,
            Terminal::RejectedAtReception => 3,
            Terminal::Withdrawn => 7,
            Terminal::Stopped => 8,
            Terminal::Escalated => 4,
        }
    }
}

/// The citizens' side of the legal clock, as the topics show it.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub(crate) struct ClockFigures {
    /// Supplement requests (status 5) by the step that asked.
    pub(crate) requested: BTreeMap<String, u64>,
    /// Supplements the portal published, and withdrawals.
    pub(crate) supplements: u64,
    pub(crate) withdrawals: u64,
    /// Dossiers resumed after a supplement (intake's "resumed" or a new reception).
    pub(crate) resumed: u64,
    /// Routed dossiers whose clock was paused, and the working time paused.
    pub(crate) routed_paused: u64,
    pub(crate) paused_working_ms: i64,
    /// New appointments (apology and new date) the back office issued.
    pub(crate) reappointments: u64,
    /// A dossier whose clock was paused and that got its result: its code.
    pub(crate) sample_paused_code: Option<String>,
}

/// One dossier while it is followed.
#[derive(Debug, Default)]
struct Followed {
    seen: u16,
    times: [i64; Step::ALL.len()],
    terminal_event: Option<String>,
    /// Broker time of the terminal event.
    ended_at: i64,
    ended_seen_at: Option<Instant>,
}

impl Followed {
    fn at(&self, s: Step) -> Option<i64> {
        (self.seen & s.bit() != 0).then(|| self.times[s as usize])
    }
}

/// The latency figures: stage → samples in milliseconds.
pub(crate) const LATENCIES: [&str; 9] = [
    "intake",
    "verify",
    "payment",
    "gateway (citizen pays)",
    "route",
    "back office",
    "result",
    // A status on the topic → the national portal filed it (its clock).
    "portal sync",
    "end to end",
];

/// Everything observed so far.
#[derive(Debug, Default)]
pub(crate) struct Observed {
    /// Broker time of the run's start: the timeline's zero.
    pub(crate) start_ms: i64,
    /// A dossier's code and the lookup token its receipt carried (intake's received
    /// status): what the demo offers to try the citizens' lookup with.
    pub(crate) sample_lookup: Option<(String, String)>,
    followed: HashMap<String, Followed>,
    /// Dossiers that reached each step (each once, however often redelivered).
    pub(crate) steps: BTreeMap<Step, u64>,
    /// Per step, dossiers per second of broker time since `start_ms`.
    pub(crate) timeline: BTreeMap<Step, Vec<u32>>,
    pub(crate) latencies: BTreeMap<&'static str, Vec<u32>>,
    pub(crate) terminal: BTreeMap<Terminal, u64>,
    /// Dossiers that reached a second, different terminal event (must stay 0).
    pub(crate) terminal_twice: u64,
    /// Time of the last terminal event (broker time).
    pub(crate) last_terminal_ms: i64,
    pub(crate) timeliness: BTreeMap<String, u64>,
    pub(crate) decisions: BTreeMap<String, u64>,
    /// `stage/status code/reason code` of the stops (intake, verify).
    pub(crate) reasons: BTreeMap<String, u64>,
    /// Receiving unit → (online, other channels) submissions.
    pub(crate) received_by_unit: BTreeMap<String, (u64, u64)>,
    /// Competent unit → routed dossiers.
    pub(crate) routed_to_unit: BTreeMap<String, u64>,
    /// Routed dossiers whose competent unit is not the one that received them (outside
    /// its jurisdiction, or a district/province-level procedure).
    pub(crate) routed_elsewhere: u64,
    pub(crate) dead_letters: BTreeMap<String, u64>,
    pub(crate) dead_letter_keys: Vec<String>,
    /// Distinct dead-lettered messages (by origin topic, partition and offset).
    pub(crate) dead_letter_origins: HashSet<String>,
    dead_letter_seen: HashSet<String>,
    /// Dead-lettered messages that are not the demo's deliberately malformed ones.
    pub(crate) unexpected_dead_letters: u64,
    /// Events seen again (redelivery or a duplicate the gateway sent).
    pub(crate) repeats: u64,
    pub(crate) undecodable: u64,
    /// The code of one dossier that got its result (to look up in the status API).
    pub(crate) sample_code: Option<String>,
    pub(crate) clock: ClockFigures,
    /// Portal requests (supplements, withdrawals) intake refused with a reason (dead
    /// letters of their topics), by reason code.
    pub(crate) refused_requests: BTreeMap<String, u64>,
    /// Ids of the status and portal events counted so far.
    counted: HashSet<String>,
    /// The status changes for the national portal (a dossier code, status 1–10), by id,
    /// with the broker time they were first seen.
    portal_change_at: HashMap<String, i64>,
    /// Codes of the dossiers whose clock was paused (until one completes).
    paused_codes: HashSet<String>,
    /// Dossiers whose withdrawal cancelled an unpaid bill no `payment.requested` (yet)
    /// announced.
    bill_cancelled: HashSet<String>,
    /// Every event folded into the province's statistics (`None` in a soak, whose
    /// memory must stay bounded).
    pub(crate) ledger: Option<motcua_stats::Ledger>,
}

impl Observed {
    pub(crate) fn starting_at(start_ms: i64, statistics: bool) -> Self {
        Self {
            start_ms,
            ledger: statistics.then(motcua_stats::Ledger::new),
            ..Self::default()
        }
    }

    pub(crate) fn ended(&self) -> u64 {
        self.terminal.values().sum()
    }

    /// Bills announced: by their `payment.requested`, or — stored just before the dossier
    /// was withdrawn, never requested — by the withdrawal that cancelled them.
    pub(crate) fn bills_announced(&self) -> u64 {
        self.step(Step::Billed) + self.bill_cancelled.len() as u64
    }

    /// Distinct messages dead-lettered (by any stage).
    pub(crate) fn dead_lettered(&self) -> u64 {
        self.dead_letter_origins.len() as u64
    }

    pub(crate) fn step(&self, s: Step) -> u64 {
        self.steps.get(&s).copied().unwrap_or(0)
    }

    /// Whether an event id is new (the topics are at-least-once).
    /// Distinct status changes the national portal should hold.
    pub(crate) fn portal_changes(&self) -> u64 {
        self.portal_change_at.len() as u64
    }

    /// The sync lag of every change the portal filed (`filed`: change id → when it was
    /// filed, the portal's clock): from the status on the topic to the portal having it.
    pub(crate) fn add_portal_sync(&mut self, filed: &BTreeMap<String, i64>) {
        let lags: Vec<u32> = filed
            .iter()
            .filter_map(|(id, at)| Some((at - self.portal_change_at.get(id)?).clamp(0, i64::from(u32::MAX)) as u32))
            .collect();
        self.latencies.entry("portal sync").or_default().extend(lags);
    }

    fn first_time(&mut self, event_id: &str) -> bool {
        if self.counted.insert(event_id.to_owned()) {
            true
        } else {
            self.repeats += 1;
            false
        }
    }

    fn record(&mut self, dossier_id: &str, step: Step, at_ms: i64) -> bool {
        let f = self.followed.entry(dossier_id.to_owned()).or_default();
        if f.seen & step.bit() != 0 {
            self.repeats += 1;
            return false;
        }
        f.seen |= step.bit();
        f.times[step as usize] = at_ms;
        *self.steps.entry(step).or_default() += 1;
        let second = ((at_ms - self.start_ms).max(0) / 1000) as usize;
        let line = self.timeline.entry(step).or_default();
        if line.len() <= second {
            line.resize(second + 1, 0);
        }
        line[second] += 1;
        true
    }

    fn end(&mut self, dossier_id: &str, how: Terminal, event_id: &str, at_ms: i64) {
        let f = self.followed.entry(dossier_id.to_owned()).or_default();
        match &f.terminal_event {
            Some(id) if id == event_id => return,
            Some(_) => {
                self.terminal_twice += 1;
                return;
            }
            None => {}
        }
        f.terminal_event = Some(event_id.to_owned());
        f.ended_at = at_ms;
        f.ended_seen_at = Some(Instant::now());
        *self.terminal.entry(how).or_default() += 1;
        self.last_terminal_ms = self.last_terminal_ms.max(at_ms);
    }

    /// Folds one event read from the broker at broker time `at_ms`.
    pub(crate) fn observe(&mut self, event: &AnyEvent, at_ms: i64) {
        if let Some(l) = &mut self.ledger {
            l.apply(event);
        }
        match event {
            AnyEvent::Submitted(e) => {
                let d = &e.dossier;
                if self.record(&d.dossier_id, Step::Submitted, at_ms) {
                    let u = self.received_by_unit.entry(d.receiving_unit_code.clone()).or_default();
                    if d.channel == motcua_schemas::Channel::Online {
                        u.0 += 1;
                    } else {
                        u.1 += 1;
                    }
                }
            }
            AnyEvent::Accepted(e) => {
                self.record(&e.dossier.dossier_id, Step::Accepted, at_ms);
            }
            AnyEvent::Verified(e) => {
                self.record(&e.dossier.dossier_id, Step::Verified, at_ms);
            }
            AnyEvent::PaymentRequested(e) => {
                self.bill_cancelled.remove(&e.dossier_id);
                self.record(&e.dossier_id, Step::Billed, at_ms);
            }
            AnyEvent::Paid(e) => {
                self.record(&e.dossier.dossier_id, Step::Paid, at_ms);
            }
            AnyEvent::Routed(e) if e.is_return() => {
                // Sent back to the back office with the papers it asked for: one more pause.
                if self.first_time(&e.event_id) {
                    if let Some(last) = e.clock_pauses.last() {
                        self.clock.routed_paused += u64::from(e.clock_pauses.len() == 1);
                        self.clock.paused_working_ms += last.paused_working_ms;
                    }
                    if self.clock.sample_paused_code.is_none() {
                        self.paused_codes.insert(e.dossier_code.clone());
                    }
                }
            }
            AnyEvent::Routed(e) => {
                if !e.clock_pauses.is_empty() && self.clock.sample_paused_code.is_none() {
                    self.paused_codes.insert(e.dossier_code.clone());
                }
                if self.record(&e.dossier.dossier_id, Step::Routed, at_ms) {
                    let paused: i64 = e.clock_pauses.iter().map(|p| p.paused_working_ms).sum();
                    if paused > 0 {
                        self.clock.routed_paused += 1;
                        self.clock.paused_working_ms += paused;
                    }
                    *self.routed_to_unit.entry(e.competent_unit_code.clone()).or_default() += 1;
                    if e.competent_unit_code != e.dossier.receiving_unit_code {
                        self.routed_elsewhere += 1;
                    }
                }
            }
            AnyEvent::Decided(e) => {
                if self.record(&e.dossier_id, Step::Decided, at_ms) {
                    let d = match e.decision {
                        motcua_schemas::Decision::Approved => "approved",
                        motcua_schemas::Decision::Refused => "refused",
                    };
                    *self.decisions.entry(d.to_owned()).or_default() += 1;
                }
            }
            AnyEvent::Completed(e) => {
                if self.record(&e.dossier_id, Step::Completed, at_ms) {
                    if self.sample_code.is_none() {
                        self.sample_code = Some(e.dossier_code.clone());
                    }
                    if self.clock.sample_paused_code.is_none() && self.paused_codes.contains(&e.dossier_code) {
                        self.clock.sample_paused_code = Some(e.dossier_code.clone());
                        self.paused_codes = HashSet::new();
                    }
                    let t = match e.timeliness {
                        motcua_schemas::Timeliness::Early => "early",
                        motcua_schemas::Timeliness::OnTime => "on_time",
                        motcua_schemas::Timeliness::Late => "late",
                    };
                    *self.timeliness.entry(t.to_owned()).or_default() += 1;
                }
                self.end(&e.dossier_id, Terminal::ResultReturned, &e.event_id, at_ms);
            }
            AnyEvent::Supplemented(e) => {
                if self.first_time(&e.event_id) {
                    self.clock.supplements += 1;
                }
            }
            AnyEvent::Withdrawn(e) => {
                if self.first_time(&e.event_id) {
                    self.clock.withdrawals += 1;
                }
            }
            AnyEvent::Reappointed(e) => {
                if self.first_time(&e.event_id) {
                    self.clock.reappointments += 1;
                }
            }
            // Counted when intake announces it (a request it refuses is a dead letter).
            AnyEvent::SupplementRequested(_) => {}
            AnyEvent::Status(s) => {
                if s.dossier_code.is_some() && (1..=10).contains(&s.status_code) {
                    self.portal_change_at.entry(s.event_id.clone()).or_insert(at_ms);
                }
                if self.sample_lookup.is_none() {
                    if let (Some(code), Some(token)) = (&s.dossier_code, &s.lookup_token) {
                        self.sample_lookup = Some((code.clone(), token.clone()));
                    }
                }
                // Payment (a bill expired) and route (no authority) stop a dossier too.
                if matches!(s.stage.as_str(), "payment" | "route") && s.status == DossierStatus::ProcessingStopped {
                    self.end(&s.dossier_id, Terminal::Stopped, &s.event_id, at_ms);
                    return;
                }
                // What the pipeline's own steps said (the back office's and track's
                // statuses are not a dossier's end).
                if s.stage != "intake" && s.stage != "verify" {
                    return;
                }
                let first = self.first_time(&s.event_id);
                let requested = |f: &Followed| f.at(Step::Billed).is_some();
                if s.status == DossierStatus::Withdrawn
                    && s.reasons.iter().any(|r| r.code == "BILL_CANCELLED")
                    && !self.followed.get(&s.dossier_id).is_some_and(requested)
                {
                    self.bill_cancelled.insert(s.dossier_id.clone());
                }
                if first {
                    for r in &s.reasons {
                        let key = format!("{}/{}/{}", s.stage, s.status.code(), r.code);
                        *self.reasons.entry(key).or_default() += 1;
                    }
                }
                let step = if s.stage == "intake" {
                    Step::IntakeStopped
                } else {
                    Step::VerifyStopped
                };
                let how = match (s.stage.as_str(), s.status) {
                    // The back office's request, announced by intake (a routed dossier
                    // has a due time): the dossier waits at the back office.
                    ("intake", DossierStatus::SupplementRequested) if s.due_at.is_some() => {
                        if first {
                            *self.clock.requested.entry("backoffice".to_owned()).or_default() += 1;
                        }
                        return;
                    }
                    (_, DossierStatus::SupplementRequested) => {
                        if first {
                            *self.clock.requested.entry(s.stage.clone()).or_default() += 1;
                        }
                        self.record(&s.dossier_id, step, at_ms);
                        return;
                    }
                    ("intake", DossierStatus::Processing) => {
                        // Resumed at a later step after a supplement.
                        self.clock.resumed += u64::from(first);
                        return;
                    }
                    ("intake", DossierStatus::RejectedAtReception) => Terminal::RejectedAtReception,
                    ("intake", DossierStatus::Withdrawn) => Terminal::Withdrawn,
                    ("intake", DossierStatus::ProcessingStopped) => Terminal::Stopped,
                    ("verify", DossierStatus::Processing) => Terminal::Escalated,
                    _ => return,
                };
                self.record(&s.dossier_id, step, at_ms);
                self.end(&s.dossier_id, how, &s.event_id, at_ms);
            }
            AnyEvent::DeadLetter(d) => {
                // Each group that cannot read a message dead-letters it (intake and track
                // both read submissions): count per stage, and distinct origins.
                let origin = format!("{}/{}/{}", d.origin_topic, d.origin_partition, d.origin_offset);
                if !self.dead_letter_seen.insert(format!("{}@{origin}", d.stage)) {
                    self.repeats += 1;
                    return;
                }
                *self
                    .dead_letters
                    .entry(format!("{}: {}", d.stage, d.reason_code))
                    .or_default() += 1;
                if self.dead_letter_origins.insert(origin) {
                    let key = d.origin_key.as_deref().map(String::from_utf8_lossy).unwrap_or_default();
                    // The demo's malformed messages are keyed junk-<n> on the submissions topic.
                    let deliberate = key.starts_with("junk-") && d.origin_topic.ends_with(Topic::Submitted.name());
                    // A citizen's or the back office's request that came too late (a
                    // withdrawal after the decision, a supplement after a stop, papers asked
                    // of a withdrawn dossier) is refused with its reason.
                    let request = d.origin_topic.ends_with(Topic::Supplemented.name())
                        || d.origin_topic.ends_with(Topic::Withdrawn.name())
                        || d.origin_topic.ends_with(Topic::SupplementRequested.name());
                    if request {
                        *self.refused_requests.entry(d.reason_code.clone()).or_default() += 1;
                    } else if !deliberate {
                        self.unexpected_dead_letters += 1;
                    }
                    if self.dead_letter_keys.len() < 5 {
                        self.dead_letter_keys.push(key.into_owned());
                    }
                }
            }
            AnyEvent::PaymentConfirmed(_) => {}
        }
    }

    /// Folds the latencies of dossiers that ended more than `after` ago (a soak's memory
    /// stays bounded); `None` folds every dossier still followed.
    pub(crate) fn settle(&mut self, after: Option<Duration>) {
        let done: Vec<String> = self
            .followed
            .iter()
            .filter(|(_, f)| match after {
                None => true,
                Some(a) => f.ended_seen_at.is_some_and(|t| t.elapsed() >= a),
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in done {
            if let Some(f) = self.followed.remove(&k) {
                self.fold(&f);
            }
        }
    }

    fn fold(&mut self, f: &Followed) {
        use Step::*;
        let first_of = |steps: &[Step]| steps.iter().filter_map(|s| f.at(*s)).min();
        let first = |a: Step, b: Step| first_of(&[a, b]);
        let ended = f.terminal_event.as_ref().map(|_| f.ended_at);
        let pairs: [(&'static str, Option<i64>, Option<i64>); 8] = [
            ("intake", f.at(Submitted), first(Accepted, IntakeStopped)),
            ("verify", f.at(Accepted), first(Verified, VerifyStopped)),
            ("payment", f.at(Verified), first(Billed, Paid)),
            ("gateway (citizen pays)", f.at(Billed), f.at(Paid)),
            ("route", f.at(Paid), f.at(Routed)),
            ("back office", f.at(Routed), f.at(Decided)),
            ("result", f.at(Decided), f.at(Completed)),
            ("end to end", f.at(Submitted), ended),
        ];
        for (name, from, to) in pairs {
            if let (Some(a), Some(b)) = (from, to) {
                self.latencies
                    .entry(name)
                    .or_default()
                    .push((b - a).clamp(0, u32::MAX as i64) as u32);
            }
        }
    }
}

/// Starts following every topic from the beginning, in its own consumer group. Returns
/// once the group is joined, so nothing published afterwards is missed.
pub(crate) async fn start(
    kafka: &KafkaConfig,
    codec: Codec,
    observed: Arc<Mutex<Observed>>,
    mut shutdown: Shutdown,
) -> Result<tokio::task::JoinHandle<Result<()>>> {
    let consumer: StreamConsumer = kafka
        .consumer_config(
            &kafka.group(&format!("demo-observer-{}", std::process::id())),
            "motcua-demo-observer",
        )
        .set("enable.auto.commit", "false")
        .create()
        .context("creating the observer's consumer")?;
    let topics: Vec<(String, Topic)> = Topic::ALL.iter().map(|t| (kafka.topic(*t), *t)).collect();
    let names: Vec<&str> = topics.iter().map(|(n, _)| n.as_str()).collect();
    consumer.subscribe(&names).context("subscribing the observer")?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while consumer.assignment()?.count() == 0 {
        if Instant::now() > deadline {
            anyhow::bail!("the observer could not join its consumer group within 60 s");
        }
        let _ = tokio::time::timeout(Duration::from_millis(100), consumer.recv()).await;
    }
    let consumer = Arc::new(consumer);
    Ok(tokio::spawn(async move {
        // The next offset to read, per partition read from (topic index, partition).
        let mut next: HashMap<(usize, i32), i64> = HashMap::new();
        loop {
            let m = tokio::select! {
                _ = shutdown.wait() => break,
                m = consumer.recv() => m.context("observer reading the topics")?,
            };
            take(&topics, &codec, &observed, &m, &mut next);
        }
        // Stopped after the stages: what they wrote last is in the log but perhaps not
        // read yet. Read up to the end of every partition, so the report compares the
        // database with everything the stages wrote.
        let ends = {
            let (consumer, topics) = (consumer.clone(), topics.clone());
            tokio::task::spawn_blocking(move || end_offsets(&consumer, &topics)).await??
        };
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        let behind =
            |next: &HashMap<(usize, i32), i64>| ends.iter().any(|(tp, end)| next.get(tp).copied().unwrap_or(0) < *end);
        while behind(&next) {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(m) = tokio::time::timeout(left, consumer.recv()).await else {
                anyhow::bail!("the observer did not reach the end of the topics within {DRAIN_TIMEOUT:?}");
            };
            let m = m.context("observer reading the topics")?;
            take(&topics, &codec, &observed, &m, &mut next);
        }
        Ok(())
    }))
}

/// How long the observer may take, once stopped, to read what is left in the topics.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// The end offset (high watermark) of every partition of the flow's topics assigned to
/// the consumer, keyed like the observer's offsets.
fn end_offsets(consumer: &StreamConsumer, topics: &[(String, Topic)]) -> Result<Vec<((usize, i32), i64)>> {
    let assignment = consumer.assignment().context("the observer's assignment")?;
    let mut ends = Vec::new();
    for e in assignment.elements() {
        let Some(i) = topics.iter().position(|(n, _)| n == e.topic()) else {
            continue;
        };
        let (_, high) = consumer
            .fetch_watermarks(e.topic(), e.partition(), Duration::from_secs(10))
            .with_context(|| format!("the end offset of {} [{}]", e.topic(), e.partition()))?;
        ends.push(((i, e.partition()), high));
    }
    Ok(ends)
}

/// One message into the observed state; `next` records the offset after it.
fn take(
    topics: &[(String, Topic)],
    codec: &Codec,
    observed: &Mutex<Observed>,
    m: &rdkafka::message::BorrowedMessage<'_>,
    next: &mut HashMap<(usize, i32), i64>,
) {
    let Some(i) = topics.iter().position(|(n, _)| n == m.topic()) else {
        return;
    };
    next.insert((i, m.partition()), m.offset() + 1);
    let topic = topics[i].1;
    let at = m
        .timestamp()
        .to_millis()
        .unwrap_or_else(motcua_reference::civil::now_ms);
    let decoded = m.payload().map(|p| AnyEvent::decode(codec, topic, p));
    let mut o = observed.lock().expect("observer state");
    match decoded {
        Some(Ok(e)) => o.observe(&e, at),
        // Malformed submissions show up as dead letters; here they are skipped.
        _ => o.undecodable += 1,
    }
}
