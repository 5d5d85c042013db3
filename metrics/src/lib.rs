//! What every component shares to write its families on `/metrics`: each
//! one keeps its counters in `prometheus-client` types and writes them from
//! its own [`Collector`](prometheus_client::collector::Collector) with
//! [`family`], under the exact names and help texts the exposition has
//! always had (the registry's own `register` would end each help text with
//! a full stop).

use std::fmt;

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};

/// One metric family under its exact name and help text.
pub fn family(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric: &impl EncodeMetric,
) -> fmt::Result {
    metric.encode(enc.encode_descriptor(name, help, None, metric.metric_type())?)
}

#[cfg(test)]
mod tests {
    use prometheus_client::collector::Collector;
    use prometheus_client::encoding::text::encode;
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::registry::Registry;

    use super::*;

    #[derive(Debug)]
    struct Requests(Counter);

    impl Collector for Requests {
        fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
            family(&mut enc, "requests", "Requests served", &self.0)
        }
    }

    #[test]
    fn a_family_keeps_its_name_and_help_text() {
        let requests = Counter::default();
        requests.inc_by(3);
        let mut registry = Registry::with_prefix("sharecast");
        registry.register_collector(Box::new(Requests(requests)));
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        assert!(
            text.contains("# HELP sharecast_requests Requests served\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE sharecast_requests counter\n"),
            "{text}"
        );
        assert!(text.contains("sharecast_requests_total 3\n"), "{text}");
    }
}
