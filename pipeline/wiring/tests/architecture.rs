//! The dependency rules of ARCHITECTURE.md, checked against the crates' manifests.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The `[dependencies]` (not dev-dependencies) of the crate in `dir`.
fn dependencies(dir: &str) -> Vec<String> {
    let path = root().join(dir).join("Cargo.toml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let manifest: toml::Table = text.parse().unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    manifest
        .get("dependencies")
        .and_then(toml::Value::as_table)
        .map(|t| t.keys().cloned().collect())
        .unwrap_or_default()
}

/// The stage crates: every folder under pipeline/stages.
fn stages() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root().join("pipeline/stages"))
        .expect("pipeline/stages")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("Cargo.toml").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The production crates: everything a deployed worker runs.
fn production_crates() -> Vec<String> {
    let mut dirs: Vec<String> = [
        "schemas",
        "connectors/kafka",
        "connectors/store",
        "connectors/registries",
        "pipeline/domain/reference",
        "pipeline/domain/routing",
        "pipeline/domain/stats",
        "pipeline/runtime",
        "pipeline/wiring",
    ]
    .map(str::to_owned)
    .to_vec();
    dirs.extend(stages().iter().map(|s| format!("pipeline/stages/{s}")));
    dirs
}

#[test]
fn production_crates_depend_on_no_simulator_and_not_on_the_demo() {
    let banned = ["simulators".to_owned(), "demo".to_owned()];
    for dir in production_crates() {
        assert_no_dependency_on(&dir, &banned);
    }
}

/// Fails when the crate in `dir` depends on one of `banned` (crate names without the
/// `motcua-` prefix).
fn assert_no_dependency_on(dir: &str, banned: &[String]) {
    let deps = dependencies(dir);
    for b in banned {
        assert!(
            !deps.iter().any(|d| *d == format!("motcua-{b}")),
            "{dir} depends on {b}"
        );
    }
}

#[test]
fn a_stage_depends_on_no_other_stage_nor_on_the_wiring() {
    let stages = stages();
    let mut banned = stages.clone();
    banned.push("wiring".to_owned());
    for stage in &stages {
        let others: Vec<String> = banned.iter().filter(|b| *b != stage).cloned().collect();
        assert_no_dependency_on(&format!("pipeline/stages/{stage}"), &others);
    }
}

#[test]
fn the_lower_layers_depend_on_no_stage_and_no_runtime() {
    let mut banned = stages();
    banned.push("runtime".to_owned());
    for dir in [
        "schemas",
        "connectors/kafka",
        "connectors/store",
        "connectors/registries",
        "pipeline/domain/reference",
        "pipeline/domain/routing",
        "pipeline/domain/stats",
    ] {
        assert_no_dependency_on(dir, &banned);
    }
}

#[test]
fn every_stage_crate_is_in_the_stage_table_and_back() {
    let names: Vec<&str> = motcua_wiring::STAGES.iter().map(|s| s.name).collect();
    let crates = stages();
    for stage in &crates {
        assert!(names.contains(&stage.as_str()), "{stage} is not in the stage table");
    }
    for name in names {
        assert!(
            crates.iter().any(|c| c == name),
            "the stage table's {name} has no crate under pipeline/stages"
        );
    }
}
