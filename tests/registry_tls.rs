//! The registry gateway over HTTPS, for real: the registry simulator behind stunnel (a
//! TLS terminator that wants a client certificate), the gateway's bearer token, a CA the
//! test makes. Lookups work with the right CA, certificate and token; without any of them
//! they fail, and nothing is sent in the clear.

mod support;

use std::sync::Arc;

use motcua_reference::AdminUnits;
use motcua_registries::audit::TracingAudit;
use motcua_registries::http::{HttpConfig, HttpRegistries};
use motcua_registries::{Lookup, PopulationRegistry};
use motcua_security::TlsFiles;
use motcua_simulators::registries::{self as sim, Faults};
use motcua_simulators::world::World;
use support::{free_port, Stunnel, TestPki};

const LOOKUP: Lookup<'static> = Lookup {
    caller: "verify/test",
    dossier_id: "dossier-42",
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_go_over_mutual_tls_with_a_bearer_token_and_fail_without_them() {
    let pki = TestPki::create();
    let units = AdminUnits::embedded().expect("units");
    let world = World::for_province(&units, "22", 11, 1_000).expect("world");
    let citizen = world.citizen(7);
    let app = sim::with_bearer_token(sim::router(world, Faults::default()), "gateway-token".into());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let upstream = listener.local_addr().expect("addr").to_string();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let tls_port = free_port();
    let _stunnel = Stunnel::start_with(&pki, tls_port, &upstream, true);

    let token_file = pki.dir.path().join("token");
    std::fs::write(&token_file, "gateway-token\n").expect("token");
    let full = HttpConfig {
        base_url: format!("https://localhost:{tls_port}"),
        timeout_ms: 2_000,
        max_attempts: 1,
        tls: TlsFiles {
            ca_file: Some(pki.path("ca.pem").into()),
            cert_file: Some(pki.path("client.pem").into()),
            key_file: Some(pki.path("client.key").into()),
        },
        token_file: Some(token_file.clone()),
        breaker_failures: 100,
        cache_ttl_s: 0,
        ..HttpConfig::default()
    };
    let id = citizen.citizen_id.clone();
    let lookup = |cfg: HttpConfig| {
        let id = id.clone();
        async move {
            let client = HttpRegistries::new(cfg, Arc::new(TracingAudit)).expect("client");
            client.citizen(&LOOKUP, &id).await
        }
    };

    let found = lookup(full.clone()).await.expect("found over mutual TLS");
    assert_eq!(found.map(|c| c.citizen_id), Some(citizen.citizen_id.clone()));

    // Another CA: the gateway's certificate is not trusted, nothing is asked.
    let mut other_ca = full.clone();
    other_ca.tls.ca_file = Some(pki.path("other-ca.pem").into());
    assert!(
        lookup(other_ca).await.is_err(),
        "an untrusted gateway certificate is refused"
    );

    // No client certificate: the gateway (stunnel, verify = 2) refuses the handshake.
    let mut anonymous = full.clone();
    anonymous.tls.cert_file = None;
    anonymous.tls.key_file = None;
    assert!(lookup(anonymous).await.is_err(), "mutual TLS is required");

    // No token: the gateway answers 401.
    let mut no_token = full.clone();
    no_token.token_file = None;
    assert!(lookup(no_token).await.is_err(), "the bearer token is required");

    // A token or certificates with a plain http:// URL: refused before any request.
    let mut plaintext = full.clone();
    plaintext.base_url = format!("http://{upstream}");
    let e = HttpRegistries::new(plaintext, Arc::new(TracingAudit)).expect_err("refused");
    assert!(e.to_string().contains("refusing to send them unencrypted"), "{e}");
}

/// The outward systems take the same road: the e-wallet gateway and the national portal
/// behind stunnel (mutual TLS) with their bearer tokens. A delivery and a status change go
/// through with the right CA, certificate and token, and are refused without them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wallet_deliveries_and_portal_changes_go_over_mutual_tls_with_a_bearer_token() {
    use motcua_outward::http::{HttpConfig as OutwardConfig, HttpPortal, HttpWallet};
    use motcua_outward::{NationalPortal, StatusChange, WalletDelivery, WalletGateway};
    use sha2::Digest as _;

    let pki = TestPki::create();
    let serve = |app: axum::Router| async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let upstream = listener.local_addr().expect("addr").to_string();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        upstream
    };
    let wallet_up = serve(sim::with_bearer_token(
        motcua_simulators::wallet::router(Default::default(), 1),
        "wallet-token".into(),
    ))
    .await;
    let portal_up = serve(sim::with_bearer_token(
        motcua_simulators::national_portal::router(Default::default(), 1),
        "portal-token".into(),
    ))
    .await;
    let (wallet_port, portal_port) = (free_port(), free_port());
    let _wallet_tls = Stunnel::start_with(&pki, wallet_port, &wallet_up, true);
    let _portal_tls = Stunnel::start_with(&pki, portal_port, &portal_up, true);
    let token = |name: &str, value: &str| {
        let f = pki.dir.path().join(name);
        std::fs::write(&f, value).expect("token");
        f
    };
    let config = |port: u16, token_file: std::path::PathBuf| OutwardConfig {
        base_url: format!("https://localhost:{port}"),
        timeout_ms: 2_000,
        max_attempts: 1,
        tls: TlsFiles {
            ca_file: Some(pki.path("ca.pem").into()),
            cert_file: Some(pki.path("client.pem").into()),
            key_file: Some(pki.path("client.key").into()),
        },
        token_file: Some(token_file),
        ..OutwardConfig::default()
    };
    let wallet_cfg = config(wallet_port, token("wallet-token", "wallet-token\n"));
    let portal_cfg = config(portal_port, token("portal-token", "portal-token\n"));

    let document = b"motcua-result-v1\nreference=06652-KQ-H22\n".to_vec();
    let delivery = WalletDelivery {
        owner: "022090001234".into(),
        idempotency_key: "dossier-42.abc".into(),
        dossier_code: "H22.06652-261206-0001".into(),
        document_sha256: sha2::Sha256::digest(&document)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
        document,
        signed_record: "{}".into(),
        record_signature: vec![7; 64],
    };
    let wallet = HttpWallet::new("result.wallet", wallet_cfg.clone()).expect("client");
    let receipt = wallet.deliver(&delivery).await.expect("filed over mutual TLS");
    assert!(!receipt.duplicate);
    assert_eq!(
        wallet.deliver(&delivery).await.expect("again").receipt_id,
        receipt.receipt_id,
        "a resend is absorbed"
    );
    let change = StatusChange {
        change_id: "status-1".into(),
        dossier_code: "H22.06652-261206-0001".into(),
        status: 2,
        changed_at_ms: 1_790_000_000_000,
        procedure_code: Some("1.004227".into()),
        agency_code: None,
        due_at_ms: None,
    };
    let portal = HttpPortal::new("portal.http", portal_cfg.clone()).expect("client");
    portal.push(&change).await.expect("filed over mutual TLS");
    let record = portal
        .fetch(&change.dossier_code)
        .await
        .expect("fetch")
        .expect("a record");
    assert_eq!((record.status, record.change_ids), (2, vec!["status-1".to_owned()]));

    // An untrusted server certificate, no client certificate, a wrong token: refused.
    let mut other_ca = wallet_cfg.clone();
    other_ca.tls.ca_file = Some(pki.path("other-ca.pem").into());
    assert!(HttpWallet::new("result.wallet", other_ca)
        .expect("client")
        .deliver(&delivery)
        .await
        .is_err());
    let mut anonymous = portal_cfg.clone();
    anonymous.tls.cert_file = None;
    anonymous.tls.key_file = None;
    assert!(HttpPortal::new("portal.http", anonymous)
        .expect("client")
        .push(&change)
        .await
        .is_err());
    let wrong = config(portal_port, token("wrong", "not-the-token"));
    let refused = HttpPortal::new("portal.http", wrong)
        .expect("client")
        .push(&change)
        .await;
    assert!(
        matches!(&refused, Err(motcua_outward::Error::Refused { code, .. }) if code == "UNAUTHENTICATED"),
        "{refused:?}"
    );
    // A token over plain HTTP is refused before anything is sent.
    let mut plain = wallet_cfg;
    plain.base_url = format!("http://{wallet_up}");
    plain.tls = TlsFiles::default();
    assert!(HttpWallet::new("result.wallet", plain).is_err());
}
