//! Tool and session labels: what a tool reads and what it does.
//!
//! Owns: [`Label`], the compact [`LabelSet`] bit set and [`LabelSource`]
//! (where a tool's label came from).

use std::fmt;

use serde::{Deserialize, Serialize};

/// One label. The first four describe what a tool *reads* (and so what a
/// session is tainted with after seeing a result); the rest describe what a
/// tool *does*.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Label {
    /// Private data of the user or the organisation (mail, files, CRM).
    Private,
    /// Credentials, keys, tokens.
    Secret,
    /// Financial records: balances, transactions, invoices.
    Financial,
    /// Content written by outside parties (web pages, inbound mail).
    Untrusted,
    /// Sends data to external parties.
    Egress,
    /// Changes state.
    Write,
    /// Deletes or irreversibly destroys.
    Destructive,
    /// Moves money.
    Money,
    /// Changes identities, memberships or permissions.
    Identity,
}

impl Label {
    /// All labels in declaration order.
    pub const ALL: [Label; 9] = [
        Label::Private,
        Label::Secret,
        Label::Financial,
        Label::Untrusted,
        Label::Egress,
        Label::Write,
        Label::Destructive,
        Label::Money,
        Label::Identity,
    ];

    /// The lower-case name used in rules, policies and output.
    pub fn as_str(self) -> &'static str {
        match self {
            Label::Private => "private",
            Label::Secret => "secret",
            Label::Financial => "financial",
            Label::Untrusted => "untrusted",
            Label::Egress => "egress",
            Label::Write => "write",
            Label::Destructive => "destructive",
            Label::Money => "money",
            Label::Identity => "identity",
        }
    }

    /// Parses a lower-case label name.
    pub fn parse(s: &str) -> Option<Label> {
        Label::ALL.into_iter().find(|l| l.as_str() == s)
    }

    /// True for labels that describe what a tool reads (taint labels).
    pub fn is_read(self) -> bool {
        matches!(
            self,
            Label::Private | Label::Secret | Label::Financial | Label::Untrusted
        )
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of labels, stored as a bit set (two bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LabelSet(u16);

impl LabelSet {
    /// The empty set.
    pub const EMPTY: LabelSet = LabelSet(0);

    /// A set from a slice of labels.
    pub fn of(labels: &[Label]) -> LabelSet {
        let mut s = LabelSet::EMPTY;
        for l in labels {
            s.insert(*l);
        }
        s
    }

    /// The set as bits (for hashing).
    pub(crate) fn bits(self) -> u16 {
        self.0
    }

    /// Adds a label.
    pub fn insert(&mut self, l: Label) {
        self.0 |= l.bit();
    }

    /// Removes a label.
    pub fn remove(&mut self, l: Label) {
        self.0 &= !l.bit();
    }

    /// True if the label is in the set.
    pub fn contains(self, l: Label) -> bool {
        self.0 & l.bit() != 0
    }

    /// True if every label of `other` is in this set.
    pub fn contains_all(self, other: LabelSet) -> bool {
        self.0 & other.0 == other.0
    }

    /// True if the sets share a label.
    pub fn intersects(self, other: LabelSet) -> bool {
        self.0 & other.0 != 0
    }

    /// The union of two sets.
    pub fn union(self, other: LabelSet) -> LabelSet {
        LabelSet(self.0 | other.0)
    }

    /// The labels in both sets.
    pub fn intersection(self, other: LabelSet) -> LabelSet {
        LabelSet(self.0 & other.0)
    }

    /// Only the read (taint) labels of this set.
    pub fn read_labels(self) -> LabelSet {
        LabelSet(self.0 & 0b1111)
    }

    /// True if the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The labels in declaration order.
    pub fn iter(self) -> impl Iterator<Item = Label> {
        Label::ALL.into_iter().filter(move |l| self.contains(*l))
    }
}

impl fmt::Display for LabelSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for l in self.iter() {
            if !first {
                f.write_str(",")?;
            }
            first = false;
            f.write_str(l.as_str())?;
        }
        Ok(())
    }
}

impl FromIterator<Label> for LabelSet {
    fn from_iter<I: IntoIterator<Item = Label>>(iter: I) -> Self {
        let mut s = LabelSet::EMPTY;
        for l in iter {
            s.insert(l);
        }
        s
    }
}

/// Where a tool's label came from, so an operator can review it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "source", content = "detail")]
pub enum LabelSource {
    /// An operator glob over `server/tool` set it.
    Config(String),
    /// An MCP tool annotation implied it, e.g. `destructiveHint`.
    Annotation(&'static str),
    /// Inferred from the tool's name, description or input schema; the detail
    /// names the evidence, e.g. `name: send`.
    Inferred(String),
}

impl fmt::Display for LabelSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LabelSource::Config(glob) => write!(f, "config `{glob}`"),
            LabelSource::Annotation(a) => write!(f, "annotation {a}"),
            LabelSource::Inferred(e) => write!(f, "inferred from {e}"),
        }
    }
}
