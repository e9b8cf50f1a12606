use std::collections::HashSet;

use super::*;

/// A request; each one draws another lookup token, as intake does.
fn req(id: &str, agency: &str, day: &str, at: i64) -> CodeRequest {
    static DRAWN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = DRAWN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    CodeRequest {
        dossier_id: id.to_owned(),
        agency_code: agency.to_owned(),
        day: day.to_owned(),
        received_at_ms: at,
        content_digest: format!("content of {id}"),
        lookup_token: format!("token {n} of {id}"),
    }
}

async fn sqlite() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    (Store::connect(&url).await.expect("sqlite store"), dir)
}

async fn postgres() -> Store {
    Store::connect(&testing::scratch_postgres_url().await)
        .await
        .expect("postgres store")
}

async fn sequences_are_per_agency_and_day(store: Store) {
    let got = store
        .allocate_codes(&[
            req("a", "H22.06652", "251125", 1),
            req("b", "H22.06652", "251125", 2),
            req("c", "H22.06658", "251125", 3),
            req("d", "H22.06652", "251126", 4),
        ])
        .await
        .expect("allocate");
    let codes: Vec<&str> = got.iter().map(|a| a.dossier_code.as_str()).collect();
    assert_eq!(
        codes,
        [
            "H22.06652-251125-0001",
            "H22.06652-251125-0002",
            "H22.06658-251125-0001",
            "H22.06652-251126-0001"
        ]
    );
    assert!(got.iter().all(|a| a.newly_allocated));
    // The next batch continues the sequence.
    let next = store
        .allocate_codes(&[req("e", "H22.06652", "251125", 5)])
        .await
        .expect("allocate");
    assert_eq!(next[0].dossier_code, "H22.06652-251125-0003");
}

async fn redelivery_keeps_code_and_reception_time(store: Store) {
    let first = store
        .allocate_codes(&[req("x", "H22.06652", "251125", 100)])
        .await
        .expect("allocate");
    // Redelivered a day later, in a batch with a new dossier and an in-batch duplicate.
    let again = store
        .allocate_codes(&[
            req("x", "H22.06652", "251126", 999),
            req("y", "H22.06652", "251126", 1000),
            req("y", "H22.06652", "251126", 1001),
        ])
        .await
        .expect("allocate");
    assert_eq!(again[0].dossier_code, first[0].dossier_code);
    assert_eq!(again[0].received_at_ms, 100);
    assert!(!again[0].newly_allocated);
    assert!(first[0].lookup_token.is_some());
    assert_eq!(
        again[0].lookup_token, first[0].lookup_token,
        "a redelivery gets the stored lookup token, not the one it drew"
    );
    assert_eq!(
        again[2].lookup_token, again[1].lookup_token,
        "an in-batch duplicate gets its first's token"
    );
    assert_eq!(again[1].dossier_code, "H22.06652-251126-0001");
    assert!(again[1].newly_allocated);
    assert_eq!(again[2].dossier_code, again[1].dossier_code);
    assert!(!again[2].newly_allocated);
    assert_eq!(store.count_codes().await.expect("count"), 2);
    assert_eq!(
        store.dossier_code("y").await.expect("lookup"),
        Some(("H22.06652-251126-0001".to_owned(), 1000))
    );
}

#[tokio::test]
async fn sqlite_sequences_are_per_agency_and_day() {
    let (s, _d) = sqlite().await;
    sequences_are_per_agency_and_day(s).await;
}

#[tokio::test]
async fn sqlite_redelivery_keeps_code_and_reception_time() {
    let (s, _d) = sqlite().await;
    redelivery_keeps_code_and_reception_time(s).await;
}

#[tokio::test]
async fn postgres_sequences_are_per_agency_and_day() {
    sequences_are_per_agency_and_day(postgres().await).await;
}

#[tokio::test]
async fn postgres_redelivery_keeps_code_and_reception_time() {
    redelivery_keeps_code_and_reception_time(postgres().await).await;
}

/// Replicas racing on overlapping dossiers (as during a rebalance) still give every
/// dossier exactly one code, and each agency's daily sequence has no hole or repeat.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_concurrent_replicas_allocate_unique_gapless_codes() {
    let store = postgres().await;
    let id = |w: usize, b: usize, i: usize| format!("d{}", (b * 20 + w * 5 + i) % 400);
    let expected: HashSet<String> = (0..4)
        .flat_map(|w| (0..25).flat_map(move |b| (0..10).map(move |i| id(w, b, i))))
        .collect();
    let mut tasks = Vec::new();
    for w in 0..4 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut retries = 0;
            for b in 0..25 {
                // Workers overlap: half of each batch is also in the next worker's batch.
                let batch: Vec<CodeRequest> = (0..10)
                    .map(|i| req(&id(w, b, i), "H22.06652", "251125", b as i64))
                    .collect();
                loop {
                    match store.allocate_codes(&batch).await {
                        Ok(_) => break,
                        Err(e) if e.is_retryable() => retries += 1,
                        Err(e) => panic!("non-retryable: {e}"),
                    }
                }
            }
            retries
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let Store::Postgres(pool) = &store else { unreachable!() };
    let rows: Vec<(String, i64)> = sqlx::query_as("SELECT dossier_id, seq FROM dossier_codes ORDER BY seq")
        .fetch_all(pool)
        .await
        .expect("rows");
    let ids: HashSet<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(ids.len(), rows.len(), "a dossier got two codes");
    let seqs: Vec<i64> = rows.iter().map(|r| r.1).collect();
    assert_eq!(
        seqs,
        (1..=rows.len() as i64).collect::<Vec<_>>(),
        "sequence has holes or repeats"
    );
    assert_eq!(ids, expected.iter().map(String::as_str).collect::<HashSet<_>>());
}

#[test]
fn codes_widen_past_9999_instead_of_wrapping() {
    assert_eq!(format_dossier_code("H22.06652", "251125", 7), "H22.06652-251125-0007");
    assert_eq!(
        format_dossier_code("H22.06652", "251125", 12345),
        "H22.06652-251125-12345"
    );
}

#[test]
fn passwords_are_redacted() {
    assert_eq!(redact("postgres://u:secret@h:5432/db"), "postgres://u:***@h:5432/db");
    assert_eq!(redact("sqlite://x.db"), "sqlite://x.db");
}

#[tokio::test]
async fn unsupported_urls_are_explained() {
    let e = Store::connect("mysql://x").await.unwrap_err().to_string();
    assert!(e.contains("use postgres://"), "{e}");
}

async fn parked_dossiers_are_claimed_once_until_their_lease_ends(store: Store) {
    store
        .park(Lot::Verify, "d1", b"payload", 1_000, 1_000, "down")
        .await
        .expect("park");
    store
        .park(Lot::Verify, "d1", b"other", 2_000, 2_000, "again")
        .await
        .expect("park is idempotent");
    let claimed = store.claim_due(Lot::Verify, 1_500, 10_000, 10).await.expect("claim");
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].payload, b"payload");
    assert_eq!(claimed[0].attempts, 1);
    assert!(
        store
            .claim_due(Lot::Verify, 5_000, 10_000, 10)
            .await
            .expect("claim")
            .is_empty(),
        "leased"
    );
    assert_eq!(
        store
            .claim_due(Lot::Verify, 11_500, 10_000, 10)
            .await
            .expect("claim")
            .len(),
        1,
        "lease over"
    );
    store
        .reschedule(Lot::Verify, "d1", 50_000, "still down")
        .await
        .expect("reschedule");
    assert!(store
        .claim_due(Lot::Verify, 40_000, 10_000, 10)
        .await
        .expect("claim")
        .is_empty());
    store.unpark(Lot::Verify, "d1").await.expect("unpark");
    assert_eq!(store.parked_count(Lot::Verify).await.expect("count"), 0);
}

#[tokio::test]
async fn sqlite_parked_dossiers_are_claimed_once_until_their_lease_ends() {
    let (s, _d) = sqlite().await;
    parked_dossiers_are_claimed_once_until_their_lease_ends(s).await;
}

#[tokio::test]
async fn postgres_parked_dossiers_are_claimed_once_until_their_lease_ends() {
    parked_dossiers_are_claimed_once_until_their_lease_ends(postgres().await).await;
}

async fn a_redelivered_failed_confirmation_counts_once(store: Store) {
    let bill = Bill {
        bill_reference: "HD-F1".into(),
        dossier_id: "d-f1".into(),
        amount_vnd: 50_000,
        status: "pending".into(),
        issued_at_ms: 1,
        expires_at_ms: 1_000,
        paid_at_ms: None,
        gateway_tx: None,
        failures: 0,
        verified_payload: vec![1, 2, 3],
    };
    store.issue_bill(&bill).await.expect("issue");
    for _ in 0..3 {
        let s = store.settle("HD-F1", false, 50_000, "TX-1", 10).await.expect("settle");
        assert!(matches!(s, Settlement::Failed(ref b) if b.failures == 1), "{s:?}");
    }
    let s = store.settle("HD-F1", false, 50_000, "TX-2", 20).await.expect("settle");
    assert!(matches!(s, Settlement::Failed(ref b) if b.failures == 2), "{s:?}");
    let failures: Vec<i32> = store.bills().await.expect("bills").iter().map(|b| b.failures).collect();
    assert_eq!(failures, [2]);
}

#[tokio::test]
async fn sqlite_a_redelivered_failed_confirmation_counts_once() {
    let (store, _dir) = sqlite().await;
    a_redelivered_failed_confirmation_counts_once(store).await;
}

#[tokio::test]
async fn postgres_a_redelivered_failed_confirmation_counts_once() {
    a_redelivered_failed_confirmation_counts_once(postgres().await).await;
}

async fn a_retry_s_decision_is_stored_once_and_comes_back_with_the_claim(store: Store) {
    store
        .park(Lot::Verify, "d-p1", b"accepted", 1, 1, "registry down")
        .await
        .expect("park");
    assert_eq!(
        store.decide(Lot::Verify, "d-p1", b"first").await.expect("decide"),
        b"first"
    );
    // A second decision (after a crash, the registry answering otherwise) does not replace it.
    assert_eq!(
        store.decide(Lot::Verify, "d-p1", b"second").await.expect("decide"),
        b"first"
    );
    let claimed = store.claim_due(Lot::Verify, 10, 1_000, 10).await.expect("claim");
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].decision.as_deref(), Some(&b"first"[..]));
}

#[tokio::test]
async fn sqlite_a_retry_s_decision_is_stored_once_and_comes_back_with_the_claim() {
    let (store, _dir) = sqlite().await;
    a_retry_s_decision_is_stored_once_and_comes_back_with_the_claim(store).await;
}

#[tokio::test]
async fn postgres_a_retry_s_decision_is_stored_once_and_comes_back_with_the_claim() {
    a_retry_s_decision_is_stored_once_and_comes_back_with_the_claim(postgres().await).await;
}

async fn a_reused_dossier_id_with_other_content_is_a_conflict(store: Store) {
    let first = store
        .allocate_codes(&[req("d-r", "H22.1", "251125", 1)])
        .await
        .expect("first");
    assert!(first[0].newly_allocated && !first[0].conflicting);
    // The same dossier again (a redelivery, a portal's retry): its code, no conflict.
    let again = store
        .allocate_codes(&[req("d-r", "H22.1", "251125", 2)])
        .await
        .expect("again");
    assert_eq!(
        (again[0].dossier_code.as_str(), again[0].conflicting),
        (first[0].dossier_code.as_str(), false)
    );
    // The id reused for another dossier, later or in the same batch: a conflict.
    let mut other = req("d-r", "H22.1", "251125", 3);
    other.content_digest = "something else".into();
    let reused = store.allocate_codes(&[other.clone()]).await.expect("reused");
    assert!(reused[0].conflicting && !reused[0].newly_allocated);
    let mut twice = req("d-s", "H22.1", "251125", 4);
    let batch = store
        .allocate_codes(&[twice.clone(), {
            twice.content_digest = "another".into();
            twice
        }])
        .await
        .expect("batch");
    assert_eq!((batch[0].conflicting, batch[1].conflicting), (false, true));
}

#[tokio::test]
async fn sqlite_a_reused_dossier_id_with_other_content_is_a_conflict() {
    let (store, _dir) = sqlite().await;
    a_reused_dossier_id_with_other_content_is_a_conflict(store).await;
}

#[tokio::test]
async fn postgres_a_reused_dossier_id_with_other_content_is_a_conflict() {
    a_reused_dossier_id_with_other_content_is_a_conflict(postgres().await).await;
}

/// The test server's TLS material (tests/run.sh makes it and starts PostgreSQL with
/// `ssl=on`), and the URL of a scratch database on it for host `localhost`.
async fn tls_url(ca: &str) -> String {
    let pki = std::env::var("MOTCUA_TEST_PKI").unwrap_or_else(|_| {
        panic!("MOTCUA_TEST_PKI is not set: run tests/run.sh, which starts PostgreSQL with TLS and a test CA")
    });
    let plain = testing::scratch_postgres_url().await;
    // The certificate names localhost; verify-full checks the name we connect to.
    let url = plain.replacen("@127.0.0.1:", "@localhost:", 1);
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}sslmode=verify-full&sslrootcert={pki}/{ca}")
}

fn wait_req(id: &str, dossier: &str, at: i64) -> WaitRequest {
    WaitRequest {
        request_event_id: id.to_owned(),
        dossier_id: dossier.to_owned(),
        dossier_code: Some(format!("code of {dossier}")),
        step: "verify".to_owned(),
        requested_at_ms: at,
        payload: b"accepted".to_vec(),
    }
}

async fn a_wait_is_answered_once_and_becomes_a_pause(store: Store) {
    let first = wait_req("rq-1", "d-w1", 100);
    store
        .await_supplements(std::slice::from_ref(&first))
        .await
        .expect("await");
    // A redelivered request is the same wait.
    store
        .await_supplements(std::slice::from_ref(&first))
        .await
        .expect("again");
    assert_eq!(store.waits_of("d-w1").await.expect("waits").len(), 1);
    let w = store.wait_for("d-w1", "sp-1").await.expect("read").expect("a wait");
    assert_eq!((w.state, w.request.clone()), (WaitState::Waiting, first));

    // Answered, asking again in the same step: the next wait is recorded with it.
    let next = wait_req("rq-2", "d-w1", 500);
    assert!(store
        .answer_wait("rq-1", "sp-1", 400, Some(&next))
        .await
        .expect("answer"));
    // The same supplement again: still ours, and no third wait.
    assert!(store
        .answer_wait("rq-1", "sp-1", 400, Some(&next))
        .await
        .expect("again"));
    // Another supplement for the answered wait: not ours.
    assert!(!store.answer_wait("rq-1", "sp-other", 450, None).await.expect("other"));
    let waits = store.waits_of("d-w1").await.expect("waits");
    assert_eq!(
        waits.iter().map(|w| w.state).collect::<Vec<_>>(),
        [WaitState::Answered, WaitState::Waiting]
    );
    // The redelivered supplement finds the wait it answered, a new one the waiting one.
    let found = store.wait_for("d-w1", "sp-1").await.expect("read").expect("wait");
    assert_eq!(found.request.request_event_id, "rq-1");
    let found = store.wait_for("d-w1", "sp-2").await.expect("read").expect("wait");
    assert_eq!(found.request.request_event_id, "rq-2");
    assert!(store.answer_wait("rq-2", "sp-2", 900, None).await.expect("answer"));

    let pauses = store.clock_pauses(&["d-w1", "d-none"]).await.expect("pauses");
    assert_eq!(
        pauses["d-w1"],
        [
            Pause {
                step: "verify".into(),
                from_ms: 100,
                to_ms: 400
            },
            Pause {
                step: "verify".into(),
                from_ms: 500,
                to_ms: 900
            },
        ]
    );
    assert!(!pauses.contains_key("d-none"));
    // One waiting wait per dossier: a new request supersedes an open one (the portal
    // resubmitted the dossier), which is no pause and answers nothing.
    store
        .await_supplements(&[wait_req("rq-3", "d-w1", 1_000)])
        .await
        .expect("third");
    store
        .await_supplements(&[wait_req("rq-4", "d-w1", 1_100)])
        .await
        .expect("fourth");
    let states: Vec<WaitState> = store
        .waits_of("d-w1")
        .await
        .expect("waits")
        .iter()
        .map(|w| w.state)
        .collect();
    assert_eq!(
        states,
        [
            WaitState::Answered,
            WaitState::Answered,
            WaitState::Superseded,
            WaitState::Waiting
        ]
    );
    assert!(!store
        .answer_wait("rq-3", "sp-3", 1_200, None)
        .await
        .expect("superseded"));
    assert_eq!(store.clock_pauses(&["d-w1"]).await.expect("pauses")["d-w1"].len(), 2);
    // A wait at reception is no pause: the clock had not started.
    let mut at_reception = wait_req("rq-i", "d-w2", 100);
    at_reception.step = "intake".into();
    store.await_supplements(&[at_reception]).await.expect("await");
    assert!(store.answer_wait("rq-i", "sp-i", 900, None).await.expect("answer"));
    assert!(!store
        .clock_pauses(&["d-w2"])
        .await
        .expect("pauses")
        .contains_key("d-w2"));
}

#[tokio::test]
async fn sqlite_a_wait_is_answered_once_and_becomes_a_pause() {
    let (store, _dir) = sqlite().await;
    a_wait_is_answered_once_and_becomes_a_pause(store).await;
}

#[tokio::test]
async fn postgres_a_wait_is_answered_once_and_becomes_a_pause() {
    a_wait_is_answered_once_and_becomes_a_pause(postgres().await).await;
}

async fn unanswered_waits_stop_once_and_the_first_end_wins(store: Store) {
    store
        .await_supplements(&[wait_req("rq-s1", "d-s1", 100), wait_req("rq-s2", "d-s2", 100)])
        .await
        .expect("await");
    let open = store.waits_without_stop(10).await.expect("open");
    assert_eq!(open.len(), 2);
    store.set_stop_at("rq-s1", 1_000).await.expect("stop at");
    store.set_stop_at("rq-s2", 5_000).await.expect("stop at");
    assert!(store.waits_without_stop(10).await.expect("open").is_empty());
    let stop_id = |w: &WaitRequest| format!("stop of {}", w.request_event_id);
    assert!(store
        .stop_due_waits(999, 10, stop_id)
        .await
        .expect("none due")
        .is_empty());
    let stopped = store.stop_due_waits(1_000, 10, stop_id).await.expect("due");
    assert_eq!(
        stopped
            .iter()
            .map(|w| w.request.request_event_id.as_str())
            .collect::<Vec<_>>(),
        ["rq-s1"]
    );
    assert_eq!(stopped[0].state, WaitState::Stopped);
    // Not announced yet: a crashed round finds it again, once announced no more.
    assert_eq!(store.stop_due_waits(1_000, 10, stop_id).await.expect("again").len(), 1);
    store.announce_stop("rq-s1").await.expect("announce");
    assert!(store
        .stop_due_waits(1_000, 10, stop_id)
        .await
        .expect("announced")
        .is_empty());
    let c = store.closure("d-s1").await.expect("read").expect("closed");
    assert_eq!(
        (c.kind, c.event_id.as_str(), c.closed_at_ms),
        (ClosureKind::Stopped, "stop of rq-s1", 1_000)
    );
    // A supplement after the stop answers nothing.
    assert!(!store.answer_wait("rq-s1", "sp-late", 1_200, None).await.expect("late"));

    // d-s2 is withdrawn before its stop: the wait ends, the decision later loses.
    let c = store
        .close_dossier("d-s2", ClosureKind::Withdrawn, "wd-2", 2_000)
        .await
        .expect("withdraw");
    assert_eq!(c.kind, ClosureKind::Withdrawn);
    assert_eq!(
        store.waits_of("d-s2").await.expect("waits")[0].state,
        WaitState::Withdrawn
    );
    let c = store
        .close_dossier("d-s2", ClosureKind::Decided, "dc-2", 3_000)
        .await
        .expect("decide");
    assert_eq!((c.kind, c.event_id.as_str()), (ClosureKind::Withdrawn, "wd-2"));
    assert!(store
        .stop_due_waits(9_000, 10, stop_id)
        .await
        .expect("nothing")
        .is_empty());
    let ended = store.ended_among(&["d-s1", "d-s2", "d-s3"]).await.expect("ended");
    assert_eq!(ended, HashSet::from(["d-s1".to_owned(), "d-s2".to_owned()]));
    // A decided dossier has ended too, but not before its decision: stages pass it on.
    store
        .close_dossier("d-s3", ClosureKind::Decided, "dc-3", 3_000)
        .await
        .expect("decide");
    assert!(!store.ended_among(&["d-s3"]).await.expect("ended").contains("d-s3"));
}

#[tokio::test]
async fn sqlite_unanswered_waits_stop_once_and_the_first_end_wins() {
    let (store, _dir) = sqlite().await;
    unanswered_waits_stop_once_and_the_first_end_wins(store).await;
}

#[tokio::test]
async fn postgres_unanswered_waits_stop_once_and_the_first_end_wins() {
    unanswered_waits_stop_once_and_the_first_end_wins(postgres().await).await;
}

/// A routed dossier keeps its routed message while open; a stop, a withdrawal or a
/// decision closes its assignment (the desk is free), clears the message, and a decision
/// ends a wait still open so no stop follows it.
async fn the_routed_message_is_kept_while_open_and_every_end_frees_the_desk(store: Store) {
    let assignment = |id: &str| Assignment {
        dossier_id: id.to_owned(),
        authority_code: "06652".into(),
        desk_code: "D1".into(),
        transferred: false,
        due_at_ms: 10_000,
        routed_at_ms: 50,
        calendar_version: None,
        clock_pauses: "[]".into(),
        routed: Some(format!("routed {id}").into_bytes()),
    };
    let stored = store
        .assign(&[assignment("d-b1"), assignment("d-b2"), assignment("d-b3")])
        .await
        .expect("assign");
    assert!(
        stored.iter().all(|(a, new)| *new && a.routed.is_none()),
        "not read back"
    );
    assert_eq!(
        store.routed_of("d-b1").await.expect("read"),
        Some(b"routed d-b1".to_vec())
    );
    assert_eq!(store.routed_of("nobody").await.expect("read"), None);
    store.resend_routed("d-b1", b"sent back").await.expect("resend");
    assert_eq!(
        store.routed_of("d-b1").await.expect("read"),
        Some(b"sent back".to_vec())
    );
    let open = |loads: Vec<(String, String, i64)>| loads.iter().map(|l| l.2).sum::<i64>();
    assert_eq!(open(store.desk_loads().await.expect("loads")), 3);

    // d-b1 waits for the citizen and no supplement comes: stopped, its desk freed.
    let mut w = wait_req("rq-b1", "d-b1", 100);
    w.step = "backoffice".into();
    store.await_supplements(&[w]).await.expect("await");
    store.set_stop_at("rq-b1", 1_000).await.expect("stop at");
    let stop_id = |w: &WaitRequest| format!("stop of {}", w.request_event_id);
    assert_eq!(store.stop_due_waits(1_000, 10, stop_id).await.expect("due").len(), 1);
    assert_eq!(store.routed_of("d-b1").await.expect("read"), None, "cleared");
    assert_eq!(open(store.desk_loads().await.expect("loads")), 2);

    // d-b2 is decided while the back office still waits: the wait ends, no stop comes.
    let mut w = wait_req("rq-b2", "d-b2", 100);
    w.step = "backoffice".into();
    store.await_supplements(&[w]).await.expect("await");
    store.set_stop_at("rq-b2", 2_000).await.expect("stop at");
    store
        .close_dossier("d-b2", ClosureKind::Decided, "dc-b2", 1_500)
        .await
        .expect("decide");
    assert_eq!(
        store.waits_of("d-b2").await.expect("waits")[0].state,
        WaitState::Superseded
    );
    store.announce_stop("rq-b1").await.expect("announce");
    assert!(store.stop_due_waits(9_000, 10, stop_id).await.expect("none").is_empty());
    // d-b3 is withdrawn.
    store
        .close_dossier("d-b3", ClosureKind::Withdrawn, "wd-b3", 1_600)
        .await
        .expect("withdraw");
    assert_eq!(open(store.desk_loads().await.expect("loads")), 0);
    for id in ["d-b2", "d-b3"] {
        assert_eq!(store.routed_of(id).await.expect("read"), None, "{id}");
    }
}

#[tokio::test]
async fn sqlite_the_routed_message_is_kept_while_open_and_every_end_frees_the_desk() {
    let (store, _dir) = sqlite().await;
    the_routed_message_is_kept_while_open_and_every_end_frees_the_desk(store).await;
}

#[tokio::test]
async fn postgres_the_routed_message_is_kept_while_open_and_every_end_frees_the_desk() {
    the_routed_message_is_kept_while_open_and_every_end_frees_the_desk(postgres().await).await;
}

async fn a_dead_letter_is_replayed_once_and_every_replay_is_recorded(store: Store) {
    let r = DlqReplay {
        dlq_partition: 0,
        dlq_offset: 7,
        origin_topic: "dossier.submitted".into(),
        origin_partition: 1,
        origin_offset: 42,
        reason_code: "BAD_MAGIC_BYTE".into(),
        replay_count: 1,
        outcome: "replayed".into(),
        replayed_by: "op-1".into(),
        why: "schema registered".into(),
        replayed_at_ms: 1_000,
        new_partition: None,
        new_offset: None,
    };
    assert_eq!(store.claim_dlq_replay(&r).await.expect("claim"), None);
    let second = DlqReplay {
        replayed_by: "op-2".into(),
        replayed_at_ms: 2_000,
        ..r.clone()
    };
    assert_eq!(
        store.claim_dlq_replay(&second).await.expect("claim"),
        Some(r.clone()),
        "the first stays"
    );
    store.landed_dlq_replay(0, 7, 1, 43).await.expect("landed");
    let all = store.dlq_replays(10).await.expect("audit");
    assert_eq!(
        all,
        [DlqReplay {
            new_partition: Some(1),
            new_offset: Some(43),
            ..r
        }]
    );
}

#[tokio::test]
async fn sqlite_a_dead_letter_is_replayed_once_and_every_replay_is_recorded() {
    let (store, _dir) = sqlite().await;
    a_dead_letter_is_replayed_once_and_every_replay_is_recorded(store).await;
}

#[tokio::test]
async fn postgres_a_dead_letter_is_replayed_once_and_every_replay_is_recorded() {
    a_dead_letter_is_replayed_once_and_every_replay_is_recorded(postgres().await).await;
}

async fn parked_and_escalated_dossiers_are_listed_and_verified_by_hand_once(store: Store) {
    store
        .park(
            Lot::Verify,
            "d-p1",
            b"accepted p1",
            1_000,
            2_000,
            "population registry: 503",
        )
        .await
        .expect("park");
    store
        .park(
            Lot::Verify,
            "d-p0",
            b"accepted p0",
            500,
            2_000,
            "land registry: timeout",
        )
        .await
        .expect("park");
    store
        .park(
            Lot::Result,
            "d-r1",
            b"decided r1",
            700,
            2_000,
            "wallet unavailable: HTTP 503",
        )
        .await
        .expect("park");
    let parked = store.parked(10).await.expect("parked");
    assert_eq!(
        parked
            .iter()
            .map(|p| (p.dossier_id.as_str(), p.lot, p.last_error.as_str()))
            .collect::<Vec<_>>(),
        [
            ("d-p0", Lot::Verify, "land registry: timeout"),
            ("d-r1", Lot::Result, "wallet unavailable: HTTP 503"),
            ("d-p1", Lot::Verify, "population registry: 503")
        ],
        "every lot, oldest first"
    );
    assert_eq!(store.parked(2).await.expect("parked").len(), 2, "limited");
    assert_eq!(store.parked_total().await.expect("total"), 3);
    assert!(store.mark_escalated(Lot::Result, "d-r1", 9_000).await.expect("mark"));
    assert!(
        !store.mark_escalated(Lot::Result, "d-r1", 9_500).await.expect("mark"),
        "announced once"
    );
    assert!(
        !store.mark_escalated(Lot::Result, "d-p0", 9_500).await.expect("mark"),
        "lots are apart"
    );
    let r1 = store.claim_due(Lot::Result, 5_000, 1_000, 10).await.expect("claim");
    assert_eq!(
        r1.iter()
            .map(|p| (p.dossier_id.as_str(), p.escalated_at_ms))
            .collect::<Vec<_>>(),
        [("d-r1", Some(9_000))],
        "a lot's claim takes its own rows only"
    );
    store.unpark(Lot::Result, "d-r1").await.expect("unpark");
    let delivery = |key: &str, receipt: &str, at: i64| WalletDeliveryRecord {
        idempotency_key: key.into(),
        dossier_id: "d-r1".into(),
        dossier_code: "H22.1-261206-0001".into(),
        document_ref: "06685-KQ-H22.1-261206-0001".into(),
        document_sha256: "ab".repeat(32),
        receipt_id: receipt.into(),
        delivered_by: "result/r-0".into(),
        delivered_at_ms: at,
        duplicate_ack: false,
    };
    assert_eq!(
        store
            .record_wallet_deliveries(&[delivery("k1", "EW-1", 10)])
            .await
            .expect("record"),
        [(10, "EW-1".to_owned())]
    );
    assert_eq!(
        store
            .record_wallet_deliveries(&[delivery("k1", "EW-other", 20), delivery("k2", "EW-2", 30)])
            .await
            .expect("record"),
        [(10, "EW-1".to_owned()), (30, "EW-2".to_owned())],
        "a key delivered again answers its first acknowledgement's time and receipt"
    );
    let recorded = store.wallet_deliveries(10).await.expect("deliveries");
    assert_eq!(
        recorded
            .iter()
            .map(|d| (d.idempotency_key.as_str(), d.receipt_id.as_str()))
            .collect::<Vec<_>>(),
        [("k1", "EW-1"), ("k2", "EW-2")],
        "a key is recorded once, with its first receipt"
    );
    let e = |id: &str, code: &str, at: i64| Escalation {
        dossier_id: id.into(),
        dossier_code: code.into(),
        payload: b"accepted".to_vec(),
        escalated_at_ms: at,
        reason: "registry down".into(),
        verified_by: None,
        verified_at_ms: None,
        note: None,
    };
    store
        .escalate(&[
            e("d-e1", "H22.1-251125-0001", 3_000),
            e("d-e2", "H22.1-251125-0002", 2_000),
        ])
        .await
        .expect("escalate");
    // A redelivered escalation keeps the first record.
    store
        .escalate(&[e("d-e1", "H22.1-251125-0001", 9_000)])
        .await
        .expect("again");
    let open = store.escalated(10).await.expect("escalated");
    assert_eq!(
        open.iter()
            .map(|x| (x.dossier_id.as_str(), x.escalated_at_ms))
            .collect::<Vec<_>>(),
        [("d-e2", 2_000), ("d-e1", 3_000)]
    );
    let first = store
        .verified_by_hand("d-e1", "officer-7", "ID card seen", 4_000)
        .await
        .expect("verify");
    assert_eq!(
        (first.verified_by.as_deref(), first.verified_at_ms),
        (Some("officer-7"), Some(4_000))
    );
    let second = store
        .verified_by_hand("d-e1", "officer-8", "again", 5_000)
        .await
        .expect("verify");
    assert_eq!(
        second.verified_by.as_deref(),
        Some("officer-7"),
        "the first officer stays"
    );
    assert_eq!(store.escalated(10).await.expect("escalated").len(), 1);
    assert_eq!(
        store
            .escalation("H22.1-251125-0001")
            .await
            .expect("read")
            .and_then(|x| x.note),
        Some("ID card seen".into())
    );
}

#[tokio::test]
async fn sqlite_parked_and_escalated_dossiers_are_listed_and_verified_by_hand_once() {
    let (store, _dir) = sqlite().await;
    parked_and_escalated_dossiers_are_listed_and_verified_by_hand_once(store).await;
}

#[tokio::test]
async fn postgres_parked_and_escalated_dossiers_are_listed_and_verified_by_hand_once() {
    parked_and_escalated_dossiers_are_listed_and_verified_by_hand_once(postgres().await).await;
}

#[tokio::test]
async fn postgres_over_tls_verifies_the_server_certificate_and_its_name() {
    let store = Store::connect(&tls_url("ca.pem").await)
        .await
        .expect("TLS with verify-full");
    let Store::Postgres(pool) = &store else {
        panic!("a PostgreSQL store")
    };
    let encrypted: bool = sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(pool)
        .await
        .expect("pg_stat_ssl");
    assert!(encrypted, "the session is encrypted");

    // A CA that did not sign the server's certificate: refused, not downgraded.
    let Err(e) = Store::connect(&tls_url("other-ca.pem").await).await else {
        panic!("a server certificate from another CA was accepted")
    };
    let chain = format!("{e}: {:?}", std::error::Error::source(&e));
    assert!(chain.to_lowercase().contains("certificate"), "{chain}");
}

fn pending_bill(dossier: &str, amount: i64) -> Bill {
    Bill {
        bill_reference: format!("HD-{dossier}"),
        dossier_id: dossier.into(),
        amount_vnd: amount,
        status: "pending".into(),
        issued_at_ms: 1,
        expires_at_ms: 1_000,
        paid_at_ms: None,
        gateway_tx: None,
        failures: 0,
        verified_payload: dossier.as_bytes().to_vec(),
    }
}

/// A batch of bills in one call: each dossier keeps its first bill — one billed before
/// the batch, and one asked twice within it — and the answers come in the order asked.
async fn a_batch_of_bills_keeps_each_dossiers_first_bill(store: Store) {
    store.issue_bill(&pending_bill("old", 10)).await.expect("issue");
    let asked = [
        pending_bill("a", 20),
        pending_bill("old", 99),
        pending_bill("b", 30),
        pending_bill("a", 77),
    ];
    let got = store.issue_bills(&asked).await.expect("issue");
    let amounts: Vec<(&str, i64)> = got
        .iter()
        .flatten()
        .map(|b| (b.dossier_id.as_str(), b.amount_vnd))
        .collect();
    assert_eq!(amounts, [("a", 20), ("old", 10), ("b", 30), ("a", 20)]);
    assert_eq!(store.bills().await.expect("bills").len(), 3);
    assert!(store.issue_bills(&[]).await.expect("nothing").is_empty());
}

#[tokio::test]
async fn sqlite_a_batch_of_bills_keeps_each_dossiers_first_bill() {
    let (store, _dir) = sqlite().await;
    a_batch_of_bills_keeps_each_dossiers_first_bill(store).await;
}

#[tokio::test]
async fn postgres_a_batch_of_bills_keeps_each_dossiers_first_bill() {
    a_batch_of_bills_keeps_each_dossiers_first_bill(postgres().await).await;
}

/// A batch larger than one multi-row statement (SQLite splits it in chunks): every
/// dossier gets its own code, each agency-day numbered 1…n without gaps, and asking again
/// gives the same codes.
async fn a_large_batch_is_numbered_without_gaps(store: Store) {
    let requests: Vec<CodeRequest> = (0..5_000)
        .map(|i| req(&format!("d{i}"), ["H22.06652", "H22.06658"][i % 2], "251125", i as i64))
        .collect();
    let got = store.allocate_codes(&requests).await.expect("allocate");
    assert_eq!(got.len(), 5_000);
    for agency in ["H22.06652", "H22.06658"] {
        let mut seqs: Vec<u32> = got
            .iter()
            .filter(|a| a.dossier_code.starts_with(agency))
            .map(|a| {
                a.dossier_code
                    .rsplit('-')
                    .next()
                    .and_then(|s| s.parse().ok())
                    .expect("seq")
            })
            .collect();
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=2_500).collect::<Vec<u32>>(), "{agency}");
    }
    let again = store.allocate_codes(&requests).await.expect("allocate again");
    assert!(again
        .iter()
        .zip(&got)
        .all(|(a, b)| a.dossier_code == b.dossier_code && !a.newly_allocated));
    let ended = store
        .ended_among(&requests.iter().map(|r| r.dossier_id.as_str()).collect::<Vec<_>>())
        .await
        .expect("ended");
    assert!(ended.is_empty());
}

#[tokio::test]
async fn sqlite_a_large_batch_is_numbered_without_gaps() {
    let (store, _dir) = sqlite().await;
    a_large_batch_is_numbered_without_gaps(store).await;
}

#[tokio::test]
async fn postgres_a_large_batch_is_numbered_without_gaps() {
    a_large_batch_is_numbered_without_gaps(postgres().await).await;
}

/// Assignments in one call: a dossier routed before keeps its first assignment (not
/// new), one asked twice in the batch is new once, and the answers come in the order
/// asked.
async fn a_batch_of_assignments_keeps_each_dossiers_first(store: Store) {
    let assignment = |id: &str, desk: &str| Assignment {
        dossier_id: id.to_owned(),
        authority_code: "06652".into(),
        desk_code: desk.into(),
        transferred: false,
        due_at_ms: 10_000,
        routed_at_ms: 50,
        calendar_version: Some("sha256:x".into()),
        clock_pauses: "[]".into(),
        routed: None,
    };
    store.assign(&[assignment("old", "D1")]).await.expect("assign");
    let got = store
        .assign(&[
            assignment("a", "D2"),
            assignment("old", "D9"),
            assignment("a", "D7"),
            assignment("b", "D3"),
        ])
        .await
        .expect("assign");
    let seen: Vec<(&str, &str, bool)> = got
        .iter()
        .map(|(a, new)| (a.dossier_id.as_str(), a.desk_code.as_str(), *new))
        .collect();
    assert_eq!(
        seen,
        [
            ("a", "D2", true),
            ("old", "D1", false),
            ("a", "D2", false),
            ("b", "D3", true)
        ]
    );
    assert_eq!(got[0].0.calendar_version.as_deref(), Some("sha256:x"));
    assert!(store.assign(&[]).await.expect("nothing").is_empty());
}

#[tokio::test]
async fn sqlite_a_batch_of_assignments_keeps_each_dossiers_first() {
    let (store, _dir) = sqlite().await;
    a_batch_of_assignments_keeps_each_dossiers_first(store).await;
}

#[tokio::test]
async fn postgres_a_batch_of_assignments_keeps_each_dossiers_first() {
    a_batch_of_assignments_keeps_each_dossiers_first(postgres().await).await;
}

/// Replicas of a stage starting together on one fresh SQLite file: every one of them
/// opens it (before, all but one could fail with "table … already exists", as the
/// cost harness's four replicas did).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_replicas_opening_a_fresh_file_together_all_migrate() {
    for round in 0..5 {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join(format!("r{round}.db")).display());
        let mut opening = tokio::task::JoinSet::new();
        for _ in 0..4 {
            let url = url.clone();
            opening.spawn(async move { Store::connect(&url).await });
        }
        while let Some(opened) = opening.join_next().await {
            let store = opened.expect("task").expect("every replica opens the store");
            assert_eq!(store.count_codes().await.expect("count"), 0);
        }
    }
}

/// Confirmations settled together, in order, each against its bill as the ones before
/// it left it: a failed attempt counted once however often it comes, the payment that
/// follows it settles the bill, a second payment is a duplicate, its redelivery is the
/// same payment again, an unknown bill is unknown.
async fn confirmations_settle_together_in_order(store: Store) {
    store.issue_bill(&pending_bill("d1", 50_000)).await.expect("issue");
    let c = |tx: &'static str, ok: bool, reference: &'static str| Confirmation {
        bill_reference: reference,
        succeeded: ok,
        amount_vnd: 50_000,
        gateway_tx: tx,
        at_ms: 7,
    };
    let got = store
        .settle_all(&[
            c("TX-1", false, "HD-d1"),
            c("TX-1", false, "HD-d1"),
            c("TX-2", true, "HD-d1"),
            c("TX-3", true, "HD-d1"),
            c("TX-2", true, "HD-d1"),
            c("TX-9", true, "HD-nobody"),
        ])
        .await
        .expect("settle");
    let kinds: Vec<String> = got
        .iter()
        .map(|s| match s {
            Settlement::Unknown => "unknown".to_owned(),
            Settlement::Paid(b) => format!("paid by {}", b.gateway_tx.as_deref().unwrap_or("?")),
            Settlement::AlreadyPaid(_) => "already paid".to_owned(),
            Settlement::Failed(b) => format!("failed {}", b.failures),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "failed 1",
            "failed 1",
            "paid by TX-2",
            "already paid",
            "paid by TX-2",
            "unknown"
        ]
    );
    let stored = store.bills().await.expect("bills");
    assert_eq!((stored[0].status.as_str(), stored[0].failures), ("paid", 1));
}

#[tokio::test]
async fn sqlite_confirmations_settle_together_in_order() {
    let (store, _dir) = sqlite().await;
    confirmations_settle_together_in_order(store).await;
}

#[tokio::test]
async fn postgres_confirmations_settle_together_in_order() {
    confirmations_settle_together_in_order(postgres().await).await;
}

/// The first decision on an input is the one recorded; deciding it again returns it.
async fn the_first_decision_on_an_input_is_kept(store: Store) {
    let offer = |id: &'static str, events: &[u8], at| Decision {
        input_id: id,
        dossier_id: "d",
        events: events.to_vec(),
        decided_at_ms: at,
    };
    let first = store
        .decide_first("verify", &[offer("in-1", b"first", 1), offer("in-2", b"other", 2)])
        .await
        .expect("decide");
    assert_eq!(first, [b"first".to_vec(), b"other".to_vec()]);
    let again = store
        .decide_first("verify", &[offer("in-1", b"second", 3)])
        .await
        .expect("decide again");
    assert_eq!(again, [b"first".to_vec()], "the first decision wins");
    // Another stage's decision on the same input is its own.
    let route = store
        .decide_first("route", &[offer("in-1", b"route's", 4)])
        .await
        .expect("route");
    assert_eq!(route, [b"route's".to_vec()]);
    let recorded = store.decisions("verify", &["in-1", "in-3"]).await.expect("read");
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded["in-1"], b"first".to_vec());
}

#[tokio::test]
async fn sqlite_the_first_decision_on_an_input_is_kept() {
    the_first_decision_on_an_input_is_kept(sqlite().await.0).await;
}

#[tokio::test]
async fn postgres_the_first_decision_on_an_input_is_kept() {
    the_first_decision_on_an_input_is_kept(postgres().await).await;
}

fn bill_due(reference: &str, dossier_id: &str, expires_at_ms: i64) -> Bill {
    Bill {
        bill_reference: reference.into(),
        dossier_id: dossier_id.into(),
        amount_vnd: 10,
        status: "pending".into(),
        issued_at_ms: 0,
        expires_at_ms,
        paid_at_ms: None,
        gateway_tx: None,
        failures: 0,
        verified_payload: vec![1],
    }
}

/// Expiry is recorded with the bill's new state: a bill paid first stays paid and is not
/// announced; an expired one is announced until marked; a cancelled one never.
async fn expired_bills_are_recorded_then_announced_once(store: Store) {
    store
        .issue_bills(&[
            bill_due("B1", "d1", 100),
            bill_due("B2", "d2", 100),
            bill_due("B3", "d3", 100),
            bill_due("B4", "d4", 900),
        ])
        .await
        .expect("issue");
    store.settle("B2", true, 10, "tx", 50).await.expect("paid first");
    store.mark_expired("B3").await.expect("cancelled by a withdrawal");
    assert_eq!(store.expire_due_bills(200).await.expect("expire"), 1);
    let due = store.unannounced_expiries(10).await.expect("due");
    assert_eq!(
        due.iter().map(|b| b.bill_reference.as_str()).collect::<Vec<_>>(),
        ["B1"]
    );
    assert_eq!(due[0].status, "expired");
    assert_eq!(store.expire_due_bills(300).await.expect("expire"), 0, "expired once");
    assert_eq!(
        store.unannounced_expiries(10).await.expect("due"),
        due,
        "until announced"
    );
    store.expiry_announced("B1").await.expect("announced");
    assert!(store.unannounced_expiries(10).await.expect("due").is_empty());
    // Paid after it expired: the money was taken, so the bill is honoured.
    assert!(matches!(
        store.settle("B1", true, 10, "tx-late", 400).await.expect("late"),
        Settlement::Paid(_)
    ));
}

#[tokio::test]
async fn sqlite_expired_bills_are_recorded_then_announced_once() {
    expired_bills_are_recorded_then_announced_once(sqlite().await.0).await;
}

#[tokio::test]
async fn postgres_expired_bills_are_recorded_then_announced_once() {
    expired_bills_are_recorded_then_announced_once(postgres().await).await;
}

/// Billing and a dossier's end exclude each other: a dossier withdrawn (or stopped) before
/// its bill is stored gets none, whatever payment read before (the race: payment reads
/// "not ended", intake closes the dossier and finds no bill, payment stores the bill).
async fn a_dossier_that_ended_is_not_billed(store: Store) {
    store
        .close_dossier("gone", ClosureKind::Withdrawn, "w-gone", 5)
        .await
        .expect("withdrawn");
    store
        .close_dossier("done", ClosureKind::Decided, "dc-done", 5)
        .await
        .expect("decided");
    let got = store
        .issue_bills(&[
            pending_bill("gone", 10),
            pending_bill("live", 20),
            pending_bill("done", 30),
        ])
        .await
        .expect("issue");
    let billed: Vec<Option<&str>> = got.iter().map(|b| b.as_ref().map(|b| b.dossier_id.as_str())).collect();
    assert_eq!(billed, [None, Some("live"), Some("done")]);
    assert_eq!(store.bill_of_dossier("gone").await.expect("read"), None);
}

#[tokio::test]
async fn sqlite_a_dossier_that_ended_is_not_billed() {
    let (store, _dir) = sqlite().await;
    a_dossier_that_ended_is_not_billed(store).await;
}

#[tokio::test]
async fn postgres_a_dossier_that_ended_is_not_billed() {
    a_dossier_that_ended_is_not_billed(postgres().await).await;
}

/// A wait whose dossier ended some other way (route found no authority, a bill expired)
/// is not stopped and announced: the dossier has its one end already.
async fn a_wait_of_a_dossier_that_ended_otherwise_is_not_announced(store: Store) {
    store
        .await_supplements(&[WaitRequest {
            request_event_id: "rq-e".into(),
            dossier_id: "d-e".into(),
            dossier_code: None,
            step: "backoffice".into(),
            requested_at_ms: 1,
            payload: vec![1],
        }])
        .await
        .expect("wait");
    store.set_stop_at("rq-e", 100).await.expect("stop at");
    store
        .close_dossier("d-e", ClosureKind::Stopped, "route stop", 50)
        .await
        .expect("stopped by route");
    let stopped = store
        .stop_due_waits(200, 10, |r| format!("stop of {}", r.request_event_id))
        .await
        .expect("stop");
    assert!(stopped.is_empty(), "{stopped:?}");
    let closure = store.closure("d-e").await.expect("read").expect("closed");
    assert_eq!(closure.event_id, "route stop");
    assert_eq!(
        store.waits_of("d-e").await.expect("waits")[0].state,
        WaitState::Superseded
    );
}

#[tokio::test]
async fn sqlite_a_wait_of_a_dossier_that_ended_otherwise_is_not_announced() {
    let (store, _dir) = sqlite().await;
    a_wait_of_a_dossier_that_ended_otherwise_is_not_announced(store).await;
}

#[tokio::test]
async fn postgres_a_wait_of_a_dossier_that_ended_otherwise_is_not_announced() {
    a_wait_of_a_dossier_that_ended_otherwise_is_not_announced(postgres().await).await;
}

/// A step that read "not ended", then asks for papers after the dossier was withdrawn:
/// no wait opens (a citizen's answer would resume a withdrawn dossier), and the step is
/// told, so it announces nothing after the end.
async fn a_dossier_that_ended_gets_no_wait(store: Store) {
    let ask = |id: &str, dossier: &str| WaitRequest {
        request_event_id: id.into(),
        dossier_id: dossier.into(),
        dossier_code: Some("H22-1".into()),
        step: "verify".into(),
        requested_at_ms: 10,
        payload: vec![1],
    };
    store
        .close_dossier("d-w", ClosureKind::Withdrawn, "wd", 5)
        .await
        .expect("withdrawn");
    let recorded = store
        .await_supplements(&[ask("rq-w", "d-w"), ask("rq-l", "d-l")])
        .await
        .expect("asked");
    assert_eq!(recorded, HashSet::from(["rq-l".to_owned()]));
    assert!(store.waits_of("d-w").await.expect("waits").is_empty());
    // Asked again (a redelivery): still recorded, still one wait.
    let again = store.await_supplements(&[ask("rq-l", "d-l")]).await.expect("again");
    assert_eq!(again, recorded);
    assert_eq!(store.waits_of("d-l").await.expect("waits").len(), 1);
}

#[tokio::test]
async fn sqlite_a_dossier_that_ended_gets_no_wait() {
    let (store, _dir) = sqlite().await;
    a_dossier_that_ended_gets_no_wait(store).await;
}

#[tokio::test]
async fn postgres_a_dossier_that_ended_gets_no_wait() {
    a_dossier_that_ended_gets_no_wait(postgres().await).await;
}

/// Returns once a session of this database waits for a lock another holds: the
/// interleaving a race test sets up is in place.
async fn until_a_session_waits_for_a_lock(pool: &PgPool) {
    loop {
        let blocked: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()",
        )
        .fetch_one(pool)
        .await
        .expect("activity");
        if blocked > 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Intake's timer stops a wait while its consume loop answers it (a citizen's supplement
/// on the day the wait ran out): one of the two wins, never both. Interleaved: the answer
/// holds the wait's row while the stop reads it as waiting, then commits.
#[tokio::test]
async fn postgres_a_wait_answered_while_the_timer_stops_it_is_not_stopped_too() {
    let url = testing::scratch_postgres_url().await;
    let store = Store::connect(&url).await.expect("store");
    store
        .await_supplements(&[WaitRequest {
            request_event_id: "rq-race".into(),
            dossier_id: "d-race".into(),
            dossier_code: Some("H22-9".into()),
            step: "backoffice".into(),
            requested_at_ms: 1,
            payload: vec![1],
        }])
        .await
        .expect("wait");
    store.set_stop_at("rq-race", 100).await.expect("stop at");
    let pool = PgPool::connect(&url).await.expect("pool");
    let mut answer = pool.begin().await.expect("begin");
    sqlx::query(
        "UPDATE supplement_waits SET state = 'answered', answer_event_id = 'sp', answered_at_ms = 50
         WHERE request_event_id = 'rq-race' AND state = 'waiting'",
    )
    .execute(&mut *answer)
    .await
    .expect("answer, not committed yet");
    let timer = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .stop_due_waits(200, 10, |r| format!("stop {}", r.request_event_id))
                .await
        })
    };
    // The stop has read the wait as waiting and waits for its row.
    until_a_session_waits_for_a_lock(&pool).await;
    answer.commit().await.expect("answered");
    let stopped = timer.await.expect("timer").expect("stop");
    assert!(stopped.is_empty(), "stopped an answered wait: {stopped:?}");
    assert_eq!(store.closure("d-race").await.expect("closure"), None);
    assert_eq!(
        store.waits_of("d-race").await.expect("waits")[0].state,
        WaitState::Answered
    );
}

/// Verify decided a status of an open dossier and is about to produce it; a withdrawal
/// (or intake's timer) must not end the dossier before the status is acknowledged, or it
/// would reach dossier.status after the end. Interleaved: owed, ending refused, announced,
/// ended; a status decided after the end is then reported ended, not owed.
async fn a_dossier_does_not_end_while_a_status_of_it_is_owed(store: Store) {
    let owed = [Owed {
        event_id: "st-1",
        dossier_id: "d-o",
    }];
    assert!(store.owe("verify", &owed, true).await.expect("owe").is_empty());
    let refused = store.close_dossier("d-o", ClosureKind::Withdrawn, "wd-o", 5).await;
    assert!(
        matches!(&refused, Err(Error::AnnouncementsOwed { dossier_id }) if dossier_id == "d-o"),
        "{refused:?}"
    );
    assert!(refused.unwrap_err().is_retryable());
    // Intake's timer leaves the dossier's due wait to a later round.
    store
        .await_supplements(&[WaitRequest {
            request_event_id: "rq-o".into(),
            dossier_id: "d-o".into(),
            dossier_code: None,
            step: "intake".into(),
            requested_at_ms: 1,
            payload: vec![1],
        }])
        .await
        .expect("wait");
    store.set_stop_at("rq-o", 100).await.expect("stop at");
    let stopped = store
        .stop_due_waits(200, 10, |r| format!("stop of {}", r.request_event_id))
        .await
        .expect("stop round");
    assert!(stopped.is_empty(), "{stopped:?}");
    assert_eq!(store.closure("d-o").await.expect("read"), None);

    store.announced(&["st-1".to_owned()]).await.expect("announced");
    let closure = store
        .close_dossier("d-o", ClosureKind::Withdrawn, "wd-o", 5)
        .await
        .expect("withdrawn once nothing is owed");
    assert_eq!(closure.event_id, "wd-o");
    let late = [Owed {
        event_id: "st-2",
        dossier_id: "d-o",
    }];
    assert_eq!(
        store.owe("route", &late, true).await.expect("owe"),
        HashSet::from(["d-o".to_owned()])
    );
    // The withdrawal redelivered finds its closure, whatever is owed meanwhile.
    store
        .owe(
            "verify",
            &[Owed {
                event_id: "st-3",
                dossier_id: "d-o",
            }],
            true,
        )
        .await
        .expect("owe");
    let again = store
        .close_dossier("d-o", ClosureKind::Withdrawn, "wd-o", 5)
        .await
        .expect("again");
    assert_eq!(again, closure);
}

#[tokio::test]
async fn sqlite_a_dossier_does_not_end_while_a_status_of_it_is_owed() {
    let (store, _dir) = sqlite().await;
    a_dossier_does_not_end_while_a_status_of_it_is_owed(store).await;
}

#[tokio::test]
async fn postgres_a_dossier_does_not_end_while_a_status_of_it_is_owed() {
    a_dossier_does_not_end_while_a_status_of_it_is_owed(postgres().await).await;
}

/// A worker killed between recording a status as owed and producing it leaves its row;
/// a stage that stays down must not hold its dossiers' ends back for longer than
/// OWED_HOLD_MS.
async fn a_status_owed_too_long_holds_no_end_back(store: Store) {
    let owed = [Owed {
        event_id: "st-h",
        dossier_id: "d-h",
    }];
    store.owe("verify", &owed, true).await.expect("owe");
    let age = "UPDATE announcements_owed SET owed_since_ms = owed_since_ms - $1";
    match &store {
        Store::Postgres(p) => sqlx::query(age).bind(OWED_HOLD_MS + 1).execute(p).await.map(|_| ()),
        Store::Sqlite(p) => sqlx::query(age).bind(OWED_HOLD_MS + 1).execute(p).await.map(|_| ()),
    }
    .expect("aged");
    let closure = store
        .close_dossier("d-h", ClosureKind::Stopped, "stop-h", 5)
        .await
        .expect("stopped");
    assert_eq!(closure.event_id, "stop-h");
}

/// A decision is every stage's last word but result's, which returns the result after it
/// (and announces its escalations meanwhile): track's warning of a decided dossier is
/// left out, result's status is owed (and holds no other end back: it was decided).
async fn a_decision_ends_the_dossier_for_every_stage_but_result(store: Store) {
    store
        .close_dossier("d-d", ClosureKind::Decided, "dc-d", 5)
        .await
        .expect("decided");
    let warning = [Owed {
        event_id: "warn-d",
        dossier_id: "d-d",
    }];
    assert_eq!(
        store.owe("track", &warning, true).await.expect("owe"),
        HashSet::from(["d-d".to_owned()])
    );
    let escalation = [Owed {
        event_id: "esc-d",
        dossier_id: "d-d",
    }];
    assert!(store.owe("result", &escalation, false).await.expect("owe").is_empty());
}

#[tokio::test]
async fn sqlite_a_decision_ends_the_dossier_for_every_stage_but_result() {
    let (store, _dir) = sqlite().await;
    a_decision_ends_the_dossier_for_every_stage_but_result(store).await;
}

#[tokio::test]
async fn postgres_a_decision_ends_the_dossier_for_every_stage_but_result() {
    a_decision_ends_the_dossier_for_every_stage_but_result(postgres().await).await;
}

#[tokio::test]
async fn sqlite_a_status_owed_too_long_holds_no_end_back() {
    let (store, _dir) = sqlite().await;
    a_status_owed_too_long_holds_no_end_back(store).await;
}

#[tokio::test]
async fn postgres_a_status_owed_too_long_holds_no_end_back() {
    a_status_owed_too_long_holds_no_end_back(postgres().await).await;
}

/// A stage records its status as owed while another is closing the dossier (it holds the
/// dossier's lock and has written its closure, not committed yet): the status waits for
/// the closure and learns the dossier ended, instead of reading "open" and being produced
/// after the end. Interleaved on PostgreSQL's locks.
#[tokio::test]
async fn postgres_a_status_owed_while_the_dossier_closes_learns_it_ended() {
    let url = testing::scratch_postgres_url().await;
    let store = Store::connect(&url).await.expect("store");
    let pool = PgPool::connect(&url).await.expect("pool");
    let mut closing = pool.begin().await.expect("begin");
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('d-c', 0))")
        .execute(&mut *closing)
        .await
        .expect("lock");
    sqlx::query("INSERT INTO dossier_closures (dossier_id, kind, event_id, closed_at_ms) VALUES ('d-c', 'withdrawn', 'wd-c', 5)")
        .execute(&mut *closing)
        .await
        .expect("closure, not committed yet");
    let owing = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .owe(
                    "route",
                    &[Owed {
                        event_id: "st-c",
                        dossier_id: "d-c",
                    }],
                    true,
                )
                .await
        })
    };
    until_a_session_waits_for_a_lock(&pool).await;
    closing.commit().await.expect("closed");
    let ended = owing.await.expect("task").expect("owe");
    assert_eq!(ended, HashSet::from(["d-c".to_owned()]));
}
