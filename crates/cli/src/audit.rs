//! `castellan audit keygen|verify` and the audit writer's settings.

use std::path::{Path, PathBuf};

use crate::AuditCommand;

/// `castellan audit keygen|verify|query`.
pub(crate) fn run(command: AuditCommand) -> anyhow::Result<()> {
    match command {
        AuditCommand::Keygen { file } => keygen(&file),
        AuditCommand::Verify {
            log,
            public_key,
            anchor,
        } => verify(
            &castellan_audit::Location::parse(&log),
            public_key.as_deref(),
            anchor.as_deref(),
        ),
        AuditCommand::Query { log, query } => {
            let log = castellan_audit::Location::parse(&log);
            ensure_exists(&log)?;
            crate::audit_query::run(&log, query)
        }
    }
}

/// Makes an Ed25519 key pair for signed checkpoints.
fn keygen(file: &Path) -> anyhow::Result<()> {
    let (private, public) = castellan_audit::SigningKey::generate()?;
    let pub_file = PathBuf::from(format!("{}.pub", file.display()));
    write_new(file, private.as_bytes(), 0o600)?;
    write_new(&pub_file, public.as_bytes(), 0o644)?;
    println!(
        "private key: {} (set audit.signing_key)\npublic key:  {} (for castellan audit verify --public-key)",
        file.display(),
        pub_file.display()
    );
    Ok(())
}

/// Walks the hash chain (and the signed checkpoints and anchor, when
/// given) and says whether the log is intact.
fn verify(
    log: &castellan_audit::Location,
    public_key: Option<&Path>,
    anchor: Option<&Path>,
) -> anyhow::Result<()> {
    ensure_exists(log)?;
    let key = public_key
        .map(castellan_audit::PublicKey::from_file)
        .transpose()?;
    let report = castellan_audit::verify_with(log, key.as_ref())?;
    if matches!(
        report.verification,
        castellan_audit::Verification::Intact { .. }
    ) {
        verify_anchor(log, anchor, key.as_ref())?;
    }
    let anchor = report
        .anchor
        .map(|a| format!(", from retention anchor {a}"))
        .unwrap_or_default();
    match report.verification {
        castellan_audit::Verification::Intact { records } if key.is_some() => {
            if records > 0 && report.checkpoints == 0 {
                eprintln!(
                    "castellan: {}: no signed checkpoint; nothing vouches for these {records} records",
                    log
                );
                std::process::exit(1);
            }
            println!(
                "{}: intact ({records} records{anchor}; {} signed checkpoints verified, last at record {}; {} records after it not yet signed)",
                log,
                report.checkpoints,
                report.last_checkpoint.unwrap_or(0),
                report.unsigned_tail
            );
            Ok(())
        }
        castellan_audit::Verification::Intact { records } => {
            println!("{}: intact ({records} records{anchor})", log);
            Ok(())
        }
        castellan_audit::Verification::Broken { seq, id, reason } => {
            eprintln!(
                "castellan: {}: chain broken at record {seq} (id `{id}`): {reason}",
                log
            );
            std::process::exit(1);
        }
    }
}

/// A file that is not there is a typo, not an empty log (SQLite would
/// create it); a database is asked when it is read.
pub(crate) fn ensure_exists(log: &castellan_audit::Location) -> anyhow::Result<()> {
    if let Some(path) = log.file()
        && !path.exists()
    {
        anyhow::bail!("{}: no such audit log", path.display());
    }
    Ok(())
}

/// Checks the log against its anchor (the one given, or the default one
/// beside it when it exists) and prints what the anchor proves; exits 1
/// when the log no longer holds what the anchor vouches for.
pub(crate) fn verify_anchor(
    log: &castellan_audit::Location,
    anchor: Option<&std::path::Path>,
    key: Option<&castellan_audit::PublicKey>,
) -> anyhow::Result<()> {
    // A fleet's replicas each keep their own anchor: it must be named.
    let beside = log.file().map(|path| {
        PathBuf::from(castellan_config::beside_audit_log(
            &path.display().to_string(),
            "anchor",
        ))
    });
    let anchor = match (anchor, beside) {
        (Some(a), _) => a.to_path_buf(),
        (None, Some(beside)) if beside.exists() => beside,
        (None, _) => return Ok(()),
    };
    let r = castellan_audit::verify_anchor(log, &anchor, key)?;
    match r.verification {
        castellan_audit::Verification::Intact { records } => {
            println!(
                "{}: anchor {} proves {records} records (up to record {}; {} signed heads{})",
                log,
                anchor.display(),
                r.last_anchored.unwrap_or(0),
                r.heads,
                if r.unreadable > 0 {
                    format!(", {} unreadable lines skipped", r.unreadable)
                } else {
                    String::new()
                }
            );
            Ok(())
        }
        castellan_audit::Verification::Broken { seq, reason, .. } => {
            eprintln!(
                "castellan: {}: does not match the anchor {} at record {seq}: {reason}",
                log,
                anchor.display()
            );
            std::process::exit(1);
        }
    }
}

pub(crate) use castellan_gateway::runtime::{audit_writer_config, write_new};
