use apache_avro::schema_compatibility::SchemaCompatibility;

use super::*;

fn codec() -> Codec {
    Codec::embedded().expect("embedded schemas parse")
}

#[test]
fn every_topic_has_a_schema_and_every_file_is_in_the_table() {
    let set = SchemaSet::embedded().expect("table");
    for t in Topic::ALL {
        assert_eq!(set.latest(t).subject, t.value_subject());
    }
    for (file, _) in embedded::SCHEMA_FILES {
        let listed = Topic::ALL
            .iter()
            .flat_map(|t| set.history(&t.value_subject()))
            .any(|v| v.file == *file);
        assert!(listed, "{file} is not listed in schema-ids.csv");
    }
}

#[test]
fn every_event_round_trips_through_its_schema() {
    let c = codec();
    let all = samples::one_of_each(&c).expect("every sample encodes");
    assert_eq!(all.len(), Topic::ALL.len());
    for (topic, bytes) in &all {
        assert_eq!(bytes[0], 0, "{topic}: magic byte");
        let id = Codec::schema_id(bytes).expect("header");
        assert_eq!(id, c.schemas().latest(*topic).id);
        // Decode, then re-encode: a lossless round trip per topic.
        let event = AnyEvent::decode(&c, *topic, bytes).expect("decode");
        assert_eq!(event.topic(), *topic);
        let mut again = Vec::new();
        event.encode(&c, &mut again).expect("re-encode");
        assert_eq!(&again, bytes, "{topic}: decode then encode changes the bytes");
    }
}

#[test]
fn decoded_values_equal_the_originals() {
    let c = codec();
    let s = samples::submitted();
    let back: DossierSubmitted = c.decode(&c.encode(&s).expect("encode")).expect("decode");
    assert_eq!(back, s);
    let a = samples::accepted();
    let back: DossierAccepted = c.decode(&c.encode(&a).expect("encode")).expect("decode");
    assert_eq!(back, a);
}

#[test]
fn malformed_frames_are_classified() {
    let c = codec();
    assert!(matches!(
        c.decode::<DossierSubmitted>(b"{}"),
        Err(Error::TooShort { .. })
    ));
    assert!(matches!(
        c.decode::<DossierSubmitted>(b"{\"dossier\": 1}"),
        Err(Error::BadMagic(b'{'))
    ));
    assert!(matches!(
        c.decode::<DossierSubmitted>(&[0, 0, 0, 0x30, 0x39, 1, 2]),
        Err(Error::UnknownSchemaId { id: 12345 })
    ));
    // A valid status event is not a submission.
    let status = samples::one_of_each(&c).expect("samples").remove(9).1;
    assert!(matches!(
        c.decode::<DossierSubmitted>(&status),
        Err(Error::WrongSubject { .. })
    ));
    // A truncated body fails to decode rather than yielding a partial dossier.
    let mut cut = c.encode(&samples::submitted()).expect("encode");
    cut.truncate(cut.len() / 2);
    assert!(matches!(c.decode::<DossierSubmitted>(&cut), Err(Error::Decode { .. })));
    let mut long = c.encode(&samples::submitted()).expect("encode");
    long.push(7);
    assert!(matches!(
        c.decode::<DossierSubmitted>(&long),
        Err(Error::TrailingBytes { .. })
    ));
}

/// BACKWARD compatibility, as a Schema Registry checks it: each version of a subject must
/// read data written with the version before it.
#[test]
fn every_schema_is_backward_compatible_with_its_previous_version() {
    let set = SchemaSet::embedded().expect("table");
    let mut checked = 0;
    for t in Topic::ALL {
        let history = set.history(&t.value_subject());
        assert!(!history.is_empty());
        for pair in history.windows(2) {
            let (old, new) = (pair[0], pair[1]);
            assert_eq!(
                new.version,
                old.version + 1,
                "{}: versions must be consecutive",
                new.subject
            );
            SchemaCompatibility::can_read(&old.schema, &new.schema)
                .unwrap_or_else(|e| panic!("{} v{} cannot read v{}: {e}", new.subject, new.version, old.version));
            checked += 1;
        }
    }
    // The checker itself must reject a breaking change, or the loop above proves nothing.
    let old = apache_avro::Schema::parse_str(r#"{"type":"record","name":"R","fields":[{"name":"a","type":"string"}]}"#)
        .expect("parse");
    let breaking = apache_avro::Schema::parse_str(
        r#"{"type":"record","name":"R","fields":[{"name":"a","type":"string"},{"name":"b","type":"long"}]}"#,
    )
    .expect("parse");
    let additive = apache_avro::Schema::parse_str(
        r#"{"type":"record","name":"R","fields":[{"name":"a","type":"string"},{"name":"b","type":"long","default":0}]}"#,
    )
    .expect("parse");
    assert!(SchemaCompatibility::can_read(&old, &breaking).is_err());
    assert!(SchemaCompatibility::can_read(&old, &additive).is_ok());
    assert!(checked >= 1, "no subject has a second version to check");
}

/// Schema resolution in the codec: a message written with dossier.status v1 (before
/// `procedure_code` existed) still decodes, with the new field at its default.
#[test]
fn old_writer_versions_decode_into_the_latest_type() {
    let c = codec();
    let v1 = c
        .schemas()
        .history("dossier.status-value")
        .into_iter()
        .find(|v| v.version == 1)
        .expect("v1")
        .clone();
    let latest = c.schemas().latest(Topic::Status).clone();
    assert!(latest.version > 1);
    // Write a v1 record by hand, as an old producer would have.
    #[derive(serde::Serialize)]
    struct StatusV1<'a> {
        event_id: &'a str,
        causation_id: Option<&'a str>,
        dossier_id: &'a str,
        dossier_code: Option<&'a str>,
        status: DossierStatus,
        status_code: i32,
        stage: &'a str,
        reasons: Vec<Reason>,
        unit_code: Option<&'a str>,
        due_at: Option<i64>,
        occurred_at: i64,
        traceparent: Option<&'a str>,
    }
    let old = StatusV1 {
        event_id: "e",
        causation_id: None,
        dossier_id: "d",
        dossier_code: Some("H22.06652-251125-0001"),
        status: DossierStatus::Received,
        status_code: 2,
        stage: "intake",
        reasons: vec![],
        unit_code: None,
        due_at: None,
        occurred_at: 5,
        traceparent: None,
    };
    let mut bytes = vec![0];
    bytes.extend_from_slice(&v1.id.to_be_bytes());
    apache_avro::write_avro_datum_ref(&v1.schema, &old, &mut bytes).expect("v1 encode");
    let read: DossierStatusChanged = c.decode(&bytes).expect("v1 message decodes");
    assert_eq!(read.procedure_code, None);
    assert_eq!(read.lookup_token, None, "v3's lookup token defaults to none");
    assert_eq!(read.dossier_code.as_deref(), Some("H22.06652-251125-0001"));
    assert_eq!(read.status, DossierStatus::Received);
}

#[test]
fn derived_event_ids_are_deterministic_and_distinct() {
    let a = derived_event_id("e1", "intake", "accepted");
    assert_eq!(a, derived_event_id("e1", "intake", "accepted"));
    assert_ne!(a, derived_event_id("e1", "intake", "status"));
    assert_ne!(a, derived_event_id("e2", "intake", "accepted"));
}

#[test]
fn the_status_table_gives_each_status_its_national_code_and_back() {
    use crate::DossierStatus;
    for (i, s) in DossierStatus::ALL.into_iter().enumerate() {
        // ALL is read off the table: this checks the table is in declaration order.
        assert_eq!(s as usize, i, "{s:?} is out of place in the status table");
        assert_eq!(s.code(), i as i32 + 1, "{s:?}");
        assert_eq!(DossierStatus::from_code(s.code()), Some(s));
    }
    assert_eq!(DossierStatus::from_code(0), None);
    assert_eq!(DossierStatus::from_code(11), None);
    let open: Vec<i32> = DossierStatus::ALL
        .into_iter()
        .filter(|s| s.is_open())
        .map(|s| s.code())
        .collect();
    assert_eq!(open, [1, 2, 4, 5, 6]);
    let mut precedence: Vec<u8> = DossierStatus::ALL.iter().map(|s| s.precedence()).collect();
    precedence.sort_unstable();
    precedence.dedup();
    assert_eq!(precedence.len(), 10, "precedences must be distinct");
}

/// The decoding fast path reads every event of a whole simulated province's log exactly
/// as the general path (apache-avro's value tree) does; on thousands of corrupted copies
/// (every byte flipped, every truncation) it either declines or agrees with the general
/// path, never decodes what the general path refuses; messages of older writer versions
/// are left to the general path.
#[test]
fn the_decoding_fast_path_agrees_with_the_general_path() {
    let c = codec();
    let mut events = samples::events();
    events.extend(samples::event_log(40));
    let mut fast = 0;
    let mut by_topic = std::collections::HashSet::new();
    for e in &events {
        let mut bytes = Vec::new();
        e.encode(&c, &mut bytes).expect("encode");
        let (quick, general) = AnyEvent::decode_both(&c, e.topic(), &bytes);
        let general = general.expect("the general path decodes it");
        assert_eq!(quick.as_ref(), Some(&general), "{}: the fast path differs", e.topic());
        assert_eq!(&general, e);
        fast += 1;
        by_topic.insert(e.topic());
    }
    assert_eq!(by_topic.len(), Topic::ALL.len(), "every topic's events were tried");
    assert!(fast > 400, "{fast}");

    let mut declined = 0;
    let mut agreed = 0;
    for (topic, bytes) in samples::one_of_each(&c).expect("samples") {
        let mut corrupted = Vec::new();
        for i in 5..bytes.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut b = bytes.clone();
                b[i] ^= flip;
                corrupted.push(b);
            }
            corrupted.push(bytes[..i].to_vec());
        }
        let mut longer = bytes.clone();
        longer.push(0);
        corrupted.push(longer);
        for b in corrupted {
            match AnyEvent::decode_both(&c, topic, &b) {
                (None, _) => declined += 1,
                (Some(q), Ok(g)) => {
                    assert_eq!(q, g, "{topic}: the paths disagree on a corrupted message");
                    agreed += 1;
                }
                (Some(q), Err(e)) => panic!("{topic}: the fast path took what the general path refuses ({e}): {q:?}"),
            }
        }
    }
    assert!(declined > 100 && agreed > 100, "declined {declined}, agreed {agreed}");

    // A message that names an older version of its subject (dossier.status v1) is not for
    // the fast path, whatever its body: the general path resolves such messages (the
    // resolution tests above).
    let (_, mut status) = samples::one_of_each(&c)
        .expect("samples")
        .into_iter()
        .find(|(t, _)| *t == Topic::Status)
        .expect("a status");
    let v1 = c.schemas().history("dossier.status-value")[0].id;
    status[1..5].copy_from_slice(&v1.to_be_bytes());
    assert!(AnyEvent::decode_both(&c, Topic::Status, &status).0.is_none());
}

/// The fuzzer's corpus for decoding (tests/fuzz/corpus/decode_topics), replayed: every
/// input decodes or is refused, and what decodes is checked against the limits.
#[test]
fn the_decode_fuzz_corpus_replays_without_a_panic() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fuzz/corpus/decode_topics");
    let codec = codec();
    let mut replayed = 0;
    for entry in std::fs::read_dir(&dir).expect("the corpus is committed") {
        let data = std::fs::read(entry.expect("entry").path()).expect("read");
        let Some((&which, bytes)) = data.split_first() else {
            continue;
        };
        let topic = Topic::ALL[usize::from(which) % Topic::ALL.len()];
        if let Ok(e) = AnyEvent::decode(&codec, topic, bytes) {
            let _ = Limits::default().check(&e);
        }
        replayed += 1;
    }
    assert!(replayed >= 10, "only {replayed} corpus entries");
}

/// The parts of a schema (as JSON) that have no `doc`: `file: Record` for a record or enum,
/// `file: Record.field` for a field, at any depth (nested records, array items, unions).
fn undocumented(file: &str, t: &serde_json::Value, missing: &mut Vec<String>) {
    use serde_json::Value;
    let documented = |v: &Value| {
        v.get("doc")
            .and_then(Value::as_str)
            .is_some_and(|d| !d.trim().is_empty())
    };
    match t {
        Value::Array(members) => members.iter().for_each(|m| undocumented(file, m, missing)),
        Value::Object(o) => {
            let name = o.get("name").and_then(Value::as_str).unwrap_or("?");
            match o.get("type") {
                Some(Value::String(kind)) if matches!(kind.as_str(), "record" | "enum" | "fixed") => {
                    if !documented(t) {
                        missing.push(format!("{file}: {name}"));
                    }
                    for f in o.get("fields").and_then(Value::as_array).into_iter().flatten() {
                        if !documented(f) {
                            let field = f.get("name").and_then(Value::as_str).unwrap_or("?");
                            missing.push(format!("{file}: {name}.{field}"));
                        }
                        undocumented(file, &f["type"], missing);
                    }
                }
                Some(Value::String(kind)) if kind == "array" => undocumented(file, &o["items"], missing),
                Some(Value::String(kind)) if kind == "map" => undocumented(file, &o["values"], missing),
                Some(inner @ (Value::Object(_) | Value::Array(_))) => undocumented(file, inner, missing),
                _ => {}
            }
        }
        _ => {}
    }
}

/// Every record, enum and field of every committed schema, all versions, says what it means:
/// the data dictionary is made of these docs.
#[test]
fn every_field_of_every_schema_has_a_doc() {
    let mut missing = Vec::new();
    for (file, text) in embedded::SCHEMA_FILES {
        let json: serde_json::Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{file}: {e}"));
        undocumented(file, &json, &mut missing);
    }
    assert!(embedded::SCHEMA_FILES.len() >= Topic::ALL.len());
    assert!(missing.is_empty(), "without a doc:\n  {}", missing.join("\n  "));

    // The walk must see a field deep inside a union of arrays of records, or the loop above
    // proves nothing.
    let deep = serde_json::json!({"type": "record", "name": "R", "doc": "r", "fields": [
        {"name": "a", "doc": "a", "type": ["null", {"type": "array", "items":
            {"type": "record", "name": "S", "doc": "s", "fields": [{"name": "b", "type": "string"}]}}]},
        {"name": "e", "doc": "e", "type": {"type": "enum", "name": "E", "symbols": ["X"]}}
    ]});
    let mut found = Vec::new();
    undocumented("t.avsc", &deep, &mut found);
    assert_eq!(found, ["t.avsc: S.b", "t.avsc: E"]);
}

/// BACKWARD_TRANSITIVE, the promise of the data dictionary: each version reads data written
/// with every earlier version, not only the one before it.
#[test]
fn every_schema_reads_every_earlier_version() {
    let set = SchemaSet::embedded().expect("table");
    for t in Topic::ALL {
        let history = set.history(&t.value_subject());
        for (i, new) in history.iter().enumerate() {
            for old in &history[..i] {
                SchemaCompatibility::can_read(&old.schema, &new.schema)
                    .unwrap_or_else(|e| panic!("{} v{} cannot read v{}: {e}", new.subject, new.version, old.version));
            }
        }
    }
}

/// The value at a data-dictionary path (`a.b`; `a[].b` takes the first item).
fn value_at<'a>(json: &'a serde_json::Value, path: &str) -> Option<&'a serde_json::Value> {
    path.split('.').try_fold(json, |v, part| match part.strip_suffix("[]") {
        Some(name) => v.get(name)?.as_array()?.first(),
        None => v.get(part),
    })
}

/// What `Topic` says of each topic (the data dictionary prints it) agrees with the events.
#[test]
fn the_topic_facts_agree_with_the_events() {
    let events = samples::events();
    assert_eq!(
        events.iter().map(AnyEvent::topic).collect::<Vec<_>>(),
        Topic::ALL,
        "one sample per topic, in order"
    );
    for e in &events {
        let t = e.topic();
        if let Some(field) = t.key_field() {
            let json = dictionary::event_json(e);
            assert_eq!(
                value_at(&json, field).and_then(serde_json::Value::as_str),
                Some(e.key()),
                "{t}: the key is not {field}"
            );
        }
        if let Some(p) = t.producer() {
            // The producer first; only intake's returns to the back office share a topic.
            assert_eq!(t.writers().first(), Some(&p), "{t}");
            assert!(t.writers().len() == 1 || t == Topic::Routed, "{t}");
        }
        assert!(!t.writers().is_empty(), "{t}");
        // Every event reaches the projection; nothing in the flow reads dead letters.
        assert_eq!(t.readers().contains(&component::TRACK), t != Topic::DeadLetter, "{t}");
    }
}

/// `docs/data-dictionary.md` is what the schemas say today.
#[test]
fn the_data_dictionary_is_current() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/data-dictionary.md");
    let generated = dictionary::markdown();
    if std::env::var_os("MOTCUA_BLESS").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().expect("docs/ has a parent")).expect("create docs/");
        std::fs::write(&path, &generated).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        return;
    }
    // A checkout with CRLF line ends is not out of date.
    let committed = std::fs::read_to_string(&path).unwrap_or_default().replace("\r\n", "\n");
    if committed != generated {
        let first = committed
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| committed.lines().count().min(generated.lines().count()));
        panic!(
            "docs/data-dictionary.md is out of date: run `MOTCUA_BLESS=1 cargo test -p motcua-schemas \
             the_data_dictionary_is_current` (first difference at line {})",
            first + 1
        );
    }
}
