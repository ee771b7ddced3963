//! Secrets at rest: sealed with ChaCha20-Poly1305 under a key the host gets
//! from `NEXO_SECRET_KEY` (base64 of 32 bytes) or, failing that, from a key
//! file in the data directory created on first use (mode 0600). Each value is
//! bound to its connection and name (associated data), so a sealed value
//! copied into another slot does not open.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};

use nexo_runtime::sandbox::secrets::SecretValue;

/// Why sealing or opening failed.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The key is not 32 bytes of base64.
    #[error(
        "the secret key {0} is not 32 bytes of base64 (make one with `head -c 32 /dev/urandom | base64`)"
    )]
    BadKey(String),
    /// The key file could not be read or written.
    #[error("secret key file {path}: {reason}")]
    KeyFile {
        /// File.
        path: String,
        /// Why.
        reason: String,
    },
    /// The value does not open with this key (wrong key, or tampered).
    #[error(
        "stored secret `{0}` cannot be opened with this secret key (was NEXO_SECRET_KEY changed?)"
    )]
    Open(String),
    /// No randomness.
    #[error("no randomness for a nonce: {0}")]
    Random(String),
}

/// The sealing key.
#[derive(Clone)]
pub struct Sealer {
    cipher: ChaCha20Poly1305,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(***)")
    }
}

impl Sealer {
    /// A sealer from 32 key bytes.
    pub fn from_key(key: &[u8; 32]) -> Self {
        Sealer {
            cipher: ChaCha20Poly1305::new(Key::from_slice(key)),
        }
    }

    /// The host's key: `NEXO_SECRET_KEY` if set, else `key_file` (created
    /// with a random key, mode 0600, when missing).
    pub fn from_env_or_file(key_file: &Path) -> Result<Self, SealError> {
        if let Ok(b64) = std::env::var("NEXO_SECRET_KEY") {
            return Self::from_base64(&b64, "in NEXO_SECRET_KEY");
        }
        let err = |e: std::io::Error| SealError::KeyFile {
            path: key_file.display().to_string(),
            reason: e.to_string(),
        };
        match std::fs::read_to_string(key_file) {
            Ok(text) => Self::from_base64(text.trim(), &format!("in {}", key_file.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                getrandom::fill(&mut key).map_err(|e| SealError::Random(e.to_string()))?;
                let mut opts = std::fs::OpenOptions::new();
                opts.write(true).create_new(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt;
                    opts.mode(0o600);
                }
                use std::io::Write;
                let mut f = opts.open(key_file).map_err(err)?;
                writeln!(f, "{}", B64.encode(key)).map_err(err)?;
                tracing::info!(path = %key_file.display(), "created the secret key for secrets at rest; back it up");
                Ok(Self::from_key(&key))
            }
            Err(e) => Err(err(e)),
        }
    }

    fn from_base64(b64: &str, whence: &str) -> Result<Self, SealError> {
        let bytes: [u8; 32] = B64
            .decode(b64.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| SealError::BadKey(whence.to_string()))?;
        Ok(Self::from_key(&bytes))
    }

    /// Seal `value` for slot `slot` (connection + name): (nonce, sealed).
    pub fn seal(&self, slot: &str, value: &SecretValue) -> Result<(Vec<u8>, Vec<u8>), SealError> {
        let mut nonce = [0u8; 12];
        getrandom::fill(&mut nonce).map_err(|e| SealError::Random(e.to_string()))?;
        let sealed = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: value.expose().as_bytes(),
                    aad: slot.as_bytes(),
                },
            )
            .map_err(|_| SealError::Open(slot.to_string()))?;
        Ok((nonce.to_vec(), sealed))
    }

    /// Open what [`Sealer::seal`] sealed for `slot`.
    pub fn open(&self, slot: &str, nonce: &[u8], sealed: &[u8]) -> Result<SecretValue, SealError> {
        if nonce.len() != 12 {
            return Err(SealError::Open(slot.to_string()));
        }
        let plain = self
            .cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: slot.as_bytes(),
                },
            )
            .map_err(|_| SealError::Open(slot.to_string()))?;
        String::from_utf8(plain)
            .map(SecretValue::new)
            .map_err(|_| SealError::Open(slot.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_bound_to_their_slot_and_key() {
        let s = Sealer::from_key(&[7; 32]);
        let (nonce, sealed) = s
            .seal("crm/api_token", &SecretValue::new("hunter2-value"))
            .unwrap();
        assert!(
            !sealed.windows(6).any(|w| w == b"hunter"),
            "not stored in clear"
        );
        assert_eq!(
            s.open("crm/api_token", &nonce, &sealed).unwrap().expose(),
            "hunter2-value"
        );
        assert!(
            s.open("other/api_token", &nonce, &sealed).is_err(),
            "bound to its slot"
        );
        assert!(
            Sealer::from_key(&[8; 32])
                .open("crm/api_token", &nonce, &sealed)
                .is_err()
        );
    }

    #[test]
    fn key_file_is_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.key");
        let a = Sealer::from_env_or_file(&path);
        // NEXO_SECRET_KEY may be set in the environment of the test run;
        // only check the file when it was used.
        if std::env::var("NEXO_SECRET_KEY").is_err() {
            let a = a.unwrap();
            let (n, c) = a.seal("x/y", &SecretValue::new("v")).unwrap();
            let b = Sealer::from_env_or_file(&path).unwrap();
            assert_eq!(b.open("x/y", &n, &c).unwrap().expose(), "v");
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                assert_eq!(
                    std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                    0o600
                );
            }
        }
    }
}
