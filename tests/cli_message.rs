//! End-to-end: `sharecast message encode|decode`, the share-message codecs
//! on the command line, run as the real binary (docs/share-messages.md,
//! "Command line"). No server is started.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::{json, Value};

fn sharecast(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(sharecast_testkit::bin())
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running sharecast");
    {
        let mut input = child.stdin.take().unwrap();
        if let Some(s) = stdin {
            input.write_all(s.as_bytes()).unwrap();
        }
    }
    child.wait_with_output().unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// The error text of a run that must fail.
fn fails(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "expected an error, got stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(out.stdout.is_empty() || out.status.code() == Some(1));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The typical share of docs/share-messages.md ("Worked example").
fn typical() -> Value {
    json!({
        "id": "k3v9x2",
        "share_url": "https://share.sharecast.example/s/Xy3kP9qLm2Va",
        "vod_url": "https://share.sharecast.example/vod/k3v9x2/source.mp4",
        "container": "mp4",
        "codecs": ["avc1.64001f", "mp4a.40.2"],
        "size_bytes": 12582912,
        "width": 1280,
        "height": 720,
        "frame_rate": 29.97,
        "bitrate": 2500000,
        "duration_ms": 40250
    })
}

/// Every JSON document printed by `decode` (pretty JSON, one after another).
fn documents(stdout: &str) -> Vec<Value> {
    serde_json::Deserializer::from_str(stdout)
        .into_iter::<Value>()
        .map(|v| v.expect("decode prints JSON"))
        .collect()
}

fn encode(format: &str, attrs: &Value, extra: &[&str]) -> Vec<String> {
    let text = attrs.to_string();
    let mut args = vec![
        "message",
        "encode",
        "--format",
        format,
        "--to",
        "+8613800138000",
        "--attributes",
        "-",
    ];
    args.extend_from_slice(extra);
    ok(&sharecast(&args, Some(&text)))
        .lines()
        .map(str::to_owned)
        .collect()
}

fn decode(pdus: &[String]) -> Vec<Value> {
    let mut args = vec!["message", "decode"];
    args.extend(pdus.iter().map(String::as_str));
    documents(&ok(&sharecast(&args, None)))
}

/// The TLV share of the worked example, as the SMS-SUBMIT the document
/// spells out octet by octet.
#[test]
fn encode_prints_the_documented_tlv_pdu() {
    let doc_tlv = concat!(
        "C1",
        "01066B3376397832",
        "052702",
        "73686172652E736861726563",
        "6173742E6578616D706C652F732F",
        "5879336B5039714C6D325661",
        "061707",
        "2F766F642F6B33763978322F",
        "736F757263652E6D7034",
        "09036D7034",
        "0A0980363430303166",
        "2C86",
        "0B0480808006",
        "0C02800A",
        "0D02D005",
        "0E0392EA01",
        "0F04A0CB9801",
        "1003BABA02",
    );
    assert_eq!(doc_tlv.len() / 2, 121, "the document says 121 octets");
    let expected = "004100".to_string() // no SMSC, SUBMIT + UDHI, MR 0
        + "0D91683108108300F0" // TP-DA
        + "0004" // PID, DCS 8-bit
        + "80" // UDL 128
        + "0605043E9D3E9D" // ports 16029 -> 16029
        + doc_tlv;
    let lines = encode("tlv", &typical(), &[]);
    assert_eq!(lines, vec![expected]);
    let back = decode(&lines);
    assert_eq!(back.len(), 1);
    for (k, v) in typical().as_object().unwrap() {
        assert_eq!(&back[0][k], v, "{k}: {}", back[0]);
    }
}

/// Every format round-trips through the command line, with the parts of
/// concatenated messages given in reverse order; a repeated part is a
/// warning, not an error; `-` reads the PDUs from standard input.
#[test]
fn every_format_round_trips_out_of_order() {
    let mut attrs = typical();
    // Long enough that TLV, XML, text and the WBXML video document take
    // several SMS (SI and SL carry little and fit one).
    attrs["title"] = json!("Beach walk at low tide, with the dog");
    attrs["sender"] = json!("+8613800138000");
    attrs["live_urls"] = json!(["rtsp://share.sharecast.example:8554/live/k3v9x2?token=abc"]);
    attrs["thumbnail_url"] =
        json!("https://share.sharecast.example/api/v1/assets/k3v9x2/poster.jpg");
    attrs["expires_unix"] = json!(1893499200u64);
    for format in ["tlv", "xml", "text", "wap-si", "wap-sl", "wap-video"] {
        let mut lines = encode(format, &attrs, &["--wide-reference"]);
        assert!(!lines.is_empty(), "{format}");
        if !format.starts_with("wap-s") {
            assert!(lines.len() >= 2, "{format}: {} PDU(s)", lines.len());
        }
        for l in &lines {
            assert!(l.bytes().all(|b| b.is_ascii_hexdigit()), "{format}: {l}");
        }
        lines.reverse();
        let got = decode(&lines);
        assert_eq!(got.len(), 1, "{format}: {got:?}");
        let got = &got[0];
        assert_eq!(got["share_url"], attrs["share_url"], "{format}: {got}");
        match format {
            "wap-sl" => assert_eq!(got["id"], "", "SL carries the link only"),
            "wap-si" => {
                assert_eq!(got["id"], attrs["id"]);
                assert_eq!(got["title"], attrs["title"]);
                assert_eq!(got["expires_unix"], attrs["expires_unix"]);
            }
            _ => {
                for k in [
                    "id",
                    "title",
                    "sender",
                    "vod_url",
                    "live_urls",
                    "thumbnail_url",
                    "codecs",
                    "width",
                    "height",
                    "frame_rate",
                    "duration_ms",
                    "size_bytes",
                    "bitrate",
                    "expires_unix",
                ] {
                    assert_eq!(got[k], attrs[k], "{format} {k}: {got}");
                }
            }
        }

        // Standard input, one PDU given twice.
        let mut input = lines.join("\n");
        input.push('\n');
        input.push_str(&lines[0]);
        let out = sharecast(&["message", "decode", "-"], Some(&input));
        assert_eq!(documents(&ok(&out)).len(), 1, "{format}");
        let err = String::from_utf8_lossy(&out.stderr);
        if lines.len() > 1 {
            assert!(err.contains("given twice"), "{format}: {err}");
        }
    }
}

/// The error text of a `message decode` of `pdus` that must fail.
fn decode_error(pdus: &[&str]) -> String {
    let mut args = vec!["message", "decode"];
    args.extend_from_slice(pdus);
    fails(&sharecast(&args, None))
}

/// Anything `decode` cannot read is an error saying what is wrong at which
/// byte of which PDU, with a non-zero exit status.
#[test]
fn decode_errors_name_the_pdu_and_the_byte() {
    // The example of docs/share-messages.md: the user data is cut short.
    let err = decode_error(&["0011000B916407281553F80000AA0AE8329BFD4697D9"]);
    assert!(err.contains("PDU 1 of 1"), "{err}");
    assert!(
        err.contains("truncated: user data needs 2 more byte(s) at byte 15"),
        "{err}"
    );

    let good = encode("tlv", &typical(), &[]).remove(0);
    // A trailing octet after the user data.
    let err = decode_error(&[&format!("{good}00")]);
    assert!(err.contains("trailing"), "{err}");
    assert!(
        err.contains(&format!("at byte {}", good.len() / 2)),
        "{err}"
    );
    // A wrong TLV version (0xC2) in a valid SMS: the byte counts from the
    // start of the payload.
    let at = good.find("0605043E9D3E9DC1").unwrap() + 14;
    let bad_version = format!("{}C2{}", &good[..at], &good[at + 2..]);
    let err = decode_error(&[&bad_version]);
    assert!(err.contains("version"), "{err}");
    assert!(err.contains("at byte 0"), "{err}");
    // Not hex.
    let err = decode_error(&["00zz"]);
    assert!(err.contains("hex") && err.contains("at byte"), "{err}");
    // A valid SMS that is not a share message.
    let err = decode_error(&["0011000B916407281553F80000AA0AE8329BFD4697D9EC37"]);
    assert!(err.contains("not a readable share"), "{err}");
    assert!(err.contains("at byte 0"), "{err}");
    // The second PDU of three is the bad one.
    let parts = encode("xml", &typical(), &[]);
    assert!(parts.len() >= 3, "{parts:?}");
    let err = decode_error(&[&parts[0], "0041", &parts[2]]);
    assert!(err.contains("PDU 2 of 3"), "{err}");
    // A missing part: which message, which parts.
    let err = decode_error(&[&parts[0], &parts[2]]);
    assert!(err.contains("incomplete"), "{err}");
    assert!(err.contains("part(s) [2] not given"), "{err}");
}

/// `encode` refuses bad attributes and recipients with a clear error.
#[test]
fn encode_errors_say_what_is_wrong() {
    let run = |args: &[&str], stdin: &str| fails(&sharecast(args, Some(stdin)));
    let base = [
        "message",
        "encode",
        "--format",
        "tlv",
        "--to",
        "+8613800138000",
        "--attributes",
        "-",
    ];
    let err = run(&base, "{not json");
    assert!(err.contains("not valid JSON"), "{err}");
    let err = run(&base, r#"{"width": "wide"}"#);
    assert!(err.contains("not video attributes"), "{err}");
    let mut to_name = base;
    to_name[5] = "sharecast";
    let err = run(&to_name, &typical().to_string());
    assert!(err.contains("not a phone number"), "{err}");
    let mut missing = base;
    missing[7] = "/nonexistent/attributes.json";
    let err = run(&missing, "");
    assert!(err.contains("/nonexistent/attributes.json"), "{err}");
    // A control character cannot travel in the XML document.
    let mut xml = base;
    xml[3] = "xml";
    let err = run(&xml, r#"{"id": "a", "title": "bell\u0007"}"#);
    assert!(err.contains("encoding as xml"), "{err}");
}
