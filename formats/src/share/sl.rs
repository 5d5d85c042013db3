//! Service Loading (WAP-168-ServiceLoad-20010731-a): the `<sl>` document,
//! its WBXML token tables (§9.3, public identifier 0x06) and the mapping to
//! video attributes (the `href` is the share URL).

use crate::attributes::VideoAttributes;

use super::document::Element;
use super::error::{DecodeError, EncodeError, Layer};
use super::wbxml::{self, Dialect, DialectId};

/// WBXML public identifier of SL 1.0.
pub(crate) const PUBLIC_ID: u32 = 0x06;
/// Its string form.
pub(crate) const PUBLIC_ID_STR: &str = "-//WAPFORUM//DTD SL 1.0//EN";

/// The SL token tables (WAP-168 §9.3).
pub const DIALECT: Dialect = Dialect {
    name: "Service Loading 1.0",
    id: DialectId::Known(PUBLIC_ID, PUBLIC_ID_STR),
    tags: &[(0x05, "sl")],
    attr_starts: &[
        (0x05, "action", "execute-low"),
        (0x06, "action", "execute-high"),
        (0x07, "action", "cache"),
        (0x08, "href", ""),
        (0x09, "href", "http://"),
        (0x0A, "href", "http://www."),
        (0x0B, "href", "https://"),
        (0x0C, "href", "https://www."),
    ],
    attr_values: &[
        (0x85, ".com/"),
        (0x86, ".edu/"),
        (0x87, ".net/"),
        (0x88, ".org/"),
    ],
    date_attrs: &[],
};

/// The `action` attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlAction {
    /// `execute-low` (the default)
    ExecuteLow,
    /// `execute-high`
    ExecuteHigh,
    /// `cache`
    Cache,
}

impl SlAction {
    /// The attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ExecuteLow => "execute-low",
            Self::ExecuteHigh => "execute-high",
            Self::Cache => "cache",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [Self::ExecuteLow, Self::ExecuteHigh, Self::Cache]
            .into_iter()
            .find(|a| a.as_str() == s)
    }
}

/// A Service Loading document.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServiceLoading {
    /// `href`: the URI to load.
    pub href: String,
    /// `action`.
    pub action: Option<SlAction>,
}

impl ServiceLoading {
    /// The `<sl>` element.
    pub fn to_element(&self) -> Element {
        let mut e = Element::new("sl").attr("href", self.href.clone());
        if let Some(a) = self.action {
            e = e.attr("action", a.as_str());
        }
        e
    }

    /// Read an `<sl>` element.
    pub(crate) fn from_element(root: &Element) -> Result<Self, DecodeError> {
        root.expect_root("sl", Layer::Sl)?;
        let href = root
            .get("href")
            .ok_or_else(|| DecodeError::invalid(Layer::Sl, root.offset, "<sl> without href"))?
            .to_owned();
        let action = root.parse_attr("action", Layer::Sl, SlAction::parse)?;
        Ok(Self { href, action })
    }

    /// WBXML (public identifier 0x06, UTF-8) of the given version octet.
    pub fn encode_wbxml(&self, version: u8) -> Result<Vec<u8>, EncodeError> {
        wbxml::encode(&self.to_element(), &DIALECT, version)
    }

    /// Decode SL WBXML (also accepts public identifier 0x01 "unknown").
    pub fn decode_wbxml(bytes: &[u8]) -> Result<Self, DecodeError> {
        let doc = wbxml::decode(bytes, &DIALECT)?;
        Self::from_element(&doc.root)
    }

    /// The SL for a share: the share URL (else the VOD URL), no action (the
    /// handset's default, execute-low, asks the user).
    pub fn from_attributes(a: &VideoAttributes) -> Result<Self, EncodeError> {
        let href = a
            .share_url
            .clone()
            .or_else(|| a.vod_url.clone())
            .ok_or_else(|| EncodeError::invalid("share URL", "a WAP Push needs a URL"))?;
        Ok(Self { href, action: None })
    }

    /// Video attributes from the SL: the share URL only.
    pub fn to_attributes(&self) -> VideoAttributes {
        VideoAttributes {
            share_url: Some(self.href.clone()),
            ..VideoAttributes::default()
        }
    }
}
