//! What a terminal type can play: one rule for the whole product (the
//! catalogue, resumes across terminals, hand-offs between platforms and the
//! on-demand transcodes that fill the gaps all ask it).
//!
//! A terminal type plays a rendition when it decodes every one of the
//! rendition's codecs (RFC 6381 prefixes) and shows its picture height:
//!
//! | type | codecs | largest height |
//! | --- | --- | --- |
//! | `tv` | H.264, H.265, AAC, Opus | 2160 |
//! | `mobile` | H.264, H.265, AAC, Opus | 1920 |
//! | `web`, `other` (and unknown types) | H.264, AAC | 1080 |

use crate::attributes::{Rendition, VideoAttributes};

/// The terminal types a user's terminal may have.
pub const TERMINAL_TYPES: [&str; 4] = ["mobile", "web", "tv", "other"];

/// The RFC 6381 codec prefixes a terminal type decodes.
fn decodable(terminal_type: &str) -> &'static [&'static str] {
    match terminal_type {
        "tv" | "mobile" => &["avc1", "avc3", "hvc1", "hev1", "mp4a", "opus", "Opus"],
        // Browsers (and unknown players) decode H.264 and AAC everywhere.
        _ => &["avc1", "avc3", "mp4a"],
    }
}

/// Whether `terminal_type` plays media of these RFC 6381 `codecs` whose
/// picture is `height` lines high (0 when unknown or audio only).
pub fn terminal_can_play(terminal_type: &str, codecs: &[String], height: u32) -> bool {
    let allowed = decodable(terminal_type);
    height <= terminal_max_height(terminal_type)
        && codecs
            .iter()
            .all(|c| allowed.iter().any(|a| c.starts_with(a)))
}

/// The largest picture height a terminal type shows.
pub fn terminal_max_height(terminal_type: &str) -> u32 {
    match terminal_type {
        "tv" => 2160,
        "mobile" => 1920,
        _ => 1080,
    }
}

/// The first rendition of `attrs` that `terminal_type` can play.
pub fn playable_rendition(attrs: &VideoAttributes, terminal_type: &str) -> Option<Rendition> {
    attrs
        .renditions
        .iter()
        .find(|r| terminal_can_play(terminal_type, &r.codecs, r.height))
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codecs(list: &[&str]) -> Vec<String> {
        list.iter().map(|c| c.to_string()).collect()
    }

    fn rendition(name: &str, list: &[&str], height: u32) -> Rendition {
        Rendition {
            name: name.into(),
            codecs: codecs(list),
            height,
            ..Rendition::default()
        }
    }

    #[test]
    fn browsers_play_h264_and_aac_only() {
        let h264 = codecs(&["avc1.64001f", "mp4a.40.2"]);
        let h265 = codecs(&["hvc1.1.6.L93.B0", "mp4a.40.2"]);
        let opus = codecs(&["avc1.64001f", "opus"]);
        for t in ["web", "other", "unknown"] {
            assert!(terminal_can_play(t, &h264, 720), "{t}");
            assert!(!terminal_can_play(t, &h265, 720), "{t}");
            assert!(!terminal_can_play(t, &opus, 720), "{t}");
        }
        for t in ["tv", "mobile"] {
            assert!(terminal_can_play(t, &h265, 1080), "{t}");
            assert!(terminal_can_play(t, &opus, 1080), "{t}");
            assert!(
                !terminal_can_play(t, &codecs(&["vp09.00.10.08"]), 1080),
                "{t}"
            );
        }
    }

    #[test]
    fn each_type_shows_pictures_up_to_its_height() {
        let h264 = codecs(&["avc1.64001f"]);
        for (t, max) in [
            ("tv", 2160),
            ("mobile", 1920),
            ("web", 1080),
            ("other", 1080),
        ] {
            assert_eq!(terminal_max_height(t), max);
            assert!(terminal_can_play(t, &h264, max), "{t}");
            assert!(!terminal_can_play(t, &h264, max + 1), "{t}");
        }
        // Every declared type has a rule.
        assert!(TERMINAL_TYPES
            .iter()
            .all(|t| terminal_max_height(t) >= 1080));
    }

    #[test]
    fn the_first_playable_rendition_is_chosen() {
        let attrs = VideoAttributes {
            renditions: vec![
                rendition("source", &["hvc1.1.6.L93.B0", "mp4a.40.2"], 1080),
                rendition("2160p", &["avc1.640033"], 2160),
                rendition("480p", &["avc1.4D401F", "mp4a.40.2"], 480),
                rendition("360p", &["avc1.4D401E", "mp4a.40.2"], 360),
            ],
            ..VideoAttributes::default()
        };
        let name = |t| playable_rendition(&attrs, t).map(|r| r.name);
        assert_eq!(name("tv").as_deref(), Some("source"));
        assert_eq!(name("web").as_deref(), Some("480p"));
        let none = VideoAttributes {
            renditions: vec![rendition("source", &["hvc1.1.6.L93.B0"], 480)],
            ..VideoAttributes::default()
        };
        assert_eq!(playable_rendition(&none, "web"), None);
    }
}
