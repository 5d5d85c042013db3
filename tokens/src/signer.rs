//! The one signing primitive: HMAC-SHA256 under a key kept in the data
//! directory, and the signed links built on it.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// A 256-bit key kept in `path` (owner-only), made at first use.
pub fn load_or_create_key(path: &Path) -> Result<Vec<u8>> {
    if let Ok(k) = std::fs::read(path) {
        if k.len() == 32 {
            return Ok(k);
        }
    }
    let mut k = vec![0u8; 32];
    rand::thread_rng().fill_bytes(&mut k);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    use std::io::Write;
    opts.open(path)
        .and_then(|mut f| f.write_all(&k))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(k)
}

/// Constant-time comparison of two secrets.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// HMAC-SHA256 under one key; cheap to clone.
#[derive(Clone)]
pub struct Signer {
    key: Arc<Vec<u8>>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").finish_non_exhaustive()
    }
}

impl Signer {
    /// A signer with this key.
    pub fn new(key: Vec<u8>) -> Self {
        Self { key: Arc::new(key) }
    }

    /// The signer whose key is kept in `path` (made at first use).
    pub fn load(path: &Path) -> Result<Self> {
        Ok(Self::new(load_or_create_key(path)?))
    }

    fn mac(&self, message: &str) -> Option<HmacSha256> {
        // HMAC takes keys of any length: the error cannot happen.
        let mut mac = HmacSha256::new_from_slice(&self.key).ok()?;
        mac.update(message.as_bytes());
        Some(mac)
    }

    /// The MAC of `message`, hex, its first `hex_digits` digits (all 64
    /// when more are asked).
    pub fn sign(&self, message: &str, hex_digits: usize) -> String {
        let Some(mac) = self.mac(message) else {
            return String::new();
        };
        let mut hex = hex::encode(mac.finalize().into_bytes());
        hex.truncate(hex_digits);
        hex
    }

    /// Whether `tag_hex` is the (possibly truncated, at least 128-bit) MAC
    /// of `message`, compared in constant time.
    pub fn verify(&self, message: &str, tag_hex: &str) -> bool {
        let Ok(tag) = hex::decode(tag_hex) else {
            return false;
        };
        tag.len() >= 16
            && self
                .mac(message)
                .is_some_and(|m| m.verify_truncated_left(&tag).is_ok())
    }
}

/// Why a signed link does not open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkError {
    /// Not signed by this server (or changed).
    BadSignature,
    /// Signed, but past its expiry.
    Expired,
}

/// Signs the links this server hands out (`?exp=…&sig=…` over an id), with
/// the key in `<data_dir>/signing-key`.
#[derive(Clone, Debug)]
pub struct LinkSigner {
    signer: Signer,
}

impl LinkSigner {
    /// A link signer over a signer.
    pub fn new(signer: Signer) -> Self {
        Self { signer }
    }

    /// The link signer whose key is kept in `<data_dir>/signing-key`.
    pub fn load(data_dir: &Path) -> Result<Self> {
        Ok(Self::new(Signer::load(&data_dir.join("signing-key"))?))
    }

    /// The signature of `id` until `exp` (ms since the Unix epoch), hex.
    pub fn sign(&self, id: &str, exp: i64) -> String {
        self.signer.sign(&format!("{id}|{exp}"), 64)
    }

    /// Checks a link's signature and expiry.
    pub fn verify(&self, id: &str, exp: i64, sig: &str) -> Result<(), LinkError> {
        if sig.len() != 64 || !self.signer.verify(&format!("{id}|{exp}"), sig) {
            return Err(LinkError::BadSignature);
        }
        if exp < crate::now_ms() {
            return Err(LinkError::Expired);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_open_until_they_expire_and_not_when_changed() {
        let l = LinkSigner::new(Signer::new(vec![1; 32]));
        let exp = crate::now_ms() + 60_000;
        let sig = l.sign("abc", exp);
        assert_eq!(l.verify("abc", exp, &sig), Ok(()));
        assert_eq!(l.verify("abd", exp, &sig), Err(LinkError::BadSignature));
        assert_eq!(l.verify("abc", exp + 1, &sig), Err(LinkError::BadSignature));
        assert_eq!(
            l.verify("abc", exp, &sig[..32]),
            Err(LinkError::BadSignature)
        );
        assert_eq!(l.verify("abc", exp, "zz"), Err(LinkError::BadSignature));
        let old = crate::now_ms() - 1;
        assert_eq!(
            l.verify("abc", old, &l.sign("abc", old)),
            Err(LinkError::Expired)
        );
        let other = LinkSigner::new(Signer::new(vec![2; 32]));
        assert_eq!(other.verify("abc", exp, &sig), Err(LinkError::BadSignature));
    }

    #[test]
    fn keys_are_kept_owner_only_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        let a = load_or_create_key(&p).unwrap();
        assert_eq!(load_or_create_key(&p).unwrap(), a);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        assert!(constant_time_eq(b"ab", b"ab") && !constant_time_eq(b"ab", b"ac"));
    }
}
