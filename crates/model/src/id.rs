//! Record ids: the 15-character case-sensitive form, the 18-character checksummed form, key prefixes.
//!
//! Layout of the ids Conflux mints: `PPP` key prefix (object type), `MMM` org marker (random per org,
//! like a Salesforce instance/pod), then a 9-character base-62 sequence number. The sequence is the
//! record's integer primary key in its object table, so an id decodes to a row without an index.
//! Ids from another org (another marker) are well formed but never found.

use std::fmt;

/// Base-62 digits in ascending value order.
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// Alphabet of the 3 checksum characters of an 18-character id.
const CHECKSUM: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";
/// Width of the sequence part.
const SEQ_LEN: usize = 9;

/// A record id in its canonical 15-character, case-sensitive form.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id([u8; 15]);

/// Three-character key prefix identifying an object type (`001` Account, `a00` first custom object).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyPrefix(pub [u8; 3]);

/// Three-character org marker stamped into every id the org mints.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct OrgMarker(pub [u8; 3]);

/// Why a string is not an id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed id {0}")]
pub struct MalformedId(pub String);

fn is_base62(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}

fn base62_value(b: u8) -> Option<u64> {
    match b {
        b'0'..=b'9' => Some((b - b'0') as u64),
        b'A'..=b'Z' => Some((b - b'A') as u64 + 10),
        b'a'..=b'z' => Some((b - b'a') as u64 + 36),
        _ => None,
    }
}

impl Id {
    /// Parses a 15- or 18-character id. An 18-character id may arrive in any letter case: its
    /// checksum suffix restores the case of the first 15 characters, as Salesforce intends.
    pub fn parse(s: &str) -> Result<Id, MalformedId> {
        let bad = || MalformedId(s.to_string());
        let b = s.as_bytes();
        match b.len() {
            15 => {
                if !b.iter().all(|&c| is_base62(c)) {
                    return Err(bad());
                }
                let mut out = [0u8; 15];
                out.copy_from_slice(b);
                Ok(Id(out))
            }
            18 => {
                if !b.iter().all(|&c| is_base62(c)) {
                    return Err(bad());
                }
                let mut out = [0u8; 15];
                out.copy_from_slice(&b[..15]);
                for chunk in 0..3 {
                    let sc = b[15 + chunk].to_ascii_uppercase();
                    let bits = CHECKSUM.iter().position(|&c| c == sc).ok_or_else(bad)?;
                    for j in 0..5 {
                        let c = &mut out[chunk * 5 + j];
                        if c.is_ascii_alphabetic() {
                            *c = if bits & (1 << j) != 0 {
                                c.to_ascii_uppercase()
                            } else {
                                c.to_ascii_lowercase()
                            };
                        } else if bits & (1 << j) != 0 {
                            // The checksum claims an upper-case letter where there is a digit.
                            return Err(bad());
                        }
                    }
                }
                Ok(Id(out))
            }
            _ => Err(bad()),
        }
    }

    /// Mints the id of row `seq` of the object with `prefix` in the org with `marker`.
    pub fn new(prefix: KeyPrefix, marker: OrgMarker, seq: u64) -> Id {
        let mut out = [b'0'; 15];
        out[..3].copy_from_slice(&prefix.0);
        out[3..6].copy_from_slice(&marker.0);
        let mut n = seq;
        for i in (6..15).rev() {
            out[i] = BASE62[(n % 62) as usize];
            n /= 62;
        }
        Id(out)
    }

    /// The 15-character form.
    pub fn as_str(&self) -> &str {
        // Constructed only from ASCII alphanumerics.
        std::str::from_utf8(&self.0).expect("ids are ASCII")
    }

    /// The 18-character form returned by the API.
    pub fn to_18(&self) -> String {
        let mut s = String::with_capacity(18);
        s.push_str(self.as_str());
        for chunk in 0..3 {
            let mut v = 0usize;
            for j in 0..5 {
                if self.0[chunk * 5 + j].is_ascii_uppercase() {
                    v |= 1 << j;
                }
            }
            s.push(CHECKSUM[v] as char);
        }
        s
    }

    /// The key prefix (object type).
    pub fn prefix(&self) -> KeyPrefix {
        KeyPrefix([self.0[0], self.0[1], self.0[2]])
    }

    /// The sequence number if this id was minted by the org with `marker`.
    pub fn seq_in(&self, marker: OrgMarker) -> Option<u64> {
        if self.0[3..6] != marker.0 {
            return None;
        }
        let mut n: u64 = 0;
        for &c in &self.0[6..] {
            n = n.checked_mul(62)?.checked_add(base62_value(c)?)?;
        }
        Some(n)
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({})", self.as_str())
    }
}

impl fmt::Display for Id {
    /// Displays the 18-character form, the one the API returns.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_18())
    }
}

impl KeyPrefix {
    /// Parses a 3-character prefix.
    pub fn parse(s: &str) -> Option<KeyPrefix> {
        let b = s.as_bytes();
        (b.len() == 3 && b.iter().all(|&c| is_base62(c))).then(|| KeyPrefix([b[0], b[1], b[2]]))
    }

    /// The prefix as text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("prefixes are ASCII")
    }

    /// The n-th custom object prefix: `a00`, `a01`, … `a0z`, `a10`, …
    pub fn custom(n: u32) -> KeyPrefix {
        let hi = BASE62[((n / 62) % 62) as usize];
        let lo = BASE62[(n % 62) as usize];
        KeyPrefix([b'a', hi, lo])
    }

    /// The n-th platform event prefix: `e00`, `e01`, …
    pub fn event(n: u32) -> KeyPrefix {
        let hi = BASE62[((n / 62) % 62) as usize];
        let lo = BASE62[(n % 62) as usize];
        KeyPrefix([b'e', hi, lo])
    }
}

impl fmt::Debug for KeyPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyPrefix({})", self.as_str())
    }
}

impl fmt::Display for KeyPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl OrgMarker {
    /// A random marker for a new org. The first character is a digit-free letter so markers never
    /// look like the zero padding of a sequence.
    pub fn random() -> OrgMarker {
        use rand::Rng;
        let mut rng = rand::rng();
        let first = BASE62[rng.random_range(10..62)];
        OrgMarker([
            first,
            BASE62[rng.random_range(0..62)],
            BASE62[rng.random_range(0..62)],
        ])
    }

    /// Parses a stored marker.
    pub fn parse(s: &str) -> Option<OrgMarker> {
        let b = s.as_bytes();
        (b.len() == 3 && b.iter().all(|&c| is_base62(c))).then(|| OrgMarker([b[0], b[1], b[2]]))
    }

    /// The marker as text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("markers are ASCII")
    }
}

/// Largest sequence number an id can carry (62^9 - 1).
pub const MAX_SEQ: u64 = 13_537_086_546_263_551;

const _: () = assert!(SEQ_LEN == 9);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_matches_documented_examples() {
        for id18 in [
            "001D000000IRFmaIAH",
            "0018c00002FInboAAD",
            "005R0000000UyrWIAS",
            "a00D0000008pQRAIA2",
        ] {
            let id = Id::parse(&id18[..15]).unwrap();
            assert_eq!(id.to_18(), id18);
            assert_eq!(Id::parse(id18).unwrap(), id);
        }
    }

    #[test]
    fn eighteen_char_ids_restore_case() {
        let id = Id::parse("001D000000IRFmaIAH").unwrap();
        assert_eq!(Id::parse("001d000000irfmaiah").unwrap(), id);
        assert_eq!(Id::parse("001D000000IRFMAIAH").unwrap(), id);
    }

    #[test]
    fn rejects_malformed() {
        for s in [
            "",
            "001",
            "001D000000IRFm",
            "001D000000IRFma!",
            "001D000000IRFmaIA9",
            "001D000000IRFma IAH",
        ] {
            assert!(Id::parse(s).is_err(), "{s}");
        }
        // A checksum claiming upper case on a digit is inconsistent.
        assert!(Id::parse("001000000000000555").is_err());
    }

    #[test]
    fn mint_and_decode_round_trip() {
        let m = OrgMarker(*b"Xy7");
        for seq in [0, 1, 61, 62, 1_000_000, MAX_SEQ] {
            let id = Id::new(KeyPrefix(*b"001"), m, seq);
            assert_eq!(id.seq_in(m), Some(seq));
            assert_eq!(id.prefix().as_str(), "001");
            assert_eq!(Id::parse(&id.to_18()).unwrap(), id);
        }
        let other = OrgMarker(*b"Qq1");
        assert_eq!(Id::new(KeyPrefix(*b"001"), m, 5).seq_in(other), None);
    }

    #[test]
    fn custom_prefixes_count_up() {
        assert_eq!(KeyPrefix::custom(0).as_str(), "a00");
        assert_eq!(KeyPrefix::custom(1).as_str(), "a01");
        assert_eq!(KeyPrefix::custom(62).as_str(), "a10");
    }
}
