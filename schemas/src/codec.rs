//! The Confluent wire format: magic byte `0`, 4-byte big-endian schema id, Avro binary body.
//! Any Kafka data tool with a Schema Registry (or our committed id table) reads our topics.

use std::collections::HashMap;
use std::sync::Arc;

use apache_avro::Schema;

use crate::embedded::{SCHEMA_FILES, SCHEMA_ID_TABLE};
use crate::{Error, Event, Result, Topic};

/// One version of a subject's schema.
#[derive(Debug, Clone)]
pub struct SchemaVersion {
    pub id: u32,
    pub subject: String,
    pub version: u32,
    pub file: String,
    pub text: String,
    pub schema: Arc<Schema>,
}

/// Every schema we know, by id, and the latest version per topic (the one we write with,
/// and the reader schema we decode into).
#[derive(Debug, Clone)]
pub struct SchemaSet {
    by_id: HashMap<u32, SchemaVersion>,
    latest: Vec<SchemaVersion>,
}

impl SchemaSet {
    /// The schemas compiled into this binary with the ids of `schemas/schema-ids.csv`.
    pub fn embedded() -> Result<Self> {
        let files: HashMap<&str, &str> = SCHEMA_FILES.iter().copied().collect();
        let mut versions = Vec::new();
        for (n, line) in SCHEMA_ID_TABLE.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with("id,") {
                continue;
            }
            let cols: Vec<&str> = line.split(',').collect();
            let [id, subject, version, file] = cols[..] else {
                return Err(Error::Table(format!(
                    "line {}: expected 4 columns id,subject,version,file, got {}",
                    n + 1,
                    cols.len()
                )));
            };
            let parse = |what: &str, v: &str| {
                v.parse::<u32>()
                    .map_err(|_| Error::Table(format!("line {}: {what} '{v}' is not a number", n + 1)))
            };
            let text = files
                .get(file)
                .ok_or_else(|| Error::Table(format!("line {}: file {file} is not under schemas/avro", n + 1)))?;
            versions.push((
                parse("id", id)?,
                subject.to_owned(),
                parse("version", version)?,
                file.to_owned(),
                (*text).to_owned(),
            ));
        }
        Self::from_versions(versions)
    }

    /// Builds a set from (id, subject, version, file, schema text) rows, e.g. ids assigned
    /// by a Schema Registry.
    pub fn from_versions(rows: Vec<(u32, String, u32, String, String)>) -> Result<Self> {
        let mut by_id = HashMap::new();
        for (id, subject, version, file, text) in rows {
            let schema = Schema::parse_str(&text).map_err(|e| Error::Schema {
                file: file.clone(),
                source: Box::new(e),
            })?;
            let v = SchemaVersion {
                id,
                subject,
                version,
                file,
                text,
                schema: Arc::new(schema),
            };
            if by_id.insert(id, v).is_some() {
                return Err(Error::Table(format!("schema id {id} appears twice")));
            }
        }
        let mut latest = Vec::with_capacity(Topic::ALL.len());
        for topic in Topic::ALL {
            let subject = topic.value_subject();
            let newest = by_id
                .values()
                .filter(|v| v.subject == subject)
                .max_by_key(|v| v.version)
                .ok_or_else(|| Error::Table(format!("no schema for subject {subject}")))?;
            latest.push(newest.clone());
        }
        Ok(Self { by_id, latest })
    }

    pub fn latest(&self, topic: Topic) -> &SchemaVersion {
        &self.latest[topic.index()]
    }

    pub fn by_id(&self, id: u32) -> Option<&SchemaVersion> {
        self.by_id.get(&id)
    }

    /// All versions of a subject, oldest first.
    pub fn history(&self, subject: &str) -> Vec<&SchemaVersion> {
        let mut v: Vec<&SchemaVersion> = self.by_id.values().filter(|v| v.subject == subject).collect();
        v.sort_by_key(|v| v.version);
        v
    }
}

const MAGIC: u8 = 0;
const HEADER_LEN: usize = 5;

/// Encodes events with the latest schema of their topic, decodes any known writer schema
/// into the latest reader schema (Avro schema resolution), so old messages stay readable.
#[derive(Debug, Clone)]
pub struct Codec {
    schemas: Arc<SchemaSet>,
}

/// The most apache-avro may allocate for one value while decoding.
pub(crate) const MAX_AVRO_ALLOCATION_BYTES: usize = 16 * 1024 * 1024;

impl Codec {
    pub fn new(schemas: SchemaSet) -> Self {
        // A hostile length prefix must not make the decoder allocate gigabytes: no field of
        // a message (at most ~1 MB) can need more than this. Set once per process.
        apache_avro::util::max_allocation_bytes(MAX_AVRO_ALLOCATION_BYTES);
        Self {
            schemas: Arc::new(schemas),
        }
    }

    pub fn embedded() -> Result<Self> {
        Ok(Self::new(SchemaSet::embedded()?))
    }

    pub fn schemas(&self) -> &SchemaSet {
        &self.schemas
    }

    pub fn encode<E: Event>(&self, event: &E) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(512);
        self.encode_into(event, &mut out)?;
        Ok(out)
    }

    pub fn encode_into<E: Event>(&self, event: &E, out: &mut Vec<u8>) -> Result<()> {
        let v = self.schemas.latest(E::TOPIC);
        out.push(MAGIC);
        out.extend_from_slice(&v.id.to_be_bytes());
        apache_avro::write_avro_datum_ref(&v.schema, event, out).map_err(|e| Error::Encode {
            topic: E::TOPIC.name().to_owned(),
            source: Box::new(e),
        })?;
        Ok(())
    }

    /// Reads the schema id of a framed message without decoding the body.
    pub fn schema_id(bytes: &[u8]) -> Result<u32> {
        if bytes.len() < HEADER_LEN {
            return Err(Error::TooShort { len: bytes.len() });
        }
        if bytes[0] != MAGIC {
            return Err(Error::BadMagic(bytes[0]));
        }
        Ok(u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]))
    }

    pub fn decode<E: Event>(&self, bytes: &[u8]) -> Result<E> {
        let id = Self::schema_id(bytes)?;
        let writer = self.schemas.by_id(id).ok_or(Error::UnknownSchemaId { id })?;
        let reader = self.schemas.latest(E::TOPIC);
        if writer.subject != reader.subject {
            return Err(Error::WrongSubject {
                id,
                subject: writer.subject.clone(),
                topic: E::TOPIC.name().to_owned(),
            });
        }
        let mut body = &bytes[HEADER_LEN..];
        let reader_schema = (writer.id != reader.id).then_some(reader.schema.as_ref());
        let value =
            apache_avro::from_avro_datum(&writer.schema, &mut body, reader_schema).map_err(|e| Error::Decode {
                id,
                source: Box::new(e),
            })?;
        if !body.is_empty() {
            return Err(Error::TrailingBytes { id, len: body.len() });
        }
        apache_avro::from_value::<E>(&value).map_err(|e| Error::Decode {
            id,
            source: Box::new(e),
        })
    }
}
