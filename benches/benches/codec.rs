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
    // What decode cost before its fast path, and still costs for a message of an older
    // writer version: apache-avro's value tree, then serde.
    g.bench_function("baseline: decode via apache_avro::Value", |b| {
        b.iter(|| {
            let v = apache_avro::from_avro_datum(&schema, &mut &black_box(&bytes)[5..], None).expect("datum");
            black_box(apache_avro::from_value::<DossierSubmitted>(&v).expect("value"))
        })
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

    // The largest event of the samples, both ways.
    let (largest, largest_bytes) = samples::events()
        .into_iter()
        .map(|e| {
            let mut out = Vec::new();
            e.encode(&codec, &mut out).expect("encode");
            (e, out)
        })
        .max_by_key(|(_, b)| b.len())
        .expect("samples");
    let topic = largest.topic();
    let largest_schema = codec.schemas().latest(topic).schema.clone();
    let mut g = c.benchmark_group(format!("codec/largest ({topic}, {} bytes)", largest_bytes.len()));
    g.throughput(Throughput::Elements(1));
    g.bench_function("decode", |b| {
        b.iter(|| {
            black_box(motcua_schemas::AnyEvent::decode(&codec, topic, black_box(&largest_bytes)).expect("decode"))
        })
    });
    // Only the value tree, without the serde step after it: a lower bound of the
    // general path.
    g.bench_function("baseline: apache_avro value tree alone", |b| {
        b.iter(|| {
            black_box(
                apache_avro::from_avro_datum(&largest_schema, &mut &black_box(&largest_bytes)[5..], None)
                    .expect("datum"),
            )
        })
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
