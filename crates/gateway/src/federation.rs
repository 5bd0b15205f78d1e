//! Federation: one endpoint fronting many upstreams. Tool and prompt names
//! are namespaced `prefix__name` (a prefix of "" leaves names unchanged);
//! resource URIs stay as the upstream wrote them and are routed through a
//! table learned from list results. Two upstreams claiming the same name
//! or URI are reported, and the later one is withheld.

use std::collections::HashMap;
use std::sync::RwLock;

/// Separator between prefix and name.
pub const SEPARATOR: &str = "__";

/// Routing tables learned from list results.
#[derive(Debug, Default)]
pub struct Routes {
    prefixes: Vec<String>,
    /// Exposed names of un-prefixed upstreams -> upstream.
    plain_names: RwLock<HashMap<String, usize>>,
    /// Resource URI -> upstream.
    uris: RwLock<HashMap<String, usize>>,
    /// Resource template literal prefixes -> upstream.
    templates: RwLock<Vec<(String, usize)>>,
}

impl Routes {
    /// Tables for upstreams with these prefixes (by index).
    pub fn new(prefixes: Vec<String>) -> Self {
        Routes {
            prefixes,
            ..Routes::default()
        }
    }

    /// The name an agent sees for upstream `i`'s `name`.
    pub fn expose(&self, i: usize, name: &str) -> String {
        match self.prefixes.get(i).map(String::as_str) {
            Some("") | None => name.to_owned(),
            Some(p) => format!("{p}{SEPARATOR}{name}"),
        }
    }

    /// Resolves an exposed tool or prompt name to (upstream, upstream's name).
    pub fn resolve_name(&self, exposed: &str) -> Option<(usize, String)> {
        if let Some((p, rest)) = exposed.split_once(SEPARATOR)
            && let Some(i) = self.prefixes.iter().position(|x| !x.is_empty() && x == p)
        {
            return Some((i, rest.to_owned()));
        }
        if let Some(i) = read(&self.plain_names).get(exposed) {
            return Some((*i, exposed.to_owned()));
        }
        let mut plain = self
            .prefixes
            .iter()
            .enumerate()
            .filter(|(_, p)| p.is_empty());
        match (plain.next(), plain.next()) {
            (Some((i, _)), None) => Some((i, exposed.to_owned())),
            _ => None,
        }
    }

    /// Whether `exposed`, listed by upstream `i`, lies in another
    /// upstream's namespace (`mail__send_email` from an un-prefixed one).
    pub fn foreign_prefix(&self, i: usize, exposed: &str) -> bool {
        exposed.split_once(SEPARATOR).is_some_and(|(p, _)| {
            self.prefixes
                .iter()
                .enumerate()
                .any(|(j, x)| j != i && !x.is_empty() && x.eq_ignore_ascii_case(p))
        })
    }

    /// Whether upstream `i` has no prefix.
    pub fn is_plain(&self, i: usize) -> bool {
        self.prefixes.get(i).is_some_and(String::is_empty)
    }

    /// Records an un-prefixed name; false if another upstream owns it.
    pub fn claim_name(&self, i: usize, exposed: &str) -> bool {
        let mut m = write(&self.plain_names);
        match m.get(exposed) {
            Some(owner) if *owner != i => false,
            _ => {
                m.insert(exposed.to_owned(), i);
                true
            }
        }
    }

    /// Records a resource URI; false if another upstream owns it.
    pub fn claim_uri(&self, i: usize, uri: &str) -> bool {
        let uri = crate::uri::normalise(uri);
        let mut m = write(&self.uris);
        match m.get(&uri) {
            Some(owner) if *owner != i => false,
            _ => {
                m.insert(uri, i);
                true
            }
        }
    }

    /// Records a resource template (routing by its literal prefix).
    pub fn claim_template(&self, i: usize, template: &str) {
        let literal = template.split('{').next().unwrap_or("").to_owned();
        let mut t = write(&self.templates);
        if !t.iter().any(|(l, owner)| l == &literal && *owner == i) {
            t.push((literal, i));
            // Longest literal first, so the most specific template wins.
            t.sort_by_key(|(literal, _)| std::cmp::Reverse(literal.len()));
        }
    }

    /// The upstream serving a resource URI (compared in its canonical
    /// spelling, see `uri`).
    pub fn resolve_uri(&self, uri: &str) -> Option<usize> {
        let uri = crate::uri::normalise(uri);
        let uri = uri.as_str();
        if let Some(i) = read(&self.uris).get(uri) {
            return Some(*i);
        }
        read(&self.templates)
            .iter()
            .find(|(lit, _)| !lit.is_empty() && uri.starts_with(lit.as_str()))
            .map(|(_, i)| *i)
    }
}

pub(crate) fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    match l.read() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

pub(crate) fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    match l.write() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// The array key and name field of each list method's result.
pub fn list_shape(method: &str) -> Option<(&'static str, Option<&'static str>)> {
    match method {
        "tools/list" => Some(("tools", Some("name"))),
        "prompts/list" => Some(("prompts", Some("name"))),
        "resources/list" => Some(("resources", None)),
        "resources/templates/list" => Some(("resourceTemplates", None)),
        _ => None,
    }
}

/// The capability an upstream must declare to be asked for a list.
pub fn capability_for(method: &str) -> &'static str {
    match method {
        "tools/list" => "tools",
        "prompts/list" => "prompts",
        _ => "resources",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixed_names_resolve_to_their_upstream() {
        let r = Routes::new(vec!["mail".into(), "files".into()]);
        assert_eq!(r.expose(0, "send_email"), "mail__send_email");
        assert_eq!(
            r.resolve_name("files__read_file"),
            Some((1, "read_file".into()))
        );
        assert_eq!(r.resolve_name("nope__x"), None);
    }

    #[test]
    fn a_single_plain_upstream_takes_unknown_names() {
        let r = Routes::new(vec!["".into(), "mail".into()]);
        assert_eq!(
            r.resolve_name("test_simple_text"),
            Some((0, "test_simple_text".into()))
        );
        assert_eq!(r.resolve_name("mail__send"), Some((1, "send".into())));
    }

    #[test]
    fn two_plain_upstreams_cannot_claim_the_same_name() {
        let r = Routes::new(vec!["".into(), "".into()]);
        assert!(r.claim_name(0, "echo"));
        assert!(!r.claim_name(1, "echo"));
        assert_eq!(r.resolve_name("echo"), Some((0, "echo".into())));
        assert_eq!(r.resolve_name("unknown"), None);
    }

    #[test]
    fn uris_route_by_exact_match_then_by_template_prefix() {
        let r = Routes::new(vec!["a".into(), "b".into()]);
        assert!(r.claim_uri(0, "test://static-text"));
        assert!(!r.claim_uri(1, "test://static-text"));
        r.claim_template(1, "test://template/{id}/data");
        assert_eq!(r.resolve_uri("test://static-text"), Some(0));
        assert_eq!(r.resolve_uri("test://template/7/data"), Some(1));
        assert_eq!(r.resolve_uri("other://x"), None);
    }
}
