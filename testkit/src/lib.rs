//! The end-to-end harness shared by Sharecast's tests (dev-only: a
//! dev-dependency, never published).
//!
//! Its one job: run the real thing from a test and talk to it. [`Server`]
//! starts the real `sharecast serve` with its own data directory and free
//! ports, reads its banner and `server.json`, kills it with SIGKILL and
//! starts it again; it answers HTTP calls as `(status, JSON)`
//! ([`Server::get`], [`Server::post`], [`Server::delete`], raw variants
//! through [`Server::request`]) and pushes clips like a phone
//! ([`Server::push`], [`Server::spawn_push`]). [`wait_until`] polls with a
//! deadline and fails with a message naming what never happened;
//! [`ChildGuard`] kills a helper process when a test ends, passed or not;
//! [`ffprobe`] and friends look at the files produced; the media fixtures
//! are re-exported from `sharecast-transcoder`.
//!
//! # Which `sharecast` binary
//!
//! `env!("CARGO_BIN_EXE_sharecast")` exists only while compiling the root
//! package's own tests, not this crate. [`bin`] therefore finds the binary
//! at run time: `$SHARECAST_BIN` when set, else `sharecast` in the profile
//! directory of the running test executable (`target/<profile>/deps/x-hash`
//! → `target/<profile>/sharecast`), which Cargo builds before it runs the
//! root package's integration tests.
//!
//! A test binary also gets a watchdog (see [`Server`]): after
//! `SHARECAST_TEST_WATCHDOG_S` seconds (default 900) it kills the servers it
//! started and exits, so a hang fails the suite at once.

pub mod http;
pub mod media;
pub mod mediacodec;
pub mod process;
pub mod repo;
pub mod server;
pub mod wait;

pub use http::{answer, client, error_code, metric_value, send, urlencode};
pub use media::{
    ffmpeg_frame, ffprobe, ffprobe_rotation, frame_counts, frame_md5s, mean_abs_diff, num,
    parse_framemd5, spawn_rtsp_viewer, stream, video_frames,
};
pub use process::{run_ok, spawn_push, ChildGuard};
pub use repo::{artifacts_dir, check_page, repo_root, web_dir, web_share_script};
pub use server::{bin, PushResult, Server};
pub use wait::{poll_until, wait_until, wait_until_ok, POLL_INTERVAL};

pub use reqwest::Method;
pub use sharecast_transcoder::testing::{
    fixture, AUDIO_ONLY, H264_AAC, H264_BFRAMES, H265_AAC, PORTRAIT, ROTATED_90, VP8_OPUS,
};
