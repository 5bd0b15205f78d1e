//! The writer thread: gathers records into batches, commits them, signs
//! checkpoints, prunes, and keeps batched records in the spool while the
//! store is unreachable.

use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::time::{Duration, Instant};

use super::spool::Spool;
use super::{AuditError, Backend, Msg, Pending, Stats, WriterConfig};
use crate::record::Record;
use crate::sign::{SignedHead, SigningKey};

/// First wait before trying an unreachable store again; doubles up to
/// [`MAX_BACKOFF`].
pub(crate) const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

pub(crate) struct WriteLoop<'a> {
    pub(crate) backend: Box<dyn Backend>,
    /// The store, as messages name it.
    pub(crate) name: String,
    pub(crate) cfg: WriterConfig,
    pub(crate) stats: &'a Stats,
    pub(crate) spool: Option<Spool>,
    /// When to try the store again after it was unreachable.
    pub(crate) retry_at: Option<Instant>,
    pub(crate) backoff: Duration,
}

/// Records written since the last signed checkpoint, and since when.
#[derive(Default)]
struct Uncovered {
    count: u64,
    since: Option<Instant>,
}

impl WriteLoop<'_> {
    pub(crate) fn run(mut self, rx: Receiver<Msg>) {
        let mut batch: Vec<Pending> = Vec::with_capacity(self.cfg.max_batch);
        let mut flushes: Vec<SyncSender<()>> = Vec::new();
        let mut uncovered = Uncovered::default();
        let mut last_prune: Option<Instant> = None;
        loop {
            self.prune_if_due(&mut last_prune);
            if self.drain_spool_if_due() {
                self.sign_head(&mut uncovered);
            }
            // Wait for the first message, or until the uncovered records are
            // due a checkpoint or the spool is due another try; then gather
            // more until the batch is full or its first record has waited
            // long enough.
            let due = self
                .cfg
                .checkpoint
                .as_ref()
                .zip(uncovered.since)
                .map(|(c, t)| (t + c.interval).saturating_duration_since(Instant::now()));
            let retry = self
                .spooling()
                .then_some(self.retry_at)
                .flatten()
                .map(|t| t.saturating_duration_since(Instant::now()));
            let first = match due.into_iter().chain(retry).min() {
                None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                Some(wait) => rx.recv_timeout(wait),
            };
            let first = match first {
                Ok(m) => m,
                Err(RecvTimeoutError::Timeout) => {
                    if due.is_some_and(|d| d.is_zero() || retry.is_none_or(|r| d <= r)) {
                        self.sign_head(&mut uncovered);
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.retry_at = None;
                    self.drain_spool_if_due();
                    if uncovered.count > 0 {
                        self.sign_head(&mut uncovered);
                    }
                    return;
                }
            };
            let (closed, oldest) = self.gather(first, &rx, &mut batch, &mut flushes);
            let written = batch.len() as u64;
            // A checkpoint that is due goes into the batch's own transaction,
            // so an acknowledged record is never left unsigned by a crash.
            let checkpoint = self.cfg.checkpoint.clone();
            let key = checkpoint
                .as_ref()
                .filter(|c| uncovered.count + written >= c.every.max(1) || closed)
                .map(|c| &c.key);
            let signed = self.write(&mut batch, key);
            self.stats.queued.fetch_sub(written, Ordering::Relaxed);
            if let Some(t) = oldest {
                self.stats
                    .lag_us
                    .store(t.elapsed().as_micros() as u64, Ordering::Relaxed);
            }
            if signed {
                uncovered = Uncovered::default();
            } else if let Some(c) = &self.cfg.checkpoint {
                uncovered.count += written;
                if written > 0 && uncovered.since.is_none() {
                    uncovered.since = Some(Instant::now());
                }
                if uncovered.count >= c.every.max(1) || (closed && uncovered.count > 0) {
                    self.sign_head(&mut uncovered);
                }
            }
            for f in flushes.drain(..) {
                let _ = f.send(());
            }
            if closed {
                return;
            }
        }
    }

    /// Fills `batch` after its `first` message. Returns whether the log was
    /// closed meanwhile and when the oldest record was appended.
    fn gather(
        &self,
        first: Msg,
        rx: &Receiver<Msg>,
        batch: &mut Vec<Pending>,
        flushes: &mut Vec<SyncSender<()>>,
    ) -> (bool, Option<Instant>) {
        let started = Instant::now();
        let mut closed = false;
        let mut oldest: Option<Instant> = None;
        let mut push = |m: Msg, batch: &mut Vec<_>, flushes: &mut Vec<_>| match m {
            Msg::Append(r, ack, at) => {
                oldest = Some(oldest.map_or(at, |o: Instant| o.min(at)));
                batch.push((r, ack))
            }
            Msg::Flush(ack) => flushes.push(ack),
        };
        push(first, batch, flushes);
        let mut strict = batch.iter().any(|(_, ack)| ack.is_some());
        // Batched: let the window fill while asleep, then take what came.
        // Waiting in `recv_timeout` instead would have every record appended
        // during the window wake this thread (a futex call on the gateway's
        // side and on this one, per record).
        let slept = !strict && flushes.is_empty() && batch.len() < self.cfg.max_batch;
        if slept {
            std::thread::sleep(self.cfg.max_delay.saturating_sub(started.elapsed()));
        }
        while batch.len() < self.cfg.max_batch && flushes.is_empty() {
            // A strict caller is waiting: do not hold its record for company.
            // Group commit: take what is already queued and write it; records
            // that arrive during this commit's fsync form the next group.
            let next = if strict || slept {
                rx.try_recv().map_err(|e| match e {
                    mpsc::TryRecvError::Empty => RecvTimeoutError::Timeout,
                    mpsc::TryRecvError::Disconnected => RecvTimeoutError::Disconnected,
                })
            } else {
                rx.recv_timeout(self.cfg.max_delay.saturating_sub(started.elapsed()))
            };
            if let Ok(Msg::Append(_, Some(_), _)) = &next {
                strict = true;
            }
            match next {
                Ok(m) => push(m, batch, flushes),
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => {
                    closed = true;
                    break;
                }
            }
        }
        (closed, oldest)
    }

    /// Commits `batch` (emptying it) and answers its strict callers.
    /// Returns whether the batch's transaction signed a checkpoint.
    fn write(&mut self, batch: &mut Vec<Pending>, key: Option<&SigningKey>) -> bool {
        if batch.is_empty() {
            return false;
        }
        if self.spooling() {
            // Behind the records already waiting, so the chain keeps the
            // order the gateway decided in.
            self.spool_batch(batch);
            return false;
        }
        let records: Vec<&Record> = batch.iter().map(|(r, _)| &**r).collect();
        match self.backend.commit(&records, key, false) {
            Ok(head) => {
                self.reached();
                // Anchored before the strict callers are answered, so an
                // acknowledged checkpoint is outside the log too.
                self.anchor(head);
                for (_, ack) in batch.drain(..) {
                    if let Some(ack) = ack {
                        let _ = ack.send(Ok(()));
                    }
                }
                key.is_some()
            }
            Err(e) if e.is_unavailable() => {
                self.unreached(&e);
                self.refuse_or_spool(batch, &e);
                false
            }
            Err(e) => {
                // One bad record must not lose the others: write them one by one.
                eprintln!(
                    "castellan-audit: batch write to {} failed ({e}); retrying record by record",
                    self.name
                );
                let mut pending = std::mem::take(batch).into_iter();
                while let Some((record, ack)) = pending.next() {
                    if self.spooling() {
                        let mut rest = vec![(record, ack)];
                        rest.extend(pending.by_ref());
                        self.spool_batch(&mut rest);
                        break;
                    }
                    let result = self.backend.commit(&[&*record], None, false).map(|_| ());
                    match result {
                        Err(e) if e.is_unavailable() => {
                            self.unreached(&e);
                            let mut rest = vec![(record, ack)];
                            rest.extend(pending.by_ref());
                            self.refuse_or_spool(&mut rest, &e);
                            break;
                        }
                        result => {
                            if let Err(e) = &result {
                                eprintln!("castellan-audit: record {} not written: {e}", record.id);
                            }
                            if let Some(ack) = ack {
                                let _ = ack.send(result);
                            }
                        }
                    }
                }
                false
            }
        }
    }

    /// The store is unreachable: strict callers get the error (the gateway
    /// refuses their calls); batched records wait in the spool, or are lost
    /// with a message when no spool is configured.
    fn refuse_or_spool(&mut self, batch: &mut Vec<Pending>, e: &AuditError) {
        if self.spool.is_some() && batch.iter().all(|(_, ack)| ack.is_none()) {
            self.spool_batch(batch);
            return;
        }
        for (record, ack) in batch.drain(..) {
            match ack {
                Some(ack) => {
                    let _ = ack.send(Err(e.clone()));
                }
                None => eprintln!(
                    "castellan-audit: record {} lost: {e} and no spool is configured",
                    record.id
                ),
            }
        }
    }

    fn spool_batch(&mut self, batch: &mut Vec<Pending>) {
        let records: Vec<Box<Record>> = batch.drain(..).map(|(r, _)| r).collect();
        let Some(spool) = &mut self.spool else {
            return;
        };
        match spool.push(&records) {
            Ok(()) => self.stats.spooled.store(spool.len(), Ordering::Relaxed),
            Err(e) => eprintln!(
                "castellan-audit: {} records lost: the spool {} failed: {e}",
                records.len(),
                spool.path().display()
            ),
        }
    }

    fn spooling(&self) -> bool {
        self.spool.as_ref().is_some_and(|s| s.len() > 0)
    }

    /// Replays the spool into the store once its retry time has come.
    /// Returns whether records were replayed.
    fn drain_spool_if_due(&mut self) -> bool {
        if !self.spooling() || self.retry_at.is_some_and(|t| Instant::now() < t) {
            return false;
        }
        let Some(spool) = &mut self.spool else {
            return false;
        };
        let records = match spool.read() {
            Ok(r) => r,
            Err(e) => {
                eprintln!(
                    "castellan-audit: cannot read the spool {}: {e}",
                    spool.path().display()
                );
                self.retry_later();
                return false;
            }
        };
        let total = records.len();
        for chunk in records.chunks(self.cfg.max_batch.max(1)) {
            let refs: Vec<&Record> = chunk.iter().collect();
            if let Err(e) = self.backend.commit(&refs, None, true) {
                if e.is_unavailable() {
                    self.unreached(&e);
                    return false;
                }
                // A record the store refuses (not one it already holds):
                // the rest go in one by one, the refused one is named.
                for r in refs {
                    match self.backend.commit(&[r], None, true) {
                        Err(e) if e.is_unavailable() => {
                            self.unreached(&e);
                            return false;
                        }
                        Err(e) => {
                            eprintln!("castellan-audit: spooled record {} not written: {e}", r.id)
                        }
                        Ok(_) => {}
                    }
                }
            }
        }
        let Some(spool) = &mut self.spool else {
            return false;
        };
        if let Err(e) = spool.clear() {
            // Replaying it again later writes nothing twice (ids are
            // checked), so this costs time, not correctness.
            eprintln!(
                "castellan-audit: cannot empty the spool {}: {e}",
                spool.path().display()
            );
        }
        self.stats.spooled.store(spool.len(), Ordering::Relaxed);
        eprintln!(
            "castellan-audit: {} reached again; {total} spooled records written in order",
            self.name
        );
        self.reached();
        true
    }

    fn unreached(&mut self, e: &AuditError) {
        if !self.stats.down.swap(true, Ordering::Relaxed) {
            eprintln!(
                "castellan-audit: {e}; {}",
                match &self.spool {
                    Some(s) => format!(
                        "batched records wait in {} until it returns",
                        s.path().display()
                    ),
                    None => "records are refused until it returns".into(),
                }
            );
        }
        self.retry_later();
    }

    fn retry_later(&mut self) {
        self.retry_at = Some(Instant::now() + self.backoff);
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }

    fn reached(&mut self) {
        self.stats.down.store(false, Ordering::Relaxed);
        self.backoff = MIN_BACKOFF;
        self.retry_at = None;
    }

    fn anchor(&self, head: Option<SignedHead>) {
        if let (Some(file), Some(head)) = (&self.cfg.anchor, head)
            && let Err(e) = crate::anchor::append(file, &head)
        {
            eprintln!(
                "castellan-audit: checkpoint of record {} not appended to the anchor {}: {e}",
                head.seq,
                file.display()
            );
        }
    }

    fn sign_head(&mut self, uncovered: &mut Uncovered) {
        let Some(c) = self.cfg.checkpoint.clone() else {
            return;
        };
        match self.backend.checkpoint(&c.key) {
            Ok(head) => self.anchor(head),
            Err(e) => eprintln!(
                "castellan-audit: checkpoint not written to {}: {e}",
                self.name
            ),
        }
        *uncovered = Uncovered::default();
    }

    fn prune_if_due(&mut self, last_prune: &mut Option<Instant>) {
        let retain = &self.cfg.retention;
        if (retain.max_age.is_none() && retain.max_records.is_none())
            || last_prune.is_some_and(|t| t.elapsed() < self.cfg.prune_every)
        {
            return;
        }
        *last_prune = Some(Instant::now());
        let key = self.cfg.checkpoint.as_ref().map(|c| &c.key);
        match self.backend.prune(retain, key) {
            Ok(0) => {}
            Ok(n) => eprintln!(
                "castellan-audit: retention removed {n} records from {}",
                self.name
            ),
            Err(e) if e.is_unavailable() => {}
            Err(e) => eprintln!("castellan-audit: retention failed on {}: {e}", self.name),
        }
    }
}
