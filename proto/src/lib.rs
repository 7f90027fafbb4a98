//! Tongban's federation wire contract and the rules that every gateway and node must
//! compute identically.
//!
//! - [`v1`]: the protobuf messages and gRPC services (`tongban.federation.v1`).
//! - [`metadata`]: the gRPC metadata keys that carry routing and authorization.
//! - [`retry`]: whether a failed call may be retried, stated by whoever made the error;
//!   [`codes`]: gRPC codes by their canonical names; [`codec`]: the gRPC codec (prost's,
//!   with undecodable messages answered INVALID_ARGUMENT).
//! - [`recognition`]: license ids, signed bytes, Ed25519 signatures, subject hashes.
//! - [`region`]: GB/T 2260 administrative division codes and the region table.
//! - [`resident_id`]: GB 11643 resident ID numbers (validation, masking, keyed hashing).
//! - [`catalog`]: the national one-thing catalog and form pre-review against it.
//! - [`calendar`]: business time (UTC+8) and working-day arithmetic for promised dates.
//! - [`digest`]: lower-case hex and SHA-256 hex digests.
//! - [`text`]: what free text a person typed may contain.

pub mod calendar;
pub mod catalog;
pub mod codec;
pub mod codes;
pub mod digest;
pub mod metadata;
pub mod recognition;
pub mod region;
pub mod resident_id;
pub mod retry;
pub mod text;

/// Generated code for `tongban.federation.v1`.
pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("tongban.federation.v1");
}

/// Encoded `FileDescriptorSet` of the contract, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("tongban_descriptor");
