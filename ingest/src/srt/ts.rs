//! The media of an SRT publish, I/O-free: an MPEG transport stream (as
//! ffmpeg, OBS, Larix and GStreamer's `mpegtsmux` send it) demultiplexed
//! into its H.264 and AAC elementary streams, and each PES packet read into
//! decoder configurations and access units in the form the sessions keep:
//! H.264 from Annex B start codes to 4-byte NAL lengths with an
//! AVCDecoderConfigurationRecord built from the in-band SPS and PPS, AAC
//! from ADTS frames to raw frames with their AudioSpecificConfig.
//!
//! Only what a publisher sends is read: one program (the first of the
//! PAT), PSI sections in one packet each, H.264 (stream type 0x1B) and
//! AAC in ADTS (0x0F); other streams of the program are ignored.

use std::collections::HashMap;

use bytes::Bytes;

use crate::rtmp::flv::{AUDIO_TRACK, VIDEO_TRACK};

/// Bytes of one transport stream packet.
const PACKET: usize = 188;
/// Stream type of H.264 video.
const STREAM_H264: u8 = 0x1b;
/// Stream type of AAC audio in ADTS.
const STREAM_AAC_ADTS: u8 = 0x0f;
/// A PES packet larger than this is refused (a frame is bounded by
/// `ingest.max_frame_bytes` later; this bounds the memory before that).
const MAX_PES_BYTES: usize = 16 * 1024 * 1024;

/// Why a transport stream cannot be taken (the error type of the FLV
/// reader: either is media the server cannot take).
pub(crate) use crate::rtmp::flv::TagError as TsError;

fn bad(why: impl Into<String>) -> TsError {
    TsError(why.into())
}

/// One PES packet of a track, its payload whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pes {
    pub(crate) track: u8,
    /// Presentation and decode time, 90 kHz, 33 bits.
    pub(crate) pts: Option<u64>,
    pub(crate) dts: Option<u64>,
    pub(crate) data: Vec<u8>,
    /// Cut short: the stream ended before the length its header announced
    /// (a publisher that closes without sending what it still held).
    pub(crate) truncated: bool,
}

/// A PES packet being assembled: what its header said and its payload.
struct Partial {
    pes: Pes,
    /// The payload length the header announced (none: until the next
    /// packet that starts a PES).
    length: Option<usize>,
}

/// The demultiplexer of one connection's transport stream.
#[derive(Default)]
pub(crate) struct Demuxer {
    /// Bytes of an incomplete packet.
    rest: Vec<u8>,
    pmt_pid: Option<u16>,
    /// The elementary streams of the program: PID → track.
    streams: HashMap<u16, u8>,
    partial: HashMap<u16, Partial>,
    /// Bytes read so far, for the error of a stream without a program.
    read: usize,
}

/// Bytes of input after which a stream without a PAT and PMT is refused.
const PSI_WITHIN: usize = 1024 * 1024;

impl Demuxer {
    /// The tracks the program declares (known once its PMT was read).
    pub(crate) fn tracks(&self) -> Vec<u8> {
        let mut t: Vec<u8> = self.streams.values().copied().collect();
        t.sort_unstable();
        t.dedup();
        t
    }

    /// Read `bytes`; the PES packets completed by them go to `out`.
    pub(crate) fn push(&mut self, bytes: &[u8], out: &mut Vec<Pes>) -> Result<(), TsError> {
        self.read = self.read.saturating_add(bytes.len());
        let mut bytes = bytes;
        if !self.rest.is_empty() {
            // Complete the packet the last input cut.
            let need = (PACKET - self.rest.len()).min(bytes.len());
            self.rest.extend_from_slice(&bytes[..need]);
            bytes = &bytes[need..];
            if self.rest.len() < PACKET {
                return Ok(());
            }
            let packet = std::mem::take(&mut self.rest);
            self.packet(&packet, out)?;
        }
        let mut packets = bytes.chunks_exact(PACKET);
        for packet in packets.by_ref() {
            self.packet(packet, out)?;
        }
        self.rest = packets.remainder().to_vec();
        if self.streams.is_empty() && self.read > PSI_WITHIN {
            return Err(bad(format!(
                "no PAT and PMT with an H.264 or AAC stream in the first {} bytes",
                self.read
            )));
        }
        Ok(())
    }

    /// The stream ended: the PES packets still being assembled.
    pub(crate) fn flush(&mut self, out: &mut Vec<Pes>) {
        let mut pids: Vec<u16> = self.partial.keys().copied().collect();
        pids.sort_unstable();
        for pid in pids {
            if let Some(mut p) = self.partial.remove(&pid) {
                p.pes.truncated = p.length.is_some_and(|l| p.pes.data.len() < l);
                if !p.pes.data.is_empty() {
                    out.push(p.pes);
                }
            }
        }
    }

    fn packet(&mut self, packet: &[u8], out: &mut Vec<Pes>) -> Result<(), TsError> {
        if packet[0] != 0x47 {
            return Err(bad(format!(
                "not an MPEG transport stream: byte 0x{:02x} where a packet's sync byte 0x47 belongs (after {} bytes)",
                packet[0],
                self.read
            )));
        }
        if packet[1] & 0x80 != 0 {
            // Transport error indicator: the sender marked it damaged.
            return Ok(());
        }
        let start = packet[1] & 0x40 != 0;
        let pid = (u16::from(packet[1] & 0x1f) << 8) | u16::from(packet[2]);
        let control = (packet[3] >> 4) & 0x03;
        let mut offset = 4;
        if control & 0x02 != 0 {
            offset += 1 + usize::from(packet[4]);
        }
        if control & 0x01 == 0 || offset >= PACKET {
            return Ok(());
        }
        let payload = &packet[offset..];
        if pid == 0 {
            if start {
                self.pat(section(payload)?)?;
            }
        } else if Some(pid) == self.pmt_pid {
            if start {
                self.pmt(section(payload)?)?;
            }
        } else if let Some(&track) = self.streams.get(&pid) {
            self.pes(pid, track, start, payload, out)?;
        }
        Ok(())
    }

    /// The PAT: the first program's PMT PID.
    fn pat(&mut self, body: &[u8]) -> Result<(), TsError> {
        let programs = body.chunks_exact(4);
        for p in programs {
            let number = u16::from_be_bytes([p[0], p[1]]);
            if number != 0 {
                self.pmt_pid = Some((u16::from(p[2] & 0x1f) << 8) | u16::from(p[3]));
                return Ok(());
            }
        }
        Err(bad("a PAT without a program"))
    }

    /// The PMT: the PIDs of the program's H.264 and AAC streams.
    fn pmt(&mut self, body: &[u8]) -> Result<(), TsError> {
        if body.len() < 4 {
            return Err(bad("a PMT shorter than its header"));
        }
        let info = usize::from(u16::from_be_bytes([body[2], body[3]]) & 0x0fff);
        let mut es = body.get(4 + info..).unwrap_or_default();
        let mut streams = HashMap::new();
        let mut others = Vec::new();
        while es.len() >= 5 {
            let kind = es[0];
            let pid = (u16::from(es[1] & 0x1f) << 8) | u16::from(es[2]);
            let len = usize::from(u16::from_be_bytes([es[3], es[4]]) & 0x0fff);
            match kind {
                STREAM_H264 if !streams.values().any(|t| *t == VIDEO_TRACK) => {
                    streams.insert(pid, VIDEO_TRACK);
                }
                STREAM_AAC_ADTS if !streams.values().any(|t| *t == AUDIO_TRACK) => {
                    streams.insert(pid, AUDIO_TRACK);
                }
                _ => others.push(kind),
            }
            es = es.get(5 + len..).unwrap_or_default();
        }
        if streams.is_empty() {
            return Err(bad(format!(
                "the program has no H.264 (stream type 0x1b) or AAC/ADTS (0x0f) stream; its stream types: {others:02x?}"
            )));
        }
        if !self.streams.is_empty() && self.streams != streams {
            return Err(bad("the program's streams changed mid-stream"));
        }
        self.streams = streams;
        Ok(())
    }

    fn pes(
        &mut self,
        pid: u16,
        track: u8,
        start: bool,
        payload: &[u8],
        out: &mut Vec<Pes>,
    ) -> Result<(), TsError> {
        if start {
            if let Some(done) = self.partial.remove(&pid) {
                if !done.pes.data.is_empty() {
                    out.push(done.pes);
                }
            }
            let (pes, length) = pes_header(track, payload)?;
            self.partial.insert(pid, Partial { pes, length });
        } else if let Some(p) = self.partial.get_mut(&pid) {
            p.pes.data.extend_from_slice(payload);
            if p.pes.data.len() > MAX_PES_BYTES {
                return Err(bad(format!("a PES packet above {MAX_PES_BYTES} bytes")));
            }
        }
        // A PES packet whose length was announced is complete as soon as
        // it is all there (audio, mostly); the rest wait for the next one.
        let complete = self
            .partial
            .get(&pid)
            .is_some_and(|p| p.length.is_some_and(|l| p.pes.data.len() >= l));
        if complete {
            if let Some(mut done) = self.partial.remove(&pid) {
                if let Some(l) = done.length {
                    done.pes.data.truncate(l);
                }
                out.push(done.pes);
            }
        }
        Ok(())
    }
}

/// The body of the PSI section starting in `payload` (after its pointer
/// field): from the field after `last_section_number` to before the CRC.
fn section(payload: &[u8]) -> Result<&[u8], TsError> {
    let pointer = usize::from(*payload.first().ok_or_else(|| bad("an empty PSI packet"))?);
    let s = payload
        .get(1 + pointer..)
        .filter(|s| s.len() >= 8)
        .ok_or_else(|| bad("a PSI section shorter than its header"))?;
    let length = usize::from(u16::from_be_bytes([s[1], s[2]]) & 0x0fff);
    let end = 3 + length;
    if length < 9 || end > s.len() {
        return Err(bad(format!(
            "a PSI section of {length} bytes that does not fit its packet"
        )));
    }
    Ok(&s[8..end - 4])
}

/// A PES header: its timestamps and the payload after it, and the length
/// of the payload when the header announced one.
fn pes_header(track: u8, payload: &[u8]) -> Result<(Pes, Option<usize>), TsError> {
    if payload.len() < 9 || payload[..3] != [0, 0, 1] {
        return Err(bad("a PES packet without its start code"));
    }
    let announced = usize::from(u16::from_be_bytes([payload[4], payload[5]]));
    let flags = payload[7] >> 6;
    let header = 9 + usize::from(payload[8]);
    let body = payload
        .get(header..)
        .ok_or_else(|| bad("a PES header longer than its packet"))?;
    let stamp = |at: usize| -> Result<u64, TsError> {
        let b = payload
            .get(at..at + 5)
            .ok_or_else(|| bad("a PES timestamp cut short"))?;
        Ok(((u64::from(b[0] >> 1) & 0x07) << 30)
            | (u64::from(b[1]) << 22)
            | (u64::from(b[2] >> 1) << 15)
            | (u64::from(b[3]) << 7)
            | u64::from(b[4] >> 1))
    };
    let pts = if flags & 0x02 != 0 {
        Some(stamp(9)?)
    } else {
        None
    };
    let dts = if flags == 0x03 { Some(stamp(14)?) } else { pts };
    let length = (announced != 0).then(|| announced.saturating_sub(header - 6));
    Ok((
        Pes {
            track,
            pts,
            dts,
            data: body.to_vec(),
            truncated: false,
        },
        length,
    ))
}

/// What a PES packet holds for the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Item {
    /// A decoder configuration: the AVCDecoderConfigurationRecord of the
    /// in-band SPS and PPS, or the AudioSpecificConfig of an ADTS header.
    Config(u8, Vec<u8>),
    /// One access unit, timed in 90 kHz ticks (33 bits).
    Unit(Access),
}

/// One access unit of a track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Access {
    pub(crate) track: u8,
    pub(crate) pts: u64,
    pub(crate) dts: u64,
    pub(crate) keyframe: bool,
    pub(crate) data: Bytes,
}

/// The configurations and access units of one PES packet; of one cut
/// short, the whole access units only.
pub(crate) fn items(pes: Pes) -> Result<Vec<Item>, TsError> {
    let Some(pts) = pes.pts else {
        return Err(bad(format!(
            "a {} PES packet without a timestamp",
            if pes.track == VIDEO_TRACK {
                "video"
            } else {
                "audio"
            }
        )));
    };
    let dts = pes.dts.unwrap_or(pts);
    match (pes.track, pes.truncated) {
        (VIDEO_TRACK, false) => Ok(video(&pes.data, pts, dts)),
        (VIDEO_TRACK, true) => Ok(Vec::new()),
        (_, truncated) => audio(&pes.data, pts, truncated),
    }
}

/// The NAL units of an Annex B byte stream.
fn nal_units(data: &[u8]) -> Vec<&[u8]> {
    // Start codes found with memchr's vectorised search: this scan is the
    // SRT ingest's largest cost per byte after the transport itself.
    let starts: Vec<usize> = memchr::memmem::find_iter(data, &[0, 0, 1])
        .map(|i| i + 3)
        .collect();
    let mut nals = Vec::new();
    for (n, &s) in starts.iter().enumerate() {
        let mut end = starts.get(n + 1).map_or(data.len(), |next| next - 3);
        // Zero bytes before the next start code (a 4-byte start code, or
        // trailing zeros) belong to no NAL unit.
        while end > s && data[end - 1] == 0 {
            end -= 1;
        }
        if end > s {
            nals.push(&data[s..end]);
        }
    }
    nals
}

/// An H.264 access unit in Annex B: its configuration when it carries an
/// SPS and a PPS, and its other NAL units with 4-byte lengths.
fn video(data: &[u8], pts: u64, dts: u64) -> Vec<Item> {
    let (mut sps, mut pps) = (None, None);
    let mut au = Vec::with_capacity(data.len());
    let mut keyframe = false;
    for nal in nal_units(data) {
        match nal[0] & 0x1f {
            7 => sps = sps.or(Some(nal)),
            8 => pps = pps.or(Some(nal)),
            // Access unit delimiters: the access unit is the PES packet.
            9 => {}
            kind => {
                keyframe |= kind == 5;
                au.extend_from_slice(&(nal.len() as u32).to_be_bytes());
                au.extend_from_slice(nal);
            }
        }
    }
    let mut items = Vec::new();
    if let (Some(sps), Some(pps)) = (sps, pps) {
        items.push(Item::Config(VIDEO_TRACK, avc_record(sps, pps)));
    }
    if !au.is_empty() {
        items.push(Item::Unit(Access {
            track: VIDEO_TRACK,
            pts,
            dts,
            keyframe,
            data: Bytes::from(au),
        }));
    }
    items
}

/// The AVCDecoderConfigurationRecord of one SPS and one PPS, 4-byte NAL
/// lengths (what an RTMP publisher's sequence header holds).
fn avc_record(sps: &[u8], pps: &[u8]) -> Vec<u8> {
    let mut r = vec![
        1,
        sps.get(1).copied().unwrap_or(0),
        sps.get(2).copied().unwrap_or(0),
        sps.get(3).copied().unwrap_or(0),
        0xff,
        0xe1,
    ];
    r.extend_from_slice(&(sps.len() as u16).to_be_bytes());
    r.extend_from_slice(sps);
    r.push(1);
    r.extend_from_slice(&(pps.len() as u16).to_be_bytes());
    r.extend_from_slice(pps);
    r
}

/// Sampling frequencies of the 4-bit index of ADTS and AudioSpecificConfig.
const AAC_RATES: [u32; 13] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
];

/// The ADTS frames of an AAC PES packet: each a raw frame timed 1024
/// samples after the one before, and the AudioSpecificConfig of the
/// first's header. Of a packet cut short, the last frame is left out.
fn audio(mut data: &[u8], pts: u64, truncated: bool) -> Result<Vec<Item>, TsError> {
    let mut items = Vec::new();
    let mut n = 0u64;
    while !data.is_empty() {
        if data.len() < 7 || data[0] != 0xff || data[1] & 0xf0 != 0xf0 {
            return Err(bad("AAC audio that is not in ADTS frames"));
        }
        let protection_absent = data[1] & 0x01 != 0;
        let profile = data[2] >> 6;
        let index = (data[2] >> 2) & 0x0f;
        let channels = ((data[2] & 0x01) << 2) | (data[3] >> 6);
        let length = (usize::from(data[3] & 0x03) << 11)
            | (usize::from(data[4]) << 3)
            | usize::from(data[5] >> 5);
        let header = if protection_absent { 7 } else { 9 };
        if truncated && length > data.len() {
            break;
        }
        if length <= header || length > data.len() {
            return Err(bad(format!(
                "an ADTS frame of {length} bytes in {} bytes of audio",
                data.len()
            )));
        }
        let rate = *AAC_RATES.get(usize::from(index)).ok_or_else(|| {
            bad(format!(
                "ADTS sampling frequency index {index} is not valid"
            ))
        })?;
        if n == 0 {
            let object = profile + 1;
            let asc = vec![
                (object << 3) | (index >> 1),
                ((index & 0x01) << 7) | (channels << 3),
            ];
            items.push(Item::Config(AUDIO_TRACK, asc));
        }
        items.push(Item::Unit(Access {
            track: AUDIO_TRACK,
            pts: (pts + n * 1024 * 90_000 / u64::from(rate)) & MASK_33,
            dts: (pts + n * 1024 * 90_000 / u64::from(rate)) & MASK_33,
            keyframe: true,
            data: Bytes::copy_from_slice(&data[header..length]),
        }));
        n += 1;
        data = &data[length..];
    }
    Ok(items)
}

/// The 33 bits of an MPEG timestamp.
pub(crate) const MASK_33: u64 = (1 << 33) - 1;

/// The difference `to - from` of two 33-bit timestamps, taken as the
/// shorter way round (signed).
pub(crate) fn delta_33(from: u64, to: u64) -> i64 {
    let d = to.wrapping_sub(from) & MASK_33;
    if d >= 1 << 32 {
        d as i64 - (1 << 33)
    } else {
        d as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A transport stream packet of `pid` carrying `payload` (stuffed
    /// with an adaptation field when shorter than a packet).
    fn packet(pid: u16, start: bool, cc: u8, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![
            0x47,
            (u8::from(start) << 6) | (pid >> 8) as u8,
            pid as u8,
            0,
        ];
        let room = PACKET - 4;
        if payload.len() >= room {
            p[3] = 0x10 | (cc & 0x0f);
            p.extend_from_slice(&payload[..room]);
        } else {
            p[3] = 0x30 | (cc & 0x0f);
            let stuffing = room - payload.len() - 1;
            p.push(stuffing as u8);
            if stuffing > 0 {
                p.push(0);
                p.extend(std::iter::repeat_n(0xff, stuffing - 1));
            }
            p.extend_from_slice(payload);
        }
        assert_eq!(p.len(), PACKET);
        p
    }

    /// A PSI section (pointer field first) with a dummy CRC.
    fn psi(table: u8, body: &[u8]) -> Vec<u8> {
        let length = 5 + body.len() + 4;
        let mut s = vec![
            0,
            table,
            0xb0 | (length >> 8) as u8,
            length as u8,
            0,
            1,
            0xc1,
            0,
            0,
        ];
        s.extend_from_slice(body);
        s.extend_from_slice(&[0, 0, 0, 0]);
        s
    }

    fn pat_pmt() -> Vec<u8> {
        let mut ts = packet(0, true, 0, &psi(0, &[0, 1, 0xf0, 0x00]));
        let pmt = [
            0xe1, 0x00, 0xf0, 0x00, // PCR PID, no program info
            0x1b, 0xe1, 0x00, 0xf0, 0x00, // H.264 on 0x100
            0x0f, 0xe1, 0x01, 0xf0, 0x00, // AAC on 0x101
            0x06, 0xe1, 0x02, 0xf0, 0x00, // private data: ignored
        ];
        ts.extend(packet(0x1000, true, 0, &psi(2, &pmt)));
        ts
    }

    fn stamp(marker: u8, t: u64) -> [u8; 5] {
        [
            (marker << 4) | (((t >> 30) as u8 & 0x07) << 1) | 1,
            (t >> 22) as u8,
            (((t >> 15) as u8) << 1) | 1,
            (t >> 7) as u8,
            ((t as u8) << 1) | 1,
        ]
    }

    /// A PES packet: length announced or not, PTS and DTS.
    fn pes(stream: u8, pts: u64, dts: u64, body: &[u8], announce: bool) -> Vec<u8> {
        let len = if announce { 3 + 10 + body.len() } else { 0 };
        let mut p = vec![0, 0, 1, stream, (len >> 8) as u8, len as u8, 0x80, 0xc0, 10];
        p.extend_from_slice(&stamp(3, pts));
        p.extend_from_slice(&stamp(1, dts));
        p.extend_from_slice(body);
        p
    }

    const SPS: &[u8] = &[0x67, 0x64, 0x00, 0x1e, 0xac, 0xb4];
    const PPS: &[u8] = &[0x68, 0xef, 0x3c, 0xb0];

    fn idr_annexb() -> Vec<u8> {
        let mut v = vec![0, 0, 0, 1, 0x09, 0xf0];
        for nal in [SPS, PPS, &[0x65, 0x88, 0x80, 0x00, 0x00][..]] {
            v.extend_from_slice(&[0, 0, 0, 1]);
            v.extend_from_slice(nal);
        }
        v
    }

    fn adts(payload: &[u8]) -> Vec<u8> {
        // AAC-LC, 44.1 kHz (index 4), stereo, no CRC.
        let len = 7 + payload.len();
        let mut f = vec![
            0xff,
            0xf1,
            (1 << 6) | (4 << 2),
            (2 << 6) | ((len >> 11) as u8 & 0x03),
            (len >> 3) as u8,
            ((len as u8) << 5) | 0x1f,
            0xfc,
        ];
        f.extend_from_slice(payload);
        f
    }

    fn demux_all(ts: &[u8], chunk: usize) -> (Demuxer, Vec<Pes>) {
        let mut d = Demuxer::default();
        let mut out = Vec::new();
        for c in ts.chunks(chunk) {
            d.push(c, &mut out).unwrap();
        }
        d.flush(&mut out);
        (d, out)
    }

    #[test]
    fn a_program_is_demultiplexed_into_video_and_audio_pes_packets() {
        let mut ts = pat_pmt();
        // A video PES of two packets (length not announced), audio with
        // its length, then the next video PES that ends the first.
        let video = pes(
            0xe0,
            9000,
            6000,
            &[vec![0xaa; 300], idr_annexb()].concat(),
            false,
        );
        ts.extend(packet(0x100, true, 0, &video[..184]));
        ts.extend(packet(0x100, false, 1, &video[184..]));
        let audio = pes(
            0xc0,
            9000,
            9000,
            &[adts(&[1, 2, 3]), adts(&[4, 5])].concat(),
            true,
        );
        ts.extend(packet(0x101, true, 0, &audio));
        ts.extend(packet(
            0x100,
            true,
            2,
            &pes(0xe0, 12000, 9000, &idr_annexb(), false),
        ));
        // Byte by byte and in SRT-sized chunks alike.
        for chunk in [1, 1316] {
            let (d, out) = demux_all(&ts, chunk);
            assert_eq!(d.tracks(), vec![VIDEO_TRACK, AUDIO_TRACK]);
            let kinds: Vec<(u8, Option<u64>, Option<u64>)> =
                out.iter().map(|p| (p.track, p.pts, p.dts)).collect();
            assert_eq!(
                kinds,
                vec![
                    (AUDIO_TRACK, Some(9000), Some(9000)),
                    (VIDEO_TRACK, Some(9000), Some(6000)),
                    (VIDEO_TRACK, Some(12000), Some(9000)),
                ]
            );
            assert_eq!(out[1].data.len(), 300 + idr_annexb().len());
        }
    }

    #[test]
    fn annex_b_becomes_length_prefixed_with_its_configuration() {
        let got = items(Pes {
            track: VIDEO_TRACK,
            pts: Some(3003),
            dts: Some(0),
            data: idr_annexb(),
            truncated: false,
        })
        .unwrap();
        let mut record = vec![1, 0x64, 0x00, 0x1e, 0xff, 0xe1, 0, 6];
        record.extend_from_slice(SPS);
        record.extend_from_slice(&[1, 0, 4]);
        record.extend_from_slice(PPS);
        assert_eq!(
            got,
            vec![
                Item::Config(VIDEO_TRACK, record),
                Item::Unit(Access {
                    track: VIDEO_TRACK,
                    pts: 3003,
                    dts: 0,
                    keyframe: true,
                    // The AUD, SPS and PPS out; the slice's trailing zeros
                    // out with them.
                    data: Bytes::from_static(&[0, 0, 0, 3, 0x65, 0x88, 0x80]),
                }),
            ]
        );
        // A non-IDR slice behind a 3-byte start code.
        let p = Pes {
            track: VIDEO_TRACK,
            pts: Some(1),
            dts: None,
            data: vec![0, 0, 1, 0x41, 0x9a],
            truncated: false,
        };
        assert_eq!(
            items(p).unwrap(),
            vec![Item::Unit(Access {
                track: VIDEO_TRACK,
                pts: 1,
                dts: 1,
                keyframe: false,
                data: Bytes::from_static(&[0, 0, 0, 2, 0x41, 0x9a]),
            })]
        );
    }

    #[test]
    fn adts_frames_become_raw_frames_with_their_audio_specific_config() {
        let p = Pes {
            track: AUDIO_TRACK,
            pts: Some(MASK_33 - 100),
            dts: None,
            data: [adts(&[1, 2, 3]), adts(&[4, 5])].concat(),
            truncated: false,
        };
        let got = items(p).unwrap();
        // AAC-LC, 44.1 kHz, stereo: what an RTMP sequence header says.
        assert_eq!(got[0], Item::Config(AUDIO_TRACK, vec![0x12, 0x10]));
        let Item::Unit(first) = &got[1] else {
            panic!("{got:?}")
        };
        let Item::Unit(second) = &got[2] else {
            panic!("{got:?}")
        };
        assert_eq!(first.data, Bytes::from_static(&[1, 2, 3]));
        assert_eq!(second.data, Bytes::from_static(&[4, 5]));
        // 1024 samples later, across the 33-bit wrap.
        assert_eq!(delta_33(first.pts, second.pts), 1024 * 90_000 / 44_100);
        assert!(second.pts < first.pts);
        let broken = Pes {
            track: AUDIO_TRACK,
            pts: Some(0),
            dts: None,
            data: vec![0xff, 0xf1, 0x50, 0x80, 0xff, 0xff, 0xfc],
            truncated: false,
        };
        assert!(items(broken.clone())
            .unwrap_err()
            .0
            .contains("ADTS frame of"));
        // The same at the end of a stream cut short: the whole frames
        // before it are kept, the cut one left out.
        let mut cut = broken;
        cut.data = [adts(&[7]), cut.data].concat();
        cut.truncated = true;
        let got = items(cut).unwrap();
        assert_eq!(got.len(), 2, "{got:?}");
    }

    #[test]
    fn timestamps_wrap_at_33_bits() {
        assert_eq!(delta_33(MASK_33, 0), 1);
        assert_eq!(delta_33(0, MASK_33), -1);
        assert_eq!(delta_33(1000, 4000), 3000);
    }

    #[test]
    fn garbage_is_refused_with_a_reason_and_never_panics() {
        let mut d = Demuxer::default();
        let e = d.push(&[0x42; 400], &mut Vec::new()).unwrap_err();
        assert!(e.0.contains("sync byte"), "{e}");
        // Random packets behind a sync byte: errors or nothing, no panic.
        let mut seed = 11u64;
        let mut rnd = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
            (seed >> 56) as u8
        };
        for _ in 0..2000 {
            let mut d = Demuxer::default();
            let _ = d.push(&pat_pmt(), &mut Vec::new());
            let mut p: Vec<u8> = (0..PACKET).map(|_| rnd()).collect();
            p[0] = 0x47;
            if p[1] & 1 == 0 {
                p[1] = 0x41;
                p[2] = 0x00;
            }
            let mut out = Vec::new();
            let _ = d.push(&p, &mut out);
            d.flush(&mut out);
            for pes in out {
                let _ = items(pes);
            }
        }
        let body: Vec<u8> = (0..300).map(|_| rnd()).collect();
        for track in [VIDEO_TRACK, AUDIO_TRACK] {
            let _ = items(Pes {
                track,
                pts: Some(0),
                dts: None,
                data: body.clone(),
                truncated: track == AUDIO_TRACK,
            });
        }
    }

    #[test]
    fn a_program_without_h264_or_aac_is_refused() {
        let mut ts = packet(0, true, 0, &psi(0, &[0, 1, 0xf0, 0x00]));
        let pmt = [0xe1, 0x00, 0xf0, 0x00, 0x24, 0xe1, 0x00, 0xf0, 0x00];
        ts.extend(packet(0x1000, true, 0, &psi(2, &pmt)));
        let e = Demuxer::default().push(&ts, &mut Vec::new()).unwrap_err();
        assert!(e.0.contains("[24]"), "{e}");
    }
}
