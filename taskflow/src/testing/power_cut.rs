//! Power loss, simulated: redb backends in memory, the files of one disk, that record every
//! write, resize and sync in one order, and build the images the disk could hold after a power
//! cut at any sync boundary.
//!
//! A cut after the disk's sync `k` keeps, of each file, everything written before that file's
//! own last sync up to then returned (the disk promised it) and some of what was written to it
//! after that sync (in flight when the power went): none of it, all of it, a prefix, a later
//! part without an earlier one (reordered), a random choice, a write torn at a page boundary,
//! a random choice of pages, or pages past the old end of the file that read back as zeros.
//! A sync of one file promises nothing of another: a file synced long ago keeps everything
//! written to it since in flight. redb's own `crash_consistency` tests work this way; this one
//! records a whole taskflow workload, on the database alone or on the database and the event
//! journal together.

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

/// One file of a disk.
#[derive(Default)]
struct FileState {
    /// What reads see: every write so far, synced or not (the page cache).
    current: Vec<u8>,
    /// The durable file recording started from.
    initial: Vec<u8>,
}

#[derive(Default)]
struct Disk {
    files: Vec<FileState>,
    /// Every file's operations, in the order they were asked for.
    ops: Vec<(FileId, Op)>,
    /// `sync_data` calls completed on any file.
    syncs: u64,
    recording: bool,
}

/// Which file of a disk: the one [`PowerCutBackend::file`] names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileId(usize);

/// A redb storage backend in memory that records what it is asked to do; give it to
/// [`TaskFlowBuilder::storage_backend`](crate::TaskFlowBuilder::storage_backend). Several
/// files can share one disk ([`another_file`](Self::another_file)), so a recording holds
/// the order of their operations.
#[derive(Clone)]
pub struct PowerCutBackend {
    disk: Arc<Mutex<Disk>>,
    file: FileId,
}

impl fmt::Debug for PowerCutBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.lock();
        f.debug_struct("PowerCutBackend")
            .field("file", &self.file.0)
            .field("len", &d.files[self.file.0].current.len())
            .field("ops", &d.ops.len())
            .field("syncs", &d.syncs)
            .finish()
    }
}

impl PowerCutBackend {
    /// An empty file that records every operation.
    #[must_use]
    pub fn recording() -> Self {
        Self::recording_from(Vec::new())
    }

    /// A file holding `image`, durable, that records every later operation: a workload on a
    /// file that exists already (take the image of a finished backend with
    /// [`image`](Self::image)).
    #[must_use]
    pub fn recording_from(image: Vec<u8>) -> Self {
        Self::on_new_disk(image, true)
    }

    /// A file holding `image` (one a [`CrashPoint`] built), recording nothing: what a
    /// restart after the power cut opens.
    #[must_use]
    pub fn from_image(image: Vec<u8>) -> Self {
        Self::on_new_disk(image, false)
    }

    fn on_new_disk(image: Vec<u8>, recording: bool) -> Self {
        let disk = Disk {
            files: vec![FileState {
                current: image.clone(),
                initial: image,
            }],
            recording,
            ..Disk::default()
        };
        Self {
            disk: Arc::new(Mutex::new(disk)),
            file: FileId(0),
        }
    }

    /// A second file on this one's disk holding `image`, durable (empty for a new file),
    /// recorded if this one is: the event journal beside the database.
    #[must_use]
    pub fn another_file(&self, image: Vec<u8>) -> Self {
        let mut d = self.lock();
        d.files.push(FileState {
            current: image.clone(),
            initial: image,
        });
        Self {
            disk: self.disk.clone(),
            file: FileId(d.files.len() - 1),
        }
    }

    /// Which file of its disk this is, for [`CrashPoint::image_of`].
    #[must_use]
    pub fn file(&self) -> FileId {
        self.file
    }

    /// The file as reads see it now.
    #[must_use]
    pub fn image(&self) -> Vec<u8> {
        self.lock().files[self.file.0].current.clone()
    }

    /// `sync_data` calls completed so far on any file of the disk. Read it where a write is
    /// acknowledged: a cut after that many syncs must keep the write.
    #[must_use]
    pub fn syncs(&self) -> u64 {
        self.lock().syncs
    }

    /// What was recorded so far, of every file of the disk.
    #[must_use]
    pub fn recording_so_far(&self) -> Recording {
        let d = self.lock();
        Recording {
            initial: d.files.iter().map(|f| f.initial.clone()).collect(),
            ops: d.ops.clone(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Disk> {
        self.disk.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Does `op` to this file: applies it to what reads see and records it.
    fn perform(&self, op: Op) {
        let mut d = self.lock();
        apply(&mut d.files[self.file.0].current, &op, None);
        if matches!(op, Op::Sync) {
            d.syncs += 1;
        }
        if d.recording {
            d.ops.push((self.file, op));
        }
    }
}

impl StorageBackend for PowerCutBackend {
    fn len(&self) -> Result<u64, std::io::Error> {
        Ok(self.lock().files[self.file.0].current.len() as u64)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
        let d = self.lock();
        let start = usize::try_from(offset).map_err(std::io::Error::other)?;
        let bytes = start
            .checked_add(out.len())
            .and_then(|end| d.files[self.file.0].current.get(start..end))
            .ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "read past the end")
            })?;
        out.copy_from_slice(bytes);
        Ok(())
    }

    fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
        self.perform(Op::SetLen(len));
        Ok(())
    }

    fn sync_data(&self) -> Result<(), std::io::Error> {
        self.perform(Op::Sync);
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
        self.perform(Op::Write {
            offset,
            data: data.into(),
        });
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

/// The operations the files of a [`PowerCutBackend`]'s disk recorded, and the crash points
/// between them.
#[derive(Clone)]
pub struct Recording {
    initial: Vec<Vec<u8>>,
    ops: Vec<(FileId, Op)>,
}

impl fmt::Debug for Recording {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recording")
            .field("files", &self.initial.len())
            .field("ops", &self.ops.len())
            .field("syncs", &self.syncs())
            .finish()
    }
}

impl Recording {
    /// Syncs recorded, of every file.
    #[must_use]
    pub fn syncs(&self) -> u64 {
        self.ops
            .iter()
            .filter(|(_, op)| matches!(op, Op::Sync))
            .count() as u64
    }

    /// Where a kill -9 of the process hurts most for `file`: just before each of its syncs,
    /// the writes the sync would make durable all done (positions for
    /// [`after_kill`](Self::after_kill)).
    #[must_use]
    pub fn kill_points(&self, file: FileId) -> Vec<usize> {
        self.ops
            .iter()
            .enumerate()
            .filter(|(_, (f, op))| *f == file && matches!(op, Op::Sync))
            .map(|(at, _)| at)
            .collect()
    }

    /// The disk a kill -9 of the process after its first `ops` operations leaves: every file
    /// reads as all of its writes so far (the page cache outlives the process), but only what
    /// was synced is durable. The new disk records, starting with those unsynced writes in
    /// flight, so a power cut after the restart can still lose them.
    #[must_use]
    pub fn after_kill(&self, ops: usize) -> AfterKill {
        // The last crash point of the recording cut short there: what each file's last sync
        // made durable, and everything written since in flight.
        let point = CrashPoints {
            ops: &self.ops[..ops.min(self.ops.len())],
            ..self.crash_points()
        }
        .last()
        .expect("a recording has at least one crash point");
        let files = point
            .base
            .into_iter()
            .zip(&point.in_flight)
            .map(|(durable, in_flight)| {
                let mut current = durable.clone();
                in_flight
                    .iter()
                    .for_each(|op| apply(&mut current, op, None));
                FileState {
                    current,
                    initial: durable,
                }
            })
            .collect();
        let ops = point
            .in_flight
            .into_iter()
            .enumerate()
            .flat_map(|(k, ops)| ops.into_iter().map(move |op| (FileId(k), op)))
            .collect();
        let disk = Arc::new(Mutex::new(Disk {
            files,
            ops,
            syncs: 0,
            recording: true,
        }));
        AfterKill {
            files: (0..self.initial.len())
                .map(|k| PowerCutBackend {
                    disk: disk.clone(),
                    file: FileId(k),
                })
                .collect(),
            synced: point.synced,
        }
    }

    /// Every sync boundary of the disk in order: before the first sync, after each one (the
    /// last one holds what was written after the last sync).
    #[must_use]
    pub fn crash_points(&self) -> CrashPoints<'_> {
        CrashPoints {
            ops: &self.ops,
            next: 0,
            synced: 0,
            base: self.initial.clone(),
            unsynced: vec![Vec::new(); self.initial.len()],
            done: false,
        }
    }
}

/// What [`Recording::after_kill`] leaves: the disk's files in their order (the first is the
/// database), and the syncs done before the kill (what was acknowledged by then is durable).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AfterKill {
    /// Each file of the disk, recording.
    pub files: Vec<PowerCutBackend>,
    /// Syncs completed before the kill.
    pub synced: u64,
}

/// The iterator of [`Recording::crash_points`]; it builds each point's durable images from
/// the ones before, so a sweep costs one pass over the recording.
#[derive(Debug)]
pub struct CrashPoints<'a> {
    ops: &'a [(FileId, Op)],
    next: usize,
    synced: u64,
    /// Each file as its last sync left it.
    base: Vec<Vec<u8>>,
    /// Each file's operations since its last sync.
    unsynced: Vec<Vec<Op>>,
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

impl Iterator for CrashPoints<'_> {
    type Item = CrashPoint;

    fn next(&mut self) -> Option<CrashPoint> {
        if self.done {
            return None;
        }
        let mut sync = None;
        while let Some((file, op)) = self.ops.get(self.next) {
            self.next += 1;
            if let Op::Sync = op {
                sync = Some(*file);
                break;
            }
            self.unsynced[file.0].push(op.clone());
        }
        let point = CrashPoint {
            synced: self.synced,
            base: self.base.clone(),
            in_flight: self.unsynced.clone(),
        };
        match sync {
            Some(file) => {
                for op in self.unsynced[file.0].drain(..) {
                    apply(&mut self.base[file.0], &op, None);
                }
                self.synced += 1;
            }
            None => self.done = true,
        }
        Some(point)
    }
}

/// One sync boundary: what the disk holds for sure, and what was in flight, of each file.
pub struct CrashPoint {
    synced: u64,
    base: Vec<Vec<u8>>,
    in_flight: Vec<Vec<Op>>,
}

impl fmt::Debug for CrashPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CrashPoint")
            .field("synced", &self.synced)
            .field(
                "durable_len",
                &self.base.iter().map(Vec::len).collect::<Vec<_>>(),
            )
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

impl CrashPoint {
    /// Syncs of the disk that completed before this point: every write acknowledged by then
    /// is durable.
    #[must_use]
    pub fn synced(&self) -> u64 {
        self.synced
    }

    /// Operations in flight at this point, of every file.
    #[must_use]
    pub fn in_flight(&self) -> usize {
        self.in_flight.iter().map(Vec::len).sum()
    }

    /// Operations in flight at this point, of `file`.
    #[must_use]
    pub fn in_flight_of(&self, file: FileId) -> usize {
        self.in_flight[file.0].len()
    }

    /// [`cuts_of`](Self::cuts_of) the disk's first file (the database).
    #[must_use]
    pub fn cuts(&self, per_kind: usize, seed: u64) -> Vec<Cut> {
        self.cuts_of(FileId(0), per_kind, seed)
    }

    /// Every deterministic cut of `file` at this point (nothing, all, each prefix, each
    /// reordered suffix, each torn page of each write, capped at `per_kind` each) and
    /// `per_kind` seeded cuts of each random kind, seeds starting at `seed`.
    #[must_use]
    pub fn cuts_of(&self, file: FileId, per_kind: usize, seed: u64) -> Vec<Cut> {
        let in_flight = &self.in_flight[file.0];
        let n = in_flight.len();
        let mut cuts = vec![Cut::NothingInFlight];
        if n == 0 {
            return cuts;
        }
        cuts.push(Cut::AllInFlight);
        cuts.extend((1..n).take(per_kind).map(Cut::Prefix));
        cuts.extend((1..n).take(per_kind).map(Cut::Reordered));
        let torn = in_flight.iter().enumerate().flat_map(|(k, op)| {
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

    /// [`image_of`](Self::image_of) the disk's first file (the database).
    #[must_use]
    pub fn image(&self, cut: Cut) -> Vec<u8> {
        self.image_of(FileId(0), cut)
    }

    /// `file` as the disk holds it after `cut` of what was in flight to it.
    #[must_use]
    pub fn image_of(&self, file: FileId, cut: Cut) -> Vec<u8> {
        let ops = &self.in_flight[file.0];
        let mut file = self.base[file.0].clone();
        let durable_len = file.len() as u64;
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

    #[test]
    fn after_a_kill_reads_see_every_write_and_a_later_cut_can_still_lose_the_unsynced() {
        let db = PowerCutBackend::recording();
        let journal = db.another_file(Vec::new());
        db.write(0, &[1; 8]).unwrap();
        db.sync_data().unwrap();
        db.write(0, &[2; 4]).unwrap();
        journal.write(0, &[3; 4]).unwrap();
        db.sync_data().unwrap();
        let rec = db.recording_so_far();
        assert_eq!(rec.kill_points(db.file()), vec![1, 4]);
        // Killed just before the second sync: both files read as written, only the first
        // sync is durable.
        let killed = rec.after_kill(4);
        assert_eq!(killed.synced, 1);
        let (db2, journal2) = (&killed.files[0], &killed.files[1]);
        assert_eq!(db2.image(), [[2; 4], [1; 4]].concat());
        assert_eq!(journal2.image(), vec![3; 4]);
        assert_eq!(db2.syncs(), 0);
        db2.write(8, &[4; 4]).unwrap();
        db2.sync_data().unwrap();
        let points: Vec<_> = db2.recording_so_far().crash_points().collect();
        // Before the restart's first sync, the unsynced writes of before the kill may be lost.
        assert_eq!(points[0].image(Cut::NothingInFlight), vec![1; 8]);
        assert_eq!(points[0].in_flight_of(journal2.file()), 1);
        assert_eq!(
            points[0].image_of(journal2.file(), Cut::NothingInFlight),
            Vec::<u8>::new()
        );
        // The restart's sync of the database makes them durable; the journal's write it does
        // not.
        assert_eq!(
            points[1].image(Cut::NothingInFlight),
            [[2; 4], [1; 4], [4; 4]].concat()
        );
        assert_eq!(points[1].in_flight_of(journal2.file()), 1);
    }

    #[test]
    fn a_sync_of_one_file_keeps_nothing_of_another() {
        let db = PowerCutBackend::recording();
        let journal = db.another_file(vec![9; 4]);
        db.write(0, &[1; 8]).unwrap();
        journal.write(0, &[2; 4]).unwrap();
        journal.sync_data().unwrap();
        db.write(8, &[3; 8]).unwrap();
        db.sync_data().unwrap();
        journal.write(4, &[4; 4]).unwrap();
        assert_eq!(db.syncs(), 2, "the disk counts the syncs of both files");
        let rec = db.recording_so_far();
        let points: Vec<_> = rec.crash_points().collect();
        assert_eq!(points.len(), 3);
        let (j, d) = (journal.file(), db.file());
        // After the journal's sync: the journal's write is kept, the database's earlier
        // write is still in flight (no sync of its own yet).
        let after_journal = &points[1];
        assert_eq!(after_journal.image_of(j, Cut::NothingInFlight), vec![2; 4]);
        assert_eq!(after_journal.in_flight_of(d), 2);
        assert_eq!(
            after_journal.image_of(d, Cut::NothingInFlight),
            Vec::<u8>::new()
        );
        assert_eq!(after_journal.image_of(d, Cut::Prefix(1)), vec![1; 8]);
        // After the database's sync: both of its writes kept; the journal's later write in
        // flight.
        let last = &points[2];
        assert_eq!(last.image(Cut::NothingInFlight).len(), 16);
        assert_eq!(last.in_flight_of(j), 1);
        assert_eq!(
            last.image_of(j, Cut::AllInFlight),
            [[2; 4], [4; 4]].concat()
        );
        assert_eq!(points[0].image_of(j, Cut::NothingInFlight), vec![9; 4]);
    }
}
