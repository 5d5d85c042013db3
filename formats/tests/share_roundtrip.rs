//! Round trips of every share format through real SMS PDUs: attributes ->
//! SMS-SUBMIT PDUs (and the SMS-DELIVER PDUs a phone would receive) ->
//! reassembly -> attributes, for every alphabet, single and concatenated.

use sharecast_formats::attributes::{Rendition, VideoAttributes};
use sharecast_formats::share::sms::{Alphabet, SmsDeliver, Timestamp, UserData};
use sharecast_formats::share::{
    assemble, decode_payload, decode_pdu, encode_payload, encode_submit_pdus, encode_user_data,
    tlv, wsp, Address, Content, MessageOptions, ShareFormat, SmsPdu, SmscField, SHARECAST_PORT,
};

mod common;
use common::typical;

fn rendition(name: &str, w: u32, h: u32) -> Rendition {
    Rendition {
        name: name.into(),
        url: format!("https://share.sharecast.example/vod/k3v9x2/{name}.mp4"),
        container: "mp4".into(),
        mime: "video/mp4".into(),
        codecs: vec!["avc1.4d401e".into(), "mp4a.40.2".into()],
        size_bytes: 4_000_000,
        width: w,
        height: h,
        // Share messages carry no display rotation.
        rotation: 0,
        frame_rate: 30000.0 / 1001.0,
        bitrate: 800_000,
        duration_ms: 40_250,
    }
}

fn full() -> VideoAttributes {
    VideoAttributes {
        title: Some("Beach walk".into()),
        sender: Some("+8613800138000".into()),
        live_urls: vec![
            "rtsp://share.sharecast.example:8554/live/k3v9x2".into(),
            "https://share.sharecast.example/live/k3v9x2/index.m3u8".into(),
        ],
        thumbnail_url: Some("https://cdn.example.net/poster/k3v9x2.jpg".into()),
        expires_unix: Some(1_893_499_200),
        start_offset_ms: Some(12_000),
        renditions: vec![rendition("source", 1280, 720), rendition("480p", 854, 480)],
        ..typical()
    }
}

fn gsm_extended() -> VideoAttributes {
    VideoAttributes {
        title: Some("Price €5 [a] {b} ^c~ |d\\ e".into()),
        ..typical()
    }
}

fn chinese() -> VideoAttributes {
    VideoAttributes {
        title: Some("海边散步 — 分享视频".into()),
        sender: Some("小明".into()),
        ..typical()
    }
}

/// What a format carries of `a`.
fn carried(format: ShareFormat, a: &VideoAttributes, renditions: bool) -> VideoAttributes {
    match format {
        ShareFormat::Tlv | ShareFormat::Xml | ShareFormat::WapVideo => {
            let mut e = a.clone();
            if !renditions {
                e.renditions.clear();
            }
            e
        }
        ShareFormat::Text => VideoAttributes {
            renditions: Vec::new(),
            ..a.clone()
        },
        ShareFormat::WapSi => VideoAttributes {
            id: a.id.clone(),
            // The SI text: the title, else who sent it.
            title: Some(a.title.clone().unwrap_or_else(|| match &a.sender {
                Some(s) => format!("Video from {s}"),
                None => "Shared video".into(),
            })),
            share_url: a.share_url.clone(),
            expires_unix: a.expires_unix,
            ..Default::default()
        },
        ShareFormat::WapSl => VideoAttributes {
            share_url: a.share_url.clone(),
            ..Default::default()
        },
    }
}

/// Decode PDUs (any order), put the parts of each message in order and
/// decode the payload.
fn receive(pdus: &[Vec<u8>]) -> (ShareFormat, VideoAttributes) {
    let mut parts: Vec<UserData> = pdus
        .iter()
        .map(|p| decode_pdu(p, SmscField::Auto).unwrap().user_data().clone())
        .collect();
    parts.sort_by_key(|u| u.concat().map_or(0, |c| c.sequence));
    let ports = parts[0].ports();
    let total = parts[0].concat().map_or(1, |c| usize::from(c.total));
    assert_eq!(parts.len(), total);
    for (i, p) in parts.iter().enumerate() {
        if let Some(c) = p.concat() {
            assert_eq!(usize::from(c.sequence), i + 1);
            assert_eq!(p.ports(), ports, "every part carries the ports");
        }
    }
    let bodies: Vec<_> = parts.iter().map(|p| &p.body).collect();
    let payload = assemble(&bodies).unwrap();
    let share = decode_payload(ports, &payload).unwrap();
    (share.format, share.attributes)
}

fn to() -> Address {
    Address::parse("+8613912345678").unwrap()
}

fn check(format: ShareFormat, a: &VideoAttributes, opts: &MessageOptions) -> Vec<Vec<u8>> {
    let pdus = encode_submit_pdus(a, format, &to(), opts).unwrap();
    let (got_format, got) = receive(&pdus);
    let expect_format = format;
    assert_eq!(got_format, expect_format);
    assert_eq!(got, carried(format, a, opts.include_renditions), "{format}");
    // Reverse order too.
    let mut rev = pdus.clone();
    rev.reverse();
    assert_eq!(receive(&rev).1, got);
    pdus
}

#[test]
fn every_format_round_trips_every_sample() {
    for a in [typical(), full(), gsm_extended(), chinese()] {
        for format in ShareFormat::ALL {
            for include_renditions in [false, true] {
                let opts = MessageOptions {
                    include_renditions,
                    reference: 0x42,
                    ..Default::default()
                };
                check(format, &a, &opts);
            }
        }
    }
}

#[test]
fn typical_tlv_share_fits_one_sms() {
    let pdus = check(ShareFormat::Tlv, &typical(), &MessageOptions::default());
    assert_eq!(pdus.len(), 1);
    let tlv = tlv::encode(&typical(), &Default::default()).unwrap();
    // 140 octets minus the 7-octet port header (UDHL + IEI 05).
    assert!(tlv.len() <= 133, "{} octets", tlv.len());
    // A short title still fits.
    let titled = VideoAttributes {
        title: Some("Beach walk".into()),
        ..typical()
    };
    assert_eq!(
        encode_submit_pdus(&titled, ShareFormat::Tlv, &to(), &Default::default())
            .unwrap()
            .len(),
        1
    );
    let SmsPdu::Submit(s) = decode_pdu(&pdus[0], SmscField::Present).unwrap() else {
        panic!("submit")
    };
    assert_eq!(s.dcs, 0x04);
    assert_eq!(s.user_data.ports(), Some((SHARECAST_PORT, SHARECAST_PORT)));
    assert!(s.user_data.concat().is_none());
}

#[test]
fn long_tlv_is_concatenated_with_ports_in_every_part() {
    let opts = MessageOptions {
        include_renditions: true,
        reference: 0x1234,
        wide_reference: true,
        ..Default::default()
    };
    let pdus = check(ShareFormat::Tlv, &full(), &opts);
    assert!(pdus.len() >= 3, "{} parts", pdus.len());
    for p in &pdus {
        let SmsPdu::Submit(s) = decode_pdu(p, SmscField::Present).unwrap() else {
            panic!("submit")
        };
        let c = s.user_data.concat().unwrap();
        assert!(c.wide);
        assert_eq!(c.reference, 0x1234);
    }
}

#[test]
fn wap_push_is_segmented_over_port_2948() {
    let opts = MessageOptions {
        include_renditions: true,
        reference: 7,
        ..Default::default()
    };
    let pdus = check(ShareFormat::WapVideo, &full(), &opts);
    assert!(pdus.len() >= 3, "{} parts", pdus.len());
    for p in &pdus {
        let u = decode_pdu(p, SmscField::Present)
            .unwrap()
            .user_data()
            .clone();
        assert_eq!(
            u.ports(),
            Some((wsp::WAP_PUSH_PORT, wsp::WAP_PUSH_SOURCE_PORT))
        );
        assert_eq!(u.body.alphabet(), Alphabet::EightBit);
    }
    // A long SI title also segments.
    let long = VideoAttributes {
        title: Some("A very long title ".repeat(12)),
        ..typical()
    };
    let pdus = encode_submit_pdus(&long, ShareFormat::WapSi, &to(), &opts).unwrap();
    assert!(pdus.len() >= 2);
    let (f, got) = receive(&pdus);
    assert_eq!(f, ShareFormat::WapSi);
    assert_eq!(
        got.title.as_deref(),
        Some(long.title.as_deref().unwrap().trim_end())
    );
}

#[test]
fn text_alphabets_follow_the_content() {
    let dcs = |a: &VideoAttributes, f: ShareFormat| {
        let pdus = encode_submit_pdus(a, f, &to(), &Default::default()).unwrap();
        let SmsPdu::Submit(s) = decode_pdu(&pdus[0], SmscField::Present).unwrap() else {
            panic!("submit")
        };
        (s.dcs, pdus.len())
    };
    // Extension characters keep GSM 7-bit.
    assert_eq!(dcs(&gsm_extended(), ShareFormat::Text).0, 0x00);
    // A Chinese title needs UCS-2.
    assert_eq!(dcs(&chinese(), ShareFormat::Text).0, 0x08);
    assert_eq!(dcs(&chinese(), ShareFormat::Xml).0, 0x08);
    assert_eq!(dcs(&typical(), ShareFormat::Xml).0, 0x00);
    // The share link comes first in the delimited text.
    let p = encode_payload(&typical(), ShareFormat::Text, &Default::default()).unwrap();
    let Content::Text(t) = p.content else {
        panic!("text")
    };
    assert!(
        t.starts_with("https://share.sharecast.example/s/Xy3kP9qLm2Va§"),
        "{t}"
    );
    assert!(p.ports.is_none());
}

#[test]
fn deliver_pdus_decode_like_submits() {
    for format in ShareFormat::ALL {
        let parts = encode_user_data(&full(), format, &MessageOptions::default()).unwrap();
        let pdus: Vec<Vec<u8>> = parts
            .into_iter()
            .map(|ud| {
                SmsDeliver::new(
                    Address::parse("+8613800138000").unwrap(),
                    Timestamp::from_unix(1_700_000_000, 32),
                    ud,
                )
                .encode()
                .unwrap()
            })
            .collect();
        let (f, got) = receive(&pdus);
        assert_eq!(f, format);
        assert_eq!(got, carried(format, &full(), false));
    }
}

#[test]
fn smsc_and_message_references() {
    let opts = MessageOptions {
        include_renditions: true,
        submit: sharecast_formats::share::SubmitOptions {
            smsc: Some(Address::parse("+8613800100500").unwrap()),
            message_ref: 254,
            ..Default::default()
        },
        ..Default::default()
    };
    let pdus = encode_submit_pdus(&full(), ShareFormat::Tlv, &to(), &opts).unwrap();
    let refs: Vec<u8> = pdus
        .iter()
        .map(|p| match decode_pdu(p, SmscField::Present).unwrap() {
            SmsPdu::Submit(s) => {
                assert_eq!(s.smsc.unwrap().to_string(), "+8613800100500");
                s.message_ref
            }
            SmsPdu::Deliver(_) => panic!("deliver"),
        })
        .collect();
    assert_eq!(&refs[..3], &[254, 255, 0]);
}
