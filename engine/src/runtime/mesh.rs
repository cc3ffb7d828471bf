//! The cross-core mesh: one bounded queue per ordered pair of endpoints, each
//! used by exactly one producer and one consumer, plus an eventfd per worker
//! to wake its ring.
//!
//! Endpoints `0..workers` are the workers; endpoint `workers` is the control
//! thread (it only sends). Queue `(from, to)` is pushed only by `from` and
//! popped only by `to`, which the [`MeshEndpoint`] API enforces by
//! construction: an endpoint can only push on its own row and pop its own
//! column. `crossbeam_queue::ArrayQueue` is MPMC-safe, so this discipline is
//! for cache behaviour and ordering (per-pair FIFO), not for soundness.
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use crossbeam_queue::ArrayQueue;

/// The shared part of a mesh.
#[derive(Debug)]
pub struct Mesh<T> {
    workers: usize,
    /// Indexed `from * workers + to`, `from` in `0..=workers`.
    queues: Vec<ArrayQueue<T>>,
    wakers: Vec<OwnedFd>,
}

/// One endpoint's view: sends on its own row, receives its own column.
#[derive(Debug)]
pub struct MeshEndpoint<T> {
    me: usize,
    mesh: Arc<Mesh<T>>,
}

impl<T> Mesh<T> {
    /// A mesh for `workers` workers plus one control sender, each queue
    /// holding at most `capacity` messages. Returns the worker endpoints
    /// (index = worker) and the control endpoint.
    #[allow(clippy::type_complexity)]
    pub fn build(
        workers: usize,
        capacity: usize,
    ) -> io::Result<(Vec<MeshEndpoint<T>>, MeshEndpoint<T>)> {
        let mut wakers = Vec::with_capacity(workers);
        for _ in 0..workers {
            // SAFETY: eventfd has no memory arguments; the result is checked.
            let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: fd is a fresh descriptor that nothing else owns.
            wakers.push(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        let queues = (0..(workers + 1) * workers)
            .map(|_| ArrayQueue::new(capacity))
            .collect();
        let mesh = Arc::new(Mesh {
            workers,
            queues,
            wakers,
        });
        let eps = (0..workers)
            .map(|me| MeshEndpoint {
                me,
                mesh: mesh.clone(),
            })
            .collect();
        Ok((eps, MeshEndpoint { me: workers, mesh }))
    }
}

impl<T> MeshEndpoint<T> {
    /// This endpoint's index (`workers` for the control endpoint).
    pub fn index(&self) -> usize {
        self.me
    }

    /// Number of workers.
    pub fn workers(&self) -> usize {
        self.mesh.workers
    }

    /// Queue `msg` for worker `to` without waking it (call [`Self::wake`]
    /// after a batch). Returns the message back when the queue is full: the
    /// caller decides (retry later, drop and count).
    pub fn push(&self, to: usize, msg: T) -> Result<(), T> {
        assert!(
            to < self.mesh.workers && to != self.me,
            "bad mesh target {to}"
        );
        self.mesh.queues[self.me * self.mesh.workers + to].push(msg)
    }

    /// Wake worker `to`'s ring.
    pub fn wake(&self, to: usize) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to an eventfd we own; a
        // full counter (EAGAIN) still leaves the reader woken, so the result
        // does not matter.
        unsafe {
            libc::write(
                self.mesh.wakers[to].as_raw_fd(),
                (&one as *const u64).cast(),
                8,
            )
        };
    }

    /// Push and wake.
    pub fn send(&self, to: usize, msg: T) -> Result<(), T> {
        self.push(to, msg)?;
        self.wake(to);
        Ok(())
    }

    /// This worker's eventfd (read it through the ring to sleep on it).
    pub fn eventfd(&self) -> RawFd {
        self.mesh.wakers[self.me].as_raw_fd()
    }

    /// Pop every queued message addressed to this worker, calling
    /// `f(from, msg)`; per sender, messages come in the order sent.
    pub fn drain(&self, mut f: impl FnMut(usize, T)) -> usize {
        let w = self.mesh.workers;
        assert!(self.me < w, "the control endpoint receives nothing");
        let mut n = 0;
        for from in 0..=w {
            if from == self.me {
                continue;
            }
            let q = &self.mesh.queues[from * w + self.me];
            while let Some(m) = q.pop() {
                f(from, m);
                n += 1;
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait_eventfd(fd: RawFd) {
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd; the buffer read is a live u64.
        unsafe {
            libc::poll(&mut pfd, 1, 100);
            let mut v = 0u64;
            libc::read(fd, (&mut v as *mut u64).cast(), 8);
        }
    }

    /// Every worker sends a numbered stream to every other worker, through
    /// small queues (so producers hit full queues and retry), while the
    /// control endpoint sends too. Each receiver checks per-sender order and
    /// totals.
    #[test]
    #[allow(clippy::needless_range_loop)]
    fn stress_all_pairs_in_order() {
        const W: usize = 4;
        const N: u64 = 200_000;
        let (eps, control) = Mesh::<(usize, u64)>::build(W, 64).unwrap();
        let handles: Vec<_> = eps
            .into_iter()
            .map(|ep| {
                std::thread::spawn(move || {
                    let me = ep.index();
                    let mut next_out = [0u64; W];
                    let mut next_in = [0u64; W + 1];
                    let expect_total = N * (W as u64 - 1) + 1000;
                    let mut got = 0u64;
                    loop {
                        let mut progressed = false;
                        for to in 0..W {
                            if to == me {
                                continue;
                            }
                            while next_out[to] < N {
                                match ep.push(to, (me, next_out[to])) {
                                    Ok(()) => {
                                        next_out[to] += 1;
                                        progressed = true;
                                    }
                                    Err(_) => break,
                                }
                            }
                            ep.wake(to);
                        }
                        got += ep.drain(|from, (claimed, seq)| {
                            assert_eq!(from, claimed);
                            assert_eq!(seq, next_in[from], "out of order from {from}");
                            next_in[from] += 1;
                        }) as u64;
                        let sending = next_out.iter().enumerate().any(|(i, &n)| i != me && n < N);
                        if got == expect_total && !sending {
                            break;
                        }
                        if !progressed {
                            wait_eventfd(ep.eventfd());
                        }
                    }
                    next_in
                })
            })
            .collect();
        for to in 0..W {
            for seq in 0..1000 {
                let mut m = (W, seq);
                while let Err(back) = control.send(to, m) {
                    m = back;
                    std::thread::yield_now();
                }
            }
        }
        for h in handles {
            let next_in = h.join().unwrap();
            assert_eq!(next_in[W], 1000);
        }
    }
}
