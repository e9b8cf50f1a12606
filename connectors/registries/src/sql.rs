//! The registries as a PostgreSQL replica: schema (migrations), lookups, bulk loader.

use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Row};

use crate::model::{Business, BusinessStatus, Citizen, Parcel, Sex};
use crate::{BusinessRegistry, Error, LandRegistry, Lookup, PopulationRegistry, Result};

/// Registries read from PostgreSQL tables.
#[derive(Debug, Clone)]
pub struct SqlRegistries {
    pool: PgPool,
}

impl SqlRegistries {
    /// Connects and applies the replica's migrations.
    pub async fn connect(url: &str) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await?;
        Self::from_pool(pool).await
    }

    pub async fn from_pool(pool: PgPool) -> Result<Self> {
        let mut migrator = sqlx::migrate!("./migrations");
        // The database may also hold other components' migrations.
        migrator.set_ignore_missing(true);
        migrator.run(&pool).await?;
        Ok(Self { pool })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub async fn insert_citizens(&self, rows: &[Citizen]) -> Result<()> {
        let ids: Vec<&str> = rows.iter().map(|c| c.citizen_id.as_str()).collect();
        let names: Vec<&str> = rows.iter().map(|c| c.full_name.as_str()).collect();
        let dobs: Vec<i32> = rows.iter().map(|c| c.date_of_birth).collect();
        let sexes: Vec<&str> = rows.iter().map(|c| sex_str(c.sex)).collect();
        let units: Vec<&str> = rows.iter().map(|c| c.residence_unit_code.as_str()).collect();
        let deceased: Vec<bool> = rows.iter().map(|c| c.deceased).collect();
        sqlx::query(
            "INSERT INTO registry_citizens (citizen_id, full_name, date_of_birth, sex, residence_unit_code, deceased)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::int[], $4::text[], $5::text[], $6::bool[])
             ON CONFLICT (citizen_id) DO NOTHING",
        )
        .bind(&ids)
        .bind(&names)
        .bind(&dobs)
        .bind(&sexes)
        .bind(&units)
        .bind(&deceased)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn insert_parcels(&self, rows: &[Parcel]) -> Result<()> {
        // Arrays of arrays cannot be UNNESTed row-wise; owners and encumbrances travel as
        // '|'-joined text and are split back on the server.
        let units: Vec<&str> = rows.iter().map(|p| p.unit_code.as_str()).collect();
        let sheets: Vec<i32> = rows.iter().map(|p| p.map_sheet).collect();
        let numbers: Vec<i32> = rows.iter().map(|p| p.parcel_number).collect();
        let owners: Vec<String> = rows.iter().map(|p| p.owners.join("|")).collect();
        let areas: Vec<f64> = rows.iter().map(|p| p.area_m2).collect();
        let uses: Vec<&str> = rows.iter().map(|p| p.land_use.as_str()).collect();
        let encumbrances: Vec<String> = rows.iter().map(|p| p.encumbrances.join("|")).collect();
        sqlx::query(
            "INSERT INTO registry_parcels (unit_code, map_sheet, parcel_number, owners, area_m2, land_use, encumbrances)
             SELECT u, s, n, string_to_array(o, '|'), a, l, COALESCE(string_to_array(NULLIF(e, ''), '|'), '{}')
             FROM UNNEST($1::text[], $2::int[], $3::int[], $4::text[], $5::float8[], $6::text[], $7::text[])
                  AS t(u, s, n, o, a, l, e)
             ON CONFLICT (unit_code, map_sheet, parcel_number) DO NOTHING",
        )
        .bind(&units)
        .bind(&sheets)
        .bind(&numbers)
        .bind(&owners)
        .bind(&areas)
        .bind(&uses)
        .bind(&encumbrances)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn insert_businesses(&self, rows: &[Business]) -> Result<()> {
        let codes: Vec<&str> = rows.iter().map(|b| b.tax_code.as_str()).collect();
        let names: Vec<&str> = rows.iter().map(|b| b.name.as_str()).collect();
        let statuses: Vec<&str> = rows.iter().map(|b| b.status.as_str()).collect();
        let reps: Vec<&str> = rows
            .iter()
            .map(|b| b.legal_representative_citizen_id.as_str())
            .collect();
        let units: Vec<&str> = rows.iter().map(|b| b.head_office_unit_code.as_str()).collect();
        sqlx::query(
            "INSERT INTO registry_businesses (tax_code, name, status, legal_representative_citizen_id, head_office_unit_code)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])
             ON CONFLICT (tax_code) DO NOTHING",
        )
        .bind(&codes)
        .bind(&names)
        .bind(&statuses)
        .bind(&reps)
        .bind(&units)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

fn sex_str(s: Sex) -> &'static str {
    match s {
        Sex::Male => "male",
        Sex::Female => "female",
    }
}

fn corrupt(registry: &'static str, what: &str) -> Error {
    Error::Refused {
        registry,
        reason: format!("replica row has an invalid {what}"),
    }
}

impl PopulationRegistry for SqlRegistries {
    async fn citizen(&self, _lookup: &Lookup<'_>, citizen_id: &str) -> Result<Option<Citizen>> {
        let row = sqlx::query(
            "SELECT citizen_id, full_name, date_of_birth, sex, residence_unit_code, deceased
             FROM registry_citizens WHERE citizen_id = $1",
        )
        .bind(citizen_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            let sex = match r.get::<&str, _>(3) {
                "male" => Sex::Male,
                "female" => Sex::Female,
                _ => return Err(corrupt("population", "sex")),
            };
            Ok(Citizen {
                citizen_id: r.get(0),
                full_name: r.get(1),
                date_of_birth: r.get(2),
                sex,
                residence_unit_code: r.get(4),
                deceased: r.get(5),
            })
        })
        .transpose()
    }
}

impl LandRegistry for SqlRegistries {
    async fn parcel(
        &self,
        _lookup: &Lookup<'_>,
        unit_code: &str,
        map_sheet: i32,
        parcel_number: i32,
    ) -> Result<Option<Parcel>> {
        let row = sqlx::query(
            "SELECT unit_code, map_sheet, parcel_number, owners, area_m2, land_use, encumbrances
             FROM registry_parcels WHERE unit_code = $1 AND map_sheet = $2 AND parcel_number = $3",
        )
        .bind(unit_code)
        .bind(map_sheet)
        .bind(parcel_number)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| Parcel {
            unit_code: r.get(0),
            map_sheet: r.get(1),
            parcel_number: r.get(2),
            owners: r.get(3),
            area_m2: r.get(4),
            land_use: r.get(5),
            encumbrances: r.get(6),
        }))
    }
}

impl BusinessRegistry for SqlRegistries {
    async fn business(&self, _lookup: &Lookup<'_>, tax_code: &str) -> Result<Option<Business>> {
        let main = tax_code.split('-').next().unwrap_or(tax_code);
        let row = sqlx::query(
            "SELECT tax_code, name, status, legal_representative_citizen_id, head_office_unit_code
             FROM registry_businesses WHERE tax_code = $1",
        )
        .bind(main)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(Business {
                tax_code: r.get(0),
                name: r.get(1),
                status: BusinessStatus::parse(r.get(2)).ok_or_else(|| corrupt("business", "status"))?,
                legal_representative_citizen_id: r.get(3),
                head_office_unit_code: r.get(4),
            })
        })
        .transpose()
    }
}
