//! What the resume side writes on `/metrics`, in `prometheus-client`
//! types, under the registry's prefix (`sharecast` in the server): the
//! fetches, the on-demand transcodes (both added by
//! [`ResumeService::register_metrics`](crate::ResumeService::register_metrics))
//! and the outbound requests (by
//! [`Outbound::register_metrics`](crate::outbound::Outbound::register_metrics)).

use std::fmt;

use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::MetricType;

/// The `result` label of an outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ResultLabel {
    pub(crate) result: &'static str,
}

/// The `state` label of a job.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct StateLabel {
    pub(crate) state: &'static str,
}

/// One counter family labelled `result`: a series per outcome, in order.
pub(crate) fn by_result(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    outcomes: &[(&'static str, &Counter)],
) -> fmt::Result {
    let mut family = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for &(result, counter) in outcomes {
        counter.encode(family.encode_family(&ResultLabel { result })?)?;
    }
    Ok(())
}
