//! The Confluent wire format: magic byte `0`, 4-byte big-endian schema id, Avro binary body.
//! Any Kafka data tool with a Schema Registry (or our committed id table) reads our topics.

use std::collections::HashMap;
use std::future::Future;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use apache_avro::types::Value;
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
        Self::from_table(SCHEMA_ID_TABLE, |file| files.get(file).map(|t| (*t).to_owned()))
    }

    /// The schemas of a `schemas/` directory (its `schema-ids.csv` and the files it
    /// names), e.g. a working tree's, to check before they are built into a release.
    pub fn from_dir(dir: &std::path::Path) -> Result<Self> {
        let table_path = dir.join("schema-ids.csv");
        let table = std::fs::read_to_string(&table_path)
            .map_err(|e| Error::Table(format!("cannot read {}: {e}", table_path.display())))?;
        Self::from_table(&table, |file| std::fs::read_to_string(dir.join(file)).ok())
    }

    /// Parses an id table (`id,subject,version,file` rows), reading each file's text
    /// with `read`.
    fn from_table(table: &str, read: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let mut versions = Vec::new();
        for (n, line) in table.lines().enumerate() {
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
            let text =
                read(file).ok_or_else(|| Error::Table(format!("line {}: cannot read schema file {file}", n + 1)))?;
            versions.push((
                parse("id", id)?,
                subject.to_owned(),
                parse("version", version)?,
                file.to_owned(),
                text,
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

    /// The set a worker uses with a Schema Registry: it writes each topic with this
    /// binary's latest schema under the id the registry gave it (`own`: per topic, the id
    /// and the subject), and knows every version the registry `held` for those subjects
    /// when the worker started: (id, subject, version, schema text). Schemas the registry
    /// holds that apache-avro cannot parse are left out (a message written with one is
    /// then an unknown id, not a crash).
    pub fn from_registry(&self, own: &[(Topic, u32, String)], held: Vec<(u32, String, u32, String)>) -> Result<Self> {
        let mut by_id = HashMap::new();
        for (id, subject, version, text) in held {
            if let Ok(schema) = Schema::parse_str(&text) {
                by_id.insert(
                    id,
                    SchemaVersion {
                        id,
                        file: format!("registry id {id}"),
                        subject,
                        version,
                        text,
                        schema: Arc::new(schema),
                    },
                );
            }
        }
        let mut latest = Vec::with_capacity(Topic::ALL.len());
        for topic in Topic::ALL {
            let (_, id, subject) = own
                .iter()
                .find(|(t, _, _)| *t == topic)
                .ok_or_else(|| Error::Table(format!("no registry id for topic {}", topic.name())))?;
            let mine = SchemaVersion {
                id: *id,
                subject: subject.clone(),
                ..self.latest(topic).clone()
            };
            by_id.insert(*id, mine.clone());
            latest.push(mine);
        }
        Ok(Self { by_id, latest })
    }

    pub fn latest(&self, topic: Topic) -> &SchemaVersion {
        &self.latest[topic.index()]
    }

    /// How many schema versions the set knows.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
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

/// A schema fetched for an unknown writer id: its text and, when the source says, the
/// subjects it is registered under.
#[derive(Debug, Clone)]
pub struct FetchedSchema {
    pub text: String,
    pub subjects: Vec<String>,
}

/// The writer-schema source could not answer (down, refused our credentials, a server
/// error): the message is not at fault, so it is retried later, never dead-lettered.
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot look up schema id {id}: {reason}")]
pub struct LookupError {
    pub id: u32,
    pub reason: String,
}

/// Where writer schemas this binary was not built with are found: a Schema Registry
/// (`GET /schemas/ids/{id}`). `Ok(None)`: the source has no schema under that id.
pub trait WriterSchemas: Send + Sync + std::fmt::Debug {
    fn fetch(&self, id: u32) -> Pin<Box<dyn Future<Output = Result<Option<FetchedSchema>, LookupError>> + Send + '_>>;
}

/// How long an id the source does not hold is not asked for again: hostile or corrupt
/// messages with made-up ids must not turn into one registry request each.
const MISSING_ID_TTL: Duration = Duration::from_secs(60);
/// At most this many missing ids are remembered (then the memory starts afresh).
const MISSING_ID_CAPACITY: usize = 10_000;

#[derive(Debug, Default)]
struct Learned {
    by_id: HashMap<u32, Arc<SchemaVersion>>,
    missing: HashMap<u32, Instant>,
}

/// Encodes events with the latest schema of their topic, decodes any known writer schema
/// into the latest reader schema (Avro schema resolution), so old messages stay readable.
/// With a [`WriterSchemas`] source, writer ids it does not know are fetched once
/// ([`Codec::learn_writers`]) and kept: a worker reads versions written after it was built.
#[derive(Debug, Clone)]
pub struct Codec {
    schemas: Arc<SchemaSet>,
    /// Per topic, its latest schema prepared for the decoding fast path.
    fast: Arc<Vec<Option<crate::fast::Plan>>>,
    learned: Arc<RwLock<Learned>>,
    source: Option<Arc<dyn WriterSchemas>>,
}

/// A writer schema: compiled in (or known at start-up), or learned since.
enum Writer<'a> {
    Known(&'a SchemaVersion),
    Learned(Arc<SchemaVersion>),
}

impl Deref for Writer<'_> {
    type Target = SchemaVersion;
    fn deref(&self) -> &SchemaVersion {
        match self {
            Writer::Known(v) => v,
            Writer::Learned(v) => v,
        }
    }
}

/// The most apache-avro may allocate for one value while decoding.
pub(crate) const MAX_AVRO_ALLOCATION_BYTES: usize = 16 * 1024 * 1024;

impl Codec {
    pub fn new(schemas: SchemaSet) -> Self {
        // A hostile length prefix must not make the decoder allocate gigabytes: no field of
        // a message (at most ~1 MB) can need more than this. Set once per process.
        apache_avro::util::max_allocation_bytes(MAX_AVRO_ALLOCATION_BYTES);
        let fast = Topic::ALL
            .iter()
            .map(|t| crate::fast::Plan::new(&schemas.latest(*t).schema))
            .collect();
        Self {
            fast: Arc::new(fast),
            schemas: Arc::new(schemas),
            learned: Arc::default(),
            source: None,
        }
    }

    /// Unknown writer ids are looked up in `source` (see [`Codec::learn_writers`]).
    pub fn with_writer_schemas(mut self, source: Arc<dyn WriterSchemas>) -> Self {
        self.source = Some(source);
        self
    }

    /// Whether messages written with schema `id` can be decoded now.
    pub fn knows(&self, id: u32) -> bool {
        self.schemas.by_id(id).is_some() || self.read_learned().by_id.contains_key(&id)
    }

    /// Fetches the writer schema of every framed message in `payloads` that this codec
    /// does not know yet, so that decoding them is synchronous. Ids the source does not
    /// hold stay unknown (decoding reports them); without a source this does nothing.
    /// An error means the source did not answer: try again later.
    pub async fn learn_writers<'a>(&self, payloads: impl IntoIterator<Item = &'a [u8]>) -> Result<usize, LookupError> {
        let Some(source) = &self.source else {
            return Ok(0);
        };
        let mut wanted: Vec<u32> = Vec::new();
        {
            let learned = self.read_learned();
            let now = Instant::now();
            for p in payloads {
                let Ok(id) = Self::schema_id(p) else { continue };
                let recently_missing = learned
                    .missing
                    .get(&id)
                    .is_some_and(|at| now.duration_since(*at) < MISSING_ID_TTL);
                if !wanted.contains(&id)
                    && self.schemas.by_id(id).is_none()
                    && !learned.by_id.contains_key(&id)
                    && !recently_missing
                {
                    wanted.push(id);
                }
            }
        }
        let mut learned_now = 0;
        for id in wanted {
            let fetched = source.fetch(id).await?;
            let parsed = fetched.and_then(|f| Schema::parse_str(&f.text).ok().map(|schema| (f, schema)));
            let mut learned = self.learned.write().unwrap_or_else(std::sync::PoisonError::into_inner);
            match parsed {
                Some((f, schema)) => {
                    learned.missing.remove(&id);
                    learned.by_id.insert(
                        id,
                        Arc::new(SchemaVersion {
                            id,
                            subject: f.subjects.into_iter().next().unwrap_or_default(),
                            version: 0,
                            file: format!("registry id {id}"),
                            text: f.text,
                            schema: Arc::new(schema),
                        }),
                    );
                    learned_now += 1;
                }
                None => {
                    if learned.missing.len() >= MISSING_ID_CAPACITY {
                        learned.missing.clear();
                    }
                    learned.missing.insert(id, Instant::now());
                }
            }
        }
        Ok(learned_now)
    }

    fn read_learned(&self) -> std::sync::RwLockReadGuard<'_, Learned> {
        self.learned.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn writer(&self, id: u32) -> Option<Writer<'_>> {
        if let Some(v) = self.schemas.by_id(id) {
            return Some(Writer::Known(v));
        }
        self.read_learned().by_id.get(&id).cloned().map(Writer::Learned)
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
        if let Some(event) = self.decode_fast::<E>(bytes) {
            return Ok(event);
        }
        self.decode_general(bytes)
    }

    /// Written with the reader's own schema: straight into the type (`crate::fast`);
    /// `None` sends the message the general way.
    pub(crate) fn decode_fast<E: Event>(&self, bytes: &[u8]) -> Option<E> {
        let id = Self::schema_id(bytes).ok()?;
        if self.schemas.latest(E::TOPIC).id != id {
            return None;
        }
        self.fast
            .get(E::TOPIC.index())?
            .as_ref()?
            .decode(bytes.get(HEADER_LEN..)?)
    }

    /// Through apache-avro's value tree, resolving any known writer schema into the
    /// reader's (and the one that reports what is wrong with a message).
    pub(crate) fn decode_general<E: Event>(&self, bytes: &[u8]) -> Result<E> {
        let value = self.decode_value(E::TOPIC, bytes)?;
        apache_avro::from_value::<E>(&value).map_err(|e| Error::Decode {
            id: Self::schema_id(bytes).unwrap_or_default(),
            source: Box::new(e),
        })
    }

    /// Decodes a message of `topic` into an Avro value of the topic's latest (reader)
    /// schema, whatever known version wrote it.
    pub fn decode_value(&self, topic: Topic, bytes: &[u8]) -> Result<Value> {
        let id = Self::schema_id(bytes)?;
        let writer = self.writer(id).ok_or(Error::UnknownSchemaId { id })?;
        let reader = self.schemas.latest(topic);
        let same_topic = match &writer {
            Writer::Known(w) => w.subject == reader.subject,
            // Learned ids may be registered under subjects of other naming strategies:
            // the record's full name says which event it is.
            Writer::Learned(w) => {
                w.subject == reader.subject
                    || full_name(&w.schema).is_some_and(|n| Some(n) == full_name(&reader.schema))
            }
        };
        if !same_topic {
            return Err(Error::WrongSubject {
                id,
                subject: writer.subject.clone(),
                topic: topic.name().to_owned(),
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
        Ok(value)
    }
}

fn full_name(schema: &Schema) -> Option<String> {
    match schema {
        Schema::Record(r) => Some(r.name.fullname(None)),
        _ => None,
    }
}
