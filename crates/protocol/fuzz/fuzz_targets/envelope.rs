//! Any bytes: parsing never panics, and a parsed request re-serialised with
//! its own id, method and params parses back to the same envelope.
#![no_main]

use castellan_protocol::jsonrpc::{Envelope, Kind};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(env) = Envelope::parse(data) else { return };
    if env.kind == Kind::Request || env.kind == Kind::Notification {
        let bytes = Envelope::request_bytes(env.id.as_ref(), env.method(), env.params.as_deref());
        let again = Envelope::parse(&bytes).expect("round trip parses");
        assert_eq!(again.kind, env.kind);
        assert_eq!(again.id, env.id);
        assert_eq!(again.method, env.method);
        assert_eq!(again.params.map(|p| p.get().to_owned()), env.params.map(|p| p.get().to_owned()));
    }
    let _ = env.params_object();
});
