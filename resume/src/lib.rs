//! Resume everywhere: a viewer stops on one terminal or platform and goes
//! on from the same moment on another.
//!
//! [`ResumeService`] keeps users and their terminals, the **cross-terminal
//! history** (stops recorded with resume tokens, and the catalogue filtered
//! to what a terminal type can play), **interruption bookmarks** (the
//! reverse-bookmark interface, which keeps only the live access a viewer
//! proved), and the **hand-off between platforms** (suspend states created,
//! pulled by signed link or code, pushed, received, accepted). When a
//! terminal cannot play what it resumes, the service makes it playable: an
//! on-demand transcode of a local recording, or a fetch of another
//! platform's video first. Every request it makes to an address it was
//! given goes through [`outbound`], the one outbound policy, and so do
//! the [`webhooks`] it delivers.
//!
//! Main types: [`ResumeService`] and its [`ResumeConfig`]; the answers
//! [`Bookmark`], [`BookmarkPlay`], [`SuspendState`], [`ResumeAnswer`] and
//! [`Catalogue`]; the hooks the composition root wires in ([`LiveStarts`],
//! [`RtspVod`], [`Transcode`], [`Probe`]); and [`Error`], whose every
//! variant has a stable machine code and an [`ErrorKind`]. It knows no HTTP
//! routing (`sharecast-api` serves it) and no media internals (the hooks
//! do that); its data lives in the store (`sharecast-store`).

mod bookmarks;
mod config;
mod error;
mod fetches;
mod follow;
mod handoff;
mod history;
mod jobs;
mod live;
mod metrics;
pub mod outbound;
mod service;
mod transcodes;
mod users;
pub mod webhooks;

#[cfg(test)]
mod testing;

pub use bookmarks::{Bookmark, BookmarkPlay, ReverseBookmark, ReverseBookmarkAnswer};
pub use config::ResumeConfig;
pub use error::{Error, ErrorKind};
pub use fetches::{FetchJob, Probe};
pub use handoff::{Accepted, HandoffCreated, HandoffSource, Pushed, Received, SuspendState};
pub use history::{Catalogue, HistoryEntry, ResumeAnswer, Stop, Stopped};
pub use live::{LiveLookup, LiveStartInfo, LiveStarts, RtspVod};
pub use service::{Jobs, ResumeService};
pub use transcodes::{JobProgress, Scheduled, Transcode, TranscodeJob, TranscodeRequest};
pub use users::{NewTerminal, NewUser};
