//! Hashing beside the download, not in its way: the thread that reads the socket
//! also writes the writer's own file, and hands each buffer to a hashing thread
//! through a small bounded queue; the hashing thread gives the buffer back to be
//! filled again. SHA-256 and the network then overlap instead of taking turns,
//! and memory stays at [`QUEUE`] buffers of [`BUF`] bytes whatever the blob's size.
//!
//! A [`Tee`] (`pull -o FILE`) is written by the reading thread too, right after
//! the writer's own file: the output grows as the bytes arrive, and is only ever
//! renamed into place by its owner once the blob verified. Writing it there, not
//! on the hashing thread, keeps the hasher (SHA-NI: about 2 GB/s) faster than
//! the reader, so the reader never waits for a buffer: on a busy machine each
//! such wait costs a trip through the scheduler, and lockstep hand-overs made
//! `-o` several times slower.
//!
//! What the hasher has seen is always exactly what the file holds: a buffer is
//! sent to it only once it is written, so the hash of a download cut short is
//! the hash of the partial file, and a resume can go on from it.

use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::sync::Mutex;
use std::sync::mpsc::sync_channel;
use std::thread;

use crate::digest::Hasher;

/// Bytes per buffer: large enough that a buffer costs one write system call
/// and one hand-over for many socket reads (a hand-over may wait for the
/// scheduler: fewer of them matter more than the memory).
/// 512 KiB: `pull_all`'s four pulls at once then hold 8 MiB of buffers in all.
const BUF: usize = 512 << 10;
/// Buffers in flight between the reading and the hashing thread (2 MiB in all).
const QUEUE: usize = 4;

/// A second copy of the bytes as they arrive, in a file its owner renames into
/// place once the blob verified. It is complete only when one unbroken stream
/// from byte 0 was written into it whole by the very pass whose hash verified;
/// anything else (a resume from a partial, a write error, a pass that failed
/// verification, a blob that turned up without a pass) marks it incomplete, and
/// its owner copies from the cache instead.
#[derive(Debug)]
pub(crate) struct Tee {
    file: File,
    written: u64,
    broken: bool,
}

impl Tee {
    /// Tees into `file`, which is empty.
    pub(crate) fn new(file: File) -> Tee {
        Tee {
            file,
            written: 0,
            broken: false,
        }
    }

    /// Whether it holds exactly the `size` bytes streamed from byte 0.
    pub(crate) fn is_complete(&self, size: u64) -> bool {
        !self.broken && self.written == size
    }

    /// The next bytes written are the blob's from `offset` on: from 0 it starts
    /// over; from anywhere else it cannot be complete. Not even from where it
    /// stands: the writer's file then holds a partial it claimed, which another
    /// writer may have rewritten since (started over from another source and cut
    /// at the same length), so the tee's first bytes need not be the ones hashed.
    pub(crate) fn starts_at(&mut self, offset: u64) {
        if offset == 0 {
            let emptied = self.file.set_len(0).and_then(|()| self.file.rewind());
            self.broken = emptied.is_err();
            self.written = 0;
        } else {
            self.broken = true;
        }
    }

    /// What it holds is not known to be the blob (a pass that failed, or a
    /// blob found whole without a pass that wrote the tee): until it is
    /// started over from byte 0, it is incomplete.
    pub(crate) fn invalidate(&mut self) {
        self.broken = true;
    }

    fn write(&mut self, bytes: &[u8]) {
        if self.broken {
            return;
        }
        match self.file.write_all(bytes) {
            Ok(()) => {
                let end = self.written.saturating_add(bytes.len() as u64);
                write_behind(&self.file, self.written, end);
                self.written = end;
            }
            // The owner copies from the cache instead, and reports that copy's error.
            Err(_) => self.broken = true,
        }
    }
}

/// Why [`pump`] stopped.
#[derive(Debug)]
pub(crate) enum Stop {
    /// The source ended.
    End,
    /// Reading the source failed.
    Cut(io::Error),
    /// The source held a byte past the expected size (not written).
    TooLong,
    /// Writing the file failed.
    Write(io::Error),
}

/// What [`pump`] did: the hash and length of what the file now holds, and why it stopped.
pub(crate) struct Pumped {
    pub(crate) hasher: Hasher,
    pub(crate) have: u64,
    pub(crate) stop: Stop,
}

/// Copies `source` to the end of `file` (which holds `have` bytes hashed into
/// `hasher`) and to `tee`, at most up to `size` bytes in all, hashing on
/// another thread. `progress` hears the length on disk as it grows.
///
/// Where no thread can be started (a process limit reached: `ulimit -u`, a
/// container's `pids.max` on a busy build machine), it hashes on this thread
/// instead, one buffer at a time: slower, never a panic.
pub(crate) fn pump<R: Read>(
    mut source: R,
    file: &mut File,
    hasher: Hasher,
    have: u64,
    size: u64,
    tee: Option<&mut Tee>,
    progress: &mut dyn FnMut(u64),
) -> Pumped {
    let (full_tx, full_rx) = sync_channel::<(Vec<u8>, usize)>(QUEUE);
    let (empty_tx, empty_rx) = sync_channel::<Vec<u8>>(QUEUE);
    // The hashing thread takes the hasher from here; if it cannot be started,
    // the hasher is still here for this thread to use.
    let slot = Mutex::new(Some(hasher));
    let take = |slot: &Mutex<Option<Hasher>>| {
        slot.lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .unwrap_or_default()
    };
    thread::scope(|scope| {
        let slot = &slot;
        let spawned = thread::Builder::new()
            .name("forge-oci-hash".to_owned())
            .spawn_scoped(scope, move || {
                let mut hasher = take(slot);
                while let Ok((buf, n)) = full_rx.recv() {
                    // Writing to a Hasher cannot fail.
                    let _ = hasher.write_all(&buf[..n]);
                    // The reader may have stopped; then the buffer is simply freed.
                    let _ = empty_tx.send(buf);
                }
                hasher
            });
        let (hashing, mut inline) = match spawned {
            Ok(handle) => (Some(handle), None),
            Err(_) => (None, Some(take(slot))),
        };
        let mut spare = None;
        let mut have = have;
        let mut tee = tee;
        let mut allocated = 0;
        let stop = loop {
            let mut buf = if let Some(buf) = spare.take() {
                buf
            } else if allocated < QUEUE {
                allocated += 1;
                vec![0u8; BUF]
            } else {
                match empty_rx.recv() {
                    Ok(buf) => buf,
                    // The hashing thread is gone (it cannot panic, but if it did,
                    // its hash is lost and the download fails verification).
                    Err(_) => break Stop::End,
                }
            };
            let (filled, stop) = fill(&mut source, &mut buf, size.saturating_sub(have));
            if filled > 0 {
                if let Err(e) = file.write_all(&buf[..filled]) {
                    break Stop::Write(e);
                }
                write_behind(file, have, have.saturating_add(filled as u64));
                if let Some(tee) = tee.as_deref_mut() {
                    tee.write(&buf[..filled]);
                }
                have = have.saturating_add(filled as u64);
                progress(have);
                if let Some(hasher) = inline.as_mut() {
                    // Writing to a Hasher cannot fail.
                    let _ = hasher.write_all(&buf[..filled]);
                    spare = Some(buf);
                } else if full_tx.send((buf, filled)).is_err() {
                    break Stop::End;
                }
            }
            if let Some(stop) = stop {
                break stop;
            }
        };
        drop(full_tx);
        // A panic in the hashing thread gives a hash of nothing: the bytes then
        // fail verification, which is the safe way to fail.
        let hasher = match (hashing, inline) {
            (Some(handle), _) => handle.join().unwrap_or_default(),
            (None, Some(hasher)) => hasher,
            (None, None) => Hasher::default(),
        };
        Pumped { hasher, have, stop }
    })
}

/// Bytes handed to write-back at a time: one system call per 4 MiB written.
const WRITE_BEHIND: u64 = 4 << 20;

/// The file grew from `from` to `to`: each time it crosses a multiple of
/// [`WRITE_BEHIND`], starts writing the 4 MiB before it to disk, without
/// waiting. The fsync before the rename then finds little left to do instead
/// of the whole blob, and the disk works while the network does. Linux starts
/// write-back of dirty pages on `POSIX_FADV_DONTNEED` (and evicts only pages
/// already clean, which these are not yet). A hint: failure changes nothing.
fn write_behind(file: &File, from: u64, to: u64) {
    if from / WRITE_BEHIND == to / WRITE_BEHIND {
        return;
    }
    let end = to / WRITE_BEHIND * WRITE_BEHIND;
    let start = end.saturating_sub(WRITE_BEHIND);
    #[cfg(target_os = "linux")]
    if let Some(len) = std::num::NonZeroU64::new(end - start) {
        let _ = rustix::fs::fadvise(file, start, Some(len), rustix::fs::Advice::DontNeed);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, start, end);
}

/// Reads into `buf` until it is full or the source stops, wanting at most one
/// byte more than `remaining` (so an over-long source is caught on its first
/// extra byte). Returns the bytes to keep, and why reading stopped if it did.
fn fill<R: Read>(source: &mut R, buf: &mut [u8], remaining: u64) -> (usize, Option<Stop>) {
    let want = buf.len().min(
        usize::try_from(remaining)
            .unwrap_or(usize::MAX)
            .saturating_add(1),
    );
    let mut filled = 0;
    while filled < want {
        match source.read(&mut buf[filled..want]) {
            Ok(0) => return (filled, Some(Stop::End)),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (filled, Some(Stop::Cut(e))),
        }
        if filled as u64 > remaining {
            // The extra bytes are not the blob's: keep what fits, then stop.
            let fits = usize::try_from(remaining).unwrap_or(usize::MAX);
            return (fits, Some(Stop::TooLong));
        }
    }
    (filled, None)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::digest::Digest;

    /// A source that gives `data` in reads of at most `step` bytes, then fails
    /// (when `cut`) or ends.
    struct Steps<'a> {
        data: &'a [u8],
        step: usize,
        cut: bool,
    }

    impl Read for Steps<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.data.is_empty() {
                return if self.cut {
                    Err(io::ErrorKind::ConnectionReset.into())
                } else {
                    Ok(0)
                };
            }
            let n = buf.len().min(self.step).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    #[test]
    fn hashes_writes_and_tees_exactly_what_arrived() {
        let bytes = data(3 * BUF + 12345);
        let dir = tempfile::tempdir().unwrap();
        let mut file = File::create(dir.path().join("f")).unwrap();
        let mut tee = Tee::new(File::create(dir.path().join("t")).unwrap());
        tee.starts_at(0);
        let source = Steps {
            data: &bytes,
            step: 10_000,
            cut: false,
        };
        let mut last = 0;
        let out = pump(
            source,
            &mut file,
            Hasher::default(),
            0,
            bytes.len() as u64,
            Some(&mut tee),
            &mut |n| last = n,
        );
        assert!(matches!(out.stop, Stop::End));
        assert_eq!(out.have, bytes.len() as u64);
        assert_eq!(last, out.have);
        assert_eq!(out.hasher.finish(), Digest::of(&bytes));
        assert!(tee.is_complete(bytes.len() as u64));
        assert_eq!(std::fs::read(dir.path().join("f")).unwrap(), bytes);
        assert_eq!(std::fs::read(dir.path().join("t")).unwrap(), bytes);
    }

    #[test]
    fn a_cut_keeps_the_hash_of_what_is_on_disk_and_too_long_stops_at_the_size() {
        let bytes = data(BUF + 99);
        let dir = tempfile::tempdir().unwrap();
        let mut file = File::create(dir.path().join("f")).unwrap();
        let half = &bytes[..BUF / 2 + 3];
        let out = pump(
            Steps {
                data: half,
                step: 4096,
                cut: true,
            },
            &mut file,
            Hasher::default(),
            0,
            bytes.len() as u64,
            None,
            &mut |_| {},
        );
        assert!(matches!(out.stop, Stop::Cut(_)));
        assert_eq!(out.hasher.finish(), Digest::of(half));
        assert_eq!(std::fs::read(dir.path().join("f")).unwrap(), half);

        let mut file = File::create(dir.path().join("g")).unwrap();
        let out = pump(
            Steps {
                data: &bytes,
                step: 7000,
                cut: false,
            },
            &mut file,
            Hasher::default(),
            0,
            100,
            None,
            &mut |_| {},
        );
        assert!(matches!(out.stop, Stop::TooLong));
        assert_eq!(out.have, 100);
    }

    #[test]
    fn a_tee_resumed_mid_way_is_incomplete_and_restarting_empties_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut tee = Tee::new(File::create(dir.path().join("t")).unwrap());
        tee.write(b"abc");
        tee.starts_at(10);
        tee.write(b"def");
        assert!(!tee.is_complete(6));
        tee.starts_at(0);
        tee.write(b"abcdef");
        assert!(tee.is_complete(6));
        assert_eq!(std::fs::read(dir.path().join("t")).unwrap(), b"abcdef");
    }
}
