//! The client against a real Confluent-compatible registry server (`rivven-schema`,
//! which tests/run.sh installs and names in MOTCUA_TEST_SCHEMA_REGISTRY), over HTTP.

use motcua_schema_registry::testing::RegistryServer;
use motcua_schema_registry::{Compatibility, RegistryConfig, SchemaRegistry};

const V1: &str = include_str!("../../../schemas/avro/dossier.status.v1.avsc");
const V2: &str = include_str!("../../../schemas/avro/dossier.status.v2.avsc");
const V3: &str = include_str!("../../../schemas/avro/dossier.status.v3.avsc");
const SUBJECT: &str = "dossier.status-value";

fn start() -> RegistryServer {
    RegistryServer::start()
}

fn same_schema(a: &str, b: &str) -> bool {
    let parse = |s: &str| serde_json::from_str::<serde_json::Value>(s).expect("schema JSON");
    parse(a) == parse(b)
}

#[tokio::test]
async fn schemas_are_registered_in_order_resolved_by_id_and_incompatible_ones_refused() {
    let server = start();
    let registry = SchemaRegistry::new(&RegistryConfig::new(&server.url)).expect("client");
    assert!(registry.versions(SUBJECT).await.expect("versions").is_empty());
    // rivven-schema 0.0.22 wrongly finds `["null", {"type": "long", "logicalType":
    // "timestamp-millis"}]` incompatible with itself ("Writer union variant
    // TimestampMillis not compatible with any reader variant"; and its --compatibility
    // flag does not change the global level), so our subject is registered with its
    // check off; compatibility is tested below on a subject without logical types
    // (apache-avro checks our own versions, schemas/src/tests.rs).
    registry
        .set_compatibility(SUBJECT, Compatibility::None)
        .await
        .expect("compatibility");
    let mut ids = Vec::new();
    for schema in [V1, V2, V3] {
        ids.push(registry.register(SUBJECT, schema).await.expect("register"));
    }
    assert!(
        ids.windows(2).all(|w| w[0] != w[1]),
        "three versions, three ids: {ids:?}"
    );
    assert_eq!(
        registry.register(SUBJECT, V2).await.expect("again"),
        ids[1],
        "a known schema keeps its id"
    );
    assert_eq!(registry.versions(SUBJECT).await.expect("versions"), [1, 2, 3]);
    assert!(registry
        .subjects()
        .await
        .expect("subjects")
        .contains(&SUBJECT.to_owned()));
    let (id, text) = registry.version(SUBJECT, 2).await.expect("version 2");
    assert_eq!(id, ids[1]);
    assert!(same_schema(&text, V2));

    // A fresh client (a consumer that never registered anything) resolves writer ids.
    let consumer = SchemaRegistry::new(&RegistryConfig::new(&server.url)).expect("client");
    for (id, schema) in ids.iter().zip([V1, V2, V3]) {
        assert!(
            same_schema(&consumer.schema(*id).await.expect("by id"), schema),
            "id {id}"
        );
    }

    // Compatibility, on a subject the server checks correctly: a new version must read
    // every older one (BACKWARD_TRANSITIVE); a required field without a default cannot.
    let probe = "compatibility-probe-value";
    let record = |fields: serde_json::Value| {
        serde_json::json!({"type": "record", "name": "Probe", "namespace": "vn.motcua.test", "fields": fields})
            .to_string()
    };
    let first = record(serde_json::json!([{"name": "code", "type": "string"}]));
    assert!(
        registry.check_compatibility(probe, &first).await.expect("check").0,
        "a new subject accepts anything"
    );
    registry.register(probe, &first).await.expect("v1");
    registry
        .set_compatibility(probe, Compatibility::BackwardTransitive)
        .await
        .expect("compatibility");
    let additive = record(serde_json::json!([{"name": "code", "type": "string"},
        {"name": "note", "type": ["null", "string"], "default": null}]));
    assert!(registry.check_compatibility(probe, &additive).await.expect("check").0);
    registry.register(probe, &additive).await.expect("v2");
    let breaking = record(serde_json::json!([{"name": "code", "type": "string"}, {"name": "priority", "type": "int"}]));
    let (ok, messages) = registry.check_compatibility(probe, &breaking).await.expect("check");
    assert!(!ok);
    assert!(messages.iter().any(|m| m.contains("priority")), "{messages:?}");
    let refused = registry.register(probe, &breaking).await.expect_err("refused");
    assert!(refused.is_incompatible(), "{refused}");
    assert_eq!(registry.versions(probe).await.expect("versions"), [1, 2]);

    // The registry goes down: ids already resolved still are; others fail clearly.
    drop(server);
    for (id, schema) in ids.iter().zip([V1, V2, V3]) {
        assert!(same_schema(&consumer.schema(*id).await.expect("cached"), schema));
    }
    let down = consumer.schema(999).await.expect_err("down");
    assert!(down.is_unreachable(), "{down}");
    assert!(down.to_string().contains("unreachable"), "{down}");
}
