//! The SMS user data header (`UserDataHeader::decode`) and what is read
//! from it (concatenation, ports). A header that decodes encodes back to
//! exactly the bytes it was read from.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sharecast_formats::share::sms::UserDataHeader;

fuzz_target!(|data: &[u8]| {
    let Ok((header, len)) = UserDataHeader::decode(data) else {
        return;
    };
    let _ = (header.concat(), header.ports());
    let bytes = header.encode().expect("a decoded header encodes");
    assert_eq!(
        &bytes[..],
        &data[..len],
        "header changed through encode/decode"
    );
});
