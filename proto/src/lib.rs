//! The wire contract: generated tonic/prost code for `fanfold.v1`.
//!
//! Only the gRPC adapters in `coordinator`, `worker` and the CLI touch these types; everything
//! else speaks the domain types of `fanfold-common`. [`transport`] builds every channel and
//! server.

#![allow(clippy::large_enum_variant)]

pub mod transport;

/// Largest gRPC message either side accepts. Chunks carry whole records, so a chunk can exceed
/// the configured chunk size by one record; partials can be as large as their chunk.
pub const MAX_MESSAGE_BYTES: usize = 1 << 30;

/// The revision of the fleet protocol (`Hello.protocol`, `Welcome.protocol`). A coordinator and
/// a worker of different revisions refuse each other: a field one of them does not know (count
/// columns, chunk pieces) would otherwise be dropped in silence. Raised with every change to
/// what either side must understand.
pub const PROTOCOL: u32 = 5;

pub mod v1 {
    tonic::include_proto!("fanfold.v1");
}

/// The coordinator's durable records (its state directory), not part of the wire contract.
pub mod store {
    pub mod v1 {
        tonic::include_proto!("fanfold.store.v1");
    }
}
