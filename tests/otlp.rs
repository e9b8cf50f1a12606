//! Spans over OTLP to a real OpenTelemetry collector (rotel, from PyPI, its detailed debug
//! output read back): two worker processes (`motcua run intake`, `motcua run track`) with
//! the standard `OTEL_EXPORTER_OTLP_ENDPOINT` export one span per message and stage, each
//! in its dossier's trace — the portal's when the submission came with one, else the one
//! the dossier id gives — with the Kafka coordinates and the outcome, and nothing else of
//! the message.

mod support;

use std::collections::{BTreeSet, HashMap};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use motcua_schemas::Topic;
use motcua_simulators::portal::Generator;
use support::*;

fn rotel() -> String {
    std::env::var("MOTCUA_TEST_ROTEL")
        .unwrap_or_else(|_| panic!("MOTCUA_TEST_ROTEL is not set: run tests/run.sh (it installs rotel, pinned)"))
}

fn spawn_stage(stage: &str, kafka: &motcua_kafka::KafkaConfig, database_url: &str, otlp: &str) -> Child {
    motcua()
        .args(["run", stage])
        .envs(kafka_env(kafka))
        .env("MOTCUA_DATABASE__URL", database_url)
        .env("MOTCUA_RUNTIME__INSTANCE_ID", format!("otlp-{stage}"))
        .env("MOTCUA_RUNTIME__DRAIN_TIMEOUT_MS", "5000")
        .env("MOTCUA_TRACK__API_LISTEN", "")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", otlp)
        // Export every 200 ms rather than every 5 s.
        .env("OTEL_BSP_SCHEDULE_DELAY", "200")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn motcua run {stage}: {e}"))
}

/// One span as the collector printed it.
#[derive(Debug, Clone)]
struct Span {
    service: String,
    trace_id: String,
    parent_id: String,
    name: String,
    attributes: HashMap<String, String>,
}

/// Reads rotel's detailed debug output: `ResourceSpans` blocks (with `service.name`),
/// each with `Span #n` entries (ids, name, `-> key: Type(value)` attributes).
fn parse(output: &str) -> Vec<Span> {
    let mut spans = Vec::new();
    for resource in output.split("ResourceSpans #").skip(1) {
        let service = resource
            .lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix("-> service.name: Str(")?
                    .strip_suffix(')')
                    .map(str::to_owned)
            })
            .unwrap_or_default();
        for block in resource.split("Span #").skip(1) {
            let field = |name: &str| {
                block
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        (k.trim() == name).then(|| v.trim().to_owned())
                    })
                    .unwrap_or_default()
            };
            let attributes = block
                .lines()
                .filter_map(|l| {
                    let (k, v) = l.trim().strip_prefix("-> ")?.split_once(": ")?;
                    let v = v.split_once('(').map_or(v, |(_, v)| v.strip_suffix(')').unwrap_or(v));
                    Some((k.to_owned(), v.to_owned()))
                })
                .collect();
            spans.push(Span {
                service: service.clone(),
                trace_id: field("Trace ID"),
                parent_id: field("Parent ID"),
                name: field("Name"),
                attributes,
            });
        }
    }
    spans
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_message_s_processing_is_exported_as_a_span_in_its_dossier_s_trace() {
    let (_topics, kafka) = apache_kafka(2).await;
    let db = motcua_store::testing::scratch_postgres_url().await;
    let dir = tempfile::tempdir().expect("dir");
    let (http, grpc) = (free_port(), free_port());
    let out = std::fs::File::create(dir.path().join("rotel.out")).expect("rotel output");
    let mut collector = std::process::Command::new(rotel())
        .args([
            "start",
            "--exporter",
            "blackhole",
            "--debug-log",
            "traces",
            "--debug-log-verbosity",
            "detailed",
        ])
        .args(["--otlp-http-endpoint", &format!("127.0.0.1:{http}")])
        .args(["--otlp-grpc-endpoint", &format!("127.0.0.1:{grpc}")])
        .arg("--log-file")
        .arg(dir.path().join("rotel.log"))
        .arg("--pid-file")
        .arg(dir.path().join("rotel.pid"))
        .stdout(out.try_clone().expect("file"))
        .stderr(out)
        .spawn()
        .expect("start rotel");
    let otlp = format!("http://127.0.0.1:{http}");
    let mut intake = spawn_stage("intake", &kafka, &db, &otlp);
    let mut track = spawn_stage("track", &kafka, &db, &otlp);

    // Four submissions: two from a portal that traces its requests, two that do not.
    let reference = motcua_reference::Reference::embedded().expect("reference");
    let mut g = Generator::new(&reference, "22", 3).expect("province");
    let portal_traces = ["4bf92f3577b34da6a3ce929d0e0e4736", "0af7651916cd43dd8448eb211c80319c"];
    let mut submissions: Vec<_> = (0..4).map(|i| g.valid(NOW + i * 60_000)).collect();
    for (s, trace) in submissions.iter_mut().zip(portal_traces) {
        s.traceparent = Some(format!("00-{trace}-b7ad6b7169203331-01"));
    }
    let expected: HashMap<String, String> = submissions
        .iter()
        .map(|s| {
            let tp = s
                .traceparent
                .clone()
                .unwrap_or_else(|| motcua_schemas::dossier_traceparent(&s.dossier.dossier_id, &s.event_id));
            (
                s.dossier.dossier_id.clone(),
                motcua_schemas::trace_id(&tp).expect("trace").to_owned(),
            )
        })
        .collect();
    publish(&kafka, &submissions).await;

    // Per dossier: intake's span of the submission, and track's of the submission, the
    // acceptance and the status (four messages of the dossier's trace).
    let output = || std::fs::read_to_string(dir.path().join("rotel.out")).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(90);
    let spans = loop {
        let spans = parse(&output());
        let complete = expected.values().all(|t| {
            let names: BTreeSet<&str> = spans
                .iter()
                .filter(|s| &s.trace_id == t)
                .map(|s| s.name.as_str())
                .collect();
            names.len() >= 4
        });
        if complete {
            break spans;
        }
        assert!(Instant::now() < deadline, "spans never all arrived: {:#?}", spans);
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    for (dossier, trace) in &expected {
        let in_trace: Vec<&Span> = spans.iter().filter(|s| &s.trace_id == trace).collect();
        let names: BTreeSet<(&str, String)> = in_trace.iter().map(|s| (s.service.as_str(), s.name.clone())).collect();
        for (service, stage, topic) in [
            ("motcua-intake", "intake", Topic::Submitted),
            ("motcua-track", "track", Topic::Submitted),
            ("motcua-track", "track", Topic::Accepted),
            ("motcua-track", "track", Topic::Status),
        ] {
            let wanted = (service, format!("{stage} process {}", kafka.topic(topic)));
            assert!(
                names.contains(&wanted),
                "{dossier}: no {wanted:?} in its trace {trace}: {names:?}"
            );
        }
        for s in &in_trace {
            assert_eq!(
                s.attributes.get("messaging.system").map(String::as_str),
                Some("kafka"),
                "{s:?}"
            );
            assert_eq!(
                s.attributes.get("motcua.outcome").map(String::as_str),
                Some("processed"),
                "{s:?}"
            );
            assert!(s.attributes.contains_key("messaging.kafka.offset"), "{s:?}");
            assert!(!s.parent_id.is_empty(), "a child of the dossier's trace context: {s:?}");
        }
    }
    // The portal's own trace is kept: its two dossiers are in the traces it sent.
    for trace in portal_traces {
        assert!(spans.iter().any(|s| s.trace_id == trace), "the portal's trace {trace}");
    }
    // Nothing of the applicants reaches the collector.
    let text = output();
    for s in &submissions {
        let a = &s.dossier.applicant;
        assert!(!text.contains(&a.full_name), "a name was exported");
        if let Some(id) = &a.citizen_id {
            assert!(!text.contains(id.as_str()), "a citizen ID was exported");
        }
    }

    for w in [&intake, &track] {
        sigterm(w);
    }
    for w in [&mut intake, &mut track] {
        assert!(wait_exit(w, Duration::from_secs(30)).success());
    }
    let _ = collector.kill();
    let _ = collector.wait();
    println!(
        "{} spans exported, {} dossiers' traces checked",
        spans.len(),
        expected.len()
    );
}
