//! The status pages as HTML, rendered on the server from the same snapshots as the JSON API:
//! the jobs (`/`), one job (`/jobs/{id}`: its facts, timeline, reduce tasks, slowest chunks and
//! chunk table) and the workers (`/workers`). Every value from a job or a worker is escaped.
//!
//! Each page's `<main>` carries `data-final` (the job has ended; the live refresh stops) and
//! `data-refreshes` (counted by `assets/page.js`). With `part`, only `<main>` is rendered: the
//! live refresh swaps it in.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use fanfold_common::spec::{JobState, JobStatus};
use fanfold_common::status_view::StatusView;

use crate::job::ChunkRow;
use crate::scheduler::{JobDetail, WorkerRow};

/// Rows of a job page's chunk table.
pub const CHUNKS_PER_PAGE: u64 = 200;

/// `text` safe inside HTML text and attribute values.
pub(super) fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn bytes(n: u64) -> String {
    bytesize::ByteSize(n).to_string()
}

fn seconds(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else if d < Duration::from_secs(10) {
        format!("{:.1} s", d.as_secs_f64())
    } else {
        humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
    }
}

pub(super) fn millis(ms: u64) -> String {
    seconds(Duration::from_millis(ms))
}

fn when(time: SystemTime) -> String {
    fanfold_common::status_view::rfc3339(time).unwrap_or_default()
}

/// How long the job has run (to its end, if it has ended).
fn elapsed(s: &JobStatus) -> Duration {
    s.finished_at
        .unwrap_or_else(SystemTime::now)
        .duration_since(s.submitted_at)
        .unwrap_or_default()
}

/// Input bytes per second so far.
fn rate(s: &JobStatus) -> f64 {
    let secs = elapsed(s).as_secs_f64();
    if secs > 0.0 {
        s.bytes_done as f64 / secs
    } else {
        0.0
    }
}

/// Time left at the rate so far, for a running job that has made progress.
fn eta(s: &JobStatus) -> Option<Duration> {
    let rate = rate(s);
    (s.state == JobState::Running && rate > 0.0 && s.bytes_done < s.bytes_total)
        .then(|| Duration::from_secs_f64((s.bytes_total - s.bytes_done) as f64 / rate))
}

/// The share of the job done: its chunks, then (partitioned) its reduce tasks.
fn progress(s: &JobStatus) -> (u64, u64) {
    (
        s.chunks_done + s.reduces_done,
        (s.chunks_total + s.reduces_total).max(1),
    )
}

fn progress_bar(s: &JobStatus, id: &str) -> String {
    let (done, total) = progress(s);
    let percent = done as f64 * 100.0 / total as f64;
    format!(
        "<div class=\"bar\" id=\"{id}\" data-done=\"{done}\" data-total=\"{total}\" \
         title=\"{done} of {total} tasks\"><span style=\"width:{percent:.1}%\"></span></div>"
    )
}

fn page(title: &str, main: &str, part: bool) -> String {
    if part {
        return main.to_owned();
    }
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · fanfold</title><link rel=\"stylesheet\" href=\"/assets/page.css\">\
         <script src=\"/assets/page.js\" defer></script></head><body>\
         <header><a class=\"brand\" href=\"/\">fanfold</a><nav><a href=\"/\">Jobs</a>\
         <a href=\"/workers\">Workers</a><a href=\"/metrics\">Metrics</a>\
         <a href=\"/api/v1/jobs\">API</a></nav></header>\n{main}\n</body></html>\n",
        title = esc(title)
    )
}

fn main_open(live: bool, is_final: bool) -> String {
    format!(
        "<main id=\"main\" data-live=\"{live}\" data-final=\"{is_final}\" data-refreshes=\"0\">"
    )
}

fn state_badge(s: &JobStatus) -> String {
    let state = StatusView::from(s).state;
    let finishing = if s.finishing && !s.state.is_final() {
        " (finishing)"
    } else {
        ""
    };
    format!("<span class=\"state {state}\">{state}{finishing}</span>")
}

fn fleet_summary(workers: &[WorkerRow]) -> String {
    let slots: u32 = workers.iter().map(|w| w.slots).sum();
    let running: u64 = workers.iter().map(|w| w.running).sum();
    let draining = workers.iter().filter(|w| w.draining).count();
    format!(
        "<p class=\"fleet\" id=\"fleet\"><a href=\"/workers\">{} worker{}</a>, {slots} slots, \
         {running} tasks running, {draining} draining</p>",
        workers.len(),
        if workers.len() == 1 { "" } else { "s" }
    )
}

/// `/`: every job, newest first, and the fleet.
pub fn index(jobs: &[JobStatus], workers: &[WorkerRow], part: bool) -> String {
    let mut m = main_open(true, false);
    m.push_str("<h1>Jobs</h1>");
    m.push_str(&fleet_summary(workers));
    if jobs.is_empty() {
        m.push_str("<p>No jobs yet. Submit one with <code>submit-job run</code>.</p>");
    } else {
        m.push_str(
            "<table class=\"sortable\" id=\"jobs\"><thead><tr><th>job</th><th>state</th>\
             <th>operation</th><th>inputs</th><th>progress</th><th class=\"n\">chunks</th>\
             <th class=\"n\">bytes</th><th class=\"n\">speed</th><th class=\"n\">elapsed</th>\
             <th class=\"n\">ETA</th><th class=\"n\">workers</th></tr></thead><tbody>",
        );
        for s in jobs {
            let id = s.id.to_string();
            let _ = write!(
                m,
                "<tr id=\"job-{id}\" class=\"job\"><td><a href=\"/jobs/{id}\"><code>{short}</code></a></td>\
                 <td>{state}</td><td>{op}</td><td class=\"inputs\">{inputs}</td><td>{bar}</td>\
                 <td class=\"n\" data-v=\"{done}\">{done}/{total}</td>\
                 <td class=\"n\" data-v=\"{b}\">{bytes}</td><td class=\"n\">{speed}/s</td>\
                 <td class=\"n\" data-v=\"{el}\">{elapsed}</td><td class=\"n\">{eta}</td>\
                 <td class=\"n\">{workers}</td></tr>",
                short = &id[..8],
                state = state_badge(s),
                op = esc(&s.spec.operation),
                inputs = esc(&s.spec.inputs.join(" ")),
                bar = progress_bar(s, &format!("progress-{id}")),
                done = s.chunks_done,
                total = s.chunks_total,
                b = s.bytes_done,
                bytes = format_args!("{} / {}", bytes(s.bytes_done), bytes(s.bytes_total)),
                speed = bytes(rate(s) as u64),
                el = elapsed(s).as_millis(),
                elapsed = seconds(elapsed(s)),
                eta = eta(s).map(seconds).unwrap_or_default(),
                workers = s.workers,
            );
        }
        m.push_str("</tbody></table>");
    }
    m.push_str("</main>");
    page("Jobs", &m, part)
}

/// `/jobs/{id}`.
pub fn job(detail: &JobDetail, chunks_from: u64, part: bool) -> String {
    let s = &detail.status;
    let id = s.id.to_string();
    let mut m = main_open(true, s.state.is_final());
    let _ = write!(
        m,
        "<h1>Job <code>{id}</code> {}</h1>{}",
        state_badge(s),
        progress_bar(s, "progress")
    );
    if s.state == JobState::Running && !s.finishing {
        let _ = write!(
            m,
            "<form method=\"post\" action=\"/jobs/{id}/cancel\" class=\"cancel\">\
             <button type=\"submit\">Cancel job</button></form>"
        );
    }
    if let Some(error) = &s.error {
        let _ = write!(m, "<p class=\"error\" id=\"error\">{}</p>", esc(error));
    }
    m.push_str(&facts(s));
    m.push_str("<h2>Timeline</h2>");
    m.push_str(&super::timeline::svg(&detail.timeline, s));
    if !detail.reduces.is_empty() {
        m.push_str(
            "<h2>Reduce tasks</h2><table class=\"sortable\" id=\"reduces\"><thead><tr>\
             <th class=\"n\">partition</th><th>state</th><th class=\"n\">attempts</th>\
             <th>worker</th><th class=\"n\">duration</th><th class=\"n\">bytes</th>\
             <th class=\"n\">rows</th></tr></thead><tbody>",
        );
        for r in &detail.reduces {
            let _ = write!(
                m,
                "<tr><td class=\"n\">{}</td><td>{}</td><td class=\"n\">{}</td><td>{}</td>\
                 <td class=\"n\" data-v=\"{}\">{}</td><td class=\"n\" data-v=\"{}\">{}</td>\
                 <td class=\"n\">{}</td></tr>",
                r.partition,
                r.state,
                r.attempts,
                esc(r.worker.as_deref().unwrap_or("")),
                r.duration_ms.unwrap_or(0),
                r.duration_ms.map(millis).unwrap_or_default(),
                r.bytes,
                bytes(r.bytes),
                r.rows.map(|n| n.to_string()).unwrap_or_default(),
            );
        }
        m.push_str("</tbody></table>");
    }
    if !detail.slowest.is_empty() {
        m.push_str("<h2>Slowest chunks</h2>");
        m.push_str(&chunk_table("slowest", &detail.slowest));
    }
    let _ = write!(m, "<h2>Chunks</h2>");
    if s.chunks_total > CHUNKS_PER_PAGE {
        let last = chunks_from
            .saturating_add(CHUNKS_PER_PAGE)
            .min(s.chunks_total);
        let _ = write!(
            m,
            "<p class=\"pager\">chunks {chunks_from} to {} of {}",
            last.saturating_sub(1),
            s.chunks_total
        );
        if chunks_from > 0 {
            let back = chunks_from.saturating_sub(CHUNKS_PER_PAGE);
            let _ = write!(m, " · <a href=\"/jobs/{id}?chunks={back}\">previous</a>");
        }
        if last < s.chunks_total {
            let _ = write!(m, " · <a href=\"/jobs/{id}?chunks={last}\">next</a>");
        }
        m.push_str("</p>");
    }
    m.push_str(&chunk_table("chunks", &detail.chunks));
    let _ = write!(
        m,
        "<p class=\"api\">As JSON: <a href=\"/api/v1/jobs/{id}\">status</a>, \
         <a href=\"/api/v1/jobs/{id}/chunks\">chunks</a>, \
         <a href=\"/api/v1/jobs/{id}/timeline\">timeline</a></p></main>"
    );
    page(&format!("Job {}", &id[..8]), &m, part)
}

/// A job's facts: everything `submit-job status` shows.
fn facts(s: &JobStatus) -> String {
    let c = &s.counters;
    let mut rows: Vec<(&str, String)> = vec![
        ("operation", esc(&s.spec.operation)),
        (
            "options",
            esc(&s
                .spec
                .options
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")),
        ),
        ("inputs", esc(&s.spec.inputs.join(" "))),
        (
            "chunks",
            format!(
                "<span id=\"chunks-done\">{}</span>/{} done, {} running, {} checkpointed",
                s.chunks_done, s.chunks_total, s.chunks_running, s.chunks_checkpointed
            ),
        ),
        (
            "bytes",
            format!(
                "{} / {}, {}/s",
                bytes(s.bytes_done),
                bytes(s.bytes_total),
                bytes(rate(s) as u64)
            ),
        ),
    ];
    if let Some(stage) = s.stage() {
        rows.push(("stage", stage.to_owned()));
    }
    if s.reduces_total > 0 {
        rows.push((
            "reduces",
            format!(
                "{}/{} done, {} running",
                s.reduces_done, s.reduces_total, s.reduces_running
            ),
        ));
        rows.push((
            "shuffle",
            format!(
                "{} in {} partitions, {} map outputs lost, {} reduce attempts",
                bytes(c.shuffle_bytes),
                s.partition_bytes.len(),
                c.map_outputs_lost,
                c.reduce_attempts
            ),
        ));
    }
    rows.push(("workers", s.workers.to_string()));
    rows.push((
        "counters",
        format!(
            "records_in={} bytes_in={} bad_records={} keys_out={} attempts={} chunks_failed={} backups={}",
            c.records_in, c.bytes_in, c.bad_records, c.keys_out, c.attempts, c.chunks_failed, c.backups
        ),
    ));
    for (name, amount) in &c.user {
        rows.push(("counter", format!("{}={amount}", esc(name))));
    }
    if s.state == JobState::Succeeded {
        rows.push(("rows", s.result_rows.to_string()));
    }
    if let Some(output) = &s.spec.output {
        rows.push((
            "output",
            format!("{} ({})", esc(&output.path), output.format.name()),
        ));
    }
    if let Some(q) = &s.quarantine {
        rows.push(("quarantine", esc(q)));
    }
    if let Some(slowest) = &s.slowest_running
        && !s.state.is_final()
    {
        let running = SystemTime::now()
            .duration_since(slowest.since)
            .unwrap_or_default();
        rows.push((
            "waiting on",
            format!(
                "{} on {}, running {}",
                esc(&slowest.description),
                esc(&slowest.worker),
                seconds(running)
            ),
        ));
    }
    rows.push(("submitted", when(s.submitted_at)));
    if let Some(finished) = s.finished_at {
        rows.push(("finished", when(finished)));
    }
    rows.push(("elapsed", seconds(elapsed(s))));
    if let Some(eta) = eta(s) {
        rows.push(("ETA", seconds(eta)));
    }
    let mut out = String::from("<table class=\"facts\" id=\"facts\"><tbody>");
    for (name, value) in rows {
        let _ = write!(out, "<tr><th>{name}</th><td>{value}</td></tr>");
    }
    out.push_str("</tbody></table>");
    out
}

fn chunk_table(id: &str, chunks: &[ChunkRow]) -> String {
    let mut out = format!(
        "<table class=\"sortable\" id=\"{id}\"><thead><tr><th class=\"n\">chunk</th>\
         <th>file</th><th class=\"n\">bytes</th><th>state</th><th class=\"n\">attempts</th>\
         <th>worker</th><th class=\"n\">duration</th><th class=\"n\">records</th></tr></thead><tbody>"
    );
    for c in chunks {
        let _ = write!(
            out,
            "<tr class=\"{state}\"><td class=\"n\">{chunk}</td><td class=\"inputs\">{file}</td>\
             <td class=\"n\" data-v=\"{start}\">{start}..{end}</td><td>{state}</td>\
             <td class=\"n\">{attempts}</td><td>{worker}</td>\
             <td class=\"n\" data-v=\"{ms}\">{duration}</td><td class=\"n\">{records}</td></tr>",
            state = c.state,
            chunk = c.chunk,
            file = esc(&c.file),
            start = c.start,
            end = c.end,
            attempts = c.attempts,
            worker = esc(c.worker.as_deref().unwrap_or("")),
            ms = c.duration_ms.unwrap_or(0),
            duration = c.duration_ms.map(millis).unwrap_or_default(),
            records = c.records.map(|n| n.to_string()).unwrap_or_default(),
        );
    }
    out.push_str("</tbody></table>");
    out
}

/// `/workers`.
pub fn workers(workers: &[WorkerRow], part: bool) -> String {
    let mut m = main_open(true, false);
    m.push_str("<h1>Workers</h1>");
    m.push_str(&fleet_summary(workers));
    m.push_str(
        "<table class=\"sortable\" id=\"workers\"><thead><tr><th>name</th><th>address</th>\
         <th class=\"n\">slots</th><th class=\"n\">running</th><th class=\"n\">done</th>\
         <th class=\"n\">failures</th><th class=\"n\">last heartbeat</th><th>shared storage</th>\
         <th>draining</th><th class=\"n\">protocol</th><th>version</th></tr></thead><tbody>",
    );
    for w in workers {
        let _ = write!(
            m,
            "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\" data-v=\"{}\">{} ago</td>\
             <td>{}</td><td>{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
            esc(&w.name),
            esc(&w.address),
            w.slots,
            w.running,
            w.chunks_done,
            w.failures,
            w.last_heartbeat_ms,
            millis(w.last_heartbeat_ms),
            if w.shared_storage { "yes" } else { "no" },
            if w.draining { "yes" } else { "no" },
            w.protocol,
            esc(&w.version),
        );
    }
    m.push_str("</tbody></table></main>");
    page("Workers", &m, part)
}

pub fn not_found(message: &str) -> String {
    let main = format!(
        "{}<h1>Not found</h1><p>{}</p><p><a href=\"/\">All jobs</a></p></main>",
        main_open(false, true),
        esc(message)
    );
    page("Not found", &main, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped() {
        assert_eq!(
            esc("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
