//! What resuming into a still-running live stream needs: where the live
//! relay starts a position, and the live access a bookmark may hand out
//! (only what its creator proved).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::service::ResumeService;

/// Where a resume into a still-running live stream starts, as the live
/// relay works it out (positions are content time: ms of capture).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveStartInfo {
    /// `live`, or `ended` (the phone stopped; the recording is not ready yet).
    pub state: String,
    /// `position`: the stream still has the segment holding the position;
    /// `oldest_segment`: the position left the stream, playback starts at
    /// the oldest segment kept.
    pub from: String,
    /// Sequence number of the HLS segment playback starts in.
    pub segment: u64,
    /// Content time of that segment's first frame, ms.
    pub segment_start_ms: u64,
    /// Where playback starts, ms.
    pub start_ms: u64,
    /// Content time of the oldest segment kept, ms.
    pub oldest_ms: u64,
    /// Content time of the live edge, ms.
    pub edge_ms: u64,
}

/// What the live relay says about resuming a content at a position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiveLookup {
    /// It can start there (or at its oldest segment).
    Start(LiveStartInfo),
    /// The position is after the live edge.
    PastEnd {
        /// The live edge, ms.
        edge_ms: u64,
    },
    /// The stream exists but has no segment yet.
    NoSegment,
}

/// Asks the live relay where a resume of a content at a position starts;
/// `None` when the content has no live stream.
pub type LiveStarts = Arc<dyn Fn(&str, u64) -> Option<LiveLookup> + Send + Sync>;

/// Mounts a recorded content (id, RFC 6381 codecs of its source file) for
/// seekable RTSP and answers its `rtsp://…` URL, or why it cannot.
pub type RtspVod = Arc<dyn Fn(&str, &[String]) -> Result<String, String> + Send + Sync>;

/// How far past the end of the last closed live segment a reverse bookmark
/// may be (the segment being cut), ms.
const LIVE_EDGE_SLACK_MS: u64 = 5_000;

impl ResumeService {
    /// What the live relay says of resuming `content_id` at `position_ms`.
    pub(crate) fn live_lookup(&self, content_id: &str, position_ms: u64) -> Option<LiveLookup> {
        self.live.as_ref().and_then(|f| f(content_id, position_ms))
    }

    /// The live edge, when a position is past it by more than the segment
    /// being cut (the edge is the end of the last closed HLS segment, which
    /// trails the newest frame, where an RTSP viewer is).
    pub(crate) fn past_live_edge(&self, content_id: &str, position_ms: u64) -> Option<u64> {
        match self.live_lookup(content_id, position_ms)? {
            LiveLookup::PastEnd { edge_ms }
                if position_ms > edge_ms.saturating_add(LIVE_EDGE_SLACK_MS) =>
            {
                Some(edge_ms)
            }
            _ => None,
        }
    }

    /// Until when `token` opens the live stream of `content_id` (ms since
    /// the Unix epoch, `i64::MAX` for as long as it stays public or when
    /// streams need no token); `None` when it does not.
    pub(crate) fn live_access(&self, content_id: &str, token: &str) -> Option<i64> {
        let Some(t) = &self.tokens else {
            return Some(i64::MAX);
        };
        if !t.required() {
            return Some(i64::MAX);
        }
        if let Some(until) = t.public_until(content_id) {
            return Some(until.unwrap_or(i64::MAX));
        }
        t.check_until(content_id, Some(token).filter(|t| !t.is_empty()))
    }

    /// `token=…&` for a live URL of the content, or "" when none is needed
    /// (tokens off, or the stream is public). A bookmark hands out only the
    /// access its creator proved: the token ends when what they proved ends
    /// (`access_until`, ms since the Unix epoch); without such proof, or
    /// once it has ended, [`Error::NoLiveAccess`].
    pub(crate) fn live_token_param(
        &self,
        content_id: &str,
        access_until: Option<i64>,
    ) -> Result<String> {
        let Some(t) = &self.tokens else {
            return Ok(String::new());
        };
        if !t.required() || t.is_public(content_id) {
            return Ok(String::new());
        }
        let until = access_until.ok_or(Error::NoLiveAccess)?;
        let issued = t
            .issue_within(content_id, (until != i64::MAX).then_some(until))
            .ok_or(Error::NoLiveAccess)?;
        Ok(format!("token={}&", issued.token))
    }
}
