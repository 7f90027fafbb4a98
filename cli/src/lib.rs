//! The `tongban` operator tool as a library: the development PKI command and the local
//! federation launcher that the demo and the integration tests share.

pub mod local;
