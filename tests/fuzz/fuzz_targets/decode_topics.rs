//! Any bytes, read from any topic: decoding and the limits at the door must answer
//! with a value or an error, never panic or allocate without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use motcua_schemas::{AnyEvent, Codec, Limits, Topic};

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else {
        return;
    };
    thread_local! {
        static CODEC: Codec = Codec::embedded().expect("codec");
    }
    let topic = Topic::ALL[usize::from(which) % Topic::ALL.len()];
    CODEC.with(|codec| {
        if let Ok(e) = AnyEvent::decode(codec, topic, bytes) {
            let _ = Limits::default().check(&e);
        }
    });
});
