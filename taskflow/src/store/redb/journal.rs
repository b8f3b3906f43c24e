//! The event journal: `taskflow.journal` beside the database, an append-only file of groups
//! of writes (events, steps, heartbeats), each made durable by one write and one fdatasync
//! (docs/design/event-journal.md).
//!
//! A record is `len u32 | crc32c u32 | jseq u64 | payload` (little-endian; the checksum covers
//! `jseq` and the payload). `jseq` counts records and never resets; the database remembers the
//! last record it holds (`journal_applied`), so a record is applied exactly once. A group too
//! big for a record keeps its jseq but goes to the database, durably, before the next record
//! is appended, so numbers may be skipped. Records are read from the start of each half of
//! the file while each is whole and newer than the one before: the first torn, zeroed or
//! older record ends the half (a record is overwritten only once the database holds it
//! durably, so whatever follows the newest records is older than them). The halves are used
//! in turn; appends move to the other half when one is full, once the database durably holds
//! every record in it (asked for as soon as the move before, so a move seldom waits).
//!
//! The whole file is written out (zeros) when it is opened shorter than its two halves, so an
//! append's fdatasync commits data only, never a block allocation or a size change. (Growing
//! it in chunks as appends reached its end stalled the appends that grew it: with 500 streams
//! the emit→client p99 was 0.93–1.16× its target against 0.74–0.81× written out whole, in
//! alternating runs; BENCHMARKS.md.)

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The journal's size: two halves used in turn (unit tests fill a small one).
#[cfg(not(test))]
const CAPACITY: u64 = 64 << 20;
#[cfg(test)]
const CAPACITY: u64 = 4 << 20;
/// One half of a journal file.
pub(super) const HALF: u64 = CAPACITY / 2;
/// How much of the zeros that write the file out is written at a time.
const CHUNK: u64 = 1 << 20;
/// `len`, `crc`, `jseq`.
const HEADER: usize = 16;
/// Tags of a [`JournaledWrite`].
const STEP: u8 = 1;
const HEARTBEAT: u8 = 2;

/// One event as the journal and the fold carry it: its key, its seq and its stored value,
/// encoded once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct JournaledEvent {
    pub(super) ik: String,
    pub(super) seq: u64,
    pub(super) value: Arc<[u8]>,
}

/// A write other than an event that the journal acknowledges: a step, a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum JournaledWrite {
    /// An encoded [`StepRecord`](crate::store::StepRecord) of a run.
    Step {
        task: u64,
        key: String,
        json: Vec<u8>,
    },
    /// A run's heartbeat at `now` (ms).
    Heartbeat { task: u64, now: u64 },
}

/// The writes of one journal record: its events and its other writes, each in commit order
/// (the two touch different tables, so their relative order does not matter).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct JournaledGroup {
    pub(super) jseq: u64,
    pub(super) events: Vec<JournaledEvent>,
    pub(super) writes: Vec<JournaledWrite>,
}

impl JournaledGroup {
    /// The whole record: header and payload.
    pub(super) fn encode(&self) -> Vec<u8> {
        let size: usize = self
            .events
            .iter()
            .map(|e| 16 + e.ik.len() + e.value.len())
            .sum();
        let mut out = Vec::with_capacity(HEADER + 4 + size);
        out.extend_from_slice(&[0; HEADER]);
        put_u32(&mut out, self.events.len());
        for e in &self.events {
            put_u32(&mut out, e.ik.len());
            out.extend_from_slice(e.ik.as_bytes());
            out.extend_from_slice(&e.seq.to_le_bytes());
            put_u32(&mut out, e.value.len());
            out.extend_from_slice(&e.value);
        }
        put_u32(&mut out, self.writes.len());
        for w in &self.writes {
            match w {
                JournaledWrite::Step { task, key, json } => {
                    out.push(STEP);
                    out.extend_from_slice(&task.to_le_bytes());
                    put_u32(&mut out, key.len());
                    out.extend_from_slice(key.as_bytes());
                    put_u32(&mut out, json.len());
                    out.extend_from_slice(json);
                }
                JournaledWrite::Heartbeat { task, now } => {
                    out.push(HEARTBEAT);
                    out.extend_from_slice(&task.to_le_bytes());
                    out.extend_from_slice(&now.to_le_bytes());
                }
            }
        }
        let len = u32::try_from(out.len() - HEADER).expect("a record is smaller than 4 GiB");
        out[8..16].copy_from_slice(&self.jseq.to_le_bytes());
        let crc = crc32c(&out[8..]);
        out[0..4].copy_from_slice(&len.to_le_bytes());
        out[4..8].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// The record at the start of `bytes` and its length, if one is whole there.
    fn decode(bytes: &[u8]) -> Option<(Self, usize)> {
        let header = bytes.get(..HEADER)?;
        let len = usize::try_from(u32::from_le_bytes(header[0..4].try_into().ok()?)).ok()?;
        let crc = u32::from_le_bytes(header[4..8].try_into().ok()?);
        if len < 4 {
            return None;
        }
        let end = HEADER.checked_add(len)?;
        let body = bytes.get(8..end)?;
        if crc32c(body) != crc {
            return None;
        }
        let jseq = u64::from_le_bytes(body[0..8].try_into().ok()?);
        let mut reader = Reader(&body[8..]);
        let count = reader.u32()?;
        let mut events = Vec::with_capacity(count.min(1 << 16));
        for _ in 0..count {
            let ik_len = reader.u32()?;
            let ik = String::from_utf8(reader.take(ik_len)?.to_vec()).ok()?;
            let seq = reader.u64()?;
            let value_len = reader.u32()?;
            let value = Arc::from(reader.take(value_len)?);
            events.push(JournaledEvent { ik, seq, value });
        }
        let count = reader.u32()?;
        let mut writes = Vec::with_capacity(count.min(1 << 16));
        for _ in 0..count {
            let tag = reader.take(1)?[0];
            let task = reader.u64()?;
            writes.push(match tag {
                STEP => {
                    let key_len = reader.u32()?;
                    let key = String::from_utf8(reader.take(key_len)?.to_vec()).ok()?;
                    let json_len = reader.u32()?;
                    let json = reader.take(json_len)?.to_vec();
                    JournaledWrite::Step { task, key, json }
                }
                HEARTBEAT => JournaledWrite::Heartbeat {
                    task,
                    now: reader.u64()?,
                },
                _ => return None,
            });
        }
        reader.0.is_empty().then_some((
            Self {
                jseq,
                events,
                writes,
            },
            end,
        ))
    }
}

fn put_u32(out: &mut Vec<u8>, n: usize) {
    let n = u32::try_from(n).expect("a field is smaller than 4 GiB");
    out.extend_from_slice(&n.to_le_bytes());
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    fn u32(&mut self) -> Option<usize> {
        let bytes = self.take(4)?;
        usize::try_from(u32::from_le_bytes(bytes.try_into().ok()?)).ok()
    }
}

/// The records of a journal file's bytes (halves of `half_size`), in jseq order: those at
/// the start of each half.
pub(super) fn read_journal(bytes: &[u8], half_size: u64) -> Vec<JournaledGroup> {
    let half = usize::try_from(half_size)
        .unwrap_or(usize::MAX)
        .min(bytes.len());
    let mut out = read_records(&bytes[..half]);
    out.extend(read_records(&bytes[half..]));
    out.sort_by_key(|g| g.jseq);
    out.dedup_by_key(|g| g.jseq);
    out
}

/// The records at the start of `bytes`: each whole and numbered after the one before (not
/// always the next number: a group too big for a record skips one).
pub(super) fn read_records(bytes: &[u8]) -> Vec<JournaledGroup> {
    let mut out: Vec<JournaledGroup> = Vec::new();
    let mut at = 0;
    while let Some((group, len)) = bytes.get(at..).and_then(JournaledGroup::decode) {
        if out.last().is_some_and(|last| group.jseq <= last.jseq) {
            break;
        }
        at += len;
        out.push(group);
    }
    out
}

/// The bytes under a journal: the file itself, or (feature `test-util`) a power-cut
/// recording of it.
pub(super) trait JournalFile: Send + std::fmt::Debug {
    /// The whole file.
    fn read_all(&mut self) -> io::Result<Vec<u8>>;
    /// Writes `data` at `offset`, growing the file if it ends before.
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()>;
    /// Makes every write so far durable.
    fn sync_data(&mut self) -> io::Result<()>;
}

impl JournalFile for File {
    fn read_all(&mut self) -> io::Result<Vec<u8>> {
        let mut bytes = Vec::new();
        self.seek(SeekFrom::Start(0))?;
        self.read_to_end(&mut bytes)?;
        Ok(bytes)
    }

    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.seek(SeekFrom::Start(offset))?;
        self.write_all(data)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        File::sync_data(self)
    }
}

#[cfg(feature = "test-util")]
impl JournalFile for crate::testing::BoxedBackend {
    fn read_all(&mut self) -> io::Result<Vec<u8>> {
        use redb::StorageBackend as _;
        let len = usize::try_from(self.len()?).map_err(io::Error::other)?;
        let mut bytes = vec![0; len];
        self.read(0, &mut bytes)?;
        Ok(bytes)
    }

    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        redb::StorageBackend::write(self, offset, data)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        redb::StorageBackend::sync_data(self)
    }
}

/// The journal file open for appending, from its beginning.
#[derive(Debug)]
pub(super) struct Journal {
    path: PathBuf,
    file: Box<dyn JournalFile>,
    /// The size of one half.
    half_size: u64,
    /// The half appends go to (0 or 1).
    half: usize,
    /// Where the next record goes.
    pos: u64,
    /// The last jseq appended to each half since the open (0: none).
    last_in: [u64; 2],
}

impl Journal {
    /// Opens (or creates) the journal at `path` and reads its records; appends then start at
    /// the beginning (call it only once the database holds every record it returns).
    pub(super) fn open(path: &Path) -> io::Result<(Self, Vec<JournaledGroup>)> {
        let created = !path.exists();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        if created {
            // The new name is durable only once the directory is.
            if let Some(dir) = path.parent() {
                File::open(dir)?.sync_all()?;
            }
        }
        Self::on(path, Box::new(file), HALF)
    }

    /// The journal on `file` (`path` names it in messages) with halves of `half_size`, as
    /// [`open`](Self::open), written out to its full size first. A file must always be opened
    /// with the same half size.
    pub(super) fn on(
        path: &Path,
        mut file: Box<dyn JournalFile>,
        half_size: u64,
    ) -> io::Result<(Self, Vec<JournaledGroup>)> {
        let bytes = file.read_all()?;
        let records = read_journal(&bytes, half_size);
        let mut written = bytes.len() as u64;
        drop(bytes);
        let size = 2 * half_size;
        if written < size {
            // Zeros only past the end: whatever records the file holds stay as they are.
            let zeros = vec![0; usize::try_from(CHUNK.min(size)).unwrap_or(usize::MAX)];
            while written < size {
                let n = usize::try_from(size - written).map_or(zeros.len(), |n| n.min(zeros.len()));
                file.write_at(written, &zeros[..n])?;
                written += n as u64;
            }
            file.sync_data()?;
        }
        let journal = Self {
            path: path.to_owned(),
            file,
            half_size,
            half: 0,
            pos: 0,
            last_in: [0; 2],
        };
        Ok((journal, records))
    }

    /// The records of the journal at `path` (none when there is no file).
    pub(super) fn records(path: &Path) -> io::Result<Vec<JournaledGroup>> {
        match std::fs::File::open(path) {
            Ok(mut file) => {
                let mut bytes = Vec::new();
                file.read_to_end(&mut bytes)?;
                Ok(read_journal(&bytes, HALF))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// The file's path, for messages.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// The largest record appended: a bigger group is committed to the database instead.
    pub(super) fn largest_record(&self) -> u64 {
        self.half_size / 4
    }

    /// Whether a record of `len` bytes fits before the end of the current half.
    pub(super) fn fits(&self, len: usize) -> bool {
        self.pos + len as u64 <= (self.half as u64 + 1) * self.half_size
    }

    /// The last record in the other half: the database must hold it durably before appends
    /// move there.
    pub(super) fn other_half_last(&self) -> u64 {
        self.last_in[1 - self.half]
    }

    /// Moves appends to the start of the other half.
    pub(super) fn switch_halves(&mut self) {
        self.half = 1 - self.half;
        self.pos = self.half as u64 * self.half_size;
        self.last_in[self.half] = 0;
    }

    /// Writes `record` (numbered `jseq`, and [`fits`](Self::fits) the current half) and makes
    /// it durable: one write and one fdatasync, inside the written-out file.
    pub(super) fn append(&mut self, jseq: u64, record: &[u8]) -> io::Result<()> {
        let end = self.pos + record.len() as u64;
        debug_assert!(end <= 2 * self.half_size, "a record past the journal's end");
        self.file.write_at(self.pos, record)?;
        self.file.sync_data()?;
        self.pos = end;
        self.last_in[self.half] = jseq;
        Ok(())
    }
}

/// CRC-32C (Castagnoli), the checksum of a record.
fn crc32c(bytes: &[u8]) -> u32 {
    !bytes.iter().fold(!0u32, |c, &b| {
        CRC_TABLE[((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8)
    })
}

static CRC_TABLE: [u32; 256] = crc_table();

const fn crc_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        #[allow(clippy::cast_possible_truncation)] // i < 256
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 == 0 {
                c >> 1
            } else {
                0x82F6_3B78 ^ (c >> 1)
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(jseq: u64, n: u64) -> JournaledGroup {
        JournaledGroup {
            jseq,
            events: (0..n)
                .map(|k| JournaledEvent {
                    ik: format!("key-{k}"),
                    seq: jseq * 10 + k,
                    value: Arc::from(format!("{{\"d\":{k}}}").into_bytes()),
                })
                .collect(),
            writes: (0..n)
                .map(|k| {
                    if k % 2 == 0 {
                        JournaledWrite::Step {
                            task: jseq,
                            key: format!("s#{k}"),
                            json: b"{}".to_vec(),
                        }
                    } else {
                        JournaledWrite::Heartbeat {
                            task: jseq,
                            now: 1_700_000_000_000 + k,
                        }
                    }
                })
                .collect(),
        }
    }

    #[test]
    fn the_checksum_is_crc32c() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn records_read_back_in_order_and_stop_at_a_torn_one() {
        let mut bytes = Vec::new();
        for jseq in 1..=3 {
            bytes.extend(group(jseq, jseq).encode());
        }
        let whole = bytes.len();
        bytes.extend(group(4, 2).encode());
        assert_eq!(
            read_records(&bytes),
            vec![group(1, 1), group(2, 2), group(3, 3), group(4, 2)]
        );
        // Every cut inside the fourth record leaves the first three.
        for cut in whole..bytes.len() {
            assert_eq!(read_records(&bytes[..cut]).len(), 3, "cut at {cut}");
        }
        // A flipped byte anywhere in it too.
        for at in whole..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[at] ^= 0x40;
            assert_eq!(read_records(&flipped).len(), 3, "flip at {at}");
        }
    }

    #[test]
    fn an_older_record_after_the_newest_ends_the_journal() {
        // Records 7 and 8 were written over the start of a journal that held 1..=3.
        let mut old = Vec::new();
        for jseq in 1..=3 {
            old.extend(group(jseq, 1).encode());
        }
        let mut bytes = group(7, 1).encode();
        bytes.extend(group(8, 1).encode());
        let keep = bytes.len();
        bytes.extend_from_slice(&old[keep.min(old.len())..]);
        bytes.extend(group(2, 1).encode());
        let read: Vec<u64> = read_records(&bytes).iter().map(|g| g.jseq).collect();
        assert_eq!(read, vec![7, 8]);
    }

    #[test]
    fn a_number_skipped_by_a_group_too_big_for_a_record_does_not_end_the_journal() {
        let mut bytes = Vec::new();
        for jseq in [1, 2, 4, 5, 7] {
            bytes.extend(group(jseq, 1).encode());
        }
        bytes.extend(group(3, 1).encode());
        let read: Vec<u64> = read_records(&bytes).iter().map(|g| g.jseq).collect();
        assert_eq!(read, vec![1, 2, 4, 5, 7], "the older 3 after 7 ends it");
    }

    #[test]
    fn a_short_file_is_written_out_whole_and_keeps_its_records() {
        let dir = tempfile_dir();
        let path = dir.join("taskflow.journal");
        let bytes: Vec<u8> = (1..=3).flat_map(|jseq| group(jseq, 2).encode()).collect();
        std::fs::write(&path, &bytes).expect("write");
        let (journal, records) = Journal::open(&path).expect("open");
        assert_eq!(
            records.iter().map(|g| g.jseq).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        drop(journal);
        let after = std::fs::read(&path).expect("read");
        assert_eq!(after.len() as u64, CAPACITY);
        assert_eq!(&after[..bytes.len()], &bytes[..]);
        assert!(after[bytes.len()..].iter().all(|&b| b == 0));
        std::fs::remove_dir_all(dir).expect("clean up");
    }

    #[test]
    fn zeros_are_no_record() {
        assert!(read_records(&[0; 4096]).is_empty());
    }

    #[test]
    fn appends_survive_a_reopen_and_a_rewind_overwrites_from_the_start() {
        let dir = tempfile_dir();
        let path = dir.join("taskflow.journal");
        let (mut journal, records) = Journal::open(&path).expect("open");
        assert!(records.is_empty());
        for jseq in 1..=5 {
            journal
                .append(jseq, &group(jseq, 3).encode())
                .expect("append");
        }
        assert_eq!(
            std::fs::metadata(&path).expect("meta").len(),
            CAPACITY,
            "written out whole at the open"
        );
        drop(journal);
        let (mut journal, records) = Journal::open(&path).expect("reopen");
        assert_eq!(
            records.iter().map(|g| g.jseq).collect::<Vec<_>>(),
            [1, 2, 3, 4, 5]
        );
        journal.append(6, &group(6, 1).encode()).expect("append");
        let records = Journal::records(&path).expect("read");
        assert_eq!(records.iter().map(|g| g.jseq).collect::<Vec<_>>(), [6]);
        // The other half: its records follow the first half's, whichever is older.
        assert_eq!(journal.other_half_last(), 0);
        journal.switch_halves();
        journal.append(7, &group(7, 2).encode()).expect("append");
        assert_eq!(journal.other_half_last(), 6);
        journal.switch_halves();
        journal.append(8, &group(8, 2).encode()).expect("append");
        let records = Journal::records(&path).expect("read");
        assert_eq!(records.iter().map(|g| g.jseq).collect::<Vec<_>>(), [7, 8]);
        assert_eq!(records[0], group(7, 2));
        std::fs::remove_dir_all(dir).expect("clean up");
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "taskflow-journal-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }
}
