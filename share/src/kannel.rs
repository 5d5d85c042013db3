//! A client of the Kannel SMS/WAP gateway: SMS through smsbox's HTTP
//! `sendsms` interface (binary user data with our own UDH), and WAP Push
//! through wapbox's push proxy gateway (PAP over HTTP, content compiled by
//! Kannel).
//!
//! Only the wire side lives here; what to send and when is
//! the delivery queue's job.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sharecast_formats::share::gsm7;
use sharecast_formats::share::sms::{Body, UserData};
use sharecast_formats::share::xml::escape_markup;

/// SMS gateway settings (`[sms]` in the configuration file).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmsConfig {
    /// `none` (default: deliveries are recorded as `no_gateway`, never sent)
    /// or `kannel`.
    pub backend: String,
    /// smsbox `sendsms` URL. Default `http://127.0.0.1:13013/cgi-bin/sendsms`.
    pub sendsms_url: String,
    /// sendsms user name (`group = sendsms-user`). Default `sharecast`.
    pub username: String,
    /// sendsms password. Default empty.
    pub password: String,
    /// Sender shown to recipients (`from`). Default `16029`.
    pub from: String,
    /// wapbox PPG URL for WAP Push SI/SL (Kannel compiles the XML). Empty
    /// (default): WAP Pushes go through sendsms as binary SMS to port 2948.
    pub ppg_url: String,
    /// PPG user name (`wap-push-user`); empty sends none. Default empty.
    pub ppg_username: String,
    /// PPG password. Default empty.
    pub ppg_password: String,
    /// Most SMS per second handed to the gateway (token bucket). Default 5.
    pub rate_per_second: f64,
    /// Burst size of the rate limit, in SMS. Default 10.
    pub burst: u32,
    /// Attempts before a delivery is `failed`. Default 8.
    pub max_attempts: u32,
    /// First retry delay, ms; doubles per attempt. Default 2000.
    pub backoff_initial_ms: u64,
    /// Longest retry delay, ms. Default 600000 (10 minutes).
    pub backoff_max_ms: u64,
    /// Timeout of one request to the gateway, ms. Default 10000.
    pub timeout_ms: u64,
    /// Secret that inbound SMS callbacks (`/api/v1/sms/inbound`) must carry
    /// as `key=` (put it into Kannel's `sms-service` `get-url`). Empty
    /// (default): a random key is generated at first start into
    /// `<data_dir>/sms-inbound-key`; a callback without the key is always
    /// refused.
    pub inbound_key: String,
    /// Ask the gateway for delivery reports (Kannel `dlr-mask` 3: delivered
    /// to the phone, or not) on every SMS part, so that a delivery becomes
    /// `delivered` (event `delivery.delivered`) or `failed`. Default true.
    pub delivery_reports: bool,
    /// Base URL at which smsbox reaches this server for delivery reports
    /// (`<dlr_base_url>/api/v1/sms/dlr?key=…`). Empty (default): the
    /// server's public URL (`http.public_url`, else its loopback address).
    pub dlr_base_url: String,
}

impl Default for SmsConfig {
    fn default() -> Self {
        Self {
            backend: "none".into(),
            sendsms_url: "http://127.0.0.1:13013/cgi-bin/sendsms".into(),
            username: "sharecast".into(),
            password: String::new(),
            from: "16029".into(),
            ppg_url: String::new(),
            ppg_username: String::new(),
            ppg_password: String::new(),
            rate_per_second: 5.0,
            burst: 10,
            max_attempts: 8,
            backoff_initial_ms: 2000,
            backoff_max_ms: 600_000,
            timeout_ms: 10_000,
            inbound_key: String::new(),
            delivery_reports: true,
            dlr_base_url: String::new(),
        }
    }
}

/// Why a send failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SendError {
    /// Worth retrying later (connection refused, timeout, 5xx, queue full).
    #[error("temporary: {0}")]
    Temporary(String),
    /// Retrying will not help (bad credentials, rejected parameters).
    #[error("permanent: {0}")]
    Permanent(String),
}

/// Percent-encode every byte except RFC 3986 unreserved characters.
pub(crate) fn url_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decode `%XX` escapes and `+` (as Kannel's fakesmsc and URL encoders
/// write them) into bytes.
pub fn url_decode(s: &str) -> Result<Vec<u8>, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = b
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("bad escape at byte {i}"))?;
                out.push(hex);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Ok(out)
}

/// The sendsms query parameters of one SMS (without credentials):
/// `coding`, `udh`, `text` and `charset` for its user data.
pub(crate) fn sendsms_params(part: &UserData) -> Result<Vec<(&'static str, String)>, String> {
    let mut p = Vec::new();
    if let Some(h) = &part.header {
        let udh = h.encode().map_err(|e| format!("encoding UDH: {e}"))?;
        p.push(("udh", url_encode(&udh)));
    }
    match &part.body {
        Body::EightBit(b) => {
            p.push(("coding", "1".into()));
            p.push(("text", url_encode(b)));
        }
        Body::Gsm7(septets) => {
            let text = gsm7::decode(septets).map_err(|e| format!("GSM 7-bit body: {e}"))?;
            p.push(("coding", "0".into()));
            p.push(("charset", "UTF-8".into()));
            p.push(("text", url_encode(text.as_bytes())));
        }
        Body::Ucs2(b) => {
            p.push(("coding", "2".into()));
            p.push(("charset", "UTF-16BE".into()));
            p.push(("text", url_encode(b)));
        }
    }
    Ok(p)
}

/// The PAP push-message control document for one recipient number.
pub(crate) fn pap_control(push_id: &str, recipient: &str) -> String {
    format!(
        "<?xml version=\"1.0\"?>\n\
<!DOCTYPE pap PUBLIC \"-//WAPFORUM//DTD PAP//EN\" \"http://www.wapforum.org/DTD/pap_1.0.dtd\">\n\
<pap>\n\
  <push-message push-id=\"{}\" progress-notes-requested=\"false\">\n\
    <address address-value=\"WAPPUSH={}/TYPE=PLMN@ppg.sharecast\"></address>\n\
    <quality-of-service priority=\"medium\" delivery-method=\"unconfirmed\" network-required=\"true\" network=\"GSM\" bearer-required=\"true\" bearer=\"SMS\"></quality-of-service>\n\
  </push-message>\n\
</pap>\n",
        escape_markup(push_id),
        escape_markup(recipient)
    )
}

/// The Kannel client.
pub(crate) struct Kannel {
    cfg: SmsConfig,
    http: reqwest::Client,
    /// The delivery-report callback up to its query's variable part
    /// (`…/api/v1/sms/dlr?key=…`), when reports are asked for.
    dlr_url: Option<String>,
}

impl Kannel {
    /// A client for the configured gateway; delivery reports come back to
    /// `sms.dlr_base_url`, else to `public_http`.
    pub(crate) fn new(cfg: &SmsConfig, public_http: &str) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(cfg.timeout_ms.max(100)))
            .build()
            .map_err(|e| anyhow::anyhow!("building the HTTP client for Kannel: {e}"))?;
        let base = if cfg.dlr_base_url.is_empty() {
            public_http
        } else {
            &cfg.dlr_base_url
        };
        let dlr_url = cfg.delivery_reports.then(|| {
            format!(
                "{}/api/v1/sms/dlr?key={}",
                base.trim_end_matches('/'),
                url_encode(cfg.inbound_key.as_bytes())
            )
        });
        Ok(Self {
            cfg: cfg.clone(),
            http,
            dlr_url,
        })
    }

    /// The `dlr-mask` and `dlr-url` parameters of part `part` of
    /// delivery `delivery` (none when reports are off). Kannel replaces
    /// `%d` by the report's type.
    fn dlr_params(&self, delivery: i64, part: usize) -> Option<String> {
        let url = self.dlr_url.as_ref()?;
        let url = format!("{url}&delivery={delivery}&part={part}&type=%d");
        Some(format!(
            "&dlr-mask=3&dlr-url={}",
            url_encode(url.as_bytes())
        ))
    }

    /// Whether WAP Push SI/SL go through the PPG.
    pub(crate) fn has_ppg(&self) -> bool {
        !self.cfg.ppg_url.is_empty()
    }

    /// Hand one SMS (already segmented, with our UDH) to smsbox: part
    /// `index` of delivery `delivery`, whose reports come back tagged so.
    pub(crate) async fn send_part(
        &self,
        to: &str,
        part: &UserData,
        (delivery, index): (i64, usize),
    ) -> Result<(), SendError> {
        let mut url = format!(
            "{}?username={}&password={}&from={}&to={}",
            self.cfg.sendsms_url,
            url_encode(self.cfg.username.as_bytes()),
            url_encode(self.cfg.password.as_bytes()),
            url_encode(self.cfg.from.as_bytes()),
            url_encode(to.as_bytes()),
        );
        for (k, v) in sendsms_params(part).map_err(SendError::Permanent)? {
            url.push('&');
            url.push_str(k);
            url.push('=');
            url.push_str(&v);
        }
        if let Some(dlr) = self.dlr_params(delivery, index) {
            url.push_str(&dlr);
        }
        let resp = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| SendError::Temporary(format!("sendsms request: {e}")))?;
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        classify("sendsms", status.as_u16(), body.trim())
    }

    /// Push a WAP document (`text/vnd.wap.si` or `text/vnd.wap.sl` XML)
    /// through the PPG; Kannel compiles it to WBXML and sends it as SMS.
    pub(crate) async fn push(
        &self,
        push_id: &str,
        to: &str,
        content_type: &str,
        document: &str,
    ) -> Result<(), SendError> {
        let boundary = format!("sharecast-{}", uuid::Uuid::new_v4().simple());
        let body = format!(
            "--{boundary}\r\nContent-Type: application/xml\r\n\r\n{}\r\n--{boundary}\r\nContent-Type: {content_type}\r\n\r\n{document}\r\n--{boundary}--\r\n",
            pap_control(push_id, to)
        );
        let mut url = self.cfg.ppg_url.clone();
        if !self.cfg.ppg_username.is_empty() {
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str(&format!(
                "username={}&password={}",
                url_encode(self.cfg.ppg_username.as_bytes()),
                url_encode(self.cfg.ppg_password.as_bytes())
            ));
        }
        let resp = self
            .http
            .post(&url)
            .header(
                "Content-Type",
                format!("multipart/related; boundary={boundary}; type=\"application/xml\""),
            )
            .body(body)
            .send()
            .await
            .map_err(|e| SendError::Temporary(format!("PPG request: {e}")))?;
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        classify("PPG", status, text.trim())?;
        // PAP result codes: 1xxx success, 2xxx client errors, 3xxx server
        // errors, 4xxx service failures.
        match pap_code(&text) {
            Some(c) if (1000..2000).contains(&c) => Ok(()),
            Some(c) if (3000..4000).contains(&c) => {
                Err(SendError::Temporary(format!("PPG answered PAP code {c}")))
            }
            Some(c) => Err(SendError::Permanent(format!(
                "PPG answered PAP code {c}: {}",
                short(&text)
            ))),
            None => Err(SendError::Temporary(format!(
                "PPG answer without a PAP result code: {}",
                short(&text)
            ))),
        }
    }
}

fn short(s: &str) -> String {
    s.chars().take(200).collect()
}

/// The `code` of `<response-result>` (Kannel writes `code ="1001"`).
fn pap_code(body: &str) -> Option<u32> {
    let rest = &body[body.find("response-result")?..];
    let rest = &rest[rest.find("code")? + 4..];
    let rest = rest.trim_start().strip_prefix('=')?.trim_start();
    let rest = rest.strip_prefix('"')?;
    rest.get(..4)?.parse().ok()
}

fn classify(what: &str, status: u16, body: &str) -> Result<(), SendError> {
    match status {
        200..=299 => Ok(()),
        408 | 429 | 500..=599 => Err(SendError::Temporary(format!(
            "{what} answered {status}: {}",
            short(body)
        ))),
        _ => Err(SendError::Permanent(format!(
            "{what} answered {status}: {}",
            short(body)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sharecast_formats::attributes::VideoAttributes;
    use sharecast_formats::share::{encode_user_data, MessageOptions, ShareFormat};

    #[test]
    fn url_coding_round_trips_every_byte() {
        let all: Vec<u8> = (0..=255u8).collect();
        assert_eq!(url_decode(&url_encode(&all)).unwrap(), all);
        assert!(url_decode("%G1").is_err());
        assert_eq!(url_decode("a+b%20").unwrap(), b"a b ");
    }

    #[test]
    fn binary_share_becomes_coding_1_with_udh() {
        let attrs = VideoAttributes {
            id: "ab12".into(),
            title: Some("Demo".into()),
            share_url: Some("http://x/s/t".into()),
            ..VideoAttributes::default()
        };
        let parts = encode_user_data(&attrs, ShareFormat::Tlv, &MessageOptions::default()).unwrap();
        let p = sendsms_params(&parts[0]).unwrap();
        let get = |k: &str| p.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone());
        assert_eq!(get("coding").as_deref(), Some("1"));
        // Application port addressing, 16-bit: 0x05 0x04 dst src.
        let udh = url_decode(&get("udh").unwrap()).unwrap();
        assert_eq!(&udh[1..4], &[0x05, 0x04, 0x3E]);
        assert!(get("text").is_some());
    }

    /// Every part asks for delivery reports to the public URL (or
    /// `dlr_base_url`) with the inbound key, its delivery and part, and
    /// Kannel's `%d`; none when reports are off.
    #[test]
    fn parts_ask_for_delivery_reports_with_the_key() {
        let cfg = SmsConfig {
            inbound_key: "k&1".into(),
            ..SmsConfig::default()
        };
        let k = Kannel::new(&cfg, "http://h:8080/").unwrap();
        let p = k.dlr_params(42, 2).unwrap();
        let (mask, url) = p.split_once("&dlr-url=").unwrap();
        assert_eq!(mask, "&dlr-mask=3");
        let url = String::from_utf8(url_decode(url).unwrap()).unwrap();
        assert_eq!(
            url,
            "http://h:8080/api/v1/sms/dlr?key=k%261&delivery=42&part=2&type=%d"
        );
        let cfg = SmsConfig {
            dlr_base_url: "https://gw.example".into(),
            ..cfg
        };
        let k = Kannel::new(&cfg, "http://h:8080").unwrap();
        assert!(url_decode(&k.dlr_params(1, 0).unwrap())
            .map(|u| String::from_utf8(u).unwrap())
            .unwrap()
            .contains("https://gw.example/api/v1/sms/dlr?"));
        let off = SmsConfig {
            delivery_reports: false,
            ..cfg
        };
        assert!(Kannel::new(&off, "http://h")
            .unwrap()
            .dlr_params(1, 0)
            .is_none());
    }

    #[test]
    fn pap_codes_are_read() {
        assert_eq!(
            pap_code("<response-result code=\"1001\" desc=\"ok\"/>"),
            Some(1001)
        );
        assert_eq!(
            pap_code("<push-response><response-result code =\"2002\"></response-result>"),
            Some(2002)
        );
        assert_eq!(pap_code("nothing"), None);
        assert!(classify("x", 202, "").is_ok());
        assert!(matches!(
            classify("x", 503, ""),
            Err(SendError::Temporary(_))
        ));
        assert!(matches!(
            classify("x", 403, ""),
            Err(SendError::Permanent(_))
        ));
    }
}
