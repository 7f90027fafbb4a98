//! What free text a person typed may contain: no control characters (NUL, ESC, BEL, a
//! line break in a name, ...) and no bidirectional formatting characters, with which a
//! name or a field can be made to display as something else than it is (U+202E, the
//! right-to-left override, turns `ABC` into `CBA` on screen). Every party checks text
//! fields with the same rule, so a delivery is held to the standard of a local filing.

/// Why `value` is not acceptable as free text, if it is not.
pub fn problem(value: &str) -> Option<&'static str> {
    if value.chars().any(char::is_control) {
        Some("must not contain control characters")
    } else if value.chars().any(is_bidi_control) {
        Some("must not contain bidirectional formatting characters (such as U+202E)")
    } else {
        None
    }
}

/// The Unicode bidirectional formatting characters (UAX #9: embeddings, overrides,
/// isolates and marks).
fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
    )
}

/// Longest run of digits a quotable key may hold: a field name numbers things
/// (`child2_name`), it never carries a number that could identify someone.
const MAX_DIGIT_RUN: usize = 3;

/// Whether a caller-supplied key (a form field name) may be quoted back in an error:
/// only the shape of a catalog field name (`child_name`), which a pasted ID number,
/// phone number or person's name never has — not even inside it
/// (`hospital110105198001019010`, found by the `portal_filing` fuzz target).
pub fn quotable_key(key: &str) -> bool {
    let mut chars = key.chars();
    let shaped = chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && key.len() <= 32
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    shaped
        && key
            .split(|c: char| !c.is_ascii_digit())
            .all(|run| run.len() <= MAX_DIGIT_RUN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_and_bidi_characters_are_refused() {
        for bad in [
            "a\0b",
            "\u{1b}[31m",
            "bell\u{7}",
            "two\nlines",
            "\u{202E}gnp.exe",
            "\u{2066}x",
            "\u{200F}",
        ] {
            assert!(problem(bad).is_some(), "{bad:?}");
        }
        for good in [
            "张伟",
            "Zhang Wei",
            "O'Brien-Lee",
            "阿卜杜·热合曼",
            "复旦大学附属中山医院",
        ] {
            assert_eq!(problem(good), None, "{good:?}");
        }
    }

    #[test]
    fn only_field_name_shapes_are_quoted() {
        assert!(quotable_key("child_name"));
        assert!(quotable_key("hospital2"));
        for key in [
            "110101199003077777",
            "13800138000",
            "hospita110105198001019010",
            "contact13800138000",
            "张伟",
            "Child",
            "_x",
            "",
            &"a".repeat(33),
        ] {
            assert!(!quotable_key(key), "{key:?}");
        }
    }
}
