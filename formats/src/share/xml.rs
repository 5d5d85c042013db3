//! The video-attribute document as XML text (namespace
//! `urn:sharecast:video-attributes:1`), sent as a plain
//! text SMS (GSM 7-bit when the content allows, else UCS-2) or inside a WAP
//! Push as `application/vnd.sharecast.video+xml`.
//!
//! Decoding requires the root `<video>` in the Sharecast namespace, ignores
//! elements in other namespaces and unknown elements or attributes, and
//! reports the byte offset (in the UTF-8 text) of what it rejects.

use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;

use crate::attributes::VideoAttributes;

use super::document::{self, Element, Node, NAMESPACE};
use super::error::{DecodeError, EncodeError, ErrorKind, Layer};

/// Deepest element nesting accepted when parsing.
pub(crate) const MAX_DEPTH: usize = 32;

fn check_chars(s: &str, field: &'static str) -> Result<(), EncodeError> {
    match s.chars().find(|&c| {
        (c < ' ' && !matches!(c, '\t' | '\n' | '\r')) || c == '\u{FFFE}' || c == '\u{FFFF}'
    }) {
        Some(c) => Err(EncodeError::invalid(
            field,
            format!("character U+{:04X} cannot appear in XML", c as u32),
        )),
        None => Ok(()),
    }
}

/// `s` with the five characters markup reserves written as entities
/// (`&amp;`, `&lt;`, `&gt;`, `&quot;`, `&apos;`): safe in XML or HTML text
/// and in attribute values.
pub fn escape_markup(s: &str) -> String {
    escape_with(s, false)
}

/// [`escape_markup`], and CR, tab and LF as character references: they keep
/// through attribute-value normalisation.
fn escape(s: &str) -> String {
    escape_with(s, true)
}

fn escape_with(s: &str, whitespace: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\r' if whitespace => out.push_str("&#13;"),
            '\t' if whitespace => out.push_str("&#9;"),
            '\n' if whitespace => out.push_str("&#10;"),
            c => out.push(c),
        }
    }
    out
}

fn write_element(out: &mut String, e: &Element, xmlns: Option<&str>) -> Result<(), EncodeError> {
    out.push('<');
    out.push_str(&e.name);
    if let Some(ns) = xmlns {
        out.push_str(" xmlns=\"");
        out.push_str(&escape(ns));
        out.push('"');
    }
    for (n, v) in &e.attributes {
        check_chars(v, "attribute value")?;
        out.push(' ');
        out.push_str(n);
        out.push_str("=\"");
        out.push_str(&escape(v));
        out.push('"');
    }
    if e.children.is_empty() {
        out.push_str("/>");
        return Ok(());
    }
    out.push('>');
    for c in &e.children {
        match c {
            Node::Element(child) => write_element(out, child, None)?,
            Node::Text(t) => {
                check_chars(t, "text")?;
                out.push_str(&escape(t));
            }
        }
    }
    out.push_str("</");
    out.push_str(&e.name);
    out.push('>');
    Ok(())
}

/// Serialise an element tree as an XML document (no indentation, to keep
/// SMS short), with `namespace` declared on the root.
pub(crate) fn write_document(root: &Element, namespace: &str) -> Result<String, EncodeError> {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
    write_element(&mut out, root, Some(namespace))?;
    Ok(out)
}

/// Encode attributes as the XML video document.
pub fn encode(attrs: &VideoAttributes, include_renditions: bool) -> Result<String, EncodeError> {
    write_document(&document::to_element(attrs, include_renditions), NAMESPACE)
}

fn xml_err(reader: &NsReader<&[u8]>, e: impl std::fmt::Display) -> DecodeError {
    DecodeError::invalid(
        Layer::Xml,
        usize::try_from(reader.error_position()).unwrap_or(usize::MAX),
        format!("XML: {e}"),
    )
}

fn qualified(ns: &ResolveResult<'_>, local: &[u8]) -> String {
    let local = String::from_utf8_lossy(local);
    match ns {
        ResolveResult::Bound(n) if n.as_ref() == NAMESPACE.as_bytes() => local.into_owned(),
        ResolveResult::Bound(n) => format!("{{{}}}{local}", String::from_utf8_lossy(n.as_ref())),
        ResolveResult::Unbound => format!("{{}}{local}"),
        ResolveResult::Unknown(p) => format!("{{{}:}}{local}", String::from_utf8_lossy(p)),
    }
}

/// The element tree being built, event by event.
#[derive(Default)]
struct Tree {
    /// Open elements, outermost first.
    stack: Vec<Element>,
    root: Option<Element>,
}

impl Tree {
    /// Whether an element may start at `at`: only inside the root (or as
    /// the root), at most [`MAX_DEPTH`] deep.
    fn check_start(&self, at: usize) -> Result<(), DecodeError> {
        if self.root.is_some() {
            return Err(DecodeError::invalid(
                Layer::Xml,
                at,
                "content after the root element",
            ));
        }
        if self.stack.len() >= MAX_DEPTH {
            return Err(DecodeError::unsupported(
                Layer::Xml,
                at,
                format!("nesting deeper than {MAX_DEPTH} elements"),
            ));
        }
        Ok(())
    }

    /// Adds a finished element to its parent, or makes it the root.
    fn attach(&mut self, el: Element) {
        match self.stack.last_mut() {
            Some(parent) => parent.children.push(Node::Element(el)),
            None => self.root = Some(el),
        }
    }

    /// An element starts; an empty one (`<a/>`) is finished at once.
    fn start(&mut self, el: Element, empty: bool) {
        if empty {
            self.attach(el);
        } else {
            self.stack.push(el);
        }
    }

    /// The innermost open element ends.
    fn end(&mut self, at: usize) -> Result<(), DecodeError> {
        let el = self
            .stack
            .pop()
            .ok_or_else(|| DecodeError::invalid(Layer::Xml, at, "end tag without a start tag"))?;
        self.attach(el);
        Ok(())
    }

    /// Text (or CDATA, `what`); outside the root only whitespace text is
    /// allowed.
    fn text(&mut self, s: &str, at: usize, what: &'static str) -> Result<(), DecodeError> {
        match self.stack.last_mut() {
            Some(parent) => parent.children.push(Node::Text(s.to_owned())),
            None if what == "text" && s.trim().is_empty() => {}
            None => {
                return Err(DecodeError::invalid(
                    Layer::Xml,
                    at,
                    format!("{what} outside the root element"),
                ))
            }
        }
        Ok(())
    }

    /// The root, once the document ends with every element closed.
    fn finish(self, len: usize) -> Result<Element, DecodeError> {
        if !self.stack.is_empty() {
            return Err(DecodeError::new(
                Layer::Xml,
                len,
                ErrorKind::Truncated {
                    what: "closing tags",
                    needed: self.stack.len(),
                },
            ));
        }
        self.root.ok_or_else(|| {
            DecodeError::new(
                Layer::Xml,
                len,
                ErrorKind::Truncated {
                    what: "root element",
                    needed: 1,
                },
            )
        })
    }
}

/// A start tag as an element: its name and its unprefixed attributes.
fn start_element(
    reader: &NsReader<&[u8]>,
    s: &BytesStart<'_>,
    name: String,
    at: usize,
) -> Result<Element, DecodeError> {
    let mut el = Element {
        name,
        offset: at,
        ..Element::default()
    };
    for attr in s.attributes() {
        let attr = attr.map_err(|e| xml_err(reader, e))?;
        let key = attr.key;
        if key.as_namespace_binding().is_some() || key.prefix().is_some() {
            continue;
        }
        let v = attr.unescape_value().map_err(|e| xml_err(reader, e))?;
        el.attributes.push((
            String::from_utf8_lossy(key.local_name().as_ref()).into_owned(),
            v.into_owned(),
        ));
    }
    Ok(el)
}

/// Parse an XML document into an element tree. Element names in the
/// Sharecast namespace are kept as their local name; others become
/// `{namespace}local` so the video reader skips them. Attributes without a
/// prefix are kept; namespace declarations and prefixed attributes are
/// dropped.
pub fn parse_document(text: &str) -> Result<Element, DecodeError> {
    let mut reader = NsReader::from_str(text);
    let mut tree = Tree::default();
    loop {
        let at = usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX);
        let (name, ev) = match reader.read_resolved_event() {
            Ok((ns, ev)) => {
                let name = match &ev {
                    Event::Start(s) | Event::Empty(s) => qualified(&ns, s.local_name().as_ref()),
                    _ => String::new(),
                };
                (name, ev)
            }
            Err(e) => return Err(xml_err(&reader, e)),
        };
        match ev {
            Event::Start(ref s) | Event::Empty(ref s) => {
                tree.check_start(at)?;
                let el = start_element(&reader, s, name, at)?;
                tree.start(el, matches!(ev, Event::Empty(_)));
            }
            Event::End(_) => tree.end(at)?,
            Event::Text(t) => {
                let s = t.unescape().map_err(|e| xml_err(&reader, e))?;
                tree.text(&s, at, "text")?;
            }
            Event::CData(c) => {
                let s = String::from_utf8_lossy(&c.into_inner()).into_owned();
                tree.text(&s, at, "CDATA")?;
            }
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) | Event::DocType(_) => {}
            Event::Eof => return tree.finish(text.len()),
        }
    }
}

/// Decode the XML video document.
pub fn decode(text: &str) -> Result<VideoAttributes, DecodeError> {
    let root = parse_document(text)?;
    if root.name != "video" {
        return Err(DecodeError::invalid(
            Layer::Xml,
            root.offset,
            format!(
                "root element {}, expected <video> in namespace {NAMESPACE}",
                root.name
            ),
        ));
    }
    document::from_element(&root, Layer::Xml)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_round_trips_awkward_text() {
        let a = VideoAttributes {
            id: "a&b".into(),
            title: Some("<Fish & \"Chips\">\n\ttab".into()),
            share_url: Some("https://x.example/s/1?a=1&b=2".into()),
            container: "mp4".into(),
            ..Default::default()
        };
        let x = encode(&a, true).unwrap();
        assert!(x.contains("&amp;b=2"));
        assert_eq!(decode(&x).unwrap(), a);
    }

    #[test]
    fn markup_escaping_keeps_whitespace_and_the_encoder_does_not() {
        let s = "<a href=\"x?a=1&b='2'\">\r\n\t</a>";
        assert_eq!(
            escape_markup(s),
            "&lt;a href=&quot;x?a=1&amp;b=&apos;2&apos;&quot;&gt;\r\n\t&lt;/a&gt;"
        );
        assert_eq!(
            escape(s),
            "&lt;a href=&quot;x?a=1&amp;b=&apos;2&apos;&quot;&gt;&#13;&#10;&#9;&lt;/a&gt;"
        );
    }

    #[test]
    fn rejects_wrong_namespace_and_root() {
        let e = decode("<video/>").unwrap_err();
        assert!(e.to_string().contains("expected <video>"), "{e}");
        assert!(decode("<video xmlns=\"urn:other\"/>").is_err());
        assert!(decode("<x xmlns=\"urn:sharecast:video-attributes:1\"/>").is_err());
        assert!(decode("").is_err());
        assert!(decode("<video xmlns=\"urn:sharecast:video-attributes:1\">").is_err());
        let e = decode("<video xmlns=\"urn:sharecast:video-attributes:1\" version=\"2\"/>")
            .unwrap_err();
        assert!(matches!(e.kind, ErrorKind::BadVersion { .. }));
    }

    #[test]
    fn prefixed_and_foreign_content_is_tolerated() {
        let doc = r#"<?xml version="1.0"?>
<!-- a comment -->
<sc:video xmlns:sc="urn:sharecast:video-attributes:1" xmlns:o="urn:other" id="v1" o:extra="x">
  <o:thing><sc:title>inner ignored</sc:title></o:thing>
  <sc:title>Hello</sc:title>
  <sc:future-element/>
  <sc:media container="mp4" width="640" height="360" frame-rate="25"/>
</sc:video>"#;
        let a = decode(doc).unwrap();
        assert_eq!(a.id, "v1");
        assert_eq!(a.title.as_deref(), Some("Hello"));
        assert_eq!((a.width, a.height, a.frame_rate), (640, 360, 25.0));
    }

    #[test]
    fn bad_numbers_report_the_element_offset() {
        let doc =
            "<video xmlns=\"urn:sharecast:video-attributes:1\"><media width=\"wide\"/></video>";
        let e = decode(doc).unwrap_err();
        assert_eq!(e.offset, doc.find("<media").unwrap());
        assert!(e.to_string().contains("width"), "{e}");
    }

    #[test]
    fn depth_is_limited() {
        let mut doc = String::from("<video xmlns=\"urn:sharecast:video-attributes:1\">");
        doc.push_str(&"<a>".repeat(100));
        assert!(decode(&doc).is_err());
    }

    #[test]
    fn control_characters_are_refused() {
        let a = VideoAttributes {
            title: Some("bell\u{7}".into()),
            ..Default::default()
        };
        assert!(encode(&a, false).is_err());
    }
}
