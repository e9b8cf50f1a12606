//! The outside world motcua does not control, simulated — for the demo, tests, benchmarks
//! and load runs. Production crates (the stages, the connectors, the runtime) depend on
//! none of this.
//!
//! - [`world`]: synthetic national registries (population, land, business), deterministic
//!   by seed; [`replica`] bulk-loads them into a PostgreSQL replica.
//! - [`registries`]: a real HTTP server answering the registry gateway API from a world,
//!   with injected faults (latency, errors, outages).
//! - [`portal`]: what portals publish — generated submissions (valid and deliberately
//!   defective); [`publisher`]: an idempotent producer of Avro events, as portals run it.
//! - [`gateway`]: the payment gateway confirming bills (failures, duplicates, reordering).
//! - [`backoffice`]: the officers who decide routed dossiers (supplements, late ones, new
//!   appointments with an apology).
//! - [`citizens`]: applicants who answer supplement requests (or never do) and withdraw.
//! - [`national_portal`]: the National Public Service Portal taking status changes;
//!   [`wallet`]: citizens' e-wallets taking result documents (both over HTTP, with faults;
//!   the connectors that call them are issue 17's next step).
//! - [`faults`]: the faults every HTTP simulator injects.

pub mod backoffice;
pub mod citizens;
pub mod faults;
pub mod gateway;
pub mod http;
pub mod national_portal;
pub mod portal;
pub mod publisher;
pub mod registries;
pub mod replica;
pub mod wallet;
pub mod world;

/// What can go wrong in a simulator or the publisher.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kafka")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("encoding an event")]
    Schemas(#[from] motcua_schemas::Error),
    #[error("the producer was closed before a delivery report")]
    Closed,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
