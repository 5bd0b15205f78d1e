//! `subscriptions/listen` (2026-07-28): a long-lived SSE response carrying
//! the change notifications an agent opted in to, each tagged with the
//! listen request's id. The gateway fans the subscription out to modern
//! upstreams and feeds it from legacy upstreams' pushes.

use std::sync::Mutex;

use bytes::Bytes;
use castellan_protocol::jsonrpc::{Envelope, RawObject, RequestId, to_raw};
use castellan_protocol::sse;
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// `_meta` key naming the subscription a notification belongs to.
pub const META_SUBSCRIPTION_ID: &str = "io.modelcontextprotocol/subscriptionId";

/// What an agent asked to hear about.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    /// `notifications/tools/list_changed`.
    pub tools: bool,
    /// `notifications/prompts/list_changed`.
    pub prompts: bool,
    /// `notifications/resources/list_changed`.
    pub resources: bool,
    /// `notifications/resources/updated` for these URIs.
    pub resource_uris: Vec<String>,
}

impl Filter {
    /// Reads `params.notifications`; unknown kinds are not honoured.
    pub fn from_params(params: &RawObject) -> Filter {
        let n: Value = params
            .get("notifications")
            .and_then(|n| serde_json::from_str(n.get()).ok())
            .unwrap_or(Value::Null);
        let flag = |k: &str| n.get(k).and_then(Value::as_bool).unwrap_or(false);
        Filter {
            tools: flag("toolsListChanged"),
            prompts: flag("promptsListChanged"),
            resources: flag("resourcesListChanged"),
            resource_uris: n
                .get("resourceSubscriptions")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// The honoured subset, as sent in the acknowledgement.
    pub fn to_json(&self) -> Value {
        let mut o = serde_json::Map::new();
        if self.tools {
            o.insert("toolsListChanged".into(), json!(true));
        }
        if self.prompts {
            o.insert("promptsListChanged".into(), json!(true));
        }
        if self.resources {
            o.insert("resourcesListChanged".into(), json!(true));
        }
        if !self.resource_uris.is_empty() {
            o.insert("resourceSubscriptions".into(), json!(self.resource_uris));
        }
        Value::Object(o)
    }

    /// Whether a notification passes the filter.
    pub fn matches(&self, method: &str, params: Option<&RawObject>) -> bool {
        match method {
            "notifications/tools/list_changed" => self.tools,
            "notifications/prompts/list_changed" => self.prompts,
            "notifications/resources/list_changed" => self.resources,
            "notifications/resources/updated" => params
                .and_then(|p| p.get_str("uri"))
                .is_some_and(|u| self.resource_uris.iter().any(|x| x == &u)),
            _ => false,
        }
    }
}

/// A live subscription.
#[derive(Debug)]
struct Listener {
    agent: std::sync::Arc<str>,
    id: RequestId,
    filter: Filter,
    tx: mpsc::Sender<Bytes>,
}

/// Every live subscription of modern agents.
#[derive(Debug, Default)]
pub struct Listeners {
    live: Mutex<Vec<Listener>>,
}

impl Listeners {
    /// Registers a subscription of `agent`; returns the acknowledgement
    /// frame, or `None` when the agent already has `max` open.
    pub fn add(
        &self,
        agent: std::sync::Arc<str>,
        max: usize,
        id: RequestId,
        filter: Filter,
        tx: mpsc::Sender<Bytes>,
    ) -> Option<Bytes> {
        let ack = notification(
            "notifications/subscriptions/acknowledged",
            &id,
            json!({"notifications": filter.to_json()}),
        );
        if let Ok(mut l) = self.live.lock() {
            l.retain(|l| !l.tx.is_closed());
            if l.iter().filter(|x| x.agent == agent).count() >= max {
                return None;
            }
            l.push(Listener {
                agent,
                id,
                filter,
                tx,
            });
        }
        Some(sse::encode(None, None, &ack))
    }

    /// Delivers a notification to every matching subscription, tagged with
    /// its id; forgets subscriptions whose agent went away.
    pub fn deliver(&self, message: &Envelope) {
        let params = message.params_object().ok();
        let Ok(mut live) = self.live.lock() else {
            return;
        };
        live.retain(|l| !l.tx.is_closed());
        for l in live
            .iter()
            .filter(|l| l.filter.matches(message.method(), params.as_ref()))
        {
            let bytes = tag(message, &l.id);
            let _ = l.tx.try_send(sse::encode(None, None, &bytes));
        }
    }
}

/// A notification tagged with the subscription id.
pub fn tag(message: &Envelope, id: &RequestId) -> Vec<u8> {
    let mut params = message.params_object().unwrap_or_default();
    let mut meta: RawObject = params
        .get("_meta")
        .and_then(|m| serde_json::from_str(m.get()).ok())
        .unwrap_or_default();
    meta.set(META_SUBSCRIPTION_ID, to_raw(&id_value(id)));
    params.set("_meta", meta.to_raw());
    Envelope::request_bytes(None, message.method(), Some(&params.to_raw()))
}

fn notification(method: &str, id: &RequestId, mut params: Value) -> Vec<u8> {
    if let Some(o) = params.as_object_mut() {
        o.insert(
            "_meta".into(),
            json!({ META_SUBSCRIPTION_ID: id_value(id) }),
        );
    }
    Envelope::request_bytes(None, method, Some(&to_raw(&params)))
}

fn id_value(id: &RequestId) -> Value {
    serde_json::from_str(id.as_json()).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_pass_only_what_was_asked_for() {
        let params: RawObject = serde_json::from_str(r#"{"notifications":{"toolsListChanged":true,"resourceSubscriptions":["test://a"],"bogus":true}}"#).expect("params");
        let f = Filter::from_params(&params);
        assert_eq!(
            f.to_json(),
            json!({"toolsListChanged": true, "resourceSubscriptions": ["test://a"]})
        );
        assert!(f.matches("notifications/tools/list_changed", None));
        assert!(!f.matches("notifications/prompts/list_changed", None));
        let a: RawObject = serde_json::from_str(r#"{"uri":"test://a"}"#).expect("a");
        let b: RawObject = serde_json::from_str(r#"{"uri":"test://b"}"#).expect("b");
        assert!(f.matches("notifications/resources/updated", Some(&a)));
        assert!(!f.matches("notifications/resources/updated", Some(&b)));
    }

    #[test]
    fn notifications_are_tagged_with_the_subscription_id() {
        let env = Envelope::parse(br#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed","params":{"_meta":{"io.modelcontextprotocol/subscriptionId":"upstream-7"}}}"#).expect("env");
        let tagged: Value =
            serde_json::from_slice(&tag(&env, &RequestId::number(42))).expect("json");
        assert_eq!(tagged["params"]["_meta"][META_SUBSCRIPTION_ID], 42);
    }
}
