# Parses an HLS playlist (PyPI `m3u8`) or a DASH MPD (PyPI `mpegdash`) and
# prints what it found as one JSON object on stdout. Run by
# tests/src/playlist.rs with the venv python of scripts/test.sh:
#
#   python3 -c <this file> hls|dash FILE
#
# On a document the parser rejects it prints {"error": "..."} (the parser's
# own exception text) and exits 2. It never fetches anything: mpegdash's
# parse() would open a URL or a file when handed text without "<MPD", so that
# case is refused here first.
import json
import sys
import traceback


def hls_report(text):
    import m3u8

    if not text.lstrip("\ufeff").startswith("#EXTM3U"):
        raise ValueError("the playlist does not start with #EXTM3U: %r" % text[:80])
    # strict: syntax errors and tags whose EXT-X-VERSION is too low raise.
    m3u8.parse(text, strict=True)
    pl = m3u8.loads(text)

    def resolution(r):
        return "%dx%d" % tuple(r) if r else None

    segments = []
    for s in pl.segments:
        segments.append(
            {
                "uri": s.uri,
                "duration": s.duration,
                "title": s.title,
                "discontinuity": bool(s.discontinuity),
                "media_sequence": s.media_sequence,
                "byterange": s.byterange,
                "init_uri": s.init_section.uri if s.init_section else None,
                "program_date_time": s.program_date_time.isoformat()
                if s.program_date_time
                else None,
                "parts": len(s.parts),
            }
        )
    playlists = []
    for p in pl.playlists:
        si = p.stream_info
        playlists.append(
            {
                "uri": p.uri,
                "bandwidth": si.bandwidth,
                "average_bandwidth": si.average_bandwidth,
                "codecs": si.codecs,
                "resolution": resolution(si.resolution),
                "frame_rate": si.frame_rate,
                "audio": si.audio,
                "video": si.video,
                "subtitles": si.subtitles,
            }
        )
    media = []
    for m in pl.media:
        media.append(
            {
                "type": m.type,
                "group_id": m.group_id,
                "name": m.name,
                "uri": m.uri,
                "language": m.language,
                "default": m.default,
                "autoselect": m.autoselect,
                "channels": m.channels,
            }
        )
    segment_map = [
        {"uri": sm.uri, "byterange": sm.byterange} for sm in pl.segment_map if sm
    ]
    return {
        "kind": "hls",
        "version": pl.version,
        "is_variant": bool(pl.is_variant),
        "is_endlist": bool(pl.is_endlist),
        "playlist_type": pl.playlist_type,
        "target_duration": pl.target_duration,
        "media_sequence": pl.media_sequence,
        "discontinuity_sequence": pl.discontinuity_sequence,
        "is_independent_segments": bool(pl.is_independent_segments),
        "segments": segments,
        "discontinuities": sum(1 for s in pl.segments if s.discontinuity),
        "playlists": playlists,
        "media": media,
        "segment_map": segment_map,
        "keys": [k.method for k in pl.keys if k],
    }


def dash_report(text):
    from mpegdash.parser import MPEGDASHParser

    if "<MPD" not in text:
        raise ValueError("no <MPD element in the document: %r" % text[:80])
    mpd = MPEGDASHParser.parse(text)

    def first(*lists):
        for xs in lists:
            if xs:
                return xs[0]
        return None

    def base_urls(xs):
        return [b.base_url_value for b in (xs or [])]

    def template(t):
        if t is None:
            return None
        timeline = None
        if t.segment_timelines:
            timeline = [
                {"t": s.t, "d": s.d, "r": s.r}
                for s in (t.segment_timelines[0].Ss or [])
            ]
        return {
            "media": t.media,
            "initialization": t.initialization,
            "timescale": t.timescale,
            "duration": t.duration,
            "start_number": t.start_number,
            "presentation_time_offset": t.presentation_time_offset,
            "timeline": timeline,
        }

    periods = []
    for p in mpd.periods or []:
        sets = []
        for a in p.adaptation_sets or []:
            reps = []
            for r in a.representations or []:
                reps.append(
                    {
                        "id": r.id,
                        "mime_type": r.mime_type or a.mime_type,
                        "codecs": r.codecs or a.codecs,
                        "bandwidth": r.bandwidth,
                        "width": r.width or a.width,
                        "height": r.height or a.height,
                        "audio_sampling_rate": r.audio_sampling_rate
                        or a.audio_sampling_rate,
                        "base_urls": base_urls(r.base_urls),
                        # Representation, else AdaptationSet, else Period.
                        "segment_template": template(
                            first(
                                r.segment_templates,
                                a.segment_templates,
                                p.segment_templates,
                            )
                        ),
                    }
                )
            sets.append(
                {
                    "id": a.id,
                    "content_type": a.content_type,
                    "mime_type": a.mime_type,
                    "codecs": a.codecs,
                    "lang": a.lang,
                    "segment_alignment": a.segment_alignment,
                    "base_urls": base_urls(a.base_urls),
                    "segment_template": template(first(a.segment_templates)),
                    "representations": reps,
                }
            )
        periods.append(
            {
                "id": p.id,
                "start": p.start,
                "duration": p.duration,
                "base_urls": base_urls(p.base_urls),
                "adaptation_sets": sets,
            }
        )
    return {
        "kind": "dash",
        "type": mpd.type,
        "profiles": mpd.profiles,
        "availability_start_time": mpd.availability_start_time,
        "publish_time": mpd.publish_time,
        "media_presentation_duration": mpd.media_presentation_duration,
        "minimum_update_period": mpd.minimum_update_period,
        "min_buffer_time": mpd.min_buffer_time,
        "time_shift_buffer_depth": mpd.time_shift_buffer_depth,
        "suggested_presentation_delay": mpd.suggested_presentation_delay,
        "max_segment_duration": mpd.max_segment_duration,
        "base_urls": base_urls(mpd.base_urls),
        "utc_timings": [
            {"scheme_id_uri": u.scheme_id_uri, "value": u.value}
            for u in (mpd.utc_timings or [])
        ],
        "periods": periods,
    }


def main():
    kind, path = sys.argv[1], sys.argv[2]
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        report = hls_report(text) if kind == "hls" else dash_report(text)
    except Exception as e:  # the parser's word, whatever it raised
        print(
            json.dumps(
                {
                    "error": "%s: %s" % (type(e).__name__, e),
                    "traceback": traceback.format_exc(),
                }
            )
        )
        sys.exit(2)
    print(json.dumps(report, default=str))


main()
