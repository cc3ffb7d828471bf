//! The segment store: HLS/DASH segments live in memfd "arenas" mapped with
//! memmap2, written once by the stream's packager and served to every viewer
//! on every core as a range of that file (one `sendmsg` from the mapping, or
//! `splice` from the memfd), never copied per viewer.
//!
//! Ownership is the whole safety story:
//! - A [`SegmentWriter`] (one per output of a stream, owned by the core that
//!   packages the stream) appends bytes at the end of its current arena. It
//!   writes only at offsets that nobody has been handed yet.
//! - A finished (or partly written) range is handed out as a [`SegmentBytes`]:
//!   an `Arc` of the arena plus offset and length. Holding one keeps the
//!   arena alive and its bytes unchanged.
//! - An arena is written again from the start only when the writer holds the
//!   only reference to it (`Arc::get_mut` succeeds — an acquire that pairs
//!   with the release of every other holder's drop). So a viewer in the
//!   middle of a download, on any core, can never see its bytes reused: it
//!   still holds a reference. Memory is freed (munmap + close) when the last
//!   reference goes.
//!
//! memfd pages are allocated on first write (tmpfs), so an arena's nominal
//! size costs nothing until used. When segments leave by `sendfile`/`splice`,
//! reusing an arena punches its old pages out first: those responses leave
//! references to them in socket buffers until slow peers read them, and
//! those bytes must not change.
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::sync::Arc;

use bytes::Bytes;
use memmap2::{MmapOptions, MmapRaw};

/// One memfd and its shared read-write mapping.
#[derive(Debug)]
pub struct Arena {
    file: File,
    map: MmapRaw,
    cap: usize,
}

impl Arena {
    fn new(cap: usize) -> std::io::Result<Self> {
        // SAFETY: the name is a NUL-terminated literal; the result is checked.
        let fd = unsafe { libc::memfd_create(c"spate-segments".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: memfd_create just returned a fresh descriptor we own.
        let file = unsafe { File::from_raw_fd(fd) };
        file.set_len(cap as u64)?;
        let map = MmapOptions::new().len(cap).map_raw(&file)?;
        Ok(Self { file, map, cap })
    }

    /// Drop the arena's pages before it is written again. `sendfile` and
    /// `splice` leave references to these pages in socket buffers until the
    /// peer reads them; rewriting the pages in place would change bytes a
    /// slow reader has yet to receive. Punching them out of the memfd gives
    /// the next writes fresh pages, while the old ones live on, unchanged,
    /// for as long as a socket holds them.
    fn rewind(&self) -> std::io::Result<()> {
        // SAFETY: fallocate on our own memfd over its own length; our
        // mapping stays valid (the punched range reads as zeroes and is
        // refilled by the next writes' page faults).
        let r = unsafe {
            libc::fallocate(
                self.file.as_raw_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                0,
                self.cap as libc::off_t,
            )
        };
        if r < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

/// A range of an arena: a segment, a partial segment, or the bytes one frame
/// added. Cheap to clone (one `Arc`).
#[derive(Debug, Clone)]
pub struct SegmentBytes {
    arena: Arc<Arena>,
    off: usize,
    len: usize,
}

impl SegmentBytes {
    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the range is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Start of the bytes in this process's mapping.
    pub fn as_ptr(&self) -> *const u8 {
        // SAFETY: off + len <= cap (checked when the range was made), so the
        // pointer stays inside the mapping.
        unsafe { self.arena.map.as_ptr().add(self.off) }
    }

    /// The memfd and the offset of the first byte in it (for splice).
    pub fn file_range(&self) -> (RawFd, u64) {
        (self.arena.file.as_raw_fd(), self.off as u64)
    }

    /// The same bytes as a `Bytes` (no copy: the `Bytes` owns a reference to
    /// the arena).
    pub fn to_bytes(&self) -> Bytes {
        Bytes::from_owner(self.clone())
    }

    /// A sub-range (`start..end` relative to this range), clamped.
    pub fn slice(&self, start: usize, end: usize) -> SegmentBytes {
        let end = end.min(self.len);
        let start = start.min(end);
        SegmentBytes {
            arena: self.arena.clone(),
            off: self.off + start,
            len: end - start,
        }
    }
}

impl AsRef<[u8]> for SegmentBytes {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: the range [off, off + len) was completely written before
        // this value existed, and the writer never writes into a range it has
        // handed out: it writes only past its fill mark, and rewinds an arena
        // only while holding the only reference to it (this value is one).
        // The mapping lives as long as `arena`, which we hold.
        unsafe { std::slice::from_raw_parts(self.as_ptr(), self.len) }
    }
}

/// Why a write into the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Every arena is still referenced and the limit is reached.
    #[error("segment store full: {arenas} arenas of {mib} MiB all in use")]
    Full {
        /// Arenas held.
        arenas: usize,
        /// Size of each, MiB.
        mib: usize,
    },
    /// memfd_create / ftruncate / mmap failed.
    #[error("segment store: {0}")]
    Io(#[from] std::io::Error),
}

/// Appends segments to arenas for one output of one stream.
#[derive(Debug)]
pub struct SegmentWriter {
    arena_size: usize,
    max_arenas: usize,
    /// Arena being filled; `fill` bytes of it are written.
    current: Option<Arc<Arena>>,
    fill: usize,
    /// Start of the segment being written (in `current`).
    seg_start: usize,
    /// Earlier arenas, oldest first (reused once nobody else holds them).
    older: Vec<Arc<Arena>>,
    /// Punch an arena's pages out before reusing it (see [`Arena::rewind`]).
    punch: bool,
}

impl SegmentWriter {
    /// A writer whose arenas are `arena_size` bytes (larger for a segment
    /// that does not fit), at most `max_arenas` of them alive at once.
    pub fn new(arena_size: usize, max_arenas: usize) -> Self {
        Self {
            arena_size: arena_size.max(64 * 1024),
            max_arenas: max_arenas.max(2),
            current: None,
            fill: 0,
            seg_start: 0,
            older: Vec::new(),
            punch: true,
        }
    }

    /// Whether reusing an arena first drops its pages (default: yes). Only
    /// needed when segments leave by `splice`/`sendfile`, which keep
    /// references to the pages in socket buffers after the response is
    /// done; with `send` (a copy) rewriting in place is safe and keeps the
    /// store's memory flat instead of a sawtooth of drops and refaults.
    pub fn punch_on_reuse(mut self, punch: bool) -> Self {
        self.punch = punch;
        self
    }

    /// Arenas this writer keeps alive (current and older).
    pub fn arenas(&self) -> usize {
        self.older.len() + usize::from(self.current.is_some())
    }

    /// Bytes of the arenas this writer keeps alive (their sizes; memfd
    /// pages are only used as they are written).
    pub fn arena_bytes(&self) -> usize {
        self.older
            .iter()
            .chain(self.current.as_ref())
            .map(|a| a.cap)
            .sum()
    }

    /// Start a new segment at the current fill mark (an unfinished one is
    /// abandoned: its bytes stay where they are, unreferenced by a segment).
    pub fn begin(&mut self) {
        self.seg_start = self.fill;
    }

    /// Bytes of the segment being written so far.
    pub fn segment_len(&self) -> usize {
        self.fill - self.seg_start
    }

    /// Append `data` to the segment being written and return the range it
    /// now occupies.
    pub fn write(&mut self, data: &[u8]) -> Result<SegmentBytes, StoreError> {
        let seg_len = self.fill - self.seg_start;
        let room = self.current.as_ref().map_or(0, |a| a.cap - self.fill);
        if room < data.len() {
            self.relocate(seg_len + data.len())?;
        }
        let arena = self.current.as_ref().expect("an arena after relocate");
        // SAFETY: fill + data.len() <= cap (ensured above); the bytes at
        // [fill, cap) have not been handed out in any SegmentBytes (every
        // range handed out ends at or before `fill`), and the arena was
        // rewound only while this writer held its only reference, so no one
        // reads this range while we write it.
        unsafe {
            std::ptr::copy_nonoverlapping(
                data.as_ptr(),
                arena.map.as_mut_ptr().add(self.fill),
                data.len(),
            );
        }
        let off = self.fill;
        self.fill += data.len();
        Ok(SegmentBytes {
            arena: arena.clone(),
            off,
            len: data.len(),
        })
    }

    /// The segment written since [`begin`](Self::begin), as one range; the
    /// next segment starts after it.
    pub fn finish(&mut self) -> Option<SegmentBytes> {
        let arena = self.current.as_ref()?;
        let s = SegmentBytes {
            arena: arena.clone(),
            off: self.seg_start,
            len: self.fill - self.seg_start,
        };
        self.seg_start = self.fill;
        Some(s)
    }

    /// Move to an arena with room for `need` bytes, carrying over the part
    /// of the current segment already written.
    fn relocate(&mut self, need: usize) -> Result<(), StoreError> {
        let cap = self.arena_size.max(need.next_power_of_two());
        // Reuse the oldest arena nobody else holds, if it is big enough.
        let mut next = None;
        if let Some(i) = self
            .older
            .iter_mut()
            .position(|a| a.cap >= cap && Arc::get_mut(a).is_some())
        {
            next = Some(self.older.remove(i));
        }
        // Drop unreferenced arenas beyond what we might reuse soon.
        self.older.retain_mut(|a| Arc::get_mut(a).is_none());
        let next = match next {
            Some(a) => {
                if self.punch {
                    a.rewind()?;
                }
                a
            }
            None => {
                if self.arenas() >= self.max_arenas {
                    return Err(StoreError::Full {
                        arenas: self.arenas(),
                        mib: self.arena_size >> 20,
                    });
                }
                Arc::new(Arena::new(cap)?)
            }
        };
        let carried = self.fill - self.seg_start;
        if let Some(old) = self.current.take() {
            if carried > 0 {
                // SAFETY: both ranges are inside their mappings (carried <=
                // old fill <= old cap; carried < need <= new cap); the new
                // arena is referenced only by us (fresh, or get_mut
                // succeeded), and the old bytes were written by us and are
                // only read here.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        old.map.as_ptr().add(self.seg_start),
                        next.map.as_mut_ptr(),
                        carried,
                    );
                }
            }
            self.older.push(old);
        }
        self.current = Some(next);
        self.seg_start = 0;
        self.fill = carried;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_keep_their_bytes_while_held_and_arenas_are_reused_after() {
        let mut w = SegmentWriter::new(64 * 1024, 8);
        let mut held = Vec::new();
        for i in 0..40u8 {
            w.begin();
            w.write(&[i; 10_000]).unwrap();
            w.write(&[i.wrapping_add(1); 5_000]).unwrap();
            let s = w.finish().unwrap();
            assert_eq!(s.len(), 15_000);
            if i % 10 == 0 {
                held.push((i, s));
            }
        }
        // 40 x 15 kB through 64 kB arenas: arenas were reused (at most 8 alive).
        assert!(w.arenas() <= 8, "{} arenas", w.arenas());
        for (i, s) in &held {
            let b = s.as_ref();
            assert!(b[..10_000].iter().all(|&x| x == *i));
            assert!(b[10_000..].iter().all(|&x| x == i.wrapping_add(1)));
            assert_eq!(&s.to_bytes()[..], b);
        }
    }

    /// `sendfile`/`splice` put references to the memfd's pages into socket
    /// buffers, where they stay until the peer reads them, long after the
    /// response (and its `SegmentBytes`) is done. Reusing the arena must not
    /// change what such a slow reader still receives.
    #[test]
    fn bytes_queued_by_sendfile_survive_arena_reuse() {
        use std::io::Read;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let tx = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut rx, _) = l.accept().unwrap();
        let mut w = SegmentWriter::new(64 * 1024, 2);
        w.begin();
        w.write(&[0xAA; 40_000]).unwrap();
        let s = w.finish().unwrap();
        let (fd, off) = s.file_range();
        let mut o = off as libc::off_t;
        // SAFETY: both descriptors are open; `o` is a live local.
        let n = unsafe { libc::sendfile(tx.as_raw_fd(), fd, &mut o, s.len()) };
        assert_eq!(n, 40_000, "sendfile: {}", std::io::Error::last_os_error());
        drop(s);
        // Fill the arenas over and over: the first one is rewound and
        // rewritten while the reader has not read a byte yet.
        for i in 0..8u8 {
            w.begin();
            w.write(&[i; 40_000]).unwrap();
            w.finish().unwrap();
        }
        let mut got = vec![0; 40_000];
        rx.read_exact(&mut got).unwrap();
        assert!(
            got.iter().all(|&b| b == 0xAA),
            "a slow reader got rewritten bytes: first bad at {:?}",
            got.iter().position(|&b| b != 0xAA)
        );
    }

    #[test]
    fn a_segment_larger_than_an_arena_moves_to_a_bigger_one() {
        let mut w = SegmentWriter::new(64 * 1024, 4);
        w.begin();
        let first = w.write(&[7; 50_000]).unwrap();
        w.write(&[8; 50_000]).unwrap();
        let s = w.finish().unwrap();
        assert_eq!(s.len(), 100_000);
        assert!(s.as_ref()[..50_000].iter().all(|&x| x == 7));
        assert!(s.as_ref()[50_000..].iter().all(|&x| x == 8));
        // The per-write range handed out before the move is still intact.
        assert!(first.as_ref().iter().all(|&x| x == 7));
    }

    #[test]
    fn a_full_store_is_an_error_not_an_overwrite() {
        let mut w = SegmentWriter::new(64 * 1024, 2);
        let mut held = Vec::new();
        let mut failed = false;
        for _ in 0..10 {
            w.begin();
            match w.write(&[1; 60_000]) {
                Ok(_) => held.push(w.finish().unwrap()),
                Err(StoreError::Full { .. }) => {
                    failed = true;
                    break;
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert!(failed);
        assert!(held.iter().all(|s| s.as_ref().iter().all(|&x| x == 1)));
        drop(held);
        w.begin();
        w.write(&[2; 60_000]).unwrap();
    }
}
