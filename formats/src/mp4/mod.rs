//! MP4 (ISO/IEC 14496-12) box writers and readers, I/O-free: bytes in, bytes
//! out. The live relay and the transcoder both use them; the files
//! themselves are read and written by the transcoder.
//!
//! - [`fmp4`]: init and media segments of fragmented MP4 ([`Fmp4Track`],
//!   [`TrackRun`]), for live HLS.
//! - [`matrix`]: the display rotation in a video track's matrix.
//! - [`compact`]: a finished recording without the index room reserved at
//!   its front.
//!
//! Box primitives (header, full box, big-endian integers) are written once,
//! in the private `boxes` module, which every writer and reader here uses;
//! [`BoxHeader`] reads a header (for readers of files), and [`Mp4Error`] says
//! where bytes went wrong.

mod boxes;
pub mod compact;
pub mod fmp4;
pub mod matrix;

pub use boxes::{BoxHeader, Mp4Error};
pub use fmp4::{Fmp4Track, Sample, TrackRun};
