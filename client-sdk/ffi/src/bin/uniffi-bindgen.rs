//! UniFFI's binding generator, built from the same UniFFI version as the
//! library: `uniffi-bindgen generate --library <libsharecast_sdk.so>
//! --language kotlin|swift --out-dir DIR` (scripts/sdk-bindings.sh).

fn main() {
    uniffi::uniffi_bindgen_main()
}
