//! Runtime plumbing shared by the Tongban gateway, nodes and tools, shelved by job.
//!
//! - [`trust`]: who a peer is and how that is proven — TLS 1.3 mTLS configurations
//!   ([`trust::tls`]), how every federation client connects ([`trust::connector`]),
//!   peer identity from the certificate's URI SAN ([`trust::identity`]), revoked peers
//!   cut off ([`trust::revocation`]), the development PKI ([`trust::pki`]).
//! - [`serving`]: listeners — the authenticated accept loop ([`serving::incoming`]) and
//!   the bounds on its handshakes ([`serving::handshakes`]), the plaintext admin
//!   listener ([`serving::admin`]), plain HTTP within limits ([`serving::plain_http`]:
//!   portal and admin; [`serving::connection_slots`]: connection caps per listener and
//!   per client), health and reflection ([`serving::standard_services`]).
//! - [`audit`]: the hash-chained audit trail ([`audit::trail`]), its signed
//!   checkpoints ([`audit::checkpoint`]) and its verification ([`audit::verify`]).
//! - [`observability`]: log output ([`observability::logs`]), spans over OTLP
//!   ([`observability::traces`]), W3C `traceparent` ([`observability::trace_context`]),
//!   process gauges and certificate expiry ([`observability::process_metrics`]).
//! - [`process`]: a process's life — typed config loading ([`process::config`]),
//!   shutdown ([`process::shutdown`]), reloads ([`process::reload`]), working folders
//!   tools create and may wipe ([`process::workdir`]), the open-files limit
//!   ([`process::open_files`]), the host's name that names a replica ([`process::host`]).
//! - [`postgres`]: PostgreSQL for node replicas and the gateways' shared revocation log —
//!   connection settings ([`postgres::config`]), schema steps several processes may run
//!   at once ([`postgres::migrate`]), wake-ups by LISTEN/NOTIFY ([`postgres::listen`]).

pub mod trust {
    //! Who a peer is and how that is proven.
    pub mod connector;
    pub mod identity;
    pub mod operator;
    pub mod operator_client;
    pub mod pki;
    pub mod registry_file;
    pub mod revocation;
    pub mod tls;
}

pub mod serving {
    //! Listeners: federation (authenticated), admin (plaintext), and what every gRPC
    //! listener serves besides its own services.
    pub mod admin;
    pub mod connection_slots;
    pub mod handshakes;
    pub mod incoming;
    pub mod operator_listener;
    pub mod plain_http;
    pub mod standard_services;
}

pub mod audit {
    //! The audit trail: hash-chained records and their signed checkpoints.
    pub mod chain;
    pub mod checkpoint;
    #[cfg(test)]
    mod tests;
    pub mod trail;
    pub mod verify;
    pub mod writer;
}

pub mod observability {
    //! Logs, traces and process metrics.
    pub mod logs;
    pub mod process_metrics;
    pub mod trace_context;
    pub mod traces;
}

pub mod postgres {
    //! PostgreSQL shared by several processes.
    pub mod config;
    pub mod listen;
    pub mod migrate;
}

pub mod process {
    //! A process's life: configuration, reloads, shutdown, working folders.
    pub mod config;
    pub mod host;
    pub mod open_files;
    pub mod reload;
    pub mod shutdown;
    pub mod workdir;
}
