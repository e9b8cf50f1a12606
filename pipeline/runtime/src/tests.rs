//! The runtime's steps, each on its own.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use motcua_kafka::KafkaConfig;
use motcua_schemas::{samples, Codec, DeadLetter, Topic};
use rdkafka::message::{Headers, OwnedHeaders};

use crate::consumer::Received;
use crate::dead_letter::{dead_letter, DeadLetterReason, DEAD_LETTER_REASON_CHARS, DEAD_LETTER_VALUE_PREFIX};
use crate::decode::decode;
use crate::destinations::{outputs, Destinations};
use crate::retry::handle_isolating;
use crate::{Door, Envelope, Error, Origin, Outcome, RuntimeConfig, Shutdown, Stage, StageError};

/// A stage whose database refuses any batch holding a "poison" dossier.
struct RefusesPoison {
    calls: AtomicUsize,
}

impl Stage for RefusesPoison {
    type Input = motcua_schemas::DossierSubmitted;

    fn name(&self) -> &'static str {
        "test"
    }

    async fn handle_batch(&self, batch: &[Envelope<Self::Input>]) -> Result<Vec<Outcome>, StageError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        if batch.iter().any(|e| e.event.dossier.dossier_id.starts_with("poison")) {
            return Err(StageError::Refused {
                reason_code: "DATABASE_REFUSED".to_owned(),
                reason: "the database refused this message's data (code 22021)".to_owned(),
            });
        }
        Ok(batch.iter().map(|_| Outcome::Emit(Vec::new())).collect())
    }
}

fn inputs(ids: &[String]) -> Vec<Envelope<motcua_schemas::DossierSubmitted>> {
    ids.iter()
        .enumerate()
        .map(|(i, id)| {
            let mut e = samples::submitted();
            e.dossier.dossier_id = id.clone();
            Envelope {
                event: e,
                origin: Origin {
                    topic: "dossier.submitted".into(),
                    partition: 0,
                    offset: i as i64,
                    timestamp_ms: None,
                },
                door: Default::default(),
            }
        })
        .collect()
}

#[tokio::test]
async fn a_refused_batch_is_split_until_only_its_poison_messages_are_dead_lettered() {
    let ids: Vec<String> = (0..100)
        .map(|i| {
            if i == 17 || i == 70 {
                format!("poison-{i}")
            } else {
                format!("d-{i}")
            }
        })
        .collect();
    let batch = inputs(&ids);
    let stage = RefusesPoison {
        calls: AtomicUsize::new(0),
    };
    let cfg = RuntimeConfig::new(KafkaConfig::default());
    let (_stop, shutdown) = Shutdown::channel();
    let outcomes = handle_isolating(&stage, &batch, &cfg, &shutdown)
        .await
        .expect("no fatal error")
        .expect("not shut down");
    assert_eq!(outcomes.len(), 100, "one outcome per input, in order");
    for (i, o) in outcomes.iter().enumerate() {
        match o {
            Outcome::DeadLetter { reason_code, reason } => {
                assert!(i == 17 || i == 70, "input {i} was dead-lettered");
                assert_eq!(reason_code, "DATABASE_REFUSED");
                assert!(!reason.contains("poison"), "{reason}");
            }
            Outcome::Emit(_) => assert!(i != 17 && i != 70, "poison input {i} was processed"),
        }
    }
    // Two poison messages among 100: a few dozen calls, not one per message.
    let calls = stage.calls.load(Ordering::Relaxed);
    assert!(calls <= 2 * 2 * 7 + 1, "{calls} calls");
}

#[tokio::test]
async fn a_fatal_error_is_not_split() {
    struct Broken;
    impl Stage for Broken {
        type Input = motcua_schemas::DossierSubmitted;
        fn name(&self) -> &'static str {
            "test"
        }
        async fn handle_batch(&self, _: &[Envelope<Self::Input>]) -> Result<Vec<Outcome>, StageError> {
            Err(StageError::Fatal("permission denied for table dossier_codes".into()))
        }
    }
    let batch = inputs(&["a".into(), "b".into()]);
    let cfg = RuntimeConfig::new(KafkaConfig::default());
    let (_stop, shutdown) = Shutdown::channel();
    let r = handle_isolating(&Broken, &batch, &cfg, &shutdown).await;
    assert!(matches!(r, Err(Error::Fatal { .. })), "{r:?}");
}

fn received(payload: Vec<u8>) -> Received {
    Received {
        tp: ("dossier.submitted".into(), 3),
        epoch: 1,
        offset: 42,
        timestamp_ms: Some(1_764_036_000_000),
        key: Some(b"d-1".to_vec()),
        payload: Some(payload),
        traceparent: None,
        headers: vec![("portal-request".into(), Some(b"r-7".to_vec()))],
    }
}

fn header(h: &OwnedHeaders, key: &str) -> Option<String> {
    h.iter()
        .find(|x| x.key == key)
        .and_then(|x| x.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

#[test]
fn a_message_from_outside_must_leave_its_outputs_room_below_the_topics_limit() {
    let codec = Codec::embedded().expect("codec");
    let cfg = RuntimeConfig::new(KafkaConfig::default());
    let payload = codec.encode(&samples::submitted()).expect("encodes");
    let room = cfg.limits.output_room_bytes;
    let door = |topic_limit| Door {
        limits: cfg.limits.clone(),
        topic_limit,
    };
    let fits = payload.len() + room;
    let from_portal = received(payload.clone());
    assert!(decode::<motcua_schemas::DossierSubmitted>(&codec, &cfg, &door(fits), &from_portal).is_ok());
    let err = decode::<motcua_schemas::DossierSubmitted>(&codec, &cfg, &door(fits - 1), &from_portal)
        .expect_err("no room left");
    assert_eq!(err.code, "MESSAGE_TOO_LARGE");
    assert!(err.reason.contains(&format!("{room} bytes")), "{}", err.reason);
    // A stage's own output carried on: its room was left when it came in.
    let mut accepted = samples::accepted();
    accepted.dossier = samples::submitted().dossier;
    let mut from_intake = received(codec.encode(&accepted).expect("encodes"));
    from_intake.tp.0 = "dossier.accepted".into();
    assert!(decode::<motcua_schemas::DossierAccepted>(&codec, &cfg, &door(1), &from_intake).is_ok());
}

#[test]
fn an_output_larger_than_a_kafka_message_dead_letters_its_input() {
    let codec = Codec::embedded().expect("codec");
    let mut kafka = KafkaConfig::default();
    kafka.producer.insert("message.max.bytes".into(), "100000".into());
    let cfg = RuntimeConfig::new(kafka);
    let mut big = samples::submitted();
    big.dossier.form_fields.insert("note".into(), "x".repeat(150_000));
    let m = received(Vec::new());
    let destinations = Destinations::of_producer(&cfg.kafka);
    let err = outputs(&codec, &destinations, m.traceparent.as_deref(), 0, &[big.into()])
        .err()
        .expect("too large");
    assert_eq!(err.code, "OUTPUT_TOO_LARGE");
    assert!(outputs(
        &codec,
        &destinations,
        m.traceparent.as_deref(),
        0,
        &[samples::submitted().into()]
    )
    .is_ok());
    // A topic whose broker limit is lower than the producer's: that one applies.
    let broker = [(cfg.kafka.topic(Topic::Submitted), 500)].into_iter().collect();
    let lower = Destinations::with_broker_limits(&cfg.kafka, &broker);
    let err = outputs(&codec, &lower, None, 0, &[samples::submitted().into()])
        .err()
        .expect("too large for the topic");
    assert_eq!(err.code, "OUTPUT_TOO_LARGE");
    assert!(err.reason.contains("500 bytes"), "{}", err.reason);
}

#[test]
fn a_dead_letter_keeps_a_bounded_prefix_its_length_digest_and_the_original_headers() {
    let codec = Codec::embedded().expect("codec");
    let original = vec![7u8; 300_000];
    let m = received(original.clone());
    let o = dead_letter(
        &codec,
        "intake",
        &Arc::from("dossier.dlq"),
        &m,
        &DeadLetterReason::new("MESSAGE_TOO_LARGE", "é".repeat(5_000)),
    )
    .expect("dead letter");
    assert!(o.payload.len() < 100_000, "{} bytes", o.payload.len());
    let dl: DeadLetter = codec.decode(&o.payload).expect("decodes");
    assert_eq!(dl.origin_value.as_deref(), Some(&original[..DEAD_LETTER_VALUE_PREFIX]));
    assert_eq!(dl.reason.chars().count(), DEAD_LETTER_REASON_CHARS);
    assert_eq!(
        header(&o.headers, "motcua-origin-value-bytes").as_deref(),
        Some("300000")
    );
    assert_eq!(
        header(&o.headers, "motcua-origin-value-truncated").as_deref(),
        Some("true")
    );
    use sha2::Digest;
    let digest: String = sha2::Sha256::digest(&original)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(header(&o.headers, "motcua-origin-value-sha256"), Some(digest));
    assert_eq!(
        header(&o.headers, "motcua-origin-header.portal-request").as_deref(),
        Some("r-7")
    );
}
