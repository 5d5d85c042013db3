//! Choosing how to play a received share (see the
//! [module documentation](super) for the rules).

use sharecast_formats::attributes::{Rendition, VideoAttributes};

/// The network the phone is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Network {
    /// Wi-Fi.
    Wifi,
    /// Wired.
    Ethernet,
    /// Mobile data.
    Cellular,
    /// No connection.
    Offline,
    /// Not known.
    #[default]
    Unknown,
}

/// What the local player can do.
#[derive(Debug, Clone, PartialEq)]
pub struct PlayerCaps {
    /// RFC 6381 codec prefixes the player decodes, e.g. `avc1`, `avc1.4d`,
    /// `mp4a.40`.
    pub codecs: Vec<String>,
    /// Containers it plays, e.g. `mp4`; empty means any.
    pub containers: Vec<String>,
    /// Largest width it displays (0 = no limit).
    pub max_width: u32,
    /// Largest height it displays (0 = no limit).
    pub max_height: u32,
    /// Current network.
    pub network: Network,
    /// Whether it can play a VOD file while downloading it (HTTP
    /// progressive playback).
    pub can_stream: bool,
    /// URL schemes of live streams it plays (e.g. `rtsp`, `https` for HLS);
    /// empty means no live playback.
    pub live_schemes: Vec<String>,
    /// On cellular, stream only up to this bitrate (bits per second);
    /// above it, download first.
    pub max_cellular_bitrate: Option<u64>,
    /// Free storage for downloads, if known.
    pub free_storage_bytes: Option<u64>,
    /// Prefer the live stream over a VOD when both exist.
    pub prefer_live: bool,
}

impl Default for PlayerCaps {
    /// A typical phone player: H.264 + AAC in MP4, up to 1920x1080, RTSP
    /// and HLS live, streaming allowed, 4 Mbit/s on cellular.
    fn default() -> Self {
        Self {
            codecs: vec!["avc1".into(), "mp4a.40".into()],
            containers: vec!["mp4".into()],
            max_width: 1920,
            max_height: 1080,
            network: Network::Unknown,
            can_stream: true,
            live_schemes: vec!["rtsp".into(), "https".into(), "http".into()],
            max_cellular_bitrate: Some(4_000_000),
            free_storage_bytes: None,
            prefer_live: false,
        }
    }
}

/// How to play a shared video.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlaybackChoice {
    /// Download the VOD file, then play it.
    DownloadThenPlay {
        /// The file to download.
        url: String,
        /// The rendition's name (`None` for the primary output).
        rendition: Option<String>,
        /// Why.
        reason: String,
    },
    /// Play the VOD file while it downloads.
    Progressive {
        /// The file.
        url: String,
        /// The rendition's name (`None` for the primary output).
        rendition: Option<String>,
        /// Why.
        reason: String,
    },
    /// Play the live stream.
    Live {
        /// The stream.
        url: String,
        /// Why.
        reason: String,
    },
    /// Nothing in the message fits this player.
    NeedsCompatibleRendition {
        /// Why each option was rejected.
        reason: String,
    },
}

struct Candidate<'a> {
    name: Option<&'a str>,
    url: &'a str,
    container: &'a str,
    codecs: &'a [String],
    width: u32,
    height: u32,
    bitrate: u64,
    size: u64,
}

/// Whether an RFC 6381 codec string matches one of the player's prefixes:
/// equal, or the prefix followed by `.` (`avc1` matches `avc1.64001f`), or
/// a prefix that already names a sub-field (`avc1.64` matches
/// `avc1.64001f`). Case-insensitive.
pub fn codec_supported(codec: &str, prefixes: &[String]) -> bool {
    let c = codec.trim().to_ascii_lowercase();
    prefixes.iter().any(|p| {
        let p = p.trim().to_ascii_lowercase();
        if p.is_empty() {
            return false;
        }
        c == p
            || (c.starts_with(&p) && (p.contains('.') || c.as_bytes().get(p.len()) == Some(&b'.')))
    })
}

fn misfit(c: &Candidate<'_>, caps: &PlayerCaps) -> Option<String> {
    if let Some(bad) = c.codecs.iter().find(|k| !codec_supported(k, &caps.codecs)) {
        return Some(format!("codec {bad} not supported"));
    }
    if !caps.containers.is_empty()
        && !c.container.is_empty()
        && !caps
            .containers
            .iter()
            .any(|k| k.eq_ignore_ascii_case(c.container))
    {
        return Some(format!("container {} not supported", c.container));
    }
    let fits = |mw: u32, mh: u32| (mw == 0 || c.width <= mw) && (mh == 0 || c.height <= mh);
    if !fits(caps.max_width, caps.max_height) && !fits(caps.max_height, caps.max_width) {
        return Some(format!(
            "{}x{} exceeds {}x{}",
            c.width, c.height, caps.max_width, caps.max_height
        ));
    }
    None
}

fn scheme(url: &str) -> String {
    url.split_once("://")
        .map(|(s, _)| s.to_ascii_lowercase())
        .unwrap_or_default()
}

/// Choose how to play the video described by `attrs` with this player. See
/// the module documentation for the rules.
pub fn choose_playback(attrs: &VideoAttributes, caps: &PlayerCaps) -> PlaybackChoice {
    let mut rejected: Vec<String> = Vec::new();
    let primary = Candidate::primary(attrs);
    let primary_misfit = misfit(&primary, caps);
    if let Some(live) = live_choice(attrs, caps, primary_misfit.as_deref(), &mut rejected) {
        return live;
    }
    let mut fitting = fitting_vod(attrs, caps, primary, primary_misfit, &mut rejected);
    if fitting.is_empty() {
        if rejected.is_empty() {
            rejected.push(match &attrs.share_url {
                Some(u) => format!("the message only links the share page {u}"),
                None => "the message has no playable URL".into(),
            });
        }
        return PlaybackChoice::NeedsCompatibleRendition {
            reason: rejected.join("; "),
        };
    }
    // Best first: most pixels, then highest bitrate.
    fitting
        .sort_by_key(|c| std::cmp::Reverse((u64::from(c.width) * u64::from(c.height), c.bitrate)));
    vod_choice(&fitting, caps)
}

impl<'a> Candidate<'a> {
    /// The message's primary file (its URL empty when there is none).
    fn primary(attrs: &'a VideoAttributes) -> Self {
        Candidate {
            name: None,
            url: attrs.vod_url.as_deref().unwrap_or(""),
            container: &attrs.container,
            codecs: &attrs.codecs,
            width: attrs.width,
            height: attrs.height,
            bitrate: attrs.bitrate,
            size: attrs.size_bytes,
        }
    }

    /// One of the message's renditions.
    fn rendition(r: &'a Rendition) -> Self {
        Candidate {
            name: Some(&r.name),
            url: &r.url,
            container: &r.container,
            codecs: &r.codecs,
            width: r.width,
            height: r.height,
            bitrate: r.bitrate,
            size: r.size_bytes,
        }
    }
}

/// The live stream, when the message has one this player can open and it is
/// the better choice (no VOD yet, or the player prefers live); otherwise
/// why live was passed over goes into `rejected`.
fn live_choice(
    attrs: &VideoAttributes,
    caps: &PlayerCaps,
    primary_misfit: Option<&str>,
    rejected: &mut Vec<String>,
) -> Option<PlaybackChoice> {
    if attrs.live_urls.is_empty() {
        return None;
    }
    let live_url = attrs.live_urls.iter().find(|u| {
        caps.live_schemes
            .iter()
            .any(|s| s.eq_ignore_ascii_case(&scheme(u)))
    });
    let has_vod = attrs.vod_url.is_some() || attrs.renditions.iter().any(|r| !r.url.is_empty());
    match (live_url, primary_misfit, caps.network) {
        (_, _, Network::Offline) => rejected.push("live: offline".into()),
        (None, _, _) => rejected.push(format!(
            "live: no stream in a supported scheme ({})",
            caps.live_schemes.join(", ")
        )),
        (Some(_), Some(why), _) => rejected.push(format!("live: {why}")),
        (Some(url), None, _) => {
            if !has_vod || caps.prefer_live {
                return Some(PlaybackChoice::Live {
                    url: url.clone(),
                    reason: if has_vod {
                        "the player prefers live".into()
                    } else {
                        "the video is live and has no VOD file yet".into()
                    },
                });
            }
        }
    }
    None
}

/// The VOD files (primary first, then renditions) that fit the player; why
/// each other one does not goes into `rejected`.
fn fitting_vod<'a>(
    attrs: &'a VideoAttributes,
    caps: &PlayerCaps,
    primary: Candidate<'a>,
    primary_misfit: Option<String>,
    rejected: &mut Vec<String>,
) -> Vec<Candidate<'a>> {
    let mut fitting: Vec<Candidate<'a>> = Vec::new();
    if !primary.url.is_empty() {
        match primary_misfit {
            None => fitting.push(primary),
            Some(why) => rejected.push(format!("primary: {why}")),
        }
    }
    for r in attrs.renditions.iter().filter(|r| !r.url.is_empty()) {
        let c = Candidate::rendition(r);
        match misfit(&c, caps) {
            None => fitting.push(c),
            Some(why) => rejected.push(format!("rendition {}: {why}", r.name)),
        }
    }
    fitting
}

/// Stream or download the best of the fitting VOD files (`fitting` is best
/// first and not empty), within the cellular limit and the free storage.
fn vod_choice(fitting: &[Candidate<'_>], caps: &PlayerCaps) -> PlaybackChoice {
    let cellular_limit = match caps.network {
        Network::Cellular => caps.max_cellular_bitrate,
        _ => None,
    };
    let within_limit = cellular_limit.and_then(|l| fitting.iter().position(|c| c.bitrate <= l));
    let best = &fitting[within_limit.unwrap_or(0)];
    let rendition = best.name.map(str::to_owned);
    let url = best.url.to_owned();
    let what = match best.name {
        Some(n) => format!("rendition {n}"),
        None => "the primary file".to_owned(),
    };

    let stream_ok = caps.can_stream
        && match caps.network {
            Network::Offline => false,
            Network::Cellular => cellular_limit.is_none_or(|l| best.bitrate <= l),
            _ => true,
        };
    if stream_ok {
        return PlaybackChoice::Progressive {
            url,
            rendition,
            reason: format!("{what} fits the player and the network allows streaming"),
        };
    }
    let why_download = why_download(caps, best);
    if let Some(free) = caps.free_storage_bytes {
        if best.size > free {
            // A smaller fitting file that can be stored?
            if let Some(small) = fitting.iter().find(|c| c.size <= free) {
                return PlaybackChoice::DownloadThenPlay {
                    url: small.url.to_owned(),
                    rendition: small.name.map(str::to_owned),
                    reason: format!("{why_download}; the best file does not fit the free storage"),
                };
            }
            return PlaybackChoice::NeedsCompatibleRendition {
                reason: format!("{why_download}, and no fitting file fits the {free} free bytes"),
            };
        }
    }
    PlaybackChoice::DownloadThenPlay {
        url,
        rendition,
        reason: format!("{what}: {why_download}"),
    }
}

/// Why `best` is downloaded rather than streamed.
fn why_download(caps: &PlayerCaps, best: &Candidate<'_>) -> String {
    if !caps.can_stream {
        "the player cannot stream".to_owned()
    } else if caps.network == Network::Offline {
        "offline: download when a connection is available".to_owned()
    } else {
        format!(
            "{} bit/s is above the cellular streaming limit",
            best.bitrate
        )
    }
}

/// The recommended way to open a share, in one shape for every platform:
/// the [`choose_playback`] choice, or the share page when the message only
/// links a page (a WAP SI or SL) or nothing in it fits the player.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlayMode {
    /// Download the VOD file, then play it.
    Download,
    /// Play the VOD file while it downloads.
    Progressive,
    /// Play the live stream.
    Live,
    /// Open the share page in a browser (it plays there, or offers a
    /// compatible rendition).
    SharePage,
    /// Nothing to open on this player.
    None,
}

impl PlayMode {
    /// Lowercase name: `download`, `progressive`, `live`, `share_page`,
    /// `none`.
    pub fn name(self) -> &'static str {
        match self {
            PlayMode::Download => "download",
            PlayMode::Progressive => "progressive",
            PlayMode::Live => "live",
            PlayMode::SharePage => "share_page",
            PlayMode::None => "none",
        }
    }
}

/// What to open, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recommendation {
    /// How.
    pub mode: PlayMode,
    /// The URL to open (empty with [`PlayMode::None`]).
    pub url: String,
    /// The rendition's name, when a rendition was chosen.
    pub rendition: Option<String>,
    /// Why.
    pub reason: String,
}

/// The recommendation for this player: [`choose_playback`], falling back
/// to the share page when nothing in the message plays here.
pub fn recommend(attrs: &VideoAttributes, caps: &PlayerCaps) -> Recommendation {
    match choose_playback(attrs, caps) {
        PlaybackChoice::DownloadThenPlay {
            url,
            rendition,
            reason,
        } => Recommendation {
            mode: PlayMode::Download,
            url,
            rendition,
            reason,
        },
        PlaybackChoice::Progressive {
            url,
            rendition,
            reason,
        } => Recommendation {
            mode: PlayMode::Progressive,
            url,
            rendition,
            reason,
        },
        PlaybackChoice::Live { url, reason } => Recommendation {
            mode: PlayMode::Live,
            url,
            rendition: None,
            reason,
        },
        PlaybackChoice::NeedsCompatibleRendition { reason } => match &attrs.share_url {
            Some(page) if !page.is_empty() => Recommendation {
                mode: PlayMode::SharePage,
                url: page.clone(),
                rendition: None,
                reason,
            },
            _ => Recommendation {
                mode: PlayMode::None,
                url: String::new(),
                rendition: None,
                reason,
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::recipient::testing::attrs;

    /// The rendition a progressive choice streams (`None`: the primary
    /// file); panics on any other choice.
    fn streamed(choice: PlaybackChoice) -> Option<String> {
        match choice {
            PlaybackChoice::Progressive { rendition, .. } => rendition,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn recommendations() {
        let wifi = PlayerCaps {
            network: Network::Wifi,
            ..Default::default()
        };
        let r = recommend(&attrs(), &wifi);
        assert_eq!(
            (r.mode, r.url.as_str()),
            (
                PlayMode::Progressive,
                "https://sc.example/vod/k3v9x2/source.mp4"
            )
        );
        let live = VideoAttributes {
            vod_url: None,
            renditions: Vec::new(),
            ..attrs()
        };
        assert_eq!(recommend(&live, &wifi).mode, PlayMode::Live);
        let no_stream = PlayerCaps {
            can_stream: false,
            ..wifi.clone()
        };
        assert_eq!(recommend(&attrs(), &no_stream).mode, PlayMode::Download);
        // An SI or SL carries only the share page.
        let page = VideoAttributes {
            share_url: Some("https://sc.example/s/X".into()),
            ..Default::default()
        };
        let r = recommend(&page, &wifi);
        assert_eq!(
            (r.mode, r.url.as_str()),
            (PlayMode::SharePage, "https://sc.example/s/X")
        );
        // Nothing fits and no page: nothing to open.
        let odd = VideoAttributes {
            share_url: None,
            codecs: vec!["vp09".into()],
            renditions: Vec::new(),
            live_urls: Vec::new(),
            ..attrs()
        };
        let r = recommend(&odd, &wifi);
        assert_eq!(r.mode, PlayMode::None);
        assert!(r.reason.contains("vp09"), "{}", r.reason);
        assert_eq!(PlayMode::SharePage.name(), "share_page");
    }

    #[test]
    fn codec_prefixes() {
        let caps = vec![
            "avc1".to_string(),
            "mp4a.40".to_string(),
            "hvc1.1".to_string(),
        ];
        assert!(codec_supported("avc1.64001f", &caps));
        assert!(codec_supported("AVC1.64001F", &caps));
        assert!(codec_supported("mp4a.40.2", &caps));
        assert!(codec_supported("hvc1.1.6.L93.B0", &caps));
        assert!(!codec_supported("avc12", &caps));
        assert!(!codec_supported("hvc1.2.4.L120", &caps));
        assert!(!codec_supported("opus", &caps));
        assert!(codec_supported("avc1.4d401e", &["avc1.4d".to_string()]));
        assert!(!codec_supported("avc1.64001f", &["avc1.4d".to_string()]));
    }

    #[test]
    fn playback_choices() {
        let a = attrs();
        let wifi = PlayerCaps {
            network: Network::Wifi,
            ..Default::default()
        };
        // Wi-Fi: best fitting file, progressive.
        match choose_playback(&a, &wifi) {
            PlaybackChoice::Progressive { url, rendition, .. } => {
                assert_eq!(url, a.vod_url.clone().unwrap());
                assert_eq!(rendition, None);
            }
            other => panic!("{other:?}"),
        }
        // Cellular with a 2 Mbit/s limit: the 480p rendition streams.
        let cell = PlayerCaps {
            network: Network::Cellular,
            max_cellular_bitrate: Some(2_000_000),
            ..Default::default()
        };
        assert_eq!(
            streamed(choose_playback(&a, &cell)).as_deref(),
            Some("480p")
        );
        // Cellular, only the big file fits the screen: download first.
        let small_limit = PlayerCaps {
            network: Network::Cellular,
            max_cellular_bitrate: Some(500_000),
            ..Default::default()
        };
        let only_primary = VideoAttributes {
            renditions: Vec::new(),
            ..a.clone()
        };
        assert!(matches!(
            choose_playback(&only_primary, &small_limit),
            PlaybackChoice::DownloadThenPlay { .. }
        ));
        // A small screen rules out 1080p: the rendition is used.
        let small_screen = PlayerCaps {
            max_width: 960,
            max_height: 540,
            network: Network::Wifi,
            ..Default::default()
        };
        assert_eq!(
            streamed(choose_playback(&a, &small_screen)).as_deref(),
            Some("480p")
        );
        // No HEVC/H.264 decoder: nothing fits, and the reason says why.
        let no_avc = PlayerCaps {
            codecs: vec!["hvc1".into(), "mp4a.40".into()],
            ..Default::default()
        };
        match choose_playback(&a, &no_avc) {
            PlaybackChoice::NeedsCompatibleRendition { reason } => {
                assert!(reason.contains("codec avc1.64001f"), "{reason}");
                assert!(reason.contains("rendition 480p"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        // Still live, no VOD yet.
        let live = VideoAttributes {
            vod_url: None,
            renditions: Vec::new(),
            ..a.clone()
        };
        assert!(matches!(
            choose_playback(&live, &wifi),
            PlaybackChoice::Live { .. }
        ));
        // Prefer live.
        let prefer = PlayerCaps {
            prefer_live: true,
            ..wifi.clone()
        };
        assert!(matches!(
            choose_playback(&a, &prefer),
            PlaybackChoice::Live { .. }
        ));
        // No live scheme: live-only video cannot play.
        let no_live = PlayerCaps {
            live_schemes: Vec::new(),
            ..wifi.clone()
        };
        assert!(matches!(
            choose_playback(&live, &no_live),
            PlaybackChoice::NeedsCompatibleRendition { .. }
        ));
        // Cannot stream, not enough storage for the big file: the smaller one.
        let no_stream = PlayerCaps {
            can_stream: false,
            free_storage_bytes: Some(10_000_000),
            ..wifi.clone()
        };
        match choose_playback(&a, &no_stream) {
            PlaybackChoice::DownloadThenPlay { rendition, .. } => {
                assert_eq!(rendition.as_deref(), Some("480p"))
            }
            other => panic!("{other:?}"),
        }
        // An SI gives only a share page.
        let si_only = VideoAttributes {
            share_url: Some("https://sc.example/s/X".into()),
            ..Default::default()
        };
        match choose_playback(&si_only, &wifi) {
            PlaybackChoice::NeedsCompatibleRendition { reason } => {
                assert!(reason.contains("share page"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        // Rotated screens: a portrait video fits a landscape limit.
        let portrait = VideoAttributes {
            width: 1080,
            height: 1920,
            renditions: Vec::new(),
            ..a
        };
        assert!(matches!(
            choose_playback(&portrait, &wifi),
            PlaybackChoice::Progressive { .. }
        ));
    }
}
