//! Codec configuration and frame layout as phone encoders give them,
//! turned into what the ingest protocol carries (`docs/ingest-protocol.md`):
//! a decoder configuration record per track and length-prefixed (4-byte)
//! access units.
//!
//! | encoder | gives | here |
//! | --- | --- | --- |
//! | Android MediaCodec, H.264 | `csd-0` = SPS, `csd-1` = PPS, Annex B (start codes); frames Annex B | [`VideoConfig::MediaCodec`], [`NalFormat::AnnexB`] |
//! | Android MediaCodec, H.265 | `csd-0` = VPS + SPS + PPS, Annex B; frames Annex B | [`VideoConfig::MediaCodec`], [`NalFormat::AnnexB`] |
//! | iOS VideoToolbox | the format description's parameter sets (no start codes) and its NAL unit header length; frames length-prefixed | [`VideoConfig::ParameterSets`], [`NalFormat::LengthPrefixed`] |
//! | either, already packaged | an `avcC` / `hvcC` record | [`VideoConfig::Record`] |
//! | MediaCodec AAC | `csd-0` = AudioSpecificConfig; frames raw | [`audio_config`] with [`AudioCodec::Aac`] |
//! | AudioToolbox AAC | magic cookie: an `esds` ES descriptor (or the bare AudioSpecificConfig) | the same |
//! | MediaCodec Opus | `csd-0` = the `OpusHead` header; frames raw Opus packets | [`AudioCodec::Opus`] |
//!
//! Everything here is a pure function over bytes; malformed input is an
//! error naming what is wrong, never a panic.

use sharecast_formats::media::Codec;

/// Why a configuration or a frame could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}: {why}")]
pub struct CodecError {
    /// What was being read.
    pub what: &'static str,
    /// What is wrong.
    pub why: String,
}

fn err(what: &'static str, why: impl Into<String>) -> CodecError {
    CodecError {
        what,
        why: why.into(),
    }
}

/// How a video encoder lays out NAL units in its output buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NalFormat {
    /// Start codes (`00 00 01` or `00 00 00 01`) before each NAL unit
    /// (MediaCodec).
    AnnexB,
    /// A big-endian length of this many bytes (1, 2 or 4) before each NAL
    /// unit (VideoToolbox: the format description's NAL unit header length,
    /// usually 4).
    LengthPrefixed(u8),
}

/// A video track's codec configuration, as the encoder gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VideoConfig {
    /// MediaCodec's output format: `csd-0` and, for H.264, `csd-1`, each
    /// Annex B (a buffer without start codes is taken as one NAL unit).
    MediaCodec {
        /// `csd-0`.
        csd0: Vec<u8>,
        /// `csd-1` (H.264 PPS), if any.
        csd1: Option<Vec<u8>>,
    },
    /// The parameter sets of a VideoToolbox format description, each a NAL
    /// unit without a start code (VPS, SPS, PPS in any order).
    ParameterSets(Vec<Vec<u8>>),
    /// An `avcC` / `hvcC` decoder configuration record, used as is.
    Record(Vec<u8>),
}

/// Split an Annex B buffer into its NAL units (start codes and trailing
/// zero bytes removed). A buffer that does not start with a start code is
/// one NAL unit.
pub fn split_annexb(data: &[u8]) -> Vec<&[u8]> {
    let mut starts: Vec<(usize, usize)> = Vec::new(); // (code start, payload start)
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            let code_start = if i > 0 && data[i - 1] == 0 { i - 1 } else { i };
            starts.push((code_start, i + 3));
            i += 3;
        } else {
            i += 1;
        }
    }
    if starts.is_empty() {
        return if data.is_empty() {
            Vec::new()
        } else {
            vec![data]
        };
    }
    let mut out = Vec::with_capacity(starts.len());
    for (k, (_, begin)) in starts.iter().enumerate() {
        let end = starts.get(k + 1).map(|(c, _)| *c).unwrap_or(data.len());
        let mut nal = &data[*begin..end.max(*begin)];
        while let [rest @ .., 0] = nal {
            nal = rest;
        }
        if !nal.is_empty() {
            out.push(nal);
        }
    }
    out
}

/// Split a length-prefixed buffer into its NAL units.
pub fn split_length_prefixed(data: &[u8], size: u8) -> Result<Vec<&[u8]>, CodecError> {
    if !matches!(size, 1 | 2 | 4) {
        return Err(err("NAL length size", format!("{size} (1, 2 or 4)")));
    }
    let size = usize::from(size);
    let mut out = Vec::new();
    let mut i = 0;
    while i < data.len() {
        if i + size > data.len() {
            return Err(err(
                "length-prefixed frame",
                format!("length field cut at byte {i}"),
            ));
        }
        let len = data[i..i + size]
            .iter()
            .fold(0usize, |a, b| (a << 8) | usize::from(*b));
        i += size;
        if len > data.len() - i {
            return Err(err(
                "length-prefixed frame",
                format!(
                    "NAL unit of {len} bytes at byte {} runs past the end ({} bytes)",
                    i - size,
                    data.len()
                ),
            ));
        }
        out.push(&data[i..i + len]);
        i += len;
    }
    Ok(out)
}

/// Join NAL units with 4-byte big-endian lengths (what the ingest protocol
/// carries).
pub fn to_length_prefixed(nals: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nals.iter().map(|n| n.len() + 4).sum());
    for n in nals {
        out.extend_from_slice(&(n.len() as u32).to_be_bytes());
        out.extend_from_slice(n);
    }
    out
}

/// Join NAL units with 4-byte start codes (what MediaCodec gives).
pub fn to_annexb(nals: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nals.iter().map(|n| n.len() + 4).sum());
    for n in nals {
        out.extend_from_slice(&[0, 0, 0, 1]);
        out.extend_from_slice(n);
    }
    out
}

/// A video frame as the encoder gives it, in the protocol's layout
/// (4-byte lengths). Length-prefixed input with 4-byte lengths is checked
/// and passed through without a copy of its NAL units' layout changing.
pub fn video_frame(data: &[u8], format: NalFormat) -> Result<Vec<u8>, CodecError> {
    let nals = match format {
        NalFormat::AnnexB => split_annexb(data),
        NalFormat::LengthPrefixed(4) => {
            split_length_prefixed(data, 4)?;
            return Ok(data.to_vec());
        }
        NalFormat::LengthPrefixed(n) => split_length_prefixed(data, n)?,
    };
    if nals.is_empty() {
        return Err(err("video frame", "no NAL unit in it"));
    }
    Ok(to_length_prefixed(&nals))
}

/// Remove emulation-prevention bytes (`00 00 03` → `00 00`).
fn rbsp(nal: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nal.len());
    let mut zeros = 0;
    for &b in nal {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

/// A bit reader over an RBSP.
struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Bits<'_> {
    fn bit(&mut self) -> Result<u32, CodecError> {
        let byte = self
            .data
            .get(self.pos / 8)
            .ok_or_else(|| err("parameter set", "ends too early"))?;
        let b = (byte >> (7 - self.pos % 8)) & 1;
        self.pos += 1;
        Ok(u32::from(b))
    }

    fn bits(&mut self, n: u32) -> Result<u64, CodecError> {
        let mut v = 0u64;
        for _ in 0..n {
            v = (v << 1) | u64::from(self.bit()?);
        }
        Ok(v)
    }

    fn ue(&mut self) -> Result<u32, CodecError> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return Err(err("parameter set", "Exp-Golomb code too long"));
            }
        }
        let rest = self.bits(zeros)? as u32;
        Ok(((1u64 << zeros) - 1) as u32 + rest)
    }
}

fn h264_type(nal: &[u8]) -> u8 {
    nal.first().map(|b| b & 0x1F).unwrap_or(0)
}

fn h265_type(nal: &[u8]) -> u8 {
    nal.first().map(|b| (b >> 1) & 0x3F).unwrap_or(0)
}

/// The AVCDecoderConfigurationRecord (ISO/IEC 14496-15 §5.3.3) of these
/// SPS and PPS NAL units, with 4-byte lengths; for the High profiles it
/// carries chroma format and bit depths read from the first SPS.
pub fn avc_decoder_config(sps: &[&[u8]], pps: &[&[u8]]) -> Result<Vec<u8>, CodecError> {
    let first = sps
        .first()
        .ok_or_else(|| err("H.264 configuration", "no SPS"))?;
    if pps.is_empty() {
        return Err(err("H.264 configuration", "no PPS"));
    }
    if first.len() < 4 {
        return Err(err("H.264 SPS", format!("{} bytes", first.len())));
    }
    let mut out = vec![
        1,
        first[1],
        first[2],
        first[3],
        0xFF,
        0xE0 | sps.len() as u8,
    ];
    if sps.len() > 31 || pps.len() > 255 {
        return Err(err("H.264 configuration", "too many parameter sets"));
    }
    for s in sps {
        out.extend_from_slice(&(s.len() as u16).to_be_bytes());
        out.extend_from_slice(s);
    }
    out.push(pps.len() as u8);
    for p in pps {
        out.extend_from_slice(&(p.len() as u16).to_be_bytes());
        out.extend_from_slice(p);
    }
    let profile = first[1];
    if matches!(profile, 100 | 110 | 122 | 144) {
        let r = rbsp(first);
        let mut b = Bits { data: &r, pos: 32 };
        b.ue()?; // seq_parameter_set_id
        let chroma = b.ue()?;
        if chroma == 3 {
            b.bit()?;
        }
        let luma = b.ue()?;
        let chroma_depth = b.ue()?;
        if chroma > 3 || luma > 6 || chroma_depth > 6 {
            return Err(err(
                "H.264 SPS",
                format!("chroma format {chroma}, bit depths {luma}/{chroma_depth} (minus 8)"),
            ));
        }
        out.extend_from_slice(&[
            0xFC | chroma as u8,
            0xF8 | luma as u8,
            0xF8 | chroma_depth as u8,
            0,
        ]);
    }
    Ok(out)
}

/// Fields of an H.265 SPS that the configuration record repeats.
struct HevcSps {
    /// general_profile_space, tier, profile_idc, 32 compatibility flags,
    /// 48 constraint flags, level: 12 bytes as in the record.
    ptl: [u8; 12],
    max_sub_layers: u8,
    temporal_id_nesting: bool,
    chroma_format: u8,
    luma_depth_minus8: u8,
    chroma_depth_minus8: u8,
}

fn parse_hevc_sps(nal: &[u8]) -> Result<HevcSps, CodecError> {
    let r = rbsp(nal);
    if r.len() < 15 {
        return Err(err("H.265 SPS", format!("{} bytes", r.len())));
    }
    let mut b = Bits { data: &r, pos: 16 };
    b.bits(4)?; // sps_video_parameter_set_id
    let max_sub_layers_minus1 = b.bits(3)? as u8;
    let nesting = b.bit()? == 1;
    let mut ptl = [0u8; 12];
    for byte in ptl.iter_mut() {
        *byte = b.bits(8)? as u8;
    }
    let mut profile_present = [false; 8];
    let mut level_present = [false; 8];
    for i in 0..usize::from(max_sub_layers_minus1) {
        profile_present[i] = b.bit()? == 1;
        level_present[i] = b.bit()? == 1;
    }
    if max_sub_layers_minus1 > 0 {
        for _ in max_sub_layers_minus1..8 {
            b.bits(2)?;
        }
    }
    for i in 0..usize::from(max_sub_layers_minus1) {
        if profile_present[i] {
            b.bits(88)?;
        }
        if level_present[i] {
            b.bits(8)?;
        }
    }
    b.ue()?; // sps_seq_parameter_set_id
    let chroma = b.ue()?;
    if chroma == 3 {
        b.bit()?;
    }
    b.ue()?; // width
    b.ue()?; // height
    if b.bit()? == 1 {
        for _ in 0..4 {
            b.ue()?;
        }
    }
    let luma = b.ue()?;
    let chroma_depth = b.ue()?;
    if chroma > 3 || luma > 8 || chroma_depth > 8 {
        return Err(err(
            "H.265 SPS",
            format!("chroma format {chroma}, bit depths {luma}/{chroma_depth} (minus 8)"),
        ));
    }
    Ok(HevcSps {
        ptl,
        max_sub_layers: max_sub_layers_minus1 + 1,
        temporal_id_nesting: nesting,
        chroma_format: chroma as u8,
        luma_depth_minus8: luma as u8,
        chroma_depth_minus8: chroma_depth as u8,
    })
}

/// The HEVCDecoderConfigurationRecord (ISO/IEC 14496-15 §8.3.3) of these
/// VPS, SPS and PPS NAL units, with 4-byte lengths, profile, tier, level,
/// chroma format and bit depths read from the first SPS.
pub fn hevc_decoder_config(
    vps: &[&[u8]],
    sps: &[&[u8]],
    pps: &[&[u8]],
) -> Result<Vec<u8>, CodecError> {
    let first = sps
        .first()
        .ok_or_else(|| err("H.265 configuration", "no SPS"))?;
    if vps.is_empty() || pps.is_empty() {
        return Err(err("H.265 configuration", "needs a VPS, an SPS and a PPS"));
    }
    let s = parse_hevc_sps(first)?;
    let mut out = Vec::with_capacity(64);
    out.push(1);
    out.extend_from_slice(&s.ptl);
    out.extend_from_slice(&[0xF0, 0x00]); // min_spatial_segmentation_idc 0
    out.push(0xFC); // parallelismType 0
    out.push(0xFC | s.chroma_format);
    out.push(0xF8 | s.luma_depth_minus8);
    out.push(0xF8 | s.chroma_depth_minus8);
    out.extend_from_slice(&[0, 0]); // avgFrameRate unknown
    out.push((s.max_sub_layers << 3) | (u8::from(s.temporal_id_nesting) << 2) | 3);
    out.push(3);
    for (kind, list) in [(32u8, vps), (33, sps), (34, pps)] {
        out.push(0x80 | kind);
        out.extend_from_slice(&(list.len() as u16).to_be_bytes());
        for n in list {
            if n.len() > usize::from(u16::MAX) {
                return Err(err("H.265 configuration", "parameter set too large"));
            }
            out.extend_from_slice(&(n.len() as u16).to_be_bytes());
            out.extend_from_slice(n);
        }
    }
    Ok(out)
}

/// The decoder configuration record of a video track from what the encoder
/// gives.
pub fn video_config(codec: Codec, config: &VideoConfig) -> Result<Vec<u8>, CodecError> {
    let nals: Vec<&[u8]> = match config {
        VideoConfig::Record(r) => {
            if r.first() != Some(&1) || r.len() < 7 {
                return Err(err(
                    "decoder configuration record",
                    "not an avcC / hvcC (configurationVersion 1)",
                ));
            }
            return Ok(r.clone());
        }
        VideoConfig::MediaCodec { csd0, csd1 } => {
            let mut v = split_annexb(csd0);
            if let Some(c) = csd1 {
                v.extend(split_annexb(c));
            }
            v
        }
        VideoConfig::ParameterSets(sets) => sets.iter().map(Vec::as_slice).collect(),
    };
    match codec {
        Codec::H264 => {
            let sps: Vec<&[u8]> = nals.iter().copied().filter(|n| h264_type(n) == 7).collect();
            let pps: Vec<&[u8]> = nals.iter().copied().filter(|n| h264_type(n) == 8).collect();
            avc_decoder_config(&sps, &pps)
        }
        Codec::H265 => {
            let of = |t: u8| -> Vec<&[u8]> {
                nals.iter().copied().filter(|n| h265_type(n) == t).collect()
            };
            hevc_decoder_config(&of(32), &of(33), &of(34))
        }
        other => Err(err(
            "video configuration",
            format!("{} is not a video codec", other.as_str()),
        )),
    }
}

/// The parameter sets in an `avcC` / `hvcC` record (the inverse of
/// [`video_config`], e.g. to give them to a decoder as MediaCodec `csd-*`).
pub fn parameter_sets(codec: Codec, record: &[u8]) -> Result<Vec<Vec<u8>>, CodecError> {
    let short = || err("decoder configuration record", "cut short");
    let mut out = Vec::new();
    let mut read_sets = |at: &mut usize, n: usize| -> Result<(), CodecError> {
        for _ in 0..n {
            let l = record.get(*at..*at + 2).ok_or_else(short)?;
            let len = usize::from(u16::from_be_bytes([l[0], l[1]]));
            *at += 2;
            out.push(record.get(*at..*at + len).ok_or_else(short)?.to_vec());
            *at += len;
        }
        Ok(())
    };
    match codec {
        Codec::H264 => {
            let mut at = 5;
            let n = usize::from(record.get(at).ok_or_else(short)? & 0x1F);
            at += 1;
            read_sets(&mut at, n)?;
            let n = usize::from(*record.get(at).ok_or_else(short)?);
            at += 1;
            read_sets(&mut at, n)?;
        }
        Codec::H265 => {
            let mut at = 22;
            let arrays = usize::from(*record.get(at).ok_or_else(short)?);
            at += 1;
            for _ in 0..arrays {
                at += 1;
                let c = record.get(at..at + 2).ok_or_else(short)?;
                let n = usize::from(u16::from_be_bytes([c[0], c[1]]));
                at += 2;
                read_sets(&mut at, n)?;
            }
        }
        other => {
            return Err(err(
                "decoder configuration record",
                format!("{} is not a video codec", other.as_str()),
            ))
        }
    }
    Ok(out)
}

/// An audio codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioCodec {
    /// AAC: raw access units; configuration = AudioSpecificConfig.
    Aac,
    /// Opus: raw packets; configuration = `OpusHead`.
    Opus,
}

/// The configuration of an audio track from what the encoder gives: for
/// AAC, MediaCodec's `csd-0` (an AudioSpecificConfig) or AudioToolbox's
/// magic cookie (an `esds` ES descriptor, tag 0x03, whose
/// DecoderSpecificInfo is extracted); for Opus, MediaCodec's `csd-0` (an
/// `OpusHead`), or nothing, in which case an `OpusHead` is built from
/// `channels` and `sample_rate`.
pub fn audio_config(
    codec: AudioCodec,
    config: &[u8],
    sample_rate: u32,
    channels: u32,
) -> Result<Vec<u8>, CodecError> {
    match codec {
        AudioCodec::Aac => {
            if config.first() == Some(&0x03) {
                return asc_from_esds(config);
            }
            if config.len() < 2 {
                return Err(err(
                    "AAC configuration",
                    "an AudioSpecificConfig has at least 2 bytes",
                ));
            }
            if config[0] >> 3 == 0 {
                return Err(err("AAC configuration", "audio object type 0"));
            }
            Ok(config.to_vec())
        }
        AudioCodec::Opus => {
            if config.is_empty() {
                if channels == 0 || channels > 2 {
                    return Err(err(
                        "Opus configuration",
                        format!("{channels} channels without an OpusHead (1 or 2)"),
                    ));
                }
                return Ok(opus_head(channels as u8, 312, sample_rate));
            }
            if config.len() < 19 || &config[..8] != b"OpusHead" {
                return Err(err("Opus configuration", "not an OpusHead"));
            }
            Ok(config.to_vec())
        }
    }
}

/// An `OpusHead` (RFC 7845 §5.1) for mono or stereo, mapping family 0.
pub fn opus_head(channels: u8, pre_skip: u16, input_rate: u32) -> Vec<u8> {
    let mut h = b"OpusHead".to_vec();
    h.push(1);
    h.push(channels);
    h.extend_from_slice(&pre_skip.to_le_bytes());
    h.extend_from_slice(&input_rate.to_le_bytes());
    h.extend_from_slice(&0i16.to_le_bytes());
    h.push(0);
    h
}

/// The AudioSpecificConfig inside an `esds` ES descriptor.
fn asc_from_esds(d: &[u8]) -> Result<Vec<u8>, CodecError> {
    fn descriptor(d: &[u8], at: usize) -> Result<(u8, usize, usize), CodecError> {
        let tag = *d.get(at).ok_or_else(|| err("esds", "cut short"))?;
        let mut len = 0usize;
        let mut i = at + 1;
        for _ in 0..4 {
            let b = *d.get(i).ok_or_else(|| err("esds", "cut short"))?;
            i += 1;
            len = (len << 7) | usize::from(b & 0x7F);
            if b & 0x80 == 0 {
                break;
            }
        }
        if i + len > d.len() {
            return Err(err(
                "esds",
                format!("descriptor {tag:#04x} runs past the end"),
            ));
        }
        Ok((tag, i, len))
    }
    let (tag, body, _) = descriptor(d, 0)?;
    if tag != 0x03 {
        return Err(err(
            "esds",
            format!("first descriptor {tag:#04x}, not 0x03"),
        ));
    }
    let flags = *d.get(body + 2).ok_or_else(|| err("esds", "cut short"))?;
    let mut at = body + 3;
    if flags & 0x80 != 0 {
        at += 2;
    }
    if flags & 0x40 != 0 {
        at += 1 + usize::from(*d.get(at).ok_or_else(|| err("esds", "cut short"))?);
    }
    if flags & 0x20 != 0 {
        at += 2;
    }
    let (tag, dcd, _) = descriptor(d, at)?;
    if tag != 0x04 {
        return Err(err("esds", format!("descriptor {tag:#04x}, not 0x04")));
    }
    let (tag, dsi, len) = descriptor(d, dcd + 13)?;
    if tag != 0x05 {
        return Err(err("esds", format!("descriptor {tag:#04x}, not 0x05")));
    }
    audio_config(AudioCodec::Aac, &d[dsi..dsi + len], 0, 0)
}

/// The duration of an Opus packet (RFC 6716 §3.1: its TOC byte and frame
/// count), microseconds; `None` for an empty or malformed packet.
pub fn opus_packet_duration_us(packet: &[u8]) -> Option<u32> {
    let toc = *packet.first()?;
    let config = toc >> 3;
    // Frame size in tenths of a millisecond.
    let frame = match config {
        0..=11 => [100, 200, 400, 600][usize::from(config % 4)],
        12..=15 => [100, 200][usize::from(config % 2)],
        _ => [25, 50, 100, 200][usize::from(config % 4)],
    };
    let frames = match toc & 3 {
        0 => 1,
        1 | 2 => 2,
        _ => u32::from(*packet.get(1)? & 0x3F),
    };
    (frames > 0 && frame * frames <= 1200).then_some(frame * frames * 100)
}

/// The duration of a frame when the encoder does not give it (MediaCodec
/// and VideoToolbox give timestamps only): an AAC access unit is 1024
/// samples, an Opus packet says its own length, a video frame lasts one
/// nominal frame interval. Microseconds, 0 when unknown.
pub fn frame_duration_us(codec: Codec, data: &[u8], sample_rate: u32, fps: u32) -> u32 {
    match codec {
        Codec::Aac if sample_rate > 0 => (1024u64 * 1_000_000 / u64::from(sample_rate)) as u32,
        Codec::Opus => opus_packet_duration_us(data).unwrap_or(0),
        Codec::H264 | Codec::H265 if fps > 0 => 1_000_000 / fps,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // x264's 640x360 High profile SPS and PPS (the test clip's).
    const SPS: &[u8] = &[
        0x67, 0x64, 0x00, 0x1e, 0xac, 0xb4, 0x05, 0x01, 0x7f, 0xcb, 0x80, 0xb5, 0x06, 0x06, 0x06,
        0xa5, 0x00, 0x00, 0x03, 0x00, 0x01, 0x00, 0x00, 0x03, 0x00, 0x3c, 0x8f, 0x16, 0x2e, 0xa0,
    ];
    const PPS: &[u8] = &[0x68, 0xef, 0x3c, 0xb0];

    #[test]
    fn annexb_splits_on_three_and_four_byte_start_codes() {
        let data = [
            0, 0, 0, 1, 0x65, 1, 2, 0, 0, 1, 0x41, 3, 0, 0, 0, 0, 1, 0x06, 9,
        ];
        let nals = split_annexb(&data);
        assert_eq!(nals, vec![&[0x65, 1, 2][..], &[0x41, 3], &[0x06, 9]]);
        assert_eq!(split_annexb(&[0x65, 1]), vec![&[0x65, 1][..]]);
        assert!(split_annexb(&[]).is_empty());
        let lp = video_frame(&data, NalFormat::AnnexB).unwrap();
        assert_eq!(
            lp,
            [0, 0, 0, 3, 0x65, 1, 2, 0, 0, 0, 2, 0x41, 3, 0, 0, 0, 2, 0x06, 9]
        );
        // Round trip through MediaCodec's layout.
        let back = to_annexb(&split_length_prefixed(&lp, 4).unwrap());
        assert_eq!(video_frame(&back, NalFormat::AnnexB).unwrap(), lp);
        assert!(video_frame(&[0, 0, 1], NalFormat::AnnexB).is_err());
    }

    #[test]
    fn length_prefixed_frames_are_checked_and_normalised() {
        let two = [0, 2, 0x65, 1, 0, 1, 0x41];
        assert_eq!(
            video_frame(&two, NalFormat::LengthPrefixed(2)).unwrap(),
            [0, 0, 0, 2, 0x65, 1, 0, 0, 0, 1, 0x41]
        );
        let four = [0, 0, 0, 2, 0x65, 1];
        assert_eq!(
            video_frame(&four, NalFormat::LengthPrefixed(4)).unwrap(),
            four
        );
        let e = video_frame(&[0, 0, 0, 9, 1], NalFormat::LengthPrefixed(4)).unwrap_err();
        assert!(e.to_string().contains("runs past the end"), "{e}");
        assert!(video_frame(&four, NalFormat::LengthPrefixed(3)).is_err());
        assert!(video_frame(&[0, 0], NalFormat::LengthPrefixed(4)).is_err());
    }

    #[test]
    fn avc_configuration_from_mediacodec_and_videotoolbox_agree() {
        let mc = VideoConfig::MediaCodec {
            csd0: to_annexb(&[SPS]),
            csd1: Some(to_annexb(&[PPS])),
        };
        let vt = VideoConfig::ParameterSets(vec![SPS.to_vec(), PPS.to_vec()]);
        let a = video_config(Codec::H264, &mc).unwrap();
        let b = video_config(Codec::H264, &vt).unwrap();
        assert_eq!(a, b);
        assert_eq!(&a[..6], &[1, 0x64, 0x00, 0x1e, 0xFF, 0xE1]);
        // High profile: 4:2:0, 8 bits.
        assert_eq!(&a[a.len() - 4..], &[0xFD, 0xF8, 0xF8, 0]);
        assert_eq!(
            parameter_sets(Codec::H264, &a).unwrap(),
            vec![SPS.to_vec(), PPS.to_vec()]
        );
        // Some devices put both in csd-0.
        let both = VideoConfig::MediaCodec {
            csd0: to_annexb(&[SPS, PPS]),
            csd1: None,
        };
        assert_eq!(video_config(Codec::H264, &both).unwrap(), a);
        // A record is used as is; garbage is refused.
        assert_eq!(
            video_config(Codec::H264, &VideoConfig::Record(a.clone())).unwrap(),
            a
        );
        assert!(video_config(Codec::H264, &VideoConfig::Record(vec![0; 9])).is_err());
        let no_pps = VideoConfig::ParameterSets(vec![SPS.to_vec()]);
        assert!(video_config(Codec::H264, &no_pps)
            .unwrap_err()
            .to_string()
            .contains("no PPS"));
        assert!(video_config(Codec::Aac, &vt).is_err());
        // A truncated High-profile SPS is an error, not a panic.
        let cut = VideoConfig::ParameterSets(vec![SPS[..4].to_vec(), PPS.to_vec()]);
        assert!(video_config(Codec::H264, &cut).is_err());
    }

    #[test]
    fn hevc_configuration_reads_profile_and_depths() {
        // x265 Main profile, level 2.1 (the test clip's): VPS, SPS, PPS.
        let vps: &[u8] = &[
            0x40, 0x01, 0x0c, 0x01, 0xff, 0xff, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00,
            0x00, 0x03, 0x00, 0x00, 0x03, 0x00, 0x3f, 0x95, 0x94, 0x09,
        ];
        let sps: &[u8] = &[
            0x42, 0x01, 0x01, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00, 0x03, 0x00,
            0x00, 0x03, 0x00, 0x3f, 0xa0, 0x05, 0x02, 0x01, 0x71, 0xf2, 0xe5, 0x95, 0x95, 0x29,
            0x30, 0xbf, 0xfc, 0x00, 0x04, 0x00, 0x05, 0xa8, 0x30, 0x30, 0x30, 0x20, 0x00, 0x00,
            0x03, 0x00, 0x20, 0x00, 0x00, 0x03, 0x03, 0xc1,
        ];
        let pps: &[u8] = &[0x44, 0x01, 0xc0, 0x73, 0xc1, 0x89];
        let mc = VideoConfig::MediaCodec {
            csd0: to_annexb(&[vps, sps, pps]),
            csd1: None,
        };
        let r = video_config(Codec::H265, &mc).unwrap();
        assert_eq!(r[0], 1);
        assert_eq!(r[1], 0x01, "profile space 0, main tier, Main profile");
        assert_eq!(&r[2..6], &[0x60, 0, 0, 0], "compatibility flags");
        assert_eq!(r[12], 0x3f, "level 2.1");
        assert_eq!(r[16], 0xFD, "4:2:0");
        assert_eq!((r[17], r[18]), (0xF8, 0xF8), "8 bits");
        assert_eq!(r[21] & 3, 3, "4-byte lengths");
        assert_eq!(
            parameter_sets(Codec::H265, &r).unwrap(),
            vec![vps.to_vec(), sps.to_vec(), pps.to_vec()]
        );
        let vt = VideoConfig::ParameterSets(vec![sps.to_vec(), pps.to_vec(), vps.to_vec()]);
        assert_eq!(video_config(Codec::H265, &vt).unwrap(), r);
        let missing = VideoConfig::ParameterSets(vec![sps.to_vec(), pps.to_vec()]);
        assert!(video_config(Codec::H265, &missing).is_err());
        let cut = VideoConfig::ParameterSets(vec![vps.to_vec(), sps[..10].to_vec(), pps.to_vec()]);
        assert!(video_config(Codec::H265, &cut).is_err());
    }

    #[test]
    fn audio_configurations() {
        assert_eq!(
            audio_config(AudioCodec::Aac, &[0x11, 0x90], 48_000, 2).unwrap(),
            [0x11, 0x90]
        );
        assert!(audio_config(AudioCodec::Aac, &[0x11], 48_000, 2).is_err());
        assert!(audio_config(AudioCodec::Aac, &[0x01, 0x90], 48_000, 2).is_err());
        // AudioToolbox's magic cookie: an esds ES descriptor.
        let esds = [
            0x03, 0x19, 0x00, 0x00, 0x00, // ES_Descriptor, id 0, no flags
            0x04, 0x11, 0x40, 0x15, 0x00, 0x00, 0x00, 0x00, 0x01, 0xf4, 0x00, 0x00, 0x01, 0xf4,
            0x00, // DecoderConfigDescriptor
            0x05, 0x02, 0x11, 0x90, // DecoderSpecificInfo
            0x06, 0x01, 0x02, // SLConfigDescriptor
        ];
        assert_eq!(
            audio_config(AudioCodec::Aac, &esds, 48_000, 2).unwrap(),
            [0x11, 0x90]
        );
        assert!(audio_config(AudioCodec::Aac, &esds[..8], 48_000, 2).is_err());
        // Opus: MediaCodec's OpusHead as is, or one built.
        let head = opus_head(2, 312, 48_000);
        assert_eq!(head.len(), 19);
        assert_eq!(
            audio_config(AudioCodec::Opus, &head, 48_000, 2).unwrap(),
            head
        );
        assert_eq!(
            audio_config(AudioCodec::Opus, &[], 48_000, 2).unwrap(),
            head
        );
        assert!(audio_config(AudioCodec::Opus, b"OpusTags", 48_000, 2).is_err());
        assert!(audio_config(AudioCodec::Opus, &[], 48_000, 6).is_err());
    }

    #[test]
    fn frame_durations() {
        assert_eq!(frame_duration_us(Codec::Aac, &[1], 48_000, 0), 21_333);
        assert_eq!(frame_duration_us(Codec::Aac, &[1], 0, 0), 0);
        assert_eq!(frame_duration_us(Codec::H264, &[1], 0, 30), 33_333);
        // Opus: CELT 20 ms (config 31), one frame; two 10 ms SILK frames;
        // three 20 ms CELT frames (code 3).
        assert_eq!(opus_packet_duration_us(&[31 << 3]), Some(20_000));
        assert_eq!(opus_packet_duration_us(&[(1 << 3) | 1]), Some(40_000));
        assert_eq!(opus_packet_duration_us(&[(31 << 3) | 3, 3]), Some(60_000));
        assert_eq!(opus_packet_duration_us(&[(31 << 3) | 3]), None);
        assert_eq!(opus_packet_duration_us(&[]), None);
        assert_eq!(frame_duration_us(Codec::Opus, &[], 48_000, 0), 0);
    }
}
