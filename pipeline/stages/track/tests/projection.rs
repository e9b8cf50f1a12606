//! The projection over real PostgreSQL: redelivery, reordering, out-of-order statuses,
//! deadline warnings.

mod common;

use common::*;
use motcua_schemas::{AnyEvent, DossierStatus, Timeliness};
use motcua_track::{deadline_risk, mark_warned, pending_warnings, DeadlineRisk, Track, WallClock, WarningConfig};
use sqlx::PgPool;

#[derive(Debug, PartialEq, Eq, sqlx::FromRow)]
struct Row {
    dossier_code: Option<String>,
    procedure_code: Option<String>,
    receiving_unit: Option<String>,
    competent_unit: Option<String>,
    channel: Option<String>,
    received_at: Option<i64>,
    due_at: Option<i64>,
    completed_at: Option<i64>,
    timeliness: Option<String>,
    status_code: Option<i32>,
    status_at: Option<i64>,
}

async fn row(pool: &PgPool, id: &str) -> Row {
    sqlx::query_as(
        "SELECT dossier_code, procedure_code, receiving_unit, competent_unit, channel, received_at, due_at,
                completed_at, timeliness, status_code, status_at
         FROM track_dossiers WHERE dossier_id = $1",
    )
    .bind(id)
    .fetch_one(pool)
    .await
    .expect("row")
}

async fn history_count(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM track_history")
        .fetch_one(pool)
        .await
        .expect("count")
}

fn finished(n: u32) -> Life {
    let mut l = Life::new(n, NOW - 20 * DAY);
    l.competent_unit = "H22.STNMT".into();
    l.channel = motcua_schemas::Channel::Counter;
    l.done = Some((NOW - 12 * DAY, Timeliness::Early));
    l
}

#[tokio::test]
async fn a_whole_life_is_projected() {
    let pool = database().await;
    let track = Track::new(pool.clone());
    let l = finished(1);
    let events = l.events();
    let a = track.apply(&refs(&events)).await.expect("apply");
    assert_eq!(a.events, 11);
    assert_eq!(a.new_events, 11);
    assert_eq!(a.dossiers, 1);
    assert_eq!(
        row(&pool, &l.id).await,
        Row {
            dossier_code: Some(l.code.clone()),
            procedure_code: Some("1.004227".into()),
            receiving_unit: Some("06652".into()),
            competent_unit: Some("H22.STNMT".into()),
            channel: Some("counter".into()),
            received_at: Some(l.received_at()),
            due_at: Some(l.due_at),
            completed_at: Some(NOW - 12 * DAY),
            timeliness: Some("early".into()),
            status_code: Some(10),
            status_at: Some(NOW - 12 * DAY),
        }
    );
    assert_eq!(history_count(&pool).await, 11);
}

/// The same batch twice (a crash after the commit, before the offsets): nothing changes.
#[tokio::test]
async fn redelivery_changes_nothing() {
    let pool = database().await;
    let track = Track::new(pool.clone());
    let events: Vec<AnyEvent> = (1..=5).flat_map(|n| finished(n).events()).collect();
    track.apply(&refs(&events)).await.expect("first");
    let before = snapshot(&pool).await;
    let again = track.apply(&refs(&events)).await.expect("again");
    assert_eq!(again.events, 55);
    assert_eq!(again.new_events, 0, "no history row twice");
    // Duplicates inside one batch, and one event at a time.
    let doubled: Vec<&AnyEvent> = events.iter().chain(events.iter()).collect();
    track.apply(&doubled).await.expect("doubled");
    track.apply_each(&refs(&events[..11])).await.expect("each");
    assert_eq!(snapshot(&pool).await, before);
    assert_eq!(history_count(&pool).await, 55);
}

/// Any delivery order — reversed, interleaved, completed before routed, one event per
/// batch or all in one — gives the same projection as the natural order.
#[tokio::test]
async fn delivery_order_does_not_matter() {
    let lives: Vec<Life> = (1..=4)
        .map(|n| {
            let mut l = finished(n);
            if n % 2 == 0 {
                l.done = None;
            }
            l
        })
        .collect();
    let events: Vec<AnyEvent> = lives.iter().flat_map(Life::events).collect();

    let natural = database().await;
    Track::new(natural.clone())
        .apply(&refs(&events))
        .await
        .expect("natural");
    let expected = snapshot(&natural).await;

    let reversed: Vec<AnyEvent> = events.iter().rev().cloned().collect();
    let db = database().await;
    Track::new(db.clone())
        .apply(&refs(&reversed))
        .await
        .expect("reversed, one batch");
    assert_eq!(snapshot(&db).await, expected, "reversed in one batch");

    let db = database().await;
    Track::new(db.clone())
        .apply_each(&refs(&reversed))
        .await
        .expect("reversed, one by one");
    assert_eq!(snapshot(&db).await, expected, "reversed, one event per batch");

    // A deterministic shuffle, in batches of 3.
    let mut shuffled = events.clone();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in (1..shuffled.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        shuffled.swap(i, (x % (i as u64 + 1)) as usize);
    }
    let db = database().await;
    let t = Track::new(db.clone());
    for chunk in shuffled.chunks(3) {
        t.apply(&refs(chunk)).await.expect("shuffled");
    }
    assert_eq!(snapshot(&db).await, expected, "shuffled in batches of 3");

    // Completed before routed, before accepted.
    let l = &lives[0];
    let db = database().await;
    let t = Track::new(db.clone());
    let (done, _) = l.done.expect("finished");
    t.apply(&[&l.completed(done, Timeliness::Early)])
        .await
        .expect("completed");
    let r = row(&db, &l.id).await;
    assert_eq!((r.status_code, r.timeliness.as_deref()), (Some(10), Some("early")));
    assert_eq!(r.dossier_code.as_deref(), Some(l.code.as_str()));
    t.apply(&[&l.routed()]).await.expect("routed");
    t.apply(&[&l.accepted()]).await.expect("accepted");
    let r = row(&db, &l.id).await;
    assert_eq!(r.status_code, Some(10), "a late routed/accepted does not reopen it");
    assert_eq!(r.status_at, Some(done));
    assert_eq!(
        r.channel.as_deref(),
        Some("counter"),
        "facts from late events still fill in"
    );
    assert_eq!(r.received_at, Some(l.received_at()));
}

/// A supplement request pauses the clock; the resumption extends the due time. Delivered
/// late, the older supplement request does not move the status back.
#[tokio::test]
async fn a_late_older_status_does_not_overwrite_a_newer_one() {
    let pool = database().await;
    let t = Track::new(pool.clone());
    let l = Life::new(7, NOW - 5 * DAY);
    t.apply(&refs(&l.events())).await.expect("life");
    let supplement = l.status(
        "supplement",
        DossierStatus::SupplementRequested,
        "backoffice",
        NOW - 3 * DAY,
        None,
    );
    let resumed_due = l.due_at + 2 * DAY;
    let resumed = l.status(
        "resumed",
        DossierStatus::Processing,
        "backoffice",
        NOW - DAY,
        Some(resumed_due),
    );
    t.apply(&[&resumed]).await.expect("resumed first");
    t.apply(&[&supplement]).await.expect("supplement late");
    let r = row(&pool, &l.id).await;
    assert_eq!(r.status_code, Some(4));
    assert_eq!(r.status_at, Some(NOW - DAY));
    assert_eq!(r.due_at, Some(resumed_due), "the latest assignment's due time");
    // The older routed event, redelivered, keeps neither its status nor its due time.
    t.apply(&[&l.routed()]).await.expect("routed again");
    let r = row(&pool, &l.id).await;
    assert_eq!((r.status_code, r.due_at), (Some(4), Some(resumed_due)));
    // Same millisecond: withdrawn (closed) beats processing (open), whatever the order.
    let withdrawn = l.status("withdrawn", DossierStatus::Withdrawn, "portal", NOW, None);
    let processing = l.status("again", DossierStatus::Processing, "backoffice", NOW, None);
    t.apply(&[&withdrawn, &processing]).await.expect("same ms");
    assert_eq!(row(&pool, &l.id).await.status_code, Some(7));
    // History keeps everything, in time order, with the reasons.
    let reasons: serde_json::Value = sqlx::query_scalar("SELECT reasons FROM track_history WHERE event_id = $1")
        .bind(format!("{}-status-supplement", l.id))
        .fetch_one(&pool)
        .await
        .expect("history row");
    assert_eq!(reasons[0]["code"], "MISSING_DOCUMENT");
    assert_eq!(history_count(&pool).await, 9 + 4);
}

#[tokio::test]
async fn deadline_warnings_once_per_due_time() {
    let pool = database().await;
    let t = Track::new(pool.clone());
    let mut soon = Life::new(1, NOW - 9 * DAY);
    soon.due_at = NOW + 2 * HOUR;
    let mut later = Life::new(2, NOW - 9 * DAY);
    later.due_at = NOW + 30 * HOUR;
    let mut passed = Life::new(3, NOW - 9 * DAY);
    passed.due_at = NOW - HOUR;
    let mut done = Life::new(4, NOW - 9 * DAY);
    done.due_at = NOW + HOUR;
    done.done = Some((NOW - HOUR, Timeliness::Early));
    let mut paused = Life::new(5, NOW - 9 * DAY);
    paused.due_at = NOW + HOUR;
    let mut events: Vec<AnyEvent> = [&soon, &later, &passed, &done, &paused]
        .iter()
        .flat_map(|l| l.events())
        .collect();
    events.push(paused.status(
        "supplement",
        DossierStatus::SupplementRequested,
        "backoffice",
        NOW - HOUR,
        None,
    ));
    t.apply(&refs(&events)).await.expect("apply");

    let config = WarningConfig::new(8);
    // What the gauges report: the soon one at risk, the passed one overdue; not the one
    // 30 hours away, the decided one or the paused one.
    assert_eq!(
        deadline_risk(&pool, NOW, &config, &WallClock).await.expect("risk"),
        DeadlineRisk { at_risk: 1, overdue: 1 }
    );
    let w = pending_warnings(&pool, NOW, &config, &WallClock).await.expect("scan");
    let mut ids: Vec<(&str, &str)> = w
        .iter()
        .map(|w| (w.dossier_id.as_str(), w.reasons[0].code.as_str()))
        .collect();
    ids.sort_unstable();
    assert_eq!(
        ids,
        vec![("dossier-1", "DEADLINE_SOON"), ("dossier-3", "DEADLINE_PASSED")]
    );
    let first = w.iter().find(|w| w.dossier_id == "dossier-1").expect("soon");
    assert_eq!(first.status, DossierStatus::Processing);
    assert_eq!(first.stage, "track");
    assert_eq!(first.due_at, Some(soon.due_at));
    assert_eq!(first.dossier_code.as_deref(), Some(soon.code.as_str()));
    // Scanning again before marking gives the same event ids (deduplicated downstream).
    let again = pending_warnings(&pool, NOW, &config, &WallClock).await.expect("rescan");
    assert_eq!(
        again.iter().map(|w| &w.event_id).collect::<Vec<_>>(),
        w.iter().map(|w| &w.event_id).collect::<Vec<_>>()
    );
    assert_eq!(mark_warned(&pool, &w).await.expect("mark"), 2);
    assert!(pending_warnings(&pool, NOW, &config, &WallClock)
        .await
        .expect("scan")
        .is_empty());

    // The warning itself, consumed back: history only, the status does not move.
    let warning: AnyEvent = first.clone().into();
    t.apply(&[&warning]).await.expect("warning");
    let r = row(&pool, "dossier-1").await;
    assert_eq!((r.status_code, r.status_at), (Some(4), Some(soon.routed_at())));
    let (stage, code): (String, Option<i32>) =
        sqlx::query_as("SELECT stage, status_code FROM track_history WHERE event_id = $1")
            .bind(&first.event_id)
            .fetch_one(&pool)
            .await
            .expect("warning in history");
    assert_eq!((stage.as_str(), code), ("track", Some(4)));

    // A new due time (extended) is warned again once it comes close.
    let extended = soon.status(
        "extended",
        DossierStatus::Processing,
        "backoffice",
        NOW + MIN,
        Some(NOW + 5 * HOUR),
    );
    t.apply(&[&extended]).await.expect("extend");
    let w2 = pending_warnings(&pool, NOW + 2 * MIN, &config, &WallClock)
        .await
        .expect("scan");
    assert_eq!(w2.len(), 1);
    assert_eq!(w2[0].due_at, Some(NOW + 5 * HOUR));
    assert_ne!(w2[0].event_id, first.event_id);
}

/// Working time, not wall-clock time: Friday 16:00 → Monday 09:00 is 3 working hours.
#[tokio::test]
async fn deadline_warnings_count_working_hours_on_the_calendar() {
    let pool = database().await;
    let t = Track::new(pool.clone());
    let friday_4pm = NOW + 3 * DAY + 7 * HOUR;
    let monday_9am = NOW + 6 * DAY;
    let mut l = Life::new(1, NOW - 9 * DAY);
    l.due_at = monday_9am;
    t.apply(&refs(&l.events())).await.expect("apply");
    let config = WarningConfig::new(8);
    let wall = pending_warnings(&pool, friday_4pm, &config, &WallClock)
        .await
        .expect("wall");
    assert!(wall.is_empty(), "65 wall-clock hours away");
    let calendar = motcua_routing::Calendar::embedded().expect("calendar");
    let w = pending_warnings(&pool, friday_4pm, &config, &calendar)
        .await
        .expect("calendar");
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].reasons[0].message, "3.0 working hours left before the due time");
}

/// Step budgets of procedure 1.004227 (residence, 3 working days = 24 h, the default plan
/// 5/10/60/15/10 %): appraisal has 14.4 working hours; the warning comes once 80 % are
/// spent (working time on the calendar), once per step.
#[tokio::test]
async fn step_budget_warnings_count_working_time_once_per_step() {
    use motcua_track::steps::{pending_step_warnings, StepWarnings};
    let pool = database().await;
    let t = Track::new(pool.clone());
    // Submitted Tuesday 09:00, verified 09:05: in appraisal since.
    let l = Life::new(1, NOW);
    t.apply(&refs(&l.events())).await.expect("apply");
    let warnings = StepWarnings {
        share: 0.8,
        clock: std::sync::Arc::new(tables()),
        limit: 1_000,
    };
    // Wednesday 09:00: 5 h 55 min on Tuesday + 2 h = 7.9 h of 14.4 — nothing.
    let wed_9am = NOW + DAY;
    assert!(pending_step_warnings(&pool, wed_9am, &warnings)
        .await
        .expect("scan")
        .is_empty());
    // Wednesday 17:00: 13.9 h spent, 0.5 h left (the night does not count).
    let wed_5pm = NOW + DAY + 8 * HOUR;
    let w = pending_step_warnings(&pool, wed_5pm, &warnings).await.expect("scan");
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].reasons[0].code, "STEP_BUDGET_SOON");
    assert_eq!(w[0].reasons[0].message, "appraisal: 0.5 of its 14.4 working hours left");
    assert_eq!(w[0].dossier_code.as_deref(), Some(l.code.as_str()));
    motcua_track::steps::mark_step_warned(&pool, &w).await.expect("mark");
    // Thursday 11:00, over budget, but this step was warned already.
    let thu_11am = NOW + 2 * DAY + 2 * HOUR;
    assert!(pending_step_warnings(&pool, thu_11am, &warnings)
        .await
        .expect("rescan")
        .is_empty());
    // The same scan on a projection that was never warned says it is over.
    sqlx::query("UPDATE track_dossiers SET step_warned = NULL")
        .execute(&pool)
        .await
        .expect("reset");
    let w = pending_step_warnings(&pool, thu_11am, &warnings).await.expect("scan");
    assert_eq!(w[0].reasons[0].code, "STEP_BUDGET_PASSED");
    assert_eq!(
        w[0].reasons[0].message,
        "appraisal: 17.9 working hours spent, the budget is 14.4"
    );
}

fn tables() -> motcua_routing::RoutingTables {
    let reference = motcua_reference::Reference::embedded().expect("reference");
    motcua_routing::RoutingTables::embedded(&reference).expect("tables")
}

/// Time per step, computed from the projection's boundaries on the calendar.
#[tokio::test]
async fn time_per_step_from_the_projection() {
    use motcua_track::steps::{summary, Boundaries};
    let pool = database().await;
    let t = Track::new(pool.clone());
    // Decided Thursday 08:00 (appraisal ended 07:00), result delivered 09:00.
    let mut l = Life::new(1, NOW);
    l.done = Some((NOW + 2 * DAY, Timeliness::OnTime));
    let mut events = l.events();
    events.reverse();
    t.apply(&refs(&events)).await.expect("apply, out of order");
    let b: Boundaries = sqlx::query_as(
        "SELECT procedure_code, receiving_unit, submitted_at, received_at, verified_at, appraised_at, decided_at, completed_at,
                clock_pauses FROM track_dossiers",
    )
    .fetch_one(&pool)
    .await
    .expect("row");
    let tables = tables();
    let times = b.times(None, &tables);
    let working: Vec<Option<i64>> = times.iter().map(|t| t.working_ms).collect();
    assert_eq!(
        working,
        [
            Some(MIN),                  // 09:00 → 09:01
            Some(4 * MIN),              // 09:01 → 09:05
            Some(13 * HOUR + 55 * MIN), // Tue 09:05 → Thu 07:00: 5 h 55 + 8 h
            Some(HOUR),                 // 07:00 → 08:00
            Some(HOUR),                 // 08:00 → 09:00
        ]
    );
    let budgets: Vec<Option<i64>> = times.iter().map(|t| t.budget_ms).collect();
    assert_eq!(
        budgets,
        [4_320_000, 8_640_000, 51_840_000, 12_960_000, 8_640_000].map(Some)
    );
    assert!(times.iter().all(|t| t.over_budget == Some(false)));
    let s = summary(&pool, &tables).await.expect("summary");
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].finished, [1; 5]);
    assert_eq!(s[0].working_ms[2], 13 * HOUR + 55 * MIN);
}

/// A center open on Saturday mornings: its dossiers' time left counts its Saturday.
/// Friday 16:00 → Monday 09:00 is 1 h + 4 h (Saturday 07:30–11:30) + 2 h = 7 h there,
/// 3 h at a center with the default hours.
#[tokio::test]
async fn deadline_warnings_count_the_receiving_center_s_own_hours() {
    let pool = database().await;
    let t = Track::new(pool.clone());
    let friday_4pm = NOW + 3 * DAY + 7 * HOUR;
    let monday_9am = NOW + 6 * DAY;
    let mut saturday_center = Life::new(1, NOW - 9 * DAY);
    saturday_center.due_at = monday_9am;
    let mut plain = Life::new(2, NOW - 9 * DAY);
    plain.receiving_unit = "07090".into();
    plain.due_at = monday_9am;
    let events: Vec<AnyEvent> = saturday_center.events().into_iter().chain(plain.events()).collect();
    t.apply(&refs(&events)).await.expect("apply");
    let dir = tempfile::tempdir().expect("tempdir");
    let hours = dir.path().join("unit-hours.csv");
    std::fs::write(&hours, "center,hours,saturday\n06652,,07:30-11:30\n").expect("write");
    let reference = motcua_reference::Reference::embedded().expect("reference");
    let tables = motcua_routing::RoutingTables::load(
        &reference,
        &motcua_routing::RoutingFiles {
            unit_hours: Some(hours),
            ..Default::default()
        },
    )
    .expect("tables");
    let w = pending_warnings(&pool, friday_4pm, &WarningConfig::new(8), &tables)
        .await
        .expect("scan");
    let left: Vec<(&str, &str)> = w
        .iter()
        .map(|w| (w.dossier_id.as_str(), w.reasons[0].message.as_str()))
        .collect();
    assert_eq!(
        left,
        [
            ("dossier-1", "7.0 working hours left before the due time"),
            ("dossier-2", "3.0 working hours left before the due time")
        ]
    );
}

/// Two copies of one event id with other contents (a stage that announced twice) in one
/// batch: the history keeps the first, and so does the dossier — as when they come in
/// two batches. Merging both would project a status the history does not hold.
#[tokio::test]
async fn two_copies_of_one_event_id_in_a_batch_project_the_first_only() {
    let pool = database().await;
    let t = Track::new(pool.clone());
    let l = Life::new(8, NOW - 5 * DAY);
    t.apply(&refs(&l.events())).await.expect("life");
    let first = l.status("dup", DossierStatus::Processing, "backoffice", NOW - DAY, None);
    let other = l.status("dup", DossierStatus::Withdrawn, "portal", NOW, None);
    assert_eq!(first.event_id(), other.event_id());
    t.apply(&[&first, &other]).await.expect("one batch");
    let r = row(&pool, &l.id).await;
    assert_eq!((r.status_code, r.status_at), (Some(4), Some(NOW - DAY)), "{r:?}");
}

/// A dossier resumed after a back-office wait is routed again with the pause given back;
/// its decision (a later assignment) may reach the projection first, as topics are read
/// in no common order. The pause still counts: the statistics' fold and the projection
/// must agree however the topics interleave (the demo's check failed on it).
#[tokio::test]
async fn a_pause_counts_when_the_decision_arrives_before_the_routing_that_gave_it_back() {
    let pool = database().await;
    let t = Track::new(pool.clone());
    let l = finished(10);
    t.apply(&refs(&l.events())).await.expect("life, decision included");
    let mut resumed = l.clone();
    resumed.pauses = vec![(l.routed_at() + HOUR, l.routed_at() + 3 * HOUR, 2 * HOUR)];
    let AnyEvent::Routed(mut again) = resumed.routed() else {
        unreachable!()
    };
    again.event_id = format!("{}-routed-again", l.id);
    again.routed_at = l.routed_at() + 3 * HOUR;
    t.apply(&[&AnyEvent::from(again)])
        .await
        .expect("the routing after the wait");
    let paused: Option<i64> = sqlx::query_scalar("SELECT paused_working_ms FROM track_dossiers WHERE dossier_id = $1")
        .bind(&l.id)
        .fetch_one(&pool)
        .await
        .expect("row");
    assert_eq!(paused, Some(2 * HOUR));
}

/// A warning produced, then the track worker killed before it marked the dossier warned:
/// the next round announces the very same event (its time, the hours left then), not one
/// computed again under the same id.
#[tokio::test]
async fn a_warning_announced_again_after_a_crash_is_the_first_one() {
    use motcua_runtime::Stage;
    let pool = database().await;
    let t = Track::new(pool.clone()).with_warnings(WarningConfig::new(8), std::sync::Arc::new(WallClock));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    let mut soon = Life::new(11, NOW - 9 * DAY);
    soon.due_at = now + 2 * HOUR;
    t.apply(&refs(&soon.events())).await.expect("apply");
    let first = t.tick(now).await.expect("tick");
    assert_eq!(first.events.len(), 1, "{first:?}");
    let again = t.tick(now + 40 * 60_000).await.expect("tick after a crash");
    assert_eq!(again.events, first.events);
}
