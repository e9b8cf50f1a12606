//! Any line given to `motcua publish`: parsed into a submission or refused, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[allow(dead_code, unreachable_pub)]
#[path = "../../../pipeline/motcua/src/portal_json.rs"]
mod portal_json;

fuzz_target!(|data: &[u8]| {
    if let Ok(d) = serde_json::from_slice::<portal_json::PortalDossier>(data) {
        let _ = d.into_event(0);
    }
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = portal_json::parse_rfc3339(s);
        let _ = portal_json::parse_date(s);
    }
});
