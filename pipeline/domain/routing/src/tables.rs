//! Routing tables built once from the reference data, and the routing decision itself.
//!
//! Everything the hot path needs is resolved here into dense index tables: a unit's
//! province, the department of each (province, field), the desks of each authority and the
//! offsets of the desks serving each field. A decision on pre-resolved ids is then a handful
//! of bounds-checked array reads, a scan over 2–4 desk loads and the O(1) deadline. Codes
//! are resolved without hashing either: unit and province codes are numbers and index
//! arrays directly; procedure codes are found by binary search in a sorted table.

use motcua_reference::{LeadTime, Reference};
use motcua_schemas::{CompetentLevel, ProcedureField};

use crate::calendar::{Calendar, Deadline, WorkingHours};
use crate::data::{field_index, AuthorityLevel, Departments, DeskLayout, UnitHours, FIELDS};
use crate::error::{Error, Result, UnitRole};
use crate::steps::StepPlans;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(u32);

        impl $name {
            /// The id of the element at `index` of the matching table. An index these tables
            /// do not have is reported as [`Error::StaleId`] when used, never a panic.
            pub const fn new(index: u32) -> Self {
                Self(index)
            }

            pub const fn index(self) -> usize {
                self.0 as usize
            }
        }
    };
}

id_type!(
    /// A commune-level unit: its index in `Reference::units.units()`.
    UnitId
);
id_type!(
    /// A province: its index in `Reference::units.provinces()`.
    ProvinceId
);
id_type!(
    /// A procedure: its index in `Reference::catalog.procedures()`.
    ProcedureId
);
id_type!(
    /// A competent authority: commune-level units first (same index as their [`UnitId`]),
    /// then the provincial departments.
    AuthorityId
);
id_type!(
    /// A desk of an authority; also the index of its load in the `loads` slice.
    DeskId
);

/// A receiving center.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Center {
    /// A commune, ward or special zone public service center (5-digit unit code).
    Commune(UnitId),
    /// A provincial public service center (`P` + 2-digit province code).
    Provincial(ProvinceId),
}

/// A routing request with every code already resolved ([`RoutingTables::resolve`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteRequest {
    pub procedure: ProcedureId,
    /// The applicant's residence unit.
    pub residence: Option<UnitId>,
    /// The unit of the (first) land parcel, or of the construction site.
    pub parcel: Option<UnitId>,
    /// The business's head-office unit.
    pub head_office: Option<UnitId>,
    pub center: Center,
    /// Reception instant, epoch ms.
    pub received_at_ms: i64,
}

/// A routing request as it arrives, with codes (resolution borrows, never allocates).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteQuery<'a> {
    pub procedure_code: &'a str,
    pub residence_unit_code: Option<&'a str>,
    pub parcel_unit_code: Option<&'a str>,
    pub head_office_unit_code: Option<&'a str>,
    pub receiving_center_code: &'a str,
    pub received_at_ms: i64,
}

/// How the dossier travels from the receiving center to the competent authority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transfer {
    /// Received where it is decided (the commune itself, or the provincial center for a
    /// department).
    None,
    /// Received at another center of the same province (boundary-free reception).
    WithinProvince,
    /// Received in another province (nationwide procedures only).
    AcrossProvinces,
}

impl Transfer {
    /// The `transferred` flag of `dossier.routed`.
    pub fn is_transfer(self) -> bool {
        self != Transfer::None
    }
}

/// The competent authority and how the dossier gets there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Competence {
    pub authority: AuthorityId,
    pub transfer: Transfer,
    pub field: ProcedureField,
    pub lead_time: LeadTime,
}

/// The full routing decision for one dossier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub authority: AuthorityId,
    pub desk: DeskId,
    pub transfer: Transfer,
    pub deadline: Deadline,
}

/// A competent authority, with what the `dossier.routed` event needs to name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authority {
    /// The 5-digit unit code for a commune-level unit, `S<province>.<dept>` for a
    /// department (e.g. `S22.NNMT`).
    pub code: String,
    pub name: String,
    pub level: AuthorityLevel,
    pub province: ProvinceId,
}

/// A desk, as named in `dossier.routed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeskInfo<'a> {
    /// Code inside the authority, e.g. `DDXD`.
    pub code: &'a str,
    pub name: &'a str,
    pub authority: AuthorityId,
}

/// What routing needs to know about a procedure, packed for the hot path.
#[derive(Debug, Clone, Copy)]
struct ProcedureRule {
    field: ProcedureField,
    level: CompetentLevel,
    lead_time: LeadTime,
    nationwide: bool,
    boundary_free: bool,
    active: bool,
}

#[derive(Debug, Clone)]
struct ProvinceInfo {
    code: String,
    name: String,
    center_code: String,
}

const NO_INDEX: u32 = u32::MAX;
const NO_UNIT: u16 = u16::MAX;
/// Unit codes have at most 5 digits, so a direct table of 100,000 entries maps any of them.
const UNIT_CODE_SPACE: usize = 100_000;

/// Files replacing the embedded routing data (for start-up configuration and reload).
#[derive(Debug, Clone, Default)]
pub struct RoutingFiles {
    pub departments: Option<std::path::PathBuf>,
    pub desks: Option<std::path::PathBuf>,
    pub holidays: Option<std::path::PathBuf>,
    /// Step budgets of the procedures' internal processes (`procedure-steps.csv`).
    pub steps: Option<std::path::PathBuf>,
    /// Centers with hours of their own (`unit-hours.csv`).
    pub unit_hours: Option<std::path::PathBuf>,
    pub working_hours: WorkingHours,
}

/// Everything a routing decision reads, built once; immutable afterwards, so a reload builds
/// a new value and swaps it in (e.g. behind an `Arc`) while decisions keep using the old one.
#[derive(Debug, Clone)]
pub struct RoutingTables {
    calendar: Calendar,
    /// Calendars of centers with hours of their own; `unit_calendar[unit]` and
    /// `center_calendar[province]` index them from 1 (0: the calendar above).
    center_calendars: Vec<Calendar>,
    unit_calendar: Vec<u16>,
    province_center_calendar: Vec<u16>,
    steps: StepPlans,
    procedures: Vec<ProcedureRule>,
    procedure_codes: Vec<String>,
    /// Procedure codes packed into integers ([`pack_code`]), sorted, with their ids: a
    /// binary search compares integers, not strings.
    procedure_index: Vec<(u128, ProcedureId)>,
    /// Codes too long to pack (none in the national catalog's `N.NNNNNN` form), sorted.
    long_procedure_index: Vec<(Box<str>, ProcedureId)>,
    unit_province: Vec<u32>,
    /// Unit index by the number its code writes; `u16` halves the table (200 KB) so it
    /// stays in cache — 3,321 units today, at most 65,534.
    unit_by_number: Vec<u16>,
    provinces: Vec<ProvinceInfo>,
    province_by_number: [u32; 100],
    /// `department_of[province × 6 + field]`.
    department_of: Vec<AuthorityId>,
    authorities: Vec<Authority>,
    /// First desk of each authority; one extra entry at the end.
    desk_base: Vec<u32>,
    /// Authority and template index of each desk.
    desks: Vec<(AuthorityId, u16)>,
    layout: DeskLayout,
    /// Offsets (from an authority's first desk) of the desks serving a field:
    /// `eligible[level][field]` is a range of `eligible_offsets`.
    eligible: [[(u16, u16); 6]; 2],
    eligible_offsets: Vec<u16>,
}

fn level_index(level: AuthorityLevel) -> usize {
    match level {
        AuthorityLevel::Commune => 0,
        AuthorityLevel::Department => 1,
    }
}

/// The number written by an all-digit code of 1 to `max_len` characters.
#[inline]
fn code_number(code: &str, max_len: usize) -> Option<usize> {
    let bytes = code.as_bytes();
    if bytes.is_empty() || bytes.len() > max_len {
        return None;
    }
    let mut n = 0usize;
    for &b in bytes {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n * 10 + usize::from(b - b'0');
    }
    Some(n)
}

/// A procedure code of at most 15 bytes as one integer: its bytes, then its length (so no
/// two codes share a key). `None` for longer codes.
#[inline]
fn pack_code(code: &str) -> Option<u128> {
    let bytes = code.as_bytes();
    if bytes.len() > 15 {
        return None;
    }
    let mut buf = [0u8; 16];
    buf[..bytes.len()].copy_from_slice(bytes);
    buf[15] = bytes.len() as u8;
    Some(u128::from_be_bytes(buf))
}

/// How a province is named after a department: "tỉnh Quảng Ninh", "thành phố Hà Nội"
/// (the units file names provinces "Quảng Ninh" but cities "Thành phố Hà Nội").
fn province_title(province: &motcua_reference::Province) -> String {
    let name = province.name.trim();
    for prefix in ["Thành phố ", "Tỉnh "] {
        if let Some(rest) = name.strip_prefix(prefix) {
            return format!("{}{rest}", prefix.to_lowercase());
        }
    }
    let kind = if province.centrally_run_city {
        "thành phố"
    } else {
        "tỉnh"
    };
    format!("{kind} {name}")
}

impl RoutingTables {
    /// Tables from the reference data and the embedded routing data files.
    pub fn embedded(reference: &Reference) -> Result<Self> {
        Self::build(
            reference,
            &Departments::embedded()?,
            &DeskLayout::embedded()?,
            Calendar::embedded()?,
        )
    }

    /// Tables from the reference data and routing data files given by path, each falling
    /// back to the embedded copy: what a reload calls.
    pub fn load(reference: &Reference, files: &RoutingFiles) -> Result<Self> {
        let departments = match &files.departments {
            Some(p) => Departments::load(p)?,
            None => Departments::embedded()?,
        };
        let desks = match &files.desks {
            Some(p) => DeskLayout::load(p)?,
            None => DeskLayout::embedded()?,
        };
        let calendar = match &files.holidays {
            Some(p) => Calendar::load(p, files.working_hours)?,
            None => Calendar::parse("holidays.csv (embedded)", crate::EMBEDDED_HOLIDAYS, files.working_hours)?,
        };
        let mut tables = Self::build(reference, &departments, &desks, calendar)?;
        if let Some(p) = &files.unit_hours {
            tables.apply_unit_hours(&UnitHours::load(p)?)?;
        }
        if let Some(p) = &files.steps {
            tables.steps = StepPlans::load(p, &tables.calendar)?;
            tables.check_steps()?;
        }
        Ok(tables)
    }

    /// Gives the centers of `hours` calendars of their own (the others keep the default).
    fn apply_unit_hours(&mut self, hours: &UnitHours) -> Result<()> {
        self.center_calendars.clear();
        self.unit_calendar.iter_mut().for_each(|c| *c = 0);
        self.province_center_calendar.iter_mut().for_each(|c| *c = 0);
        for line in &hours.centers {
            let center = self.center(&line.center).map_err(|_| {
                Error::Incomplete(format!(
                    "the unit hours name center {}, which is neither a commune-level unit nor a provincial center (P + province code)",
                    line.center
                ))
            })?;
            let calendar = self
                .calendar
                .with_hours(line.hours.unwrap_or(*self.calendar.hours()), line.saturday);
            // Centers with the same hours share one calendar.
            let index = match self
                .center_calendars
                .iter()
                .position(|c| c.version() == calendar.version())
            {
                Some(i) => i + 1,
                None => {
                    self.center_calendars.push(calendar);
                    self.center_calendars.len()
                }
            };
            let index = u16::try_from(index).map_err(|_| Error::Incomplete("too many center calendars".into()))?;
            match center {
                Center::Commune(u) => self.unit_calendar[u.index()] = index,
                Center::Provincial(p) => self.province_center_calendar[p.index()] = index,
            }
        }
        Ok(())
    }

    /// The calendar of a center: its own hours, or the default calendar.
    #[inline]
    pub fn calendar_of(&self, center: Center) -> &Calendar {
        let index = match center {
            Center::Commune(u) => self.unit_calendar.get(u.index()),
            Center::Provincial(p) => self.province_center_calendar.get(p.index()),
        };
        match index.copied().unwrap_or(0) {
            0 => &self.calendar,
            i => self.center_calendars.get(usize::from(i) - 1).unwrap_or(&self.calendar),
        }
    }

    /// The calendar of a center by code (the default calendar for an unknown code).
    pub fn calendar_of_center(&self, code: &str) -> &Calendar {
        self.center(code).map_or(&self.calendar, |c| self.calendar_of(c))
    }

    /// Every procedure line names a catalog procedure, and no absolute budgets exceed a
    /// procedure's legal time.
    fn check_steps(&self) -> Result<()> {
        for code in self.steps.procedure_codes() {
            self.procedure_id(code).map_err(|_| {
                Error::Incomplete(format!(
                    "the step budgets name procedure {code}, which is not in the catalog"
                ))
            })?;
        }
        let per_day = self.calendar.hours().per_day_ms();
        for (code, rule) in self.procedure_codes.iter().zip(&self.procedures) {
            self.steps.check(code, rule.field, rule.lead_time, per_day)?;
        }
        Ok(())
    }

    /// The step budgets plan in force.
    pub fn step_plans(&self) -> &StepPlans {
        &self.steps
    }

    /// A dossier's step budgets in working ms ([`Step::ALL`] order): its procedure's
    /// plan applied to its legal working time (clock start to legal due time) on the
    /// calendar of the center that received it.
    pub fn step_budgets(&self, procedure_code: &str, center_code: &str, received_ms: i64) -> Result<[i64; 5]> {
        let id = self.procedure_id(procedure_code)?;
        let rule = &self.procedures[id.index()];
        let calendar = self.calendar_of_center(center_code);
        let deadline = calendar.deadline(received_ms, rule.lead_time)?;
        let legal = calendar.working_ms_between(deadline.clock_start_ms, deadline.due_ms)?;
        Ok(self.steps.budgets(self.steps.plan(procedure_code, rule.field), legal))
    }

    /// Resolves everything once. Fails when the data cannot route every case (a province
    /// without a department for some field), so gaps surface at start-up, not per dossier.
    pub fn build(
        reference: &Reference,
        departments: &Departments,
        layout: &DeskLayout,
        calendar: Calendar,
    ) -> Result<Self> {
        let units = reference.units.units();
        let provinces = reference.units.provinces();
        let too_many = |what: &str| Error::Incomplete(format!("too many {what} for 32-bit ids"));
        let as_u32 = |n: usize, what: &str| u32::try_from(n).map_err(|_| too_many(what));

        if units.len() >= usize::from(NO_UNIT) {
            return Err(too_many("units (at most 65,534)"));
        }
        let mut unit_by_number = vec![NO_UNIT; UNIT_CODE_SPACE];
        let mut unit_province = Vec::with_capacity(units.len());
        let mut authorities = Vec::with_capacity(units.len() + provinces.len() * FIELDS.len());
        for (i, u) in units.iter().enumerate() {
            let n = code_number(&u.code, 5)
                .ok_or_else(|| Error::Incomplete(format!("unit code '{}' is not 1–5 digits", u.code)))?;
            unit_by_number[n] = u16::try_from(i).map_err(|_| too_many("units"))?;
            unit_province.push(as_u32(u.province, "provinces")?);
            authorities.push(Authority {
                code: u.code.clone(),
                name: u.name.clone(),
                level: AuthorityLevel::Commune,
                province: ProvinceId(as_u32(u.province, "provinces")?),
            });
        }

        let mut province_by_number = [NO_INDEX; 100];
        let mut province_infos = Vec::with_capacity(provinces.len());
        let mut department_of = Vec::with_capacity(provinces.len() * FIELDS.len());
        for (pi, p) in provinces.iter().enumerate() {
            let n = code_number(&p.code, 2)
                .ok_or_else(|| Error::Incomplete(format!("province code '{}' is not 1–2 digits", p.code)))?;
            province_by_number[n] = as_u32(pi, "provinces")?;
            province_infos.push(ProvinceInfo {
                code: p.code.clone(),
                name: p.name.clone(),
                center_code: p.center_code(),
            });
            let first_department = authorities.len();
            for field in FIELDS {
                let rule = departments.rule_for(&p.code, field).ok_or_else(|| {
                    Error::Incomplete(format!(
                        "no department decides {} procedures in province {} ({})",
                        crate::data::field_name(field),
                        p.code,
                        p.name
                    ))
                })?;
                let code = format!("S{}.{}", p.code, rule.code);
                // Fields sharing a department (civil status and certification → Sở Tư pháp)
                // share one authority, hence one set of desks and loads.
                let id = match authorities[first_department..].iter().position(|a| a.code == code) {
                    Some(k) => first_department + k,
                    None => {
                        authorities.push(Authority {
                            code,
                            name: format!("{} {}", rule.name, province_title(p)),
                            level: AuthorityLevel::Department,
                            province: ProvinceId(as_u32(pi, "provinces")?),
                        });
                        authorities.len() - 1
                    }
                };
                department_of.push(AuthorityId(as_u32(id, "authorities")?));
            }
        }

        let mut desk_base = Vec::with_capacity(authorities.len() + 1);
        let mut desks = Vec::new();
        for (a, authority) in authorities.iter().enumerate() {
            desk_base.push(as_u32(desks.len(), "desks")?);
            for t in 0..layout.desks(authority.level).len() {
                let template = u16::try_from(t).map_err(|_| too_many("desk templates"))?;
                desks.push((AuthorityId(as_u32(a, "authorities")?), template));
            }
        }
        desk_base.push(as_u32(desks.len(), "desks")?);

        let mut eligible = [[(0u16, 0u16); 6]; 2];
        let mut eligible_offsets = Vec::new();
        for level in [AuthorityLevel::Commune, AuthorityLevel::Department] {
            for field in FIELDS {
                let start = u16::try_from(eligible_offsets.len()).map_err(|_| too_many("desk templates"))?;
                for (t, d) in layout.desks(level).iter().enumerate() {
                    if d.serves[field_index(field)] {
                        eligible_offsets.push(u16::try_from(t).map_err(|_| too_many("desk templates"))?);
                    }
                }
                let end = u16::try_from(eligible_offsets.len()).map_err(|_| too_many("desk templates"))?;
                if start == end {
                    return Err(Error::Incomplete(format!(
                        "no {level:?} desk serves {} procedures",
                        crate::data::field_name(field)
                    )));
                }
                eligible[level_index(level)][field_index(field)] = (start, end);
            }
        }

        let catalog = reference.catalog.procedures();
        let mut procedure_index = Vec::with_capacity(catalog.len());
        let mut long_procedure_index = Vec::new();
        for (i, p) in catalog.iter().enumerate() {
            let id = ProcedureId(as_u32(i, "procedures")?);
            match pack_code(&p.code) {
                Some(key) => procedure_index.push((key, id)),
                None => long_procedure_index.push((p.code.clone().into_boxed_str(), id)),
            }
        }
        procedure_index.sort_unstable_by_key(|e| e.0);
        long_procedure_index.sort_unstable_by(|a, b| a.0.cmp(&b.0));

        let steps = StepPlans::embedded(&calendar)?;
        let mut tables = Self {
            steps,
            center_calendars: Vec::new(),
            unit_calendar: vec![0; units.len()],
            province_center_calendar: vec![0; provinces.len()],
            calendar,
            procedures: catalog
                .iter()
                .map(|p| ProcedureRule {
                    field: p.field,
                    level: p.level,
                    lead_time: p.lead_time,
                    nationwide: p.nationwide,
                    boundary_free: p.boundary_free,
                    active: p.active,
                })
                .collect(),
            procedure_codes: catalog.iter().map(|p| p.code.clone()).collect(),
            procedure_index,
            long_procedure_index,
            unit_province,
            unit_by_number,
            provinces: province_infos,
            province_by_number,
            department_of,
            authorities,
            desk_base,
            desks,
            layout: layout.clone(),
            eligible,
            eligible_offsets,
        };
        tables.check_steps()?;
        tables.apply_unit_hours(&UnitHours::embedded()?)?;
        Ok(tables)
    }

    /// The default calendar (the configured hours); a center with hours of its own has
    /// [`RoutingTables::calendar_of`].
    pub fn calendar(&self) -> &Calendar {
        &self.calendar
    }

    // ----- resolution of codes (no hashing, no allocation on success) -----

    /// A procedure by catalog code.
    #[inline]
    pub fn procedure_id(&self, code: &str) -> Result<ProcedureId> {
        let found = match pack_code(code) {
            Some(key) => self
                .procedure_index
                .binary_search_by_key(&key, |e| e.0)
                .ok()
                .map(|i| self.procedure_index[i].1),
            None => self
                .long_procedure_index
                .binary_search_by(|(c, _)| (**c).cmp(code))
                .ok()
                .map(|i| self.long_procedure_index[i].1),
        };
        found.ok_or_else(|| Error::UnknownProcedure { code: code.to_owned() })
    }

    /// A commune-level unit by code; shorter codes are zero-padded ("70" = "00070"), as
    /// `AdminUnits::unit` does.
    #[inline]
    pub fn unit_id(&self, code: &str, role: UnitRole) -> Result<UnitId> {
        code_number(code, 5)
            .map(|n| self.unit_by_number[n])
            .filter(|&i| i != NO_UNIT)
            .map(|i| UnitId(u32::from(i)))
            .ok_or_else(|| Error::UnknownUnit {
                role,
                code: code.to_owned(),
            })
    }

    /// A receiving center: exactly 5 digits for a commune-level center, `P` + province code
    /// for a provincial center — the conventions of intake's validation.
    #[inline]
    pub fn center(&self, code: &str) -> Result<Center> {
        let unknown = || Error::UnknownCenter { code: code.to_owned() };
        if let Some(province) = code.strip_prefix('P') {
            let n = code_number(province, 2).ok_or_else(unknown)?;
            return match self.province_by_number[n] {
                NO_INDEX => Err(unknown()),
                p => Ok(Center::Provincial(ProvinceId(p))),
            };
        }
        if code.len() != 5 {
            return Err(unknown());
        }
        match code_number(code, 5).map(|n| self.unit_by_number[n]) {
            Some(i) if i != NO_UNIT => Ok(Center::Commune(UnitId(u32::from(i)))),
            _ => Err(unknown()),
        }
    }

    /// Resolves every code of a query.
    #[inline]
    pub fn resolve(&self, query: &RouteQuery<'_>) -> Result<RouteRequest> {
        let unit = |code: Option<&str>, role| code.map(|c| self.unit_id(c, role)).transpose();
        Ok(RouteRequest {
            procedure: self.procedure_id(query.procedure_code)?,
            residence: unit(query.residence_unit_code, UnitRole::Residence)?,
            parcel: unit(query.parcel_unit_code, UnitRole::LandParcel)?,
            head_office: unit(query.head_office_unit_code, UnitRole::HeadOffice)?,
            center: self.center(query.receiving_center_code)?,
            received_at_ms: query.received_at_ms,
        })
    }

    // ----- the decision -----

    /// The full decision from codes: [`resolve`](Self::resolve) then [`route`](Self::route).
    #[inline]
    pub fn route_codes(&self, query: &RouteQuery<'_>, loads: &[u32]) -> Result<Decision> {
        self.route(&self.resolve(query)?, loads)
    }

    /// The full decision: competent authority, least-loaded eligible desk, legal deadline.
    ///
    /// `loads[desk.index()]` is the current load of each desk (e.g. open dossiers), kept by
    /// the caller so this stays pure; a slice shorter than [`desk_count`](Self::desk_count)
    /// counts the missing desks as empty. Allocates nothing unless it fails.
    #[inline]
    pub fn route(&self, request: &RouteRequest, loads: &[u32]) -> Result<Decision> {
        let competence = self.competent_authority(request)?;
        let desk = self.choose_desk(competence.authority, competence.field, loads)?;
        // The clock counts the working time of the center that received the dossier.
        let deadline = self
            .calendar_of(request.center)
            .deadline(request.received_at_ms, competence.lead_time)?;
        Ok(Decision {
            authority: competence.authority,
            desk,
            transfer: competence.transfer,
            deadline,
        })
    }

    /// The competent authority of a request and whether the dossier is transferred:
    /// - the jurisdiction is the residence for residence, civil-status and certification
    ///   procedures, the parcel for land (residence if no parcel is given, as intake does),
    ///   the site (else residence) for construction, the head office (else residence) for
    ///   business;
    /// - a commune-level procedure goes to the jurisdiction unit, a province-level one to
    ///   the department of the jurisdiction's province for the procedure's field — whatever
    ///   center received it;
    /// - reception in another province needs a nationwide procedure; reception elsewhere in
    ///   the province needs a boundary-free (or nationwide) procedure — the same rule intake
    ///   applies, so a dossier intake admitted is routed.
    #[inline]
    pub fn competent_authority(&self, request: &RouteRequest) -> Result<Competence> {
        let procedure = *self.procedures.get(request.procedure.index()).ok_or(Error::StaleId {
            kind: "procedure",
            index: request.procedure.0,
        })?;
        if !procedure.active {
            return Err(Error::ProcedureInactive {
                code: self.procedure_code(request.procedure).to_owned(),
            });
        }
        let jurisdiction = match procedure.field {
            ProcedureField::Residence | ProcedureField::CivilStatus | ProcedureField::Certification => {
                request.residence
            }
            ProcedureField::Land | ProcedureField::Construction => request.parcel.or(request.residence),
            ProcedureField::Business => request.head_office.or(request.residence),
        }
        .ok_or_else(|| Error::MissingJurisdiction {
            procedure: self.procedure_code(request.procedure).to_owned(),
            field: procedure.field,
            needed: match procedure.field {
                ProcedureField::Land => "land parcel (or residence)",
                ProcedureField::Construction => "construction site (or residence)",
                ProcedureField::Business => "head office",
                _ => "residence",
            },
        })?;
        let province = self.province_of_unit(jurisdiction)?;
        let field = field_index(procedure.field);
        let (authority, own_center) = match procedure.level {
            CompetentLevel::Commune => (AuthorityId(jurisdiction.0), Center::Commune(jurisdiction)),
            CompetentLevel::Province => {
                let department = self.department_of[province as usize * FIELDS.len() + field];
                (department, Center::Provincial(ProvinceId(province)))
            }
        };
        let center_province = match request.center {
            Center::Commune(unit) => self.province_of_unit(unit)?,
            Center::Provincial(p) if p.index() < self.provinces.len() => p.0,
            Center::Provincial(p) => {
                return Err(Error::StaleId {
                    kind: "province",
                    index: p.0,
                })
            }
        };
        let transfer = if center_province != province {
            if !procedure.nationwide {
                return Err(Error::NotReceivableOutsideProvince {
                    procedure: self.procedure_code(request.procedure).to_owned(),
                    jurisdiction_province: self.provinces[province as usize].name.clone(),
                    center: self.center_code(request.center),
                    center_province: self.provinces[center_province as usize].name.clone(),
                });
            }
            Transfer::AcrossProvinces
        } else if request.center == own_center {
            Transfer::None
        } else if procedure.boundary_free || procedure.nationwide {
            Transfer::WithinProvince
        } else {
            return Err(Error::NotReceivableAtCenter {
                procedure: self.procedure_code(request.procedure).to_owned(),
                competent_center: self.center_code(own_center),
                center: self.center_code(request.center),
            });
        };
        Ok(Competence {
            authority,
            transfer,
            field: procedure.field,
            lead_time: procedure.lead_time,
        })
    }

    /// The least-loaded desk of `authority` serving `field`; ties go to the first desk in
    /// the layout, so the choice is deterministic.
    #[inline]
    pub fn choose_desk(&self, authority: AuthorityId, field: ProcedureField, loads: &[u32]) -> Result<DeskId> {
        let a = authority.index();
        let (Some(info), Some(&base)) = (self.authorities.get(a), self.desk_base.get(a)) else {
            return Err(Error::StaleId {
                kind: "authority",
                index: authority.0,
            });
        };
        let (start, end) = self.eligible[level_index(info.level)][field_index(field)];
        let mut best = NO_INDEX;
        let mut best_load = u32::MAX;
        for &offset in &self.eligible_offsets[usize::from(start)..usize::from(end)] {
            let desk = base + u32::from(offset);
            let load = loads.get(desk as usize).copied().unwrap_or(0);
            if best == NO_INDEX || load < best_load {
                best = desk;
                best_load = load;
            }
        }
        // Non-empty by construction (build refuses layouts leaving a field without desks).
        Ok(DeskId(best))
    }

    /// The legal deadline of a dossier received at `received_ms` (see [`Calendar::deadline`]).
    #[inline]
    pub fn deadline(&self, received_ms: i64, lead_time: LeadTime) -> Result<Deadline> {
        self.calendar.deadline(received_ms, lead_time)
    }

    // ----- naming the results -----

    pub fn authority(&self, id: AuthorityId) -> Option<&Authority> {
        self.authorities.get(id.index())
    }

    pub fn authorities(&self) -> &[Authority] {
        &self.authorities
    }

    pub fn desk(&self, id: DeskId) -> Option<DeskInfo<'_>> {
        let &(authority, template) = self.desks.get(id.index())?;
        let level = self.authorities.get(authority.index())?.level;
        let t = self.layout.desks(level).get(usize::from(template))?;
        Some(DeskInfo {
            code: &t.code,
            name: &t.name,
            authority,
        })
    }

    /// Length of the `loads` slice: one entry per desk of every authority.
    pub fn desk_count(&self) -> usize {
        self.desks.len()
    }

    /// The desks of an authority.
    pub fn desks_of(&self, id: AuthorityId) -> impl Iterator<Item = DeskId> + '_ {
        let range = match (self.desk_base.get(id.index()), self.desk_base.get(id.index() + 1)) {
            (Some(&a), Some(&b)) => a..b,
            _ => 0..0,
        };
        range.map(DeskId)
    }

    /// The department deciding province-level procedures of `field` in a province.
    pub fn department(&self, province: ProvinceId, field: ProcedureField) -> Option<AuthorityId> {
        self.department_of
            .get(province.index() * FIELDS.len() + field_index(field))
            .copied()
    }

    pub fn province_id(&self, code: &str) -> Option<ProvinceId> {
        code_number(code, 2)
            .map(|n| self.province_by_number[n])
            .filter(|&p| p != NO_INDEX)
            .map(ProvinceId)
    }

    /// The code a center is known by (`07090`, `P22`).
    pub fn center_code(&self, center: Center) -> String {
        match center {
            Center::Commune(u) => self.authorities.get(u.index()).map(|a| a.code.clone()),
            Center::Provincial(p) => self.provinces.get(p.index()).map(|p| p.center_code.clone()),
        }
        .unwrap_or_else(|| format!("{center:?}"))
    }

    pub fn procedure_code(&self, id: ProcedureId) -> &str {
        self.procedure_codes.get(id.index()).map_or("?", String::as_str)
    }

    /// The 2-digit code of a province.
    pub fn province_code(&self, id: ProvinceId) -> Option<&str> {
        self.provinces.get(id.index()).map(|p| p.code.as_str())
    }

    #[inline]
    fn province_of_unit(&self, unit: UnitId) -> Result<u32> {
        self.unit_province.get(unit.index()).copied().ok_or(Error::StaleId {
            kind: "unit",
            index: unit.0,
        })
    }
}
