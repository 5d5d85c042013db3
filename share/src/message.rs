//! What a share message carries: the attributes of the shared video as
//! they were when it was shared, with the share link, the poster and the
//! expiry; and, for the WAP push proxy gateway, the same as an SI or SL
//! document.

use sharecast_formats::attributes::VideoAttributes;
use sharecast_formats::share::si::ServiceIndication;
use sharecast_formats::share::sl::ServiceLoading;
use sharecast_formats::share::ShareFormat;
use sharecast_store::{now_ms, Store};

use crate::shares::ShareRow;
use sharecast_formats::share::xml::escape_markup;

/// The attributes a share message carries: the snapshot taken when the
/// share was made, plus the share link, poster and expiry. `None` when the
/// share is gone, revoked or expired.
pub(crate) async fn message_attributes(
    store: &Store,
    share_id: &str,
    public: &str,
) -> anyhow::Result<Option<VideoAttributes>> {
    let Some(s) = store.share(share_id).await? else {
        return Ok(None);
    };
    let s = ShareRow::new(s, public);
    if !s.open_at(now_ms()) {
        return Ok(None);
    }
    let mut a = s.attributes;
    a.share_url = Some(s.share.url.clone());
    // A private live recording's poster needs a playback token: rather than
    // a second copy of the token (and one more SMS part), the message then
    // carries no thumbnail; the share page shows the poster.
    let private_live = s.share.kind == "live" && a.live_urls.iter().any(|u| u.contains("?token="));
    a.thumbnail_url =
        (!private_live).then(|| format!("{public}/api/v1/assets/{}/poster.jpg", s.share.asset_id));
    a.expires_unix = s.share.expires_unix_ms.map(|e| (e / 1000) as u64);
    Ok(Some(a))
}

/// SI or SL as XML for Kannel's PPG, built from the same structures our
/// WBXML encoder uses: (content type, document).
pub(crate) fn wap_document(
    attrs: &VideoAttributes,
    format: ShareFormat,
) -> Result<(&'static str, String), String> {
    match format {
        ShareFormat::WapSi => {
            let si = ServiceIndication::from_attributes(attrs).map_err(|e| e.to_string())?;
            let mut a = String::new();
            if let Some(h) = &si.href {
                a.push_str(&format!(" href=\"{}\"", escape_markup(h)));
            }
            if let Some(id) = &si.si_id {
                a.push_str(&format!(" si-id=\"{}\"", escape_markup(id)));
            }
            if let Some(e) = &si.expires {
                a.push_str(&format!(" si-expires=\"{}\"", escape_markup(e)));
            }
            if let Some(act) = si.action {
                a.push_str(&format!(" action=\"{}\"", act.as_str()));
            }
            Ok((
                "text/vnd.wap.si",
                format!(
                    "<?xml version=\"1.0\"?>\n<!DOCTYPE si PUBLIC \"-//WAPFORUM//DTD SI 1.0//EN\" \"http://www.wapforum.org/DTD/si.dtd\">\n<si><indication{a}>{}</indication></si>\n",
                    escape_markup(&si.text)
                ),
            ))
        }
        ShareFormat::WapSl => {
            let sl = ServiceLoading::from_attributes(attrs).map_err(|e| e.to_string())?;
            Ok((
                "text/vnd.wap.sl",
                format!(
                    "<?xml version=\"1.0\"?>\n<!DOCTYPE sl PUBLIC \"-//WAPFORUM//DTD SL 1.0//EN\" \"http://www.wapforum.org/DTD/sl.dtd\">\n<sl href=\"{}\"/>\n",
                    escape_markup(&sl.href)
                ),
            ))
        }
        other => Err(format!("{other} is not sent through the PPG")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn si_document_for_the_ppg_escapes_and_carries_the_link() {
        let attrs = VideoAttributes {
            id: "ab".into(),
            title: Some("A & B".into()),
            share_url: Some("http://h/s/tok?x=1&y=2".into()),
            ..VideoAttributes::default()
        };
        let (ct, doc) = wap_document(&attrs, ShareFormat::WapSi).unwrap();
        assert_eq!(ct, "text/vnd.wap.si");
        assert!(doc.contains("href=\"http://h/s/tok?x=1&amp;y=2\""), "{doc}");
        assert!(doc.contains(">A &amp; B</indication>"), "{doc}");
        assert!(wap_document(&attrs, ShareFormat::Tlv).is_err());
    }
}
