//! The `tongban` operator tool as a library: the development PKI command, the local
//! federation launcher that the demo and the integration tests share ([`local`]), and
//! the fault proxy the fault tests put on its links ([`fault`]).

pub mod fault;
pub mod local;
