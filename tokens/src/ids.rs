//! Random ids and tokens, and the check of ids that arrive in requests.

use rand::RngCore;

/// `n` random bytes as lowercase hex (2n digits).
pub fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    rand::thread_rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// A new id: 128 random bits, 32 lowercase hex digits.
pub fn new_id() -> String {
    random_hex(16)
}

/// Whether `id` can be an id of ours: 1 to 64 hexadecimal digits (ids made
/// before they were 128 bits long had 16).
pub fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_128_random_bits() {
        let a = new_id();
        assert_eq!(a.len(), 32);
        assert!(valid_id(&a));
        assert_ne!(a, new_id());
        assert!(!valid_id(""));
        assert!(!valid_id("../x"));
        assert!(!valid_id(&"a".repeat(65)));
    }
}
