//! Synthetic registry records: cost per record (citizen, parcel, business, and a citizen
//! found back from its ID), i.e. how fast millions of records generate.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use motcua_reference::AdminUnits;
use motcua_simulators::world::World;

fn synthetic(c: &mut Criterion) {
    let units = AdminUnits::embedded().expect("units");
    let world = World::for_province(&units, "22", 1, 10_000_000).expect("world");
    let ids: Vec<String> = (0..1_000u64).map(|i| world.citizen(i * 9_973).citizen_id).collect();
    let mut g = c.benchmark_group("synthetic");
    g.throughput(Throughput::Elements(1_000));
    g.bench_function("1000 citizens", |b| {
        b.iter(|| {
            (0..1_000u64)
                .map(|i| black_box(world.citizen(black_box(i))).date_of_birth as i64)
                .sum::<i64>()
        })
    });
    g.bench_function("1000 parcels", |b| {
        b.iter(|| {
            (0..1_000u64)
                .map(|j| black_box(world.parcel(black_box(j))).map_sheet as i64)
                .sum::<i64>()
        })
    });
    g.bench_function("1000 businesses", |b| {
        b.iter(|| (0..1_000u64).filter_map(|k| world.business(black_box(k))).count())
    });
    g.bench_function("1000 citizens by ID", |b| {
        b.iter(|| {
            ids.iter()
                .filter(|id| world.citizen_by_id(black_box(id)).is_some())
                .count()
        })
    });
    g.finish();
}

criterion_group!(benches, synthetic);
criterion_main!(benches);
