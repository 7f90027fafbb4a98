//! A PostgreSQL database for one test: a database of its own on the server that
//! `TONGBAN_TEST_PG_URL` names (dropped after), else a throwaway cluster started here
//! from Debian's PostgreSQL 15 binaries (through the `postgres` user when running as
//! root: initdb and the server refuse root), on 127.0.0.1 and a free port, with its
//! socket in its own folder under /var/tmp; stopped and removed after.
//!
//! (`tongban_kit::postgres::PostgresCluster` does this for the integration tests; the
//! gateway cannot depend on the kit.)

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use crate::config::RevocationLogSettings;

const BIN: &str = "/usr/lib/postgresql/15/bin";

/// A database only this test uses.
pub struct TestDatabase {
    pub url: String,
    cleanup: Cleanup,
}

enum Cleanup {
    /// Drop database `name` through `admin_url` (a server the tests were given).
    Database { admin_url: String, name: String },
    /// Stop and remove the cluster started for the test.
    Cluster(Cluster),
}

fn unique(prefix: &str) -> String {
    format!("{prefix}_{}_{}", std::process::id(), super::unique_number())
}

impl TestDatabase {
    /// A fresh, empty database.
    pub async fn create() -> Self {
        match std::env::var("TONGBAN_TEST_PG_URL") {
            Ok(admin_url) => {
                let name = unique("tongban_gateway_test");
                let admin = sqlx::PgPool::connect(&admin_url)
                    .await
                    .expect("TONGBAN_TEST_PG_URL: connect");
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&admin)
                    .await
                    .expect("create the test database");
                admin.close().await;
                Self {
                    url: with_database(&admin_url, &name),
                    cleanup: Cleanup::Database { admin_url, name },
                }
            }
            Err(_) => {
                let cluster = tokio::task::spawn_blocking(Cluster::start)
                    .await
                    .expect("cluster start task")
                    .unwrap_or_else(|e| panic!("{e}"));
                Self {
                    url: format!("postgres://postgres@127.0.0.1:{}/postgres", cluster.port),
                    cleanup: Cleanup::Cluster(cluster),
                }
            }
        }
    }

    /// Log settings for this database, read every `poll_interval`.
    pub fn log_settings(&self, replica: &str, poll_interval: Duration) -> RevocationLogSettings {
        let mut settings = RevocationLogSettings::new(self.url.clone());
        settings.replica = Some(replica.to_owned());
        settings.poll_interval = poll_interval;
        settings.max_staleness = poll_interval * 10;
        settings
    }

    /// Stops the cluster's server, keeping its data (only for a cluster started here).
    pub fn stop_server(&self) -> bool {
        match &self.cleanup {
            Cleanup::Cluster(cluster) => cluster.pg_ctl(&["stop", "-m", "fast"]).is_ok(),
            Cleanup::Database { .. } => false,
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Cleanup::Database { admin_url, name } = &self.cleanup {
            let (admin_url, name) = (admin_url.clone(), name.clone());
            // Drop runs inside the test's runtime: a thread of its own may block.
            let _ = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                runtime.block_on(async {
                    if let Ok(admin) = sqlx::PgPool::connect(&admin_url).await {
                        let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                            .execute(&admin)
                            .await;
                    }
                });
                Ok::<_, std::io::Error>(())
            })
            .join();
        }
    }
}

/// `url` naming database `name` instead of its own.
fn with_database(url: &str, name: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let query = tail.find('?').map(|i| &tail[i..]).unwrap_or("");
    format!("{scheme}://{authority}/{name}{query}")
}

/// A cluster in its own folder.
struct Cluster {
    dir: PathBuf,
    port: u16,
    as_postgres: bool,
}

impl Cluster {
    fn start() -> Result<Self, String> {
        if !Path::new(BIN).join("initdb").is_file() {
            return Err(format!(
                "PostgreSQL 15 is not installed at {BIN}: run scripts/test-tools, or set \
                 TONGBAN_TEST_PG_URL to a server the tests may create databases on"
            ));
        }
        let dir = PathBuf::from("/var/tmp").join(unique("tongban-gateway-pg"));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let as_postgres = run(Command::new("id").arg("-u"))?.trim() == "0";
        // From here on a failure drops the cluster, which removes the folder.
        let mut cluster = Self {
            dir,
            port: 0,
            as_postgres,
        };
        if as_postgres {
            run(Command::new("chown")
                .arg("-R")
                .arg("postgres:")
                .arg(&cluster.dir))?;
        }
        let data = cluster.dir.join("data").display().to_string();
        run(cluster.server_command("initdb").args([
            "-D",
            &data,
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-locale",
        ]))?;
        // A port free when picked may be taken before the server binds it: try again.
        let mut last = String::new();
        for _ in 0..3 {
            cluster.port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map_err(|e| e.to_string())?
                .port();
            let options = format!(
                "-c listen_addresses=127.0.0.1 -p {} -k {} -c max_connections=200",
                cluster.port,
                cluster.dir.display()
            );
            let log = cluster.dir.join("log").display().to_string();
            match cluster.pg_ctl(&["start", "-l", &log, "-o", &options]) {
                Ok(_) => return Ok(cluster),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn pg_ctl(&self, args: &[&str]) -> Result<String, String> {
        let data = self.dir.join("data").display().to_string();
        run(self
            .server_command("pg_ctl")
            .args(["-D", &data, "-w", "-t", "30"])
            .args(args))
    }

    fn server_command(&self, name: &str) -> Command {
        let binary = Path::new(BIN).join(name);
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(binary);
            c
        } else {
            Command::new(binary)
        };
        // The test's working folder may be closed to the `postgres` user.
        command.current_dir(&self.dir);
        command
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.dir.join("data/postmaster.pid").exists() {
            let _ = self.pg_ctl(&["stop", "-m", "immediate"]);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs `command`; its output, or why it failed.
fn run(command: &mut Command) -> Result<String, String> {
    let output = command.output().map_err(|e| format!("{command:?}: {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "{command:?}: {}\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

#[test]
fn a_url_names_another_database() {
    assert_eq!(
        with_database("postgres://u:p@h:5/db?sslmode=disable", "t1"),
        "postgres://u:p@h:5/t1?sslmode=disable"
    );
    assert_eq!(with_database("postgres://u@h", "t2"), "postgres://u@h/t2");
}
