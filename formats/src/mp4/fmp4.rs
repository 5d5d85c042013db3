//! A small fragmented-MP4 (CMAF-style) writer for live HLS: one init
//! segment (`ftyp` + `moov` with `mvex`) and media segments (`moof` + `mdat`)
//! built directly from the frames the phone sent (AVC/HVC1 length-prefixed
//! access units, raw AAC packets). No GStreamer: the caller chooses segment
//! boundaries (the live relay cuts exactly on video keyframes).
//!
//! Timescales: 90 kHz for video, the sample rate for audio. Decode times are
//! capture timestamps (µs) minus a base, so the HLS timeline matches the
//! capture timeline (and the VOD's).

use super::boxes::{put_u16, put_u32, put_u64, write_box as bx, write_full_box as fbx};
use super::matrix::{matrix_for, IDENTITY};
use crate::media::{Codec, TrackInfo};

/// One track as written to the MP4.
#[derive(Debug, Clone)]
pub struct Fmp4Track {
    /// MP4 track id (1-based).
    pub track_id: u32,
    /// The session's track id.
    pub source_id: u8,
    /// Codec.
    pub codec: Codec,
    /// Ticks per second.
    pub timescale: u32,
    /// The phone's track description.
    pub info: TrackInfo,
}

impl Fmp4Track {
    /// Builds the MP4 description of a session track; `None` for codecs the
    /// HLS path does not carry (Opus).
    pub fn new(track_id: u32, info: &TrackInfo) -> Option<Fmp4Track> {
        let codec = info.codec()?;
        let timescale = match codec {
            Codec::H264 | Codec::H265 => 90_000,
            Codec::Aac => info.sample_rate.filter(|r| *r > 0).unwrap_or(48_000),
            Codec::Opus => return None,
        };
        if info.codec_data.is_empty() {
            return None;
        }
        Some(Fmp4Track {
            track_id,
            source_id: info.id,
            codec,
            timescale,
            info: info.clone(),
        })
    }

    /// Whether this is a video track.
    pub fn is_video(&self) -> bool {
        self.codec.is_video()
    }

    /// Microseconds to this track's ticks.
    pub fn ticks(&self, us: i64) -> i64 {
        ((i128::from(us) * i128::from(self.timescale)) / 1_000_000) as i64
    }

    /// The RFC 6381 codec string for playlists (`avc1.64001f`, `mp4a.40.2`).
    pub fn codec_string(&self) -> String {
        let cd = &self.info.codec_data;
        match self.codec {
            Codec::H264 if cd.len() >= 4 => {
                format!("avc1.{:02x}{:02x}{:02x}", cd[1], cd[2], cd[3])
            }
            Codec::H264 => "avc1.42e01e".into(),
            Codec::H265 if cd.len() >= 13 => {
                // hvcC: profile space/tier/idc, compat flags, level.
                let space = ["", "A", "B", "C"][usize::from(cd[1] >> 6)];
                let tier = if cd[1] & 0x20 != 0 { "H" } else { "L" };
                let idc = cd[1] & 0x1f;
                let compat = u32::from_be_bytes([cd[2], cd[3], cd[4], cd[5]]).reverse_bits();
                let level = cd[12];
                format!("hvc1.{space}{idc}.{compat:X}.{tier}{level}.B0")
            }
            Codec::H265 => "hvc1.1.6.L93.B0".into(),
            Codec::Aac => {
                let aot = cd.first().map(|b| b >> 3).filter(|a| *a > 0).unwrap_or(2);
                format!("mp4a.40.{aot}")
            }
            Codec::Opus => "opus".into(),
        }
    }
}

/// One sample of a fragment.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Duration in track ticks.
    pub duration: u32,
    /// Composition offset (pts − dts) in ticks.
    pub cts: i32,
    /// Sync sample.
    pub keyframe: bool,
    /// The bytes.
    pub data: bytes::Bytes,
}

/// The samples of one track in one fragment.
#[derive(Debug, Clone)]
pub struct TrackRun {
    /// MP4 track id.
    pub track_id: u32,
    /// Decode time of the first sample, ticks.
    pub base_decode_time: u64,
    /// Samples in decode order.
    pub samples: Vec<Sample>,
}

/// The init segment: `ftyp` + `moov` (with `mvex`) for these tracks.
pub fn init_segment(tracks: &[Fmp4Track]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    bx(&mut out, b"ftyp", |o| {
        o.extend_from_slice(b"iso6");
        put_u32(o, 0);
        for b in [b"iso6", b"cmfc", b"isom", b"mp41"] {
            o.extend_from_slice(b);
        }
    });
    bx(&mut out, b"moov", |o| {
        fbx(o, b"mvhd", 0, 0, |o| {
            put_u32(o, 0);
            put_u32(o, 0);
            put_u32(o, 1000);
            put_u32(o, 0);
            put_u32(o, 0x0001_0000);
            put_u16(o, 0x0100);
            o.extend_from_slice(&[0; 10]);
            for m in IDENTITY {
                put_u32(o, m as u32);
            }
            o.extend_from_slice(&[0; 24]);
            put_u32(o, tracks.len() as u32 + 1);
        });
        for t in tracks {
            trak(o, t);
        }
        bx(o, b"mvex", |o| {
            for t in tracks {
                fbx(o, b"trex", 0, 0, |o| {
                    put_u32(o, t.track_id);
                    put_u32(o, 1);
                    put_u32(o, 0);
                    put_u32(o, 0);
                    put_u32(o, 0);
                });
            }
        });
    });
    out
}

fn trak(o: &mut Vec<u8>, t: &Fmp4Track) {
    bx(o, b"trak", |o| {
        tkhd(o, t);
        bx(o, b"mdia", |o| {
            mdhd_and_hdlr(o, t);
            bx(o, b"minf", |o| {
                if t.is_video() {
                    fbx(o, b"vmhd", 0, 1, |o| o.extend_from_slice(&[0; 8]));
                } else {
                    fbx(o, b"smhd", 0, 0, |o| o.extend_from_slice(&[0; 4]));
                }
                bx(o, b"dinf", |o| {
                    fbx(o, b"dref", 0, 0, |o| {
                        put_u32(o, 1);
                        fbx(o, b"url ", 0, 1, |_| {});
                    });
                });
                stbl(o, t);
            });
        });
    });
}

/// The track header, with the phone's display rotation in its matrix (as in
/// the VOD files).
fn tkhd(o: &mut Vec<u8>, t: &Fmp4Track) {
    let video = t.is_video();
    let (w, h) = (t.info.width.unwrap_or(0), t.info.height.unwrap_or(0));
    fbx(o, b"tkhd", 0, 3, |o| {
        put_u32(o, 0);
        put_u32(o, 0);
        put_u32(o, t.track_id);
        put_u32(o, 0);
        put_u32(o, 0);
        o.extend_from_slice(&[0; 8]);
        put_u16(o, 0);
        put_u16(o, 0);
        put_u16(o, if video { 0 } else { 0x0100 });
        put_u16(o, 0);
        let matrix = if video {
            matrix_for(t.info.rotation, w, h).unwrap_or(IDENTITY)
        } else {
            IDENTITY
        };
        for m in matrix {
            put_u32(o, m as u32);
        }
        put_u32(o, if video { w << 16 } else { 0 });
        put_u32(o, if video { h << 16 } else { 0 });
    });
}

/// The media header (timescale, language) and the handler (video or sound).
fn mdhd_and_hdlr(o: &mut Vec<u8>, t: &Fmp4Track) {
    let video = t.is_video();
    fbx(o, b"mdhd", 0, 0, |o| {
        put_u32(o, 0);
        put_u32(o, 0);
        put_u32(o, t.timescale);
        put_u32(o, 0);
        put_u16(o, 0x55c4); // "und"
        put_u16(o, 0);
    });
    fbx(o, b"hdlr", 0, 0, |o| {
        put_u32(o, 0);
        o.extend_from_slice(if video { b"vide" } else { b"soun" });
        o.extend_from_slice(&[0; 12]);
        o.extend_from_slice(if video {
            b"VideoHandler\0".as_slice()
        } else {
            b"SoundHandler\0".as_slice()
        });
    });
}

/// The sample table: the sample description, and empty tables (the samples
/// are in the fragments).
fn stbl(o: &mut Vec<u8>, t: &Fmp4Track) {
    bx(o, b"stbl", |o| {
        fbx(o, b"stsd", 0, 0, |o| {
            put_u32(o, 1);
            sample_entry(o, t);
        });
        fbx(o, b"stts", 0, 0, |o| put_u32(o, 0));
        fbx(o, b"stsc", 0, 0, |o| put_u32(o, 0));
        fbx(o, b"stsz", 0, 0, |o| {
            put_u32(o, 0);
            put_u32(o, 0);
        });
        fbx(o, b"stco", 0, 0, |o| put_u32(o, 0));
    });
}

fn sample_entry(o: &mut Vec<u8>, t: &Fmp4Track) {
    match t.codec {
        Codec::H264 | Codec::H265 => {
            let (entry, config) = if t.codec == Codec::H264 {
                (b"avc1", b"avcC")
            } else {
                (b"hvc1", b"hvcC")
            };
            bx(o, entry, |o| {
                o.extend_from_slice(&[0; 6]);
                put_u16(o, 1);
                o.extend_from_slice(&[0; 16]);
                put_u16(o, t.info.width.unwrap_or(0) as u16);
                put_u16(o, t.info.height.unwrap_or(0) as u16);
                put_u32(o, 0x0048_0000);
                put_u32(o, 0x0048_0000);
                put_u32(o, 0);
                put_u16(o, 1);
                o.extend_from_slice(&[0; 32]);
                put_u16(o, 0x0018);
                put_u16(o, 0xffff);
                bx(o, config, |o| o.extend_from_slice(&t.info.codec_data));
            });
        }
        Codec::Aac => {
            bx(o, b"mp4a", |o| {
                o.extend_from_slice(&[0; 6]);
                put_u16(o, 1);
                o.extend_from_slice(&[0; 8]);
                put_u16(o, t.info.channels.unwrap_or(2) as u16);
                put_u16(o, 16);
                put_u16(o, 0);
                put_u16(o, 0);
                put_u32(o, (t.timescale.min(65535)) << 16);
                fbx(o, b"esds", 0, 0, |o| {
                    let asc = &t.info.codec_data;
                    let mut dcd = vec![0x40, 0x15, 0, 0, 0];
                    dcd.extend_from_slice(&0u32.to_be_bytes());
                    dcd.extend_from_slice(&0u32.to_be_bytes());
                    descriptor(&mut dcd, 0x05, asc);
                    let mut es = vec![0, 1, 0];
                    descriptor(&mut es, 0x04, &dcd);
                    descriptor(&mut es, 0x06, &[0x02]);
                    descriptor(o, 0x03, &es);
                });
            });
        }
        Codec::Opus => {}
    }
}

/// An MPEG-4 descriptor with a 4-byte length.
fn descriptor(o: &mut Vec<u8>, tag: u8, body: &[u8]) {
    let n = body.len() as u32;
    o.push(tag);
    o.extend_from_slice(&[
        0x80 | ((n >> 21) & 0x7f) as u8,
        0x80 | ((n >> 14) & 0x7f) as u8,
        0x80 | ((n >> 7) & 0x7f) as u8,
        (n & 0x7f) as u8,
    ]);
    o.extend_from_slice(body);
}

/// One media segment: `moof` (one `traf` per track with samples) + `mdat`.
pub fn media_segment(sequence: u32, runs: &[TrackRun]) -> Vec<u8> {
    let runs: Vec<&TrackRun> = runs.iter().filter(|r| !r.samples.is_empty()).collect();
    let mut moof =
        Vec::with_capacity(256 + runs.iter().map(|r| r.samples.len() * 16).sum::<usize>());
    let mut offset_fields = Vec::new();
    bx(&mut moof, b"moof", |o| {
        fbx(o, b"mfhd", 0, 0, |o| put_u32(o, sequence));
        for r in &runs {
            bx(o, b"traf", |o| {
                fbx(o, b"tfhd", 0, 0x02_0000, |o| put_u32(o, r.track_id));
                fbx(o, b"tfdt", 1, 0, |o| put_u64(o, r.base_decode_time));
                fbx(o, b"trun", 1, 0x000f01, |o| {
                    put_u32(o, r.samples.len() as u32);
                    offset_fields.push(o.len());
                    put_u32(o, 0);
                    for s in &r.samples {
                        put_u32(o, s.duration);
                        put_u32(o, s.data.len() as u32);
                        put_u32(o, if s.keyframe { 0x0200_0000 } else { 0x0101_0000 });
                        o.extend_from_slice(&s.cts.to_be_bytes());
                    }
                });
            });
        }
    });
    let payload: usize = runs
        .iter()
        .flat_map(|r| r.samples.iter())
        .map(|s| s.data.len())
        .sum();
    let mut data_offset = moof.len() + 8;
    for (field, r) in offset_fields.iter().zip(&runs) {
        moof[*field..*field + 4].copy_from_slice(&(data_offset as u32).to_be_bytes());
        data_offset += r.samples.iter().map(|s| s.data.len()).sum::<usize>();
    }
    let mut out = moof;
    out.reserve(payload + 8);
    put_u32(&mut out, (payload + 8) as u32);
    out.extend_from_slice(b"mdat");
    for r in &runs {
        for s in &r.samples {
            out.extend_from_slice(&s.data);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mp4::boxes::children_exact;
    use crate::mp4::matrix::{rotation_of, video_tkhd};

    /// A 320x240 H.264 track, as a phone announces it in its HELLO.
    fn avc() -> TrackInfo {
        serde_json::from_str(
            r#"{"id": 0, "codec": "h264", "codec_data": "0164001fffe10000",
                "width": 320, "height": 240, "framerate": [30, 1]}"#,
        )
        .unwrap()
    }

    /// The top-level boxes, which must cover the buffer exactly: (type, size).
    fn boxes(b: &[u8]) -> Vec<(String, usize)> {
        children_exact(b, 0, b.len())
            .unwrap()
            .iter()
            .map(|r| {
                (
                    String::from_utf8_lossy(&r.kind).to_string(),
                    r.end - r.start,
                )
            })
            .collect()
    }

    /// The `moov` box of an init segment.
    fn moov(init: &[u8]) -> &[u8] {
        let top = children_exact(init, 0, init.len()).unwrap();
        let moov = top.iter().find(|b| &b.kind == b"moov").unwrap();
        &init[moov.start..moov.end]
    }

    #[test]
    fn codec_strings() {
        let t = Fmp4Track::new(1, &avc()).unwrap();
        assert_eq!(t.codec_string(), "avc1.64001f");
        let mut a = avc();
        a.codec = "aac".into();
        a.codec_data = vec![0x12, 0x10];
        a.sample_rate = Some(44100);
        let t = Fmp4Track::new(2, &a).unwrap();
        assert_eq!(t.codec_string(), "mp4a.40.2");
        assert_eq!(t.timescale, 44100);
        a.codec = "opus".into();
        assert!(Fmp4Track::new(3, &a).is_none());
    }

    #[test]
    fn the_init_segment_carries_the_display_rotation() {
        for rotation in [0, 90, 180, 270] {
            let info = TrackInfo { rotation, ..avc() };
            let t = Fmp4Track::new(1, &info).unwrap();
            let init = init_segment(std::slice::from_ref(&t));
            let tkhd = video_tkhd(moov(&init)).unwrap().unwrap();
            assert_eq!(rotation_of(&tkhd.matrix), Some(rotation));
            assert_eq!((tkhd.width, tkhd.height), (320, 240));
        }
    }

    /// An AAC track: a sound handler, an `mp4a` entry whose `esds` carries
    /// the AudioSpecificConfig, and no video track header.
    #[test]
    fn an_audio_init_segment_carries_its_decoder_config() {
        let info = TrackInfo {
            codec: "aac".into(),
            codec_data: vec![0x12, 0x10],
            width: None,
            height: None,
            framerate: None,
            sample_rate: Some(44_100),
            channels: Some(2),
            ..avc()
        };
        let t = Fmp4Track::new(2, &info).unwrap();
        let init = init_segment(std::slice::from_ref(&t));
        let moov = moov(&init);
        assert_eq!(video_tkhd(moov), Ok(None));
        let has = |needle: &[u8]| moov.windows(needle.len()).any(|w| w == needle);
        assert!(has(b"soun") && has(b"mp4a") && has(b"esds"));
        // DecoderSpecificInfo: tag 5, a 4-byte length of 2, the ASC.
        assert!(has(&[0x05, 0x80, 0x80, 0x80, 0x02, 0x12, 0x10]));
        // The sample rate, 16.16.
        assert!(has(&(44_100u32 << 16).to_be_bytes()));
    }

    #[test]
    fn init_and_media_segments_are_well_formed() {
        let t = Fmp4Track::new(1, &avc()).unwrap();
        let init = init_segment(std::slice::from_ref(&t));
        let top: Vec<String> = boxes(&init).into_iter().map(|b| b.0).collect();
        assert_eq!(top, ["ftyp", "moov"]);
        let seg = media_segment(
            7,
            &[TrackRun {
                track_id: 1,
                base_decode_time: 9000,
                samples: vec![
                    Sample {
                        duration: 3000,
                        cts: 0,
                        keyframe: true,
                        data: bytes::Bytes::from_static(b"abcd"),
                    },
                    Sample {
                        duration: 3000,
                        cts: 3000,
                        keyframe: false,
                        data: bytes::Bytes::from_static(b"ef"),
                    },
                ],
            }],
        );
        let top = boxes(&seg);
        assert_eq!(top[0].0, "moof");
        assert_eq!(top[1], ("mdat".to_string(), 14));
        // The data offset points at the first sample's bytes.
        let moof = &seg[..top[0].1];
        let trun = moof.windows(4).position(|w| w == b"trun").unwrap();
        let off_at = trun + 4 + 4 + 4;
        let off = u32::from_be_bytes(moof[off_at..off_at + 4].try_into().unwrap()) as usize;
        assert_eq!(&seg[off..off + 4], b"abcd");
    }

    /// With two tracks, each `trun` points at its own samples in `mdat`,
    /// and a track without samples gets no `traf`.
    #[test]
    fn each_run_points_at_its_own_samples() {
        let sample = |data: &'static [u8]| Sample {
            duration: 1024,
            cts: 0,
            keyframe: true,
            data: bytes::Bytes::from_static(data),
        };
        let run = |track_id, samples| TrackRun {
            track_id,
            base_decode_time: 0,
            samples,
        };
        let seg = media_segment(
            1,
            &[
                run(1, vec![sample(b"video")]),
                run(2, vec![]),
                run(3, vec![sample(b"au1"), sample(b"au2")]),
            ],
        );
        let top = boxes(&seg);
        let moof = &seg[..top[0].1];
        assert_eq!(moof.windows(4).filter(|w| w == b"traf").count(), 2);
        let offsets: Vec<usize> = moof
            .windows(4)
            .enumerate()
            .filter(|(_, w)| w == b"trun")
            .map(|(i, _)| {
                let at = i + 4 + 4 + 4;
                u32::from_be_bytes(moof[at..at + 4].try_into().unwrap()) as usize
            })
            .collect();
        assert_eq!(&seg[offsets[0]..offsets[0] + 5], b"video");
        assert_eq!(&seg[offsets[1]..offsets[1] + 6], b"au1au2");
        assert_eq!(offsets[1] + 6, seg.len());
    }
}
