//! What operators deploy next to the workers, checked with real tools: the Prometheus
//! alert rules (`promtool check rules`, and `promtool test rules` firing each alert on
//! the series that should raise it), the Grafana dashboard, and that both name only
//! metrics the code emits.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn promtool() -> String {
    std::env::var("MOTCUA_TEST_PROMTOOL").unwrap_or_else(|_| {
        panic!("MOTCUA_TEST_PROMTOOL is not set: run tests/run.sh (it installs Prometheus' promtool)")
    })
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

/// Every `motcua_…` metric name the Rust sources of the workers declare.
fn emitted_metrics() -> BTreeSet<String> {
    fn walk(dir: &Path, out: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("read source");
                out.extend(
                    metric_names(&text)
                        .into_iter()
                        .filter(|n| text.contains(&format!("\"{n}\""))),
                );
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(&root().join("pipeline"), &mut out);
    walk(&root().join("connectors"), &mut out);
    out
}

/// The `motcua_…` names in a text, histogram suffixes removed.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("motcua_") {
        let name: String = rest[i..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '_' || c.is_ascii_digit())
            .collect();
        rest = &rest[i + name.len()..];
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|b| b.ends_with("_seconds") || b.ends_with("_messages"))
            })
            .unwrap_or(&name)
            .to_owned();
        out.insert(base);
    }
    out
}

#[test]
fn the_alert_rules_are_valid_and_fire_on_what_they_watch() {
    let rules = root().join("deploy/prometheus/alerts.yaml");
    let checked = run(Command::new(promtool()).args(["check", "rules"]).arg(&rules));
    assert!(checked.contains("SUCCESS: 8 rules found"), "{checked}");
    let tested = run(Command::new(promtool())
        .args(["test", "rules", "alerts-test.yaml"])
        .current_dir(root().join("tests/prometheus")));
    assert!(tested.contains("SUCCESS"), "{tested}");
}

#[test]
fn the_dashboard_and_the_alerts_name_only_metrics_the_workers_emit() {
    let emitted = emitted_metrics();
    assert!(emitted.len() > 30, "{emitted:?}");
    let dashboard = std::fs::read_to_string(root().join("deploy/grafana/motcua-dashboard.json")).expect("dashboard");
    let json: serde_json::Value = serde_json::from_str(&dashboard).expect("the dashboard is JSON");
    let panels = json["panels"].as_array().expect("panels");
    let mut exprs = Vec::new();
    for p in panels {
        for t in p["targets"].as_array().expect("targets") {
            exprs.push(t["expr"].as_str().expect("expr").to_owned());
        }
    }
    assert!(panels.len() >= 10 && exprs.len() >= panels.len());
    let alerts = std::fs::read_to_string(root().join("deploy/prometheus/alerts.yaml")).expect("alerts");
    for (what, text) in [("dashboard", exprs.join("\n")), ("alerts", alerts)] {
        let named = metric_names(&text);
        let unknown: Vec<&String> = named.difference(&emitted).collect();
        assert!(
            unknown.is_empty(),
            "the {what} names metrics no worker emits: {unknown:?}"
        );
    }
    // What operators look at first is there: throughput and lag per stage, dead letters,
    // latency, registry breakers, dossiers at risk, the on-time rate.
    let all = exprs.join("\n");
    for needed in [
        "motcua_stage_messages_total",
        "motcua_consumer_lag_messages",
        "motcua_dead_letters_total",
        "motcua_stage_batch_duration_seconds_bucket",
        "motcua_registry_circuit_open",
        "motcua_track_deadline_warnings_total",
        "motcua_track_dossiers_at_risk",
        "motcua_result_dossiers_total",
    ] {
        assert!(all.contains(needed), "the dashboard shows no {needed}");
    }
}

#[test]
fn the_kubernetes_manifests_validate_and_scale_each_stage_on_its_own_lag_and_result_on_dossiers_at_risk() {
    let python = std::env::var("MOTCUA_TEST_PYTHON").unwrap_or_else(|_| {
        panic!("MOTCUA_TEST_PYTHON is not set: run tests/run.sh (it installs kubernetes-validate)")
    });
    // The stage table's inputs: a stage may only scale on topics it reads.
    let stages: serde_json::Map<String, serde_json::Value> = motcua_wiring::STAGES
        .iter()
        .map(|s| {
            let inputs: Vec<&str> = (s.inputs)().iter().map(|t| t.name()).collect();
            (s.name.to_owned(), serde_json::json!(inputs))
        })
        .collect();
    let out = run(Command::new(python)
        .arg(root().join("tests/python/check_manifests.py"))
        .arg(root().join("deploy/k8s"))
        .arg(serde_json::Value::Object(stages).to_string())
        // The partition count deploy/k8s assumes (`motcua topics create --partitions 12`).
        .arg("12")
        .arg(motcua_track::telemetry::TRACK_DOSSIERS_AT_RISK));
    assert!(
        out.contains("OK 14 resources valid")
            && out.contains("7 stages probed and scaled")
            && out.contains("motcua-result also on motcua_track_dossiers_at_risk")
            && out.contains("compose runs every stage"),
        "{out}"
    );
}
