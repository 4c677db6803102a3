//! HMAC-SHA256 signatures, shared by Slack verification and outgoing webhooks.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

fn mac(key: &[u8], parts: &[&[u8]]) -> Option<HmacSha256> {
    // HMAC takes keys of any length, so this is always Some; no panic path either way.
    let mut m = HmacSha256::new_from_slice(key).ok()?;
    for p in parts {
        m.update(p);
    }
    Some(m)
}

/// Lower-case hex of HMAC-SHA256(key, parts concatenated).
pub fn hmac_sha256_hex(key: &[u8], parts: &[&[u8]]) -> String {
    mac(key, parts).map_or_else(String::new, |m| to_hex(&m.finalize().into_bytes()))
}

/// Constant-time check of a hex signature against HMAC-SHA256(key, parts).
pub fn verify_hmac_sha256_hex(key: &[u8], parts: &[&[u8]], hex_sig: &str) -> bool {
    match (from_hex(hex_sig), mac(key, parts)) {
        (Some(sig), Some(m)) => m.verify_slice(&sig).is_ok(),
        _ => false,
    }
}

pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}

pub fn from_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    s.as_bytes()
        .chunks(2)
        .map(|p| Some(nibble(p[0])? << 4 | nibble(p[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4231_case_2() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            hmac_sha256_hex(b"Jefe", &[b"what do ya want ", b"for nothing?"]),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn slack_documented_example() {
        // The example from Slack's "Verifying requests from Slack" guide.
        let secret = b"8f742231b10e8888abcd99yyyzzz85a5";
        let ts = "1531420618";
        let body = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        let sig = "a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";
        assert!(verify_hmac_sha256_hex(
            secret,
            &[b"v0:", ts.as_bytes(), b":", body.as_bytes()],
            sig
        ));
        assert!(!verify_hmac_sha256_hex(
            secret,
            &[b"v0:", ts.as_bytes(), b":", body.as_bytes(), b"x"],
            sig
        ));
    }

    #[test]
    fn hex_round_trip_and_rejects() {
        assert_eq!(
            from_hex(&to_hex(&[0, 1, 0xab, 0xff])),
            Some(vec![0, 1, 0xab, 0xff])
        );
        assert_eq!(from_hex("abc"), None);
        assert_eq!(from_hex("zz"), None);
    }
}
