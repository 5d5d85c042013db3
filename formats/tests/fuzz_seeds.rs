//! The seed corpora of the fuzz targets (fuzz/corpus/TARGET/, see
//! docs/reliability.md "Fuzzing") are made here from the encoders and the
//! published test vectors, so they stay inputs the decoders accept. The
//! test fails when a committed seed differs from what the encoders make now
//! or is missing; `SHARECAST_WRITE_FUZZ_SEEDS=1 cargo test -p
//! sharecast-formats --test fuzz_seeds` writes them.

use std::path::PathBuf;

use bytes::Bytes;
use sharecast_formats::attributes::{Rendition, VideoAttributes};
use sharecast_formats::ingest::{encode_frame, Control};
use sharecast_formats::media::MediaFrame;
use sharecast_formats::share::si::ServiceIndication;
use sharecast_formats::share::sl::ServiceLoading;
use sharecast_formats::share::{
    encode_payload, encode_submit_pdus, encode_user_data, encode_wap_push, gsm7, parse_hex, text,
    tlv, ucs2, video_wbxml, wbxml, xml, Address, Content, MessageOptions, ShareFormat,
};

/// The largest seed corpus of one target, bytes.
const MAX_TARGET_BYTES: usize = 8 * 1024;

mod common;
use common::typical;

fn full() -> VideoAttributes {
    VideoAttributes {
        title: Some("Beach walk €5 [a] 海边".into()),
        sender: Some("+8613800138000".into()),
        live_urls: vec!["rtsp://share.sharecast.example:8554/live/k3v9x2".into()],
        thumbnail_url: Some("https://cdn.example.net/poster/k3v9x2.jpg".into()),
        expires_unix: Some(1_893_499_200),
        start_offset_ms: Some(12_000),
        renditions: vec![Rendition {
            name: "480p".into(),
            url: "https://share.sharecast.example/vod/k3v9x2/480p.mp4".into(),
            container: "mp4".into(),
            mime: "video/mp4".into(),
            codecs: vec!["avc1.4d401e".into()],
            size_bytes: 4_000_000,
            width: 854,
            height: 480,
            rotation: 0,
            frame_rate: 25.0,
            bitrate: 800_000,
            duration_ms: 40_250,
        }],
        ..typical()
    }
}

/// Control messages as sent: type byte and JSON payload.
const CONTROL: &[(u8, &str)] = &[
    (
        0x01,
        r#"{"version":1,"token":"dev-token","tracks":[],"anchor_unix_us":1700000000000000,"resume":{"session_id":"s1","secret":"x"},"client":"phone","title":"Walk"}"#,
    ),
    (
        0x02,
        r#"{"session_id":"s1","resume_secret":"x","resumed":false,"next_seq":{"0":0,"1":0},"limits":{"max_frame_bytes":4194304,"max_bitrate_bps":20000000,"max_session_secs":14400},"live_urls":["rtsp://h/live/s1"],"reports":true}"#,
    ),
    (
        0x03,
        r#"{"next_seq":{"0":120,"1":200},"held":{"0":[[130,140]]}}"#,
    ),
    (0x04, r#"{"frame_count":{"0":300,"1":470}}"#),
    (
        0x06,
        r#"{"code":7,"message":"slow down","retry_after_ms":500}"#,
    ),
    (0x07, r#"{"received_bps":2000000,"pending_frames":3}"#),
    (
        0x08,
        r#"{"advised_bps":1500000,"backlog_bytes":1000,"backlog_frames":2}"#,
    ),
];

fn control_seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut seeds = Vec::new();
    let mut stream = vec![7u8];
    for (ty, json) in CONTROL {
        let msg = Control::decode(*ty, json.as_bytes()).expect("a seed control message decodes");
        let mut one = vec![*ty];
        one.extend_from_slice(json.as_bytes());
        seeds.push(("ingest_control", format!("type-{ty:02x}"), one));
        stream.extend_from_slice(&msg.encode());
    }
    let finished = Control::Finished(sharecast_formats::ingest::Finished {
        attributes: typical(),
    });
    let mut one = vec![finished.type_byte()];
    one.extend_from_slice(&finished.encode()[5..]);
    seeds.push(("ingest_control", "type-05".into(), one));
    seeds.push(("ingest_control_stream", "every-type".into(), stream));
    seeds
}

fn frame_seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let frame = |track, seq, keyframe, data: &'static [u8]| MediaFrame {
        track,
        seq,
        pts_us: seq as i64 * 33_333 + 66_666,
        dts_us: seq as i64 * 33_333,
        duration_us: 33_333,
        keyframe,
        data: Bytes::from_static(data),
    };
    // Piece size 13, limit 1 KiB, then three records.
    let mut stream = vec![13, 0, 1];
    for f in [
        frame(0, 0, true, b"\x00\x00\x00\x05\x65\x88\x84\x00\x21"),
        frame(1, 0, false, b"\x21\x10\x04\x60"),
        frame(0, 1, false, b"\x00\x00\x00\x03\x41\x9a\x02"),
    ] {
        stream.extend_from_slice(&encode_frame(&f));
    }
    vec![("ingest_frame_stream", "three-frames".into(), stream)]
}

fn share_seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let opts = MessageOptions {
        include_renditions: true,
        ..MessageOptions::default()
    };
    let tlv_opts = tlv::TlvOptions {
        include_renditions: true,
    };
    let mut s: Vec<(&'static str, String, Vec<u8>)> = Vec::new();
    for (name, a) in [("typical", typical()), ("full", full())] {
        s.push((
            "share_tlv",
            name.into(),
            tlv::encode(&a, &tlv_opts).unwrap(),
        ));
        s.push((
            "share_xml",
            name.into(),
            xml::encode(&a, true).unwrap().into_bytes(),
        ));
        s.push((
            "share_text",
            name.into(),
            text::encode(&a).unwrap().into_bytes(),
        ));
        let video = video_wbxml::encode(&a, true, wbxml::VERSION_1_3).unwrap();
        s.push((
            "share_wbxml",
            format!("video-{name}"),
            [&[2u8][..], &video].concat(),
        ));
    }
    let a = full();
    let si_doc = ServiceIndication::from_attributes(&a)
        .unwrap()
        .encode_wbxml(wbxml::VERSION_1_3);
    let sl_doc = ServiceLoading::from_attributes(&a)
        .unwrap()
        .encode_wbxml(wbxml::VERSION_1_2);
    s.push((
        "share_wbxml",
        "si".into(),
        [&[0u8][..], &si_doc.clone().unwrap()].concat(),
    ));
    s.push((
        "share_wbxml",
        "sl".into(),
        [&[1u8][..], &sl_doc.clone().unwrap()].concat(),
    ));
    s.push(("share_si_sl", "si".into(), si_doc.unwrap()));
    s.push(("share_si_sl", "sl".into(), sl_doc.unwrap()));
    for (name, format) in [
        ("si", ShareFormat::WapSi),
        ("sl", ShareFormat::WapSl),
        ("video", ShareFormat::WapVideo),
    ] {
        let push = encode_wap_push(&a, format, &opts).unwrap();
        s.push(("share_wsp", name.into(), push.clone()));
        s.push(("share_wap_push", name.into(), push.clone()));
        s.push((
            "share_payload",
            format!("wap-{name}"),
            [&[2u8][..], &push].concat(),
        ));
    }
    s.extend(sms_seeds(&a, &opts));
    for (name, format, pick) in [
        ("tlv", ShareFormat::Tlv, 1u8),
        ("xml", ShareFormat::Xml, 4),
        ("text", ShareFormat::Text, 4),
    ] {
        let p = encode_payload(&a, format, &opts).unwrap();
        let body = match p.content {
            Content::Text(t) => t.into_bytes(),
            Content::Binary(b) => b,
        };
        s.push(("share_payload", name.into(), [&[pick][..], &body].concat()));
    }
    s
}

fn sms_seeds(a: &VideoAttributes, opts: &MessageOptions) -> Vec<(&'static str, String, Vec<u8>)> {
    let mut s: Vec<(&'static str, String, Vec<u8>)> = Vec::new();
    let to = Address::parse("+447930250969").unwrap();
    for (name, format) in [("tlv", ShareFormat::Tlv), ("text", ShareFormat::Text)] {
        let pdus = encode_submit_pdus(a, format, &to, opts).unwrap();
        s.push(("share_sms_pdu", format!("submit-{name}"), pdus[0].clone()));
        s.push((
            "share_sms_hex",
            format!("submit-{name}"),
            hex::encode_upper(&pdus[0]).into(),
        ));
        let parts = encode_user_data(a, format, opts).unwrap();
        if let Some(h) = &parts[0].header {
            s.push(("share_udh", name.into(), h.encode().unwrap()));
        }
    }
    // Published captures (tests/share_spec_examples.rs): a GSM 7-bit
    // concatenated deliver, an alphanumeric originator, UCS-2 with €, and
    // a submit with an SMSC address.
    for (name, h) in [
        ("deliver-alphanumeric", "07914477790706520414D06176198F0EE361F2321900005001610013334014C324350B9287D12079180D92A3416134480E"),
        ("deliver-ucs2", "0791227167830001040C912271271640910008906012024514001C002E004020AC00A300680065006C006C006F002000E900EC006B00F0"),
        ("submit-smsc", "0891683108200805F01151048181160000FF16C8329BFD66B5F320B8BC4CA7E741F7B79C4D0E01"),
    ] {
        s.push(("share_sms_pdu", name.into(), parse_hex(h).unwrap()));
        s.push(("share_sms_hex", name.into(), h.as_bytes().to_vec()));
    }
    s.push((
        "share_udh",
        "concat-wide".into(),
        vec![0x06, 0x08, 0x04, 0x12, 0x34, 0x02, 0x01],
    ));
    let septets = gsm7::encode("Hello, €5 [a] {b}").unwrap();
    let packed = gsm7::pack(&septets, 1);
    let head = 1 + ((septets.len() / 8) as u8) * 8;
    s.push((
        "share_gsm7",
        "fill-1".into(),
        [&[head][..], &packed].concat(),
    ));
    s.push(("share_ucs2", "mixed".into(), ucs2::encode("海边 €5 😀")));
    s
}

fn all_seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut all = control_seeds();
    all.extend(frame_seeds());
    all.extend(share_seeds());
    all
}

fn corpus() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus")
}

#[test]
fn seeds_are_current() {
    let write = std::env::var_os("SHARECAST_WRITE_FUZZ_SEEDS").is_some();
    let mut sizes = std::collections::BTreeMap::<&str, usize>::new();
    for (target, name, bytes) in all_seeds() {
        *sizes.entry(target).or_default() += bytes.len();
        let path = corpus().join(target).join(&name);
        if write {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &bytes).unwrap();
        }
        let on_disk = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "seed {} ({e}); write with SHARECAST_WRITE_FUZZ_SEEDS=1",
                path.display()
            )
        });
        assert!(
            on_disk == bytes,
            "seed {} is stale; write with SHARECAST_WRITE_FUZZ_SEEDS=1",
            path.display()
        );
    }
    for (target, size) in sizes {
        assert!(size <= MAX_TARGET_BYTES, "{target}: {size} bytes of seeds");
    }
}
