//! The recipient side of share messages (the phone that receives a share):
//! take SMS PDUs as they arrive, reassemble concatenated messages, recognise
//! the share format, return the video attributes, and choose how to play the video.
//!
//! Everything here is a sans-I/O state machine: PDUs in, events out, and the
//! current time passed in by the caller (milliseconds on any monotonic
//! clock) so that timeouts are testable. It is built in three parts:
//! [`reassembly`] (PDUs to a decoded share), [`links`] (which links a
//! recipient may be offered) and [`playback`] (how to play).
//!
//! ```
//! use sharecast_client_sdk::recipient::{Reassembler, PushOutcome};
//! # let pdus: Vec<Vec<u8>> = Vec::new();
//! let mut r = Reassembler::default();
//! for pdu in &pdus {
//!     match r.push_pdu(pdu, 0) {
//!         Ok(PushOutcome::Complete(share)) => println!("{:?}", share.attributes),
//!         Ok(_) => {}
//!         Err(e) => eprintln!("{e}"),
//!     }
//! }
//! for lost in r.expire(10 * 60 * 1000) {
//!     eprintln!("gave up on {lost}");
//! }
//! ```
//!
//! # Reassembly rules
//!
//! - A part is identified by its peer (the originator of an SMS-DELIVER, the
//!   destination of an SMS-SUBMIT), its concatenation reference (8 or 16
//!   bits), its part count and its destination port: parts of different
//!   messages never mix, even when two senders pick the same reference.
//! - Parts may arrive in any order. A part already held is reported as
//!   [`PushOutcome::Duplicate`] (and whether it is identical) and the first
//!   copy is kept. A message is remembered for
//!   [`ReassemblyConfig::timeout_ms`] after it completes, so a part that a
//!   service centre sends again after the whole message arrived (a lost
//!   acknowledgement) is a duplicate too, not the start of a new message.
//!   A part that differs from the completed one starts a new message:
//!   references wrap. Likewise a single-SMS message received again within
//!   that time, byte for byte with the same peer, ports and service-centre
//!   timestamp, is a duplicate (`sequence` 1, `reference` 0).
//! - A message still missing parts [`ReassemblyConfig::timeout_ms`] after its
//!   first part arrived is dropped and reported by [`Reassembler::expire`]
//!   with the parts that were missing. When more than
//!   [`ReassemblyConfig::max_pending`] messages are incomplete, the oldest is
//!   dropped the same way.
//! - A complete message is decoded by port and content
//!   ([`sharecast_formats::share::decode_payload`]): TLV on port 16029, WAP
//!   Push (SI, SL, video WBXML) on port 2948, XML or delimited text in plain
//!   text SMS.
//!
//! # Link rules ([`links::check_links`])
//!
//! A recipient is only ever offered web links: the share page, the VOD
//! files, renditions and the poster must be `http` or `https` URLs with a
//! host; live URLs may also be `rtsp` or `rtsps`. A message carrying any
//! other link (`javascript:`, `file:`, `data:`, `tel:`, a URL without a
//! host or with spaces or control characters) is refused whole with
//! [`RecipientError::UnsafeLink`], and a message without any link (a WAP
//! message of only its header, an SI without `href`) with
//! [`RecipientError::NoLink`]: there is nothing a recipient could open.
//!
//! # Playback rules ([`choose_playback`])
//!
//! 1. Candidates are the primary output (`vod_url` with the top-level
//!    attributes) and every rendition with a URL. A candidate fits when
//!    every codec it lists matches one of the player's RFC 6381 prefixes
//!    (`avc1` matches `avc1.64001f`; `avc1.64` matches only High profile),
//!    its container is one the player lists (any, when the list is empty),
//!    and its resolution fits the screen in either orientation.
//! 2. Live: when the message has a live URL whose scheme the player can play
//!    and the primary codecs fit, the live stream is chosen if there is no
//!    VOD yet or the player prefers live.
//! 3. Otherwise the best fitting VOD candidate is chosen (most pixels, then
//!    highest bitrate; on cellular, the best one within
//!    `max_cellular_bitrate` if any). It is played progressively when the
//!    player can stream and the network allows it (Wi-Fi, Ethernet, unknown,
//!    or cellular within the bitrate limit); otherwise it is downloaded
//!    first (a download needs `free_storage_bytes` for the file when known).
//! 4. When nothing fits, [`PlaybackChoice::NeedsCompatibleRendition`] says
//!    why each candidate was rejected.

pub mod links;
pub mod playback;
pub mod reassembly;
#[cfg(test)]
mod testing;

pub use links::{check_links, LinkError};
pub use playback::{
    choose_playback, codec_supported, recommend, Network, PlayMode, PlaybackChoice, PlayerCaps,
    Recommendation,
};
pub use reassembly::{
    decode_wap_body, DropReason, Expired, PushOutcome, Reassembler, ReassemblyConfig,
    ReceivedShare, RecipientError,
};
