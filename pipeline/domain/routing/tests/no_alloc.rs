//! Proof that the hot path allocates nothing: a counting global allocator wraps the system
//! one, and thousands of decisions on the real units and catalog (by ids and by codes,
//! every field, level, lead-time unit and transfer kind) must leave its counters untouched.
//! Runs without the test harness (see Cargo.toml) so no other thread allocates meanwhile.

use std::alloc::System;

use motcua_reference::Reference;
use motcua_routing::{RouteQuery, RoutingTables, Transfer};
use motcua_schemas::{CompetentLevel, ProcedureField};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Tuesday 2025-11-25 09:00 in Vietnam, plus a pseudo-random spread over 2025–2029.
fn instant(i: u64) -> i64 {
    1_764_036_000_000 + ((i.wrapping_mul(2_654_435_761) % (4 * 365 * 24 * 60)) as i64) * 60_000 - 300 * 86_400_000
}

fn main() {
    let reference = Reference::embedded().expect("reference data");
    let tables = RoutingTables::embedded(&reference).expect("routing tables");
    let units = reference.units.units();
    let procedures: Vec<_> = reference.catalog.procedures().iter().filter(|p| p.active).collect();
    let mut loads = vec![0u32; tables.desk_count()];
    let centers: Vec<String> = units.iter().map(|u| u.code.clone()).collect();
    let provincial: Vec<String> = reference.units.provinces().iter().map(|p| p.center_code()).collect();

    // Inputs prepared (and allocated) before measuring.
    let mut queries = Vec::new();
    for i in 0..20_000u64 {
        let p = procedures[(i as usize * 7) % procedures.len()];
        let unit = &units[(i as usize * 131) % units.len()];
        let center = if p.level == CompetentLevel::Province || i % 5 == 0 {
            &provincial[unit.province]
        } else if i % 3 == 0 {
            // Another unit (often another province): transfers and refusals.
            &centers[(i as usize * 977) % centers.len()]
        } else {
            &unit.code
        };
        queries.push(RouteQuery {
            procedure_code: &p.code,
            residence_unit_code: Some(&unit.code),
            parcel_unit_code: matches!(p.field, ProcedureField::Land | ProcedureField::Construction)
                .then_some(&*unit.code),
            head_office_unit_code: (p.field == ProcedureField::Business).then_some(&*unit.code),
            receiving_center_code: center,
            received_at_ms: instant(i),
        });
    }
    let requests: Vec<_> = queries.iter().filter_map(|q| tables.resolve(q).ok()).collect();
    let decidable: Vec<_> = requests
        .iter()
        .filter(|r| tables.route(r, &loads).is_ok())
        .copied()
        .collect();
    let decidable_queries: Vec<_> = queries
        .iter()
        .filter(|q| tables.route_codes(q, &loads).is_ok())
        .copied()
        .collect();
    assert!(decidable.len() > 10_000, "{} decidable requests", decidable.len());

    // The counter does count: one allocation is seen.
    let probe = Region::new(GLOBAL);
    drop(std::hint::black_box(vec![1u8; 16]));
    assert_eq!(probe.change().allocations, 1, "the counting allocator is in place");

    let region = Region::new(GLOBAL);
    let mut transfers = [0usize; 3];
    let mut checksum = 0i64;
    for request in &decidable {
        let Ok(decision) = tables.route(request, &loads) else {
            panic!("decidable before measuring")
        };
        loads[decision.desk.index()] += 1;
        checksum = checksum.wrapping_add(decision.deadline.due_ms);
        transfers[match decision.transfer {
            Transfer::None => 0,
            Transfer::WithinProvince => 1,
            Transfer::AcrossProvinces => 2,
        }] += 1;
    }
    for query in &decidable_queries {
        let Ok(decision) = tables.route_codes(query, &loads) else {
            panic!("decidable before measuring")
        };
        loads[decision.desk.index()] += 1;
        let due = tables.calendar().extend_for_suspension(
            decision.deadline.due_ms,
            query.received_at_ms,
            query.received_at_ms + 3 * 86_400_000,
        );
        checksum = checksum.wrapping_add(due.unwrap_or(0));
    }
    let stats = region.change();

    assert!(
        transfers.iter().all(|&n| n > 0),
        "every transfer kind exercised: {transfers:?}"
    );
    assert_eq!(
        (stats.allocations, stats.reallocations, stats.deallocations),
        (0, 0, 0),
        "the hot path allocated: {stats:?}"
    );
    println!(
        "no_alloc: {} decisions by id and {} by code, 0 allocations (transfers {transfers:?}, checksum {checksum})",
        decidable.len(),
        decidable_queries.len()
    );
    println!("1 passed, 0 failed");
}
