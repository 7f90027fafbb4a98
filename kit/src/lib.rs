//! The test kit: a local federation on loopback — a dev CA, M gateway replicas and N
//! nodes with embedded platforms, each on its own ports, each loaded from the config
//! files the kit writes, so what runs is what an operator would run from those files.
//! Members run in this process or as real child processes (the project's own
//! binaries), and can be stopped, killed and restarted one by one; with fault proxies,
//! every link (node → gateway, gateway → node) passes through a [`FaultProxy`] a test
//! can delay, cut or blackhole. The demo, the integration tests and the benchmark use
//! it.
//!
//! By job, each file using only the ones listed before it:
//! - [`error`] — [`KitError`].
//! - [`spec`] — what federation to start ([`FederationSpec`], [`Launch`]) and the names
//!   of its parts ([`Member`], [`Link`]).
//! - [`fault`] — the fault proxy on one link.
//! - [`tcp_proxy`] — several gateway replicas behind one address, as a load balancer
//!   puts them.
//! - [`otlp_collector`] — a trace collector for tests and the benchmark.
//! - [`postgres`] — a throwaway PostgreSQL 15 cluster for tests, stopped, restarted
//!   or killed at will.
//! - [`config`] — the config writers (PKI layout, gateway, registry and node configs),
//!   also used by the benchmark.
//! - [`operator_api`] — requests to a member's operator listener as one operator.
//! - [`member`] — a running gateway replica or node.
//! - [`platform`] — a province platform (the reference platform over the contract) a
//!   node stands in front of: in-process or a process, killed, restarted, made to fail.
//! - `process` — members as child processes: spawned, probed until ready.
//! - [`federation`] — [`LocalFederation`], the started whole.
//! - `launch` — [`LocalFederation::start`], step by step, in-process or as processes.
//! - `control` — stop, kill, restart, wait for a crash, node processes' environment.
//! - [`replicas`] — further replicas of a node whose store is on PostgreSQL.
//! - [`testing`] — a federation per test in a temporary folder, clients and stand-in
//!   peers, fixtures.
//!
//! The configs name their files relative to the folder they are written in (the config
//! path rule of `tongban_runtime::process::config`), so a generated folder can be moved,
//! read and run by hand: `tongban-gateway --config var/demo/gateway.toml`.

pub mod config;
mod control;
pub mod error;
pub mod fault;
pub mod federation;
mod launch;
pub mod member;
pub mod operator_api;
pub mod otlp_collector;
pub mod platform;
pub mod postgres;
mod process;
pub mod replicas;
pub mod spec;
pub mod tcp_proxy;
pub mod testing;

// The launch puts gateway replicas behind one address with the tests' proxy.

pub use error::KitError;
pub use fault::{FaultProxy, LinkMode};
pub use federation::LocalFederation;
pub use member::{RunningGateway, RunningNode};
pub use otlp_collector::{OtlpCollector, ReceivedSpan};
pub use spec::{FederationSpec, Launch, Link, Member};
