//! Intake validation (pure: catalog, units, identifiers, documents, boundary rules) over
//! a realistic mix of generated submissions, next to a baseline that only looks the
//! procedure up — the floor any validation pays.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use motcua_intake::validate;
use motcua_reference::Reference;
use motcua_simulators::portal::{Defect, Generator};

fn intake(c: &mut Criterion) {
    let r = Reference::embedded().expect("reference");
    let mut g = Generator::new(&r, "22", 99).expect("province");
    let inputs: Vec<_> = (0..1_000)
        .map(|i| {
            if i % 25 == 0 {
                g.defective(1_764_036_000_000, Defect::ALL[i / 25 % 5])
            } else {
                g.valid(1_764_036_000_000 + i as i64)
            }
        })
        .collect();

    let mut grp = c.benchmark_group("intake/validate");
    grp.throughput(Throughput::Elements(inputs.len() as u64));
    grp.bench_function("validate 1000 submissions", |b| {
        b.iter(|| {
            let mut ok = 0;
            for s in &inputs {
                ok += usize::from(validate(&r, black_box(s)).is_ok());
            }
            black_box(ok)
        })
    });
    grp.bench_function("baseline: catalog lookup only", |b| {
        b.iter(|| {
            let mut found = 0;
            for s in &inputs {
                found += usize::from(r.catalog.get(black_box(&s.dossier.procedure_code)).is_some());
            }
            black_box(found)
        })
    });
    grp.finish();
}

criterion_group!(benches, intake);
criterion_main!(benches);
