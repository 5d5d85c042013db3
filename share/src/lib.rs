//! Phone video sharing, without HTTP: everything that tells recipients
//! about a video and lets them open it, as services over the store that the
//! HTTP side (`sharecast-api`) calls and that tests drive against a
//! temporary database.
//!
//! - [`ShareService`]: shares (links `/s/{token}`, public shares and their
//!   expiry, which open live streams through
//!   [`PlaybackTokens`](sharecast_tokens::PlaybackTokens)), the
//!   communication proxy (a source going live, a VOD ready: a share message
//!   to every subscriber), subscriptions and the recipients' STOP/START
//!   replies, and the persisted delivery queue whose worker sends share
//!   messages through the Kannel gateway (sendsms, push proxy gateway),
//!   configured by [`ShareConfig`] and [`SmsConfig`].
//! - [`Stills`]: still-frame shares: the frame of a video at a time point,
//!   enhanced, with a comment and a drawing, kept and shared as a page;
//!   images come from a [`FrameSource`] and a [`StillComposer`], which the
//!   binary implements with the transcoder.
//! - [`Error`]: what a request cannot do, with a stable code
//!   ([`Error::code`]) and an [`ErrorKind`].

mod delivery;
mod error;
mod frames;
pub mod kannel;
mod message;
mod number;
mod proxy;
mod shares;
mod stills;
mod subscriptions;

pub use error::{Error, ErrorKind};
pub use frames::{BoxFuture, ComposedStill, FrameError, FrameSource, StillComposer};
pub use kannel::SmsConfig;
pub use shares::{
    CreatedShare, LivePlayback, NewShare, Share, ShareConfig, SharePage, ShareService,
};
pub use stills::{Oembed, Still, StillImage, StillPage, StillRequest, Stills};
pub use subscriptions::{NewSubscription, Subscribed};

#[cfg(test)]
mod testing {
    use sharecast_store::{Device, Store};
    use sharecast_tokens::PlaybackTokens;

    use crate::{ShareConfig, ShareService, SmsConfig};

    /// A share service without a gateway over a temporary store (on the
    /// engine `SHARECAST_TEST_STORE` names), with one device.
    pub(crate) struct Fixture {
        pub(crate) store: Store,
        pub(crate) svc: ShareService,
        pub(crate) tokens: PlaybackTokens,
        pub(crate) device: Device,
        pub(crate) dir: sharecast_store::testing::TestDir,
    }

    pub(crate) async fn fixture() -> Fixture {
        let (store, dir) = sharecast_store::testing::store().await;
        let (device, _) = store.add_device("phone").await.unwrap();
        let tokens = PlaybackTokens::load(dir.path(), true, 3600).unwrap();
        let svc = start(&store, &tokens).await;
        Fixture {
            store,
            svc,
            tokens,
            device,
            dir,
        }
    }

    /// Another service over the same store, as after a restart.
    pub(crate) async fn start(store: &Store, tokens: &PlaybackTokens) -> ShareService {
        ShareService::start(
            store.clone(),
            ShareConfig::default(),
            SmsConfig::default(),
            "http://h".into(),
            "rtsp://h/live/{id}".into(),
            tokens.clone(),
        )
        .await
        .unwrap()
    }
}
