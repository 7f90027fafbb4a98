//! Personal data out of the report: ID numbers, names and phone numbers in the bodies a
//! check shows are masked, and excerpts are kept short.

use serde_json::Value;

/// Longest body excerpt, in characters.
pub const EXCERPT_CHARS: usize = 240;

/// Fields of the contract's bodies that hold personal data.
const ID_FIELDS: [&str; 2] = ["id_number", "holder_id_number"];
const NAME_FIELDS: [&str; 2] = ["name", "holder_name"];
/// Fields masked whole: what a license states may be personal (an address, a date).
const OPAQUE_FIELDS: [&str; 2] = ["phone", "fields"];

pub use crate::platform::contract::redact::id_number;

/// A name as its first character and `*`.
pub fn name(value: &str) -> String {
    value
        .chars()
        .next()
        .map_or_else(String::new, |first| format!("{first}*"))
}

/// The start of a body, personal data masked: JSON bodies field by field, other bodies
/// with any run of 17 digits and a check character masked.
pub fn excerpt(body: &[u8]) -> String {
    let text = match serde_json::from_slice::<Value>(body) {
        Ok(mut value) => {
            mask_value(&mut value);
            value.to_string()
        }
        Err(_) => mask_digit_runs(&String::from_utf8_lossy(body)),
    };
    truncate(text.trim(), EXCERPT_CHARS)
}

/// `text` cut to `max` characters, with `…` when cut.
pub fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max).collect();
    cut.push('…');
    cut
}

fn mask_value(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, field) in map.iter_mut() {
                let key = key.as_str();
                match field {
                    Value::String(s) if ID_FIELDS.contains(&key) => *s = id_number(s),
                    Value::String(s) if NAME_FIELDS.contains(&key) => *s = name(s),
                    _ if OPAQUE_FIELDS.contains(&key) && !field.is_null() => {
                        *field = Value::String("***".into());
                    }
                    other => mask_value(other),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(mask_value),
        Value::String(s) => *s = mask_digit_runs(s),
        _ => {}
    }
}

/// ID and phone numbers masked wherever they stand.
fn mask_digit_runs(text: &str) -> String {
    crate::platform::contract::redact::free_text(text, usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn personal_fields_are_masked_and_the_rest_kept() {
        let body = r#"{"id_number":"11010519491231002X","name":"王伟","home_region":"110105",
            "licenses":[{"holder_id_number":"110105194912310029","holder_name":"李芳",
            "fields":{"address":"x"},"license_id":"110000-1"}],
            "detail":"no person 110105194912310029 here"}"#;
        let text = excerpt(body.as_bytes());
        assert!(!text.contains("19491231"), "{text}");
        assert!(!text.contains("王伟") && !text.contains("李芳"), "{text}");
        assert!(text.contains("110105********002X"), "{text}");
        assert!(text.contains("王*"), "{text}");
        assert!(text.contains("110000-1"), "{text}");
        assert!(!text.contains("address"), "{text}");
    }

    #[test]
    fn plain_bodies_lose_id_numbers_and_are_cut() {
        let text = excerpt(b"bad id 11010519491231002x; case 110000-20260513-91234567");
        assert_eq!(
            text,
            "bad id 110105********002x; case 110000-20260513-91234567"
        );
        let long = "a".repeat(1000);
        assert_eq!(excerpt(long.as_bytes()).chars().count(), EXCERPT_CHARS + 1);
    }
}
