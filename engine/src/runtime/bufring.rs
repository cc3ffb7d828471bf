//! A provided-buffer ring (`IORING_REGISTER_PBUF_RING`): the kernel picks a
//! free buffer for each multishot receive, so no connection owns a receive
//! buffer while it is idle.
//!
//! Layout shared with the kernel: an array of `io_uring_buf { addr: u64,
//! len: u32, bid: u16, resv: u16 }`; the `resv` field of entry 0 is the ring's
//! tail, which we advance (release store) after filling entries. The kernel
//! advances its head privately.
use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};

use super::ring::Ring;

const ENTRY_SIZE: usize = 16;

/// Anonymous private mapping, unmapped on drop.
#[derive(Debug)]
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

impl Mapping {
    fn new(len: usize) -> io::Result<Self> {
        // SAFETY: anonymous private mapping with no fd; arguments valid; the
        // result is checked for MAP_FAILED.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            ptr: NonNull::new(p.cast()).expect("mmap returned null"),
            len,
        })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: ptr/len are exactly what mmap returned; nothing uses the
        // mapping after drop (the owner unregisters or drops the ring first).
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// A registered buffer ring of `count` buffers of `size` bytes, group `bgid`.
#[derive(Debug)]
pub struct BufRing {
    ring: Mapping,
    bufs: Mapping,
    count: u16,
    size: u32,
    bgid: u16,
    tail: u16,
}

impl BufRing {
    /// Allocate, register with `ring` under group `bgid`, and provide every
    /// buffer. `count` must be a power of two ≤ 32768.
    pub fn new(ring: &Ring, bgid: u16, count: u16, size: u32) -> io::Result<Self> {
        if !count.is_power_of_two() || count > 32768 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "buffer count must be a power of two <= 32768",
            ));
        }
        let ring_len = (count as usize * ENTRY_SIZE).next_multiple_of(4096);
        let ring_mem = Mapping::new(ring_len)?;
        let bufs = Mapping::new(count as usize * size as usize)?;
        // SAFETY: ring_mem is page aligned, holds `count` entries and lives
        // as long as this BufRing; the owner drops the io_uring (which
        // unregisters the group) before this value (field order in users).
        unsafe {
            ring.submitter().register_buf_ring_with_flags(
                ring_mem.ptr.as_ptr() as u64,
                count,
                bgid,
                0,
            )?;
        }
        let mut me = Self {
            ring: ring_mem,
            bufs,
            count,
            size,
            bgid,
            tail: 0,
        };
        for bid in 0..count {
            me.write_entry(bid);
        }
        me.publish();
        Ok(me)
    }

    /// The buffer group id to pass to receives.
    pub fn group(&self) -> u16 {
        self.bgid
    }

    /// Size of each buffer.
    pub fn buffer_size(&self) -> u32 {
        self.size
    }

    /// The first `len` bytes of buffer `bid`, as filled by a completion.
    pub fn get(&self, bid: u16, len: usize) -> &[u8] {
        assert!(bid < self.count && len <= self.size as usize);
        // SAFETY: bid < count so the range lies inside `bufs`; the kernel
        // wrote `len` bytes into this buffer and has handed it to us (it is
        // not in the ring until `recycle`), so nothing writes it meanwhile.
        unsafe {
            std::slice::from_raw_parts(
                self.bufs
                    .ptr
                    .as_ptr()
                    .add(bid as usize * self.size as usize),
                len,
            )
        }
    }

    /// Give buffer `bid` back to the kernel.
    pub fn recycle(&mut self, bid: u16) {
        assert!(bid < self.count);
        self.write_entry(bid);
        self.publish();
    }

    fn write_entry(&mut self, bid: u16) {
        let idx = (self.tail & (self.count - 1)) as usize;
        let addr = self.bufs.ptr.as_ptr() as u64 + bid as u64 * self.size as u64;
        // SAFETY: idx < count, so the 16-byte entry lies inside `ring`. The
        // kernel only reads entries between its head and our published tail,
        // and this one is past the tail until `publish`. We write addr, len
        // and bid (bytes 0..14) and never the `resv` field at 14..16, which
        // for entry 0 is the shared tail.
        unsafe {
            let e = self.ring.ptr.as_ptr().add(idx * ENTRY_SIZE);
            std::ptr::write_unaligned(e.cast::<u64>(), addr);
            std::ptr::write_unaligned(e.add(8).cast::<u32>(), self.size);
            std::ptr::write_unaligned(e.add(12).cast::<u16>(), bid);
        }
        self.tail = self.tail.wrapping_add(1);
    }

    fn publish(&self) {
        // SAFETY: offset 14 of entry 0 is the ring tail (struct
        // io_uring_buf_ring), 2-byte aligned inside our page-aligned
        // mapping; the kernel reads it with an acquire load, so a release
        // store orders the entry writes before it.
        let tail = unsafe { &*(self.ring.ptr.as_ptr().add(14) as *const AtomicU16) };
        tail.store(self.tail, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::ring::{Token, buffer_id};
    use io_uring::{opcode, types};
    use std::io::Write;
    use std::os::fd::AsRawFd;

    #[test]
    fn receive_picks_a_provided_buffer() {
        let mut ring = Ring::new(32, 0).unwrap();
        let mut bufs = BufRing::new(&ring, 3, 8, 64).unwrap();
        let (mut a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        for round in 0..20u8 {
            a.write_all(&[round; 10]).unwrap();
            let recv = opcode::Recv::new(types::Fd(b.as_raw_fd()), std::ptr::null_mut(), 64)
                .buf_group(bufs.group())
                .build()
                .flags(io_uring::squeue::Flags::BUFFER_SELECT)
                .user_data(Token::new(1, 0, 0).0);
            // SAFETY: buffer memory is owned by `bufs`, alive for the test.
            unsafe { ring.push(&recv) };
            ring.submit_and_wait(1).unwrap();
            let mut out = Vec::new();
            ring.drain_completions(&mut out);
            let (_, res, flags) = out[0];
            assert_eq!(res, 10);
            let bid = buffer_id(flags).expect("a buffer was selected");
            assert_eq!(bufs.get(bid, 10), &[round; 10]);
            bufs.recycle(bid);
        }
    }
}
