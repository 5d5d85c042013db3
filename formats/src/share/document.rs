//! A small element tree shared by the XML and WBXML codecs, and the
//! Sharecast video-attribute document built on it.
//!
//! The video document (namespace `urn:sharecast:video-attributes:1`, described in
//! `docs/share-messages.md`, which also has an XML Schema):
//!
//! ```xml
//! <video xmlns="urn:sharecast:video-attributes:1" version="1" id="k3v9x2"
//!        expires="1767225600" start-offset-ms="0">
//!   <title>Beach walk</title>
//!   <sender>+8613800138000</sender>
//!   <link rel="share" href="https://sc.example.com/s/Xy3kP9"/>
//!   <link rel="vod" href="https://sc.example.com/vod/k3v9x2/source.mp4"/>
//!   <link rel="live" href="rtsp://sc.example.com:8554/live/k3v9x2"/>
//!   <link rel="thumbnail" href="https://sc.example.com/vod/k3v9x2/poster.jpg"/>
//!   <media container="mp4" codecs="avc1.64001f,mp4a.40.2" size="12582912"
//!          width="1280" height="720" frame-rate="29.97" bitrate="2500000"
//!          duration-ms="40250"/>
//!   <rendition name="480p" href="..." container="mp4" mime="video/mp4"
//!              codecs="avc1.4d401e,mp4a.40.2" size="..." width="854" height="480"
//!              frame-rate="29.97" bitrate="1200000" duration-ms="40250"/>
//! </video>
//! ```
//!
//! Readers ignore elements and attributes they do not know, so later minor
//! revisions stay readable; the `version` attribute's major number must be 1.

use crate::attributes::{Rendition, VideoAttributes};

use super::error::{DecodeError, ErrorKind, Layer};

/// XML namespace of the video document.
pub(crate) const NAMESPACE: &str = "urn:sharecast:video-attributes:1";
/// Document version written by this implementation.
pub const VERSION: &str = "1";

/// An element: name, attributes in order, children.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Element {
    /// Local name.
    pub name: String,
    /// Attributes (name, value) in document order.
    pub attributes: Vec<(String, String)>,
    /// Children in document order.
    pub children: Vec<Node>,
    /// Byte offset of the element in its source document (0 when built in
    /// memory); used in error messages.
    pub offset: usize,
}

/// A child node.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// A child element.
    Element(Element),
    /// Character data.
    Text(String),
}

impl Element {
    /// An element with no attributes or children.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            ..Self::default()
        }
    }

    /// Add an attribute (builder style).
    #[must_use]
    pub(crate) fn attr(mut self, name: &str, value: impl Into<String>) -> Self {
        self.attributes.push((name.to_owned(), value.into()));
        self
    }

    /// Add a text child (builder style).
    #[must_use]
    pub fn text(mut self, text: impl Into<String>) -> Self {
        self.children.push(Node::Text(text.into()));
        self
    }

    /// Add a child element (builder style).
    #[must_use]
    pub fn child(mut self, e: Element) -> Self {
        self.children.push(Node::Element(e));
        self
    }

    /// The value of an attribute.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Child elements.
    pub(crate) fn elements(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        })
    }

    /// Refuses a root element other than `<name>`.
    pub(crate) fn expect_root(&self, name: &str, layer: Layer) -> Result<(), DecodeError> {
        if self.name == name {
            return Ok(());
        }
        Err(DecodeError::invalid(
            layer,
            self.offset,
            format!("root element <{}>, expected <{name}>", self.name),
        ))
    }

    /// The attribute `name` read by `parse`, if present; a value `parse`
    /// refuses is an error naming the attribute and the value.
    pub(crate) fn parse_attr<T>(
        &self,
        name: &str,
        layer: Layer,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Result<Option<T>, DecodeError> {
        self.get(name)
            .map(|v| {
                parse(v).ok_or_else(|| {
                    DecodeError::invalid(layer, self.offset, format!("{name} {v:?}"))
                })
            })
            .transpose()
    }

    /// All text children concatenated.
    pub(crate) fn text_content(&self) -> String {
        self.children
            .iter()
            .filter_map(|n| match n {
                Node::Text(t) => Some(t.as_str()),
                Node::Element(_) => None,
            })
            .collect()
    }
}

/// The media attributes shared by `<media>` and `<rendition>`.
struct Media<'a> {
    container: &'a str,
    codecs: &'a [String],
    size: u64,
    width: u32,
    height: u32,
    frame_rate: f64,
    bitrate: u64,
    duration_ms: u64,
}

fn media_attrs(mut e: Element, m: Media<'_>) -> Element {
    if !m.container.is_empty() {
        e = e.attr("container", m.container);
    }
    if !m.codecs.is_empty() {
        e = e.attr("codecs", m.codecs.join(","));
    }
    if m.size != 0 {
        e = e.attr("size", m.size.to_string());
    }
    if m.width != 0 {
        e = e.attr("width", m.width.to_string());
    }
    if m.height != 0 {
        e = e.attr("height", m.height.to_string());
    }
    if m.frame_rate.is_finite() && m.frame_rate > 0.0 {
        e = e.attr("frame-rate", m.frame_rate.to_string());
    }
    if m.bitrate != 0 {
        e = e.attr("bitrate", m.bitrate.to_string());
    }
    if m.duration_ms != 0 {
        e = e.attr("duration-ms", m.duration_ms.to_string());
    }
    e
}

/// Build the video document for `attrs` (renditions included when asked).
pub fn to_element(attrs: &VideoAttributes, include_renditions: bool) -> Element {
    let mut root = Element::new("video").attr("version", VERSION);
    if !attrs.id.is_empty() {
        root = root.attr("id", attrs.id.clone());
    }
    if let Some(v) = attrs.expires_unix {
        root = root.attr("expires", v.to_string());
    }
    if let Some(v) = attrs.start_offset_ms {
        root = root.attr("start-offset-ms", v.to_string());
    }
    if let Some(t) = &attrs.title {
        root = root.child(Element::new("title").text(t.clone()));
    }
    if let Some(s) = &attrs.sender {
        root = root.child(Element::new("sender").text(s.clone()));
    }
    let link = |rel: &str, href: &str| Element::new("link").attr("rel", rel).attr("href", href);
    if let Some(u) = &attrs.share_url {
        root = root.child(link("share", u));
    }
    if let Some(u) = &attrs.vod_url {
        root = root.child(link("vod", u));
    }
    for u in &attrs.live_urls {
        root = root.child(link("live", u));
    }
    if let Some(u) = &attrs.thumbnail_url {
        root = root.child(link("thumbnail", u));
    }
    root = root.child(media_attrs(
        Element::new("media"),
        Media {
            container: &attrs.container,
            codecs: &attrs.codecs,
            size: attrs.size_bytes,
            width: attrs.width,
            height: attrs.height,
            frame_rate: attrs.frame_rate,
            bitrate: attrs.bitrate,
            duration_ms: attrs.duration_ms,
        },
    ));
    if include_renditions {
        for r in &attrs.renditions {
            let mut e = Element::new("rendition");
            if !r.name.is_empty() {
                e = e.attr("name", r.name.clone());
            }
            if !r.url.is_empty() {
                e = e.attr("href", r.url.clone());
            }
            if !r.mime.is_empty() {
                e = e.attr("mime", r.mime.clone());
            }
            root = root.child(media_attrs(
                e,
                Media {
                    container: &r.container,
                    codecs: &r.codecs,
                    size: r.size_bytes,
                    width: r.width,
                    height: r.height,
                    frame_rate: r.frame_rate,
                    bitrate: r.bitrate,
                    duration_ms: r.duration_ms,
                },
            ));
        }
    }
    root
}

fn bad(layer: Layer, e: &Element, what: String) -> DecodeError {
    DecodeError::invalid(layer, e.offset, what)
}

fn num<T: std::str::FromStr>(
    layer: Layer,
    e: &Element,
    name: &str,
) -> Result<Option<T>, DecodeError> {
    match e.get(name) {
        None => Ok(None),
        Some(v) => v.trim().parse::<T>().map(Some).map_err(|_| {
            bad(
                layer,
                e,
                format!(
                    "{name}={v:?} on <{}> (expected an unsigned integer)",
                    e.name
                ),
            )
        }),
    }
}

fn fps(layer: Layer, e: &Element) -> Result<f64, DecodeError> {
    match e.get("frame-rate") {
        None => Ok(0.0),
        Some(v) => match v.trim().parse::<f64>() {
            Ok(f) if f.is_finite() && f >= 0.0 => Ok(f),
            _ => Err(bad(
                layer,
                e,
                format!(
                    "frame-rate={v:?} on <{}> (expected a non-negative number)",
                    e.name
                ),
            )),
        },
    }
}

fn codec_list(e: &Element) -> Vec<String> {
    e.get("codecs")
        .map(|c| {
            c.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Refuses a root that is not a `<video>` of major version 1.
fn check_root(root: &Element, layer: Layer) -> Result<(), DecodeError> {
    root.expect_root("video", layer)?;
    if let Some(v) = root.get("version") {
        let major = v.split('.').next().unwrap_or("");
        if major.trim() != "1" {
            return Err(DecodeError::new(
                layer,
                root.offset,
                ErrorKind::BadVersion {
                    found: major.trim().parse().unwrap_or(0),
                    expected: "video document version 1",
                },
            ));
        }
    }
    Ok(())
}

/// A `<link>`: its `href` under its relation.
fn read_link(a: &mut VideoAttributes, e: &Element, layer: Layer) -> Result<(), DecodeError> {
    let href = e
        .get("href")
        .ok_or_else(|| bad(layer, e, "<link> without href".into()))?
        .to_owned();
    match e.get("rel") {
        Some("share") => a.share_url = Some(href),
        Some("vod") => a.vod_url = Some(href),
        Some("live") => a.live_urls.push(href),
        Some("thumbnail") => a.thumbnail_url = Some(href),
        // Unknown relations are for later revisions.
        _ => {}
    }
    Ok(())
}

/// The attributes of a `<rendition>`, or of the `<media>` element (which
/// has no name, link or MIME type).
fn read_rendition(e: &Element, layer: Layer) -> Result<Rendition, DecodeError> {
    Ok(Rendition {
        name: e.get("name").unwrap_or("").to_owned(),
        url: e.get("href").unwrap_or("").to_owned(),
        container: e.get("container").unwrap_or("").to_owned(),
        mime: e.get("mime").unwrap_or("").to_owned(),
        codecs: codec_list(e),
        size_bytes: num(layer, e, "size")?.unwrap_or(0),
        width: num(layer, e, "width")?.unwrap_or(0),
        height: num(layer, e, "height")?.unwrap_or(0),
        // Share messages carry no display rotation (docs/share-messages.md).
        rotation: 0,
        frame_rate: fps(layer, e)?,
        bitrate: num(layer, e, "bitrate")?.unwrap_or(0),
        duration_ms: num(layer, e, "duration-ms")?.unwrap_or(0),
    })
}

/// Read the video document. `layer` is the layer errors are reported in
/// (XML or WBXML); offsets are the elements' offsets in their source.
pub(crate) fn from_element(root: &Element, layer: Layer) -> Result<VideoAttributes, DecodeError> {
    check_root(root, layer)?;
    let mut a = VideoAttributes {
        id: root.get("id").unwrap_or("").to_owned(),
        expires_unix: num(layer, root, "expires")?,
        start_offset_ms: num(layer, root, "start-offset-ms")?,
        ..VideoAttributes::default()
    };
    let mut media_seen = false;
    for e in root.elements() {
        match e.name.as_str() {
            "title" => a.title = Some(e.text_content()),
            "sender" => a.sender = Some(e.text_content()),
            "link" => read_link(&mut a, e, layer)?,
            "media" => {
                if media_seen {
                    return Err(DecodeError::new(
                        layer,
                        e.offset,
                        ErrorKind::Duplicate("<media> element".into()),
                    ));
                }
                media_seen = true;
                let m = read_rendition(e, layer)?;
                a.container = m.container;
                a.codecs = m.codecs;
                a.size_bytes = m.size_bytes;
                a.width = m.width;
                a.height = m.height;
                a.frame_rate = m.frame_rate;
                a.bitrate = m.bitrate;
                a.duration_ms = m.duration_ms;
            }
            "rendition" => a.renditions.push(read_rendition(e, layer)?),
            _ => {}
        }
    }
    Ok(a)
}
