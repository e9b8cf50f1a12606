//! `motcua run route` as a real process: paid dossiers in, routed dossiers out; its
//! routing tables reload on SIGHUP without a restart.

mod support;

use std::process::Stdio;
use std::time::Duration;

use motcua_reference::Reference;
use motcua_schemas::{AnyEvent, CompetentLevel, DossierPaid, ProcedureField, Topic};
use motcua_simulators::portal::Generator;
use support::*;

fn land_at_province(r: &Reference, g: &mut Generator<'_>, n: usize) -> DossierPaid {
    loop {
        let s = g.valid(NOW + n as i64 * 60_000);
        let p = r.catalog.get(&s.dossier.procedure_code).expect("catalog");
        if p.field == ProcedureField::Land && p.level == CompetentLevel::Province {
            return DossierPaid {
                event_id: format!("paid-{}", s.event_id),
                causation_id: s.event_id.clone(),
                dossier_code: format!("H22.TTHC-251125-{n:04}"),
                received_at: s.dossier.submitted_at,
                procedure: p.summary(),
                dossier: s.dossier,
                bill_reference: None,
                amount_vnd: 0,
                paid_at: NOW + 3_600_000,
                traceparent: None,
            };
        }
    }
}

fn competent_units(c: &Collector) -> Vec<String> {
    c.snapshot()
        .iter()
        .filter_map(|r| match &r.event {
            Some(AnyEvent::Routed(x)) => Some(x.competent_unit_code.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_route_worker_routes_paid_dossiers_and_reloads_its_tables_on_sighup() {
    let (_topics, kafka) = apache_kafka(2).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let departments = dir.path().join("departments.csv");
    std::fs::write(&departments, motcua_routing::EMBEDDED_DEPARTMENTS).expect("write");
    let db = format!("sqlite://{}", dir.path().join("route.db").display());
    let r = Reference::embedded().expect("reference");
    let mut g = Generator::new(&r, "22", 9).expect("province");

    let metrics_port = free_port();
    let mut worker = motcua()
        .args(["run", "route"])
        .env("MOTCUA_METRICS__LISTEN", format!("127.0.0.1:{metrics_port}"))
        .envs(kafka_env(&kafka))
        .env("MOTCUA_DATABASE__URL", &db)
        .env("MOTCUA_ROUTING__DEPARTMENTS_FILE", &departments)
        .env("MOTCUA_ROUTING__RELOAD_CHECK_S", "0")
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn motcua run route");
    let collector = Collector::start(&kafka, &[Topic::Routed]);
    let first: Vec<DossierPaid> = (0..5).map(|n| land_at_province(&r, &mut g, n)).collect();
    publish(&kafka, &first).await;
    assert!(
        collector.wait_for(Duration::from_secs(60), |s| s.len() >= 5).await,
        "first dossiers not routed"
    );
    assert!(
        competent_units(&collector).iter().all(|c| c == "S22.NNMT"),
        "{:?}",
        competent_units(&collector)
    );

    let mut text = motcua_routing::EMBEDDED_DEPARTMENTS.to_owned();
    text.push_str("22,land,DD,Văn phòng Đăng ký đất đai\n");
    std::fs::write(&departments, text).expect("write");
    let status = std::process::Command::new("kill")
        .args(["-HUP", &worker.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    // Wait for the reload to be done (its counter on the worker's /metrics).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !http_get(metrics_port, "/metrics")
        .lines()
        .any(|l| l.starts_with("motcua_route_reloads_total") && l.ends_with(" 1"))
    {
        assert!(std::time::Instant::now() < deadline, "no reload within 30 s of SIGHUP");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let second: Vec<DossierPaid> = (5..10).map(|n| land_at_province(&r, &mut g, n)).collect();
    publish(&kafka, &second).await;
    assert!(
        collector.wait_for(Duration::from_secs(60), |s| s.len() >= 10).await,
        "second dossiers not routed"
    );
    let units = competent_units(&collector);
    assert_eq!(&units[5..], ["S22.DD"; 5], "after SIGHUP: {units:?}");

    sigterm(&worker);
    assert!(wait_exit(&mut worker, Duration::from_secs(30)).success());
}
