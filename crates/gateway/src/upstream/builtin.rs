//! The builtin demo servers, answered in-process.

use bytes::Bytes;
use castellan_demo::DemoServer;
use castellan_protocol::jsonrpc::{Envelope, to_raw};
use tokio::sync::mpsc;

use super::{Outbound, ReplyRx, UpMsg};

/// A builtin demo upstream.
#[derive(Debug)]
pub struct BuiltinUpstream {
    server: DemoServer,
}

impl BuiltinUpstream {
    /// The builtin called `name`, if the binary has it.
    pub fn new(name: &str) -> Option<Self> {
        DemoServer::new(name).map(|server| BuiltinUpstream { server })
    }

    /// Answers a request at once.
    pub fn request(&self, out: &Outbound) -> ReplyRx {
        let params = out
            .params
            .as_ref()
            .and_then(|p| serde_json::from_str(p.get()).ok())
            .unwrap_or(serde_json::Value::Null);
        let bytes = match self.server.handle(&out.method, &params) {
            Ok(result) => Envelope::result_bytes(&out.id, &to_raw(&result)),
            Err(err) => err.to_response(Some(&out.id)),
        };
        let (tx, rx) = mpsc::channel(1);
        let bytes = Bytes::from(bytes);
        if let Ok(env) = Envelope::parse(&bytes) {
            let _ = tx.try_send(Ok(UpMsg::Final(env, bytes, 200)));
        }
        rx
    }
}
