//! What the resume service asks of the media side, wired in: where a live
//! stream starts at a position, RTSP mounts of recordings, on-demand
//! transcodes and probes of fetched files; and the interruption bookmarks
//! made when a live viewer vanishes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sharecast_live_relay::{LiveRelay, LiveStartError, ViewerEvent};
use sharecast_resume::{
    JobProgress, LiveLookup, LiveStartInfo, LiveStarts, Probe, ResumeService, ReverseBookmark,
    RtspVod, Transcode, TranscodeRequest,
};
use sharecast_transcoder::{ladder, probe_file, RenditionSpec, SOURCE_FILE};
use tokio::sync::broadcast::error::RecvError;

use crate::recording::Public;

/// Where a live stream starts for a viewer resuming at `position_ms`.
pub(crate) fn live_starts(relay: &Arc<LiveRelay>) -> LiveStarts {
    let relay = relay.clone();
    Arc::new(move |content_id: &str, position_ms: u64| {
        Some(match relay.live_start(content_id, position_ms)? {
            Ok(s) => LiveLookup::Start(LiveStartInfo {
                state: s.state.to_string(),
                from: s.from.to_string(),
                segment: s.segment,
                segment_start_ms: s.segment_start_ms,
                start_ms: s.start_ms,
                oldest_ms: s.oldest_ms,
                edge_ms: s.edge_ms,
            }),
            Err(LiveStartError::PastEnd { edge_ms }) => LiveLookup::PastEnd { edge_ms },
            Err(LiveStartError::NoSegment) => LiveLookup::NoSegment,
        })
    })
}

/// An RTSP mount of a finished recording, for terminals that play RTSP.
pub(crate) fn rtsp_vod(relay: &Arc<LiveRelay>, public: &Public, sessions: PathBuf) -> RtspVod {
    let (relay, public) = (relay.clone(), public.clone());
    Arc::new(move |content_id: &str, codecs: &[String]| {
        let file = sessions.join(content_id).join(SOURCE_FILE);
        relay
            .mount_vod(content_id, &file, codecs)
            .map(|path| format!("rtsp://{}:{}{path}", public.rtsp_host, public.rtsp_port))
            .map_err(|e| format!("{e:#}"))
    })
}

/// On demand (hand-off between platforms): a finished recording's source
/// file, read frame by frame into the ladder's encoder, becomes an H.264 +
/// AAC rendition next to it, measured on the produced file.
pub(crate) fn transcode(public: &Public, sessions: PathBuf, timeout: Duration) -> Transcode {
    let public = public.clone();
    Arc::new(
        move |req: &TranscodeRequest, progress: &dyn Fn(JobProgress)| {
            let dir = sessions.join(&req.content_id);
            let spec = RenditionSpec {
                name: req.name.clone(),
                short_side: req.short_side,
                ..RenditionSpec::compat_480p()
            };
            let report = |done, total| progress(JobProgress::new(done, total));
            let file =
                ladder::transcode_file(&dir.join(SOURCE_FILE), &spec, &dir, timeout, &report)
                    .map_err(|e| without_dir(&format!("{e:#}"), &dir))?;
            public
                .rendition_urls(&req.content_id, vec![file])
                .pop()
                .ok_or_else(|| "the transcoder produced no file".to_string())
        },
    )
}

/// Hand-off between platforms: another platform's video that no rendition
/// suits the terminal is fetched into a local asset and measured here.
pub(crate) fn probe_fetched() -> Probe {
    Arc::new(|path: &Path| {
        probe_file(path).map_err(|e| {
            let msg = format!("{e:#}");
            match path.parent() {
                Some(dir) => without_dir(&msg, dir),
                None => msg,
            }
        })
    })
}

/// The reason goes to API clients: no server paths in it.
fn without_dir(msg: &str, dir: &Path) -> String {
    msg.replace(&format!("{}/", dir.display()), "")
}

/// Interruption bookmarks: a viewer that vanished (missed heartbeats, RTSP
/// timeout) and said who it is (its user token) gets one through the
/// reverse-bookmark interface. What the viewer's access proved (its
/// playback token) is all the bookmark may hand out later.
pub(crate) fn bookmark_interruptions(relay: &LiveRelay, resume: ResumeService) {
    let mut events = relay.viewer_events();
    tokio::spawn(async move {
        loop {
            let end = match events.recv().await {
                Ok(ViewerEvent::Vanished(end)) => end,
                Ok(_) => continue,
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(
                        missed = n,
                        "viewer events lagged; some interruptions were not bookmarked"
                    );
                    continue;
                }
                Err(RecvError::Closed) => break,
            };
            let Some(user_token) = end.user.clone().filter(|u| u.starts_with("su_")) else {
                continue;
            };
            let req = ReverseBookmark {
                user_id: None,
                content_id: end.content_id.clone(),
                position_ms: end.position_ms,
                playback_token: end.playback_token.clone().unwrap_or_default(),
                user_token,
            };
            let a = resume.reverse_bookmark(&req).await;
            tracing::info!(
                content = %end.content_id,
                position_ms = end.position_ms,
                result_code = a.result_code,
                description = %a.description,
                "interruption bookmark"
            );
        }
    });
}
