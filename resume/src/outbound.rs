//! The one policy for every request the server makes to an address it was
//! given (a hand-off pushed to another platform, a suspend state pulled
//! from one, another platform's video fetched), and for the redirects it
//! hands out to other platforms: nothing the server asks of another
//! address goes around it.
//!
//! - Only `http` and `https`.
//! - When `outbound.allowed_hosts` lists hosts, only those (`host`, any
//!   port, or `host:port`); redirects handed out go only to listed hosts.
//! - Loopback, private, link-local, shared (CGNAT), multicast, reserved and
//!   documentation addresses are refused, IPv4 inside IPv6 (mapped, NAT64,
//!   6to4) included, unless `outbound.allow_private_addresses` is on or an
//!   allowed-hosts entry names that address (an IP or a CIDR block). The
//!   check is made on the addresses a name resolves to, and the connection
//!   goes to those very addresses, so a name cannot point inside.
//! - Redirects are followed only to destinations the same rules allow
//!   (at most 5).
//! - Bounded in time (`outbound.timeout_secs`) and, for answers read whole,
//!   in size (`outbound.max_answer_bytes`); what a remote answered is never
//!   passed back to the caller, and errors do not tell a refused connection
//!   from a timeout.
//! - Counted in `sharecast_outbound_requests_total{result}`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};

use crate::metrics::ResultLabel;
use sharecast_metrics::family;

/// `[outbound]`: requests to addresses the server was given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutboundConfig {
    /// Hosts the server may send requests (and redirect viewers) to:
    /// `host` (any port), `host:port`, an IP address or a CIDR block
    /// (`10.1.0.0/16`). Empty: any host whose addresses are public, and no
    /// redirects to other platforms. Default empty.
    pub allowed_hosts: Vec<String>,
    /// Allow loopback, private and link-local destinations without listing
    /// them. Default false.
    pub allow_private_addresses: bool,
    /// Longest request (connect, answer, body), seconds. Default 10; the
    /// fetch of a whole video has its own limit (`resume.fetch_timeout_secs`).
    pub timeout_secs: u64,
    /// Largest answer read whole (a suspend state, a hand-off answer),
    /// bytes. Default 65536.
    pub max_answer_bytes: usize,
}

impl Default for OutboundConfig {
    fn default() -> Self {
        Self {
            allowed_hosts: Vec::new(),
            allow_private_addresses: false,
            timeout_secs: 10,
            max_answer_bytes: 64 * 1024,
        }
    }
}

/// Why a destination or a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OutboundError {
    /// Not an http(s) URL with a host.
    BadUrl(String),
    /// A host or address the policy does not allow.
    NotAllowed(String),
    /// The destination could not be reached or did not answer in time (the
    /// reason is logged, not returned).
    Unreachable,
    /// It answered with an error status.
    Refused(u16),
    /// Its answer was too large or not what was expected.
    BadAnswer(String),
}

impl std::fmt::Display for OutboundError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OutboundError::BadUrl(m) => write!(f, "bad address: {m}"),
            OutboundError::NotAllowed(m) => write!(f, "not allowed: {m}"),
            OutboundError::Unreachable => write!(f, "could not be reached"),
            OutboundError::Refused(s) => write!(f, "answered HTTP {s}"),
            OutboundError::BadAnswer(m) => write!(f, "bad answer: {m}"),
        }
    }
}

impl std::error::Error for OutboundError {}

/// An entry of the allow-list.
#[derive(Debug, Clone, PartialEq)]
enum Entry {
    Host { host: String, port: Option<u16> },
    Net { addr: IpAddr, prefix: u8 },
}

impl Entry {
    fn parse(s: &str) -> Result<Entry, String> {
        let s = s.trim().to_ascii_lowercase();
        if let Some((a, p)) = s.split_once('/') {
            let addr: IpAddr = a.parse().map_err(|_| format!("{s:?}: bad CIDR address"))?;
            let max = if addr.is_ipv4() { 32 } else { 128 };
            let prefix: u8 = p
                .parse()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: bad CIDR prefix"))?;
            return Ok(Entry::Net { addr, prefix });
        }
        if let Ok(addr) = s.trim_matches(['[', ']']).parse::<IpAddr>() {
            let prefix = if addr.is_ipv4() { 32 } else { 128 };
            return Ok(Entry::Net { addr, prefix });
        }
        if let Ok(sa) = s.parse::<SocketAddr>() {
            return Ok(Entry::Host {
                host: sa.ip().to_string(),
                port: Some(sa.port()),
            });
        }
        match s.rsplit_once(':') {
            Some((h, p)) if !h.is_empty() => Ok(Entry::Host {
                host: h.to_string(),
                port: Some(p.parse().map_err(|_| format!("{s:?}: bad port"))?),
            }),
            _ if !s.is_empty() => Ok(Entry::Host {
                host: s,
                port: None,
            }),
            _ => Err("empty entry".into()),
        }
    }

    fn names(&self, host: &str, port: u16) -> bool {
        match self {
            Entry::Host { host: h, port: p } => h == host && p.is_none_or(|p| p == port),
            Entry::Net { .. } => host.parse::<IpAddr>().is_ok_and(|a| self.contains(a)),
        }
    }

    /// Whether the entry names this very address (an IP, an `IP:port` or a
    /// CIDR block), which opens it even when it is internal.
    fn contains(&self, ip: IpAddr) -> bool {
        let (addr, prefix) = match self {
            Entry::Net { addr, prefix } => (addr, prefix),
            Entry::Host { host, .. } => return host.parse::<IpAddr>().is_ok_and(|h| h == ip),
        };
        match (addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - *prefix as u32).unwrap_or(0);
                u32::from(*n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX.checked_shl(128 - *prefix as u32).unwrap_or(0);
                u128::from(*n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// Whether an IPv4 address is one a request from the server must not reach
/// by default.
fn internal_v4(a: Ipv4Addr) -> bool {
    let o = a.octets();
    a.is_unspecified()
        || a.is_loopback()
        || a.is_private()
        || a.is_link_local()
        || a.is_broadcast()
        || a.is_multicast()
        || a.is_documentation()
        || o[0] == 0
        || o[0] >= 240
        // Shared address space (carrier-grade NAT), 100.64.0.0/10.
        || (o[0] == 100 && (o[1] & 0xC0) == 64)
        // IETF protocol assignments, 192.0.0.0/24; benchmarking 198.18.0.0/15.
        || (o[0] == 192 && o[1] == 0 && o[2] == 0)
        || (o[0] == 198 && (o[1] & 0xFE) == 18)
}

/// The IPv4 address an IPv6 address carries (mapped, compatible, NAT64,
/// 6to4), if any.
fn embedded_v4(a: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = a.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = a.segments();
    let tail = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    if s[..6] == [0, 0, 0, 0, 0, 0] && !a.is_loopback() && !a.is_unspecified() {
        return Some(tail);
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return Some(tail);
    }
    if s[0] == 0x2002 {
        return Some(Ipv4Addr::new(
            (s[1] >> 8) as u8,
            s[1] as u8,
            (s[2] >> 8) as u8,
            s[2] as u8,
        ));
    }
    None
}

/// Whether an address is internal (not reachable from the internet at
/// large): what the server refuses to send requests to by default.
pub(crate) fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => internal_v4(a),
        IpAddr::V6(a) => {
            if let Some(v4) = embedded_v4(a) {
                return internal_v4(v4);
            }
            let s0 = a.segments()[0];
            a.is_unspecified()
                || a.is_loopback()
                || a.is_multicast()
                || (s0 & 0xfe00) == 0xfc00 // unique local
                || (s0 & 0xffc0) == 0xfe80 // link-local
                || (s0 & 0xffc0) == 0xfec0 // site-local
                || (s0 == 0x2001 && a.segments()[1] == 0x0db8) // documentation
                || (s0 == 0x2001 && a.segments()[1] == 0) // Teredo
        }
    }
}

/// The policy's decisions, pure (no I/O): tested on their own.
#[derive(Debug, Clone)]
pub(crate) struct Rules {
    entries: Vec<Entry>,
    allow_private: bool,
}

impl Rules {
    /// The rules of a configuration; an unreadable allow-list entry is an
    /// error naming it.
    pub(crate) fn new(cfg: &OutboundConfig) -> Result<Rules, String> {
        let entries = cfg
            .allowed_hosts
            .iter()
            .map(|e| Entry::parse(e).map_err(|m| format!("outbound.allowed_hosts: {m}")))
            .collect::<Result<_, _>>()?;
        Ok(Rules {
            entries,
            allow_private: cfg.allow_private_addresses,
        })
    }

    /// The http(s) URL, if its host may be asked at all (before any name is
    /// resolved); an IP address in it is checked here.
    pub(crate) fn check_url(&self, raw: &str) -> Result<url::Url, OutboundError> {
        let url = url::Url::parse(raw.trim())
            .map_err(|e| OutboundError::BadUrl(format!("{raw:?} is not a URL ({e})")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(OutboundError::BadUrl(format!(
                "{raw:?} is not an http(s) URL"
            )));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(OutboundError::BadUrl("a URL with credentials".into()));
        }
        let host = url
            .host_str()
            .ok_or_else(|| OutboundError::BadUrl(format!("{raw:?} has no host")))?
            .trim_matches(['[', ']'])
            .to_ascii_lowercase();
        let port = url.port_or_known_default().unwrap_or(80);
        if !self.entries.is_empty() && !self.entries.iter().any(|e| e.names(&host, port)) {
            return Err(OutboundError::NotAllowed(format!(
                "host {host}:{port} is not an allowed platform"
            )));
        }
        if let Ok(ip) = host.parse::<IpAddr>() {
            self.check_addr(&host, ip)?;
        }
        Ok(url)
    }

    /// Whether the server may connect to `ip` (which `host` resolved to).
    pub(crate) fn check_addr(&self, host: &str, ip: IpAddr) -> Result<(), OutboundError> {
        let ip = match ip {
            IpAddr::V6(a) => a.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        if !is_internal(ip) || self.allow_private || self.entries.iter().any(|e| e.contains(ip)) {
            Ok(())
        } else {
            Err(OutboundError::NotAllowed(format!(
                "{host} is an internal address ({ip})"
            )))
        }
    }

    /// Whether viewers may be redirected to `raw`: only to listed hosts.
    pub(crate) fn check_redirect(&self, raw: &str) -> Result<url::Url, OutboundError> {
        if self.entries.is_empty() {
            return Err(OutboundError::NotAllowed(
                "redirects go only to platforms listed in outbound.allowed_hosts".into(),
            ));
        }
        self.check_url(raw)
    }
}

/// Resolves names for the outbound client, keeping only allowed addresses.
struct Resolver {
    rules: Arc<Rules>,
}

impl reqwest::dns::Resolve for Resolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let rules = self.rules.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if addrs.is_empty() {
                return Err(format!("{host} has no address").into());
            }
            // Every address must be allowed: a name that resolves to a public
            // and an internal address is refused.
            for a in &addrs {
                rules
                    .check_addr(&host, a.ip())
                    .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)?;
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The client every outbound request goes through.
#[derive(Clone)]
pub struct Outbound {
    rules: Arc<Rules>,
    cfg: OutboundConfig,
    counts: Requests,
}

/// The requests made, by result (a result appears once counted): the
/// collector of `sharecast_outbound_requests_total`.
#[derive(Clone, Debug, Default)]
struct Requests(Family<ResultLabel, Counter>);

impl Collector for Requests {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        family(
            &mut enc,
            "outbound_requests",
            "Requests the server made to addresses it was given, by result",
            &self.0,
        )
    }
}

impl std::fmt::Debug for Outbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbound")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl Outbound {
    /// The outbound client of a configuration.
    pub fn new(cfg: &OutboundConfig) -> anyhow::Result<Outbound> {
        let rules = Rules::new(cfg).map_err(anyhow::Error::msg)?;
        Ok(Outbound {
            rules: Arc::new(rules),
            cfg: cfg.clone(),
            counts: Requests::default(),
        })
    }

    /// The pure rules.
    pub(crate) fn rules(&self) -> &Rules {
        &self.rules
    }

    /// A reqwest client held to the policy, with this overall timeout.
    pub(crate) fn client(&self, timeout: Duration) -> anyhow::Result<reqwest::Client> {
        let rules = self.rules.clone();
        let redirect = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= 5 {
                return attempt.error("too many redirects");
            }
            match rules.check_url(attempt.url().as_str()) {
                Ok(_) => attempt.follow(),
                Err(e) => attempt.error(e),
            }
        });
        reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .redirect(redirect)
            .no_proxy()
            .dns_resolver(Arc::new(Resolver {
                rules: self.rules.clone(),
            }))
            .build()
            .map_err(|e| anyhow::anyhow!("building the outbound HTTP client: {e}"))
    }

    fn count(&self, result: &'static str) {
        self.counts.0.get_or_create(&ResultLabel { result }).inc();
    }

    /// Counts the outcome of a request made with [`Outbound::client`].
    pub(crate) fn record(&self, result: Result<(), &OutboundError>) {
        self.count(match result {
            Ok(()) => "ok",
            Err(OutboundError::BadUrl(_)) => "bad_url",
            Err(OutboundError::NotAllowed(_)) => "not_allowed",
            Err(OutboundError::Unreachable) => "unreachable",
            Err(OutboundError::Refused(_)) => "refused",
            Err(OutboundError::BadAnswer(_)) => "bad_answer",
        });
    }

    /// Maps a transport error to the policy's error (a refusal by the
    /// policy, or "unreachable"), logging the detail.
    pub(crate) fn transport_error(&self, url: &str, e: &reqwest::Error) -> OutboundError {
        let mut source: Option<&dyn std::error::Error> = Some(e);
        while let Some(s) = source {
            if let Some(o) = s.downcast_ref::<OutboundError>() {
                return o.clone();
            }
            source = s.source();
        }
        tracing::info!(url = %url, error = %e, "outbound request failed");
        OutboundError::Unreachable
    }

    /// Sends `req` (GET or POST of `body` as JSON) to `url` and reads a JSON
    /// answer of type `T`, within the size and time bounds.
    async fn exchange<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<T, OutboundError> {
        let r = self.exchange_inner(url, body).await;
        self.record(r.as_ref().map(|_| ()));
        r
    }

    async fn exchange_inner<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<T, OutboundError> {
        let parsed = self.rules.check_url(url)?;
        let client = self
            .client(Duration::from_secs(self.cfg.timeout_secs.max(1)))
            .map_err(|e| {
                tracing::error!(error = %format!("{e:#}"), "outbound client");
                OutboundError::Unreachable
            })?;
        let req = match body {
            Some(b) => client.post(parsed.clone()).json(b),
            None => client.get(parsed.clone()),
        };
        let mut resp = req
            .send()
            .await
            .map_err(|e| self.transport_error(url, &e))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(OutboundError::Refused(status.as_u16()));
        }
        let max = self.cfg.max_answer_bytes;
        let mut bytes = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| self.transport_error(url, &e))?
        {
            if bytes.len() + chunk.len() > max {
                return Err(OutboundError::BadAnswer(format!(
                    "more than {max} bytes (outbound.max_answer_bytes)"
                )));
            }
            bytes.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| OutboundError::BadAnswer(format!("not the expected JSON ({e})")))
    }

    /// GET a JSON document.
    pub(crate) async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
    ) -> Result<T, OutboundError> {
        self.exchange(url, None).await
    }

    /// POST a JSON body, read a JSON answer.
    pub(crate) async fn post_json<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        body: &serde_json::Value,
    ) -> Result<T, OutboundError> {
        self.exchange(url, Some(body)).await
    }

    /// Whether `url` may be asked at all (scheme, credentials, allowed
    /// hosts, an internal IP address in it): what a registration of an
    /// address is checked against. Names are checked again, after they
    /// are resolved, when a request is made.
    pub fn check_destination(&self, url: &str) -> Result<(), String> {
        self.rules
            .check_url(url)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// POSTs `body` with `headers` to `url` on `client` (one of
    /// [`Outbound::client`]); any 2xx answer is success, and the answer is
    /// not read.
    pub(crate) async fn post_bytes(
        &self,
        client: &reqwest::Client,
        url: &str,
        headers: reqwest::header::HeaderMap,
        body: Vec<u8>,
    ) -> Result<(), OutboundError> {
        let r = async {
            let parsed = self.rules.check_url(url)?;
            let resp = client
                .post(parsed)
                .headers(headers)
                .body(body)
                .send()
                .await
                .map_err(|e| self.transport_error(url, &e))?;
            match resp.status() {
                s if s.is_success() => Ok(()),
                s => Err(OutboundError::Refused(s.as_u16())),
            }
        }
        .await;
        self.record(r.as_ref().map(|_| ()));
        r
    }

    /// The longest request, from the configuration.
    pub(crate) fn timeout(&self) -> Duration {
        Duration::from_secs(self.cfg.timeout_secs.max(1))
    }

    /// Registers `outbound_requests` (under the registry's prefix): the
    /// requests made, by result.
    pub fn register_metrics(&self, registry: &mut Registry) {
        registry.register_collector(Box::new(self.counts.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(allowed: &[&str], private: bool) -> Rules {
        Rules::new(&OutboundConfig {
            allowed_hosts: allowed.iter().map(|s| s.to_string()).collect(),
            allow_private_addresses: private,
            ..OutboundConfig::default()
        })
        .unwrap()
    }

    #[test]
    fn internal_addresses_are_refused_in_every_spelling() {
        let r = rules(&[], false);
        for url in [
            "http://127.0.0.1/x",
            "http://127.1.2.3:8080/",
            "http://10.0.0.1/",
            "http://172.16.5.4/",
            "http://192.168.1.1/",
            "http://169.254.169.254/latest/meta-data/",
            "http://100.64.0.1/",
            "http://0.0.0.0/",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:7f00:1]/",
            "http://[64:ff9b::a00:1]/",
            "http://[2002:7f00:1::]/",
            "http://[fc00::1]/",
            "http://[fe80::1]/",
            "http://[::]/",
            // Decimal and hex spellings that URL parsing turns into 127.0.0.1.
            "http://2130706433/",
            "http://0x7f.1/",
        ] {
            assert!(
                matches!(r.check_url(url), Err(OutboundError::NotAllowed(_))),
                "{url}: {:?}",
                r.check_url(url)
            );
        }
        for url in [
            "http://93.184.215.14/",
            "https://[2606:4700::1111]/",
            "http://example.org/",
        ] {
            assert!(r.check_url(url).is_ok(), "{url}");
        }
    }

    #[test]
    fn names_are_checked_after_resolution() {
        let r = rules(&[], false);
        // A name that resolves inside (DNS-rebinding style) is refused by the
        // address check the resolver makes.
        assert!(r
            .check_addr("rebind.example", "127.0.0.1".parse().unwrap())
            .is_err());
        assert!(r
            .check_addr("rebind.example", "::ffff:10.1.2.3".parse().unwrap())
            .is_err());
        assert!(r
            .check_addr("ok.example", "93.184.215.14".parse().unwrap())
            .is_ok());
    }

    #[test]
    fn the_allow_list_limits_hosts_and_can_open_internal_ones() {
        let r = rules(
            &[
                "platform-b.example",
                "127.0.0.1",
                "10.9.0.0/16",
                "b.example:8443",
            ],
            false,
        );
        assert!(r.check_url("https://platform-b.example/x").is_ok());
        assert!(matches!(
            r.check_url("https://evil.example/x"),
            Err(OutboundError::NotAllowed(_))
        ));
        assert!(r.check_url("http://127.0.0.1:9000/x").is_ok());
        assert!(r.check_url("http://10.9.3.4/").is_ok());
        assert!(r.check_url("http://10.8.3.4/").is_err());
        assert!(r.check_url("https://b.example:8443/").is_ok());
        assert!(r.check_url("https://b.example/").is_err());
        // A listed name that resolves inside is still refused...
        assert!(r
            .check_addr("platform-b.example", "127.0.0.2".parse().unwrap())
            .is_err());
        // ...unless the address itself is listed.
        assert!(r
            .check_addr("platform-b.example", "127.0.0.1".parse().unwrap())
            .is_ok());
        let open = rules(&[], true);
        assert!(open.check_url("http://127.0.0.1/").is_ok());
    }

    #[test]
    fn only_http_urls_without_credentials() {
        let r = rules(&[], false);
        for url in [
            "file:///etc/passwd",
            "gopher://x/",
            "javascript:alert(1)",
            "ftp://a/",
            "http://u:p@example.org/",
            "not a url",
        ] {
            assert!(
                matches!(r.check_url(url), Err(OutboundError::BadUrl(_))),
                "{url}"
            );
        }
    }

    #[test]
    fn redirects_go_only_to_listed_platforms() {
        assert!(rules(&[], true)
            .check_redirect("https://anywhere.example/")
            .is_err());
        let r = rules(&["b.example"], false);
        assert!(r.check_redirect("https://b.example/api").is_ok());
        assert!(r.check_redirect("https://evil.example/").is_err());
    }

    #[tokio::test]
    async fn a_name_resolving_to_loopback_is_not_asked() {
        // A local server that would answer; "localhost" resolves to it.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let h = hits.clone();
        tokio::spawn(async move {
            while let Ok((_s, _)) = listener.accept().await {
                h.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        });
        let o = Outbound::new(&OutboundConfig {
            allowed_hosts: vec!["localhost".into()],
            ..OutboundConfig::default()
        })
        .unwrap();
        let e = o
            .get_json::<serde_json::Value>(&format!("http://localhost:{port}/state"))
            .await
            .unwrap_err();
        assert!(matches!(e, OutboundError::NotAllowed(_)), "{e:?}");
        assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 0);
        // Allowed explicitly by address, it is asked.
        let o = Outbound::new(&OutboundConfig {
            allowed_hosts: vec!["127.0.0.1".into()],
            timeout_secs: 1,
            ..OutboundConfig::default()
        })
        .unwrap();
        let _ = o
            .get_json::<serde_json::Value>(&format!("http://127.0.0.1:{port}/state"))
            .await;
        assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn redirects_into_internal_addresses_are_not_followed() {
        use crate::testing::{serve, Reply};
        let inner = serve(&[("/secret", Reply::Body(b"{}".to_vec()))], None).await;
        let redirect = format!("http://localhost:{}/secret", inner.addr.port());
        let outer = serve(&[("/state", Reply::Redirect(redirect))], None).await;
        let o = Outbound::new(&OutboundConfig {
            allowed_hosts: vec![format!("127.0.0.1:{}", outer.addr.port())],
            ..OutboundConfig::default()
        })
        .unwrap();
        let e = o
            .get_json::<serde_json::Value>(&format!("{}/state", outer.base))
            .await
            .unwrap_err();
        assert!(matches!(e, OutboundError::NotAllowed(_)), "{e:?}");
        assert_eq!(outer.hits.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(inner.hits.load(std::sync::atomic::Ordering::SeqCst), 0);
    }
}
