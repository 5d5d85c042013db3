//! Encoders and decoders checked against examples published with the
//! specifications, and against captures from real handsets and gateways.

use sharecast_formats::share::sms::{
    Alphabet, Body, InformationElement, Timestamp, TypeOfNumber, UserData, UserDataHeader, Validity,
};
use sharecast_formats::share::wsp::{self, ApplicationId, ContentType, PushPdu};
use sharecast_formats::share::{
    assemble, decode_payload, decode_pdu, gsm7, parse_hex, si, sl, varint, wbxml, Address,
    Assembled, ShareFormat, SmsDeliver, SmsPdu, SmsSubmit, SmscField,
};

fn hex_upper(b: &[u8]) -> String {
    hex::encode_upper(b)
}

fn pdu(h: &str) -> SmsPdu {
    decode_pdu(&parse_hex(h).unwrap(), SmscField::Auto).unwrap()
}

/// The SMS-DELIVER in hex `h`.
fn deliver(h: &str) -> SmsDeliver {
    match pdu(h) {
        SmsPdu::Deliver(d) => d,
        other => panic!("not a deliver: {other:?}"),
    }
}

/// The SMS-SUBMIT in hex `h`.
fn submit(h: &str) -> SmsSubmit {
    match pdu(h) {
        SmsPdu::Submit(s) => s,
        other => panic!("not a submit: {other:?}"),
    }
}

/// 3GPP TS 23.038 §6.1.2.1.1 "Packing of 7 bit characters": septets are
/// packed least significant bit first. The classic worked example of that
/// rule packs "hellohello" (10 septets) into the 9 octets
/// E8 32 9B FD 46 97 D9 EC 37.
#[test]
fn ts23038_septet_packing_hellohello() {
    let septets = gsm7::encode("hellohello").unwrap();
    assert_eq!(hex_upper(&gsm7::pack(&septets, 0)), "E8329BFD4697D9EC37");
}

/// TS 23.040 §9.2.2.2 SMS-SUBMIT, the widely published reference PDU for
/// "hellohello" to +46708251358 (TS 27.005 PDU mode, default SMSC):
/// 00 (no SMSC) 11 (SUBMIT, VPF relative) 00 (MR) 0B 91 6407281553F8 (DA)
/// 00 (PID) 00 (DCS) AA (VP: 4 days) 0A (UDL) E8329BFD4697D9EC37.
#[test]
fn ts23040_submit_reference_pdu() {
    let mut s = SmsSubmit::new(
        Address::parse("+46708251358").unwrap(),
        UserData {
            header: None,
            body: Body::Gsm7(gsm7::encode("hellohello").unwrap()),
        },
    );
    s.validity = Validity::Relative(0xAA);
    let encoded = s.encode().unwrap();
    assert_eq!(
        hex_upper(&encoded),
        "0011000B916407281553F80000AA0AE8329BFD4697D9EC37"
    );
    assert_eq!(
        decode_pdu(&encoded, SmscField::Present).unwrap(),
        SmsPdu::Submit(s)
    );
}

/// TS 23.040 §9.2.2.1 SMS-DELIVER, the widely published reference PDU:
/// SMSC +27381000015, originator 27838890001 (type 0xC8), SCTS
/// 99 30 92 51 61 95 80 = 1999-03-29 15:16:59, GMT+2 (§9.2.3.11: 8 quarter
/// hours), "hellohello". Re-encoding gives the same octets.
#[test]
fn ts23040_deliver_reference_pdu() {
    let h = "07917283010010F5040BC87238880900F10000993092516195800AE8329BFD4697D9EC37";
    let d = deliver(h);
    assert_eq!(d.smsc.as_ref().unwrap().to_string(), "+27381000015");
    assert_eq!(d.originator.value, "27838890001");
    assert_eq!(d.originator.ton, TypeOfNumber::Subscriber);
    assert_eq!(
        d.timestamp,
        Timestamp {
            year: 1999,
            month: 3,
            day: 29,
            hour: 15,
            minute: 16,
            second: 59,
            tz_quarter_hours: 8
        }
    );
    assert_eq!(d.user_data.body.text().unwrap(), "hellohello");
    assert_eq!(hex_upper(&d.encode().unwrap()), h);
}

/// Captures from real handsets (published with the pygsm project): a
/// two-part concatenated GSM 7-bit message (UDH 05 00 03 7A 02 0x, so one
/// fill bit before the first septet, TS 23.040 §9.2.3.24), an alphanumeric
/// originator (TON 101) and a UCS-2 message with €. Every one re-encodes to
/// the captured octets.
#[test]
fn real_handset_captures() {
    let part1 = "0791448720003023440C91449703529096000050015132532240A00500037A020190E9339A9D3EA3E920FA1B1466B341E472193E079DD3EE73D85DA7EB41E7B41C1407C1CBF43228CC26E3416137390F3AABCFEAB3FAAC3EABCFEAB3FAAC3EABCFEAB3FAAC3EABCFEAB3FADC3EB7CFED73FBDC3EBF5D4416D9457411596457137D87B7E16438194E86BBCF6D16D9055D429548A28BE822BA882E6370196C2A8950E291E822BA88";
    let part2 = "0791448720003023440C91449703529096000050015132537240310500037A02025C4417D1D52422894EE5B17824BA8EC423F1483C129BC725315464118FCDE011247C4A8B44";
    let p1 = pdu(part1);
    let p2 = pdu(part2);
    let c1 = p1.user_data().concat().unwrap();
    let c2 = p2.user_data().concat().unwrap();
    assert_eq!((c1.reference, c1.total, c1.sequence), (0x7A, 2, 1));
    assert_eq!((c2.reference, c2.total, c2.sequence), (0x7A, 2, 2));
    let text = match assemble(&[&p1.user_data().body, &p2.user_data().body]).unwrap() {
        Assembled::Text(t) => t,
        Assembled::Binary(_) => panic!("binary"),
    };
    assert!(
        text.starts_with("Highlight to all deeps ginganutz"),
        "{text}"
    );
    assert!(text.ends_with("GMAG BORED"), "{text}");
    assert_eq!(p1.peer().to_string(), "+447930250969");

    let alpha = pdu("07914477790706520414D06176198F0EE361F2321900005001610013334014C324350B9287D12079180D92A3416134480E");
    assert_eq!(alpha.peer().ton, TypeOfNumber::Alphanumeric);
    assert_eq!(alpha.peer().value, "alexhax0red");
    assert_eq!(
        alpha.user_data().body.text().unwrap(),
        "CITY rah rah rh ah r"
    );

    let ucs2 = pdu("0791227167830001040C912271271640910008906012024514001C002E004020AC00A300680065006C006C006F002000E900EC006B00F0");
    assert_eq!(ucs2.user_data().body.alphabet(), Alphabet::Ucs2);
    assert_eq!(ucs2.user_data().body.text().unwrap(), ".@€£hello éìkð");

    for h in [part1, part2] {
        let d = deliver(h);
        assert_eq!(hex_upper(&d.encode().unwrap()), h);
    }
}

/// A captured SMS-SUBMIT (published in an SMS PDU walkthrough) with an
/// SMSC address, relative validity FF and the short destination 1861:
/// "Hello,my pretty world!" in 22 septets.
#[test]
fn captured_submit_with_smsc() {
    let h = "0891683108200805F01151048181160000FF16C8329BFD66B5F320B8BC4CA7E741F7B79C4D0E01";
    let s = submit(h);
    assert_eq!(s.smsc.as_ref().unwrap().to_string(), "+8613800280500");
    assert_eq!(s.message_ref, 0x51);
    assert_eq!(s.destination.value, "1861");
    assert_eq!(s.validity, Validity::Relative(0xFF));
    assert_eq!(s.user_data.body.text().unwrap(), "Hello,my pretty world!");
    assert_eq!(hex_upper(&s.encode().unwrap()), h);
}

/// WAP-230-WSP §8.1.2 "Variable Length Unsigned Integers": 0x87A5 is
/// encoded as 0x82 0x8F 0x25.
#[test]
fn wap230_uintvar_example() {
    let mut out = Vec::new();
    varint::write_uintvar(&mut out, 0x87A5);
    assert_eq!(out, [0x82, 0x8F, 0x25]);
}

fn si_spec_example_bytes() -> Vec<u8> {
    let mut b = vec![0x02, 0x05, 0x6A, 0x00, 0x45, 0xC6, 0x0D, 0x03];
    b.extend_from_slice(b"xyz\0");
    b.push(0x85);
    b.push(0x03);
    b.extend_from_slice(b"email/123/abc.wml\0");
    b.extend_from_slice(&[0x0A, 0xC3, 0x07, 0x19, 0x99, 0x06, 0x25, 0x15, 0x23, 0x15]);
    b.extend_from_slice(&[0x10, 0xC3, 0x04, 0x19, 0x99, 0x06, 0x30]);
    b.push(0x01);
    b.push(0x03);
    b.extend_from_slice(b"You have 4 new emails\0");
    b.extend_from_slice(&[0x01, 0x01]);
    b
}

/// WAP-167-ServiceInd-20010731-a, the example of the "Examples" chapter: the
/// SI `<indication href="http://www.xyz.com/email/123/abc.wml"
/// created="1999-06-25T15:23:15Z" si-expires="1999-06-30T00:00:00Z">You
/// have 4 new emails</indication>` tokenises (WBXML 1.2, public id 0x05,
/// UTF-8) to the octets below: `href="http://www."` 0x0D, `.com/` 0x85,
/// dates as OPAQUE (§9.2.2, trailing zero octets dropped).
#[test]
fn wap167_si_example() {
    let si = si::ServiceIndication {
        href: Some("http://www.xyz.com/email/123/abc.wml".into()),
        created: Some("1999-06-25T15:23:15Z".into()),
        expires: Some("1999-06-30T00:00:00Z".into()),
        text: "You have 4 new emails".into(),
        ..Default::default()
    };
    let expected = si_spec_example_bytes();
    assert_eq!(si.encode_wbxml(wbxml::VERSION_1_2).unwrap(), expected);
    assert_eq!(si::ServiceIndication::decode_wbxml(&expected).unwrap(), si);
    // The same document as WBXML 1.3 differs only in the version octet.
    let v13 = si.encode_wbxml(wbxml::VERSION_1_3).unwrap();
    assert_eq!(v13[0], 0x03);
    assert_eq!(&v13[1..], &expected[1..]);
}

/// WAP-168-ServiceLoad-20010731-a, the example of the "Examples" chapter:
/// `<sl href="http://www.xyz.com/ppaid/123/abc.wml"></sl>` tokenises to
/// 02 06 6A 00 85 0A 03 'xyz' 00 85 03 'ppaid/123/abc.wml' 00 01.
#[test]
fn wap168_sl_example() {
    let mut expected = vec![0x02, 0x06, 0x6A, 0x00, 0x85, 0x0A, 0x03];
    expected.extend_from_slice(b"xyz\0");
    expected.extend_from_slice(&[0x85, 0x03]);
    expected.extend_from_slice(b"ppaid/123/abc.wml\0");
    expected.push(0x01);
    let sl = sl::ServiceLoading {
        href: "http://www.xyz.com/ppaid/123/abc.wml".into(),
        action: None,
    };
    assert_eq!(sl.encode_wbxml(wbxml::VERSION_1_2).unwrap(), expected);
    assert_eq!(sl::ServiceLoading::decode_wbxml(&expected).unwrap(), sl);
}

/// An SI push as Kannel's wapbox produces it, received by a phone: the SI
/// compiled like gw/wap_push_si_compiler.c does (WBXML 1.2, public id 0x05,
/// charset 0x6A, empty string table, `href` start token + first `.com/`
/// tokenised, dates as OPAQUE, text as an inline string, CDATA as OPAQUE),
/// WSP headers with the general-form content type
/// (`03 AE 81 EA` = application/vnd.wap.sic; charset=utf-8) and
/// X-Wap-Application-Id wml.ua (`AF 82`), in one SMS-DELIVER with the WDP
/// header 06 05 04 0B 84 23 F0 (ports 2948 <- 9200).
#[test]
fn kannel_compiled_si_push_decodes() {
    let mut si = vec![0x02, 0x05, 0x6A, 0x00, 0x45, 0xC6, 0x0E, 0x03];
    si.extend_from_slice(b"sc.example\0");
    si.push(0x85);
    si.push(0x03);
    si.extend_from_slice(b"s/Xy3kP9\0");
    si.push(0x11);
    si.push(0x03);
    si.extend_from_slice(b"k3v9x2\0");
    si.extend_from_slice(&[0x10, 0xC3, 0x05, 0x20, 0x30, 0x01, 0x01, 0x12]);
    si.push(0x07); // action="signal-medium"
    si.push(0x01);
    si.push(0x03);
    si.extend_from_slice(b"Beach walk\0");
    si.extend_from_slice(&[0xC3, 0x06]);
    si.extend_from_slice(b" (HD)");
    si.push(b' ');
    si.extend_from_slice(&[0x01, 0x01]);
    let mut push = vec![0x25, 0x06, 0x06, 0x03, 0xAE, 0x81, 0xEA, 0xAF, 0x82];
    push.extend_from_slice(&si);
    let deliver = SmsDeliver::new(
        Address::parse("+8613800138000").unwrap(),
        Timestamp::from_unix(1_700_000_000, 32),
        UserData {
            header: Some(UserDataHeader {
                elements: vec![InformationElement::Ports {
                    destination: 2948,
                    source: 9200,
                    wide: true,
                }],
            }),
            body: Body::EightBit(push.clone()),
        },
    );
    let bytes = deliver.encode().unwrap();
    // The UDH is exactly Kannel's.
    let h = hex_upper(&bytes);
    assert!(h.contains("0605040B8423F025060603AE81EAAF82"), "{h}");

    let SmsPdu::Deliver(d) = decode_pdu(&bytes, SmscField::Auto).unwrap() else {
        panic!("not a deliver")
    };
    let payload = assemble(&[&d.user_data.body]).unwrap();
    let share = decode_payload(d.user_data.ports(), &payload).unwrap();
    assert_eq!(share.format, ShareFormat::WapSi);
    let a = share.attributes;
    assert_eq!(
        a.share_url.as_deref(),
        Some("https://sc.example.com/s/Xy3kP9")
    );
    assert_eq!(a.title.as_deref(), Some("Beach walk (HD)"));
    assert_eq!(a.id, "k3v9x2");
    // 2030-01-01T12:00:00Z
    assert_eq!(a.expires_unix, Some(1_893_499_200));
}

/// Kannel's sendota packs the content type in the general form with a
/// length quote (`1F len`), a text media type and `81 EA` (charset=utf-8);
/// the decoder reads that shape too.
#[test]
fn general_form_with_length_quote_and_text_type() {
    let ct = b"application/vnd.sharecast.video+wbxml\0";
    let mut headers = vec![0x1F, (ct.len() + 2) as u8];
    headers.extend_from_slice(ct);
    headers.extend_from_slice(&[0x81, 0xEA]);
    let mut pdu = vec![0x01, 0x06, headers.len() as u8];
    pdu.extend_from_slice(&headers);
    pdu.extend_from_slice(&[0x03, 0x00]);
    let p = wsp::decode(&pdu).unwrap();
    assert!(p.content_type.is("application/vnd.sharecast.video+wbxml"));
    assert_eq!(p.body, [0x03, 0x00]);
    let again = PushPdu {
        transaction_id: 1,
        content_type: ContentType::Text("application/vnd.sharecast.video+wbxml".into()),
        application_id: Some(ApplicationId::Uri("urn:sharecast:push:video".into())),
        other_headers: Vec::new(),
        body: vec![1, 2, 3],
    };
    assert_eq!(wsp::decode(&again.encode().unwrap()).unwrap(), again);
}
