//! Lower-case hex, for digests, salts and keys in manifests and tables.

/// `bytes` as lower-case hex.
pub fn encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

/// Parse hex (either case) into exactly `N` bytes.
pub fn decode<const N: usize>(s: &str) -> Option<[u8; N]> {
    let v = decode_vec(s)?;
    v.try_into().ok()
}

/// Parse hex (either case) of any even length.
pub fn decode_vec(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    s.as_bytes()
        .chunks(2)
        .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let b = [0u8, 1, 0xab, 0xff];
        assert_eq!(encode(&b), "0001abff");
        assert_eq!(decode::<4>("0001ABff"), Some(b));
        assert_eq!(decode::<4>("0001ab"), None);
        assert_eq!(decode_vec("0g"), None);
        assert_eq!(decode_vec("abc"), None);
    }
}
