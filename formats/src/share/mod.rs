//! Share-message codecs: how phone video sharing carries a video's
//! attributes to recipients in share messages (SMS and WAP Push). See
//! `docs/share-messages.md`.
//!
//! The phone (or the communication proxy) wraps the video attributes into a
//! message and sends it to recipients by SMS; the recipient parses it. Every
//! codec here is a pure function over bytes, and every decoder returns a
//! [`DecodeError`] naming the layer and byte offset of what is wrong instead
//! of panicking.
//!
//! Layers, bottom up:
//!
//! - [`gsm7`], [`ucs2`]: SMS alphabets (TS 23.038) and septet packing.
//! - [`sms`]: SMS-SUBMIT / SMS-DELIVER PDUs, addresses, timestamps, the user
//!   data header with concatenation and port addressing (TS 23.040).
//! - [`mod@segment`]: splitting a payload into concatenated SMS.
//! - [`wsp`]: the connectionless WSP Push PDU (WAP-230), carried over WDP in
//!   SMS to port 2948.
//! - [`wbxml`]: WBXML 1.3 (WAP-192) with the [`si`] (WAP-167), [`sl`]
//!   (WAP-168) and Sharecast [`video_wbxml`] token tables.
//! - [`tlv`], [`xml`], [`text`]: the Sharecast payload formats, with
//!   [`document`] as the element model of the XML/WBXML video document.
//! - [`message`]: attributes to SMS-SUBMIT PDUs in a [`ShareFormat`], and a
//!   reassembled payload back to attributes.
//!
//! Reassembly of concatenated SMS (a state machine with timeouts) lives on
//! the recipient side, in `sharecast-client-sdk`'s `recipient` module.

pub mod document;
pub mod error;
pub mod gsm7;
pub mod message;
pub mod segment;
pub mod si;
pub mod sl;
pub mod sms;
pub mod text;
mod time;
pub mod tlv;
pub mod ucs2;
pub mod varint;
pub mod video_wbxml;
pub mod wbxml;
pub mod wsp;
pub mod xml;

pub use error::{DecodeError, EncodeError, ErrorKind, Layer};
pub use message::{
    assemble, decode_payload, decode_wap_push, encode_payload, encode_submit_pdus,
    encode_user_data, encode_wap_push, Assembled, DecodedShare, MessageOptions, Payload,
    ShareFormat,
};
pub use segment::{segment, Content, SegmentOptions, SubmitOptions};
pub use sms::{decode_pdu, parse_hex, Address, SmsDeliver, SmsPdu, SmsSubmit, SmscField};

/// The WDP/SMS application port of Sharecast TLV messages (16029 =
/// 0x3E9D), used as both destination and source port. It lies in the range
/// TS 23.040 §9.2.3.24.4 leaves for applications (16000..=16999), away from
/// the WAP ports 2948 (connectionless push) and 9200.
pub const SHARECAST_PORT: u16 = 0x3E9D;
