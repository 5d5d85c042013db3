//! SRT ingest with real publishers: ffmpeg (libsrt) and GStreamer
//! (`srtsink`) send the demo clip as an MPEG transport stream to the real
//! server, and the recording holds every frame, finalised as soon as the
//! caller closes; two publishes with the same key, the first cut, make one
//! recording; wrong keys, readers and
//! garbage are refused, counted, and leave other publishers alone; garbage
//! mid-publish keeps the frames before it.

use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sharecast_testkit::*;

/// Seconds a publisher that was cut has to come back before its recording
/// is finalised.
const WINDOW_SECS: &str = "4";

fn srt_server() -> Server {
    Server::start_with(&[
        "--srt-listen",
        "127.0.0.1:0",
        "--rejoin-window-secs",
        WINDOW_SECS,
    ])
}

/// A new publishing key of the demo device.
fn publishing_key(server: &Server) -> String {
    server.publishing_key("srt").1
}

/// The caller URL of `streamid` (ffmpeg takes it as written, `#!::`, `=`
/// and `,` included). `linger=2`: ffmpeg's libsrt (live mode) otherwise
/// drops what it has not sent yet when it closes, the last ~0.3 s of the
/// clip (measured against GStreamer's `srtsrc` too), and the recording
/// could not hold every frame. No `latency`: the server's (1 s) is used,
/// larger than the caller's 120 ms, so a loaded CI machine does not drop
/// packets as too late.
fn srt_url(server: &Server, streamid: &str) -> String {
    srt_url_to(server.srt.as_ref().expect("SRT listens"), streamid)
}

fn srt_url_to(addr: &str, streamid: &str) -> String {
    format!("srt://{addr}?mode=caller&linger=2&streamid={streamid}")
}

/// A UDP relay to `server` that passes everything but SRT's SHUTDOWN
/// (a control packet of type 5): through it a caller that closes looks
/// to the server like one whose link was cut right after its last packet.
/// Returns the relay's address; its threads end with the test.
fn relay_without_shutdown(server: &str) -> String {
    let front = UdpSocket::bind("127.0.0.1:0").unwrap();
    let back = UdpSocket::bind("127.0.0.1:0").unwrap();
    back.connect(server).unwrap();
    let addr = front.local_addr().unwrap().to_string();
    let caller: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
    let (front2, back2, caller2) = (
        front.try_clone().unwrap(),
        back.try_clone().unwrap(),
        caller.clone(),
    );
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = front2.recv_from(&mut buf) {
            *caller2.lock().unwrap() = Some(from);
            if buf[..n].starts_with(&[0x80, 0x05]) {
                continue;
            }
            let _ = back2.send(&buf[..n]);
        }
    });
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        loop {
            let Ok(n) = back.recv(&mut buf) else { continue };
            if let Some(to) = *caller.lock().unwrap() {
                let _ = front.send_to(&buf[..n], to);
            }
        }
    });
    addr
}

/// `ffmpeg` sending `input` in real time (its streams copied, `extra`
/// before the input) to `url` as MPEG-TS over SRT.
fn ffmpeg_publish(extra: &[&str], input: &str, url: &str) -> Command {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-loglevel", "error", "-nostdin", "-re"])
        .args(extra)
        .args(["-i", input, "-c", "copy", "-f", "mpegts", url])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

fn publish_ok(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "ffmpeg: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn codecs(path: &std::path::Path) -> (String, String) {
    let probe = ffprobe(path);
    let name = |kind| {
        stream(&probe, kind).expect(kind)["codec_name"]
            .as_str()
            .unwrap()
            .to_string()
    };
    (name("video"), name("audio"))
}

fn ended(reason: &str) -> String {
    format!("sharecast_ingest_srt_ended_total{{reason=\"{reason}\"}}")
}

/// Waits until the SRT connections ended for each reason are counted as
/// many times as given (generously: a loaded CI machine is slow).
fn wait_ended(server: &Server, what: &str, counts: &[(&str, f64)]) {
    wait_until(what, Duration::from_secs(60), || {
        counts
            .iter()
            .all(|(reason, n)| server.metric(&ended(reason)) == *n)
            .then_some(())
    });
}

#[test]
fn ffmpeg_publishes_over_srt_and_the_recording_has_every_frame() {
    // The SRT latency from the configuration: larger than the caller's
    // 120 ms, so the server's is the one used. A rejoin window longer than
    // the wait for the VOD: the caller closes, so the recording is
    // finalised at once, not after the window.
    let server = Server::start_with_config(
        "[ingest]\nsrt_listen = \"127.0.0.1:0\"\nrejoin_window_secs = 600\nsrt_latency_ms = 1500\n",
    );
    let clip = fixture(H264_AAC).unwrap();
    let key = publishing_key(&server);
    publish_ok(&mut ffmpeg_publish(
        &[],
        clip.to_str().unwrap(),
        &srt_url(&server, &key),
    ));
    let id = server.only_ready_asset();
    let vod = server.session_file(&id, "source.mp4");
    assert_eq!(codecs(&vod), ("h264".into(), "aac".into()));
    server.assert_vod_is_the_640x360_clip(&id, &clip);
    assert_eq!(server.metric("sharecast_ingest_srt_connections_total"), 1.0);
    assert!(
        server
            .log()
            .lines()
            .any(|l| l.contains("SRT connection accepted") && l.contains("1500")),
        "the configured SRT latency is the one negotiated"
    );
    assert_eq!(
        server.metric("sharecast_ingest_srt_dropped_packets_total"),
        0.0
    );
}

#[test]
fn two_publishes_with_the_same_key_within_the_window_make_one_recording() {
    let server = srt_server();
    let clip = fixture(H264_AAC).unwrap();
    let key = publishing_key(&server);
    // The access-control form of the stream id this time.
    let streamid = format!("#!::u=studio,r={key},m=publish");
    // The first publish through a relay that keeps its SHUTDOWN from the
    // server: every packet arrives (libsrt lingers until they are
    // acknowledged), then nothing, as when a link is cut.
    let relay = relay_without_shutdown(server.srt.as_ref().unwrap());
    let cut = srt_url_to(&relay, &streamid);
    publish_ok(&mut ffmpeg_publish(&[], clip.to_str().unwrap(), &cut));
    // The server sees the link go silent (after SRT's 5 s idle timeout)
    // and the session waits for the key.
    wait_until("the cut to be seen", Duration::from_secs(30), || {
        server
            .log()
            .contains("waiting for it to rejoin")
            .then_some(())
    });
    let live = wait_until("the session to wait", Duration::from_secs(10), || {
        let a = server.assets().first().cloned()?;
        (a["state"] == "recording").then(|| a["id"].as_str().unwrap().to_string())
    });
    let url = srt_url(&server, &streamid);
    publish_ok(&mut ffmpeg_publish(&[], clip.to_str().unwrap(), &url));
    let id = server.only_ready_asset();
    assert_eq!(id, live, "the second publish continued the same asset");
    let (clip_video, clip_audio) = frame_counts(&clip);
    let vod = server.session_file(&id, "source.mp4");
    assert_eq!(
        frame_counts(&vod),
        (2 * clip_video, 2 * clip_audio),
        "both publishes, every frame once"
    );
    // Timestamps continue: the recording lasts both parts and the time
    // between them (a gap, nothing invented).
    let clip_secs = num(&ffprobe(&clip)["format"]["duration"]);
    let duration = num(&ffprobe(&vod)["format"]["duration"]);
    assert!(
        duration > 2.0 * clip_secs + 0.5,
        "duration {duration} s for two parts of {clip_secs} s"
    );
    assert_eq!(
        server.metric("sharecast_ingest_sessions_started_total"),
        1.0
    );
    assert_eq!(
        server.metric("sharecast_ingest_sessions_resumed_total"),
        1.0
    );
}

#[test]
fn wrong_keys_readers_and_garbage_are_refused_and_counted() {
    let server = srt_server();
    let clip = fixture(H264_AAC).unwrap();
    let clip = clip.to_str().unwrap();
    let key = publishing_key(&server);
    // Refused before any media: a wrong key, the device's token, no key.
    for id in ["sk_wrong", server.token.as_str(), "#!::m=publish"] {
        let out = ffmpeg_publish(&["-t", "1"], clip, &srt_url(&server, id))
            .output()
            .unwrap();
        assert!(!out.status.success(), "the stream id {id} must be refused");
    }
    // A reader (m=request) with a valid key.
    let reader = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-i"])
        .arg(srt_url(&server, &format!("#!::r={key},m=request")))
        .args(["-t", "1", "-f", "null", "-"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .unwrap();
    assert!(!reader.status.success(), "a reader must be refused");
    wait_ended(
        &server,
        "the refusals to be counted",
        &[("unauthorized", 3.0), ("play", 1.0)],
    );
    // A valid key, then raw PCM instead of a transport stream.
    let garbage = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:duration=3"])
        .args(["-f", "s16le"])
        .arg(srt_url(&server, &key))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .output();
    drop(garbage);
    wait_ended(&server, "garbage to be counted", &[("media", 1.0)]);
    assert!(
        server.log().contains("not an MPEG transport stream"),
        "the error says why"
    );
    assert!(
        server.assets().is_empty(),
        "nothing recorded from refused input"
    );
    // Another publisher is unaffected.
    publish_ok(&mut ffmpeg_publish(
        &[],
        clip,
        &srt_url(&server, &format!("publish:{key}")),
    ));
    server.only_ready_asset();
}

/// `gst-launch-1.0 -e` running `pipeline` (its output piped).
fn gst_launch(pipeline: &str) -> std::process::Output {
    Command::new("gst-launch-1.0")
        .arg("-e")
        .args(pipeline.split_whitespace())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

#[test]
fn gstreamer_publishes_over_srt() {
    let server = srt_server();
    let clip = fixture(H264_AAC).unwrap();
    let key = publishing_key(&server);
    // GStreamer's own SRT caller and MPEG-TS muxer, in real time
    // (`srtsink sync=true`); h264parse puts the SPS and PPS in band.
    let pipeline = format!(
        "filesrc location={clip} ! qtdemux name=d \
         d.video_0 ! queue ! h264parse config-interval=-1 ! mpegtsmux name=m alignment=7 \
         ! srtsink uri=srt://{addr} streamid={key} \
         d.audio_0 ! queue ! aacparse ! m.",
        clip = clip.display(),
        addr = server.srt.as_ref().unwrap(),
    );
    let out = gst_launch(&pipeline);
    assert!(
        out.status.success(),
        "gst-launch: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let id = server.only_ready_asset();
    let vod = server.session_file(&id, "source.mp4");
    assert_eq!(codecs(&vod), ("h264".into(), "aac".into()));
    let (video, audio) = frame_counts(&vod);
    let (clip_video, clip_audio) = frame_counts(&clip);
    println!("GStreamer over SRT: {video}/{clip_video} video, {audio}/{clip_audio} audio frames");
    assert_eq!((video, audio), (clip_video, clip_audio), "every frame once");
}

/// `clip` remuxed (`extra` options after the input) to an MPEG-TS file in
/// `dir`.
fn as_transport_stream(
    clip: &std::path::Path,
    dir: &std::path::Path,
    extra: &[&str],
) -> std::path::PathBuf {
    let ts = dir.join("clip.ts");
    run_ok(
        Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-i"])
            .arg(clip)
            .args(["-c", "copy"])
            .args(extra)
            .args(["-f", "mpegts"])
            .arg(&ts),
    );
    ts
}

#[test]
fn garbage_after_media_ends_the_publish_and_keeps_what_came_before() {
    let server = srt_server();
    let clip = fixture(H264_AAC).unwrap();
    let key = publishing_key(&server);
    // The first half of the clip as a transport stream, 4 KiB that are
    // not one, then the rest (a publisher's last bytes may never leave it,
    // so the garbage is not at the end).
    let dir = tempfile::tempdir().unwrap();
    let ts = as_transport_stream(&clip, dir.path(), &[]);
    let bytes = std::fs::read(&ts).unwrap();
    let half = bytes.len() / 2 / 1316 * 1316;
    let mut mixed = bytes[..half].to_vec();
    mixed.extend(std::iter::repeat_n(0u8, 4096));
    mixed.extend_from_slice(&bytes[half..]);
    std::fs::write(&ts, &mixed).unwrap();
    // Sent as it is, in SRT-sized blocks, 2 ms apart (`identity`: srtsink
    // does not throttle) so that libsrt sends each block as it comes: its
    // live mode drops what it has not sent when it closes (no linger), and
    // a file written in one burst once lost everything after its first
    // 60 blocks, the garbage with them.
    let pipeline = format!(
        "filesrc location={} blocksize=1316 ! identity sleep-time=2000 ! srtsink uri=srt://{} streamid={key} sync=false",
        ts.display(),
        server.srt.as_ref().unwrap(),
    );
    let _ = gst_launch(&pipeline);
    wait_ended(&server, "the garbage to be counted", &[("media", 1.0)]);
    assert!(
        server.log().contains("sync byte 0x47"),
        "the error says why"
    );
    // The session is finalised after the window with the frames it took.
    let id = server.only_ready_asset();
    let (video, _) = frame_counts(&server.session_file(&id, "source.mp4"));
    let (clip_video, _) = frame_counts(&clip);
    assert!(
        video > clip_video / 4 && video < clip_video,
        "{video} of {clip_video} video frames: those before the garbage"
    );
}

#[test]
fn h264_without_sps_and_pps_in_band_is_refused_with_the_reason() {
    let server = srt_server();
    let clip = fixture(H264_AAC).unwrap();
    let key = publishing_key(&server);
    // The clip as a transport stream with its SPS and PPS taken out, then
    // that looped ten times (2 320 access units) at five times real time:
    // the server holds what comes while it waits for them, then refuses.
    let dir = tempfile::tempdir().unwrap();
    let no_sps = ["-bsf:v", "h264_mp4toannexb,filter_units=remove_types=7|8"];
    let ts = as_transport_stream(&clip, dir.path(), &no_sps);
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin"])
        .args(["-readrate", "5", "-stream_loop", "9", "-i"])
        .arg(&ts)
        .args(["-c", "copy", "-f", "mpegts"])
        .arg(srt_url(&server, &key))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .output();
    drop(out);
    wait_ended(&server, "the refusal to be counted", &[("media", 1.0)]);
    assert!(
        server
            .log()
            .contains("no video configuration within 2001 access units"),
        "the error says why"
    );
    assert!(server.assets().is_empty(), "no session without its tracks");
}
