//! A job's timeline as an SVG Gantt chart, like Spark's event timeline or Dask's task stream:
//! a lane per slot of each worker (attempts packed into the fewest lanes that keep them
//! apart), time left to right, a bar per attempt coloured by how it ended.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::UNIX_EPOCH;

use fanfold_common::spec::JobStatus;

use super::pages::{esc, millis};
use crate::job::timeline::{Outcome, Span, Stage, TimelineRecord};

/// Each worker's attempts packed into lanes: the first lane free at an attempt's start takes
/// it.
struct Lanes<'a> {
    /// Per worker in id order: its name and its lanes.
    workers: Vec<(&'a str, usize)>,
    /// Each attempt with its row.
    placed: Vec<(usize, &'a Span)>,
}

fn lanes(t: &TimelineRecord, now: u64) -> Lanes<'_> {
    let mut by_worker: BTreeMap<u64, Vec<&Span>> = BTreeMap::new();
    for span in &t.spans {
        by_worker.entry(span.worker).or_default().push(span);
    }
    let mut rows = Vec::new();
    let mut placed = Vec::new();
    let mut first_row = 0;
    for (worker, mut spans) in by_worker {
        spans.sort_by_key(|s| s.start_ms);
        let mut lane_ends: Vec<u64> = Vec::new();
        for span in spans {
            let end = span.end_ms.unwrap_or(now).max(span.start_ms + 1);
            let lane = match lane_ends.iter().position(|&e| e <= span.start_ms) {
                Some(lane) => lane,
                None => {
                    lane_ends.push(0);
                    lane_ends.len() - 1
                }
            };
            lane_ends[lane] = end;
            placed.push((first_row + lane, span));
        }
        let name = t.workers.get(&worker).map_or("?", String::as_str);
        rows.push((name, lane_ends.len()));
        first_row += lane_ends.len();
    }
    Lanes {
        workers: rows,
        placed,
    }
}

/// The attempts as an SVG Gantt chart: a row per worker, time left to right from the job's
/// submission to its end (or now), a bar per attempt coloured by how it ended; backups are
/// outlined, reduce tasks darker. Each bar's title says what it was.
pub fn svg(t: &TimelineRecord, s: &JobStatus) -> String {
    if t.spans.is_empty() {
        return "<p id=\"timeline-empty\">No attempts yet.</p>".into();
    }
    let start = s
        .submitted_at
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64;
    let now = crate::job::timeline::now_ms();
    let end = t
        .spans
        .iter()
        .map(|sp| sp.end_ms.unwrap_or(now))
        .max()
        .unwrap_or(now)
        .max(start + 1);
    let start = start.min(t.spans.iter().map(|sp| sp.start_ms).min().unwrap_or(start));
    let span_ms = (end - start).max(1) as f64;
    let Lanes { workers, placed } = lanes(t, now);
    let total_rows: usize = workers.iter().map(|(_, n)| n).sum();
    let (label_w, width, row_h) = (140.0, 1000.0, 16.0);
    let plot_w = width - label_w - 10.0;
    let height = row_h * total_rows as f64 + 30.0;
    let mut out = format!(
        "<figure class=\"timeline\"><svg id=\"timeline\" xmlns=\"http://www.w3.org/2000/svg\" \
         viewBox=\"0 0 {width} {height}\" width=\"100%\" role=\"img\" \
         aria-label=\"attempts per worker over time\" data-spans=\"{}\">",
        t.spans.len()
    );
    let mut row = 0;
    for (name, n) in &workers {
        let y = row as f64 * row_h;
        let bottom = (row + n) as f64 * row_h;
        let _ = write!(
            out,
            "<text x=\"0\" y=\"{:.1}\" class=\"worker\">{}</text>\
             <line x1=\"0\" x2=\"{width}\" y1=\"{bottom:.1}\" y2=\"{bottom:.1}\" class=\"lane\"/>",
            y + row_h * 0.75,
            esc(name),
        );
        row += n;
    }
    for &(row, sp) in &placed {
        let x = label_w + (sp.start_ms - start) as f64 / span_ms * plot_w;
        let w = ((sp.end_ms.unwrap_or(now).saturating_sub(sp.start_ms)) as f64 / span_ms * plot_w)
            .max(1.5);
        let y = row as f64 * row_h + 2.0;
        let outcome = outcome_name(sp.outcome);
        let stage = match sp.stage {
            Stage::Map => "map",
            Stage::Reduce => "reduce",
        };
        let what = match sp.stage {
            Stage::Map => format!("chunk {}", sp.task),
            Stage::Reduce => format!("partition {}", sp.task),
        };
        let took = millis(sp.end_ms.unwrap_or(now).saturating_sub(sp.start_ms));
        let error = sp
            .error
            .as_deref()
            .map(|e| format!(": {}", esc(e)))
            .unwrap_or_default();
        let _ = write!(
            out,
            "<rect class=\"span {outcome} {stage}{backup}\" x=\"{x:.1}\" y=\"{y:.1}\" \
             width=\"{w:.1}\" height=\"{h:.1}\"><title>{what} attempt {attempt}{backup_text}: \
             {outcome}, {took}{error}</title></rect>",
            backup = if sp.backup { " backup" } else { "" },
            h = row_h - 4.0,
            attempt = sp.attempt,
            backup_text = if sp.backup { " (backup)" } else { "" },
        );
    }
    let axis_y = row_h * total_rows as f64 + 18.0;
    let _ = write!(
        out,
        "<text x=\"{label_w}\" y=\"{axis_y:.1}\" class=\"axis\">0 s</text>\
         <text x=\"{width}\" y=\"{axis_y:.1}\" class=\"axis end\">{}</text></svg>",
        millis(end - start)
    );
    out.push_str(
        "<figcaption><span class=\"key done\"></span>done <span class=\"key running\"></span>\
         running <span class=\"key failed\"></span>failed <span class=\"key superseded\"></span>\
         superseded by another attempt <span class=\"key released\"></span>released \
         <span class=\"key lost\"></span>output lost <span class=\"key backup\"></span>backup \
         (outlined); reduce tasks darker",
    );
    if t.dropped > 0 {
        let _ = write!(out, "; {} attempts not drawn", t.dropped);
    }
    out.push_str("</figcaption></figure>");
    out
}

fn outcome_name(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Running => "running",
        Outcome::Done => "done",
        Outcome::Failed => "failed",
        Outcome::Released => "released",
        Outcome::Superseded => "superseded",
        Outcome::Lost => "lost",
        Outcome::Cancelled => "cancelled",
    }
}
