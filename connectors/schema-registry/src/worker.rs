//! What a worker does with the registry: at start-up, find (or register) the id of every
//! schema it writes and learn every version the registry holds for its subjects; while it
//! runs, resolve writer ids it has never seen ([`WriterSchemas`]).

use std::future::Future;
use std::pin::Pin;

use apache_avro::Schema;
use motcua_schemas::{FetchedSchema, LookupError, SchemaSet, Topic, WriterSchemas};

use crate::{Error, Result, SchemaRegistry};

/// How a worker obtains the ids of the schemas it writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdPolicy {
    /// Register each schema (the registry answers the existing id for one it holds, and
    /// refuses one its compatibility level does not allow).
    Register,
    /// Only look the schemas up; one the registry does not hold is an error (for
    /// deployments where `motcua schemas register` is a separate, reviewed step).
    LookUp,
}

/// Why a worker cannot start with this registry.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// Not reached: wait and try again (a registry restarting is not a reason to crash).
    #[error(transparent)]
    Unreachable(Error),
    #[error(
        "the schema registry refuses {file} as the next version of subject {subject}: {detail}. \
         This build's schema is not compatible with what the registry holds; \
         see `motcua schemas check`"
    )]
    Incompatible {
        subject: String,
        file: String,
        detail: String,
    },
    #[error(
        "{file} is not registered under subject {subject}, and schema_registry.auto_register is off: \
         run `motcua schemas register` first"
    )]
    NotRegistered { subject: String, file: String },
    #[error(transparent)]
    Registry(Error),
    #[error("schema set: {0}")]
    Schemas(#[from] motcua_schemas::Error),
}

impl StartupError {
    pub fn is_unreachable(&self) -> bool {
        matches!(self, StartupError::Unreachable(_))
    }
}

fn classify(e: Error) -> StartupError {
    if e.is_unreachable() {
        StartupError::Unreachable(e)
    } else {
        StartupError::Registry(e)
    }
}

/// Whether two schema texts are the same schema (Parsing Canonical Form: docs and
/// formatting aside).
pub fn same_schema(a: &str, b: &str) -> bool {
    match (Schema::parse_str(a), Schema::parse_str(b)) {
        (Ok(a), Ok(b)) => a.canonical_form() == b.canonical_form(),
        _ => a == b,
    }
}

/// The (id, version) under which `held` (rows of [`SchemaRegistry::held`]) has `schema`.
pub fn find_in(held: &[(u32, String, u32, String)], schema: &str) -> Option<(u32, u32)> {
    held.iter()
        .find(|(_, _, _, text)| same_schema(text, schema))
        .map(|(id, _, version, _)| (*id, *version))
}

impl SchemaRegistry {
    /// The id of `schema` under `subject` if the registry holds it, found through the
    /// versions endpoints (which every Confluent-compatible server has).
    pub async fn find(&self, subject: &str, schema: &str) -> Result<Option<(u32, u32)>> {
        Ok(find_in(&self.held(subject).await?, schema))
    }

    /// Every version the registry holds for `subject`: (id, subject, version, schema).
    pub async fn held(&self, subject: &str) -> Result<Vec<(u32, String, u32, String)>> {
        let mut out = Vec::new();
        for version in self.versions(subject).await? {
            let (id, text) = self.version(subject, version).await?;
            out.push((id, subject.to_owned(), version, text.to_string()));
        }
        Ok(out)
    }

    /// The schema set a worker runs with (see [`SchemaSet::from_registry`]): this
    /// build's latest schema of every topic under the registry's id, plus every version
    /// the registry holds for those subjects. `subject_of` names a topic's subject
    /// (TopicNameStrategy: `<topic as deployed>-value`).
    pub async fn worker_schemas(
        &self,
        embedded: &SchemaSet,
        subject_of: impl Fn(Topic) -> String,
        policy: IdPolicy,
    ) -> Result<SchemaSet, StartupError> {
        let mut own = Vec::with_capacity(Topic::ALL.len());
        let mut held = Vec::new();
        for topic in Topic::ALL {
            let subject = subject_of(topic);
            let mine = embedded.latest(topic);
            let versions = self.held(&subject).await.map_err(classify)?;
            let id = match (find_in(&versions, &mine.text), policy) {
                (Some((id, _)), _) => id,
                (None, IdPolicy::Register) => match self.register(&subject, &mine.text).await {
                    Ok(id) => id,
                    Err(e) if e.is_incompatible() => {
                        return Err(StartupError::Incompatible {
                            subject,
                            file: mine.file.clone(),
                            detail: match e {
                                Error::Api { message, .. } => message,
                                other => other.to_string(),
                            },
                        })
                    }
                    Err(e) => return Err(classify(e)),
                },
                (None, IdPolicy::LookUp) => {
                    return Err(StartupError::NotRegistered {
                        subject,
                        file: mine.file.clone(),
                    })
                }
            };
            held.extend(versions);
            own.push((topic, id, subject));
        }
        Ok(embedded.from_registry(&own, held)?)
    }

    /// The subjects a schema id is registered under (`GET /schemas/ids/{id}/versions`);
    /// empty when the server does not say.
    pub async fn subjects_of(&self, id: u32) -> Vec<String> {
        let answer: Result<serde_json::Value> = self
            .send(
                "subjects of an id",
                self.http
                    .get(self.url(&["schemas", "ids", &id.to_string(), "versions"])),
            )
            .await;
        answer
            .ok()
            .and_then(|v| {
                v.as_array().map(|rows| {
                    rows.iter()
                        .filter_map(|r| r["subject"].as_str().map(str::to_owned))
                        .collect()
                })
            })
            .unwrap_or_default()
    }
}

impl WriterSchemas for SchemaRegistry {
    fn fetch(&self, id: u32) -> Pin<Box<dyn Future<Output = Result<Option<FetchedSchema>, LookupError>> + Send + '_>> {
        Box::pin(async move {
            match self.schema(id).await {
                Ok(text) => Ok(Some(FetchedSchema {
                    text: text.to_string(),
                    subjects: self.subjects_of(id).await,
                })),
                // 40403: the registry holds no schema under this id; only that is the
                // message's fault. Anything else (down, 401, 5xx) is retried.
                Err(Error::Api { error_code: 40403, .. }) | Err(Error::Api { status: 404, .. }) => Ok(None),
                Err(e) => Err(LookupError {
                    id,
                    reason: e.to_string(),
                }),
            }
        })
    }
}
