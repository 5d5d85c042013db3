//! The one error type of the share services: what a request cannot do,
//! each with a stable machine code and a kind that says which class of
//! refusal it is (the HTTP side turns the kind into a status).

/// Which class of refusal an [`Error`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is malformed or out of bounds.
    BadRequest,
    /// The caller may not do this to this thing.
    Forbidden,
    /// No such thing (or not one of the caller's).
    NotFound,
    /// The thing is in a state that refuses the request.
    Conflict,
    /// The thing existed and is gone (revoked, expired, failed).
    Gone,
    /// A time past the end of the video.
    OutOfRange,
    /// Not now: try again in a moment.
    Unavailable,
    /// A fault of the server (store, files, image work).
    Internal,
}

/// Why a share-side request failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An id that cannot be one of ours; the message names which id.
    #[error("{0}")]
    BadId(&'static str),
    /// Not a phone number; the message says what was given.
    #[error("{0}")]
    BadRecipient(String),
    /// A share-message format that does not exist (or none given).
    #[error("{0}")]
    UnknownFormat(String),
    /// More recipients than `share.max_recipients`.
    #[error("{given} recipients; at most {max} (share.max_recipients)")]
    TooManyRecipients {
        /// Recipients in the request.
        given: usize,
        /// The limit.
        max: usize,
    },
    /// A share lifetime outside 1 to `share.max_ttl_s`.
    #[error("ttl_s must be 1 to {max} (share.max_ttl_s)")]
    BadTtl {
        /// The longest lifetime, seconds.
        max: u64,
    },
    /// No asset with this id.
    #[error("no asset {0}")]
    UnknownAsset(String),
    /// The asset belongs to another device.
    #[error("asset {0} belongs to another device")]
    NotOwner(String),
    /// The asset failed (or is otherwise not shareable).
    #[error("asset {id} is {state}: nothing to share")]
    AssetFailed {
        /// Asset id.
        id: String,
        /// Its state.
        state: &'static str,
    },
    /// The asset's live stream has ended.
    #[error("asset {id} is {state}: its live stream has ended")]
    NotLive {
        /// Asset id.
        id: String,
        /// Its state.
        state: &'static str,
    },
    /// No such share (of this device); the message says which.
    #[error("{0}")]
    UnknownShare(String),
    /// The share was revoked.
    #[error("The person who shared this video has withdrawn the link.")]
    ShareRevoked,
    /// The share expired.
    #[error("This link expired {minutes_ago} minutes ago. Ask the sender for a new one.")]
    ShareExpired {
        /// How long ago, whole minutes.
        minutes_ago: i64,
    },
    /// The recording behind a share failed or was deleted.
    #[error("The recording behind this link failed or was deleted.")]
    AssetUnavailable,
    /// A start time that is not a number of seconds.
    #[error("t must be a number of seconds, for example ?t=42")]
    BadTime,
    /// The recipient replied STOP: only it can opt back in.
    #[error("{0} replied STOP; only the recipient can subscribe again (reply START)")]
    OptedOut(String),
    /// The number is not subscribed to this device.
    #[error("{0} is not subscribed to this device")]
    UnknownSubscription(String),
    /// A still's comment is too long.
    #[error("a comment has at most {max} characters")]
    CommentTooLong {
        /// The limit, characters.
        max: usize,
    },
    /// A still's file name is not acceptable.
    #[error("a file name is 1 to 100 letters, digits, spaces, '-', '_' or '.'")]
    BadName,
    /// A still's drawing is not a PNG in base64, or too many bytes.
    #[error("{0}")]
    BadDrawing(String),
    /// A still's drawing announces a picture too large to decode.
    #[error("the drawing is {width}x{height}; at most {max} pixels a side")]
    DrawingTooLarge {
        /// Announced width.
        width: u32,
        /// Announced height.
        height: u32,
        /// Largest side.
        max: u32,
    },
    /// A time after the end of the video.
    #[error("time {t_ms} ms is after the end of the video ({duration_ms} ms)")]
    PastEnd {
        /// Requested time, ms.
        t_ms: u64,
        /// Duration of the video, ms.
        duration_ms: u64,
    },
    /// The asset has no video (or no file yet).
    #[error("{0}")]
    NoVideo(String),
    /// A live asset has nothing decodable yet.
    #[error("{0}")]
    NotReady(String),
    /// Too many stills are being made.
    #[error("too many stills are being made; try again in a moment")]
    Busy,
    /// No such still.
    #[error("no such still")]
    UnknownStill,
    /// No such file of a still.
    #[error("image.jpg or original.jpg")]
    UnknownFile,
    /// Not a still-share link of this server.
    #[error("not a still-share link of this server")]
    UnknownUrl,
    /// A delivery report (the gateway's callback) that is not one.
    #[error("{0}")]
    BadReport(String),
    /// A delivery report for a delivery that does not exist.
    #[error("no delivery {0}")]
    UnknownDelivery(i64),
    /// A fault of the server, with its context.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl Error {
    /// The stable machine-readable code (`bad_recipient`, `unknown_share`…).
    pub fn code(&self) -> &'static str {
        use Error::*;
        match self {
            BadId(_) => "bad_id",
            BadRecipient(_) => "bad_recipient",
            UnknownFormat(_) => "unknown_format",
            TooManyRecipients { .. } => "too_many_recipients",
            BadTtl { .. } => "bad_ttl",
            UnknownAsset(_) => "unknown_asset",
            NotOwner(_) => "not_owner",
            AssetFailed { .. } => "asset_failed",
            NotLive { .. } => "not_live",
            UnknownShare(_) => "unknown_share",
            ShareRevoked => "share_revoked",
            ShareExpired { .. } => "share_expired",
            AssetUnavailable => "asset_unavailable",
            BadTime => "bad_time",
            OptedOut(_) => "opted_out",
            UnknownSubscription(_) => "unknown_subscription",
            CommentTooLong { .. } => "comment_too_long",
            BadName => "bad_name",
            BadDrawing(_) => "bad_drawing",
            DrawingTooLarge { .. } => "drawing_too_large",
            PastEnd { .. } => "past_end",
            NoVideo(_) => "no_video",
            NotReady(_) => "not_ready",
            Busy => "busy",
            UnknownStill => "unknown_still",
            UnknownFile => "unknown_file",
            UnknownUrl => "unknown_url",
            BadReport(_) => "bad_report",
            UnknownDelivery(_) => "unknown_delivery",
            Internal(_) => "internal",
        }
    }

    /// Which class of refusal it is.
    pub fn kind(&self) -> ErrorKind {
        use Error::*;
        match self {
            BadId(_)
            | BadRecipient(_)
            | UnknownFormat(_)
            | TooManyRecipients { .. }
            | BadTtl { .. }
            | BadTime
            | CommentTooLong { .. }
            | BadName
            | BadDrawing(_)
            | DrawingTooLarge { .. }
            | BadReport(_) => ErrorKind::BadRequest,
            NotOwner(_) => ErrorKind::Forbidden,
            UnknownAsset(_)
            | UnknownShare(_)
            | UnknownSubscription(_)
            | NoVideo(_)
            | UnknownStill
            | UnknownFile
            | UnknownUrl
            | UnknownDelivery(_) => ErrorKind::NotFound,
            AssetFailed { .. } | NotLive { .. } | OptedOut(_) => ErrorKind::Conflict,
            ShareRevoked | ShareExpired { .. } | AssetUnavailable => ErrorKind::Gone,
            PastEnd { .. } => ErrorKind::OutOfRange,
            NotReady(_) | Busy => ErrorKind::Unavailable,
            Internal(_) => ErrorKind::Internal,
        }
    }
}

/// A share service's answer.
pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_kinds_are_stable() {
        let cases = [
            (
                Error::BadRecipient("x".into()),
                "bad_recipient",
                ErrorKind::BadRequest,
            ),
            (
                Error::NotOwner("ab".into()),
                "not_owner",
                ErrorKind::Forbidden,
            ),
            (
                Error::UnknownShare("x".into()),
                "unknown_share",
                ErrorKind::NotFound,
            ),
            (
                Error::OptedOut("+1555".into()),
                "opted_out",
                ErrorKind::Conflict,
            ),
            (Error::ShareRevoked, "share_revoked", ErrorKind::Gone),
            (Error::Busy, "busy", ErrorKind::Unavailable),
            (
                Error::PastEnd {
                    t_ms: 2,
                    duration_ms: 1,
                },
                "past_end",
                ErrorKind::OutOfRange,
            ),
            (
                Error::DrawingTooLarge {
                    width: 9,
                    height: 9,
                    max: 4,
                },
                "drawing_too_large",
                ErrorKind::BadRequest,
            ),
            (
                anyhow::anyhow!("disk").into(),
                "internal",
                ErrorKind::Internal,
            ),
        ];
        for (e, code, kind) in cases {
            assert_eq!((e.code(), e.kind()), (code, kind), "{e}");
        }
        assert_eq!(
            Error::ShareExpired { minutes_ago: 3 }.to_string(),
            "This link expired 3 minutes ago. Ask the sender for a new one."
        );
    }
}
