//! Helpers for tests anywhere in the workspace: the generated media fixtures.
//!
//! The clips are not committed; `fixtures/generate.sh` makes them on demand.
//! [`fixture`] runs it once per process when a clip is missing.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{anyhow, bail, Context};

/// 640x360 30 fps H.264 (no B-frames, GOP 30) + AAC 48 kHz stereo, 3 s.
pub const H264_AAC: &str = "h264_aac_640x360.mp4";
/// 720x1280 portrait H.264 + AAC, 3 s.
pub const PORTRAIT: &str = "portrait_720x1280.mp4";
/// 640x360 H.265 (hvc1) + AAC, 3 s.
pub const H265_AAC: &str = "h265_aac.mp4";
/// AAC only (M4A), 3 s.
pub const AUDIO_ONLY: &str = "audio_only.m4a";
/// 640x360 H.264 with 2 B-frames + AAC, 3 s.
pub const H264_BFRAMES: &str = "h264_bframes.mp4";
/// 320x240 VP8 + Opus in WebM, 3 s: codecs the server does not accept.
pub const VP8_OPUS: &str = "vp8_opus.webm";
/// [`H264_AAC`] with a display rotation of 90 degrees clockwise in its
/// video track matrix (ffprobe: `rotation` -90; qtdemux: `rotate-90`): a
/// phone filming upright, 640x360 coded, shown as 360x640.
pub const ROTATED_90: &str = "rotated90_640x360.mp4";

/// Every fixture clip.
pub(crate) const ALL: [&str; 7] = [
    H264_AAC,
    PORTRAIT,
    H265_AAC,
    AUDIO_ONLY,
    H264_BFRAMES,
    VP8_OPUS,
    ROTATED_90,
];

/// The repository's `fixtures/` directory.
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("fixtures")
}

fn generate_once() -> anyhow::Result<()> {
    static RESULT: OnceLock<Result<(), String>> = OnceLock::new();
    RESULT
        .get_or_init(|| {
            if ALL
                .iter()
                .all(|f| fixtures_dir().join("media").join(f).exists())
            {
                return Ok(());
            }
            let script = fixtures_dir().join("generate.sh");
            let out = Command::new("bash")
                .arg(&script)
                .output()
                .map_err(|e| format!("running {}: {e}", script.display()))?;
            if !out.status.success() {
                return Err(format!(
                    "{} failed ({}):\n{}",
                    script.display(),
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
            Ok(())
        })
        .clone()
        .map_err(|e| anyhow!(e))
}

/// Path of a fixture clip (one of the constants above), generating the
/// fixtures first if any is missing.
pub fn fixture(name: &str) -> anyhow::Result<PathBuf> {
    generate_once().context("generating media fixtures")?;
    let path = fixtures_dir().join("media").join(name);
    if !path.exists() {
        bail!("fixture {} does not exist", path.display());
    }
    Ok(path)
}
