//! The worker registry: every attached worker with its credits (slots plus prefetch, computed
//! once when it joins), the assignments it holds, its lease (when it was last heard from), its
//! outbox, and whether its chunks go by reference (shared storage) or inline.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use fanfold_common::fleet::{AttemptKey, ReduceKey, ToWorker, WorkerHello};
use fanfold_common::ids::{JobId, WorkerId};
use tokio::sync::mpsc;
use tokio::time::Instant;

pub struct Worker {
    pub name: String,
    /// Where its stream comes from, as the coordinator sees it.
    pub address: String,
    pub slots: u32,
    pub version: String,
    pub protocol: u32,
    pub joined: std::time::SystemTime,
    /// Tasks it finished (results kept) and attempts of it that failed, for the status page.
    pub done: u64,
    pub failures: u64,
    credits: u32,
    /// Assignments sent and not yet reported.
    pub holding: HashSet<AttemptKey>,
    /// Reduce tasks sent and not yet reported; they take credits like assignments.
    pub reducing: HashSet<ReduceKey>,
    /// Where other workers fetch the map outputs it keeps.
    pub shuffle_address: String,
    pub outbox: mpsc::Sender<ToWorker>,
    last_seen: Instant,
    draining: bool,
    /// Chunks go to it by reference (it reads shared storage) instead of inline.
    pub shared_storage: bool,
    /// Chunks of objects go to it by reference (until it cannot read one).
    pub reads_objects: bool,
    /// The directories whose files it offers as its own (`worker://NAME/PATH`).
    pub local_roots: Vec<String>,
}

impl Worker {
    /// Assignments it may still be given.
    pub fn free(&self) -> u32 {
        if self.draining {
            return 0;
        }
        self.credits
            .saturating_sub((self.holding.len() + self.reducing.len()) as u32)
    }

    pub fn seen(&mut self) {
        self.last_seen = Instant::now();
    }

    pub fn drain(&mut self) {
        self.seen();
        self.draining = true;
    }

    /// Sends a control message; the outbox keeps room beyond credits for these, and a full or
    /// closed one means the worker is going away, its chunks released when it does.
    pub fn tell(&self, message: ToWorker) {
        let _ = self.outbox.try_send(message);
    }

    pub fn is_draining(&self) -> bool {
        self.draining
    }

    /// How long since it was last heard from.
    pub fn silent_for(&self) -> Duration {
        self.last_seen.elapsed()
    }

    /// It offers files of its own: the chunks of `worker://NAME/` files are its alone.
    pub fn owns_files(&self) -> bool {
        !self.local_roots.is_empty()
    }

    /// Its name, if it offers files of its own: what a job's pools of such files know it by.
    pub fn owner_name(&self) -> Option<&str> {
        self.owns_files().then_some(self.name.as_str())
    }

    pub fn holds_job(&self, job: JobId) -> bool {
        self.holding.iter().any(|k| k.job == job) || self.reducing.iter().any(|k| k.job == job)
    }
}

/// Names of departed workers kept (a job's stored timeline keeps its own).
const DEPARTED_KEPT: usize = 10_000;

#[derive(Default)]
pub struct Workers {
    workers: HashMap<WorkerId, Worker>,
    /// Names of workers that have left, for the timelines of jobs they ran: the latest
    /// [`DEPARTED_KEPT`] (ids only grow, so the first is the oldest).
    departed: std::collections::BTreeMap<WorkerId, String>,
    next: u64,
    /// Round-robin cursor, so chunks spread evenly.
    turn: u64,
}

impl Workers {
    /// Registers a worker that holds at most `slots + prefetch` assignments.
    pub fn join(
        &mut self,
        hello: WorkerHello,
        address: String,
        prefetch: u32,
        outbox: mpsc::Sender<ToWorker>,
    ) -> WorkerId {
        self.next += 1;
        let id = WorkerId(self.next);
        self.workers.insert(
            id,
            Worker {
                name: hello.name,
                address,
                slots: hello.slots,
                version: hello.version,
                protocol: hello.protocol,
                joined: std::time::SystemTime::now(),
                done: 0,
                failures: 0,
                credits: hello.slots + prefetch,
                holding: HashSet::new(),
                reducing: HashSet::new(),
                shuffle_address: hello.shuffle_address,
                outbox,
                last_seen: Instant::now(),
                draining: false,
                shared_storage: hello.shared_storage,
                reads_objects: true,
                local_roots: hello.local_roots,
            },
        );
        id
    }

    pub fn remove(&mut self, id: WorkerId) -> Option<Worker> {
        let gone = self.workers.remove(&id)?;
        self.departed.insert(id, gone.name.clone());
        if self.departed.len() > DEPARTED_KEPT {
            self.departed.pop_first();
        }
        Some(gone)
    }

    /// The name of a worker attached now or before.
    pub fn name_of(&self, id: WorkerId) -> Option<String> {
        self.workers
            .get(&id)
            .map(|w| w.name.clone())
            .or_else(|| self.departed.get(&id).cloned())
    }

    /// Attached workers by id.
    pub fn sorted(&self) -> Vec<(WorkerId, &Worker)> {
        let mut all: Vec<_> = self.workers.iter().map(|(id, w)| (*id, w)).collect();
        all.sort_unstable_by_key(|(id, _)| *id);
        all
    }

    pub fn get(&self, id: WorkerId) -> Option<&Worker> {
        self.workers.get(&id)
    }

    pub fn get_mut(&mut self, id: WorkerId) -> Option<&mut Worker> {
        self.workers.get_mut(&id)
    }

    pub fn count(&self) -> u32 {
        self.workers.len() as u32
    }

    pub fn iter(&self) -> impl Iterator<Item = &Worker> {
        self.workers.values()
    }

    /// Workers silent for longer than `timeout`.
    pub fn expired(&self, timeout: Duration) -> Vec<WorkerId> {
        self.workers
            .iter()
            .filter(|(_, w)| w.last_seen.elapsed() > timeout)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Workers with a free credit, in a round-robin order that starts one further each call.
    pub fn with_credit(&mut self) -> Vec<WorkerId> {
        let mut ids: Vec<WorkerId> = self
            .workers
            .iter()
            .filter(|(_, w)| w.free() > 0)
            .map(|(id, _)| *id)
            .collect();
        if ids.is_empty() {
            return ids;
        }
        ids.sort_unstable();
        let start = (self.turn as usize) % ids.len();
        ids.rotate_left(start);
        self.turn = self.turn.wrapping_add(1);
        ids
    }

    /// Workers holding nothing with a free credit, by id.
    pub fn idle(&self) -> Vec<WorkerId> {
        let mut idle: Vec<WorkerId> = self
            .workers
            .iter()
            .filter(|(_, w)| w.holding.is_empty() && w.reducing.is_empty() && w.free() > 0)
            .map(|(id, _)| *id)
            .collect();
        idle.sort_unstable();
        idle
    }
}
