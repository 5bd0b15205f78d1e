//! `castellan check`: everything that can be known about a configuration
//! without serving agents, and one verdict. Static checks (the file, the
//! rules, the Cedar policy, the signing key, stdio commands on PATH, upstream
//! URLs) always run; checks that need the upstreams to answer (their tool
//! lists, and a policy that names tools or `context.args` against them)
//! run when the policy depends on them, otherwise they are named as not
//! done. Exit status: 0 with no error, 1 with any.

use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One finding of a check.
enum Finding {
    Ok(String),
    Error(String),
    /// Not checked, and why.
    Skipped(String),
}

/// Runs every check on `file`, prints one line per finding and a verdict;
/// returns the number of errors.
pub fn run(file: &Path) -> anyhow::Result<usize> {
    let name = file.display().to_string();
    let mut findings = Vec::new();
    match castellan_config::load_file(file) {
        Err(e) => findings.push(Finding::Error(e.to_string())),
        Ok(cfg) => check_config(&cfg, &mut findings)?,
    }
    // Findings and the verdict on stdout, errors (and a failed verdict) on
    // stderr, as every other command reports errors.
    let mut errors = 0;
    for f in &findings {
        match f {
            Finding::Ok(m) => println!("{name}: ok: {m}"),
            Finding::Error(m) => {
                errors += 1;
                eprintln!("ERROR {m}");
            }
            Finding::Skipped(m) => println!("{name}: not checked: {m}"),
        }
    }
    match errors {
        0 => println!("{name}: ok"),
        1 => eprintln!("{name}: 1 error"),
        n => eprintln!("{name}: {n} errors"),
    }
    Ok(errors)
}

fn check_config(cfg: &castellan_config::Config, findings: &mut Vec<Finding>) -> anyhow::Result<()> {
    findings.push(Finding::Ok(format!(
        "configuration ({} upstreams)",
        cfg.upstreams.len()
    )));
    match crate::audit::audit_writer_config(&cfg.audit, false) {
        Ok(_) => findings.push(Finding::Ok("audit settings (signing key, anchor)".into())),
        Err(e) => findings.push(Finding::Error(format!("audit: {e:#}"))),
    }
    if cfg.audit.postgres.is_some() {
        let log = castellan_gateway::runtime::audit_location(&cfg.audit);
        match castellan_audit::probe(&log) {
            Ok(()) => findings.push(Finding::Ok(format!("audit log {log} reachable"))),
            Err(e) => findings.push(Finding::Error(format!("audit: {e}"))),
        }
    }
    let judge = match castellan_gateway::behaviour::compile_judge(&cfg.judge) {
        Ok((judge, _)) => {
            findings.push(Finding::Ok(format!(
                "rules ({} rules) and policy compile",
                judge.rules().rules().len()
            )));
            Some(judge)
        }
        Err(e) => {
            findings.push(Finding::Error(e.to_string()));
            None
        }
    };
    for u in &cfg.upstreams {
        if let Some(f) = check_upstream(&cfg.origin, u) {
            findings.push(f);
        }
    }
    let live = "the upstreams' tool lists, tool pins and inferred labels need the upstreams to \
                answer: `castellan tools --config FILE` lists them";
    match judge {
        Some(j) if j.policy_needs_tools() => {
            // The policy names call arguments or tools: validate it against
            // the tools the upstreams list, as the running gateway will.
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))?;
            let (problem, silent) =
                runtime.block_on(crate::tools::policy_problem(Arc::new(cfg.clone())))?;
            match problem {
                Some(p) => findings.push(Finding::Error(p)),
                None => findings.push(Finding::Ok(
                    "the policy validates against the tools the upstreams list".into(),
                )),
            }
            if !silent.is_empty() {
                findings.push(Finding::Error(format!(
                    "upstreams listed no tools (unreachable, or empty): {}",
                    silent.join(", ")
                )));
            }
        }
        Some(_) => findings.push(Finding::Skipped(format!(
            "{live} (the policy does not depend on them)"
        ))),
        None => {}
    }
    Ok(())
}

/// A stdio upstream's command must exist; an HTTP upstream's URL must
/// parse with a host; an OpenAPI upstream's spec file must give its tools.
fn check_upstream(origin: &str, u: &castellan_config::Upstream) -> Option<Finding> {
    let at = |m: String| Finding::Error(format!("{origin}:{}: upstream `{}`: {m}", u.line, u.name));
    match &u.transport {
        castellan_config::Transport::Builtin(_) => None,
        castellan_config::Transport::OpenApi(o) => {
            castellan_gateway::upstream::openapi::OpenApiUpstream::load(&u.name, &u.prefix, o)
                .err()
                .map(|e| Finding::Error(format!("{origin}:{}: {e}", u.line)))
        }
        castellan_config::Transport::Http(h) => match reqwest::Url::parse(&h.url) {
            Ok(url) if url.host_str().is_some_and(|h| !h.is_empty()) => None,
            Ok(_) => Some(at(format!("url `{}` names no host", h.url))),
            Err(e) => Some(at(format!("url `{}` does not parse: {e}", h.url))),
        },
        castellan_config::Transport::Stdio(s) => {
            let cwd = s.cwd.as_deref().map(Path::new);
            (!command_exists(&s.command, cwd)).then(|| {
                at(format!(
                    "command `{}` not found{} (serve would retry starting it forever and agents would see none of its tools)",
                    s.command,
                    if s.command.contains('/') {
                        ""
                    } else {
                        " on PATH"
                    }
                ))
            })
        }
    }
}

/// Whether `command` names an executable file: a path (relative to `cwd`
/// when given) or a name found on `PATH`.
fn command_exists(command: &str, cwd: Option<&Path>) -> bool {
    if command.contains('/') {
        let p = PathBuf::from(command);
        let p = match cwd {
            Some(dir) if p.is_relative() => dir.join(p),
            _ => p,
        };
        return is_executable(&p);
    }
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|d| is_executable(&d.join(command))))
}

fn is_executable(p: &Path) -> bool {
    let Ok(meta) = std::fs::metadata(p) else {
        return false;
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        meta.is_file() && meta.permissions().mode() & 0o111 != 0
    }
    #[cfg(not(unix))]
    {
        meta.is_file()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_found_on_path_or_by_path() {
        assert!(command_exists("sh", None));
        assert!(command_exists("/bin/sh", None));
        assert!(!command_exists("castellan-no-such-command-7f3a", None));
        assert!(!command_exists("/nonexistent/sh", None));
        // A directory is not a command.
        assert!(!command_exists("/", None));
    }
}
