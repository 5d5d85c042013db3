//! Which links a recipient may be offered (see the [module
//! documentation](super)): web links only, `rtsp`/`rtsps` for live
//! streams, and at least one link to the video.

use sharecast_formats::attributes::VideoAttributes;

/// Schemes of the share page, VOD files, renditions and poster.
pub const WEB_SCHEMES: [&str; 2] = ["http", "https"];
/// Schemes of live URLs.
pub const LIVE_SCHEMES: [&str; 4] = ["http", "https", "rtsp", "rtsps"];
/// Longest link accepted, characters.
pub const MAX_LINK_LEN: usize = 2048;

/// Why a message's links are refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// No share page, VOD, rendition or live URL.
    #[error("no link to the video")]
    NoLink,
    /// A link a recipient must not be offered.
    #[error("{field} {url:?}: {why}")]
    Unsafe {
        /// Which attribute (`share_url`, `vod_url`, `live_urls[0]`, …).
        field: String,
        /// The link (cut to 80 characters).
        url: String,
        /// What is wrong with it.
        why: String,
    },
}

/// Check one link: an allowed scheme, `://`, a host, no whitespace or
/// control characters.
pub fn check_link(url: &str, schemes: &[&str]) -> Result<(), String> {
    if url.len() > MAX_LINK_LEN {
        return Err(format!("longer than {MAX_LINK_LEN} characters"));
    }
    if let Some(c) = url.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("contains the character {c:?}"));
    }
    let Some((scheme, rest)) = url.split_once(':') else {
        return Err("no scheme".into());
    };
    let scheme = scheme.to_ascii_lowercase();
    if !schemes.contains(&scheme.as_str()) {
        return Err(format!(
            "scheme {scheme:?} is not allowed here (only {})",
            schemes.join(", ")
        ));
    }
    let Some(after) = rest.strip_prefix("//") else {
        return Err("no \"//\" after the scheme".into());
    };
    let authority = after.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or("");
    let host = if host.starts_with('[') {
        host.split(']').next().unwrap_or("").trim_start_matches('[')
    } else {
        host.split(':').next().unwrap_or("")
    };
    if host.is_empty() {
        return Err("no host".into());
    }
    if authority.contains('\\') {
        return Err("a backslash in the host".into());
    }
    Ok(())
}

/// Check every link of decoded attributes (see the module documentation).
pub fn check_links(a: &VideoAttributes) -> Result<(), LinkError> {
    let cut = |u: &str| u.chars().take(80).collect::<String>();
    let mut any = false;
    let mut check = |field: String, url: &str, schemes: &[&str], counts: bool| {
        if url.is_empty() {
            return Ok(());
        }
        check_link(url, schemes).map_err(|why| LinkError::Unsafe {
            field,
            url: cut(url),
            why,
        })?;
        any |= counts;
        Ok(())
    };
    if let Some(u) = &a.share_url {
        check("share_url".into(), u, &WEB_SCHEMES, true)?;
    }
    if let Some(u) = &a.vod_url {
        check("vod_url".into(), u, &WEB_SCHEMES, true)?;
    }
    for (i, u) in a.live_urls.iter().enumerate() {
        check(format!("live_urls[{i}]"), u, &LIVE_SCHEMES, true)?;
    }
    for r in &a.renditions {
        check(format!("rendition {}", r.name), &r.url, &WEB_SCHEMES, true)?;
    }
    if let Some(u) = &a.thumbnail_url {
        check("thumbnail_url".into(), u, &WEB_SCHEMES, false)?;
    }
    if any {
        Ok(())
    } else {
        Err(LinkError::NoLink)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_web_links_with_a_host() {
        for ok in [
            "https://sc.example/s/X",
            "http://127.0.0.1:8080/vod/a/source.mp4",
            "HTTPS://[::1]:8080/x?y=z#f",
            "https://user@host/x",
        ] {
            assert_eq!(check_link(ok, &WEB_SCHEMES), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("javascript:alert(1)", "scheme \"javascript\""),
            ("JavaScript://%0aalert(1)", "scheme \"javascript\""),
            ("file:///etc/passwd", "scheme \"file\""),
            ("data:text/html,<b>x</b>", "scheme \"data\""),
            ("rtsp://h/live/x", "scheme \"rtsp\""),
            ("https:/no-slashes", "no \"//\""),
            ("https:///path", "no host"),
            ("https://:8080/x", "no host"),
            ("https://a@/x", "no host"),
            ("https://h/x y", "character ' '"),
            ("https://h/\u{7}", "character"),
            ("https://h\\@evil/x", "backslash"),
            ("no-scheme", "no scheme"),
        ] {
            let e = check_link(bad, &WEB_SCHEMES).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
        assert!(check_link("rtsps://h:322/live/x", &LIVE_SCHEMES).is_ok());
        assert!(check_link(&format!("https://h/{}", "a".repeat(3000)), &WEB_SCHEMES).is_err());
    }

    #[test]
    fn a_message_needs_a_link_and_only_safe_ones() {
        let mut a = VideoAttributes::default();
        assert_eq!(check_links(&a), Err(LinkError::NoLink));
        // A poster alone is not a link to the video.
        a.thumbnail_url = Some("https://h/p.jpg".into());
        assert_eq!(check_links(&a), Err(LinkError::NoLink));
        a.live_urls = vec!["rtsp://h:8554/live/x?token=t".into()];
        assert_eq!(check_links(&a), Ok(()));
        a.vod_url = Some("file:///sdcard/x.mp4".into());
        match check_links(&a) {
            Err(LinkError::Unsafe { field, why, .. }) => {
                assert_eq!(field, "vod_url");
                assert!(why.contains("file"), "{why}");
            }
            other => panic!("{other:?}"),
        }
        a.vod_url = None;
        a.thumbnail_url = Some("javascript:x".into());
        assert!(matches!(check_links(&a), Err(LinkError::Unsafe { .. })));
        a.thumbnail_url = None;
        a.live_urls.push("javascript:alert(1)".into());
        let e = check_links(&a).unwrap_err().to_string();
        assert!(e.contains("live_urls[1]"), "{e}");
    }
}
