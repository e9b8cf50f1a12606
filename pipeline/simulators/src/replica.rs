//! Bulk-loading a synthetic world into a PostgreSQL replica of the registries
//! (`motcua registry load`), so the `sql` connector can be tried and measured.

use std::time::{Duration, Instant};

use motcua_registries::sql::SqlRegistries;
use motcua_registries::{Business, Citizen, Parcel, Result};

use crate::world::World;

/// What a bulk load did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoadStats {
    pub citizens: u64,
    pub parcels: u64,
    pub businesses: u64,
    pub elapsed: Duration,
}

/// Loads a synthetic world (idempotent: existing keys are left as they are), in
/// batches of `batch` rows, one `INSERT … SELECT FROM UNNEST` per batch.
pub async fn load_world(replica: &SqlRegistries, world: &World, batch: usize) -> Result<LoadStats> {
    let started = Instant::now();
    let batch = batch.max(1) as u64;
    let mut start = 0;
    while start < world.citizens {
        let end = (start + batch).min(world.citizens);
        let rows: Vec<Citizen> = (start..end).map(|i| world.citizen(i)).collect();
        replica.insert_citizens(&rows).await?;
        start = end;
    }
    let mut start = 0;
    while start < world.parcels {
        let end = (start + batch).min(world.parcels);
        let rows: Vec<Parcel> = (start..end).map(|j| world.parcel(j)).collect();
        replica.insert_parcels(&rows).await?;
        start = end;
    }
    let (mut start, mut businesses) = (0, 0);
    while start < world.businesses {
        let end = (start + batch).min(world.businesses);
        let rows: Vec<Business> = (start..end).filter_map(|k| world.business(k)).collect();
        businesses += rows.len() as u64;
        replica.insert_businesses(&rows).await?;
        start = end;
    }
    Ok(LoadStats {
        citizens: world.citizens,
        parcels: world.parcels,
        businesses,
        elapsed: started.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use motcua_reference::AdminUnits;

    use motcua_registries::{BusinessRegistry, LandRegistry, Lookup, PopulationRegistry};

    use super::*;

    const LOOKUP: Lookup<'static> = Lookup {
        caller: "test",
        dossier_id: "d-1",
    };

    #[tokio::test]
    async fn a_loaded_world_answers_like_the_synthetic_one() {
        let url = motcua_store::testing::scratch_postgres_url().await;
        let sql = SqlRegistries::connect(&url).await.expect("replica");
        let units = AdminUnits::embedded().expect("units");
        let world = World::for_province(&units, "22", 3, 20_000).expect("world");
        let stats = load_world(&sql, &world, 5_000).await.expect("load");
        assert_eq!(stats.citizens, 20_000);
        // Loading again changes nothing (idempotent).
        load_world(&sql, &world, 5_000).await.expect("reload");
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM registry_citizens")
            .fetch_one(sql.pool())
            .await
            .expect("count");
        assert_eq!(count, 20_000);

        for i in [0, 1, 9_999, 19_999] {
            let c = world.citizen(i);
            assert_eq!(sql.citizen(&LOOKUP, &c.citizen_id).await.expect("lookup"), Some(c));
        }
        for j in [0, 77, world.parcels - 1] {
            let p = world.parcel(j);
            let got = sql
                .parcel(&LOOKUP, &p.unit_code, p.map_sheet, p.parcel_number)
                .await
                .expect("lookup");
            assert_eq!(got, Some(p));
        }
        let b = (0..100).find_map(|k| world.business(k)).expect("a business");
        assert_eq!(
            sql.business(&LOOKUP, &b.tax_code).await.expect("lookup"),
            Some(b.clone())
        );
        assert_eq!(
            sql.business(&LOOKUP, &format!("{}-001", b.tax_code))
                .await
                .expect("branch"),
            Some(b)
        );
        assert_eq!(sql.citizen(&LOOKUP, "022090999999").await.expect("lookup"), None);
    }
}
