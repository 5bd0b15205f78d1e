use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;

use serde::Deserialize;

use crate::duration::Duration;
use crate::error::ConfigError;

/// A compiled, validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Where the configuration came from (a path or `<default>`).
    pub origin: String,
    /// The agent-facing listener.
    pub listener: Listener,
    /// Size and time limits.
    pub limits: Limits,
    /// The upstream MCP servers, in configuration order.
    pub upstreams: Vec<Upstream>,
    /// How agents prove who they are.
    pub auth: Auth,
    /// How calls are judged.
    pub judge: JudgeConfig,
    /// Where decisions are recorded.
    pub audit: AuditConfig,
    /// Pinning of upstream tool definitions.
    pub integrity: IntegrityConfig,
    /// HTTPS for the agent-facing listener (required for mTLS).
    pub tls: Option<Tls>,
    /// The operators' listener, if enabled.
    pub admin: Option<AdminConfig>,
    /// Where alerts go.
    pub alerts: crate::alerts::AlertsConfig,
    /// OpenTelemetry traces.
    pub telemetry: crate::telemetry::TelemetryConfig,
}

/// The admin API: a separate listener (loopback by default) with its own
/// bearer token, for approving held calls and releasing quarantined agents.
#[derive(Debug, Clone, PartialEq)]
pub struct AdminConfig {
    /// Socket address.
    pub addr: SocketAddr,
    /// SHA-256 of the operators' token; `None` generates one at start and prints it.
    pub token_sha256: Option<[u8; 32]>,
    /// Host header values accepted, as for the agent listener: empty means
    /// "loopback names and the bound address" on loopback.
    pub allowed_hosts: Vec<String>,
}

/// The behaviour judge's inputs: rule files, the Cedar policy, label
/// overrides. Files are read and compiled by the gateway; errors name file
/// and line.
#[derive(Debug, Clone, PartialEq)]
pub struct JudgeConfig {
    /// Start from the builtin default pack.
    pub default_pack: bool,
    /// Extra rule files (YAML), merged in order.
    pub rules: Vec<String>,
    /// A Cedar policy file replacing the pack's permissive policy.
    pub policy: Option<String>,
    /// Operator label overrides: glob over `server/tool`, labels to add and remove.
    pub labels: Vec<LabelRule>,
    /// The organisation's own domains (and their subdomains): destinations
    /// there are never new or external. Added to the rule files'
    /// `settings.internal_domains`.
    pub internal_domains: Vec<String>,
    /// Operator tool annotations: argument roles and caps per tool glob.
    pub tools: Vec<ToolAnnotation>,
    /// How long a held call waits for a human; then it is refused.
    pub hold_timeout: std::time::Duration,
    /// `false` turns judging off: calls pass unjudged and unrecorded. Only
    /// for measuring the gateway's own cost (the gateway warns at start).
    pub enabled: bool,
    /// The agent attribute keys the configuration declares (API key and
    /// mTLS agent `attributes`, JWT `attribute_claims`, and the certificate
    /// facts `trust_domain`, `spiffe_id`, `dns` when mTLS is on), sorted:
    /// the optional String attributes of the Cedar `Agent`.
    pub attributes: Vec<String>,
    /// Derived: the upstream names, the servers a policy's
    /// `Tool::"<server>/<name>"` may name.
    pub servers: Vec<String>,
}

/// One label override.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelRule {
    /// Glob over `server/tool`.
    pub matches: String,
    /// Labels to add.
    pub add: Vec<String>,
    /// Labels to remove.
    pub remove: Vec<String>,
}

/// One tool annotation (`judge.tools[]`): for tools whose `server/tool`
/// matches the glob, what their arguments are and the caps that hold them.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolAnnotation {
    /// Glob over `server/tool`.
    pub matches: String,
    /// Argument name (or JSON pointer such as `/payment/id`) and its role,
    /// one of [`ARGUMENT_ROLES`].
    pub arguments: Vec<(String, String)>,
    /// No amount argument above this (a hold with the numbers).
    pub max_amount: Option<f64>,
    /// No session calls the tool more often than this.
    pub max_calls_per_session: Option<u32>,
}

/// The argument roles an annotation may name.
pub const ARGUMENT_ROLES: &[&str] = &[
    "destination",
    "body",
    "object",
    "subject",
    "amount",
    "command",
    "path",
];

/// The decision log.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditConfig {
    /// SQLite file (the embedded log; with `postgres`, only the default
    /// home of the key, anchor and spool beside it).
    pub path: String,
    /// A fleet's shared log: a PostgreSQL URL every replica appends to as
    /// one chain. The password may come from `PGPASSWORD` instead.
    pub postgres: Option<String>,
    /// Where batched records wait while PostgreSQL is unreachable.
    pub spool: String,
    /// Most records the spool holds before calls are refused.
    pub spool_max: u64,
    /// `strict`: a record is on disk before the agent gets the answer.
    pub strict: bool,
    /// Ed25519 private key (PKCS#8 PEM) signing checkpoints, if any.
    pub signing_key: Option<String>,
    /// The key was not configured: it is generated at `signing_key` (with
    /// its `.pub` beside it) the first time the gateway starts.
    pub generate_signing_key: bool,
    /// A file outside the log every signed checkpoint is appended to;
    /// `audit verify` checks the log against it to find a cut tail.
    pub anchor: Option<String>,
    /// A checkpoint after this many records...
    pub checkpoint_every: u64,
    /// ...or this long after the first record it does not cover yet.
    pub checkpoint_interval: std::time::Duration,
    /// Delete records older than this.
    pub max_age: Option<std::time::Duration>,
    /// Keep at most this many records.
    pub max_records: Option<u64>,
}

/// Tool integrity: every upstream tool definition is pinned by the hash of
/// its canonical form; a tool whose definition differs from its pin is
/// withheld until an operator approves the new version.
#[derive(Debug, Clone, PartialEq)]
pub struct IntegrityConfig {
    /// SQLite file holding the pins.
    pub store: String,
    /// What happens to a tool seen for the first time.
    pub first_sight: FirstSight,
    /// What happens to a tool seen for the first time while pinned tools
    /// of its upstream are missing from the list (a rename).
    pub renamed: FirstSight,
    /// Most tools (and prompts) one upstream may list; a longer list is
    /// refused as a whole.
    pub max_tools: usize,
    /// Pins of tools missing from their upstream's lists for this long are
    /// forgotten.
    pub forget_after: std::time::Duration,
}

/// Most tools one upstream may list unless configured.
pub const DEFAULT_MAX_TOOLS: usize = 1000;

/// What happens to a tool seen for the first time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FirstSight {
    /// Pin it as it is (trust on first use).
    Pin,
    /// Withhold it until an operator approves it.
    Hold,
}

/// How agents authenticate. At least one method must be configured unless
/// `mode: none` says anonymous agents are acceptable (development only).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Auth {
    /// Anonymous access allowed (no credential checked).
    pub anonymous: bool,
    /// Generate a random API key at start and print it (the demo default).
    pub generate_key: bool,
    /// API keys, stored as SHA-256 digests.
    pub api_keys: Vec<ApiKey>,
    /// JWT bearer tokens.
    pub jwt: Option<Jwt>,
    /// TLS client certificates (needs `tls`).
    pub mtls: Option<Mtls>,
    /// The resource URL announced in OAuth protected resource metadata;
    /// derived from the request's Host when absent.
    pub resource: Option<String>,
}

/// The listener's certificate (PEM files).
#[derive(Debug, Clone, PartialEq)]
pub struct Tls {
    /// Certificate chain.
    pub cert: String,
    /// Private key.
    pub key: String,
}

/// Agents identified by TLS client certificates.
#[derive(Debug, Clone, PartialEq)]
pub struct Mtls {
    /// PEM file of the CA(s) agent certificates must chain to.
    pub ca: String,
    /// SPIFFE trust domains accepted; empty accepts any the CA signs.
    pub trust_domains: Vec<String>,
    /// Agents by certificate identity (a SPIFFE id or DNS name). A
    /// certificate not listed is the agent named by its identity.
    pub agents: Vec<CertAgent>,
    /// Only listed certificates are accepted.
    pub listed_only: bool,
}

/// One certificate identity mapped to an agent.
#[derive(Debug, Clone, PartialEq)]
pub struct CertAgent {
    /// `spiffe://…` URI SAN or DNS SAN of the certificate.
    pub id: String,
    /// The agent it identifies.
    pub agent: String,
    /// The user it acts for, if fixed.
    pub user: Option<String>,
    /// Attributes of the agent.
    pub attributes: Vec<(String, String)>,
    /// The agent may pass the user's own request as trusted intent.
    pub trusted_intent: bool,
}

/// One agent's API key.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiKey {
    /// The agent it identifies.
    pub agent: String,
    /// The user it acts for, if fixed.
    pub user: Option<String>,
    /// SHA-256 of the key.
    pub sha256: [u8; 32],
    /// Attributes of the agent (team, environment, owner...).
    pub attributes: Vec<(String, String)>,
    /// A revoked key is refused.
    pub revoked: bool,
    /// The key's client may pass the user's own request as trusted intent
    /// (`_meta["io.castellan/intent"]`); from any other it is ignored.
    pub trusted_intent: bool,
}

/// JWT bearer token validation.
#[derive(Debug, Clone, PartialEq)]
pub struct Jwt {
    /// Required `iss`.
    pub issuer: String,
    /// Accepted `aud` values.
    pub audiences: Vec<String>,
    /// Where the signing keys come from.
    pub jwks: JwksSource,
    /// Accepted algorithms (never `none`, never HMAC with public keys).
    pub algorithms: Vec<String>,
    /// Claim naming the agent (default `sub`).
    pub agent_claim: String,
    /// Claim naming the user the agent acts for, if any (dotted path).
    pub user_claim: Option<String>,
    /// Claims copied into the agent's attributes.
    pub attribute_claims: Vec<String>,
    /// Scopes every token must carry (`scope` or `scp` claim).
    pub required_scopes: Vec<String>,
    /// Clock skew tolerated on `exp` and `nbf`.
    pub leeway: std::time::Duration,
    /// Which tokens may pass the user's own request as trusted intent.
    pub trusted_intent: JwtIntent,
}

/// Which JWT bearers are trusted to speak for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwtIntent {
    /// None: intent from a JWT bearer is ignored.
    Never,
    /// Every token of the issuer.
    Always,
    /// Tokens carrying this scope (`scope` or `scp`).
    WithScope(String),
}

/// Where JWT signing keys come from.
#[derive(Debug, Clone, PartialEq)]
pub enum JwksSource {
    /// Fetched from a URL, cached, refreshed on an unknown `kid`.
    Url(String),
    /// Read from a file at load time.
    File(String),
}

/// The agent-facing MCP listener.
#[derive(Debug, Clone, PartialEq)]
pub struct Listener {
    /// Socket address to bind.
    pub addr: SocketAddr,
    /// Path of the MCP endpoint.
    pub path: String,
    /// Host header values accepted (DNS rebinding protection). Empty means
    /// "loopback names and the bound address".
    pub allowed_hosts: Vec<String>,
    /// Origin header values accepted; requests without Origin are accepted.
    pub allowed_origins: Vec<String>,
    /// How strictly modern-era `Mcp-Method` / `Mcp-Name` headers are required.
    pub modern_headers: ModernHeaders,
}

/// Whether modern-era requests must carry the mirrored headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModernHeaders {
    /// Missing headers are refused (the specification's rule).
    Require,
    /// Missing headers are tolerated; present ones must still match the body.
    Validate,
}

/// Size and time limits.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Largest request body accepted from an agent.
    pub max_body_bytes: usize,
    /// Largest single message accepted from an upstream (JSON body, SSE
    /// event or stdio line).
    pub max_message_bytes: usize,
    /// How long a request may wait for its upstream's final answer.
    pub upstream_timeout: std::time::Duration,
    /// How long connecting to an HTTP upstream may take.
    pub connect_timeout: std::time::Duration,
    /// Idle time after which a legacy session is ended.
    pub session_idle: std::time::Duration,
    /// Most concurrent legacy sessions.
    pub max_sessions: usize,
    /// Most concurrent legacy sessions of one agent.
    pub max_sessions_per_agent: usize,
    /// Most open server-to-agent streams (GET and `subscriptions/listen`)
    /// of one agent.
    pub max_streams_per_agent: usize,
    /// How long a client may take to send its request headers, and a new
    /// connection its first byte.
    pub header_timeout: std::time::Duration,
    /// How long a client may take to send a request body.
    pub body_timeout: std::time::Duration,
    /// Most connections open at once from one source address.
    pub max_connections_per_source: usize,
}

/// One upstream MCP server.
#[derive(Debug, Clone, PartialEq)]
pub struct Upstream {
    /// Unique name, used in namespacing and in errors.
    pub name: String,
    /// Namespace prefix for tool and prompt names and resource URIs; empty
    /// means names pass through unchanged.
    pub prefix: String,
    /// How to reach it.
    pub transport: Transport,
    /// 1-based line of the entry in the file.
    pub line: usize,
}

/// How an upstream is reached.
#[derive(Debug, Clone, PartialEq)]
pub enum Transport {
    /// A demo server built into the binary.
    Builtin(String),
    /// Streamable HTTP.
    Http(HttpUpstream),
    /// A child process speaking newline-delimited JSON-RPC.
    Stdio(StdioUpstream),
    /// A REST API described by an OpenAPI document.
    OpenApi(Box<crate::openapi::OpenApiUpstream>),
}

/// A Streamable HTTP upstream.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpUpstream {
    /// The MCP endpoint URL (`http://host:port/path`).
    pub url: String,
    /// Headers injected on every request (credentials for this upstream).
    pub headers: Vec<(String, String)>,
    /// Which protocol era to speak to it.
    pub era: UpstreamEra,
    /// OAuth 2.0 client credentials: the gateway gets its own token for
    /// this upstream (never the agent's).
    pub oauth: Option<OAuthClient>,
}

/// OAuth 2.0 client credentials grant (RFC 6749 section 4.4).
#[derive(Debug, Clone, PartialEq)]
pub struct OAuthClient {
    /// The authorization server's token endpoint.
    pub token_url: String,
    /// Client id.
    pub client_id: String,
    /// Client secret (sent with HTTP Basic authentication).
    pub client_secret: String,
    /// Scopes requested.
    pub scopes: Vec<String>,
    /// `audience` parameter, for servers that want one.
    pub audience: Option<String>,
    /// `resource` parameter (RFC 8707), for servers that want one.
    pub resource: Option<String>,
}

/// Which era to speak to an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamEra {
    /// Probe with a modern request, fall back to `initialize`.
    Auto,
    /// Always `initialize` (2025-11-25 and earlier).
    Legacy,
    /// Always stateless 2026-07-28.
    Modern,
}

/// A stdio upstream.
#[derive(Debug, Clone, PartialEq)]
pub struct StdioUpstream {
    /// Program to run.
    pub command: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// Extra environment.
    pub env: Vec<(String, String)>,
    /// Working directory.
    pub cwd: Option<String>,
    /// Restart back-off.
    pub restart: RestartPolicy,
}

/// Exponential back-off for restarting a dead child.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RestartPolicy {
    /// First delay.
    pub initial: std::time::Duration,
    /// Longest delay.
    pub max: std::time::Duration,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default = "default_listen")]
    listen: String,
    #[serde(default = "default_path")]
    path: String,
    #[serde(default)]
    allowed_hosts: Vec<String>,
    #[serde(default)]
    allowed_origins: Vec<String>,
    #[serde(default = "default_modern_headers")]
    modern_headers: ModernHeaders,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    upstreams: Vec<RawUpstream>,
    auth: Option<RawAuth>,
    #[serde(default)]
    judge: RawJudge,
    #[serde(default)]
    audit: RawAudit,
    #[serde(default)]
    integrity: RawIntegrity,
    tls: Option<RawTls>,
    admin: Option<RawAdmin>,
    alerts: Option<crate::alerts::RawAlerts>,
    telemetry: Option<crate::telemetry::RawTelemetry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: String,
    key: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMtls {
    ca: String,
    #[serde(default)]
    trust_domains: Vec<String>,
    #[serde(default)]
    agents: Vec<RawCertAgent>,
    #[serde(default)]
    listed_only: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCertAgent {
    id: String,
    agent: String,
    user: Option<String>,
    #[serde(default)]
    attributes: BTreeMap<String, String>,
    #[serde(default)]
    trusted_intent: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawIntegrity {
    store: Option<String>,
    first_sight: Option<FirstSight>,
    renamed: Option<FirstSight>,
    max_tools: Option<usize>,
    forget_after: Option<Duration>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    listen: Option<String>,
    token_sha256: Option<String>,
    #[serde(default)]
    allowed_hosts: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawJudge {
    pack: Option<String>,
    #[serde(default)]
    rules: Vec<String>,
    policy: Option<String>,
    #[serde(default)]
    labels: Vec<RawLabelRule>,
    #[serde(default)]
    internal_domains: Vec<String>,
    #[serde(default)]
    tools: Vec<RawToolAnnotation>,
    hold_timeout: Option<Duration>,
    enabled: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLabelRule {
    #[serde(rename = "match")]
    matches: String,
    #[serde(default)]
    add: Vec<String>,
    #[serde(default)]
    remove: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToolAnnotation {
    #[serde(rename = "match")]
    matches: String,
    #[serde(default)]
    arguments: BTreeMap<String, String>,
    max_amount: Option<f64>,
    max_calls_per_session: Option<u32>,
}

/// Checks and compiles `judge.tools`; every error names the line of the
/// entry at fault.
fn compile_tools(
    raw: Vec<RawToolAnnotation>,
    text: &str,
    invalid: &dyn Fn(usize, String) -> ConfigError,
) -> Result<Vec<ToolAnnotation>, ConfigError> {
    let mut out = Vec::with_capacity(raw.len());
    for t in raw {
        let at = find_key_line(text, "match", Some(&t.matches));
        let line_of = |key: &str| {
            text.lines()
                .enumerate()
                .skip(at.saturating_sub(1))
                .find(|(_, l)| {
                    let l = l.trim_start().trim_start_matches("- ").trim_start();
                    l.strip_prefix(key)
                        .or_else(|| {
                            l.strip_prefix('"')
                                .and_then(|r| r.strip_prefix(key))
                                .and_then(|r| r.strip_prefix('"'))
                        })
                        .or_else(|| {
                            l.strip_prefix('\'')
                                .and_then(|r| r.strip_prefix(key))
                                .and_then(|r| r.strip_prefix('\''))
                        })
                        .is_some_and(|r| r.starts_with(':'))
                })
                .map_or(at, |(i, _)| i + 1)
        };
        if t.matches.trim().is_empty() {
            return Err(invalid(
                at,
                "`judge.tools[].match` must be a glob over `server/tool`".into(),
            ));
        }
        if t.arguments.is_empty() && t.max_amount.is_none() && t.max_calls_per_session.is_none() {
            return Err(invalid(
                at,
                format!(
                    "`judge.tools` entry `{}` sets nothing: give `arguments`, `max_amount` or `max_calls_per_session`",
                    t.matches
                ),
            ));
        }
        let mut arguments = Vec::with_capacity(t.arguments.len());
        for (arg, role) in t.arguments {
            if !ARGUMENT_ROLES.contains(&role.as_str()) {
                return Err(invalid(
                    line_of(&arg),
                    format!(
                        "`judge.tools` `{}`: argument `{arg}` has unknown role `{role}`; expected {}",
                        t.matches,
                        ARGUMENT_ROLES.join(", ")
                    ),
                ));
            }
            if arg.is_empty() || (arg.starts_with('/') && arg.len() == 1) {
                return Err(invalid(
                    line_of(&arg),
                    format!("`judge.tools` `{}`: an argument name is empty", t.matches),
                ));
            }
            arguments.push((arg, role));
        }
        if let Some(a) = t.max_amount
            && !(a.is_finite() && a > 0.0)
        {
            return Err(invalid(
                line_of("max_amount"),
                format!(
                    "`judge.tools` `{}`: `max_amount` must be a positive number, got {a}",
                    t.matches
                ),
            ));
        }
        if t.max_calls_per_session == Some(0) {
            return Err(invalid(
                line_of("max_calls_per_session"),
                format!(
                    "`judge.tools` `{}`: `max_calls_per_session` must be at least 1",
                    t.matches
                ),
            ));
        }
        out.push(ToolAnnotation {
            matches: t.matches,
            arguments,
            max_amount: t.max_amount,
            max_calls_per_session: t.max_calls_per_session,
        });
    }
    Ok(out)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    path: Option<String>,
    postgres: Option<String>,
    spool: Option<String>,
    spool_max: Option<u64>,
    durability: Option<String>,
    signing_key: Option<String>,
    anchor: Option<String>,
    checkpoint_every: Option<u64>,
    checkpoint_interval: Option<Duration>,
    #[serde(default)]
    retention: RawRetention,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRetention {
    max_age: Option<Duration>,
    max_records: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    generate_key: bool,
    #[serde(default)]
    api_keys: Vec<RawApiKey>,
    jwt: Option<RawJwt>,
    mtls: Option<RawMtls>,
    resource: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApiKey {
    agent: String,
    sha256: String,
    user: Option<String>,
    #[serde(default)]
    attributes: BTreeMap<String, String>,
    #[serde(default)]
    revoked: bool,
    #[serde(default)]
    trusted_intent: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJwt {
    issuer: String,
    #[serde(default)]
    audiences: Vec<String>,
    jwks_url: Option<String>,
    jwks_file: Option<String>,
    #[serde(default)]
    algorithms: Vec<String>,
    agent_claim: Option<String>,
    user_claim: Option<String>,
    #[serde(default)]
    attribute_claims: Vec<String>,
    #[serde(default)]
    required_scopes: Vec<String>,
    leeway: Option<Duration>,
    #[serde(default)]
    trusted_intent: bool,
    trusted_intent_scope: Option<String>,
}

/// Algorithms a JWT may use: asymmetric only, so a public key can never be
/// used as an HMAC secret (key confusion) and `none` is impossible.
pub const JWT_ALGORITHMS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}
fn default_path() -> String {
    "/mcp".into()
}
fn default_modern_headers() -> ModernHeaders {
    ModernHeaders::Require
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_body_bytes: Option<usize>,
    max_message_bytes: Option<usize>,
    upstream_timeout: Option<Duration>,
    connect_timeout: Option<Duration>,
    session_idle: Option<Duration>,
    max_sessions: Option<usize>,
    max_sessions_per_agent: Option<usize>,
    max_streams_per_agent: Option<usize>,
    header_timeout: Option<Duration>,
    body_timeout: Option<Duration>,
    max_connections_per_source: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstream {
    name: String,
    prefix: Option<String>,
    builtin: Option<String>,
    http: Option<RawHttp>,
    stdio: Option<RawStdio>,
    openapi: Option<crate::openapi::RawOpenApi>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHttp {
    pub(crate) url: String,
    #[serde(default)]
    pub(crate) headers: BTreeMap<String, String>,
    #[serde(default = "default_era")]
    pub(crate) era: UpstreamEra,
    pub(crate) oauth: Option<RawOAuth>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOAuth {
    token_url: String,
    client_id: String,
    client_secret: String,
    #[serde(default)]
    scopes: Vec<String>,
    audience: Option<String>,
    resource: Option<String>,
}

fn default_era() -> UpstreamEra {
    UpstreamEra::Auto
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStdio {
    command: String,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    cwd: Option<String>,
    restart_initial: Option<Duration>,
    restart_max: Option<Duration>,
}

/// The builtin demo servers the binary carries.
pub const BUILTINS: &[&str] = &["mail", "files", "payments", "web", "chat"];

pub(crate) fn compile(
    origin: &str,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    compile_for(origin, text, env, Purpose::Gateway)
}

/// What a configuration is read for: the gateway needs every section that
/// guards agents; judging recorded traces needs only `judge`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    Gateway,
    JudgeOnly,
}

pub(crate) fn compile_for(
    origin: &str,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
    purpose: Purpose,
) -> Result<Config, ConfigError> {
    let raw: RawConfig = serde_yaml::from_str(text).map_err(|e| {
        let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
        ConfigError::Syntax {
            file: origin.into(),
            line,
            column,
            message: e.to_string(),
        }
    })?;
    let invalid = |line: usize, message: String| ConfigError::Invalid {
        file: origin.into(),
        line,
        message,
    };
    let top_line = |key: &str| find_key_line(text, key, None);

    let addr: SocketAddr = raw.listen.parse().map_err(|_| {
        invalid(
            top_line("listen"),
            format!(
                "`listen` must be an address like 127.0.0.1:8080, got `{}`",
                raw.listen
            ),
        )
    })?;
    if !raw.path.starts_with('/') {
        return Err(invalid(
            top_line("path"),
            format!("`path` must start with `/`, got `{}`", raw.path),
        ));
    }
    let l = raw.limits;
    let limits = Limits {
        max_body_bytes: l.max_body_bytes.unwrap_or(4 << 20),
        max_message_bytes: l.max_message_bytes.unwrap_or(16 << 20),
        upstream_timeout: l
            .upstream_timeout
            .map_or(std::time::Duration::from_secs(60), |d| d.0),
        connect_timeout: l
            .connect_timeout
            .map_or(std::time::Duration::from_secs(5), |d| d.0),
        session_idle: l
            .session_idle
            .map_or(std::time::Duration::from_secs(30 * 60), |d| d.0),
        max_sessions: l.max_sessions.unwrap_or(100_000),
        max_sessions_per_agent: l.max_sessions_per_agent.unwrap_or(256),
        max_streams_per_agent: l.max_streams_per_agent.unwrap_or(64),
        header_timeout: l
            .header_timeout
            .map_or(std::time::Duration::from_secs(10), |d| d.0),
        body_timeout: l
            .body_timeout
            .map_or(std::time::Duration::from_secs(30), |d| d.0),
        max_connections_per_source: l.max_connections_per_source.unwrap_or(1024),
    };
    if limits.header_timeout.is_zero()
        || limits.body_timeout.is_zero()
        || limits.max_connections_per_source == 0
    {
        return Err(invalid(
            top_line("limits"),
            "`header_timeout`, `body_timeout` and `max_connections_per_source` must be greater than zero".into(),
        ));
    }
    if limits.max_body_bytes == 0 || limits.max_message_bytes == 0 {
        return Err(invalid(
            top_line("limits"),
            "size limits must be greater than zero".into(),
        ));
    }
    if limits.upstream_timeout.is_zero() {
        return Err(invalid(
            top_line("limits"),
            "`upstream_timeout` must be greater than zero".into(),
        ));
    }

    let mut names = HashSet::new();
    let mut prefixes = HashSet::new();
    let mut upstreams = Vec::with_capacity(raw.upstreams.len());
    for (i, u) in raw.upstreams.into_iter().enumerate() {
        let line = find_key_line(text, "name", Some(&u.name)).max(top_line("upstreams"));
        if u.name.is_empty()
            || !u
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(invalid(
                line,
                format!(
                    "upstream name `{}` must be non-empty letters, digits, `-` or `_`",
                    u.name
                ),
            ));
        }
        if !names.insert(u.name.clone()) {
            return Err(invalid(
                line,
                format!("upstream name `{}` is used twice", u.name),
            ));
        }
        let prefix = u.prefix.unwrap_or_else(|| u.name.clone());
        if !prefix.is_empty() {
            if prefix.contains("__")
                || !prefix
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(invalid(
                    line,
                    format!(
                        "prefix `{prefix}` of upstream `{}` must be letters, digits, `-` or `_` without `__`",
                        u.name
                    ),
                ));
            }
            if !prefixes.insert(prefix.clone()) {
                return Err(invalid(
                    line,
                    format!(
                        "prefix `{prefix}` of upstream `{}` is already used by another upstream",
                        u.name
                    ),
                ));
            }
        }
        let transport = match (u.builtin, u.http, u.stdio, u.openapi) {
            (Some(b), None, None, None) => {
                if !BUILTINS.contains(&b.as_str()) {
                    return Err(invalid(
                        line,
                        format!(
                            "upstream `{}`: unknown builtin `{b}`; known: {}",
                            u.name,
                            BUILTINS.join(", ")
                        ),
                    ));
                }
                Transport::Builtin(b)
            }
            (None, Some(h), None, None) => {
                Transport::Http(compile_http(&u.name, h, line, text, env, &invalid)?)
            }
            (None, None, Some(s), None) => {
                if s.command.trim().is_empty() {
                    return Err(invalid(
                        line,
                        format!("upstream `{}`: `command` is empty", u.name),
                    ));
                }
                let mut envs = Vec::with_capacity(s.env.len());
                for (k, v) in s.env {
                    let v = expand_env(&v, env).map_err(|m| {
                        invalid(line, format!("upstream `{}` env `{k}`: {m}", u.name))
                    })?;
                    envs.push((k, v));
                }
                let initial = s
                    .restart_initial
                    .map_or(std::time::Duration::from_millis(500), |d| d.0);
                let max = s
                    .restart_max
                    .map_or(std::time::Duration::from_secs(30), |d| d.0)
                    .max(initial);
                Transport::Stdio(StdioUpstream {
                    command: s.command,
                    args: s.args,
                    env: envs,
                    cwd: s.cwd,
                    restart: RestartPolicy { initial, max },
                })
            }
            (None, None, None, Some(o)) => Transport::OpenApi(Box::new(crate::openapi::compile(
                &u.name, o, line, text, env, &invalid,
            )?)),
            (None, None, None, None) => {
                return Err(invalid(
                    line,
                    format!(
                        "upstream `{}` (entry {}) needs one of `builtin`, `http`, `stdio` or `openapi`",
                        u.name,
                        i + 1
                    ),
                ));
            }
            _ => {
                return Err(invalid(
                    line,
                    format!(
                        "upstream `{}` sets more than one of `builtin`, `http`, `stdio` and `openapi`",
                        u.name
                    ),
                ));
            }
        };
        upstreams.push(Upstream {
            name: u.name,
            prefix,
            transport,
            line,
        });
    }
    let auth = match raw.auth {
        // Replay authenticates nobody: no agents, no credentials.
        None if purpose == Purpose::JudgeOnly => Auth {
            anonymous: false,
            generate_key: false,
            api_keys: Vec::new(),
            jwt: None,
            mtls: None,
            resource: None,
        },
        raw_auth => compile_auth(raw_auth, raw.tls.is_some(), text, &invalid)?,
    };
    let alerts = crate::alerts::compile(raw.alerts, text, env, &invalid)?;
    let telemetry = crate::telemetry::compile(raw.telemetry, text, &invalid)?;
    let j = raw.judge;
    let default_pack = match j.pack.as_deref() {
        None | Some("default") => true,
        Some("none") => false,
        Some(other) => {
            return Err(invalid(
                find_key_line(text, "pack", None),
                format!("`judge.pack` must be `default` or `none`, got `{other}`"),
            ));
        }
    };
    let mut attributes: Vec<String> = auth
        .api_keys
        .iter()
        .flat_map(|k| k.attributes.iter().map(|(a, _)| a.clone()))
        .chain(
            auth.jwt
                .iter()
                .flat_map(|j| j.attribute_claims.iter().cloned()),
        )
        .chain(auth.mtls.iter().flat_map(|m| {
            m.agents
                .iter()
                .flat_map(|a| a.attributes.iter().map(|(k, _)| k.clone()))
                .chain(["trust_domain", "spiffe_id", "dns"].map(str::to_owned))
        }))
        .collect();
    attributes.sort();
    attributes.dedup();
    let judge = JudgeConfig {
        default_pack,
        rules: j.rules,
        policy: j.policy,
        labels: j
            .labels
            .into_iter()
            .map(|l| LabelRule {
                matches: l.matches,
                add: l.add,
                remove: l.remove,
            })
            .collect(),
        internal_domains: j
            .internal_domains
            .into_iter()
            .map(|d| d.trim().trim_start_matches('.').to_ascii_lowercase())
            .collect(),
        tools: compile_tools(j.tools, text, &invalid)?,
        hold_timeout: j
            .hold_timeout
            .map_or(std::time::Duration::from_secs(60), |d| d.0),
        enabled: j.enabled.unwrap_or(true),
        attributes,
        servers: upstreams.iter().map(|u| u.name.clone()).collect(),
    };
    let strict = match raw.audit.durability.as_deref() {
        None | Some("batched") => false,
        Some("strict") => true,
        Some(other) => {
            return Err(invalid(
                find_key_line(text, "durability", None),
                format!("`audit.durability` must be `strict` or `batched`, got `{other}`"),
            ));
        }
    };
    let admin = match raw.admin {
        None => None,
        Some(a) => {
            let l = find_key_line(text, "admin", None);
            let listen = a.listen.unwrap_or_else(|| "127.0.0.1:8081".into());
            let addr: SocketAddr = listen.parse().map_err(|_| {
                invalid(
                    l,
                    format!(
                        "`admin.listen` must be an address like 127.0.0.1:8081, got `{listen}`"
                    ),
                )
            })?;
            let token_sha256 = match a.token_sha256 {
                None => None,
                Some(h) => {
                    let b = decode_hex(h.trim().trim_start_matches("sha256:"))
                        .filter(|b| b.len() == 32)
                        .ok_or_else(|| {
                            invalid(l, "`admin.token_sha256` must be 64 hex digits".into())
                        })?;
                    let mut d = [0u8; 32];
                    d.copy_from_slice(&b);
                    Some(d)
                }
            };
            Some(AdminConfig {
                addr,
                token_sha256,
                allowed_hosts: a.allowed_hosts,
            })
        }
    };
    let checkpoint_every = raw.audit.checkpoint_every.unwrap_or(1000);
    let checkpoint_interval = raw
        .audit
        .checkpoint_interval
        .map_or(std::time::Duration::from_secs(60), |d| d.0);
    if checkpoint_every == 0 || checkpoint_interval.is_zero() {
        return Err(invalid(
            find_key_line(text, "checkpoint_every", None).max(find_key_line(
                text,
                "checkpoint_interval",
                None,
            )),
            "`audit.checkpoint_every` and `audit.checkpoint_interval` must be greater than zero"
                .into(),
        ));
    }
    if raw.audit.retention.max_records == Some(0)
        || raw.audit.retention.max_age.is_some_and(|d| d.0.is_zero())
    {
        return Err(invalid(
            find_key_line(text, "retention", None),
            "`audit.retention` limits must be greater than zero".into(),
        ));
    }
    let audit_path = raw
        .audit
        .path
        .unwrap_or_else(|| "castellan-audit.db".into());
    // Beside the log by default: `castellan-audit.db` signs with
    // `castellan-audit.key` and anchors in `castellan-audit.anchor`;
    // `none` turns either off.
    let beside = |ext: &str| beside_audit_log(&audit_path, ext);
    let (signing_key, generate_signing_key) = match raw.audit.signing_key.as_deref() {
        Some("none") => (None, false),
        Some(k) => (Some(k.to_owned()), false),
        None => (Some(beside("key")), true),
    };
    let anchor = match raw.audit.anchor.as_deref() {
        Some("none") => None,
        Some(a) => Some(a.to_owned()),
        None => Some(beside("anchor")),
    };
    if anchor.is_some() && signing_key.is_none() {
        return Err(invalid(
            find_key_line(text, "anchor", None),
            "`audit.anchor` keeps signed checkpoints, so it needs a signing key: drop `signing_key: none` or set `anchor: none`".into(),
        ));
    }
    let postgres = match raw.audit.postgres {
        None => None,
        Some(url) => {
            let lower = url.to_ascii_lowercase();
            if !(lower.starts_with("postgres://") || lower.starts_with("postgresql://")) {
                return Err(invalid(
                    find_key_line(text, "postgres", None),
                    format!("`audit.postgres` must be a `postgres://` URL, got `{url}`"),
                ));
            }
            Some(url)
        }
    };
    if raw.audit.spool_max == Some(0) {
        return Err(invalid(
            find_key_line(text, "spool_max", None),
            "`audit.spool_max` must be greater than zero".into(),
        ));
    }
    let spool = raw.audit.spool.unwrap_or_else(|| beside("spool"));
    let audit = AuditConfig {
        path: audit_path,
        postgres,
        spool,
        spool_max: raw.audit.spool_max.unwrap_or(100_000),
        strict,
        signing_key,
        generate_signing_key,
        anchor,
        checkpoint_every,
        checkpoint_interval,
        max_age: raw.audit.retention.max_age.map(|d| d.0),
        max_records: raw.audit.retention.max_records,
    };
    let integrity = IntegrityConfig {
        store: raw
            .integrity
            .store
            .unwrap_or_else(|| "castellan-pins.db".into()),
        first_sight: raw.integrity.first_sight.unwrap_or(FirstSight::Pin),
        renamed: raw.integrity.renamed.unwrap_or(FirstSight::Hold),
        max_tools: raw.integrity.max_tools.unwrap_or(DEFAULT_MAX_TOOLS),
        forget_after: raw
            .integrity
            .forget_after
            .map_or(std::time::Duration::from_secs(30 * 86_400), |d| d.0),
    };
    if integrity.max_tools == 0 {
        return Err(invalid(
            top_line("integrity"),
            "`integrity.max_tools` must be greater than zero".into(),
        ));
    }
    if integrity.forget_after < std::time::Duration::from_secs(60) {
        return Err(invalid(
            top_line("integrity"),
            "`integrity.forget_after` must be at least 1m".into(),
        ));
    }
    let tls = raw.tls.map(|t| Tls {
        cert: t.cert,
        key: t.key,
    });
    Ok(Config {
        admin,
        alerts,
        telemetry,
        judge,
        audit,
        integrity,
        tls,
        auth,
        origin: origin.into(),
        listener: Listener {
            addr,
            path: raw.path,
            allowed_hosts: raw.allowed_hosts,
            allowed_origins: raw.allowed_origins,
            modern_headers: raw.modern_headers,
        },
        limits,
        upstreams,
    })
}

fn compile_auth(
    raw: Option<RawAuth>,
    has_tls: bool,
    text: &str,
    invalid: &dyn Fn(usize, String) -> ConfigError,
) -> Result<Auth, ConfigError> {
    let line = |key: &str| find_key_line(text, key, None);
    let Some(raw) = raw else {
        return Err(invalid(
            0,
            "no `auth` section: agents must authenticate (configure `auth.api_keys`, `auth.jwt` or `auth.generate_key: true`; `auth.mode: none` allows anonymous agents, for development only)".into(),
        ));
    };
    let anonymous = match raw.mode.as_deref() {
        None | Some("required") => false,
        Some("none") => true,
        Some(other) => {
            return Err(invalid(
                line("mode"),
                format!("`auth.mode` must be `required` or `none`, got `{other}`"),
            ));
        }
    };
    let mut api_keys = Vec::with_capacity(raw.api_keys.len());
    for k in raw.api_keys {
        let l = find_key_line(text, "agent", Some(&k.agent)).max(line("api_keys"));
        let hex = k.sha256.trim().trim_start_matches("sha256:");
        let bytes = decode_hex(hex).filter(|b| b.len() == 32).ok_or_else(|| {
            invalid(l, format!("api key of agent `{}`: `sha256` must be 64 hex digits (the SHA-256 of the key, e.g. from `printf %s KEY | sha256sum`)", k.agent))
        })?;
        let mut sha256 = [0u8; 32];
        sha256.copy_from_slice(&bytes);
        if k.agent.trim().is_empty() {
            return Err(invalid(l, "api key with an empty `agent`".into()));
        }
        if api_keys.iter().any(|e: &ApiKey| e.sha256 == sha256) {
            return Err(invalid(
                l,
                format!("api key of agent `{}` is configured twice", k.agent),
            ));
        }
        api_keys.push(ApiKey {
            agent: k.agent,
            user: k.user,
            sha256,
            attributes: k.attributes.into_iter().collect(),
            revoked: k.revoked,
            trusted_intent: k.trusted_intent,
        });
    }
    let jwt = match raw.jwt {
        None => None,
        Some(j) => {
            let l = line("jwt");
            let jwks = match (j.jwks_url, j.jwks_file) {
                (Some(u), None) => JwksSource::Url(u),
                (None, Some(f)) => JwksSource::File(f),
                _ => {
                    return Err(invalid(
                        l,
                        "`auth.jwt` needs exactly one of `jwks_url` and `jwks_file`".into(),
                    ));
                }
            };
            let algorithms = if j.algorithms.is_empty() {
                vec!["RS256".to_string(), "ES256".to_string()]
            } else {
                j.algorithms
            };
            if let Some(bad) = algorithms
                .iter()
                .find(|a| !JWT_ALGORITHMS.contains(&a.as_str()))
            {
                return Err(invalid(
                    l,
                    format!(
                        "JWT algorithm `{bad}` is not allowed; use one of {}",
                        JWT_ALGORITHMS.join(", ")
                    ),
                ));
            }
            let trusted_intent = match (j.trusted_intent, j.trusted_intent_scope) {
                (false, None) => JwtIntent::Never,
                (true, None) => JwtIntent::Always,
                (false, Some(s)) if !s.trim().is_empty() => JwtIntent::WithScope(s),
                _ => {
                    return Err(invalid(
                        l,
                        "`auth.jwt`: set `trusted_intent: true` (every token) or `trusted_intent_scope: <scope>` (tokens with that scope), not both".into(),
                    ));
                }
            };
            if j.audiences.is_empty() {
                return Err(invalid(l, "`auth.jwt.audiences` must name at least one audience (tokens for other services must not work here)".into()));
            }
            Some(Jwt {
                issuer: j.issuer,
                audiences: j.audiences,
                jwks,
                algorithms,
                agent_claim: j.agent_claim.unwrap_or_else(|| "sub".into()),
                user_claim: j.user_claim,
                attribute_claims: j.attribute_claims,
                required_scopes: j.required_scopes,
                leeway: j.leeway.map_or(std::time::Duration::from_secs(30), |d| d.0),
                trusted_intent,
            })
        }
    };
    let mtls = match raw.mtls {
        None => None,
        Some(m) => {
            let l = line("mtls");
            if !has_tls {
                return Err(invalid(l, "`auth.mtls` needs a top-level `tls` section (client certificates are only seen over HTTPS)".into()));
            }
            if let Some(a) = m.agents.iter().find(|a| {
                !(a.id.starts_with("spiffe://") || (!a.id.contains('/') && !a.id.is_empty()))
            }) {
                return Err(invalid(
                    l,
                    format!(
                        "`auth.mtls.agents`: `{}` is neither a `spiffe://` id nor a DNS name",
                        a.id
                    ),
                ));
            }
            Some(Mtls {
                ca: m.ca,
                trust_domains: m.trust_domains,
                listed_only: m.listed_only,
                agents: m
                    .agents
                    .into_iter()
                    .map(|a| CertAgent {
                        id: a.id,
                        agent: a.agent,
                        user: a.user,
                        attributes: a.attributes.into_iter().collect(),
                        trusted_intent: a.trusted_intent,
                    })
                    .collect(),
            })
        }
    };
    if !anonymous && !raw.generate_key && api_keys.is_empty() && jwt.is_none() && mtls.is_none() {
        return Err(invalid(line("auth"), "`auth` configures no way to authenticate: add `api_keys`, `jwt`, `mtls` or `generate_key: true`".into()));
    }
    Ok(Auth {
        anonymous,
        generate_key: raw.generate_key,
        api_keys,
        jwt,
        mtls,
        resource: raw.resource,
    })
}

/// A file kept beside the audit log: `NAME.EXT` for `NAME.db`, else the
/// log's path with `.EXT` appended.
pub fn beside_audit_log(log: &str, ext: &str) -> String {
    let stem = log.strip_suffix(".db").unwrap_or(log);
    format!("{stem}.{ext}")
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Expands `${VAR}` references; a missing variable is an error, never an
/// empty credential.
pub(crate) fn expand_env(
    value: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unterminated `${{` in `{value}`"))?;
        let var = &after[..end];
        let val = env(var).ok_or_else(|| format!("environment variable `{var}` is not set"))?;
        out.push_str(&val);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The 1-based line where `key:` (optionally with `value`) first appears;
/// 0 if not found. Good enough to point an operator at the entry.
pub(crate) fn find_key_line(text: &str, key: &str, value: Option<&str>) -> usize {
    for (i, line) in text.lines().enumerate() {
        let t = line.trim_start().trim_start_matches("- ").trim_start();
        if let Some(rest) = t.strip_prefix(key).and_then(|r| r.strip_prefix(':')) {
            let v = rest.trim().trim_matches(|c| c == '"' || c == '\'');
            if value.is_none_or(|want| v == want) {
                return i + 1;
            }
        }
    }
    0
}

/// Compiles an `http:` upstream's endpoint and credentials (also the
/// credentials of an `openapi:` upstream, whose `base_url` is the `url`).
pub(crate) fn compile_http(
    name: &str,
    h: RawHttp,
    line: usize,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
    invalid: &dyn Fn(usize, String) -> ConfigError,
) -> Result<HttpUpstream, ConfigError> {
    if !(h.url.starts_with("http://") || h.url.starts_with("https://")) {
        return Err(invalid(
            line,
            format!(
                "upstream `{}`: url `{}` must start with http:// or https://",
                name, h.url
            ),
        ));
    }
    let mut headers = Vec::with_capacity(h.headers.len());
    for (k, v) in h.headers {
        let v = expand_env(&v, env)
            .map_err(|m| invalid(line, format!("upstream `{}` header `{k}`: {m}", name)))?;
        headers.push((k, v));
    }
    let oauth = match h.oauth {
        None => None,
        Some(o) => {
            let l = find_key_line(text, "oauth", None).max(line);
            if !(o.token_url.starts_with("https://")
                || o.token_url.starts_with("http://127.0.0.1")
                || o.token_url.starts_with("http://localhost"))
            {
                return Err(invalid(
                    l,
                    format!(
                        "upstream `{}`: `oauth.token_url` must be https:// (plain http only on loopback)",
                        name
                    ),
                ));
            }
            if headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("authorization"))
            {
                return Err(invalid(
                    l,
                    format!(
                        "upstream `{}`: `oauth` and an `Authorization` header both set the credential; keep one",
                        name
                    ),
                ));
            }
            let client_secret = expand_env(&o.client_secret, env)
                .map_err(|m| invalid(l, format!("upstream `{}` oauth.client_secret: {m}", name)))?;
            Some(OAuthClient {
                token_url: o.token_url,
                client_id: o.client_id,
                client_secret,
                scopes: o.scopes,
                audience: o.audience,
                resource: o.resource,
            })
        }
    };
    Ok(HttpUpstream {
        url: h.url,
        headers,
        era: h.era,
        oauth,
    })
}
