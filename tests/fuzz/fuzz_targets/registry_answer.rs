//! Any answer body from a registry: parsed or refused, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use motcua_registries::http::parse_answer;
use motcua_registries::{Business, Citizen, Parcel};

fuzz_target!(|data: &[u8]| {
    let _ = parse_answer::<Citizen>(data);
    let _ = parse_answer::<Parcel>(data);
    let _ = parse_answer::<Business>(data);
});
