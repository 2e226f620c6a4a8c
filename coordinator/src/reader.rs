//! The one reader of chunk bytes on the coordinator. It decides how an assignment's bytes reach
//! its worker, and does every read:
//!
//! - by reference, for a worker on shared storage, and for an object in object storage: the
//!   worker reads the range itself (a worker that cannot reach the store gets it inline);
//!   always for a worker file, which only its worker can read;
//! - inline at once, for a small chunk: read with the other small chunks of its dispatch
//!   round in one blocking call ([`fill_small`]), since a blocking call per tiny chunk costs
//!   more in thread handoffs than the reads;
//! - inline when sent, for a large chunk: read when its worker's stream is ready to send it
//!   ([`fill_when_sent`]), so its bytes are not held while it waits behind the chunk before.
//!
//! The fleet adapter only encodes what this gives it and cuts large chunks into pieces.

use bytes::Bytes;
use fanfold_common::chunker::{self, ChunkRange};
use fanfold_common::fleet::{Assignment, Payload};
use fanfold_common::location::Location;
use fanfold_common::roots::Roots;

/// Chunks of at least this many bytes are read when sent, not when assigned.
const READ_WHEN_SENT: u64 = 1 << 20;

/// The payload an assignment starts with, for a worker that reads shared storage (or not)
/// and object storage (or not).
pub fn payload(shared_storage: bool, reads_objects: bool, location: &Location) -> Payload {
    if location.owner().is_some() {
        // Only its worker can read it, and the coordinator cannot.
        return Payload::Shared(location.clone());
    }
    if location.as_path().is_none() {
        return if reads_objects {
            Payload::Shared(location.clone())
        } else {
            Payload::Unread
        };
    }
    if shared_storage {
        // The job names files as its submitter gave them, relative to this process's
        // directory; the worker needs a location that means the same from its own.
        Payload::Shared(location.absolute())
    } else {
        Payload::Unread
    }
}

/// Reads a small unread chunk's bytes into its payload; leaves others as they are. Blocking.
pub fn fill_small(assignment: &mut Assignment, roots: &Roots) -> Result<(), String> {
    if matches!(assignment.payload, Payload::Unread) && assignment.range.len() < READ_WHEN_SENT {
        assignment.payload = read(&assignment.location, assignment.range, roots)?;
    }
    Ok(())
}

/// Reads a still unread chunk's bytes into its payload, off the async runtime, now that its
/// worker's stream is ready to send it.
pub async fn fill_when_sent(assignment: &mut Assignment, roots: &Roots) -> Result<(), String> {
    if !matches!(assignment.payload, Payload::Unread) {
        return Ok(());
    }
    let (location, range, roots) = (assignment.location.clone(), assignment.range, roots.clone());
    assignment.payload = tokio::task::spawn_blocking(move || read(&location, range, &roots))
        .await
        .map_err(|e| e.to_string())??;
    Ok(())
}

fn read(location: &Location, range: ChunkRange, roots: &Roots) -> Result<Payload, String> {
    chunker::read(location, range, roots)
        .map(|data| Payload::Inline(Bytes::from(data)))
        .map_err(|e| e.to_string())
}
