//! The `tongban` operator tool as a library: the development PKI command, the local
//! federation launcher that the demo and the integration tests share ([`local`]), and
//! the fault proxy the fault tests put on its links ([`fault`]), and a trace collector
//! for tests and the benchmark ([`otlp_collector`]).

pub mod fault;
pub mod local;
pub mod otlp_collector;
