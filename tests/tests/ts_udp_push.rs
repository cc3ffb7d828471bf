//! MPEG-TS over UDP out: a `[[push]] stream = "live+" target =
//! "tsudp://239.…"` rule pushes every wildcard stream of `live` to a
//! multicast group while it is live, paced by its PCR. ffmpeg receives the
//! group and decodes with zero errors and no continuity errors; a receiver
//! of our own checks the pacing (no GOP bursts: datagram arrival follows the
//! PCR within a few milliseconds).
//!
//! Multicast only inside a private network namespace this test creates; it
//! needs root (CI is root) and says so loudly otherwise.
use std::net::{Ipv4Addr, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use spate_packager::ts::packet_pcr;
use spate_tests::{
    ChildGuard, Spate, TestStream, ffmpeg_bin, in_private_netns, multicast_on_loopback, publish,
};

const GROUP: &str = "239.2.2.2";
const PORT: u16 = 6000;

/// Receive the group for `secs`: (datagrams, bytes, spread of arrival time
/// minus PCR time in ms over the PCR-carrying datagrams, the most datagrams
/// that arrived within any 5 ms).
fn receive_pacing(secs: u64) -> (usize, usize, f64, usize) {
    let s = UdpSocket::bind(("0.0.0.0", PORT)).expect("bind receiver");
    s.join_multicast_v4(&GROUP.parse().unwrap(), &Ipv4Addr::LOCALHOST)
        .expect("join group");
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 2048];
    let (mut n, mut bytes) = (0, 0);
    let mut offsets = Vec::new();
    let mut arrivals = Vec::new();
    let mut first_pcr: Option<(u64, Instant)> = None;
    while start.elapsed() < Duration::from_secs(secs) {
        let Ok(len) = s.recv(&mut buf) else { continue };
        let now = Instant::now();
        n += 1;
        bytes += len;
        arrivals.push(now);
        for p in buf[..len].chunks(188) {
            if let Some(pcr) = packet_pcr(p) {
                let (p0, t0) = *first_pcr.get_or_insert((pcr, now));
                if pcr >= p0 {
                    let media_ms = (pcr - p0) as f64 / 27_000.0;
                    let wall_ms = now.duration_since(t0).as_secs_f64() * 1000.0;
                    offsets.push(wall_ms - media_ms);
                }
            }
        }
    }
    let spread = if offsets.len() > 10 {
        // Skip the first second (the receiver's anchor may fall mid-frame).
        let tail = &offsets[offsets.len() / 4..];
        let min = tail.iter().cloned().fold(f64::MAX, f64::min);
        let max = tail.iter().cloned().fold(f64::MIN, f64::max);
        max - min
    } else {
        f64::MAX
    };
    let mut burst = 0;
    let mut j = 0;
    for i in 0..arrivals.len() {
        while arrivals[i].duration_since(arrivals[j]) > Duration::from_millis(5) {
            j += 1;
        }
        burst = burst.max(i - j + 1);
    }
    (n, bytes, spread, burst)
}

#[test]
fn push_to_multicast_is_paced_by_pcr_and_decodes_in_ffmpeg() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        panic!(
            "\n\n*** push_to_multicast_is_paced_by_pcr_and_decodes_in_ffmpeg needs root (a private \
             network namespace for multicast); run the tests as root, as CI does.\n\n"
        );
    }
    let result = in_private_netns(|| -> Result<(), String> {
        multicast_on_loopback()?;
        let s = Spate::builder()
            .label("udp_push")
            .stream("live", &[])
            .push("live+", &format!("tsudp://{GROUP}:{PORT}?ttl=1&iface=lo"))
            .start();
        // ffmpeg listens first, so it sees the push from its first packets
        // (PAT/PMT and a keyframe); a receiver joining mid-GOP would
        // rightly report undecodable frames until the next keyframe.
        let mut cmd = Command::new(ffmpeg_bin());
        cmd.args([
            "-nostdin",
            "-v",
            "debug",
            "-i",
            &format!(
                "udp://{GROUP}:{PORT}?localaddr=127.0.0.1&reuse=1&fifo_size=1000000&overrun_nonfatal=1"
            ),
            "-t",
            "6",
            "-f",
            "null",
            "-",
        ]);
        let mut rx = ChildGuard::spawn(cmd, s.dir(), "ffmpeg-rx");
        std::thread::sleep(Duration::from_secs(1));
        let mut p = publish(
            s.dir(),
            &s.rtmp_url("live", "live+out"),
            &TestStream {
                seconds: 40,
                ..TestStream::sized(640, 360)
            },
        );
        let status = rx.wait_exit(Duration::from_secs(40));
        let log = rx.stderr();
        assert!(
            status.is_some_and(|s| s.success()),
            "ffmpeg receiver: {status:?}\n{log}"
        );
        let errors: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("error") || l.contains("Error") || l.contains("non monoton"))
            .filter(|l| !l.contains("error_recognition") && !l.contains("err_detect"))
            .filter(|l| !l.contains("0 decoding errors"))
            .collect();
        assert!(errors.is_empty(), "decode errors:\n{}", errors.join("\n"));
        let cc = log.matches("Continuity check failed").count();
        assert_eq!(cc, 0, "continuity errors in the pushed TS");
        assert!(log.contains("h264") && log.contains("aac"), "{log}");
        assert!(p.running(), "publisher: {}", p.stderr());
        // Pacing, by a receiver of our own.
        let (n, bytes, spread, burst) = receive_pacing(6);
        let mbps = bytes as f64 * 8.0 / 6.0 / 1e6;
        assert!(n > 200, "only {n} datagrams in 6 s\n{}", s.stderr());
        assert!(
            (0.4..4.0).contains(&mbps),
            "{mbps:.2} Mbit/s received for a ~1.2 Mbit/s stream"
        );
        assert!(
            spread < 30.0,
            "datagram arrival strays {spread:.1} ms from the PCR clock\n{}",
            s.stderr()
        );
        // A 2 s GOP sent in one go would put hundreds of datagrams in 5 ms;
        // paced, a 1 Mbit/s stream has ~1 per 10 ms (a keyframe's packets
        // are spread over the frame interval).
        assert!(
            burst < 40,
            "{burst} datagrams arrived within 5 ms: not paced"
        );
        eprintln!(
            "push: {n} datagrams, {mbps:.2} Mbit/s, PCR spread {spread:.2} ms, burst {burst}/5 ms"
        );
        Ok(())
    });
    match result {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("namespace setup failed: {e}"),
        Err(e) => panic!("cannot create a network namespace: {e}"),
    }
}
