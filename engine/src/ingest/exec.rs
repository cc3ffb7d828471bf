//! Running the commands of `ts-exec:` sources: the `spate-exec` thread.
//!
//! Starting a process (fork/exec), reading its stderr and reaping it are
//! blocking work, so none of it runs on a worker loop. One thread per
//! process, started by the server before the workers when any stream has a
//! `ts-exec:` source, does all of it:
//!
//! - A worker sends [`ExecRequest`]s (spawn, kill) over a std channel and
//!   writes the thread's eventfd; the thread sleeps in `poll(2)` on that
//!   eventfd, every child's stderr pipe and every child's pidfd.
//! - Spawn: `std::process::Command` with the configured argv (no shell),
//!   stdin `/dev/null`, stdout and stderr piped, no signal blocked (spate's
//!   threads block the ones `sigwait` takes), in a new session (`setsid`,
//!   so the child leads its own process group and a kill reaches everything
//!   it started, ffmpeg's helpers included) with `PR_SET_PDEATHSIG = SIGKILL`
//!   (if spate itself is killed, the command dies with it). The stdout pipe's
//!   read end goes to the worker in [`ExecEvent::Started`]; the worker reads
//!   it through its ring.
//! - stderr: read here, split into lines, logged with the source's name
//!   (lines cut at [`MAX_LINE`] bytes, at most [`LINES_PER_WINDOW`] lines per
//!   source per [`LINE_WINDOW`]; the rest is counted and the count logged).
//! - Kill: SIGTERM to the process group, SIGKILL [`KILL_AFTER`] later if it
//!   is still there. Exit: reaped (`waitpid`), what is left of its group is
//!   SIGKILLed, and the worker gets [`ExecEvent::Exited`].
//! - Shutdown ([`ExecThread::stop`]): every group gets SIGTERM, then SIGKILL
//!   after [`KILL_AFTER`]; the thread returns when every child is reaped.
use std::io::{self, Read};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, TryRecvError, channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Longest stderr line logged, bytes (the rest of the line is cut).
pub const MAX_LINE: usize = 512;
/// Most stderr lines logged per source per [`LINE_WINDOW`].
pub const LINES_PER_WINDOW: u32 = 20;
/// The stderr rate-limit window.
pub const LINE_WINDOW: Duration = Duration::from_secs(10);
/// How long a process group has between SIGTERM and SIGKILL.
pub const KILL_AFTER: Duration = Duration::from_secs(2);

/// What a worker asks of the exec thread.
#[derive(Debug)]
enum ExecRequest {
    Spawn {
        worker: usize,
        source: u32,
        run: u32,
        argv: Arc<[String]>,
        label: Arc<str>,
    },
    Kill {
        worker: usize,
        source: u32,
        run: u32,
    },
    Shutdown,
}

/// What the exec thread tells a worker about one run of one source's
/// command (`source` = the worker's index of the source, `run` = the number
/// the worker gave that start).
#[derive(Debug)]
pub enum ExecEvent {
    /// The command runs; its stdout is `stdout` (blocking read end, close on
    /// exec).
    Started {
        /// Source index on the worker.
        source: u32,
        /// Run number.
        run: u32,
        /// Process id (= its process group and session).
        pid: u32,
        /// The read end of its stdout.
        stdout: OwnedFd,
    },
    /// The command could not be started (no such program, not executable,
    /// fork failed...).
    Failed {
        /// Source index on the worker.
        source: u32,
        /// Run number.
        run: u32,
        /// Why.
        error: String,
    },
    /// The command exited (or was killed) and was reaped.
    Exited {
        /// Source index on the worker.
        source: u32,
        /// Run number.
        run: u32,
        /// `exit status: 1`, `signal: 15 (SIGTERM)`...
        status: String,
        /// How long it ran.
        ran: Duration,
    },
}

/// A worker's end of the exec thread.
#[derive(Debug)]
pub struct WorkerExec {
    index: usize,
    requests: Sender<ExecRequest>,
    wake: Arc<OwnedFd>,
    events: Receiver<ExecEvent>,
}

impl WorkerExec {
    /// Start `argv` for source `source`, run `run`; answered by
    /// [`ExecEvent::Started`] or [`ExecEvent::Failed`].
    pub fn spawn(&self, source: u32, run: u32, argv: Arc<[String]>, label: Arc<str>) {
        self.request(ExecRequest::Spawn {
            worker: self.index,
            source,
            run,
            argv,
            label,
        });
    }

    /// Stop run `run` of source `source` (SIGTERM, then SIGKILL); answered
    /// by [`ExecEvent::Exited`] (at once if it had exited already, nothing if
    /// it was never started).
    pub fn kill(&self, source: u32, run: u32) {
        self.request(ExecRequest::Kill {
            worker: self.index,
            source,
            run,
        });
    }

    /// The next event for this worker, if any (the exec thread writes the
    /// worker's mesh eventfd after sending one).
    pub fn try_event(&self) -> Option<ExecEvent> {
        self.events.try_recv().ok()
    }

    fn request(&self, r: ExecRequest) {
        if self.requests.send(r).is_ok() {
            wake(self.wake.as_raw_fd());
        }
    }
}

/// The running exec thread.
#[derive(Debug)]
pub struct ExecThread {
    requests: Sender<ExecRequest>,
    wake: Arc<OwnedFd>,
    handle: Option<JoinHandle<()>>,
}

impl ExecThread {
    /// Start the thread. `worker_wakers[i]` is the eventfd that wakes worker
    /// `i`'s ring (a duplicate of its mesh eventfd); returns the thread and
    /// each worker's end.
    pub fn start(worker_wakers: Vec<OwnedFd>) -> io::Result<(ExecThread, Vec<WorkerExec>)> {
        // SAFETY: eventfd has no memory arguments; the result is checked.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor that nothing else owns.
        let wake_fd = Arc::new(unsafe { OwnedFd::from_raw_fd(fd) });
        let (req_tx, req_rx) = channel();
        let mut to_workers = Vec::new();
        let mut ends = Vec::new();
        for (index, waker) in worker_wakers.into_iter().enumerate() {
            let (tx, rx) = channel();
            to_workers.push((tx, waker));
            ends.push(WorkerExec {
                index,
                requests: req_tx.clone(),
                wake: wake_fd.clone(),
                events: rx,
            });
        }
        let thread_wake = wake_fd.clone();
        let handle = std::thread::Builder::new()
            .name("spate-exec".into())
            .spawn(move || {
                Runner {
                    requests: req_rx,
                    wake: thread_wake,
                    workers: to_workers,
                    children: Vec::new(),
                    stopping: false,
                }
                .run()
            })?;
        Ok((
            ExecThread {
                requests: req_tx,
                wake: wake_fd,
                handle: Some(handle),
            },
            ends,
        ))
    }

    /// Kill every child (SIGTERM, SIGKILL after [`KILL_AFTER`]), reap them
    /// and end the thread.
    pub fn stop(&mut self) {
        if let Some(h) = self.handle.take() {
            if self.requests.send(ExecRequest::Shutdown).is_ok() {
                wake(self.wake.as_raw_fd());
            }
            if h.join().is_err() {
                tracing::error!("the spate-exec thread panicked");
            }
        }
    }
}

impl Drop for ExecThread {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A duplicate of `fd` (close on exec), e.g. of a worker's mesh eventfd.
pub fn duplicate(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: the caller passes a descriptor that is open for the duration
    // of this call (the mesh owns it); it is only duplicated.
    unsafe { BorrowedFd::borrow_raw(fd) }.try_clone_to_owned()
}

/// Make `cmd`'s child a process of its own, as every command Spate runs
/// (`ts-exec:` sources, trigger handlers) must be: no signal blocked (spate
/// blocks SIGINT/SIGTERM/SIGHUP in every thread for `sigwait`, and the mask
/// survives exec, so the command would ignore our SIGTERM); its own session
/// and process group (a kill of the group reaches whatever it starts); and
/// SIGKILLed if the spawning thread dies (spate's threads that spawn live
/// until their children are reaped).
pub fn isolate(cmd: &mut Command) {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs in the forked child before exec and only
    // makes async-signal-safe calls (sigemptyset, pthread_sigmask, setsid,
    // prctl, getppid) on its own stack; it touches no memory shared with
    // the parent and allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::pthread_sigmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            );
            if libc::getppid() != parent {
                return Err(io::Error::other("spate exited while starting it"));
            }
            Ok(())
        });
    }
}

/// Wake the reader of eventfd `fd`.
pub fn wake(fd: RawFd) {
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a live u64 to an eventfd; a full counter
    // (EAGAIN) still leaves the reader woken.
    unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
}

/// A process the thread started and has not reaped yet.
struct Running {
    worker: usize,
    source: u32,
    run: u32,
    label: Arc<str>,
    child: Child,
    pid: i32,
    pidfd: Option<OwnedFd>,
    stderr: Option<ChildStderr>,
    line: Vec<u8>,
    /// The line being collected is longer than [`MAX_LINE`]: drop the rest.
    cut: bool,
    window_start: Instant,
    lines_in_window: u32,
    suppressed: u64,
    started: Instant,
    kill_at: Option<Instant>,
}

impl Running {
    /// Read what its stderr has (non-blocking) and log the whole lines.
    fn read_stderr(&mut self) {
        let mut buf = [0u8; 4096];
        loop {
            let Some(err) = self.stderr.as_mut() else {
                return;
            };
            match err.read(&mut buf) {
                Ok(0) => {
                    self.stderr = None;
                    self.flush_line();
                    return;
                }
                Ok(n) => {
                    for &b in &buf[..n] {
                        if b == b'\n' || b == b'\r' {
                            self.flush_line();
                        } else if self.line.len() < MAX_LINE {
                            self.line.push(b);
                        } else {
                            self.cut = true;
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::debug!("{}: stderr read failed: {e}", self.label);
                    self.stderr = None;
                    return;
                }
            }
        }
    }

    fn flush_line(&mut self) {
        if self.line.is_empty() && !self.cut {
            return;
        }
        let now = Instant::now();
        if now >= self.window_start + LINE_WINDOW {
            if self.suppressed > 0 {
                tracing::info!(
                    "{}: {} more stderr lines not shown (at most {LINES_PER_WINDOW} per {} s)",
                    self.label,
                    self.suppressed,
                    LINE_WINDOW.as_secs()
                );
            }
            self.window_start = now;
            self.lines_in_window = 0;
            self.suppressed = 0;
        }
        if self.lines_in_window < LINES_PER_WINDOW {
            self.lines_in_window += 1;
            let text = String::from_utf8_lossy(&self.line);
            let more = if self.cut { " [cut]" } else { "" };
            tracing::info!("{}: stderr: {}{more}", self.label, text.trim_end());
        } else {
            self.suppressed += 1;
        }
        self.line.clear();
        self.cut = false;
    }

    /// Whether it exited, without reaping it (`waitid` with `WNOWAIT`).
    fn exited(&self) -> bool {
        // SAFETY: siginfo_t is plain data; waitid fills it. WNOHANG: never
        // blocks; WNOWAIT: the child stays a zombie (reaped by `wait`).
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: see above; `info` is a live siginfo_t.
        let rc = unsafe {
            libc::waitid(
                libc::P_PID,
                self.pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        // SAFETY: waitid filled `info` (si_pid stays 0 when nothing exited).
        rc < 0 || unsafe { info.si_pid() } != 0
    }

    fn signal_group(&self, sig: i32) {
        // SAFETY: kill(2) on a process group we created (setsid in the
        // child). The leader is not reaped while this runs, so its pid, the
        // group id, cannot have been reused.
        unsafe { libc::kill(-self.pid, sig) };
    }
}

struct Runner {
    requests: Receiver<ExecRequest>,
    wake: Arc<OwnedFd>,
    workers: Vec<(Sender<ExecEvent>, OwnedFd)>,
    children: Vec<Running>,
    stopping: bool,
}

impl Runner {
    fn run(mut self) {
        loop {
            self.wait();
            self.take_requests();
            for c in &mut self.children {
                c.read_stderr();
            }
            self.reap();
            let now = Instant::now();
            for c in &mut self.children {
                if c.kill_at.is_some_and(|t| now >= t) {
                    tracing::info!(
                        "{}: pid {} still running {} s after SIGTERM: SIGKILL",
                        c.label,
                        c.pid,
                        KILL_AFTER.as_secs()
                    );
                    c.signal_group(libc::SIGKILL);
                    c.kill_at = None;
                }
            }
            if self.stopping && self.children.is_empty() {
                return;
            }
        }
    }

    /// Sleep until a request, stderr output, an exit, or a kill deadline.
    fn wait(&mut self) {
        let mut fds = vec![libc::pollfd {
            fd: self.wake.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        let mut poll_exits = false;
        let mut deadline: Option<Instant> = None;
        for c in &self.children {
            if let Some(e) = &c.stderr {
                fds.push(libc::pollfd {
                    fd: e.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                });
            }
            match &c.pidfd {
                Some(p) => fds.push(libc::pollfd {
                    fd: p.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                }),
                None => poll_exits = true,
            }
            if let Some(t) = c.kill_at {
                deadline = Some(deadline.map_or(t, |d| d.min(t)));
            }
        }
        let mut timeout_ms: i32 = -1;
        if let Some(d) = deadline {
            let left = d.saturating_duration_since(Instant::now());
            timeout_ms = left.as_millis().min(60_000) as i32 + 1;
        }
        if poll_exits {
            // No pidfd (Linux < 5.3): look for exits four times a second.
            timeout_ms = if timeout_ms < 0 {
                250
            } else {
                timeout_ms.min(250)
            };
        }
        // SAFETY: fds is a live array of fds.len() pollfds.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
        let mut v = 0u64;
        // SAFETY: reads 8 bytes into a live u64 from our non-blocking
        // eventfd (EAGAIN when it was not written: fine).
        unsafe { libc::read(self.wake.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
    }

    fn take_requests(&mut self) {
        loop {
            match self.requests.try_recv() {
                Ok(ExecRequest::Spawn {
                    worker,
                    source,
                    run,
                    argv,
                    label,
                }) => self.spawn(worker, source, run, &argv, label),
                Ok(ExecRequest::Kill {
                    worker,
                    source,
                    run,
                }) => {
                    let now = Instant::now();
                    for c in &mut self.children {
                        if (c.worker, c.source, c.run) == (worker, source, run)
                            && c.kill_at.is_none()
                        {
                            c.signal_group(libc::SIGTERM);
                            c.kill_at = Some(now + KILL_AFTER);
                        }
                    }
                }
                Ok(ExecRequest::Shutdown) | Err(TryRecvError::Disconnected) => {
                    if !self.stopping {
                        self.stopping = true;
                        let now = Instant::now();
                        for c in &mut self.children {
                            tracing::info!("{}: stopping pid {} (shutdown)", c.label, c.pid);
                            c.signal_group(libc::SIGTERM);
                            c.kill_at = Some(now + KILL_AFTER);
                        }
                    }
                    return;
                }
                Err(TryRecvError::Empty) => return,
            }
        }
    }

    fn spawn(&mut self, worker: usize, source: u32, run: u32, argv: &[String], label: Arc<str>) {
        if self.stopping {
            self.send(
                worker,
                ExecEvent::Failed {
                    source,
                    run,
                    error: "spate is shutting down".into(),
                },
            );
            return;
        }
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        isolate(&mut cmd);
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                self.send(
                    worker,
                    ExecEvent::Failed {
                        source,
                        run,
                        error: format!("cannot start {:?}: {e}", argv[0]),
                    },
                );
                return;
            }
        };
        let pid = child.id() as i32;
        let stdout = child.stdout.take().map(OwnedFd::from);
        let stderr = child.stderr.take();
        if let Some(e) = &stderr {
            // SAFETY: fcntl on the pipe's read end, which we own.
            unsafe {
                let fl = libc::fcntl(e.as_raw_fd(), libc::F_GETFL);
                libc::fcntl(e.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK);
            }
        }
        // SAFETY: pidfd_open takes a pid and flags; the result is checked.
        let pfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        // SAFETY: a non-negative result is a fresh descriptor we own.
        let pidfd = (pfd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(pfd as RawFd) });
        let now = Instant::now();
        self.children.push(Running {
            worker,
            source,
            run,
            label,
            child,
            pid,
            pidfd,
            stderr,
            line: Vec::new(),
            cut: false,
            window_start: now,
            lines_in_window: 0,
            suppressed: 0,
            started: now,
            kill_at: None,
        });
        match stdout {
            Some(stdout) => self.send(
                worker,
                ExecEvent::Started {
                    source,
                    run,
                    pid: pid as u32,
                    stdout,
                },
            ),
            None => unreachable!("stdout was piped"),
        }
    }

    /// Reap children that exited; tell their workers.
    fn reap(&mut self) {
        let mut i = 0;
        while i < self.children.len() {
            if !self.children[i].exited() {
                i += 1;
                continue;
            }
            let mut c = self.children.swap_remove(i);
            // Whatever is left of its group goes while the leader is a
            // zombie (its pid, the group's id, still reserved); then reap.
            c.signal_group(libc::SIGKILL);
            let status = match c.child.wait() {
                Ok(s) => s.to_string(),
                Err(e) => format!("wait failed: {e}"),
            };
            // What it wrote last.
            c.read_stderr();
            c.flush_line();
            if c.suppressed > 0 {
                tracing::info!("{}: {} more stderr lines not shown", c.label, c.suppressed);
            }
            let ran = c.started.elapsed();
            self.send(
                c.worker,
                ExecEvent::Exited {
                    source: c.source,
                    run: c.run,
                    status,
                    ran,
                },
            );
        }
    }

    fn send(&self, worker: usize, ev: ExecEvent) {
        if let Some((tx, waker)) = self.workers.get(worker)
            && tx.send(ev).is_ok()
        {
            wake(waker.as_raw_fd());
        }
    }
}
