//! The relay's families on `/metrics` (`live_…`, under the registry's
//! prefix: `sharecast` in the server), added by
//! [`LiveRelay::register_metrics`](crate::LiveRelay::register_metrics): the
//! counters kept in `prometheus-client` types where the events happen, and
//! the gauges of streams and viewers read at each scrape.

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use sharecast_metrics::family;

use crate::lock;
use crate::relay::Shared;

/// The `reason` label of a refused request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ReasonLabel {
    pub(crate) reason: &'static str,
}

/// The `event` label of a viewer ending.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct EventLabel {
    pub(crate) event: &'static str,
}

/// The `protocol` label of a viewer.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ProtocolLabel {
    pub(crate) protocol: &'static str,
}

/// Counts of refused requests, by reason (a reason appears once counted).
pub(crate) type Rejections = Family<ReasonLabel, Counter>;

/// The relay's families: what [`Shared`] and its viewer tracker count, and
/// the streams published now.
pub(crate) struct RelayCollector {
    pub(crate) shared: Arc<Shared>,
    pub(crate) published: Arc<Mutex<HashSet<String>>>,
}

impl fmt::Debug for RelayCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RelayCollector").finish_non_exhaustive()
    }
}

impl Collector for RelayCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let (published, renditions) = {
            let p = lock(&self.published);
            let renditions = p.iter().filter(|k| k.contains('/')).count();
            (p.len() - renditions, renditions)
        };
        let segments: u64 = lock(&self.shared.hls)
            .values()
            .map(|s| s.segments_made.load(std::sync::atomic::Ordering::Relaxed))
            .sum();
        let s = &self.shared;
        family(
            &mut enc,
            "live_streams",
            "Live streams being published",
            &ConstGauge::new(published),
        )?;
        family(
            &mut enc,
            "live_rendition_streams",
            "Live streams of extra renditions being published",
            &ConstGauge::new(renditions),
        )?;
        family(
            &mut enc,
            "live_frames",
            "Frames fed to live streams",
            &s.frames,
        )?;
        family(
            &mut enc,
            "live_hls_segments",
            "Live HLS segments made by the streams currently held",
            &ConstGauge::new(segments),
        )?;
        family(
            &mut enc,
            "live_hls_segments_served",
            "HLS segments served",
            &s.hls_segments_served,
        )?;
        family(
            &mut enc,
            "live_hls_parts_served",
            "LL-HLS partial segments served",
            &s.hls_parts_served,
        )?;
        s.tracker.encode_metrics(&mut enc)?;
        family(
            &mut enc,
            "live_rejected",
            "Live requests refused, by reason",
            &s.rejected,
        )
    }
}
