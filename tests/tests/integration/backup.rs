//! Backup and restore of a node's state with real processes and real databases, through
//! the operator's CLI (`tongban store backup|restore`): 11, 31 and 44 as processes, 31
//! filing for 44's residents while its state is backed up mid-load — its store on the
//! kit's PostgreSQL (pg_dump / pg_restore) or on SQLite (the online backup API), its
//! embedded register (SQLite) with it. The backup is restored into new databases, 31
//! restarted on them, and the restored node serves every case the backup holds (each
//! one receipted before the backup began among them) and resolves every resident of its
//! register; its outbox drains without a case taken twice at 44. Then the refusals,
//! each naming why: a restore into a database or file in use (refused before anything
//! is written), of another region's backup, of a store with a register from elsewhere;
//! a backup of a store that is not there; and a node started on a restored store with
//! a register from elsewhere, which exits naming the keyed-hash secret.

#![allow(clippy::unwrap_used)]

use std::{
    collections::{BTreeMap, BTreeSet},
    ffi::OsStr,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::task::JoinSet;
use tongban_kit::{
    Launch, Member, RunningNode,
    postgres::PostgresCluster,
    testing::{TestFederation, cli_binary, eventually, medical_filing, processes, start_with},
};
use tongban_node::{
    backup::{Manifest, read_manifest},
    platform::embedded::{EmbeddedPlatform, SyntheticResident, fingerprint},
    portal_client::PortalClient,
};
use tongban_proto::rules::{
    region::{RegionPrefix, RegionTable},
    resident_id::ResidentId,
};

use super::faults::{not_exactly_once, outboxes_drained, platform_rows};

/// Filings in the load, and how many are receipted before the backup starts.
const FILINGS: usize = 400;
const BEFORE_BACKUP: usize = 100;
/// Filings in flight at once.
const CONCURRENCY: usize = 8;
/// Residents seeded into each embedded register.
const RESIDENTS: u32 = 100;

/// A load of filings at one portal for 44's residents, each retried with its
/// idempotency key until receipted; the receipted case numbers can be read mid-load.
struct Filings {
    receipted: Arc<Mutex<BTreeSet<String>>>,
    count: Arc<AtomicUsize>,
    tasks: JoinSet<()>,
}

impl Filings {
    fn start(portal: PortalClient, residents: Vec<SyntheticResident>, scenario: &str) -> Self {
        let receipted = Arc::new(Mutex::new(BTreeSet::new()));
        let count = Arc::new(AtomicUsize::new(0));
        let next = Arc::new(AtomicUsize::new(0));
        let mut tasks = JoinSet::new();
        for _ in 0..CONCURRENCY {
            let (portal, residents, scenario) =
                (portal.clone(), residents.clone(), scenario.to_owned());
            let (receipted, count, next) = (receipted.clone(), count.clone(), next.clone());
            tasks.spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= FILINGS {
                        return;
                    }
                    let filing = medical_filing(&residents[i % residents.len()]);
                    let key = format!("{scenario}-{i}");
                    let deadline = Instant::now() + Duration::from_secs(60);
                    loop {
                        match portal.file_with_key(&filing, &key).await {
                            Ok(r) if r.status == 201 || r.status == 200 => {
                                let case = r.body["case_number"].as_str().unwrap().to_owned();
                                receipted.lock().unwrap().insert(case);
                                count.fetch_add(1, Ordering::Relaxed);
                                break;
                            }
                            Ok(r) if r.status < 500 => {
                                panic!("filing {key} refused: {} {}", r.status, r.body)
                            }
                            _ => {
                                assert!(Instant::now() < deadline, "{key} never receipted");
                                tokio::time::sleep(Duration::from_millis(100)).await;
                            }
                        }
                    }
                }
            });
        }
        Self {
            receipted,
            count,
            tasks,
        }
    }

    /// The cases receipted so far.
    fn receipted(&self) -> BTreeSet<String> {
        self.receipted.lock().unwrap().clone()
    }

    fn count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    async fn reached(&self, count: usize) {
        eventually(Duration::from_secs(60), "load progress", || async {
            (self.count() >= count).then_some(())
        })
        .await;
    }

    async fn finish(mut self) -> BTreeSet<String> {
        while let Some(done) = self.tasks.join_next().await {
            done.unwrap();
        }
        self.receipted()
    }
}

/// 11, 31 and 44 as processes, 31's store on the kit's PostgreSQL if `postgres`; every
/// node on its embedded platform.
async fn federation(postgres: bool) -> TestFederation {
    start_with(&["110000", "310000", "440000"], |spec| {
        spec.launch = processes("warn");
        spec.seed_residents = RESIDENTS;
        if postgres {
            spec.postgres_stores = vec!["31".into()];
        }
    })
    .await
}

/// `tongban <args>`; its output, failing the test if it does not end within a minute.
async fn tongban<S: AsRef<OsStr>>(args: &[S]) -> std::process::Output {
    let run = tokio::process::Command::new(cli_binary())
        .args(args)
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("tongban ends within a minute")
        .expect("tongban runs")
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `tongban store backup`, which must succeed; how long it took.
async fn backup(config: &Path, out: &Path) -> Duration {
    let started = Instant::now();
    let run = tongban(&[
        OsStr::new("store"),
        OsStr::new("backup"),
        OsStr::new("--node-config"),
        config.as_os_str(),
        OsStr::new("--out"),
        out.as_os_str(),
    ])
    .await;
    assert!(run.status.success(), "backup failed: {}", text(&run));
    started.elapsed()
}

/// `tongban store restore`: whether it succeeded, and what it said.
async fn try_restore(config: &Path, from: &Path) -> (bool, String) {
    let run = tongban(&[
        OsStr::new("store"),
        OsStr::new("restore"),
        OsStr::new("--node-config"),
        config.as_os_str(),
        OsStr::new("--from"),
        from.as_os_str(),
    ])
    .await;
    (run.status.success(), text(&run))
}

/// `tongban store restore`, which must succeed; how long it took.
async fn restore(config: &Path, from: &Path) -> Duration {
    let started = Instant::now();
    let (ok, said) = try_restore(config, from).await;
    assert!(ok, "restore failed: {said}");
    assert!(said.contains("checked"), "{said}");
    started.elapsed()
}

/// Writes beside `original` a copy of it, `name`, whose `[store]` is `store` (a
/// PostgreSQL URL, or a SQLite file) and whose embedded platform is `platform_db`.
fn config_copy(original: &Path, name: &str, store: Store<'_>, platform_db: &str) -> PathBuf {
    let mut config: toml::Table = std::fs::read_to_string(original).unwrap().parse().unwrap();
    match store {
        Store::Postgres(url) => {
            config["store"].as_table_mut().unwrap()["url"] = url.into();
        }
        Store::Sqlite(file) => config["store"] = file.into(),
    }
    config["platform"].as_table_mut().unwrap()["database"] = platform_db.into();
    let path = original.with_file_name(name);
    std::fs::write(&path, toml::to_string(&config).unwrap()).unwrap();
    path
}

enum Store<'a> {
    Postgres(&'a str),
    Sqlite(&'a str),
}

/// Stops 31, puts `config` in its config's place (the original kept beside it as
/// `node-31.original.toml`) and starts 31 again from it, on its old ports.
async fn restart_31_on(t: &mut TestFederation, config: &Path) {
    let member = Member::Node("31".into());
    t.fed.stop(&member).await.unwrap();
    let path = t.fed.node("31").unwrap().config_path.clone();
    std::fs::copy(&path, path.with_file_name("node-31.original.toml")).unwrap();
    std::fs::copy(config, &path).unwrap();
    t.fed.restart(&member).await.unwrap();
}

/// Each of `cases` read through `portal` (with the receipts' tokens it was given):
/// `GET /v1/applications/<case>` answers 200 with that case.
async fn serves_every_case(portal: &PortalClient, cases: &BTreeSet<String>) {
    let cases: Vec<String> = cases.iter().cloned().collect();
    for chunk in cases.chunks(CONCURRENCY * 4) {
        let mut reads = JoinSet::new();
        for case in chunk {
            let (portal, case) = (portal.clone(), case.clone());
            reads.spawn(async move {
                let r = portal.status(&case).await.unwrap();
                assert_eq!(r.status, 200, "{case}: {}", r.body);
                assert_eq!(r.body["case_number"], case.as_str(), "{}", r.body);
                assert!(
                    r.body["receipt"].is_object(),
                    "{case}: no receipt {}",
                    r.body
                );
            });
        }
        while let Some(done) = reads.join_next().await {
            done.unwrap();
        }
    }
}

/// Each of `residents` is found in `node`'s register by the keyed hash of their ID
/// number under the node's (restored) secret, with their name.
async fn every_resident_resolves(node: &RunningNode, residents: &[SyntheticResident]) {
    use tongban_node::platform::{LicenseRegistry, Purpose, Subject};
    let key = node.store.id_hash_key().await.unwrap();
    let purpose = Purpose::new("backup-check", "");
    for r in residents {
        let hash = r.id.keyed_hash(&key);
        let subject = Subject {
            id_number: r.id.as_str(),
            id_hash: &hash,
        };
        let person = node.platform.person(subject, &purpose).await.unwrap();
        assert!(
            person.is_some_and(|p| p.name == r.name),
            "resident {} unresolved",
            r.id.masked()
        );
    }
}

/// Every person of the register at `register` whose ID number it keeps is filed under
/// the keyed hash `key` gives that number; how many there are.
async fn register_hashed_with(register: &Path, key: Vec<u8>) -> usize {
    let register = register.to_owned();
    tokio::task::spawn_blocking(move || {
        let conn = rusqlite::Connection::open_with_flags(
            &register,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        let mut stmt = conn
            .prepare("SELECT id_hash, id_number FROM residents WHERE id_number IS NOT NULL")
            .unwrap();
        let rows: Vec<(String, String)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        for (hash, number) in &rows {
            let id = ResidentId::parse(number, RegionTable::embedded(), time::Date::MAX).unwrap();
            assert_eq!(
                &id.keyed_hash(&key),
                hash,
                "a person filed under another hash"
            );
        }
        rows.len()
    })
    .await
    .unwrap()
}

/// The `applications` rows of a node's SQLite store: case number → what the citizen was
/// given and filed (applicant hash, receipt, payload).
async fn sqlite_applications(store: &Path) -> BTreeMap<String, String> {
    let store = store.to_owned();
    tokio::task::spawn_blocking(move || {
        let conn = rusqlite::Connection::open_with_flags(
            &store,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        let mut stmt = conn
            .prepare(
                "SELECT case_number, applicant_hash || '|' || receipt || '|' || hex(payload)
                 FROM applications",
            )
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    })
    .await
    .unwrap()
}

/// The same of a PostgreSQL store, database `db` of `cluster`.
async fn postgres_applications(
    cluster: &Arc<PostgresCluster>,
    db: &str,
) -> BTreeMap<String, String> {
    let (cluster, db) = (cluster.clone(), db.to_owned());
    let out = tokio::task::spawn_blocking(move || {
        cluster.psql(
            &db,
            "SELECT case_number || '|' || applicant_hash || '|' || md5(receipt) || '|' || \
             md5(payload) FROM applications",
        )
    })
    .await
    .unwrap()
    .unwrap();
    out.lines()
        .filter_map(|l| l.split_once('|'))
        .map(|(case, rest)| (case.to_owned(), rest.to_owned()))
        .collect()
}

/// What a restored node must show, whatever its store's kind.
struct Restored<'a> {
    /// Cases receipted before the backup started, and all of the load's.
    before: &'a BTreeSet<String>,
    all: &'a BTreeSet<String>,
    /// The restored store's cases, and the original's as they are now.
    restored: &'a BTreeMap<String, String>,
    original: &'a BTreeMap<String, String>,
    manifest: &'a Manifest,
    /// The original store's keyed-hash secret's fingerprint.
    original_fingerprint: &'a str,
    /// The restored register.
    register: &'a Path,
    /// The portal client the cases were filed through (it holds their receipts' tokens).
    filed_through: &'a PortalClient,
}

/// Checks a restored 31 (already restarted on the restored databases): the backup holds
/// what was receipted before it began, as the original holds it; the node serves every
/// case and resolves every resident; its outbox drains and 44 holds each case once.
async fn check_restored(t: &TestFederation, scenario: &str, r: Restored<'_>) {
    let cases: BTreeSet<String> = r.restored.keys().cloned().collect();
    let missing: Vec<_> = r.before.difference(&cases).collect();
    assert!(
        missing.is_empty(),
        "receipted before the backup, not in it: {missing:?}"
    );
    let unknown: Vec<_> = cases.difference(r.all).collect();
    assert!(
        unknown.is_empty(),
        "in the backup, never receipted: {unknown:?}"
    );
    for (case, row) in r.restored {
        assert_eq!(
            r.original.get(case),
            Some(row),
            "{case} differs from the original"
        );
    }
    assert_eq!(r.manifest.id_hash_key_fingerprint, r.original_fingerprint);
    assert_eq!(r.manifest.region, "310000");
    assert!(
        r.manifest.platform_file.is_some(),
        "the register travels with the store"
    );

    let node = t.fed.node("31").unwrap();
    let key = node.store.id_hash_key().await.unwrap();
    assert_eq!(fingerprint(&key), r.original_fingerprint);
    let started = Instant::now();
    serves_every_case(r.filed_through, &cases).await;
    let read = started.elapsed();
    let residents = t.residents("31");
    every_resident_resolves(node, &residents).await;
    let persons = register_hashed_with(r.register, key).await;
    assert!(
        persons >= residents.len(),
        "{persons} persons in the register"
    );

    // What the backup still owed 44 goes again; 44 takes each case once.
    outboxes_drained(t, &["31"], Duration::from_secs(60)).await;
    if let Some(wrong) = not_exactly_once(&platform_rows(t, "44").await, r.all) {
        panic!("{scenario}: not each case exactly once at 44 after the restore: {wrong}");
    }
    println!(
        "{scenario}: restored node served all {} cases of the backup in {:.1} s ({} \
         receipted before the backup began, {} in all), resolved {} residents, its \
         register's {persons} persons all under the store's secret",
        cases.len(),
        read.as_secs_f64(),
        r.before.len(),
        r.all.len(),
        residents.len(),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_store_backed_up_mid_load_restores_every_case_and_resident() {
    let mut t = federation(true).await;
    let cluster = t.fed.postgres.clone().unwrap();
    let config = t.fed.node("31").unwrap().config_path.clone();
    let original_fingerprint =
        fingerprint(&t.fed.node("31").unwrap().store.id_hash_key().await.unwrap());
    every_resident_resolves(t.fed.node("31").unwrap(), &t.residents("31")).await;
    let portal = t.fed.node("31").unwrap().portal.clone();

    let load = Filings::start(portal.clone(), t.residents("44"), "pg-backup");
    load.reached(BEFORE_BACKUP).await;
    let before = load.receipted();
    let out = t.dir.path().join("backup-31");
    let took_backup = backup(&config, &out).await;
    let during = load.count() - before.len();
    // Filings kept going all along: the backup ended before the load did.
    assert!(
        before.len() + during < FILINGS,
        "the load ended before the backup"
    );
    let all = load.finish().await;
    assert_eq!(all.len(), FILINGS);
    outboxes_drained(&t, &["31"], Duration::from_secs(60)).await;

    let c = cluster.clone();
    tokio::task::spawn_blocking(move || c.create_database("node_31_restored"))
        .await
        .unwrap()
        .unwrap();
    let url = cluster.url("node_31_restored");
    let copy = config_copy(
        &config,
        "node-31-restored.toml",
        Store::Postgres(&url),
        "platform-31-restored.db",
    );
    let took_restore = restore(&copy, &out).await;
    let manifest = read_manifest(&out).unwrap();
    assert_eq!(manifest.store_kind, "postgres");
    let restored = postgres_applications(&cluster, "node_31_restored").await;
    let original = postgres_applications(&cluster, "node_31").await;
    println!(
        "postgres: backup of {} cases (of {} receipted by then, {} before it began) took \
         {:.2} s while {during} more were receipted; restore took {:.2} s",
        restored.len(),
        before.len() + during,
        before.len(),
        took_backup.as_secs_f64(),
        took_restore.as_secs_f64()
    );

    restart_31_on(&mut t, &copy).await;
    let register = t.dir.path().join("platform-31-restored.db");
    check_restored(
        &t,
        "postgres",
        Restored {
            before: &before,
            all: &all,
            restored: &restored,
            original: &original,
            manifest: &manifest,
            original_fingerprint: &original_fingerprint,
            register: &register,
            filed_through: &portal,
        },
    )
    .await;
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_store_backed_up_mid_load_restores_every_case_and_resident() {
    let mut t = federation(false).await;
    let config = t.fed.node("31").unwrap().config_path.clone();
    let original_fingerprint =
        fingerprint(&t.fed.node("31").unwrap().store.id_hash_key().await.unwrap());
    let portal = t.fed.node("31").unwrap().portal.clone();

    let load = Filings::start(portal.clone(), t.residents("44"), "sqlite-backup");
    load.reached(BEFORE_BACKUP).await;
    let before = load.receipted();
    let out = t.dir.path().join("backup-31");
    let took_backup = backup(&config, &out).await;
    let during = load.count() - before.len();
    // Filings kept going all along: the backup ended before the load did.
    assert!(
        before.len() + during < FILINGS,
        "the load ended before the backup"
    );
    let all = load.finish().await;
    assert_eq!(all.len(), FILINGS);
    outboxes_drained(&t, &["31"], Duration::from_secs(60)).await;

    let copy = config_copy(
        &config,
        "node-31-restored.toml",
        Store::Sqlite("restored/node-31.db"),
        "restored/platform-31.db",
    );
    let took_restore = restore(&copy, &out).await;
    let manifest = read_manifest(&out).unwrap();
    assert_eq!(manifest.store_kind, "sqlite");
    let dir = t.dir.path().to_owned();
    let restored = sqlite_applications(&dir.join("restored/node-31.db")).await;
    let original = sqlite_applications(&dir.join("node-31.db")).await;
    println!(
        "sqlite: backup of {} cases (of {} receipted by then, {} before it began) took \
         {:.2} s while {during} more were receipted; restore took {:.2} s",
        restored.len(),
        before.len() + during,
        before.len(),
        took_backup.as_secs_f64(),
        took_restore.as_secs_f64()
    );

    restart_31_on(&mut t, &copy).await;
    check_restored(
        &t,
        "sqlite",
        Restored {
            before: &before,
            all: &all,
            restored: &restored,
            original: &original,
            manifest: &manifest,
            original_fingerprint: &original_fingerprint,
            register: &dir.join("restored/platform-31.db"),
            filed_through: &portal,
        },
    )
    .await;
    t.shutdown().await;
}

/// A register of 44 at `path`, seeded and bound under a secret no node has; closed, so
/// its file can be copied whole.
async fn foreign_register(path: &Path) -> PathBuf {
    let prefix = RegionPrefix::parse("44").unwrap();
    let other: Arc<[u8]> = Arc::from(&[7u8; 32][..]);
    let register = EmbeddedPlatform::open(path, &prefix).unwrap();
    register
        .seed(RegionTable::embedded(), &prefix, RESIDENTS, other.clone())
        .await
        .unwrap();
    register.bind_id_hash_key(other).await.unwrap();
    drop(register);
    let wal = path.with_file_name(format!(
        "{}-wal",
        path.file_name().unwrap().to_string_lossy()
    ));
    assert!(!wal.exists(), "the register's WAL outlived its connection");
    path.to_owned()
}

/// The `tongban-node` binary the kit runs.
fn node_binary() -> PathBuf {
    match processes("warn") {
        Launch::Processes { bin_dir, .. } => bin_dir.join("tongban-node"),
        Launch::InProcess => unreachable!("processes() runs processes"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restores_into_databases_in_use_and_foreign_registers_are_refused() {
    // 31 on PostgreSQL, 44 on SQLite; in this process (nothing here needs a kill).
    let t = start_with(&["310000", "440000"], |spec| {
        spec.postgres_stores = vec!["31".into()];
    })
    .await;
    let cluster = t.fed.postgres.clone().unwrap();
    let dir = t.dir.path().to_owned();
    let (config_31, config_44) = (
        t.fed.node("31").unwrap().config_path.clone(),
        t.fed.node("44").unwrap().config_path.clone(),
    );
    let filing = medical_filing(&t.residents("44")[0]);
    let receipt = t
        .fed
        .node("31")
        .unwrap()
        .portal
        .file(&filing)
        .await
        .unwrap();
    assert_eq!(receipt.status, 201, "{}", receipt.body);
    let (backup_31, backup_44) = (dir.join("backup-31"), dir.join("backup-44"));
    backup(&config_31, &backup_31).await;
    backup(&config_44, &backup_44).await;

    // A backup goes into a new folder only.
    let again = tongban(&[
        OsStr::new("store"),
        OsStr::new("backup"),
        OsStr::new("--node-config"),
        config_44.as_os_str(),
        OsStr::new("--out"),
        backup_44.as_os_str(),
    ])
    .await;
    assert!(!again.status.success());
    assert!(text(&again).contains("is not empty"), "{}", text(&again));

    // PostgreSQL: the node's own database holds a store already; untouched.
    let cases = || {
        let c = cluster.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                c.psql("node_31", "SELECT COUNT(*) FROM applications")
            })
            .await
            .unwrap()
            .unwrap()
        }
    };
    let held = cases().await;
    let (ok, said) = try_restore(&config_31, &backup_31).await;
    assert!(!ok, "a restore over a live store succeeded: {said}");
    assert!(said.contains("already holds a Tongban schema"), "{said}");
    assert_eq!(cases().await, held);

    // An empty database but the register's file exists: refused before anything is
    // written, so the database stays empty for the next attempt.
    let c = cluster.clone();
    tokio::task::spawn_blocking(move || c.create_database("node_31_blocked"))
        .await
        .unwrap()
        .unwrap();
    let blocked = config_copy(
        &config_31,
        "node-31-blocked.toml",
        Store::Postgres(&cluster.url("node_31_blocked")),
        "platform-31.db",
    );
    let (ok, said) = try_restore(&blocked, &backup_31).await;
    assert!(!ok, "a restore over a live register succeeded: {said}");
    assert!(
        said.contains("platform-31.db") && said.contains("exists"),
        "{said}"
    );
    let c = cluster.clone();
    let tables = tokio::task::spawn_blocking(move || {
        c.psql(
            "node_31_blocked",
            "SELECT COUNT(*) FROM pg_tables WHERE schemaname = 'public'",
        )
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(
        tables.trim(),
        "0",
        "a refused restore wrote into the database"
    );

    // SQLite: the node's own file exists.
    let (ok, said) = try_restore(&config_44, &backup_44).await;
    assert!(!ok, "a restore over a live SQLite store succeeded: {said}");
    assert!(
        said.contains("node-44.db") && said.contains("exists"),
        "{said}"
    );
    // Another region's backup.
    let (ok, said) = try_restore(&config_31, &backup_44).await;
    assert!(!ok);
    assert!(said.contains("region 440000"), "{said}");

    // A config whose store is not there: nothing to back up, and nothing created.
    let nowhere = config_copy(
        &config_44,
        "node-44-nowhere.toml",
        Store::Sqlite("nowhere/node-44.db"),
        "nowhere/platform-44.db",
    );
    let run = tongban(&[
        OsStr::new("store"),
        OsStr::new("backup"),
        OsStr::new("--node-config"),
        nowhere.as_os_str(),
        OsStr::new("--out"),
        dir.join("backup-nowhere").as_os_str(),
    ])
    .await;
    assert!(!run.status.success(), "backed up a store that is not there");
    assert!(text(&run).contains("holds no node store"), "{}", text(&run));
    assert!(!dir.join("nowhere/node-44.db").exists());

    // A register from elsewhere: 44's, made and used under another keyed-hash secret.
    let foreign = foreign_register(&dir.join("foreign/platform-44.db")).await;
    // In a backup folder beside 44's store: the restore finds them apart.
    let mixed = dir.join("backup-44-mixed");
    std::fs::create_dir(&mixed).unwrap();
    for file in std::fs::read_dir(&backup_44).unwrap() {
        let file = file.unwrap().path();
        std::fs::copy(&file, mixed.join(file.file_name().unwrap())).unwrap();
    }
    let manifest = read_manifest(&backup_44).unwrap();
    std::fs::copy(&foreign, mixed.join(manifest.platform_file.unwrap())).unwrap();
    let mixed_config = config_copy(
        &config_44,
        "node-44-mixed.toml",
        Store::Sqlite("mixed/node-44.db"),
        "mixed/platform-44.db",
    );
    let (ok, said) = try_restore(&mixed_config, &mixed).await;
    assert!(
        !ok,
        "restored a store with a register from elsewhere: {said}"
    );
    assert!(said.contains("keyed-hash secret"), "{said}");

    // Put in place of a restored register by hand: the node will not start.
    let moved = config_copy(
        &config_44,
        "node-44-moved.toml",
        Store::Sqlite("moved/node-44.db"),
        "moved/platform-44.db",
    );
    restore(&moved, &backup_44).await;
    for file in ["platform-44.db", "platform-44.db-wal", "platform-44.db-shm"] {
        let _ = std::fs::remove_file(dir.join("moved").join(file));
    }
    std::fs::copy(&foreign, dir.join("moved/platform-44.db")).unwrap();
    let start = tokio::process::Command::new(node_binary())
        .arg("--config")
        .arg(&moved)
        .kill_on_drop(true)
        .output();
    let run = tokio::time::timeout(Duration::from_secs(30), start)
        .await
        .expect("the node gives up within 30 s")
        .unwrap();
    assert!(
        !run.status.success(),
        "a node started on a foreign register"
    );
    let said = text(&run);
    assert!(said.contains("keyed-hash secret"), "{said}");
    println!(
        "refusals: a node on a register from elsewhere exits with: {}",
        said.lines()
            .rev()
            .find(|l| l.contains("keyed-hash"))
            .unwrap_or_default()
            .trim()
    );
    t.shutdown().await;
}
