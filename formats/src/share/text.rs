//! The delimited-text share message: readable on any phone, the share link
//! first so that handsets make it tappable, then `key=value` fields split by
//! the delimiter `§` (GSM 7-bit 0x5F, one septet; U+00A7 in UCS-2).
//!
//! ```text
//! https://sc.example.com/s/Xy3kP9§title=Beach walk§fmt=mp4§res=1280x720§fps=29.97§dur=40250
//! ```
//!
//! A `§` inside the link or a value is doubled (`§§`). Unknown keys are
//! ignored; every field must have a `=`; a repeated key (other than `live`)
//! is an error. The key table is in `docs/share-messages.md`. The message
//! goes as GSM 7-bit text when every character allows it, else as UCS-2.
//!
//! Offsets in decode errors are byte offsets in the UTF-8 text.

use crate::attributes::VideoAttributes;

use super::error::{DecodeError, EncodeError, ErrorKind, Layer};

/// The field delimiter.
pub(crate) const DELIMITER: char = '§';

fn escape(s: &str) -> String {
    s.replace(DELIMITER, "§§")
}

/// Encode attributes as a delimited text message (renditions are not
/// carried).
pub fn encode(attrs: &VideoAttributes) -> Result<String, EncodeError> {
    let mut out = escape(attrs.share_url.as_deref().unwrap_or(""));
    let mut count = 0usize;
    let mut field = |k: &str, v: &str| {
        count += 1;
        out.push(DELIMITER);
        out.push_str(k);
        out.push('=');
        out.push_str(&escape(v));
    };
    if let Some(t) = &attrs.title {
        field("title", t);
    }
    if let Some(s) = &attrs.sender {
        field("from", s);
    }
    if !attrs.id.is_empty() {
        field("id", &attrs.id);
    }
    if let Some(u) = &attrs.vod_url {
        field("vod", u);
    }
    for u in &attrs.live_urls {
        field("live", u);
    }
    if let Some(u) = &attrs.thumbnail_url {
        field("thumb", u);
    }
    if !attrs.container.is_empty() {
        field("fmt", &attrs.container);
    }
    if !attrs.codecs.is_empty() {
        if let Some(c) = attrs
            .codecs
            .iter()
            .find(|c| c.contains(',') || c.is_empty())
        {
            return Err(EncodeError::invalid(
                "codecs",
                format!("codec string {c:?} is empty or contains a comma"),
            ));
        }
        field("codecs", &attrs.codecs.join(","));
    }
    if attrs.width != 0 || attrs.height != 0 {
        field("res", &format!("{}x{}", attrs.width, attrs.height));
    }
    if attrs.frame_rate.is_finite() && attrs.frame_rate > 0.0 {
        field("fps", &attrs.frame_rate.to_string());
    }
    if attrs.duration_ms != 0 {
        field("dur", &attrs.duration_ms.to_string());
    }
    if attrs.size_bytes != 0 {
        field("size", &attrs.size_bytes.to_string());
    }
    if attrs.bitrate != 0 {
        field("bps", &attrs.bitrate.to_string());
    }
    if let Some(v) = attrs.expires_unix {
        field("exp", &v.to_string());
    }
    if let Some(v) = attrs.start_offset_ms {
        field("start", &v.to_string());
    }
    if count == 0 {
        // A bare link: a trailing delimiter marks it as a share message.
        out.push(DELIMITER);
    }
    Ok(out)
}

/// Split on single delimiters, unescaping doubled ones. Returns (byte
/// offset, field) pairs.
fn split(text: &str) -> Vec<(usize, String)> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut start = 0;
    let mut it = text.char_indices().peekable();
    while let Some((i, c)) = it.next() {
        if c == DELIMITER {
            if matches!(it.peek(), Some((_, DELIMITER))) {
                it.next();
                cur.push(DELIMITER);
            } else {
                fields.push((start, std::mem::take(&mut cur)));
                start = i + DELIMITER.len_utf8();
            }
        } else {
            cur.push(c);
        }
    }
    fields.push((start, cur));
    fields
}

fn parse_num<T: std::str::FromStr>(at: usize, key: &str, v: &str) -> Result<T, DecodeError> {
    v.trim().parse().map_err(|_| {
        DecodeError::invalid(
            Layer::Text,
            at,
            format!("{key}={v:?} (expected an unsigned integer)"),
        )
    })
}

/// Whether `text` looks like a delimited share message (a first field that
/// is empty or a URL, and at least one `key=` field).
pub fn looks_like(text: &str) -> bool {
    let fields = split(text.trim());
    fields.len() >= 2
        && (fields[0].1.is_empty() || fields[0].1.contains("://"))
        && (fields[1].1.contains('=') || (fields.len() == 2 && fields[1].1.is_empty()))
}

/// Sets the attribute a `key=value` field carries (`value` starts at byte
/// `value_at`). Unknown keys are skipped: later revisions.
fn set_field(
    a: &mut VideoAttributes,
    key: &str,
    value: &str,
    value_at: usize,
) -> Result<(), DecodeError> {
    match key {
        "title" => a.title = Some(value.to_owned()),
        "from" => a.sender = Some(value.to_owned()),
        "id" => a.id = value.to_owned(),
        "vod" => a.vod_url = Some(value.to_owned()),
        "live" => a.live_urls.push(value.to_owned()),
        "thumb" => a.thumbnail_url = Some(value.to_owned()),
        "fmt" => a.container = value.to_owned(),
        "codecs" => {
            a.codecs = value
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
        }
        "res" => {
            let (w, h) = value.split_once(['x', 'X']).ok_or_else(|| {
                DecodeError::invalid(
                    Layer::Text,
                    value_at,
                    format!("res={value:?} (expected WIDTHxHEIGHT)"),
                )
            })?;
            a.width = parse_num(value_at, "res width", w)?;
            a.height = parse_num(value_at, "res height", h)?;
        }
        "fps" => {
            a.frame_rate = match value.trim().parse::<f64>() {
                Ok(f) if f.is_finite() && f >= 0.0 => f,
                _ => {
                    return Err(DecodeError::invalid(
                        Layer::Text,
                        value_at,
                        format!("fps={value:?} (expected a non-negative number)"),
                    ))
                }
            }
        }
        "dur" => a.duration_ms = parse_num(value_at, key, value)?,
        "size" => a.size_bytes = parse_num(value_at, key, value)?,
        "bps" => a.bitrate = parse_num(value_at, key, value)?,
        "exp" => a.expires_unix = Some(parse_num(value_at, key, value)?),
        "start" => a.start_offset_ms = Some(parse_num(value_at, key, value)?),
        // Unknown keys: later revisions.
        _ => {}
    }
    Ok(())
}

/// Decode a delimited text message. Values are taken exactly as written
/// (no trimming), so they round-trip.
pub fn decode(text: &str) -> Result<VideoAttributes, DecodeError> {
    let fields = split(text);
    let mut a = VideoAttributes::default();
    let mut iter = fields.into_iter();
    let (_, link) = iter.next().unwrap_or_default();
    if !link.is_empty() {
        if !link.contains("://") {
            return Err(DecodeError::invalid(
                Layer::Text,
                0,
                format!("first field {link:?} is not a link"),
            ));
        }
        a.share_url = Some(link);
    }
    let mut seen: Vec<String> = Vec::new();
    let mut any = false;
    let mut fields = iter.peekable();
    while let Some((at, f)) = fields.next() {
        if f.is_empty() && fields.peek().is_none() {
            // The trailing delimiter of a bare link.
            any = true;
            continue;
        }
        let Some((key, value)) = f.split_once('=') else {
            return Err(DecodeError::invalid(
                Layer::Text,
                at,
                format!("field {f:?} has no '='"),
            ));
        };
        any = true;
        let value_at = at + key.len() + 1;
        if key != "live" {
            if seen.iter().any(|k| k == key) {
                return Err(DecodeError::new(
                    Layer::Text,
                    at,
                    ErrorKind::Duplicate(format!("field {key:?}")),
                ));
            }
            seen.push(key.to_owned());
        }
        set_field(&mut a, key, value, value_at)?;
    }
    if !any {
        return Err(DecodeError::invalid(
            Layer::Text,
            text.len(),
            format!("no {DELIMITER}-delimited fields: not a Sharecast text message"),
        ));
    }
    Ok(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_comes_first_and_delimiters_are_escaped() {
        let a = VideoAttributes {
            share_url: Some("https://sc.example.com/s/X".into()),
            title: Some("§ and §§ and end§".into()),
            container: "mp4".into(),
            width: 1280,
            height: 720,
            frame_rate: 29.97,
            ..Default::default()
        };
        let t = encode(&a).unwrap();
        assert!(t.starts_with("https://sc.example.com/s/X§title=§§ and §§§§ and end§§§fmt=mp4"));
        assert_eq!(decode(&t).unwrap(), a);
    }

    #[test]
    fn errors_name_the_offset() {
        // "§" is two bytes in UTF-8.
        let e = decode("https://x/s/1§title=a§oops").unwrap_err();
        assert_eq!(e.offset, 24);
        let e = decode("https://x/s/1§res=12by7").unwrap_err();
        assert_eq!(e.offset, 19);
        assert!(decode("hello there").is_err());
        assert!(decode("not a link§title=x").is_err());
        assert!(decode("§fmt=a§fmt=b").is_err());
        assert!(decode("").is_err());
    }

    #[test]
    fn bare_link_gets_a_trailing_delimiter() {
        let a = VideoAttributes {
            share_url: Some("https://x/s/§".into()),
            ..Default::default()
        };
        let t = encode(&a).unwrap();
        assert_eq!(t, "https://x/s/§§§");
        assert!(looks_like(&t));
        assert_eq!(decode(&t).unwrap(), a);
    }

    #[test]
    fn recognition() {
        assert!(looks_like("https://x/s/1§title=a"));
        assert!(looks_like("§title=a"));
        assert!(!looks_like("Hi § there"));
        assert!(!looks_like("https://x/s/1"));
    }
}
