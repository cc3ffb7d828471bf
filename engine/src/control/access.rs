//! Access control without triggers (docs/access.md): publish keys and
//! signed play tokens.
//!
//! - **Publish keys** (`[access] publish_keys`): an RTMP publish whose key
//!   is a configured publish key publishes the stream the key maps to; the
//!   key never becomes a stream name. A stream whose `[[stream]]` says
//!   `require_publish_key` refuses a publish by its own name.
//! - **Play tokens** (`?token=<expiry>.<hmac>`): `hmac` is the lower-case
//!   hex HMAC-SHA256, keyed with `[access] play_secret`, of
//!   `"<stream>\n<expiry>"` (`expiry`: unix seconds, as written in the
//!   token). A stream whose `[[stream]]` says `require_play_token` is only
//!   played with a token for its exact name that has not expired.
//!
//! Everything here is pure (the clock comes in as `now_unix`), and built
//! from a [`Config`] by [`AccessRules::from_config`], so a reload rebuilds it
//! from the new configuration.
use std::collections::{BTreeMap, HashSet};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::Config;

type HmacSha256 = Hmac<Sha256>;

/// The longest token accepted (a 20-digit expiry, a dot, 64 hex digits).
const MAX_TOKEN_LEN: usize = 20 + 1 + 64;

/// The access rules of one configuration.
#[derive(Debug, Clone, Default)]
pub struct AccessRules {
    play_secret: Vec<u8>,
    /// Publish key → stream name.
    publish_keys: BTreeMap<String, String>,
    /// Bases whose streams refuse publishing by name.
    key_required: HashSet<String>,
    /// Bases whose streams need a play token.
    token_required: HashSet<String>,
}

/// Why a publish was refused by the access rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishDenied {
    /// The stream needs a publish key and the publisher used its name.
    #[error("{0} only accepts publishing with a publish key")]
    KeyRequired(String),
}

/// Why a play token was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// No `token=` in the query.
    #[error("no play token")]
    Missing,
    /// Not `<digits>.<64 hex digits>`.
    #[error("malformed play token")]
    Malformed,
    /// The signature does not match (wrong stream, secret or expiry).
    #[error("play token signature does not match")]
    BadSignature,
    /// The expiry is in the past.
    #[error("play token expired")]
    Expired,
    /// `[access] play_secret` is empty: no token can be checked.
    #[error("no play_secret configured")]
    NoSecret,
}

impl AccessRules {
    /// The rules `config` describes.
    pub fn from_config(config: &Config) -> Self {
        let bases = |pick: fn(&crate::config::StreamConfig) -> bool| {
            config
                .streams
                .iter()
                .filter(|s| pick(s))
                .map(|s| s.name.clone())
                .collect::<HashSet<_>>()
        };
        Self {
            play_secret: config.access.play_secret.as_bytes().to_vec(),
            publish_keys: config.access.publish_keys.clone(),
            key_required: bases(|s| s.require_publish_key),
            token_required: bases(|s| s.require_play_token),
        }
    }

    /// The stream an RTMP publish with `key` publishes. `by_name` is the
    /// naming rule for keys that are not publish keys (`Registry::rtmp_name`).
    /// `Ok((name, true))` when `key` was a publish key.
    pub fn publish_name(
        &self,
        key: &str,
        by_name: impl FnOnce() -> String,
    ) -> Result<(String, bool), PublishDenied> {
        if let Some(name) = self.publish_keys.get(key) {
            return Ok((name.clone(), true));
        }
        let name = by_name();
        if self.key_required.contains(base_of(&name)) {
            return Err(PublishDenied::KeyRequired(name));
        }
        Ok((name, false))
    }

    /// Whether playing `name` (`base` or `base+wildcard`) needs a token.
    pub fn requires_play_token(&self, name: &str) -> bool {
        !self.token_required.is_empty() && self.token_required.contains(base_of(name))
    }

    /// Check a play of `name` whose URL query is `query` (the RTMP play
    /// name's, or the HTTP request's). `Ok` for streams that need no token.
    pub fn check_play(
        &self,
        name: &str,
        query: Option<&str>,
        now_unix: u64,
    ) -> Result<(), TokenError> {
        if !self.requires_play_token(name) {
            return Ok(());
        }
        let token = query.and_then(token_param).ok_or(TokenError::Missing)?;
        verify_token(&self.play_secret, name, token, now_unix)
    }

    /// The play secret (for `spate --mint-token`).
    pub fn play_secret(&self) -> &[u8] {
        &self.play_secret
    }
}

/// The base of a stream name (`live` of `live+alice`).
pub fn base_of(name: &str) -> &str {
    name.split_once('+').map_or(name, |(b, _)| b)
}

/// The value of the first `token=` parameter of a query string.
pub fn token_param(query: &str) -> Option<&str> {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix("token="))
        .filter(|t| !t.is_empty())
}

/// A request target for logs: the value of every `token=` parameter of its
/// query replaced by `…` (tokens are credentials until they expire).
pub fn redact_token(target: &str) -> std::borrow::Cow<'_, str> {
    let Some((path, query)) = target.split_once('?') else {
        return target.into();
    };
    if !query.split('&').any(|kv| kv.starts_with("token=")) {
        return target.into();
    }
    let query: Vec<&str> = query
        .split('&')
        .map(|kv| {
            if kv.starts_with("token=") {
                "token=…"
            } else {
                kv
            }
        })
        .collect();
    format!("{path}?{}", query.join("&")).into()
}

/// Whether `token` only has the characters a token is made of (so it can be
/// copied into URLs and JSON as is).
pub fn token_chars_ok(token: &str) -> bool {
    token.len() <= MAX_TOKEN_LEN && token.bytes().all(|b| b.is_ascii_hexdigit() || b == b'.')
}

fn signature(secret: &[u8], stream: &str, expiry: &str) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(stream.as_bytes());
    mac.update(b"\n");
    mac.update(expiry.as_bytes());
    mac
}

/// A token for `stream` valid until `expiry` (unix seconds).
pub fn mint_token(secret: &[u8], stream: &str, expiry: u64) -> String {
    let expiry = expiry.to_string();
    let tag = signature(secret, stream, &expiry).finalize().into_bytes();
    let mut out = expiry;
    out.push('.');
    for b in tag {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Check `token` for `stream` at `now_unix`: the signature is compared in
/// constant time, before the expiry is looked at (so a forged token cannot
/// learn anything from the answer).
pub fn verify_token(
    secret: &[u8],
    stream: &str,
    token: &str,
    now_unix: u64,
) -> Result<(), TokenError> {
    if secret.is_empty() {
        return Err(TokenError::NoSecret);
    }
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::Malformed);
    }
    let (expiry, hex) = token.split_once('.').ok_or(TokenError::Malformed)?;
    if expiry.is_empty() || expiry.len() > 20 || !expiry.bytes().all(|b| b.is_ascii_digit()) {
        return Err(TokenError::Malformed);
    }
    let tag = decode_hex32(hex).ok_or(TokenError::Malformed)?;
    signature(secret, stream, expiry)
        .verify_slice(&tag)
        .map_err(|_| TokenError::BadSignature)?;
    let expiry: u64 = expiry.parse().map_err(|_| TokenError::Malformed)?;
    if now_unix > expiry {
        return Err(TokenError::Expired);
    }
    Ok(())
}

fn decode_hex32(hex: &str) -> Option<[u8; 32]> {
    let h = hex.as_bytes();
    if h.len() != 64 {
        return None;
    }
    let nibble = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = (nibble(h[2 * i])? << 4) | nibble(h[2 * i + 1])?;
    }
    Some(out)
}

/// A secret shortened for logs: its first two characters and its length
/// (`ab…(6 chars)`).
pub fn masked(secret: &str) -> String {
    let head: String = secret.chars().take(2).collect();
    format!("{head}…({} chars)", secret.chars().count())
}

/// An HLS playlist with `token=<token>` appended to every URI it holds: the
/// URI lines and the `URI="…"` attributes of tags (EXT-X-MAP, EXT-X-MEDIA,
/// EXT-X-PART, EXT-X-PRELOAD-HINT, EXT-X-RENDITION-REPORT, ...), so a player
/// that opened the playlist with a token sends it with every request it
/// derives from it.
pub fn tokenize_m3u8(playlist: &[u8], token: &str) -> Vec<u8> {
    let text = String::from_utf8_lossy(playlist);
    let mut out = String::with_capacity(playlist.len() + 64 * token.len());
    for line in text.split_inclusive('\n') {
        let (body, eol) = match line.strip_suffix('\n') {
            Some(b) => match b.strip_suffix('\r') {
                Some(b2) => (b2, "\r\n"),
                None => (b, "\n"),
            },
            None => (line, ""),
        };
        if body.is_empty() {
            out.push_str(eol);
            continue;
        }
        if body.starts_with('#') {
            let mut rest = body;
            while let Some(i) = rest.find("URI=\"") {
                let start = i + 5;
                out.push_str(&rest[..start]);
                rest = &rest[start..];
                let end = rest.find('"').unwrap_or(rest.len());
                out.push_str(&with_token(&rest[..end], token, "&"));
                rest = &rest[end..];
            }
            out.push_str(rest);
        } else {
            out.push_str(&with_token(body, token, "&"));
        }
        out.push_str(eol);
    }
    out.into_bytes()
}

/// A DASH MPD with `token=<token>` appended to the `media` and
/// `initialization` templates (and `BaseURL`s), for the same reason.
pub fn tokenize_mpd(mpd: &[u8], token: &str) -> Vec<u8> {
    let text = String::from_utf8_lossy(mpd);
    let mut out = String::with_capacity(mpd.len() + 8 * token.len());
    let mut rest: &str = &text;
    loop {
        let next = [" media=\"", " initialization=\"", "<BaseURL>"]
            .iter()
            .filter_map(|pat| rest.find(pat).map(|i| (i, pat.len(), *pat)))
            .min_by_key(|&(i, _, _)| i);
        let Some((i, len, pat)) = next else {
            out.push_str(rest);
            break;
        };
        let start = i + len;
        out.push_str(&rest[..start]);
        rest = &rest[start..];
        let stop = if pat == "<BaseURL>" { '<' } else { '"' };
        let end = rest.find(stop).unwrap_or(rest.len());
        let value = &rest[..end];
        if pat == "<BaseURL>" && value.ends_with('/') {
            // A directory: the segment URLs resolved against it carry the
            // token from the templates.
            out.push_str(value);
        } else {
            out.push_str(&with_token(value, token, "&amp;"));
        }
        rest = &rest[end..];
    }
    out.into_bytes()
}

fn with_token(uri: &str, token: &str, amp: &str) -> String {
    if uri.contains('?') {
        format!("{uri}{amp}token={token}")
    } else {
        format!("{uri}?token={token}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(extra: &str) -> AccessRules {
        let text = format!(
            "[access]\nplay_secret = \"s3cret\"\npublish_keys = {{ abc123 = \"live+alice\" }}\n\
             [[stream]]\nname = \"live\"\nrequire_publish_key = true\nrequire_play_token = true\n\
             [[stream]]\nname = \"open\"\n{extra}"
        );
        AccessRules::from_config(&Config::parse(&text, "t.toml").unwrap())
    }

    #[test]
    fn publish_keys_map_and_bare_names_of_keyed_streams_are_refused() {
        let r = rules("");
        assert_eq!(
            r.publish_name("abc123", || unreachable!()),
            Ok(("live+alice".to_string(), true))
        );
        assert_eq!(
            r.publish_name("live+alice", || "live+alice".into()),
            Err(PublishDenied::KeyRequired("live+alice".into()))
        );
        assert_eq!(
            r.publish_name("live", || "live".into()),
            Err(PublishDenied::KeyRequired("live".into()))
        );
        assert_eq!(
            r.publish_name("open+x", || "open+x".into()),
            Ok(("open+x".to_string(), false))
        );
        // app_key naming: the naming rule's name is what is checked.
        assert!(r.publish_name("bob", || "live+bob".into()).is_err());
    }

    #[test]
    fn tokens_verify_for_their_stream_until_they_expire() {
        let secret = b"s3cret";
        let t = mint_token(secret, "live+alice", 2_000_000_000);
        assert_eq!(
            verify_token(secret, "live+alice", &t, 1_999_999_999),
            Ok(())
        );
        assert_eq!(
            verify_token(secret, "live+alice", &t, 2_000_000_000),
            Ok(())
        );
        assert_eq!(
            verify_token(secret, "live+alice", &t, 2_000_000_001),
            Err(TokenError::Expired)
        );
        assert_eq!(
            verify_token(secret, "live+bob", &t, 0),
            Err(TokenError::BadSignature)
        );
        assert_eq!(
            verify_token(b"other", "live+alice", &t, 0),
            Err(TokenError::BadSignature)
        );
        // Moving the expiry breaks the signature.
        let forged = t.replacen("2000000000", "2000000009", 1);
        assert_eq!(
            verify_token(secret, "live+alice", &forged, 0),
            Err(TokenError::BadSignature)
        );
        // Upper-case hex is the same signature.
        let (e, h) = t.split_once('.').unwrap();
        let upper = format!("{e}.{}", h.to_ascii_uppercase());
        assert_eq!(verify_token(secret, "live+alice", &upper, 0), Ok(()));
        for bad in [
            "",
            "123",
            "x.abc",
            "12.zz",
            &format!("{e}.{}", &h[1..]),
            "-1.00",
        ] {
            assert_eq!(
                verify_token(secret, "live+alice", bad, 0),
                Err(TokenError::Malformed),
                "{bad:?}"
            );
        }
        assert_eq!(
            verify_token(b"", "live+alice", &t, 0),
            Err(TokenError::NoSecret)
        );
    }

    #[test]
    fn known_vector_matches_openssl() {
        // printf '%s\n%s' live+alice 2000000000 | openssl dgst -sha256 -hmac s3cret
        assert_eq!(
            mint_token(b"s3cret", "live+alice", 2_000_000_000),
            "2000000000.fa21e9ed63f38e4efe94ecf9c635729731a44259d1ea466d1ee4ed770192dcbd"
        );
    }

    #[test]
    fn check_play_needs_a_token_only_where_configured() {
        let r = rules("");
        let now = 1_000;
        assert_eq!(r.check_play("open+x", None, now), Ok(()));
        assert_eq!(
            r.check_play("live+alice", None, now),
            Err(TokenError::Missing)
        );
        assert_eq!(
            r.check_play("live+alice", Some("video=0"), now),
            Err(TokenError::Missing)
        );
        let t = mint_token(b"s3cret", "live+alice", 2_000);
        let q = format!("video=0&token={t}");
        assert_eq!(r.check_play("live+alice", Some(&q), now), Ok(()));
        assert_eq!(
            r.check_play("live+alice", Some(&q), 2_001),
            Err(TokenError::Expired)
        );
        assert!(r.requires_play_token("live"));
        assert!(!r.requires_play_token("livex"));
    }

    #[test]
    fn playlists_carry_the_token_on_every_uri() {
        let m3u8 = b"#EXTM3U\n#EXT-X-MAP:URI=\"init.mp4\"\n#EXTINF:2.0,\n12.m4s\n\
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"a\",URI=\"a1/index.m3u8\"\r\nv0/index.m3u8?x=1\n\n";
        let out = String::from_utf8(tokenize_m3u8(m3u8, "9.ab")).unwrap();
        assert_eq!(
            out,
            "#EXTM3U\n#EXT-X-MAP:URI=\"init.mp4?token=9.ab\"\n#EXTINF:2.0,\n12.m4s?token=9.ab\n\
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"a\",URI=\"a1/index.m3u8?token=9.ab\"\r\nv0/index.m3u8?x=1&token=9.ab\n\n"
        );
        let mpd = br#"<MPD><BaseURL>http://h/</BaseURL><SegmentTemplate timescale="90000" initialization="$RepresentationID$/init.mp4" media="$RepresentationID$/$Number$.m4s" startNumber="5"/></MPD>"#;
        let out = String::from_utf8(tokenize_mpd(mpd, "9.ab")).unwrap();
        assert_eq!(
            out,
            r#"<MPD><BaseURL>http://h/</BaseURL><SegmentTemplate timescale="90000" initialization="$RepresentationID$/init.mp4?token=9.ab" media="$RepresentationID$/$Number$.m4s?token=9.ab" startNumber="5"/></MPD>"#
        );
    }

    #[test]
    fn bad_publish_keys_are_refused_without_showing_the_key() {
        for (keys, want) in [
            ("{ abc123 = \"live+\" }", "ab…(6 chars)"),
            ("{ abc123 = \"a+b+c\" }", "ab…(6 chars)"),
            ("{ \"\" = \"live\" }", "1..=200"),
            ("{ \"a/b\" = \"live\" }", "without"),
        ] {
            let text = format!("[access]\npublish_keys = {keys}\n");
            let e = Config::parse(&text, "t.toml").unwrap_err().to_string();
            assert!(
                e.contains("access.publish_keys") && e.contains(want),
                "{keys}: {e}"
            );
            assert!(!e.contains("abc123"), "{e}");
        }
        assert!(Config::parse("[access]\npublish_keys = { k = \"news\" }\n", "t").is_ok());
    }

    #[test]
    fn token_param_and_masking() {
        assert_eq!(token_param("a=1&token=5.ff&token=6"), Some("5.ff"));
        assert_eq!(token_param("token="), None);
        assert_eq!(token_param("xtoken=1"), None);
        assert!(token_chars_ok("123.abcDEF"));
        assert!(!token_chars_ok("1\"2"));
        assert_eq!(masked("abc123"), "ab…(6 chars)");
        assert_eq!(redact_token("/a.flv?x=1&token=5.ff"), "/a.flv?x=1&token=…");
        assert_eq!(redact_token("/a.flv?xtoken=1"), "/a.flv?xtoken=1");
        assert_eq!(redact_token("/a.flv"), "/a.flv");
    }
}
