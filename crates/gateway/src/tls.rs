//! HTTPS for the agent-facing listener and agent identity from TLS client
//! certificates (mTLS): the certificate must chain to the configured CA
//! (rustls verifies it during the handshake); its SPIFFE id (URI SAN) or
//! DNS name then names the agent.

use std::sync::Arc;

use castellan_config::{Mtls, Tls};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

use crate::identity::{AuthError, Principal};

/// Builds the listener's TLS configuration; with `mtls`, client certificates are requested
/// and verified against its CA. A client without one still connects, so it
/// can authenticate another way (or get a clear 401).
pub fn server_config(tls: &Tls, mtls: Option<&Mtls>) -> Result<rustls::ServerConfig, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&tls.cert)
        .map_err(|e| format!("tls.cert `{}`: {e}", tls.cert))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("tls.cert `{}`: {e}", tls.cert))?;
    if certs.is_empty() {
        return Err(format!("tls.cert `{}` holds no certificate", tls.cert));
    }
    let key = PrivateKeyDer::from_pem_file(&tls.key)
        .map_err(|e| format!("tls.key `{}`: {e}", tls.key))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls: {e}"))?;
    let builder = match mtls {
        None => builder.with_no_client_auth(),
        Some(m) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(&m.ca)
                .map_err(|e| format!("auth.mtls.ca `{}`: {e}", m.ca))?
            {
                let cert = cert.map_err(|e| format!("auth.mtls.ca `{}`: {e}", m.ca))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("auth.mtls.ca `{}`: {e}", m.ca))?;
            }
            if roots.is_empty() {
                return Err(format!("auth.mtls.ca `{}` holds no certificate", m.ca));
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| format!("auth.mtls: {e}"))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("tls: certificate and key do not match: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// The identities a verified client certificate carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertIdentity {
    /// The SPIFFE id (`spiffe://trust-domain/path`), if any.
    pub spiffe: Option<String>,
    /// DNS names.
    pub dns: Vec<String>,
}

impl CertIdentity {
    /// Reads the subject alternative names of a DER certificate.
    pub fn of(der: &[u8]) -> Result<CertIdentity, String> {
        use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
        let (_, cert) = X509Certificate::from_der(der).map_err(|e| e.to_string())?;
        let mut id = CertIdentity {
            spiffe: None,
            dns: Vec::new(),
        };
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    // A SPIFFE SVID carries exactly one SPIFFE id.
                    GeneralName::URI(u)
                        if u.starts_with("spiffe://")
                            && id.spiffe.replace((*u).to_owned()).is_some() =>
                    {
                        return Err("more than one SPIFFE id".into());
                    }
                    GeneralName::DNSName(d) => id.dns.push((*d).to_owned()),
                    _ => {}
                }
            }
        }
        Ok(id)
    }

    fn trust_domain(&self) -> Option<&str> {
        let rest = self.spiffe.as_deref()?.strip_prefix("spiffe://")?;
        Some(rest.split('/').next().unwrap_or(rest))
    }
}

/// Agents by certificate identity.
#[derive(Debug)]
pub struct CertAgents {
    cfg: Mtls,
}

impl CertAgents {
    /// From the `auth.mtls` section.
    pub fn new(cfg: &Mtls) -> CertAgents {
        CertAgents { cfg: cfg.clone() }
    }

    /// The agent a verified certificate identifies.
    pub fn principal(&self, id: &CertIdentity) -> Result<Principal, AuthError> {
        if let Some(spiffe) = &id.spiffe {
            let td = id.trust_domain().unwrap_or_default();
            if !self.cfg.trust_domains.is_empty() && !self.cfg.trust_domains.iter().any(|t| t == td)
            {
                return Err(AuthError::Invalid(format!(
                    "client certificate from SPIFFE trust domain `{td}`, which is not accepted"
                )));
            }
            return self.named(spiffe, &[("trust_domain", td), ("spiffe_id", spiffe)]);
        }
        match id.dns.first() {
            Some(dns) if self.cfg.trust_domains.is_empty() => self.named(dns, &[("dns", dns)]),
            Some(_) => Err(AuthError::Invalid(
                "client certificate has no SPIFFE id, and only SPIFFE trust domains are accepted"
                    .into(),
            )),
            None => Err(AuthError::Invalid(
                "client certificate names no SPIFFE id or DNS name".into(),
            )),
        }
    }

    fn named(&self, id: &str, facts: &[(&str, &str)]) -> Result<Principal, AuthError> {
        let mut attributes: Vec<(String, String)> = facts
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        match self.cfg.agents.iter().find(|a| a.id == id) {
            Some(a) => {
                attributes.extend(a.attributes.iter().cloned());
                Ok(Principal {
                    agent: a.agent.as_str().into(),
                    user: a.user.as_deref().map(Into::into),
                    attributes: attributes.into(),
                    method: "mtls",
                    trusted_intent: a.trusted_intent,
                })
            }
            None if self.cfg.listed_only => Err(AuthError::Invalid(format!(
                "client certificate `{id}` is not a listed agent"
            ))),
            None => Ok(Principal {
                agent: id.into(),
                user: None,
                attributes: attributes.into(),
                method: "mtls",
                trusted_intent: false,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agents(trust_domains: &[&str], listed_only: bool) -> CertAgents {
        CertAgents::new(&Mtls {
            ca: String::new(),
            trust_domains: trust_domains.iter().map(|s| (*s).to_owned()).collect(),
            listed_only,
            agents: vec![castellan_config::CertAgent {
                id: "spiffe://acme.org/agents/support".into(),
                agent: "support-bot".into(),
                user: Some("alice".into()),
                attributes: vec![("team".into(), "support".into())],
                trusted_intent: false,
            }],
        })
    }

    fn spiffe(id: &str) -> CertIdentity {
        CertIdentity {
            spiffe: Some(id.into()),
            dns: vec![],
        }
    }

    #[test]
    fn a_listed_spiffe_id_is_its_agent_with_attributes() {
        let p = agents(&["acme.org"], false)
            .principal(&spiffe("spiffe://acme.org/agents/support"))
            .expect("principal");
        assert_eq!(&*p.agent, "support-bot");
        assert_eq!(p.user.as_deref(), Some("alice"));
        assert_eq!(p.method, "mtls");
        assert!(p.attributes.contains(&("team".into(), "support".into())));
        assert!(
            p.attributes
                .contains(&("trust_domain".into(), "acme.org".into()))
        );
    }

    #[test]
    fn another_trust_domain_or_an_unlisted_id_is_refused_when_configured() {
        let a = agents(&["acme.org"], false);
        assert!(
            a.principal(&spiffe("spiffe://evil.org/agents/support"))
                .is_err()
        );
        let unlisted = spiffe("spiffe://acme.org/agents/other");
        assert_eq!(
            a.principal(&unlisted).map(|p| p.agent.to_string()),
            Ok("spiffe://acme.org/agents/other".into())
        );
        assert!(agents(&[], true).principal(&unlisted).is_err());
        let dns = CertIdentity {
            spiffe: None,
            dns: vec!["bot.internal".into()],
        };
        assert!(
            a.principal(&dns).is_err(),
            "SPIFFE-only when trust domains are set"
        );
        assert_eq!(
            agents(&[], false)
                .principal(&dns)
                .map(|p| p.agent.to_string()),
            Ok("bot.internal".into())
        );
    }
}
