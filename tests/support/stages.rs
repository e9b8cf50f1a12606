//! The pipeline's stages in one test process, as the end-to-end tests run them: intake,
//! verify (asking the registry simulator over HTTP), payment with the gateway simulator,
//! route, and — as a test asks — the back-office simulator, result and track, each in its
//! own consumer group, dead-lettering what the workers would.

use std::sync::Arc;

use motcua_kafka::KafkaConfig;
use motcua_reference::Reference;
use motcua_registries::audit::TracingAudit;
use motcua_registries::http::{HttpConfig, HttpRegistries};
use motcua_runtime::{RunSummary, RuntimeConfig, Shutdown};
use motcua_schemas::Codec;
use motcua_simulators::backoffice::{BackOffice, BackOfficeConfig};
use motcua_simulators::gateway::{self as gateway_sim, GatewaySimConfig, GatewayStats};
use motcua_store::Store;
use tokio::task::JoinHandle;

/// Which stages a test runs beyond intake, verify, payment and route.
pub struct StageSet {
    /// Names the workers (`<label>-<stage>`), verify's audit source and result's key.
    pub label: &'static str,
    /// The officers deciding routed dossiers; `None`: nobody decides.
    pub back_office: Option<BackOfficeConfig>,
    /// Delivers decided dossiers' results to the e-wallet gateway at this base URL.
    pub result: Option<String>,
    /// Pushes status changes to the national portal at this base URL (portal-sync).
    pub portal: Option<String>,
    /// Projects every event.
    pub track: Option<motcua_track::Track>,
    pub gateway: GatewaySimConfig,
}

/// The running stages and gateway.
pub struct Running {
    pub tasks: Vec<JoinHandle<motcua_runtime::Result<RunSummary>>>,
    pub gateway: JoinHandle<Result<Arc<GatewayStats>, rdkafka::error::KafkaError>>,
}

impl Running {
    /// Stops everything and checks each stopped cleanly.
    pub async fn stop(self, stop: tokio::sync::watch::Sender<bool>) {
        let _ = stop.send(true);
        for t in self.tasks {
            t.await.expect("join").expect("stage stopped cleanly");
        }
        self.gateway.await.expect("join").expect("gateway");
    }
}

pub async fn spawn_stages(
    set: StageSet,
    kafka: &KafkaConfig,
    codec: &Codec,
    r: &Arc<Reference>,
    store: &Store,
    registry_url: &str,
    shutdown: &Shutdown,
) -> Running {
    let mut tasks = Vec::new();
    macro_rules! stage {
        ($stage:expr, $name:expr) => {{
            let mut c = RuntimeConfig::new(kafka.clone());
            c.instance_id = format!("{}-{}", set.label, $name);
            c.dead_letters_for = motcua_wiring::stage($name).map(motcua_wiring::stages::dead_letters_for);
            tasks.push(tokio::spawn(motcua_runtime::run(
                Arc::new($stage),
                codec.clone(),
                c,
                shutdown.clone(),
            )));
        }};
    }
    stage!(
        motcua_intake::Intake::new(r.clone(), store.clone(), codec.clone()),
        "intake"
    );
    let http = HttpRegistries::new(
        HttpConfig {
            base_url: registry_url.to_owned(),
            ..HttpConfig::default()
        },
        Arc::new(TracingAudit),
    )
    .expect("registries");
    stage!(
        motcua_verify::Verify::new(
            http,
            r.clone(),
            store.clone(),
            codec.clone(),
            format!("verify/{}", set.label),
            Default::default()
        ),
        "verify"
    );
    stage!(
        motcua_payment::Payment::new(
            store.clone(),
            codec.clone(),
            motcua_payment::FeeSchedule::embedded().expect("fees")
        ),
        "payment"
    );
    stage!(
        motcua_route::Route::new(r.clone(), Default::default(), store.clone(), codec.clone())
            .await
            .expect("route"),
        "route"
    );
    if let Some(office) = set.back_office {
        stage!(BackOffice::new(office), "backoffice");
    }
    // Outward clients as deployed, apart from quicker retries of parked deliveries.
    let outward = |url: &str| motcua_outward::http::HttpConfig {
        base_url: url.to_owned(),
        ..Default::default()
    };
    if let Some(wallet_url) = &set.result {
        let wallet = motcua_outward::http::HttpWallet::new("result.wallet", outward(wallet_url)).expect("wallet");
        stage!(
            motcua_result::ResultStage::new(
                motcua_result::Signer25519::insecure_demo(set.label),
                wallet,
                store.clone(),
                codec.clone(),
                format!("result/{}", set.label),
            )
            .with_settings(motcua_result::DeliverySettings {
                policy: motcua_resilience::ParkPolicy {
                    first_delay: std::time::Duration::from_millis(300),
                    max_delay: std::time::Duration::from_secs(3),
                    escalate_after: std::time::Duration::from_secs(3_600),
                },
                poll: std::time::Duration::from_millis(200),
                ..Default::default()
            }),
            "result"
        );
    }
    if let Some(portal_url) = &set.portal {
        let portal = motcua_outward::http::HttpPortal::new("portal.http", outward(portal_url)).expect("portal");
        stage!(motcua_portal_sync::PortalSync::new(portal), "portal-sync");
    }
    if let Some(track) = set.track {
        stage!(track, "track");
    }
    let gateway = tokio::spawn(gateway_sim::run(
        kafka.clone(),
        codec.clone(),
        set.gateway,
        shutdown.clone(),
    ));
    Running { tasks, gateway }
}
