//! The `store` key of a node's config: a SQLite file, or PostgreSQL shared by the
//! node's replicas.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Serialize};

/// Where the node keeps its state.
///
/// `store = "node.sqlite"` (a path) is the embedded default; a table chooses the kind:
///
/// ```toml
/// [store]
/// kind = "postgres"
/// url = "postgres://tongban@db.gd.internal/tongban_node_44"
/// password_file = "/run/secrets/db-password"
/// replica = "node-44-a"     # default: the host's name
/// lease = "30s"
/// [store.tls]
/// mode = "verify-full"
/// ca = "/etc/tongban/db-ca.pem"
/// ```
#[derive(Clone, Debug)]
pub enum StoreConfig {
    /// An embedded SQLite file, for one node process.
    Sqlite(PathBuf),
    /// PostgreSQL, shared by every replica of the node.
    Postgres(PostgresStore),
}

/// The `[store]` table's PostgreSQL settings.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresStore {
    /// `postgres://user@host:port/database`, no password in it (see `password_file`).
    pub url: String,
    /// A file holding the database password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// TLS to the database server (`mode`, `ca`, `cert`, `key`, as libpq names them).
    #[serde(default)]
    pub tls: tongban_runtime::postgres::config::PostgresTls,
    /// The connection pool (`max_connections`, `acquire_timeout`).
    #[serde(default)]
    pub pool: tongban_runtime::postgres::config::PoolConfig,
    /// This replica's name: the owner of the outbox entries it claims, the
    /// `application_name` of its connections. Every replica needs its own; the default,
    /// the host's name, is the pod's on Kubernetes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<String>,
    /// How long a claimed outbox entry is this replica's: longer than one attempt can
    /// take (the gateway call's deadline), so two replicas never attempt one entry at
    /// once; a replica that dies leaves its entries to the others after this long.
    #[serde(default = "default_lease", with = "humantime_serde")]
    pub lease: Duration,
}

fn default_lease() -> Duration {
    Duration::from_secs(30)
}

/// The `[store]` table, by kind.
#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
enum StoreTable {
    Sqlite { path: PathBuf },
    Postgres(PostgresStore),
}

impl Serialize for StoreConfig {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        #[serde(tag = "kind", rename_all = "lowercase")]
        enum Tagged<'a> {
            Postgres(&'a PostgresStore),
        }
        match self {
            Self::Sqlite(path) => path.serialize(serializer),
            Self::Postgres(pg) => Tagged::Postgres(pg).serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for StoreConfig {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // A hand-written visitor rather than `untagged`: its errors name the field
        // that is wrong instead of "matched no variant".
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = StoreConfig;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a SQLite file's path or a [store] table with a kind")
            }
            fn visit_str<E: serde::de::Error>(self, path: &str) -> Result<StoreConfig, E> {
                Ok(StoreConfig::Sqlite(PathBuf::from(path)))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<StoreConfig, A::Error> {
                let table =
                    StoreTable::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(match table {
                    StoreTable::Sqlite { path } => StoreConfig::Sqlite(path),
                    StoreTable::Postgres(pg) => StoreConfig::Postgres(pg),
                })
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl StoreConfig {
    /// The SQLite file, when the store is one.
    pub fn sqlite_path(&self) -> Option<&Path> {
        match self {
            Self::Sqlite(path) => Some(path),
            Self::Postgres(_) => None,
        }
    }

    pub(super) fn file_paths(&mut self) -> Vec<&mut PathBuf> {
        match self {
            Self::Sqlite(path) => vec![path],
            Self::Postgres(pg) => {
                let tls = &mut pg.tls;
                [
                    &mut pg.password_file,
                    &mut tls.ca,
                    &mut tls.cert,
                    &mut tls.key,
                ]
                .into_iter()
                .filter_map(Option::as_mut)
                .collect()
            }
        }
    }
}

impl PostgresStore {
    /// The connection settings.
    pub fn database(&self) -> tongban_runtime::postgres::config::PostgresConfig {
        tongban_runtime::postgres::config::PostgresConfig {
            url: self.url.clone(),
            password_file: self.password_file.clone(),
            tls: self.tls.clone(),
            pool: self.pool.clone(),
        }
    }

    /// This replica's name: configured, else the host's name.
    pub fn replica_name(&self) -> String {
        self.replica
            .clone()
            .or_else(tongban_runtime::process::host::host_name)
            .unwrap_or_else(|| format!("node-{}", std::process::id()))
    }
}
