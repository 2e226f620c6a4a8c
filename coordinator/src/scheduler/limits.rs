//! How many jobs the scheduler takes and how long it keeps them: the limits on jobs not yet
//! ended, checked as a submission is taken (the one place that sees every job, so a burst of
//! submissions cannot slip past together), and retention, which removes finished jobs with
//! everything kept of them on the scheduler's tick.

use std::time::{Duration, SystemTime};

use fanfold_common::ids::JobId;
use tracing::info;

use super::{JobError, Scheduler};
use crate::parts;

/// Jobs not yet ended, at most: in all, and per principal (the job's owner).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub active_jobs: usize,
    pub active_jobs_per_principal: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            active_jobs: 1000,
            active_jobs_per_principal: 100,
        }
    }
}

/// How long finished jobs (their statuses, results and state) are kept: for `keep_for`
/// after they end, and only the newest `keep_jobs` of them. Either `None` keeps them forever.
#[derive(Clone, Copy, Debug)]
pub struct Retention {
    pub keep_for: Option<Duration>,
    pub keep_jobs: Option<usize>,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            keep_for: Some(Duration::from_secs(24 * 3600)),
            keep_jobs: Some(1000),
        }
    }
}

impl Retention {
    /// The policy as an expiry message names it: `for 24h, the newest 1000`.
    fn describe(&self) -> String {
        let time = self
            .keep_for
            .map(|d| format!("for {}", humantime::format_duration(d)));
        let count = self.keep_jobs.map(|n| format!("the newest {n}"));
        match (time, count) {
            (Some(t), Some(c)) => format!("{t}, {c} at most"),
            (Some(t), None) => t,
            (None, Some(c)) => c,
            (None, None) => "forever".into(),
        }
    }
}

/// Expired job ids remembered, so asking about one says it expired rather than unknown.
const EXPIRED_REMEMBERED: usize = 100_000;

impl Scheduler {
    /// Why job `id` is not here: it expired, or it never was.
    pub(super) fn missing(&self, id: JobId) -> JobError {
        if self.expired_set.contains(&id) {
            JobError::Expired {
                id,
                policy: self.config.retention.describe(),
            }
        } else {
            JobError::NotFound(id)
        }
    }

    /// Refuses a submission of `owner`'s over the limits on jobs not yet ended.
    pub(super) fn within_limits(&self, owner: Option<&str>) -> Result<(), JobError> {
        let limits = self.config.limits;
        let active = self.jobs.values().filter(|j| !j.state().is_final());
        let (mut all, mut own) = (0, 0);
        for job in active {
            all += 1;
            if job.spec.owner.as_deref() == owner {
                own += 1;
            }
        }
        if all >= limits.active_jobs {
            return Err(JobError::Limit(format!(
                "this coordinator already runs or queues {all} jobs, its limit \
                 (--max-active-jobs); submit again when some have ended"
            )));
        }
        // Without tokens every job is the anonymous admin's: only the total applies.
        let named = owner.is_some_and(|o| o != crate::auth::ANONYMOUS);
        if named && own >= limits.active_jobs_per_principal {
            return Err(JobError::Limit(format!(
                "principal '{}' already runs or queues {own} jobs, the limit per principal \
                 (--max-active-jobs-per-principal); submit again when some have ended",
                owner.unwrap_or("anonymous")
            )));
        }
        Ok(())
    }

    /// Removes finished jobs whose retention ran out (older than `keep_for`, or beyond the
    /// newest `keep_jobs`), with everything kept of them: status, result, parts, state.
    pub(super) fn expire(&mut self) {
        let retention = self.config.retention;
        let mut finished: Vec<(SystemTime, JobId)> = self
            .jobs
            .iter()
            .filter_map(|(id, job)| job.ended_at().map(|at| (at, *id)))
            .collect();
        finished.sort_unstable();
        let over = retention
            .keep_jobs
            .map_or(0, |keep| finished.len().saturating_sub(keep));
        let cutoff = retention
            .keep_for
            .and_then(|keep| SystemTime::now().checked_sub(keep));
        let gone: Vec<JobId> = finished
            .iter()
            .enumerate()
            .filter(|(i, (at, _))| *i < over || cutoff.is_some_and(|cutoff| *at < cutoff))
            .map(|(_, (_, id))| *id)
            .collect();
        for id in gone {
            let quarantine = self
                .jobs
                .remove(&id)
                .and_then(|job| job.snapshot(0).quarantine);
            self.order.retain(|j| *j != id);
            self.journal.forget(id);
            let dir = parts::job_dir(&self.config.parts_dir, id);
            self.tasks.spawn_blocking(move || {
                let _ = std::fs::remove_dir_all(dir);
                if let Some(file) = quarantine {
                    let _ = std::fs::remove_file(file);
                }
            });
            info!(job_id = %id, "job expired: its status and result are removed");
            self.config.metrics.jobs_expired.inc();
            if self.expired_set.insert(id) {
                self.expired.push_back(id);
            }
            if self.expired.len() > EXPIRED_REMEMBERED
                && let Some(oldest) = self.expired.pop_front()
            {
                self.expired_set.remove(&oldest);
            }
        }
    }
}
