//! The default pack: rules and a Cedar policy embedded in the binary and
//! also shipped as readable files under `crates/judge/pack/`.
//!
//! Owns: [`RULES`], [`POLICY`] and [`rules`].

use crate::error::Error;
use crate::rules::RuleSet;

/// File name used in errors for the embedded rules.
pub const RULES_FILE: &str = "pack/rules.yaml";
/// The default rules (YAML).
pub const RULES: &str = include_str!("../pack/rules.yaml");
/// File name used in errors for the embedded policy.
pub const POLICY_FILE: &str = "pack/policy.cedar";
/// The default Cedar policy.
pub const POLICY: &str = include_str!("../pack/policy.cedar");

/// The default rules, compiled.
pub fn rules() -> Result<RuleSet, Error> {
    RuleSet::from_yaml(RULES_FILE, RULES)
}
