//! Hand-off between platforms: platform A (where playback stopped) keeps a
//! suspend state, which platform B (where it goes on) gets by a signed pull
//! link, a short code the user types, a push from A, or a redirect of the
//! terminal; B makes a bookmark of it that its terminal plays. Sharecast is
//! both A and B; a platform reads a hand-off of its own without HTTP.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use sharecast_formats::attributes::Rendition;
use sharecast_formats::compat::terminal_can_play;
use sharecast_store::{now_ms, AssetState, BookmarkRecord, BookmarkStatus, SuspendRecord};
use sharecast_tokens::{client_key, new_id, valid_id};

use crate::bookmarks::Bookmark;
use crate::error::{Error, ErrorKind, Result};
use crate::fetches::{local_id, FetchJob};
use crate::outbound::OutboundError;
use crate::service::ResumeService;
use crate::transcodes::{Scheduled, TranscodeJob};

/// A suspend state: where playback stopped, and what it needs.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SuspendState {
    /// State id.
    id: String,
    /// Short code a user can type on another platform.
    code: String,
    /// Content (asset) id on the issuing platform.
    content_id: String,
    /// Address of the video (signed where the issuing platform needs it).
    address: String,
    /// Playback progress, ms.
    position_ms: u64,
    /// Container format.
    format: String,
    /// RFC 6381 codecs.
    codecs: Vec<String>,
    /// Frames per second.
    frame_rate: f64,
    /// Every rendition the issuing platform has, with its address.
    #[serde(default)]
    renditions: Vec<Rendition>,
    /// Title, if any.
    #[serde(default)]
    title: Option<String>,
    /// Issuing platform's base URL.
    platform: String,
    /// Expiry, Unix ms.
    expires_unix_ms: i64,
}

/// A hand-off just created: the state, its signed pull URL and its code.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct HandoffCreated {
    /// The suspend state.
    state: SuspendState,
    /// `…/api/v1/handoff/{id}?exp=…&sig=…`, valid as long as the state.
    pull_url: String,
    /// The 8-character code a user can type instead.
    code: String,
}

/// A hand-off pushed by another platform (or to one).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Received {
    /// The suspend state.
    state: SuspendState,
    /// Whose bookmark: the receiving platform's user token, given by the
    /// user to the pushing platform.
    user_token: String,
    /// The terminal that will play, on the receiving platform.
    terminal_id: String,
    /// Optional bookmark name.
    #[serde(default)]
    name: Option<String>,
    /// Optional bookmark description.
    #[serde(default)]
    description: Option<String>,
}

/// A hand-off pushed to another platform: where, and the bookmark it made
/// (nothing else the other platform said is passed on).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct Pushed {
    /// The receiving address.
    pushed_to: String,
    /// The bookmark made there.
    bookmark_id: String,
}

/// A suspend state pulled after a redirect, with the bookmark made of it
/// when a terminal was named.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct Accepted {
    /// The suspend state.
    state: SuspendState,
    /// The bookmark made.
    #[serde(skip_serializing_if = "Option::is_none")]
    bookmark: Option<Bookmark>,
}

/// Where platform B gets a suspend state from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandoffSource {
    /// A signed pull URL of a state on platform A.
    Link(String),
    /// Platform A's base URL and the code the user typed.
    Code {
        /// Platform A's base URL.
        platform: String,
        /// The code.
        code: String,
    },
}

/// The part of the target platform's answer to a push that is read: which
/// bookmark it made.
#[derive(Deserialize)]
struct PushAnswer {
    id: String,
}

/// How a suspend state is named.
enum StateKey<'a> {
    Id(&'a str),
    Code(&'a str),
}

/// What a hand-off bookmark plays on a terminal, and what it waits for.
struct Choice {
    content_id: String,
    address: String,
    status: BookmarkStatus,
    transcode: Option<TranscodeJob>,
    fetch: Option<FetchJob>,
}

impl ResumeService {
    /// Platform A: the user's playback of a content stopped at
    /// `position_ms`; keeps the suspend state for `handoff_ttl_secs` and
    /// answers it with its signed pull URL and its code.
    pub async fn create_handoff(
        &self,
        user_id: &str,
        content_id: &str,
        position_ms: u64,
    ) -> Result<HandoffCreated> {
        let attrs = self.attributes(content_id).await?;
        if position_ms > attrs.duration_ms {
            return Err(Error::PositionPastEnd {
                position_ms,
                end_ms: attrs.duration_ms,
            });
        }
        let (id, code) = (new_id(), new_code());
        let expires = now_ms() + (self.cfg.handoff_ttl_secs as i64).saturating_mul(1000);
        let state = SuspendState {
            id: id.clone(),
            code: code.clone(),
            content_id: content_id.to_string(),
            address: attrs.vod_url.clone().unwrap_or_default(),
            position_ms,
            format: attrs.container,
            codecs: attrs.codecs,
            frame_rate: attrs.frame_rate,
            renditions: attrs.renditions,
            title: attrs.title,
            platform: self.public_url.clone(),
            expires_unix_ms: expires,
        };
        let json = serde_json::to_string(&state)
            .map_err(|e| anyhow::anyhow!("serialising the suspend state: {e}"))?;
        let record = SuspendRecord {
            id: id.clone(),
            code: code.clone(),
            user_id: user_id.to_string(),
            state: json,
            expires_ms: expires,
        };
        self.store.insert_suspend_state(&record).await?;
        Ok(HandoffCreated {
            pull_url: self.signed_pull_url(&id, expires),
            state,
            code,
        })
    }

    /// Platform A: a suspend state by its id (the caller checked its signed
    /// link).
    pub async fn pull_handoff(&self, id: &str) -> Result<SuspendState> {
        self.load_state(StateKey::Id(id)).await
    }

    /// Platform A: a suspend state by the code a user typed. Wrong codes
    /// are counted per client address: past `code_attempts_per_minute` the
    /// client is refused until the minute is over, so the 40-bit codes
    /// cannot be guessed by trying.
    pub async fn pull_by_code(&self, client: IpAddr, code: &str) -> Result<SuspendState> {
        let key = client_key(client);
        self.limited(&key, Error::TooManyCodesFromAddress, async {
            let code = parse_code(code)?;
            self.load_state(StateKey::Code(&code)).await
        })
        .await
    }

    /// Platform A: posts the user's suspend state `id` to platform B's
    /// `target` (its base URL) for B's user `target_user_token` and
    /// terminal `target_terminal` (the user's identity on B: both needed),
    /// through the outbound policy. Of B's answer, only the id of the
    /// bookmark B made comes back.
    pub async fn push_handoff(
        &self,
        user_id: &str,
        id: &str,
        target: &str,
        target_user_token: Option<String>,
        target_terminal: Option<String>,
    ) -> Result<Pushed> {
        let state = self.load_state(StateKey::Id(id)).await?;
        let owner = self.store.suspend_state(id).await?.map(|r| r.user_id);
        if owner.ok_or(Error::UnknownState)? != user_id {
            return Err(Error::NotTheUsersState);
        }
        let target_user_token = target_user_token.ok_or(Error::MissingTargetUser)?;
        let target_terminal = target_terminal.ok_or(Error::MissingTargetTerminal)?;
        let url = receive_url(target)?;
        let body = Received {
            state,
            user_token: target_user_token,
            terminal_id: target_terminal,
            name: None,
            description: None,
        };
        let body = serde_json::to_value(body)
            .map_err(|e| anyhow::anyhow!("serialising the pushed hand-off: {e}"))?;
        let answer: PushAnswer = self.outbound.post_json(&url, &body).await?;
        if !valid_id(&answer.id) {
            let why = "not a bookmark of a Sharecast platform".to_string();
            return Err(OutboundError::BadAnswer(why).into());
        }
        Ok(Pushed {
            pushed_to: url,
            bookmark_id: answer.id,
        })
    }

    /// Platform B: a suspend state pushed by platform A, for the user its
    /// user token names; makes the bookmark.
    pub async fn receive_handoff(&self, req: Received) -> Result<Bookmark> {
        let user_id = self.store.user_by_token(&req.user_token).await?;
        let user_id = user_id.ok_or(Error::UnknownUserToken)?;
        let terminal_type = self.terminal(&user_id, &req.terminal_id).await?;
        if req.state.expires_unix_ms < now_ms() {
            return Err(Error::StateExpired);
        }
        let (name, description) = (req.name, req.description);
        self.store_bookmark(&user_id, &req.state, &terminal_type, name, description)
            .await
    }

    /// Platform A: where to send a terminal that goes on on platform
    /// `target` (only a platform listed in `outbound.allowed_hosts`: no open
    /// redirect): B's accept address with the state's signed pull URL.
    pub async fn redirect_location(&self, id: &str, target: &str) -> Result<String> {
        let state = self.load_state(StateKey::Id(id)).await?;
        let target = self.outbound.rules().check_redirect(target)?;
        if target.query().is_some() || target.fragment().is_some() {
            return Err(no_base_url());
        }
        let pull = self.signed_pull_url(id, state.expires_unix_ms);
        let base = target.as_str().trim_end_matches('/');
        Ok(format!(
            "{base}/api/v1/handoff/accept?from={}",
            url_encode(&pull)
        ))
    }

    /// Platform B: a terminal followed a redirect from platform A with the
    /// user's token here: the state it names and, with `terminal_id`, the
    /// bookmark made of it.
    pub async fn accept_redirect(
        &self,
        user_id: &str,
        from: &str,
        terminal_id: Option<&str>,
    ) -> Result<Accepted> {
        let state = self.fetch_state(from).await?;
        let Some(terminal_id) = terminal_id else {
            return Ok(Accepted {
                state,
                bookmark: None,
            });
        };
        let terminal_type = self.terminal(user_id, terminal_id).await?;
        let b = self
            .store_bookmark(user_id, &state, &terminal_type, None, None)
            .await?;
        Ok(Accepted {
            state,
            bookmark: Some(b),
        })
    }

    /// Platform B: pulls a suspend state from `source` and makes the user's
    /// bookmark of it for their terminal. Codes typed by a user are counted
    /// like codes tried from one address: no one guesses codes through this
    /// platform either.
    pub async fn accept_handoff(
        &self,
        user_id: &str,
        source: HandoffSource,
        terminal_id: &str,
        name: Option<String>,
        description: Option<String>,
    ) -> Result<Bookmark> {
        let terminal_type = self.terminal(user_id, terminal_id).await?;
        let state = match source {
            HandoffSource::Link(url) => self.fetch_state(&url).await?,
            HandoffSource::Code { platform, code } => {
                let base = platform.trim_end_matches('/');
                let url = format!("{base}/api/v1/handoff/by-code/{}", url_encode(&code));
                let key = format!("user:{user_id}");
                self.limited(&key, Error::TooManyCodes, self.fetch_state(&url))
                    .await?
            }
        };
        self.store_bookmark(user_id, &state, &terminal_type, name, description)
            .await
    }

    /// Runs `attempt` unless `key` used up its wrong attempts (then
    /// `too_many`), and counts its failure (other than this server's own).
    async fn limited<T>(
        &self,
        key: &str,
        too_many: Error,
        attempt: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let now = Instant::now();
        if self.code_attempts().blocked(key, now) {
            return Err(too_many);
        }
        let r = attempt.await;
        if r.as_ref().is_err_and(|e| e.kind() != ErrorKind::Internal) {
            self.code_attempts().failed(key, now);
        }
        r
    }

    fn signed_pull_url(&self, id: &str, exp: i64) -> String {
        let sig = self.links.sign(id, exp);
        format!(
            "{}/api/v1/handoff/{id}?exp={exp}&sig={sig}",
            self.public_url
        )
    }

    /// A stored suspend state, unless it has expired.
    async fn load_state(&self, key: StateKey<'_>) -> Result<SuspendState> {
        let found = match key {
            StateKey::Code(code) => self.store.suspend_state_by_code(code).await?,
            StateKey::Id(id) => self.store.suspend_state(id).await?,
        };
        let record = found.ok_or(Error::UnknownState)?;
        if record.expires_ms < now_ms() {
            return Err(Error::StateExpired);
        }
        let state = serde_json::from_str(&record.state)
            .map_err(|e| anyhow::anyhow!("reading suspend state {}: {e}", record.id))?;
        Ok(state)
    }

    /// Pulls a suspend state: of this very platform without HTTP, of
    /// another through the outbound policy. Only hand-off addresses are
    /// asked (a signed pull URL, `…/api/v1/handoff/{id}?exp=…&sig=…`, or a
    /// code's, `…/api/v1/handoff/by-code/{code}`), and the answer must be a
    /// suspend state: nothing else a remote server says is passed on.
    async fn fetch_state(&self, url: &str) -> Result<SuspendState> {
        if let Some(state) = self.local_state(url).await? {
            return Ok(state);
        }
        let parsed = self.outbound.rules().check_url(url)?;
        if !is_handoff_address(&parsed) {
            return Err(Error::BadUrl(
                "not a hand-off address (…/api/v1/handoff/{id}?exp=…&sig=… or …/api/v1/handoff/by-code/{code})".into(),
            ));
        }
        Ok(self.outbound.get_json::<SuspendState>(url).await?)
    }

    /// A suspend state of this platform named by a hand-off address on its
    /// own public URL (a signed pull URL, checked as its route checks it, or
    /// a code); `None` when the address is another platform's.
    async fn local_state(&self, url: &str) -> Result<Option<SuspendState>> {
        let Some(rest) = url
            .strip_prefix(&self.public_url)
            .and_then(|r| r.strip_prefix("/api/v1/handoff/"))
        else {
            return Ok(None);
        };
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        if let Some(code) = path.strip_prefix("by-code/") {
            let decoded: String = url::form_urlencoded::parse(code.as_bytes())
                .map(|(k, v)| format!("{k}{v}"))
                .collect();
            let code = parse_code(&decoded)?;
            return self.load_state(StateKey::Code(&code)).await.map(Some);
        }
        let q: HashMap<String, String> = url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        let (Some(exp), Some(sig)) = (q.get("exp"), q.get("sig")) else {
            return Err(Error::BadUrl("a pull URL carries exp and sig".into()));
        };
        let exp: i64 = exp
            .parse()
            .map_err(|_| Error::BadUrl("exp is a time in ms".into()))?;
        self.links.verify(path, exp, sig)?;
        self.load_state(StateKey::Id(path)).await.map(Some)
    }

    /// Platform B: stores the user's bookmark of a suspend state, playable
    /// on a terminal of `terminal_type`, and follows what it waits for.
    async fn store_bookmark(
        &self,
        user_id: &str,
        state: &SuspendState,
        terminal_type: &str,
        name: Option<String>,
        description: Option<String>,
    ) -> Result<Bookmark> {
        let id = new_id();
        let choice = self.choose(&id, state, terminal_type).await?;
        let record = BookmarkRecord {
            id: id.clone(),
            user_id: user_id.to_string(),
            content_id: choice.content_id,
            position_ms: state.position_ms as i64,
            name,
            description,
            source: "handoff".into(),
            address: choice.address,
            status: choice.status,
            created_ms: now_ms(),
            // A hand-off proves no live access.
            access_until_ms: None,
        };
        self.store.insert_bookmark(&record).await?;
        let mut b = self.bookmark(record);
        b.transcode = choice.transcode;
        b.fetch = choice.fetch;
        if let Some(j) = &b.transcode {
            self.settle_if_finished(&b.id, &j.id).await?;
        }
        if let Some(j) = &b.fetch {
            self.follow_if_fetched(&j.id, &b.id, terminal_type).await;
        }
        Ok(b)
    }

    /// What a hand-off bookmark plays on a terminal type: the state's
    /// address or one of its renditions when the type plays it; else a
    /// rendition this platform makes of its own recording; else another
    /// platform's video fetched (once) and transcoded here; else nothing
    /// (`needs_transcode`).
    async fn choose(
        &self,
        bookmark_id: &str,
        state: &SuspendState,
        terminal_type: &str,
    ) -> Result<Choice> {
        let plays = |address: &str, status| Choice {
            content_id: state.content_id.clone(),
            address: address.to_string(),
            status,
            transcode: None,
            fetch: None,
        };
        if terminal_can_play(terminal_type, &state.codecs, 0) {
            return Ok(plays(&state.address, BookmarkStatus::Ready));
        }
        if let Some(r) = state
            .renditions
            .iter()
            .find(|r| terminal_can_play(terminal_type, &r.codecs, r.height))
        {
            return Ok(plays(&r.url, BookmarkStatus::Rendition(r.name.clone())));
        }
        if state.platform.trim_end_matches('/') == self.public_url {
            // Our own recording: transcode it into what the terminal plays
            // (or find the rendition made since the state was issued).
            return self
                .transcoded(state, &state.content_id, terminal_type)
                .await;
        }
        let (Some(f), Some(_)) = (&self.fetches, &self.transcodes) else {
            return Ok(plays(&state.address, BookmarkStatus::NeedsTranscode));
        };
        // Another platform's video: fetch it (once), then transcode the
        // local copy like our own recordings.
        f.check_address(&state.address)?;
        let local = local_id(&state.address);
        let copy = self.store.asset(&local).await?;
        if copy.is_some_and(|a| a.state == AssetState::Ready) {
            return self.transcoded(state, &local, terminal_type).await;
        }
        let title = state.title.clone();
        let j = self.start_fetch(f, &state.address, title, bookmark_id, terminal_type);
        let waiting = plays(&state.address, BookmarkStatus::Fetching(j.id.clone()));
        Ok(Choice {
            fetch: Some(j),
            ..waiting
        })
    }

    /// The rendition of local content `content_id` the terminal type plays,
    /// or the transcode making it (the bookmark keeps the state's address
    /// meanwhile).
    async fn transcoded(
        &self,
        state: &SuspendState,
        content_id: &str,
        terminal_type: &str,
    ) -> Result<Choice> {
        let (address, status, transcode) = match self.schedule(content_id, terminal_type).await? {
            Scheduled::Ready(r) => (r.url, BookmarkStatus::Rendition(r.name), None),
            Scheduled::Job(j) => (
                state.address.clone(),
                BookmarkStatus::Transcoding(j.id.clone()),
                Some(*j),
            ),
        };
        Ok(Choice {
            content_id: content_id.to_string(),
            address,
            status,
            transcode,
            fetch: None,
        })
    }
}

/// A new hand-off code: 8 characters of an unambiguous alphabet (40 bits).
fn new_code() -> String {
    const ALPHABET: &[u8] = b"23456789ABCDEFGHJKLMNPQRSTUVWXYZ";
    let bits: u64 = rand::random();
    (0..8)
        .map(|i| ALPHABET[((bits >> (i * 5)) & 31) as usize] as char)
        .collect()
}

/// A typed code, as stored: trimmed, upper case, 8 letters and digits.
fn parse_code(code: &str) -> Result<String> {
    let code = code.trim().to_ascii_uppercase();
    if code.len() == 8 && code.bytes().all(|b| b.is_ascii_alphanumeric()) {
        Ok(code)
    } else {
        Err(Error::BadCode)
    }
}

fn no_base_url() -> Error {
    Error::BadUrl("target is a platform's base URL, without query or fragment".into())
}

/// The platform a hand-off is pushed to: `target` (its base URL, http or
/// https, no query) joined with `/api/v1/handoff/receive`.
fn receive_url(target: &str) -> Result<String> {
    let mut url = url::Url::parse(target.trim())
        .map_err(|e| Error::BadUrl(format!("target is not a URL ({e})")))?;
    if url.query().is_some() || url.fragment().is_some() || url.cannot_be_a_base() {
        return Err(no_base_url());
    }
    let path = format!(
        "{}/api/v1/handoff/receive",
        url.path().trim_end_matches('/')
    );
    url.set_path(&path);
    Ok(url.to_string())
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Whether a URL is a platform's hand-off address: a signed pull URL or a
/// short code's (platforms may live under a path prefix).
fn is_handoff_address(url: &url::Url) -> bool {
    let rest = match url.path().strip_prefix("/api/v1/handoff/") {
        Some(rest) => rest,
        None => match url.path().split_once("/api/v1/handoff/") {
            Some((_, rest)) => rest,
            None => return false,
        },
    };
    if let Some(code) = rest.strip_prefix("by-code/") {
        return !code.is_empty() && code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'%');
    }
    let has = |key: &str| url.query_pairs().any(|(k, _)| k == key);
    valid_id(rest) && has("exp") && has("sig")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{ready_asset, service_with, terminal, PLATFORM};
    use crate::ResumeConfig;

    /// Wrong codes from one address are refused past the limit, even the
    /// right one, while another address still gets its state; a user typing
    /// codes on this platform is limited the same way.
    #[tokio::test]
    async fn wrong_codes_are_limited_per_address_and_per_user() {
        let cfg = ResumeConfig {
            code_attempts_per_minute: 3,
            ..ResumeConfig::default()
        };
        let (s, _dir) = service_with(cfg).await;
        ready_asset(&s.store, "c1", 10_000).await;
        let alice = s.create_user("alice").await.unwrap().user_id;
        let tv = terminal(&s, &alice, "tv").await;
        let h = s.create_handoff(&alice, "c1", 1_000).await.unwrap();
        let (guesser, other): (IpAddr, IpAddr) =
            ("192.0.2.7".parse().unwrap(), "192.0.2.8".parse().unwrap());

        for wrong in ["AAAAAAAA", "bad code", "BBBBBBBB"] {
            let e = s.pull_by_code(guesser, wrong).await.unwrap_err();
            assert_ne!(e.code(), "too_many_attempts", "{wrong}");
        }
        let e = s.pull_by_code(guesser, &h.code).await.unwrap_err();
        assert_eq!(
            (e.code(), e.kind()),
            ("too_many_attempts", ErrorKind::TooMany)
        );
        let state = s.pull_by_code(other, &h.code.to_lowercase()).await.unwrap();
        assert_eq!(state, h.state);

        let code = |code: &str| HandoffSource::Code {
            platform: PLATFORM.into(),
            code: code.into(),
        };
        for _ in 0..3 {
            let e = s
                .accept_handoff(&alice, code("CCCCCCCC"), &tv, None, None)
                .await
                .unwrap_err();
            assert_eq!(e.code(), "unknown_state");
        }
        let e = s
            .accept_handoff(&alice, code(&h.code), &tv, None, None)
            .await
            .unwrap_err();
        assert_eq!(e.code(), "too_many_attempts");
        // A signed link is not a guess.
        let b = s
            .accept_handoff(&alice, HandoffSource::Link(h.pull_url), &tv, None, None)
            .await
            .unwrap();
        assert_eq!((b.status.as_str(), b.position_ms), ("ready", 1_000));
    }

    /// A suspend state and its links end with the hand-off's lifetime, and
    /// a link changed by anyone is refused.
    #[tokio::test]
    async fn hand_off_states_expire_and_their_links_cannot_be_changed() {
        let (s, _dir) = service_with(ResumeConfig::default()).await;
        ready_asset(&s.store, "c1", 10_000).await;
        let alice = s.create_user("alice").await.unwrap().user_id;
        let web = terminal(&s, &alice, "web").await;
        let h = s.create_handoff(&alice, "c1", 1_000).await.unwrap();
        assert_eq!(s.pull_handoff(&h.state.id).await.unwrap(), h.state);
        // The browser gets the H.264 rendition, not the H.265 source.
        let link = HandoffSource::Link(h.pull_url.clone());
        let b = s
            .accept_handoff(&alice, link, &web, None, None)
            .await
            .unwrap();
        assert_eq!(b.status, "rendition:480p");

        let forged = h.pull_url.replace("sig=", "sig=0");
        let e = s
            .accept_handoff(&alice, HandoffSource::Link(forged), &web, None, None)
            .await
            .unwrap_err();
        assert_eq!(e.code(), "bad_signature");

        // An expired state: gone, by id, by code and by its link.
        let mut old = h.state.clone();
        (old.id, old.code, old.expires_unix_ms) = (new_id(), "EXPIRED2".into(), now_ms() - 1);
        let record = SuspendRecord {
            id: old.id.clone(),
            code: old.code.clone(),
            user_id: alice.clone(),
            state: serde_json::to_string(&old).unwrap(),
            expires_ms: old.expires_unix_ms,
        };
        s.store.insert_suspend_state(&record).await.unwrap();
        let e = s.pull_handoff(&old.id).await.unwrap_err();
        assert_eq!((e.code(), e.kind()), ("expired", ErrorKind::Gone));
        let e = s
            .pull_by_code("192.0.2.1".parse().unwrap(), "expired2")
            .await
            .unwrap_err();
        assert_eq!(e.code(), "expired");
        let link = HandoffSource::Link(s.signed_pull_url(&old.id, old.expires_unix_ms));
        let e = s
            .accept_handoff(&alice, link, &web, None, None)
            .await
            .unwrap_err();
        assert_eq!(e.code(), "expired");
        // Pushed by another platform, expired: nothing is stored.
        let carol = s.create_user("carol").await.unwrap();
        let received = Received {
            state: old,
            terminal_id: terminal(&s, &carol.user_id, "tv").await,
            user_token: carol.user_token,
            name: None,
            description: None,
        };
        let e = s.receive_handoff(received).await.unwrap_err();
        assert_eq!(e.code(), "expired");
        assert!(s.bookmarks(&carol.user_id).await.unwrap().is_empty());
    }
}
