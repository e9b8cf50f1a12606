//! Credentials of the status service: the lookup token a citizen gets at reception, and
//! the API keys of operators. Only digests are stored; every comparison takes the same
//! time whatever the input, so a caller learns nothing from how long a refusal took.

use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Crockford's base32 alphabet: no I, L, O or U, so a token read aloud or copied from a
/// paper receipt survives common misreadings (see [`normalize_lookup_token`]).
const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// Characters of a lookup token (5 bits each: 80 random bits).
pub const LOOKUP_TOKEN_CHARS: usize = 16;

/// A fresh lookup token, printed on the receipt as four groups: `7KQ2-M9XD-...`.
/// Drawn for every submission intake handles: from the thread's CSPRNG (ChaCha, seeded
/// from the OS), not a system call per message.
pub fn new_lookup_token() -> String {
    let mut bytes = [0u8; 10];
    rand::thread_rng().fill_bytes(&mut bytes);
    let mut bits: u128 = 0;
    for b in bytes {
        bits = (bits << 8) | u128::from(b);
    }
    let mut out = String::with_capacity(LOOKUP_TOKEN_CHARS + 3);
    for i in 0..LOOKUP_TOKEN_CHARS {
        if i > 0 && i % 4 == 0 {
            out.push('-');
        }
        let shift = 5 * (LOOKUP_TOKEN_CHARS - 1 - i);
        out.push(CROCKFORD[((bits >> shift) & 0x1f) as usize] as char);
    }
    out
}

/// The canonical form of a token as a person typed it: case, spaces and hyphens do not
/// matter, `O` is read as `0` and `I`/`L` as `1`. `None` when it cannot be a token.
pub fn normalize_lookup_token(typed: &str) -> Option<String> {
    if typed.len() > 64 {
        return None;
    }
    let mut out = String::with_capacity(LOOKUP_TOKEN_CHARS);
    for c in typed.chars() {
        let c = match c.to_ascii_uppercase() {
            ' ' | '-' => continue,
            'O' => '0',
            'I' | 'L' => '1',
            c if CROCKFORD.contains(&(c as u8)) && c.is_ascii() => c,
            _ => return None,
        };
        out.push(c);
    }
    (out.len() == LOOKUP_TOKEN_CHARS).then_some(out)
}

/// What the status projection stores of a lookup token: the SHA-256 of its canonical form,
/// hex. (80 random bits need no slow hash: nobody can search that space from a digest.)
pub fn lookup_token_digest(token: &str) -> Option<String> {
    normalize_lookup_token(token).map(|t| hex(&Sha256::digest(t.as_bytes())))
}

/// Whether `typed` is the token whose digest is `stored` (hex), in constant time. With no
/// stored digest (an unknown dossier) the same work is done against a dummy, so an unknown
/// code and a wrong token cannot be told apart by timing either.
pub fn lookup_token_matches(typed: &str, stored: Option<&str>) -> bool {
    let presented = normalize_lookup_token(typed).map(|t| Sha256::digest(t.as_bytes()));
    let dummy = [0u8; 64];
    let stored_bytes = stored.map(str::as_bytes).unwrap_or(&dummy);
    let presented_hex = presented.map(|d| hex(&d)).unwrap_or_else(|| "x".repeat(64));
    let equal: bool = presented_hex.as_bytes().ct_eq(stored_bytes).into();
    equal && stored.is_some()
}

/// An operator's API key: `motcua_` then 64 hex digits (256 random bits).
pub fn new_api_key() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("motcua_{}", hex(&bytes))
}

/// What the key file stores of an API key: `sha256:` and the hex digest of the whole key.
pub fn api_key_digest(key: &str) -> String {
    format!("sha256:{}", hex(&Sha256::digest(key.trim().as_bytes())))
}

/// Whether `presented` is the key of digest `stored` (as [`api_key_digest`] writes it),
/// in constant time.
pub fn api_key_matches(presented: &str, stored: &str) -> bool {
    api_key_digest(presented).as_bytes().ct_eq(stored.as_bytes()).into()
}

/// Whether `s` is a digest [`api_key_digest`] could have written.
pub fn is_api_key_digest(s: &str) -> bool {
    s.strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()))
}

/// An identifier (citizen ID, tax code, parcel) as logs may show it: its first three and
/// last two characters, the rest starred — enough to tell two records apart in an
/// investigation, not enough to be the identifier. Short values are starred entirely.
pub fn mask_identifier(id: &str) -> String {
    let chars: Vec<char> = id.chars().collect();
    if chars.len() < 8 {
        return "*".repeat(chars.len().max(1));
    }
    let (head, tail) = (3, 2);
    let mut out: String = chars[..head].iter().collect();
    out.extend(std::iter::repeat_n('*', chars.len() - head - tail));
    out.extend(&chars[chars.len() - tail..]);
    out
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lookup_token_is_sixteen_crockford_characters_in_four_groups() {
        let t = new_lookup_token();
        assert_eq!(t.len(), 19, "{t}");
        assert_eq!(t.matches('-').count(), 3, "{t}");
        assert!(normalize_lookup_token(&t).is_some(), "{t}");
        assert_ne!(new_lookup_token(), t, "tokens are random");
    }

    #[test]
    fn a_token_typed_with_other_case_spaces_or_misread_letters_still_matches() {
        let t = "7KQ2-M90D-1XYZ-0AB1";
        let digest = lookup_token_digest(t).expect("a token");
        for typed in ["7kq2 m9od 1xyz oab1", "7KQ2M90DIXYZ0ABL", " 7kq2-m90d-lxyz-0ab1 "] {
            assert!(lookup_token_matches(typed, Some(&digest)), "{typed}");
        }
        assert!(!lookup_token_matches("7KQ2-M90D-1XYZ-0AB2", Some(&digest)));
        assert!(!lookup_token_matches("7KQ2-M90D-1XYZ", Some(&digest)), "too short");
        assert!(!lookup_token_matches("7KQ2-M90D-1XYZ-0AB!", Some(&digest)));
        assert!(!lookup_token_matches(t, None), "no stored digest never matches");
    }

    #[test]
    fn a_masked_identifier_keeps_only_its_ends() {
        assert_eq!(mask_identifier("022090001234"), "022*******34");
        assert_eq!(mask_identifier("0101234567"), "010*****67");
        assert_eq!(mask_identifier("1234567"), "*******");
        assert_eq!(mask_identifier(""), "*");
        assert!(!mask_identifier("022090001234").contains("0900012"));
    }

    #[test]
    fn an_api_key_matches_only_its_own_digest() {
        let key = new_api_key();
        let digest = api_key_digest(&key);
        assert!(is_api_key_digest(&digest), "{digest}");
        assert!(!digest.contains(&key[7..]), "the digest does not contain the key");
        assert!(api_key_matches(&key, &digest));
        assert!(!api_key_matches(&new_api_key(), &digest));
        assert!(!api_key_matches("", &digest));
    }
}
