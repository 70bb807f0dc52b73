//! Tollgate's gRPC API, generated from `proto/tollgate/v1/*.proto` (the single source of the
//! API), plus the one translation of [`ErrorCode`](tollgate_domain::ErrorCode) into gRPC
//! status codes ([`status`]), conversions between wire and domain values ([`convert`] for
//! tokens, [`manage`] for the management services), and what servers and clients agree on
//! beyond the messages ([`audit`], [`admin`]).
//!
//! Invariant: no business logic here; only shapes and their translation.

pub mod admin;
pub mod audit;
pub mod convert;
pub mod manage;
pub mod status;

#[cfg(test)]
mod proptests;

/// Generated messages, clients and servers of package `tollgate.v1`.
#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("tollgate.v1");
}

/// The encoded `FileDescriptorSet` of every Tollgate proto file (with its imports), for
/// server reflection and for printing messages as JSON.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/tollgate_descriptor.bin"));
