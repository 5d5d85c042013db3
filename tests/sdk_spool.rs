//! The client SDK's on-device spool through the Rust API, against a real
//! `sharecast serve`: an uploader stopped abruptly mid-recording (its
//! runtime shut down with frames unacknowledged, as a killed app) is
//! finished by `Uploader::resume_pending` with every frame once; a full
//! spool refuses frames with a clear error and loses nothing it accepted.

use std::time::Duration;

use sharecast_client_sdk::uploader::spool::SpoolConfig;
use sharecast_client_sdk::{Trust, UploadError, Uploader, UploaderConfig};
use sharecast_formats::media::MediaFrame;
use sharecast_testkit::*;

fn config(server: &Server, spool: &std::path::Path) -> UploaderConfig {
    let mut cfg = UploaderConfig::new(
        server.ingest.clone(),
        server.token.clone(),
        Trust::PinSha256(server.fingerprint.clone()),
    );
    cfg.spool = Some(SpoolConfig::new(spool));
    cfg
}

fn clip() -> (Vec<sharecast_formats::media::TrackInfo>, Vec<MediaFrame>) {
    let mut src =
        sharecast_transcoder::source::FileSource::open(&fixture(H264_AAC).unwrap()).unwrap();
    let frames: Vec<MediaFrame> = src.by_ref().map(|f| f.unwrap()).collect();
    (src.tracks.clone(), frames)
}

fn packets(path: &std::path::Path) -> Vec<(String, u64)> {
    let out = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_packets",
            "-show_entries",
            "stream=codec_type,nb_read_packets",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(','))
        .map(|(k, n)| (k.to_string(), n.trim().parse().unwrap()))
        .collect()
}

#[test]
fn an_uploader_stopped_mid_recording_is_finished_by_resume_pending() {
    let server = Server::start();
    let spool = tempfile::tempdir().unwrap();
    let (tracks, frames) = clip();
    // The "app": queue every frame while the server is stopped (nothing is
    // acknowledged), then stop the runtime abruptly without finish().
    let session = {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let cfg = config(&server, spool.path());
        let pid = server.pid().expect("the server runs").to_string();
        let session = rt.block_on(async {
            let up = Uploader::start(cfg, tracks.clone(), 1_700_000_000_000_000)
                .await
                .unwrap();
            for f in &frames[..20] {
                up.send(f.clone()).await.unwrap();
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert!(std::process::Command::new("kill")
                .args(["-STOP", &pid])
                .status()
                .unwrap()
                .success());
            for f in &frames[20..] {
                up.send(f.clone()).await.unwrap();
            }
            let s = up.stats();
            assert!(s.backlog_frames > 100, "unacknowledged when stopped: {s:?}");
            assert!(up.spool_bytes() > 0);
            let id = up.session_id().to_string();
            drop(up);
            id
        });
        // Every task is dropped with the runtime, as if the process died (the
        // spool's lock goes with them).
        rt.shutdown_timeout(Duration::from_secs(5));
        assert!(std::process::Command::new("kill")
            .args(["-CONT", &pid])
            .status()
            .unwrap()
            .success());
        session
    };
    assert!(spool.path().join(&session).join("meta.json").exists());
    // The next start.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let attrs = rt.block_on(async {
        let report = Uploader::resume_pending(config(&server, spool.path()))
            .await
            .unwrap();
        assert!(report.failed.is_empty(), "{report:?}");
        assert_eq!(report.resumed.len(), 1, "{report:?}");
        let up = report.resumed.into_iter().next().unwrap();
        assert_eq!(up.session_id(), session);
        // A resumed session only finishes.
        let e = up.send(frames[0].clone()).await.unwrap_err();
        assert!(matches!(e, UploadError::Closed(_)), "{e}");
        let (r, stats) = up.finish_with_stats().await;
        assert_eq!(stats.backlog_frames, 0);
        r.unwrap()
    });
    assert_eq!(attrs.id, session);
    assert!(
        !spool.path().join(&session).exists(),
        "spool removed once finished"
    );
    let vod = server
        .data_dir()
        .join("sessions")
        .join(&session)
        .join("source.mp4");
    let got = packets(&vod);
    let video = frames.iter().filter(|f| f.track == 0).count() as u64;
    let audio = frames.len() as u64 - video;
    assert_eq!(
        got,
        vec![("video".to_string(), video), ("audio".to_string(), audio)]
    );
    // Nothing left to resume.
    let report = rt
        .block_on(Uploader::resume_pending(config(&server, spool.path())))
        .unwrap();
    assert!(report.resumed.is_empty() && report.failed.is_empty());
}

#[test]
fn a_full_spool_refuses_frames_and_keeps_what_it_accepted() {
    let server = Server::start();
    let spool = tempfile::tempdir().unwrap();
    let (tracks, frames) = clip();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let pid = server.pid().expect("the server runs").to_string();
    let mut cfg = config(&server, spool.path());
    if let Some(s) = cfg.spool.as_mut() {
        s.max_bytes = 100_000;
    }
    let (accepted, session) = rt.block_on(async {
        let up = Uploader::start(cfg, tracks.clone(), 1_700_000_000_000_000)
            .await
            .unwrap();
        // No acknowledgements: the spool fills.
        assert!(std::process::Command::new("kill")
            .args(["-STOP", &pid])
            .status()
            .unwrap()
            .success());
        let mut accepted = 0;
        let mut refused = None;
        for f in &frames {
            match up.send(f.clone()).await {
                Ok(()) => accepted += 1,
                Err(e) => {
                    refused = Some(e);
                    break;
                }
            }
        }
        let e = refused.expect("a 100 kB spool refuses a 165 kB clip");
        assert!(
            matches!(e, UploadError::SpoolFull { max: 100_000, .. }),
            "{e}"
        );
        assert_eq!(e.code_name(), "spool_full");
        assert!(e.to_string().contains("spool full"), "{e}");
        assert!(up.spool_bytes() <= 100_000);
        assert!(std::process::Command::new("kill")
            .args(["-CONT", &pid])
            .status()
            .unwrap()
            .success());
        let id = up.session_id().to_string();
        (accepted, {
            up.finish().await.unwrap();
            id
        })
    });
    // Every accepted frame is in the VOD.
    let vod = server
        .data_dir()
        .join("sessions")
        .join(&session)
        .join("source.mp4");
    let total: u64 = packets(&vod).iter().map(|(_, n)| n).sum();
    assert_eq!(total, accepted);
}
