//! The routing core: a full decision (competent authority + desk + legal deadline) and each
//! part alone, over realistic random inputs drawn from the real 2025 units and the catalog,
//! next to a naive baseline measured in the same run: routing through `String`-keyed hash
//! maps and a deadline found by walking the calendar day by day (and, for the deadline
//! alone, minute by minute). Inputs are generated before timing; each timed iteration is one
//! decision, so criterion's figure is ns per decision.
//!
//! Run: `cargo bench -p motcua-benches --bench routing` (see benches/README.md).

use std::collections::{HashMap, HashSet};
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use motcua_reference::civil::{civil_from_days, VN_OFFSET_MS};
use motcua_reference::{LeadTime, Procedure, Reference};
use motcua_routing::{field_index, DayKind, RouteQuery, RouteRequest, RoutingTables};
use motcua_schemas::{CompetentLevel, LeadTimeUnit, ProcedureField};

const DAY_MS: i64 = 86_400_000;
/// Inputs per benchmark, a power of two so the cycling index is a mask.
const INPUTS: usize = 4_096;

/// xorshift64*: reproducible inputs without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Realistic dossiers: any active procedure, a jurisdiction anywhere in the country, mostly
/// received at the competent center, a quarter at another center of the province
/// (boundary-free), a few in another province (nationwide); reception at any minute of
/// 2025–2029 weighted towards office hours.
fn queries(reference: &Reference, tables: &RoutingTables, seed: u64) -> Vec<Owned> {
    let mut rng = Rng(seed);
    let units = reference.units.units();
    let procedures: Vec<&Procedure> = reference.catalog.procedures().iter().filter(|p| p.active).collect();
    let mut out = Vec::with_capacity(INPUTS);
    while out.len() < INPUTS {
        let p = procedures[rng.below(procedures.len())];
        let unit = &units[rng.below(units.len())];
        let own_center = match p.level {
            CompetentLevel::Commune => unit.code.clone(),
            CompetentLevel::Province => reference.units.province_of(unit).center_code(),
        };
        let roll = rng.below(100);
        let center = if roll < 70 {
            own_center
        } else if roll < 95 {
            let mut same_province = reference.units.units_of(&reference.units.province_of(unit).code);
            let n = reference
                .units
                .units_of(&reference.units.province_of(unit).code)
                .count();
            same_province.nth(rng.below(n)).map_or(own_center, |u| u.code.clone())
        } else {
            units[rng.below(units.len())].code.clone()
        };
        let day = rng.below(5 * 365) as i64 + 20_089; // 2025-01-01 onwards
        let minute = if rng.below(10) < 8 {
            420 + rng.below(600)
        } else {
            rng.below(1_440)
        } as i64;
        let q = Owned {
            procedure: p.code.clone(),
            residence: unit.code.clone(),
            parcel: matches!(p.field, ProcedureField::Land | ProcedureField::Construction).then(|| unit.code.clone()),
            head_office: (p.field == ProcedureField::Business).then(|| unit.code.clone()),
            center,
            received_at_ms: day * DAY_MS + minute * 60_000 - VN_OFFSET_MS,
        };
        // Only decidable dossiers (refusals are rare and not the hot path).
        if tables.route_codes(&q.query(), &[]).is_ok() {
            out.push(q);
        }
    }
    out
}

/// A query's codes, owned so the borrowed [`RouteQuery`] can be made outside the timing.
struct Owned {
    procedure: String,
    residence: String,
    parcel: Option<String>,
    head_office: Option<String>,
    center: String,
    received_at_ms: i64,
}

impl Owned {
    fn query(&self) -> RouteQuery<'_> {
        RouteQuery {
            procedure_code: &self.procedure,
            residence_unit_code: Some(&self.residence),
            parcel_unit_code: self.parcel.as_deref(),
            head_office_unit_code: self.head_office.as_deref(),
            receiving_center_code: &self.center,
            received_at_ms: self.received_at_ms,
        }
    }
}

/// The baseline: what a first version would do — look everything up by `String` in hash
/// maps (building keys with `format!`), keep desk loads in a map, and find the deadline by
/// walking the calendar one day at a time with a date set for holidays.
struct Naive {
    units: HashMap<String, (String, String)>,
    procedures: HashMap<String, Procedure>,
    departments: HashMap<String, String>,
    desks: HashMap<String, Vec<(String, [bool; 6])>>,
    loads: HashMap<String, u32>,
    holidays: HashSet<(i32, u32, u32)>,
    workdays: HashSet<(i32, u32, u32)>,
}

impl Naive {
    fn new(reference: &Reference, tables: &RoutingTables, loads: &[u32]) -> Self {
        let mut naive = Naive {
            units: HashMap::new(),
            procedures: HashMap::new(),
            departments: HashMap::new(),
            desks: HashMap::new(),
            loads: HashMap::new(),
            holidays: HashSet::new(),
            workdays: HashSet::new(),
        };
        for u in reference.units.units() {
            naive.units.insert(
                u.code.clone(),
                (reference.units.province_of(u).code.clone(), u.name.clone()),
            );
        }
        for p in reference.catalog.procedures() {
            naive.procedures.insert(p.code.clone(), p.clone());
        }
        for p in reference.units.provinces() {
            let id = tables.province_id(&p.code).expect("province");
            for field in motcua_routing::FIELDS {
                let d = tables.department(id, field).expect("department");
                naive.departments.insert(
                    format!("{}:{field:?}", p.code),
                    tables.authority(d).expect("a").code.clone(),
                );
            }
        }
        for (a, authority) in tables.authorities().iter().enumerate() {
            let mut list = Vec::new();
            for desk in tables.desks_of(motcua_routing::AuthorityId::new(a as u32)) {
                let info = tables.desk(desk).expect("desk");
                let layout = motcua_routing::DeskLayout::embedded().expect("layout");
                let template = layout
                    .desks(authority.level)
                    .iter()
                    .find(|t| t.code == info.code)
                    .expect("template");
                list.push((info.code.to_owned(), template.serves));
                naive
                    .loads
                    .insert(format!("{}/{}", authority.code, info.code), loads[desk.index()]);
            }
            naive.desks.insert(authority.code.clone(), list);
        }
        for e in tables.calendar().exceptions() {
            let date = civil_from_days(e.day);
            match e.kind {
                DayKind::Holiday => naive.holidays.insert(date),
                DayKind::MakeUpWorkday => naive.workdays.insert(date),
            };
        }
        naive
    }

    fn day_works(&self, day: i64) -> bool {
        let date = civil_from_days(day);
        if self.workdays.contains(&date) {
            return true;
        }
        (day + 3).rem_euclid(7) < 5 && !self.holidays.contains(&date)
    }

    /// Day-by-day walk: consume each working day's periods until the lead time is spent.
    fn deadline(&self, received_ms: i64, lead: LeadTime) -> i64 {
        const PERIODS: [(i64, i64); 2] = [(420 * 60_000, 690 * 60_000), (810 * 60_000, 1_020 * 60_000)];
        let local = received_ms + VN_OFFSET_MS;
        let mut day = local.div_euclid(DAY_MS);
        if lead.unit == LeadTimeUnit::CalendarDays {
            day += i64::from(lead.value);
            while !self.day_works(day) {
                day += 1;
            }
            return day * DAY_MS + PERIODS[1].1 - VN_OFFSET_MS;
        }
        let mut remaining = i64::from(lead.value)
            * match lead.unit {
                LeadTimeUnit::WorkingDays => 8 * 3_600_000,
                _ => 3_600_000,
            };
        let mut from = local.rem_euclid(DAY_MS);
        loop {
            if self.day_works(day) {
                for (start, end) in PERIODS {
                    if from < end {
                        let begin = from.max(start);
                        if remaining <= end - begin {
                            return day * DAY_MS + begin + remaining - VN_OFFSET_MS;
                        }
                        remaining -= end - begin;
                    }
                }
            }
            day += 1;
            from = 0;
        }
    }

    fn decide(&self, q: &RouteQuery<'_>) -> Option<(String, String, i64)> {
        let p = self.procedures.get(q.procedure_code)?;
        let jurisdiction = match p.field {
            ProcedureField::Land | ProcedureField::Construction => q.parcel_unit_code.or(q.residence_unit_code),
            ProcedureField::Business => q.head_office_unit_code.or(q.residence_unit_code),
            _ => q.residence_unit_code,
        }?;
        let (province, _) = self.units.get(jurisdiction)?;
        let center_province = match q.receiving_center_code.strip_prefix('P') {
            Some(p) => p.to_owned(),
            None => self.units.get(q.receiving_center_code)?.0.clone(),
        };
        if &center_province != province && !p.nationwide {
            return None;
        }
        let authority = match p.level {
            CompetentLevel::Commune => jurisdiction.to_owned(),
            CompetentLevel::Province => self.departments.get(&format!("{province}:{:?}", p.field))?.clone(),
        };
        let desk = self
            .desks
            .get(&authority)?
            .iter()
            .filter(|(_, serves)| serves[field_index(p.field)])
            .min_by_key(|(code, _)| self.loads.get(&format!("{authority}/{code}")).copied().unwrap_or(0))?
            .0
            .clone();
        Some((authority, desk, self.deadline(q.received_at_ms, p.lead_time)))
    }

    /// Minute by minute, the reference of the property tests.
    fn deadline_minute_steps(&self, received_ms: i64, lead: LeadTime) -> i64 {
        let minutes = i64::from(lead.value)
            * if lead.unit == LeadTimeUnit::WorkingDays {
                480
            } else {
                60
            };
        let (mut t, mut remaining) = (received_ms / 60_000, minutes);
        while remaining > 0 {
            let local = t + VN_OFFSET_MS / 60_000;
            let of_day = local.rem_euclid(1_440);
            if self.day_works(local.div_euclid(1_440))
                && ((420..690).contains(&of_day) || (810..1_020).contains(&of_day))
            {
                remaining -= 1;
            }
            t += 1;
        }
        t * 60_000
    }
}

fn routing(c: &mut Criterion) {
    let reference = Reference::embedded().expect("reference");
    let tables = RoutingTables::embedded(&reference).expect("tables");
    let owned = queries(&reference, &tables, 0x5EED_2025);
    let queries: Vec<RouteQuery<'_>> = owned.iter().map(Owned::query).collect();
    let requests: Vec<RouteRequest> = queries.iter().map(|q| tables.resolve(q).expect("resolves")).collect();
    let mut rng = Rng(7);
    let loads: Vec<u32> = (0..tables.desk_count()).map(|_| rng.below(50) as u32).collect();
    let competences: Vec<_> = requests
        .iter()
        .map(|r| tables.competent_authority(r).expect("competent"))
        .collect();
    let naive = Naive::new(&reference, &tables, &loads);

    // The baseline must agree with the core, or the comparison means nothing.
    for (q, r) in queries.iter().zip(&requests) {
        let fast = tables.route(r, &loads).expect("decides");
        let (authority, desk, due) = naive.decide(q).expect("naive decides");
        assert_eq!(authority, tables.authority(fast.authority).expect("a").code);
        assert_eq!(desk, tables.desk(fast.desk).expect("d").code);
        assert_eq!(due, fast.deadline.due_ms, "{q:?}");
    }

    let mask = INPUTS - 1;
    let mut grp = c.benchmark_group("routing");
    grp.bench_function("full decision (resolved ids)", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) & mask;
            tables.route(black_box(&requests[i]), &loads)
        })
    });
    grp.bench_function("full decision (from codes)", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) & mask;
            tables.route_codes(black_box(&queries[i]), &loads)
        })
    });
    grp.bench_function("part: resolve codes", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) & mask;
            tables.resolve(black_box(&queries[i]))
        })
    });
    grp.bench_function("part: competent authority", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) & mask;
            tables.competent_authority(black_box(&requests[i]))
        })
    });
    grp.bench_function("part: desk", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) & mask;
            let c = &competences[i];
            tables.choose_desk(black_box(c.authority), c.field, &loads)
        })
    });
    grp.bench_function("part: deadline", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) & mask;
            tables.deadline(black_box(requests[i].received_at_ms), competences[i].lead_time)
        })
    });
    // A center open on Saturday mornings: the same deadlines by a binary search over days.
    let saturday = tables.calendar().with_hours(
        *tables.calendar().hours(),
        Some(motcua_routing::WorkingHours::parse("07:30-11:30").expect("hours")),
    );
    grp.bench_function("part: deadline, calendar with Saturday hours", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) & mask;
            saturday.deadline(black_box(requests[i].received_at_ms), competences[i].lead_time)
        })
    });
    grp.bench_function("baseline: full decision (String maps + day walk)", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) & mask;
            naive.decide(black_box(&queries[i]))
        })
    });
    grp.bench_function("baseline: deadline (day walk)", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) & mask;
            naive.deadline(black_box(requests[i].received_at_ms), competences[i].lead_time)
        })
    });
    grp.finish();

    // Minute stepping is ~10⁴ times slower: fewer samples keep the run short.
    let working_time: Vec<_> = (0..INPUTS)
        .filter(|&i| competences[i].lead_time.unit != LeadTimeUnit::CalendarDays)
        .collect();
    let mut slow = c.benchmark_group("routing (slow baseline)");
    slow.sample_size(10);
    slow.bench_function("baseline: deadline (minute steps)", |b| {
        let mut k = 0;
        b.iter(|| {
            k = (k + 1) % working_time.len();
            let i = working_time[k];
            naive.deadline_minute_steps(black_box(requests[i].received_at_ms), competences[i].lead_time)
        })
    });
    slow.finish();
}

criterion_group!(benches, routing);
criterion_main!(benches);
