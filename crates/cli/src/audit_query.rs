//! `castellan audit query` for people and for scripts: times as RFC 3339
//! dates or durations, tools as agents see them, decisions checked against
//! the ones the gateway writes, and a table beside JSON Lines.

use std::io::Write as _;

use clap::ValueEnum;

/// The decisions the gateway writes in audit records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Decision {
    /// The call went upstream.
    Allow,
    /// It went upstream with values masked.
    Redact,
    /// It waited for an operator.
    Hold,
    /// It was refused for now (a burst).
    Throttle,
    /// It was refused.
    Deny,
    /// The agent is (or was then) quarantined.
    Quarantine,
    /// An operator released a quarantined agent.
    Release,
    /// An answer was kept from the agent.
    #[value(name = "result_block")]
    ResultBlock,
    /// An answer reached the agent with values masked.
    #[value(name = "result_redact")]
    ResultRedact,
    /// An answer labelled the session (private data, injection signals).
    #[value(name = "result_label")]
    ResultLabel,
}

impl Decision {
    fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Redact => "redact",
            Decision::Hold => "hold",
            Decision::Throttle => "throttle",
            Decision::Deny => "deny",
            Decision::Quarantine => "quarantine",
            Decision::Release => "release",
            Decision::ResultBlock => "result_block",
            Decision::ResultRedact => "result_redact",
            Decision::ResultLabel => "result_label",
        }
    }
}

/// How records are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One aligned line per record: time, decision, agent, session, tool,
    /// risk, rules and reason.
    Table,
    /// JSON Lines: every field of every record (with its `seq`).
    Json,
}

/// A point in time given on the command line, as epoch milliseconds:
/// an RFC 3339 time (`2026-12-06T09:30:00Z`, `…+01:00`), a date
/// (`2026-12-06`: midnight UTC), a duration before now (`90m`, `1h`,
/// `2d`, `30s`) or epoch milliseconds (`1796586563620`).
pub fn parse_time(s: &str) -> Result<u64, String> {
    parse_time_at(s, now_ms())
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn parse_time_at(s: &str, now: u64) -> Result<u64, String> {
    let s = s.trim();
    let expected = "expected an RFC 3339 time (2026-12-06T09:30:00Z), a date (2026-12-06), \
                    a duration before now (90m, 1h, 2d) or epoch milliseconds";
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s
            .parse()
            .map_err(|_| format!("`{s}`: too large for epoch milliseconds"));
    }
    let looks_like_date = s.len() >= 10 && s.as_bytes()[4] == b'-' && s.as_bytes()[7] == b'-';
    if looks_like_date {
        let full = if s.len() == 10 {
            format!("{s}T00:00:00Z")
        } else {
            s.to_owned()
        };
        let ms = castellan_judge::replay::parse_rfc3339(&full)
            .ok_or_else(|| format!("`{s}`: {expected}"))?;
        // The parser accepts day 31 of any month; a date that does not
        // come back as written (2026-02-31) does not exist.
        let date = &s[..10];
        let day = castellan_judge::replay::parse_rfc3339(&format!("{date}T00:00:00Z"))
            .map(|d| d.rfc3339().to_string());
        if !day.is_some_and(|d| d.starts_with(date)) {
            return Err(format!("`{s}`: no such date"));
        }
        return Ok(ms.0);
    }
    match s.parse::<castellan_config::Duration>() {
        Ok(d) => Ok(now.saturating_sub(u64::try_from(d.0.as_millis()).unwrap_or(u64::MAX))),
        Err(_) => Err(format!("`{s}`: {expected}")),
    }
}

/// The query as given on the command line (its filters and format).
#[derive(clap::Args)]
pub struct Filters {
    /// Only this agent.
    #[arg(long)]
    agent: Option<String>,
    /// Only this session (its name, e.g. `rolling`, with --agent; else
    /// `agent/session`).
    #[arg(long)]
    session: Option<String>,
    /// Only this tool, prompt or resource: as the agent sees it
    /// (`mail__send_email`) or as its upstream names it (`send_email`).
    #[arg(long)]
    tool: Option<String>,
    /// Only this decision.
    #[arg(long, value_enum)]
    decision: Option<Decision>,
    /// From this time: RFC 3339 (`2026-12-06T09:30:00Z`), a date
    /// (`2026-12-06`, midnight UTC), a duration before now (`1h`, `90m`,
    /// `2d`) or epoch milliseconds.
    #[arg(long, value_parser = parse_time)]
    since: Option<u64>,
    /// Before this time (same forms as --since).
    #[arg(long, value_parser = parse_time)]
    until: Option<u64>,
    /// Only the newest N.
    #[arg(long)]
    limit: Option<u64>,
    /// Output format [default: table when stdout is a terminal, json (JSON
    /// Lines) otherwise].
    #[arg(long, value_enum)]
    format: Option<Format>,
}

/// Prints the records `q` selects from the audit log `file`.
pub fn run(log: &castellan_audit::Location, q: Filters) -> anyhow::Result<()> {
    // `mail__send_email` (what the agent called) is upstream `mail`'s
    // `send_email`; a name without the separator is the upstream's own.
    let (upstream, target) = match q.tool {
        Some(t) => match t.split_once(castellan_gateway::federation::SEPARATOR) {
            Some((u, name)) if !u.is_empty() && !name.is_empty() => {
                (Some(u.to_owned()), Some(name.to_owned()))
            }
            _ => (None, Some(t)),
        },
        None => (None, None),
    };
    // A session is stored under its agent (`agent/session`): with an
    // agent given, the session's own name is enough.
    let session = match (&q.agent, q.session) {
        (Some(a), Some(s)) if !s.starts_with(&format!("{a}/")) => Some(format!("{a}/{s}")),
        (_, s) => s,
    };
    let filter = castellan_audit::Filter {
        agent: q.agent,
        session,
        target,
        upstream,
        decision: q.decision.map(|d| d.as_str().to_owned()),
        since_ms: q.since,
        until_ms: q.until,
        limit: q.limit,
    };
    // People read a table; pipes, files and scripts get every field.
    let format = q
        .format
        .unwrap_or(if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
            Format::Table
        } else {
            Format::Json
        });
    let records = castellan_audit::query(log, &filter)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    match format {
        Format::Json => {
            for s in &records {
                let mut line = serde_json::to_value(&s.record)?;
                line["seq"] = serde_json::json!(s.seq);
                if writeln!(out, "{line}").is_err() {
                    break;
                }
            }
        }
        Format::Table => {
            let rows: Vec<[String; 8]> = records.iter().map(row).collect();
            let _ = write_table(&mut out, &rows);
        }
    }
    let _ = out.flush();
    Ok(())
}

const HEADER: [&str; 8] = [
    "SEQ", "TIME", "DECISION", "AGENT", "SESSION", "TOOL", "RISK", "REASON",
];

fn row(s: &castellan_audit::Stored) -> [String; 8] {
    let r = &s.record;
    let session = r
        .session
        .strip_prefix(&format!("{}/", r.agent))
        .unwrap_or(&r.session);
    let tool = match (r.upstream.is_empty(), r.target.is_empty()) {
        (_, true) => r.method.clone(),
        (true, false) => r.target.clone(),
        (false, false) => format!(
            "{}{}{}",
            r.upstream,
            castellan_gateway::federation::SEPARATOR,
            r.target
        ),
    };
    let mut time = castellan_judge::Millis(r.at_ms).rfc3339().to_string();
    // Seconds are enough to read; JSON keeps the milliseconds.
    time.replace_range(19..time.len() - 1, "");
    let reason = if r.rules.is_empty() {
        r.reason.clone()
    } else {
        format!("{} [{}]", r.reason, r.rules.join(", "))
    };
    [
        s.seq.to_string(),
        time,
        r.decision.clone(),
        r.agent.clone(),
        session.to_owned(),
        tool,
        format!("{}→{}", r.risk_before, r.risk_after),
        reason,
    ]
}

/// Columns padded to their widest cell; the reason, last, runs on.
fn write_table(out: &mut impl std::io::Write, rows: &[[String; 8]]) -> std::io::Result<()> {
    let mut widths = HEADER.map(|h| h.chars().count());
    for r in rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |out: &mut dyn std::io::Write, cells: [&str; 8]| -> std::io::Result<()> {
        let mut text = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i == cells.len() - 1 {
                text.push_str(cell);
            } else {
                text.push_str(cell);
                text.extend(std::iter::repeat_n(' ', w - cell.chars().count() + 2));
            }
        }
        writeln!(out, "{}", text.trim_end())
    };
    line(out, HEADER)?;
    for r in rows {
        line(out, r.each_ref().map(String::as_str))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_796_586_563_620;

    #[test]
    fn times_are_read_as_people_write_them() {
        assert_eq!(parse_time_at("2026-12-06", NOW), Ok(1_796_515_200_000));
        assert_eq!(
            parse_time_at("2026-12-06T01:00:00+01:00", NOW),
            Ok(1_796_515_200_000)
        );
        assert_eq!(
            parse_time_at("2026-12-06T00:00:00.250Z", NOW),
            Ok(1_796_515_200_250)
        );
        assert_eq!(parse_time_at("1h", NOW), Ok(NOW - 3_600_000));
        assert_eq!(parse_time_at("90m", NOW), Ok(NOW - 5_400_000));
        assert_eq!(parse_time_at("2d", NOW), Ok(NOW - 172_800_000));
        assert_eq!(parse_time_at("1796586563620", NOW), Ok(NOW));
        for bad in ["yesterday", "2026-02-31", "2026-13-01", "1 fortnight", ""] {
            assert!(parse_time_at(bad, NOW).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_table_aligns_columns_and_shows_the_tool_as_agents_see_it() {
        let rec = castellan_audit::Record {
            id: "x".into(),
            at_ms: 1_796_515_200_250,
            agent: "local-agent".into(),
            user: None,
            session: "local-agent/rolling".into(),
            upstream: "mail".into(),
            method: "tools/call".into(),
            target: "send_email".into(),
            args_digest: String::new(),
            args_redacted: serde_json::Value::Null,
            decision: "deny".into(),
            rules: vec!["injected-destination".into()],
            reason: "the recipient came from injected content".into(),
            facts: serde_json::Value::Null,
            risk_before: 15,
            risk_after: 75,
            latency_us: 1,
        };
        let stored = castellan_audit::Stored {
            seq: 7,
            record: rec,
        };
        let mut out = Vec::new();
        write_table(&mut out, &[row(&stored)]).expect("write");
        let text = String::from_utf8(out).expect("utf-8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].starts_with("SEQ  TIME"), "{text}");
        assert!(
            lines[1].starts_with("7    2026-12-06T00:00:00Z  deny      local-agent  rolling  mail__send_email  15→75  the recipient came from injected content [injected-destination]"),
            "{text}"
        );
    }
}
