//! GB 11643-1999 resident ID numbers: validation, masking for display and keyed hashing
//! for cache keys and log correlation.
//!
//! A [`ResidentId`] is personal data. Its `Display` and `Debug` print the masked form, and
//! [`IdError`] messages never contain the number, so neither accidental logging nor an
//! error reply leaks it. Only [`ResidentId::as_str`] yields the full number.

use std::fmt;

use ring::hmac;
use time::{Date, Month};

use crate::rules::digest;
use crate::rules::region::{RegionCode, RegionTable};

/// Number of characters in a resident ID number.
const LEN: usize = 18;

/// ISO 7064 MOD 11-2 weights of the first 17 digits.
const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];

/// Check character for each remainder 0..=10 of the weighted sum modulo 11.
const CHECK_CHARACTERS: [char; 11] = ['1', '0', 'X', '9', '8', '7', '6', '5', '4', '3', '2'];

/// Why a string is not a valid resident ID number. Messages never contain the number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// Not 18 characters (15-digit first-generation numbers included).
    #[error("resident ID number must have 18 characters, found {len}")]
    WrongLength {
        /// Length found, in characters.
        len: usize,
    },
    /// A character other than an ASCII digit (or a final `X`/`x`).
    #[error(
        "resident ID number has a bad character at position {position}: positions 1-17 must \
         be ASCII digits and position 18 an ASCII digit or X"
    )]
    BadCharacter {
        /// 1-based position of the first bad character.
        position: usize,
    },
    /// The province prefix (first two digits) is not a known province.
    #[error("resident ID number has unknown province prefix {prefix}")]
    UnknownProvince {
        /// The two-digit province prefix.
        prefix: String,
    },
    /// Positions 7-14 are not a real calendar date.
    #[error("resident ID number has a bad birth date: positions 7-14 are not a real YYYYMMDD date")]
    BadBirthDate,
    /// The birth date lies after today.
    #[error("resident ID number has a birth date in the future")]
    FutureBirthDate,
    /// The check character does not match the first 17 digits.
    #[error("resident ID number has a bad check character: expected {expected}, found {found}")]
    BadCheckCharacter {
        /// The check character computed from the first 17 digits.
        expected: char,
        /// The check character found (upper-cased).
        found: char,
    },
}

/// Computes the GB 11643 check character (ISO 7064 MOD 11-2) of the first 17 digits.
///
/// Every byte must be an ASCII digit; other bytes give a meaningless result (never a
/// panic). Useful to build synthetic, valid numbers for tests and demos:
///
/// ```
/// use tongban_proto::rules::resident_id::check_character;
/// assert_eq!(check_character(b"11010519491231002"), 'X');
/// ```
pub fn check_character(first17: &[u8; 17]) -> char {
    let sum: u32 = first17
        .iter()
        .zip(WEIGHTS)
        .map(|(b, w)| u32::from(b.wrapping_sub(b'0')) * w)
        .sum();
    // `sum % 11` is below 11, so the index is always in bounds.
    CHECK_CHARACTERS[(sum % 11) as usize]
}

/// A validated resident ID number, normalized so that the check character is upper-case.
///
/// `Display` and `Debug` print the [masked](Self::masked) form.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ResidentId([u8; LEN]);

impl ResidentId {
    /// Validates `s` per GB 11643-1999 and the project's rules (`data/README.md`).
    ///
    /// Checks run in this order, and the first failure is returned: length in characters
    /// ([`IdError::WrongLength`]), characters ([`IdError::BadCharacter`]), province prefix
    /// in `table` ([`IdError::UnknownProvince`]; a historical county code is fine), birth
    /// date real ([`IdError::BadBirthDate`]) and not after `today`
    /// ([`IdError::FutureBirthDate`]), check character ([`IdError::BadCheckCharacter`]).
    /// A lowercase `x` is accepted and stored as `X`. Surrounding spaces are rejected; the
    /// caller trims.
    pub fn parse(s: &str, table: &RegionTable, today: Date) -> Result<ResidentId, IdError> {
        let len = s.chars().count();
        if len != LEN {
            return Err(IdError::WrongLength { len });
        }
        let mut bytes = [0u8; LEN];
        for (i, c) in s.chars().enumerate() {
            let ok = c.is_ascii_digit() || (i == LEN - 1 && (c == 'X' || c == 'x'));
            if !ok {
                return Err(IdError::BadCharacter { position: i + 1 });
            }
            // Every accepted character is ASCII, so `s` has exactly 18 bytes.
            bytes[i] = c.to_ascii_uppercase() as u8;
        }
        let id = ResidentId(bytes);

        let prefix = &id.as_str()[..2];
        let known = RegionCode::parse(&format!("{prefix}0000"))
            .is_ok_and(|province| table.is_known(&province));
        if !known {
            return Err(IdError::UnknownProvince {
                prefix: prefix.to_owned(),
            });
        }

        let birth = id.decode_birth_date().ok_or(IdError::BadBirthDate)?;
        if birth > today {
            return Err(IdError::FutureBirthDate);
        }

        let mut first17 = [0u8; 17];
        first17.copy_from_slice(&id.0[..17]);
        let expected = check_character(&first17);
        let found = char::from(id.0[17]);
        if expected != found {
            return Err(IdError::BadCheckCharacter { expected, found });
        }
        Ok(id)
    }

    /// The full, normalized number. Personal data: never log it or use it as a key; use
    /// [`masked`](Self::masked) or [`keyed_hash`](Self::keyed_hash) instead.
    pub fn as_str(&self) -> &str {
        match std::str::from_utf8(&self.0) {
            Ok(s) => s,
            // `parse` admits ASCII only, which is always valid UTF-8.
            Err(_) => unreachable!("a ResidentId holds ASCII only"),
        }
    }

    /// The division code the number was issued under (first 6 digits). It may be a
    /// historical code no longer in the region table, e.g. `500105`.
    pub fn home_region(&self) -> RegionCode {
        match RegionCode::parse(&self.as_str()[..6]) {
            Ok(code) => code,
            // `parse` checked these are digits and that the province is known (not 00).
            Err(_) => unreachable!("a ResidentId starts with a valid region code"),
        }
    }

    /// The holder's province: the first two digits and `0000`.
    pub fn province(&self) -> RegionCode {
        self.home_region().province()
    }

    /// The birth date (positions 7-14).
    pub fn birth_date(&self) -> Date {
        match self.decode_birth_date() {
            Some(date) => date,
            None => unreachable!("a ResidentId has a valid birth date"),
        }
    }

    /// Whether the sequence number (positions 15-17) is odd, which GB 11643 assigns to men.
    pub fn is_male(&self) -> bool {
        (self.0[16] - b'0') % 2 == 1
    }

    /// The number with its 8 middle characters (the birth date) replaced by `*`, keeping
    /// the first 6 and last 4: `110105********9010`. Safe to display and log.
    pub fn masked(&self) -> String {
        let s = self.as_str();
        format!("{}********{}", &s[..6], &s[14..])
    }

    /// HMAC-SHA256 of the normalized number under `key`, as lowercase hex. Use it for
    /// cache keys and log correlation; without the key it cannot be reversed by trying
    /// all numbers.
    pub fn keyed_hash(&self, key: &[u8]) -> String {
        let key = hmac::Key::new(hmac::HMAC_SHA256, key);
        let tag = hmac::sign(&key, &self.0);
        digest::hex(tag.as_ref())
    }

    /// Decodes positions 7-14 as a calendar date; `None` if it is not a real date.
    fn decode_birth_date(&self) -> Option<Date> {
        let digits = |range: std::ops::Range<usize>| {
            self.0[range]
                .iter()
                .fold(0u32, |acc, b| acc * 10 + u32::from(b.wrapping_sub(b'0')))
        };
        let year = i32::try_from(digits(6..10)).ok()?;
        let month = Month::try_from(u8::try_from(digits(10..12)).ok()?).ok()?;
        let day = u8::try_from(digits(12..14)).ok()?;
        Date::from_calendar_date(year, month, day).ok()
    }
}

impl fmt::Display for ResidentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

impl fmt::Debug for ResidentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ResidentId").field(&self.masked()).finish()
    }
}

#[cfg(test)]
mod tests {
    use time::macros::date;

    use super::*;

    const TODAY: Date = date!(2026 - 11 - 26);

    fn parse(s: &str) -> Result<ResidentId, IdError> {
        ResidentId::parse(s, RegionTable::embedded(), TODAY)
    }

    /// Splits one line of `id_vectors.csv`; only the last field may be quoted.
    fn split_vector(line: &str) -> (&str, &str, &str) {
        let mut parts = line.splitn(3, ',');
        let id = parts.next().unwrap();
        let valid = parts.next().unwrap();
        let reason = parts.next().unwrap();
        let reason = reason
            .strip_prefix('"')
            .and_then(|r| r.strip_suffix('"'))
            .unwrap_or(reason);
        (id, valid, reason)
    }

    #[test]
    fn every_test_vector_gives_the_expected_outcome() {
        let csv = include_str!("../../../data/id_vectors.csv");
        let mut lines = csv.lines();
        assert_eq!(lines.next(), Some("id,valid,reason"));
        let (mut valid_rows, mut invalid_rows) = (0, 0);
        for line in lines {
            let (id, valid, reason) = split_vector(line);
            let result = parse(id);
            match valid {
                "valid" => {
                    valid_rows += 1;
                    let parsed = result.unwrap_or_else(|e| panic!("{id} ({reason}): {e}"));
                    assert_eq!(parsed.as_str(), id.to_ascii_uppercase());
                }
                "invalid" => {
                    invalid_rows += 1;
                    let err = result.expect_err(reason);
                    let matches = match reason {
                        r if r.starts_with("bad check character") => {
                            matches!(err, IdError::BadCheckCharacter { .. })
                        }
                        r if r.starts_with("bad birth date") => err == IdError::BadBirthDate,
                        r if r.starts_with("birth date in the future") => {
                            err == IdError::FutureBirthDate
                        }
                        r if r.starts_with("unknown division code") => {
                            matches!(err, IdError::UnknownProvince { .. })
                        }
                        r if r.starts_with("wrong length") => {
                            matches!(err, IdError::WrongLength { .. })
                        }
                        r if r.starts_with("bad character") => {
                            matches!(err, IdError::BadCharacter { .. })
                        }
                        other => panic!("unrecognized reason {other:?}"),
                    };
                    assert!(matches, "{id} ({reason}) gave {err:?}");
                    if !id.is_empty() {
                        assert!(!err.to_string().contains(id), "{err} leaks the number");
                    }
                }
                other => panic!("unrecognized valid column {other:?}"),
            }
        }
        assert_eq!((valid_rows, invalid_rows), (21, 21));
    }

    #[test]
    fn error_details_name_the_problem() {
        assert_eq!(
            parse("11010519800101923"),
            Err(IdError::WrongLength { len: 17 })
        );
        assert_eq!(parse(""), Err(IdError::WrongLength { len: 0 }));
        assert_eq!(
            parse("１１０１０５１９８００１０１９２３Ｘ"),
            Err(IdError::BadCharacter { position: 1 })
        );
        assert_eq!(
            parse("1101051980A101923X"),
            Err(IdError::BadCharacter { position: 11 })
        );
        assert_eq!(
            parse(" 10105198001019010"),
            Err(IdError::BadCharacter { position: 1 })
        );
        assert_eq!(
            parse("990101199001019224"),
            Err(IdError::UnknownProvince {
                prefix: "99".into()
            })
        );
        assert_eq!(
            parse("000000199001019223"),
            Err(IdError::UnknownProvince {
                prefix: "00".into()
            })
        );
        assert_eq!(
            parse("110105198001019054"),
            Err(IdError::BadCheckCharacter {
                expected: '3',
                found: '4'
            })
        );
        assert_eq!(
            parse("110105198001019054").unwrap_err().to_string(),
            "resident ID number has a bad check character: expected 3, found 4"
        );
    }

    #[test]
    fn standard_worked_examples() {
        assert_eq!(check_character(b"11010519491231002"), 'X');
        assert_eq!(check_character(b"44052418800101001"), '4');
        let a = parse("11010519491231002X").unwrap();
        assert_eq!(a.birth_date(), date!(1949 - 12 - 31));
        assert!(!a.is_male());
        assert_eq!(a.home_region(), RegionCode::parse("110105").unwrap());
        let b = parse("440524188001010014").unwrap();
        assert_eq!(b.birth_date(), date!(1880 - 01 - 01));
        assert!(b.is_male());
        assert_eq!(b.province(), RegionCode::parse("440000").unwrap());
    }

    #[test]
    fn accessors_and_normalization() {
        let id = parse("32010619870412906x").unwrap();
        assert_eq!(id.as_str(), "32010619870412906X");
        assert_eq!(id, parse("32010619870412906X").unwrap());
        let historical = parse("500105198505209486").unwrap();
        assert_eq!(historical.home_region().as_str(), "500105");
        assert_eq!(historical.province().as_str(), "500000");
        assert!(!historical.is_male());
        assert!(parse("110105198001019010").unwrap().is_male());
    }

    #[test]
    fn masking_and_formatting_never_leak_the_number() {
        let id = parse("110105198001019010").unwrap();
        assert_eq!(id.masked(), "110105********9010");
        assert_eq!(id.to_string(), "110105********9010");
        let debug = format!("{id:?}");
        assert_eq!(debug, "ResidentId(\"110105********9010\")");
        assert!(!debug.contains("19800101"));
        let pretty = format!("{id:#?}");
        assert!(!pretty.contains("110105198001019010"));
    }

    #[test]
    fn keyed_hash_is_stable_and_key_dependent() {
        let id = parse("110105198001019010").unwrap();
        let h1 = id.keyed_hash(b"key-one");
        assert_eq!(h1, id.keyed_hash(b"key-one"));
        assert_eq!(h1.len(), 64);
        assert!(
            h1.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
        assert_ne!(h1, id.keyed_hash(b"key-two"));
        assert!(!h1.contains("110105198001019010"));
        // Lowercase and uppercase x hash alike, because the number is normalized first.
        let lower = parse("32010619870412906x").unwrap();
        let upper = parse("32010619870412906X").unwrap();
        assert_eq!(lower.keyed_hash(b"k"), upper.keyed_hash(b"k"));
        assert_ne!(h1, upper.keyed_hash(b"key-one"));
    }

    #[test]
    fn leap_day_and_today_boundaries() {
        let leap = parse("440305200002299138").unwrap();
        assert_eq!(leap.birth_date(), date!(2000 - 02 - 29));
        // Born today is allowed; tomorrow is in the future.
        let mut first17 = *b"11010520261126901";
        let today = format!(
            "{}{}",
            std::str::from_utf8(&first17).unwrap(),
            check_character(&first17)
        );
        assert!(parse(&today).is_ok());
        first17[13] = b'7';
        let tomorrow = format!(
            "{}{}",
            std::str::from_utf8(&first17).unwrap(),
            check_character(&first17)
        );
        assert_eq!(parse(&tomorrow), Err(IdError::FutureBirthDate));
    }
}
