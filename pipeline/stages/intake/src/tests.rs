use std::sync::{Arc, OnceLock};

use motcua_runtime::Origin;
use motcua_schemas::{AnyEvent, DossierStatus};

use super::*;
use motcua_simulators::portal::{Defect, Generator};

fn reference() -> Arc<Reference> {
    static R: OnceLock<Arc<Reference>> = OnceLock::new();
    R.get_or_init(|| Arc::new(Reference::embedded().expect("embedded reference")))
        .clone()
}

/// 2025-11-25 09:00 in Hà Nội.
const NOW: i64 = 1_764_036_000_000;

fn envelope(s: DossierSubmitted, offset: i64) -> Envelope<IntakeInput> {
    Envelope {
        event: s.into(),
        origin: Origin {
            topic: "dossier.submitted".into(),
            partition: 0,
            offset,
            timestamp_ms: None,
        },
        door: Default::default(),
    }
}

async fn intake() -> (Intake, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::connect(&format!("sqlite://{}", dir.path().join("i.db").display()))
        .await
        .expect("store");
    (Intake::new(reference(), store, Codec::embedded().expect("codec")), dir)
}

fn refusal(r: &Reference, s: &DossierSubmitted) -> Refusal {
    validate(r, s).expect_err("should be refused")
}

fn codes(r: &Refusal) -> Vec<&str> {
    r.reasons.iter().map(|x| x.code.as_str()).collect()
}

#[test]
fn generated_valid_submissions_are_admitted() {
    let r = reference();
    let mut g = Generator::new(&r, "22", 7).expect("Quảng Ninh exists");
    for i in 0..2_000 {
        let s = g.valid(NOW + i);
        if let Err(refusal) = validate(&r, &s) {
            panic!("{:?} refused: {:?}", s.dossier.procedure_code, refusal.reasons);
        }
    }
}

#[test]
fn submissions_drawn_from_a_registry_world_are_admitted() {
    let r = reference();
    let world = motcua_simulators::world::World::for_province(&r.units, "22", 5, 100_000).expect("world");
    let mut g = Generator::new(&r, "22", 7).expect("province").with_world(&world);
    for i in 0..2_000 {
        let s = g.valid(NOW + i);
        if let Err(refusal) = validate(&r, &s) {
            panic!("{:?} refused: {:?}", s.dossier.procedure_code, refusal.reasons);
        }
        let id = s.dossier.applicant.citizen_id.as_deref().expect("citizen id");
        if s.dossier.applicant.kind == motcua_schemas::ApplicantKind::Citizen {
            let c = world
                .citizen_by_id(id)
                .expect("the applicant is in the population registry");
            assert_eq!(c.full_name, s.dossier.applicant.full_name);
        }
    }
}

#[test]
fn each_defect_is_refused_with_its_reason() {
    let r = reference();
    let mut g = Generator::new(&r, "22", 8).expect("province");
    let expect = [
        (
            Defect::MissingDocument,
            DossierStatus::SupplementRequested,
            "MISSING_DOCUMENT",
        ),
        (
            Defect::BadCitizenId,
            DossierStatus::RejectedAtReception,
            "INVALID_CITIZEN_ID",
        ),
        (
            Defect::UnknownProcedure,
            DossierStatus::RejectedAtReception,
            "UNKNOWN_PROCEDURE",
        ),
        (
            Defect::InactiveProcedure,
            DossierStatus::RejectedAtReception,
            "PROCEDURE_INACTIVE",
        ),
        (
            Defect::UnknownReceivingUnit,
            DossierStatus::RejectedAtReception,
            "UNKNOWN_RECEIVING_UNIT",
        ),
    ];
    for (defect, status, code) in expect {
        let refused = refusal(&r, &g.defective(NOW, defect));
        assert_eq!(refused.status, status, "{defect:?}");
        assert!(codes(&refused).contains(&code), "{defect:?}: {:?}", refused.reasons);
        assert!(refused.reasons.iter().all(|x| !x.message.is_empty()));
    }
}

#[test]
fn every_problem_is_reported_not_just_the_first() {
    let r = reference();
    let mut s = Generator::new(&r, "22", 9).expect("province").valid(NOW);
    s.dossier.applicant.citizen_id = Some("12345".into());
    s.dossier.documents.clear();
    let refused = refusal(&r, &s);
    // A rejection reason wins over supplement reasons, but both are reported.
    assert_eq!(refused.status, DossierStatus::RejectedAtReception);
    assert!(codes(&refused).contains(&"INVALID_CITIZEN_ID"));
    assert!(codes(&refused).contains(&"MISSING_DOCUMENT"));
}

#[test]
fn boundary_rules_follow_the_catalog() {
    let r = reference();
    let mut g = Generator::new(&r, "22", 10).expect("province");
    // A commune-level procedure that is NOT boundary-free, received at another commune.
    let strict = r
        .catalog
        .procedures()
        .iter()
        .find(|p| {
            p.active
                && !p.boundary_free
                && !p.nationwide
                && p.level == motcua_schemas::CompetentLevel::Commune
                && p.field != motcua_schemas::ProcedureField::Land
        })
        .expect("catalog has a strict commune procedure");
    let mut s = g.valid(NOW);
    s.dossier.procedure_code = strict.code.clone();
    s.dossier.land_parcels.clear();
    s.dossier.applicant.kind = motcua_schemas::ApplicantKind::Citizen;
    s.dossier.applicant.tax_code = None;
    s.dossier.documents = strict
        .required_documents
        .iter()
        .map(|k| motcua_schemas::Document {
            kind: k.clone(),
            uri: "s3://x".into(),
            sha256: "a".repeat(64),
            digitized: false,
        })
        .collect();
    let home = s.dossier.applicant.residence_unit_code.clone().expect("residence");
    let other = r
        .units
        .units_of("22")
        .find(|u| u.code != home)
        .expect("another unit")
        .code
        .clone();
    s.dossier.receiving_unit_code = home.clone();
    assert!(validate(&r, &s).is_ok(), "received at the competent commune");
    s.dossier.receiving_unit_code = other;
    assert_eq!(codes(&refusal(&r, &s)), ["NOT_RECEIVABLE_AT_UNIT"]);

    // A boundary-free procedure received in another province is refused unless nationwide.
    let mut s = g.valid(NOW);
    let p = r.catalog.get(&s.dossier.procedure_code).expect("known").clone();
    s.dossier.receiving_unit_code = "00070".into(); // Phường Hoàn Kiếm, Hà Nội
    if p.nationwide {
        assert!(validate(&r, &s).is_ok());
    } else {
        assert_eq!(codes(&refusal(&r, &s)), ["NOT_RECEIVABLE_AT_UNIT"]);
    }
    let nationwide = r
        .catalog
        .procedures()
        .iter()
        .find(|p| p.active && p.nationwide)
        .expect("a nationwide procedure");
    assert!(nationwide.boundary_free);
}

#[test]
fn provincial_center_codes_are_agencies() {
    let r = reference();
    let mut s = Generator::new(&r, "22", 11).expect("province").valid(NOW);
    let p = r.catalog.get(&s.dossier.procedure_code).expect("known").clone();
    s.dossier.receiving_unit_code = "P22".into();
    if p.boundary_free || p.level == motcua_schemas::CompetentLevel::Province {
        assert_eq!(validate(&r, &s).expect("admitted").agency_code, "H22.TTHC");
    }
    s.dossier.receiving_unit_code = "P99".into();
    assert!(codes(&refusal(&r, &s)).contains(&"UNKNOWN_RECEIVING_UNIT"));
}

#[tokio::test]
async fn a_batch_is_accepted_with_unique_codes_and_redelivery_re_emits_identical_events() {
    let (stage, _dir) = intake().await;
    let r = reference();
    let mut g = Generator::new(&r, "22", 12).expect("province");
    let batch: Vec<_> = (0..50).map(|i| envelope(g.valid(NOW + i * 60_000), i)).collect();
    let first = stage.handle_batch(&batch).await.expect("handled");
    assert_eq!(first.len(), 50);
    let mut codes = std::collections::HashSet::new();
    let mut tokens = std::collections::HashSet::new();
    for (o, e) in first.iter().zip(&batch) {
        let Outcome::Emit(events) = o else {
            panic!("not emitted: {o:?}")
        };
        let [AnyEvent::Accepted(a), AnyEvent::Status(st)] = &events[..] else {
            panic!("unexpected events {events:?}")
        };
        let IntakeInput::Submitted(e) = &e.event else {
            unreachable!()
        };
        assert_eq!(a.dossier, e.dossier);
        assert_eq!(a.causation_id, e.event_id);
        assert_eq!(a.received_at, e.dossier.submitted_at);
        assert!(
            a.dossier_code
                .starts_with(&format!("{}-251125-", a.receiving_agency_code)),
            "{}",
            a.dossier_code
        );
        assert_eq!(st.status, DossierStatus::Received);
        assert_eq!(st.status_code, 2);
        assert_eq!(st.dossier_code.as_ref(), Some(&a.dossier_code));
        let token = st
            .lookup_token
            .as_deref()
            .expect("the received status carries a lookup token");
        assert!(
            motcua_security::access::normalize_lookup_token(token).is_some(),
            "{token} is a lookup token"
        );
        assert!(tokens.insert(token.to_owned()), "two dossiers share the token {token}");
        assert!(
            codes.insert(a.dossier_code.clone()),
            "duplicate code {}",
            a.dossier_code
        );
    }
    // The same batch again (a crash before the commit): byte-for-byte the same outcomes,
    // the lookup tokens included (they are stored with the codes).
    let again = stage.handle_batch(&batch).await.expect("handled");
    assert_eq!(again, first);
}

#[tokio::test]
async fn refused_submissions_get_no_code() {
    let (stage, _dir) = intake().await;
    let r = reference();
    let mut g = Generator::new(&r, "22", 13).expect("province");
    let batch = vec![
        envelope(g.defective(NOW, Defect::UnknownProcedure), 0),
        envelope(g.valid(NOW), 1),
        envelope(g.defective(NOW, Defect::MissingDocument), 2),
    ];
    let out = stage.handle_batch(&batch).await.expect("handled");
    let statuses: Vec<DossierStatus> = out
        .iter()
        .map(|o| match o {
            Outcome::Emit(ev) => match ev.last() {
                Some(AnyEvent::Status(s)) => s.status,
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        statuses,
        [
            DossierStatus::RejectedAtReception,
            DossierStatus::Received,
            DossierStatus::SupplementRequested
        ]
    );
    assert_eq!(stage.store.count_codes().await.expect("count"), 1);
}

/// Counters recorded by the code under test (a thread-local recorder, so tests running
/// in parallel do not see each other's counts).
#[derive(Debug, Default)]
struct Counters(std::sync::Mutex<std::collections::BTreeMap<String, Arc<std::sync::atomic::AtomicU64>>>);

#[derive(Debug)]
struct Count(Arc<std::sync::atomic::AtomicU64>);

impl metrics::CounterFn for Count {
    fn increment(&self, value: u64) {
        self.0.fetch_add(value, std::sync::atomic::Ordering::Relaxed);
    }
    fn absolute(&self, value: u64) {
        self.0.store(value, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Counters {
    /// `name{label=value,…}` → count.
    fn snapshot(&self) -> std::collections::BTreeMap<String, u64> {
        let m = self.0.lock().expect("counters");
        m.iter()
            .map(|(k, v)| (k.clone(), v.load(std::sync::atomic::Ordering::Relaxed)))
            .filter(|(_, v)| *v > 0)
            .collect()
    }
}

impl metrics::Recorder for Counters {
    fn describe_counter(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
    fn describe_gauge(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
    fn describe_histogram(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
    fn register_counter(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        let labels: Vec<String> = key.labels().map(|l| format!("{}={}", l.key(), l.value())).collect();
        let name = format!("{}{{{}}}", key.name(), labels.join(","));
        let cell = self.0.lock().expect("counters").entry(name).or_default().clone();
        metrics::Counter::from_arc(Arc::new(Count(cell)))
    }
    fn register_gauge(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::noop()
    }
    fn register_histogram(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Histogram {
        metrics::Histogram::noop()
    }
}

#[tokio::test]
async fn outcomes_are_counted_by_the_batch_not_by_the_event_builders() {
    let counters = Counters::default();
    let _guard = metrics::set_default_local_recorder(&counters);
    let (stage, _dir) = intake().await;
    let r = reference();
    let mut g = Generator::new(&r, "22", 14).expect("province");
    let valid = g.valid(NOW);
    let refused = g.defective(NOW, Defect::UnknownProcedure);

    // Building events counts nothing.
    let allocation = stage
        .store
        .allocate_codes(&[code_request(&valid, &validate(&r, &valid).expect("admitted"))])
        .await
        .expect("allocated")
        .remove(0);
    accepted_events(&valid, validate(&r, &valid).expect("admitted"), &allocation);
    refusal_event(&refused, refusal(&r, &refused));
    assert!(counters.snapshot().is_empty(), "{:?}", counters.snapshot());

    // A handled batch counts each submission once.
    let batch = vec![envelope(valid, 0), envelope(refused, 1), envelope(g.valid(NOW + 1), 2)];
    stage.handle_batch(&batch).await.expect("handled");
    let counted = counters.snapshot();
    let expected: std::collections::BTreeMap<String, u64> = [
        ("motcua_intake_dossiers_total{outcome=accepted}", 1),
        ("motcua_intake_dossiers_total{outcome=accepted_again}", 1),
        ("motcua_intake_dossiers_total{outcome=rejected}", 1),
        ("motcua_intake_refusal_reasons_total{reason_code=UNKNOWN_PROCEDURE}", 1),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(counted, expected);
}

/// A portal that reuses a dossier id for another dossier must not get the first
/// dossier's code: the second is rejected with DUPLICATE_DOSSIER_ID, the first keeps its
/// code, and the same dossier sent again still gets its own code back.
#[tokio::test]
async fn a_reused_dossier_id_with_other_content_is_refused_with_a_reason() {
    let (stage, _dir) = intake().await;
    let r = reference();
    let mut g = Generator::new(&r, "22", 21).expect("province");
    let first = g.valid(NOW);
    let mut other = g.valid(NOW + 60_000);
    other.dossier.dossier_id = first.dossier.dossier_id.clone();
    let out = stage
        .handle_batch(&[envelope(first.clone(), 0)])
        .await
        .expect("handled");
    let Outcome::Emit(events) = &out[0] else {
        panic!("{out:?}")
    };
    let Some(AnyEvent::Accepted(accepted)) = events.first() else {
        panic!("{events:?}")
    };
    let out = stage.handle_batch(&[envelope(other, 1)]).await.expect("handled");
    let Outcome::Emit(events) = &out[0] else {
        panic!("{out:?}")
    };
    let [AnyEvent::Status(st)] = &events[..] else {
        panic!("{events:?}")
    };
    assert_eq!(st.status, DossierStatus::RejectedAtReception);
    assert_eq!(st.reasons[0].code, "DUPLICATE_DOSSIER_ID");
    assert_eq!(st.dossier_code, None, "the other dossier's code is not given out");
    // The first dossier again (a redelivery): its own code.
    let again = stage.handle_batch(&[envelope(first, 0)]).await.expect("handled");
    let Outcome::Emit(events) = &again[0] else {
        panic!("{again:?}")
    };
    let Some(AnyEvent::Accepted(a)) = events.first() else {
        panic!("{events:?}")
    };
    assert_eq!(a.dossier_code, accepted.dossier_code);
}

mod lifecycle;
