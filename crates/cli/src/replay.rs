//! `castellan replay`: recorded sessions judged offline exactly as the
//! live gateway would.

use std::path::PathBuf;

use anyhow::Context;

/// The `judge` section of a configuration file, or of the builtin one.
pub(crate) fn judge_config(
    config: Option<&std::path::Path>,
) -> anyhow::Result<castellan_config::JudgeConfig> {
    Ok(match config {
        Some(path) => castellan_config::load_judge_file(path)?,
        None => {
            castellan_config::load("<default>", castellan_config::DEFAULT_YAML, &|k| {
                std::env::var(k).ok()
            })?
            .judge
        }
    })
}

pub(crate) fn replay(config: Option<&std::path::Path>, traces: &[PathBuf]) -> anyhow::Result<()> {
    use std::io::{BufRead, Write as _};
    let judge_cfg = judge_config(config)?;
    let (judge, _) =
        castellan_gateway::behaviour::compile_judge(&judge_cfg).map_err(anyhow::Error::msg)?;
    let mut replayer = castellan_judge::Replayer::new(&judge);
    let mut summary = castellan_judge::Summary::default();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let inputs: Vec<Option<&PathBuf>> = if traces.is_empty() {
        vec![None]
    } else {
        traces.iter().map(Some).collect()
    };
    for input in inputs {
        let (name, reader): (String, Box<dyn BufRead>) = match input {
            Some(p) if p.as_os_str() != "-" => (
                p.display().to_string(),
                Box::new(std::io::BufReader::new(
                    std::fs::File::open(p)
                        .with_context(|| format!("{}: cannot open", p.display()))?,
                )),
            ),
            _ => (
                "<stdin>".into(),
                Box::new(std::io::BufReader::new(std::io::stdin())),
            ),
        };
        for (n, line) in reader.lines().enumerate() {
            let line = line.with_context(|| format!("{name}: cannot read"))?;
            if line.trim().is_empty() {
                continue;
            }
            let trace: castellan_judge::TraceSession = serde_json::from_str(&line)
                .map_err(|e| anyhow::anyhow!("{name}:{}: not a trace session: {e}", n + 1))?;
            let outcomes = replayer.session(&trace);
            for o in &outcomes {
                writeln!(out, "{}", serde_json::to_string(o)?)?;
            }
            summary.add(&trace, &outcomes);
        }
    }
    out.flush()?;
    eprintln!("{summary}");
    Ok(())
}
