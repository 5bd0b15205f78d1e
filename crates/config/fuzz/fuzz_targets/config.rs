//! Any text: loading a configuration never panics, and every error it
//! reports names the file.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Err(e) = castellan_config::load("fuzz.yaml", text, &|_| Some("x".into())) {
        assert!(e.to_string().starts_with("fuzz.yaml"));
    }
});
