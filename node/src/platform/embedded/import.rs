//! Import of residents and licenses into the register from files, all or nothing: every
//! row of every file is read (`import_read`) and checked (`import_rows`) first; one bad
//! row and nothing is written, and the error names each bad row (up to
//! `MAX_PROBLEMS`) by line and field. Then
//! everything is written in one transaction with prepared statements (100,000 rows
//! take seconds), where a clash with what the register holds already (a license id
//! issued before) also undoes the whole import.

use std::{path::PathBuf, sync::Arc};

use rusqlite::{OptionalExtension, Transaction, params};
use tongban_proto::rules::{calendar::business_now, region::RegionPrefix, region::RegionTable};

use super::{
    database::EmbeddedPlatform,
    import_read::{ImportFormat, Problems, RowProblem},
    import_rows::{self, LicenseRow, ResidentRow, RowRules},
    licenses::{masked_name, type_code},
};
use crate::sqlite::{StoreError, now_ms};

/// What to import.
#[derive(Clone, Debug, Default)]
pub struct ImportFiles {
    /// Residents: `id_number`, `name`, optional `assurance_level` (low, substantial,
    /// high; default substantial). A resident registered already is updated.
    pub residents: Option<PathBuf>,
    /// Licenses: `license_type`, `holder_id_number`, `holder_name`, `issuing_region`,
    /// `valid_from`, optional `valid_until`, `fields` (a JSON object), `license_id`.
    pub licenses: Option<PathBuf>,
    /// The files' format; by default each file's extension (`.csv`, `.json`) says.
    pub format: Option<ImportFormat>,
}

/// What an import wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ImportSummary {
    pub residents: usize,
    pub licenses: usize,
}

/// Why nothing was imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "{path}: the format is not clear from the name; name the file .csv or .json, or say which"
    )]
    UnknownFormat { path: String },
    /// Rows that are wrong; nothing was imported.
    #[error("{total} problem(s) found; nothing was imported")]
    Rows {
        /// The first problems, in file order.
        problems: Vec<RowProblem>,
        /// Every problem found (more than shown when the file has many).
        total: usize,
    },
    #[error("import task failed: {0}")]
    Task(String),
    #[error(transparent)]
    Storage(#[from] StoreError),
}

/// The rows of both files, checked.
struct Checked {
    residents: Vec<ResidentRow>,
    licenses: Vec<LicenseRow>,
}

fn read_file(path: &std::path::Path) -> Result<Vec<u8>, ImportError> {
    std::fs::read(path).map_err(|source| ImportError::Read {
        path: path.display().to_string(),
        source,
    })
}

fn format_of(
    path: &std::path::Path,
    given: Option<ImportFormat>,
) -> Result<ImportFormat, ImportError> {
    given
        .or_else(|| ImportFormat::of_path(path))
        .ok_or_else(|| ImportError::UnknownFormat {
            path: path.display().to_string(),
        })
}

/// Reads and checks both files (CPU and file work: run off the async threads).
fn check_files(files: &ImportFiles, prefix: &RegionPrefix) -> Result<Checked, ImportError> {
    let rules = RowRules {
        table: RegionTable::embedded(),
        today: business_now().date(),
        prefix,
    };
    let mut problems = Problems::default();
    let residents = match &files.residents {
        None => Vec::new(),
        Some(path) => {
            let format = format_of(path, files.format)?;
            let bytes = read_file(path)?;
            let name = path.display().to_string();
            import_rows::residents(&name, &bytes, format, &rules, &mut problems)
        }
    };
    let licenses = match &files.licenses {
        None => Vec::new(),
        Some(path) => {
            let format = format_of(path, files.format)?;
            let bytes = read_file(path)?;
            let name = path.display().to_string();
            import_rows::licenses(&name, &bytes, format, &rules, &residents, &mut problems)
        }
    };
    if !problems.is_empty() {
        return Err(ImportError::Rows {
            problems: problems.shown,
            total: problems.total,
        });
    }
    Ok(Checked {
        residents,
        licenses,
    })
}

/// How often progress is reported while writing.
const PROGRESS_EVERY: usize = 1000;

/// Writes the checked rows in `tx`; clashes with the register are problems.
fn write_rows(
    tx: &Transaction<'_>,
    rows: &Checked,
    files: &ImportFiles,
    key: &[u8],
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Problems, StoreError> {
    let total = (rows.residents.len() + rows.licenses.len()) as u64;
    progress(0, total);
    let mut done = 0u64;
    let mut tick = |done: u64| {
        if done.is_multiple_of(PROGRESS_EVERY as u64) || done == total {
            progress(done, total);
        }
    };
    let mut resident = tx.prepare_cached(
        "INSERT INTO residents (id_hash, id_masked, name, home_region, birth_date, level,
            id_number)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (id_hash) DO UPDATE SET name = excluded.name, level = excluded.level,
            id_number = excluded.id_number",
    )?;
    let name = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
    let (residents_file, licenses_file) = (name(&files.residents), name(&files.licenses));
    let mut problems = Problems::default();
    for r in &rows.residents {
        let written = resident.execute(params![
            r.id.keyed_hash(key),
            r.id.masked(),
            r.name,
            r.id.home_region().as_str(),
            r.id.birth_date().to_string(),
            r.level as i32,
            r.id.as_str()
        ]);
        if let Some(why) = clash(written)? {
            let file = residents_file.as_deref().unwrap_or_default();
            problems.push(file, r.at, "id_number", why);
        }
        done += 1;
        tick(done);
    }
    let mut writer = LicenseWriter::new(tx)?;
    for l in &rows.licenses {
        if let Err(why) = writer.insert(l, key)? {
            let file = licenses_file.as_deref().unwrap_or_default();
            problems.push(file, l.at, "license_id", why);
        }
        done += 1;
        tick(done);
    }
    Ok(problems)
}

/// A constraint the register's data puts on a row (a number registered under another
/// key, a license id taken) as the row's problem; other failures as they are.
fn clash(written: rusqlite::Result<usize>) -> Result<Option<String>, StoreError> {
    match written {
        Ok(_) => Ok(None),
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            Ok(Some(
                "clashes with what the register holds already".to_owned(),
            ))
        }
        Err(e) => Err(e.into()),
    }
}

/// The prepared statements that issue licenses.
struct LicenseWriter<'t> {
    holder: rusqlite::CachedStatement<'t>,
    exists: rusqlite::CachedStatement<'t>,
    next: rusqlite::CachedStatement<'t>,
    insert: rusqlite::CachedStatement<'t>,
}

impl<'t> LicenseWriter<'t> {
    fn new(tx: &'t Transaction<'_>) -> Result<Self, StoreError> {
        Ok(Self {
            // A holder the register does not know yet is registered with the name the
            // license gives (as `issue_license` does).
            holder: tx.prepare_cached(
                "INSERT OR IGNORE INTO residents (id_hash, id_masked, name, home_region,
                    birth_date, level, id_number)
                 VALUES (?1, ?2, ?3, ?4, ?5, 2, ?6)",
            )?,
            exists: tx.prepare_cached("SELECT 1 FROM licenses WHERE license_number = ?1")?,
            next: tx.prepare_cached("SELECT COALESCE(MAX(rowid), 0) + 1 FROM licenses")?,
            insert: tx.prepare_cached(
                "INSERT INTO licenses (license_number, license_type, holder_hash, issuer_region,
                    issued_on, holder_name_masked, fields, valid_from, valid_until, issued_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?,
        })
    }

    /// Issues one license; `Ok(Err(why))` when its id is issued already.
    fn insert(&mut self, l: &LicenseRow, key: &[u8]) -> Result<Result<(), String>, StoreError> {
        let hash = l.holder.keyed_hash(key);
        let registered = self.holder.execute(params![
            hash,
            l.holder.masked(),
            l.holder_name,
            l.holder.home_region().as_str(),
            l.holder.birth_date().to_string(),
            l.holder.as_str()
        ]);
        if let Some(why) = clash(registered)? {
            return Ok(Err(format!("holder: {why}")));
        }
        let id = match &l.license_id {
            Some(id) => {
                if self
                    .exists
                    .query_row([id], |_| Ok(()))
                    .optional()?
                    .is_some()
                {
                    return Ok(Err("is issued already (in the register)".to_owned()));
                }
                id.clone()
            }
            None => {
                let next: i64 = self.next.query_row([], |r| r.get(0))?;
                format!(
                    "{}-{}-{next:07}",
                    l.issuing_region,
                    type_code(&l.license_type)
                )
            }
        };
        let fields = serde_json::to_string(&l.fields).unwrap_or_else(|_| "{}".into());
        let inserted = self.insert.execute(params![
            id,
            l.license_type,
            hash,
            l.issuing_region,
            l.valid_from,
            masked_name(&l.holder_name),
            fields,
            l.valid_from,
            l.valid_until,
            now_ms()
        ]);
        Ok(clash(inserted)?.map_or(Ok(()), Err))
    }
}

impl EmbeddedPlatform {
    /// Imports residents and licenses from files, all or nothing (see the module docs).
    /// `progress(done, total)` is called while rows are written (from a blocking
    /// thread), so a terminal can show it. `id_hash_key` keys the register's hashes
    /// (the key the platform's lookups use).
    pub async fn import(
        &self,
        files: ImportFiles,
        id_hash_key: Arc<[u8]>,
        mut progress: impl FnMut(u64, u64) + Send + 'static,
    ) -> Result<ImportSummary, ImportError> {
        let prefix = RegionPrefix::parse(&self.prefix)
            .map_err(|e| ImportError::Task(format!("platform region: {e}")))?;
        let (rows, files) = tokio::task::spawn_blocking(move || {
            check_files(&files, &prefix).map(|rows| (rows, files))
        })
        .await
        .map_err(|e| ImportError::Task(e.to_string()))??;
        let summary = ImportSummary {
            residents: rows.residents.len(),
            licenses: rows.licenses.len(),
        };
        let problems = self
            .db
            .call(move |conn| {
                let tx = conn.transaction()?;
                let problems = write_rows(&tx, &rows, &files, &id_hash_key, &mut progress)?;
                if problems.is_empty() {
                    tx.commit()?;
                }
                Ok(problems)
            })
            .await?;
        if !problems.is_empty() {
            return Err(ImportError::Rows {
                problems: problems.shown,
                total: problems.total,
            });
        }
        Ok(summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::embedded::synthetic::synthetic_residents;
    use std::path::Path;
    use tongban_proto::rules::resident_id::check_character;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("tongban-import-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn open(dir: &Path) -> Arc<EmbeddedPlatform> {
        EmbeddedPlatform::open(&dir.join("p.db"), &RegionPrefix::parse("44").unwrap()).unwrap()
    }

    fn key() -> Arc<[u8]> {
        Arc::from(&b"import-key"[..])
    }

    /// Residents of Guangdong with valid numbers, for the files.
    fn people(n: u32) -> Vec<(String, String)> {
        synthetic_residents(
            RegionTable::embedded(),
            &RegionPrefix::parse("44").unwrap(),
            n,
        )
        .into_iter()
        .map(|r| (r.id.as_str().to_owned(), r.name))
        .collect()
    }

    /// `first` with a wrong check character.
    fn broken(first: &str) -> String {
        let last = if first.ends_with('0') { '1' } else { '0' };
        format!("{}{last}", &first[..17])
    }

    async fn count(platform: &EmbeddedPlatform, table: &'static str) -> i64 {
        platform
            .db
            .call(move |c| {
                Ok(c.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))?)
            })
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn csv_files_import_and_answer_by_id_number() {
        let dir = scratch("csv");
        let p = people(3);
        let residents = format!(
            "id_number,name,assurance_level\n{},{},high\n{},{},\n",
            p[0].0, p[0].1, p[1].0, p[1].1
        );
        let licenses = format!(
            "license_type,holder_id_number,holder_name,issuing_region,valid_from,valid_until,fields,license_id\n\
             household_register,{},{},440106,2020-01-01,,\"{{\"\"registered_region\"\": \"\"440106\"\"}}\",440106-HR-A1\n\
             marriage_certificate,{},{},440000,2021-05-20,2031-05-19,,\n",
            p[0].0, p[0].1, p[2].0, p[2].1
        );
        std::fs::write(dir.join("r.csv"), residents).unwrap();
        std::fs::write(dir.join("l.csv"), licenses).unwrap();
        let platform = open(&dir);
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        let summary = platform
            .import(
                ImportFiles {
                    residents: Some(dir.join("r.csv")),
                    licenses: Some(dir.join("l.csv")),
                    format: None,
                },
                key(),
                move |done, total| log.lock().unwrap().push((done, total)),
            )
            .await
            .unwrap();
        assert_eq!(
            summary,
            ImportSummary {
                residents: 2,
                licenses: 2
            }
        );
        assert_eq!(seen.lock().unwrap().last(), Some(&(4, 4)));

        let person = platform
            .person_by_id_number(&p[0].0)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (person.name.as_str(), person.assurance_level.as_str()),
            (p[0].1.as_str(), "high")
        );
        let held = platform.licenses_by_holder_id(&p[0].0).await.unwrap();
        assert_eq!(held.len(), 1);
        assert_eq!(held[0].license_id, "440106-HR-A1");
        assert_eq!(held[0].fields["registered_region"], "440106");
        assert_eq!(held[0].valid_until, None);
        // A holder not in the residents file is registered with the license's name.
        let theirs = platform.licenses_by_holder_id(&p[2].0).await.unwrap();
        assert_eq!(theirs.len(), 1);
        assert!(
            theirs[0].license_id.starts_with("440000-MC-"),
            "{}",
            theirs[0].license_id
        );
        assert_eq!(theirs[0].holder_name, p[2].1);
        let by_id = platform
            .license_with_holder(&theirs[0].license_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(by_id.holder_id_number, p[2].0);
        assert_eq!(by_id.valid_until.as_deref(), Some("2031-05-19"));
        drop(platform);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn a_bad_row_imports_nothing_and_is_named_by_line_and_field() {
        let dir = scratch("bad-csv");
        let p = people(4);
        let residents = format!(
            "id_number,name\n{},{}\n{},{}\n{},\n{},{}\n",
            p[0].0,
            p[0].1,
            broken(&p[1].0),
            p[1].1,
            p[2].0,
            p[0].0,
            p[3].1
        );
        let licenses = format!(
            "license_type,holder_id_number,holder_name,issuing_region,valid_from,valid_until\n\
             household_register,{},{},440106,2020-02-30,\n\
             household_register,{},{},110105,2020-01-01,2019-01-01\n",
            p[0].0, p[0].1, p[0].0, p[0].1
        );
        std::fs::write(dir.join("r.csv"), residents).unwrap();
        std::fs::write(dir.join("l.csv"), licenses).unwrap();
        let platform = open(&dir);
        let err = platform
            .import(
                ImportFiles {
                    residents: Some(dir.join("r.csv")),
                    licenses: Some(dir.join("l.csv")),
                    format: None,
                },
                key(),
                |_, _| {},
            )
            .await
            .unwrap_err();
        let ImportError::Rows { problems, total } = err else {
            panic!("{err:?}")
        };
        let named: Vec<(usize, &str)> = problems
            .iter()
            .map(|p| (p.at.line, p.field.as_str()))
            .collect();
        assert_eq!(
            named,
            vec![
                (3, "id_number"),
                (4, "name"),
                (5, "id_number"),
                (2, "valid_from"),
                (3, "issuing_region"),
                (3, "valid_until"),
            ],
            "{problems:#?}"
        );
        assert_eq!(total, 6);
        assert!(problems[2].why.contains("appears again (first at line 2)"));
        assert!(
            problems[0].why.contains("check character"),
            "{}",
            problems[0].why
        );
        assert!(problems[0].to_string().starts_with(&format!(
            "{}: line 3: id_number:",
            dir.join("r.csv").display()
        )));
        // No personal data appears in any problem.
        for problem in &problems {
            let shown = problem.to_string();
            assert!(
                p.iter().all(
                    |(id, name)| !shown.contains(id.as_str()) && !shown.contains(name.as_str())
                ),
                "{shown}"
            );
        }
        assert_eq!(count(&platform, "residents").await, 0);
        assert_eq!(count(&platform, "licenses").await, 0);
        drop(platform);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn json_files_name_the_item_and_its_line() {
        let dir = scratch("json");
        let p = people(2);
        let good = format!(
            "[\n  {{\"id_number\": \"{}\", \"name\": \"{}\"}},\n  {{\n    \"id_number\": \"{}\",\n    \"name\": \"{}\", \"assurance_level\": \"low\"\n  }}\n]\n",
            p[0].0, p[0].1, p[1].0, p[1].1
        );
        std::fs::write(dir.join("r.json"), &good).unwrap();
        let licenses = format!(
            "[{{\"license_type\": \"social_security_card\", \"holder_id_number\": \"{}\", \
              \"holder_name\": \"{}\", \"issuing_region\": \"440106\", \"valid_from\": \"2020-01-01\", \
              \"fields\": {{\"insured_region\": \"440106\"}}}}]",
            p[1].0, p[1].1
        );
        std::fs::write(dir.join("l.json"), licenses).unwrap();
        let platform = open(&dir);
        let files = ImportFiles {
            residents: Some(dir.join("r.json")),
            licenses: Some(dir.join("l.json")),
            format: None,
        };
        let summary = platform
            .import(files.clone(), key(), |_, _| {})
            .await
            .unwrap();
        assert_eq!(
            summary,
            ImportSummary {
                residents: 2,
                licenses: 1
            }
        );
        let person = platform
            .person_by_id_number(&p[1].0)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(person.assurance_level, "low");

        // Importing the same residents again updates them; an item with a bad field
        // and one with a number where text belongs are named by index and line.
        let bad = format!(
            "[\n  {{\"id_number\": \"{}\", \"name\": \"{}\"}},\n  {{\"id_number\": 110, \"name\": \"x\"}},\n  {{\"id_number\": \"{}\", \"name\": \"a\\u0007b\"}}\n]",
            p[0].0, p[0].1, p[1].0
        );
        std::fs::write(dir.join("bad.json"), bad).unwrap();
        let err = platform
            .import(
                ImportFiles {
                    residents: Some(dir.join("bad.json")),
                    ..Default::default()
                },
                key(),
                |_, _| {},
            )
            .await
            .unwrap_err();
        let ImportError::Rows { problems, .. } = err else {
            panic!("{err:?}")
        };
        let named: Vec<(usize, Option<usize>, &str)> = problems
            .iter()
            .map(|p| (p.at.line, p.at.item, p.field.as_str()))
            .collect();
        assert_eq!(
            named,
            vec![(3, Some(1), "id_number"), (4, Some(2), "name")],
            "{problems:#?}"
        );
        assert!(
            problems[0]
                .to_string()
                .contains("line 3 (item 1): id_number: must be a string")
        );

        std::fs::write(dir.join("broken.json"), "[{\"id_number\": ").unwrap();
        let err = platform
            .import(
                ImportFiles {
                    residents: Some(dir.join("broken.json")),
                    ..Default::default()
                },
                key(),
                |_, _| {},
            )
            .await
            .unwrap_err();
        assert!(err.to_string().contains("1 problem"), "{err}");
        drop(platform);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn a_license_id_issued_before_undoes_the_whole_import() {
        let dir = scratch("clash");
        let p = people(2);
        let file = |id: &str| {
            format!(
                "license_type,holder_id_number,holder_name,issuing_region,valid_from,license_id\n\
                 resident_id_card,{},{},440106,2020-01-01,\n\
                 resident_id_card,{},{},440106,2020-01-01,{id}\n",
                p[1].0, p[1].1, p[0].0, p[0].1
            )
        };
        std::fs::write(dir.join("a.csv"), file("440106-RIC-X1")).unwrap();
        std::fs::write(dir.join("b.csv"), file("440106-RIC-X1")).unwrap();
        let platform = open(&dir);
        let files = |name: &str| ImportFiles {
            licenses: Some(dir.join(name)),
            ..Default::default()
        };
        platform
            .import(files("a.csv"), key(), |_, _| {})
            .await
            .unwrap();
        let err = platform
            .import(files("b.csv"), key(), |_, _| {})
            .await
            .unwrap_err();
        let ImportError::Rows { problems, .. } = err else {
            panic!("{err:?}")
        };
        assert_eq!(
            (problems[0].at.line, problems[0].field.as_str()),
            (3, "license_id")
        );
        assert_eq!(
            count(&platform, "licenses").await,
            2,
            "the first row of b.csv was undone"
        );
        assert!(matches!(
            platform
                .import(
                    ImportFiles {
                        licenses: Some(dir.join("x.txt")),
                        ..Default::default()
                    },
                    key(),
                    |_, _| {}
                )
                .await,
            Err(ImportError::UnknownFormat { .. })
        ));
        drop(platform);
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// `n` distinct valid ID numbers of one county.
    fn numbers(n: usize) -> Vec<String> {
        let start = time::macros::date!(1960 - 01 - 01);
        (0..n)
            .map(|i| {
                let born = start + time::Duration::days((i / 1000) as i64);
                let first17 = format!(
                    "440106{}{:03}",
                    born.format(time::macros::format_description!("[year][month][day]"))
                        .unwrap(),
                    i % 1000
                );
                let digits: [u8; 17] = first17.as_bytes().try_into().unwrap();
                format!("{first17}{}", check_character(&digits))
            })
            .collect()
    }

    #[tokio::test]
    async fn a_large_file_imports_in_one_transaction() {
        let n = std::env::var("TONGBAN_IMPORT_ROWS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(20_000);
        let dir = scratch("large");
        let mut residents = String::from("id_number,name\n");
        let mut licenses =
            String::from("license_type,holder_id_number,holder_name,issuing_region,valid_from\n");
        for id in numbers(n) {
            residents.push_str(&format!("{id},张三\n"));
            licenses.push_str(&format!("resident_id_card,{id},张三,440106,2020-01-01\n"));
        }
        std::fs::write(dir.join("r.csv"), residents).unwrap();
        std::fs::write(dir.join("l.csv"), licenses).unwrap();
        let platform = open(&dir);
        let started = std::time::Instant::now();
        let calls = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counted = calls.clone();
        let summary = platform
            .import(
                ImportFiles {
                    residents: Some(dir.join("r.csv")),
                    licenses: Some(dir.join("l.csv")),
                    format: None,
                },
                key(),
                move |_, _| {
                    counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                },
            )
            .await
            .unwrap();
        eprintln!(
            "imported {n} residents and {n} licenses in {:?}",
            started.elapsed()
        );
        assert_eq!(
            summary,
            ImportSummary {
                residents: n,
                licenses: n
            }
        );
        assert!(
            calls.load(std::sync::atomic::Ordering::Relaxed) as usize >= 2 * n / PROGRESS_EVERY
        );
        assert_eq!(count(&platform, "licenses").await, n as i64);
        drop(platform);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
