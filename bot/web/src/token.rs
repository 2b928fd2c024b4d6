//! Conversation keys: what a browser keeps in `localStorage` and sends in the
//! `Authorization` header. A key is 128 random bits sealed with an HMAC, so a
//! guessed or altered key is refused before any store is read, and the store
//! only ever sees a digest of it.

use hmac::{Hmac, Mac};
use sha2::{Digest as _, Sha256};

/// Random bytes in a key.
const NONCE_BYTES: usize = 16;
/// MAC bytes in a key: 128 bits.
const TAG_BYTES: usize = 16;
/// Hex characters in a key.
pub const TOKEN_LEN: usize = (NONCE_BYTES + TAG_BYTES) * 2;

/// Mints and checks conversation keys with a server secret.
#[derive(Clone)]
pub struct Tokens {
    secret: Vec<u8>,
}

impl Tokens {
    /// Keys sealed with `secret`; every instance sharing a store shares it.
    pub fn new(secret: &[u8]) -> Tokens {
        Tokens { secret: secret.to_vec() }
    }

    /// A new key, or `None` when the operating system gave no randomness.
    pub fn mint(&self) -> Option<String> {
        let mut nonce = [0u8; NONCE_BYTES];
        getrandom::fill(&mut nonce).ok()?;
        let tag = self.mac(&nonce).finalize().into_bytes();
        Some(format!("{}{}", hex(&nonce), hex(&tag[..TAG_BYTES])))
    }

    /// The user id a genuine key stands for (a digest of the key, never the
    /// key itself), or `None` for anything else.
    pub fn verify(&self, token: &str) -> Option<String> {
        if token.len() != TOKEN_LEN {
            return None;
        }
        let bytes = unhex(token)?;
        let (nonce, tag) = bytes.split_at(NONCE_BYTES);
        // Compared in constant time.
        self.mac(nonce).verify_truncated_left(tag).ok()?;
        Some(hex(&Sha256::digest(token.as_bytes())[..16]))
    }

    fn mac(&self, nonce: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC accepts any key length");
        mac.update(b"fixbot-web conversation key\0");
        mac.update(nonce);
        mac
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    let digits = text.as_bytes();
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    digits
        .chunks(2)
        .map(|pair| {
            let pair = std::str::from_utf8(pair).ok()?;
            // from_str_radix accepts a leading '+', which a key never has.
            if !pair.bytes().all(|byte| byte.is_ascii_hexdigit()) {
                return None;
            }
            u8::from_str_radix(pair, 16).ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minted_key_verifies_and_stands_for_a_digest() {
        let tokens = Tokens::new(b"secret");
        let token = tokens.mint().unwrap();
        assert_eq!(token.len(), TOKEN_LEN);
        let user = tokens.verify(&token).unwrap();
        assert_eq!(user.len(), 32);
        assert!(!token.contains(&user));
        assert_ne!(tokens.verify(&tokens.mint().unwrap()).unwrap(), user);
    }

    #[test]
    fn forged_altered_and_foreign_keys_are_refused() {
        let tokens = Tokens::new(b"secret");
        let token = tokens.mint().unwrap();
        let mut altered = token.clone().into_bytes();
        altered[3] = if altered[3] == b'0' { b'1' } else { b'0' };
        assert_eq!(tokens.verify(std::str::from_utf8(&altered).unwrap()), None);
        assert_eq!(Tokens::new(b"other").verify(&token), None);
        assert_eq!(tokens.verify(&"0".repeat(TOKEN_LEN)), None);
        assert_eq!(tokens.verify(&format!("+{}", &token[1..])), None);
        assert_eq!(tokens.verify(""), None);
    }
}
