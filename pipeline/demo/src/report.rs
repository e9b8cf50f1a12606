//! The demo's report: figures from what the observer saw on the topics, each checked
//! against the database the stages wrote (projection, codes, bills).

use std::collections::BTreeMap;

use motcua_reference::Reference;
use motcua_runtime::RunSummary;
use motcua_store::Bill;
use motcua_track::summary::ProjectionSummary;
use serde::Serialize;

use super::observe::{ClockFigures, Observed, Step, Terminal, LATENCIES};
use super::Published;
use motcua_wiring::operations::GroupLag;

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Settings {
    pub(crate) province_code: String,
    pub(crate) province_name: String,
    pub(crate) units: usize,
    pub(crate) seed: u64,
    pub(crate) partitions: i32,
    pub(crate) broker: String,
    pub(crate) topic_prefix: String,
    pub(crate) store: String,
    pub(crate) registry_error_rate: f64,
    pub(crate) registry_latency_ms: u64,
    pub(crate) gateway_failure_rate: f64,
    pub(crate) gateway_duplicate_rate: f64,
    pub(crate) defect_rate: f64,
    pub(crate) malformed_rate: f64,
    pub(crate) late_rate: f64,
    pub(crate) soak: bool,
    pub(crate) rate: u64,
}

/// The registry simulator's counts and verify's client-side figures.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct RegistryFigures {
    /// Requests the simulator answered (found or not found).
    pub(crate) answered: u64,
    /// Requests it answered 503 on purpose.
    pub(crate) faults_injected: u64,
    /// Lookups verify made (before its cache).
    pub(crate) lookups: u64,
    pub(crate) cache_hits: u64,
    pub(crate) breaker_rejections: u64,
}

/// The outward systems' own counts (`/admin/stats` of the wallet and portal simulators).
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct OutwardFigures {
    pub(crate) wallet: BTreeMap<String, u64>,
    pub(crate) portal: BTreeMap<String, u64>,
}

impl OutwardFigures {
    pub(crate) fn wallet(&self, k: &str) -> u64 {
        self.wallet.get(k).copied().unwrap_or(0)
    }

    pub(crate) fn portal(&self, k: &str) -> u64 {
        self.portal.get(k).copied().unwrap_or(0)
    }
}

/// Bills issued and paid.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct BillCounts {
    pub(crate) issued: i64,
    pub(crate) paid: i64,
}

impl BillCounts {
    pub(crate) fn of(bills: &[Bill]) -> Self {
        Self {
            issued: bills.len() as i64,
            paid: bills.iter().filter(|b| b.paid_at_ms.is_some()).count() as i64,
        }
    }
}

/// What the database held before the run (a reused database).
#[derive(Debug, Clone, Default)]
pub(crate) struct Baseline {
    pub(crate) projection: ProjectionSummary,
    pub(crate) codes: i64,
    pub(crate) bills: BillCounts,
}

fn minus_map<K: Ord + Clone>(after: &BTreeMap<K, i64>, before: &BTreeMap<K, i64>) -> BTreeMap<K, i64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v != 0)
        .collect()
}

/// This run's share of the projection.
fn minus(after: &ProjectionSummary, before: &ProjectionSummary) -> ProjectionSummary {
    ProjectionSummary {
        dossiers: after.dossiers - before.dossiers,
        history_events: after.history_events - before.history_events,
        by_status: minus_map(&after.by_status, &before.by_status),
        by_timeliness: minus_map(&after.by_timeliness, &before.by_timeliness),
        by_decision: minus_map(&after.by_decision, &before.by_decision),
        by_channel: minus_map(&after.by_channel, &before.by_channel),
        by_receiving_unit: minus_map(&after.by_receiving_unit, &before.by_receiving_unit),
        reasons: minus_map(&after.reasons, &before.reasons),
    }
}

pub(crate) struct Inputs<'a> {
    pub(crate) settings: Settings,
    pub(crate) reference: &'a Reference,
    pub(crate) published: Published,
    pub(crate) publish_secs: f64,
    pub(crate) wall_secs: f64,
    pub(crate) drained: bool,
    pub(crate) interrupted: bool,
    pub(crate) observed: Observed,
    pub(crate) summaries: Vec<(&'static str, RunSummary)>,
    pub(crate) lag: Vec<(&'static str, GroupLag)>,
    pub(crate) projection: ProjectionSummary,
    pub(crate) codes: i64,
    pub(crate) bills: BillCounts,
    pub(crate) before: Baseline,
    pub(crate) registry: RegistryFigures,
    pub(crate) outward: OutwardFigures,
    /// (bills seen, failed first attempts, duplicate confirmations)
    pub(crate) gateway: Option<(u64, u64, u64)>,
    /// The projection's statistics by definition (the status API's), as of after
    /// every simulated event.
    pub(crate) projection_statistics: Option<motcua_stats::Report>,
    /// The history of a dossier whose clock was paused, as the status API shows it.
    pub(crate) sample_history: Vec<HistoryLine>,
    pub(crate) step_times: Vec<motcua_track::steps::StepSummary>,
}

/// One entry of a dossier's history (codes and neutral text, no personal data).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct HistoryLine {
    pub(crate) at: String,
    pub(crate) event: String,
    pub(crate) stage: String,
    pub(crate) status: Option<String>,
    pub(crate) reasons: String,
}

/// The province's figures by definition (docs/statistics.md), from the event log.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Statistics {
    pub(crate) totals: motcua_stats::Counts,
    pub(crate) on_time_rate: Option<f64>,
    pub(crate) online_rate: Option<f64>,
    /// Field → counts.
    pub(crate) by_field: BTreeMap<String, motcua_stats::Counts>,
    /// Month → counts.
    pub(crate) by_month: BTreeMap<String, motcua_stats::Counts>,
    /// Rows of the report (month × unit × procedure × field).
    pub(crate) rows: usize,
    /// Rows (and backlog rows) where the projection's figures differ from the fold's.
    pub(crate) rows_differing_from_projection: Option<usize>,
    /// The first few keys that differ (`month/unit/procedure/field: fold | projection`).
    pub(crate) differences: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct StageFigures {
    pub(crate) stage: String,
    /// Messages the worker consumed and processed (from its run summary).
    pub(crate) consumed: u64,
    pub(crate) produced: u64,
    pub(crate) dead_lettered: u64,
    /// Busy time of the worker (first message in → last output acknowledged).
    pub(crate) busy_secs: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Latency {
    pub(crate) stage: String,
    pub(crate) samples: usize,
    pub(crate) p50_ms: u32,
    pub(crate) p95_ms: u32,
    pub(crate) p99_ms: u32,
    pub(crate) max_ms: u32,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Center {
    pub(crate) code: String,
    pub(crate) name: String,
    pub(crate) online: u64,
    pub(crate) other: u64,
    /// Dossiers routed to it as the competent unit.
    pub(crate) competent: u64,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Check {
    pub(crate) figure: String,
    pub(crate) report: i64,
    pub(crate) database: i64,
    pub(crate) source: String,
    pub(crate) ok: bool,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Report {
    pub(crate) settings: Settings,
    pub(crate) generated_at: String,
    pub(crate) published: Published,
    pub(crate) publish_secs: f64,
    pub(crate) wall_secs: f64,
    /// Every dossier ended and every group's lag reached zero.
    pub(crate) drained: bool,
    pub(crate) interrupted: bool,
    /// Broker time from the first submission to the last terminal event.
    pub(crate) pipeline_secs: f64,
    /// Dossiers that reached a terminal state per second of `pipeline_secs`.
    pub(crate) end_to_end_per_sec: f64,
    pub(crate) steps: BTreeMap<String, u64>,
    pub(crate) terminal: BTreeMap<Terminal, u64>,
    pub(crate) ended: u64,
    /// Dossiers with two different terminal events (must be 0).
    pub(crate) terminal_twice: u64,
    pub(crate) timeliness: BTreeMap<String, u64>,
    pub(crate) on_time_rate: Option<f64>,
    pub(crate) decisions: BTreeMap<String, u64>,
    pub(crate) online: u64,
    pub(crate) online_rate: Option<f64>,
    pub(crate) stages: Vec<StageFigures>,
    pub(crate) latencies: Vec<Latency>,
    /// Per step, dossiers per second (one bucket per second of broker time).
    pub(crate) throughput: BTreeMap<String, Vec<u32>>,
    pub(crate) centers: Vec<Center>,
    /// Routed dossiers handed to another unit than the receiving one.
    pub(crate) routed_elsewhere: u64,
    /// `stage/status code/reason code` → dossiers, most frequent first.
    pub(crate) stop_reasons: Vec<(String, u64)>,
    pub(crate) dead_letters: BTreeMap<String, u64>,
    /// Distinct messages dead-lettered (by any stage).
    pub(crate) dead_lettered: u64,
    /// Of them, not the demo's deliberately malformed messages (must be 0).
    pub(crate) unexpected_dead_letters: u64,
    pub(crate) dead_letter_keys: Vec<String>,
    pub(crate) repeats: u64,
    /// A dossier that got its result, to look up in the status API.
    pub(crate) sample_code: Option<String>,
    pub(crate) lag: BTreeMap<String, i64>,
    /// (bills seen, failed first attempts, duplicate confirmations) at the gateway.
    pub(crate) gateway: Option<(u64, u64, u64)>,
    pub(crate) registry: RegistryFigures,
    pub(crate) outward: OutwardFigures,
    /// Distinct status changes for the national portal seen on the topic.
    pub(crate) portal_changes: u64,
    pub(crate) checks: Vec<Check>,
    /// Supplements, withdrawals, pauses and new appointments.
    pub(crate) clock: ClockFigures,
    /// Citizens' requests refused with a reason (too late), by reason code.
    pub(crate) refused_requests: BTreeMap<String, u64>,
    pub(crate) statistics: Option<Statistics>,
    pub(crate) sample_history: Vec<HistoryLine>,
    /// Time per step of the internal process, by field, from the projection.
    pub(crate) step_times: Vec<motcua_track::steps::StepSummary>,
}

/// The rows (and backlog rows) of two reports that differ, described.
fn differing_rows(a: &motcua_stats::Report, b: &motcua_stats::Report) -> Vec<String> {
    let name = |k: &motcua_stats::Key| format!("{}/{}/{}/{}", k.month, k.unit_code, k.procedure_code, k.field);
    let keys: std::collections::BTreeSet<_> = a.rows.keys().chain(b.rows.keys()).collect();
    let mut out: Vec<String> = keys
        .iter()
        .filter(|k| a.rows.get(**k) != b.rows.get(**k))
        .map(|k| format!("{}: {:?} | {:?}", name(k), a.rows.get(*k), b.rows.get(*k)))
        .collect();
    let open: std::collections::BTreeSet<_> = a.backlog.keys().chain(b.backlog.keys()).collect();
    out.extend(
        open.iter()
            .filter(|k| a.backlog.get(**k) != b.backlog.get(**k))
            .map(|k| format!("backlog {}: {:?} | {:?}", name(k), a.backlog.get(*k), b.backlog.get(*k))),
    );
    out
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    // Nearest rank.
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn ratio(n: u64, d: u64) -> Option<f64> {
    (d > 0).then(|| n as f64 / d as f64)
}

pub(crate) fn build(mut i: Inputs<'_>) -> Report {
    i.observed.settle(None);
    let o = &i.observed;
    let run_share = minus(&i.projection, &i.before.projection);
    let p = &run_share;
    let codes = i.codes - i.before.codes;
    let bills = BillCounts {
        issued: i.bills.issued - i.before.bills.issued,
        paid: i.bills.paid - i.before.bills.paid,
    };

    let latencies = LATENCIES
        .iter()
        .filter_map(|name| {
            let mut v = o.latencies.get(name)?.clone();
            v.sort_unstable();
            Some(Latency {
                stage: (*name).to_owned(),
                samples: v.len(),
                p50_ms: percentile(&v, 0.50),
                p95_ms: percentile(&v, 0.95),
                p99_ms: percentile(&v, 0.99),
                max_ms: v.last().copied().unwrap_or(0),
            })
        })
        .collect();

    let centers = i
        .reference
        .units
        .units_of(&i.settings.province_code)
        .map(|u| {
            let (online, other) = o.received_by_unit.get(&u.code).copied().unwrap_or_default();
            Center {
                code: u.code.clone(),
                name: u.name.clone(),
                online,
                other,
                competent: o.routed_to_unit.get(&u.code).copied().unwrap_or(0),
            }
        })
        .collect();

    let mut stop_reasons: Vec<(String, u64)> = o.reasons.iter().map(|(k, v)| (k.clone(), *v)).collect();
    stop_reasons.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));

    let online: u64 = o.received_by_unit.values().map(|(on, _)| on).sum();
    let submitted = o.step(Step::Submitted);
    let completed = o.timeliness.values().sum::<u64>();
    let in_time = o.timeliness.get("early").copied().unwrap_or(0) + o.timeliness.get("on_time").copied().unwrap_or(0);
    let pipeline_secs = ((o.last_terminal_ms - o.start_ms).max(1) as f64 / 1000.0).max(1e-3);

    // Every figure that the database also holds, side by side.
    let mut checks = Vec::new();
    let mut check = |figure: &str, report: u64, database: i64, source: &str| {
        checks.push(Check {
            figure: figure.to_owned(),
            report: report as i64,
            database,
            source: source.to_owned(),
            ok: report as i64 == database,
        });
    };
    check("dossiers submitted", submitted, p.dossiers, "track_dossiers rows");
    // The outward systems, by their own counts: each result filed once, each status
    // change once (resends after lost acknowledgements are absorbed as duplicates).
    check(
        "results filed in e-wallets",
        completed,
        i.outward.wallet("filed") as i64,
        "documents the wallet simulator filed",
    );
    check(
        "status changes on the national portal",
        o.portal_changes(),
        i.outward.portal("filed") as i64,
        "changes the portal simulator filed",
    );
    check(
        "portal changes filed twice with other content",
        0,
        i.outward.portal("conflicts") as i64,
        "portal simulator conflicts",
    );
    for t in Terminal::ALL {
        check(
            t.label(),
            o.terminal.get(&t).copied().unwrap_or(0),
            p.by_status.get(&t.status_code()).copied().unwrap_or(0),
            &format!("track_dossiers with status {}", t.status_code()),
        );
    }
    let open: i64 = p
        .by_status
        .iter()
        .filter(|(c, _)| !Terminal::ALL.iter().any(|t| t.status_code() == **c))
        .map(|(_, n)| n)
        .sum();
    check("still open", 0, open, "track_dossiers in any other status");
    for (name, key) in [
        ("completed early", "early"),
        ("completed on time", "on_time"),
        ("completed late", "late"),
    ] {
        check(
            name,
            o.timeliness.get(key).copied().unwrap_or(0),
            p.by_timeliness.get(key).copied().unwrap_or(0),
            &format!("track_dossiers timeliness = {key}"),
        );
    }
    for d in ["approved", "refused"] {
        check(
            d,
            o.decisions.get(d).copied().unwrap_or(0),
            p.by_decision.get(d).copied().unwrap_or(0),
            &format!("track_dossiers decision = {d}"),
        );
    }
    check(
        "received online",
        online,
        p.by_channel.get("online").copied().unwrap_or(0),
        "track_dossiers channel = online",
    );
    let mismatched_units = o
        .received_by_unit
        .iter()
        .filter(|(u, (on, other))| p.by_receiving_unit.get(*u).copied().unwrap_or(0) != (on + other) as i64)
        .count();
    check(
        "centers whose load differs",
        0,
        mismatched_units as i64,
        "track_dossiers grouped by receiving unit",
    );
    let stop_reasons_db: BTreeMap<&String, &i64> = p
        .reasons
        .iter()
        .filter(|(k, _)| k.starts_with("intake/") || k.starts_with("verify/"))
        .collect();
    let stop_reasons_differ = stop_reasons_db.len() != o.reasons.len()
        || o.reasons
            .iter()
            .any(|(k, v)| stop_reasons_db.get(k).copied().copied() != Some(*v as i64));
    check(
        "stop reasons that differ",
        0,
        i64::from(stop_reasons_differ),
        "track_history reasons of intake and verify",
    );
    let statistics = o.ledger.as_ref().map(|l| {
        let fold = l.report(STATISTICS_AS_OF);
        let totals = fold.totals();
        let differences = i.projection_statistics.as_ref().map(|p| differing_rows(&fold, p));
        Statistics {
            totals,
            on_time_rate: totals.on_time_rate(),
            online_rate: totals.online_rate(),
            by_field: fold.by(|k| k.field.clone()),
            by_month: fold.by(|k| k.month.clone()),
            rows: fold.rows.len(),
            rows_differing_from_projection: differences.as_ref().map(Vec::len),
            differences: differences.unwrap_or_default().into_iter().take(5).collect(),
        }
    });
    if let Some(n) = statistics.as_ref().and_then(|s| s.rows_differing_from_projection) {
        check(
            "statistics rows that differ",
            0,
            n as i64,
            "the status API's figures by definition (track_dossiers) vs the fold over the topics",
        );
    }
    check("dossier codes", o.step(Step::Accepted), codes, "dossier_codes rows");
    check(
        "bills issued",
        o.bills_announced(),
        bills.issued,
        "bills rows (each announced by its payment.requested or the withdrawal that cancelled it)",
    );
    check("bills paid", o.step(Step::Billed), bills.paid, "bills with a payment");

    let mut stages: Vec<StageFigures> = i
        .summaries
        .iter()
        .map(|(name, s)| StageFigures {
            stage: (*name).to_owned(),
            consumed: s.consumed,
            produced: s.produced,
            dead_lettered: s.dead_lettered,
            busy_secs: s.busy.map(|d| d.as_secs_f64()),
        })
        .collect();
    stages.sort_by_key(|s| super::groups().iter().position(|(n, _)| *n == s.stage));

    Report {
        generated_at: motcua_track::format_local(motcua_reference::civil::now_ms()),
        published: i.published,
        publish_secs: i.publish_secs,
        wall_secs: i.wall_secs,
        drained: i.drained,
        interrupted: i.interrupted,
        pipeline_secs,
        end_to_end_per_sec: o.ended() as f64 / pipeline_secs,
        steps: o.steps.iter().map(|(s, n)| (s.name().to_owned(), *n)).collect(),
        terminal: o.terminal.clone(),
        ended: o.ended(),
        terminal_twice: o.terminal_twice,
        timeliness: o.timeliness.clone(),
        on_time_rate: ratio(in_time, completed),
        decisions: o.decisions.clone(),
        online,
        online_rate: ratio(online, submitted),
        stages,
        latencies,
        throughput: o
            .timeline
            .iter()
            .map(|(s, v)| (s.name().to_owned(), v.clone()))
            .collect(),
        centers,
        routed_elsewhere: o.routed_elsewhere,
        stop_reasons,
        dead_letters: o.dead_letters.clone(),
        dead_lettered: o.dead_lettered(),
        unexpected_dead_letters: o.unexpected_dead_letters,
        dead_letter_keys: o.dead_letter_keys.clone(),
        repeats: o.repeats,
        sample_code: o.sample_code.clone(),
        lag: i.lag.iter().map(|(s, g)| ((*s).to_owned(), g.lag)).collect(),
        gateway: i.gateway,
        registry: i.registry,
        outward: i.outward,
        portal_changes: o.portal_changes(),
        checks,
        clock: o.clock.clone(),
        refused_requests: o.refused_requests.clone(),
        statistics,
        sample_history: i.sample_history,
        step_times: i.step_times,
        settings: i.settings,
    }
}

/// The instant the demo's statistics are taken at: after every simulated event (the
/// simulated decisions lie weeks ahead of the wall clock).
pub(crate) const STATISTICS_AS_OF: i64 = 4_102_444_800_000; // 2100-01-01

/// 12,345,678
pub(crate) fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (k, c) in s.chars().enumerate() {
        if k > 0 && (s.len() - k) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub(crate) fn pct(r: Option<f64>) -> String {
    r.map_or("–".to_owned(), |r| format!("{:.1} %", r * 100.0))
}

impl Report {
    /// Every dossier ended exactly once, nothing but the malformed messages
    /// dead-lettered, and every figure equals the database's.
    pub(crate) fn ok(&self) -> bool {
        self.drained
            && self.terminal_twice == 0
            && self.ended == self.published.dossiers()
            && self.dead_lettered == self.published.malformed + self.refused_requests.values().sum::<u64>()
            && self.unexpected_dead_letters == 0
            && self.checks.iter().all(|c| c.ok)
    }

    pub(crate) fn terminal_count(&self, t: Terminal) -> u64 {
        self.terminal.get(&t).copied().unwrap_or(0)
    }

    pub(crate) fn print_terminal(&self) {
        let p = &self.published;
        println!();
        println!(
            "  published  {} submissions in {:.1} s: {} valid, {} defective, {} malformed",
            thousands(p.total),
            self.publish_secs,
            thousands(p.valid),
            thousands(p.defective),
            thousands(p.malformed)
        );
        println!(
            "  end to end {} dossiers reached a terminal state in {:.1} s → {:.0} dossiers/s through every stage",
            thousands(self.ended),
            self.pipeline_secs,
            self.end_to_end_per_sec
        );
        for t in Terminal::ALL {
            let n = self.terminal_count(t);
            let extra = match t {
                Terminal::ResultReturned => format!(
                    "  approved {}, refused {}; on time {} (early {}, on time {}, late {})",
                    self.decisions.get("approved").copied().unwrap_or(0),
                    self.decisions.get("refused").copied().unwrap_or(0),
                    pct(self.on_time_rate),
                    self.timeliness.get("early").copied().unwrap_or(0),
                    self.timeliness.get("on_time").copied().unwrap_or(0),
                    self.timeliness.get("late").copied().unwrap_or(0),
                ),
                _ => String::new(),
            };
            println!("    {:<24}{:>7}{extra}", t.label(), thousands(n));
        }
        println!(
            "    {:<24}{:>7}  messages, all malformed or citizens' requests refused with a reason: {}; per stage {}",
            "dead-lettered",
            thousands(self.dead_lettered),
            if self.unexpected_dead_letters == 0 {
                "yes".to_owned()
            } else {
                format!("NO, {} are neither", self.unexpected_dead_letters)
            },
            self.dead_letters
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let c = &self.clock;
        println!(
            "  citizens   {} supplement requests (intake {}, verify {}, back office {}): {} answered days later, \
             {} resumed at verify or the back office; {} withdrawals; {} refused as too late ({})",
            thousands(c.requested.values().sum()),
            thousands(c.requested.get("intake").copied().unwrap_or(0)),
            thousands(c.requested.get("verify").copied().unwrap_or(0)),
            thousands(c.requested.get("backoffice").copied().unwrap_or(0)),
            thousands(c.supplements),
            thousands(c.resumed),
            thousands(c.withdrawals),
            thousands(self.refused_requests.values().sum()),
            self.refused_requests
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        println!(
            "  clock      {} routed dossiers paused for {:.1} working hours in all (due times moved by exactly that); \
             {} new appointments with an apology",
            thousands(c.routed_paused),
            c.paused_working_ms as f64 / 3_600_000.0,
            thousands(c.reappointments)
        );
        if let Some(st) = &self.statistics {
            let t = &st.totals;
            println!(
                "  statistics (by definition, docs/statistics.md; {} rows month × unit × procedure × field{})",
                st.rows,
                match st.rows_differing_from_projection {
                    Some(0) => ", equal to the status API's".to_owned(),
                    Some(n) => format!(", {n} DIFFER from the status API's"),
                    None => String::new(),
                }
            );
            println!(
                "             {:<14}{:>9}{:>8}{:>9}{:>9}{:>8}{:>8}{:>9}{:>10}{:>8}{:>8}{:>8}",
                "field",
                "received",
                "online",
                "rejected",
                "resolved",
                "early",
                "on time",
                "late",
                "on-time %",
                "withdr.",
                "stopped",
                "reappt."
            );
            let line = |name: &str, c: &motcua_stats::Counts| {
                println!(
                    "             {:<14}{:>9}{:>8}{:>9}{:>9}{:>8}{:>8}{:>9}{:>10}{:>8}{:>8}{:>8}",
                    name,
                    thousands(c.received),
                    thousands(c.received_online),
                    thousands(c.rejected_at_reception),
                    thousands(c.resolved),
                    thousands(c.resolved_early),
                    thousands(c.resolved_on_time),
                    thousands(c.resolved_late),
                    pct(c.on_time_rate()),
                    thousands(c.withdrawn),
                    thousands(c.stopped),
                    thousands(c.resolved_reappointed)
                );
            };
            for (field, c) in &st.by_field {
                line(field, c);
            }
            line("all", t);
            println!(
                "             resolved after a pause {}, {:.1} working hours paused; online {}",
                thousands(t.resolved_paused),
                t.paused_working_ms as f64 / 3_600_000.0,
                pct(st.online_rate)
            );
        }
        if !self.step_times.is_empty() {
            println!("  steps      average working hours per finished step (over budget), from the status projection:");
            println!(
                "             {:<14} {:>16} {:>16} {:>16} {:>16} {:>16}",
                "field", "reception", "verification", "appraisal", "approval", "result"
            );
            for s in &self.step_times {
                let cells: Vec<String> = motcua_routing::Step::ALL
                    .iter()
                    .map(|step| match s.average_hours(*step) {
                        Some(h) => format!(
                            "{h:.1} h ({:.0} %)",
                            100.0 * s.over_budget[step.index()] as f64 / s.finished[step.index()].max(1) as f64
                        ),
                        None => "–".to_owned(),
                    })
                    .collect();
                println!(
                    "             {:<14} {:>16} {:>16} {:>16} {:>16} {:>16}",
                    s.field, cells[0], cells[1], cells[2], cells[3], cells[4]
                );
            }
        }
        if let (Some(code), false) = (&self.clock.sample_paused_code, self.sample_history.is_empty()) {
            println!("  history    {code} (a dossier whose clock was paused), from the status API:");
            for h in &self.sample_history {
                println!(
                    "             {}  {:<18} {:<10} {:<24} {}",
                    h.at,
                    h.event,
                    h.stage,
                    h.status.as_deref().unwrap_or(""),
                    h.reasons
                );
            }
        }
        let g = &self.registry;
        println!(
            "  outside    registries answered {} requests, {} faults injected (503), absorbed by retries or parking; \
             verify's cache served {} of {} lookups",
            thousands(g.answered),
            thousands(g.faults_injected),
            thousands(g.cache_hits),
            thousands(g.lookups)
        );
        let w = &self.outward;
        println!(
            "             e-wallets: {} results filed ({} resends absorbed, {} acknowledgements lost, {} faults \
             injected, {} wallets full, {} owners unknown)",
            thousands(w.wallet("filed")),
            thousands(w.wallet("duplicates")),
            thousands(w.wallet("lost_acks")),
            thousands(w.wallet("faulted")),
            thousands(w.wallet("full")),
            thousands(w.wallet("unknown_owner"))
        );
        println!(
            "             national portal: {} of {} status changes filed ({} resends absorbed, {} acknowledgements \
             lost, {} faults injected); portal-sync lag at the end {}",
            thousands(w.portal("filed")),
            thousands(self.portal_changes),
            thousands(w.portal("duplicates")),
            thousands(w.portal("lost_acks")),
            thousands(w.portal("faulted")),
            self.lag
                .get(motcua_schemas::component::PORTAL_SYNC)
                .copied()
                .unwrap_or(-1)
        );
        if let Some((bills, failures, duplicates)) = self.gateway {
            println!(
                "             gateway: {} bills, {} failed first attempts, {} duplicate confirmations",
                thousands(bills),
                thousands(failures),
                thousands(duplicates)
            );
        }
        println!(
            "  channels   {} online ({})",
            thousands(self.online),
            pct(self.online_rate)
        );
        let top: Vec<String> = self
            .stop_reasons
            .iter()
            .take(4)
            .map(|(k, v)| format!("{} {v}", k.rsplit('/').next().unwrap_or(k)))
            .collect();
        println!("  reasons    {}", top.join(", "));
        println!(
            "  latency    {:<24}{:>8}{:>8}{:>8}  (ms, broker time in → out)",
            "", "p50", "p95", "p99"
        );
        for l in &self.latencies {
            println!(
                "             {:<24}{:>8}{:>8}{:>8}",
                l.stage, l.p50_ms, l.p95_ms, l.p99_ms
            );
        }
        let busiest = self.centers.iter().max_by_key(|c| c.online + c.other);
        if let Some(c) = busiest {
            println!(
                "  centers    {} receiving; busiest {} {} ({} dossiers); {} routed dossiers handed to another unit \
                 than the one that received them",
                self.centers.len(),
                c.code,
                c.name,
                c.online + c.other,
                thousands(self.routed_elsewhere)
            );
        }
        let failed: Vec<&Check> = self.checks.iter().filter(|c| !c.ok).collect();
        if failed.is_empty() {
            println!(
                "  checked    all {} figures equal the database's (projection, codes, bills); each dossier ended exactly once",
                self.checks.len()
            );
        } else {
            for c in failed {
                println!(
                    "  MISMATCH   {}: report {} vs database {} ({})",
                    c.figure, c.report, c.database, c.source
                );
            }
        }
        if self.terminal_twice > 0 {
            println!(
                "  MISMATCH   {} dossiers reached two terminal states",
                self.terminal_twice
            );
        }
        if !self.drained {
            println!(
                "  INCOMPLETE {} of {} dossiers ended; lag {:?}",
                self.ended,
                self.published.dossiers(),
                self.lag
            );
        }
    }
}
