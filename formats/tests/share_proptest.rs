//! Property tests: every share-message parser returns `Err` (never panics)
//! on random, truncated and mutated input, and every codec round-trips.

use proptest::prelude::*;
use sharecast_formats::attributes::{Rendition, VideoAttributes};
use sharecast_formats::share::error::{ErrorKind, Layer, Reader};
use sharecast_formats::share::sms::{Body, Timestamp, UserDataHeader};
use sharecast_formats::share::{
    assemble, decode_payload, decode_pdu, decode_wap_push, document, encode_submit_pdus,
    encode_wap_push, gsm7, parse_hex, segment, si, sl, text, tlv, ucs2, varint, video_wbxml, wbxml,
    wsp, xml, Address, Assembled, Content, MessageOptions, SegmentOptions, ShareFormat, SmscField,
};

/// Asserts that a decoding fails with an error of the kind given.
macro_rules! assert_fails {
    ($decoded:expr, $kind:pat) => {
        let e = $decoded.unwrap_err();
        assert!(matches!(e.kind, $kind), "{e}");
    };
}

const FPS: [f64; 11] = [
    0.0,
    12.5,
    23.976,
    24.0,
    25.0,
    29.97,
    30.0,
    30000.0 / 1001.0,
    50.0,
    59.94,
    60.0,
];

fn url() -> impl Strategy<Value = String> {
    prop_oneof![
        "https://[a-z]{1,8}\\.example(:[0-9]{2,4})?/[a-zA-Z0-9/._§-]{0,16}",
        "http://www\\.[a-z]{1,8}\\.com/[a-z0-9/]{0,10}",
        "rtsp://[a-z]{1,8}:8554/live/[a-z0-9]{1,8}",
        "[a-z]{2,6}://\\PC{0,12}",
    ]
}

fn codec() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("avc1.64001f".to_string()),
        Just("mp4a.40.2".to_string()),
        Just("mp4a.40.29".to_string()),
        Just("hvc1.1.6.L93.B0".to_string()),
        "[a-z0-9]{3,4}(\\.[A-Za-z0-9]{1,6}){0,3}",
    ]
}

fn rendition() -> impl Strategy<Value = Rendition> {
    (
        "\\PC{0,8}",
        url(),
        "[a-z0-9]{0,4}",
        "[a-z]{0,5}/[a-z0-9.+-]{0,8}",
        prop::collection::vec(codec(), 0..3),
        any::<u64>(),
        (any::<u32>(), any::<u32>()),
        prop::sample::select(FPS.to_vec()),
        any::<u64>(),
        any::<u64>(),
    )
        .prop_map(
            |(name, url, container, mime, codecs, size, (w, h), fps, br, dur)| Rendition {
                name,
                url,
                container,
                mime,
                codecs,
                size_bytes: size,
                width: w,
                height: h,
                // Share messages carry no display rotation.
                rotation: 0,
                frame_rate: fps,
                bitrate: br,
                duration_ms: dur,
            },
        )
}

fn attributes() -> impl Strategy<Value = VideoAttributes> {
    (
        (
            prop_oneof![
                "[a-z0-9]{0,12}",
                "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
            ],
            prop::option::of("\\PC{0,24}"),
            prop::option::of("\\PC{0,12}"),
            prop::option::of(url()),
            prop::option::of(url()),
            prop::collection::vec(url(), 0..3),
            prop::option::of(url()),
        ),
        (
            "[a-z0-9]{0,5}",
            prop::collection::vec(codec(), 0..3),
            any::<u64>(),
            any::<u32>(),
            any::<u32>(),
            prop::sample::select(FPS.to_vec()),
            any::<u64>(),
            any::<u64>(),
            prop::option::of(any::<u64>()),
            prop::option::of(any::<u64>()),
            prop::collection::vec(rendition(), 0..3),
        ),
    )
        .prop_map(
            |(
                (id, title, sender, share_url, vod_url, live_urls, thumbnail_url),
                (container, codecs, size, w, h, fps, br, dur, exp, start, renditions),
            )| VideoAttributes {
                id,
                title,
                sender,
                vod_url,
                live_urls,
                share_url,
                thumbnail_url,
                container,
                codecs,
                size_bytes: size,
                width: w,
                height: h,
                // Share messages carry no display rotation.
                rotation: 0,
                frame_rate: fps,
                bitrate: br,
                duration_ms: dur,
                expires_unix: exp,
                start_offset_ms: start,
                renditions,
            },
        )
}

/// Truncations and single-byte mutations of `valid`.
fn mutations(valid: &[u8], pos: usize, byte: u8) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    if valid.is_empty() {
        return out;
    }
    let p = pos % valid.len();
    out.push(valid[..p].to_vec());
    let mut flipped = valid.to_vec();
    flipped[p] ^= byte | 1;
    out.push(flipped);
    let mut set = valid.to_vec();
    set[p] = byte;
    out.push(set);
    let mut inserted = valid.to_vec();
    inserted.insert(p, byte);
    out.push(inserted);
    let mut removed = valid.to_vec();
    removed.remove(p);
    out.push(removed);
    out
}

/// Every byte-level parser on one input; only checks that none panics.
fn parse_everything(b: &[u8]) {
    let _ = tlv::decode(b);
    let _ = decode_pdu(b, SmscField::Present);
    let _ = decode_pdu(b, SmscField::Absent);
    let _ = decode_pdu(b, SmscField::Auto);
    let _ = UserDataHeader::decode(b);
    let _ = wsp::decode(b);
    let _ = decode_wap_push(b);
    let _ = wbxml::decode(b, &si::DIALECT);
    let _ = wbxml::decode(b, &sl::DIALECT);
    let _ = wbxml::decode(b, &video_wbxml::DIALECT);
    let _ = si::ServiceIndication::decode_wbxml(b);
    let _ = sl::ServiceLoading::decode_wbxml(b);
    let _ = video_wbxml::decode(b);
    let _ = ucs2::decode(b);
    let _ = wbxml::decode_date(b);
    let _ = gsm7::decode(b);
    let _ = gsm7::unpack(b, b.first().map_or(0, |x| x % 7), b.len() * 8 / 7);
    let _ = decode_payload(None, &Assembled::Binary(b.to_vec()));
    let _ = decode_payload(
        Some((wsp::WAP_PUSH_PORT, 9200)),
        &Assembled::Binary(b.to_vec()),
    );
    let _ = decode_payload(Some((0x3E9D, 0x3E9D)), &Assembled::Binary(b.to_vec()));
    let mut r = Reader::new(b, Layer::Wsp);
    let _ = varint::read_uintvar(&mut r);
    let mut r = Reader::new(b, Layer::Tlv);
    let _ = varint::read_leb128(&mut r);
    let s = String::from_utf8_lossy(b);
    parse_text(&s);
}

fn parse_text(s: &str) {
    let _ = xml::decode(s);
    let _ = xml::parse_document(s);
    let _ = text::decode(s);
    let _ = text::looks_like(s);
    let _ = parse_hex(s);
    let _ = decode_payload(None, &Assembled::Text(s.to_owned()));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(b in prop::collection::vec(any::<u8>(), 0..300)) {
        parse_everything(&b);
    }

    #[test]
    fn random_text_never_panics(s in "\\PC{0,200}") {
        parse_text(&s);
    }

    #[test]
    fn random_xml_ish_text_never_panics(s in "(<[a-z:]{1,6}( [a-z:]{1,4}=\"[^\"]{0,5}\")*/?>|</[a-z:]{1,6}>|[^<]{0,6}|&[a-z#0-9]{0,5};?|<!\\[CDATA\\[|\\]\\]>|<\\?xml|<!--){0,30}") {
        parse_text(&s);
        let with_ns = format!("<video xmlns=\"urn:sharecast:video-attributes:1\">{s}</video>");
        let _ = xml::decode(&with_ns);
    }

    #[test]
    fn random_delimited_text_never_panics(s in "(https://x/s/1)?(§{1,3}[a-z]{0,6}=?[^§]{0,8}){0,12}") {
        parse_text(&s);
    }

    #[test]
    fn tlv_round_trips_and_mutations_never_panic(a in attributes(), pos in any::<usize>(), byte in any::<u8>()) {
        let b = tlv::encode(&a, &tlv::TlvOptions { include_renditions: true }).unwrap();
        prop_assert_eq!(tlv::decode(&b).unwrap(), a.clone());
        for m in mutations(&b, pos, byte) {
            let _ = tlv::decode(&m);
        }
        // Without renditions: the same minus renditions.
        let compact = tlv::encode(&a, &tlv::TlvOptions::default()).unwrap();
        let mut expect = a;
        expect.renditions.clear();
        prop_assert_eq!(tlv::decode(&compact).unwrap(), expect);
    }

    #[test]
    fn xml_round_trips_and_mutations_never_panic(a in attributes(), pos in any::<usize>(), byte in any::<u8>()) {
        let x = xml::encode(&a, true).unwrap();
        prop_assert_eq!(xml::decode(&x).unwrap(), a);
        for m in mutations(x.as_bytes(), pos, byte) {
            let _ = xml::decode(&String::from_utf8_lossy(&m));
        }
    }

    #[test]
    fn delimited_text_round_trips(a in attributes(), pos in any::<usize>(), byte in any::<u8>()) {
        let mut a = a;
        a.renditions.clear();
        // Share URLs are links; an empty one is "no link".
        if a.share_url.as_deref().is_some_and(|u| u.is_empty() || !u.contains("://")) {
            a.share_url = None;
        }
        let t = text::encode(&a).unwrap();
        prop_assert_eq!(text::decode(&t).unwrap(), a);
        for m in mutations(t.as_bytes(), pos, byte) {
            let _ = text::decode(&String::from_utf8_lossy(&m));
        }
    }

    #[test]
    fn video_wbxml_round_trips_and_truncations_fail(a in attributes(), pos in any::<usize>(), byte in any::<u8>()) {
        let b = video_wbxml::encode(&a, true, wbxml::VERSION_1_3).unwrap();
        prop_assert_eq!(video_wbxml::decode(&b).unwrap(), a);
        let p = pos % b.len();
        prop_assert!(video_wbxml::decode(&b[..p]).is_err());
        for m in mutations(&b, pos, byte) {
            let _ = video_wbxml::decode(&m);
        }
    }

    #[test]
    fn si_and_sl_round_trip(href in url(), text in "\\PC{0,30}", id in prop::option::of("[a-z0-9]{1,8}"), exp in prop::option::of(0u64..4_000_000_000), pos in any::<usize>(), byte in any::<u8>()) {
        let s = si::ServiceIndication {
            href: Some(href.clone()),
            si_id: id,
            created: None,
            expires: exp.map(wbxml::iso_date),
            action: Some(si::SiAction::SignalHigh),
            class: None,
            text: text.split_whitespace().collect::<Vec<_>>().join(" "),
        };
        let b = s.encode_wbxml(wbxml::VERSION_1_3).unwrap();
        prop_assert_eq!(si::ServiceIndication::decode_wbxml(&b).unwrap(), s.clone());
        prop_assert_eq!(s.to_attributes().expires_unix, exp);
        prop_assert!(si::ServiceIndication::decode_wbxml(&b[..pos % b.len()]).is_err());
        for m in mutations(&b, pos, byte) {
            let _ = si::ServiceIndication::decode_wbxml(&m);
        }
        let l = sl::ServiceLoading { href, action: Some(sl::SlAction::Cache) };
        let b = l.encode_wbxml(wbxml::VERSION_1_3).unwrap();
        prop_assert_eq!(sl::ServiceLoading::decode_wbxml(&b).unwrap(), l);
        prop_assert!(sl::ServiceLoading::decode_wbxml(&b[..pos % b.len()]).is_err());
    }

    #[test]
    fn wap_push_mutations_never_panic(a in attributes(), pos in any::<usize>(), byte in any::<u8>()) {
        for f in [ShareFormat::WapSi, ShareFormat::WapSl, ShareFormat::WapVideo] {
            if a.share_url.is_none() && a.vod_url.is_none() {
                continue;
            }
            let b = encode_wap_push(&a, f, &MessageOptions::default()).unwrap();
            prop_assert_eq!(decode_wap_push(&b).unwrap().format, f);
            for m in mutations(&b, pos, byte) {
                let _ = decode_wap_push(&m);
                let _ = wsp::decode(&m);
            }
        }
    }

    #[test]
    fn sms_pdus_round_trip_and_truncations_fail(a in attributes(), pos in any::<usize>(), byte in any::<u8>(), fmt in prop::sample::select(ShareFormat::ALL.to_vec())) {
        let mut a = a;
        if a.share_url.as_deref().is_none_or(|u| !u.contains("://")) {
            a.share_url = Some("https://x.example/s/1".into());
        }
        let opts = MessageOptions { include_renditions: true, reference: 9, ..Default::default() };
        let to = Address::parse("+8613912345678").unwrap();
        let pdus = encode_submit_pdus(&a, fmt, &to, &opts).unwrap();
        let mut parts = Vec::new();
        for p in &pdus {
            let d = decode_pdu(p, SmscField::Present).unwrap();
            parts.push(d.user_data().clone());
            // A PDU must end exactly where its user data ends.
            prop_assert!(decode_pdu(&p[..pos % p.len()], SmscField::Present).is_err());
            for m in mutations(p, pos, byte) {
                let _ = decode_pdu(&m, SmscField::Auto);
            }
        }
        let bodies: Vec<&Body> = parts.iter().map(|u| &u.body).collect();
        let payload = assemble(&bodies).unwrap();
        let got = decode_payload(parts[0].ports(), &payload).unwrap();
        prop_assert_eq!(got.format, fmt);
    }

    #[test]
    fn segmentation_round_trips_any_text(s in "\\PC{0,500}", ext in "[€\\[\\]{}^~|\\\\a-z ]{0,400}", wide in any::<bool>()) {
        for t in [s, ext] {
            let parts = segment(&Content::Text(t.clone()), &SegmentOptions { ports: None, reference: 300, wide_reference: wide }).unwrap();
            for p in &parts {
                prop_assert!(p.encode().is_ok());
            }
            let bodies: Vec<&Body> = parts.iter().map(|u| &u.body).collect();
            prop_assert_eq!(assemble(&bodies).unwrap(), Assembled::Text(t));
        }
    }

    #[test]
    fn segmentation_round_trips_binary(b in prop::collection::vec(any::<u8>(), 0..2000)) {
        let parts = segment(&Content::Binary(b.clone()), &SegmentOptions { ports: Some((1, 2)), reference: 3, wide_reference: false }).unwrap();
        let bodies: Vec<&Body> = parts.iter().map(|u| &u.body).collect();
        prop_assert_eq!(assemble(&bodies).unwrap(), Assembled::Binary(b));
    }

    #[test]
    fn gsm7_packing_round_trips(septets in prop::collection::vec(0u8..128, 0..200), fill in 0u8..7) {
        let packed = gsm7::pack(&septets, fill);
        prop_assert_eq!(gsm7::unpack(&packed, fill, septets.len()).unwrap(), septets);
    }

    #[test]
    fn addresses_and_timestamps_round_trip(digits in "[0-9*#]{1,20}", intl in any::<bool>(), secs in 631_152_000i64..3_786_911_999, tz in -79i8..=79) {
        let a = Address::parse(&format!("{}{digits}", if intl { "+" } else { "" })).unwrap();
        let mut out = Vec::new();
        a.encode_tp(&mut out).unwrap();
        let mut r = Reader::new(&out, Layer::Sms);
        prop_assert_eq!(Address::decode_tp(&mut r).unwrap(), a);
        let t = Timestamp::from_unix(secs, tz);
        if (1990..=2089).contains(&t.year) {
            let b = t.encode().unwrap();
            let mut r = Reader::new(&b, Layer::Sms);
            let back = Timestamp::decode(&mut r).unwrap();
            prop_assert_eq!(back, t);
            prop_assert_eq!(back.to_unix(), secs);
        }
    }

    #[test]
    fn varints_round_trip(v in any::<u64>(), w in any::<u32>()) {
        let mut b = Vec::new();
        varint::write_leb128(&mut b, v);
        prop_assert_eq!(varint::read_leb128(&mut Reader::new(&b, Layer::Tlv)).unwrap(), v);
        let mut b = Vec::new();
        varint::write_uintvar(&mut b, w);
        prop_assert_eq!(varint::read_uintvar(&mut Reader::new(&b, Layer::Wsp)).unwrap(), w);
    }
}

// Explicit rejections, one per kind of fault and parser.

#[test]
fn tlv_rejects_wrong_version_truncation_and_overlong() {
    let b = tlv::encode(
        &VideoAttributes {
            title: Some("x".repeat(200)),
            ..Default::default()
        },
        &Default::default(),
    )
    .unwrap();
    assert_fails!(tlv::decode(&[0xC2]), ErrorKind::BadVersion { .. });
    assert_fails!(tlv::decode(&b[..100]), ErrorKind::Truncated { .. });
    // Title length 0x81 0x05 is not minimal.
    assert_fails!(
        tlv::decode(&[0xC1, 0x03, 0x81, 5, 1, 2, 3, 4, 5]),
        ErrorKind::Overlong(_)
    );
    // A varint with a redundant zero group.
    assert_fails!(
        tlv::decode(&[0xC1, 0x0C, 0x02, 0x80, 0x00]),
        ErrorKind::Overlong(_)
    );
}

#[test]
fn sms_rejects_wrong_lengths() {
    let ok = parse_hex("0011000B916407281553F80000AA0AE8329BFD4697D9EC37").unwrap();
    // UDL says 11 septets but only 9 octets follow.
    let mut short = ok.clone();
    short[14] = 0x0B;
    let e = decode_pdu(&short, SmscField::Present).unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Truncated { .. }), "{e}");
    // An extra octet after the user data.
    let mut long = ok.clone();
    long.push(0);
    let e = decode_pdu(&long, SmscField::Present).unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Trailing(1)), "{e}");
    assert_eq!(e.offset, ok.len());
    // UDL above 160 septets.
    let mut huge = ok.clone();
    huge[14] = 161;
    assert_fails!(
        decode_pdu(&huge, SmscField::Present),
        ErrorKind::BadLength(_)
    );
    // Address length above 20 digits.
    let mut addr = ok;
    addr[3] = 21;
    assert_fails!(
        decode_pdu(&addr, SmscField::Present),
        ErrorKind::BadLength(_)
    );
    // A concatenation element with the wrong length.
    assert_fails!(
        UserDataHeader::decode(&[4, 0x00, 2, 1, 1]),
        ErrorKind::BadLength(_)
    );
}

#[test]
fn wbxml_and_documents_reject_wrong_versions() {
    let mut b =
        video_wbxml::encode(&VideoAttributes::default(), false, wbxml::VERSION_1_3).unwrap();
    b[0] = 0x04;
    assert_fails!(video_wbxml::decode(&b), ErrorKind::BadVersion { .. });
    let root = document::to_element(&VideoAttributes::default(), false);
    let mut v2 = root.clone();
    v2.attributes[0].1 = "2".into();
    let b = wbxml::encode(&v2, &video_wbxml::DIALECT, wbxml::VERSION_1_3).unwrap();
    assert_fails!(video_wbxml::decode(&b), ErrorKind::BadVersion { .. });
    // An SI document is not a video document.
    let si = si::ServiceIndication {
        href: Some("http://x".into()),
        ..Default::default()
    }
    .encode_wbxml(3)
    .unwrap();
    assert!(video_wbxml::decode(&si).is_err());
}
