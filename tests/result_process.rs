//! The back office (`motcua backoffice-sim`) and `motcua run result` as real processes:
//! routed dossiers are decided, and their results arrive signed with the key whose public
//! half `motcua result-key` printed.

mod support;

use std::process::Stdio;
use std::time::Duration;

use motcua_schemas::{samples, AnyEvent, DossierRouted, Topic};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routed_dossiers_are_decided_and_their_results_arrive_signed() {
    let (_broker, kafka) = mock_cluster(2);
    let dir = tempfile::tempdir().expect("tempdir");
    let key_file = dir.path().join("result.key");
    let out = motcua()
        .args(["result-key", key_file.to_str().expect("utf-8")])
        .output()
        .expect("result-key");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let public_hex = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let public: [u8; 32] = (0..32)
        .map(|i| u8::from_str_radix(&public_hex[2 * i..2 * i + 2], 16).expect("hex"))
        .collect::<Vec<_>>()
        .try_into()
        .expect("32 bytes");
    let key = ed25519_dalek::VerifyingKey::from_bytes(&public).expect("public key");
    // A second run refuses to overwrite the secret.
    assert!(!motcua()
        .args(["result-key", key_file.to_str().expect("utf-8")])
        .output()
        .expect("run")
        .status
        .success());

    let spawn = |args: &[&str]| {
        motcua()
            .args(args)
            .env("MOTCUA_KAFKA__BROKERS", &kafka.brokers)
            .env(
                "MOTCUA_DATABASE__URL",
                format!("sqlite://{}", dir.path().join("r.db").display()),
            )
            .env("MOTCUA_RESULT__SIGNING_KEY_FILE", &key_file)
            .env("MOTCUA_RESULT__SIGNING_KEY_ID", "qn-2025")
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn")
    };
    let mut office = spawn(&["backoffice-sim", "--late-rate", "0.3"]);
    let mut result = spawn(&["run", "result"]);
    let collector = Collector::start(&kafka, &[Topic::Completed]);

    let routed: Vec<DossierRouted> = (0..30)
        .map(|i| {
            let mut dossier = samples::dossier();
            dossier.dossier_id = format!("dossier-{i}");
            DossierRouted {
                event_id: format!("routed-{i}"),
                causation_id: "paid".into(),
                dossier_code: format!("H22.06652-251125-{i:04}"),
                received_at: NOW,
                procedure: samples::procedure(),
                dossier,
                competent_unit_code: "06652".into(),
                competent_unit_name: "Phường Hạ Long".into(),
                desk: "DDXD".into(),
                transferred: false,
                due_at: NOW + 10 * 86_400_000,
                routed_at: NOW + 60_000,
                traceparent: None,
            }
        })
        .collect();
    publish(&kafka, &routed).await;
    let done = collector.wait_for(Duration::from_secs(60), |s| s.len() >= 30).await;
    sigterm(&office);
    sigterm(&result);
    assert!(wait_exit(&mut office, Duration::from_secs(30)).success());
    assert!(wait_exit(&mut result, Duration::from_secs(30)).success());
    assert!(done, "only {} of 30 results", collector.count(Topic::Completed));

    let mut late = 0;
    for r in collector.snapshot() {
        let Some(AnyEvent::Completed(c)) = &r.event else {
            panic!("{r:?}")
        };
        assert_eq!(c.result_document.signing_key_id, "qn-2025");
        let digest: [u8; 32] = (0..32)
            .map(|i| u8::from_str_radix(&c.result_document.sha256[2 * i..2 * i + 2], 16).expect("hex"))
            .collect::<Vec<_>>()
            .try_into()
            .expect("sha256");
        let sig = ed25519_dalek::Signature::from_slice(&c.result_document.signature).expect("signature");
        key.verify_strict(&digest, &sig)
            .expect("the result verifies with the published key");
        assert_eq!(c.wallet_owner, "022090001234");
        late += usize::from(c.timeliness == motcua_schemas::Timeliness::Late);
    }
    assert!(late > 0, "with a 30 % late rate some results are late");
}
