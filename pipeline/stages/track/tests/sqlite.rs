//! The SQLite projection (the embedded demo's) against the PostgreSQL one: the same
//! events, in any order and redelivered, give the same rows and the same summary.

mod common;

use common::*;
use motcua_schemas::{AnyEvent, Timeliness};
use motcua_track::Track;

#[derive(Debug, PartialEq, Eq, sqlx::FromRow)]
struct DossierRow {
    dossier_id: String,
    dossier_code: Option<String>,
    procedure_code: Option<String>,
    receiving_unit: Option<String>,
    competent_unit: Option<String>,
    channel: Option<String>,
    submitted_at: Option<i64>,
    received_at: Option<i64>,
    due_at: Option<i64>,
    decided_at: Option<i64>,
    decision: Option<String>,
    completed_at: Option<i64>,
    timeliness: Option<String>,
    status_code: Option<i32>,
    status_at: Option<i64>,
    status_key: Option<i64>,
}

const COLUMNS: &str = "SELECT dossier_id, dossier_code, procedure_code, receiving_unit, competent_unit, channel, \
     submitted_at, received_at, due_at, decided_at, decision, completed_at, timeliness, status_code, status_at, \
     status_key FROM track_dossiers ORDER BY dossier_id";

async fn rows(track: &Track) -> Vec<DossierRow> {
    match track.db() {
        motcua_track::ProjectionDb::Postgres(p) => sqlx::query_as(COLUMNS).fetch_all(p).await,
        motcua_track::ProjectionDb::Sqlite(p) => sqlx::query_as(COLUMNS).fetch_all(p).await,
    }
    .expect("rows")
}

fn lives() -> Vec<AnyEvent> {
    // Enough dossiers that one batch spans several of SQLite's multi-row statements.
    (1..=80)
        .flat_map(|n| {
            let mut l = Life::new(n, NOW + n as i64 * HOUR);
            l.done = match n % 3 {
                0 => None,
                1 => Some((l.routed_at() + 2 * DAY, Timeliness::Early)),
                _ => Some((l.due_at + DAY, Timeliness::Late)),
            };
            l.events()
        })
        .collect()
}

async fn sqlite(dir: &tempfile::TempDir, name: &str) -> Track {
    Track::connect(&format!("sqlite://{}", dir.path().join(name).display()))
        .await
        .expect("sqlite projection")
}

#[tokio::test]
async fn sqlite_projection_equals_postgres_in_any_order_and_on_redelivery() {
    let events = lives();
    let pg = Track::new(database().await);
    pg.apply(&refs(&events)).await.expect("postgres");
    let expected = rows(&pg).await;
    assert_eq!(expected.len(), 80);
    assert!(
        expected.iter().any(|r| r.status_code == Some(10)),
        "some dossiers completed"
    );
    let expected_summary = pg.summary().await.expect("summary");

    let dir = tempfile::tempdir().expect("tempdir");
    let natural = sqlite(&dir, "natural.db").await;
    natural.apply(&refs(&events)).await.expect("natural");
    assert_eq!(rows(&natural).await, expected, "natural order, one batch");

    let reversed: Vec<AnyEvent> = events.iter().rev().cloned().collect();
    let one_by_one = sqlite(&dir, "reversed.db").await;
    let applied = one_by_one.apply_each(&refs(&reversed)).await.expect("reversed");
    assert_eq!(applied.new_events as usize, events.len());
    assert_eq!(rows(&one_by_one).await, expected, "reversed, one event per batch");

    // Everything again, in batches of 4: nothing new, nothing changed.
    for chunk in events.chunks(4) {
        let again = one_by_one.apply(&refs(chunk)).await.expect("redelivery");
        assert_eq!(again.new_events, 0, "redelivered events are known");
    }
    assert_eq!(rows(&one_by_one).await, expected, "after redelivery");
    assert_eq!(one_by_one.summary().await.expect("summary"), expected_summary);
}

/// One SQLite file for the projection and the stages' store (the default configuration):
/// track opens the store there for its owed warnings, after its own migrations, and the
/// stages open it after track; neither refuses the other's migrations.
#[tokio::test]
async fn the_projection_and_the_store_share_one_sqlite_file_in_either_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (i, track_first) in [true, false].into_iter().enumerate() {
        let url = format!("sqlite://{}", dir.path().join(format!("one-{i}.db")).display());
        if track_first {
            Track::connect(&url).await.expect("projection");
            motcua_store::Store::connect(&url)
                .await
                .expect("store after the projection");
        } else {
            motcua_store::Store::connect(&url).await.expect("store");
            Track::connect(&url).await.expect("projection after the store");
        }
    }
}
