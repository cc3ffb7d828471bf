//! The static root every test server gets, and the files outside it that
//! traversal tests try to reach.
use std::path::Path;

/// 256 KiB of pseudo-random bytes.
pub const BIG_FILE: &str = "big.bin";
/// Length of [`BIG_FILE`].
pub const BIG_FILE_LEN: usize = 256 * 1024;
/// A 1 KiB HLS playlist.
pub const PLAYLIST_FILE: &str = "playlist.m3u8";
/// 5 MiB of pseudo-random bytes (only with [`crate::SpateBuilder::with_large_file`]).
pub const LARGE_FILE: &str = "large.bin";
/// Length of [`LARGE_FILE`].
pub const LARGE_FILE_LEN: usize = 5 * 1024 * 1024;
/// Content of `<scratch>/outside/secret.txt`, next to (not inside) the root.
/// No response may ever contain it.
pub const OUTSIDE_SECRET: &str = "SPATE-TEST-SECRET-OUTSIDE-THE-ROOT";

/// Fixture file name and the `Content-Type` media types accepted for it
/// (compared without parameters such as `; charset=utf-8`, case-insensitive).
pub const CONTENT_TYPES: &[(&str, &[&str])] = &[
    (PLAYLIST_FILE, &["application/vnd.apple.mpegurl"]),
    ("segment.ts", &["video/mp2t"]),
    ("segment.m4s", &["video/iso.segment"]),
    ("video.mp4", &["video/mp4"]),
    ("manifest.mpd", &["application/dash+xml"]),
    ("stream.flv", &["video/x-flv"]),
    ("clip.webm", &["video/webm"]),
    ("clip.mkv", &["video/x-matroska", "video/matroska"]),
    ("page.html", &["text/html"]),
    ("index.html", &["text/html"]),
    ("app.js", &["text/javascript", "application/javascript"]),
    ("data.json", &["application/json"]),
];

/// Deterministic pseudo-random bytes (xorshift64*), different per `seed`.
pub fn pseudo_random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x2545_F491_4F6C_DD1D) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

fn playlist() -> Vec<u8> {
    const END: &str = "#EXT-X-ENDLIST\n";
    let mut s = String::from(
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n",
    );
    for i in 0.. {
        let entry = format!("#EXTINF:2.000,\nsegment{i}.ts\n");
        if s.len() + entry.len() + END.len() + 2 > 1024 {
            break;
        }
        s.push_str(&entry);
    }
    // Pad with one comment line to exactly 1 KiB.
    let pad = 1024 - s.len() - END.len();
    s.push('#');
    s.push_str(&"x".repeat(pad - 2));
    s.push('\n');
    s.push_str(END);
    assert_eq!(s.len(), 1024);
    s.into_bytes()
}

fn write(path: &Path, data: &[u8]) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("create fixture dir");
    }
    std::fs::write(path, data)
        .unwrap_or_else(|e| panic!("cannot write fixture {}: {e}", path.display()));
}

/// Fill `scratch/www` (the root) and `scratch/outside`.
pub(crate) fn populate(scratch: &Path, large_file: bool) {
    let www = scratch.join("www");
    let outside = scratch.join("outside");
    write(&outside.join("secret.txt"), OUTSIDE_SECRET.as_bytes());

    write(
        &www.join("index.html"),
        b"<!doctype html><html><head><title>spate test</title></head><body>index</body></html>\n",
    );
    write(&www.join(BIG_FILE), &pseudo_random_bytes(BIG_FILE_LEN, 1));
    write(&www.join(PLAYLIST_FILE), &playlist());
    write(&www.join("segment.ts"), &ts_packets(4));
    write(
        &www.join("segment.m4s"),
        b"\0\0\0\x18stypmsdh\0\0\0\0msdhmsix",
    );
    write(
        &www.join("video.mp4"),
        b"\0\0\0\x18ftypisom\0\0\x02\0isomiso2",
    );
    write(
        &www.join("manifest.mpd"),
        b"<?xml version=\"1.0\"?>\n<MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\" type=\"static\"></MPD>\n",
    );
    write(&www.join("stream.flv"), b"FLV\x01\x05\0\0\0\x09\0\0\0\0");
    write(&www.join("clip.webm"), b"\x1a\x45\xdf\xa3webm-fixture");
    write(&www.join("clip.mkv"), b"\x1a\x45\xdf\xa3matroska-fixture");
    write(&www.join("page.html"), b"<!doctype html><p>page</p>\n");
    write(&www.join("app.js"), b"console.log('spate');\n");
    write(&www.join("data.json"), b"{\"spate\": true}\n");
    write(&www.join("subdir/inner.txt"), b"inner\n");
    if large_file {
        write(
            &www.join(LARGE_FILE),
            &pseudo_random_bytes(LARGE_FILE_LEN, 5),
        );
    }
    // Symlinks inside the root that point outside it.
    std::os::unix::fs::symlink(outside.join("secret.txt"), www.join("escape.txt"))
        .expect("symlink escape.txt");
    std::os::unix::fs::symlink(&outside, www.join("escape_dir")).expect("symlink escape_dir");
}

fn ts_packets(n: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(188 * n);
    for i in 0..n {
        v.push(0x47);
        v.extend_from_slice(&[0x1f, 0xff, 0x10 | (i as u8 & 0x0f)]);
        v.resize(188 * (i + 1), 0xff);
    }
    v
}
