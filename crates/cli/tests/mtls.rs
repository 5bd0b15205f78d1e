//! Agents identified by TLS client certificates (mTLS), end to end: the
//! gateway serves HTTPS, a certificate chaining to the agents' CA names the
//! agent by its SPIFFE id, and certificates from another trust domain or
//! another CA get nowhere.

mod support;

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{Value, json};
use support::{Gateway, Reply, TEST_AUTH, send_via};

type TlsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let ca =
            CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("CA");
        Pki { ca }
    }

    /// A leaf certificate and its key, signed by this CA.
    fn leaf(&self, sans: Vec<SanType>, usage: ExtendedKeyUsagePurpose) -> (String, KeyPair) {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.subject_alt_names = sans;
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.ca).expect("leaf");
        (cert.pem(), key)
    }
}

fn uri(s: &str) -> SanType {
    SanType::URI(s.try_into().expect("ia5"))
}

fn client(ca_pem: &str, identity: Option<&(String, KeyPair)>) -> TlsClient {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    let ca = rustls::pki_types::pem::PemObject::from_pem_slice(ca_pem.as_bytes()).expect("ca pem");
    roots.add(ca).expect("root");
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some((cert_pem, key)) => {
            let cert: CertificateDer<'static> =
                rustls::pki_types::pem::PemObject::from_pem_slice(cert_pem.as_bytes())
                    .expect("cert pem");
            let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
            builder
                .with_client_auth_cert(vec![cert], key)
                .expect("client auth")
        }
    };
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_only()
        .enable_http1()
        .build();
    Client::builder(TokioExecutor::new()).build(https)
}

async fn post(client: &TlsClient, url: &str, auth: &str, sid: Option<&str>, msg: &Value) -> Reply {
    let mut headers = vec![
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
        ("mcp-protocol-version", "2025-06-18"),
        ("authorization", auth),
    ];
    if let Some(sid) = sid {
        headers.push(("mcp-session-id", sid));
    }
    send_via(
        client,
        "POST",
        url,
        &headers,
        serde_json::to_vec(msg).expect("json"),
    )
    .await
}

fn initialize() -> Value {
    json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "mtls", "version": "1"}}})
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    p.display().to_string()
}

struct Setup {
    gw: Gateway,
    ca_pem: String,
    pki: Pki,
}

fn start() -> Setup {
    let pki = Pki::new("castellan test CA");
    let dir = support::scratch("mtls");
    let (server_cert, server_key) = pki.leaf(
        vec![
            SanType::DnsName("localhost".try_into().expect("dns")),
            SanType::IpAddress([127, 0, 0, 1].into()),
        ],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let ca_pem = pki.ca.pem();
    let cert = write(&dir, "server.pem", &server_cert);
    let key = write(&dir, "server.key", &server_key.serialize_pem());
    let ca = write(&dir, "ca.pem", &ca_pem);
    let yaml = format!(
        "tls:\n  cert: {cert}\n  key: {key}\nauth:\n  api_keys:\n    - agent: test-agent\n      sha256: {}\n  mtls:\n    ca: {ca}\n    trust_domains: [acme.org]\n    agents:\n      - id: spiffe://acme.org/agents/support\n        agent: support-bot\n        attributes: {{team: support}}\nupstreams:\n  - name: mail\n    builtin: mail\n",
        support::sha256_hex(support::TEST_KEY)
    );
    let gw = Gateway::start(&yaml);
    assert!(gw.url.starts_with("https://"), "{}", gw.url);
    Setup { gw, ca_pem, pki }
}

#[tokio::test]
async fn a_client_certificate_names_the_agent_and_binds_its_session() {
    let s = start();
    let id = s.pki.leaf(
        vec![uri("spiffe://acme.org/agents/support")],
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    let agent = client(&s.ca_pem, Some(&id));
    let r = post(&agent, &s.gw.url, "", None, &initialize()).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let sid = r.header("mcp-session-id").expect("session").to_owned();
    let list = post(
        &agent,
        &s.gw.url,
        "",
        Some(&sid),
        &json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
    )
    .await;
    assert!(
        list.last()["result"]["tools"]
            .as_array()
            .is_some_and(|t| !t.is_empty()),
        "{}",
        list.last()
    );

    // The same session presented by another agent (an API key over TLS
    // without the certificate) is refused: sessions belong to their agent.
    let other = client(&s.ca_pem, None);
    let hijack = post(
        &other,
        &s.gw.url,
        TEST_AUTH,
        Some(&sid),
        &json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
    )
    .await;
    assert_eq!(
        hijack.status,
        StatusCode::FORBIDDEN,
        "{}",
        String::from_utf8_lossy(&hijack.body)
    );

    // The decision log names the agent from the certificate.
    let call = post(&agent, &s.gw.url, "", Some(&sid), &json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "mail__list_inbox", "arguments": {}}})).await;
    assert!(call.last()["result"].is_object(), "{}", call.last());
    let audit = s.gw.dir.join("audit.db");
    support::eventually(10, async || {
        let out = support::castellan(&[
            "audit",
            "query",
            audit.to_str().expect("path"),
            "--agent",
            "support-bot",
        ]);
        String::from_utf8_lossy(&out.stdout).contains("list_inbox")
    })
    .await;
}

#[tokio::test]
async fn without_a_certificate_or_with_a_foreign_one_an_agent_gets_nowhere() {
    let s = start();
    // TLS without a client certificate and without a token: a clear 401.
    let bare = client(&s.ca_pem, None);
    let r = post(&bare, &s.gw.url, "", None, &initialize()).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let challenge = r.header("www-authenticate").unwrap_or_default().to_owned();
    assert!(
        challenge.contains("resource_metadata=\"https://"),
        "{challenge}"
    );
    // An API key still works over TLS.
    let r = post(&bare, &s.gw.url, TEST_AUTH, None, &initialize()).await;
    assert_eq!(r.status, StatusCode::OK);

    // A certificate from the right CA but another SPIFFE trust domain.
    let foreign = s.pki.leaf(
        vec![uri("spiffe://evil.org/agents/support")],
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    let r = post(
        &client(&s.ca_pem, Some(&foreign)),
        &s.gw.url,
        "",
        None,
        &initialize(),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(
        String::from_utf8_lossy(&r.body).contains("trust domain `evil.org`"),
        "{}",
        String::from_utf8_lossy(&r.body)
    );

    // A certificate from another CA never completes the handshake.
    let rogue = Pki::new("rogue CA").leaf(
        vec![uri("spiffe://acme.org/agents/support")],
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    let req = http::Request::post(&s.gw.url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(
            serde_json::to_vec(&initialize()).expect("json"),
        )))
        .expect("request");
    let refused = client(&s.ca_pem, Some(&rogue)).request(req).await;
    assert!(
        refused.is_err(),
        "a certificate from an unknown CA must be refused"
    );
}
