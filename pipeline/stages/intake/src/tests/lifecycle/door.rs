//! A supplement merged into its dossier must leave a dossier a portal could have sent.

use std::sync::Arc;

use motcua_runtime::Door;
use motcua_schemas::Limits;

use super::*;

/// `e` handled on its own, having passed `door`.
async fn through(stage: &Intake, door: &Arc<Door>, e: impl Into<IntakeInputOf>) -> Outcome {
    let mut envelope = input(e.into().0, 1);
    envelope.door = door.clone();
    let mut out = stage.handle_batch(&[envelope]).await.expect("handled");
    out.pop().expect("one outcome")
}

/// A supplement of `bytes` of form text and `documents`.
fn bulky(id: &str, dossier_id: &str, code: Option<&str>, at: i64, bytes: usize) -> DossierSupplemented {
    let mut s = supplement(id, dossier_id, code, at);
    s.form_fields = notes("ghi-chu", bytes);
    s
}

/// Form notes of `bytes` in all, named `{prefix}-{i}`.
fn notes(prefix: &str, bytes: usize) -> std::collections::BTreeMap<String, String> {
    (0..bytes.div_ceil(2_000))
        .map(|i| (format!("{prefix}-{i}"), "x".repeat(2_000)))
        .collect()
}

/// A door that `fits` bytes from outside pass and `too_large` bytes do not, with room
/// on either side for the few bytes the ids of the messages compared may differ by.
fn door_between(fits: usize, too_large: usize) -> Arc<Door> {
    assert!(
        fits + 1_000 < too_large,
        "{fits} bytes should be well below {too_large}"
    );
    let limits = Limits::default();
    let topic_limit = (fits + too_large) / 2 + limits.output_room_bytes;
    Arc::new(Door { limits, topic_limit })
}

fn encoded_len<E: Event>(stage: &Intake, e: &E) -> usize {
    stage.codec.encode(e).expect("encodes").len()
}

/// Found only once merged, the dossier's outputs would not fit their topic: the runtime
/// dead-letters the supplement after intake answered its wait (and, at reception,
/// allocated the code), so nothing is announced and no stop can come: the dossier stays
/// open for ever. Refused before any of that, the wait stays open for a supplement that
/// fits, or for its stop.
#[tokio::test]
async fn a_supplement_that_would_make_its_dossier_too_large_is_refused_and_its_wait_stays_open() {
    let (stage, _dir) = intake().await;
    let r = reference();
    let mut g = Generator::new(&r, "22", 41).expect("province");
    let mut s = g.valid(NOW);
    s.dossier.form_fields.extend(notes("ban-dau", 4_000));
    let missing = s.dossier.documents.pop().expect("a document");
    let dossier_id = s.dossier.dossier_id.clone();
    let asked = one(&stage, s.clone()).await;
    assert_eq!(status(&asked).status, DossierStatus::SupplementRequested);

    let at = NOW + DAY;
    let mut large = bulky("sp-large", &dossier_id, None, at, 6_000);
    large.documents = vec![missing.clone()];
    let merged = DossierSubmitted {
        dossier: merge(&s.dossier, &large),
        ..s.clone()
    };
    let (submission, supplement_len, merged_len) = (
        encoded_len(&stage, &s),
        encoded_len(&stage, &large),
        encoded_len(&stage, &merged),
    );
    // The submission and the supplement each pass this door; the two merged would not.
    let door = door_between(submission.max(supplement_len), merged_len);

    let refused = through(&stage, &door, large.clone()).await;
    assert_eq!(dead_letter_code(&refused), "SUPPLEMENT_TOO_LARGE");
    let Outcome::DeadLetter { reason, .. } = &refused else {
        unreachable!()
    };
    assert!(!reason.contains("xxxx"), "no value in the reason: {reason}");
    let waits = stage.store.waits_of(&dossier_id).await.expect("waits");
    assert_eq!(waits.iter().map(|w| w.state).collect::<Vec<_>>(), [WaitState::Waiting]);
    assert!(
        stage.store.dossier_code(&dossier_id).await.expect("code").is_none(),
        "no code allocated for a dossier not received"
    );
    // The same supplement sent again is refused again.
    let again = DossierSupplemented {
        event_id: "sp-large-again".into(),
        published_at: large.published_at + 60_000,
        ..large.clone()
    };
    assert_eq!(
        dead_letter_code(&through(&stage, &door, again).await),
        "SUPPLEMENT_TOO_LARGE"
    );

    // The paper alone fits: received.
    let mut fits = supplement("sp-fits", &dossier_id, None, at + HOUR);
    fits.documents = vec![missing];
    let out = through(&stage, &door, fits).await;
    let [AnyEvent::Accepted(a), AnyEvent::Status(received)] = events(&out) else {
        panic!("{out:?}")
    };
    assert_eq!(received.status, DossierStatus::Received);
    assert!(
        !a.dossier.form_fields.contains_key("ghi-chu-0"),
        "the refused supplement left no trace"
    );
}

/// The same at a later step: verify asked, the dossier goes back to it only if the merged
/// dossier still fits.
#[tokio::test]
async fn a_supplement_answering_verify_that_would_make_its_dossier_too_large_is_refused() {
    let (stage, _dir) = intake().await;
    let r = reference();
    let mut g = Generator::new(&r, "22", 42).expect("province");
    let mut a = accepted(&stage, &mut g, NOW).await;
    a.dossier.form_fields.extend(notes("ban-dau", 4_000));
    let id = a.dossier.dossier_id.clone();
    stage
        .store
        .await_supplements(&[WaitRequest {
            request_event_id: "verify-asked".into(),
            dossier_id: id.clone(),
            dossier_code: Some(a.dossier_code.clone()),
            step: "verify".into(),
            requested_at_ms: NOW + HOUR,
            payload: stage.codec.encode(&a).expect("encode"),
        }])
        .await
        .expect("wait");
    let large = bulky("sp-large", &id, Some(&a.dossier_code), NOW + DAY, 6_000);
    let merged = DossierSubmitted {
        event_id: "probe".into(),
        dossier: merge(&a.dossier, &large),
        published_at: NOW,
        traceparent: None,
    };
    let door = door_between(encoded_len(&stage, &large), encoded_len(&stage, &merged));

    assert_eq!(
        dead_letter_code(&through(&stage, &door, large).await),
        "SUPPLEMENT_TOO_LARGE"
    );
    let waits = stage.store.waits_of(&id).await.expect("waits");
    assert_eq!(waits.iter().map(|w| w.state).collect::<Vec<_>>(), [WaitState::Waiting]);
    let pauses = stage.store.clock_pauses(&[id.as_str()]).await.expect("pauses");
    assert!(!pauses.contains_key(&id), "no pause recorded: {pauses:?}");

    let small = bulky("sp-small", &id, Some(&a.dossier_code), NOW + DAY + HOUR, 2_000);
    let out = through(&stage, &door, small).await;
    let [AnyEvent::Accepted(resumed), AnyEvent::Status(st)] = events(&out) else {
        panic!("{out:?}")
    };
    assert_eq!(resumed.dossier_code, a.dossier_code);
    assert_eq!(st.status, DossierStatus::Processing);
}
