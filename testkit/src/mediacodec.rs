//! A clip's frames as Android's MediaCodec would give them to an app:
//! video as Annex B access units with `csd-0` (SPS, or VPS+SPS+PPS for
//! H.265) and `csd-1` (PPS) in Annex B, audio as raw frames with `csd-0`.
//! Written to a folder for the Kotlin test program (and the SDK benchmark):
//!
//! - `tracks.txt`: one track a line, `video ID MIME W H FPS CSD0_HEX CSD1_HEX`
//!   (`-` for no csd-1) or `audio ID MIME RATE CHANNELS CSD0_HEX`;
//! - `frames.bin`: records of track u8, keyframe u8, pts i64, dts i64,
//!   length u32 and the data, big-endian, in decode order.

use std::io::Write;
use std::path::Path;

use sharecast_client_sdk::codec;
use sharecast_formats::media::{Codec, MediaFrame, TrackInfo};

/// What was written.
pub struct Dumped {
    /// Tracks as the clip declares them.
    pub tracks: Vec<TrackInfo>,
    /// Frames per track id.
    pub frames_per_track: std::collections::BTreeMap<u8, u64>,
    /// Frames in all.
    pub frames: usize,
    /// Bytes of frame data in all.
    pub bytes: u64,
}

/// Demux `clip` (no re-encoding) and write its frames in MediaCodec's shape
/// to `dir`.
pub fn dump(clip: &Path, dir: &Path) -> anyhow::Result<Dumped> {
    let mut src = sharecast_transcoder::source::FileSource::open(clip)?;
    let frames: Vec<MediaFrame> = src.by_ref().collect::<anyhow::Result<_>>()?;
    let tracks = src.tracks.clone();
    let mut lines = String::new();
    for t in &tracks {
        match t.codec() {
            Some(c @ (Codec::H264 | Codec::H265)) => {
                let sets = codec::parameter_sets(c, &t.codec_data)?;
                let is = |n: &[u8], ty: u8| match c {
                    Codec::H264 => n.first().map(|b| b & 0x1F) == Some(ty),
                    _ => n.first().map(|b| (b >> 1) & 0x3F) == Some(ty),
                };
                let (csd0, csd1): (Vec<&[u8]>, Vec<&[u8]>) = match c {
                    // MediaCodec: csd-0 = SPS, csd-1 = PPS.
                    Codec::H264 => (
                        sets.iter()
                            .map(Vec::as_slice)
                            .filter(|n| is(n, 7))
                            .collect(),
                        sets.iter()
                            .map(Vec::as_slice)
                            .filter(|n| is(n, 8))
                            .collect(),
                    ),
                    // MediaCodec: csd-0 = VPS + SPS + PPS.
                    _ => (sets.iter().map(Vec::as_slice).collect(), Vec::new()),
                };
                let (num, den) = t.framerate.unwrap_or((30, 1));
                lines.push_str(&format!(
                    "video {} {} {} {} {} {} {}\n",
                    t.id,
                    if c == Codec::H264 {
                        "video/avc"
                    } else {
                        "video/hevc"
                    },
                    t.width.unwrap_or(0),
                    t.height.unwrap_or(0),
                    num / den.max(1),
                    hex::encode(codec::to_annexb(&csd0)),
                    if csd1.is_empty() {
                        "-".to_string()
                    } else {
                        hex::encode(codec::to_annexb(&csd1))
                    }
                ));
            }
            Some(Codec::Aac) => lines.push_str(&format!(
                "audio {} audio/mp4a-latm {} {} {}\n",
                t.id,
                t.sample_rate.unwrap_or(0),
                t.channels.unwrap_or(0),
                hex::encode(&t.codec_data)
            )),
            other => anyhow::bail!("track {}: {:?} is not a MediaCodec codec here", t.id, other),
        }
    }
    std::fs::write(dir.join("tracks.txt"), lines)?;
    let video: Vec<u8> = tracks
        .iter()
        .filter(|t| matches!(t.codec(), Some(Codec::H264 | Codec::H265)))
        .map(|t| t.id)
        .collect();
    let mut out = std::io::BufWriter::new(std::fs::File::create(dir.join("frames.bin"))?);
    let mut per_track = std::collections::BTreeMap::new();
    let mut bytes = 0u64;
    for f in &frames {
        let data = if video.contains(&f.track) {
            codec::to_annexb(&codec::split_length_prefixed(&f.data, 4)?)
        } else {
            f.data.to_vec()
        };
        out.write_all(&[f.track, u8::from(f.keyframe)])?;
        out.write_all(&f.pts_us.to_be_bytes())?;
        out.write_all(&f.dts_us.to_be_bytes())?;
        out.write_all(&(data.len() as u32).to_be_bytes())?;
        out.write_all(&data)?;
        *per_track.entry(f.track).or_insert(0u64) += 1;
        bytes += data.len() as u64;
    }
    out.flush()?;
    Ok(Dumped {
        tracks,
        frames_per_track: per_track,
        frames: frames.len(),
        bytes,
    })
}
