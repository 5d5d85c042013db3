//! The SRT stream id of a publisher: where its publishing key is.
//!
//! Accepted forms (`docs/publishing.md`):
//! - the plain key: `sk_…`;
//! - SRT access control: `#!::r=KEY,m=publish` (other keys such as `u=`
//!   or `s=` are ignored; `m` may be left out, and then means publish);
//! - MediaMTX style: `publish:KEY`.
//!
//! A caller that asks to read (`m=request`, `read:…`) or names no key is
//! refused: this server takes publishers only.

/// Why a stream id is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// No key in it (missing, empty, or an access-control id without `r=`).
    NoKey(String),
    /// The caller asks to read, or for a mode other than publish.
    NotPublish(String),
}

/// The publishing key in a caller's stream id.
pub(crate) fn publish_key(stream_id: Option<&str>) -> Result<&str, Refusal> {
    let id = stream_id.unwrap_or_default().trim();
    if id.is_empty() {
        return Err(Refusal::NoKey(
            "no stream id: send the publishing key as the SRT streamid".into(),
        ));
    }
    if let Some(fields) = id.strip_prefix("#!::") {
        return access_control(fields);
    }
    if let Some(rest) = id.strip_prefix("publish:") {
        // MediaMTX's `publish:PATH[:USER:PASS]`: the path is the key.
        return non_empty(rest.split(':').next().unwrap_or_default());
    }
    if id.starts_with("read:") {
        return Err(Refusal::NotPublish(
            "a read request (this server takes publishers only; watch over RTSP or HLS)".into(),
        ));
    }
    non_empty(id)
}

/// `key=value` pairs separated by commas: `r` is the key, `m` the mode.
fn access_control(fields: &str) -> Result<&str, Refusal> {
    let mut key = None;
    for field in fields.split(',') {
        let (name, value) = field.split_once('=').unwrap_or((field, ""));
        match name.trim() {
            "r" => key = Some(value.trim()),
            "m" if value.trim() != "publish" => {
                return Err(Refusal::NotPublish(format!(
                "mode m={} (this server takes publishers only: m=publish; watch over RTSP or HLS)",
                value.trim()
            )))
            }
            _ => {}
        }
    }
    match key {
        Some(k) => non_empty(k),
        None => Err(Refusal::NoKey(
            "an access-control stream id without r=<publishing key>".into(),
        )),
    }
}

fn non_empty(key: &str) -> Result<&str, Refusal> {
    if key.is_empty() {
        Err(Refusal::NoKey("an empty publishing key".into()))
    } else {
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_form_gives_the_key() {
        for id in [
            "sk_abc",
            " sk_abc ",
            "#!::r=sk_abc,m=publish",
            "#!::m=publish,r=sk_abc",
            "#!::u=studio,r=sk_abc,m=publish",
            "#!::r=sk_abc",
            "publish:sk_abc",
            "publish:sk_abc:user:pass",
        ] {
            assert_eq!(publish_key(Some(id)), Ok("sk_abc"), "{id}");
        }
    }

    #[test]
    fn readers_and_ids_without_a_key_are_refused() {
        for id in [
            "#!::r=sk_abc,m=request",
            "#!::r=sk_abc,m=bidirectional",
            "read:sk_abc",
        ] {
            assert!(
                matches!(publish_key(Some(id)), Err(Refusal::NotPublish(_))),
                "{id}"
            );
        }
        for id in [
            None,
            Some(""),
            Some("  "),
            Some("#!::m=publish"),
            Some("#!::r="),
            Some("publish:"),
        ] {
            assert!(matches!(publish_key(id), Err(Refusal::NoKey(_))), "{id:?}");
        }
    }
}
