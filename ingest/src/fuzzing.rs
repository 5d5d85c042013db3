//! Entry points of the fuzz targets (`fuzz/` at the repository root, see
//! `docs/reliability.md`): the readers of what an SRT or RTMP publisher
//! sends, reached without a socket and in the order the server calls them.
//! Not an API: hidden from the documentation, and nothing else uses it.

use bytes::Bytes;

use crate::rtmp::flv::{self, Tag, AUDIO_TRACK, VIDEO_TRACK};
use crate::srt::streamid;
use crate::srt::ts::{self, Demuxer, Item};

/// An SRT publish's transport stream through the demuxer, each completed
/// PES packet read into configurations and access units, and each
/// configuration into its track, as the SRT publisher does. The first byte
/// picks where the stream is cut (SRT delivers 1316-byte payloads, but any
/// cut must give the same result); the rest is the stream. Returns how many
/// items were read, or the first refusal.
pub fn srt_transport_stream(input: &[u8]) -> Result<usize, String> {
    let Some((&cut, stream)) = input.split_first() else {
        return Ok(0);
    };
    let chunk = usize::from(cut).max(1) * 7;
    let mut demux = Demuxer::default();
    let mut done = Vec::new();
    for part in stream.chunks(chunk) {
        demux.push(part, &mut done).map_err(|e| e.0)?;
    }
    demux.flush(&mut done);
    let _ = demux.tracks();
    let mut read = 0;
    for pes in done {
        for item in ts::items(pes).map_err(|e| e.0)? {
            if let Item::Config(track, config) = item {
                config_track(track, &config, None)?;
            }
            read += 1;
        }
    }
    Ok(read)
}

/// An RTMP publish's FLV tag body through the tag reader, and a sequence
/// header into its track, as the RTMP publisher does. The first byte picks
/// the tag type (even: video, odd: audio); the rest is the body.
pub fn rtmp_flv_tag(input: &[u8]) -> Result<(), String> {
    let Some((&kind, body)) = input.split_first() else {
        return Ok(());
    };
    let body = Bytes::copy_from_slice(body);
    let tag = if kind % 2 == 0 {
        flv::video_tag(&body)
    } else {
        flv::audio_tag(&body)
    }
    .map_err(|e| e.0)?;
    match tag {
        Tag::VideoConfig(c) => config_track(VIDEO_TRACK, &c, Some(30.0)),
        Tag::AudioConfig(c) => config_track(AUDIO_TRACK, &c, None),
        Tag::Video { .. } | Tag::Audio(_) | Tag::Skip => Ok(()),
    }
}

/// An SRT caller's stream id read for its publishing key.
pub fn srt_stream_id(stream_id: &str) -> Option<&str> {
    streamid::publish_key(Some(stream_id)).ok()
}

fn config_track(track: u8, config: &[u8], fps: Option<f32>) -> Result<(), String> {
    if track == VIDEO_TRACK {
        flv::video_track(config, fps).map(drop).map_err(|e| e.0)
    } else {
        flv::audio_track(config).map(drop).map_err(|e| e.0)
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../fuzz/corpus")
            .join(target);
        let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| {
                let path = e.unwrap().path();
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                (name, std::fs::read(&path).unwrap())
            })
            .collect();
        out.sort();
        out
    }

    /// The committed seeds are streams the publishers take: the fuzz
    /// targets start from inputs that reach past the first check.
    #[test]
    fn fuzz_seeds_are_accepted() {
        let (_, ts) = &seeds("srt_transport_stream")[0];
        let items = srt_transport_stream(ts).unwrap();
        assert!(items > 4, "{items} items");
        let tags = seeds("rtmp_flv_tag");
        assert_eq!(tags.len(), 5);
        for (name, tag) in tags {
            rtmp_flv_tag(&tag).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        for (name, id) in seeds("srt_stream_id") {
            let key = srt_stream_id(std::str::from_utf8(&id).unwrap());
            assert_eq!(key.is_some(), name != "read", "{name}");
        }
    }
}
