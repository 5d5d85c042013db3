//! WAP Binary XML 1.3 (WAP-192-WBXML-20010725-a): a table-driven encoder
//! and decoder over [`Element`] trees.
//!
//! A [`Dialect`] holds one document type's token tables (code page 0):
//! tag tokens, attribute-start tokens (an attribute name, optionally with the
//! start of its value) and attribute-value tokens (value fragments), plus the
//! attributes whose values are dates carried as `OPAQUE` in the compressed
//! form of WAP-167 §9.2.2. The encoder picks the longest matching
//! attribute-start prefix and replaces value fragments anywhere in the rest
//! of the value; names without a token are written as `LITERAL` references
//! into the string table. The decoder accepts WBXML 1.0 to 1.3, inline and
//! table strings, entities, `OPAQUE`, processing instructions (skipped) and
//! `LITERAL` names; extension tokens and code pages other than 0 are
//! reported as unsupported.
//!
//! Offsets in decode errors count bytes from the version octet.

use super::document::{Element, Node};
use super::error::{DecodeError, EncodeError, ErrorKind, Layer, Reader};
use super::time::DateTime;
use super::varint::{read_uintvar, write_uintvar};

/// Global tokens (WAP-192 §7.1).
pub mod token {
    /// Change the code page.
    pub(crate) const SWITCH_PAGE: u8 = 0x00;
    /// End of attribute list or element.
    pub const END: u8 = 0x01;
    /// Character entity.
    pub(crate) const ENTITY: u8 = 0x02;
    /// Inline string.
    pub(crate) const STR_I: u8 = 0x03;
    /// Unknown tag or attribute name (string-table reference).
    pub(crate) const LITERAL: u8 = 0x04;
    /// Processing instruction.
    pub(crate) const PI: u8 = 0x43;
    /// String-table reference.
    pub(crate) const STR_T: u8 = 0x83;
    /// Opaque data.
    pub const OPAQUE: u8 = 0xC3;
    /// Tag has attributes.
    pub(crate) const HAS_ATTRIBUTES: u8 = 0x80;
    /// Tag has content.
    pub(crate) const HAS_CONTENT: u8 = 0x40;
}

/// WBXML version 1.3.
pub const VERSION_1_3: u8 = 0x03;
/// WBXML version 1.2.
pub const VERSION_1_2: u8 = 0x02;
/// IANA MIBenum of UTF-8.
pub(crate) const CHARSET_UTF8: u32 = 106;
/// Public identifier "unknown or missing" (WAP-192 §7.2.1).
pub(crate) const PUBLIC_ID_UNKNOWN: u32 = 0x01;
/// Deepest element nesting accepted when decoding.
pub(crate) const MAX_DEPTH: usize = 32;

/// How a dialect's documents are identified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialectId {
    /// A well-known public identifier number (e.g. 0x05 for SI).
    Known(u32, &'static str),
    /// A public identifier carried as a string in the string table.
    Literal(&'static str),
}

/// Token tables of one document type (code page 0).
#[derive(Debug, Clone, Copy)]
pub struct Dialect {
    /// Name used in errors.
    pub name: &'static str,
    /// Public identifier.
    pub id: DialectId,
    /// Tag tokens: (token, element name).
    pub tags: &'static [(u8, &'static str)],
    /// Attribute-start tokens: (token, attribute name, value prefix).
    pub attr_starts: &'static [(u8, &'static str, &'static str)],
    /// Attribute-value tokens: (token, value fragment).
    pub attr_values: &'static [(u8, &'static str)],
    /// Attributes whose values are dates sent as OPAQUE.
    pub date_attrs: &'static [&'static str],
}

/// The public identifier a document declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicId {
    /// A well-known number.
    Known(u32),
    /// A string from the string table.
    Literal(String),
}

/// A decoded document.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// WBXML version octet (0x00 = 1.0 ... 0x03 = 1.3).
    pub version: u8,
    /// Declared public identifier.
    pub public_id: PublicId,
    /// Character set (IANA MIBenum).
    pub charset: u32,
    /// The root element. Element offsets are byte offsets of their tag
    /// token.
    pub root: Element,
}

// ---------------------------------------------------------------------------
// Dates (WAP-167 §9.2.2): the 14 digits of YYYY-MM-DDThh:mm:ssZ packed two
// per octet, trailing zero octets dropped.

/// Encode an ISO 8601 UTC date (`YYYY-MM-DDThh:mm:ssZ`) as 1..=7 octets.
pub(crate) fn encode_date(s: &str) -> Result<Vec<u8>, EncodeError> {
    let b = s.as_bytes();
    let shape_ok = b.len() == 20
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'Z';
    let digits: Vec<u8> = b
        .iter()
        .enumerate()
        .filter(|(i, _)| !matches!(i, 4 | 7 | 10 | 13 | 16 | 19))
        .map(|(_, c)| *c)
        .collect();
    if !shape_ok || digits.len() != 14 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(EncodeError::invalid(
            "date",
            format!("{s:?} is not YYYY-MM-DDThh:mm:ssZ"),
        ));
    }
    let mut out: Vec<u8> = digits
        .chunks(2)
        .map(|p| ((p[0] - b'0') << 4) | (p[1] - b'0'))
        .collect();
    while out.len() > 1 && out.last() == Some(&0) {
        out.pop();
    }
    Ok(out)
}

/// Decode 1..=7 date octets to `YYYY-MM-DDThh:mm:ssZ`.
pub fn decode_date(octets: &[u8]) -> Result<String, String> {
    if octets.is_empty() || octets.len() > 7 {
        return Err(format!("date of {} octets (1 to 7)", octets.len()));
    }
    let mut d = [0u8; 14];
    for (i, o) in octets.iter().enumerate() {
        let (hi, lo) = (o >> 4, o & 0x0F);
        if hi > 9 || lo > 9 {
            return Err(format!("date octet {o:#04x} is not two decimal digits"));
        }
        d[2 * i] = hi;
        d[2 * i + 1] = lo;
    }
    let n = |a: usize, len: usize| {
        d[a..a + len]
            .iter()
            .fold(0u32, |acc, x| acc * 10 + u32::from(*x))
    };
    Ok(format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        n(0, 4),
        n(4, 2),
        n(6, 2),
        n(8, 2),
        n(10, 2),
        n(12, 2)
    ))
}

/// `YYYY-MM-DDThh:mm:ssZ` of Unix seconds.
pub fn iso_date(unix: u64) -> String {
    let t = DateTime::from_unix(i64::try_from(unix).unwrap_or(i64::MAX / 2));
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year, t.month, t.day, t.hour, t.minute, t.second
    )
}

/// Unix seconds of `YYYY-MM-DDThh:mm:ssZ`, if valid and not before 1970.
pub(crate) fn parse_iso_date(s: &str) -> Option<u64> {
    let octets = encode_date(s).ok()?;
    let mut d = [0u32; 14];
    for (i, o) in octets.iter().enumerate() {
        d[2 * i] = u32::from(o >> 4);
        d[2 * i + 1] = u32::from(o & 0x0F);
    }
    let n = |a: usize, len: usize| d[a..a + len].iter().fold(0u32, |acc, x| acc * 10 + x);
    let t = DateTime {
        year: i64::from(n(0, 4)),
        month: n(4, 2),
        day: n(6, 2),
        hour: n(8, 2),
        minute: n(10, 2),
        second: n(12, 2),
    };
    if !t.is_valid() {
        return None;
    }
    u64::try_from(t.to_unix()).ok()
}

// ---------------------------------------------------------------------------
// Encoder

struct Encoder<'d> {
    dialect: &'d Dialect,
    strtbl: Vec<u8>,
    out: Vec<u8>,
}

impl Encoder<'_> {
    fn table_index(&mut self, s: &str) -> Result<u32, EncodeError> {
        let needle: Vec<u8> = s.bytes().chain([0]).collect();
        // Reuse an existing entry that starts at a string boundary.
        let mut start = 0;
        while start < self.strtbl.len() {
            if self.strtbl[start..].starts_with(&needle) {
                return Ok(start as u32);
            }
            let next = self.strtbl[start..]
                .iter()
                .position(|b| *b == 0)
                .map_or(self.strtbl.len(), |p| start + p + 1);
            start = next;
        }
        if s.as_bytes().contains(&0) {
            return Err(EncodeError::invalid("WBXML string", "contains NUL"));
        }
        let at = self.strtbl.len() as u32;
        self.strtbl.extend_from_slice(&needle);
        Ok(at)
    }

    fn collect_literals(&mut self, e: &Element) -> Result<(), EncodeError> {
        if !self.dialect.tags.iter().any(|(_, n)| *n == e.name) {
            self.table_index(&e.name)?;
        }
        for (n, _) in &e.attributes {
            if !self.dialect.attr_starts.iter().any(|(_, an, _)| an == n) {
                self.table_index(n)?;
            }
        }
        for c in &e.children {
            if let Node::Element(child) = c {
                self.collect_literals(child)?;
            }
        }
        Ok(())
    }

    fn str_i(&mut self, s: &str) -> Result<(), EncodeError> {
        if s.as_bytes().contains(&0) {
            return Err(EncodeError::invalid("WBXML string", "contains NUL"));
        }
        self.out.push(token::STR_I);
        self.out.extend_from_slice(s.as_bytes());
        self.out.push(0);
        Ok(())
    }

    fn value_tokens(&mut self, v: &str) -> Result<(), EncodeError> {
        let mut pending = String::new();
        let mut i = 0;
        while i < v.len() {
            let best = self
                .dialect
                .attr_values
                .iter()
                .filter(|(_, frag)| !frag.is_empty() && v[i..].starts_with(frag))
                .max_by_key(|(_, frag)| frag.len());
            match best {
                Some((tok, frag)) => {
                    if !pending.is_empty() {
                        let p = std::mem::take(&mut pending);
                        self.str_i(&p)?;
                    }
                    self.out.push(*tok);
                    i += frag.len();
                }
                None => {
                    // Advance by one character.
                    let c = v[i..].chars().next().unwrap_or('\0');
                    pending.push(c);
                    i += c.len_utf8().max(1);
                }
            }
        }
        if !pending.is_empty() {
            self.str_i(&pending)?;
        }
        Ok(())
    }

    fn attribute(&mut self, name: &str, value: &str) -> Result<(), EncodeError> {
        let best = self
            .dialect
            .attr_starts
            .iter()
            .filter(|(_, n, prefix)| *n == name && value.starts_with(prefix))
            .max_by_key(|(_, _, prefix)| prefix.len());
        let rest = match best {
            Some((tok, _, prefix)) => {
                self.out.push(*tok);
                &value[prefix.len()..]
            }
            None => {
                let idx = self.table_index(name)?;
                self.out.push(token::LITERAL);
                write_uintvar(&mut self.out, idx);
                value
            }
        };
        if rest.is_empty() {
            return Ok(());
        }
        if self.dialect.date_attrs.contains(&name) {
            let d = encode_date(rest)?;
            self.out.push(token::OPAQUE);
            write_uintvar(&mut self.out, d.len() as u32);
            self.out.extend_from_slice(&d);
            return Ok(());
        }
        self.value_tokens(rest)
    }

    fn element(&mut self, e: &Element) -> Result<(), EncodeError> {
        let mut flags = 0;
        if !e.attributes.is_empty() {
            flags |= token::HAS_ATTRIBUTES;
        }
        let content: Vec<&Node> = e
            .children
            .iter()
            .filter(|n| !matches!(n, Node::Text(t) if t.is_empty()))
            .collect();
        if !content.is_empty() {
            flags |= token::HAS_CONTENT;
        }
        match self.dialect.tags.iter().find(|(_, n)| *n == e.name) {
            Some((tok, _)) => self.out.push(tok | flags),
            None => {
                let idx = self.table_index(&e.name)?;
                self.out.push(token::LITERAL | flags);
                write_uintvar(&mut self.out, idx);
            }
        }
        if !e.attributes.is_empty() {
            for (n, v) in &e.attributes {
                self.attribute(n, v)?;
            }
            self.out.push(token::END);
        }
        if !content.is_empty() {
            for c in content {
                match c {
                    Node::Element(child) => self.element(child)?,
                    Node::Text(t) => self.str_i(t)?,
                }
            }
            self.out.push(token::END);
        }
        Ok(())
    }
}

/// Encode `root` with `dialect`'s tables as WBXML `version` (use
/// [`VERSION_1_3`]), UTF-8.
pub fn encode(root: &Element, dialect: &Dialect, version: u8) -> Result<Vec<u8>, EncodeError> {
    let mut enc = Encoder {
        dialect,
        strtbl: Vec::new(),
        out: Vec::new(),
    };
    let public_literal = match dialect.id {
        DialectId::Literal(s) => Some(enc.table_index(s)?),
        DialectId::Known(..) => None,
    };
    enc.collect_literals(root)?;
    enc.element(root)?;
    let mut out = vec![version];
    match (dialect.id, public_literal) {
        (DialectId::Known(n, _), _) => write_uintvar(&mut out, n),
        (DialectId::Literal(_), Some(idx)) => {
            out.push(0);
            write_uintvar(&mut out, idx);
        }
        (DialectId::Literal(_), None) => write_uintvar(&mut out, PUBLIC_ID_UNKNOWN),
    }
    if version >= 1 {
        write_uintvar(&mut out, CHARSET_UTF8);
    }
    write_uintvar(&mut out, enc.strtbl.len() as u32);
    out.extend_from_slice(&enc.strtbl);
    out.extend_from_slice(&enc.out);
    Ok(out)
}

// ---------------------------------------------------------------------------
// Decoder

#[derive(Clone, Copy)]
enum Charset {
    Utf8,
    Latin1,
}

struct Decoder<'a, 'd> {
    r: Reader<'a>,
    dialect: &'d Dialect,
    strtbl: &'a [u8],
    strtbl_at: usize,
    charset: Charset,
    tag_page: u8,
    attr_page: u8,
}

fn is_ext(b: u8) -> bool {
    matches!(b, 0x40..=0x42 | 0x80..=0x82 | 0xC0..=0xC2)
}

impl<'a> Decoder<'a, '_> {
    fn string(&self, raw: &[u8], at: usize) -> Result<String, DecodeError> {
        match self.charset {
            Charset::Utf8 => String::from_utf8(raw.to_vec()).map_err(|e| {
                DecodeError::invalid(
                    Layer::Wbxml,
                    at + e.utf8_error().valid_up_to(),
                    "UTF-8 in a string",
                )
            }),
            Charset::Latin1 => Ok(raw.iter().map(|b| char::from(*b)).collect()),
        }
    }

    fn inline(&mut self) -> Result<String, DecodeError> {
        let at = self.r.pos();
        let raw = self.r.cstr("inline string")?;
        self.string(raw, at)
    }

    fn table(&mut self) -> Result<String, DecodeError> {
        let at = self.r.pos();
        let idx = read_uintvar(&mut self.r)? as usize;
        self.lookup(idx, at)
    }

    /// The string-table entry at `idx`; `at` is where the reference was.
    fn lookup(&self, idx: usize, at: usize) -> Result<String, DecodeError> {
        let Some(tail) = self.strtbl.get(idx..) else {
            return Err(DecodeError::invalid(
                Layer::Wbxml,
                at,
                format!(
                    "string table index {idx} beyond its {} octets",
                    self.strtbl.len()
                ),
            ));
        };
        let Some(end) = tail.iter().position(|b| *b == 0) else {
            return Err(DecodeError::invalid(
                Layer::Wbxml,
                at,
                format!("string table entry {idx} is not terminated"),
            ));
        };
        self.string(&tail[..end], self.strtbl_at + idx)
    }

    fn entity(&mut self) -> Result<char, DecodeError> {
        let at = self.r.pos();
        let cp = read_uintvar(&mut self.r)?;
        char::from_u32(cp).ok_or_else(|| {
            DecodeError::invalid(
                Layer::Wbxml,
                at,
                format!("entity U+{cp:X} is not a character"),
            )
        })
    }

    fn opaque(&mut self) -> Result<&'a [u8], DecodeError> {
        let len = read_uintvar(&mut self.r)? as usize;
        self.r.take(len, "opaque data")
    }

    fn skip_pi(&mut self) -> Result<(), DecodeError> {
        // PI = attrStart *attrValue END
        loop {
            let at = self.r.pos();
            match self.r.u8("processing instruction")? {
                token::END => return Ok(()),
                token::STR_I => {
                    self.r.cstr("inline string")?;
                }
                token::STR_T => {
                    self.table()?;
                }
                token::ENTITY => {
                    self.entity()?;
                }
                token::OPAQUE => {
                    self.opaque()?;
                }
                token::LITERAL => {
                    read_uintvar(&mut self.r)?;
                }
                token::SWITCH_PAGE => {
                    self.r.u8("code page")?;
                }
                b if is_ext(b) => {
                    return Err(DecodeError::unsupported(
                        Layer::Wbxml,
                        at,
                        format!("extension token {b:#04x}"),
                    ))
                }
                _ => {}
            }
        }
    }

    /// A piece of an attribute value given inline, by string table
    /// reference, as an entity, or as opaque data (a date, for the
    /// dialect's date attributes).
    fn attr_value_piece(
        &mut self,
        b: u8,
        at: usize,
        current: Option<&(String, String)>,
    ) -> Result<String, DecodeError> {
        Ok(match b {
            token::STR_I => self.inline()?,
            token::STR_T => self.table()?,
            token::ENTITY => self.entity()?.to_string(),
            _ => {
                let data = self.opaque()?;
                let is_date =
                    current.is_some_and(|(n, _)| self.dialect.date_attrs.contains(&n.as_str()));
                if is_date {
                    decode_date(data).map_err(|e| DecodeError::invalid(Layer::Wbxml, at, e))?
                } else {
                    String::from_utf8_lossy(data).into_owned()
                }
            }
        })
    }

    /// An attribute token the dialect's tables (code page 0) do not have.
    fn unknown_attr_token(&self, kind: &str, b: u8, at: usize) -> DecodeError {
        DecodeError::unsupported(
            Layer::Wbxml,
            at,
            format!(
                "attribute {kind} token {b:#04x} (code page {}) in {}",
                self.attr_page, self.dialect.name
            ),
        )
    }

    /// The attribute an attribute-start token (below 0x80) names, with the
    /// start of its value.
    fn attr_start(&self, b: u8, at: usize) -> Result<(String, String), DecodeError> {
        let start = (self.attr_page == 0)
            .then(|| self.dialect.attr_starts.iter().find(|(t, _, _)| *t == b))
            .flatten();
        let Some((_, name, prefix)) = start else {
            return Err(self.unknown_attr_token("start", b, at));
        };
        Ok(((*name).to_owned(), (*prefix).to_owned()))
    }

    /// The value fragment an attribute-value token (0x80 and up) stands for.
    fn attr_value_token(&self, b: u8, at: usize) -> Result<&'static str, DecodeError> {
        let value = (self.attr_page == 0)
            .then(|| self.dialect.attr_values.iter().find(|(t, _)| *t == b))
            .flatten();
        let Some((_, frag)) = value else {
            return Err(self.unknown_attr_token("value", b, at));
        };
        Ok(frag)
    }

    fn attributes(&mut self, el: &mut Element) -> Result<(), DecodeError> {
        let mut current: Option<(String, String)> = None;
        loop {
            let at = self.r.pos();
            let b = self.r.u8("attribute token")?;
            let piece = match b {
                token::END => break,
                token::SWITCH_PAGE => {
                    self.attr_page = self.r.u8("code page")?;
                    continue;
                }
                token::LITERAL => {
                    el.attributes.extend(current.take());
                    current = Some((self.table()?, String::new()));
                    continue;
                }
                token::STR_I | token::STR_T | token::ENTITY | token::OPAQUE => {
                    self.attr_value_piece(b, at, current.as_ref())?
                }
                b if is_ext(b) => {
                    return Err(DecodeError::unsupported(
                        Layer::Wbxml,
                        at,
                        format!("extension token {b:#04x}"),
                    ))
                }
                b if b < 0x80 => {
                    el.attributes.extend(current.take());
                    current = Some(self.attr_start(b, at)?);
                    continue;
                }
                _ => self.attr_value_token(b, at)?.to_owned(),
            };
            match current.as_mut() {
                Some((_, v)) => v.push_str(&piece),
                None => {
                    return Err(DecodeError::invalid(
                        Layer::Wbxml,
                        at,
                        "attribute value before any attribute name",
                    ))
                }
            }
        }
        el.attributes.extend(current.take());
        Ok(())
    }

    fn push_text(el: &mut Element, s: String) {
        if let Some(Node::Text(t)) = el.children.last_mut() {
            t.push_str(&s);
        } else {
            el.children.push(Node::Text(s));
        }
    }

    fn content(&mut self, el: &mut Element, depth: usize) -> Result<(), DecodeError> {
        loop {
            let at = self.r.pos();
            let b = self
                .r
                .peek()
                .ok_or_else(|| self.r.truncated("element content", 1))?;
            match b {
                token::END => {
                    self.r.u8("end")?;
                    return Ok(());
                }
                token::SWITCH_PAGE => {
                    self.r.u8("switch page")?;
                    self.tag_page = self.r.u8("code page")?;
                }
                token::STR_I => {
                    self.r.u8("str_i")?;
                    let s = self.inline()?;
                    Self::push_text(el, s);
                }
                token::STR_T => {
                    self.r.u8("str_t")?;
                    let s = self.table()?;
                    Self::push_text(el, s);
                }
                token::ENTITY => {
                    self.r.u8("entity")?;
                    let c = self.entity()?;
                    Self::push_text(el, c.to_string());
                }
                token::OPAQUE => {
                    self.r.u8("opaque")?;
                    let data = self.opaque()?;
                    Self::push_text(el, String::from_utf8_lossy(data).into_owned());
                }
                token::PI => {
                    self.r.u8("pi")?;
                    self.skip_pi()?;
                }
                b if is_ext(b) => {
                    return Err(DecodeError::unsupported(
                        Layer::Wbxml,
                        at,
                        format!("extension token {b:#04x}"),
                    ))
                }
                _ => {
                    let child = self.element(depth + 1)?;
                    el.children.push(Node::Element(child));
                }
            }
        }
    }

    fn element(&mut self, depth: usize) -> Result<Element, DecodeError> {
        if depth > MAX_DEPTH {
            return Err(DecodeError::unsupported(
                Layer::Wbxml,
                self.r.pos(),
                format!("nesting deeper than {MAX_DEPTH} elements"),
            ));
        }
        let at = self.r.pos();
        let b = self.r.u8("tag")?;
        let id = b & 0x3F;
        let name = if id == token::LITERAL {
            self.table()?
        } else if id < 5 || is_ext(b) || b == token::PI || b == token::STR_T || b == token::OPAQUE {
            return Err(DecodeError::invalid(
                Layer::Wbxml,
                at,
                format!("expected a tag, found global token {b:#04x}"),
            ));
        } else {
            let found = (self.tag_page == 0)
                .then(|| self.dialect.tags.iter().find(|(t, _)| *t == id))
                .flatten();
            match found {
                Some((_, n)) => (*n).to_owned(),
                None => {
                    return Err(DecodeError::unsupported(
                        Layer::Wbxml,
                        at,
                        format!(
                            "tag token {id:#04x} (code page {}) in {}",
                            self.tag_page, self.dialect.name
                        ),
                    ))
                }
            }
        };
        let mut el = Element {
            name,
            offset: at,
            ..Element::default()
        };
        if b & token::HAS_ATTRIBUTES != 0 {
            self.attributes(&mut el)?;
        }
        if b & token::HAS_CONTENT != 0 {
            self.content(&mut el, depth)?;
        }
        Ok(el)
    }
}

/// The character set a document declares (version 1 and up; UTF-8
/// before): its MIBenum and how its strings are read.
fn read_charset(r: &mut Reader<'_>, version: u8) -> Result<(u32, Charset), DecodeError> {
    let charset_at = r.pos();
    let charset_num = if version >= 1 {
        read_uintvar(r)?
    } else {
        CHARSET_UTF8
    };
    let charset = match charset_num {
        0 | 106 => Charset::Utf8,
        3 | 4 => Charset::Latin1,
        n => {
            return Err(r.error_at(
                charset_at,
                ErrorKind::Unsupported(format!("character set MIBenum {n}")),
            ))
        }
    };
    Ok((charset_num, charset))
}

/// The string table: where it starts, and its bytes.
fn read_string_table<'a>(r: &mut Reader<'a>) -> Result<(usize, &'a [u8]), DecodeError> {
    let len_at = r.pos();
    let len = read_uintvar(r)? as usize;
    if len > r.remaining() {
        return Err(r.error_at(
            len_at,
            ErrorKind::BadLength(format!(
                "string table of {len} octets but only {} follow",
                r.remaining()
            )),
        ));
    }
    let strtbl_at = r.pos();
    Ok((strtbl_at, r.take(len, "string table")?))
}

/// Refuses a document whose public identifier is not the dialect's (an
/// unknown identifier is accepted).
fn check_public_id(
    public_id: &PublicId,
    dialect: &Dialect,
    pid_at: usize,
) -> Result<(), DecodeError> {
    let matches = match (public_id, dialect.id) {
        (PublicId::Known(PUBLIC_ID_UNKNOWN), _) => true,
        (PublicId::Known(n), DialectId::Known(m, _)) => *n == m,
        (PublicId::Literal(s), DialectId::Literal(l)) => s == l,
        (PublicId::Literal(s), DialectId::Known(_, l)) => s == l,
        (PublicId::Known(_), DialectId::Literal(_)) => false,
    };
    if !matches {
        return Err(DecodeError::unsupported(
            Layer::Wbxml,
            pid_at,
            format!("public identifier {public_id:?}, expected {}", dialect.name),
        ));
    }
    Ok(())
}

impl Decoder<'_, '_> {
    /// Skips processing instructions.
    fn skip_pis(&mut self) -> Result<(), DecodeError> {
        while self.r.peek() == Some(token::PI) {
            self.r.u8("pi")?;
            self.skip_pi()?;
        }
        Ok(())
    }
}

/// Decode a WBXML document with `dialect`'s tables. The declared public
/// identifier must be the dialect's, or "unknown" (0x01), which some senders
/// use when the content type already says what the document is.
pub fn decode(bytes: &[u8], dialect: &Dialect) -> Result<Document, DecodeError> {
    let mut r = Reader::new(bytes, Layer::Wbxml);
    let version = r.u8("version")?;
    if version > 0x03 {
        return Err(r.error_at(
            0,
            ErrorKind::BadVersion {
                found: u32::from(version),
                expected: "WBXML 1.0 to 1.3 (version octet 0x00 to 0x03)",
            },
        ));
    }
    let pid_at = r.pos();
    let pid = read_uintvar(&mut r)?;
    let pid_index = if pid == 0 {
        Some(read_uintvar(&mut r)? as usize)
    } else {
        None
    };
    let (charset_num, charset) = read_charset(&mut r, version)?;
    let (strtbl_at, strtbl) = read_string_table(&mut r)?;
    let mut d = Decoder {
        r,
        dialect,
        strtbl,
        strtbl_at,
        charset,
        tag_page: 0,
        attr_page: 0,
    };
    let public_id = match pid_index {
        Some(idx) => PublicId::Literal(d.lookup(idx, pid_at)?),
        None => PublicId::Known(pid),
    };
    check_public_id(&public_id, dialect, pid_at)?;
    d.skip_pis()?;
    let root = d.element(0)?;
    d.skip_pis()?;
    d.r.finish()?;
    Ok(Document {
        version,
        public_id,
        charset: charset_num,
        root,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEST: Dialect = Dialect {
        name: "test",
        id: DialectId::Literal("-//TEST//DTD T 1.0//EN"),
        tags: &[(0x05, "a"), (0x06, "b")],
        attr_starts: &[(0x05, "x", ""), (0x06, "x", "http://"), (0x07, "when", "")],
        attr_values: &[(0x85, ".com/"), (0x86, ".com")],
        date_attrs: &["when"],
    };

    #[test]
    fn dates() {
        assert_eq!(
            encode_date("1999-06-25T15:23:15Z").unwrap(),
            vec![0x19, 0x99, 0x06, 0x25, 0x15, 0x23, 0x15]
        );
        assert_eq!(
            encode_date("1999-06-30T00:00:00Z").unwrap(),
            vec![0x19, 0x99, 0x06, 0x30]
        );
        assert_eq!(
            decode_date(&[0x19, 0x99, 0x06, 0x30]).unwrap(),
            "1999-06-30T00:00:00Z"
        );
        assert!(decode_date(&[0x1A]).is_err());
        assert!(decode_date(&[]).is_err());
        assert!(encode_date("1999-06-30").is_err());
        assert_eq!(iso_date(930_324_195), "1999-06-25T15:23:15Z");
        assert_eq!(parse_iso_date("1999-06-25T15:23:15Z"), Some(930_324_195));
        assert_eq!(parse_iso_date("1999-02-30T15:23:15Z"), None);
    }

    #[test]
    fn literals_tokens_and_round_trip() {
        let root = Element::new("a")
            .attr("x", "http://ex.com/p.com")
            .attr("unknown", "v")
            .attr("when", "2024-01-02T03:04:05Z")
            .child(Element::new("zzz").text("hi"))
            .child(Element::new("b"))
            .text("tail");
        let b = encode(&root, &TEST, VERSION_1_3).unwrap();
        let d = decode(&b, &TEST).unwrap();
        assert_eq!(
            d.public_id,
            PublicId::Literal("-//TEST//DTD T 1.0//EN".into())
        );
        assert_eq!(d.root.name, "a");
        assert_eq!(d.root.attributes, root.attributes);
        let names: Vec<&str> = d.root.elements().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["zzz", "b"]);
        assert_eq!(d.root.text_content(), "tail");
        // ".com/" preferred over ".com" where both match.
        let i = b.windows(3).position(|w| w == [0x06, 0x03, b'e']).unwrap();
        assert_eq!(
            &b[i..i + 8],
            &[0x06, 0x03, b'e', b'x', 0x00, 0x85, 0x03, b'p']
        );
    }

    #[test]
    fn rejects_bad_documents() {
        assert!(decode(&[], &TEST).is_err());
        assert!(decode(&[0x04, 0x01, 0x6A, 0x00, 0x05], &TEST).is_err()); // version
        assert!(decode(&[0x03, 0x01, 0x6A, 0x05, 0x00], &TEST).is_err()); // strtbl too long
        assert!(decode(&[0x03, 0x01, 0x6A, 0x00, 0x45], &TEST).is_err()); // missing END
        assert!(decode(&[0x03, 0x01, 0x6A, 0x00, 0x07], &TEST).is_err()); // unknown tag
        assert!(decode(&[0x03, 0x01, 0x6A, 0x00, 0x05, 0x05], &TEST).is_err()); // trailing
        assert!(decode(&[0x03, 0x01, 0x6A, 0x00, 0x44, 0x09, 0x01], &TEST).is_err()); // LITERAL_C past table
        assert!(decode(&[0x03, 0x01, 0x07, 0x00, 0x05], &TEST).is_err()); // charset
        assert!(decode(&[0x03, 0x05, 0x6A, 0x00, 0x05], &TEST).is_err()); // public id
                                                                          // Deep nesting is refused, not a stack overflow.
        let mut deep = vec![0x03, 0x01, 0x6A, 0x00];
        deep.extend(std::iter::repeat_n(0x45, 10_000));
        assert!(decode(&deep, &TEST).is_err());
    }

    #[test]
    fn entities_table_strings_and_pis() {
        // <a>[PI x END] STR_T(0) ENTITY(0xE9) </a>
        let doc = [
            0x03, 0x01, 0x6A, 0x03, b'h', b'i', 0x00, 0x43, 0x05, 0x01, 0x45, 0x83, 0x00, 0x02,
            0x81, 0x69, 0x01,
        ];
        let d = decode(&doc, &TEST).unwrap();
        assert_eq!(d.root.text_content(), "hié");
    }
}
