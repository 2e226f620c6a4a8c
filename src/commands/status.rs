//! How `submit-job status` and `list` show jobs: aligned text for people, and
//! [`StatusView`], the JSON object of `--json` for scripts. The JSON field names are a
//! contract (README.md lists them): add fields, never rename or remove one.

use std::fmt::{self, Write as _};
use std::time::{SystemTime, UNIX_EPOCH};

use fanfold_common::operation::Options;
use fanfold_common::partial::SortOrder;
use fanfold_common::spec::{Counters, JobState, JobStatus};
use serde::Serialize;

/// A job status as `status --json` prints it, with stable snake_case names.
#[derive(Debug, Serialize)]
pub struct StatusView<'a> {
    pub job_id: String,
    /// `running`, `succeeded`, `failed` or `cancelled`.
    pub state: &'static str,
    /// A running job whose chunks are all folded and whose end is being made durable.
    pub finishing: bool,
    pub operation: &'a str,
    pub options: &'a Options,
    pub inputs: &'a [String],
    /// The job's target chunk size in bytes: the coordinator's default if the job set none.
    pub chunk_size: Option<u64>,
    /// `key` or `value`, as `--sort` names them.
    pub sort: &'static str,
    pub limit: Option<u64>,
    pub whole_file: bool,
    pub skip_bad_records: bool,
    pub timeout_seconds: Option<f64>,
    pub output_dir: Option<OutputDirView<'a>>,
    pub chunks_total: u64,
    pub chunks_done: u64,
    pub chunks_running: u64,
    pub chunks_checkpointed: u64,
    pub bytes_total: u64,
    pub bytes_done: u64,
    pub workers: u32,
    pub counters: CountersView<'a>,
    pub error: Option<&'a str>,
    /// RFC 3339, UTC, in milliseconds.
    pub submitted_at: Option<String>,
    pub finished_at: Option<String>,
    pub result_rows: u64,
    pub quarantine: Option<&'a str>,
    /// Partitions of a partitioned job (`--reducers`), else null.
    pub reducers: Option<u32>,
    /// A running partitioned job's stage: `map` or `reduce`; null otherwise.
    pub stage: Option<&'static str>,
    pub reduces_total: u64,
    pub reduces_done: u64,
    pub reduces_running: u64,
    /// Each partition's bytes of map output (skew shows here).
    pub partition_bytes: &'a [u64],
}

/// The `output_dir` of a [`StatusView`].
#[derive(Debug, Serialize)]
pub struct OutputDirView<'a> {
    pub path: &'a str,
    /// `tsv`, `csv`, `jsonl` or `lines`.
    pub format: &'static str,
    pub overwrite: bool,
}

/// The `counters` of a [`StatusView`].
#[derive(Debug, Serialize)]
pub struct CountersView<'a> {
    pub records_in: u64,
    pub bytes_in: u64,
    pub bad_records: u64,
    pub keys_out: u64,
    pub attempts: u64,
    pub chunks_failed: u64,
    pub backups: u64,
    pub map_outputs_lost: u64,
    pub reduce_attempts: u64,
    pub shuffle_bytes: u64,
    /// `GROUP.NAME` -> amount.
    pub user: &'a std::collections::BTreeMap<String, u64>,
}

impl<'a> From<&'a JobStatus> for StatusView<'a> {
    fn from(s: &'a JobStatus) -> Self {
        let spec = &s.spec;
        StatusView {
            job_id: s.id.to_string(),
            state: s.state.as_str(),
            finishing: finishing(s),
            operation: &spec.operation,
            options: &spec.options,
            inputs: &spec.inputs,
            chunk_size: spec.chunk_size,
            sort: match spec.sort {
                SortOrder::Key => "key",
                SortOrder::ValueDesc => "value",
            },
            limit: spec.limit,
            whole_file: spec.whole_file,
            skip_bad_records: spec.skip_bad_records,
            timeout_seconds: spec.timeout.map(|t| t.as_secs_f64()),
            output_dir: spec.output.as_ref().map(|o| OutputDirView {
                path: &o.path,
                format: o.format.name(),
                overwrite: o.overwrite,
            }),
            chunks_total: s.chunks_total,
            chunks_done: s.chunks_done,
            chunks_running: s.chunks_running,
            chunks_checkpointed: s.chunks_checkpointed,
            bytes_total: s.bytes_total,
            bytes_done: s.bytes_done,
            workers: s.workers,
            counters: CountersView::from(&s.counters),
            error: s.error.as_deref(),
            submitted_at: rfc3339(s.submitted_at),
            finished_at: s.finished_at.and_then(rfc3339),
            result_rows: s.result_rows,
            quarantine: s.quarantine.as_deref(),
            reducers: spec.reducers,
            stage: s.stage(),
            reduces_total: s.reduces_total,
            reduces_done: s.reduces_done,
            reduces_running: s.reduces_running,
            partition_bytes: &s.partition_bytes,
        }
    }
}

impl<'a> From<&'a Counters> for CountersView<'a> {
    fn from(c: &'a Counters) -> Self {
        CountersView {
            records_in: c.records_in,
            bytes_in: c.bytes_in,
            bad_records: c.bad_records,
            keys_out: c.keys_out,
            attempts: c.attempts,
            chunks_failed: c.chunks_failed,
            backups: c.backups,
            map_outputs_lost: c.map_outputs_lost,
            reduce_attempts: c.reduce_attempts,
            shuffle_bytes: c.shuffle_bytes,
            user: &c.user,
        }
    }
}

/// Finishing is shown only while the job runs: once final, its end is durable.
fn finishing(s: &JobStatus) -> bool {
    s.finishing && !s.state.is_final()
}

/// `time` in RFC 3339 (UTC, milliseconds); `None` outside years 1970 to 9999, which the
/// format's writer cannot spell.
fn rfc3339(time: SystemTime) -> Option<String> {
    const YEAR_10000: u64 = 253_402_300_800;
    let since_epoch = time.duration_since(UNIX_EPOCH).ok()?;
    (since_epoch.as_secs() < YEAR_10000).then(|| humantime::format_rfc3339_millis(time).to_string())
}

/// The text of `submit-job status`: one `name  value` line per fact.
pub fn status_text(s: &JobStatus) -> String {
    let mut text = String::new();
    write_status(&mut text, s).expect("writing to a String cannot fail");
    text
}

fn write_status(out: &mut String, s: &JobStatus) -> fmt::Result {
    let c = &s.counters;
    writeln!(out, "job        {}", s.id)?;
    if finishing(s) {
        writeln!(out, "state      {} (finishing)", s.state.as_str())?;
    } else {
        writeln!(out, "state      {}", s.state.as_str())?;
    }
    writeln!(out, "operation  {}", s.spec.operation)?;
    writeln!(out, "inputs     {}", s.spec.inputs.join(" "))?;
    writeln!(
        out,
        "chunks     {}/{} done, {} running, {} checkpointed",
        s.chunks_done, s.chunks_total, s.chunks_running, s.chunks_checkpointed
    )?;
    writeln!(
        out,
        "bytes      {}/{}",
        bytesize::ByteSize(s.bytes_done),
        bytesize::ByteSize(s.bytes_total)
    )?;
    if s.reduces_total > 0 {
        if let Some(stage) = s.stage() {
            writeln!(out, "stage      {stage}")?;
        }
        writeln!(
            out,
            "reduces    {}/{} done, {} running",
            s.reduces_done, s.reduces_total, s.reduces_running
        )?;
        let (low, high) = (
            s.partition_bytes.iter().min().copied().unwrap_or(0),
            s.partition_bytes.iter().max().copied().unwrap_or(0),
        );
        writeln!(
            out,
            "shuffle    {} in {} partitions ({} to {} each), {} map outputs lost, {} reduce attempts",
            bytesize::ByteSize(c.shuffle_bytes),
            s.partition_bytes.len(),
            bytesize::ByteSize(low),
            bytesize::ByteSize(high),
            c.map_outputs_lost,
            c.reduce_attempts
        )?;
    }
    writeln!(out, "workers    {}", s.workers)?;
    writeln!(
        out,
        "counters   records_in={} bytes_in={} bad_records={} keys_out={} attempts={} chunks_failed={} backups={}",
        c.records_in, c.bytes_in, c.bad_records, c.keys_out, c.attempts, c.chunks_failed, c.backups
    )?;
    for (name, amount) in &c.user {
        writeln!(out, "counter    {name}={amount}")?;
    }
    if s.state == JobState::Succeeded {
        writeln!(out, "rows       {}", s.result_rows)?;
    }
    if let Some(quarantine) = &s.quarantine {
        writeln!(out, "quarantine {quarantine}")?;
    }
    if let Some(error) = &s.error {
        writeln!(out, "error      {error}")?;
    }
    Ok(())
}

/// The text of `submit-job list`: a header, then one line per job.
pub fn list_text(jobs: &[JobStatus]) -> String {
    let mut text = String::new();
    write_list(&mut text, jobs).expect("writing to a String cannot fail");
    text
}

fn write_list(out: &mut String, jobs: &[JobStatus]) -> fmt::Result {
    writeln!(
        out,
        "{:<36}  {:<9}  {:>13}  {:<10}  inputs",
        "job", "state", "chunks", "operation"
    )?;
    for job in jobs {
        writeln!(
            out,
            "{:<36}  {:<9}  {:>13}  {:<10}  {}",
            job.id,
            job.state.as_str(),
            format!("{}/{}", job.chunks_done, job.chunks_total),
            job.spec.operation,
            job.spec.inputs.join(" ")
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use fanfold_common::render::Format;
    use fanfold_common::spec::{JobSpec, OutputDir};
    use serde_json::json;

    use super::*;

    const ID: &str = "0b5e6c1e-8d4f-4d5e-9a45-3f1c2b7d9e10";

    /// A job with every field set to something distinct.
    fn job() -> JobStatus {
        JobStatus {
            id: ID.parse().unwrap(),
            state: JobState::Succeeded,
            finishing: false,
            spec: JobSpec {
                inputs: vec!["/data/a".into(), "/data/b*.txt".into()],
                operation: "grep".into(),
                options: [("pattern".to_owned(), "E|F".to_owned())].into(),
                chunk_size: Some(65536),
                sort: SortOrder::ValueDesc,
                limit: Some(10),
                timeout: Some(Duration::from_millis(1500)),
                skip_bad_records: true,
                whole_file: false,
                output: Some(OutputDir {
                    path: "/out".into(),
                    format: Format::Jsonl,
                    overwrite: true,
                }),
                reducers: Some(3),
            },
            chunks_total: 12,
            chunks_done: 11,
            chunks_running: 1,
            chunks_checkpointed: 9,
            bytes_total: 3 << 20,
            bytes_done: 1 << 20,
            workers: 3,
            counters: Counters {
                records_in: 100,
                bytes_in: 2000,
                bad_records: 2,
                keys_out: 7,
                attempts: 13,
                chunks_failed: 1,
                backups: 4,
                user: [("fanfold.lines".to_owned(), 42)].into(),
                map_outputs_lost: 2,
                reduce_attempts: 5,
                shuffle_bytes: 3072,
            },
            error: None,
            // 2026-01-01T00:00:00Z is 1,767,225,600 s after the epoch.
            submitted_at: UNIX_EPOCH + Duration::from_millis(1_767_225_600_123),
            finished_at: Some(UNIX_EPOCH + Duration::from_secs(1_767_225_600 + 86_400 + 61)),
            result_rows: 7,
            quarantine: Some("/state/q.tsv".into()),
            reduces_total: 3,
            reduces_done: 2,
            reduces_running: 1,
            partition_bytes: vec![1024, 512, 1536],
        }
    }

    #[test]
    fn the_json_view_names_every_field_as_documented() {
        let view = serde_json::to_value(StatusView::from(&job())).unwrap();
        let expected = json!({
            "job_id": ID,
            "state": "succeeded",
            "finishing": false,
            "operation": "grep",
            "options": {"pattern": "E|F"},
            "inputs": ["/data/a", "/data/b*.txt"],
            "chunk_size": 65536,
            "sort": "value",
            "limit": 10,
            "whole_file": false,
            "skip_bad_records": true,
            "timeout_seconds": 1.5,
            "output_dir": {"path": "/out", "format": "jsonl", "overwrite": true},
            "chunks_total": 12,
            "chunks_done": 11,
            "chunks_running": 1,
            "chunks_checkpointed": 9,
            "bytes_total": 3145728,
            "bytes_done": 1048576,
            "workers": 3,
            "counters": {
                "records_in": 100,
                "bytes_in": 2000,
                "bad_records": 2,
                "keys_out": 7,
                "attempts": 13,
                "chunks_failed": 1,
                "backups": 4,
                "map_outputs_lost": 2,
                "reduce_attempts": 5,
                "shuffle_bytes": 3072,
                "user": {"fanfold.lines": 42},
            },
            "error": null,
            "submitted_at": "2026-01-01T00:00:00.123Z",
            "finished_at": "2026-01-02T00:01:01.000Z",
            "result_rows": 7,
            "quarantine": "/state/q.tsv",
            "reducers": 3,
            "stage": null,
            "reduces_total": 3,
            "reduces_done": 2,
            "reduces_running": 1,
            "partition_bytes": [1024, 512, 1536],
        });
        assert_eq!(view, expected);
    }

    #[test]
    fn unset_fields_are_null_and_finishing_shows_only_while_running() {
        let mut running = job();
        running.state = JobState::Running;
        running.finishing = true;
        running.spec = JobSpec {
            inputs: vec!["/x".into()],
            operation: "wordcount".into(),
            ..Default::default()
        };
        running.error = Some("it broke".into());
        running.finished_at = None;
        running.quarantine = None;
        // Before the epoch: not a time RFC 3339 writers here can spell.
        running.submitted_at = UNIX_EPOCH - Duration::from_secs(1);
        let view = serde_json::to_value(StatusView::from(&running)).unwrap();
        assert_eq!(view["state"], "running");
        assert_eq!(view["finishing"], true);
        for null in [
            "chunk_size",
            "limit",
            "timeout_seconds",
            "output_dir",
            "submitted_at",
            "finished_at",
            "quarantine",
            "reducers",
        ] {
            assert!(view[null].is_null(), "{null}: {view}");
        }
        assert_eq!(view["sort"], "key");
        assert_eq!(view["options"], json!({}));
        assert_eq!(view["error"], "it broke");
        assert!(status_text(&running).contains("\nstate      running (finishing)\n"));
        assert_eq!(view["stage"], "map", "11 of 12 chunks mapped");
        running.chunks_done = 12;
        let view = serde_json::to_value(StatusView::from(&running)).unwrap();
        assert_eq!(view["stage"], "reduce");
        assert!(status_text(&running).contains("\nstage      reduce\n"));

        running.state = JobState::Failed;
        let view = serde_json::to_value(StatusView::from(&running)).unwrap();
        assert_eq!(
            (&view["state"], &view["finishing"]),
            (&json!("failed"), &json!(false))
        );
        assert!(status_text(&running).contains("\nstate      failed\n"));
    }

    #[test]
    fn the_text_layout_is_one_aligned_line_per_fact() {
        let text = status_text(&job());
        let expected = format!(
            "job        {ID}\n\
             state      succeeded\n\
             operation  grep\n\
             inputs     /data/a /data/b*.txt\n\
             chunks     11/12 done, 1 running, 9 checkpointed\n\
             bytes      1.0 MiB/3.0 MiB\n\
             reduces    2/3 done, 1 running\n\
             shuffle    3.0 KiB in 3 partitions (512 B to 1.5 KiB each), 2 map outputs lost, 5 reduce attempts\n\
             workers    3\n\
             counters   records_in=100 bytes_in=2000 bad_records=2 keys_out=7 attempts=13 chunks_failed=1 backups=4\n\
             counter    fanfold.lines=42\n\
             rows       7\n\
             quarantine /state/q.tsv\n"
        );
        assert_eq!(text, expected);
        let list = list_text(&[job()]);
        assert_eq!(
            list,
            format!(
                "job                                   state             chunks  operation   inputs\n\
                 {ID}  succeeded          11/12  grep        /data/a /data/b*.txt\n"
            )
        );
    }
}
