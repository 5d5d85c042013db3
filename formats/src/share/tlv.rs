//! The Sharecast TLV share message, version 1: compact binary video
//! attributes for an 8-bit SMS to [`crate::share::SHARECAST_PORT`].
//!
//! ```text
//! message = version-octet *item
//! version-octet = 0xC1            ; high nibble 0xC is the magic, low nibble the major version
//! item    = tag length value
//! tag     = 1 octet
//! length  = 0x00-0x7F             ; the length itself
//!         / 0x81 1 octet          ; 128..=255
//!         / 0x82 2 octets (BE)    ; 256..=65535
//! ```
//!
//! Lengths must use the shortest form. Unknown tags are skipped, so a
//! version-1 reader reads messages from later minor revisions; a new major
//! version (an incompatible change) changes the low nibble of the first
//! octet. Numbers are unsigned LEB128 varints that fill their value
//! exactly. The tag table, value encodings and worked examples are in
//! `docs/share-messages.md`.
//!
//! Offsets in decode errors count bytes from the version octet.

use crate::attributes::{Rendition, VideoAttributes};

use super::error::{DecodeError, EncodeError, ErrorKind, Layer, Reader};
use super::varint::{read_leb128, write_leb128};

/// Version octet of version 1.
pub(crate) const VERSION_1: u8 = 0xC1;
/// Magic in the high nibble of the version octet.
pub(crate) const MAGIC: u8 = 0xC;

/// Tag numbers.
pub(crate) mod tag {
    /// Asset id, UTF-8.
    pub(crate) const ID: u8 = 0x01;
    /// Asset id that is a lowercase hyphenated UUID, as 16 raw octets.
    pub(crate) const ID_UUID: u8 = 0x02;
    /// Title, UTF-8.
    pub(crate) const TITLE: u8 = 0x03;
    /// Sender, UTF-8.
    pub(crate) const SENDER: u8 = 0x04;
    /// Share page URL (URL encoding).
    pub(crate) const SHARE_URL: u8 = 0x05;
    /// VOD URL (URL encoding).
    pub(crate) const VOD_URL: u8 = 0x06;
    /// A live URL (URL encoding); repeatable.
    pub(crate) const LIVE_URL: u8 = 0x07;
    /// Thumbnail URL (URL encoding).
    pub(crate) const THUMBNAIL_URL: u8 = 0x08;
    /// Container, UTF-8.
    pub(crate) const CONTAINER: u8 = 0x09;
    /// Codecs: comma-separated RFC 6381 strings, ASCII with the
    /// `CODEC_FRAGMENTS` codes.
    pub(crate) const CODECS: u8 = 0x0A;
    /// Size in bytes, varint.
    pub(crate) const SIZE: u8 = 0x0B;
    /// Width, varint.
    pub(crate) const WIDTH: u8 = 0x0C;
    /// Height, varint.
    pub(crate) const HEIGHT: u8 = 0x0D;
    /// Frame rate: one varint (milli-fps) or two (numerator, denominator).
    pub(crate) const FRAME_RATE: u8 = 0x0E;
    /// Bitrate in bits per second, varint.
    pub(crate) const BITRATE: u8 = 0x0F;
    /// Duration in milliseconds, varint.
    pub(crate) const DURATION: u8 = 0x10;
    /// Expiry, Unix seconds, varint.
    pub(crate) const EXPIRES: u8 = 0x11;
    /// Start offset in milliseconds, varint.
    pub(crate) const START_OFFSET: u8 = 0x12;
    /// A rendition: nested items with the `R_*` tags; repeatable.
    pub(crate) const RENDITION: u8 = 0x13;

    /// Rendition name, UTF-8.
    pub(crate) const R_NAME: u8 = 0x01;
    /// Rendition URL (URL encoding).
    pub(crate) const R_URL: u8 = 0x02;
    /// Rendition container, UTF-8.
    pub(crate) const R_CONTAINER: u8 = 0x03;
    /// Rendition MIME type, UTF-8.
    pub(crate) const R_MIME: u8 = 0x04;
    /// Rendition codecs (as [`CODECS`]).
    pub(crate) const R_CODECS: u8 = 0x05;
    /// Rendition size, varint.
    pub(crate) const R_SIZE: u8 = 0x06;
    /// Rendition width, varint.
    pub(crate) const R_WIDTH: u8 = 0x07;
    /// Rendition height, varint.
    pub(crate) const R_HEIGHT: u8 = 0x08;
    /// Rendition frame rate (as [`FRAME_RATE`]).
    pub(crate) const R_FRAME_RATE: u8 = 0x09;
    /// Rendition bitrate, varint.
    pub(crate) const R_BITRATE: u8 = 0x0A;
    /// Rendition duration, varint.
    pub(crate) const R_DURATION: u8 = 0x0B;
}

/// URL prefix codes: the first octet of every URL value.
pub(crate) const URL_PREFIXES: [(u8, &str); 6] = [
    (0x01, "http://"),
    (0x02, "https://"),
    (0x03, "http://www."),
    (0x04, "https://www."),
    (0x05, "rtsp://"),
    (0x06, "rtsps://"),
];
/// URL code 0x00: the rest is the whole URL.
pub(crate) const URL_LITERAL: u8 = 0x00;
/// URL code 0x07: the rest is a path (starting with `/`) on the origin
/// (`scheme://host[:port]`) of the share URL.
pub(crate) const URL_SAME_ORIGIN: u8 = 0x07;

/// What to include.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TlvOptions {
    /// Include the renditions (off by default: a typical share then fits
    /// one SMS).
    pub include_renditions: bool,
}

/// `scheme://host[:port]` of a URL, if it has one.
fn origin(url: &str) -> Option<&str> {
    let scheme_end = url.find("://")?;
    let host_start = scheme_end + 3;
    let host_len = url[host_start..]
        .find(['/', '?', '#'])
        .unwrap_or(url.len() - host_start);
    if host_len == 0 {
        return None;
    }
    Some(&url[..host_start + host_len])
}

fn put_len(out: &mut Vec<u8>, len: usize, field: &'static str) -> Result<(), EncodeError> {
    match len {
        0..=0x7F => out.push(len as u8),
        0x80..=0xFF => out.extend_from_slice(&[0x81, len as u8]),
        0x100..=0xFFFF => {
            out.push(0x82);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            return Err(EncodeError::TooLong {
                field,
                len,
                max: 0xFFFF,
            })
        }
    }
    Ok(())
}

fn put(out: &mut Vec<u8>, tag: u8, value: &[u8], field: &'static str) -> Result<(), EncodeError> {
    out.push(tag);
    put_len(out, value.len(), field)?;
    out.extend_from_slice(value);
    Ok(())
}

/// A text field, left out when empty.
fn put_text(out: &mut Vec<u8>, tag: u8, v: &str, field: &'static str) -> Result<(), EncodeError> {
    if v.is_empty() {
        return Ok(());
    }
    put(out, tag, v.as_bytes(), field)
}

/// A codecs field (see [`codecs_value`]), left out when there is none.
fn put_codecs(
    out: &mut Vec<u8>,
    tag: u8,
    codecs: &[String],
    field: &'static str,
) -> Result<(), EncodeError> {
    if codecs.is_empty() {
        return Ok(());
    }
    put(out, tag, &codecs_value(codecs)?, field)
}

/// A frame-rate field (see [`frame_rate_value`]), left out when unknown.
fn put_frame_rate(
    out: &mut Vec<u8>,
    tag: u8,
    fps: f64,
    field: &'static str,
) -> Result<(), EncodeError> {
    match frame_rate_value(fps) {
        Some(v) => put(out, tag, &v, field),
        None => Ok(()),
    }
}

fn put_num(out: &mut Vec<u8>, tag: u8, v: u64) {
    let mut val = Vec::with_capacity(10);
    write_leb128(&mut val, v);
    out.push(tag);
    out.push(val.len() as u8);
    out.extend_from_slice(&val);
}

fn url_value(url: &str, share_origin: Option<&str>) -> Vec<u8> {
    if let Some(o) = share_origin {
        if let Some(path) = url.strip_prefix(o) {
            if path.starts_with('/') {
                let mut v = vec![URL_SAME_ORIGIN];
                v.extend_from_slice(path.as_bytes());
                return v;
            }
        }
    }
    let best = URL_PREFIXES
        .iter()
        .filter(|(_, p)| url.starts_with(p))
        .max_by_key(|(_, p)| p.len());
    match best {
        Some((code, p)) => {
            let mut v = vec![*code];
            v.extend_from_slice(&url.as_bytes()[p.len()..]);
            v
        }
        None => {
            let mut v = vec![URL_LITERAL];
            v.extend_from_slice(url.as_bytes());
            v
        }
    }
}

/// The highest frame rate sent or read; above it a rate is no camera's.
const MAX_FRAME_RATE: f64 = 1.0e12;

/// The frame-rate value: one varint of milli-fps when exact, else two
/// varints (numerator, denominator) with denominator 1001 when exact, else
/// micro-fps as (fps * 10^6, 10^6). `None` for 0, negative or non-finite
/// rates (they are not sent; the recipient reads 0).
pub(crate) fn frame_rate_value(fps: f64) -> Option<Vec<u8>> {
    if !fps.is_finite() || fps <= 0.0 || fps > MAX_FRAME_RATE {
        return None;
    }
    let mut v = Vec::new();
    let milli = (fps * 1000.0).round();
    if milli / 1000.0 == fps {
        write_leb128(&mut v, milli as u64);
        return Some(v);
    }
    let n = (fps * 1001.0).round();
    if n / 1001.0 == fps {
        write_leb128(&mut v, n as u64);
        write_leb128(&mut v, 1001);
        return Some(v);
    }
    write_leb128(&mut v, (fps * 1.0e6).round() as u64);
    write_leb128(&mut v, 1_000_000);
    Some(v)
}

/// The share URL (literal), then the VOD, live and thumbnail URLs
/// (relative to the share URL's origin where they share it).
fn put_links(
    out: &mut Vec<u8>,
    attrs: &VideoAttributes,
    share_origin: Option<&str>,
) -> Result<(), EncodeError> {
    if let Some(u) = &attrs.share_url {
        put(out, tag::SHARE_URL, &url_value(u, None), "share URL")?;
    }
    if let Some(u) = &attrs.vod_url {
        put(out, tag::VOD_URL, &url_value(u, share_origin), "VOD URL")?;
    }
    for u in &attrs.live_urls {
        put(out, tag::LIVE_URL, &url_value(u, share_origin), "live URL")?;
    }
    if let Some(u) = &attrs.thumbnail_url {
        put(
            out,
            tag::THUMBNAIL_URL,
            &url_value(u, share_origin),
            "thumbnail URL",
        )?;
    }
    Ok(())
}

/// Encode attributes as a version-1 TLV message.
pub fn encode(attrs: &VideoAttributes, opts: &TlvOptions) -> Result<Vec<u8>, EncodeError> {
    let mut out = vec![VERSION_1];
    let share_origin = attrs.share_url.as_deref().and_then(origin);
    if !attrs.id.is_empty() {
        match uuid_bytes(&attrs.id) {
            Some(b) => put(&mut out, tag::ID_UUID, &b, "id")?,
            None => put(&mut out, tag::ID, attrs.id.as_bytes(), "id")?,
        }
    }
    if let Some(t) = &attrs.title {
        put(&mut out, tag::TITLE, t.as_bytes(), "title")?;
    }
    if let Some(s) = &attrs.sender {
        put(&mut out, tag::SENDER, s.as_bytes(), "sender")?;
    }
    put_links(&mut out, attrs, share_origin)?;
    put_text(&mut out, tag::CONTAINER, &attrs.container, "container")?;
    put_codecs(&mut out, tag::CODECS, &attrs.codecs, "codecs")?;
    put_nonzero(&mut out, tag::SIZE, attrs.size_bytes);
    put_nonzero(&mut out, tag::WIDTH, u64::from(attrs.width));
    put_nonzero(&mut out, tag::HEIGHT, u64::from(attrs.height));
    put_frame_rate(&mut out, tag::FRAME_RATE, attrs.frame_rate, "frame rate")?;
    put_nonzero(&mut out, tag::BITRATE, attrs.bitrate);
    put_nonzero(&mut out, tag::DURATION, attrs.duration_ms);
    if let Some(v) = attrs.expires_unix {
        put_num(&mut out, tag::EXPIRES, v);
    }
    if let Some(v) = attrs.start_offset_ms {
        put_num(&mut out, tag::START_OFFSET, v);
    }
    if opts.include_renditions {
        for r in &attrs.renditions {
            let inner = encode_rendition(r, share_origin)?;
            put(&mut out, tag::RENDITION, &inner, "rendition")?;
        }
    }
    Ok(out)
}

fn put_nonzero(out: &mut Vec<u8>, tag: u8, v: u64) {
    if v != 0 {
        put_num(out, tag, v);
    }
}

/// Codec-string fragments sent as one octet (0x80 + index) inside codecs
/// values. RFC 6381 codec strings are ASCII, so octets from 0x80 are free.
pub(crate) const CODEC_FRAGMENTS: [&str; 15] = [
    "avc1.",
    "avc3.",
    "hvc1.",
    "hev1.",
    "vp09.",
    "av01.",
    "mp4a.40.2",
    "mp4a.40.5",
    "mp4a.40.29",
    "opus",
    "ac-3",
    "ec-3",
    "flac",
    "vp8",
    "vorbis",
];

/// The codecs value: the codec strings joined by commas, with the
/// [`CODEC_FRAGMENTS`] replaced by their one-octet codes (longest match
/// first).
pub(crate) fn codecs_value(codecs: &[String]) -> Result<Vec<u8>, EncodeError> {
    if let Some(c) = codecs
        .iter()
        .find(|c| c.contains(',') || c.is_empty() || !c.is_ascii())
    {
        return Err(EncodeError::invalid(
            "codecs",
            format!("codec string {c:?} is empty, not ASCII or contains a comma"),
        ));
    }
    let joined = codecs.join(",");
    let mut out = Vec::with_capacity(joined.len());
    let mut i = 0;
    while i < joined.len() {
        let best = CODEC_FRAGMENTS
            .iter()
            .enumerate()
            .filter(|(_, f)| joined[i..].starts_with(*f))
            .max_by_key(|(_, f)| f.len());
        match best {
            Some((code, f)) => {
                out.push(0x80 + code as u8);
                i += f.len();
            }
            None => {
                out.push(joined.as_bytes()[i]);
                i += 1;
            }
        }
    }
    Ok(out)
}

fn encode_rendition(r: &Rendition, share_origin: Option<&str>) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::new();
    put_text(&mut out, tag::R_NAME, &r.name, "rendition name")?;
    if !r.url.is_empty() {
        let url = url_value(&r.url, share_origin);
        put(&mut out, tag::R_URL, &url, "rendition URL")?;
    }
    put_text(
        &mut out,
        tag::R_CONTAINER,
        &r.container,
        "rendition container",
    )?;
    put_text(&mut out, tag::R_MIME, &r.mime, "rendition MIME type")?;
    put_codecs(&mut out, tag::R_CODECS, &r.codecs, "rendition codecs")?;
    put_nonzero(&mut out, tag::R_SIZE, r.size_bytes);
    put_nonzero(&mut out, tag::R_WIDTH, u64::from(r.width));
    put_nonzero(&mut out, tag::R_HEIGHT, u64::from(r.height));
    put_frame_rate(
        &mut out,
        tag::R_FRAME_RATE,
        r.frame_rate,
        "rendition frame rate",
    )?;
    put_nonzero(&mut out, tag::R_BITRATE, r.bitrate);
    put_nonzero(&mut out, tag::R_DURATION, r.duration_ms);
    Ok(out)
}

/// 16 octets of a lowercase hyphenated UUID (8-4-4-4-12), else `None`.
fn uuid_bytes(s: &str) -> Option<[u8; 16]> {
    let b = s.as_bytes();
    if b.len() != 36 {
        return None;
    }
    let mut out = [0u8; 16];
    let mut n = 0;
    let mut i = 0;
    while i < 36 {
        if matches!(i, 8 | 13 | 18 | 23) {
            if b[i] != b'-' {
                return None;
            }
            i += 1;
            continue;
        }
        let hi = lower_hex(b[i])?;
        let lo = lower_hex(*b.get(i + 1)?)?;
        out[n] = (hi << 4) | lo;
        n += 1;
        i += 2;
    }
    Some(out)
}

fn lower_hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

fn uuid_string(b: &[u8]) -> String {
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// One item: its tag, the offset of its value, and the value.
struct Item<'a> {
    tag: u8,
    tag_at: usize,
    value_at: usize,
    value: &'a [u8],
}

fn read_item<'a>(r: &mut Reader<'a>) -> Result<Item<'a>, DecodeError> {
    let tag_at = r.pos();
    let tag = r.u8("tag")?;
    let len_at = r.pos();
    let first = r.u8("length")?;
    let len = match first {
        0x00..=0x7F => usize::from(first),
        0x81 | 0x82 => {
            // A long form only for a length the shorter forms cannot hold.
            let (l, least, octets) = if first == 0x81 {
                (usize::from(r.u8("length")?), 0x80, 2)
            } else {
                (usize::from(r.u16_be("length")?), 0x100, 3)
            };
            if l < least {
                return Err(r.error_at(
                    len_at,
                    ErrorKind::Overlong(format!("length {l} in the {octets}-octet form")),
                ));
            }
            l
        }
        _ => {
            return Err(r.error_at(
                len_at,
                ErrorKind::Invalid(format!("length form {first:#04x}")),
            ))
        }
    };
    let value_at = r.pos();
    let value = r.take(len, "value")?;
    Ok(Item {
        tag,
        tag_at,
        value_at,
        value,
    })
}

fn utf8(item: &Item<'_>, field: &str) -> Result<String, DecodeError> {
    std::str::from_utf8(item.value)
        .map(str::to_owned)
        .map_err(|e| {
            DecodeError::invalid(
                Layer::Tlv,
                item.value_at + e.valid_up_to(),
                format!("UTF-8 in {field}"),
            )
        })
}

fn number(item: &Item<'_>, field: &str) -> Result<u64, DecodeError> {
    let mut r = Reader::new(item.value, Layer::Tlv);
    let v = read_leb128(&mut r).map_err(|e| e.shifted(item.value_at))?;
    if !r.is_empty() {
        return Err(DecodeError::new(
            Layer::Tlv,
            item.value_at,
            ErrorKind::BadLength(format!(
                "{field} value has {} octets but its varint has {}",
                item.value.len(),
                r.pos()
            )),
        ));
    }
    Ok(v)
}

fn number_u32(item: &Item<'_>, field: &str) -> Result<u32, DecodeError> {
    let v = number(item, field)?;
    u32::try_from(v).map_err(|_| {
        DecodeError::invalid(
            Layer::Tlv,
            item.value_at,
            format!("{field} {v} exceeds 32 bits"),
        )
    })
}

fn frame_rate(item: &Item<'_>) -> Result<f64, DecodeError> {
    let fps = frame_rate_ratio(item)?;
    if fps > MAX_FRAME_RATE {
        return Err(DecodeError::invalid(
            Layer::Tlv,
            item.value_at,
            format!("frame rate {fps} above {MAX_FRAME_RATE}"),
        ));
    }
    Ok(fps)
}

fn frame_rate_ratio(item: &Item<'_>) -> Result<f64, DecodeError> {
    let mut r = Reader::new(item.value, Layer::Tlv);
    let a = read_leb128(&mut r).map_err(|e| e.shifted(item.value_at))?;
    if r.is_empty() {
        return Ok(a as f64 / 1000.0);
    }
    let den_at = r.pos();
    let b = read_leb128(&mut r).map_err(|e| e.shifted(item.value_at))?;
    if !r.is_empty() {
        return Err(DecodeError::new(
            Layer::Tlv,
            item.value_at + r.pos(),
            ErrorKind::Trailing(r.remaining()),
        ));
    }
    if b == 0 {
        return Err(DecodeError::invalid(
            Layer::Tlv,
            item.value_at + den_at,
            "frame rate denominator 0",
        ));
    }
    Ok(a as f64 / b as f64)
}

fn codecs(item: &Item<'_>, field: &str) -> Result<Vec<String>, DecodeError> {
    let mut s = String::with_capacity(item.value.len() * 2);
    for (i, &b) in item.value.iter().enumerate() {
        if b < 0x80 {
            s.push(char::from(b));
        } else {
            match CODEC_FRAGMENTS.get(usize::from(b - 0x80)) {
                Some(f) => s.push_str(f),
                None => {
                    return Err(DecodeError::invalid(
                        Layer::Tlv,
                        item.value_at + i,
                        format!("{field} fragment code {b:#04x}"),
                    ))
                }
            }
        }
    }
    if s.is_empty() {
        return Ok(Vec::new());
    }
    Ok(s.split(',').map(str::to_owned).collect())
}

/// A URL value before same-origin resolution.
struct RawUrl {
    code: u8,
    rest: String,
    at: usize,
}

fn raw_url(item: &Item<'_>, field: &str) -> Result<RawUrl, DecodeError> {
    let Some((&code, rest)) = item.value.split_first() else {
        return Err(DecodeError::new(
            Layer::Tlv,
            item.value_at,
            ErrorKind::BadLength(format!("{field} is empty (no prefix code)")),
        ));
    };
    let rest = std::str::from_utf8(rest).map_err(|e| {
        DecodeError::invalid(
            Layer::Tlv,
            item.value_at + 1 + e.valid_up_to(),
            format!("UTF-8 in {field}"),
        )
    })?;
    if code > URL_SAME_ORIGIN {
        return Err(DecodeError::invalid(
            Layer::Tlv,
            item.value_at,
            format!("URL prefix code {code:#04x} in {field}"),
        ));
    }
    if code == URL_SAME_ORIGIN && !rest.starts_with('/') {
        return Err(DecodeError::invalid(
            Layer::Tlv,
            item.value_at + 1,
            format!("same-origin {field} does not start with '/'"),
        ));
    }
    Ok(RawUrl {
        code,
        rest: rest.to_owned(),
        at: item.value_at,
    })
}

fn resolve(u: RawUrl, share_origin: Option<&str>) -> Result<String, DecodeError> {
    match u.code {
        URL_LITERAL => Ok(u.rest),
        URL_SAME_ORIGIN => match share_origin {
            Some(o) => Ok(format!("{o}{}", u.rest)),
            None => Err(DecodeError::invalid(
                Layer::Tlv,
                u.at,
                "same-origin URL without a share URL to resolve against",
            )),
        },
        code => {
            let prefix = URL_PREFIXES
                .iter()
                .find(|(c, _)| *c == code)
                .map_or("", |(_, p)| p);
            Ok(format!("{prefix}{}", u.rest))
        }
    }
}

/// Tracks single-valued tags already seen.
struct Seen([bool; 256]);

impl Seen {
    /// A single-valued item, read by `read` unless its tag came before.
    fn once<T>(
        &mut self,
        item: &Item<'_>,
        name: &str,
        read: impl FnOnce(&Item<'_>, &str) -> Result<T, DecodeError>,
    ) -> Result<T, DecodeError> {
        self.check(item, name)?;
        read(item, name)
    }

    fn check(&mut self, item: &Item<'_>, name: &str) -> Result<(), DecodeError> {
        let slot = &mut self.0[usize::from(item.tag)];
        if *slot {
            return Err(DecodeError::new(
                Layer::Tlv,
                item.tag_at,
                ErrorKind::Duplicate(format!("{name} (tag {:#04x})", item.tag)),
            ));
        }
        *slot = true;
        Ok(())
    }
}

struct PendingRendition {
    rendition: Rendition,
    url: Option<RawUrl>,
}

fn decode_rendition(item: &Item<'_>) -> Result<PendingRendition, DecodeError> {
    let mut r = Reader::new(item.value, Layer::Tlv);
    let mut seen = Seen([false; 256]);
    let mut out = PendingRendition {
        rendition: Rendition::default(),
        url: None,
    };
    while !r.is_empty() {
        let mut it = read_item(&mut r).map_err(|e| e.shifted(item.value_at))?;
        it.tag_at += item.value_at;
        it.value_at += item.value_at;
        let rd = &mut out.rendition;
        match it.tag {
            tag::R_NAME => rd.name = seen.once(&it, "rendition name", utf8)?,
            tag::R_URL => out.url = Some(seen.once(&it, "rendition URL", raw_url)?),
            tag::R_CONTAINER => rd.container = seen.once(&it, "rendition container", utf8)?,
            tag::R_MIME => rd.mime = seen.once(&it, "rendition MIME type", utf8)?,
            tag::R_CODECS => rd.codecs = seen.once(&it, "rendition codecs", codecs)?,
            tag::R_SIZE => rd.size_bytes = seen.once(&it, "rendition size", number)?,
            tag::R_WIDTH => rd.width = seen.once(&it, "rendition width", number_u32)?,
            tag::R_HEIGHT => rd.height = seen.once(&it, "rendition height", number_u32)?,
            tag::R_FRAME_RATE => {
                rd.frame_rate = seen.once(&it, "rendition frame rate", |it, _| frame_rate(it))?
            }
            tag::R_BITRATE => rd.bitrate = seen.once(&it, "rendition bitrate", number)?,
            tag::R_DURATION => rd.duration_ms = seen.once(&it, "rendition duration", number)?,
            _ => {}
        }
    }
    Ok(out)
}

/// Checks the version octet: the Sharecast magic, major version 1.
fn check_version(r: &mut Reader<'_>) -> Result<(), DecodeError> {
    let v = r.u8("version octet")?;
    if v >> 4 != MAGIC {
        return Err(r.error_at(
            0,
            ErrorKind::BadMagic {
                found: v,
                expected: "a Sharecast TLV message starts with 0xC_",
            },
        ));
    }
    if v & 0x0F != 1 {
        return Err(r.error_at(
            0,
            ErrorKind::BadVersion {
                found: u32::from(v & 0x0F),
                expected: "version 1",
            },
        ));
    }
    Ok(())
}

/// A message being decoded, item by item; URLs are resolved at the end,
/// once the share URL (wherever it was) is known.
struct MessageDecoder {
    a: VideoAttributes,
    seen: Seen,
    urls: Vec<(u8, RawUrl)>,
    renditions: Vec<PendingRendition>,
    id_seen: bool,
}

impl MessageDecoder {
    /// The id, as text (`ID`) or as the 16 octets of a UUID (`ID_UUID`);
    /// only one of the two.
    fn id(&mut self, it: &Item<'_>) -> Result<(), DecodeError> {
        if self.id_seen {
            return Err(DecodeError::new(
                Layer::Tlv,
                it.tag_at,
                ErrorKind::Duplicate("id".into()),
            ));
        }
        self.id_seen = true;
        self.a.id = if it.tag == tag::ID {
            utf8(it, "id")?
        } else if it.value.len() == 16 {
            uuid_string(it.value)
        } else {
            return Err(DecodeError::new(
                Layer::Tlv,
                it.value_at,
                ErrorKind::BadLength(format!("UUID id of {} octets, expected 16", it.value.len())),
            ));
        };
        Ok(())
    }

    /// The share, VOD or thumbnail URL (each once), kept for resolution.
    fn url(&mut self, it: &Item<'_>) -> Result<(), DecodeError> {
        let name = match it.tag {
            tag::SHARE_URL => "share URL",
            tag::VOD_URL => "VOD URL",
            _ => "thumbnail URL",
        };
        self.seen.check(it, name)?;
        let u = raw_url(it, name)?;
        if it.tag == tag::SHARE_URL && u.code == URL_SAME_ORIGIN {
            return Err(DecodeError::invalid(
                Layer::Tlv,
                it.value_at,
                "the share URL cannot be relative to itself",
            ));
        }
        self.urls.push((it.tag, u));
        Ok(())
    }

    /// One item. Unknown tags are skipped for forward compatibility.
    fn item(&mut self, it: &Item<'_>) -> Result<(), DecodeError> {
        let (a, seen) = (&mut self.a, &mut self.seen);
        match it.tag {
            tag::ID | tag::ID_UUID => self.id(it)?,
            tag::SHARE_URL | tag::VOD_URL | tag::THUMBNAIL_URL => self.url(it)?,
            tag::LIVE_URL => self.urls.push((it.tag, raw_url(it, "live URL")?)),
            tag::RENDITION => self.renditions.push(decode_rendition(it)?),
            tag::TITLE => a.title = Some(seen.once(it, "title", utf8)?),
            tag::SENDER => a.sender = Some(seen.once(it, "sender", utf8)?),
            tag::CONTAINER => a.container = seen.once(it, "container", utf8)?,
            tag::CODECS => a.codecs = seen.once(it, "codecs", codecs)?,
            tag::SIZE => a.size_bytes = seen.once(it, "size", number)?,
            tag::WIDTH => a.width = seen.once(it, "width", number_u32)?,
            tag::HEIGHT => a.height = seen.once(it, "height", number_u32)?,
            tag::FRAME_RATE => {
                a.frame_rate = seen.once(it, "frame rate", |it, _| frame_rate(it))?
            }
            tag::BITRATE => a.bitrate = seen.once(it, "bitrate", number)?,
            tag::DURATION => a.duration_ms = seen.once(it, "duration", number)?,
            tag::EXPIRES => a.expires_unix = Some(seen.once(it, "expiry", number)?),
            tag::START_OFFSET => a.start_offset_ms = Some(seen.once(it, "start offset", number)?),
            _ => {}
        }
        Ok(())
    }

    /// The attributes, with every URL resolved against the share URL.
    fn finish(mut self) -> Result<VideoAttributes, DecodeError> {
        let mut a = self.a;
        let share = match self.urls.iter().position(|(t, _)| *t == tag::SHARE_URL) {
            Some(i) => Some(resolve(self.urls.remove(i).1, None)?),
            None => None,
        };
        let share_origin = share.as_deref().and_then(origin).map(str::to_owned);
        a.share_url = share;
        for (t, u) in self.urls {
            let url = resolve(u, share_origin.as_deref())?;
            match t {
                tag::VOD_URL => a.vod_url = Some(url),
                tag::THUMBNAIL_URL => a.thumbnail_url = Some(url),
                _ => a.live_urls.push(url),
            }
        }
        for p in self.renditions {
            let mut rd = p.rendition;
            if let Some(u) = p.url {
                rd.url = resolve(u, share_origin.as_deref())?;
            }
            a.renditions.push(rd);
        }
        Ok(a)
    }
}

/// Decode a TLV message. Unknown tags are skipped; a repeated
/// single-valued tag, a bad length, a malformed value or a different major
/// version is an error.
pub fn decode(bytes: &[u8]) -> Result<VideoAttributes, DecodeError> {
    let mut r = Reader::new(bytes, Layer::Tlv);
    check_version(&mut r)?;
    let mut message = MessageDecoder {
        a: VideoAttributes::default(),
        seen: Seen([false; 256]),
        urls: Vec::new(),
        renditions: Vec::new(),
        id_seen: false,
    };
    while !r.is_empty() {
        let it = read_item(&mut r)?;
        message.item(&it)?;
    }
    message.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codec_fragments() {
        let c = vec!["avc1.64001f".to_string(), "mp4a.40.2".to_string()];
        let v = codecs_value(&c).unwrap();
        assert_eq!(v, [&[0x80][..], b"64001f,", &[0x86]].concat());
        let it = Item {
            tag: tag::CODECS,
            tag_at: 0,
            value_at: 0,
            value: &v,
        };
        assert_eq!(codecs(&it, "codecs").unwrap(), c);
        let longest = codecs_value(&["mp4a.40.29".to_string()]).unwrap();
        assert_eq!(longest, [0x88]);
        assert!(codecs_value(&["a,b".to_string()]).is_err());
        assert!(codecs_value(&["é".to_string()]).is_err());
        let bad = Item {
            tag: tag::CODECS,
            tag_at: 0,
            value_at: 5,
            value: &[b'a', 0xF0],
        };
        assert_eq!(codecs(&bad, "codecs").unwrap_err().offset, 6);
    }

    #[test]
    fn origin_of_urls() {
        assert_eq!(
            origin("https://a.example:8443/s/x"),
            Some("https://a.example:8443")
        );
        assert_eq!(origin("https://a.example"), Some("https://a.example"));
        assert_eq!(origin("https:///x"), None);
        assert_eq!(origin("mailto:x"), None);
    }

    #[test]
    fn uuid_ids_are_16_octets() {
        let id = "0b7e3f0a-1c2d-4e5f-8a9b-0c1d2e3f4a5b";
        let a = VideoAttributes {
            id: id.into(),
            ..Default::default()
        };
        let b = encode(&a, &TlvOptions::default()).unwrap();
        assert_eq!(b.len(), 1 + 2 + 16);
        assert_eq!(b[1], tag::ID_UUID);
        assert_eq!(decode(&b).unwrap().id, id);
        // Uppercase is not canonical: sent as text so it round-trips.
        let upper = VideoAttributes {
            id: id.to_uppercase(),
            ..Default::default()
        };
        let b = encode(&upper, &TlvOptions::default()).unwrap();
        assert_eq!(b[1], tag::ID);
        assert_eq!(decode(&b).unwrap().id, id.to_uppercase());
    }

    /// Found by fuzzing (fuzz/, target share_tlv): a frame rate of 3.4e13
    /// was read, which the encoder does not send (it leaves out rates above
    /// 1e12), so the attributes changed through a second encoding.
    #[test]
    fn frame_rate_above_the_limit_is_refused() {
        let bytes = [
            0xC1, 0x00, 0x00, 0x03, 0x00, 0x0E, 0x08, 0x8C, 0xEA, 0xEA, 0xEA, 0xEA, 0xF6, 0x8C,
            0x3D,
        ];
        let e = decode(&bytes).unwrap_err();
        assert!(e.to_string().contains("frame rate"), "{e}");
    }

    #[test]
    fn frame_rates() {
        for fps in [
            30.0,
            29.97,
            25.0,
            23.976,
            30000.0 / 1001.0,
            24000.0 / 1001.0,
            59.94,
            0.5,
        ] {
            let v = frame_rate_value(fps).unwrap();
            let it = Item {
                tag: tag::FRAME_RATE,
                tag_at: 0,
                value_at: 0,
                value: &v,
            };
            assert_eq!(frame_rate(&it).unwrap(), fps, "{fps}");
        }
        assert_eq!(frame_rate_value(30.0).unwrap(), vec![0xB0, 0xEA, 0x01]);
        assert!(frame_rate_value(0.0).is_none());
        assert!(frame_rate_value(f64::NAN).is_none());
        assert!(frame_rate_value(-1.0).is_none());
    }

    #[test]
    fn length_forms_must_be_minimal() {
        // Tag 0x03 (title), length 0x81 0x05: overlong.
        let e = decode(&[0xC1, 0x03, 0x81, 0x05, b'a', b'b', b'c', b'd', b'e']).unwrap_err();
        assert!(matches!(e.kind, ErrorKind::Overlong(_)), "{e}");
        assert_eq!(e.offset, 2);
        let e = decode(&[0xC1, 0x03, 0x83, 0, 0, 1]).unwrap_err();
        assert!(matches!(e.kind, ErrorKind::Invalid(_)), "{e}");
        let mut long = vec![0xC1, 0x03, 0x81, 0x80];
        long.extend(std::iter::repeat_n(b'x', 128));
        assert_eq!(decode(&long).unwrap().title.unwrap().len(), 128);
    }

    #[test]
    fn unknown_tags_are_skipped_and_duplicates_rejected() {
        let b = [0xC1, 0x7E, 0x02, 0xAA, 0xBB, 0x09, 0x03, b'm', b'p', b'4'];
        assert_eq!(decode(&b).unwrap().container, "mp4");
        let dup = [0xC1, 0x09, 0x01, b'a', 0x09, 0x01, b'b'];
        let e = decode(&dup).unwrap_err();
        assert!(matches!(e.kind, ErrorKind::Duplicate(_)));
        assert_eq!(e.offset, 4);
    }

    #[test]
    fn version_and_magic() {
        assert!(matches!(
            decode(&[0xC2]).unwrap_err().kind,
            ErrorKind::BadVersion { .. }
        ));
        assert!(matches!(
            decode(&[0x01]).unwrap_err().kind,
            ErrorKind::BadMagic { .. }
        ));
        assert!(decode(&[]).is_err());
        assert_eq!(decode(&[0xC1]).unwrap(), VideoAttributes::default());
    }

    #[test]
    fn numbers_must_fill_their_value() {
        let e = decode(&[0xC1, tag::WIDTH, 0x02, 0x05, 0x00]).unwrap_err();
        assert!(matches!(e.kind, ErrorKind::BadLength(_)), "{e}");
        let e = decode(&[0xC1, tag::WIDTH, 0x05, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F]).unwrap_err();
        assert!(matches!(e.kind, ErrorKind::Invalid(_)), "{e}");
    }

    #[test]
    fn same_origin_urls() {
        let a = VideoAttributes {
            share_url: Some("https://sc.example.com/s/AbC".into()),
            vod_url: Some("https://sc.example.com/vod/v1/source.mp4".into()),
            live_urls: vec!["rtsp://sc.example.com:8554/live/v1".into()],
            ..Default::default()
        };
        let b = encode(&a, &TlvOptions::default()).unwrap();
        assert_eq!(decode(&b).unwrap(), a);
        // A relative URL without a share URL is an error.
        let e = decode(&[0xC1, tag::VOD_URL, 0x03, 0x07, b'/', b'x']).unwrap_err();
        assert!(matches!(e.kind, ErrorKind::Invalid(_)));
    }
}
