use motcua_registries::{Business, BusinessStatus, Citizen, Parcel, Sex};
use motcua_schemas::{samples, ApplicantKind, CheckOutcome};

use super::*;
use motcua_runtime::stored::{decode_events, encode_events, event_frames};

fn accepted() -> DossierAccepted {
    samples::accepted()
}

fn registry_citizen(a: &DossierAccepted) -> Citizen {
    Citizen {
        citizen_id: a.dossier.applicant.citizen_id.clone().expect("id"),
        full_name: "NGUYỄN THỊ  HƯƠNG".to_owned(),
        date_of_birth: a.dossier.applicant.date_of_birth.expect("dob"),
        sex: Sex::Female,
        residence_unit_code: "06652".to_owned(),
        deceased: false,
    }
}

fn parcel(a: &DossierAccepted, encumbrances: &[&str]) -> Parcel {
    let p = &a.dossier.land_parcels[0];
    Parcel {
        unit_code: p.unit_code.clone(),
        map_sheet: p.map_sheet,
        parcel_number: p.parcel_number,
        owners: vec![a.dossier.applicant.citizen_id.clone().expect("id")],
        area_m2: 120.5,
        land_use: "ODT".to_owned(),
        encumbrances: encumbrances.iter().map(|s| (*s).to_owned()).collect(),
    }
}

fn answers(a: &DossierAccepted, citizen: Option<Citizen>, parcel: Option<Parcel>) -> Answers {
    Answers {
        citizen: Some((a.dossier.applicant.citizen_id.clone().expect("id"), citizen)),
        parcels: vec![(a.dossier.land_parcels[0].clone(), parcel)],
        businesses: vec![],
    }
}

fn reason_codes(v: &Verdict) -> Vec<&str> {
    match v {
        Verdict::Supplement { reasons, .. } => reasons.iter().map(|r| r.code.as_str()).collect(),
        Verdict::Verified { .. } => vec![],
    }
}

#[test]
fn matching_answers_verify_even_when_case_and_spacing_differ() {
    let a = accepted();
    let v = assess(
        &a,
        &answers(&a, Some(registry_citizen(&a)), Some(parcel(&a, &["MORTGAGE"]))),
    );
    let Verdict::Verified { dossier, checks } = v else {
        panic!("{v:?}")
    };
    assert_eq!(*dossier, a.dossier, "nothing to fill in");
    assert_eq!(checks.len(), 2);
    assert_eq!(checks[0].outcome, CheckOutcome::Matched);
    assert_eq!(checks[1].outcome, CheckOutcome::Matched);
    assert_eq!(
        checks[1].detail.as_deref(),
        Some("MORTGAGE"),
        "a mortgage is reported, not blocking"
    );
}

#[test]
fn mismatches_and_missing_records_ask_for_a_supplement() {
    let a = accepted();
    let mut other = registry_citizen(&a);
    other.full_name = "Nguyễn Thị Hường".to_owned();
    other.date_of_birth += 1;
    let v = assess(&a, &answers(&a, Some(other), Some(parcel(&a, &["DISPUTE"]))));
    assert_eq!(
        reason_codes(&v),
        ["NAME_MISMATCH", "BIRTH_DATE_MISMATCH", "PARCEL_IN_DISPUTE"]
    );
    let v = assess(&a, &answers(&a, None, None));
    assert_eq!(reason_codes(&v), ["CITIZEN_NOT_FOUND", "PARCEL_NOT_FOUND"]);
    let mut dead = registry_citizen(&a);
    dead.deceased = true;
    assert_eq!(
        reason_codes(&assess(&a, &answers(&a, Some(dead), Some(parcel(&a, &[]))))),
        ["CITIZEN_RECORD_UNUSABLE"]
    );
}

#[test]
fn what_the_citizen_left_out_is_filled_from_the_registry() {
    let mut a = accepted();
    a.dossier.applicant.date_of_birth = None;
    a.dossier.applicant.residence_unit_code = None;
    let mut c = registry_citizen(&accepted());
    c.residence_unit_code = "06658".to_owned();
    let v = assess(&a, &answers(&a, Some(c.clone()), Some(parcel(&a, &[]))));
    let Verdict::Verified { dossier, checks } = v else {
        panic!("{v:?}")
    };
    assert_eq!(dossier.applicant.date_of_birth, Some(c.date_of_birth));
    assert_eq!(dossier.applicant.residence_unit_code.as_deref(), Some("06658"));
    assert_eq!(checks[0].outcome, CheckOutcome::Filled);
    assert_eq!(checks[0].detail.as_deref(), Some("date_of_birth,residence_unit_code"));
}

#[test]
fn business_applicants_must_be_active_and_represented_by_the_applicant() {
    let mut a = accepted();
    a.dossier.applicant.kind = ApplicantKind::Business;
    a.dossier.applicant.tax_code = Some("0100100022".to_owned());
    let rep = a.dossier.applicant.citizen_id.clone().expect("id");
    let business = |status, rep: &str| Business {
        tax_code: "0100100022".to_owned(),
        name: "Công ty TNHH Than".to_owned(),
        status,
        legal_representative_citizen_id: rep.to_owned(),
        head_office_unit_code: "06652".to_owned(),
    };
    let with = |b: Business| Answers {
        citizen: None,
        parcels: vec![],
        businesses: vec![("0100100022".to_owned(), Some(b))],
    };
    assert!(matches!(
        assess(&a, &with(business(BusinessStatus::Active, &rep))),
        Verdict::Verified { .. }
    ));
    assert_eq!(
        reason_codes(&assess(&a, &with(business(BusinessStatus::Dissolved, &rep)))),
        ["BUSINESS_NOT_ACTIVE"]
    );
    assert_eq!(
        reason_codes(&assess(&a, &with(business(BusinessStatus::Active, "001090000001")))),
        ["LEGAL_REPRESENTATIVE_MISMATCH"]
    );
    let (citizen, parcels, taxes) = needed(&a, &[Registry::Population, Registry::Business]);
    assert_eq!(citizen, Some(rep));
    assert!(parcels.is_empty(), "no land check for this procedure");
    assert_eq!(taxes, ["0100100022"]);
}

#[test]
fn retry_delays_grow_to_the_cap() {
    let p = RetryPolicy {
        first_delay: Duration::from_secs(5),
        max_delay: Duration::from_secs(60),
        escalate_after: Duration::from_secs(600),
    };
    assert_eq!(p.delay(0), Duration::from_secs(5));
    assert_eq!(p.delay(1), Duration::from_secs(10));
    assert_eq!(p.delay(3), Duration::from_secs(40));
    assert_eq!(p.delay(4), Duration::from_secs(60));
    assert_eq!(p.delay(40), Duration::from_secs(60));
}

/// A redelivered dossier may be decided (supplement) after the retrier escalated it, or
/// the other way round: the two status events must not share an id, or consumers that
/// deduplicate by id would keep whichever came first.
#[tokio::test]
async fn a_supplement_request_and_an_escalation_of_one_dossier_are_different_events() {
    use motcua_registries::audit::TracingAudit;
    use motcua_registries::http::{HttpConfig, HttpRegistries};
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::connect(&format!("sqlite://{}", dir.path().join("v.db").display()))
        .await
        .expect("store");
    let registries = HttpRegistries::new(HttpConfig::default(), Arc::new(TracingAudit)).expect("client");
    let verify = Verify::new(
        registries,
        Arc::new(Reference::embedded().expect("reference")),
        store,
        Codec::embedded().expect("codec"),
        "verify/test".into(),
        RetryPolicy::default(),
    );
    let a = accepted();
    let supplement = verify.verdict_events(
        &a,
        Verdict::Supplement {
            reasons: vec![],
            checks: vec![],
        },
        1,
    );
    let escalated = verify.escalation_events(&a, "registry down", 1);
    assert_eq!((supplement.len(), escalated.len()), (1, 1));
    assert_ne!(supplement[0].event_id(), escalated[0].event_id());
    // And each stays the same on a redelivery.
    assert_eq!(verify.escalation_events(&a, "registry down", 1), escalated);
}

/// What a retry stores with its parked dossier decodes to the very same events.
#[test]
fn a_stored_decision_decodes_to_the_same_events() {
    let codec = Codec::embedded().expect("codec");
    let a = accepted();
    let events = vec![
        status(&a, "escalated", DossierStatus::Processing, vec![], 7),
        status(&a, "supplement", DossierStatus::SupplementRequested, vec![], 8),
    ];
    let stored = encode_events(&codec, &events).expect("encode");
    assert_eq!(decode_events(&codec, &stored).expect("decode"), events);
    // Its framed messages are found without decoding them (to learn their writer ids).
    let frames = event_frames(&stored);
    assert_eq!(frames.len(), events.len());
    for f in frames {
        assert_eq!(
            Codec::schema_id(f).expect("framed"),
            codec.schemas().latest(motcua_schemas::Topic::Status).id
        );
    }
    assert_eq!(event_frames(&stored[..stored.len() - 1]).len(), events.len() - 1);
    assert!(decode_events(&codec, &stored[..stored.len() - 1]).is_err(), "truncated");
}

/// A dossier withdrawn while parked behind a registry outage is asked about no more: the
/// retry unparks it without an event (nothing follows a withdrawal).
#[tokio::test]
async fn a_parked_dossier_withdrawn_meanwhile_is_unparked_without_a_look_up() {
    use motcua_registries::audit::TracingAudit;
    use motcua_registries::http::{HttpConfig, HttpRegistries};
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::connect(&format!("sqlite://{}", dir.path().join("v.db").display()))
        .await
        .expect("store");
    // No registry listens there: a look-up would fail, and the test with it.
    let config = HttpConfig {
        base_url: "http://127.0.0.1:9".into(),
        ..HttpConfig::default()
    };
    let registries = HttpRegistries::new(config, Arc::new(TracingAudit)).expect("client");
    let codec = Codec::embedded().expect("codec");
    let verify = Verify::new(
        registries,
        Arc::new(Reference::embedded().expect("reference")),
        store.clone(),
        codec.clone(),
        "verify/test".into(),
        RetryPolicy::default(),
    );
    let a = accepted();
    let id = a.dossier.dossier_id.clone();
    store
        .park(
            Lot::Verify,
            &id,
            &codec.encode(&a).expect("encode"),
            1,
            1,
            "registry down",
        )
        .await
        .expect("park");
    store
        .close_dossier(&id, motcua_store::ClosureKind::Withdrawn, "wd", 2)
        .await
        .expect("withdrawn");
    let tick = verify.tick(10).await.expect("tick");
    assert!(tick.events.is_empty(), "{:?}", tick.events);
    assert_eq!(tick.done, [id]);
    verify.ticked(&tick).await.expect("ticked");
    let again = verify.tick(10_000_000).await.expect("tick");
    assert!(again.events.is_empty() && again.done.is_empty(), "unparked: {again:?}");
}

mod decided_once;
