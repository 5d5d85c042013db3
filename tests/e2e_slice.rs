//! End-to-end: the real `sharecast` binary, a phone simulated by
//! `sharecast push`, real QUIC on loopback, real GStreamer, ffprobe on the
//! produced files, an RTSP client on the live stream.

use std::io::Read;
use std::process::Command;
use std::time::Duration;

use sharecast_testkit::*;

/// What an RFC 6381 codec string must look like for a stream ffprobe
/// describes: a prefix (sample entry and profile) and a level part.
#[derive(Debug)]
struct CodecString {
    prefix: String,
    level: Option<String>,
}

impl CodecString {
    fn matches(&self, c: &str) -> bool {
        let c = c.to_ascii_lowercase();
        c.starts_with(&self.prefix.to_ascii_lowercase())
            && self
                .level
                .as_ref()
                .is_none_or(|l| c.contains(&l.to_ascii_lowercase()))
    }
}

fn rfc6381_of_ffprobe(s: &serde_json::Value) -> CodecString {
    let profile = s["profile"].as_str().unwrap_or_default();
    let level = s["level"].as_i64().unwrap_or(-1);
    match s["codec_name"].as_str().unwrap() {
        // avc1.PPCCLL: profile_idc, constraint flags, level_idc (hex).
        "h264" => {
            let idc = match profile {
                "High" => 100,
                "Main" => 77,
                "Baseline" | "Constrained Baseline" => 66,
                other => panic!("H.264 profile {other} not expected in the fixtures"),
            };
            CodecString {
                prefix: format!("avc1.{idc:02x}"),
                level: Some(format!("{level:02x}")),
            }
        }
        // hvc1.P.C.Lxx...: general_profile_idc, level_idc in decimal.
        "hevc" => {
            let idc = match profile {
                "Main" => 1,
                "Main 10" => 2,
                other => panic!("H.265 profile {other} not expected in the fixtures"),
            };
            CodecString {
                prefix: format!("hvc1.{idc}."),
                level: Some(format!(".l{level}")),
            }
        }
        "aac" => {
            assert_eq!(profile, "LC", "AAC profile of the fixtures");
            CodecString {
                prefix: "mp4a.40.2".into(),
                level: None,
            }
        }
        other => panic!("codec {other} not expected in a VOD"),
    }
}

fn check_vod_matches_source(server: &Server, clip: &str) {
    let src = fixture(clip).unwrap();
    let r = server.push(&src, &[]);
    assert!(r.ok, "push {clip} failed:\n{}\n{}", r.stdout, r.stderr);
    let attrs = r.attributes();
    let session = r.session();
    let vod = server.session_file(&session, "source.mp4");
    let got = ffprobe(&vod);
    let want = ffprobe(&src);

    // Same video frame count, same duration within one frame.
    match (stream(&want, "video"), stream(&got, "video")) {
        (Some(w), Some(g)) => {
            assert_eq!(
                g["nb_read_frames"], w["nb_read_frames"],
                "{clip}: video frame count"
            );
            assert_eq!(g["codec_name"], w["codec_name"], "{clip}: video codec kept");
            let fps = num(&w["avg_frame_rate"]);
            let (dw, dg) = (
                num(&want["format"]["duration"]),
                num(&got["format"]["duration"]),
            );
            assert!(
                (dw - dg).abs() <= 1.0 / fps + 1e-3,
                "{clip}: duration {dg} vs source {dw}"
            );
            // Attributes agree with ffprobe.
            assert_eq!(attrs["width"], g["width"], "{clip}: width");
            assert_eq!(attrs["height"], g["height"], "{clip}: height");
            // The phone's display rotation survives: in the VOD's matrix
            // and in the attributes, as in the clip it filmed.
            let rotation = attrs["rotation"].as_u64().expect("rotation attribute");
            assert_eq!(rotation, ffprobe_rotation(g), "{clip}: rotation vs the VOD");
            assert_eq!(
                rotation,
                ffprobe_rotation(w),
                "{clip}: rotation vs the clip"
            );
            let afps = attrs["frame_rate"].as_f64().unwrap();
            assert!(
                (afps - num(&g["avg_frame_rate"])).abs() < 0.1,
                "{clip}: fps {afps}"
            );
        }
        (None, None) => {
            // No picture: no picture attributes.
            for key in ["width", "height", "rotation"] {
                assert_eq!(attrs[key], 0, "{clip}: {key} of an audio-only VOD");
            }
        }
        (w, g) => panic!(
            "{clip}: video presence differs: source {} vod {}",
            w.is_some(),
            g.is_some()
        ),
    }
    // Audio present where the source had it.
    assert_eq!(
        stream(&want, "audio").is_some(),
        stream(&got, "audio").is_some(),
        "{clip}: audio presence"
    );
    if let (Some(w), Some(g)) = (stream(&want, "audio"), stream(&got, "audio")) {
        assert_eq!(g["codec_name"], w["codec_name"], "{clip}: audio codec kept");
        assert_eq!(
            g["nb_read_frames"], w["nb_read_frames"],
            "{clip}: audio frame count"
        );
    }
    let size = std::fs::metadata(&vod).unwrap().len();
    assert_eq!(attrs["size_bytes"].as_u64().unwrap(), size, "{clip}: size");
    assert_eq!(
        got["format"]["size"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .unwrap(),
        size
    );
    let dur_ms = num(&got["format"]["duration"]) * 1000.0;
    let adur = attrs["duration_ms"].as_f64().unwrap();
    assert!(
        (adur - dur_ms).abs() <= 50.0,
        "{clip}: duration_ms {adur} vs ffprobe {dur_ms}"
    );
    let bitrate = attrs["bitrate"].as_f64().unwrap();
    let expect = size as f64 * 8.0 / (dur_ms / 1000.0);
    assert!(
        (bitrate - expect).abs() / expect < 0.02,
        "{clip}: bitrate {bitrate} vs {expect}"
    );
    assert_eq!(attrs["container"], "mp4");
    // One RFC 6381 codec string per stream ffprobe finds, naming the same
    // codec, profile and level.
    let codecs: Vec<String> = attrs["codecs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    let streams = got["streams"].as_array().unwrap();
    assert_eq!(codecs.len(), streams.len(), "{clip}: codecs {codecs:?}");
    for s in streams {
        let want = rfc6381_of_ffprobe(s);
        assert!(
            codecs.iter().any(|c| want.matches(c)),
            "{clip}: codecs {codecs:?} lack {want:?} for ffprobe's {} {} level {}",
            s["codec_name"],
            s["profile"],
            s["level"]
        );
    }
    let vod_url = attrs["vod_url"].as_str().unwrap();
    assert!(
        vod_url.ends_with(&format!("/vod/{session}/source.mp4")),
        "{vod_url}"
    );
    // Where the live stream was: the session's RTSP mount on this server.
    let rtsp = format!("rtsp://127.0.0.1:{}/live/{session}", server.rtsp_port);
    let live: Vec<&str> = attrs["live_urls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u.as_str().unwrap())
        .collect();
    assert!(
        live.len() == 1 && (live[0] == rtsp || live[0].starts_with(&format!("{rtsp}?token="))),
        "{clip}: live URLs {live:?} (docs/http-api.md: the RTSP URL)"
    );
    // The served file is the file.
    let body = reqwest::blocking::get(vod_url).unwrap();
    assert_eq!(body.status(), 200);
    assert_eq!(body.bytes().unwrap().len() as u64, size);
    // Ready quickly after the last frame.
    let ready: f64 = r
        .line("ready_after_last_frame_ms")
        .unwrap()
        .parse()
        .unwrap();
    eprintln!("{clip}: VOD ready {ready} ms after the last frame was handed to the SDK");
}

#[test]
fn every_fixture_becomes_a_matching_vod() {
    let server = Server::start();
    for clip in [
        H264_AAC,
        PORTRAIT,
        H265_AAC,
        AUDIO_ONLY,
        H264_BFRAMES,
        ROTATED_90,
    ] {
        check_vod_matches_source(&server, clip);
    }
}

#[test]
fn rtsp_viewers_decode_during_realtime_push() {
    let server = Server::start();
    let src = fixture(H264_AAC).unwrap();
    let spawned_unix_ms = unix_ms();
    let (mut push, session, mut out) = server.spawn_push(&src, &["--realtime"]);
    let token = server.playback_token(&session);
    let url = format!(
        "rtsp://127.0.0.1:{}/live/{session}?token={token}",
        server.rtsp_port
    );
    // Two viewers at once, started first (the clip lasts 3 s): one over
    // TCP (interleaved), one over UDP.
    let viewer = |transport: &str| {
        Command::new("ffmpeg")
            // A socket timeout: a viewer that gets nothing fails, never
            // hangs the test.
            .args(["-v", "error", "-timeout", "20000000"])
            .args(["-rtsp_transport", transport, "-i", &url])
            .args(["-frames:v", "15", "-f", "framemd5", "-"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("ffmpeg")
    };
    let tcp = viewer("tcp");
    let udp = viewer("udp");
    // Without the token the stream does not open.
    let refused = Command::new("ffmpeg")
        .args(["-v", "error", "-rtsp_transport", "tcp", "-i"])
        .arg(format!(
            "rtsp://127.0.0.1:{}/live/{session}",
            server.rtsp_port
        ))
        .args(["-frames:v", "1", "-f", "null", "-"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("401"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    for (name, v) in [("tcp", tcp), ("udp", udp)] {
        let out = v.wait_with_output().unwrap();
        let frames = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.starts_with('#') && l.starts_with("0,"))
            .count();
        assert!(
            out.status.success() && frames >= 10,
            "RTSP viewer over {name} decoded {frames} frames: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let status = push.wait().unwrap();
    let mut err = String::new();
    if let Some(mut e) = push.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    assert!(status.success(), "push failed: {err}");
    // `--realtime` paced the frames by their capture timestamps: the last
    // of the 3 s clip's frames (2.97 s after the first) left no sooner.
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    let last: u64 = rest
        .lines()
        .find_map(|l| l.strip_prefix("last_frame_unix_ms "))
        .expect("push prints last_frame_unix_ms")
        .parse()
        .unwrap();
    assert!(
        last >= spawned_unix_ms + 2_900,
        "a real-time push of a 3 s clip sent its last frame {} ms after it started",
        last.saturating_sub(spawned_unix_ms)
    );
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[test]
fn bad_inputs_are_refused_clearly_and_other_sessions_continue() {
    let server = Server::start_with(&["--max-frame-bytes", "1000"]);
    let good_clip = fixture(AUDIO_ONLY).unwrap();
    // A good session runs in real time while the bad ones are refused.
    let (good, _session, _out) = server.spawn_push(&good_clip, &["--realtime"]);

    // Wrong token.
    let mut cmd = server.push_cmd_to(&server.ingest, "sc_wrong", &fixture(H264_AAC).unwrap(), &[]);
    let r = PushResult::from(cmd.output().unwrap());
    assert!(!r.ok);
    assert!(
        r.stderr.contains("unauthorized"),
        "wrong token: {}",
        r.stderr
    );

    // Unsupported codec (VP8 + Opus in WebM: VP8 is not accepted).
    let r = server.push(&fixture(VP8_OPUS).unwrap(), &[]);
    assert!(!r.ok);
    assert!(r.stderr.contains("unsupported_codec"), "vp8: {}", r.stderr);
    assert!(r.stderr.contains("vp8"), "names the codec: {}", r.stderr);

    // Oversized frame: the 640x360 clip has H.264 frames above 1 000 bytes; AAC frames are ~350.
    let r = server.push(&fixture(H264_AAC).unwrap(), &[]);
    assert!(!r.ok);
    assert!(
        r.stderr.contains("frame_too_large"),
        "oversized: {}",
        r.stderr
    );

    // The good session was not disturbed.
    let out = good.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "good push failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Every rejection is counted.
    let metrics = server.metrics();
    for code in ["unauthorized", "unsupported_codec", "frame_too_large"] {
        let line = metrics
            .lines()
            .find(|l| {
                l.starts_with(&format!(
                    "sharecast_ingest_rejected_total{{code=\"{code}\"}}"
                ))
            })
            .unwrap_or_else(|| panic!("no metric for {code}"));
        assert!(line.ends_with(" 1"), "{line}");
    }
}

#[test]
fn vod_supports_http_range_requests() {
    let server = Server::start();
    let r = server.push(&fixture(H264_AAC).unwrap(), &[]);
    assert!(r.ok, "{}", r.stderr);
    let session = r.session();
    let url = r.attributes()["vod_url"].as_str().unwrap().to_string();
    let file = std::fs::read(server.session_file(&session, "source.mp4")).unwrap();
    let get = |range: &str| client().get(&url).header("Range", range).send().unwrap();

    let resp = get("bytes=100-199");
    assert_eq!(resp.status(), 206);
    assert_eq!(
        resp.headers()["content-range"].to_str().unwrap(),
        format!("bytes 100-199/{}", file.len())
    );
    assert_eq!(&resp.bytes().unwrap()[..], &file[100..200]);

    let resp = get("bytes=-50");
    assert_eq!(resp.status(), 206);
    assert_eq!(&resp.bytes().unwrap()[..], &file[file.len() - 50..]);

    let start = file.len() - 10;
    let resp = get(&format!("bytes={start}-"));
    assert_eq!(resp.status(), 206);
    assert_eq!(&resp.bytes().unwrap()[..], &file[start..]);

    let resp = get(&format!("bytes={}-{}", file.len() + 10, file.len() + 20));
    assert_eq!(resp.status(), 416);

    // Unknown asset and bad ids answer clearly.
    let resp = server.get_raw("/vod/deadbeef/source.mp4", None);
    assert_eq!(resp.status(), 404);
    let resp = server.get_raw("/vod/..%2Fetc/source.mp4", None);
    assert_eq!(resp.status(), 400);
    let (st, asset) = server.get(&format!("/api/v1/assets/{session}"), Some(&server.token));
    assert_eq!(st, 200);
    assert_eq!(asset["state"], "ready");
}

#[test]
fn the_sample_configuration_file_starts_a_server() {
    // docs/sharecast.example.toml documents every key with its default; it
    // must parse and run (ports and data dir overridden on the command line).
    let cfg = repo_root().join("docs/sharecast.example.toml");
    let server = Server::start_with(&["--config", cfg.to_str().unwrap()]);
    assert_eq!(server.get("/api/v1/health", None).0, 200);
}

/// The value after `label` on the banner line that starts with it.
fn banner_value<'a>(banner: &'a str, label: &str) -> &'a str {
    banner
        .lines()
        .find_map(|l| l.trim_start().strip_prefix(label))
        .unwrap_or_else(|| panic!("no '{label}' line in the banner:\n{banner}"))
        .trim()
}

#[test]
fn serve_prints_its_urls_a_device_token_and_the_push_command_that_works() {
    // The clip the printed command names, generated where the repository
    // keeps it (the command is run from the repository root, as
    // scripts/serve.sh runs the server).
    let clip = fixture(H264_AAC).unwrap();
    let server = Server::start();
    let banner = wait_until_ok(
        "a push command in the banner",
        Duration::from_secs(30),
        || {
            let out = server.stdout();
            if out.contains("Try it") && out.lines().any(|l| l.contains(" push --server ")) {
                Ok(out)
            } else {
                Err(out)
            }
        },
    );

    // Every URL printed answers.
    let health = banner_value(&banner, "HTTP API");
    assert_eq!(health, format!("{}/api/v1/health", server.http));
    assert_eq!(reqwest::blocking::get(health).unwrap().status(), 200);
    // Metrics for the admin's scraper only.
    let metrics = banner_value(&banner, "metrics")
        .split_whitespace()
        .next()
        .unwrap();
    assert_eq!(reqwest::blocking::get(metrics).unwrap().status(), 401);
    let scraped = reqwest::blocking::Client::new()
        .get(metrics)
        .bearer_auth(server.admin_token())
        .send()
        .unwrap();
    assert_eq!(scraped.status(), 200);
    let admin = banner_value(&banner, "admin");
    assert_eq!(
        reqwest::blocking::get(admin).unwrap().status(),
        200,
        "{admin}"
    );
    assert_eq!(
        banner_value(&banner, "VOD files"),
        format!("{}/vod/<asset>/source.mp4", server.http)
    );
    assert!(
        banner_value(&banner, "live (RTSP)")
            .ends_with(&format!(":{}/live/<session>", server.rtsp_port)),
        "{banner}"
    );
    assert!(
        banner_value(&banner, "QUIC ingest").contains(&server.fingerprint),
        "{banner}"
    );

    // A ready-made device token, the one the server accepts.
    assert_eq!(
        banner_value(&banner, "Demo device token (shown once; stored hashed):"),
        server.token
    );

    // The exact command, run as printed by a shell in the repository root,
    // records a VOD.
    let command = banner
        .lines()
        .find(|l| l.contains(" push --server "))
        .unwrap()
        .trim();
    assert!(
        command.contains(&format!("--server {}", server.ingest))
            && command.contains(&format!("--token {}", server.token))
            && command.contains(&format!("--pin {}", server.fingerprint)),
        "{command}"
    );
    let root = repo_root();
    if root.join("fixtures/media").join(H264_AAC) == clip {
        assert!(
            command.contains(&format!("--input fixtures/media/{H264_AAC} --realtime")),
            "{command}"
        );
    }
    let out = Command::new("sh")
        .arg("-c")
        .arg(command)
        .current_dir(root)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let r = PushResult::from(out);
    assert!(r.ok, "`{command}` failed:\n{}\n{}", r.stdout, r.stderr);
    let session = r.session();
    let vod = r.line("vod").expect("the push prints the VOD URL");
    assert_eq!(vod, format!("{}/vod/{session}/source.mp4", server.http));
    assert_eq!(reqwest::blocking::get(&vod).unwrap().status(), 200);
}

/// Every family `/metrics` has, as `name type help` and sorted: what
/// scrapers, dashboards and alerts know. The drop counter of the ingest
/// socket is there where the kernel reports it (Linux).
const METRIC_FAMILIES: [&str; 65] = [
    "sharecast_admin_actions_total counter Sessions ended and viewers kicked by admins",
    "sharecast_admin_rejected_total counter Admin requests refused for a missing or wrong token",
    "sharecast_http_errors_total counter HTTP requests answered with an error, by status and code",
    "sharecast_http_refused_total counter Requests refused by the access policy, by route rule and reason",
    "sharecast_http_requests_total counter HTTP requests served",
    "sharecast_ingest_auth_backoffs_total counter Token backoffs and address penalties started by failed authentications",
    "sharecast_ingest_auth_refused_total counter HELLOs answered rate_limited by the failed-authentication limits (token: backing off, refused without lookup; address: a failure from a penalised address)",
    "sharecast_ingest_bytes_received_total counter Frame bytes received",
    "sharecast_ingest_connections_over_limit_total counter Ingest connections (QUIC, RTMP or SRT) refused because max_connections were open",
    "sharecast_ingest_connections_total counter QUIC connections accepted",
    "sharecast_ingest_errors_acknowledged_total counter ERROR messages the phone acknowledged before the connection closed",
    "sharecast_ingest_errors_sent_total counter ERROR messages sent to phones before closing their connection",
    "sharecast_ingest_frames_duplicate_total counter Frames received that were already held",
    "sharecast_ingest_frames_received_total counter Frames received, duplicates included",
    "sharecast_ingest_handshakes_failed_total counter QUIC/TLS handshakes that failed (wrong ALPN, TLS errors, timeouts)",
    "sharecast_ingest_hello_refused_total counter HELLOs refused because a field is out of bounds, by field",
    "sharecast_ingest_journal_commits_total counter Journal commit rounds (one sync for the frames of every session in the round)",
    "sharecast_ingest_journal_frames_total counter Frames made durable",
    "sharecast_ingest_journal_round_max_microseconds gauge Longest journal commit round so far (writes and sync)",
    "sharecast_ingest_journal_sync_microseconds_total counter Time spent in journal commit rounds (writes and sync)",
    "sharecast_ingest_rejected_total counter Inputs rejected by the ingest server, by error code",
    "sharecast_ingest_rtmp_connections_total counter RTMP connections accepted",
    "sharecast_ingest_rtmp_ended_total counter RTMP connections that ended before their publisher finished, by reason (closed: the publisher may rejoin)",
    "sharecast_ingest_sessions_active gauge Sessions open (connected or waiting for resume)",
    "sharecast_ingest_sessions_connected gauge Sessions with a live connection",
    "sharecast_ingest_sessions_failed_total counter Sessions whose outputs failed",
    "sharecast_ingest_sessions_finished_total counter Sessions finalised",
    "sharecast_ingest_sessions_recovered_total counter Sessions recovered from journals at start-up",
    "sharecast_ingest_sessions_resumed_total counter Sessions resumed on a new connection",
    "sharecast_ingest_sessions_started_total counter Ingest sessions opened",
    "sharecast_ingest_sessions_stopped_total counter Sessions stopped by an error whose client action is stop (finalised with what they hold, not resumable)",
    "sharecast_ingest_srt_connections_total counter SRT connection requests taken (each one authenticated, then accepted or refused)",
    "sharecast_ingest_srt_dropped_packets_total counter SRT packets a publisher sent that arrived too late for the SRT latency (or never) and were dropped (read at each connection's end)",
    "sharecast_ingest_srt_ended_total counter SRT connections refused or ended before their publisher finished, by reason (closed: the publisher may rejoin)",
    "sharecast_ingest_storage_full_episodes_total counter Times the journals' filesystem became full (each logged once)",
    "sharecast_ingest_storage_full_total counter Journal writes refused because the disk was full (one per session and commit round; none of their frames acknowledged)",
    "sharecast_ingest_udp_gro_segments gauge Datagrams the ingest socket receives in one system call (UDP GRO; 1: no offload)",
    "sharecast_ingest_udp_gso_segments gauge Datagrams the ingest socket sends in one system call (UDP GSO; 1: no offload)",
    "sharecast_ingest_udp_receive_buffer_bytes gauge Receive buffer of the ingest UDP socket as the kernel reports it (ingest.udp_buffer_bytes)",
    "sharecast_ingest_udp_receive_drops_total counter Datagrams the kernel dropped on the ingest socket (receive buffer full)",
    "sharecast_live_frames_total counter Frames fed to live streams",
    "sharecast_live_heartbeats_total counter Viewer heartbeats received",
    "sharecast_live_hls_parts_served_total counter LL-HLS partial segments served",
    "sharecast_live_hls_segments gauge Live HLS segments made by the streams currently held",
    "sharecast_live_hls_segments_served_total counter HLS segments served",
    "sharecast_live_rejected_total counter Live requests refused, by reason",
    "sharecast_live_rendition_streams gauge Live streams of extra renditions being published",
    "sharecast_live_streams gauge Live streams being published",
    "sharecast_live_viewer_events_total counter Viewer endings by kind",
    "sharecast_live_viewers gauge Current viewers by protocol",
    "sharecast_ondemand_transcodes gauge On-demand transcodes now, by state",
    "sharecast_ondemand_transcodes_total counter On-demand transcodes, by outcome (scheduled, reused: an existing job or rendition served the request, done, failed, refused: too many pending)",
    "sharecast_outbound_requests_total counter Requests the server made to addresses it was given, by result",
    "sharecast_recent_log_errors gauge Warnings and errors in the recent log buffer",
    "sharecast_remote_fetch_bytes_total counter Bytes received fetching other platforms' videos",
    "sharecast_remote_fetches_total counter Fetches of another platform's video, by outcome (started, reused: a fetch under way served the request, done, failed, refused: not an http(s) address)",
    "sharecast_share_deliveries_failed_total counter share deliveries that failed for good",
    "sharecast_share_deliveries_sent_total counter share deliveries accepted by the SMS gateway",
    "sharecast_share_delivery_retries_total counter share delivery attempts that failed temporarily and will be retried",
    "sharecast_share_rate_limited_ms_total counter time the delivery worker waited on the gateway rate limit, ms",
    "sharecast_share_sms_parts_delivered_total counter SMS parts the gateway's delivery reports say reached the phone",
    "sharecast_share_sms_parts_total counter SMS or pushes handed to the gateway",
    "sharecast_share_sms_parts_undelivered_total counter SMS parts the gateway's delivery reports say could not be delivered",
    "sharecast_webhook_deliveries_total counter Webhook delivery attempts, by outcome (delivered, retried later, failed for good)",
    "sharecast_webhook_events_purged_total counter Webhook events removed after webhooks.retention_days (with their finished deliveries)",
];

/// `/metrics` is Prometheus text (0.0.4) whose families are exactly
/// [`METRIC_FAMILIES`]: the move to `prometheus-client` changed no name
/// (nor the `_total` of counters), type or help text.
#[test]
fn metrics_keep_every_family_name_type_and_help_text() {
    let server = Server::start();
    let r = server.get_raw("/metrics", Some(&server.admin_token()));
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        r.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = r.text().unwrap();
    let help = |name: &str| {
        text.lines()
            .find_map(|l| {
                l.strip_prefix("# HELP ")?
                    .strip_prefix(name)?
                    .strip_prefix(' ')
            })
            .unwrap_or_else(|| panic!("no help for {name}"))
    };
    let mut families: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.split_once(' '))
        .map(|(name, kind)| format!("{name} {kind} {}", help(name)))
        .collect();
    families.sort();
    let expected: Vec<&str> = METRIC_FAMILIES
        .into_iter()
        .filter(|f| {
            cfg!(target_os = "linux") || !f.starts_with("sharecast_ingest_udp_receive_drops")
        })
        .collect();
    assert_eq!(families, expected, "{text}");
}

#[test]
fn device_add_prints_a_token_stored_only_as_its_hash_that_lets_a_phone_push() {
    let server = Server::start();
    let data = server.data_dir();
    // Added while the server runs, as an operator would.
    let out = run_ok(
        Command::new(bin())
            .args(["device", "add", "field-phone", "--data-dir"])
            .arg(&data)
            .env("RUST_LOG", "warn"),
    );
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        token.starts_with("sc_") && token.len() >= 32 && !token.contains(char::is_whitespace),
        "the token alone on stdout: {token:?}"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("field-phone"),
        "names the device"
    );

    // Stored hashed: the token appears in no database file (WAL included),
    // its SHA-256 (computed here independently) is the stored value.
    for entry in std::fs::read_dir(&data).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with("sharecast.db") {
            let bytes = std::fs::read(&path).unwrap();
            assert!(
                !bytes.windows(token.len()).any(|w| w == token.as_bytes()),
                "{name} holds the token in clear"
            );
        }
    }
    let sha = Command::new("sh")
        .arg("-c")
        .arg(format!("printf %s '{token}' | sha256sum"))
        .output()
        .unwrap();
    let sha = String::from_utf8_lossy(&sha.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let stored = Command::new("sqlite3")
        .arg(data.join("sharecast.db"))
        .arg("SELECT token_hash FROM devices WHERE name = 'field-phone'")
        .output()
        .expect("sqlite3 (scripts/setup.sh installs it)");
    assert_eq!(String::from_utf8_lossy(&stored.stdout).trim(), sha);

    // `device list` shows it; its token uploads.
    let list = Command::new(bin())
        .args(["device", "list", "--data-dir"])
        .arg(&data)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&list.stdout).contains("\tfield-phone"));
    // The command form, `push --server --token --input`, from the
    // directory holding the server's `data/`: push pins the certificate in
    // data/tls/cert.pem.
    assert_eq!(data, server.dir.path().join("data"));
    let mut cmd = Command::new(bin());
    cmd.args(["push", "--server", &server.ingest, "--token", &token])
        .arg("--input")
        .arg(fixture(AUDIO_ONLY).unwrap())
        .current_dir(server.dir.path())
        .env("RUST_LOG", "warn");
    let r = PushResult::from(cmd.output().unwrap());
    assert!(r.ok, "push with the new token: {}", r.stderr);
    let (_, asset) = server.get(&format!("/api/v1/assets/{}", r.session()), Some(&token));
    let devices = String::from_utf8_lossy(&list.stdout).to_string();
    let id = devices
        .lines()
        .find(|l| l.ends_with("\tfield-phone"))
        .and_then(|l| l.split('\t').next())
        .unwrap();
    assert_eq!(
        asset["device_id"], id,
        "the asset belongs to the new device"
    );
}
