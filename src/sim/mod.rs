//! The phone simulator behind `sharecast push`: stands in for a phone's camera
//! and encoders by reading encoded frames out of a media file.

pub(crate) mod demux;
pub(crate) mod testsrc;
