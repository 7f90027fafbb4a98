//! Electronic-license identifiers in the national format (GB/T 36904 电子证照标识):
//! `1.2.156.3005.2.<type code, 21 characters>.<issuer code>.<serial>.<version, 3
//! digits>.<check character>`. The check character is ISO/IEC 7064 MOD 37,36 over the
//! type code, issuer code, serial and version concatenated. The issuer code is an
//! 18-character unified social credit code (GB 32100, its own check character verified),
//! whose characters 3 to 8 are the issuer's division code, or a 6-digit division code;
//! either routes the identifier to the issuer's region. Every refusal names the segment.

use crate::rules::region::RegionCode;

/// The object identifier every national license id starts with.
pub const PREFIX: &str = "1.2.156.3005.2.";

/// The longest id accepted (the segments' own bounds sum to less).
const MAX_LEN: usize = 128;

/// A parsed national license id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NationalLicenseId<'a> {
    pub type_code: &'a str,
    pub issuer_code: &'a str,
    pub serial: &'a str,
    pub version: &'a str,
    /// The issuer's division, from the issuer code.
    pub issuer_region: RegionCode,
}

/// Why an id is not a national license id, by segment.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("license id segment `{segment}`: {problem}")]
pub struct LicenseIdProblem {
    /// `prefix`, `type`, `issuer`, `serial`, `version` or `check`.
    pub segment: &'static str,
    pub problem: String,
}

fn problem(segment: &'static str, problem: impl Into<String>) -> LicenseIdProblem {
    LicenseIdProblem {
        segment,
        problem: problem.into(),
    }
}

/// Whether `id` claims the national format (and must then be one).
pub fn is_national(id: &str) -> bool {
    id.starts_with(PREFIX)
}

/// Parses a national license id, checking every segment and both check characters.
pub fn parse(id: &str) -> Result<NationalLicenseId<'_>, LicenseIdProblem> {
    if id.len() > MAX_LEN {
        return Err(problem(
            "prefix",
            format!("longer than {MAX_LEN} characters"),
        ));
    }
    let rest = id
        .strip_prefix(PREFIX)
        .ok_or_else(|| problem("prefix", format!("must start with {PREFIX}")))?;
    let segments: Vec<&str> = rest.split('.').collect();
    let [type_code, issuer_code, serial, version, check] = segments[..] else {
        return Err(problem(
            "prefix",
            format!(
                "expected 5 segments after the prefix (type, issuer, serial, version, check), got {}",
                segments.len()
            ),
        ));
    };
    if type_code.len() != 21 || !upper_alphanumeric(type_code) {
        return Err(problem("type", "must be 21 digits or capital letters"));
    }
    let issuer_region = issuer_region(issuer_code)?;
    if serial.is_empty() || serial.len() > 40 || !upper_alphanumeric(serial) {
        return Err(problem(
            "serial",
            "must be 1 to 40 digits or capital letters",
        ));
    }
    if version.len() != 3 || !version.bytes().all(|b| b.is_ascii_digit()) {
        return Err(problem("version", "must be 3 digits"));
    }
    let mut checked = String::with_capacity(type_code.len() + issuer_code.len() + serial.len() + 3);
    for part in [type_code, issuer_code, serial, version] {
        checked.push_str(part);
    }
    let expected = mod_37_36(&checked);
    if check.len() != 1 || check.as_bytes()[0] != expected {
        return Err(problem(
            "check",
            format!("the check character is {}", char::from(expected)),
        ));
    }
    Ok(NationalLicenseId {
        type_code,
        issuer_code,
        serial,
        version,
        issuer_region,
    })
}

fn upper_alphanumeric(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
}

/// The division an issuer code names: a 6-digit code, or the characters 3 to 8 of an
/// 18-character unified social credit code whose own check character holds.
fn issuer_region(code: &str) -> Result<RegionCode, LicenseIdProblem> {
    let division = match code.len() {
        6 => code,
        18 => {
            credit_code_check(code)?;
            &code[2..8]
        }
        _ => {
            return Err(problem(
                "issuer",
                "must be an 18-character unified social credit code or a 6-digit division code",
            ));
        }
    };
    RegionCode::parse(division).map_err(|e| problem("issuer", format!("division {division}: {e}")))
}

/// GB 32100's character set (no I, O, S, V, Z) and weights.
const CREDIT_CHARS: &[u8; 31] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";
const CREDIT_WEIGHTS: [u32; 17] = [
    1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28,
];

fn credit_code_check(code: &str) -> Result<(), LicenseIdProblem> {
    let value = |b: u8| CREDIT_CHARS.iter().position(|c| *c == b);
    let bytes = code.as_bytes();
    let mut sum = 0u32;
    for (b, weight) in bytes.iter().zip(CREDIT_WEIGHTS) {
        let v = value(*b).ok_or_else(|| {
            problem(
                "issuer",
                "a credit code uses digits and capitals other than I, O, S, V, Z",
            )
        })?;
        sum += v as u32 * weight;
    }
    let expected = CREDIT_CHARS[((31 - sum % 31) % 31) as usize];
    if bytes.get(17) == Some(&expected) {
        Ok(())
    } else {
        Err(problem(
            "issuer",
            format!(
                "the credit code's check character (GB 32100) is {}",
                char::from(expected)
            ),
        ))
    }
}

/// ISO/IEC 7064 MOD 37,36 (a hybrid system over digits and capitals) of `s`, which
/// holds digits and capitals only.
fn mod_37_36(s: &str) -> u8 {
    const M: u32 = 36;
    let mut p = M;
    for b in s.bytes() {
        let v = if b.is_ascii_digit() {
            u32::from(b - b'0')
        } else {
            u32::from(b - b'A') + 10
        };
        let mut t = (p + v) % M;
        if t == 0 {
            t = M;
        }
        p = (t * 2) % (M + 1);
    }
    let r = (M + 1 - p) % M;
    b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"[r as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    const HUNAN: &str = "1.2.156.3005.2.11100000000013338W011.11430000006122244L.20230000403.001.U";
    const JILIN: &str = "1.2.156.3005.2.11100000000013338W032.11220000013544541J.2430599.001.F";

    #[test]
    fn the_public_samples_parse_and_name_their_issuers_region() {
        let hunan = parse(HUNAN).unwrap();
        assert_eq!(hunan.issuer_region.as_str(), "430000");
        assert_eq!(hunan.serial, "20230000403");
        let jilin = parse(JILIN).unwrap();
        assert_eq!(jilin.issuer_region.as_str(), "220000");
        assert_eq!(jilin.version, "001");
        // A 6-digit issuer code, its check character computed over it.
        let body = "11100000000013338W011".to_owned() + "440305" + "77" + "002";
        let id = format!(
            "{PREFIX}11100000000013338W011.440305.77.002.{}",
            char::from(mod_37_36(&body))
        );
        assert_eq!(parse(&id).unwrap().issuer_region.as_str(), "440305");
    }

    #[test]
    fn each_malformed_segment_is_named() {
        let segment = |id: &str| parse(id).unwrap_err().segment;
        assert_eq!(segment(&HUNAN.replace(".U", ".V")), "check");
        assert_eq!(segment(&HUNAN.replace("244L", "244M")), "issuer");
        assert_eq!(segment(&HUNAN.replace("W011", "W01")), "type");
        assert_eq!(
            segment(&HUNAN.replace("w", "W").replace("W011", "w011")),
            "type"
        );
        assert_eq!(segment(&HUNAN.replace(".001.", ".01.")), "version");
        assert_eq!(segment(&HUNAN.replace(".20230000403.", "..")), "serial");
        assert_eq!(
            segment(&HUNAN.replace(".11430000006122244L.", ".1143000000612224.")),
            "issuer"
        );
        assert_eq!(
            segment(&HUNAN.replace("11430000006122244L", "11990000006122244L")),
            "issuer"
        );
        assert_eq!(segment("1.2.156.3005.2.x"), "prefix");
        assert_eq!(segment("1.2.156.3005.3.x.y.z.w.v"), "prefix");
        assert_eq!(segment(&format!("{HUNAN}.9")), "prefix");
        assert_eq!(segment(&"1".repeat(200)), "prefix");
        let said = parse(&HUNAN.replace(".U", ".V")).unwrap_err().to_string();
        assert_eq!(said, "license id segment `check`: the check character is U");
    }
}
