//! Service Indication (WAP-167-ServiceInd-20010731-a): the `<si>` document,
//! its WBXML token tables (§9.3, public identifier 0x05) and the mapping to
//! video attributes (the `href` is the share URL, the text is the title).

use crate::attributes::VideoAttributes;

use super::document::Element;
use super::error::{DecodeError, EncodeError, Layer};
use super::wbxml::{self, Dialect, DialectId};

/// WBXML public identifier of SI 1.0.
pub(crate) const PUBLIC_ID: u32 = 0x05;
/// Its string form.
pub(crate) const PUBLIC_ID_STR: &str = "-//WAPFORUM//DTD SI 1.0//EN";

/// 9999-12-31T23:59:59Z, the latest date an SI can carry.
pub(crate) const LATEST_DATE_UNIX: u64 = 253_402_300_799;

/// The SI token tables (WAP-167 §9.3.1 tags, §9.3.2 attribute starts,
/// §9.3.3 attribute values).
pub const DIALECT: Dialect = Dialect {
    name: "Service Indication 1.0",
    id: DialectId::Known(PUBLIC_ID, PUBLIC_ID_STR),
    tags: &[
        (0x05, "si"),
        (0x06, "indication"),
        (0x07, "info"),
        (0x08, "item"),
    ],
    attr_starts: &[
        (0x05, "action", "signal-none"),
        (0x06, "action", "signal-low"),
        (0x07, "action", "signal-medium"),
        (0x08, "action", "signal-high"),
        (0x09, "action", "delete"),
        (0x0A, "created", ""),
        (0x0B, "href", ""),
        (0x0C, "href", "http://"),
        (0x0D, "href", "http://www."),
        (0x0E, "href", "https://"),
        (0x0F, "href", "https://www."),
        (0x10, "si-expires", ""),
        (0x11, "si-id", ""),
        (0x12, "class", ""),
    ],
    attr_values: &[
        (0x85, ".com/"),
        (0x86, ".edu/"),
        (0x87, ".net/"),
        (0x88, ".org/"),
    ],
    date_attrs: &["created", "si-expires"],
};

/// The `action` attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SiAction {
    /// `signal-none`
    SignalNone,
    /// `signal-low`
    SignalLow,
    /// `signal-medium` (the default)
    SignalMedium,
    /// `signal-high`
    SignalHigh,
    /// `delete`
    Delete,
}

impl SiAction {
    /// The attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SignalNone => "signal-none",
            Self::SignalLow => "signal-low",
            Self::SignalMedium => "signal-medium",
            Self::SignalHigh => "signal-high",
            Self::Delete => "delete",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [
            Self::SignalNone,
            Self::SignalLow,
            Self::SignalMedium,
            Self::SignalHigh,
            Self::Delete,
        ]
        .into_iter()
        .find(|a| a.as_str() == s)
    }
}

/// A Service Indication (the `<indication>` element; `<info>` items are
/// ignored).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServiceIndication {
    /// `href`: the URI of the service.
    pub href: Option<String>,
    /// `si-id`.
    pub si_id: Option<String>,
    /// `created`, `YYYY-MM-DDThh:mm:ssZ`.
    pub created: Option<String>,
    /// `si-expires`, `YYYY-MM-DDThh:mm:ssZ`.
    pub expires: Option<String>,
    /// `action`.
    pub action: Option<SiAction>,
    /// `class`.
    pub class: Option<String>,
    /// The text shown to the user.
    pub text: String,
}

impl ServiceIndication {
    /// The `<si>` element tree.
    pub fn to_element(&self) -> Element {
        let mut ind = Element::new("indication");
        let attrs = [
            ("href", self.href.as_deref()),
            ("si-id", self.si_id.as_deref()),
            ("created", self.created.as_deref()),
            ("si-expires", self.expires.as_deref()),
            ("action", self.action.map(SiAction::as_str)),
            ("class", self.class.as_deref()),
        ];
        for (n, v) in attrs {
            if let Some(v) = v {
                ind = ind.attr(n, v);
            }
        }
        if !self.text.is_empty() {
            ind = ind.text(self.text.clone());
        }
        Element::new("si").child(ind)
    }

    /// Read an `<si>` element tree.
    pub(crate) fn from_element(root: &Element) -> Result<Self, DecodeError> {
        root.expect_root("si", Layer::Si)?;
        let ind = root
            .elements()
            .find(|e| e.name == "indication")
            .ok_or_else(|| {
                DecodeError::invalid(Layer::Si, root.offset, "<si> without <indication>")
            })?;
        let text = ind
            .text_content()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        Ok(Self {
            href: ind.get("href").map(str::to_owned),
            si_id: ind.get("si-id").map(str::to_owned),
            created: ind.get("created").map(str::to_owned),
            expires: ind.get("si-expires").map(str::to_owned),
            action: ind.parse_attr("action", Layer::Si, SiAction::parse)?,
            class: ind.get("class").map(str::to_owned),
            text,
        })
    }

    /// WBXML (public identifier 0x05, UTF-8) of the given version octet.
    pub fn encode_wbxml(&self, version: u8) -> Result<Vec<u8>, EncodeError> {
        wbxml::encode(&self.to_element(), &DIALECT, version)
    }

    /// Decode SI WBXML (also accepts public identifier 0x01 "unknown").
    pub fn decode_wbxml(bytes: &[u8]) -> Result<Self, DecodeError> {
        let doc = wbxml::decode(bytes, &DIALECT)?;
        Self::from_element(&doc.root)
    }

    /// The SI announcing a share: `href` is the share URL (else the VOD or
    /// first live URL), the text the title (else "Video from SENDER", else
    /// "Shared video"), `si-id` the id, `si-expires` the expiry (clamped to
    /// the latest date an SI can carry, 9999-12-31T23:59:59Z),
    /// `action="signal-medium"`.
    pub fn from_attributes(a: &VideoAttributes) -> Result<Self, EncodeError> {
        let href = a
            .share_url
            .clone()
            .or_else(|| a.vod_url.clone())
            .or_else(|| a.live_urls.first().cloned())
            .ok_or_else(|| EncodeError::invalid("share URL", "a WAP Push needs a URL"))?;
        let text = match (&a.title, &a.sender) {
            (Some(t), _) => t.clone(),
            (None, Some(s)) => format!("Video from {s}"),
            (None, None) => "Shared video".to_owned(),
        };
        Ok(Self {
            href: Some(href),
            si_id: (!a.id.is_empty()).then(|| a.id.clone()),
            created: None,
            // SI dates have four-digit years: later expiries are clamped.
            expires: a
                .expires_unix
                .map(|e| wbxml::iso_date(e.min(LATEST_DATE_UNIX))),
            action: Some(SiAction::SignalMedium),
            class: None,
            text,
        })
    }

    /// Video attributes from the SI: share URL, title, id and expiry.
    pub fn to_attributes(&self) -> VideoAttributes {
        VideoAttributes {
            id: self.si_id.clone().unwrap_or_default(),
            title: (!self.text.is_empty()).then(|| self.text.clone()),
            share_url: self.href.clone(),
            expires_unix: self.expires.as_deref().and_then(wbxml::parse_iso_date),
            ..VideoAttributes::default()
        }
    }
}
