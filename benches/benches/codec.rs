//! The codec's hot path: encode and decode a `dossier.submitted` event (≈1 KB), next to
//! two baselines measured in the same run: apache-avro's generic `Value` path (what the
//! codec would cost without schema-aware serialization) and serde_json; and the limits
//! check every decoded input goes through, next to the decode it follows.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use motcua_schemas::{samples, Codec, DossierSubmitted, Event};

fn codec(c: &mut Criterion) {
    let codec = Codec::embedded().expect("schemas");
    let event = samples::submitted();
    let bytes = codec.encode(&event).expect("encode");
    let schema = codec.schemas().latest(DossierSubmitted::TOPIC).schema.clone();
    let json = serde_json::to_vec(&event).expect("json");

    let mut g = c.benchmark_group("codec/dossier.submitted");
    g.throughput(Throughput::Elements(1));
    g.bench_function("encode (schema-aware serializer)", |b| {
        let mut out = Vec::with_capacity(2048);
        b.iter(|| {
            out.clear();
            codec.encode_into(black_box(&event), &mut out).expect("encode");
            black_box(out.len())
        })
    });
    g.bench_function("baseline: encode via apache_avro::Value", |b| {
        b.iter(|| {
            let v = apache_avro::to_value(black_box(&event))
                .expect("value")
                .resolve(&schema)
                .expect("resolve");
            black_box(apache_avro::to_avro_datum(&schema, v).expect("datum").len())
        })
    });
    g.bench_function("baseline: encode serde_json", |b| {
        b.iter(|| black_box(serde_json::to_vec(black_box(&event)).expect("json").len()))
    });
    g.bench_function("decode", |b| {
        b.iter(|| black_box(codec.decode::<DossierSubmitted>(black_box(&bytes)).expect("decode")))
    });
    // The limits at the door, checked on every decoded input: next to decode, its cost.
    let limits = motcua_schemas::Limits::default();
    g.bench_function("limits check (after decode)", |b| {
        b.iter(|| black_box(limits.check(black_box(&event)).is_ok()))
    });
    g.bench_function("baseline: decode serde_json", |b| {
        b.iter(|| black_box(serde_json::from_slice::<DossierSubmitted>(black_box(&json)).expect("json")))
    });
    g.finish();
    eprintln!(
        "sizes: avro {} bytes (with 5-byte header), json {} bytes",
        bytes.len(),
        json.len()
    );
}

criterion_group!(benches, codec);
criterion_main!(benches);
