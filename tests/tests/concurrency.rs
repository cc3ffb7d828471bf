//! Many clients at once.
use std::io::{BufReader, Write};
use std::sync::{Arc, Barrier};

use spate_tests::{BIG_FILE, Spate, connect, read_response};

/// 200 raw clients at once, each fetching the 256 KiB file twice over one
/// keep-alive connection; every body byte-exact.
#[test]
fn two_hundred_keep_alive_clients_get_exact_bytes() {
    const CLIENTS: usize = 200;
    let s = Spate::start();
    let want = Arc::new(s.file(BIG_FILE));
    let addr = s.addr();
    let barrier = Arc::new(Barrier::new(CLIENTS));
    let handles: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let want = Arc::clone(&want);
            let barrier = Arc::clone(&barrier);
            std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || -> Result<(), String> {
                    let conn = connect(addr).map_err(|e| format!("client {i}: connect: {e}"));
                    // Everyone connects, then everyone asks at once.
                    barrier.wait();
                    let mut conn = conn?;
                    let mut reader = BufReader::new(conn.try_clone().map_err(|e| e.to_string())?);
                    for round in 0..2 {
                        conn.write_all(
                            format!("GET /{BIG_FILE} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes(),
                        )
                        .map_err(|e| format!("client {i} round {round}: write: {e}"))?;
                        let r = read_response(&mut reader, false)
                            .map_err(|e| format!("client {i} round {round}: read: {e}"))?;
                        if r.status != 200 {
                            return Err(format!("client {i} round {round}: {}", r.status_line));
                        }
                        if r.body != *want {
                            return Err(format!(
                                "client {i} round {round}: body differs ({} bytes)",
                                r.body.len()
                            ));
                        }
                    }
                    Ok(())
                })
                .expect("spawn client thread")
        })
        .collect();
    let errors: Vec<String> = handles
        .into_iter()
        .filter_map(|h| h.join().expect("client thread panicked").err())
        .collect();
    assert!(
        errors.is_empty(),
        "{} of {CLIENTS} clients failed; first ones:\n{}",
        errors.len(),
        errors
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    // And the server is still fine.
    s.get("/index.html").assert_status(200);
}
