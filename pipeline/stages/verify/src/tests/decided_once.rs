//! A dossier is decided once: the same `dossier.accepted` handled again, in a new message
//! (intake re-emitting it after a crash: another offset, a later broker time) or by the
//! timer after a redelivery parked it, announces the first decision byte for byte, even
//! when the registries answer otherwise by then.

use motcua_registries::audit::TracingAudit;
use motcua_registries::http::{HttpConfig, HttpRegistries};
use motcua_runtime::Origin;
use motcua_simulators::portal::Generator;
use motcua_simulators::registries::{self as sim, Faults};
use motcua_simulators::world::World;

use super::*;

/// 2025-11-25 09:00 in Hà Nội.
const NOW: i64 = 1_764_036_000_000;

struct Bench {
    verify: Verify<HttpRegistries>,
    store: Store,
    registry_url: String,
    accepted: Vec<DossierAccepted>,
    _dir: tempfile::TempDir,
    _sim: tokio::task::JoinHandle<()>,
}

async fn bench(dossiers: usize) -> Bench {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::connect(&format!("sqlite://{}", dir.path().join("v.db").display()))
        .await
        .expect("store");
    let reference = Arc::new(Reference::embedded().expect("reference"));
    let world = World::for_province(&reference.units, "22", 7, 10_000).expect("world");
    let (registry_url, sim) = sim::spawn(world.clone(), Faults::default()).await.expect("simulator");
    let registries = HttpRegistries::new(
        HttpConfig {
            base_url: registry_url.clone(),
            max_attempts: 1,
            ..HttpConfig::default()
        },
        Arc::new(TracingAudit),
    )
    .expect("client");
    let mut g = Generator::new(&reference, "22", 8)
        .expect("province")
        .with_world(&world);
    let mut accepted = Vec::new();
    while accepted.len() < dossiers {
        let s = g.valid(NOW + accepted.len() as i64 * 1_000);
        let procedure = reference.catalog.get(&s.dossier.procedure_code).expect("catalog");
        // Only procedures that ask a registry: their verdict is what may change.
        if procedure.registry_checks.is_empty() {
            continue;
        }
        accepted.push(DossierAccepted {
            event_id: format!("accepted-{}", s.event_id),
            causation_id: s.event_id.clone(),
            dossier_code: format!("H22.{}-251125-{:04}", s.dossier.receiving_unit_code, accepted.len()),
            receiving_agency_code: format!("H22.{}", s.dossier.receiving_unit_code),
            received_at: s.dossier.submitted_at,
            procedure: procedure.summary(),
            dossier: s.dossier,
            traceparent: None,
        });
    }
    let verify = Verify::new(
        registries,
        reference,
        store.clone(),
        Codec::embedded().expect("codec"),
        "verify/test".into(),
        RetryPolicy {
            first_delay: Duration::ZERO,
            ..RetryPolicy::default()
        },
    );
    Bench {
        verify,
        store,
        registry_url,
        accepted,
        _dir: dir,
        _sim: sim,
    }
}

/// Each dossier in its own message at `offset`, delivered by the broker at `at`.
fn messages(accepted: &[DossierAccepted], offset: i64, at: i64) -> Vec<Envelope<DossierAccepted>> {
    accepted
        .iter()
        .enumerate()
        .map(|(i, a)| Envelope {
            event: a.clone(),
            origin: Origin {
                topic: "dossier.accepted".into(),
                partition: 0,
                offset: offset + i as i64,
                timestamp_ms: Some(at),
            },
            door: Default::default(),
        })
        .collect()
}

async fn registry_down(url: &str, down: bool) {
    let status = reqwest::Client::new()
        .put(format!("{url}/admin/faults"))
        .json(&Faults {
            down,
            ..Faults::default()
        })
        .send()
        .await
        .expect("admin")
        .status();
    assert_eq!(status, 204);
}

fn emitted(outcomes: Vec<Outcome>) -> Vec<Vec<AnyEvent>> {
    outcomes
        .into_iter()
        .map(|o| match o {
            Outcome::Emit(events) => events,
            other => panic!("expected events, got {other:?}"),
        })
        .collect()
}

#[tokio::test]
async fn a_dossier_sent_again_in_a_new_message_is_announced_as_first_decided() {
    let b = bench(6).await;
    let first = emitted(
        b.verify
            .handle_batch(&messages(&b.accepted, 10, NOW + 60_000))
            .await
            .expect("first"),
    );
    assert!(
        first.iter().all(|events| !events.is_empty()),
        "every dossier decided: {first:?}"
    );
    // An hour later, in new messages: the same events, not restamped.
    let later = emitted(
        b.verify
            .handle_batch(&messages(&b.accepted, 500, NOW + 3_660_000))
            .await
            .expect("again"),
    );
    assert_eq!(later, first);
    // With the registry down by then: still the first decision, and nothing parked.
    registry_down(&b.registry_url, true).await;
    let down = emitted(
        b.verify
            .handle_batch(&messages(&b.accepted, 900, NOW + 7_260_000))
            .await
            .expect("down"),
    );
    assert_eq!(down, first);
    assert_eq!(b.store.parked_count(Lot::Verify).await.expect("parked"), 0);
}

/// Parked behind an outage, then sent again once the registry answers: decided by the
/// redelivery; the timer's round that finds the dossier still parked announces that very
/// decision, not a second one stamped with its own time.
#[tokio::test]
async fn the_timer_announces_the_decision_a_redelivery_took_for_a_parked_dossier() {
    let b = bench(4).await;
    registry_down(&b.registry_url, true).await;
    let parked = emitted(
        b.verify
            .handle_batch(&messages(&b.accepted, 10, NOW + 60_000))
            .await
            .expect("parked"),
    );
    assert!(parked.iter().all(Vec::is_empty));
    assert_eq!(b.store.parked_count(Lot::Verify).await.expect("parked"), 4);
    registry_down(&b.registry_url, false).await;
    let decided: Vec<AnyEvent> = emitted(
        b.verify
            .handle_batch(&messages(&b.accepted, 500, NOW + 120_000))
            .await
            .expect("decided"),
    )
    .into_iter()
    .flatten()
    .collect();
    assert_eq!(decided.len(), 4);
    // Parked with the wall clock's time: due now.
    let tick = b.verify.tick(now_ms() + 1_000).await.expect("tick");
    let mut announced = tick.events.clone();
    announced.sort_by(|a, b| a.event_id().cmp(b.event_id()));
    let mut expected = decided.clone();
    expected.sort_by(|a, b| a.event_id().cmp(b.event_id()));
    assert_eq!(announced, expected);
    b.verify.ticked(&tick).await.expect("ticked");
    assert_eq!(b.store.parked_count(Lot::Verify).await.expect("parked"), 0);
}

/// A parked row that no longer decodes (a person must look) does not hold back the rows
/// claimed with it, nor stop the worker: it is reported and left parked, the others are
/// decided.
#[tokio::test]
async fn an_unreadable_parked_row_does_not_starve_the_others() {
    let b = bench(2).await;
    registry_down(&b.registry_url, true).await;
    b.verify
        .handle_batch(&messages(&b.accepted, 10, NOW))
        .await
        .expect("parked");
    b.store
        .park(Lot::Verify, "poison", b"not a framed message", 0, 0, "?")
        .await
        .expect("park poison");
    registry_down(&b.registry_url, false).await;
    let tick = b
        .verify
        .tick(now_ms() + 1_000)
        .await
        .expect("a round despite the poison row");
    assert_eq!(tick.events.len(), 2, "{:?}", tick.events);
    assert!(!tick.done.iter().any(|d| d == "poison"));
    b.verify.ticked(&tick).await.expect("ticked");
    assert_eq!(
        b.store.parked_count(Lot::Verify).await.expect("parked"),
        1,
        "left for a person"
    );
}
