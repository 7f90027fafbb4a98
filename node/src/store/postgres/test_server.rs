//! A PostgreSQL server for the store's tests: the one `TONGBAN_TEST_PG_URL` names (a
//! database on it whose user may create databases), else a throwaway cluster of
//! Debian's PostgreSQL 15 (`scripts/test-tools` installs it), started once per test
//! process on a free loopback port and stopped when the process ends. Each test gets a
//! fresh database of its own.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::OnceLock,
};

use tongban_runtime::postgres::config::PostgresConfig;

const BIN: &str = "/usr/lib/postgresql/15/bin";

/// A URL of the server's `postgres` database, or of the database the environment names.
fn server_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| match std::env::var("TONGBAN_TEST_PG_URL") {
        Ok(url) => url,
        Err(_) => start_cluster().unwrap_or_else(|e| {
            panic!("no PostgreSQL for the store's tests ({e}): set TONGBAN_TEST_PG_URL or run scripts/test-tools")
        }),
    })
}

/// Settings for a fresh, empty database for test `name`.
pub(crate) async fn fresh_database(name: &str) -> PostgresConfig {
    let server = PostgresConfig::new(server_url());
    // The same name each run, dropped first: a server the environment names does not
    // fill up with old test databases (so two runs must not share that server at once).
    let mut name = format!("tongban_{name}");
    // PostgreSQL's longest name; the tests' names are ASCII.
    name.truncate(63);
    let admin = server.pool("tongban-tests").unwrap();
    for statement in [
        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        format!("CREATE DATABASE {name}"),
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
            .execute(&admin)
            .await
            .unwrap();
    }
    admin.close().await;
    PostgresConfig::new(with_database(server_url(), &name))
}

/// `url` naming database `name` instead of its own (query parameters kept).
fn with_database(url: &str, name: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (authority, tail) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    let query = tail.find('?').map_or("", |at| &tail[at..]);
    format!("{scheme}://{authority}/{name}{query}")
}

/// Starts a cluster in a fresh folder and returns its `postgres` database's URL. A
/// watcher process stops it and removes the folder once this process is gone: tests
/// share it, so no test may stop it, and a static is never dropped.
fn start_cluster() -> Result<String, String> {
    let bin = Path::new(BIN);
    if !bin.join("initdb").is_file() {
        return Err(format!("{BIN}/initdb not found"));
    }
    let dir = PathBuf::from(format!("/var/tmp/tongban-node-pg-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    // initdb and the server refuse to run as root: then they run as `postgres`.
    let as_root = std::os::unix::fs::MetadataExt::uid(
        &std::fs::metadata("/proc/self").map_err(|e| e.to_string())?,
    ) == 0;
    if as_root {
        run(Command::new("chown").arg("-R").arg("postgres:").arg(&dir))?;
    }
    let server = |program: &str| {
        let mut command = if as_root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(bin.join(program));
            c
        } else {
            Command::new(bin.join(program))
        };
        command.current_dir(&dir);
        command
    };
    let data = dir.join("data");
    run(server("initdb").arg("-D").arg(&data).args([
        "-U",
        "postgres",
        "--auth=trust",
        "-E",
        "UTF8",
        "--no-locale",
    ]))?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let options = format!(
        "-c listen_addresses=127.0.0.1 -p {port} -k {} -c max_connections=300 -c fsync=off",
        dir.display()
    );
    run(server("pg_ctl")
        .arg("-D")
        .arg(&data)
        .arg("-l")
        .arg(dir.join("log"))
        .args(["-w", "start", "-o", &options]))?;
    let stop = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {runuser}{BIN}/pg_ctl -D {data} stop -m immediate; rm -rf {dir}",
        pid = std::process::id(),
        runuser = if as_root {
            "runuser -u postgres -- "
        } else {
            ""
        },
        data = data.display(),
        dir = dir.display(),
    );
    Command::new("sh")
        .args(["-c", &stop])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("watcher: {e}"))?;
    Ok(format!("postgres://postgres@127.0.0.1:{port}/postgres"))
}

fn run(command: &mut Command) -> Result<(), String> {
    let out = command.output().map_err(|e| format!("{command:?}: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "{command:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}
