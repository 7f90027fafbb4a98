//! Reading an import file into records, before any check of their values: CSV (a
//! header row naming the fields, then one row a line) or JSON (an array of objects).
//! Where each record is (CSV: its physical line, the header being line 1; JSON: the
//! line where its object starts, and its index in the array), and the problems of the
//! file's shape (a missing or unknown column, a ragged row, bad JSON), named by line
//! and never by value.

use std::{collections::BTreeMap, fmt};

use tongban_proto::rules::text;

/// Most problems an import reports; the rest are only counted. A file with a systematic
/// mistake (a wrong column) would otherwise print a line per row.
pub const MAX_PROBLEMS: usize = 20;

/// The format of an import file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImportFormat {
    Csv,
    Json,
}

impl ImportFormat {
    /// The format a file name says (`.csv`, `.json`), if it says one.
    pub fn of_path(path: &std::path::Path) -> Option<Self> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "csv" => Some(Self::Csv),
            "json" => Some(Self::Json),
            _ => None,
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "csv" => Some(Self::Csv),
            "json" => Some(Self::Json),
            _ => None,
        }
    }
}

/// Where a row is: its line in the file, and for JSON its index in the array (from 0).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RowAt {
    pub line: usize,
    pub item: Option<usize>,
}

impl fmt::Display for RowAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}", self.line)?;
        if let Some(item) = self.item {
            write!(f, " (item {item})")?;
        }
        Ok(())
    }
}

/// One thing wrong with an import file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowProblem {
    /// The file, as given.
    pub file: String,
    pub at: RowAt,
    /// The field (column) concerned; `row` for the row as a whole, `file` for the file.
    pub field: String,
    pub why: String,
}

impl fmt::Display for RowProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}: {}: {}",
            self.file, self.at, self.field, self.why
        )
    }
}

/// The problems found so far: the first [`MAX_PROBLEMS`] kept, all counted.
#[derive(Debug, Default)]
pub struct Problems {
    pub shown: Vec<RowProblem>,
    pub total: usize,
}

impl Problems {
    pub fn push(&mut self, file: &str, at: RowAt, field: &str, why: impl Into<String>) {
        self.total += 1;
        if self.shown.len() < MAX_PROBLEMS {
            self.shown.push(RowProblem {
                file: file.to_owned(),
                at,
                field: field.to_owned(),
                why: why.into(),
            });
        }
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Enough seen: the caller may stop reading.
    pub(super) fn full(&self) -> bool {
        self.total >= MAX_PROBLEMS
    }
}

/// A value read from a file: text (CSV cells, JSON strings) or, for `fields`, an object.
#[derive(Debug)]
pub(super) enum Cell {
    Text(String),
    Object(BTreeMap<String, String>),
    /// Present but of the wrong JSON type (reported when read).
    Invalid,
}

/// One row as read, before it is checked: field name to value; an empty or null value
/// is absent.
#[derive(Debug)]
pub(super) struct Record {
    pub(super) at: RowAt,
    pub(super) cells: BTreeMap<String, Cell>,
}

/// The physical line of a CSV record from its byte offset. The csv crate's own line
/// numbers are off after blank lines and with CRLF line ends, and its offsets point
/// at the line end before the record (or at the blank lines): these are skipped, then
/// the line breaks before the record counted, once (offsets only grow).
struct LineCounter<'a> {
    bytes: &'a [u8],
    at: usize,
    breaks: usize,
}

impl<'a> LineCounter<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self {
            bytes,
            at: 0,
            breaks: 0,
        }
    }

    fn line_at(&mut self, offset: usize) -> usize {
        let mut start = offset.min(self.bytes.len());
        while self
            .bytes
            .get(start)
            .is_some_and(|b| matches!(b, b'\r' | b'\n'))
        {
            start += 1;
        }
        if start > self.at {
            self.breaks += self.bytes[self.at..start]
                .iter()
                .filter(|b| **b == b'\n')
                .count();
            self.at = start;
        }
        self.breaks + 1
    }
}

/// Reads the records of a CSV file; a missing or unknown column, a row with another
/// number of fields than the header or bad UTF-8 is a problem.
fn read_csv(file: &str, bytes: &[u8], fields: Fields<'_>, problems: &mut Problems) -> Vec<Record> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .from_reader(bytes);
    let header_at = RowAt {
        line: 1,
        item: None,
    };
    let headers: Vec<String> = match reader.headers() {
        Ok(h) => h
            .iter()
            .map(|h| h.trim_start_matches('\u{feff}').to_owned())
            .collect(),
        Err(e) => {
            problems.push(file, header_at, "file", format!("unreadable header: {e}"));
            return Vec::new();
        }
    };
    if !columns_known(file, &headers, fields, problems) {
        return Vec::new();
    }
    let mut lines = LineCounter::new(bytes);
    let mut out = Vec::new();
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| lines.line_at(p.byte() as usize));
                let why = match e.kind() {
                    csv::ErrorKind::UnequalLengths {
                        len, expected_len, ..
                    } => format!("has {len} fields; the header has {expected_len}"),
                    csv::ErrorKind::Utf8 { .. } => "is not valid UTF-8".to_owned(),
                    _ => "cannot be read as CSV".to_owned(),
                };
                problems.push(file, RowAt { line, item: None }, "row", why);
                if problems.full() || matches!(e.kind(), csv::ErrorKind::Io(_)) {
                    break;
                }
                continue;
            }
        };
        let line = record
            .position()
            .map_or(0, |p| lines.line_at(p.byte() as usize));
        let cells = headers
            .iter()
            .zip(record.iter())
            .filter(|(_, value)| !value.is_empty())
            .map(|(name, value)| (name.clone(), Cell::Text(value.to_owned())))
            .collect();
        out.push(Record {
            at: RowAt { line, item: None },
            cells,
        });
    }
    out
}

/// Whether a header names every required column and no unknown one; says which not.
fn columns_known(
    file: &str,
    headers: &[String],
    fields: Fields<'_>,
    problems: &mut Problems,
) -> bool {
    let Fields { known, required } = fields;
    let at = RowAt {
        line: 1,
        item: None,
    };
    let before = problems.total;
    for (i, name) in headers.iter().enumerate() {
        if !known.contains(&name.as_str()) {
            let shown = if text::quotable_key(name) {
                name.as_str()
            } else {
                "?"
            };
            problems.push(
                file,
                at,
                "header",
                format!(
                    "column {} ({shown}) is not one of {}",
                    i + 1,
                    known.join(", ")
                ),
            );
        } else if headers[..i].contains(name) {
            problems.push(file, at, name, "column appears twice");
        }
    }
    for name in required {
        if !headers.iter().any(|h| h == name) {
            problems.push(file, at, name, "column is missing");
        }
    }
    problems.total == before
}

/// The line on which each element of a top-level JSON array starts (the text parsed as
/// JSON already): serde_json's values keep no positions.
fn item_lines(text: &str) -> Vec<usize> {
    let mut lines = Vec::new();
    let (mut line, mut depth) = (1usize, 0usize);
    let (mut in_string, mut escaped, mut expect_item) = (false, false, false);
    for c in text.chars() {
        if in_string {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        if depth == 1 && expect_item && !c.is_whitespace() && c != ']' {
            lines.push(line);
            expect_item = false;
        }
        match c {
            '\n' => line += 1,
            '"' => in_string = true,
            '[' | '{' => {
                depth += 1;
                expect_item = depth == 1;
            }
            ']' | '}' => depth = depth.saturating_sub(1),
            ',' if depth == 1 => expect_item = true,
            _ => {}
        }
    }
    lines
}

/// A JSON value as a cell: strings as text, `fields` as an object of strings; `None` for
/// null. Anything else is a problem (the value itself is never repeated).
fn json_cell(name: &str, value: serde_json::Value) -> Result<Option<Cell>, &'static str> {
    use serde_json::Value;
    match value {
        Value::Null => Ok(None),
        Value::String(s) if s.trim().is_empty() => Ok(None),
        Value::String(s) => Ok(Some(Cell::Text(s.trim().to_owned()))),
        Value::Object(map) if name == "fields" => {
            let mut out = BTreeMap::new();
            for (k, v) in map {
                let Value::String(v) = v else {
                    return Err("every value in `fields` must be a string");
                };
                out.insert(k, v);
            }
            Ok(Some(Cell::Object(out)))
        }
        _ if name == "fields" => Err("must be an object of strings"),
        _ => Err("must be a string"),
    }
}

/// Reads the records of a JSON file: an array of objects whose keys are the fields.
fn read_json(file: &str, bytes: &[u8], known: &[&str], problems: &mut Problems) -> Vec<Record> {
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(_) => {
            problems.push(file, RowAt::default(), "file", "is not valid UTF-8");
            return Vec::new();
        }
    };
    let items: Vec<serde_json::Value> = match serde_json::from_str(text) {
        Ok(items) => items,
        Err(e) => {
            let at = RowAt {
                line: e.line(),
                item: None,
            };
            let why = match e.classify() {
                serde_json::error::Category::Data => "must be a JSON array of objects".to_owned(),
                _ => format!("is not valid JSON (column {})", e.column()),
            };
            problems.push(file, at, "file", why);
            return Vec::new();
        }
    };
    let lines = item_lines(text);
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let at = RowAt {
            line: lines.get(i).copied().unwrap_or(0),
            item: Some(i),
        };
        let serde_json::Value::Object(map) = item else {
            problems.push(file, at, "row", "must be a JSON object");
            continue;
        };
        let mut cells = BTreeMap::new();
        for (name, value) in map {
            if !known.contains(&name.as_str()) {
                let shown = if text::quotable_key(&name) {
                    name.as_str()
                } else {
                    "?"
                };
                problems.push(file, at, "row", format!("unknown field {shown}"));
                continue;
            }
            match json_cell(&name, value) {
                Ok(Some(cell)) => {
                    cells.insert(name, cell);
                }
                Ok(None) => {}
                Err(why) => {
                    problems.push(file, at, &name, why);
                    cells.insert(name, Cell::Invalid);
                }
            }
        }
        out.push(Record { at, cells });
    }
    out
}

/// The fields a kind of file has, and those it must have.
#[derive(Clone, Copy)]
pub(super) struct Fields<'a> {
    pub(super) known: &'a [&'a str],
    pub(super) required: &'a [&'a str],
}

/// The records of a file; problems of its shape go to `problems`.
pub(super) fn read(
    file: &str,
    bytes: &[u8],
    format: ImportFormat,
    fields: Fields<'_>,
    problems: &mut Problems,
) -> Vec<Record> {
    match format {
        ImportFormat::Csv => read_csv(file, bytes, fields, problems),
        ImportFormat::Json => read_json(file, bytes, fields.known, problems),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIELDS: Fields<'static> = Fields {
        known: &["a", "b"],
        required: &["a"],
    };

    #[test]
    fn json_items_are_found_on_their_lines() {
        let text = "[\n {\"a\": \"x, [y]\"},\n\n  {\"a\": \"\\\"\",\n \"b\": {}}, 3, \"s\"\n]";
        assert_eq!(item_lines(text), vec![2, 4, 5, 5]);
        assert_eq!(item_lines("[]"), Vec::<usize>::new());
    }

    #[test]
    fn the_shape_of_a_csv_file_is_named_by_line() {
        let mut problems = Problems::default();
        let records = read(
            "f.csv",
            b"a,b\r\n1,2\r\n1,2,3\r\n\r\n\n4,\r\n\"x\ny\",z\n5,6",
            ImportFormat::Csv,
            FIELDS,
            &mut problems,
        );
        let lines: Vec<usize> = records.iter().map(|r| r.at.line).collect();
        assert_eq!(
            lines,
            vec![2, 6, 7, 9],
            "blank lines, CRLF and quoted breaks count"
        );
        assert!(
            !records[1].cells.contains_key("b"),
            "an empty cell is absent"
        );
        assert_eq!(problems.shown.len(), 1);
        assert_eq!(
            (problems.shown[0].at.line, problems.shown[0].field.as_str()),
            (3, "row")
        );

        let mut problems = Problems::default();
        read(
            "f.csv",
            b"b,c,110105194912310025\n",
            ImportFormat::Csv,
            FIELDS,
            &mut problems,
        );
        let shown: Vec<String> = problems.shown.iter().map(ToString::to_string).collect();
        assert_eq!(shown.len(), 3, "{shown:?}");
        assert!(shown[0].contains("column 2 (c)"), "{shown:?}");
        assert!(
            shown[1].contains("column 3 (?)"),
            "a value-like header is not repeated: {shown:?}"
        );
        assert!(shown[2].contains("a: column is missing"), "{shown:?}");
    }
}
