//! Personal data out of text a platform wrote: a province's platform may put an ID
//! number or a phone number into a problem's `detail`, and that text travels on — into
//! the node's logs, the gRPC status the filing region reads, the conformance report.
//! Whatever crosses the contract as free text goes through [`free_text`] first.

/// An ID number as `110105********9010` (the first 6 and last 4 characters kept).
pub fn id_number(value: &str) -> String {
    if value.chars().count() == 18 && value.is_ascii() {
        format!("{}********{}", &value[..6], &value[14..])
    } else {
        "***".to_owned()
    }
}

/// `text` with every ID number (17 digits and a check character) and every mainland
/// mobile number (11 digits starting with 1) masked, control characters dropped, cut
/// to `max` characters. Other digit runs (case numbers, dates, region codes) are kept:
/// they are what an operator needs to act.
pub fn free_text(text: &str, max: usize) -> String {
    let chars: Vec<char> = text.chars().filter(|c| !c.is_control()).collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let run = chars[i..].iter().take_while(|c| c.is_ascii_digit()).count();
        if run == 0 {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let with_check = match chars.get(i + run) {
            Some('X' | 'x') if run == 17 => 18,
            _ => run,
        };
        let piece: String = chars[i..i + with_check].iter().collect();
        match with_check {
            18 => out.push_str(&id_number(&piece)),
            11 if piece.starts_with('1') => {
                out.push_str(&piece[..3]);
                out.push_str("****");
                out.push_str(&piece[7..]);
            }
            _ => out.push_str(&piece),
        }
        i += with_check;
    }
    let mut cut: String = out.chars().take(max).collect();
    if out.chars().count() > max {
        cut.push('…');
    }
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_phones_are_masked_and_case_numbers_kept() {
        let text = free_text(
            "no person 11010519491231002X (phone 13800138000) for case 110000-20260513-91234567\n",
            500,
        );
        assert_eq!(
            text,
            "no person 110105********002X (phone 138****8000) for case 110000-20260513-91234567"
        );
        assert_eq!(free_text(&"a".repeat(10), 4), "aaaa…");
    }
}
