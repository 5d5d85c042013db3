//! `/metrics`: the composition root builds one `prometheus-client`
//! [`Registry`](prometheus_client::registry::Registry) with the server's
//! prefix (`sharecast`), each component registers its own families into
//! it, and [`Gateway::new`](crate::Gateway::new) adds the HTTP request
//! counts below; every scrape encodes the registry as Prometheus text.
//!
//! Families are written by collectors under their exact help texts (the
//! registry's own `register` would end each one with a full stop), so the
//! exposition keeps the names, types, labels and help texts it had.

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use sharecast_metrics::family;

/// The labels of an error answer.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    status: u16,
    code: &'static str,
}

/// Requests the gateway served, and its error answers by status and code
/// (a pair appears once counted). Cheap to clone: clones count together.
#[derive(Clone, Debug, Default)]
pub(crate) struct HttpMetrics {
    requests: Counter,
    errors: Family<ErrorLabels, Counter>,
}

impl HttpMetrics {
    /// Counts a request served.
    pub(crate) fn request(&self) {
        self.requests.inc();
    }

    /// Counts an error answer.
    pub(crate) fn error(&self, status: u16, code: &'static str) {
        self.errors
            .get_or_create(&ErrorLabels { status, code })
            .inc();
    }
}

impl Collector for HttpMetrics {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        family(
            &mut enc,
            "http_requests",
            "HTTP requests served",
            &self.requests,
        )?;
        family(
            &mut enc,
            "http_errors",
            "HTTP requests answered with an error, by status and code",
            &self.errors,
        )
    }
}
