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
    store.park("d1", b"payload", 1_000, 1_000, "down").await.expect("park");
    store
        .park("d1", b"other", 2_000, 2_000, "again")
        .await
        .expect("park is idempotent");
    let claimed = store.claim_due(1_500, 10_000, 10).await.expect("claim");
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].payload, b"payload");
    assert_eq!(claimed[0].attempts, 1);
    assert!(
        store.claim_due(5_000, 10_000, 10).await.expect("claim").is_empty(),
        "leased"
    );
    assert_eq!(
        store.claim_due(11_500, 10_000, 10).await.expect("claim").len(),
        1,
        "lease over"
    );
    store.reschedule("d1", 50_000, "still down").await.expect("reschedule");
    assert!(store.claim_due(40_000, 10_000, 10).await.expect("claim").is_empty());
    store.unpark("d1").await.expect("unpark");
    assert_eq!(store.parked_count().await.expect("count"), 0);
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
        .park("d-p1", b"accepted", 1, 1, "registry down")
        .await
        .expect("park");
    assert_eq!(store.decide("d-p1", b"first").await.expect("decide"), b"first");
    // A second decision (after a crash, the registry answering otherwise) does not replace it.
    assert_eq!(store.decide("d-p1", b"second").await.expect("decide"), b"first");
    let claimed = store.claim_due(10, 1_000, 10).await.expect("claim");
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
