/// Errors of the schema set and the codec.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("schema table: {0}")]
    Table(String),
    #[error("schema file {file} is not a valid Avro schema")]
    Schema {
        file: String,
        #[source]
        source: Box<apache_avro::Error>,
    },
    #[error("message is {len} bytes, shorter than the 5-byte Confluent header")]
    TooShort { len: usize },
    #[error("message starts with byte {0:#04x}, not the Confluent magic byte 0x00")]
    BadMagic(u8),
    #[error("schema id {id} is not known (not in the committed table nor the registry)")]
    UnknownSchemaId { id: u32 },
    #[error("schema id {id} belongs to subject {subject}, not to topic {topic}")]
    WrongSubject { id: u32, subject: String, topic: String },
    #[error("Avro body does not decode with schema id {id}")]
    Decode {
        id: u32,
        #[source]
        source: Box<apache_avro::Error>,
    },
    #[error("{len} trailing bytes after the Avro body (schema id {id})")]
    TrailingBytes { id: u32, len: usize },
    #[error("event does not encode with the schema of {topic}")]
    Encode {
        topic: String,
        #[source]
        source: Box<apache_avro::Error>,
    },
}

impl Error {
    /// A stable, machine-readable code for dead-letter headers and metrics labels.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Table(_) | Error::Schema { .. } => "SCHEMA_TABLE",
            Error::TooShort { .. } => "TOO_SHORT",
            Error::BadMagic(_) => "BAD_MAGIC_BYTE",
            Error::UnknownSchemaId { .. } => "UNKNOWN_SCHEMA_ID",
            Error::WrongSubject { .. } => "WRONG_SUBJECT",
            Error::Decode { .. } => "AVRO_DECODE",
            Error::TrailingBytes { .. } => "TRAILING_BYTES",
            Error::Encode { .. } => "AVRO_ENCODE",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
