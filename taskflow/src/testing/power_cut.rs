//! Power loss, simulated: a redb backend in memory that records every write, resize and sync,
//! and builds the images a disk could hold after a power cut at any sync boundary.
//!
//! A cut after sync `k` keeps everything written before that sync returned (the disk promised
//! it) and some of what was written after it and before the next sync (in flight when the
//! power went): none of it, all of it, a prefix, a later part without an earlier one
//! (reordered), a random choice, a write torn at a page boundary, a random choice of pages,
//! or pages past the old end of the file that read back as zeros. redb's own
//! `crash_consistency` tests work this way; this one records a whole taskflow workload.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use redb::StorageBackend;

/// The unit a disk writes atomically in these images.
pub const PAGE: u64 = 4096;

#[derive(Clone)]
enum Op {
    Write { offset: u64, data: Arc<[u8]> },
    SetLen(u64),
    Sync,
}

#[derive(Default)]
struct Recorded {
    /// What reads see: every write so far, synced or not (the page cache).
    current: Vec<u8>,
    /// The durable file recording started from.
    initial: Vec<u8>,
    ops: Vec<Op>,
    syncs: u64,
    recording: bool,
}

/// A redb storage backend in memory that records what it is asked to do; give it to
/// [`TaskFlowBuilder::storage_backend`](crate::TaskFlowBuilder::storage_backend).
#[derive(Clone)]
pub struct PowerCutBackend(Arc<Mutex<Recorded>>);

impl fmt::Debug for PowerCutBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self.lock();
        f.debug_struct("PowerCutBackend")
            .field("len", &r.current.len())
            .field("ops", &r.ops.len())
            .field("syncs", &r.syncs)
            .finish()
    }
}

impl PowerCutBackend {
    /// An empty file that records every operation.
    #[must_use]
    pub fn recording() -> Self {
        Self(Arc::new(Mutex::new(Recorded {
            recording: true,
            ..Recorded::default()
        })))
    }

    /// A file holding `image`, durable, that records every later operation: a workload on a
    /// file that exists already (take the image of a finished backend with
    /// [`image`](Self::image)).
    #[must_use]
    pub fn recording_from(image: Vec<u8>) -> Self {
        Self(Arc::new(Mutex::new(Recorded {
            current: image.clone(),
            initial: image,
            recording: true,
            ..Recorded::default()
        })))
    }

    /// The file as reads see it now.
    #[must_use]
    pub fn image(&self) -> Vec<u8> {
        self.lock().current.clone()
    }

    /// A file holding `image` (one a [`CrashPoint`] built), recording nothing: what a
    /// restart after the power cut opens.
    #[must_use]
    pub fn from_image(image: Vec<u8>) -> Self {
        Self(Arc::new(Mutex::new(Recorded {
            current: image,
            ..Recorded::default()
        })))
    }

    /// `sync_data` calls completed so far. Read it where a write is acknowledged: a cut after
    /// that many syncs must keep the write.
    #[must_use]
    pub fn syncs(&self) -> u64 {
        self.lock().syncs
    }

    /// What was recorded so far.
    #[must_use]
    pub fn recording_so_far(&self) -> Recording {
        let r = self.lock();
        Recording {
            initial: r.initial.clone(),
            ops: r.ops.clone(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Recorded> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl StorageBackend for PowerCutBackend {
    fn len(&self) -> Result<u64, std::io::Error> {
        Ok(self.lock().current.len() as u64)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
        let r = self.lock();
        let start = usize::try_from(offset).map_err(std::io::Error::other)?;
        let bytes = start
            .checked_add(out.len())
            .and_then(|end| r.current.get(start..end))
            .ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "read past the end")
            })?;
        out.copy_from_slice(bytes);
        Ok(())
    }

    fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
        let mut r = self.lock();
        resize(&mut r.current, len);
        if r.recording {
            r.ops.push(Op::SetLen(len));
        }
        Ok(())
    }

    fn sync_data(&self) -> Result<(), std::io::Error> {
        let mut r = self.lock();
        if r.recording {
            r.ops.push(Op::Sync);
        }
        r.syncs += 1;
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
        let mut r = self.lock();
        write_at(&mut r.current, offset, data);
        if r.recording {
            r.ops.push(Op::Write {
                offset,
                data: data.into(),
            });
        }
        Ok(())
    }
}

fn resize(file: &mut Vec<u8>, len: u64) {
    file.resize(
        usize::try_from(len).expect("an in-memory file fits in memory"),
        0,
    );
}

fn write_at(file: &mut Vec<u8>, offset: u64, data: &[u8]) {
    let start = usize::try_from(offset).expect("an in-memory file fits in memory");
    let end = start + data.len();
    if file.len() < end {
        file.resize(end, 0);
    }
    file[start..end].copy_from_slice(data);
}

/// The operations a [`PowerCutBackend`] recorded, and the crash points between them.
#[derive(Clone)]
pub struct Recording {
    initial: Vec<u8>,
    ops: Vec<Op>,
}

impl fmt::Debug for Recording {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recording")
            .field("ops", &self.ops.len())
            .field("syncs", &self.syncs())
            .finish()
    }
}

impl Recording {
    /// Syncs recorded.
    #[must_use]
    pub fn syncs(&self) -> u64 {
        self.ops.iter().filter(|op| matches!(op, Op::Sync)).count() as u64
    }

    /// Every sync boundary in order: before the first sync, after each one (the last one holds
    /// what was written after the last sync).
    #[must_use]
    pub fn crash_points(&self) -> CrashPoints<'_> {
        CrashPoints {
            ops: &self.ops,
            next: 0,
            synced: 0,
            base: self.initial.clone(),
            done: false,
        }
    }
}

/// The iterator of [`Recording::crash_points`]; it builds each point's durable image from
/// the one before, so a sweep costs one pass over the recording.
#[derive(Debug)]
pub struct CrashPoints<'a> {
    ops: &'a [Op],
    next: usize,
    synced: u64,
    base: Vec<u8>,
    done: bool,
}

impl fmt::Debug for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Write { offset, data } => write!(f, "write({offset}, {} bytes)", data.len()),
            Op::SetLen(len) => write!(f, "set_len({len})"),
            Op::Sync => f.write_str("sync"),
        }
    }
}

impl<'a> Iterator for CrashPoints<'a> {
    type Item = CrashPoint<'a>;

    fn next(&mut self) -> Option<CrashPoint<'a>> {
        if self.done {
            return None;
        }
        let start = self.next;
        let end = self.ops[start..]
            .iter()
            .position(|op| matches!(op, Op::Sync))
            .map_or(self.ops.len(), |k| start + k);
        let point = CrashPoint {
            synced: self.synced,
            base: self.base.clone(),
            in_flight: &self.ops[start..end],
        };
        if end == self.ops.len() {
            self.done = true;
        } else {
            for op in &self.ops[start..end] {
                apply(&mut self.base, op, None);
            }
            self.next = end + 1;
            self.synced += 1;
        }
        Some(point)
    }
}

/// One sync boundary: what the disk holds for sure, and what was in flight.
pub struct CrashPoint<'a> {
    synced: u64,
    base: Vec<u8>,
    in_flight: &'a [Op],
}

impl fmt::Debug for CrashPoint<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CrashPoint")
            .field("synced", &self.synced)
            .field("durable_len", &self.base.len())
            .field("in_flight", &self.in_flight)
            .finish()
    }
}

/// How much of the in-flight operations a power cut let reach the disk. Seeds make the random
/// variants reproducible: a failure prints its cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Cut {
    /// None of it.
    NothingInFlight,
    /// All of it (the power went while the sync was running).
    AllInFlight,
    /// The first `n` operations, in order.
    Prefix(usize),
    /// Only the last `n` operations: later writes reached the disk, earlier ones did not.
    Reordered(usize),
    /// Each operation independently.
    Subset(u64),
    /// The first `ops` operations, then the first `pages` pages of the next write.
    TornWrite {
        /// Operations that reached the disk whole.
        ops: usize,
        /// Pages of the next write that did.
        pages: usize,
    },
    /// Each page of each write independently (resizes kept).
    Pages(u64),
    /// Resizes kept; pages written past the durable end read as zeros, pages inside it
    /// independently old or new.
    ZeroTail(u64),
}

impl CrashPoint<'_> {
    /// Syncs that completed before this point: every write acknowledged by then is durable.
    #[must_use]
    pub fn synced(&self) -> u64 {
        self.synced
    }

    /// Operations in flight at this point.
    #[must_use]
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Every deterministic cut of this point (nothing, all, each prefix, each reordered
    /// suffix, each torn page of each write, capped at `per_kind` each) and `per_kind` seeded
    /// cuts of each random kind, seeds starting at `seed`.
    #[must_use]
    pub fn cuts(&self, per_kind: usize, seed: u64) -> Vec<Cut> {
        let n = self.in_flight.len();
        let mut cuts = vec![Cut::NothingInFlight];
        if n == 0 {
            return cuts;
        }
        cuts.push(Cut::AllInFlight);
        cuts.extend((1..n).take(per_kind).map(Cut::Prefix));
        cuts.extend((1..n).take(per_kind).map(Cut::Reordered));
        let torn = self.in_flight.iter().enumerate().flat_map(|(k, op)| {
            let pages = match op {
                Op::Write { offset, data } => pages_of(*offset, data.len()).len(),
                _ => 0,
            };
            (1..pages).map(move |p| Cut::TornWrite { ops: k, pages: p })
        });
        cuts.extend(torn.take(per_kind));
        for s in 0..per_kind as u64 {
            cuts.push(Cut::Subset(seed + s));
            cuts.push(Cut::Pages(seed + s));
            cuts.push(Cut::ZeroTail(seed + s));
        }
        cuts
    }

    /// The file as the disk holds it after `cut`.
    #[must_use]
    pub fn image(&self, cut: Cut) -> Vec<u8> {
        let mut file = self.base.clone();
        let durable_len = file.len() as u64;
        let ops = self.in_flight;
        match cut {
            Cut::NothingInFlight => {}
            Cut::AllInFlight => ops.iter().for_each(|op| apply(&mut file, op, None)),
            Cut::Prefix(n) => ops.iter().take(n).for_each(|op| apply(&mut file, op, None)),
            Cut::Reordered(n) => ops
                .iter()
                .skip(ops.len().saturating_sub(n))
                .for_each(|op| apply(&mut file, op, None)),
            Cut::Subset(seed) => {
                let mut rng = SplitMix(seed);
                for op in ops {
                    if rng.coin() {
                        apply(&mut file, op, None);
                    }
                }
            }
            Cut::TornWrite { ops: whole, pages } => {
                ops.iter()
                    .take(whole)
                    .for_each(|op| apply(&mut file, op, None));
                if let Some(op) = ops.get(whole) {
                    apply(&mut file, op, Some(&mut |page| page < pages));
                }
            }
            Cut::Pages(seed) => {
                let mut rng = SplitMix(seed);
                for op in ops {
                    apply(&mut file, op, Some(&mut |_| rng.coin()));
                }
            }
            Cut::ZeroTail(seed) => {
                let mut rng = SplitMix(seed);
                for op in ops {
                    match op {
                        Op::Write { offset, data } => {
                            for (start, len) in pages_of(*offset, data.len()) {
                                let at = *offset + start as u64;
                                let bytes = &data[start..start + len];
                                if at >= durable_len {
                                    write_at(&mut file, at, &vec![0; len]);
                                } else if rng.coin() {
                                    write_at(&mut file, at, bytes);
                                }
                            }
                        }
                        other => apply(&mut file, other, None),
                    }
                }
            }
        }
        file
    }
}

/// Applies `op`; for a write, only the pages `keep` says (all without it).
fn apply(file: &mut Vec<u8>, op: &Op, keep: Option<&mut dyn FnMut(usize) -> bool>) {
    match op {
        Op::Write { offset, data } => match keep {
            None => write_at(file, *offset, data),
            Some(keep) => {
                for (k, (start, len)) in pages_of(*offset, data.len()).into_iter().enumerate() {
                    if keep(k) {
                        write_at(file, *offset + start as u64, &data[start..start + len]);
                    }
                }
            }
        },
        Op::SetLen(len) => resize(file, *len),
        Op::Sync => {}
    }
}

/// A write's pieces, split at page boundaries of the file: `(start in data, len)`.
fn pages_of(offset: u64, len: usize) -> Vec<(usize, usize)> {
    let mut pieces = Vec::new();
    let mut start = 0usize;
    while start < len {
        let at = offset + start as u64;
        let room = usize::try_from(PAGE - at % PAGE).expect("a page fits in usize");
        let piece = room.min(len - start);
        pieces.push((start, piece));
        start += piece;
    }
    pieces
}

/// splitmix64: a seeded coin, so every random cut can be replayed from its seed.
struct SplitMix(u64);

impl SplitMix {
    fn coin(&mut self) -> bool {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) & 1 == 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorded(ops: &[(&str, u64, usize)]) -> Recording {
        let b = PowerCutBackend::recording();
        for &(kind, offset, len) in ops {
            match kind {
                "w" => b.write(offset, &vec![1; len]).unwrap(),
                "l" => b.set_len(offset).unwrap(),
                _ => b.sync_data().unwrap(),
            }
        }
        b.recording_so_far()
    }

    #[test]
    fn a_cut_keeps_what_was_synced_and_chooses_among_what_was_in_flight() {
        let rec = recorded(&[("w", 0, 10), ("s", 0, 0), ("w", 4096, 8192), ("w", 20, 5)]);
        let points: Vec<_> = rec.crash_points().collect();
        assert_eq!(points.len(), 2);
        assert_eq!(points[0].image(Cut::NothingInFlight), Vec::<u8>::new());
        let after = &points[1];
        assert_eq!(after.synced(), 1);
        assert_eq!(after.image(Cut::NothingInFlight), vec![1; 10]);
        let all = after.image(Cut::AllInFlight);
        assert_eq!(all.len(), 4096 + 8192);
        assert_eq!(&all[20..25], &[1; 5]);
        let reordered = after.image(Cut::Reordered(1));
        assert_eq!(reordered.len(), 25, "the later small write only");
        let torn = after.image(Cut::TornWrite { ops: 0, pages: 1 });
        assert_eq!(torn.len(), 8192, "one page of the two");
        let zero = after.image(Cut::ZeroTail(7));
        assert!(zero[4096..].iter().all(|&b| b == 0), "past the durable end");
        assert!(
            after
                .cuts(4, 0)
                .contains(&Cut::TornWrite { ops: 0, pages: 1 })
        );
    }
}
