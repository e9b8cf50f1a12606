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
    let (_topics, kafka) = apache_kafka(2).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let key_file = dir.path().join("result.key");
    let jwks_file = dir.path().join("jwks.json");
    let out = motcua()
        .args([
            "result-key",
            key_file.to_str().expect("utf-8"),
            "--kid",
            "qn-2025",
            "--jwks",
        ])
        .arg(&jwks_file)
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

    // The citizens' e-wallets, simulated over HTTP (results are filed there first).
    let (wallet_url, _wallet) = motcua_simulators::wallet::spawn(Default::default(), 1)
        .await
        .expect("wallet simulator");
    let spawn = |args: &[&str]| {
        motcua()
            .args(args)
            .envs(kafka_env(&kafka))
            .env(
                "MOTCUA_DATABASE__URL",
                format!("sqlite://{}", dir.path().join("r.db").display()),
            )
            .env("MOTCUA_RESULT__SIGNING_KEY_FILE", &key_file)
            .env("MOTCUA_RESULT__SIGNING_KEY_ID", "qn-2025")
            .env("MOTCUA_RESULT__JWKS_FILE", &jwks_file)
            .env("MOTCUA_RESULT__WALLET__BASE_URL", &wallet_url)
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn")
    };
    // A key that is not published is refused at start-up.
    let unpublished = motcua()
        .args(["run", "result"])
        .envs(kafka_env(&kafka))
        .env("MOTCUA_RESULT__SIGNING_KEY_FILE", &key_file)
        .env("MOTCUA_RESULT__SIGNING_KEY_ID", "not-published")
        .env("MOTCUA_RESULT__JWKS_FILE", &jwks_file)
        .output()
        .expect("run result");
    let err = String::from_utf8_lossy(&unpublished.stderr);
    assert!(!unpublished.status.success() && err.contains("is not in"), "{err}");

    // No requests for papers: nothing here (no intake) would send those dossiers back.
    let mut office = spawn(&["backoffice-sim", "--late-rate", "0.3", "--supplement-rate", "0"]);
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
                calendar_version: None,
                clock_pauses: Vec::new(),
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
    // Each result is in the applicant's wallet once, under the receipt its event names.
    let filed: Vec<motcua_simulators::wallet::Filed> =
        reqwest::get(format!("{wallet_url}/v1/owners/022090001234/documents"))
            .await
            .expect("wallet")
            .json()
            .await
            .expect("documents");
    let mut receipts: Vec<String> = filed.iter().map(|f| f.receipt_id.clone()).collect();
    receipts.sort();
    let mut announced: Vec<String> = collector
        .snapshot()
        .iter()
        .filter_map(|r| match &r.event {
            Some(AnyEvent::Completed(c)) => c.wallet_receipt_id.clone(),
            _ => None,
        })
        .collect();
    announced.sort();
    announced.dedup();
    assert_eq!((filed.len(), &announced), (30, &receipts));

    // A third party verifies a result from the event alone and the published JWK Set,
    // with the OpenSSL command line; a tampered record is refused.
    let jwks: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&jwks_file).expect("jwks")).expect("json");
    let jwk = &jwks["keys"][0];
    assert_eq!(
        (&jwk["kid"], &jwk["crv"], &jwk["alg"]),
        (&"qn-2025".into(), &"Ed25519".into(), &"EdDSA".into())
    );
    let x = base64::Engine::decode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        jwk["x"].as_str().expect("x"),
    )
    .expect("base64url");
    // SubjectPublicKeyInfo of an Ed25519 key (RFC 8410): a fixed prefix, then the key.
    let mut spki = vec![0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];
    spki.extend(&x);
    let pem = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &spki)
    );
    let pub_pem = dir.path().join("pub.pem");
    std::fs::write(&pub_pem, pem).expect("pem");
    let openssl_verifies = |record: &str, sig: &[u8]| {
        let (rec, sig_file) = (dir.path().join("record.json"), dir.path().join("record.sig"));
        std::fs::write(&rec, record).expect("record");
        std::fs::write(&sig_file, sig).expect("sig");
        let out = std::process::Command::new("openssl")
            .args(["pkeyutl", "-verify", "-pubin", "-rawin", "-inkey"])
            .arg(&pub_pem)
            .arg("-in")
            .arg(&rec)
            .arg("-sigfile")
            .arg(&sig_file)
            .output()
            .expect("openssl (tests/run.sh installs it)");
        out.status.success()
    };
    let mut verified = 0;
    for r in collector.snapshot() {
        let Some(AnyEvent::Completed(c)) = &r.event else {
            continue;
        };
        let record = c.signed_record.as_deref().expect("a signed record");
        let sig = c.record_signature.as_deref().expect("a signature");
        let fields: serde_json::Value = serde_json::from_str(record).expect("the record is JSON");
        assert_eq!(fields["kid"], "qn-2025");
        assert_eq!(fields["dossier_code"], c.dossier_code.as_str());
        assert_eq!(fields["documents"][0]["sha256"], c.result_document.sha256.as_str());
        assert!(openssl_verifies(record, sig), "OpenSSL verifies {record}");
        let flipped = if record.contains("\"approved\"") {
            record.replace("\"approved\"", "\"refused\"")
        } else {
            record.replace("\"refused\"", "\"approved\"")
        };
        assert!(!openssl_verifies(&flipped, sig), "a tampered record is refused");
        verified += 1;
    }
    assert_eq!(verified, 30);
}
