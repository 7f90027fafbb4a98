//! Runtime plumbing shared by the Tongban gateway, nodes and tools.
//!
//! - [`identity`]: who a peer is, from the URI SAN of its verified certificate.
//! - [`tls`]: TLS 1.3 mTLS server and client configuration from PEM files;
//!   [`connector`]: how clients connect; [`revocation`]: revoked peers cut off.
//! - [`incoming`]: the accept loop that hands tonic authenticated connections.
//! - [`pki`]: development PKI (federation CA and leaf certificates) with rcgen.
//! - [`config`]: typed config loading with errors that name the field.
//! - [`shutdown`]: one signal for SIGTERM / Ctrl-C driven graceful shutdown.
//! - [`standard_services`]: health and reflection, as every gRPC listener serves them.
//! - [`admin`]: the plaintext admin listener (`/healthz`, `/readyz`, and more);
//!   [`process_metrics`]: certificate expiry and `process_*` gauges for `/metrics`.
//! - [`telemetry`]: log output (text on a terminal, JSON otherwise); [`traces`]: spans
//!   exported over OTLP; [`trace_context`]: W3C `traceparent`.
//! - [`workdir`]: working folders that tools create and may wipe.

pub mod admin;
pub mod audit_chain;
pub mod audit_checkpoint;
pub mod config;
pub mod connector;
pub mod identity;
pub mod incoming;
pub mod pki;
pub mod process_metrics;
pub mod reload;
pub mod revocation;
pub mod shutdown;
pub mod standard_services;
pub mod telemetry;
pub mod tls;
pub mod trace_context;
pub mod traces;
pub mod workdir;
