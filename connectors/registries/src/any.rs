//! The registries a deployment chose in its configuration.

use crate::http::HttpRegistries;
use crate::sql::SqlRegistries;
use crate::{Business, BusinessRegistry, Citizen, LandRegistry, Lookup, Parcel, PopulationRegistry, Result};

#[derive(Debug, Clone)]
pub enum AnyRegistries {
    /// Through the data-exchange gateway.
    Http(HttpRegistries),
    /// A local PostgreSQL replica.
    Sql(SqlRegistries),
}

impl PopulationRegistry for AnyRegistries {
    async fn citizen(&self, lookup: &Lookup<'_>, citizen_id: &str) -> Result<Option<Citizen>> {
        match self {
            AnyRegistries::Http(r) => r.citizen(lookup, citizen_id).await,
            AnyRegistries::Sql(r) => r.citizen(lookup, citizen_id).await,
        }
    }
}

impl LandRegistry for AnyRegistries {
    async fn parcel(
        &self,
        lookup: &Lookup<'_>,
        unit_code: &str,
        map_sheet: i32,
        parcel_number: i32,
    ) -> Result<Option<Parcel>> {
        match self {
            AnyRegistries::Http(r) => r.parcel(lookup, unit_code, map_sheet, parcel_number).await,
            AnyRegistries::Sql(r) => r.parcel(lookup, unit_code, map_sheet, parcel_number).await,
        }
    }
}

impl BusinessRegistry for AnyRegistries {
    async fn business(&self, lookup: &Lookup<'_>, tax_code: &str) -> Result<Option<Business>> {
        match self {
            AnyRegistries::Http(r) => r.business(lookup, tax_code).await,
            AnyRegistries::Sql(r) => r.business(lookup, tax_code).await,
        }
    }
}
