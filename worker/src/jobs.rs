//! Per-job context on a worker: what a job's chunks and reduce tasks share, built once for
//! the job rather than for every chunk: the operation (options parsed, regexes compiled).
//! A partitioned job's map outputs are in the worker's spill directory (`crate::spill`).
//! Also what every job of the coordinator shares: the data roots its welcome named, beneath
//! which shared-storage chunks are read, and the worker's own local roots, beneath which its
//! `worker://` files are listed and read.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, RwLock};

use fanfold_common::fleet::Assignment;
use fanfold_common::ids::JobId;
use fanfold_common::operation::{Operation, Options, SpecError};
use fanfold_common::registry::Registry;
use fanfold_common::roots::Roots;

/// Contexts kept at once; the oldest goes first. Jobs run one after another far more often
/// than dozens at once, and a context is rebuilt cheaply if a job comes back.
const KEPT: usize = 32;

/// What a job's chunks share on this worker.
pub struct JobContext {
    pub operation: Arc<dyn Operation>,
}

/// The contexts of the jobs this worker has run lately.
pub struct Jobs {
    registry: Registry,
    contexts: Mutex<VecDeque<(JobId, Arc<JobContext>)>>,
    /// The data roots of the coordinator's latest welcome; `None` before the first.
    roots: RwLock<Option<Roots>>,
    /// The directories whose files this worker offers as its own (`--local-root`).
    local: Option<Roots>,
}

impl Jobs {
    pub fn new(registry: Registry, local: Option<Roots>) -> Self {
        Jobs {
            registry,
            contexts: Mutex::new(VecDeque::new()),
            roots: RwLock::new(None),
            local,
        }
    }

    /// The roots this worker's own files (`worker://` inputs) are listed and read beneath;
    /// `None` if it offers none.
    pub fn local_roots(&self) -> Option<&Roots> {
        self.local.as_ref()
    }

    /// Keeps the data roots a welcome named.
    pub fn set_roots(&self, roots: Roots) {
        *self.roots.write().expect("roots") = Some(roots);
    }

    /// The data roots chunks on shared storage are read beneath; `None` before a welcome
    /// (or if its roots could not be opened here), when no such chunk may be read.
    pub fn roots(&self) -> Option<Roots> {
        self.roots.read().expect("roots").clone()
    }

    /// The assignment's job context, built from its operation and options if this is the
    /// job's first chunk here. A job whose operation cannot be built is not kept: each of its
    /// chunks fails with the reason.
    pub fn context(&self, assignment: &Assignment) -> Result<Arc<JobContext>, SpecError> {
        self.context_of(assignment.job, &assignment.operation, &assignment.options)
    }

    /// A job's operation, built from its name and options on first use.
    pub fn operation(
        &self,
        job: JobId,
        name: &str,
        options: &Options,
    ) -> Result<Arc<dyn Operation>, SpecError> {
        Ok(Arc::clone(&self.context_of(job, name, options)?.operation))
    }

    fn context_of(
        &self,
        job: JobId,
        name: &str,
        options: &Options,
    ) -> Result<Arc<JobContext>, SpecError> {
        let mut contexts = self.contexts.lock().expect("job contexts");
        if let Some((_, context)) = contexts.iter().find(|(id, _)| *id == job) {
            return Ok(Arc::clone(context));
        }
        let operation = self.registry.build(name, options)?;
        let context = Arc::new(JobContext { operation });
        if contexts.len() == KEPT {
            contexts.pop_front();
        }
        contexts.push_back((job, Arc::clone(&context)));
        Ok(context)
    }

    /// Drops a job's context (it was cancelled or is over).
    pub fn forget(&self, job: JobId) {
        self.contexts
            .lock()
            .expect("job contexts")
            .retain(|(id, _)| *id != job);
    }
}
