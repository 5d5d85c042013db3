//! The phone simulator behind `sharecast push`: stands in for a phone's camera
//! and encoders by reading encoded frames out of a media file.

pub mod demux;
pub mod testsrc;
