//! Compact, verifiable button references. A button press names a case, a
//! turn of that case and a choice, sealed with a MAC over the conversation
//! key: a press by another user fails the MAC, a forged id fails the MAC, and
//! a press on an older message names an old turn.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::case::ConversationKey;

/// Bytes of MAC kept: 64 bits, ample against guessing within rate limits.
const TAG_BYTES: usize = 8;
/// Longest encoded reference: "ffffffff.ffffffff.ff." plus 16 hex digits.
pub const MAX_ENCODED_LEN: usize = 8 + 1 + 8 + 1 + 2 + 1 + TAG_BYTES * 2;

/// What a button stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ButtonRef {
    /// Low 32 bits of the case id.
    pub case: u32,
    /// The case's turn when the button was sent.
    pub turn: u32,
    /// Index into the choices of that turn.
    pub choice: u8,
}

/// Why a reference was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ButtonError {
    /// Not in the encoded form at all.
    #[error("malformed button reference")]
    Malformed,
    /// Well formed but sealed for another conversation, or forged.
    #[error("button reference does not belong to this conversation")]
    Foreign,
}

/// Seals and opens button references with a server secret.
#[derive(Clone)]
pub struct ButtonCodec {
    secret: Vec<u8>,
}

impl std::fmt::Debug for ButtonCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ButtonCodec { secret: <hidden> }")
    }
}

impl ButtonCodec {
    /// A codec for `secret`; every instance that serves the same users must
    /// share it, and keeping it across restarts keeps old buttons working.
    pub fn new(secret: &[u8]) -> ButtonCodec {
        ButtonCodec { secret: secret.to_vec() }
    }

    /// Encodes `button` for the conversation `key`, at most [`MAX_ENCODED_LEN`] bytes.
    pub fn encode(&self, key: &ConversationKey, button: ButtonRef) -> String {
        let body = format!("{:x}.{:x}.{:x}", button.case, button.turn, button.choice);
        let tag = self.tag(key, &body);
        format!("{body}.{tag}")
    }

    /// Decodes a reference pressed in conversation `key`.
    pub fn decode(&self, key: &ConversationKey, data: &str) -> Result<ButtonRef, ButtonError> {
        let (body, tag) = data.rsplit_once('.').ok_or(ButtonError::Malformed)?;
        let mut parts = body.split('.');
        let mut field = || parts.next().and_then(|part| u32::from_str_radix(part, 16).ok());
        let (Some(case), Some(turn), Some(choice)) = (field(), field(), field()) else {
            return Err(ButtonError::Malformed);
        };
        let choice = u8::try_from(choice).map_err(|_| ButtonError::Malformed)?;
        if parts.next().is_some() || tag.len() != TAG_BYTES * 2 {
            return Err(ButtonError::Malformed);
        }
        // Comparing hex strings of fixed length; the MAC crate's constant-time
        // check needs raw bytes, so decode first.
        let expected = self.mac(key, body);
        let given: Option<Vec<u8>> =
            (0..TAG_BYTES).map(|i| u8::from_str_radix(tag.get(i * 2..i * 2 + 2)?, 16).ok()).collect();
        let given = given.ok_or(ButtonError::Malformed)?;
        if expected.verify_truncated_left(&given).is_err() {
            return Err(ButtonError::Foreign);
        }
        Ok(ButtonRef { case, turn, choice })
    }

    fn mac(&self, key: &ConversationKey, body: &str) -> Hmac<Sha256> {
        // new_from_slice only fails for fixed-size keys; HMAC takes any length.
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC accepts any key length");
        for part in [&key.platform, &key.chat, &key.thread, &key.user] {
            mac.update(part.as_bytes());
            mac.update(&[0xff]);
        }
        mac.update(body.as_bytes());
        mac
    }

    fn tag(&self, key: &ConversationKey, body: &str) -> String {
        let bytes = self.mac(key, body).finalize().into_bytes();
        bytes[..TAG_BYTES].iter().map(|byte| format!("{byte:02x}")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(user: &str) -> ConversationKey {
        ConversationKey::new("telegram", "-100", "7", user)
    }

    #[test]
    fn round_trips_and_stays_within_platform_limits() {
        let codec = ButtonCodec::new(b"secret");
        let button = ButtonRef { case: u32::MAX, turn: u32::MAX, choice: 15 };
        let data = codec.encode(&key("ann"), button);
        assert!(data.len() <= MAX_ENCODED_LEN && MAX_ENCODED_LEN <= 64, "{data}");
        assert_eq!(codec.decode(&key("ann"), &data), Ok(button));
    }

    #[test]
    fn refuses_other_users_forgeries_and_junk() {
        let codec = ButtonCodec::new(b"secret");
        let data = codec.encode(&key("ann"), ButtonRef { case: 1, turn: 2, choice: 0 });
        assert_eq!(codec.decode(&key("bob"), &data), Err(ButtonError::Foreign));
        let forged = data.replacen("1.2.0", "1.2.1", 1);
        assert_eq!(codec.decode(&key("ann"), &forged), Err(ButtonError::Foreign));
        assert_eq!(ButtonCodec::new(b"other").decode(&key("ann"), &data), Err(ButtonError::Foreign));
        for junk in ["", "x", "1.2.3", "1.2.zz.0011223344556677", "1.2.3.4.0011223344556677", "1.2.3.00112233445566"] {
            assert_eq!(codec.decode(&key("ann"), junk), Err(ButtonError::Malformed), "{junk}");
        }
    }
}
