//! WBXML form of the Sharecast video document (see
//! [`document`]): public identifier `-//SHARECAST//DTD VIDEO 1.0//EN` carried
//! as a string in the string table, and Sharecast's own token tables (code
//! page 0), listed in `docs/share-messages.md`. Numbers travel as inline
//! strings, as in the XML form.

use crate::attributes::VideoAttributes;

use super::document;
use super::error::{DecodeError, EncodeError, Layer};
use super::wbxml::{self, Dialect, DialectId};

/// The public identifier (string-table form).
pub(crate) const PUBLIC_ID: &str = "-//SHARECAST//DTD VIDEO 1.0//EN";

/// Sharecast video document token tables.
pub const DIALECT: Dialect = Dialect {
    name: "Sharecast video 1.0",
    id: DialectId::Literal(PUBLIC_ID),
    tags: &[
        (0x05, "video"),
        (0x06, "title"),
        (0x07, "sender"),
        (0x08, "link"),
        (0x09, "media"),
        (0x0A, "rendition"),
    ],
    attr_starts: &[
        (0x05, "version", ""),
        (0x06, "version", "1"),
        (0x07, "id", ""),
        (0x08, "expires", ""),
        (0x09, "start-offset-ms", ""),
        (0x0A, "rel", ""),
        (0x0B, "rel", "share"),
        (0x0C, "rel", "vod"),
        (0x0D, "rel", "live"),
        (0x0E, "rel", "thumbnail"),
        (0x0F, "href", ""),
        (0x10, "href", "http://"),
        (0x11, "href", "https://"),
        (0x12, "href", "rtsp://"),
        (0x13, "href", "http://www."),
        (0x14, "href", "https://www."),
        (0x15, "container", ""),
        (0x16, "container", "mp4"),
        (0x17, "codecs", ""),
        (0x18, "size", ""),
        (0x19, "width", ""),
        (0x1A, "height", ""),
        (0x1B, "frame-rate", ""),
        (0x1C, "bitrate", ""),
        (0x1D, "duration-ms", ""),
        (0x1E, "name", ""),
        (0x1F, "mime", ""),
        (0x20, "mime", "video/mp4"),
    ],
    attr_values: &[
        (0x85, ".com/"),
        (0x86, ".net/"),
        (0x87, ".org/"),
        (0x88, "/vod/"),
        (0x89, "/live/"),
        (0x8A, "/s/"),
        (0x8B, ".mp4"),
        (0x8C, ".m3u8"),
        (0x8D, "avc1."),
        (0x8E, "hvc1."),
        (0x8F, "mp4a.40.2"),
        (0x90, "source"),
    ],
    date_attrs: &[],
};

/// Encode attributes as the WBXML video document.
pub fn encode(
    attrs: &VideoAttributes,
    include_renditions: bool,
    version: u8,
) -> Result<Vec<u8>, EncodeError> {
    wbxml::encode(
        &document::to_element(attrs, include_renditions),
        &DIALECT,
        version,
    )
}

/// Decode the WBXML video document.
pub fn decode(bytes: &[u8]) -> Result<VideoAttributes, DecodeError> {
    let doc = wbxml::decode(bytes, &DIALECT)?;
    document::from_element(&doc.root, Layer::Video)
}
