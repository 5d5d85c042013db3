//! The HTTP client of the tests and what they read from answers: JSON
//! bodies, error codes, Prometheus samples. Calls on a server's own paths
//! are methods of [`Server`](crate::Server) (`get`, `post`, `delete`,
//! `request`); the functions here serve any URL.

use std::time::Duration;

use reqwest::blocking::{Client, RequestBuilder, Response};
use serde_json::Value;

/// The client every helper uses: follows no redirect (a test sees the 303
/// itself), gives up on a request after 30 s.
pub fn client() -> Client {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("HTTP client")
}

/// The status and the body of an answer: its JSON, or the text as a JSON
/// string when it is not JSON (`Null` when empty).
pub fn answer(resp: Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let text = resp.text().unwrap_or_default();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, body)
}

/// Sends a request built by hand (extra headers, another server) and
/// reads its [`answer`].
pub fn send(req: RequestBuilder) -> (u16, Value) {
    answer(req.send().expect("HTTP request"))
}

/// `error.code` of an error body (docs/http-api.md), or `"<no code>"`.
pub fn error_code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("<no code>")
}

/// The value of one series in Prometheus text, named exactly as written
/// (`name` or `name{label="v"}`); `None` when the text lacks it.
pub fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let (s, v) = l.rsplit_once(' ')?;
        (s == series).then(|| v.parse().ok()).flatten()
    })
}

/// `s` percent-encoded for a URL's query (`application/x-www-form-urlencoded`).
pub fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_series_exactly() {
        let text = "# TYPE a counter\na_total 3\na_total{k=\"v\"} 1.5\nab_total 9\n";
        assert_eq!(metric_value(text, "a_total"), Some(3.0));
        assert_eq!(metric_value(text, "a_total{k=\"v\"}"), Some(1.5));
        assert_eq!(metric_value(text, "a"), None);
    }

    #[test]
    fn encodes_a_url_for_a_query() {
        assert_eq!(
            urlencode("http://h:1/a?b=c&d"),
            "http%3A%2F%2Fh%3A1%2Fa%3Fb%3Dc%26d"
        );
    }
}
