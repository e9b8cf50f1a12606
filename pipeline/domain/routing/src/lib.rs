//! The routing core: for one dossier, the competent authority (commune-level unit or
//! provincial department), the desk inside it, and the legal deadline on the working-day
//! calendar of Vietnam's public administration.
//!
//! Pure and synchronous: the caller passes the reception instant and the desk loads, and
//! gets a [`Decision`]; nothing is read from the clock, the network or a lock, so the route
//! stage can call it from any thread, and tests can call it with any instant. The
//! [`RoutingTables`] are built once at start-up (and again on reload) from the reference
//! data and the routing data files in `data/`; a decision on pre-resolved ids then costs a
//! few array reads and allocates nothing.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use motcua_routing::{RouteQuery, RoutingTables};
//! let reference = motcua_reference::Reference::embedded()?;
//! let tables = RoutingTables::embedded(&reference)?;
//! let mut loads = vec![0u32; tables.desk_count()];
//! // A land procedure for a parcel in Quảng Ninh, received at the provincial center at
//! // 2025-11-25 09:00 (UTC+7).
//! let procedure = reference.catalog.procedures().iter().find(|p| p.active && p.code == "1.012811").unwrap();
//! let parcel = reference.units.units_of("22").next().unwrap();
//! let decision = tables.route_codes(
//!     &RouteQuery {
//!         procedure_code: &procedure.code,
//!         residence_unit_code: None,
//!         parcel_unit_code: Some(&parcel.code),
//!         head_office_unit_code: None,
//!         receiving_center_code: "P22",
//!         received_at_ms: 1_764_036_000_000,
//!     },
//!     &loads,
//! )?;
//! loads[decision.desk.index()] += 1;
//! assert_eq!(tables.authority(decision.authority).unwrap().code, "S22.NNMT");
//! # Ok(()) }
//! ```

mod calendar;
mod data;
mod error;
mod steps;
mod tables;

pub use calendar::{calendar_version, Calendar, CalendarException, DayKind, Deadline, WorkingHours, EMBEDDED_HOLIDAYS};
pub use data::{
    field_index, field_name, AuthorityLevel, CenterHours, DepartmentRule, Departments, DeskLayout, DeskTemplate,
    UnitHours, EMBEDDED_DEPARTMENTS, EMBEDDED_DESKS, EMBEDDED_UNIT_HOURS, FIELDS,
};
pub use error::{Error, LocalDate, Result, UnitRole};
pub use steps::{Budget, Plan, Step, StepPlans, EMBEDDED_STEPS};
pub use tables::{
    Authority, AuthorityId, Center, Competence, Decision, DeskId, DeskInfo, ProcedureId, ProvinceId, RouteQuery,
    RouteRequest, RoutingFiles, RoutingTables, Transfer, UnitId,
};
