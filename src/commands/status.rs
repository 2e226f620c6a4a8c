//! How `submit-job status` and `list` show jobs: aligned text for people, and
//! [`StatusView`], the JSON object of `--json` for scripts (shared with the coordinator's HTTP
//! API, in `common/src/status_view.rs`).

use std::fmt::{self, Write as _};

use fanfold_common::status_view::finishing;
pub use fanfold_common::status_view::{CountersView, OutputDirView, StatusView};
use std::time::{Duration, SystemTime};

use fanfold_common::spec::{JobState, JobStatus, RunningChunk};

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
    if let Some(slowest) = &s.slowest_running
        && !s.state.is_final()
    {
        writeln!(out, "slowest    {}", slowest_text(slowest))?;
    }
    if let Some(url) = &s.page_url {
        writeln!(out, "page       {url}")?;
    }
    Ok(())
}

/// The chunk a job waits on: `chunk 4 (/data/a bytes 0..65536) on w2, running 12s`.
pub fn slowest_text(slowest: &RunningChunk) -> String {
    let running = SystemTime::now()
        .duration_since(slowest.since)
        .unwrap_or_default();
    format!(
        "{} on {}, running {}",
        slowest.description,
        slowest.worker,
        humantime::format_duration(Duration::from_secs(running.as_secs()))
    )
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
    use std::time::UNIX_EPOCH;

    use fanfold_common::partial::SortOrder;
    use fanfold_common::render::Format;
    use fanfold_common::spec::Counters;
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
                reducers_auto: false,
                owner: Some("alice".into()),
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
            slowest_running: Some(RunningChunk {
                chunk: 4,
                description: "chunk 4 (/data/a bytes 0..65536)".into(),
                worker: "w2".into(),
                since: UNIX_EPOCH + Duration::from_millis(1_767_225_601_000),
            }),
            page_url: Some(format!("http://127.0.0.1:8080/jobs/{ID}")),
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
            "owner": "alice",
            "stage": null,
            "reduces_total": 3,
            "reduces_done": 2,
            "reduces_running": 1,
            "partition_bytes": [1024, 512, 1536],
            "slowest_running": {
                "chunk": 4,
                "description": "chunk 4 (/data/a bytes 0..65536)",
                "worker": "w2",
                "running_since": "2026-01-01T00:00:01.000Z"
            },
            "page_url": format!("http://127.0.0.1:8080/jobs/{ID}"),
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
            "owner",
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
             quarantine /state/q.tsv\n\
             page       http://127.0.0.1:8080/jobs/{ID}\n"
        );
        assert_eq!(text, expected);
        // A running job names the chunk it waits on.
        let mut running = job();
        running.state = JobState::Running;
        running.slowest_running.as_mut().unwrap().since =
            SystemTime::now() - Duration::from_secs(75);
        assert!(
            status_text(&running)
                .contains("slowest    chunk 4 (/data/a bytes 0..65536) on w2, running 1m 15s\n"),
            "{}",
            status_text(&running)
        );
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
