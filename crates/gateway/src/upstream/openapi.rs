//! OpenAPI upstreams: a REST API whose operations are served as MCP tools.
//! The gateway answers `initialize`, `tools/list` and `tools/call` itself
//! (through `castellan-openapi`) and sends each call as one HTTP request to
//! the configured base URL, with the upstream's own credentials.
//!
//! SSRF guard: requests go only to `base_url` from the configuration (never
//! a `servers` entry of the spec, never a URL an agent sends); path
//! arguments are escaped so they stay inside their segment; redirects are
//! returned as errors, never followed.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use castellan_openapi::{Api, CallError, Filter, HttpRequest, Selection, Spec, SpecError, Tool};
use castellan_protocol::jsonrpc::{
    Envelope, ErrorObject, INVALID_PARAMS, METHOD_NOT_FOUND, RawObject, to_raw,
};
use castellan_protocol::mcp;
use http::header::{ACCEPT, CONTENT_TYPE};
use http::{HeaderName, HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tokio::sync::{OnceCell, mpsc};

use super::http::{Credentials, HttpsClient, https_connector};
use super::{Outbound, ReplyRx, UpMsg};

/// Longest tool name a client sees, prefix included.
const MAX_TOOL_NAME: usize = 64;
/// Largest spec fetched from a URL.
const MAX_SPEC_BYTES: usize = 32 * 1024 * 1024;

/// An OpenAPI upstream.
#[derive(Debug, Clone)]
pub struct OpenApiUpstream {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    name: Arc<str>,
    cfg: castellan_config::OpenApiUpstream,
    name_budget: usize,
    /// The tools; a spec given by URL is fetched on first use.
    api: OnceCell<Arc<Api>>,
    credentials: Credentials,
    client: HttpsClient,
    timeout: Duration,
}

/// Why an OpenAPI upstream could not start.
#[derive(Debug, thiserror::Error)]
pub enum OpenApiError {
    /// The spec is unreadable or selects what it may not.
    #[error("upstream `{upstream}`: {source}")]
    Spec {
        /// Upstream name.
        upstream: String,
        /// What is wrong with the spec (boxed: it is large).
        source: Box<SpecError>,
    },
    /// The configuration cannot be used (credentials, URL).
    #[error("upstream `{upstream}`: {reason}")]
    Config {
        /// Upstream name.
        upstream: String,
        /// Why.
        reason: String,
    },
}

impl OpenApiUpstream {
    /// Builds the upstream; a spec file is read and its tools built now,
    /// so a bad spec or an exceeded `max_tools` stops start-up, and their
    /// inferred labels are declared to the judge.
    pub fn new(
        name: &str,
        prefix: &str,
        cfg: &castellan_config::OpenApiUpstream,
        timeout: Duration,
        connect_timeout: Duration,
        behaviour: &crate::behaviour::Behaviour,
    ) -> Result<Self, OpenApiError> {
        let config_err = |reason: String| OpenApiError::Config {
            upstream: name.to_owned(),
            reason,
        };
        cfg.base_url
            .parse::<Uri>()
            .map_err(|e| config_err(format!("invalid base_url `{}`: {e}", cfg.base_url)))?;
        let credentials = Credentials::new(name, &cfg.http).map_err(config_err)?;
        let name_budget = name_budget(prefix);
        let api = OnceCell::new();
        if let Some(loaded) = OpenApiUpstream::load(name, prefix, cfg)? {
            // The judge learns what the spec says about each operation
            // (method, path, schema) before any agent lists it.
            let labels: Vec<(String, Vec<&str>)> = loaded
                .tools()
                .iter()
                .map(|t| (t.name.clone(), t.labels.clone()))
                .collect();
            behaviour.declare_labels(name, &labels);
            let _ = api.set(Arc::new(loaded));
        }
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(https_connector(name, connect_timeout));
        Ok(OpenApiUpstream {
            inner: Arc::new(Inner {
                name: name.into(),
                cfg: cfg.clone(),
                name_budget,
                api,
                credentials,
                client,
                timeout: cfg.timeout.map_or(timeout, |t| t.min(timeout)),
            }),
        })
    }

    /// Answers a request; a call runs on a task of its own.
    pub fn request(&self, out: &Outbound) -> ReplyRx {
        let (tx, rx) = mpsc::channel(1);
        let inner = self.inner.clone();
        let out = out.clone();
        tokio::spawn(async move {
            let bytes = match inner.answer(&out).await {
                Ok(result) => Envelope::result_bytes(&out.id, &to_raw(&result)),
                Err(err) => err.to_response(Some(&out.id)),
            };
            let bytes = Bytes::from(bytes);
            if let Ok(env) = Envelope::parse(&bytes) {
                let _ = tx.send(Ok(UpMsg::Final(env, bytes, 200))).await;
            }
        });
        rx
    }
}

impl OpenApiUpstream {
    /// The tools of a spec file under the configured selection, as start-up
    /// builds them (`castellan check` runs this too); `None` for a spec
    /// given by URL, which is fetched on first use.
    pub fn load(
        name: &str,
        prefix: &str,
        cfg: &castellan_config::OpenApiUpstream,
    ) -> Result<Option<Api>, OpenApiError> {
        if is_url(&cfg.spec) {
            return Ok(None);
        }
        build_api(
            Spec::load(std::path::Path::new(&cfg.spec)),
            cfg,
            name_budget(prefix),
        )
        .map(Some)
        .map_err(|source| OpenApiError::Spec {
            upstream: name.to_owned(),
            source: Box::new(source),
        })
    }
}

/// Room for a tool's own name once the client-visible name carries the
/// upstream's prefix.
fn name_budget(prefix: &str) -> usize {
    match prefix {
        "" => MAX_TOOL_NAME,
        p => MAX_TOOL_NAME.saturating_sub(p.len() + crate::federation::SEPARATOR.len()),
    }
}

fn is_url(spec: &str) -> bool {
    spec.starts_with("http://") || spec.starts_with("https://")
}

/// The tools of a loaded spec under the configured selection.
pub fn build_api(
    spec: Result<Spec, SpecError>,
    cfg: &castellan_config::OpenApiUpstream,
    name_budget: usize,
) -> Result<Api, SpecError> {
    let filter = |f: &castellan_config::OperationFilter| Filter {
        tags: f.tags.clone(),
        operations: f.operations.clone(),
        methods: f.methods.clone(),
        paths: f.paths.clone(),
    };
    let selection = Selection {
        include: filter(&cfg.include),
        exclude: filter(&cfg.exclude),
        max_tools: cfg.max_tools,
    };
    Api::build(&spec?, &selection, name_budget)
}

impl Inner {
    async fn answer(&self, out: &Outbound) -> Result<Value, ErrorObject> {
        let params: RawObject = out
            .params
            .as_ref()
            .and_then(|p| serde_json::from_str(p.get()).ok())
            .unwrap_or_default();
        match out.method.as_str() {
            "initialize" => Ok(json!({
                "protocolVersion": params
                    .get_str("protocolVersion")
                    .filter(|v| mcp::LEGACY_VERSIONS.contains(&v.as_str()))
                    .unwrap_or_else(|| mcp::LATEST_LEGACY.to_owned()),
                "capabilities": { "tools": { "listChanged": false } },
                "serverInfo": { "name": &*self.name, "version": env!("CARGO_PKG_VERSION") },
            })),
            "ping" => Ok(json!({})),
            "tools/list" => Ok(self.api().await?.list()),
            "tools/call" => {
                let api = self.api().await?;
                let name = params.get_str("name").unwrap_or_default();
                let tool = api.tool(&name).ok_or_else(|| {
                    ErrorObject::new(INVALID_PARAMS, format!("unknown tool `{name}`"))
                })?;
                let args: Value = params
                    .get("arguments")
                    .and_then(|a| serde_json::from_str(a.get()).ok())
                    .unwrap_or(Value::Null);
                Ok(self.call(tool, &args).await)
            }
            m => Err(ErrorObject::new(
                METHOD_NOT_FOUND,
                format!("method `{m}` is not served by an OpenAPI upstream"),
            )),
        }
    }

    async fn api(&self) -> Result<Arc<Api>, ErrorObject> {
        self.api
            .get_or_try_init(|| async {
                let bytes = self.fetch_spec().await?;
                build_api(
                    Spec::parse(&self.cfg.spec, &bytes),
                    &self.cfg,
                    self.name_budget,
                )
                .map(Arc::new)
                .map_err(|e| e.to_string())
            })
            .await
            .cloned()
            .map_err(|reason| {
                tracing::error!(upstream = &*self.name, error = %reason, "OpenAPI spec unusable");
                ErrorObject::new(
                    super::UPSTREAM_UNAVAILABLE,
                    format!("upstream `{}` is unavailable: {reason}", self.name),
                )
            })
    }

    async fn fetch_spec(&self) -> Result<Bytes, String> {
        let req = Request::get(self.cfg.spec.as_str())
            .header(
                ACCEPT,
                "application/json, application/yaml;q=0.9, */*;q=0.5",
            )
            .body(Full::new(Bytes::new()))
            .map_err(|e| format!("spec URL `{}`: {e}", self.cfg.spec))?;
        let resp = tokio::time::timeout(self.timeout, self.client.request(req))
            .await
            .map_err(|_| format!("spec URL `{}` did not answer in time", self.cfg.spec))?
            .map_err(|e| format!("spec URL `{}`: {e}", self.cfg.spec))?;
        if !resp.status().is_success() {
            return Err(format!(
                "spec URL `{}` answered {}",
                self.cfg.spec,
                resp.status()
            ));
        }
        Limited::new(resp.into_body(), MAX_SPEC_BYTES)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .map_err(|e| format!("spec URL `{}`: {e}", self.cfg.spec))
    }

    /// Sends one call and turns the answer into a `tools/call` result.
    /// Failures the model can act on (bad arguments, HTTP errors, a
    /// timeout) are error results, as MCP asks for tool failures.
    async fn call(&self, tool: &Tool, args: &Value) -> Value {
        let req = match tool.request(args) {
            Ok(r) => r,
            Err(e) => return error_result(&call_error(tool, &e)),
        };
        match tokio::time::timeout(self.timeout, self.send(&req)).await {
            Ok(Ok(result)) => result,
            Ok(Err(reason)) => error_result(&reason),
            Err(_) => error_result(&format!(
                "the API did not answer within {} ms",
                self.timeout.as_millis()
            )),
        }
    }

    async fn send(&self, call: &HttpRequest) -> Result<Value, String> {
        let mut resp = self
            .client
            .request(self.build(call).await?)
            .await
            .map_err(|e| e.to_string())?;
        if resp.status() == http::StatusCode::UNAUTHORIZED && self.credentials.refused().await {
            resp = self
                .client
                .request(self.build(call).await?)
                .await
                .map_err(|e| e.to_string())?;
        }
        let status = resp.status();
        if status.is_redirection() {
            let to = resp
                .headers()
                .get(http::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            return Err(format!(
                "HTTP {status}: redirect to `{to}` not followed (requests go only to the configured base_url)"
            ));
        }
        let content_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let max = self.cfg.max_response_bytes;
        let body = Limited::new(resp.into_body(), max)
            .collect()
            .await
            .map_err(|_| format!("HTTP {status}: response larger than {max} bytes, not read"))?
            .to_bytes();
        Ok(castellan_openapi::response::to_result(
            status.as_u16(),
            status.canonical_reason().unwrap_or(""),
            content_type.as_deref(),
            &body,
        ))
    }

    /// The HTTP request: base URL plus the operation's path, argument
    /// headers, then the upstream's credentials over them.
    async fn build(&self, call: &HttpRequest) -> Result<Request<Full<Bytes>>, String> {
        let uri = format!("{}{}", self.cfg.base_url, call.path_and_query);
        let method = Method::from_bytes(call.method.as_bytes()).map_err(|e| e.to_string())?;
        let mut b = Request::builder()
            .method(method)
            .uri(uri.as_str())
            .header(ACCEPT, "application/json");
        for (k, v) in &call.headers {
            let k = HeaderName::try_from(k.as_str())
                .map_err(|_| format!("invalid header name `{k}`"))?;
            let v = HeaderValue::try_from(v.as_str())
                .map_err(|_| format!("invalid value for header `{k}`"))?;
            b = b.header(k, v);
        }
        let body = match &call.body {
            Some((ct, bytes)) => {
                b = b.header(CONTENT_TYPE, *ct);
                Bytes::from(bytes.clone())
            }
            None => Bytes::new(),
        };
        let mut req = b.body(Full::new(body)).map_err(|e| e.to_string())?;
        self.credentials
            .authorize(&self.client, self.timeout, &mut req)
            .await?;
        Ok(req)
    }
}

fn call_error(tool: &Tool, e: &CallError) -> String {
    format!("cannot call `{}`: {e}", tool.name)
}

fn error_result(text: &str) -> Value {
    json!({ "content": [{ "type": "text", "text": text }], "isError": true })
}
