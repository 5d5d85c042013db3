//! The WBXML decoder (`wbxml::decode`) with each dialect (SI, SL, the
//! video document; the first byte picks) and the video document's decoder
//! (`video_wbxml::decode`). Attributes that decode are encoded again (with
//! renditions) and decode the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sharecast_formats::share::{si, sl, video_wbxml, wbxml};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, doc)) = data.split_first() else {
        return;
    };
    let dialect = match pick % 3 {
        0 => &si::DIALECT,
        1 => &sl::DIALECT,
        _ => &video_wbxml::DIALECT,
    };
    let _ = wbxml::decode(doc, dialect);
    let Ok(attrs) = video_wbxml::decode(doc) else {
        return;
    };
    if let Ok(bytes) = video_wbxml::encode(&attrs, true, wbxml::VERSION_1_3) {
        let again = video_wbxml::decode(&bytes).expect("an encoded video document decodes");
        assert_eq!(again, attrs, "attributes changed through WBXML");
    }
});
