//! The Sharecast client SDK for Android and iOS apps. Its one job: expose
//! `sharecast-client-sdk` through UniFFI (proc-macro interface) so that
//! Kotlin (over JNA) and Swift bindings are generated from it, never
//! written by hand.
//!
//! Main types: [`Upload`] (a running upload: [`start_upload`],
//! [`Upload::send_frame`], [`Upload::next_event`], [`Upload::finish`]),
//! [`resume_pending`] (finish the uploads of a killed app from its spool),
//! [`UploadSettings`] and [`TrackSpec`] (tracks with codec configuration as
//! MediaCodec or VideoToolbox gives it), [`UploadEvent`], and for recipients
//! [`ShareReceiver`] and [`decode_wap_push`] (a share message to
//! [`ReceivedShare`]: attributes and how to play).
//!
//! The platform-shaped API (Kotlin suspend functions and a `Flow` of
//! events, Swift async/await and an `AsyncStream`) is written on top of the
//! generated layer in `client-sdk/ffi/kotlin/` and `client-sdk/ffi/swift/`;
//! `docs/mobile.md` shows how an app uses it.
//!
//! **Threading**: async functions run on the SDK's own runtime (two
//! worker threads named `sharecast-sdk`), whatever thread calls them;
//! `send_frame_blocking` blocks the calling thread while the memory buffer
//! is full (never call it on a UI thread); every other function returns at
//! once.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use sharecast_client_sdk::codec;
use sharecast_client_sdk::recipient;
use sharecast_client_sdk::uploader::spool::SpoolConfig;
use sharecast_client_sdk::{Trust, UploadError, Uploader, UploaderConfig};
use sharecast_formats::attributes;
use sharecast_formats::media::{Codec, MediaFrame, TrackInfo};

uniffi::setup_scaffolding!();

/// The SDK's runtime: two worker threads.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("sharecast-sdk")
            .enable_all()
            .build()
            .unwrap_or_else(|e| {
                // Without threads the SDK cannot run at all; say why.
                panic!("sharecast SDK: cannot start its runtime: {e}")
            })
    })
}

/// Run a future on the SDK's runtime and wait for it from any executor
/// (the Kotlin coroutine or Swift task polling the generated future).
async fn on_runtime<T, F>(f: F) -> Result<T, SharecastError>
where
    T: Send + 'static,
    F: std::future::Future<Output = Result<T, SharecastError>> + Send + 'static,
{
    runtime()
        .spawn(f)
        .await
        .map_err(|e| SharecastError::Upload {
            code: "internal".into(),
            detail: format!("SDK task failed: {e}"),
        })?
}

/// Errors of the SDK.
#[derive(Debug, Clone, thiserror::Error, uniffi::Error)]
pub enum SharecastError {
    /// An upload failed or refused a call. `code` is stable: the server's
    /// error name (`unauthorized`, `unknown_session`, …) or one of
    /// `disconnected`, `configuration`, `frame_too_big`, `spool_full`,
    /// `spool`, `closed`, `invalid`, `internal`.
    #[error("{code}: {detail}")]
    Upload {
        /// Stable error name.
        code: String,
        /// What happened.
        detail: String,
    },
    /// A share message could not be read or is not safe to offer. `kind`:
    /// `hex`, `pdu`, `mixed_alphabets`, `payload`, `no_link`,
    /// `unsafe_link`.
    #[error("{kind}: {detail}")]
    Message {
        /// What kind of problem.
        kind: String,
        /// What is wrong, with the byte offset where it applies.
        detail: String,
    },
}

impl From<UploadError> for SharecastError {
    fn from(e: UploadError) -> Self {
        SharecastError::Upload {
            code: e.code_name().into(),
            detail: e.to_string(),
        }
    }
}

impl From<recipient::RecipientError> for SharecastError {
    fn from(e: recipient::RecipientError) -> Self {
        use recipient::RecipientError as R;
        let kind = match &e {
            R::Hex(_) => "hex",
            R::Pdu(_) => "pdu",
            R::MixedAlphabets { .. } => "mixed_alphabets",
            R::Payload { .. } => "payload",
            R::NoLink { .. } => "no_link",
            R::UnsafeLink { .. } => "unsafe_link",
        };
        SharecastError::Message {
            kind: kind.into(),
            detail: e.to_string(),
        }
    }
}

fn invalid(message: impl Into<String>) -> SharecastError {
    SharecastError::Upload {
        code: "invalid".into(),
        detail: message.into(),
    }
}

/// Send the SDK's logs (`tracing`) to standard error, filtered like
/// `RUST_LOG` (e.g. `"info"`, `"sharecast_client_sdk=debug"`). Call once;
/// later calls do nothing. Apps that collect logs otherwise need not call
/// it.
#[uniffi::export]
pub fn init_logging(filter: String) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .try_init();
}

// ---------------------------------------------------------------------------
// Uploading

/// Where and how to upload. Fields left `None` take the SDK's defaults
/// (documented in `docs/client-sdk.md`).
#[derive(Debug, Clone, uniffi::Record)]
pub struct UploadSettings {
    /// Server addresses, `host:port`, tried in order (the same server).
    pub servers: Vec<String>,
    /// Device token.
    pub token: String,
    /// SHA-256 fingerprint of the server certificate (hex), or `None` to
    /// verify against `ca_pem`.
    #[uniffi(default = None)]
    pub pin_sha256: Option<String>,
    /// PEM root certificates to verify the server against.
    #[uniffi(default = None)]
    pub ca_pem: Option<Vec<u8>>,
    /// TLS server name (default: the host of the first address).
    #[uniffi(default = None)]
    pub server_name: Option<String>,
    /// Title of the recording.
    #[uniffi(default = None)]
    pub title: Option<String>,
    /// The spool folder (the app's private storage, e.g.
    /// `filesDir/sharecast-spool`); `None`: frames are kept in memory only
    /// and an app killed mid-recording loses what was not yet acknowledged.
    #[uniffi(default = None)]
    pub spool_dir: Option<String>,
    /// Most bytes in the spool (default 256 MiB).
    #[uniffi(default = None)]
    pub max_spool_bytes: Option<u64>,
    /// Without a spool: most bytes of unacknowledged frames in memory
    /// (default 64 MiB). With one: most frame bytes kept in memory besides
    /// it (default 8 MiB).
    #[uniffi(default = None)]
    pub memory_bytes: Option<u64>,
    /// Longest time between two syncs of the spool to storage, ms (default
    /// 100; 0 syncs every frame).
    #[uniffi(default = None)]
    pub spool_sync_ms: Option<u32>,
    /// How long to keep reconnecting before failing, ms (default 60 000).
    #[uniffi(default = None)]
    pub reconnect_deadline_ms: Option<u32>,
    /// First advised bitrate, bit/s (default 2 Mbit/s).
    #[uniffi(default = None)]
    pub initial_bitrate_bps: Option<u64>,
}

impl UploadSettings {
    fn to_config(&self) -> Result<UploaderConfig, SharecastError> {
        let Some(first) = self.servers.first() else {
            return Err(SharecastError::Upload {
                code: "configuration".into(),
                detail: "no server address".into(),
            });
        };
        let trust = match (&self.pin_sha256, &self.ca_pem) {
            (Some(pin), _) => Trust::PinSha256(pin.clone()),
            (None, Some(pem)) => Trust::CaPem(pem.clone()),
            (None, None) => {
                return Err(SharecastError::Upload {
                    code: "configuration".into(),
                    detail: "give pin_sha256 or ca_pem to trust the server".into(),
                })
            }
        };
        let mut cfg = UploaderConfig::new(first.clone(), self.token.clone(), trust);
        cfg.extra_servers = self.servers[1..].to_vec();
        cfg.server_name = self.server_name.clone();
        cfg.title = self.title.clone();
        cfg.client_name = concat!("sharecast-sdk-ffi/", env!("CARGO_PKG_VERSION")).into();
        if let Some(d) = self.reconnect_deadline_ms {
            cfg.reconnect_deadline = Duration::from_millis(u64::from(d));
        }
        if let Some(b) = self.initial_bitrate_bps {
            cfg.initial_bitrate_bps = b;
        }
        if let Some(dir) = &self.spool_dir {
            let mut sc = SpoolConfig::new(dir);
            if let Some(m) = self.max_spool_bytes {
                sc.max_bytes = m;
            }
            if let Some(ms) = self.spool_sync_ms {
                sc.sync_interval = Duration::from_millis(u64::from(ms));
            }
            cfg.spool = Some(sc);
            if let Some(m) = self.memory_bytes {
                cfg.spool_memory_bytes = usize::try_from(m).unwrap_or(usize::MAX);
            }
        } else if let Some(m) = self.memory_bytes {
            cfg.max_buffer_bytes = usize::try_from(m).unwrap_or(usize::MAX);
        }
        Ok(cfg)
    }
}

/// Video codecs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum VideoCodec {
    /// H.264 / AVC (`video/avc`).
    H264,
    /// H.265 / HEVC (`video/hevc`).
    H265,
}

/// Audio codecs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum AudioCodec {
    /// AAC (`audio/mp4a-latm`): raw access units.
    Aac,
    /// Opus (`audio/opus`): raw packets.
    Opus,
}

/// A video track's codec configuration, as the encoder gives it.
#[derive(Debug, Clone, uniffi::Enum)]
pub enum VideoConfig {
    /// MediaCodec's output format: `csd-0` and, for H.264, `csd-1` (Annex
    /// B, as `getByteBuffer("csd-0")` holds them).
    MediaCodec {
        /// `csd-0`.
        csd0: Vec<u8>,
        /// `csd-1`, if any.
        csd1: Option<Vec<u8>>,
    },
    /// VideoToolbox: the format description's parameter sets
    /// (`CMVideoFormatDescriptionGetH264ParameterSetAtIndex` /
    /// `…GetHEVCParameterSetAtIndex`), each without a start code.
    ParameterSets {
        /// VPS (H.265), SPS and PPS, in any order.
        sets: Vec<Vec<u8>>,
    },
    /// An `avcC` / `hvcC` record, used as is.
    Record {
        /// The record.
        bytes: Vec<u8>,
    },
}

/// How the encoder lays out a video frame's NAL units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum NalFormat {
    /// Start codes (MediaCodec output buffers).
    AnnexB,
    /// Big-endian lengths of `length_size` bytes (VideoToolbox sample
    /// buffers: the format description's NAL unit header length, usually 4).
    LengthPrefixed {
        /// 1, 2 or 4.
        length_size: u8,
    },
}

/// One track of the recording. Tracks get ids 0, 1, … in the order given;
/// `send_frame` names a track by that id.
#[derive(Debug, Clone, uniffi::Enum)]
pub enum TrackSpec {
    /// A video track.
    Video {
        /// Codec.
        codec: VideoCodec,
        /// Coded width, pixels (as the sensor delivers it).
        width: u32,
        /// Coded height, pixels.
        height: u32,
        /// Nominal frame rate.
        fps: u32,
        /// Display rotation, degrees clockwise (0, 90, 180, 270).
        rotation: u32,
        /// Codec configuration.
        config: VideoConfig,
        /// Layout of the frames given to `send_frame`.
        frame_format: NalFormat,
    },
    /// An audio track.
    Audio {
        /// Codec.
        codec: AudioCodec,
        /// Sample rate, Hz.
        sample_rate: u32,
        /// Channels.
        channels: u32,
        /// AAC: MediaCodec's `csd-0` (AudioSpecificConfig) or AudioToolbox's
        /// magic cookie (`esds`); Opus: MediaCodec's `csd-0` (`OpusHead`),
        /// or empty to build one.
        config: Vec<u8>,
    },
}

/// A track as the protocol describes it, and how its frames are laid out.
fn track_info(
    id: u8,
    spec: &TrackSpec,
) -> Result<(TrackInfo, Option<codec::NalFormat>), SharecastError> {
    let bad = |e: codec::CodecError| invalid(format!("track {id}: {e}"));
    Ok(match spec {
        TrackSpec::Video {
            codec: c,
            width,
            height,
            fps,
            rotation,
            config,
            frame_format,
        } => {
            let codec = match c {
                VideoCodec::H264 => Codec::H264,
                VideoCodec::H265 => Codec::H265,
            };
            let config = match config {
                VideoConfig::MediaCodec { csd0, csd1 } => codec::VideoConfig::MediaCodec {
                    csd0: csd0.clone(),
                    csd1: csd1.clone(),
                },
                VideoConfig::ParameterSets { sets } => {
                    codec::VideoConfig::ParameterSets(sets.clone())
                }
                VideoConfig::Record { bytes } => codec::VideoConfig::Record(bytes.clone()),
            };
            let record = codec::video_config(codec, &config).map_err(bad)?;
            let format = match frame_format {
                NalFormat::AnnexB => codec::NalFormat::AnnexB,
                NalFormat::LengthPrefixed { length_size } => {
                    codec::NalFormat::LengthPrefixed(*length_size)
                }
            };
            (
                TrackInfo {
                    id,
                    codec: codec.as_str().into(),
                    codec_data: record,
                    width: Some(*width),
                    height: Some(*height),
                    framerate: Some((*fps, 1)),
                    sample_rate: None,
                    channels: None,
                    rotation: *rotation,
                },
                Some(format),
            )
        }
        TrackSpec::Audio {
            codec: c,
            sample_rate,
            channels,
            config,
        } => {
            let (codec, ac) = match c {
                AudioCodec::Aac => (Codec::Aac, codec::AudioCodec::Aac),
                AudioCodec::Opus => (Codec::Opus, codec::AudioCodec::Opus),
            };
            let data = codec::audio_config(ac, config, *sample_rate, *channels).map_err(bad)?;
            (
                TrackInfo {
                    id,
                    codec: codec.as_str().into(),
                    codec_data: data,
                    width: None,
                    height: None,
                    framerate: None,
                    sample_rate: Some(*sample_rate),
                    channels: Some(*channels),
                    rotation: 0,
                },
                None,
            )
        }
    })
}

/// Video attributes of a recording (see `docs/http-api.md`, "Video
/// attributes"). Sizes in bytes, durations in ms, bitrates in bit/s.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct VideoAttributes {
    /// Asset or session id.
    pub id: String,
    /// Title.
    pub title: Option<String>,
    /// Sender.
    pub sender: Option<String>,
    /// The primary VOD file.
    pub vod_url: Option<String>,
    /// Live URLs (RTSP, the player page).
    pub live_urls: Vec<String>,
    /// The share page.
    pub share_url: Option<String>,
    /// Poster.
    pub thumbnail_url: Option<String>,
    /// Container, e.g. `mp4`.
    pub container: String,
    /// RFC 6381 codec strings.
    pub codecs: Vec<String>,
    /// Size of the primary file.
    pub size_bytes: u64,
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
    /// Display rotation, degrees clockwise.
    pub rotation: u32,
    /// Frames per second.
    pub frame_rate: f64,
    /// Bits per second.
    pub bitrate: u64,
    /// Duration, ms.
    pub duration_ms: u64,
    /// Share expiry, Unix seconds.
    pub expires_unix: Option<u64>,
    /// Renditions.
    pub renditions: Vec<Rendition>,
    /// Everything above and more, as the JSON of `docs/http-api.md`.
    pub json: String,
}

/// One VOD rendition.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct Rendition {
    /// Name, e.g. `source`, `480p`.
    pub name: String,
    /// URL.
    pub url: String,
    /// Container.
    pub container: String,
    /// RFC 6381 codec strings.
    pub codecs: Vec<String>,
    /// Size.
    pub size_bytes: u64,
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
    /// Bits per second.
    pub bitrate: u64,
}

impl From<&attributes::VideoAttributes> for VideoAttributes {
    fn from(a: &attributes::VideoAttributes) -> Self {
        VideoAttributes {
            id: a.id.clone(),
            title: a.title.clone(),
            sender: a.sender.clone(),
            vod_url: a.vod_url.clone(),
            live_urls: a.live_urls.clone(),
            share_url: a.share_url.clone(),
            thumbnail_url: a.thumbnail_url.clone(),
            container: a.container.clone(),
            codecs: a.codecs.clone(),
            size_bytes: a.size_bytes,
            width: a.width,
            height: a.height,
            rotation: a.rotation,
            frame_rate: a.frame_rate,
            bitrate: a.bitrate,
            duration_ms: a.duration_ms,
            expires_unix: a.expires_unix,
            renditions: a
                .renditions
                .iter()
                .map(|r| Rendition {
                    name: r.name.clone(),
                    url: r.url.clone(),
                    container: r.container.clone(),
                    codecs: r.codecs.clone(),
                    size_bytes: r.size_bytes,
                    width: r.width,
                    height: r.height,
                    bitrate: r.bitrate,
                })
                .collect(),
            json: serde_json::to_string(a).unwrap_or_default(),
        }
    }
}

/// What happens to an upload, in order.
// Passed by value across the FFI (a Box is not a UniFFI type).
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, uniffi::Enum)]
pub enum UploadEvent {
    /// The session is open; viewers watch at `live_urls`.
    Connected {
        /// Session id.
        session_id: String,
        /// Live URLs.
        live_urls: Vec<String>,
    },
    /// New encoder targets: give them to MediaCodec (`setParameters` with
    /// `PARAMETER_KEY_VIDEO_BITRATE`) or VideoToolbox
    /// (`kVTCompressionPropertyKey_AverageBitRate`, expected frame rate).
    Advice {
        /// Target bitrate, bit/s.
        bitrate_bps: u64,
        /// Target frame rate.
        fps: u32,
        /// `congested`, `probing`, `steady` or `start`.
        reason: String,
    },
    /// The connection was lost; the SDK is reconnecting.
    Reconnecting {
        /// Why.
        reason: String,
    },
    /// The session was resumed on a new connection.
    Resumed {
        /// Resumes so far.
        resumes: u64,
    },
    /// Frames are waiting for the network (every second while behind).
    Backlog {
        /// Unacknowledged frames.
        frames: u64,
        /// Unacknowledged bytes.
        bytes: u64,
        /// Capture time they span, ms.
        span_ms: u64,
        /// Bytes in the spool.
        spool_bytes: u64,
        /// Whether a connection is up.
        connected: bool,
    },
    /// The server made the VOD: its attributes.
    Finished {
        /// The attributes.
        attributes: VideoAttributes,
    },
    /// The upload failed for good.
    Failed {
        /// Stable error name (see [`SharecastError::Upload`]).
        code: String,
        /// What happened.
        message: String,
    },
}

impl From<sharecast_client_sdk::UploadEvent> for UploadEvent {
    fn from(e: sharecast_client_sdk::UploadEvent) -> Self {
        use sharecast_client_sdk::UploadEvent as E;
        match e {
            E::Connected {
                session_id,
                live_urls,
            } => UploadEvent::Connected {
                session_id,
                live_urls,
            },
            E::Advice(a) => UploadEvent::Advice {
                bitrate_bps: a.target_bps,
                fps: a.target_fps,
                reason: a.reason.into(),
            },
            E::Reconnecting { reason } => UploadEvent::Reconnecting { reason },
            E::Resumed { resumes } => UploadEvent::Resumed { resumes },
            E::Backlog {
                frames,
                bytes,
                span_ms,
                spool_bytes,
                connected,
            } => UploadEvent::Backlog {
                frames,
                bytes,
                span_ms,
                spool_bytes,
                connected,
            },
            E::Finished(a) => UploadEvent::Finished {
                attributes: VideoAttributes::from(a.as_ref()),
            },
            E::Failed(e) => UploadEvent::Failed {
                code: e.code_name().into(),
                message: e.to_string(),
            },
        }
    }
}

/// Statistics of an upload.
#[derive(Debug, Clone, uniffi::Record)]
pub struct UploadStats {
    /// Frames given to `send_frame`.
    pub frames_sent: u64,
    /// Frames the server acknowledged as durable.
    pub frames_acked: u64,
    /// Unacknowledged frames.
    pub backlog_frames: u64,
    /// Unacknowledged bytes.
    pub backlog_bytes: u64,
    /// Frame bytes in memory.
    pub resident_bytes: u64,
    /// Bytes in the spool.
    pub spool_bytes: u64,
    /// Frame records handed to the network, resends included.
    pub frames_transmitted: u64,
    /// Resumes.
    pub resumes: u64,
    /// Round-trip time, ms.
    pub rtt_ms: f64,
    /// Acknowledged throughput, bit/s.
    pub acked_bps: u64,
}

/// A running upload. Get one from [`start_upload`] or [`resume_pending`].
#[derive(uniffi::Object)]
pub struct Upload {
    inner: Arc<Uploader>,
    /// Per track id: the layout of its video frames (`None` for audio).
    formats: Vec<Option<codec::NalFormat>>,
    /// Per track id: codec, sample rate and frame rate (frame durations).
    timing: Vec<(Codec, u32, u32)>,
    events:
        tokio::sync::Mutex<Option<tokio::sync::mpsc::Receiver<sharecast_client_sdk::UploadEvent>>>,
}

impl Upload {
    fn wrap(u: Uploader, formats: Vec<Option<codec::NalFormat>>) -> Arc<Upload> {
        let events = u.take_events();
        let timing = u
            .tracks()
            .iter()
            .map(|t| {
                (
                    t.codec().unwrap_or(Codec::Aac),
                    t.sample_rate.unwrap_or(0),
                    t.framerate.map_or(0, |(n, d)| n / d.max(1)),
                )
            })
            .collect();
        Arc::new(Upload {
            inner: Arc::new(u),
            formats,
            timing,
            events: tokio::sync::Mutex::new(events),
        })
    }

    fn frame(
        &self,
        track: u8,
        pts_us: i64,
        dts_us: i64,
        keyframe: bool,
        data: Vec<u8>,
    ) -> Result<MediaFrame, SharecastError> {
        let Some(format) = self.formats.get(usize::from(track)) else {
            return Err(invalid(format!(
                "track {track}: this upload has {} track(s)",
                self.formats.len()
            )));
        };
        if data.is_empty() {
            return Err(invalid(format!("track {track}: an empty frame")));
        }
        let data = match format {
            Some(f) => {
                codec::video_frame(&data, *f).map_err(|e| invalid(format!("track {track}: {e}")))?
            }
            None => data,
        };
        // MediaCodec and VideoToolbox give timestamps, not durations.
        let duration_us = self
            .timing
            .get(usize::from(track))
            .map_or(0, |(c, rate, fps)| {
                codec::frame_duration_us(*c, &data, *rate, *fps)
            });
        Ok(MediaFrame {
            track,
            seq: 0,
            pts_us,
            dts_us,
            duration_us,
            keyframe,
            data: Bytes::from(data),
        })
    }
}

/// Open an upload: connect, announce the tracks, wait for the server's
/// welcome (then the `Connected` event is the first of
/// [`Upload::next_event`]). With `spool_dir`, the session's spool exists
/// when this returns.
#[uniffi::export]
pub async fn start_upload(
    settings: UploadSettings,
    tracks: Vec<TrackSpec>,
) -> Result<Arc<Upload>, SharecastError> {
    let cfg = settings.to_config()?;
    if tracks.is_empty() || tracks.len() > 16 {
        return Err(invalid(format!("{} tracks (1 to 16)", tracks.len())));
    }
    let mut infos = Vec::with_capacity(tracks.len());
    let mut formats = Vec::with_capacity(tracks.len());
    for (i, t) in tracks.iter().enumerate() {
        let (info, format) = track_info(i as u8, t)?;
        infos.push(info);
        formats.push(format);
    }
    let anchor = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0);
    on_runtime(async move {
        let u = Uploader::start(cfg, infos, anchor).await?;
        Ok(Upload::wrap(u, formats))
    })
    .await
}

/// What [`resume_pending`] did.
#[derive(uniffi::Record)]
pub struct ResumeResult {
    /// Sessions resumed from the spool: each uploads what the server lacks
    /// and ends; call `finish()` on each for its attributes.
    pub uploads: Vec<Arc<Upload>>,
    /// Sessions that could not be resumed; their spool stays until
    /// [`discard_pending`].
    pub failed: Vec<PendingFailure>,
    /// What recovery noticed in the spool (torn tails cut, corrupt
    /// records).
    pub issues: Vec<String>,
}

/// A spooled session that could not be resumed.
#[derive(Debug, Clone, uniffi::Record)]
pub struct PendingFailure {
    /// Session id (or the folder, when unreadable).
    pub session: String,
    /// Stable error name.
    pub code: String,
    /// What happened.
    pub message: String,
}

/// Finish the uploads an app was killed in the middle of: every
/// unfinished session in `settings.spool_dir` is resumed with the server,
/// the frames it lacks are sent, and the session ends. Call it at the next
/// start, before new uploads.
#[uniffi::export]
pub async fn resume_pending(settings: UploadSettings) -> Result<ResumeResult, SharecastError> {
    let cfg = settings.to_config()?;
    if cfg.spool.is_none() {
        return Err(SharecastError::Upload {
            code: "configuration".into(),
            detail: "resume_pending needs spool_dir".into(),
        });
    }
    on_runtime(async move {
        let report = Uploader::resume_pending(cfg).await?;
        let uploads = report
            .resumed
            .into_iter()
            .map(|u| {
                // A resumed session takes no new frames: no layouts needed.
                let formats = vec![None; u.tracks().len()];
                Upload::wrap(u, formats)
            })
            .collect();
        Ok(ResumeResult {
            uploads,
            failed: report
                .failed
                .into_iter()
                .map(|(session, e)| PendingFailure {
                    session,
                    code: e.code_name().into(),
                    message: e.to_string(),
                })
                .collect(),
            issues: report
                .issues
                .into_iter()
                .map(|(s, i)| format!("{s}: {i}"))
                .collect(),
        })
    })
    .await
}

/// Delete a spooled session the app gives up on (one [`resume_pending`]
/// reported as failed, for example `unknown_session`).
#[uniffi::export]
pub fn discard_pending(spool_dir: String, session_id: String) -> Result<(), SharecastError> {
    Uploader::discard_pending(&SpoolConfig::new(spool_dir), &session_id)?;
    Ok(())
}

#[uniffi::export]
impl Upload {
    /// Session id.
    pub fn session_id(&self) -> String {
        self.inner.session_id().to_string()
    }

    /// Live URLs (with a playback token).
    pub fn live_urls(&self) -> Vec<String> {
        self.inner.live_urls().to_vec()
    }

    /// Queue one encoded frame of track `track` (its index in the tracks
    /// given at start). Timestamps are capture times in microseconds.
    /// Without a spool it waits while the memory buffer is full
    /// (back-pressure); with one, the frame is in the spool when this
    /// returns, and a full spool refuses it (`spool_full`).
    pub async fn send_frame(
        &self,
        track: u8,
        pts_us: i64,
        dts_us: i64,
        keyframe: bool,
        data: Vec<u8>,
    ) -> Result<(), SharecastError> {
        let frame = self.frame(track, pts_us, dts_us, keyframe, data)?;
        let up = self.inner.clone();
        on_runtime(async move { up.send(frame).await.map_err(SharecastError::from) }).await
    }

    /// [`Upload::send_frame`] for an encoder callback thread: blocks the
    /// calling thread while the memory buffer is full. Never call it on the
    /// UI thread.
    pub fn send_frame_blocking(
        &self,
        track: u8,
        pts_us: i64,
        dts_us: i64,
        keyframe: bool,
        data: Vec<u8>,
    ) -> Result<(), SharecastError> {
        let frame = self.frame(track, pts_us, dts_us, keyframe, data)?;
        self.inner.send_blocking(frame)?;
        Ok(())
    }

    /// The next event, or `None` after `Finished` or `Failed` (the last
    /// events of an upload). One reader at a time.
    pub async fn next_event(&self) -> Option<UploadEvent> {
        let mut guard = self.events.lock().await;
        let rx = guard.as_mut()?;
        let e = rx.recv().await;
        if matches!(
            e,
            None | Some(sharecast_client_sdk::UploadEvent::Finished(_))
                | Some(sharecast_client_sdk::UploadEvent::Failed(_))
        ) {
            *guard = None;
        }
        e.map(UploadEvent::from)
    }

    /// End the recording: wait until every frame is durable on the server
    /// and return the attributes of the VOD.
    pub async fn finish(&self) -> Result<VideoAttributes, SharecastError> {
        let up = self.inner.clone();
        on_runtime(async move {
            let (r, _) = up.end().await;
            Ok(VideoAttributes::from(&r?))
        })
        .await
    }

    /// Current statistics.
    pub fn stats(&self) -> UploadStats {
        let s = self.inner.stats();
        UploadStats {
            frames_sent: s.frames_sent,
            frames_acked: s.frames_acked,
            backlog_frames: s.backlog_frames,
            backlog_bytes: s.backlog_bytes,
            resident_bytes: s.resident_bytes,
            spool_bytes: self.inner.spool_bytes(),
            frames_transmitted: s.frames_transmitted,
            resumes: s.resumes,
            rtt_ms: s.rtt_ms,
            acked_bps: s.acked_bps,
        }
    }

    /// Testing aid: cut the connection as a network drop would; the SDK
    /// reconnects and resumes by itself.
    pub fn drop_connection(&self) {
        self.inner.drop_connection();
    }
}

// ---------------------------------------------------------------------------
// Receiving share messages

/// The recipient's player and network, for the play recommendation.
#[derive(Debug, Clone, uniffi::Record)]
pub struct PlayerCaps {
    /// RFC 6381 codec prefixes the player decodes (`avc1`, `hvc1`,
    /// `mp4a.40`).
    pub codecs: Vec<String>,
    /// Containers it plays (`mp4`); empty: any.
    pub containers: Vec<String>,
    /// Largest width shown (0: no limit).
    pub max_width: u32,
    /// Largest height shown (0: no limit).
    pub max_height: u32,
    /// `wifi`, `ethernet`, `cellular`, `offline` or `unknown`.
    pub network: String,
    /// Whether it plays a file while downloading it.
    pub can_stream: bool,
    /// URL schemes of live streams it plays (`rtsp`, `https`).
    pub live_schemes: Vec<String>,
    /// On cellular, stream only up to this bitrate.
    pub max_cellular_bitrate: Option<u64>,
    /// Free storage for downloads.
    pub free_storage_bytes: Option<u64>,
    /// Prefer live over VOD when both exist.
    pub prefer_live: bool,
}

/// A typical phone player: H.264 + AAC in MP4 up to 1920x1080, RTSP and
/// HLS live, streaming allowed, 4 Mbit/s on cellular.
#[uniffi::export]
pub fn default_player_caps() -> PlayerCaps {
    let d = recipient::PlayerCaps::default();
    PlayerCaps {
        codecs: d.codecs,
        containers: d.containers,
        max_width: d.max_width,
        max_height: d.max_height,
        network: "unknown".into(),
        can_stream: d.can_stream,
        live_schemes: d.live_schemes,
        max_cellular_bitrate: d.max_cellular_bitrate,
        free_storage_bytes: d.free_storage_bytes,
        prefer_live: d.prefer_live,
    }
}

impl PlayerCaps {
    fn to_caps(&self) -> recipient::PlayerCaps {
        use recipient::Network;
        recipient::PlayerCaps {
            codecs: self.codecs.clone(),
            containers: self.containers.clone(),
            max_width: self.max_width,
            max_height: self.max_height,
            network: match self.network.to_ascii_lowercase().as_str() {
                "wifi" => Network::Wifi,
                "ethernet" => Network::Ethernet,
                "cellular" => Network::Cellular,
                "offline" => Network::Offline,
                _ => Network::Unknown,
            },
            can_stream: self.can_stream,
            live_schemes: self.live_schemes.clone(),
            max_cellular_bitrate: self.max_cellular_bitrate,
            free_storage_bytes: self.free_storage_bytes,
            prefer_live: self.prefer_live,
        }
    }
}

/// How to open a received share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum PlayMode {
    /// Download the VOD file, then play it.
    Download,
    /// Play the VOD file while downloading.
    Progressive,
    /// Play the live stream.
    Live,
    /// Open the share page in a browser.
    SharePage,
    /// Nothing to open on this player.
    None,
}

/// A share message received in full.
#[derive(Debug, Clone, uniffi::Record)]
pub struct ReceivedShare {
    /// `tlv`, `xml`, `text`, `wap-si`, `wap-sl` or `wap-video`.
    pub format: String,
    /// The sender (empty for a WAP Push body given alone).
    pub peer: String,
    /// How many SMS it took.
    pub parts: u8,
    /// The video attributes.
    pub attributes: VideoAttributes,
    /// How to play it.
    pub play_mode: PlayMode,
    /// What to open (empty with `None`).
    pub play_url: String,
    /// The rendition chosen, if any.
    pub rendition: Option<String>,
    /// Why.
    pub reason: String,
}

fn received(
    format: sharecast_formats::share::ShareFormat,
    peer: String,
    parts: u8,
    a: &attributes::VideoAttributes,
    caps: &recipient::PlayerCaps,
) -> ReceivedShare {
    let rec = recipient::recommend(a, caps);
    ReceivedShare {
        format: format.name().into(),
        peer,
        parts,
        attributes: VideoAttributes::from(a),
        play_mode: match rec.mode {
            recipient::PlayMode::Download => PlayMode::Download,
            recipient::PlayMode::Progressive => PlayMode::Progressive,
            recipient::PlayMode::Live => PlayMode::Live,
            recipient::PlayMode::SharePage => PlayMode::SharePage,
            recipient::PlayMode::None => PlayMode::None,
        },
        play_url: rec.url,
        rendition: rec.rendition,
        reason: rec.reason,
    }
}

/// What one SMS did.
// Passed by value across the FFI (a Box is not a UniFFI type).
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, uniffi::Enum)]
pub enum ReceiveOutcome {
    /// The message is complete.
    Complete {
        /// It.
        share: ReceivedShare,
    },
    /// A part was stored; parts are missing.
    Pending {
        /// Parts held.
        received: u8,
        /// Parts in the message.
        total: u8,
    },
    /// This part was already held (the first copy is kept).
    Duplicate {
        /// The part number.
        sequence: u8,
    },
}

/// Reassembles SMS parts (in any order, duplicated) into share messages.
/// Give it every SMS PDU as Android's receiver delivers it
/// (`Telephony.Sms.Intents.getMessagesFromIntent(intent)[i].pdu`, or the
/// `pdus` extra).
#[derive(uniffi::Object)]
pub struct ShareReceiver {
    r: Mutex<recipient::Reassembler>,
    caps: recipient::PlayerCaps,
}

#[uniffi::export]
impl ShareReceiver {
    /// A receiver recommending playback for `caps` (the default player's
    /// when `None`).
    #[uniffi::constructor]
    pub fn new(caps: Option<PlayerCaps>) -> Arc<Self> {
        Arc::new(ShareReceiver {
            r: Mutex::new(recipient::Reassembler::default()),
            caps: caps.map(|c| c.to_caps()).unwrap_or_default(),
        })
    }

    /// Give one SMS PDU (SMS-DELIVER, with or without the SMSC field);
    /// `now_ms` is any monotonic clock in ms (parts missing for 5 minutes
    /// are dropped, see `expire`).
    pub fn push_pdu(&self, pdu: Vec<u8>, now_ms: u64) -> Result<ReceiveOutcome, SharecastError> {
        let mut r = self.r.lock().unwrap_or_else(|e| e.into_inner());
        Ok(match r.push_pdu(&pdu, now_ms)? {
            recipient::PushOutcome::Complete(s) => ReceiveOutcome::Complete {
                share: received(
                    s.format,
                    s.peer.to_string(),
                    s.parts,
                    &s.attributes,
                    &self.caps,
                ),
            },
            recipient::PushOutcome::Pending {
                received, total, ..
            } => ReceiveOutcome::Pending { received, total },
            recipient::PushOutcome::Duplicate { sequence, .. } => {
                ReceiveOutcome::Duplicate { sequence }
            }
        })
    }

    /// Drop messages whose parts did not all arrive in time; returns what
    /// was dropped, described.
    pub fn expire(&self, now_ms: u64) -> Vec<String> {
        let mut r = self.r.lock().unwrap_or_else(|e| e.into_inner());
        r.expire(now_ms).iter().map(ToString::to_string).collect()
    }
}

/// Decode a WAP Push body as Android's `WAP_PUSH_DELIVER` intent gives it
/// (`data` extra and its `mimeType`): SI, SL or the Sharecast video
/// document.
#[uniffi::export]
pub fn decode_wap_push(
    content_type: String,
    body: Vec<u8>,
    caps: Option<PlayerCaps>,
) -> Result<ReceivedShare, SharecastError> {
    let share = recipient::decode_wap_body(&content_type, &body)?;
    let caps = caps.map(|c| c.to_caps()).unwrap_or_default();
    Ok(received(
        share.format,
        String::new(),
        1,
        &share.attributes,
        &caps,
    ))
}
