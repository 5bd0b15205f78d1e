//! `castellan policy check|test`: policies reviewed and tested like code.
//!
//! A test file holds cases: recorded sessions in the replay format (see
//! `docs/rules.md`), where any call may carry `expect`, the decision it must
//! get, and optionally rules that must (or must not) be among its reasons.
//! Calls without `expect` set the scene. Each case runs on fresh state.

use std::path::Path;

use anyhow::Context;
use castellan_judge::{Decision, Judge, TraceSession, replay};
use serde::Deserialize;

/// A test case: a session plus expectations on its calls.
#[derive(Deserialize)]
struct Case {
    #[serde(flatten)]
    session: TraceSession,
    /// A readable name (default: the session id).
    #[serde(default)]
    name: Option<String>,
    #[serde(skip)]
    expects: Vec<Option<CallExpect>>,
}

#[derive(Deserialize)]
struct ExpectOnly {
    #[serde(default)]
    calls: Vec<CallWithExpect>,
}

#[derive(Deserialize)]
struct CallWithExpect {
    #[serde(default)]
    expect: Option<CallExpect>,
}

/// What one call must get: a bare decision, or a decision with rules.
#[derive(Deserialize, Clone)]
#[serde(untagged)]
enum CallExpect {
    Decision(Decision),
    Detailed {
        decision: Decision,
        #[serde(default)]
        rules: Vec<String>,
        #[serde(default)]
        not_rules: Vec<String>,
    },
}

impl CallExpect {
    fn check(&self, decision: Decision, rules: &[String]) -> Result<(), String> {
        let (want, must, must_not): (Decision, &[String], &[String]) = match self {
            CallExpect::Decision(d) => (*d, &[], &[]),
            CallExpect::Detailed {
                decision,
                rules,
                not_rules,
            } => (*decision, rules, not_rules),
        };
        if want != decision {
            return Err(format!("expected {want}, got {decision}"));
        }
        if let Some(r) = must.iter().find(|r| !rules.contains(r)) {
            return Err(format!("expected rule `{r}` among the reasons"));
        }
        if let Some(r) = must_not.iter().find(|r| rules.contains(r)) {
            return Err(format!("rule `{r}` must not fire"));
        }
        Ok(())
    }
}

/// Reads the cases of one file: a YAML list, or JSON Lines (`.jsonl`).
fn read_cases(path: &Path) -> anyhow::Result<Vec<Case>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let name = path.display();
    let values: Vec<serde_json::Value> = if path.extension().is_some_and(|e| e == "jsonl") {
        text.lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(n, l)| {
                serde_json::from_str(l).map_err(|e| anyhow::anyhow!("{name}:{}: {e}", n + 1))
            })
            .collect::<Result<_, _>>()?
    } else {
        serde_yaml::from_str(&text).map_err(|e| match e.location() {
            Some(l) => anyhow::anyhow!("{name}:{}:{}: {e}", l.line(), l.column()),
            None => anyhow::anyhow!("{name}: {e}"),
        })?
    };
    values
        .into_iter()
        .enumerate()
        .map(|(n, mut v)| {
            // A case may be named instead of given a session id.
            if v.get("id").is_none()
                && let Some(o) = v.as_object_mut()
            {
                let id = o
                    .get("name")
                    .cloned()
                    .unwrap_or_else(|| format!("case-{}", n + 1).into());
                o.insert("id".into(), id);
            }
            let expects: ExpectOnly = serde_json::from_value(v.clone())
                .map_err(|e| anyhow::anyhow!("{name}: case {}: {e}", n + 1))?;
            let mut case: Case = serde_json::from_value(v)
                .map_err(|e| anyhow::anyhow!("{name}: case {}: {e}", n + 1))?;
            case.expects = expects.calls.into_iter().map(|c| c.expect).collect();
            if case.expects.iter().all(Option::is_none) {
                anyhow::bail!(
                    "{name}: case `{}` has no call with `expect`",
                    case.name.as_deref().unwrap_or(&case.session.id)
                );
            }
            Ok(case)
        })
        .collect()
}

/// Runs every case of every file; prints one line per case and returns the
/// number of failures.
pub fn test(judge: &Judge, files: &[std::path::PathBuf]) -> anyhow::Result<usize> {
    let mut failed = 0;
    let mut passed = 0;
    for file in files {
        for case in read_cases(file)? {
            let name = case.name.as_deref().unwrap_or(&case.session.id);
            let outcomes = replay(judge, &case.session);
            let problems: Vec<String> = case
                .expects
                .iter()
                .zip(&outcomes)
                .filter_map(|(expect, o)| {
                    let e = expect.as_ref()?;
                    e.check(o.decision, &o.rules).err().map(|why| {
                        let rules = if o.rules.is_empty() {
                            "no rule".to_owned()
                        } else {
                            o.rules.join(", ")
                        };
                        format!("call #{} `{}`: {why} ({rules})", o.index, o.tool)
                    })
                })
                .collect();
            if problems.is_empty() {
                passed += 1;
                println!("ok    {name}");
            } else {
                failed += 1;
                println!("FAIL  {name}");
                for p in problems {
                    println!("      {p}");
                }
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    Ok(failed)
}
