//! Vendor signing keys (ed25519) and their text forms.
//!
//! A public key travels as one line, `nexo-ed25519:<base64 key> <name>`, so it
//! can be pasted into `nexo trust add`. A secret key file is
//! `nexo-ed25519-secret:<base64 seed>` and is written with mode 0600. A key's
//! id is the first 16 hex digits of the SHA-256 of the public key.

use std::fmt;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

const PUBLIC_PREFIX: &str = "nexo-ed25519:";
const SECRET_PREFIX: &str = "nexo-ed25519-secret:";

/// A key problem, with what to do.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Not a Nexo key line.
    #[error("not a Nexo public key (expected `{PUBLIC_PREFIX}<base64> <name>`): {0}")]
    BadPublic(String),
    /// Not a Nexo secret key file.
    #[error("{0} is not a Nexo secret key (create one with `nexo plugin keygen`)")]
    BadSecret(String),
    /// Reading or writing a key file failed.
    #[error("key file {path}: {source}")]
    Io {
        /// File.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// No randomness from the OS.
    #[error("no randomness available for a new key: {0}")]
    Random(String),
}

/// A vendor's public key with its display name.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    key: VerifyingKey,
    /// Who the key belongs to, as the vendor named it.
    pub name: String,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({} {})", self.key_id(), self.name)
    }
}

impl PublicKey {
    /// Parse `nexo-ed25519:<base64> <name>`.
    pub fn parse(line: &str) -> Result<Self, KeyError> {
        let bad = || KeyError::BadPublic(line.chars().take(80).collect());
        let rest = line.trim().strip_prefix(PUBLIC_PREFIX).ok_or_else(bad)?;
        let (b64, name) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
        let bytes: [u8; 32] = B64
            .decode(b64)
            .map_err(|_| bad())?
            .try_into()
            .map_err(|_| bad())?;
        let key = VerifyingKey::from_bytes(&bytes).map_err(|_| bad())?;
        Ok(PublicKey {
            key,
            name: name.trim().to_string(),
        })
    }

    /// From raw bytes (as stored).
    pub fn from_bytes(bytes: &[u8], name: String) -> Result<Self, KeyError> {
        let bad = || KeyError::BadPublic("stored key is not 32 bytes of ed25519".into());
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| bad())?;
        Ok(PublicKey {
            key: VerifyingKey::from_bytes(&bytes).map_err(|_| bad())?,
            name,
        })
    }

    /// Raw bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// The key's id: 16 hex digits of its SHA-256.
    pub fn key_id(&self) -> String {
        hex::encode(&Sha256::digest(self.key.as_bytes())[..8])
    }

    /// The one-line text form.
    pub fn to_line(&self) -> String {
        format!(
            "{PUBLIC_PREFIX}{} {}",
            B64.encode(self.key.as_bytes()),
            self.name
        )
    }

    /// Whether `signature` is this key's signature of `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        let Ok(sig) = Signature::from_slice(signature) else {
            return false;
        };
        self.key.verify(message, &sig).is_ok()
    }
}

/// A vendor's secret signing key.
pub struct SecretKey {
    key: SigningKey,
    name: String,
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SecretKey({} {}, ***)",
            self.public().key_id(),
            self.name
        )
    }
}

impl SecretKey {
    /// A new random key for `name` (the vendor).
    pub fn generate(name: &str) -> Result<Self, KeyError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| KeyError::Random(e.to_string()))?;
        Ok(SecretKey {
            key: SigningKey::from_bytes(&seed),
            name: name.to_string(),
        })
    }

    /// The matching public key.
    pub fn public(&self) -> PublicKey {
        PublicKey {
            key: self.key.verifying_key(),
            name: self.name.clone(),
        }
    }

    /// Sign `message`.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.key.sign(message).to_bytes().to_vec()
    }

    /// Write the key to `path` (mode 0600, refusing to overwrite).
    pub fn write(&self, path: &Path) -> Result<(), KeyError> {
        use std::io::Write;
        let io = |source| KeyError::Io {
            path: path.display().to_string(),
            source,
        };
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(path).map_err(io)?;
        writeln!(
            f,
            "{SECRET_PREFIX}{} {}",
            B64.encode(self.key.to_bytes()),
            self.name
        )
        .map_err(io)
    }

    /// Read a key written by [`SecretKey::write`].
    pub fn read(path: &Path) -> Result<Self, KeyError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let bad = || KeyError::BadSecret(path.display().to_string());
        let rest = text.trim().strip_prefix(SECRET_PREFIX).ok_or_else(bad)?;
        let (b64, name) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
        let seed: [u8; 32] = B64
            .decode(b64)
            .map_err(|_| bad())?
            .try_into()
            .map_err(|_| bad())?;
        Ok(SecretKey {
            key: SigningKey::from_bytes(&seed),
            name: name.trim().to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_sign() {
        let dir = tempfile::tempdir().unwrap();
        let sk = SecretKey::generate("Acme Inc").unwrap();
        let path = dir.path().join("acme.key");
        sk.write(&path).unwrap();
        assert!(sk.write(&path).is_err(), "never overwrite a key");
        let back = SecretKey::read(&path).unwrap();
        let pk = PublicKey::parse(&back.public().to_line()).unwrap();
        assert_eq!(pk, sk.public());
        assert_eq!(pk.name, "Acme Inc");
        let sig = back.sign(b"hello");
        assert!(pk.verify(b"hello", &sig));
        assert!(!pk.verify(b"hellO", &sig));
        assert!(!format!("{back:?}").contains(&B64.encode(back.key.to_bytes())));
    }

    #[test]
    fn bad_key_lines_say_what_is_expected() {
        let e = PublicKey::parse("ssh-ed25519 AAAA").unwrap_err();
        assert!(e.to_string().contains("nexo-ed25519:"), "{e}");
        assert!(PublicKey::parse("nexo-ed25519:AAAA name").is_err());
    }
}
