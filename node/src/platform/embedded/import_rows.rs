//! Checking the rows of an import file (read by `import_read`): residents and licenses.
//! Every row is checked before anything is written: ID numbers (check character,
//! region, birth date), region codes, dates, names, duplicates within the file. A
//! problem names the file, the line, the field and why, never the value: the files hold
//! personal data, and the error ends up in terminals and logs.

use std::collections::{BTreeMap, HashMap};

use time::Date;
use tongban_proto::{
    rules::{
        credentials::license_issuer,
        region::{RegionCode, RegionPrefix, RegionTable},
        resident_id::{IdError, ResidentId},
        text,
    },
    v1::AssuranceLevel,
};

use super::import_read::{Cell, Fields, ImportFormat, Problems, Record, RowAt, read};

/// Longest name (of a person) in characters, as everywhere in the federation.
const MAX_NAME_CHARS: usize = 64;

/// Why an ID number is not valid, without any of its characters (the check character
/// it should have would tell part of the number).
pub fn id_problem(error: &IdError) -> String {
    match error {
        IdError::BadCheckCharacter { .. } => {
            "resident ID number has a bad check character".to_owned()
        }
        other => other.to_string(),
    }
}

/// A resident to register.
#[derive(Clone, Debug)]
pub struct ResidentRow {
    pub at: RowAt,
    pub id: ResidentId,
    pub name: String,
    pub level: AssuranceLevel,
}

/// A license to issue.
#[derive(Clone, Debug)]
pub struct LicenseRow {
    pub at: RowAt,
    /// As given; generated at insertion when absent.
    pub license_id: Option<String>,
    pub license_type: String,
    pub holder: ResidentId,
    pub holder_name: String,
    pub issuing_region: String,
    pub valid_from: String,
    pub valid_until: Option<String>,
    pub fields: BTreeMap<String, String>,
}

/// What the rows of a file are checked against.
pub struct RowRules<'a> {
    pub table: &'a RegionTable,
    /// Business today: birth dates after it are wrong.
    pub today: Date,
    /// The platform's region: licenses are issued inside it.
    pub prefix: &'a RegionPrefix,
}

const RESIDENT_FIELDS: &[&str] = &["id_number", "name", "assurance_level"];
const RESIDENT_REQUIRED: &[&str] = &["id_number", "name"];
const LICENSE_FIELDS: &[&str] = &[
    "license_id",
    "license_type",
    "holder_id_number",
    "holder_name",
    "issuing_region",
    "valid_from",
    "valid_until",
    "fields",
];
const LICENSE_REQUIRED: &[&str] = &[
    "license_type",
    "holder_id_number",
    "holder_name",
    "issuing_region",
    "valid_from",
];

/// Checks the fields of one record, reporting each problem against its row.
struct RowCheck<'a, 'r> {
    file: &'a str,
    record: &'a Record,
    rules: &'a RowRules<'r>,
    problems: &'a mut Problems,
}

impl RowCheck<'_, '_> {
    fn problem(&mut self, field: &str, why: impl Into<String>) {
        self.problems.push(self.file, self.record.at, field, why);
    }

    /// A text field, if present (a problem if required and absent).
    fn text(&mut self, field: &str, required: bool) -> Option<String> {
        match self.record.cells.get(field) {
            Some(Cell::Text(t)) => Some(t.clone()),
            Some(Cell::Object(_)) => {
                self.problem(field, "must be a string");
                None
            }
            Some(Cell::Invalid) => None,
            None => {
                if required {
                    self.problem(field, "is required");
                }
                None
            }
        }
    }

    fn id(&mut self, field: &str) -> Option<ResidentId> {
        let value = self.text(field, true)?;
        match ResidentId::parse(&value, self.rules.table, self.rules.today) {
            Ok(id) => Some(id),
            Err(e) => {
                self.problem(field, id_problem(&e));
                None
            }
        }
    }

    fn name(&mut self, field: &str) -> Option<String> {
        let value = self.text(field, true)?;
        if let Some(why) = text::problem(&value) {
            self.problem(field, why);
            return None;
        }
        if value.chars().count() > MAX_NAME_CHARS {
            self.problem(field, "must be at most 64 characters");
            return None;
        }
        Some(value)
    }

    fn date(&mut self, field: &str, required: bool) -> Option<Date> {
        let value = self.text(field, required)?;
        let shaped = value.len() == 10
            && value.bytes().enumerate().all(|(i, b)| {
                if i == 4 || i == 7 {
                    b == b'-'
                } else {
                    b.is_ascii_digit()
                }
            });
        let format = time::macros::format_description!("[year]-[month]-[day]");
        match Date::parse(&value, format) {
            Ok(date) if shaped => Some(date),
            _ => {
                self.problem(field, "must be a real date, YYYY-MM-DD");
                None
            }
        }
    }

    fn issuing_region(&mut self) -> Option<String> {
        let value = self.text("issuing_region", true)?;
        let code = match RegionCode::parse(&value) {
            Ok(code) => code,
            Err(_) => {
                self.problem("issuing_region", "must be a 6-digit GB/T 2260 region code");
                return None;
            }
        };
        if !self.rules.table.is_known(&code) {
            self.problem(
                "issuing_region",
                format!("{code} is not a known region code"),
            );
            return None;
        }
        if !self.rules.prefix.contains(&code) {
            let why = format!(
                "{code} is outside this platform's region {}",
                self.rules.prefix
            );
            self.problem("issuing_region", why);
            return None;
        }
        Some(value)
    }

    fn fields(&mut self) -> Option<BTreeMap<String, String>> {
        let fields = match self.record.cells.get("fields") {
            None => BTreeMap::new(),
            Some(Cell::Invalid) => return None,
            Some(Cell::Object(map)) => map.clone(),
            Some(Cell::Text(t)) => match serde_json::from_str::<BTreeMap<String, String>>(t) {
                Ok(map) => map,
                Err(_) => {
                    self.problem("fields", "must be a JSON object of strings");
                    return None;
                }
            },
        };
        let bad = fields.iter().find_map(|(k, v)| {
            if k.is_empty() || !text::quotable_key(k) {
                Some("names must be lower-case field names (a-z, 0-9, _)")
            } else {
                text::problem(v)
            }
        });
        match bad {
            Some(why) => {
                self.problem("fields", why);
                None
            }
            None => Some(fields),
        }
    }
}

/// Reads and checks a residents file. Problems go to `problems`; the rows returned are
/// the good ones (meaningful only when there were no problems).
pub fn residents(
    file: &str,
    bytes: &[u8],
    format: ImportFormat,
    rules: &RowRules<'_>,
    problems: &mut Problems,
) -> Vec<ResidentRow> {
    let fields = Fields {
        known: RESIDENT_FIELDS,
        required: RESIDENT_REQUIRED,
    };
    let records = read(file, bytes, format, fields, problems);
    let mut seen: HashMap<ResidentId, usize> = HashMap::new();
    let mut out = Vec::with_capacity(records.len());
    for record in &records {
        let mut check = RowCheck {
            file,
            record,
            rules,
            problems,
        };
        let id = check.id("id_number");
        let name = check.name("name");
        let level = match check.text("assurance_level", false).as_deref() {
            None | Some("substantial") => Some(AssuranceLevel::Substantial),
            Some("low") => Some(AssuranceLevel::Low),
            Some("high") => Some(AssuranceLevel::High),
            Some(_) => {
                check.problem("assurance_level", "must be low, substantial or high");
                None
            }
        };
        let (Some(id), Some(name), Some(level)) = (id, name, level) else {
            continue;
        };
        if let Some(first) = seen.get(&id) {
            check.problem(
                "id_number",
                format!("appears again (first at line {first})"),
            );
            continue;
        }
        seen.insert(id.clone(), record.at.line);
        out.push(ResidentRow {
            at: record.at,
            id,
            name,
            level,
        });
    }
    out
}

/// The license type's shape: a catalog name, `household_register`.
fn license_type_ok(value: &str) -> bool {
    value.len() <= 64 && value.starts_with(|c: char| c.is_ascii_lowercase()) && {
        value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    }
}

/// Checks one license record; `None` when a field is wrong (reported).
fn license_row(check: &mut RowCheck<'_, '_>) -> Option<LicenseRow> {
    let license_type = check.text("license_type", true);
    let license_type = license_type.filter(|t| {
        let ok = license_type_ok(t);
        if !ok {
            check.problem("license_type", "must be a lower-case name (a-z, 0-9, _)");
        }
        ok
    });
    let holder = check.id("holder_id_number");
    let holder_name = check.name("holder_name");
    let issuing_region = check.issuing_region();
    let valid_from = check.date("valid_from", true);
    let valid_until = check.date("valid_until", false);
    if let (Some(from), Some(until)) = (valid_from, valid_until)
        && until < from
    {
        check.problem("valid_until", "is before valid_from");
    }
    let fields = check.fields();
    let license_id = check.text("license_id", false);
    if let (Some(id), Some(region)) = (&license_id, &issuing_region) {
        match license_issuer(id) {
            Err(e) => check.problem("license_id", e.to_string()),
            Ok(issuer) if issuer.as_str() != region => {
                check.problem("license_id", "must begin with the issuing_region's code");
            }
            Ok(_) => {}
        }
    }
    let until_ok = valid_until.is_some() || !check.record.cells.contains_key("valid_until");
    let from = valid_from?;
    if !until_ok || valid_until.is_some_and(|u| u < from) {
        return None;
    }
    Some(LicenseRow {
        at: check.record.at,
        license_id,
        license_type: license_type?,
        holder: holder?,
        holder_name: holder_name?,
        issuing_region: issuing_region?,
        valid_from: from.to_string(),
        valid_until: valid_until.map(|d| d.to_string()),
        fields: fields?,
    })
}

/// Reads and checks a licenses file, also against the residents of the same import: a
/// holder the residents file names must bear the same name there.
pub fn licenses(
    file: &str,
    bytes: &[u8],
    format: ImportFormat,
    rules: &RowRules<'_>,
    residents: &[ResidentRow],
    problems: &mut Problems,
) -> Vec<LicenseRow> {
    let fields = Fields {
        known: LICENSE_FIELDS,
        required: LICENSE_REQUIRED,
    };
    let records = read(file, bytes, format, fields, problems);
    let names: HashMap<&ResidentId, (&str, usize)> = residents
        .iter()
        .map(|r| (&r.id, (r.name.as_str(), r.at.line)))
        .collect();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = Vec::with_capacity(records.len());
    for record in &records {
        let mut check = RowCheck {
            file,
            record,
            rules,
            problems,
        };
        let Some(row) = license_row(&mut check) else {
            continue;
        };
        if let Some((name, line)) = names.get(&row.holder)
            && *name != row.holder_name
        {
            let why = format!("differs from the name the residents file gives (line {line})");
            check.problem("holder_name", why);
            continue;
        }
        if let Some(id) = &row.license_id {
            if let Some(first) = seen.get(id) {
                check.problem(
                    "license_id",
                    format!("appears again (first at line {first})"),
                );
                continue;
            }
            seen.insert(id.clone(), record.at.line);
        }
        out.push(row);
    }
    out
}
