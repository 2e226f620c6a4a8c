//! How `submit-job status` and `list` show jobs: aligned text for people.

use std::fmt::{self, Write as _};

use fanfold_common::spec::{JobState, JobStatus};

/// Finishing is shown only while the job runs: once final, its end is durable.
fn finishing(s: &JobStatus) -> bool {
    s.finishing && !s.state.is_final()
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

    use std::time::UNIX_EPOCH;

    use fanfold_common::partial::SortOrder;
    use fanfold_common::render::Format;
    use fanfold_common::spec::{Counters, JobSpec, OutputDir};

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
            },
            error: None,
            // 2026-01-01T00:00:00Z is 1,767,225,600 s after the epoch.
            submitted_at: UNIX_EPOCH + Duration::from_millis(1_767_225_600_123),
            finished_at: Some(UNIX_EPOCH + Duration::from_secs(1_767_225_600 + 86_400 + 61)),
            result_rows: 7,
            quarantine: Some("/state/q.tsv".into()),
        }
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
