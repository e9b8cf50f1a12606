//! A hand-built event log whose figures are counted by hand below.

use motcua_schemas::{
    samples, AnyEvent, Channel, ClockPause, DossierAccepted, DossierCompleted, DossierDecided, DossierRouted,
    DossierStatus, DossierStatusChanged, Timeliness,
};

use super::*;

const HOUR: i64 = 3_600_000;
const P: &str = "1.004227";

/// `y-m-d h:00` in Hà Nội.
fn vn(y: i32, m: u32, d: u32, h: i64) -> i64 {
    civil::days_from_civil(y, m, d) * 86_400_000 + (h - 7) * HOUR
}

fn sample<T>(pick: impl Fn(AnyEvent) -> Option<T>) -> T {
    samples::events().into_iter().find_map(pick).expect("a sample")
}

fn accepted(id: &str, unit: &str, channel: Channel, at: i64) -> AnyEvent {
    let mut a: DossierAccepted = samples::accepted();
    a.event_id = format!("{id}-accepted");
    a.dossier.dossier_id = id.to_owned();
    a.dossier.receiving_unit_code = unit.to_owned();
    a.dossier.channel = channel;
    a.received_at = at;
    a.into()
}

fn routed(id: &str, unit: &str, at: i64, due_at: i64, paused_ms: i64) -> AnyEvent {
    let mut r: DossierRouted = sample(|e| match e {
        AnyEvent::Routed(r) => Some(r),
        _ => None,
    });
    r.event_id = format!("{id}-routed");
    r.dossier.dossier_id = id.to_owned();
    r.competent_unit_code = unit.to_owned();
    r.routed_at = at;
    r.due_at = due_at;
    r.clock_pauses = if paused_ms > 0 {
        vec![ClockPause {
            step: "verify".into(),
            from_at: at - 10 * HOUR,
            to_at: at - HOUR,
            paused_working_ms: paused_ms,
        }]
    } else {
        vec![]
    };
    r.into()
}

/// A decision and its returned result.
fn resolved(id: &str, unit: &str, decided_at: i64, timeliness: Timeliness) -> [AnyEvent; 2] {
    let mut d: DossierDecided = sample(|e| match e {
        AnyEvent::Decided(d) => Some(d),
        _ => None,
    });
    d.event_id = format!("{id}-decided");
    d.dossier_id = id.to_owned();
    d.decided_at = decided_at;
    let mut c: DossierCompleted = sample(|e| match e {
        AnyEvent::Completed(c) => Some(c),
        _ => None,
    });
    c.event_id = format!("{id}-completed");
    c.causation_id = d.event_id.clone();
    c.dossier_id = id.to_owned();
    c.competent_unit_code = unit.to_owned();
    c.timeliness = timeliness;
    // Delivered the next day: the month counted is the decision's.
    c.delivered_at = decided_at + 24 * HOUR;
    [d.into(), c.into()]
}

fn status(id: &str, status: DossierStatus, at: i64, unit: &str) -> AnyEvent {
    let mut s = DossierStatusChanged::new(format!("{id}-{}", status.as_str()), "intake", id, status, at);
    s.unit_code = Some(unit.to_owned());
    s.procedure_code = Some(P.to_owned());
    s.into()
}

fn log() -> Vec<AnyEvent> {
    let mut e = Vec::new();
    // D1: received online at 06652, decided there on time.
    e.push(accepted("d1", "06652", Channel::Online, vn(2025, 11, 10, 9)));
    e.push(routed("d1", "06652", vn(2025, 11, 10, 10), vn(2025, 11, 24, 10), 0));
    e.extend(resolved("d1", "06652", vn(2025, 11, 20, 9), Timeliness::OnTime));
    // D2: received at the counter of 06652, handed to 06658, paused 7 h, decided late
    // in December.
    e.push(accepted("d2", "06652", Channel::Counter, vn(2025, 11, 12, 9)));
    e.push(routed(
        "d2",
        "06658",
        vn(2025, 11, 13, 9),
        vn(2025, 11, 28, 9),
        7 * HOUR,
    ));
    e.push(
        motcua_schemas::DossierReappointed {
            event_id: "d2-reappointed".into(),
            dossier_id: "d2".into(),
            dossier_code: "code-d2".into(),
            competent_unit_code: "06658".into(),
            reason_code: "FIELD_VERIFICATION_NEEDED".into(),
            apology_reference: "06658-XL-d2".into(),
            previous_due_at: vn(2025, 11, 28, 9),
            new_due_at: vn(2025, 12, 3, 9),
            issued_by: "officer-1".into(),
            issued_at: vn(2025, 11, 27, 9),
            traceparent: None,
        }
        .into(),
    );
    // Decided before the new date, after the legal one: still late.
    e.extend(resolved("d2", "06658", vn(2025, 12, 2, 9), Timeliness::Late));
    // D3: received online at 06652, withdrawn after routing.
    e.push(accepted("d3", "06652", Channel::Online, vn(2025, 11, 15, 9)));
    e.push(routed("d3", "06652", vn(2025, 11, 15, 10), vn(2025, 11, 30, 10), 0));
    e.push(status("d3", DossierStatus::Withdrawn, vn(2025, 11, 18, 9), "06652"));
    // D4: received online at 06658, never supplemented: stopped in December.
    e.push(accepted("d4", "06658", Channel::Online, vn(2025, 11, 28, 9)));
    e.push(status(
        "d4",
        DossierStatus::SupplementRequested,
        vn(2025, 11, 28, 10),
        "06658",
    ));
    e.push(status(
        "d4",
        DossierStatus::ProcessingStopped,
        vn(2025, 12, 20, 9),
        "06658",
    ));
    // D5: refused at the door of 06652.
    e.push(status(
        "d5",
        DossierStatus::RejectedAtReception,
        vn(2025, 11, 11, 9),
        "06652",
    ));
    // D6: received at the counter of 06652, due 5 December, still open.
    e.push(accepted("d6", "06652", Channel::Counter, vn(2025, 11, 29, 9)));
    e.push(routed("d6", "06652", vn(2025, 11, 29, 10), vn(2025, 12, 5, 10), 0));
    // D7: received at the counter of 06652 and decided early in December.
    e.push(accepted("d7", "06652", Channel::Counter, vn(2025, 12, 1, 8)));
    e.push(routed("d7", "06652", vn(2025, 12, 1, 9), vn(2025, 12, 10, 9), 0));
    e.extend(resolved("d7", "06652", vn(2025, 12, 1, 15), Timeliness::Early));
    e
}

fn ledger(events: &[AnyEvent]) -> Ledger {
    let mut l = Ledger::new();
    events.iter().for_each(|e| l.apply(e));
    l
}

fn key(month: &str, unit: &str, field: &str) -> Key {
    Key {
        month: month.into(),
        unit_code: unit.into(),
        procedure_code: P.into(),
        field: field.into(),
    }
}

#[test]
fn the_figures_follow_the_written_definitions() {
    let report = ledger(&log()).report(vn(2025, 12, 31, 23));
    let c =
        |received, online, rejected, resolved, [early, on_time, late]: [u64; 3], withdrawn, stopped, paused| Counts {
            received,
            received_online: online,
            rejected_at_reception: rejected,
            resolved,
            resolved_early: early,
            resolved_on_time: on_time,
            resolved_late: late,
            withdrawn,
            stopped,
            resolved_paused: u64::from(paused > 0),
            paused_working_ms: paused,
            // Only D2's authority apologised (the only paused one here, too).
            resolved_reappointed: u64::from(paused > 0),
        };
    let expected = BTreeMap::from([
        // Received D1 D2 D3 D6 (D1, D3 online); D1 resolved on time; D3 withdrawn.
        (key("2025-11", "06652", "LAND"), c(4, 2, 0, 1, [0, 1, 0], 1, 0, 0)),
        // D5, refused before its procedure's field was known.
        (key("2025-11", "06652", "UNKNOWN"), c(0, 0, 1, 0, [0; 3], 0, 0, 0)),
        (key("2025-11", "06658", "LAND"), c(1, 1, 0, 0, [0; 3], 0, 0, 0)),
        // D7 received and resolved early.
        (key("2025-12", "06652", "LAND"), c(1, 0, 0, 1, [1, 0, 0], 0, 0, 0)),
        // D2 resolved late where it was decided, with its pause; D4 stopped.
        (
            key("2025-12", "06658", "LAND"),
            c(0, 0, 0, 1, [0, 0, 1], 0, 1, 7 * HOUR),
        ),
    ]);
    assert_eq!(report.rows, expected);
    assert_eq!(
        report.backlog,
        BTreeMap::from([(key("2025-12", "06652", "LAND"), Backlog { pending: 1, overdue: 1 })]),
        "D6 is open and past its due time"
    );
    let t = report.totals();
    assert_eq!((t.received, t.resolved, t.withdrawn, t.stopped), (6, 3, 1, 1));
    assert_eq!(t.on_time_rate(), Some(2.0 / 3.0));
    assert_eq!(t.online_rate(), Some(3.0 / 6.0));
    // Handed to another unit, counted once: received at 06652, resolved at 06658.
    let by_unit = report.by(|k| k.unit_code.clone());
    assert_eq!((by_unit["06652"].received, by_unit["06652"].resolved), (5, 2));
    assert_eq!((by_unit["06658"].received, by_unit["06658"].resolved), (1, 1));
}

#[test]
fn an_as_of_report_leaves_out_what_happened_later() {
    let report = ledger(&log()).report(vn(2025, 11, 30, 23));
    let t = report.totals();
    assert_eq!(
        (t.received, t.resolved, t.withdrawn, t.stopped, t.rejected_at_reception),
        (5, 1, 1, 0, 1)
    );
    assert_eq!(
        report.backlog,
        BTreeMap::from([
            // D6 routed, not yet due.
            (key("2025-11", "06652", "LAND"), Backlog { pending: 1, overdue: 0 }),
            // D2 routed here and past due; D4 waiting for its supplement.
            (key("2025-11", "06658", "LAND"), Backlog { pending: 2, overdue: 1 }),
        ])
    );
}

#[test]
fn replaying_twice_or_in_another_order_gives_the_same_figures() {
    let events = log();
    let as_of = vn(2025, 12, 31, 23);
    let once = ledger(&events).report(as_of);
    let mut twice = events.clone();
    twice.extend(events.iter().cloned());
    assert_eq!(ledger(&twice).report(as_of), once);
    let mut reversed = events.clone();
    reversed.reverse();
    assert_eq!(ledger(&reversed).report(as_of), once);
    // Interleaved differently: odd positions first.
    let (odd, even): (Vec<_>, Vec<_>) = events.iter().cloned().enumerate().partition(|(i, _)| i % 2 == 1);
    let shuffled: Vec<AnyEvent> = odd.into_iter().chain(even).map(|(_, e)| e).collect();
    assert_eq!(ledger(&shuffled).report(as_of), once);
}

#[test]
fn the_periodic_report_has_one_line_per_group_in_csv_and_json() {
    let report = ledger(&log()).report(vn(2025, 12, 31, 23));
    let csv = report.to_csv();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 1 + report.rows.len());
    assert!(lines[0].starts_with("month,unit_code,procedure_code,field,received,"));
    assert!(
        lines.contains(&"2025-12,06658,1.004227,LAND,0,0,0,1,0,0,1,0.0000,,0,1,1,7.00,1"),
        "{csv}"
    );
    let json = report.to_json();
    assert_eq!(json["totals"]["received"], 6);
    assert_eq!(json["rows"].as_array().map(Vec::len), Some(report.rows.len()));
    assert_eq!(json["backlog"][0]["overdue"], 1);
}
