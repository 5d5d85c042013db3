//! GSM 7-bit (`gsm7::unpack`, `gsm7::decode`): the first byte gives the
//! fill bits and the septet count, the rest the packed octets. Text that
//! decodes encodes and packs back to the same septets.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sharecast_formats::share::gsm7;

fuzz_target!(|data: &[u8]| {
    let Some((&head, octets)) = data.split_first() else {
        return;
    };
    let fill = head % 7;
    let count = usize::from(head >> 3) * 8 + octets.len() % 8;
    let Ok(septets) = gsm7::unpack(octets, fill, count) else {
        return;
    };
    let packed = gsm7::pack(&septets, fill);
    assert_eq!(
        gsm7::unpack(&packed, fill, septets.len()).expect("packed septets unpack"),
        septets
    );
    let Ok(text) = gsm7::decode(&septets) else {
        return;
    };
    let encoded = gsm7::encode(&text).expect("decoded text is GSM 7-bit");
    assert_eq!(gsm7::decode(&encoded).expect("encoded text decodes"), text);
});
