//! `motcua dlq` as an operator runs it, against a running intake worker: dead letters are
//! listed and filtered, one is shown, a supplement refused before its dossier waited is
//! replayed once the dossier waits and resumes it, a message that cannot be processed is
//! parked after its replays instead of looping, and every replay is in the audit.

mod support;

use std::time::Duration;

use motcua_reference::Reference;
use motcua_schemas::{AnyEvent, DossierStatus, DossierSupplemented, Topic};
use motcua_simulators::portal::Generator;
use support::*;

fn dlq(kafka: &motcua_kafka::KafkaConfig, db: &str, args: &[&str]) -> String {
    let out = motcua()
        .arg("dlq")
        .args(args)
        .envs(kafka_env(kafka))
        .args(["--brokers", &kafka.brokers, "--database-url", db])
        .output()
        .expect("motcua dlq");
    assert!(
        out.status.success(),
        "motcua dlq {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The ids (`partition:offset`) of the listing's rows with this reason code.
fn ids_with(listing: &str, reason: &str) -> Vec<String> {
    listing
        .lines()
        .filter(|l| l.split_whitespace().nth(3) == Some(reason))
        .map(|l| l.split_whitespace().next().expect("id").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_shown_replayed_once_fixed_and_parked_when_they_keep_failing() {
    let (_topics, kafka) = apache_kafka(2).await;
    let db = motcua_store::testing::scratch_postgres_url().await;
    let mut worker = spawn_intake(&kafka, &db, "dlq-test");
    let collector = Collector::start(&kafka, &[Topic::Status, Topic::Accepted, Topic::DeadLetter]);

    // Junk on the submissions topic, and a citizen's supplement for a dossier whose
    // submission the portal has not published yet.
    publish_raw(&kafka, Topic::Submitted, "junk-1", Some(b"{\"not\": \"avro\"}")).await;
    let r = Reference::embedded().expect("reference");
    let mut g = Generator::new(&r, "22", 41).expect("province");
    let mut s = g.valid(NOW);
    let missing = s.dossier.documents.pop().expect("a required document");
    let id = s.dossier.dossier_id.clone();
    let supplement = DossierSupplemented {
        event_id: "supplement-early".into(),
        dossier_id: id.clone(),
        dossier_code: None,
        portal: "dvc".into(),
        documents: vec![missing],
        form_fields: Default::default(),
        land_parcels: None,
        residence_unit_code: None,
        full_name: None,
        date_of_birth: None,
        supplemented_at: NOW + 3_600_000,
        published_at: NOW + 3_600_000,
        traceparent: None,
    };
    publish(&kafka, std::slice::from_ref(&supplement)).await;
    assert!(
        collector
            .wait_count(Topic::DeadLetter, 2, Duration::from_secs(60))
            .await,
        "two dead letters"
    );

    let all = dlq(&kafka, &db, &["list"]);
    assert!(all.contains("2 dead letters match"), "{all}");
    let [junk] = &ids_with(&all, "BAD_MAGIC_BYTE")[..] else {
        panic!("{all}")
    };
    let [early] = &ids_with(&all, "SUPPLEMENT_UNKNOWN_DOSSIER")[..] else {
        panic!("{all}")
    };
    // Filters: by reason, by dossier, by origin topic, by time.
    let by_reason = dlq(&kafka, &db, &["list", "--reason", "BAD_MAGIC_BYTE"]);
    assert!(
        by_reason.contains("1 dead letters match") && by_reason.contains("junk-1"),
        "{by_reason}"
    );
    let by_dossier = dlq(&kafka, &db, &["list", "--dossier", &id]);
    assert_eq!(
        ids_with(&by_dossier, "SUPPLEMENT_UNKNOWN_DOSSIER"),
        std::slice::from_ref(early),
        "{by_dossier}"
    );
    let by_topic = dlq(&kafka, &db, &["list", "--topic", "dossier.supplemented"]);
    assert!(by_topic.contains("1 dead letters match"), "{by_topic}");
    assert!(dlq(&kafka, &db, &["list", "--since", "2100-01-01"]).contains("0 dead letters match"));
    // The listing holds no message content (the supplement's documents, names).
    assert!(!all.contains("s3://") && !all.contains("portal-supplements"), "{all}");

    let shown = dlq(&kafka, &db, &["show", early, "--payload"]);
    assert!(
        shown.contains("SUPPLEMENT_UNKNOWN_DOSSIER") && shown.contains("dossier.supplemented"),
        "{shown}"
    );
    assert!(
        shown.contains("\"event_id\": \"supplement-early\""),
        "decoded on request: {shown}"
    );

    // A dry run publishes and records nothing.
    let dry = dlq(
        &kafka,
        &db,
        &["replay", early, "--dry-run", "--by", "op-1", "--why", "checking"],
    );
    assert!(dry.contains("would replay"), "{dry}");
    assert!(
        dlq(&kafka, &db, &["replays"]).trim().is_empty(),
        "a dry run records nothing"
    );

    // The portal publishes the submission now: it lacks the paper, intake asks for it.
    publish(&kafka, std::slice::from_ref(&s)).await;
    let asked = |seen: &[Read]| {
        seen.iter().any(|x| {
            matches!(&x.event, Some(AnyEvent::Status(st)) if st.dossier_id == id && st.status == DossierStatus::SupplementRequested)
        })
    };
    assert!(
        collector.wait_for(Duration::from_secs(60), asked).await,
        "intake asked for the paper"
    );
    // The early supplement, replayed, answers the request: the dossier is received.
    let replayed = dlq(
        &kafka,
        &db,
        &[
            "replay",
            early,
            "--by",
            "op-1",
            "--why",
            "the dossier now waits for this supplement",
        ],
    );
    assert!(
        replayed.contains("replayed") && replayed.contains("replay 1"),
        "{replayed}"
    );
    let received = |seen: &[Read]| {
        seen.iter()
            .any(|x| matches!(&x.event, Some(AnyEvent::Accepted(a)) if a.dossier.dossier_id == id))
    };
    assert!(
        collector.wait_for(Duration::from_secs(60), received).await,
        "the replayed supplement completed the dossier"
    );
    // The same dead letter is not replayed twice.
    let again = dlq(&kafka, &db, &["replay", early, "--by", "op-2", "--why", "again"]);
    assert!(again.contains("already done") && again.contains("by op-1"), "{again}");

    // The junk fails again: its new dead letter carries the replay count; at the limit it
    // is parked, not replayed.
    let replayed = dlq(&kafka, &db, &["replay", junk, "--by", "op-1", "--why", "try once"]);
    assert!(replayed.contains("replayed"), "{replayed}");
    assert!(
        collector
            .wait_count(Topic::DeadLetter, 3, Duration::from_secs(60))
            .await,
        "the replayed junk is dead-lettered again"
    );
    let listing = dlq(&kafka, &db, &["list", "--reason", "BAD_MAGIC_BYTE"]);
    let second = ids_with(&listing, "BAD_MAGIC_BYTE")
        .into_iter()
        .find(|i| i != junk)
        .unwrap_or_else(|| panic!("{listing}"));
    assert!(listing.contains("replays 1"), "{listing}");
    let parked = dlq(
        &kafka,
        &db,
        &[
            "replay",
            &second,
            "--max-replays",
            "1",
            "--by",
            "op-1",
            "--why",
            "loop?",
        ],
    );
    assert!(parked.contains("parked"), "{parked}");

    let audit = dlq(&kafka, &db, &["replays"]);
    eprintln!("$ motcua dlq list\n{all}\n$ motcua dlq replay {early} …\n{replayed}\n$ motcua dlq replays\n{audit}");
    assert_eq!(audit.lines().count(), 3, "{audit}");
    assert!(
        audit.contains("the dossier now waits for this supplement") && audit.contains("parked"),
        "{audit}"
    );
    sigterm(&worker);
    wait_exit(&mut worker, Duration::from_secs(30));
}
