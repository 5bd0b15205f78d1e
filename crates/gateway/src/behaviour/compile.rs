//! The judge's construction from the configuration: roles, label
//! overrides, rule files and the Cedar policy, each error naming the file
//! and line at fault.

use castellan_config::JudgeConfig;
use castellan_judge::{Catalog, Judge, Label, LabelOverride, LabelSet, Policy, RuleSet};

use crate::error::Error;

/// Compiles the judge the configuration describes. Every error names the
/// file and line at fault.
pub fn compile_judge(cfg: &JudgeConfig) -> Result<(Judge, Vec<LabelOverride>), Error> {
    let mut roles = Vec::with_capacity(cfg.tools.len());
    for t in &cfg.tools {
        let mut args = Vec::with_capacity(t.arguments.len());
        for (arg, role) in &t.arguments {
            let r = castellan_judge::ArgRole::parse(role).ok_or_else(|| Error::JudgeEntry {
                section: "tools",
                matches: t.matches.clone(),
                message: format!("argument `{arg}` has unknown role `{role}`"),
            })?;
            args.push((arg.clone(), r));
        }
        roles.push(
            castellan_judge::RoleOverride::new(&t.matches, args)
                .with_caps(t.max_amount, t.max_calls_per_session),
        );
    }
    let mut overrides = Vec::with_capacity(cfg.labels.len());
    for l in &cfg.labels {
        let parse = |names: &[String]| -> Result<LabelSet, Error> {
            let mut set = LabelSet::EMPTY;
            for n in names {
                set.insert(Label::parse(n).ok_or_else(|| Error::JudgeEntry {
                    section: "labels",
                    matches: l.matches.clone(),
                    message: format!(
                        "unknown label `{n}`; known: {}",
                        Label::ALL
                            .iter()
                            .map(|x| x.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                })?);
            }
            Ok(set)
        };
        overrides.push(LabelOverride::new(
            &l.matches,
            parse(&l.add)?,
            parse(&l.remove)?,
        ));
    }
    let catalog = Catalog::new(overrides.clone()).with_roles(roles);
    let mut rules = if cfg.default_pack {
        castellan_judge::pack::rules()?
    } else {
        RuleSet::from_yaml("<empty>", "rules: []")?
    };
    for file in &cfg.rules {
        let text = read(file)?;
        rules.merge(RuleSet::from_yaml(file, &text)?)?;
    }
    rules.add_internal_domains(&cfg.internal_domains);
    let policy = match &cfg.policy {
        Some(file) => {
            let text = read(file)?;
            castellan_judge::policy::check_servers(file, &text, &cfg.servers)?;
            Policy::with_attributes(&catalog, &cfg.attributes, file, &text)?
        }
        None => Policy::with_attributes(
            &catalog,
            &cfg.attributes,
            castellan_judge::pack::POLICY_FILE,
            castellan_judge::pack::POLICY,
        )?,
    };
    Ok((Judge::new(catalog, rules).with_policy(policy), overrides))
}

/// A rule or policy file's text.
fn read(file: &str) -> Result<String, Error> {
    std::fs::read_to_string(file).map_err(|error| Error::Read {
        file: file.to_owned(),
        error,
    })
}
