//! Bookmarks: interruption bookmarks made through the reverse-bookmark
//! interface (which keeps only the live access the viewer proved), the
//! bookmarks hand-offs make, their listing, and where resuming one plays
//! from on a terminal.

use serde::{Deserialize, Serialize};
use sharecast_formats::attributes::VideoAttributes;
use sharecast_formats::compat::playable_rendition;
use sharecast_store::{now_ms, Asset, AssetState, BookmarkRecord, BookmarkStatus};
use sharecast_tokens::new_id;

use crate::error::{Error, Result};
use crate::fetches::FetchJob;
use crate::live::{LiveLookup, LiveStartInfo};
use crate::service::{play_url, seconds, ResumeService};
use crate::transcodes::{Scheduled, TranscodeJob};

/// Most bookmarks listed.
const LISTED: i64 = 200;

/// A bookmark: of a hand-off between platforms, of an interruption, or the
/// user's own.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct Bookmark {
    /// Bookmark id.
    pub(crate) id: String,
    /// Content id (on the platform that holds the video).
    pub(crate) content_id: String,
    /// Position, ms.
    pub(crate) position_ms: u64,
    /// Optional name.
    pub(crate) name: Option<String>,
    /// Optional description.
    pub(crate) description: Option<String>,
    /// `handoff`, `interruption` or `user`.
    pub(crate) source: String,
    /// Address to play from.
    pub(crate) address: String,
    /// `ready` (the address plays on the terminal), `rendition:<name>` (a
    /// rendition chosen for the terminal), `transcoding` (an on-demand
    /// transcode makes one: see `transcode`), `transcode_failed` (see the
    /// job's `error`), `fetching` (the content is held by another platform
    /// and none of its renditions suits the terminal: its video is being
    /// fetched, see `fetch`, then transcoded), `fetch_failed` (see the
    /// fetch's `error`), or `needs_transcode` (none suits the terminal and
    /// this platform fetches nothing: `fetch_remote` is off).
    pub(crate) status: String,
    /// The on-demand transcode this bookmark waits for, while it is known
    /// (jobs are kept in memory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) transcode: Option<TranscodeJob>,
    /// The fetch of another platform's video this bookmark waits for, while
    /// it is known (jobs are kept in memory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) fetch: Option<FetchJob>,
    /// Created, Unix ms.
    pub(crate) created_unix_ms: i64,
}

/// A reverse-bookmark request: the streaming side reports a viewer that was
/// interrupted.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReverseBookmark {
    /// User id, if the caller knows it (checked against the token).
    #[serde(default)]
    pub user_id: Option<String>,
    /// Content id.
    pub content_id: String,
    /// Where playback stopped, ms.
    pub position_ms: u64,
    /// The playback token of the interrupted viewing.
    pub playback_token: String,
    /// The user's token.
    pub user_token: String,
}

/// The reverse-bookmark answer: user id, result code (0 saved) and description.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct ReverseBookmarkAnswer {
    /// The user the bookmark belongs to, when known.
    pub(crate) user_id: Option<String>,
    /// 0 saved; 2 unknown user token; 3 user mismatch; 4 unknown content;
    /// 5 position past the end; 6 the playback token does not open this
    /// (live) content; 9 store error.
    pub result_code: u32,
    /// Human-readable result.
    pub description: String,
    /// The stored bookmark's id.
    pub(crate) bookmark_id: Option<String>,
}

impl ReverseBookmarkAnswer {
    fn refused(user_id: Option<String>, result_code: u32, description: &str) -> Self {
        Self {
            user_id,
            result_code,
            description: description.to_string(),
            bookmark_id: None,
        }
    }
}

/// Where resuming a bookmark plays from, on one terminal.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct BookmarkPlay {
    /// The bookmark.
    bookmark_id: String,
    /// The content it plays.
    content_id: String,
    /// Its position, ms.
    position_ms: u64,
    /// Whether it plays the live stream.
    live: bool,
    /// What to play.
    url: String,
    /// `url` with the `#t=` seconds players start from (the live URL
    /// itself, which carries `start_ms`).
    play_url: String,
    /// The bookmark's source: `handoff`, `interruption` or `user`.
    source: String,
    /// What kind of play it is, with what goes with it.
    #[serde(flatten)]
    from: PlayFrom,
}

/// The three ways a bookmark resumes.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub(crate) enum PlayFrom {
    /// Another platform's video, still being fetched (or whose fetch
    /// failed): its address, which the terminal cannot play.
    Fetching {
        /// `fetching` or `fetch_failed`.
        status: &'static str,
        /// The fetch, while it is known.
        fetch: Option<FetchJob>,
    },
    /// A recording (here, or held by another platform).
    Recorded {
        /// Its seekable RTSP stream from the position, when offered.
        rtsp: Option<RtspStart>,
        /// `ready`, or `transcoding` while a rendition the terminal plays
        /// is made (`url` is the source meanwhile).
        status: &'static str,
        /// That transcode.
        transcode: Option<Box<TranscodeJob>>,
    },
    /// The live stream, from the position.
    Live {
        /// The player page at the position.
        watch_url: String,
        /// Where the live relay starts playback.
        live_start: LiveStartInfo,
    },
}

/// A seekable RTSP stream of a recording and the `Range` to send in `PLAY`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RtspStart {
    /// `rtsp://HOST:PORT/vod/ID`.
    url: String,
    /// `npt=<seconds>-`.
    range: String,
}

impl BookmarkPlay {
    fn new(row: BookmarkRecord, url: String, from: PlayFrom) -> Self {
        let position_ms = row.position_ms.max(0) as u64;
        let live = matches!(from, PlayFrom::Live { .. });
        BookmarkPlay {
            bookmark_id: row.id,
            content_id: row.content_id,
            position_ms,
            live,
            play_url: if live {
                url.clone()
            } else {
                play_url(&url, position_ms)
            },
            url,
            source: row.source,
            from,
        }
    }
}

impl ResumeService {
    /// The reverse-bookmark interface: the streaming side reports an
    /// abnormally interrupted viewer; a bookmark is stored for the user the
    /// user token names. Answers user id, result code (0 = saved) and a
    /// description.
    pub async fn reverse_bookmark(&self, req: &ReverseBookmark) -> ReverseBookmarkAnswer {
        let user_id = match self.store.user_by_token(&req.user_token).await {
            Ok(Some(u)) => u,
            Ok(None) => return ReverseBookmarkAnswer::refused(None, 2, "unknown user token"),
            Err(e) => {
                let why = format!("store error: {e:#}");
                return ReverseBookmarkAnswer::refused(None, 9, &why);
            }
        };
        if req.user_id.as_deref().is_some_and(|u| u != user_id) {
            let why = "user id does not match the user token";
            return ReverseBookmarkAnswer::refused(Some(user_id), 3, why);
        }
        match self.interruption(&user_id, req).await {
            Ok(id) => ReverseBookmarkAnswer {
                user_id: Some(user_id),
                result_code: 0,
                description: "saved".into(),
                bookmark_id: Some(id),
            },
            Err((code, why)) => ReverseBookmarkAnswer::refused(Some(user_id), code, &why),
        }
    }

    /// Stores the interruption bookmark of a reverse-bookmark request: its
    /// id, or the result code and description refusing it.
    async fn interruption(
        &self,
        user_id: &str,
        req: &ReverseBookmark,
    ) -> std::result::Result<String, (u32, String)> {
        let asset = self.store.asset(&req.content_id).await.ok().flatten();
        let asset = asset.ok_or((4, "unknown content".to_string()))?;
        if let Some(a) = &asset.attributes {
            if a.duration_ms > 0 && req.position_ms > a.duration_ms {
                return Err((5, "position is past the end of the content".into()));
            }
        }
        let access_until = self.proved_access(&asset, req)?;
        let address = asset
            .attributes
            .as_ref()
            .and_then(|a| a.vod_url.clone())
            .unwrap_or_else(|| format!("{}/live/{}/index.m3u8", self.public_url, req.content_id));
        let id = new_id();
        let record = BookmarkRecord {
            id: id.clone(),
            user_id: user_id.to_string(),
            content_id: req.content_id.clone(),
            position_ms: req.position_ms as i64,
            name: None,
            description: Some("interrupted".into()),
            source: "interruption".into(),
            address,
            status: BookmarkStatus::Ready,
            created_ms: now_ms(),
            access_until_ms: access_until,
        };
        match self.store.insert_bookmark(&record).await {
            Ok(()) => Ok(id),
            Err(e) => Err((9, format!("store error: {e:#}"))),
        }
    }

    /// The live access an interruption bookmark keeps: for content still
    /// live, until when the viewer's playback token (or the stream's public
    /// sharing) opens it, refused without such proof (6) or past the live
    /// edge (5); none for a recording (its VOD is reached by its id).
    fn proved_access(
        &self,
        asset: &Asset,
        req: &ReverseBookmark,
    ) -> std::result::Result<Option<i64>, (u32, String)> {
        if asset.state == AssetState::Ready {
            return Ok(None);
        }
        let Some(until) = self.live_access(&req.content_id, &req.playback_token) else {
            tracing::info!(content = %req.content_id, "reverse bookmark without a valid playback token refused");
            return Err((6, "the playback token does not open this content".into()));
        };
        if let Some(edge_ms) = self.past_live_edge(&req.content_id, req.position_ms) {
            tracing::info!(content = %req.content_id, position_ms = req.position_ms, edge_ms, "reverse bookmark past the live edge");
            return Err((5, "position is past the live edge of the content".into()));
        }
        Ok(Some(until))
    }

    /// The user's bookmarks, newest first.
    pub async fn bookmarks(&self, user_id: &str) -> Result<Vec<Bookmark>> {
        let rows = self.store.bookmarks_of(user_id, LISTED).await?;
        Ok(rows.into_iter().map(|r| self.bookmark(r)).collect())
    }

    /// A stored bookmark as shown, with the jobs it waits for.
    pub(crate) fn bookmark(&self, r: BookmarkRecord) -> Bookmark {
        let (status, transcode) = self.shown_status(&r.status);
        Bookmark {
            fetch: self.bookmark_fetch(&r.status),
            id: r.id,
            content_id: r.content_id,
            position_ms: r.position_ms.max(0) as u64,
            name: r.name,
            description: r.description,
            source: r.source,
            address: r.address,
            status,
            transcode,
            created_unix_ms: r.created_ms,
        }
    }

    /// Resumes a bookmark of the user on one of their terminals. A recording
    /// (or a hand-off whose video another platform holds): the rendition
    /// that terminal plays (or the transcode making one), from the position,
    /// with seekable RTSP when offered. Content still live here: the live
    /// playlist from the position, with a playback token that ends when the
    /// access the bookmark's creator proved ends.
    pub async fn resume_bookmark(
        &self,
        user_id: &str,
        bookmark_id: &str,
        terminal_id: &str,
    ) -> Result<BookmarkPlay> {
        let terminal_type = self.terminal(user_id, terminal_id).await?;
        let row = self.store.bookmark(bookmark_id).await?;
        let row = row
            .filter(|b| b.user_id == user_id)
            .ok_or_else(|| Error::UnknownBookmark(bookmark_id.to_string()))?;
        let row = self.retry_fetch(row, &terminal_type).await?;
        if let BookmarkStatus::Fetching(_) | BookmarkStatus::FetchFailed(_) = &row.status {
            let from = PlayFrom::Fetching {
                status: row.status.name(),
                fetch: self.bookmark_fetch(&row.status),
            };
            let url = row.address.clone();
            return Ok(BookmarkPlay::new(row, url, from));
        }
        // Content of this platform whose recording is not ready: the live
        // stream. Otherwise (recorded here, or a hand-off from another
        // platform whose address the bookmark holds): the VOD.
        match self.store.asset(&row.content_id).await? {
            Some(a) if a.state != AssetState::Ready => self.play_live(row),
            a => {
                let attrs = a.and_then(|a| a.attributes);
                self.play_recorded(row, attrs, &terminal_type).await
            }
        }
    }

    /// Another platform's video whose fetch failed or was forgotten (a
    /// restart): fetch it again, and read the bookmark as it is then (its
    /// content the local copy, once there).
    async fn retry_fetch(
        &self,
        mut row: BookmarkRecord,
        terminal_type: &str,
    ) -> Result<BookmarkRecord> {
        if !matches!(
            row.status,
            BookmarkStatus::Fetching(_) | BookmarkStatus::FetchFailed(_)
        ) {
            return Ok(row);
        }
        let stuck = self
            .bookmark_fetch(&row.status)
            .is_none_or(|j| j.state == "failed");
        if !stuck {
            return Ok(row);
        }
        let local = self
            .refetch(&row.id, &row.address, terminal_type, &row.status)
            .await?;
        if let Some(local) = local {
            row.content_id = local;
        }
        if let Some(b) = self.store.bookmark(&row.id).await? {
            row.status = b.status;
        }
        Ok(row)
    }

    /// A bookmark of a recording: the rendition the terminal plays, or the
    /// source while an on-demand transcode makes one.
    async fn play_recorded(
        &self,
        row: BookmarkRecord,
        attrs: Option<VideoAttributes>,
        terminal_type: &str,
    ) -> Result<BookmarkPlay> {
        let position_ms = row.position_ms.max(0) as u64;
        let (mut url, mut rtsp, mut transcode) = (row.address.clone(), None, None);
        if let Some(attrs) = attrs {
            if attrs.duration_ms > 0 && position_ms > attrs.duration_ms {
                return Err(Error::BookmarkPastEnd {
                    position_ms,
                    end_ms: attrs.duration_ms,
                });
            }
            if let Some(r) = playable_rendition(&attrs, terminal_type) {
                url = r.url;
            } else if self.transcodes.is_some() {
                match self.schedule(&row.content_id, terminal_type).await? {
                    Scheduled::Ready(r) => url = r.url,
                    Scheduled::Job(j) => {
                        self.wait_for_new_job(&row.id, &row.status, &j).await?;
                        transcode = Some(j);
                    }
                }
            }
            rtsp = self.rtsp_start(&row.content_id, &attrs.codecs, position_ms);
        }
        let from = PlayFrom::Recorded {
            rtsp,
            status: if transcode.is_some() {
                "transcoding"
            } else {
                "ready"
            },
            transcode,
        };
        Ok(BookmarkPlay::new(row, url, from))
    }

    /// The recording's seekable RTSP stream from the position, when offered.
    fn rtsp_start(
        &self,
        content_id: &str,
        codecs: &[String],
        position_ms: u64,
    ) -> Option<RtspStart> {
        let mount = self.rtsp_vod.as_ref()?;
        match mount(content_id, codecs) {
            Ok(url) => Some(RtspStart {
                url,
                range: format!("npt={}-", seconds(position_ms)),
            }),
            Err(e) => {
                tracing::warn!(content = %content_id, error = %e, "no RTSP resume");
                None
            }
        }
    }

    /// A bookmark of content still live here: the live playlist from the
    /// position, within the access its creator proved.
    fn play_live(&self, row: BookmarkRecord) -> Result<BookmarkPlay> {
        let (content_id, position_ms) = (&row.content_id, row.position_ms.max(0) as u64);
        match self.live_lookup(content_id, position_ms) {
            Some(LiveLookup::Start(live_start)) => {
                let token = self.live_token_param(content_id, row.access_until_ms)?;
                let q = format!("{token}start_ms={position_ms}");
                let base = &self.public_url;
                let url = format!("{base}/live/{content_id}/index.m3u8?{q}");
                let watch_url = format!("{base}/watch/{content_id}?{q}");
                let from = PlayFrom::Live {
                    watch_url,
                    live_start,
                };
                Ok(BookmarkPlay::new(row, url, from))
            }
            Some(LiveLookup::PastEnd { edge_ms }) => Err(Error::BookmarkPastLiveEdge {
                position_ms,
                edge_ms,
            }),
            Some(LiveLookup::NoSegment) | None => {
                Err(Error::NeitherLiveNorRecorded(content_id.clone()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use sharecast_tokens::{PlaybackTokens, Signer};

    use super::*;
    use crate::testing::{ready_asset, service, terminal};

    /// Playback tokens that live streams need.
    fn tokens() -> PlaybackTokens {
        PlaybackTokens::with_signer(Signer::new(vec![9u8; 32]), true, 3600)
    }

    /// A live relay where every stream can start at any position.
    fn starts_anywhere(edge_ms: u64) -> crate::LiveStarts {
        Arc::new(move |_: &str, position_ms: u64| {
            Some(if position_ms > edge_ms {
                LiveLookup::PastEnd { edge_ms }
            } else {
                LiveLookup::Start(LiveStartInfo {
                    state: "live".into(),
                    from: "position".into(),
                    segment: 1,
                    segment_start_ms: 0,
                    start_ms: position_ms,
                    oldest_ms: 0,
                    edge_ms,
                })
            })
        })
    }

    fn reverse(user_token: &str, content_id: &str, playback_token: &str) -> ReverseBookmark {
        ReverseBookmark {
            user_id: None,
            content_id: content_id.into(),
            position_ms: 2_000,
            playback_token: playback_token.into(),
            user_token: user_token.into(),
        }
    }

    /// A bookmark of a live stream is stored only with a playback token
    /// that opens it, and hands out no more than that token did; without
    /// proof (or for someone else's user token) nothing is stored.
    #[tokio::test]
    async fn bookmarks_of_live_streams_keep_only_the_access_proved() {
        let (s, _dir) = service().await;
        let t = tokens();
        let s = s
            .with_playback_tokens(t.clone())
            .with_live_starts(starts_anywhere(60_000));
        s.store
            .asset_recording("live1", "dev", None, 1)
            .await
            .unwrap();
        let alice = s.create_user("alice").await.unwrap();
        let phone = terminal(&s, &alice.user_id, "mobile").await;

        let forged = s
            .reverse_bookmark(&reverse(&alice.user_token, "live1", "1-00"))
            .await;
        assert_eq!((forged.result_code, forged.bookmark_id), (6, None));
        let nobody = s.reverse_bookmark(&reverse("su_nobody", "live1", "")).await;
        assert_eq!(nobody.result_code, 2);
        assert!(s.bookmarks(&alice.user_id).await.unwrap().is_empty());

        let proof = t.issue_within("live1", Some(now_ms() + 600_000)).unwrap();
        let saved = s
            .reverse_bookmark(&reverse(&alice.user_token, "live1", &proof.token))
            .await;
        assert_eq!(saved.result_code, 0, "{}", saved.description);
        let id = saved.bookmark_id.unwrap();
        let play = s
            .resume_bookmark(&alice.user_id, &id, &phone)
            .await
            .unwrap();
        assert!(play.live);
        assert!(play.url.contains("start_ms=2000"), "{}", play.url);
        // The token handed out opens the stream, and ends no later than
        // the one the viewer proved.
        let token = play
            .url
            .split("token=")
            .nth(1)
            .unwrap()
            .split('&')
            .next()
            .unwrap();
        let until = t.check_until("live1", Some(token)).unwrap();
        assert!(until <= proof.expires_unix_ms);

        // Past the live edge (beyond the segment being cut) is past the end.
        let mut late = reverse(&alice.user_token, "live1", &proof.token);
        late.position_ms = 66_000;
        assert_eq!(s.reverse_bookmark(&late).await.result_code, 5);
    }

    /// A bookmark that proved no live access (a hand-off, or one whose
    /// proof has ended) gets none; a recording's bookmark needs none.
    #[tokio::test]
    async fn bookmarks_without_proof_give_no_live_access() {
        let (s, _dir) = service().await;
        let s = s
            .with_playback_tokens(tokens())
            .with_live_starts(starts_anywhere(60_000));
        s.store
            .asset_recording("live1", "dev", None, 1)
            .await
            .unwrap();
        ready_asset(&s.store, "rec1", 10_000).await;
        let alice = s.create_user("alice").await.unwrap();
        let tv = terminal(&s, &alice.user_id, "tv").await;
        for (id, access_until_ms) in [("handoff", None), ("ended", Some(now_ms() - 1_000))] {
            let record = BookmarkRecord {
                id: id.into(),
                user_id: alice.user_id.clone(),
                content_id: "live1".into(),
                position_ms: 1_000,
                name: None,
                description: None,
                source: "handoff".into(),
                address: "http://a/live/live1/index.m3u8".into(),
                status: BookmarkStatus::Ready,
                created_ms: 1,
                access_until_ms,
            };
            s.store.insert_bookmark(&record).await.unwrap();
            let e = s
                .resume_bookmark(&alice.user_id, id, &tv)
                .await
                .unwrap_err();
            assert_eq!(
                (e.code(), e.kind()),
                ("no_live_access", crate::ErrorKind::Forbidden)
            );
        }

        // A recording: no playback token needed, its VOD from the position.
        let saved = s
            .reverse_bookmark(&reverse(&alice.user_token, "rec1", ""))
            .await;
        assert_eq!(saved.result_code, 0, "{}", saved.description);
        let id = saved.bookmark_id.unwrap();
        let play = s.resume_bookmark(&alice.user_id, &id, &tv).await.unwrap();
        assert!(!play.live);
        assert_eq!(play.play_url, "http://a/vod/rec1/source.mp4#t=2.000");
        // Only its owner resumes it.
        let bob = s.create_user("bob").await.unwrap().user_id;
        let e = s.resume_bookmark(&bob, &id, &tv).await.unwrap_err();
        assert_eq!(e.code(), "unknown_terminal");
        let bobs = terminal(&s, &bob, "tv").await;
        let e = s.resume_bookmark(&bob, &id, &bobs).await.unwrap_err();
        assert_eq!(e.code(), "unknown_bookmark");
    }
}
