//! A job's timeline: every attempt of its chunks and reduce tasks, on which worker, from when to
//! when and how it ended. The status page draws it (one row per worker) and the chunk table
//! reads each chunk's latest attempt from it. A finished job's timeline is kept with its end
//! (the journal's `timelines` table), so it stays viewable after a restart.
//!
//! Bounded: at most [`MAX_SPANS`] attempts per job are kept (Spark keeps 100,000 tasks per
//! stage); later ones are counted in `dropped`, and the chunks they ran still show their state.

use std::collections::{BTreeMap, HashMap};
use std::time::{SystemTime, UNIX_EPOCH};

use fanfold_common::ids::{Attempt, WorkerId};
use serde::{Deserialize, Serialize};

/// Attempts kept per job.
pub const MAX_SPANS: usize = 100_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Map,
    Reduce,
}

/// How an attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Running,
    /// Its result was folded (or its map output kept, or its part kept).
    Done,
    Failed,
    /// Its worker left or handed it back: not a failure.
    Released,
    /// Another attempt of the same chunk finished first; this one was cancelled.
    Superseded,
    /// Done, but its map output was lost later (its worker left) and the chunk ran again.
    Lost,
    /// The job ended while it ran.
    Cancelled,
}

/// One attempt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    pub stage: Stage,
    /// The chunk id (map) or partition (reduce).
    pub task: u64,
    pub attempt: u32,
    pub worker: u64,
    /// A backup attempt of a straggler.
    pub backup: bool,
    /// Unix milliseconds.
    pub start_ms: u64,
    pub end_ms: Option<u64>,
    pub outcome: Outcome,
    /// Records it read, when done.
    pub records: u64,
    pub error: Option<String>,
}

/// What is stored with a finished job.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineRecord {
    pub spans: Vec<Span>,
    /// Attempts not kept (beyond [`MAX_SPANS`]).
    pub dropped: u64,
    /// The names of the workers the spans ran on, by id.
    pub workers: BTreeMap<u64, String>,
}

#[derive(Default)]
pub struct Timeline {
    spans: Vec<Span>,
    /// Running attempts' spans.
    open: HashMap<(Stage, u64, u32), usize>,
    /// Each task's latest span.
    latest: HashMap<(Stage, u64), usize>,
    dropped: u64,
    /// Worker names of a timeline restored from the store.
    workers: BTreeMap<u64, String>,
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Timeline {
    pub fn restore(record: TimelineRecord) -> Self {
        let mut latest = HashMap::new();
        for (i, span) in record.spans.iter().enumerate() {
            latest.insert((span.stage, span.task), i);
        }
        Timeline {
            spans: record.spans,
            open: HashMap::new(),
            latest,
            dropped: record.dropped,
            workers: record.workers,
        }
    }

    /// An attempt started.
    pub fn start(
        &mut self,
        stage: Stage,
        task: u64,
        attempt: Attempt,
        worker: WorkerId,
        backup: bool,
    ) {
        if self.spans.len() >= MAX_SPANS {
            self.dropped += 1;
            return;
        }
        let i = self.spans.len();
        self.spans.push(Span {
            stage,
            task,
            attempt: attempt.0,
            worker: worker.0,
            backup,
            start_ms: now_ms(),
            end_ms: None,
            outcome: Outcome::Running,
            records: 0,
            error: None,
        });
        self.open.insert((stage, task, attempt.0), i);
        self.latest.insert((stage, task), i);
    }

    /// When a running attempt started (Unix milliseconds).
    pub fn started_ms(&self, stage: Stage, task: u64, attempt: Attempt) -> Option<u64> {
        let &i = self.open.get(&(stage, task, attempt.0))?;
        Some(self.spans[i].start_ms)
    }

    /// A running attempt ended.
    pub fn end(&mut self, stage: Stage, task: u64, attempt: Attempt, outcome: Outcome) {
        self.end_with(stage, task, attempt, outcome, 0, None);
    }

    pub fn end_with(
        &mut self,
        stage: Stage,
        task: u64,
        attempt: Attempt,
        outcome: Outcome,
        records: u64,
        error: Option<&str>,
    ) {
        if let Some(i) = self.open.remove(&(stage, task, attempt.0)) {
            let span = &mut self.spans[i];
            span.end_ms = Some(now_ms());
            span.outcome = outcome;
            span.records = records;
            // A line of an error is enough for the page; the job's error carries all of it.
            span.error = error.map(|e| e.chars().take(300).collect());
        }
    }

    /// A done map attempt's output was lost: it is the chunk's latest attempt (nothing ran
    /// the chunk since it was done).
    pub fn lost(&mut self, task: u64, attempt: Option<Attempt>) {
        if let Some(&i) = self.latest.get(&(Stage::Map, task)) {
            let span = &mut self.spans[i];
            if span.outcome == Outcome::Done && attempt.is_none_or(|a| a.0 == span.attempt) {
                span.outcome = Outcome::Lost;
            }
        }
    }

    /// The job ended: whatever still runs is cancelled.
    pub fn close(&mut self) {
        let now = now_ms();
        for (_, i) in self.open.drain() {
            let span = &mut self.spans[i];
            span.end_ms = Some(now);
            span.outcome = Outcome::Cancelled;
        }
    }

    pub fn spans(&self) -> &[Span] {
        &self.spans
    }

    #[cfg(test)]
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// A task's latest attempt, if kept.
    pub fn latest(&self, stage: Stage, task: u64) -> Option<&Span> {
        self.latest.get(&(stage, task)).map(|&i| &self.spans[i])
    }

    /// A restored timeline's worker name for `id`.
    pub fn stored_name(&self, id: u64) -> Option<&str> {
        self.workers.get(&id).map(String::as_str)
    }

    /// The record to store, naming workers by `name`.
    pub fn record(&self, name: impl Fn(u64) -> Option<String>) -> TimelineRecord {
        let mut workers = BTreeMap::new();
        for span in &self.spans {
            workers.entry(span.worker).or_insert_with(|| {
                name(span.worker)
                    .or_else(|| self.stored_name(span.worker).map(str::to_owned))
                    .unwrap_or_else(|| format!("worker {}", span.worker))
            });
        }
        TimelineRecord {
            spans: self.spans.clone(),
            dropped: self.dropped,
            workers,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_end_once_and_the_latest_is_found() {
        let mut t = Timeline::default();
        t.start(Stage::Map, 0, Attempt(1), WorkerId(1), false);
        t.start(Stage::Map, 0, Attempt(2), WorkerId(2), true);
        t.end_with(Stage::Map, 0, Attempt(2), Outcome::Done, 7, None);
        t.end(Stage::Map, 0, Attempt(1), Outcome::Superseded);
        // A second end of the same attempt changes nothing.
        t.end(Stage::Map, 0, Attempt(2), Outcome::Failed);
        assert_eq!(t.spans()[0].outcome, Outcome::Superseded);
        assert_eq!(t.spans()[1].outcome, Outcome::Done);
        assert_eq!(t.spans()[1].records, 7);
        assert_eq!(t.latest(Stage::Map, 0).map(|s| s.attempt), Some(2));
        t.lost(0, None);
        assert_eq!(t.spans()[1].outcome, Outcome::Lost);
        t.start(Stage::Reduce, 0, Attempt(1), WorkerId(1), false);
        t.close();
        assert_eq!(t.spans()[2].outcome, Outcome::Cancelled);
        let record = t.record(|id| (id == 1).then(|| "w1".to_owned()));
        assert_eq!(record.workers.get(&2).map(String::as_str), Some("worker 2"));
        let back = Timeline::restore(record.clone());
        assert_eq!(back.record(|_| None), record);
    }

    #[test]
    fn spans_beyond_the_bound_are_counted_not_kept() {
        let mut t = Timeline::default();
        for i in 0..MAX_SPANS as u64 + 5 {
            t.start(Stage::Map, i, Attempt(1), WorkerId(1), false);
        }
        assert_eq!(t.spans().len(), MAX_SPANS);
        assert_eq!(t.dropped(), 5);
    }
}
