//! GB/T 2260 administrative division codes and the table of known divisions.
//!
//! Regions are what the federation routes on: a [`RegionCode`] names one province,
//! prefecture or county, a [`RegionPrefix`] names the subtree a node is registered for,
//! and the [`RegionTable`] says which codes exist. The table vendored in
//! `data/gbt2260.csv` is a snapshot; operators may load a newer one with
//! [`RegionTable::from_csv`].

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The vendored division table (end-of-2025 snapshot, see `data/README.md`).
const EMBEDDED_CSV: &str = include_str!("../../../data/gbt2260.csv");

/// The header line every region table CSV must start with.
const CSV_HEADER: &str = "code,name,level,parent_code";

/// Errors from parsing region codes, prefixes and region tables.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegionError {
    /// A code or prefix is not well formed.
    #[error("malformed region code {value:?}: {reason}")]
    Malformed {
        /// The offending input, truncated to 12 characters so that a misplaced resident
        /// ID number is never echoed in full.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The CSV does not start with the expected header line.
    #[error("region table line 1: expected header {CSV_HEADER:?}, found {found:?}")]
    CsvHeader {
        /// The first line as found (truncated to 64 characters).
        found: String,
    },
    /// A data row of the CSV is invalid.
    #[error("region table line {line}: {problem}")]
    CsvRow {
        /// 1-based line number in the CSV (the header is line 1).
        line: usize,
        /// What is wrong with the row.
        problem: String,
    },
    /// The CSV has a header but no division rows.
    #[error("region table has no division rows")]
    CsvEmpty,
}

/// Truncates `value` to `max` characters, marking the cut with an ellipsis, so error
/// messages stay short and never echo a long pasted value whole.
pub(crate) fn truncate_for_error(value: &str, max: usize) -> String {
    match value.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &value[..cut]),
        None => value.to_owned(),
    }
}

fn malformed(value: &str, reason: &'static str) -> RegionError {
    RegionError::Malformed {
        value: truncate_for_error(value, 12),
        reason,
    }
}

/// Views validated ASCII digits as `&str`.
fn ascii_digits_str(bytes: &[u8]) -> &str {
    match std::str::from_utf8(bytes) {
        Ok(s) => s,
        // Both constructors admit ASCII digits only, which are always valid UTF-8.
        Err(_) => unreachable!("region codes and prefixes hold ASCII digits only"),
    }
}

/// Checks the shape shared by codes and prefixes: ASCII digits, province part not `00`.
fn check_digits(value: &str) -> Result<(), RegionError> {
    if !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed(value, "only ASCII digits 0-9 are allowed"));
    }
    if value.starts_with("00") {
        // No GB/T 2260 province starts with 00, and `province()` must stay a valid code.
        return Err(malformed(value, "province digits 00 do not exist"));
    }
    Ok(())
}

/// A validated 6-digit GB/T 2260 administrative division code, such as `440305`.
///
/// Validity is about form only (6 ASCII digits, province digits not `00`); whether the
/// division exists is a question for a [`RegionTable`]. Codes order numerically, so a
/// province sorts before its prefectures and counties.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RegionCode([u8; 6]);

impl RegionCode {
    /// Parses exactly 6 ASCII digits whose first two are not `00` (so `000000` is
    /// rejected). Surrounding whitespace and full-width digits are rejected.
    pub fn parse(value: &str) -> Result<RegionCode, RegionError> {
        let bytes: [u8; 6] = value
            .as_bytes()
            .try_into()
            .map_err(|_| malformed(value, "expected exactly 6 ASCII digits"))?;
        check_digits(value)?;
        Ok(RegionCode(bytes))
    }

    /// Pads a prefix with zeros to a full code: `44` → `440000`, `4403` → `440300`.
    pub fn from_prefix(prefix: &RegionPrefix) -> RegionCode {
        let mut bytes = [b'0'; 6];
        bytes[..prefix.len()].copy_from_slice(prefix.as_str().as_bytes());
        RegionCode(bytes)
    }

    /// The code as 6 ASCII digits.
    pub fn as_str(&self) -> &str {
        ascii_digits_str(&self.0)
    }

    /// The code of the province this code lies in: the first two digits and `0000`.
    pub fn province(&self) -> RegionCode {
        RegionCode([self.0[0], self.0[1], b'0', b'0', b'0', b'0'])
    }

    /// The code without trailing `00` pairs: `440000` → `44`, `440300` → `4403`,
    /// `440305` → `440305`. This is the prefix under which the code's subtree routes.
    pub fn significant_prefix(&self) -> &str {
        let s = self.as_str();
        if s.ends_with("0000") {
            &s[..2]
        } else if s.ends_with("00") {
            &s[..4]
        } else {
            s
        }
    }

    /// The code's [`significant_prefix`](Self::significant_prefix) as a [`RegionPrefix`].
    pub fn to_prefix(&self) -> RegionPrefix {
        let len = self.significant_prefix().len();
        RegionPrefix {
            bytes: self.0,
            // `len` is 2, 4 or 6, so the cast cannot truncate.
            len: len as u8,
        }
    }
}

impl fmt::Display for RegionCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for RegionCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RegionCode").field(&self.as_str()).finish()
    }
}

impl FromStr for RegionCode {
    type Err = RegionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RegionCode::parse(s)
    }
}

impl Serialize for RegionCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for RegionCode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        RegionCode::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A region code prefix of 2 (province), 4 (prefecture) or 6 (county) ASCII digits.
///
/// The node registry maps prefixes to endpoints and routes a code to the longest
/// registered prefix that [`contains`](Self::contains) it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RegionPrefix {
    // Unused trailing bytes are zero so that derived comparisons only see `len` digits
    // plus padding that is equal for equal prefixes.
    bytes: [u8; 6],
    len: u8,
}

impl RegionPrefix {
    /// Parses 2, 4 or 6 ASCII digits whose first two are not `00`.
    pub fn parse(value: &str) -> Result<RegionPrefix, RegionError> {
        let len = value.len();
        if !matches!(len, 2 | 4 | 6) {
            return Err(malformed(value, "a prefix has 2, 4 or 6 ASCII digits"));
        }
        check_digits(value)?;
        let mut bytes = [0u8; 6];
        bytes[..len].copy_from_slice(value.as_bytes());
        Ok(RegionPrefix {
            bytes,
            // `len` is 2, 4 or 6, so the cast cannot truncate.
            len: len as u8,
        })
    }

    /// The prefix digits.
    pub fn as_str(&self) -> &str {
        ascii_digits_str(&self.bytes[..self.len()])
    }

    /// Whether `code` starts with this prefix.
    pub fn contains(&self, code: &RegionCode) -> bool {
        code.as_str().starts_with(self.as_str())
    }

    /// The number of digits: 2, 4 or 6.
    #[expect(clippy::len_without_is_empty, reason = "a prefix is never empty")]
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }
}

impl From<RegionCode> for RegionPrefix {
    /// The code's significant prefix (see [`RegionCode::significant_prefix`]).
    fn from(code: RegionCode) -> Self {
        code.to_prefix()
    }
}

impl fmt::Display for RegionPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for RegionPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RegionPrefix").field(&self.as_str()).finish()
    }
}

impl FromStr for RegionPrefix {
    type Err = RegionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RegionPrefix::parse(s)
    }
}

impl Serialize for RegionPrefix {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for RegionPrefix {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        RegionPrefix::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// The level of a division in the GB/T 2260 hierarchy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// Province, autonomous region, municipality or SAR (省级).
    Province,
    /// Prefecture-level city, prefecture, autonomous prefecture or league (地级).
    Prefecture,
    /// District, county-level city, county, banner and the like (县级).
    County,
}

impl Level {
    /// The name used in the CSV: `province`, `prefecture` or `county`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Level::Province => "province",
            Level::Prefecture => "prefecture",
            Level::County => "county",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One administrative division.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Division {
    /// Its code.
    pub code: RegionCode,
    /// Its official Chinese name, e.g. `东莞市`.
    pub name: String,
    /// Its level.
    pub level: Level,
    /// The division it lies directly in; `None` for provinces. Counties directly under a
    /// province or municipality point at the province.
    pub parent: Option<RegionCode>,
}

/// The set of known divisions, keyed and iterated in code order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionTable {
    divisions: BTreeMap<RegionCode, Division>,
}

impl RegionTable {
    /// The table vendored in `data/gbt2260.csv`, parsed on first use.
    ///
    /// # Panics
    ///
    /// Panics if the vendored CSV fails to parse. That file is checked in and covered by
    /// this module's tests, so a panic here means a broken build, not bad input. Tables
    /// from operators go through [`RegionTable::from_csv`], which returns errors.
    pub fn embedded() -> &'static RegionTable {
        static TABLE: OnceLock<RegionTable> = OnceLock::new();
        TABLE.get_or_init(|| match RegionTable::from_csv(EMBEDDED_CSV) {
            Ok(table) => table,
            Err(err) => panic!("vendored data/gbt2260.csv is invalid: {err}"),
        })
    }

    /// Parses a table in the format of `data/gbt2260.csv`: the header
    /// `code,name,level,parent_code`, then one division per line. Blank lines and `\r\n`
    /// line endings are tolerated; fields are not quoted.
    ///
    /// Besides the form of each row it checks the hierarchy: codes are unique, a province
    /// is `xx0000` without a parent, a prefecture is `xxxx00` under its province, and a
    /// county lies under an existing province or prefecture whose prefix it shares.
    pub fn from_csv(csv: &str) -> Result<RegionTable, RegionError> {
        let mut lines = csv.lines().enumerate().map(|(i, l)| (i + 1, l));
        let header = lines.next().map(|(_, l)| l).unwrap_or_default();
        let header = header.strip_prefix('\u{feff}').unwrap_or(header);
        if header.trim_end() != CSV_HEADER {
            return Err(RegionError::CsvHeader {
                found: truncate_for_error(header, 64),
            });
        }

        let mut divisions = BTreeMap::new();
        // Line of each code, to name the child's line when a parent is wrong.
        let mut line_of = BTreeMap::new();
        for (line, text) in lines {
            let text = text.trim_end_matches('\r');
            if text.trim().is_empty() {
                continue;
            }
            let division = parse_row(line, text)?;
            if let Some(first) = line_of.insert(division.code, line) {
                return Err(RegionError::CsvRow {
                    line,
                    problem: format!("code {} already appears on line {first}", division.code),
                });
            }
            divisions.insert(division.code, division);
        }
        if divisions.is_empty() {
            return Err(RegionError::CsvEmpty);
        }

        for division in divisions.values() {
            let line = line_of.get(&division.code).copied().unwrap_or_default();
            check_parent(division, &divisions)
                .map_err(|problem| RegionError::CsvRow { line, problem })?;
        }
        Ok(RegionTable { divisions })
    }

    /// The division with this code, if known.
    pub fn get(&self, code: &RegionCode) -> Option<&Division> {
        self.divisions.get(code)
    }

    /// Whether this exact code is a known division.
    pub fn is_known(&self, code: &RegionCode) -> bool {
        self.divisions.contains_key(code)
    }

    /// The code a case for `code` is routed by: the code itself when it is a known
    /// division, else its province (a historical or county code: provinces, or their
    /// delegated nodes, are what the registry knows).
    pub fn routed(&self, code: RegionCode) -> RegionCode {
        if self.is_known(&code) {
            code
        } else {
            code.province()
        }
    }

    /// Whether the province of `code` (its first two digits and `0000`) is known. This is
    /// the test for resident ID numbers, whose county code may be historical.
    pub fn is_known_province(&self, code: &RegionCode) -> bool {
        self.divisions.contains_key(&code.province())
    }

    /// The provinces, in code order.
    pub fn provinces(&self) -> impl Iterator<Item = &Division> {
        self.divisions
            .values()
            .filter(|d| d.level == Level::Province)
    }

    /// All divisions, in code order.
    pub fn iter(&self) -> impl Iterator<Item = &Division> {
        self.divisions.values()
    }

    /// The number of divisions.
    pub fn len(&self) -> usize {
        self.divisions.len()
    }

    /// Whether the table has no divisions (never true for a parsed table).
    pub fn is_empty(&self) -> bool {
        self.divisions.is_empty()
    }
}

impl<'a> IntoIterator for &'a RegionTable {
    type Item = &'a Division;
    type IntoIter = std::collections::btree_map::Values<'a, RegionCode, Division>;

    fn into_iter(self) -> Self::IntoIter {
        self.divisions.values()
    }
}

/// Parses one data row; checks everything that does not need other rows.
fn parse_row(line: usize, text: &str) -> Result<Division, RegionError> {
    let row_error = |problem: String| RegionError::CsvRow { line, problem };
    let fields: Vec<&str> = text.split(',').collect();
    let [code, name, level, parent] = fields.as_slice() else {
        return Err(row_error(format!(
            "expected 4 comma-separated fields (code,name,level,parent_code), found {}",
            fields.len()
        )));
    };
    let code = RegionCode::parse(code).map_err(|e| row_error(format!("code: {e}")))?;
    if name.trim().is_empty() {
        return Err(row_error(format!("name of {code} is empty")));
    }
    let level = match *level {
        "province" => Level::Province,
        "prefecture" => Level::Prefecture,
        "county" => Level::County,
        other => {
            return Err(row_error(format!(
                "level of {code} must be province, prefecture or county, found {:?}",
                truncate_for_error(other, 20)
            )));
        }
    };
    let parent = if parent.is_empty() {
        None
    } else {
        Some(RegionCode::parse(parent).map_err(|e| row_error(format!("parent_code: {e}")))?)
    };
    let digits = code.as_str();
    match level {
        Level::Province if !digits.ends_with("0000") => {
            return Err(row_error(format!("province {code} must end in 0000")));
        }
        Level::Province if parent.is_some() => {
            return Err(row_error(format!(
                "province {code} must have an empty parent_code"
            )));
        }
        Level::Prefecture if !digits.ends_with("00") || digits.ends_with("0000") => {
            return Err(row_error(format!(
                "prefecture {code} must end in 00 but not in 0000"
            )));
        }
        Level::County if digits.ends_with("00") => {
            return Err(row_error(format!("county {code} must not end in 00")));
        }
        Level::Prefecture | Level::County if parent.is_none() => {
            return Err(row_error(format!(
                "{level} {code} has an empty parent_code"
            )));
        }
        _ => {}
    }
    Ok(Division {
        code,
        name: (*name).to_owned(),
        level,
        parent,
    })
}

/// Checks that a division's parent exists, sits above it and shares its prefix.
fn check_parent(
    division: &Division,
    divisions: &BTreeMap<RegionCode, Division>,
) -> Result<(), String> {
    let Some(parent_code) = division.parent else {
        return Ok(());
    };
    let code = division.code;
    let Some(parent) = divisions.get(&parent_code) else {
        return Err(format!(
            "parent_code {parent_code} of {code} is not in the table"
        ));
    };
    let allowed = match division.level {
        Level::Province => false,
        Level::Prefecture => parent.level == Level::Province,
        Level::County => parent.level != Level::County,
    };
    if !allowed {
        return Err(format!(
            "{} {code} cannot lie in {} {parent_code}",
            division.level, parent.level
        ));
    }
    if !code.as_str().starts_with(parent_code.significant_prefix()) {
        return Err(format!(
            "{code} does not start with the prefix {} of its parent {parent_code}",
            parent_code.significant_prefix()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(s: &str) -> RegionCode {
        RegionCode::parse(s).unwrap()
    }

    #[test]
    fn embedded_table_has_expected_shape() {
        let table = RegionTable::embedded();
        assert_eq!(table.len(), 3212);
        assert!(!table.is_empty());
        assert_eq!(table.provinces().count(), 34);
        assert_eq!(
            table
                .iter()
                .filter(|d| d.level == Level::Prefecture)
                .count(),
            333
        );
        assert_eq!(
            table.iter().filter(|d| d.level == Level::County).count(),
            2845
        );
        assert_eq!(table.into_iter().count(), 3212);

        let dongguan = table.get(&code("441900")).unwrap();
        assert_eq!(dongguan.name, "东莞市");
        assert_eq!(dongguan.level, Level::Prefecture);
        assert_eq!(dongguan.parent, Some(code("440000")));

        let xiantao = table.get(&code("429004")).unwrap();
        assert_eq!(xiantao.level, Level::County);
        assert_eq!(xiantao.parent, Some(code("420000")));

        assert!(table.get(&code("110000")).unwrap().parent.is_none());
        assert!(table.is_known(&code("710000")));
        assert!(table.is_known(&code("500157")));
    }

    #[test]
    fn historical_codes_are_unknown_but_their_province_is_known() {
        let table = RegionTable::embedded();
        let jiangbei = code("500105");
        assert!(!table.is_known(&jiangbei));
        assert!(table.is_known_province(&jiangbei));
        assert!(!table.is_known_province(&code("990101")));
        assert!(!table.is_known_province(&code("720101")));
    }

    #[test]
    fn significant_prefix_strips_trailing_zero_pairs() {
        assert_eq!(code("440000").significant_prefix(), "44");
        assert_eq!(code("440300").significant_prefix(), "4403");
        assert_eq!(code("440305").significant_prefix(), "440305");
        assert_eq!(code("110105").significant_prefix(), "110105");
        assert_eq!(code("440305").province(), code("440000"));
        assert_eq!(code("440305").to_prefix().as_str(), "440305");
        assert_eq!(RegionPrefix::from(code("440300")).as_str(), "4403");
    }

    #[test]
    fn malformed_codes_are_rejected() {
        for bad in [
            "44",
            "4403a5",
            "４４０３００",
            "",
            "000000",
            "001234",
            " 440300",
            "4403000",
        ] {
            let err = RegionCode::parse(bad).unwrap_err();
            assert!(
                matches!(err, RegionError::Malformed { .. }),
                "{bad:?} gave {err:?}"
            );
        }
        let err = RegionCode::parse("4403a5").unwrap_err();
        assert_eq!(
            err.to_string(),
            "malformed region code \"4403a5\": only ASCII digits 0-9 are allowed"
        );
    }

    #[test]
    fn malformed_value_is_truncated_in_errors() {
        let err = RegionCode::parse("11010519491231002X").unwrap_err();
        let text = err.to_string();
        assert!(!text.contains("11010519491231002X"), "{text}");
        assert!(text.contains("110105194912…"), "{text}");
    }

    #[test]
    fn prefixes_parse_contain_and_pad() {
        let gd = RegionPrefix::parse("44").unwrap();
        let sz = RegionPrefix::parse("4403").unwrap();
        let ns = RegionPrefix::parse("440305").unwrap();
        assert_eq!((gd.len(), sz.len(), ns.len()), (2, 4, 6));
        assert!(gd.contains(&code("440305")));
        assert!(sz.contains(&code("440305")));
        assert!(ns.contains(&code("440305")));
        assert!(!sz.contains(&code("441900")));
        assert_eq!(RegionCode::from_prefix(&gd), code("440000"));
        assert_eq!(RegionCode::from_prefix(&sz), code("440300"));
        assert_eq!(RegionCode::from_prefix(&ns), code("440305"));
        assert!(gd < sz && sz < ns);
        for bad in ["4", "440", "44030", "4403050", "", "00", "4a", "４４"] {
            assert!(RegionPrefix::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!("4403".parse::<RegionPrefix>().unwrap(), sz);
        assert_eq!(format!("{sz} {sz:?}"), "4403 RegionPrefix(\"4403\")");
    }

    #[test]
    fn codes_display_order_and_serde_as_strings() {
        let c = code("440305");
        assert_eq!(c.to_string(), "440305");
        assert_eq!(format!("{c:?}"), "RegionCode(\"440305\")");
        assert_eq!("440305".parse::<RegionCode>().unwrap(), c);
        assert!(code("110000") < code("110105"));
        assert_eq!(serde_json::to_string(&c).unwrap(), "\"440305\"");
        assert_eq!(serde_json::from_str::<RegionCode>("\"440305\"").unwrap(), c);
        assert!(serde_json::from_str::<RegionCode>("\"44030\"").is_err());
        assert!(serde_json::from_str::<RegionCode>("440305").is_err());
        let p = RegionPrefix::parse("4403").unwrap();
        assert_eq!(serde_json::to_string(&p).unwrap(), "\"4403\"");
        assert_eq!(serde_json::from_str::<RegionPrefix>("\"4403\"").unwrap(), p);
    }

    #[test]
    fn from_csv_reports_line_numbers() {
        let header = "code,name,level,parent_code\n";
        let cases = [
            (
                "440000,广东省,province,\n4403a0,深圳市,prefecture,440000\n",
                3,
                "code",
            ),
            (
                "440000,广东省,province\n",
                2,
                "expected 4 comma-separated fields",
            ),
            ("440000,广东省,state,\n", 2, "level of 440000"),
            ("440000,,province,\n", 2, "name of 440000 is empty"),
            (
                "440000,广东省,province,\n440000,广东省,province,\n",
                3,
                "already appears on line 2",
            ),
            (
                "440300,深圳市,prefecture,440000\n",
                2,
                "parent_code 440000 of 440300 is not in the table",
            ),
            (
                "440000,广东省,province,\n440305,南山区,county,\n",
                3,
                "empty parent_code",
            ),
            (
                "440000,广东省,province,\n440300,深圳市,county,440000\n",
                3,
                "must not end in 00",
            ),
            (
                "440000,广东省,province,\n450000,广西,province,\n440305,南山区,county,450000\n",
                4,
                "does not start with the prefix 45",
            ),
            (
                "440000,广东省,province,\n440300,深圳市,prefecture,440000\n440305,南山区,county,440300\n440306,宝安区,county,440305\n",
                5,
                "county 440306 cannot lie in county 440305",
            ),
        ];
        for (rows, line, needle) in cases {
            let err = RegionTable::from_csv(&format!("{header}{rows}")).unwrap_err();
            match &err {
                RegionError::CsvRow { line: l, problem } => {
                    assert_eq!(*l, line, "{rows:?}: {err}");
                    assert!(problem.contains(needle), "{rows:?}: {err}");
                }
                other => panic!("{rows:?}: unexpected {other:?}"),
            }
        }
        assert!(matches!(
            RegionTable::from_csv("code,name\n440000,广东省\n"),
            Err(RegionError::CsvHeader { .. })
        ));
        assert!(matches!(
            RegionTable::from_csv(""),
            Err(RegionError::CsvHeader { .. })
        ));
        assert_eq!(RegionTable::from_csv(header), Err(RegionError::CsvEmpty));
    }

    #[test]
    fn from_csv_accepts_crlf_and_blank_lines() {
        let csv = "code,name,level,parent_code\r\n440000,广东省,province,\r\n\r\n441900,东莞市,prefecture,440000\r\n";
        let table = RegionTable::from_csv(csv).unwrap();
        assert_eq!(table.len(), 2);
        assert_eq!(table.get(&code("441900")).unwrap().name, "东莞市");
    }
}
