//! What a person typing the wrong thing sees: a clear message and a non-zero exit, never
//! a panic.

mod support;

use support::motcua;

fn run(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let mut c = motcua();
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().expect("run motcua");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn no_panic(stderr: &str) {
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
}

#[test]
fn help_explains_the_commands() {
    let (ok, out, _) = run(&["--help"], &[]);
    assert!(ok);
    for cmd in ["run", "topics", "publish", "generate", "demo"] {
        assert!(out.contains(cmd), "{cmd} missing from --help:\n{out}");
    }
    let (ok, out, _) = run(&["run", "--help"], &[]);
    assert!(ok);
    assert!(out.contains("SIGTERM") && out.contains("intake"), "{out}");
}

#[test]
fn an_unknown_stage_is_refused() {
    let (ok, _, err) = run(&["run", "intak"], &[]);
    assert!(!ok);
    assert!(err.contains("invalid value 'intak'") && err.contains("intake"), "{err}");
    no_panic(&err);
}

#[test]
fn an_unknown_config_key_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("motcua.toml");
    std::fs::write(&cfg, "[kafka]\nbrokers = \"localhost:9092\"\nlinger = 5\n").expect("write");
    let (ok, _, err) = run(&["run", "intake", "--config", cfg.to_str().expect("utf-8")], &[]);
    assert!(!ok);
    assert!(err.contains("unknown field `linger`"), "{err}");
    no_panic(&err);
}

#[test]
fn a_bad_environment_value_is_named() {
    let (ok, _, err) = run(&["run", "intake"], &[("MOTCUA_RUNTIME__MAX_BATCH", "lots")]);
    assert!(!ok);
    assert!(err.contains("max_batch") || err.contains("invalid type"), "{err}");
    let (ok, _, err) = run(&["run", "intake"], &[("MOTCUA_KAFKA__BROKERS", "no-port")]);
    assert!(!ok);
    assert!(err.contains("'no-port' is not host:port"), "{err}");
    no_panic(&err);
}

#[test]
fn a_missing_config_file_is_named() {
    let (ok, _, err) = run(&["run", "intake", "--config", "/nonexistent/motcua.toml"], &[]);
    assert!(!ok);
    assert!(
        err.contains("cannot read config file /nonexistent/motcua.toml"),
        "{err}"
    );
}

#[test]
fn publish_dry_run_reports_bad_lines_by_number() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("d.jsonl");
    let (ok, good, _) = run(&["generate", "--count", "2"], &[]);
    assert!(ok);
    let mut text = good.clone();
    text.push_str("{\"dossier_id\": \"x\"}\n");
    text.push_str("not json\n");
    std::fs::write(&file, text).expect("write");
    let (ok, out, err) = run(&["publish", "--dry-run", file.to_str().expect("utf-8")], &[]);
    assert!(!ok, "refused lines make the exit status non-zero");
    assert_eq!(out.trim(), "2 valid, 2 refused");
    assert!(err.contains("line 3: missing field"), "{err}");
    assert!(err.contains("line 4: expected"), "{err}");
    no_panic(&err);
}

#[test]
fn topics_list_shows_subjects_and_ids() {
    let (ok, out, _) = run(&["topics", "list"], &[]);
    assert!(ok);
    assert!(out.contains("dossier.status-value"), "{out}");
    let topics = motcua_schemas::Topic::ALL.len();
    assert_eq!(out.lines().count(), 1 + topics, "header + {topics} topics:\n{out}");
}

#[test]
fn the_registry_simulator_serves_its_world_over_http() {
    let port = support::free_port();
    let mut sim = motcua()
        .args([
            "registry-sim",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--citizens",
            "5000",
            "--seed",
            "3",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn registry-sim");
    let units = motcua_reference::AdminUnits::embedded().expect("units");
    let world = motcua_simulators::world::World::for_province(&units, "22", 3, 5_000).expect("world");
    let citizen = world.citizen(42);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "simulator did not listen");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let body = support::http_get(port, &format!("/v1/citizens/{}", citizen.citizen_id));
    let _ = sim.kill();
    let _ = sim.wait();
    let got: motcua_registries::Citizen = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(got, citizen);
}

#[test]
fn bad_simulator_flags_are_explained() {
    let (ok, _, err) = run(&["registry-sim", "--error-rate", "2"], &[]);
    assert!(!ok);
    assert!(err.contains("error rate 2 must be between 0 and 1"), "{err}");
    let (ok, _, err) = run(&["registry-sim", "--outage", "soon"], &[]);
    assert!(!ok);
    assert!(err.contains("must be START+DURATION"), "{err}");
    no_panic(&err);
}

#[test]
fn api_key_mistakes_are_explained_and_leave_the_key_file_loadable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("keys.toml");
    let f = file.to_str().expect("utf-8");
    let (ok, key, err) = run(
        &["api-key", "add", "--file", f, "--id", "province", "--role", "province"],
        &[],
    );
    assert!(ok, "{err}");
    assert!(key.trim().starts_with("motcua_"), "{key}");
    for (args, says) in [
        (vec!["--id", "x", "--role", "unit"], "a unit key needs --unit"),
        (
            vec!["--id", "x", "--role", "province", "--unit", "06652"],
            "has no unit",
        ),
        (vec!["--id", "province", "--role", "province"], "appears twice"),
        (vec!["--id", "a b", "--role", "province"], "id must be"),
    ] {
        let mut all = vec!["api-key", "add", "--file", f];
        all.extend(args);
        let (ok, _, err) = run(&all, &[]);
        assert!(!ok, "{all:?}");
        assert!(err.contains(says), "{all:?}: {err}");
        no_panic(&err);
    }
    let text = std::fs::read_to_string(&file).expect("key file");
    assert_eq!(
        text.matches("[[key]]").count(),
        1,
        "refused keys were not written: {text}"
    );
    assert!(!text.contains(key.trim()), "only the digest is stored");

    // A worker with a broken key file says which file and what is wrong.
    std::fs::write(
        &file,
        "[[key]]\nid = \"p\"\nrole = \"province\"\ndigest = \"motcua_plain\"\n",
    )
    .expect("write");
    let (ok, _, err) = run(
        &["run", "track"],
        &[
            ("MOTCUA_TRACK__API_KEYS_FILE", f),
            (
                "MOTCUA_DATABASE__URL",
                &format!("sqlite://{}", dir.path().join("t.db").display()),
            ),
            ("MOTCUA_TRACK__API_LISTEN", "127.0.0.1:0"),
        ],
    );
    assert!(!ok);
    assert!(
        err.contains("track.api_keys_file") && err.contains("digest must be"),
        "{err}"
    );
    no_panic(&err);
}

#[test]
fn an_otlp_endpoint_that_is_not_a_url_is_refused_before_anything_runs() {
    let (ok, out, err) = run(
        &["topics", "list"],
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318")],
    );
    assert!(!ok && out.is_empty(), "{out}");
    no_panic(&err);
    assert!(
        err.contains("OTEL_EXPORTER_OTLP_ENDPOINT = 'collector:4318' is not an http:// or https:// URL"),
        "{err}"
    );
    // Turned off, the same endpoint is not looked at.
    let (ok, _, err) = run(
        &["topics", "list"],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318"),
            ("OTEL_SDK_DISABLED", "true"),
        ],
    );
    assert!(ok, "{err}");
}
