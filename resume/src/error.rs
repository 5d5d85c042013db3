//! The one error of the resume service: each variant has a stable machine
//! code (what API clients match on) and a kind (what went wrong, which the
//! HTTP side turns into a status).

use sharecast_formats::compat::TERMINAL_TYPES;

use crate::outbound::OutboundError;

/// What kind of failure an [`Error`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is wrong (400).
    BadRequest,
    /// The credential it carries is unknown (401).
    Unauthorized,
    /// The caller may not do this (403).
    Forbidden,
    /// What it names does not exist, or is not the caller's (404).
    NotFound,
    /// Not possible in the present state (409).
    Conflict,
    /// It existed, and has expired (410).
    Gone,
    /// Understood, but there is nothing to work on (422).
    Unprocessable,
    /// Too many attempts; later (429).
    TooMany,
    /// A failure of this server (500).
    Internal,
    /// This server is built without what it needs (501).
    NotImplemented,
    /// Another platform failed or answered badly (502).
    BadGateway,
    /// Busy; later (503).
    Unavailable,
}

/// Why the resume service refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A user name that is empty or too long.
    #[error("a user name is 1 to 100 characters")]
    BadName,
    /// A terminal type the product does not know.
    #[error("terminal type must be one of {TERMINAL_TYPES:?}")]
    BadTerminalType,
    /// The user has no such terminal.
    #[error("no terminal {0} for this user")]
    UnknownTerminal(String),
    /// No such content.
    #[error("no content {0}")]
    UnknownContent(String),
    /// The content has no attributes yet (still recording).
    #[error("content {0} is not ready")]
    NotReady(String),
    /// The recording to transcode is not finished.
    #[error(
        "the recording of {content_id} is not ready (state {state}); it can be transcoded once it is"
    )]
    RecordingNotReady {
        /// The content.
        content_id: String,
        /// Its asset state.
        state: &'static str,
    },
    /// A bookmark's content is neither live nor recorded.
    #[error("content {0} is not live and its recording is not ready")]
    NeitherLiveNorRecorded(String),
    /// A stop or hand-off past the end of the content.
    #[error("position {position_ms} ms is past the end ({end_ms} ms)")]
    PositionPastEnd {
        /// The position asked.
        position_ms: u64,
        /// The content's duration.
        end_ms: u64,
    },
    /// A bookmark past the end of its recording.
    #[error("bookmark position {position_ms} ms is past the end ({end_ms} ms)")]
    BookmarkPastEnd {
        /// The bookmark's position.
        position_ms: u64,
        /// The recording's duration.
        end_ms: u64,
    },
    /// A bookmark past the live edge of its stream.
    #[error("bookmark position {position_ms} ms is past the live edge ({edge_ms} ms)")]
    BookmarkPastLiveEdge {
        /// The bookmark's position.
        position_ms: u64,
        /// The stream's live edge.
        edge_ms: u64,
    },
    /// An unknown (or purged) resume token.
    #[error("unknown or purged resume token")]
    UnknownResumeToken,
    /// A resume token of another user.
    #[error("this resume token belongs to another user")]
    ResumeTokenOfAnotherUser,
    /// A resume token past its lifetime.
    #[error("this resume token has expired")]
    ResumeTokenExpired,
    /// A bookmark that proved no live access, or whose access has ended.
    #[error(
        "this bookmark gives no access to the live stream (it was not made by a viewer of it, or that viewer's access has ended)"
    )]
    NoLiveAccess,
    /// The user has no such bookmark.
    #[error("no bookmark {0} for this user")]
    UnknownBookmark(String),
    /// No such suspend state.
    #[error("no such suspend state")]
    UnknownState,
    /// A suspend state of another user.
    #[error("no such suspend state of this user")]
    NotTheUsersState,
    /// A suspend state past its lifetime.
    #[error("this suspend state has expired")]
    StateExpired,
    /// A signed link that this server did not sign, or that was changed.
    #[error("link signature does not match")]
    BadSignature,
    /// A signed link past its expiry.
    #[error("this link has expired")]
    LinkExpired,
    /// Not a hand-off code.
    #[error("a hand-off code is 8 letters and digits")]
    BadCode,
    /// Too many wrong codes from one client address.
    #[error("too many wrong hand-off codes from this address; try again in a minute")]
    TooManyCodesFromAddress,
    /// Too many wrong codes typed by one user.
    #[error("too many wrong hand-off codes; try again in a minute")]
    TooManyCodes,
    /// A platform address or hand-off link that cannot be used (why).
    #[error("{0}")]
    BadUrl(String),
    /// A video address that cannot be fetched (why).
    #[error("{0}")]
    BadAddress(String),
    /// A platform the outbound policy does not allow (why).
    #[error("{0}")]
    PlatformNotAllowed(String),
    /// Another platform could not be reached (the cause is logged only).
    #[error("the platform could not be reached")]
    PlatformUnreachable,
    /// Another platform answered with this error status.
    #[error("the platform answered HTTP {0}")]
    PlatformRefused(u16),
    /// Another platform's answer was not what a platform answers.
    #[error("the platform's answer: {0}")]
    BadState(String),
    /// A hand-off push without the user's token on the target platform.
    #[error("give x-target-user-token (your user token on the target platform)")]
    MissingTargetUser,
    /// A hand-off push without the user's terminal on the target platform.
    #[error("give x-target-terminal (the terminal id on the target platform)")]
    MissingTargetTerminal,
    /// A user token this platform does not know.
    #[error("unknown user token")]
    UnknownUserToken,
    /// No transcoder is wired in.
    #[error("this server has no transcoder for on-demand renditions")]
    TranscodeUnavailable,
    /// Nothing that a transcode could make playable.
    #[error(
        "content {content_id} has no video a {terminal_type} terminal can play and nothing to transcode (codecs {codecs:?})"
    )]
    CannotTranscode {
        /// The content.
        content_id: String,
        /// The terminal type asked for.
        terminal_type: String,
        /// The content's codecs.
        codecs: Vec<String>,
    },
    /// Too many on-demand transcodes queued or running.
    #[error("{0} transcodes are queued or running (transcode_max_pending); try again later")]
    TranscodeBusy(usize),
    /// No such transcode job (jobs are kept in memory).
    #[error("no transcode job {0} (jobs are forgotten at a restart)")]
    UnknownTranscode(String),
    /// No such fetch (fetches are kept in memory).
    #[error("no fetch {0} (fetches are forgotten at a restart)")]
    UnknownFetch(String),
    /// A failure of this server (the store, mostly), with its context.
    #[error("{0:#}")]
    Internal(#[from] anyhow::Error),
}

impl Error {
    /// The stable machine code API clients see.
    pub fn code(&self) -> &'static str {
        use Error::*;
        match self {
            BadName => "bad_name",
            BadTerminalType => "bad_terminal_type",
            UnknownTerminal(_) => "unknown_terminal",
            UnknownContent(_) => "unknown_content",
            NotReady(_) | RecordingNotReady { .. } | NeitherLiveNorRecorded(_) => "not_ready",
            PositionPastEnd { .. } | BookmarkPastEnd { .. } | BookmarkPastLiveEdge { .. } => {
                "position_past_end"
            }
            UnknownResumeToken | ResumeTokenOfAnotherUser => "bad_resume_token",
            ResumeTokenExpired | StateExpired | LinkExpired => "expired",
            NoLiveAccess => "no_live_access",
            UnknownBookmark(_) => "unknown_bookmark",
            UnknownState | NotTheUsersState => "unknown_state",
            BadSignature => "bad_signature",
            BadCode => "bad_code",
            TooManyCodesFromAddress | TooManyCodes => "too_many_attempts",
            BadUrl(_) => "bad_url",
            BadAddress(_) => "bad_address",
            PlatformNotAllowed(_) => "platform_not_allowed",
            PlatformUnreachable => "platform_unreachable",
            PlatformRefused(_) => "platform_refused",
            BadState(_) => "bad_state",
            MissingTargetUser => "missing_target_user",
            MissingTargetTerminal => "missing_target_terminal",
            UnknownUserToken => "unauthorized",
            TranscodeUnavailable => "transcode_unavailable",
            CannotTranscode { .. } => "cannot_transcode",
            TranscodeBusy(_) => "transcode_busy",
            UnknownTranscode(_) => "unknown_transcode",
            UnknownFetch(_) => "unknown_fetch",
            Internal(_) => "internal",
        }
    }

    /// What kind of failure it is.
    pub fn kind(&self) -> ErrorKind {
        use Error::*;
        match self {
            BadName
            | BadTerminalType
            | PositionPastEnd { .. }
            | BookmarkPastEnd { .. }
            | BookmarkPastLiveEdge { .. }
            | BadCode
            | BadUrl(_)
            | BadAddress(_)
            | MissingTargetUser
            | MissingTargetTerminal => ErrorKind::BadRequest,
            UnknownUserToken => ErrorKind::Unauthorized,
            UnknownResumeToken
            | ResumeTokenOfAnotherUser
            | NoLiveAccess
            | BadSignature
            | PlatformNotAllowed(_) => ErrorKind::Forbidden,
            UnknownTerminal(_) | UnknownContent(_) | UnknownBookmark(_) | UnknownState
            | NotTheUsersState | UnknownTranscode(_) | UnknownFetch(_) => ErrorKind::NotFound,
            NotReady(_) | RecordingNotReady { .. } | NeitherLiveNorRecorded(_) => {
                ErrorKind::Conflict
            }
            ResumeTokenExpired | StateExpired | LinkExpired => ErrorKind::Gone,
            CannotTranscode { .. } => ErrorKind::Unprocessable,
            TooManyCodesFromAddress | TooManyCodes => ErrorKind::TooMany,
            Internal(_) => ErrorKind::Internal,
            TranscodeUnavailable => ErrorKind::NotImplemented,
            PlatformUnreachable | PlatformRefused(_) | BadState(_) => ErrorKind::BadGateway,
            TranscodeBusy(_) => ErrorKind::Unavailable,
        }
    }
}

impl From<OutboundError> for Error {
    fn from(e: OutboundError) -> Self {
        match e {
            OutboundError::BadUrl(m) => Error::BadUrl(format!("the platform address: {m}")),
            OutboundError::NotAllowed(m) => {
                Error::PlatformNotAllowed(format!("{m} (outbound.allowed_hosts)"))
            }
            OutboundError::Unreachable => Error::PlatformUnreachable,
            OutboundError::Refused(s) => Error::PlatformRefused(s),
            OutboundError::BadAnswer(m) => Error::BadState(m),
        }
    }
}

impl From<sharecast_tokens::LinkError> for Error {
    fn from(e: sharecast_tokens::LinkError) -> Self {
        match e {
            sharecast_tokens::LinkError::BadSignature => Error::BadSignature,
            sharecast_tokens::LinkError::Expired => Error::LinkExpired,
        }
    }
}

/// The service's results.
pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_kinds_are_what_clients_see() {
        let cases = [
            (
                Error::UnknownTerminal("t".into()),
                "unknown_terminal",
                ErrorKind::NotFound,
            ),
            (
                Error::PositionPastEnd {
                    position_ms: 5,
                    end_ms: 4,
                },
                "position_past_end",
                ErrorKind::BadRequest,
            ),
            (Error::ResumeTokenExpired, "expired", ErrorKind::Gone),
            (Error::TooManyCodes, "too_many_attempts", ErrorKind::TooMany),
            (
                Error::TranscodeBusy(3),
                "transcode_busy",
                ErrorKind::Unavailable,
            ),
            (
                Error::from(OutboundError::NotAllowed("host x".into())),
                "platform_not_allowed",
                ErrorKind::Forbidden,
            ),
            (
                Error::from(OutboundError::Unreachable),
                "platform_unreachable",
                ErrorKind::BadGateway,
            ),
            (
                Error::from(anyhow::anyhow!("disk full").context("storing")),
                "internal",
                ErrorKind::Internal,
            ),
        ];
        for (e, code, kind) in cases {
            assert_eq!((e.code(), e.kind()), (code, kind), "{e}");
        }
        let e = Error::from(anyhow::anyhow!("disk full").context("storing"));
        assert_eq!(e.to_string(), "storing: disk full");
        assert_eq!(
            Error::from(OutboundError::NotAllowed("host x".into())).to_string(),
            "host x (outbound.allowed_hosts)"
        );
    }
}
