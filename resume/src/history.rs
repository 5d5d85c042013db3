//! Cross-terminal history: where each of a user's terminals stopped, the
//! resume tokens that go on from there on any of them, and the catalogue a
//! terminal is offered (what its type can play).

use serde::{Deserialize, Serialize};
use sharecast_formats::attributes::Rendition;
use sharecast_formats::compat::{playable_rendition, terminal_can_play};
use sharecast_store::{now_ms, Asset, HistoryRecord};
use sharecast_tokens::new_id;

use crate::error::{Error, Result};
use crate::service::{play_url, ResumeService};
use crate::transcodes::{Scheduled, TranscodeJob};

/// Most history records and published programmes listed.
const LISTED: i64 = 200;

/// A terminal stopped a programme.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Deserialize)]
pub struct Stop {
    /// The user's terminal that stopped.
    terminal_id: String,
    /// The content (asset) id.
    content_id: String,
    /// Where a recording stopped, ms (ignored for live).
    position_ms: u64,
    /// A live programme: the breakpoint is the wall time of the stop.
    #[serde(default)]
    live: bool,
    /// The stop was abnormal.
    #[serde(default)]
    abnormal: bool,
}

/// A stop recorded.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct Stopped {
    /// The history record's id.
    history_id: String,
    /// The token that resumes it on any of the user's terminals.
    resume_token: String,
}

/// A history record, as listed.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct HistoryEntry {
    /// Record id.
    history_id: String,
    /// The content.
    content_id: String,
    /// The terminal that stopped.
    terminal_id: String,
    /// Its type.
    terminal_type: String,
    /// A live programme.
    live: bool,
    /// The relative breakpoint of a recording, ms.
    position_ms: Option<i64>,
    /// The absolute breakpoint of a live programme, Unix ms.
    breakpoint_unix_ms: Option<i64>,
    /// An abnormal stop.
    abnormal: bool,
    /// When recorded, Unix ms.
    recorded_unix_ms: i64,
}

impl From<HistoryRecord> for HistoryEntry {
    fn from(r: HistoryRecord) -> Self {
        Self {
            history_id: r.id,
            content_id: r.content_id,
            terminal_id: r.terminal_id,
            terminal_type: r.terminal_type,
            live: r.live,
            position_ms: r.position_ms,
            breakpoint_unix_ms: r.breakpoint_unix_ms,
            abnormal: r.abnormal,
            recorded_unix_ms: r.created_ms,
        }
    }
}

/// One link of a programme: a rendition the terminal plays.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Link {
    /// Rendition name.
    rendition: String,
    /// Its URL.
    url: String,
    /// Its RFC 6381 codecs.
    codecs: Vec<String>,
    /// Picture width.
    width: u32,
    /// Picture height.
    height: u32,
}

impl From<&Rendition> for Link {
    fn from(r: &Rendition) -> Self {
        Self {
            rendition: r.name.clone(),
            url: r.url.clone(),
            codecs: r.codecs.clone(),
            width: r.width,
            height: r.height,
        }
    }
}

/// A programme of the catalogue.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Programme {
    /// The content.
    content_id: String,
    /// Its title.
    title: Option<String>,
    /// Its duration, ms.
    duration_ms: u64,
    /// The renditions the terminal plays (at least one).
    links: Vec<Link>,
}

/// A history record in the catalogue, with the link the terminal should use.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CatalogueEntry {
    /// The record.
    #[serde(flatten)]
    record: HistoryEntry,
    /// The first link of its programme, when the terminal plays one.
    link: Option<Link>,
}

/// The terminal a catalogue is for.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub(crate) struct TerminalRef {
    /// Terminal id.
    id: String,
    /// Its type.
    #[serde(rename = "type")]
    kind: String,
}

/// What a terminal is offered: the programmes the user may see that its
/// type plays, and the user's history from every terminal.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct Catalogue {
    /// The terminal.
    terminal: TerminalRef,
    /// Published programmes and the user's own, with playable links.
    programmes: Vec<Programme>,
    /// The user's history, newest first.
    history: Vec<CatalogueEntry>,
}

/// Where a resume token goes on, on one terminal.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct ResumeAnswer {
    /// `ready`, or `transcoding` while an on-demand transcode makes a
    /// rendition the terminal plays.
    status: &'static str,
    /// That transcode.
    transcode: Option<TranscodeJob>,
    /// The content.
    content_id: String,
    /// A live programme.
    live: bool,
    /// Where to start, ms.
    position_ms: u64,
    /// The absolute breakpoint of a live programme, Unix ms.
    breakpoint_unix_ms: Option<i64>,
    /// The terminal's type.
    terminal_type: String,
    /// The rendition's URL.
    url: Option<String>,
    /// `url` with `#t=` seconds.
    play_url: Option<String>,
    /// The rendition's name.
    rendition: Option<String>,
}

impl ResumeService {
    /// Records where a terminal of the user stopped, with a resume token:
    /// the relative breakpoint of a recording (refused past its end), or
    /// the wall time for live.
    pub async fn record_stop(&self, user_id: &str, stop: &Stop) -> Result<Stopped> {
        let terminal_type = self.terminal(user_id, &stop.terminal_id).await?;
        let now = now_ms();
        let (position, breakpoint_unix) = if stop.live {
            (None, Some(now))
        } else {
            let attrs = self.attributes(&stop.content_id).await?;
            if stop.position_ms > attrs.duration_ms {
                return Err(Error::PositionPastEnd {
                    position_ms: stop.position_ms,
                    end_ms: attrs.duration_ms,
                });
            }
            (Some(stop.position_ms as i64), None)
        };
        let record = HistoryRecord {
            id: new_id(),
            user_id: user_id.to_string(),
            content_id: stop.content_id.clone(),
            terminal_id: stop.terminal_id.clone(),
            terminal_type,
            live: stop.live,
            position_ms: position,
            breakpoint_unix_ms: breakpoint_unix,
            abnormal: stop.abnormal,
            created_ms: now,
        };
        let expires = now + (self.cfg.resume_token_ttl_secs as i64).saturating_mul(1000);
        let resume_token = self.store.add_history(&record, expires).await?;
        Ok(Stopped {
            history_id: record.id,
            resume_token,
        })
    }

    /// The user's history from every terminal, newest first (aged records
    /// purged first).
    pub async fn history(&self, user_id: &str) -> Result<Vec<HistoryEntry>> {
        self.purge().await?;
        let rows = self.store.history_of(user_id, LISTED).await?;
        Ok(rows.into_iter().map(HistoryEntry::from).collect())
    }

    /// The catalogue for one of the user's terminals: the programmes
    /// published to everyone (an active public share) and those in the
    /// user's history, each with the links that terminal's type plays, and
    /// the user's history with the link to use.
    pub async fn catalogue(&self, user_id: &str, terminal_id: &str) -> Result<Catalogue> {
        let terminal_type = self.terminal(user_id, terminal_id).await?;
        let history = self.history(user_id).await?;
        let mut assets = self.store.published_assets(LISTED).await?;
        for h in &history {
            if !assets.iter().any(|a| a.id == h.content_id) {
                assets.extend(self.store.asset(&h.content_id).await?);
            }
        }
        let programmes: Vec<Programme> = assets
            .into_iter()
            .filter_map(|a| programme(a, &terminal_type))
            .collect();
        let history = history
            .into_iter()
            .map(|record| CatalogueEntry {
                link: programmes
                    .iter()
                    .find(|p| p.content_id == record.content_id)
                    .and_then(|p| p.links.first().cloned()),
                record,
            })
            .collect();
        Ok(Catalogue {
            terminal: TerminalRef {
                id: terminal_id.to_string(),
                kind: terminal_type,
            },
            programmes,
            history,
        })
    }

    /// Resumes a history record by its token on one of the user's
    /// terminals: the rendition that terminal plays (or the transcode
    /// making one) and the position. A token works on every terminal of its
    /// user and for no one else, until it expires.
    pub async fn resume(
        &self,
        user_id: &str,
        resume_token: &str,
        terminal_id: &str,
    ) -> Result<ResumeAnswer> {
        let terminal_type = self.terminal(user_id, terminal_id).await?;
        let grant = self.store.resume_grant(resume_token).await?;
        let grant = grant.ok_or(Error::UnknownResumeToken)?;
        if grant.user_id != user_id {
            return Err(Error::ResumeTokenOfAnotherUser);
        }
        if grant.expires_ms < now_ms() {
            return Err(Error::ResumeTokenExpired);
        }
        let record = grant.record;
        let attrs = self.attributes(&record.content_id).await?;
        let mut rendition = playable_rendition(&attrs, &terminal_type);
        let mut transcode = None;
        if rendition.is_none() && self.transcodes.is_some() {
            match self.schedule(&record.content_id, &terminal_type).await? {
                Scheduled::Ready(r) => rendition = Some(r),
                Scheduled::Job(j) => transcode = Some(*j),
            }
        }
        let position_ms = record.position_ms.unwrap_or(0).max(0) as u64;
        let url = rendition.as_ref().map(|r| r.url.clone());
        Ok(ResumeAnswer {
            status: if transcode.is_some() {
                "transcoding"
            } else {
                "ready"
            },
            transcode,
            content_id: record.content_id,
            live: record.live,
            position_ms,
            breakpoint_unix_ms: record.breakpoint_unix_ms,
            terminal_type,
            play_url: url.as_deref().map(|u| play_url(u, position_ms)),
            url,
            rendition: rendition.map(|r| r.name),
        })
    }
}

/// The programme of an asset for a terminal type: `None` when it has no
/// outputs yet or none that the type plays.
fn programme(asset: Asset, terminal_type: &str) -> Option<Programme> {
    let attrs = asset.attributes?;
    let links: Vec<Link> = attrs
        .renditions
        .iter()
        .filter(|r| terminal_can_play(terminal_type, &r.codecs, r.height))
        .map(Link::from)
        .collect();
    if links.is_empty() {
        return None;
    }
    Some(Programme {
        content_id: asset.id,
        title: asset.title,
        duration_ms: attrs.duration_ms,
        links,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{ready_asset, service, terminal};

    /// A stop of a recording at `position_ms`.
    fn stop(terminal_id: &str, content_id: &str, position_ms: u64) -> Stop {
        Stop {
            terminal_id: terminal_id.into(),
            content_id: content_id.into(),
            position_ms,
            live: false,
            abnormal: false,
        }
    }

    /// A token opens its record on every terminal of its user, for no one
    /// else, and not once it has expired.
    #[tokio::test]
    async fn resume_tokens_are_their_users_and_expire() {
        let (s, _dir) = service().await;
        ready_asset(&s.store, "c1", 10_000).await;
        let alice = s.create_user("alice").await.unwrap().user_id;
        let bob = s.create_user("bob").await.unwrap().user_id;
        let phone = terminal(&s, &alice, "mobile").await;
        let tv = terminal(&s, &alice, "tv").await;
        let bobs = terminal(&s, &bob, "tv").await;
        let stopped = s.record_stop(&alice, &stop(&phone, "c1", 4_000)).await;
        let token = stopped.unwrap().resume_token;

        let on_tv = s.resume(&alice, &token, &tv).await.unwrap();
        assert_eq!((on_tv.position_ms, on_tv.status), (4_000, "ready"));
        assert_eq!(
            on_tv.play_url.as_deref(),
            Some("http://a/vod/c1/source.mp4#t=4.000")
        );
        // Bob's terminal is not Alice's, and the token is not Bob's.
        let e = s.resume(&alice, &token, &bobs).await.unwrap_err();
        assert_eq!(e.code(), "unknown_terminal");
        let e = s.resume(&bob, &token, &bobs).await.unwrap_err();
        assert_eq!(e.code(), "bad_resume_token");
        let e = s.resume(&alice, "sr_forged", &tv).await.unwrap_err();
        assert_eq!(e.code(), "bad_resume_token");

        // A token past its lifetime is gone.
        let mut record = s.store.history_of(&alice, 1).await.unwrap().remove(0);
        record.id = new_id();
        let old = s.store.add_history(&record, now_ms() - 1).await.unwrap();
        let e = s.resume(&alice, &old, &tv).await.unwrap_err();
        assert_eq!((e.code(), e.kind()), ("expired", crate::ErrorKind::Gone));

        // Past the end is refused, and nothing is stored.
        let past = stop(&phone, "c1", 10_001);
        let e = s.record_stop(&alice, &past).await.unwrap_err();
        assert_eq!(e.code(), "position_past_end");
        assert_eq!(s.history(&alice).await.unwrap().len(), 2);
    }

    /// The catalogue lists what is published to everyone and what the user
    /// watched, never another device's unpublished recording, and only the
    /// links the terminal's type plays.
    #[tokio::test]
    async fn the_catalogue_is_published_and_own_programmes_that_the_terminal_plays() {
        let (s, _dir) = service().await;
        for id in ["published", "watched", "private"] {
            ready_asset(&s.store, id, 10_000).await;
        }
        crate::testing::publish(&s.store, "published").await;
        let alice = s.create_user("alice").await.unwrap().user_id;
        let web = terminal(&s, &alice, "web").await;
        s.record_stop(&alice, &stop(&web, "watched", 1_000))
            .await
            .unwrap();

        let c = s.catalogue(&alice, &web).await.unwrap();
        let mut ids: Vec<&str> = c.programmes.iter().map(|p| p.content_id.as_str()).collect();
        ids.sort();
        assert_eq!(ids, ["published", "watched"]);
        // The browser gets the H.264 rendition only, not the H.265 source.
        for p in &c.programmes {
            let names: Vec<&str> = p.links.iter().map(|l| l.rendition.as_str()).collect();
            assert_eq!(names, ["480p"], "{}", p.content_id);
        }
        assert_eq!(c.history.len(), 1);
        let link = c.history[0].link.as_ref().unwrap();
        assert_eq!(link.url, "http://a/vod/watched/480p.mp4");
        assert_eq!(c.terminal.kind, "web");
        // Another user's catalogue has the published programme only.
        let bob = s.create_user("bob").await.unwrap().user_id;
        let bobs = terminal(&s, &bob, "web").await;
        let c = s.catalogue(&bob, &bobs).await.unwrap();
        assert_eq!(c.programmes.len(), 1);
        assert_eq!(c.programmes[0].content_id, "published");
    }
}
