//! fanfold's domain, shared by the coordinator, the worker and the CLI.
//!
//! Nothing here speaks gRPC: the adapters convert wire types to these at the edge
//! (`convert`), and everything else speaks these types. The one network I/O here is object
//! storage (`objects`), a source behind `location::Location` like the local filesystem.

pub mod chunker;
pub mod compression;
pub mod convert;
pub mod fleet;
pub mod ids;
pub mod input;
pub mod location;
pub mod objects;
pub mod operation;
pub mod ops;
pub mod partial;
pub mod records;
pub mod registry;
pub mod render;
pub mod roots;
pub mod shuffle;
pub mod sketch;
pub mod spec;
pub mod status_view;
pub mod telemetry;

/// The version every binary reports (workers send it in their hello).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// An error and its causes on one line (`a: b: c`); transport errors keep the useful part in
/// their sources.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
