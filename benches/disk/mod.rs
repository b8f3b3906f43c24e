//! What this machine's disk can do on its own, measured in the same run as the bench that
//! compares against it: the file-system floor under a durable stream.

use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

const PAGE: usize = 4096;

/// A file of `pages` 4 KiB pages written out and fsynced. Written, not `set_len`: a write into
/// a hole allocates a block, and its fdatasync then commits file-system metadata too, which
/// neither redb's rewrites of its own pages nor an append into a written-out log do.
fn written_out(path: &Path, pages: u64) -> std::fs::File {
    let mut file = std::fs::File::create(path).expect("baseline file");
    let page = vec![0u8; PAGE];
    for _ in 0..pages {
        file.write_all(&page).expect("fill");
    }
    file.sync_all().expect("fsync");
    file
}

/// Waits until `start + at`: sleeps while more than `SPIN` is left (a sleep overshoots by tens
/// of microseconds, which would count against the floor) and spins for the rest.
fn wait_until(start: Instant, at: Duration) {
    const SPIN: Duration = Duration::from_micros(300);
    let left = at.saturating_sub(start.elapsed());
    if left > SPIN {
        std::thread::sleep(left - SPIN);
    }
    while start.elapsed() < at {
        std::hint::spin_loop();
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

/// Raw `fdatasync` after rewriting `pages` 4 KiB pages scattered over a 16 MiB file, 500 times
/// back to back (one page: the baseline of the latency target; a commit's page count: what its
/// fsync alone costs).
pub fn fdatasync_baseline(dir: &Path, pages: u64, hist: Histogram<u64>) -> Histogram<u64> {
    const FILE_PAGES: u64 = 4096;
    let mut file = written_out(&dir.join("fdatasync.bin"), FILE_PAGES);
    let page = vec![1u8; PAGE];
    let mut h = hist;
    // A fixed stride through the file: every round lands on other pages, none on a neighbour.
    let mut at = 0u64;
    for _ in 0..500 {
        for _ in 0..pages {
            at = (at + 997) % FILE_PAGES;
            file.seek(SeekFrom::Start(at * PAGE as u64)).expect("seek");
            file.write_all(&page).expect("write");
        }
        let t = Instant::now();
        file.sync_data().expect("fdatasync");
        h.record(micros(t.elapsed())).expect("record");
    }
    h
}

/// The best a durable stream can do on this disk at a sustained rate: events arrive every
/// `1 / rate` seconds for `length`; one loop appends whatever has arrived since its last turn
/// (`event_bytes` each, one write) to a written-out log and fdatasyncs it, starting an
/// fdatasync no sooner than `spacing` after the previous one began; each event's latency is
/// the end of its fdatasync minus its arrival. No database, no encoding, no network: only the
/// unavoidable (one append and one flush per group). It runs after the load it is compared
/// with, not beside it (it would share the disk), so a stall of the disk can fall in one and
/// not the other: read it as what the disk allowed around that run. Returns the latencies and
/// the number of fdatasyncs.
pub fn durable_floor(
    dir: &Path,
    rate: u64,
    length: Duration,
    event_bytes: usize,
    spacing: Duration,
    hist: Histogram<u64>,
) -> (Histogram<u64>, u64) {
    use std::os::unix::fs::FileExt;
    const FILE_PAGES: u64 = 16 * 1024; // 64 MiB, reused from the start when full
    let file = written_out(&dir.join("durable-floor.bin"), FILE_PAGES);
    let capacity = FILE_PAGES * PAGE as u64;
    let total = (length.as_secs_f64() * rate as f64) as u64;
    let arrival = |k: u64| Duration::from_secs_f64((k + 1) as f64 / rate as f64);
    let mut h = hist;
    let (mut done, mut at, mut syncs) = (0u64, 0u64, 0u64);
    let mut last_sync = Duration::ZERO;
    let bytes = vec![b'x'; event_bytes * 1024];
    let start = Instant::now();
    while done < total {
        let now = start.elapsed();
        let arrived = total.min((now.as_secs_f64() * rate as f64) as u64);
        let not_before = if syncs == 0 { now } else { last_sync + spacing };
        if arrived == done || now < not_before {
            wait_until(start, not_before.max(arrival(done)));
            continue;
        }
        let mut left = usize::try_from(arrived - done).expect("fits") * event_bytes;
        while left > 0 {
            let n = left.min(bytes.len());
            if at + n as u64 > capacity {
                at = 0;
            }
            file.write_all_at(&bytes[..n], at).expect("append");
            at += n as u64;
            left -= n;
        }
        last_sync = start.elapsed();
        file.sync_data().expect("fdatasync");
        syncs += 1;
        let end = start.elapsed();
        for k in done..arrived {
            h.record(micros(end.saturating_sub(arrival(k))))
                .expect("record");
        }
        done = arrived;
    }
    (h, syncs)
}
