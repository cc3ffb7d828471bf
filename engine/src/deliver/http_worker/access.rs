//! The access rules (`crate::control::access`, docs/access.md) where they
//! apply on a worker: the stream an RTMP publish names, and the play token
//! of every play path (HTTP-FLV, HTTP-TS, HLS and CMAF playlists and
//! segments, the DASH MPD, RTMP play).
//!
//! Playlists and MPDs of a stream that needs a token are answered with the
//! request's token appended to every URI they hold, so a player that opened
//! them with a valid token sends it with every segment request, and the
//! segments are checked like everything else.
use std::time::SystemTime;

use spate_protocols::http::{Method, Request, response};

use super::{BodySrc, Worker};
use crate::config::Config;
use crate::control::access::{self, AccessRules, PublishDenied};

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The stream a live HTTP URL plays, if it is one: `/<s>.flv`, `/<s>.ts`,
/// `/hls/<s>/…`, `/cmaf/<s>/…`.
fn played_stream(path: &str) -> Option<&str> {
    if let Some(rest) = path
        .strip_prefix("/hls/")
        .or_else(|| path.strip_prefix("/cmaf/"))
    {
        return rest.split_once('/').map(|(s, _)| s);
    }
    let name = path.strip_prefix('/').filter(|p| !p.contains('/'))?;
    name.strip_suffix(".flv")
        .or_else(|| name.strip_suffix(".ts"))
}

impl Worker {
    /// Take the access rules of a (re)loaded configuration.
    pub(super) fn reload_access(&mut self, config: &Config) {
        *self.access = AccessRules::from_config(config);
        self.json_sources = super::json_sources::SourceUrls::from_config(config);
    }

    /// The stream an RTMP publish of `app`/`key` publishes: a publish key's
    /// stream, or the naming rule's name unless that stream needs a key.
    /// On refusal (counted, logged without the key), the description for
    /// the publisher.
    pub(super) fn publish_stream_name(
        &mut self,
        app: &str,
        key: &str,
        who: &str,
    ) -> Result<String, String> {
        let registry = self.registry.clone();
        match self
            .access
            .publish_name(key, || registry.rtmp_name(app, key))
        {
            Ok((name, by_key)) => {
                if by_key {
                    tracing::info!("{who}: publish key {} maps to {name}", access::masked(key));
                }
                Ok(name)
            }
            Err(why @ PublishDenied::KeyRequired(_)) => {
                self.counters.publish_refused += 1;
                tracing::info!("{who}: publish refused: {why}");
                Err(why.to_string())
            }
        }
    }

    /// An RTMP play of `app`/`name` with the play name's `query`: on to
    /// `on_play` if the access rules let it go on.
    pub(super) fn on_rtmp_play(
        &mut self,
        slot: u32,
        generation: u32,
        app: &str,
        name: &str,
        query: Option<&str>,
    ) {
        if self.rtmp_play_allowed(slot, generation, app, name, query) {
            self.on_play(slot, generation, app, name);
        }
    }

    /// `true` if the access rules let an RTMP play go on; otherwise the
    /// player was sent `NetStream.Play.Failed` and the connection closes.
    fn rtmp_play_allowed(
        &mut self,
        slot: u32,
        generation: u32,
        app: &str,
        name: &str,
        query: Option<&str>,
    ) -> bool {
        let stream = self.registry.rtmp_name(app, name);
        let Err(why) = self.access.check_play(&stream, query, now_unix()) else {
            return true;
        };
        self.counters.access_denied += 1;
        let mut conn = self.conn_id(slot, generation);
        if let Some((peer, _)) = self.conn_peer(slot, generation) {
            conn = format!("{conn} from {peer}");
        }
        tracing::info!("{conn}: rtmp play of {stream} denied: {why}");
        if let Some(l) = self
            .conns
            .get_mut(slot, generation)
            .and_then(|c| c.live.as_deref_mut())
        {
            if let Some(s) = l.rtmp.as_deref_mut() {
                s.reject_play("NetStream.Play.Failed", &format!("{stream}: {why}"));
            }
            l.close_when_sent = true;
        }
        self.live_drive(slot, generation);
        false
    }

    /// Check the play token of an HTTP request for a live URL; `true` if
    /// it was refused (answered 403 here).
    pub(super) fn deny_http_play(&mut self, slot: u32, generation: u32, req: &Request) -> bool {
        let Some(stream) = played_stream(&req.path) else {
            return false;
        };
        let Err(why) = self
            .access
            .check_play(stream, req.query.as_deref(), now_unix())
        else {
            return false;
        };
        self.counters.access_denied += 1;
        let mut conn = self.conn_id(slot, generation);
        if let Some((peer, _)) = self.conn_peer(slot, generation) {
            conn = format!("{conn} from {peer}");
        }
        tracing::info!("{conn}: GET {} denied: {why}", req.path);
        let body = format!("forbidden: {why}\n");
        self.respond_text(slot, generation, req, 403, &body, &[]);
        true
    }

    /// A playlist or MPD of `stream` as this request gets it: with the
    /// request's token on every URI when the stream needs one.
    pub(super) fn tokenized(
        &self,
        stream: &str,
        req: &Request,
        src: BodySrc,
        content_type: &str,
    ) -> BodySrc {
        let BodySrc::Bytes(b) = &src else {
            return src;
        };
        if !self.access.requires_play_token(stream) {
            return src;
        }
        let Some(token) = req
            .query
            .as_deref()
            .and_then(access::token_param)
            .filter(|t| access::token_chars_ok(t))
        else {
            return src;
        };
        let out = match content_type {
            "application/vnd.apple.mpegurl" => access::tokenize_m3u8(b, token),
            "application/dash+xml" => access::tokenize_mpd(b, token),
            _ => return src,
        };
        BodySrc::Bytes(bytes::Bytes::from(out))
    }

    /// A short in-memory answer (`response::simple`: JSON when the body
    /// starts with `{`, else text), head only for HEAD.
    pub(super) fn respond_text(
        &mut self,
        slot: u32,
        generation: u32,
        req: &Request,
        status: u16,
        body: &str,
        extra: &[(&str, &str)],
    ) {
        let keep_alive = req.keep_alive && self.shutdown_at.is_none();
        let mut head = response::simple(status, body, extra, SystemTime::now(), keep_alive);
        if req.method == Method::Head {
            let cut = head
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map_or(head.len(), |p| p + 4);
            head.truncate(cut);
        }
        let log = self.log_line(req);
        self.start_transfer(slot, generation, head, None, 0..0, status, !keep_alive, log);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_urls_name_their_stream() {
        assert_eq!(played_stream("/live+a.flv"), Some("live+a"));
        assert_eq!(played_stream("/live+a.ts"), Some("live+a"));
        assert_eq!(played_stream("/hls/live+a/1/123.ts"), Some("live+a"));
        assert_eq!(played_stream("/cmaf/s/index.mpd"), Some("s"));
        assert_eq!(played_stream("/index.html"), None);
        assert_eq!(played_stream("/dir/x.flv"), None);
        assert_eq!(played_stream("/hls/"), None);
    }
}
