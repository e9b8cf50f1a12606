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
