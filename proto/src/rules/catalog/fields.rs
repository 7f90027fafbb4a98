//! The value checkers behind pre-review: one per field type, each returning a problem
//! text that never echoes a value that could be an ID number.

use time::Date;

use super::model::{DEFAULT_TEXT_MAX_LENGTH, FieldType, FormField};
use crate::rules::region::{RegionCode, RegionTable};
use crate::rules::resident_id::ResidentId;

impl FormField {
    /// Checks a non-blank submitted value against the field's type.
    pub(super) fn check_value(
        &self,
        value: &str,
        table: &RegionTable,
        today: Date,
    ) -> Result<(), String> {
        match self.field_type {
            FieldType::Text => {
                let max = self.max_length.unwrap_or(DEFAULT_TEXT_MAX_LENGTH);
                let len = value.chars().count();
                if len > max as usize {
                    return Err(format!("is {len} characters long; at most {max} allowed"));
                }
                match crate::rules::text::problem(value) {
                    Some(problem) => Err(problem.into()),
                    None => Ok(()),
                }
            }
            FieldType::Date => check_date(value),
            FieldType::IdNumber => ResidentId::parse(value, table, today)
                .map(|_| ())
                // IdError messages never contain the number.
                .map_err(|e| e.to_string()),
            FieldType::RegionCode => {
                let code = RegionCode::parse(value).map_err(|_| REGION_CODE_SHAPE.to_owned())?;
                if table.is_known(&code) {
                    Ok(())
                } else {
                    Err(format!("region code {code} is not a known division"))
                }
            }
            FieldType::Choice => {
                if self.options.iter().any(|option| option == value) {
                    Ok(())
                } else {
                    Err(format!("must be one of: {}", self.options.join(", ")))
                }
            }
            FieldType::Phone => {
                let ok = value.len() == 11
                    && value.starts_with('1')
                    && value.bytes().all(|b| b.is_ascii_digit());
                if ok {
                    Ok(())
                } else {
                    Err("expected an 11-digit mainland mobile number starting with 1".into())
                }
            }
            FieldType::CreditCode => check_credit_code(value),
        }
    }
}

/// Problem text for a value that is not shaped like a region code; never echoes it.
pub(super) const REGION_CODE_SHAPE: &str = "expected a 6-digit GB/T 2260 region code";

/// Checks a `YYYY-MM-DD` date.
pub(super) fn check_date(value: &str) -> Result<(), String> {
    let bytes = value.as_bytes();
    let shaped = bytes.len() == 10
        && bytes.iter().enumerate().all(|(i, b)| match i {
            4 | 7 => *b == b'-',
            _ => b.is_ascii_digit(),
        });
    if !shaped {
        return Err("expected a date as YYYY-MM-DD".into());
    }
    let number = |range: std::ops::Range<usize>| {
        bytes[range]
            .iter()
            .fold(0u16, |acc, b| acc * 10 + u16::from(b - b'0'))
    };
    let real = time::Month::try_from(number(5..7) as u8)
        .ok()
        .and_then(|month| {
            Date::from_calendar_date(i32::from(number(0..4)), month, number(8..10) as u8).ok()
        });
    match real {
        Some(_) => Ok(()),
        None => Err("is not a real calendar date".into()),
    }
}

/// The GB 32100 character set, in value order (no I, O, Z, S, V).
const CREDIT_CODE_CHARSET: &[u8; 31] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";

/// GB 32100 weights of the first 17 characters.
const CREDIT_CODE_WEIGHTS: [u32; 17] = [
    1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28,
];

/// Checks an 18-character unified social credit code, including its mod-31 check
/// character (GB 32100-2015).
fn check_credit_code(value: &str) -> Result<(), String> {
    if value.chars().count() != 18 {
        return Err("expected an 18-character unified social credit code".into());
    }
    let mut values = [0u32; 18];
    for (slot, b) in values.iter_mut().zip(value.bytes()) {
        let Some(v) = CREDIT_CODE_CHARSET.iter().position(|&c| c == b) else {
            return Err(
                "a unified social credit code has only digits and upper-case letters other \
                 than I, O, Z, S and V"
                    .into(),
            );
        };
        // `v` is below 31.
        *slot = v as u32;
    }
    let sum: u32 = values
        .iter()
        .zip(CREDIT_CODE_WEIGHTS)
        .map(|(v, w)| v * w)
        .sum();
    let expected = (31 - sum % 31) % 31;
    if values[17] == expected {
        Ok(())
    } else {
        Err("unified social credit code has a bad check character".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::catalog::test_support::{TODAY, item, newborn_form, validate};

    #[test]
    fn validate_form_type_checks() {
        let newborn = item("newborn-birth");
        let problem = |field: &str, value: &str| {
            let mut f = newborn_form();
            f.insert(field.into(), value.into());
            match validate(&newborn, &f) {
                Ok(()) => None,
                Err(errors) => {
                    assert_eq!(errors.0.len(), 1, "{errors}");
                    assert_eq!(errors.0[0].field, field);
                    Some(errors.0[0].problem.clone())
                }
            }
        };
        let expect = |field: &str, value: &str, needle: &str| {
            let p = problem(field, value).unwrap_or_else(|| panic!("{field}={value:?} passed"));
            assert!(p.contains(needle), "{field}={value:?}: {p}");
        };
        expect("child_birth_date", "2026/11/20", "YYYY-MM-DD");
        expect("child_birth_date", "20261120", "YYYY-MM-DD");
        expect("child_birth_date", "2026-13-01", "not a real calendar date");
        expect("child_birth_date", "2025-02-29", "not a real calendar date");
        assert_eq!(problem("child_birth_date", "2024-02-29"), None);
        expect(
            "birth_place",
            "4403",
            "expected a 6-digit GB/T 2260 region code",
        );
        expect("birth_place", "44030519900101908X", "expected a 6-digit");
        expect("birth_place", "500105", "not a known division");
        expect("contact_phone", "1380013800", "11-digit");
        expect("contact_phone", "23800138000", "starting with 1");
        expect("contact_phone", "1380013800a", "11-digit");
        expect(
            "child_name",
            &"名".repeat(21),
            "21 characters long; at most 20",
        );
        assert_eq!(problem("child_name", &"名".repeat(20)), None);
        expect("child_name", "张\u{7}三", "control characters");
        expect("mother_id_number", "11010520990101921X", "in the future");
        expect(
            "mother_id_number",
            "990101199001019224",
            "unknown province prefix 99",
        );
    }

    #[test]
    fn text_fields_default_to_200_characters() {
        let field = FormField {
            name: "note".into(),
            label: "备注".into(),
            field_type: FieldType::Text,
            required: false,
            options: vec![],
            max_length: None,
            prefill: None,
        };
        let table = RegionTable::embedded();
        assert!(field.check_value(&"字".repeat(200), table, TODAY).is_ok());
        assert!(field.check_value(&"字".repeat(201), table, TODAY).is_err());
    }

    #[test]
    fn credit_codes() {
        for good in [
            "914403001922038216",
            "9144030071526726XG",
            "91110000100010433L",
        ] {
            assert_eq!(check_credit_code(good), Ok(()), "{good}");
        }
        let bad_check = check_credit_code("914403001922038217").unwrap_err();
        assert!(bad_check.contains("bad check character"), "{bad_check}");
        let bad_char = check_credit_code("91440300192203821I").unwrap_err();
        assert!(bad_char.contains("I, O, Z, S and V"), "{bad_char}");
        let lower = check_credit_code("9144030071526726xg").unwrap_err();
        assert!(lower.contains("upper-case"), "{lower}");
        let short = check_credit_code("91440300192203821").unwrap_err();
        assert!(short.contains("18-character"), "{short}");
        let wide = check_credit_code("９14403001922038216").unwrap_err();
        assert!(wide.contains("only digits"), "{wide}");
    }
}
