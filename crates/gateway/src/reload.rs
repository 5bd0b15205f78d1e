//! Configuration reload without dropping connections.
//!
//! What can change while agents are connected: the judge (rules, Cedar
//! policy, label overrides), agent credentials (API keys and their
//! revocation, JWT settings, mTLS agent mappings), the listener's TLS
//! certificate and client CA, and each HTTP upstream's own credentials
//! (headers, OAuth client). Everything is built from the new file first;
//! only when every part is valid is any of it put in force, so a broken
//! file changes nothing. Sections that shape sockets, routing or storage
//! (listener, limits, the upstream list and transports, audit, admin,
//! integrity store, alerts, telemetry) are reported as needing a restart
//! and keep their running values.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use castellan_config::Config;

use crate::Gateway;
use crate::error::Error;

/// A value in force that a reload replaces as a whole. Readers take a
/// cheap `Arc` and keep a consistent version for as long as they need it.
#[derive(Debug)]
pub struct Live<T>(RwLock<Arc<T>>);

impl<T> Live<T> {
    /// Puts `value` in force.
    pub fn new(value: T) -> Self {
        Live(RwLock::new(Arc::new(value)))
    }

    /// The version in force now.
    pub fn get(&self) -> Arc<T> {
        match self.0.read() {
            Ok(v) => v.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Replaces the version in force; readers holding the old one finish
    /// with it.
    pub fn replace(&self, value: T) {
        let value = Arc::new(value);
        match self.0.write() {
            Ok(mut v) => *v = value,
            Err(p) => *p.into_inner() = value,
        }
    }
}

/// Where the running configuration came from: its file (none for the
/// builtin demo) and the command line's overrides, applied again to every
/// reloaded version so that an override is not mistaken for a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The configuration file; `None` runs the builtin demo configuration.
    pub path: Option<PathBuf>,
    /// `--listen`, overriding `listener.listen`.
    pub listen: Option<SocketAddr>,
    /// `--admin-listen`, overriding `admin.listen`.
    pub admin_listen: Option<SocketAddr>,
}

impl Source {
    /// Loads the configuration and applies the overrides.
    pub fn load(&self) -> Result<Config, castellan_config::ConfigError> {
        let mut cfg = match &self.path {
            Some(path) => castellan_config::load_file(path)?,
            None => castellan_config::load("<default>", castellan_config::DEFAULT_YAML, &|k| {
                std::env::var(k).ok()
            })?,
        };
        if let Some(addr) = self.listen {
            cfg.listener.addr = addr;
        }
        if let (Some(addr), Some(admin)) = (self.admin_listen, cfg.admin.as_mut()) {
            admin.addr = addr;
        }
        Ok(cfg)
    }
}

/// What a successful reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reloaded {
    /// The files the new configuration reads (for a watcher to follow).
    pub files: Vec<PathBuf>,
    /// The configuration sections that changed and are now in force.
    pub applied: Vec<&'static str>,
    /// Sections that changed but only take effect at the next start.
    pub restart_needed: Vec<&'static str>,
}

/// Reloads the configuration file into the running gateway. A file that
/// does not load, or any part that cannot be built (a policy that does not
/// validate, an unreadable certificate, a bad JWKS), is refused with its
/// error and the running configuration stays in force as a whole.
pub async fn reload(gw: &Gateway, source: &Source) -> Result<Reloaded, Error> {
    let Some(path) = &source.path else {
        return Err(Error::NoConfigFile);
    };
    let next = source.load()?;
    let running = gw.config.as_ref();
    // Build every part that can fail before putting anything in force.
    let auth = gw
        .auth
        .get()
        .reloaded(&next.auth)
        .await
        .map_err(Error::Auth)?;
    let tls = match (&running.tls, &next.tls) {
        (Some(_), Some(t)) => {
            Some(crate::tls::server_config(t, next.auth.mtls.as_ref()).map_err(Error::Tls)?)
        }
        _ => None,
    };
    let credentials = gw.upstream_credentials(&next).map_err(Error::Upstream)?;
    // The judge is the last fallible step: it swaps itself in on success.
    gw.reload_judge(&next.judge)?;

    let mut applied = vec!["judge"];
    gw.auth.replace(auth);
    applied.push("auth");
    if let (Some(live), Some(acceptor)) = (&gw.tls, tls) {
        live.replace(acceptor);
        applied.push("tls");
    }
    for (upstream, creds) in credentials {
        upstream.set_credentials(creds);
    }
    applied.push("upstream credentials");
    Ok(Reloaded {
        files: files_of(path, &next),
        applied,
        restart_needed: restart_needed(running, &next),
    })
}

/// The configuration file and every file it makes the gateway read that a
/// reload picks up: rule files, the Cedar policy, the JWKS file, the TLS
/// certificate and key, the client CA.
pub fn files_of(path: &Path, cfg: &Config) -> Vec<PathBuf> {
    let jwks = cfg.auth.jwt.as_ref().and_then(|j| match &j.jwks {
        castellan_config::JwksSource::File(f) => Some(f.as_str()),
        castellan_config::JwksSource::Url(_) => None,
    });
    let tls = cfg
        .tls
        .iter()
        .flat_map(|t| [t.cert.as_str(), t.key.as_str()]);
    let ca = cfg.auth.mtls.as_ref().map(|m| m.ca.as_str());
    std::iter::once(path.to_path_buf())
        .chain(cfg.judge.rules.iter().map(PathBuf::from))
        .chain(cfg.judge.policy.iter().map(PathBuf::from))
        .chain(jwks.into_iter().chain(tls).chain(ca).map(PathBuf::from))
        .collect()
}

/// The changed sections that a reload cannot put in force.
fn restart_needed(running: &Config, next: &Config) -> Vec<&'static str> {
    let mut out = Vec::new();
    if running.listener != next.listener {
        out.push("listener");
    }
    if running.limits != next.limits {
        out.push("limits");
    }
    if running.judge.enabled != next.judge.enabled {
        out.push("judge.enabled");
    }
    if running.auth.resource != next.auth.resource {
        out.push("auth.resource");
    }
    if running.tls.is_some() != next.tls.is_some() {
        out.push("tls (turning HTTPS on or off)");
    }
    if running.upstreams.len() != next.upstreams.len()
        || running
            .upstreams
            .iter()
            .zip(&next.upstreams)
            .any(|(a, b)| !same_route(a, b))
    {
        out.push("upstreams (names, prefixes, transports or URLs)");
    }
    if running.audit != next.audit {
        out.push("audit");
    }
    if running.admin != next.admin {
        out.push("admin");
    }
    if running.integrity != next.integrity {
        out.push("integrity");
    }
    if running.alerts != next.alerts {
        out.push("alerts");
    }
    if running.telemetry != next.telemetry {
        out.push("telemetry");
    }
    out
}

/// Whether two upstream entries route and connect the same way, ignoring
/// the credentials a reload can replace.
fn same_route(a: &castellan_config::Upstream, b: &castellan_config::Upstream) -> bool {
    use castellan_config::Transport;
    a.name == b.name
        && a.prefix == b.prefix
        && match (&a.transport, &b.transport) {
            (Transport::Http(x), Transport::Http(y)) => x.url == y.url && x.era == y.era,
            (x, y) => x == y,
        }
}
