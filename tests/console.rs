//! The console in a real browser (Debian's Chromium, headless, driven over WebDriver by
//! Selenium) against a running pipeline: every stage up to routing over one broker and
//! one PostgreSQL, the registries simulated over HTTP. The back office does not decide
//! anything here, so dossiers received weeks ago are overdue — a bad day, which is what
//! the console is for. Screenshots go to `target/console-screenshots/`.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use motcua_reference::Reference;
use motcua_runtime::Shutdown;
use motcua_schemas::{AnyEvent, Codec, DossierAccepted, Topic};
use motcua_simulators::gateway::GatewaySimConfig;
use motcua_simulators::portal::Generator;
use motcua_simulators::registries::{self as sim, Faults};
use motcua_simulators::world::World;
use motcua_store::Store;
use motcua_track::ops::Operations;
use motcua_wiring::operations::{LagReader, PipelineOperations};
use support::*;

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

fn tool(var: &str, what: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| panic!("{var} is not set: run tests/run.sh (it installs {what})"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_console_shows_a_running_pipeline_to_operators_and_a_dossier_to_its_citizen() {
    let chromium = tool("MOTCUA_TEST_CHROMIUM", "Debian's chromium");
    let chromedriver = tool("MOTCUA_TEST_CHROMEDRIVER", "Debian's chromium-driver");
    let (_topics, kafka) = apache_kafka(2).await;
    let db = motcua_store::testing::scratch_postgres_url().await;
    let store = Store::connect(&db).await.expect("store");
    let r = Arc::new(Reference::embedded().expect("reference"));
    let codec = Codec::embedded().expect("codec");
    let world = World::for_province(&r.units, "22", 5, 100_000).expect("world");
    let (registry_url, _sim) = sim::spawn(world.clone(), Faults::default())
        .await
        .expect("registry simulator");

    // --- the pipeline, up to routing -------------------------------------------------
    let (stop, shutdown) = Shutdown::channel();
    let track = motcua_track::Track::connect(&db).await.expect("track");
    let pool = track.postgres().expect("postgres").clone();
    let set = StageSet {
        label: "console",
        back_office: None,
        result: None,
        portal: None,
        track: Some(track),
        gateway: GatewaySimConfig {
            min_delay_ms: 5,
            max_delay_ms: 50,
            ..GatewaySimConfig::default()
        },
    };
    let running = spawn_stages(set, &kafka, &codec, &r, &store, &registry_url, &shutdown).await;
    let collector = Collector::start(&kafka, &[Topic::Status]);

    // --- history: three weeks and this week of one center's submissions --------------
    let now = motcua_reference::civil::now_ms();
    let mut g = Generator::new(&r, "22", 11).expect("province").with_world(&world);
    let first = g.valid(now);
    let center = first.dossier.receiving_unit_code.clone();
    let (this_week, _) = motcua_stats::forecast::week_and_slot(now);
    let history_from = motcua_stats::forecast::week_start_ms(this_week - 3);
    let today = now - (now + 7 * HOUR).rem_euclid(DAY);
    let mut history = Vec::new();
    let mut tries = 0;
    // Working hours (08:00–17:00 Vietnam time) of every day before today, busier in the
    // morning: the shape the forecast learns.
    let mut at = history_from + HOUR; // Monday 08:00 local = 01:00 UTC
    while at < today - DAY && tries < 200_000 {
        tries += 1;
        let s = g.valid(at);
        if s.dossier.receiving_unit_code != center {
            continue;
        }
        history.push(s);
        let local_hour = (at + 7 * HOUR).rem_euclid(DAY) / HOUR;
        at += if local_hour >= 16 {
            15 * HOUR + 17 * 60_000
        } else if local_hour < 11 {
            41 * 60_000
        } else {
            97 * 60_000
        };
    }
    assert!(
        history.len() > 100,
        "history of {center}: {} submissions",
        history.len()
    );
    // And today's, across the province: the citizen's dossier is one of them.
    let mut recent: Vec<_> = (0..12).map(|i| g.valid(now - (12 - i) * 60_000)).collect();
    recent.insert(0, first);
    let n_history = history.len();
    publish(&kafka, &history).await;
    publish(&kafka, &recent).await;
    // Two messages no schema reads: dead letters.
    for i in 0..2 {
        publish_raw(
            &kafka,
            Topic::Submitted,
            &format!("junk-{i}"),
            Some(b"not an avro message"),
        )
        .await;
    }

    // --- the operators' view of the pipeline, as `motcua run track` builds it ----------
    let ops = PipelineOperations::new(
        kafka.clone(),
        codec.clone(),
        Arc::new(LagReader::of_stages(&kafka).expect("lag reader")),
        store.clone(),
    );
    // Settled: every stage has read all it was given (twice in a row, a second apart).
    let settle = |what: &'static str| {
        let ops = &ops;
        async move {
            let deadline = Instant::now() + Duration::from_secs(180);
            let mut quiet = 0;
            while quiet < 2 {
                let lag = ops.lag().await.expect("lag");
                let busy = lag
                    .iter()
                    .filter(|l| ["intake", "verify", "payment", "route", "track"].contains(&l.stage.as_str()))
                    .any(|l| l.lag > 0 || l.committed == 0);
                quiet = if busy { 0 } else { quiet + 1 };
                assert!(Instant::now() < deadline, "{what}: the pipeline never settled: {lag:?}");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    settle("history").await;

    // The registries go down: today's next dossiers park at verify.
    let client = reqwest::Client::new();
    let down =
        serde_json::json!({"latency_ms": 0, "latency_p99_ms": 0, "error_rate": 0.0, "outages": [], "down": true});
    client
        .put(format!("{registry_url}/admin/faults"))
        .json(&down)
        .send()
        .await
        .expect("registry faults")
        .error_for_status()
        .expect("registry down");
    let waiting: Vec<_> = (0..8).map(|i| g.valid(now - (8 - i) * 30_000)).collect();
    publish(&kafka, &waiting).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let parked = loop {
        let parked = store.parked(100).await.expect("parked");
        if parked.len() >= 2 {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let again = store.parked(100).await.expect("parked");
            if again.len() == parked.len() {
                break again;
            }
            continue;
        }
        assert!(Instant::now() < deadline, "dossiers never parked: {}", parked.len());
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let parked_codes: Vec<String> = parked
        .iter()
        .map(|p| {
            codec
                .decode::<DossierAccepted>(&p.payload)
                .expect("accepted")
                .dossier_code
        })
        .collect();
    settle("parking").await;

    // --- the status API with the console ----------------------------------------------
    let key = motcua_security::access::new_api_key();
    let keys = motcua_track::access::ApiKeys::parse(&format!(
        "[[key]]\nid = \"province\"\nrole = \"province\"\ndigest = \"{}\"\n",
        motcua_security::access::api_key_digest(&key)
    ))
    .expect("key file");
    let options = motcua_track::api::ApiOptions {
        keys,
        steps: Some(Arc::new(
            motcua_routing::RoutingTables::embedded(&r).expect("routing tables"),
        )),
        operations: Some(Arc::new(ops)),
        ..Default::default()
    };
    let api = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", api.local_addr().expect("addr"));
    let router = motcua_track::api::router(pool, options, motcua_track::api::system_clock());
    let server = tokio::spawn(motcua_track::api::serve(api, router, Default::default()));

    // The citizen: a dossier of today's, routed, with the token its receipt printed.
    let statuses = collector.snapshot();
    let (code, token) = recent
        .iter()
        .find_map(|s| {
            let routed = statuses.iter().any(|r| {
                matches!(&r.event, Some(AnyEvent::Status(st)) if st.dossier_id == s.dossier.dossier_id
                    && st.status == motcua_schemas::DossierStatus::Processing)
            });
            let token = statuses.iter().find_map(|r| match &r.event {
                Some(AnyEvent::Status(st)) if st.dossier_id == s.dossier.dossier_id && st.lookup_token.is_some() => {
                    Some((st.dossier_code.clone()?, st.lookup_token.clone()?))
                }
                _ => None,
            });
            token.filter(|_| routed)
        })
        .expect("a routed dossier of today's with its lookup token");
    let citizen: serde_json::Value = client
        .post(format!("{base}/lookup"))
        .json(&serde_json::json!({"dossier_code": code, "lookup_token": token}))
        .send()
        .await
        .expect("POST /lookup")
        .json()
        .await
        .expect("json");
    assert_eq!(citizen["status"], "processing", "{citizen}");
    let step = citizen["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["current"] == true))
        .and_then(|s| s["step"].as_str())
        .expect("a current step")
        .to_owned();
    let wrong_token: String = token.chars().rev().collect();

    // --- the browser -------------------------------------------------------------------
    let shots = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/console-screenshots");
    let profile = tempfile::tempdir().expect("browser profile");
    let scenario = serde_json::json!({
        "base": base,
        "operator_key": key,
        "chromium": chromium,
        "chromedriver": chromedriver,
        "profile": profile.path(),
        "screenshots": shots,
        "citizen": {"code": code, "token": token, "wrong_token": wrong_token, "status": "processing",
                    "due_at": citizen["due_at"], "step": step},
        "stages": ["intake", "verify", "payment", "route", "track"],
        "dead_letters": {"total": 2, "reason": "BAD_MAGIC_BYTE"},
        "parked": parked_codes,
        "forecast_unit": center,
    });
    let scenario_file = profile.path().join("scenario.json");
    std::fs::write(&scenario_file, scenario.to_string()).expect("scenario");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/python/console_browser.py");
    let mut browser = python()
        .arg(script)
        .arg(&scenario_file)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the browser script");
    let mut to_browser = browser.stdin.take().expect("stdin");
    let from_browser = browser.stdout.take().expect("stdout");
    let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(from_browser).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let mut said = Vec::new();
    let live = tokio::time::timeout(Duration::from_secs(240), async {
        while let Some(line) = lines.recv().await {
            said.push(line.clone());
            if line.starts_with("LIVE ") {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    assert!(live, "the browser never reached the live check: {said:?}");
    // More submissions while the page is open (the registries are still down: they park).
    let more: Vec<_> = (0..5).map(|_| g.valid(motcua_reference::civil::now_ms())).collect();
    publish(&kafka, &more).await;
    writeln!(to_browser, "PUBLISHED {}", more.len()).expect("answer the browser");
    let done = tokio::task::spawn_blocking(move || browser.wait())
        .await
        .expect("join")
        .expect("wait");
    while let Ok(line) = lines.try_recv() {
        said.push(line);
    }
    assert!(done.success(), "the browser's checks failed ({done}): {said:?}");
    assert_eq!(said.last().map(String::as_str), Some("OK"), "{said:?}");
    println!(
        "console: {n_history} dossiers of history at {center}, {} parked, screenshots in {}",
        parked_codes.len(),
        shots.display()
    );

    running.stop(stop).await;
    server.abort();
}
