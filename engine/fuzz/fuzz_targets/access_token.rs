//! Play tokens and the playlists they are written into, with arbitrary
//! input: a client controls the token (`?token=`) and the query around it.
//!
//! Input layout: fields separated by `\0`: secret, stream, token, query,
//! playlist text (used as an HLS playlist and as an MPD). Invariants: no
//! panic; a minted token verifies for its stream and not for another; a
//! redacted target never shows a token value; tokenizing a playlist keeps
//! every byte of it (only `?token=`/`&token=` is added).
#![no_main]

use libfuzzer_sys::fuzz_target;
use spate_engine::control::access::{
    mint_token, redact_token, token_chars_ok, token_param, tokenize_m3u8, tokenize_mpd,
    verify_token,
};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut f = text.split('\0');
    let secret = f.next().unwrap_or("");
    let stream = f.next().unwrap_or("");
    let token = f.next().unwrap_or("");
    let query = f.next().unwrap_or("");
    let playlist = f.next().unwrap_or("");

    let _ = verify_token(secret.as_bytes(), stream, token, 1_700_000_000);
    if !secret.is_empty() {
        let minted = mint_token(secret.as_bytes(), stream, 1_800_000_000);
        assert!(token_chars_ok(&minted), "minted token has odd characters: {minted}");
        assert!(verify_token(secret.as_bytes(), stream, &minted, 1_700_000_000).is_ok());
        let other = format!("{stream}x");
        assert!(verify_token(secret.as_bytes(), &other, &minted, 1_700_000_000).is_err());
        assert!(verify_token(secret.as_bytes(), stream, &minted, 1_900_000_000).is_err());
    }

    if let Some(t) = token_param(query) {
        assert!(!t.is_empty());
    }
    let target = format!("/live.flv?{query}");
    let shown = redact_token(&target);
    for kv in shown.split_once('?').map_or("", |(_, q)| q).split('&') {
        if let Some(v) = kv.strip_prefix("token=") {
            assert_eq!(v, "…", "a token value survived redaction: {shown}");
        }
    }

    if token_chars_ok(token) {
        for out in [
            tokenize_m3u8(playlist.as_bytes(), token),
            tokenize_mpd(playlist.as_bytes(), token),
        ] {
            assert!(out.len() >= playlist.len(), "tokenizing lost bytes");
        }
    }
});
