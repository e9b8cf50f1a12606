//! Reference data every stage shares: the 2025 administrative units and the procedure
//! catalog. Both are data files compiled in (see `data/README.md` for their sources) and
//! can be replaced by newer files at start-up.

mod catalog;
pub mod civil;
pub mod ids;
mod units;

pub use catalog::{Catalog, LeadTime, Procedure};
pub use units::{AdminUnits, Province, Unit, UnitKind};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{file}, line {line}: {message}")]
    Data { file: String, line: usize, message: String },
    #[error("cannot read {file}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn data_error(file: &str, line: usize, message: impl Into<String>) -> Error {
    Error::Data {
        file: file.to_owned(),
        line,
        message: message.into(),
    }
}

/// The reference data of one deployment.
#[derive(Debug, Clone)]
pub struct Reference {
    pub units: AdminUnits,
    pub catalog: Catalog,
}

impl Reference {
    /// The files compiled into the binary.
    pub fn embedded() -> Result<Self> {
        Ok(Self {
            units: AdminUnits::embedded()?,
            catalog: Catalog::embedded()?,
        })
    }

    /// Files given by path, falling back to the embedded copy for any not given.
    pub fn load(units_file: Option<&std::path::Path>, procedures_file: Option<&std::path::Path>) -> Result<Self> {
        let read = |p: &std::path::Path| {
            std::fs::read_to_string(p).map_err(|source| Error::Io {
                file: p.display().to_string(),
                source,
            })
        };
        let units = match units_file {
            Some(p) => AdminUnits::parse(&p.display().to_string(), &read(p)?)?,
            None => AdminUnits::embedded()?,
        };
        let catalog = match procedures_file {
            Some(p) => Catalog::parse(&p.display().to_string(), &read(p)?)?,
            None => Catalog::embedded()?,
        };
        Ok(Self { units, catalog })
    }
}
