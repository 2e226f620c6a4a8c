//! Shows a job's progress while `submit-job` waits: a live bar on a terminal (chunks, bytes,
//! throughput, ETA), plain lines every few seconds otherwise.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use bytesize::ByteSize;
use fanfold_common::spec::{JobState, JobStatus};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Plain progress lines are printed at most this often.
const PLAIN_EVERY: Duration = Duration::from_secs(2);

pub enum Progress {
    Hidden,
    Bar(ProgressBar),
    Lines {
        started: Instant,
        last: Option<Instant>,
        /// The straggler last printed, so a new one is printed at once.
        straggler: Option<u64>,
    },
}

impl Progress {
    /// A bar when stderr is a terminal, plain lines otherwise; nothing when `quiet`.
    pub fn new(quiet: bool) -> Self {
        if quiet {
            return Progress::Hidden;
        }
        if !std::io::stderr().is_terminal() {
            return Progress::Lines {
                started: Instant::now(),
                last: None,
                straggler: None,
            };
        }
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} eta {eta} {msg}",
            )
            .expect("valid template"),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        Progress::Bar(bar)
    }

    pub fn update(&mut self, status: &JobStatus) {
        match self {
            Progress::Hidden => {}
            Progress::Bar(bar) => {
                bar.set_length(status.bytes_total);
                bar.set_position(status.bytes_done);
                bar.set_message(summary(status));
                if status.state.is_final() {
                    bar.finish();
                }
            }
            Progress::Lines {
                started,
                last,
                straggler,
            } => {
                let due = last.is_none_or(|t| t.elapsed() >= PLAIN_EVERY);
                let waiting_on = status.slowest_running.as_ref().map(|s| s.chunk);
                let new_straggler = waiting_on.is_some() && waiting_on != *straggler;
                *straggler = waiting_on;
                if due || new_straggler || status.state.is_final() {
                    let secs = started.elapsed().as_secs_f64().max(1e-3);
                    let rate = ByteSize((status.bytes_done as f64 / secs) as u64);
                    eprintln!(
                        "job {} {}: {}/{} bytes ({}/s), {}",
                        status.id,
                        status.state.as_str(),
                        ByteSize(status.bytes_done),
                        ByteSize(status.bytes_total),
                        rate,
                        summary(status)
                    );
                    *last = Some(Instant::now());
                }
            }
        }
    }
}

fn summary(status: &JobStatus) -> String {
    let mut text = format!("chunks {}/{}", status.chunks_done, status.chunks_total);
    if status.finishing && !status.state.is_final() {
        text.push_str(", finishing");
    } else if status.state == JobState::Running {
        if status.workers == 0 {
            text.push_str(", waiting for workers to attach");
        } else {
            text.push_str(&format!(
                ", {} running on {} workers",
                status.chunks_running, status.workers
            ));
        }
        // Nothing waits for a worker: the job waits on its slowest running chunk.
        if let Some(slowest) = &status.slowest_running {
            text.push_str(&format!(
                ", waiting on {}",
                crate::commands::slowest_text(slowest)
            ));
        }
    }
    text
}
