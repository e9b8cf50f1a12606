//! The whole pipeline as real processes: every stage of the stage table as `motcua run
//! <stage>`, the payment gateway and the back office as `motcua gateway-sim` and
//! `motcua backoffice-sim` (they speak Kafka), each under its own Kafka identity when the
//! cluster authenticates; the registries, the e-wallets and the national portal simulated
//! over HTTP in the test process. Workers can be SIGKILLed and restarted one by one, and
//! what the run left in Kafka is counted by a client we did not write
//! (tests/python/check_pipeline.py).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::Duration;

use motcua_reference::Reference;
use motcua_schemas::DossierSubmitted;
use motcua_simulators::portal::Generator;
use motcua_simulators::registries::{self as sim, Faults};
use motcua_simulators::world::World;

/// Every process that talks to Kafka, by role: the stages (the stage table's names) and
/// the two simulators of outside systems that publish into the flow.
pub const ROLES: [&str; 9] = [
    "intake",
    "verify",
    "payment",
    "route",
    "result",
    "track",
    "portal-sync",
    "gateway",
    "backoffice",
];

/// What the outside world does wrong, and who else takes part (the chaos harness): the
/// simulated registries, wallets and national portal fail some calls and lose some
/// acknowledgements, the back office asks for papers, and citizens (a process like any
/// other role) bring them or withdraw their dossiers.
#[derive(Debug, Clone, Default)]
pub struct Outside {
    /// Share of registry look-ups answered 503.
    pub registry_error_rate: f64,
    /// Share of wallet filings and portal changes stored, then answered 503.
    pub lost_ack_rate: f64,
    /// Share of wallet and portal calls answered 503.
    pub error_rate: f64,
    /// Share of routed dossiers the back office asks papers for.
    pub supplement_rate: f64,
    /// Citizens answer supplement requests and withdraw dossiers (`citizens-sim`).
    pub citizens: bool,
    /// How often intake stops waits no supplement answered (seconds).
    pub wait_check_s: Option<u64>,
}

/// The seed and size of the registries' synthetic world (the generator draws applicants
/// from it, so that they verify).
const WORLD_SEED: u64 = 7;
const WORLD_CITIZENS: u64 = 50_000;

/// How a role reaches Kafka: the environment that configures its `[kafka]` section.
pub type KafkaEnv = Box<dyn Fn(&str) -> Vec<(String, String)> + Send + Sync>;

pub struct ProcessPipeline {
    pub dir: tempfile::TempDir,
    pub db: String,
    common: Vec<(String, String)>,
    kafka_env: KafkaEnv,
    pub workers: BTreeMap<&'static str, Child>,
    /// Each role's Prometheus port (/metrics, /healthz, /readyz).
    pub metrics_ports: BTreeMap<&'static str, u16>,
    /// SIGKILLs per role.
    pub kills: BTreeMap<&'static str, u32>,
    /// Processes that exited by themselves and were started again (as a supervisor
    /// does), with the last line each wrote.
    pub restarts: Vec<String>,
    _http: Vec<tokio::task::JoinHandle<()>>,
    world: World,
    outside: Outside,
    /// The roles running: [`ROLES`], and the citizens when they take part.
    pub roles: Vec<&'static str>,
    /// The simulated national portal's base URL.
    pub portal_url: String,
}

impl ProcessPipeline {
    /// Starts the HTTP simulators and every role, each with `kafka_env(role)`.
    pub async fn start(kafka_env: KafkaEnv) -> Self {
        Self::start_with(kafka_env, Outside::default()).await
    }

    /// Like [`ProcessPipeline::start`], with the outside world's faults and actors.
    pub async fn start_with(kafka_env: KafkaEnv, outside: Outside) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = motcua_store::testing::scratch_postgres_url().await;
        let r = Reference::embedded().expect("reference");
        let world = World::for_province(&r.units, "22", WORLD_SEED, WORLD_CITIZENS).expect("world");
        let registry_faults = Faults {
            error_rate: outside.registry_error_rate,
            ..Faults::default()
        };
        let (registry_url, registries) = sim::spawn(world.clone(), registry_faults)
            .await
            .expect("registry simulator");
        let remote = Faults {
            error_rate: outside.error_rate,
            ..Faults::default()
        };
        let wallet_faults = motcua_simulators::wallet::WalletFaults {
            common: remote.clone(),
            lost_ack_rate: outside.lost_ack_rate,
            ..Default::default()
        };
        let (wallet_url, wallet) = motcua_simulators::wallet::spawn(wallet_faults, 3)
            .await
            .expect("wallet simulator");
        let portal_faults = motcua_simulators::national_portal::PortalFaults {
            common: remote,
            lost_ack_rate: outside.lost_ack_rate,
        };
        let (portal_url, portal) = motcua_simulators::national_portal::spawn(portal_faults, 3)
            .await
            .expect("portal simulator");
        let key = dir.path().join("result.key");
        let jwks = dir.path().join("jwks.json");
        let out = super::motcua()
            .arg("result-key")
            .arg(&key)
            .args(["--kid", "chaos-1", "--jwks"])
            .arg(&jwks)
            .output()
            .expect("result-key");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let path = |p: &PathBuf| p.display().to_string();
        let common = [
            ("MOTCUA_DATABASE__URL", db.clone()),
            ("MOTCUA_REGISTRIES__HTTP__BASE_URL", registry_url),
            ("MOTCUA_RESULT__WALLET__BASE_URL", wallet_url),
            ("MOTCUA_RESULT__SIGNING_KEY_FILE", path(&key)),
            ("MOTCUA_RESULT__SIGNING_KEY_ID", "chaos-1".to_owned()),
            ("MOTCUA_RESULT__JWKS_FILE", path(&jwks)),
            ("MOTCUA_RESULT__FIRST_RETRY_MS", "300".to_owned()),
            ("MOTCUA_PORTAL__HTTP__BASE_URL", portal_url.clone()),
            ("MOTCUA_VERIFY__FIRST_RETRY_MS", "300".to_owned()),
            ("MOTCUA_TRACK__API_LISTEN", String::new()),
            // Each role joins its group under its name, as the Kubernetes manifests run
            // them: restarted, it takes its partitions back at once.
            ("MOTCUA_RUNTIME__STATIC_MEMBERSHIP", "true".to_owned()),
            ("MOTCUA_KAFKA__SESSION_TIMEOUT_MS", "10000".to_owned()),
            ("MOTCUA_RUNTIME__DRAIN_TIMEOUT_MS", "5000".to_owned()),
        ]
        .into_iter()
        .chain(
            outside
                .wait_check_s
                .map(|s| ("MOTCUA_INTAKE__SUPPLEMENT_CHECK_S", s.to_string())),
        )
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let mut roles = ROLES.to_vec();
        if outside.citizens {
            roles.push("citizens");
        }
        let mut p = Self {
            dir,
            db,
            common,
            kafka_env,
            workers: BTreeMap::new(),
            metrics_ports: BTreeMap::new(),
            kills: BTreeMap::new(),
            restarts: Vec::new(),
            _http: vec![registries, wallet, portal],
            world,
            outside,
            roles,
            portal_url,
        };
        for role in p.roles.clone() {
            p.spawn(role);
        }
        p
    }

    /// Every role on `kafka`'s brokers and topics, under one identity.
    pub async fn on(kafka: &motcua_kafka::KafkaConfig) -> Self {
        let env: Vec<(String, String)> = super::kafka_env(kafka)
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        Self::start(Box::new(move |_| env.clone())).await
    }

    /// `n` valid submissions whose applicants the registries know.
    pub fn submissions(&self, n: usize, seed: u64) -> Vec<DossierSubmitted> {
        let r = Reference::embedded().expect("reference");
        let mut g = Generator::new(&r, "22", seed)
            .expect("province")
            .with_world(&self.world);
        (0..n as i64).map(|i| g.valid(super::NOW + i * 1_000)).collect()
    }

    /// `n` submissions, most valid; of every 50, four lack a document (intake asks the
    /// citizen for it) and one has a malformed citizen id (rejected at reception).
    pub fn mixed_submissions(&self, n: usize, seed: u64) -> Vec<DossierSubmitted> {
        use motcua_simulators::portal::Defect;
        let r = Reference::embedded().expect("reference");
        let mut g = Generator::new(&r, "22", seed)
            .expect("province")
            .with_world(&self.world);
        (0..n as i64)
            .map(|i| {
                let at = super::NOW + i * 1_000;
                match i % 50 {
                    7 | 19 | 31 | 43 => g.defective(at, Defect::MissingDocument),
                    25 => g.defective(at, Defect::BadCitizenId),
                    _ => g.valid(at),
                }
            })
            .collect()
    }

    fn args(&self, role: &str) -> Vec<String> {
        let args: Vec<String> = match role {
            // Fails, duplicates and reorders some confirmations, quickly.
            "gateway" => ["gateway-sim", "--min-delay-ms", "10", "--max-delay-ms", "300"]
                .map(str::to_owned)
                .to_vec(),
            // Without citizens nobody would bring papers the back office asked for.
            "backoffice" => vec![
                "backoffice-sim".to_owned(),
                "--supplement-rate".to_owned(),
                self.outside.supplement_rate.to_string(),
            ],
            "citizens" => ["citizens-sim", "--answer-rate", "0.7", "--withdraw-rate", "0.05"]
                .map(str::to_owned)
                .to_vec(),
            stage => vec!["run".to_owned(), stage.to_owned()],
        };
        args
    }

    /// Starts `role`'s process (again).
    pub fn spawn(&mut self, role: &'static str) {
        let port = *self.metrics_ports.entry(role).or_insert_with(super::free_port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("{role}.log")))
            .expect("log file");
        let child = super::motcua()
            .args(self.args(role))
            .envs(self.common.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .envs((self.kafka_env)(role))
            .env("MOTCUA_RUNTIME__INSTANCE_ID", role)
            .env("MOTCUA_METRICS__LISTEN", format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {role}: {e}"));
        self.workers.insert(role, child);
    }

    /// SIGKILLs `role`'s process and starts it again.
    pub fn kill_and_restart(&mut self, role: &'static str) {
        if let Some(mut c) = self.workers.remove(role) {
            super::sigkill(&mut c);
        }
        *self.kills.entry(role).or_default() += 1;
        self.spawn(role);
    }

    /// What `role` has written to its standard error so far.
    pub fn log(&self, role: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{role}.log"))).unwrap_or_default()
    }

    /// Starts again every process that exited by itself (a worker stops non-zero for
    /// failures a restart mends; Kubernetes restarts it), recording why.
    pub fn supervise(&mut self) {
        let exited: Vec<(&'static str, std::process::ExitStatus)> = self
            .workers
            .iter_mut()
            .filter_map(|(role, c)| c.try_wait().ok().flatten().map(|s| (*role, s)))
            .collect();
        for (role, status) in exited {
            let log = self.log(role);
            let last = log
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .to_owned();
            // Its port was taken while it was down (anything may bind a free port): a
            // supervisor would give the new instance another.
            if last.contains("Address already in use") {
                self.metrics_ports.remove(role);
            }
            self.restarts.push(format!("{role} ({status}): {last}"));
            self.spawn(role);
        }
    }

    /// Waits until `done` holds for what `collector` read, at most `timeout`, restarting
    /// meanwhile whatever exited; returns whether it held.
    pub async fn wait_for(
        &mut self,
        collector: &super::Collector,
        timeout: Duration,
        mut done: impl FnMut(&[super::Read]) -> bool,
    ) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            self.supervise();
            if collector.wait_for(Duration::from_millis(500), &mut done).await {
                return true;
            }
            if std::time::Instant::now() > deadline {
                return false;
            }
        }
    }

    /// Lets the pipeline run for `d`, restarting whatever exits.
    pub async fn run_for(&mut self, collector: &super::Collector, d: Duration) {
        self.wait_for(collector, d, |_| false).await;
    }

    /// The roles whose process has exited, with its status and last log lines.
    pub fn exited(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        for (role, c) in &mut self.workers {
            if let Ok(Some(status)) = c.try_wait() {
                let log = std::fs::read_to_string(self.dir.path().join(format!("{role}.log"))).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(5).collect();
                out.push(format!("{role} exited ({status}): {tail:?}"));
            }
        }
        out
    }

    /// SIGTERMs every process and checks each ends cleanly.
    pub fn stop(&mut self) {
        for c in self.workers.values() {
            super::sigterm(c);
        }
        let mut unclean = Vec::new();
        for (role, mut c) in std::mem::take(&mut self.workers) {
            let status = super::wait_exit(&mut c, Duration::from_secs(60));
            if !status.success() {
                unclean.push(format!("{role}: {status}\n{}", self.log(role)));
            }
        }
        assert!(
            unclean.is_empty(),
            "workers that did not stop cleanly:\n{}",
            unclean.join("\n")
        );
    }
}

impl Drop for ProcessPipeline {
    fn drop(&mut self) {
        for c in self.workers.values_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            for role in self.roles.clone() {
                let log = self.log(role);
                let tail: Vec<&str> = log.lines().rev().take(15).collect();
                eprintln!("--- {role}'s last log lines:");
                for l in tail.into_iter().rev() {
                    eprintln!("{l}");
                }
            }
        }
    }
}

/// The dossiers `settled` does not count, of those with a status read, each told as
/// [`story`] tells it: what a failing wait prints, to set the collector's view beside
/// the checker's.
pub fn unsettled_stories(seen: &[super::Read], at_most: usize) -> String {
    use motcua_schemas::AnyEvent;
    let mut ids: Vec<&str> = Vec::new();
    for r in seen {
        if let Some(AnyEvent::Status(s)) = &r.event {
            if !ids.contains(&s.dossier_id.as_str()) {
                ids.push(s.dossier_id.as_str());
            }
        }
    }
    let with_status = ids.len();
    let stories: Vec<String> = ids
        .into_iter()
        .filter(|id| {
            let mine: Vec<super::Read> = seen.iter().filter(|r| r.key.as_deref() == Some(*id)).cloned().collect();
            settled(&mine) == 0
        })
        .take(at_most)
        .map(|id| story(seen, id))
        .collect();
    let undecoded = seen.iter().filter(|r| r.event.is_none()).count();
    format!(
        "{} messages read, {undecoded} did not decode; {with_status} dossiers with a status read\n{}",
        seen.len(),
        stories.join("\n")
    )
}

/// What the topics say of one dossier, in the order read: topic, event id, and for a
/// status its stage, code and reasons.
pub fn story(seen: &[super::Read], dossier_id: &str) -> String {
    use motcua_schemas::AnyEvent;
    let mut lines = vec![format!("dossier {dossier_id}:")];
    for r in seen {
        let Some(e) = &r.event else { continue };
        if r.key.as_deref() != Some(dossier_id) {
            continue;
        }
        let what = match e {
            AnyEvent::Status(s) => format!(
                "{} {} {:?}",
                s.stage,
                s.status_code,
                s.reasons.iter().map(|r| r.code.as_str()).collect::<Vec<_>>()
            ),
            _ => String::new(),
        };
        lines.push(format!("  {:<28} {} {what}", r.topic.name(), e.event_id()));
    }
    lines.join("\n")
}

/// Dossiers settled in what a collector read of dossier.status: ended (rejected,
/// withdrawn, stopped, result returned) or, by the last status a step announced, waiting
/// on the citizen for papers. The first copy of an event id counts, as for the checker: a
/// copy re-emitted after a kill (an intake's "received" again, after verify asked for
/// papers) is not the step's last word.
pub fn settled(seen: &[super::Read]) -> usize {
    use motcua_schemas::{AnyEvent, DossierStatus};
    let mut last: std::collections::HashMap<&str, (bool, DossierStatus)> = std::collections::HashMap::new();
    let mut first = std::collections::HashSet::new();
    for r in seen {
        if let Some(AnyEvent::Status(s)) = &r.event {
            // Track's warnings repeat the status the projection held: not a step's word.
            if s.stage == "track" || !first.insert(s.event_id.as_str()) {
                continue;
            }
            let ended = !s.status.is_open() && s.status != DossierStatus::Completed;
            let e = last.entry(s.dossier_id.as_str()).or_insert((false, s.status));
            e.0 |= ended;
            e.1 = s.status;
        }
    }
    last.values()
        .filter(|(ended, status)| *ended || *status == DossierStatus::SupplementRequested)
        .count()
}

/// What tests/python/check_pipeline.py counted (see its docstring).
pub struct PipelineCount(pub serde_json::Value);

impl PipelineCount {
    /// Runs the checker against `bootstrap` (a plaintext listener) and `prefix`, with the
    /// dossier ids that were submitted.
    pub fn take(bootstrap: &str, prefix: &str, expected: &[String]) -> Self {
        Self::take_with_ends(bootstrap, prefix, expected).0
    }

    /// Like [`PipelineCount::take`], with each ended dossier's ending status code.
    pub fn take_with_ends(
        bootstrap: &str,
        prefix: &str,
        expected: &[String],
    ) -> (Self, std::collections::HashMap<String, i32>) {
        let file = tempfile::NamedTempFile::new().expect("tempfile");
        let ends = tempfile::NamedTempFile::new().expect("tempfile");
        std::fs::write(file.path(), expected.join("\n")).expect("expected ids");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/python/check_pipeline.py");
        let out = super::python()
            .arg(script)
            .args(["--bootstrap", bootstrap, "--prefix", prefix, "--expected"])
            .arg(file.path())
            .arg("--ends")
            .arg(ends.path())
            .output()
            .expect("run check_pipeline.py");
        assert!(
            out.status.success(),
            "check_pipeline.py: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let ended = serde_json::from_slice(&std::fs::read(ends.path()).expect("ends")).expect("ends JSON");
        (
            Self(serde_json::from_slice(&out.stdout).expect("JSON from check_pipeline.py")),
            ended,
        )
    }

    pub fn dossiers(&self, field: &str) -> i64 {
        self.0["dossiers"][field].as_i64().unwrap_or(-1)
    }

    /// Messages of `topic` beyond the first of their event id.
    pub fn repeated(&self, topic: motcua_schemas::Topic) -> i64 {
        self.0["topics"][topic.name()]["repeated"].as_i64().unwrap_or(0)
    }

    /// Summed over the topics motcua writes.
    pub fn topics(&self, field: &str) -> i64 {
        self.0["topics"]
            .as_object()
            .expect("topics")
            .values()
            .filter(|t| t["own"] == true)
            .map(|t| t[field].as_i64().unwrap_or(0))
            .sum()
    }

    /// The pipeline's promises: every dossier ended, once, nothing after its end, every
    /// repeated event byte-identical. A dossier asked for papers waits on its citizen
    /// (these runs have no citizen who brings them).
    pub fn assert_sound(&self) {
        let d = &self.0["dossiers"];
        assert_eq!(
            self.dossiers("not_ended"),
            self.dossiers("waiting_on_citizen"),
            "dossiers that did not end: {d}"
        );
        assert_eq!(self.dossiers("ended_twice"), 0, "dossiers that ended twice: {d}");
        assert_eq!(self.dossiers("after_end"), 0, "statuses after a dossier's end: {d}");
        assert_eq!(
            self.topics("differing"),
            0,
            "event ids with differing copies: {}",
            self.0
        );
    }
}
