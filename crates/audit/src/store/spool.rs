//! The spool: batched records kept on local disk, in order, while a
//! PostgreSQL log is unreachable. One canonical record per line, synced
//! before the writer moves on, so a crash of the gateway loses nothing the
//! spool took; the next writer replays it first.

use std::fs::{File, OpenOptions};
use std::io::{BufRead as _, BufReader, Seek as _, Write as _};
use std::path::{Path, PathBuf};

use super::AuditError;
use crate::record::Record;

pub(crate) struct Spool {
    path: PathBuf,
    file: File,
    len: u64,
}

impl Spool {
    /// Opens (or creates) the spool and counts what an earlier run left.
    pub(crate) fn open(path: &Path) -> Result<Spool, AuditError> {
        let err = |e: std::io::Error| AuditError::Db {
            path: path.display().to_string(),
            message: format!("cannot open the audit spool: {e}"),
        };
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)
            .map_err(err)?;
        let mut spool = Spool {
            path: path.to_path_buf(),
            file,
            len: 0,
        };
        spool.cut_torn_line().map_err(err)?;
        spool.len = spool.read().map_err(err)?.len() as u64;
        Ok(spool)
    }

    /// A crash in the middle of a write leaves a line without its newline;
    /// the next record appended would join it and be lost with it.
    fn cut_torn_line(&mut self) -> std::io::Result<()> {
        let bytes = std::fs::read(&self.path)?;
        if bytes.last().is_none_or(|b| *b == b'\n') {
            return Ok(());
        }
        let keep = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        eprintln!(
            "castellan-audit: spool {} ends in a torn line (a crash while writing it); dropped",
            self.path.display()
        );
        self.file.set_len(keep as u64)?;
        self.file.sync_all()
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Records waiting.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Appends `records` in order and syncs them to disk.
    pub(crate) fn push(&mut self, records: &[Box<Record>]) -> std::io::Result<()> {
        let mut buf = Vec::with_capacity(records.len() * 1024);
        for r in records {
            buf.extend_from_slice(&r.canonical());
            buf.push(b'\n');
        }
        // One write, so a crash leaves at most a torn last line.
        self.file.write_all(&buf)?;
        self.file.sync_data()?;
        self.len += records.len() as u64;
        Ok(())
    }

    /// Every record waiting, oldest first. A torn last line (a crash while
    /// writing it) is skipped with a message: its record was never
    /// acknowledged as spooled.
    pub(crate) fn read(&mut self) -> std::io::Result<Vec<Record>> {
        self.file.rewind()?;
        let mut out = Vec::new();
        for (n, line) in BufReader::new(&self.file).lines().enumerate() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Record>(&line) {
                Ok(r) => out.push(r),
                Err(e) => eprintln!(
                    "castellan-audit: spool {} line {} is not a record ({e}); skipped",
                    self.path.display(),
                    n + 1
                ),
            }
        }
        Ok(out)
    }

    /// Empties the spool once its records are in the store.
    pub(crate) fn clear(&mut self) -> std::io::Result<()> {
        self.file.set_len(0)?;
        self.file.sync_all()?;
        self.len = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(i: u64) -> Box<Record> {
        Box::new(Record {
            id: format!("d-{i}"),
            at_ms: i,
            agent: "a".into(),
            user: None,
            session: "s".into(),
            upstream: "u".into(),
            method: "tools/call".into(),
            target: "t".into(),
            args_digest: "00".into(),
            args_redacted: serde_json::json!({"k": "line\nbreak"}),
            decision: "allow".into(),
            rules: vec![],
            reason: "r".into(),
            facts: serde_json::json!({}),
            risk_before: 0,
            risk_after: 0,
            latency_us: 0,
        })
    }

    #[test]
    fn records_survive_a_restart_in_order_and_a_torn_line_is_skipped() {
        let dir = std::env::temp_dir().join(format!("castellan-spool-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("audit.spool");
        let mut s = Spool::open(&path).expect("open");
        s.push(&[record(1), record(2)]).expect("push");
        s.push(&[record(3)]).expect("push");
        drop(s);
        // A crash in the middle of a write.
        let mut f = OpenOptions::new().append(true).open(&path).expect("f");
        f.write_all(b"{\"id\":\"d-4\",\"at_").expect("torn");
        drop(f);
        let mut s = Spool::open(&path).expect("reopen");
        assert_eq!(s.len(), 3);
        s.push(&[record(5)]).expect("push after the torn line");
        let ids: Vec<String> = s.read().expect("read").into_iter().map(|r| r.id).collect();
        assert_eq!(ids, ["d-1", "d-2", "d-3", "d-5"]);
        s.clear().expect("clear");
        assert_eq!(Spool::open(&path).expect("again").len(), 0);
    }
}
