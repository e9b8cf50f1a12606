//! A topic's reader Avro schema as Arrow columns, and decoded Avro values as Arrow arrays.
//!
//! Derived generically from the schema, so a new field or a new topic needs no code here:
//! records are structs, arrays lists, maps maps, `["null", T]` a nullable `T`, enums
//! strings, and the logical types their Arrow equivalents (timestamps in UTC).

use std::collections::HashSet;
use std::sync::Arc;

use apache_avro::schema::{Name, Namespace, ResolvedSchema};
use apache_avro::types::Value;
use apache_avro::Schema;
use arrow_array::{
    ArrayRef, BinaryArray, BooleanArray, Date32Array, FixedSizeBinaryArray, Float32Array, Float64Array, Int32Array,
    Int64Array, ListArray, MapArray, NullArray, RecordBatch, StringArray, StructArray, Time32MillisecondArray,
    Time64MicrosecondArray, TimestampMicrosecondArray, TimestampMillisecondArray,
};
use arrow_buffer::{NullBuffer, OffsetBuffer};
use arrow_schema::{DataType, Field, FieldRef, Fields, SchemaRef, TimeUnit};

use crate::{Error, Result};

/// Columns every exported row gets besides the event's fields: where the message was.
pub const META_COLUMNS: [&str; 5] = ["_topic", "_partition", "_offset", "_timestamp", "_schema_id"];

const UTC: &str = "UTC";

/// One message, decoded, with where it was read.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    pub(crate) timestamp_ms: i64,
    pub(crate) schema_id: i32,
    pub(crate) value: Value,
}

#[derive(Debug, Clone)]
enum Kind {
    Null,
    Boolean,
    Int,
    Long,
    Float,
    Double,
    Bytes,
    Fixed(i32),
    /// Strings, enum symbols and UUIDs.
    Utf8,
    Date,
    TimeMillis,
    TimeMicros,
    TimestampMillis {
        utc: bool,
    },
    TimestampMicros {
        utc: bool,
    },
    Record(Vec<Column>),
    Array(Box<Column>),
    Map(Box<Column>),
}

/// One Avro field (or array item, or map value) and its Arrow field.
#[derive(Debug, Clone)]
struct Column {
    /// Dotted path from the event's root, for error messages.
    path: String,
    kind: Kind,
    field: FieldRef,
}

/// The Arrow schema of a topic and how to fill it from decoded values.
#[derive(Debug, Clone)]
pub(crate) struct TopicColumns {
    fields: Vec<Column>,
    schema: SchemaRef,
}

impl TopicColumns {
    /// Converts the topic's reader schema; fails naming the field Arrow cannot hold.
    pub(crate) fn new(topic: &str, schema: &Schema) -> Result<Self> {
        let resolved = ResolvedSchema::try_from(schema).map_err(|e| Error::Schema {
            topic: topic.to_owned(),
            path: String::new(),
            reason: format!("cannot resolve the schema's names: {e}"),
        })?;
        let mut conv = Converter {
            topic,
            resolved: &resolved,
            expanding: HashSet::new(),
        };
        let Column { kind, .. } = conv.column("", "", schema, &None)?;
        let Kind::Record(fields) = kind else {
            return Err(Error::Schema {
                topic: topic.to_owned(),
                path: String::new(),
                reason: "the topic's schema is not a record".into(),
            });
        };
        let mut arrow_fields: Vec<FieldRef> = fields.iter().map(|c| c.field.clone()).collect();
        for meta in META_COLUMNS {
            if fields.iter().any(|c| c.field.name() == meta) {
                return Err(Error::Schema {
                    topic: topic.to_owned(),
                    path: meta.to_owned(),
                    reason: "the name of a column the export adds".into(),
                });
            }
        }
        arrow_fields.extend([
            Arc::new(Field::new("_topic", DataType::Utf8, false)),
            Arc::new(Field::new("_partition", DataType::Int32, false)),
            Arc::new(Field::new("_offset", DataType::Int64, false)),
            Arc::new(Field::new(
                "_timestamp",
                DataType::Timestamp(TimeUnit::Millisecond, Some(UTC.into())),
                false,
            )),
            Arc::new(Field::new("_schema_id", DataType::Int32, false)),
        ]);
        Ok(Self {
            fields,
            schema: Arc::new(arrow_schema::Schema::new(arrow_fields)),
        })
    }

    pub(crate) fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// The rows as one record batch. Values come from the codec, decoded into the reader
    /// schema these columns were made from, so a mismatch is a bug, reported with its path.
    pub(crate) fn batch(&self, topic: &str, rows: &[Row]) -> Result<RecordBatch> {
        let values: Vec<Option<&Value>> = rows.iter().map(|r| present(&r.value)).collect();
        let mut arrays = Vec::with_capacity(self.fields.len() + META_COLUMNS.len());
        for (i, c) in self.fields.iter().enumerate() {
            let children: Vec<Option<&Value>> = values
                .iter()
                .map(|v| v.and_then(|v| record_field(v, i, c.field.name())).and_then(present))
                .collect();
            arrays.push(array(topic, c, &children)?);
        }
        let n = rows.len();
        arrays.push(Arc::new(StringArray::from_iter_values(std::iter::repeat_n(topic, n))));
        arrays.push(Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.partition))));
        arrays.push(Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.offset))));
        arrays.push(Arc::new(
            TimestampMillisecondArray::from_iter_values(rows.iter().map(|r| r.timestamp_ms)).with_timezone(UTC),
        ));
        arrays.push(Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.schema_id))));
        RecordBatch::try_new(self.schema.clone(), arrays).map_err(|e| Error::Convert {
            topic: topic.to_owned(),
            path: String::new(),
            reason: e.to_string(),
        })
    }
}

struct Converter<'a> {
    topic: &'a str,
    resolved: &'a ResolvedSchema<'a>,
    /// Records being expanded: a record that contains itself has no Arrow type.
    expanding: HashSet<Name>,
}

impl Converter<'_> {
    fn unsupported(&self, path: &str, reason: impl Into<String>) -> Error {
        Error::Schema {
            topic: self.topic.to_owned(),
            path: path.to_owned(),
            reason: reason.into(),
        }
    }

    /// The column of `schema` named `name` at `path`; `["null", T]` unions become a
    /// nullable `T`.
    fn column(&mut self, path: &str, name: &str, schema: &Schema, ns: &Namespace) -> Result<Column> {
        let (schema, nullable) = match schema {
            Schema::Union(u) => {
                let variants = u.variants();
                let others: Vec<&Schema> = variants.iter().filter(|s| !matches!(s, Schema::Null)).collect();
                match others[..] {
                    [] => (&Schema::Null, true),
                    [one] => (one, others.len() < variants.len()),
                    _ => return Err(self.unsupported(path, "a union of several non-null types")),
                }
            }
            other => (other, false),
        };
        let kind = self.kind(path, schema, ns)?;
        let nullable = nullable || matches!(kind, Kind::Null);
        let field = Arc::new(Field::new(name, data_type(&kind), nullable));
        Ok(Column {
            path: path.to_owned(),
            kind,
            field,
        })
    }

    fn kind(&mut self, path: &str, schema: &Schema, ns: &Namespace) -> Result<Kind> {
        Ok(match schema {
            Schema::Null => Kind::Null,
            Schema::Boolean => Kind::Boolean,
            Schema::Int => Kind::Int,
            Schema::Long => Kind::Long,
            Schema::Float => Kind::Float,
            Schema::Double => Kind::Double,
            Schema::Bytes => Kind::Bytes,
            Schema::Fixed(f) => Kind::Fixed(
                i32::try_from(f.size).map_err(|_| self.unsupported(path, "a fixed type too large for Arrow"))?,
            ),
            Schema::String | Schema::Enum(_) | Schema::Uuid => Kind::Utf8,
            Schema::Date => Kind::Date,
            Schema::TimeMillis => Kind::TimeMillis,
            Schema::TimeMicros => Kind::TimeMicros,
            Schema::TimestampMillis => Kind::TimestampMillis { utc: true },
            Schema::TimestampMicros => Kind::TimestampMicros { utc: true },
            Schema::LocalTimestampMillis => Kind::TimestampMillis { utc: false },
            Schema::LocalTimestampMicros => Kind::TimestampMicros { utc: false },
            Schema::Array(a) => Kind::Array(Box::new(self.column(&format!("{path}[]"), "item", &a.items, ns)?)),
            Schema::Map(m) => Kind::Map(Box::new(self.column(&format!("{path}{{}}"), "value", &m.types, ns)?)),
            Schema::Record(r) => {
                if !self.expanding.insert(r.name.clone()) {
                    return Err(self.unsupported(path, format!("record {} contains itself", r.name.fullname(None))));
                }
                let inner_ns = r.name.namespace.clone().or_else(|| ns.clone());
                let mut columns = Vec::with_capacity(r.fields.len());
                for f in &r.fields {
                    let p = if path.is_empty() {
                        f.name.clone()
                    } else {
                        format!("{path}.{}", f.name)
                    };
                    columns.push(self.column(&p, &f.name, &f.schema, &inner_ns)?);
                }
                self.expanding.remove(&r.name);
                Kind::Record(columns)
            }
            Schema::Ref { name } => {
                let full = name.fully_qualified_name(ns);
                let target = self
                    .resolved
                    .get_names()
                    .get(&full)
                    .copied()
                    .ok_or_else(|| self.unsupported(path, format!("unknown type {}", full.fullname(None))))?;
                self.kind(path, target, &full.namespace)?
            }
            Schema::Union(_) => return Err(self.unsupported(path, "a union inside a union")),
            Schema::Decimal(_) | Schema::BigDecimal => return Err(self.unsupported(path, "decimals")),
            Schema::Duration => return Err(self.unsupported(path, "durations")),
            Schema::TimestampNanos | Schema::LocalTimestampNanos => {
                return Err(self.unsupported(path, "nanosecond timestamps"))
            }
        })
    }
}

fn data_type(kind: &Kind) -> DataType {
    match kind {
        Kind::Null => DataType::Null,
        Kind::Boolean => DataType::Boolean,
        Kind::Int => DataType::Int32,
        Kind::Long => DataType::Int64,
        Kind::Float => DataType::Float32,
        Kind::Double => DataType::Float64,
        Kind::Bytes => DataType::Binary,
        Kind::Fixed(n) => DataType::FixedSizeBinary(*n),
        Kind::Utf8 => DataType::Utf8,
        Kind::Date => DataType::Date32,
        Kind::TimeMillis => DataType::Time32(TimeUnit::Millisecond),
        Kind::TimeMicros => DataType::Time64(TimeUnit::Microsecond),
        Kind::TimestampMillis { utc } => DataType::Timestamp(TimeUnit::Millisecond, utc.then(|| UTC.into())),
        Kind::TimestampMicros { utc } => DataType::Timestamp(TimeUnit::Microsecond, utc.then(|| UTC.into())),
        Kind::Record(cols) => DataType::Struct(cols.iter().map(|c| c.field.clone()).collect()),
        Kind::Array(item) => DataType::List(item.field.clone()),
        Kind::Map(value) => DataType::Map(map_entries(value), false),
    }
}

fn map_key() -> FieldRef {
    Arc::new(Field::new("key", DataType::Utf8, false))
}

fn map_entries(value: &Column) -> FieldRef {
    Arc::new(Field::new(
        "entries",
        DataType::Struct(Fields::from(vec![map_key(), value.field.clone()])),
        false,
    ))
}

/// A value with its union branch taken off; `None` for null.
fn present(v: &Value) -> Option<&Value> {
    match v {
        Value::Union(_, inner) => present(inner),
        Value::Null => None,
        v => Some(v),
    }
}

/// Field `i` (named `name`) of a record value: by position, as the decoder returns them,
/// or else by name.
fn record_field<'v>(v: &'v Value, i: usize, name: &str) -> Option<&'v Value> {
    let Value::Record(fields) = v else { return None };
    match fields.get(i) {
        Some((n, v)) if n == name => Some(v),
        _ => fields.iter().find(|(n, _)| n == name).map(|(_, v)| v),
    }
}

fn nulls(values: &[Option<&Value>]) -> Option<NullBuffer> {
    values
        .iter()
        .any(Option::is_none)
        .then(|| NullBuffer::from_iter(values.iter().map(Option::is_some)))
}

fn mismatch(topic: &str, c: &Column, v: &Value) -> Error {
    Error::Convert {
        topic: topic.to_owned(),
        path: c.path.clone(),
        reason: format!(
            "expected {}, found an Avro {:?}",
            c.field.data_type(),
            apache_avro::schema::SchemaKind::from(v)
        ),
    }
}

fn leaf<'v, T>(
    topic: &str,
    c: &Column,
    values: &[Option<&'v Value>],
    get: impl Fn(&'v Value) -> Option<T>,
) -> Result<Vec<Option<T>>> {
    values
        .iter()
        .map(|v| match v {
            None => Ok(None),
            Some(v) => get(v).map(Some).ok_or_else(|| mismatch(topic, c, v)),
        })
        .collect()
}

fn convert_err(topic: &str, c: &Column) -> impl FnOnce(arrow_schema::ArrowError) -> Error {
    let (topic, path) = (topic.to_owned(), c.path.clone());
    move |e| Error::Convert {
        topic,
        path,
        reason: e.to_string(),
    }
}

/// The Arrow array of column `c` for `values` (`None`: null, the parent's or its own).
fn array(topic: &str, c: &Column, values: &[Option<&Value>]) -> Result<ArrayRef> {
    Ok(match &c.kind {
        Kind::Null => Arc::new(NullArray::new(values.len())),
        Kind::Boolean => Arc::new(BooleanArray::from(leaf(topic, c, values, |v| match v {
            Value::Boolean(b) => Some(*b),
            _ => None,
        })?)),
        Kind::Int => Arc::new(Int32Array::from(leaf(topic, c, values, |v| match v {
            Value::Int(i) => Some(*i),
            _ => None,
        })?)),
        Kind::Long => Arc::new(Int64Array::from(leaf(topic, c, values, |v| match v {
            Value::Long(l) => Some(*l),
            Value::Int(i) => Some(i64::from(*i)),
            _ => None,
        })?)),
        Kind::Float => Arc::new(Float32Array::from(leaf(topic, c, values, |v| match v {
            Value::Float(f) => Some(*f),
            _ => None,
        })?)),
        Kind::Double => Arc::new(Float64Array::from(leaf(topic, c, values, |v| match v {
            Value::Double(d) => Some(*d),
            Value::Float(f) => Some(f64::from(*f)),
            _ => None,
        })?)),
        Kind::Bytes => Arc::new(BinaryArray::from(leaf(topic, c, values, |v| match v {
            Value::Bytes(b) => Some(b.as_slice()),
            _ => None,
        })?)),
        Kind::Fixed(size) => {
            let bytes = leaf(topic, c, values, |v| match v {
                Value::Fixed(_, b) => Some(b.as_slice()),
                _ => None,
            })?;
            Arc::new(
                FixedSizeBinaryArray::try_from_sparse_iter_with_size(bytes.into_iter(), *size)
                    .map_err(convert_err(topic, c))?,
            )
        }
        Kind::Utf8 => {
            let strings = leaf(topic, c, values, |v| match v {
                Value::String(s) | Value::Enum(_, s) => Some(std::borrow::Cow::Borrowed(s.as_str())),
                Value::Uuid(u) => Some(std::borrow::Cow::Owned(u.to_string())),
                _ => None,
            })?;
            Arc::new(StringArray::from_iter(strings))
        }
        Kind::Date => Arc::new(Date32Array::from(leaf(topic, c, values, |v| match v {
            Value::Date(d) | Value::Int(d) => Some(*d),
            _ => None,
        })?)),
        Kind::TimeMillis => Arc::new(Time32MillisecondArray::from(leaf(topic, c, values, |v| match v {
            Value::TimeMillis(t) | Value::Int(t) => Some(*t),
            _ => None,
        })?)),
        Kind::TimeMicros => Arc::new(Time64MicrosecondArray::from(leaf(topic, c, values, |v| match v {
            Value::TimeMicros(t) | Value::Long(t) => Some(*t),
            _ => None,
        })?)),
        Kind::TimestampMillis { utc } => {
            let a = TimestampMillisecondArray::from(leaf(topic, c, values, |v| match v {
                Value::TimestampMillis(t) | Value::LocalTimestampMillis(t) | Value::Long(t) => Some(*t),
                _ => None,
            })?);
            Arc::new(if *utc { a.with_timezone(UTC) } else { a })
        }
        Kind::TimestampMicros { utc } => {
            let a = TimestampMicrosecondArray::from(leaf(topic, c, values, |v| match v {
                Value::TimestampMicros(t) | Value::LocalTimestampMicros(t) | Value::Long(t) => Some(*t),
                _ => None,
            })?);
            Arc::new(if *utc { a.with_timezone(UTC) } else { a })
        }
        Kind::Record(columns) => {
            if let Some(v) = values.iter().flatten().find(|v| !matches!(v, Value::Record(_))) {
                return Err(mismatch(topic, c, v));
            }
            let mut children = Vec::with_capacity(columns.len());
            for (i, child) in columns.iter().enumerate() {
                let vs: Vec<Option<&Value>> = values
                    .iter()
                    .map(|v| v.and_then(|v| record_field(v, i, child.field.name())).and_then(present))
                    .collect();
                children.push(array(topic, child, &vs)?);
            }
            let fields: Fields = columns.iter().map(|c| c.field.clone()).collect();
            Arc::new(
                StructArray::try_new_with_length(fields, children, nulls(values), values.len())
                    .map_err(convert_err(topic, c))?,
            )
        }
        Kind::Array(item) => {
            let mut offsets = Vec::with_capacity(values.len() + 1);
            let mut items: Vec<Option<&Value>> = Vec::new();
            offsets.push(0i32);
            for v in values {
                match v {
                    None => {}
                    Some(Value::Array(vs)) => items.extend(vs.iter().map(present)),
                    Some(v) => return Err(mismatch(topic, c, v)),
                }
                offsets.push(i32::try_from(items.len()).map_err(|_| too_many(topic, c))?);
            }
            let child = array(topic, item, &items)?;
            Arc::new(
                ListArray::try_new(
                    item.field.clone(),
                    OffsetBuffer::new(offsets.into()),
                    child,
                    nulls(values),
                )
                .map_err(convert_err(topic, c))?,
            )
        }
        Kind::Map(value) => {
            let mut offsets = Vec::with_capacity(values.len() + 1);
            let mut keys: Vec<&str> = Vec::new();
            let mut entries: Vec<Option<&Value>> = Vec::new();
            offsets.push(0i32);
            for v in values {
                match v {
                    None => {}
                    Some(Value::Map(m)) => {
                        // Sorted: a map's entries come out in the same order every run.
                        let mut sorted: Vec<(&String, &Value)> = m.iter().collect();
                        sorted.sort_unstable_by(|a, b| a.0.cmp(b.0));
                        for (k, v) in sorted {
                            keys.push(k);
                            entries.push(present(v));
                        }
                    }
                    Some(v) => return Err(mismatch(topic, c, v)),
                }
                offsets.push(i32::try_from(keys.len()).map_err(|_| too_many(topic, c))?);
            }
            let key_array: ArrayRef = Arc::new(StringArray::from(keys));
            let value_array = array(topic, value, &entries)?;
            let entries_field = map_entries(value);
            let DataType::Struct(entry_fields) = entries_field.data_type().clone() else {
                unreachable!("map entries are a struct")
            };
            let entries = StructArray::try_new(entry_fields, vec![key_array, value_array], None)
                .map_err(convert_err(topic, c))?;
            Arc::new(
                MapArray::try_new(
                    entries_field,
                    OffsetBuffer::new(offsets.into()),
                    entries,
                    nulls(values),
                    false,
                )
                .map_err(convert_err(topic, c))?,
            )
        }
    })
}

fn too_many(topic: &str, c: &Column) -> Error {
    Error::Convert {
        topic: topic.to_owned(),
        path: c.path.clone(),
        reason: "more than 2^31 items in one batch".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use motcua_schemas::{Codec, Topic};

    #[test]
    fn every_topic_schema_converts() {
        let codec = Codec::embedded().expect("codec");
        for t in Topic::ALL {
            let v = codec.schemas().latest(t);
            let cols = TopicColumns::new(t.name(), &v.schema).unwrap_or_else(|e| panic!("{}: {e}", t.name()));
            let names: Vec<&str> = cols.schema().fields().iter().map(|f| f.name().as_str()).collect();
            assert_eq!(&names[names.len() - META_COLUMNS.len()..], META_COLUMNS);
        }
    }

    #[test]
    fn sample_events_become_typed_columns() {
        let codec = Codec::embedded().expect("codec");
        for (topic, bytes) in motcua_schemas::samples::one_of_each(&codec).expect("samples") {
            let cols = TopicColumns::new(topic.name(), &codec.schemas().latest(topic).schema).expect("columns");
            let value = codec.decode_value(topic, &bytes).expect("decode");
            let row = Row {
                partition: 1,
                offset: 7,
                timestamp_ms: 1_764_036_000_000,
                schema_id: 1,
                value,
            };
            let batch = cols
                .batch(topic.name(), &[row.clone(), row])
                .unwrap_or_else(|e| panic!("{}: {e}", topic.name()));
            assert_eq!(batch.num_rows(), 2);
        }
        let s = codec.schemas().latest(Topic::Submitted);
        let cols = TopicColumns::new("dossier.submitted", &s.schema).expect("columns");
        let schema = cols.schema();
        let DataType::Struct(dossier) = schema.field_with_name("dossier").expect("dossier").data_type() else {
            panic!("dossier is a struct")
        };
        let ty = |name: &str| {
            dossier
                .iter()
                .find(|f| f.name() == name)
                .expect(name)
                .data_type()
                .clone()
        };
        assert_eq!(
            ty("submitted_at"),
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
        );
        assert_eq!(ty("channel"), DataType::Utf8);
        assert!(matches!(ty("form_fields"), DataType::Map(..)));
        assert!(matches!(ty("documents"), DataType::List(_)));
        let DataType::Struct(applicant) = ty("applicant") else {
            panic!("applicant is a struct")
        };
        let dob = applicant.iter().find(|f| f.name() == "date_of_birth").expect("dob");
        assert_eq!(dob.data_type(), &DataType::Date32);
        assert!(dob.is_nullable());
    }

    #[test]
    fn unsupported_types_are_named_by_path() {
        let schema = Schema::parse_str(
            r#"{"type":"record","name":"R","fields":[{"name":"a","type":{"type":"record","name":"In","fields":[
                {"name":"x","type":["int","string"]}]}}]}"#,
        )
        .expect("schema");
        let e = TopicColumns::new("t", &schema).expect_err("two-type union").to_string();
        assert!(e.contains("a.x") && e.contains("union"), "{e}");
        let recursive =
            Schema::parse_str(r#"{"type":"record","name":"Node","fields":[{"name":"next","type":["null","Node"]}]}"#)
                .expect("schema");
        let e = TopicColumns::new("t", &recursive).expect_err("recursive").to_string();
        assert!(e.contains("contains itself"), "{e}");
    }

    #[test]
    fn named_types_used_twice_resolve() {
        let schema = Schema::parse_str(
            r#"{"type":"record","name":"R","namespace":"n","fields":[
                {"name":"a","type":{"type":"enum","name":"E","symbols":["X","Y"]}},
                {"name":"b","type":["null","E"],"default":null}]}"#,
        )
        .expect("schema");
        let cols = TopicColumns::new("t", &schema).expect("columns");
        assert_eq!(
            cols.schema().field_with_name("b").expect("b").data_type(),
            &DataType::Utf8
        );
        let row = Row {
            partition: 0,
            offset: 0,
            timestamp_ms: 0,
            schema_id: 1,
            value: Value::Record(vec![
                ("a".into(), Value::Enum(1, "Y".into())),
                ("b".into(), Value::Union(1, Box::new(Value::Enum(0, "X".into())))),
            ]),
        };
        let batch = cols.batch("t", &[row]).expect("batch");
        let b = batch.column(1).as_any().downcast_ref::<StringArray>().expect("strings");
        assert_eq!(b.value(0), "X");
    }
}
