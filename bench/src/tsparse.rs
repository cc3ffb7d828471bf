//! Incremental scanner for progressive MPEG-TS over HTTP (`GET /<stream>.ts`):
//! an HTTP/1.1 response head, then 188-byte transport packets. Only the
//! packets that start a video PES (PUSI set, stream id 0xE0–0xEF) are looked
//! at: their DTS (or PTS) in 90 kHz ticks becomes a millisecond timestamp —
//! the FLV timestamp the publisher sent, for a server that passes
//! timestamps through (`ms × 90`) — and a random-access indicator or an IDR
//! NAL unit in that packet marks a keyframe. A frame is reported when its
//! first packet arrives (the rest of a frame follows within microseconds on
//! loopback; video PES packets are unbounded, so their end is only known
//! when the next one starts, a frame interval later).
//!
//! Frames are reported as [`TagSeen`] video tags so the live viewer treats
//! every protocol alike: `peek[0]` is 0x17 (keyframe, AVC) or 0x27, and
//! `peek[1]` is 1 (coded frame).
use crate::flvparse::{ScanError, TagSeen, response_head};
use crate::httpbody::Dechunk;

const PACKET: usize = 188;

/// HTTP response head + TS packet scanner.
#[derive(Debug)]
pub struct HttpTsScanner {
    in_head: bool,
    head: Vec<u8>,
    packets: TsPackets,
    /// The body is `Transfer-Encoding: chunked`.
    chunked: Option<Dechunk>,
}

/// The transport packet part of the scanner (a TS body without HTTP, e.g.
/// an HLS segment), over split input.
#[derive(Debug)]
pub struct TsPackets {
    pkt: [u8; PACKET],
    pkt_len: usize,
}

impl Default for TsPackets {
    fn default() -> Self {
        Self {
            pkt: [0; PACKET],
            pkt_len: 0,
        }
    }
}

impl TsPackets {
    /// Consume TS bytes, calling `on_frame` for every video PES start.
    pub fn feed(
        &mut self,
        mut data: &[u8],
        on_frame: &mut impl FnMut(TagSeen),
    ) -> Result<(), ScanError> {
        while !data.is_empty() {
            if self.pkt_len == 0 && data.len() >= PACKET {
                let (p, rest) = data.split_at(PACKET);
                packet(p, on_frame)?;
                data = rest;
                continue;
            }
            let take = (PACKET - self.pkt_len).min(data.len());
            self.pkt[self.pkt_len..self.pkt_len + take].copy_from_slice(&data[..take]);
            self.pkt_len += take;
            data = &data[take..];
            if self.pkt_len == PACKET {
                self.pkt_len = 0;
                let p = self.pkt;
                packet(&p, on_frame)?;
            }
        }
        Ok(())
    }
}

impl Default for HttpTsScanner {
    fn default() -> Self {
        Self::new()
    }
}

/// 33-bit PES timestamp at `b[0..5]`.
fn pes_ts(b: &[u8]) -> u64 {
    (u64::from(b[0] >> 1) & 0x07) << 30
        | u64::from(b[1]) << 22
        | (u64::from(b[2]) >> 1) << 15
        | u64::from(b[3]) << 7
        | u64::from(b[4]) >> 1
}

impl HttpTsScanner {
    /// A scanner expecting a response head first.
    pub fn new() -> Self {
        Self {
            in_head: true,
            head: Vec::new(),
            packets: TsPackets::default(),
            chunked: None,
        }
    }

    /// Consume `data`, calling `on_frame` for every video PES start in it.
    pub fn feed(
        &mut self,
        data: &[u8],
        mut on_frame: impl FnMut(TagSeen),
    ) -> Result<(), ScanError> {
        let mut data = data;
        if self.in_head {
            let mut chunked = false;
            match response_head(&mut self.head, data, &mut chunked)? {
                None => return Ok(()),
                Some(rest) => data = rest,
            }
            self.in_head = false;
            self.chunked = chunked.then(Dechunk::default);
        }
        match self.chunked.take() {
            Some(mut d) => {
                let r = d
                    .feed(
                        data,
                        |_| ScanError::BadChunk,
                        |piece| self.body(piece, &mut on_frame),
                    )
                    .map(|_| ());
                self.chunked = Some(d);
                r
            }
            None => self.body(data, &mut on_frame),
        }
    }

    fn body(&mut self, data: &[u8], on_frame: &mut impl FnMut(TagSeen)) -> Result<(), ScanError> {
        self.packets.feed(data, on_frame)
    }
}

/// One transport packet: report a video PES start.
fn packet(p: &[u8], on_frame: &mut impl FnMut(TagSeen)) -> Result<(), ScanError> {
    if p[0] != 0x47 {
        return Err(ScanError::BadTs);
    }
    let pusi = p[1] & 0x40 != 0;
    let afc = (p[3] >> 4) & 0x03;
    if !pusi || afc & 0x01 == 0 {
        return Ok(());
    }
    let mut at = 4;
    let mut rai = false;
    if afc & 0x02 != 0 {
        let len = usize::from(p[4]);
        if len > 0 {
            rai = p[5] & 0x40 != 0;
        }
        at = 5 + len;
    }
    let pay = p.get(at..).unwrap_or_default();
    // PES header: 00 00 01 id len(2) flags(2) hdr_len, then PTS [DTS].
    if pay.len() < 14 || pay[..3] != [0, 0, 1] || !(0xE0..=0xEF).contains(&pay[3]) {
        return Ok(());
    }
    let flags = pay[7] >> 6;
    let ts = match flags {
        3 if pay.len() >= 19 => pes_ts(&pay[14..19]),
        2 | 3 => pes_ts(&pay[9..14]),
        _ => return Ok(()),
    };
    let es = pay.get(9 + usize::from(pay[8])..).unwrap_or_default();
    let idr = es
        .windows(4)
        .any(|w| w[..3] == [0, 0, 1] && (w[3] & 0x1F == 5 || (w[3] >> 1) & 0x3F == 19));
    on_frame(TagSeen {
        tag_type: 9,
        ts: (ts / 90) as u32,
        peek: [if rai || idr { 0x17 } else { 0x27 }, 1],
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pes_packet(dts_ms: u64, key: bool) -> Vec<u8> {
        let ts = dts_ms * 90;
        let enc = |marker: u8, t: u64| {
            [
                marker << 4 | ((t >> 29) as u8 & 0x0E) | 1,
                (t >> 22) as u8,
                ((t >> 14) as u8 & 0xFE) | 1,
                (t >> 7) as u8,
                ((t << 1) as u8) | 1,
            ]
        };
        let mut p = vec![0x47, 0x40 | 0x01, 0x00, 0x30, 1, if key { 0x40 } else { 0 }];
        p.extend_from_slice(&[0, 0, 1, 0xE0, 0, 0, 0x80, 0xC0, 10]);
        p.extend_from_slice(&enc(3, ts + 90 * 40));
        p.extend_from_slice(&enc(1, ts));
        p.extend_from_slice(&[0, 0, 0, 1, 0x09, 0xF0]);
        p.resize(PACKET, 0xFF);
        p
    }

    #[test]
    fn finds_video_pes_split_anywhere() {
        let mut all = b"HTTP/1.1 200 OK\r\nContent-Type: video/mp2t\r\n\r\n".to_vec();
        all.extend(pes_packet(1000, true));
        let mut audio = pes_packet(1000, false);
        audio[9] = 0xC0; // audio stream id
        all.extend(audio);
        let mut cont = pes_packet(1033, false);
        cont[1] = 0x01; // no PUSI: continuation
        all.extend(cont);
        all.extend(pes_packet(1066, false));
        for split in [1, 7, 50, 188, 300] {
            let mut s = HttpTsScanner::new();
            let mut seen = Vec::new();
            for c in all.chunks(split) {
                s.feed(c, |t| seen.push(t)).unwrap();
            }
            assert_eq!(seen.len(), 2, "split {split}");
            assert_eq!(seen[0].ts, 1000);
            assert_eq!(seen[0].peek, [0x17, 1]);
            assert!(seen[0].is_video_frame());
            assert_eq!(seen[1].ts, 1066);
            assert_eq!(seen[1].peek[0], 0x27);
        }
    }

    #[test]
    fn chunked_bodies_are_decoded() {
        let mut body = Vec::new();
        body.extend(pes_packet(2000, true));
        body.extend(pes_packet(2033, false));
        // Chunks of odd sizes, one with an extension, then the last chunk.
        let mut all = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for (i, c) in body.chunks(77).enumerate() {
            let ext = if i == 1 { ";x=y" } else { "" };
            all.extend(format!("{:x}{ext}\r\n", c.len()).into_bytes());
            all.extend_from_slice(c);
            all.extend_from_slice(b"\r\n");
        }
        all.extend_from_slice(b"0\r\n\r\n");
        for split in [1, 5, 64, 1000] {
            let mut s = HttpTsScanner::new();
            let mut seen = Vec::new();
            for c in all.chunks(split) {
                s.feed(c, |t| seen.push(t.ts)).unwrap();
            }
            assert_eq!(seen, [2000, 2033], "split {split}");
        }
        let mut s = HttpTsScanner::new();
        assert_eq!(
            s.feed(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                |_| {}
            ),
            Err(ScanError::BadChunk)
        );
    }

    #[test]
    fn refuses_404_and_lost_sync() {
        let mut s = HttpTsScanner::new();
        assert_eq!(
            s.feed(b"HTTP/1.1 404 Not Found\r\n\r\n", |_| {}),
            Err(ScanError::Status(404))
        );
        let mut s = HttpTsScanner::new();
        let mut d = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
        d.extend([0u8; 188]);
        assert_eq!(s.feed(&d, |_| {}), Err(ScanError::BadTs));
    }
}
