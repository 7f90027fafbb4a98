//! Tongban's federation wire contract and the rules that every gateway and node must
//! compute identically.
//!
//! - [`v1`]: the protobuf messages and gRPC services (`tongban.federation.v1`).
//! - [`contract`]: what travels beside the messages — the gRPC metadata keys that carry
//!   routing and authorization ([`contract::metadata`]), whether a failed call may be
//!   retried ([`contract::retry`]), gRPC codes by their canonical names
//!   ([`contract::codes`]), the gRPC codec ([`contract::codec`]).
//! - [`rules`]: the domain rules both sides compute identically — GB/T 2260 region
//!   codes ([`rules::region`]), GB 11643 resident ID numbers ([`rules::resident_id`]),
//!   the one-thing catalog and pre-review ([`rules::catalog`]), the one rule set an
//!   application meets wherever it is checked ([`rules::standard`], 同标准办理), license
//!   ids and signatures ([`rules::credentials`]), business time and working days
//!   ([`rules::calendar`]), free text ([`rules::text`]), digests ([`rules::digest`]).

pub mod contract {
    //! What travels beside the messages of [`crate::v1`].
    pub mod codec;
    pub mod codes;
    pub mod metadata;
    pub mod node_metrics;
    pub mod retry;
}

pub mod rules {
    //! The domain rules every gateway and node computes identically.
    pub mod calendar;
    pub mod catalog;
    pub mod consent;
    pub mod credentials;
    pub mod digest;
    pub mod license_id;
    pub mod message_signature;
    pub mod region;
    pub mod resident_id;
    pub mod standard;
    pub mod text;
}

/// Generated code for `tongban.federation.v1`.
pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("tongban.federation.v1");
}

/// Encoded `FileDescriptorSet` of the contract, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("tongban_descriptor");
