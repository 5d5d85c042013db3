//! I/O-free wire formats that both the phone (client SDK) and the server speak.
//!
//! Everything here is bytes in, typed values out (and back): no sockets, no
//! files, no clocks. That lets the phone side and the server side share one
//! implementation, and lets property tests and fuzzers reach every decoder.
//!
//! - [`media`]: tracks and encoded frames, with the one timestamp unit
//!   (microseconds) used end to end.
//! - [`attributes`]: the video attribute data returned to the phone and carried
//!   in share messages.
//! - [`ingest`]: the ingest protocol v1 (control messages and frame records).
//! - [`share`]: share-message codecs (TLV, XML, delimited text, SMS PDUs,
//!   WSP/WDP WAP Push, WBXML).

pub mod attributes;
pub mod compat;
pub mod ingest;
pub mod media;
pub mod share;
