//! Running a piece of a test inside a private network namespace, so a test
//! can use fixed ports (spate's default 8080) without colliding with anything
//! else on the machine.
use std::io;

/// Run `f` on a new thread that first moves into a new, private network
/// namespace whose loopback is up. Sockets created and processes spawned by
/// that thread (e.g. `spate`, curl) live in it; the rest of the test process
/// does not. Needs CAP_SYS_ADMIN (root, as in CI); returns the error from
/// unshare(2) otherwise. A panic in `f` is propagated.
pub fn in_private_netns<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> io::Result<T> {
    let handle = std::thread::spawn(move || -> io::Result<T> {
        // SAFETY: unshare(2) only changes this thread's namespaces; no memory
        // is passed.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            return Err(io::Error::last_os_error());
        }
        loopback_up()?;
        Ok(f())
    });
    match handle.join() {
        Ok(r) => r,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// `ip link set lo up`, without needing iproute2.
fn loopback_up() -> io::Result<()> {
    // SAFETY: socket(2) with constant arguments.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    let result = (|| {
        // SAFETY: fd is our socket, req a valid ifreq that outlives the call.
        if unsafe { libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
        unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
        // SAFETY: fd is our socket, req a valid ifreq that outlives the call.
        if unsafe { libc::ioctl(fd, libc::SIOCSIFFLAGS, &req) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    })();
    // SAFETY: closing the socket we opened above, once.
    unsafe { libc::close(fd) };
    result
}

/// Inside a namespace from [`in_private_netns`]: set the multicast flag on
/// its loopback and route 239.0.0.0/8 there, so multicast tests never touch
/// the host's interfaces (`ip` from iproute2).
pub fn multicast_on_loopback() -> Result<(), String> {
    for cmd in [
        &["ip", "link", "set", "lo", "multicast", "on"][..],
        &["ip", "route", "add", "239.0.0.0/8", "dev", "lo"][..],
    ] {
        let out = std::process::Command::new(cmd[0])
            .args(&cmd[1..])
            .output()
            .map_err(|e| format!("{cmd:?}: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "{cmd:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    Ok(())
}
