//! The data dictionary (`docs/data-dictionary.md`), generated from what is on the wire:
//! the committed schemas (their `doc` strings are the field meanings), the schema-id table,
//! the facts [`Topic`] states about each topic, and examples from [`crate::samples`]. A test
//! keeps the committed file equal to [`markdown`].

use std::collections::HashMap;
use std::fmt::{self, Write};

use serde_json::Value;

use crate::{samples, AnyEvent, SchemaSet, Topic};

/// Longest example shown, in characters.
const MAX_EXAMPLE_CHARS: usize = 60;

/// The data dictionary, as Markdown.
///
/// # Panics
///
/// If the embedded schemas do not parse, which the crate's own tests rule out.
pub fn markdown() -> String {
    let set = SchemaSet::embedded().expect("the embedded schemas parse (the crate's tests check it)");
    let examples: HashMap<Topic, Value> = samples::events().iter().map(|e| (e.topic(), event_json(e))).collect();
    let mut out = String::new();
    render(&mut out, &set, &examples).expect("writing to a String does not fail");
    out
}

/// An event as JSON, the shape its Avro record has (optional fields as `null` or the value):
/// the dictionary's examples, `motcua dlq show --payload`.
pub fn event_json(e: &AnyEvent) -> Value {
    let v = match e {
        AnyEvent::Submitted(e) => serde_json::to_value(e),
        AnyEvent::Accepted(e) => serde_json::to_value(e),
        AnyEvent::Verified(e) => serde_json::to_value(e),
        AnyEvent::PaymentRequested(e) => serde_json::to_value(e),
        AnyEvent::PaymentConfirmed(e) => serde_json::to_value(e),
        AnyEvent::Paid(e) => serde_json::to_value(e),
        AnyEvent::Routed(e) => serde_json::to_value(e),
        AnyEvent::Decided(e) => serde_json::to_value(e),
        AnyEvent::Completed(e) => serde_json::to_value(e),
        AnyEvent::Status(e) => serde_json::to_value(e),
        AnyEvent::DeadLetter(e) => serde_json::to_value(e),
        AnyEvent::Supplemented(e) => serde_json::to_value(e),
        AnyEvent::Withdrawn(e) => serde_json::to_value(e),
        AnyEvent::Reappointed(e) => serde_json::to_value(e),
        AnyEvent::SupplementRequested(e) => serde_json::to_value(e),
    };
    // Our events are plain structs with string-keyed maps: serializing cannot fail.
    v.unwrap_or(Value::Null)
}

fn render(out: &mut String, set: &SchemaSet, examples: &HashMap<Topic, Value>) -> fmt::Result {
    out.push_str(INTRO);
    writeln!(out, "## Topics\n")?;
    writeln!(out, "| Topic | What a message says | Written by | Read by |")?;
    writeln!(out, "|---|---|---|---|")?;
    for topic in Topic::ALL {
        let schema = schema_json(set, topic);
        writeln!(
            out,
            "| [`{name}`](#{anchor}) | {doc} | {writers} | {readers} |",
            name = topic.name(),
            anchor = topic.name().replace('.', ""),
            doc = text(schema["doc"].as_str().unwrap_or_default()),
            writers = components(topic.writers()),
            readers = components(topic.readers()),
        )?;
    }
    writeln!(out)?;
    out.push_str(COMPONENTS);
    out.push_str(WIRE);
    for topic in Topic::ALL {
        section(out, set, topic, examples.get(&topic))?;
    }
    Ok(())
}

fn schema_json(set: &SchemaSet, topic: Topic) -> Value {
    let latest = set.latest(topic);
    serde_json::from_str(&latest.text)
        .unwrap_or_else(|e| panic!("{} is not JSON: {e} (it parsed as Avro)", latest.file))
}

fn components(names: &[&str]) -> String {
    if names.is_empty() {
        return "no component (operators)".to_owned();
    }
    names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
}

fn section(out: &mut String, set: &SchemaSet, topic: Topic, example: Option<&Value>) -> fmt::Result {
    let schema = schema_json(set, topic);
    let latest = set.latest(topic);
    writeln!(out, "## {}\n", topic.name())?;
    writeln!(out, "{}.\n", text(schema["doc"].as_str().unwrap_or_default()))?;
    writeln!(out, "| | |")?;
    writeln!(out, "|---|---|")?;
    writeln!(out, "| Subject | `{}` |", topic.value_subject())?;
    writeln!(out, "| Written by | {} |", components(topic.writers()))?;
    writeln!(out, "| Read by | {} |", components(topic.readers()))?;
    writeln!(out, "| Key | {} |", text(topic.key_doc()))?;
    let order = match topic.key_field() {
        Some(field) => {
            format!("by key: every message with the same `{field}` is on one partition, in the order written")
        }
        None => "by key when the original had one (then as for its topic); keyless dead letters spread over the \
                 partitions, unordered"
            .to_owned(),
    };
    writeln!(out, "| Partitioning and order | {} |", text(&order))?;
    writeln!(out, "| Retention | {} |", text(topic.retention_doc()))?;
    let versions: Vec<String> = set
        .history(&topic.value_subject())
        .iter()
        .map(|v| format!("v{} = id {} (`schemas/{}`)", v.version, v.id, v.file))
        .collect();
    writeln!(out, "| Schema versions (committed ids) | {} |", versions.join("; "))?;
    writeln!(out)?;

    writeln!(out, "Fields of v{} (the latest):\n", latest.version)?;
    writeln!(out, "| Field | Type | Default | Meaning | Example |")?;
    writeln!(out, "|---|---|---|---|---|")?;
    let mut named = HashMap::new();
    let mut fields = Vec::new();
    rows(&schema, "", example, &mut named, &mut fields);
    for r in fields {
        writeln!(
            out,
            "| `{}` | {} | {} | {} | {} |",
            r.path,
            code(&r.ty),
            r.default.as_deref().map(code).unwrap_or_default(),
            text(&r.doc),
            r.example.as_deref().map(code).unwrap_or_default(),
        )?;
    }
    writeln!(out)
}

/// One line of a field table.
struct Row {
    path: String,
    ty: String,
    default: Option<String>,
    doc: String,
    example: Option<String>,
}

/// The fields of `record`, depth first: a nested record's fields follow their parent's
/// row, as `parent.child` (`parent[].child` for the records of an array, `parent{}.child`
/// for those of a map). `named` collects the named types seen, for references by name.
fn rows(record: &Value, prefix: &str, sample: Option<&Value>, named: &mut HashMap<String, Value>, out: &mut Vec<Row>) {
    for f in record["fields"].as_array().into_iter().flatten() {
        let name = f["name"].as_str().unwrap_or_default();
        let path = format!("{prefix}{name}");
        let t = &f["type"];
        let value = sample.and_then(|s| s.get(name));
        let ty = type_name(t, named);
        out.push(Row {
            path: path.clone(),
            ty,
            default: f.get("default").map(Value::to_string),
            doc: f["doc"].as_str().unwrap_or_default().to_owned(),
            example: example(t, value, named),
        });
        if let Some((nested, suffix, inner)) = nested_record(t, value, named) {
            rows(&nested, &format!("{path}{suffix}"), inner, named, out);
        }
    }
}

/// The short name of a possibly namespace-qualified name.
fn short(name: &str) -> &str {
    name.rsplit('.').next().unwrap_or(name)
}

/// The definition a type stands for (a name refers to a type defined earlier).
fn resolve<'a>(t: &'a Value, named: &'a HashMap<String, Value>) -> &'a Value {
    match t {
        Value::String(s) => named.get(short(s)).unwrap_or(t),
        _ => t,
    }
}

fn kind(t: &Value) -> Option<&str> {
    t.get("type").and_then(Value::as_str)
}

/// A readable Avro type: `string`, `null | string`, `long (timestamp-millis, UTC)`,
/// `array<record Reason>`, `enum Channel: ONLINE, COUNTER, POSTAL`.
fn type_name(t: &Value, named: &mut HashMap<String, Value>) -> String {
    match t {
        Value::String(s) => match named.get(short(s)) {
            Some(def) => describe_named(def),
            None => s.clone(),
        },
        Value::Array(members) => members
            .iter()
            .map(|m| type_name(m, named))
            .collect::<Vec<_>>()
            .join(" | "),
        Value::Object(o) => match o.get("type") {
            Some(Value::String(ty)) => match ty.as_str() {
                "record" | "enum" | "fixed" => {
                    if let Some(name) = o.get("name").and_then(Value::as_str) {
                        named.insert(short(name).to_owned(), t.clone());
                    }
                    describe_named(t)
                }
                "array" => format!("array<{}>", type_name(&o["items"], named)),
                "map" => format!("map<string, {}>", type_name(&o["values"], named)),
                primitive => match o.get("logicalType").and_then(Value::as_str) {
                    Some("timestamp-millis") => format!("{primitive} (timestamp-millis, UTC)"),
                    Some("date") => format!("{primitive} (date, days since 1970-01-01)"),
                    Some(logical) => format!("{primitive} ({logical})"),
                    None => primitive.to_owned(),
                },
            },
            Some(inner) => type_name(inner, named),
            None => "?".to_owned(),
        },
        _ => "?".to_owned(),
    }
}

fn describe_named(def: &Value) -> String {
    let name = short(def["name"].as_str().unwrap_or_default());
    match kind(def) {
        Some("enum") => {
            let symbols: Vec<&str> = def["symbols"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            format!("enum {name}: {}", symbols.join(", "))
        }
        Some("fixed") => format!("fixed {name} ({} bytes)", def["size"]),
        Some(other) => format!("{other} {name}"),
        None => name.to_owned(),
    }
}

/// The record whose fields a field of type `t` has (directly, as array items, map values
/// or a union member), the path suffix to them, and the sample value to descend into.
fn nested_record<'a>(
    t: &Value,
    value: Option<&'a Value>,
    named: &HashMap<String, Value>,
) -> Option<(Value, &'static str, Option<&'a Value>)> {
    let t = resolve(t, named);
    match t {
        Value::Array(members) => members
            .iter()
            .filter(|m| m.as_str() != Some("null"))
            .find_map(|m| nested_record(m, value.filter(|v| !v.is_null()), named)),
        Value::Object(o) => match kind(t) {
            Some("record") => Some((t.clone(), ".", value)),
            Some("array") => {
                let items = resolve(&o["items"], named);
                (kind(items) == Some("record")).then(|| {
                    (
                        items.clone(),
                        "[].",
                        value.and_then(Value::as_array).and_then(|a| a.first()),
                    )
                })
            }
            Some("map") => {
                let values = resolve(&o["values"], named);
                (kind(values) == Some("record")).then(|| {
                    (
                        values.clone(),
                        "{}.",
                        value.and_then(Value::as_object).and_then(|m| m.values().next()),
                    )
                })
            }
            _ => None,
        },
        _ => None,
    }
}

/// Whether values of `t` are (or may be) Avro bytes.
fn is_bytes(t: &Value, named: &HashMap<String, Value>) -> bool {
    match resolve(t, named) {
        Value::String(s) => s == "bytes",
        Value::Array(members) => members.iter().any(|m| is_bytes(m, named)),
        o @ Value::Object(_) => kind(o) == Some("bytes"),
        _ => false,
    }
}

/// The sample's value of a field, as JSON (bytes as hex), cut to [`MAX_EXAMPLE_CHARS`];
/// `None` where the nested rows show it (a record, a non-empty array of records).
fn example(t: &Value, value: Option<&Value>, named: &HashMap<String, Value>) -> Option<String> {
    let value = value?;
    let shown_below = match value {
        Value::Null => false,
        Value::Array(items) => !items.is_empty(),
        Value::Object(fields) => !fields.is_empty(),
        _ => true,
    };
    if shown_below && nested_record(t, Some(value), named).is_some() {
        return None;
    }
    let shown = match value {
        Value::Array(bytes) if is_bytes(t, named) => {
            let bytes: Vec<u8> = bytes
                .iter()
                .filter_map(Value::as_u64)
                .filter_map(|b| u8::try_from(b).ok())
                .collect();
            let hex = hex::encode(bytes);
            format!("0x{hex}")
        }
        Value::Number(n) => match (n.as_i64(), logical_type(t, named)) {
            (Some(ms), Some("timestamp-millis")) => format!("{ms} ({})", utc(ms)),
            (Some(days), Some("date")) => format!("{days} ({})", date(days)),
            _ => n.to_string(),
        },
        v => v.to_string(),
    };
    Some(clip(&shown))
}

/// The logical type of `t` or of its non-null union member.
fn logical_type<'a>(t: &'a Value, named: &'a HashMap<String, Value>) -> Option<&'a str> {
    match resolve(t, named) {
        Value::Array(members) => members.iter().find_map(|m| logical_type(m, named)),
        o @ Value::Object(_) => o.get("logicalType").and_then(Value::as_str),
        _ => None,
    }
}

/// (year, month, day) of a day counted from 1970-01-01, proleptic Gregorian: days are
/// counted in 400-year eras of 146,097 days starting on 1 March, so that the leap day is
/// the last day of a year.
fn civil(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468; // days from 0000-03-01 to 1970-01-01
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn date(days: i64) -> String {
    let (y, m, d) = civil(days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// An epoch-millisecond instant in ISO 8601, UTC.
fn utc(ms: i64) -> String {
    let in_day = ms.rem_euclid(86_400_000);
    let (h, min, s, milli) = (
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1_000 % 60,
        in_day % 1_000,
    );
    let time = if milli == 0 {
        format!("{h:02}:{min:02}:{s:02}")
    } else {
        format!("{h:02}:{min:02}:{s:02}.{milli:03}")
    };
    format!("{}T{time}Z", date(ms.div_euclid(86_400_000)))
}

fn clip(s: &str) -> String {
    if s.chars().count() <= MAX_EXAMPLE_CHARS {
        return s.to_owned();
    }
    let cut: String = s.chars().take(MAX_EXAMPLE_CHARS - 1).collect();
    format!("{cut}…")
}

/// Prose in a table cell: no line breaks, pipes escaped, `<` not taken for HTML.
fn text(s: &str) -> String {
    s.replace('\n', " ").replace('|', "\\|").replace('<', "\\<")
}

/// A code span in a table cell (GitHub Markdown reads `\|` as a pipe inside one).
fn code(s: &str) -> String {
    let s = s.replace('\n', " ").replace('|', "\\|");
    if s.contains('`') {
        format!("`` {s} ``")
    } else {
        format!("`{s}`")
    }
}

const INTRO: &str = "\
# motcua data dictionary

<!-- Generated from schemas/avro/*.avsc, schemas/schema-ids.csv and schemas/src/topic.rs by
schemas/src/dictionary.rs. Do not edit by hand: change the schemas' docs or the topic facts,
then run `MOTCUA_BLESS=1 cargo test -p motcua-schemas the_data_dictionary_is_current`. -->

Every Kafka topic of the motcua pipeline: what a message means, who writes and reads it, how
it is keyed, framed and kept, and every field of its latest schema. The Avro schemas in
`schemas/avro/` are the source of truth: the meanings below are their `doc` strings and the
examples come from the sample events of `schemas/src/samples.rs` (made-up people and
dossiers). A test fails when this page differs from what the schemas say. How to consume the
topics (Python, Kafka Connect, Parquet exports): [data-teams.md](data-teams.md).

Conventions in the field tables:

- `long (timestamp-millis, UTC)`: milliseconds since 1970-01-01T00:00:00Z. Local dates
  (the `YYMMDD` of a dossier code, working days, early/on time/late) are Vietnam dates,
  Asia/Ho_Chi_Minh, UTC+7 all year.
- `int (date, days since 1970-01-01)`: a calendar date without a time of day.
- Amounts (`*_vnd`): whole Vietnamese đồng.
- `null | T` with default `null`: optional; the meaning says when it is null.
- Nested fields are written `parent.child`, fields of the records in an array
  `parent[].child`; the example of an array item is the sample's first item.
- Fields marked \"Personal data\" identify or describe a person: keep them out of shared
  datasets unless your purpose allows it. `dossier.status.lookup_token` is a credential.

";

const COMPONENTS: &str = "\
`portal` stands for the public-service portals and counter software that publish
submissions, `gateway` for the payment gateway, `backoffice` for the officers' case system
that decides; they are outside the pipeline (`motcua gateway-sim` and `motcua backoffice-sim`
stand in for the last two in tests and the demo). `intake`, `verify`, `payment`, `route`,
`result`, `track` and `portal-sync` are the pipeline's stages (`motcua run <stage>`), each
reading as consumer group `motcua-<stage>` (`portal-sync` pushes every status change to the
National Public Service Portal; `result` files each result in the applicant's e-wallet
before announcing it). Read with a group id of your own, never a `motcua-*` one:
sharing a stage's group takes messages away from it.

";

const WIRE: &str = "\
## Wire format, keys, ordering

- **Value**: the Confluent wire format: magic byte `0`, the 4-byte big-endian schema id,
  then the Avro binary encoding of the record (no container-file header). Any Confluent
  deserializer reads it.
- **Subject**: `<topic>-value` (Confluent TopicNameStrategy); keys have no schema. A
  deployment's topic prefix (`kafka.topic_prefix`) prefixes topic and subject alike.
- **Schema ids**: from the Schema Registry when one is configured (the registry assigns
  them); without one, from the committed table `schemas/schema-ids.csv`, whose ids are the
  ones listed below. Always resolve the writer schema by the id in the message.
- **Key**: a UTF-8 string, the dossier id on every topic but `payment.confirmed` (the bill
  reference) and `dossier.dlq` (the original message's key).
- **Headers**: `motcua-event-id` (the event's `event_id`) and `traceparent` when known; a
  dead letter also carries `motcua-dlq-stage`, `motcua-dlq-reason-code`, `motcua-dlq-reason`,
  `motcua-origin-topic`, `motcua-origin-partition`, `motcua-origin-offset`,
  `motcua-origin-value-bytes`, `motcua-origin-value-truncated`, `motcua-origin-value-sha256`
  and the original headers as `motcua-origin-header.<name>`.
- **Partitioning and order**: the partition is chosen from the key (the pipeline's producers
  use librdkafka's default partitioner, CRC32 of the key), so all messages with one key are on
  one partition, in the order they were written; producers are idempotent (`acks=all`), so
  a retry neither duplicates nor reorders within a partition. There is no order across
  partitions or across topics: a dossier's `dossier.status` event may be read before its
  `dossier.accepted`. Partition counts are chosen when the topics are created
  (`motcua topics create --partitions N --replication R`).
- **Delivery**: at least once. A redelivered input makes the stages emit byte-identical
  events with the same `event_id`: deduplicate on `event_id`.

## Compatibility promise

Every subject evolves **BACKWARD_TRANSITIVE**: each new version of a topic's schema reads
data written with every earlier version. Fields are only ever added, each with a default;
none is removed, renamed or retyped, and no enum symbol is removed. A consumer that
deserializes with the writer's schema (the id in each message) keeps working when a new
version appears, without a redeploy; one that resolves into a fixed reader schema sees new
fields only when it upgrades. The crate's tests check that every version reads every
earlier one.

A change that cannot keep that promise is never made as a new version of the same subject.
It gets a new topic (for example `dossier.status.v2`, subject `dossier.status.v2-value`),
and a migration that republishes the history into it or dual-writes both while consumers
move; the old topic is retired once no one reads it.

";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_and_dates_are_written_in_iso_8601() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(1_764_036_000_500), "2025-11-25T02:00:00.500Z");
        assert_eq!(utc(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(utc(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(date(7_440), "1990-05-16");
        assert_eq!(date(-1), "1969-12-31");
    }

    #[test]
    fn table_cells_cannot_break_the_table() {
        assert_eq!(code("null | string"), "`null \\| string`");
        assert_eq!(text("<agency>-<YYMMDD>"), "\\<agency>-\\<YYMMDD>");
        assert_eq!(clip(&"x".repeat(100)).chars().count(), MAX_EXAMPLE_CHARS);
    }
}
