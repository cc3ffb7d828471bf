//! `GET /metrics`: the Prometheus text exposition format (0.0.4), written at
//! scrape time from the snapshots every worker sends over the mesh. Workers
//! keep plain per-core counters and a per-core histogram; nothing on the
//! hot path is shared or atomic. Every metric is listed in docs/metrics.md.
use std::fmt::Write;

use super::WorkerSnapshot;
use super::snapshot::merge_streams;
use crate::deliver::http_worker::Counters;

/// The `Content-Type` of the exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A label value with `\`, `"` and newlines escaped.
pub fn escape_label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Writes one metric family after another.
struct Exposition<'a> {
    out: &'a mut String,
}

impl Exposition<'_> {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape_label(v));
            }
            self.out.push('}');
        }
        if value.is_finite() {
            let _ = writeln!(self.out, " {value}");
        } else {
            let _ = writeln!(self.out, " NaN");
        }
    }

    /// A family with one unlabelled sample.
    fn single(&mut self, name: &str, kind: &str, help: &str, value: f64) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }
}

/// Write every metric for these snapshots (`workers`: how many were asked;
/// `uptime`: seconds since start).
pub fn render(snaps: &[WorkerSnapshot], workers: usize, uptime: f64, out: &mut String) {
    let mut e = Exposition { out };
    let mut c = Counters::default();
    for s in snaps {
        c.add(&s.counters);
    }
    e.single(
        "spate_up",
        "gauge",
        "1 while the server runs (this answer came from it).",
        1.0,
    );
    e.single(
        "spate_uptime_seconds",
        "gauge",
        "Seconds since the server started.",
        uptime,
    );
    e.single(
        "spate_workers",
        "gauge",
        "Worker threads (one io_uring each).",
        workers as f64,
    );
    e.single(
        "spate_workers_answering",
        "gauge",
        "Workers that answered this scrape within its deadline.",
        snaps.len() as f64,
    );

    e.family(
        "spate_connections",
        "gauge",
        "Connections open now, by listener.",
    );
    let (mut http, mut rtmp) = (0u64, 0u64);
    for s in snaps {
        http += s.connections.http;
        rtmp += s.connections.rtmp;
    }
    e.sample("spate_connections", &[("protocol", "http")], http as f64);
    e.sample("spate_connections", &[("protocol", "rtmp")], rtmp as f64);
    e.family(
        "spate_connections_accepted_total",
        "counter",
        "Connections accepted, by listener.",
    );
    e.sample(
        "spate_connections_accepted_total",
        &[("protocol", "http")],
        c.accepted.saturating_sub(c.rtmp_accepted) as f64,
    );
    e.sample(
        "spate_connections_accepted_total",
        &[("protocol", "rtmp")],
        c.rtmp_accepted as f64,
    );
    e.single(
        "spate_connections_closed_total",
        "counter",
        "Connections closed (every listener).",
        c.closed as f64,
    );
    e.family(
        "spate_connection_errors_total",
        "counter",
        "Connections or requests ended by an error, by kind.",
    );
    for (kind, v) in [
        ("rejected", c.rejected),
        ("head_timeout", c.head_timeouts),
        ("send_stall", c.send_stalls),
        ("table_full", c.table_full),
        ("rtmp_error", c.rtmp_errors),
    ] {
        e.sample("spate_connection_errors_total", &[("kind", kind)], v as f64);
    }
    e.single(
        "spate_http_requests_total",
        "counter",
        "HTTP requests answered (files, live, playlists, segments).",
        c.requests as f64,
    );
    e.single(
        "spate_http_segmented_requests_total",
        "counter",
        "HLS/DASH requests (playlists, segments) answered.",
        c.segmented_requests as f64,
    );
    e.family(
        "spate_bytes_out_total",
        "counter",
        "Bytes sent: HTTP response bodies, and live connections (HTTP-FLV/TS viewers, RTMP).",
    );
    e.sample(
        "spate_bytes_out_total",
        &[("path", "http_body")],
        c.body_bytes as f64,
    );
    e.sample(
        "spate_bytes_out_total",
        &[("path", "live")],
        c.live_bytes_out as f64,
    );
    e.single(
        "spate_live_sends_total",
        "counter",
        "Sends (sendmsg) submitted on live connections; per viewer per second it shows what [live] viewer_coalesce_ms saves.",
        c.live_sends as f64,
    );
    e.single(
        "spate_bytes_in_total",
        "counter",
        "Bytes received on live connections (RTMP publishers and players).",
        c.live_bytes_in as f64,
    );
    e.single(
        "spate_publish_refused_total",
        "counter",
        "Publishes refused (unknown name, busy, bad name).",
        c.publish_refused as f64,
    );
    e.single(
        "spate_viewer_skips_total",
        "counter",
        "Live viewers moved forward to a keyframe because they lagged.",
        c.viewer_skips as f64,
    );
    e.single(
        "spate_viewers_dropped_total",
        "counter",
        "Live viewers dropped because they fell out of the live window.",
        c.viewers_dropped as f64,
    );
    e.single(
        "spate_plays_denied_total",
        "counter",
        "Plays refused by the access rules (missing, bad or expired play token).",
        c.access_denied as f64,
    );
    e.single(
        "spate_sessions_kicked_total",
        "counter",
        "Sessions closed through the API.",
        c.kicked as f64,
    );
    e.single(
        "spate_mesh_drops_total",
        "counter",
        "Live items a full mesh queue could not take.",
        c.mesh_drops as f64,
    );
    e.single(
        "spate_timestamp_rebases_total",
        "counter",
        "Publisher timestamp discontinuities smoothed over.",
        c.rebases as f64,
    );
    e.single(
        "spate_segments_packaged_total",
        "counter",
        "HLS/DASH segments packaged.",
        c.segments as f64,
    );
    e.single(
        "spate_source_errors_total",
        "counter",
        "Stream sources (TS over UDP, http pulls, ts-exec): bad input and failures.",
        c.source_errors as f64,
    );
    e.single(
        "spate_push_errors_total",
        "counter",
        "Pushes: sockets that could not be opened, failed sends.",
        c.push_errors as f64,
    );
    e.single(
        "spate_pushes_running",
        "gauge",
        "Pushes running now.",
        snaps.iter().map(|s| s.pushes.len()).sum::<usize>() as f64,
    );

    let streams = merge_streams(snaps);
    e.single(
        "spate_streams_live",
        "gauge",
        "Live streams (with a publisher or waiting for it to reconnect).",
        streams.len() as f64,
    );
    e.family(
        "spate_viewers",
        "gauge",
        "Progressive live viewers now, by stream and protocol.",
    );
    for (name, s) in &streams {
        for (proto, v) in [
            ("flv", s.viewers.flv),
            ("ts", s.viewers.ts),
            ("rtmp", s.viewers.rtmp),
        ] {
            e.sample(
                "spate_viewers",
                &[("stream", name), ("protocol", proto)],
                v as f64,
            );
        }
    }
    e.family(
        "spate_stream_segmented_requests_total",
        "counter",
        "HLS (TS) and CMAF (HLS fMP4, DASH) requests by stream since it went live.",
    );
    for (name, s) in &streams {
        e.sample(
            "spate_stream_segmented_requests_total",
            &[("stream", name), ("kind", "hls")],
            s.viewers.hls_requests as f64,
        );
        e.sample(
            "spate_stream_segmented_requests_total",
            &[("stream", name), ("kind", "cmaf")],
            s.viewers.cmaf_requests as f64,
        );
    }
    e.family(
        "spate_stream_bytes_in_total",
        "counter",
        "Media payload bytes the stream's publisher brought in since it started.",
    );
    for (name, s) in &streams {
        if let Some(p) = &s.publisher {
            e.sample(
                "spate_stream_bytes_in_total",
                &[("stream", name), ("connector", p.connector)],
                p.bytes_in as f64,
            );
        }
    }
    e.family(
        "spate_stream_bitrate_in_bits",
        "gauge",
        "Bits per second the stream's publisher brings in (last second).",
    );
    for (name, s) in &streams {
        if let Some(p) = &s.publisher {
            e.sample(
                "spate_stream_bitrate_in_bits",
                &[("stream", name)],
                p.bitrate_in as f64,
            );
        }
    }
    e.family(
        "spate_segment_store_arenas",
        "gauge",
        "Segment-store arenas (memfds) the stream's packager holds.",
    );
    for (name, s) in &streams {
        if let Some(p) = &s.publisher {
            e.sample(
                "spate_segment_store_arenas",
                &[("stream", name)],
                p.store_arenas as f64,
            );
        }
    }
    e.family(
        "spate_segment_store_arena_bytes",
        "gauge",
        "Size of those arenas, bytes (pages are used only as segments are written).",
    );
    for (name, s) in &streams {
        if let Some(p) = &s.publisher {
            e.sample(
                "spate_segment_store_arena_bytes",
                &[("stream", name)],
                p.store_bytes as f64,
            );
        }
    }
    e.family(
        "spate_segment_store_segments",
        "gauge",
        "Segments (every TS rendition and CMAF track) downloadable now.",
    );
    for (name, s) in &streams {
        e.sample(
            "spate_segment_store_segments",
            &[("stream", name)],
            s.segments as f64,
        );
    }
    e.family(
        "spate_segment_store_segment_bytes",
        "gauge",
        "Bytes of the segments downloadable now.",
    );
    for (name, s) in &streams {
        e.sample(
            "spate_segment_store_segment_bytes",
            &[("stream", name)],
            s.segment_bytes as f64,
        );
    }

    let mut by_worker: Vec<&WorkerSnapshot> = snaps.iter().collect();
    by_worker.sort_by_key(|s| s.index);
    e.family(
        "spate_loop_utilisation",
        "gauge",
        "Share of the last second a worker's loop spent working (0..1).",
    );
    for s in &by_worker {
        let w = s.index.to_string();
        e.sample(
            "spate_loop_utilisation",
            &[("worker", &w)],
            s.event_loop.utilisation,
        );
    }
    e.family(
        "spate_loop_busy_seconds_total",
        "counter",
        "Seconds a worker's loop spent working.",
    );
    for s in &by_worker {
        let w = s.index.to_string();
        e.sample(
            "spate_loop_busy_seconds_total",
            &[("worker", &w)],
            s.event_loop.busy_ns as f64 / 1e9,
        );
    }
    e.family(
        "spate_loop_wait_seconds_total",
        "counter",
        "Seconds a worker's loop spent waiting in (and submitting to) its ring.",
    );
    for s in &by_worker {
        let w = s.index.to_string();
        e.sample(
            "spate_loop_wait_seconds_total",
            &[("worker", &w)],
            s.event_loop.wait_ns as f64 / 1e9,
        );
    }
    e.family(
        "spate_loop_turn_seconds",
        "summary",
        "Working part of one loop turn (hdrhistogram since start; quantile 1 = the longest).",
    );
    for s in &by_worker {
        let w = s.index.to_string();
        for (q, ns) in &s.event_loop.turn_quantiles {
            let q = q.to_string();
            e.sample(
                "spate_loop_turn_seconds",
                &[("worker", &w), ("quantile", &q)],
                *ns as f64 / 1e9,
            );
        }
        e.sample(
            "spate_loop_turn_seconds_sum",
            &[("worker", &w)],
            s.event_loop.turn_sum_ns as f64 / 1e9,
        );
        e.sample(
            "spate_loop_turn_seconds_count",
            &[("worker", &w)],
            s.event_loop.turns as f64,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn empty_scrape_has_help_and_type_for_every_family() {
        let mut out = String::new();
        render(&[], 2, 1.5, &mut out);
        let helps = out.lines().filter(|l| l.starts_with("# HELP ")).count();
        let types = out.lines().filter(|l| l.starts_with("# TYPE ")).count();
        assert_eq!(helps, types);
        assert!(out.contains("spate_workers 2\n"), "{out}");
        assert!(out.contains("spate_workers_answering 0\n"), "{out}");
    }
}
