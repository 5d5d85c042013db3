//! `sharecast message decode` offers a recipient only web links: a share
//! message without a link (a TLV of only its version octet, an SI without
//! `href`) and one with `javascript:` / `file:` links are errors, with a
//! non-zero exit status and nothing printed on standard output.

use std::process::Command;

use sharecast_formats::attributes::VideoAttributes;
use sharecast_formats::share::si::ServiceIndication;
use sharecast_formats::share::sl::ServiceLoading;
use sharecast_formats::share::sms::{
    Body, InformationElement, Timestamp, UserData, UserDataHeader,
};
use sharecast_formats::share::wsp::{ContentType, PushPdu, CT_SIC, CT_SLC, WAP_PUSH_PORT};
use sharecast_formats::share::{
    encode_submit_pdus, wbxml, Address, MessageOptions, ShareFormat, SmsDeliver, SHARECAST_PORT,
};

/// `sharecast message decode HEX…`: (success, stdout, stderr).
fn decode(hexes: &[String]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sharecast"))
        .args(["message", "decode"])
        .args(hexes)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("running sharecast");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// One SMS-DELIVER carrying 8-bit `payload` to `port`, as hex.
fn sms_hex(port: u16, payload: Vec<u8>) -> String {
    let ud = UserData {
        header: Some(UserDataHeader {
            elements: vec![InformationElement::Ports {
                destination: port,
                source: port,
                wide: true,
            }],
        }),
        body: Body::EightBit(payload),
    };
    let pdu = SmsDeliver::new(
        Address::parse("+8613800138000").unwrap(),
        Timestamp::from_unix(1_700_000_000, 0),
        ud,
    )
    .encode()
    .unwrap();
    hex::encode_upper(pdu)
}

fn push(ct: u8, body: Vec<u8>) -> Vec<u8> {
    PushPdu {
        transaction_id: 1,
        content_type: ContentType::WellKnown(ct),
        application_id: None,
        other_headers: Vec::new(),
        body,
    }
    .encode()
    .unwrap()
}

fn refused(hexes: &[String], expect: &str) {
    let (ok, stdout, stderr) = decode(hexes);
    assert!(!ok, "accepted {hexes:?}: {stdout}");
    assert!(stdout.is_empty(), "printed attributes: {stdout}");
    assert!(stderr.contains(expect), "{hexes:?}: {stderr}");
}

#[test]
fn a_message_without_a_link_is_an_error() {
    // A TLV message of only its version octet C1: no id, no URL.
    refused(&[sms_hex(SHARECAST_PORT, vec![0xC1])], "no link");
    // A WAP Push SI without href (and without si-id).
    let si = ServiceIndication {
        text: "Watch".into(),
        ..Default::default()
    };
    let body = si.encode_wbxml(wbxml::VERSION_1_3).unwrap();
    refused(&[sms_hex(WAP_PUSH_PORT, push(CT_SIC, body))], "no link");
}

#[test]
fn javascript_and_file_links_are_errors() {
    for href in ["javascript:alert(document.cookie)", "file:///etc/passwd"] {
        let si = ServiceIndication {
            href: Some(href.into()),
            si_id: Some("k3v9x2".into()),
            text: "Watch".into(),
            ..Default::default()
        };
        let body = si.encode_wbxml(wbxml::VERSION_1_3).unwrap();
        refused(&[sms_hex(WAP_PUSH_PORT, push(CT_SIC, body))], "unsafe link");
        let sl = ServiceLoading {
            href: href.into(),
            action: None,
        };
        let body = sl.encode_wbxml(wbxml::VERSION_1_3).unwrap();
        refused(&[sms_hex(WAP_PUSH_PORT, push(CT_SLC, body))], "unsafe link");
        // The TLV and XML formats, from the encoder itself.
        let attrs = VideoAttributes {
            id: "k3v9x2".into(),
            share_url: Some("https://sc.example/s/X".into()),
            vod_url: Some(href.into()),
            ..Default::default()
        };
        for f in [ShareFormat::Tlv, ShareFormat::Xml, ShareFormat::WapVideo] {
            let to = Address::parse("+8613912345678").unwrap();
            let pdus = encode_submit_pdus(&attrs, f, &to, &MessageOptions::default()).unwrap();
            let hexes: Vec<String> = pdus.iter().map(hex::encode_upper).collect();
            refused(&hexes, "unsafe link");
        }
    }
}

#[test]
fn rtsp_is_a_live_link_only() {
    let to = Address::parse("+8613912345678").unwrap();
    let live = VideoAttributes {
        id: "k3v9x2".into(),
        live_urls: vec!["rtsp://sc.example:8554/live/k3v9x2?token=t".into()],
        ..Default::default()
    };
    let pdus =
        encode_submit_pdus(&live, ShareFormat::Tlv, &to, &MessageOptions::default()).unwrap();
    let hexes: Vec<String> = pdus.iter().map(hex::encode_upper).collect();
    let (ok, stdout, stderr) = decode(&hexes);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("rtsp://sc.example:8554/live/k3v9x2"),
        "{stdout}"
    );
    let vod = VideoAttributes {
        id: "k3v9x2".into(),
        vod_url: Some("rtsp://sc.example:8554/live/k3v9x2".into()),
        ..Default::default()
    };
    let pdus = encode_submit_pdus(&vod, ShareFormat::Tlv, &to, &MessageOptions::default()).unwrap();
    let hexes: Vec<String> = pdus.iter().map(hex::encode_upper).collect();
    refused(&hexes, "vod_url");
}
