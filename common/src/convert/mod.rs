//! Conversions between wire types (`fanfold_proto::v1`) and domain types, in one place (the
//! fleet's messages in [`fleet`]):
//! `From` outward, `TryFrom` inward. A missing or malformed field is a [`ConvertError`], which
//! becomes `InvalidArgument` at the gRPC edge; nothing here unwraps.
//!
//! About 500 lines: each conversion sits beside its inverse, and the round-trip tests beside
//! both.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use fanfold_proto::v1 as pb;

mod fleet;

pub use fleet::{decode_segment, decode_sorted_segment, encode_segment};

/// A value's bytes, as a reducer's spilled run keeps it.
pub fn encode_value(value: Value) -> Vec<u8> {
    use prost::Message;
    pb::Value::from(value).encode_to_vec()
}

/// A value from [`encode_value`]'s bytes.
pub fn decode_value(data: &[u8]) -> Result<Value, ConvertError> {
    use prost::Message;
    let value = pb::Value::decode(data).map_err(|e| ConvertError::Invalid {
        field: "value",
        message: e.to_string(),
    })?;
    Value::try_from(value)
}

use crate::ids::JobId;
use crate::operation::{BadRecord, ChunkStats};
use crate::partial::{ChunkPartial, Counts, Partial, Row, SortOrder, Value};
use crate::render::Format;
use crate::sketch::{ExactSum, Sketch};
use crate::spec::{Counters, JobSpec, JobState, JobStatus, OutputDir, RunningChunk};

/// A wire message that does not make a valid domain value.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("missing field '{0}'")]
    Missing(&'static str),
    #[error("field '{field}': {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
}

pub(crate) fn job_id(raw: &str) -> Result<JobId, ConvertError> {
    raw.parse()
        .map_err(|e: crate::ids::BadJobId| ConvertError::Invalid {
            field: "job_id",
            message: e.to_string(),
        })
}

impl From<ConvertError> for tonic::Status {
    fn from(e: ConvertError) -> Self {
        tonic::Status::invalid_argument(e.to_string())
    }
}

impl From<&JobSpec> for pb::JobSpec {
    fn from(spec: &JobSpec) -> Self {
        pb::JobSpec {
            inputs: spec.inputs.clone(),
            operation: spec.operation.clone(),
            options: spec.options.clone().into_iter().collect(),
            chunk_size: spec.chunk_size.unwrap_or(0),
            sort: match spec.sort {
                SortOrder::Key => pb::SortOrder::Key,
                SortOrder::ValueDesc => pb::SortOrder::ValueDesc,
            } as i32,
            limit: spec.limit,
            whole_file: spec.whole_file,
            output_dir: spec
                .output
                .as_ref()
                .map(|o| o.path.clone())
                .unwrap_or_default(),
            output_format: match spec.output.as_ref().map(|o| o.format) {
                None | Some(Format::Tsv) => pb::ResultFormat::Tsv,
                Some(Format::Csv) => pb::ResultFormat::Csv,
                Some(Format::Jsonl) => pb::ResultFormat::Jsonl,
                Some(Format::Lines) => pb::ResultFormat::Lines,
            } as i32,
            overwrite: spec.output.as_ref().is_some_and(|o| o.overwrite),
            timeout_ms: spec
                .timeout
                .map_or(0, |t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
            skip_bad_records: spec.skip_bad_records,
            reducers: spec.reducers.unwrap_or(0),
            reducers_auto: spec.reducers_auto,
            owner: spec.owner.clone().unwrap_or_default(),
        }
    }
}

impl TryFrom<pb::JobSpec> for JobSpec {
    type Error = ConvertError;
    fn try_from(spec: pb::JobSpec) -> Result<Self, Self::Error> {
        let sort = match pb::SortOrder::try_from(spec.sort) {
            Ok(pb::SortOrder::Key | pb::SortOrder::Unspecified) => SortOrder::Key,
            Ok(pb::SortOrder::ValueDesc) => SortOrder::ValueDesc,
            Err(_) => {
                return Err(ConvertError::Invalid {
                    field: "sort",
                    message: format!("unknown sort order {}", spec.sort),
                });
            }
        };
        let format = match pb::ResultFormat::try_from(spec.output_format) {
            Ok(pb::ResultFormat::Tsv) => Format::Tsv,
            Ok(pb::ResultFormat::Csv) => Format::Csv,
            Ok(pb::ResultFormat::Jsonl) => Format::Jsonl,
            Ok(pb::ResultFormat::Lines) => Format::Lines,
            Err(_) => {
                return Err(ConvertError::Invalid {
                    field: "output_format",
                    message: format!("unknown result format {}", spec.output_format),
                });
            }
        };
        let output = (!spec.output_dir.is_empty()).then_some(OutputDir {
            path: spec.output_dir,
            format,
            overwrite: spec.overwrite,
        });
        Ok(JobSpec {
            output,
            inputs: spec.inputs,
            operation: spec.operation,
            options: spec.options.into_iter().collect(),
            chunk_size: (spec.chunk_size != 0).then_some(spec.chunk_size),
            sort,
            limit: spec.limit,
            timeout: (spec.timeout_ms != 0).then(|| Duration::from_millis(spec.timeout_ms)),
            skip_bad_records: spec.skip_bad_records,
            whole_file: spec.whole_file,
            reducers: (spec.reducers != 0).then_some(spec.reducers),
            reducers_auto: spec.reducers_auto,
            owner: (!spec.owner.is_empty()).then_some(spec.owner),
        })
    }
}

impl From<Value> for pb::Value {
    fn from(value: Value) -> Self {
        use pb::value::Kind;
        let list = |items: Vec<Vec<u8>>| pb::ByteList { items };
        let sum = |s: ExactSum| pb::ExactSum {
            partials: s.partials().to_vec(),
        };
        let kind = match value {
            Value::Count(n) => Kind::Count(n),
            Value::Sum(s) => Kind::Sum(sum(s)),
            Value::Min(x) => Kind::Min(x),
            Value::Max(x) => Kind::Max(x),
            Value::Mean { sum: s, count } => Kind::Mean(pb::Mean {
                sum: Some(sum(s)),
                count,
            }),
            Value::Distinct(set) => Kind::Distinct(list(set.into_iter().collect())),
            Value::Sketch(sketch) => Kind::Sketch(sketch.registers().to_vec()),
            Value::TopK { k, counts } => {
                let (values, counts) = counts.into_iter().unzip();
                Kind::TopK(pb::TopK { k, values, counts })
            }
            Value::Postings(set) => Kind::Postings(list(set.into_iter().collect())),
            Value::Collect(items) => Kind::Collected(list(items)),
            Value::Text(text) => Kind::Text(text),
            Value::Number(x) => Kind::Number(x),
        };
        pb::Value { kind: Some(kind) }
    }
}

impl TryFrom<pb::Value> for Value {
    type Error = ConvertError;
    fn try_from(value: pb::Value) -> Result<Self, Self::Error> {
        use pb::value::Kind;
        let invalid = |message: &str| ConvertError::Invalid {
            field: "value",
            message: message.to_owned(),
        };
        let sum = |s: Option<pb::ExactSum>| -> Result<ExactSum, ConvertError> {
            let partials = s.map(|s| s.partials).unwrap_or_default();
            if partials.iter().any(|p| !p.is_finite()) {
                return Err(invalid("a sum partial is not finite"));
            }
            Ok(ExactSum::from_partials(partials))
        };
        Ok(
            match value.kind.ok_or(ConvertError::Missing("value.kind"))? {
                Kind::Count(n) => Value::Count(n),
                Kind::Sum(s) => Value::Sum(sum(Some(s))?),
                Kind::Min(x) => Value::Min(x),
                Kind::Max(x) => Value::Max(x),
                Kind::Mean(m) => Value::Mean {
                    sum: sum(m.sum)?,
                    count: m.count,
                },
                Kind::Distinct(l) => Value::Distinct(l.items.into_iter().collect()),
                Kind::Sketch(bytes) => Value::Sketch(Box::new(
                    Sketch::from_registers(&bytes)
                        .ok_or_else(|| invalid("a sketch has the wrong number of registers"))?,
                )),
                Kind::TopK(t) => {
                    if t.values.len() != t.counts.len() {
                        return Err(invalid("top-k values and counts differ in length"));
                    }
                    let mut counts: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
                    for (v, n) in t.values.into_iter().zip(t.counts) {
                        *counts.entry(v).or_default() += n;
                    }
                    Value::TopK { k: t.k, counts }
                }
                Kind::Postings(l) => Value::Postings(l.items.into_iter().collect()),
                Kind::Collected(l) => Value::Collect(l.items),
                Kind::Text(text) => Value::Text(text),
                Kind::Number(x) => Value::Number(x),
            },
        )
    }
}

impl From<Row> for pb::Entry {
    fn from(row: Row) -> Self {
        pb::Entry {
            key: row.key,
            value: Some(row.value.into()),
        }
    }
}

impl TryFrom<pb::Entry> for Row {
    type Error = ConvertError;
    fn try_from(entry: pb::Entry) -> Result<Self, Self::Error> {
        let value = entry.value.ok_or(ConvertError::Missing("entry.value"))?;
        Ok(Row {
            key: entry.key,
            value: value.try_into()?,
        })
    }
}

impl From<Partial> for pb::Partial {
    fn from(partial: Partial) -> Self {
        partial.into_columns().into()
    }
}

impl From<ChunkPartial> for pb::Partial {
    fn from(partial: ChunkPartial) -> Self {
        wire_partial(partial.entries.into_entries(), partial.counts)
    }
}

/// A partial on the wire: its entries in the order given, its counts in columns.
pub(crate) fn wire_partial(
    entries: impl Iterator<Item = (Vec<u8>, Value)>,
    counts: Counts,
) -> pb::Partial {
    let (keys, lengths, values) = counts.into_parts();
    pb::Partial {
        entries: entries
            .map(|(key, value)| pb::Entry::from(Row { key, value }))
            .collect(),
        counts: (!values.is_empty()).then_some(pb::Counts {
            keys,
            lengths,
            values,
        }),
    }
}

/// Count columns from the wire, checked to agree with each other.
pub(crate) fn counts_from_wire(
    counts: Option<pb::Counts>,
    field: &'static str,
) -> Result<Counts, ConvertError> {
    let counts = counts.unwrap_or_default();
    Counts::new(counts.keys, counts.lengths, counts.values).map_err(|e| ConvertError::Invalid {
        field,
        message: e.to_string(),
    })
}

impl TryFrom<pb::Partial> for ChunkPartial {
    type Error = ConvertError;
    fn try_from(partial: pb::Partial) -> Result<Self, Self::Error> {
        let mut entries = Partial::new();
        for entry in partial.entries {
            let row = Row::try_from(entry)?;
            entries
                .add(row.key, row.value)
                .map_err(|e| ConvertError::Invalid {
                    field: "partial.entries",
                    message: e.to_string(),
                })?;
        }
        let counts = counts_from_wire(partial.counts, "partial.counts")?;
        Ok(ChunkPartial { entries, counts })
    }
}

impl TryFrom<pb::Partial> for Partial {
    type Error = ConvertError;
    fn try_from(partial: pb::Partial) -> Result<Self, Self::Error> {
        ChunkPartial::try_from(partial)?
            .into_partial()
            .map_err(|e| ConvertError::Invalid {
                field: "partial",
                message: e.to_string(),
            })
    }
}

impl From<BadRecord> for pb::BadRecord {
    fn from(b: BadRecord) -> Self {
        pb::BadRecord {
            offset: b.offset,
            record: b.record,
            error: b.error,
        }
    }
}

impl From<pb::BadRecord> for BadRecord {
    fn from(b: pb::BadRecord) -> Self {
        BadRecord {
            offset: b.offset,
            record: b.record,
            error: b.error,
        }
    }
}

impl From<ChunkStats> for pb::ChunkCounters {
    fn from(s: ChunkStats) -> Self {
        pb::ChunkCounters {
            records_in: s.records_in,
            bytes_in: s.bytes_in,
            bad_records: s.bad_records,
            user: s.user.into_iter().collect(),
        }
    }
}

impl From<pb::ChunkCounters> for ChunkStats {
    fn from(c: pb::ChunkCounters) -> Self {
        ChunkStats {
            records_in: c.records_in,
            bytes_in: c.bytes_in,
            bad_records: c.bad_records,
            user: c.user.into_iter().collect(),
        }
    }
}

impl From<JobState> for pb::JobState {
    fn from(state: JobState) -> Self {
        match state {
            JobState::Running => pb::JobState::Running,
            JobState::Succeeded => pb::JobState::Succeeded,
            JobState::Failed => pb::JobState::Failed,
            JobState::Cancelled => pb::JobState::Cancelled,
        }
    }
}

impl From<Counters> for pb::Counters {
    fn from(c: Counters) -> Self {
        let user = c.user.into_iter().collect();
        pb::Counters {
            records_in: c.records_in,
            bytes_in: c.bytes_in,
            bad_records: c.bad_records,
            keys_out: c.keys_out,
            attempts: c.attempts,
            chunks_failed: c.chunks_failed,
            backups: c.backups,
            user,
            map_outputs_lost: c.map_outputs_lost,
            reduce_attempts: c.reduce_attempts,
            shuffle_bytes: c.shuffle_bytes,
        }
    }
}

impl From<pb::Counters> for Counters {
    fn from(c: pb::Counters) -> Self {
        Counters {
            records_in: c.records_in,
            bytes_in: c.bytes_in,
            bad_records: c.bad_records,
            keys_out: c.keys_out,
            attempts: c.attempts,
            chunks_failed: c.chunks_failed,
            backups: c.backups,
            user: c.user.into_iter().collect(),
            map_outputs_lost: c.map_outputs_lost,
            reduce_attempts: c.reduce_attempts,
            shuffle_bytes: c.shuffle_bytes,
        }
    }
}

impl From<&JobStatus> for pb::JobStatus {
    fn from(s: &JobStatus) -> Self {
        pb::JobStatus {
            job_id: s.id.to_string(),
            state: pb::JobState::from(s.state) as i32,
            finishing: s.finishing,
            spec: Some((&s.spec).into()),
            chunks_total: s.chunks_total,
            chunks_done: s.chunks_done,
            chunks_running: s.chunks_running,
            chunks_checkpointed: s.chunks_checkpointed,
            bytes_total: s.bytes_total,
            bytes_done: s.bytes_done,
            workers: s.workers,
            counters: Some(s.counters.clone().into()),
            error: s.error.clone().unwrap_or_default(),
            submitted_at: Some(s.submitted_at.into()),
            finished_at: s.finished_at.map(Into::into),
            result_rows: s.result_rows,
            quarantine: s.quarantine.clone().unwrap_or_default(),
            reduces_total: s.reduces_total,
            reduces_done: s.reduces_done,
            reduces_running: s.reduces_running,
            partition_bytes: s.partition_bytes.clone(),
            slowest_running: s.slowest_running.as_ref().map(|r| pb::RunningChunk {
                chunk: r.chunk,
                description: r.description.clone(),
                worker: r.worker.clone(),
                since: Some(r.since.into()),
            }),
            page_url: s.page_url.clone().unwrap_or_default(),
        }
    }
}

impl TryFrom<pb::JobStatus> for JobStatus {
    type Error = ConvertError;
    fn try_from(s: pb::JobStatus) -> Result<Self, Self::Error> {
        let id = job_id(&s.job_id)?;
        let state = match pb::JobState::try_from(s.state) {
            Ok(pb::JobState::Running) => JobState::Running,
            Ok(pb::JobState::Succeeded) => JobState::Succeeded,
            Ok(pb::JobState::Failed) => JobState::Failed,
            Ok(pb::JobState::Cancelled) => JobState::Cancelled,
            _ => {
                return Err(ConvertError::Invalid {
                    field: "state",
                    message: format!("unknown job state {}", s.state),
                });
            }
        };
        let time = |t: prost_types::Timestamp, field| {
            SystemTime::try_from(t).map_err(|e| ConvertError::Invalid {
                field,
                message: e.to_string(),
            })
        };
        Ok(JobStatus {
            id,
            state,
            finishing: s.finishing,
            spec: s.spec.ok_or(ConvertError::Missing("spec"))?.try_into()?,
            chunks_total: s.chunks_total,
            chunks_done: s.chunks_done,
            chunks_running: s.chunks_running,
            chunks_checkpointed: s.chunks_checkpointed,
            bytes_total: s.bytes_total,
            bytes_done: s.bytes_done,
            workers: s.workers,
            counters: s.counters.unwrap_or_default().into(),
            error: (!s.error.is_empty()).then_some(s.error),
            submitted_at: time(
                s.submitted_at
                    .ok_or(ConvertError::Missing("submitted_at"))?,
                "submitted_at",
            )?,
            finished_at: s.finished_at.map(|t| time(t, "finished_at")).transpose()?,
            result_rows: s.result_rows,
            quarantine: (!s.quarantine.is_empty()).then_some(s.quarantine),
            reduces_total: s.reduces_total,
            reduces_done: s.reduces_done,
            reduces_running: s.reduces_running,
            partition_bytes: s.partition_bytes,
            slowest_running: s
                .slowest_running
                .map(|r| {
                    Ok::<_, ConvertError>(RunningChunk {
                        chunk: r.chunk,
                        description: r.description,
                        worker: r.worker,
                        since: time(
                            r.since
                                .ok_or(ConvertError::Missing("slowest_running.since"))?,
                            "slowest_running.since",
                        )?,
                    })
                })
                .transpose()?,
            page_url: (!s.page_url.is_empty()).then_some(s.page_url),
        })
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    #[test]
    fn status_round_trips() {
        let status = JobStatus {
            id: JobId::new(),
            state: JobState::Failed,
            finishing: true,
            spec: JobSpec {
                inputs: vec!["a".into(), "b/*.txt".into()],
                operation: "wordcount".into(),
                options: [("k".to_string(), "v".to_string())].into(),
                chunk_size: Some(4096),
                sort: SortOrder::ValueDesc,
                limit: Some(0),
                whole_file: true,
                output: Some(OutputDir {
                    path: "/out".into(),
                    format: Format::Csv,
                    overwrite: true,
                }),
                timeout: Some(Duration::from_secs(90)),
                skip_bad_records: true,
                reducers: Some(5),
                reducers_auto: true,
                owner: Some("alice".into()),
            },
            chunks_total: 3,
            chunks_done: 2,
            chunks_running: 1,
            chunks_checkpointed: 1,
            bytes_total: 10,
            bytes_done: 7,
            workers: 2,
            counters: Counters {
                records_in: 1,
                bytes_in: 2,
                bad_records: 3,
                keys_out: 4,
                attempts: 5,
                chunks_failed: 6,
                backups: 7,
                user: [("streaming.lines".to_string(), 7)].into(),
                map_outputs_lost: 8,
                reduce_attempts: 9,
                shuffle_bytes: 10,
            },
            error: Some("boom".into()),
            submitted_at: SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1500),
            finished_at: None,
            result_rows: 0,
            quarantine: Some("/q/j.tsv".into()),
            reduces_total: 5,
            reduces_done: 4,
            reduces_running: 1,
            partition_bytes: vec![1, 2, 3, 4, 5],
            slowest_running: Some(RunningChunk {
                chunk: 3,
                description: "chunk 3 (/d/a bytes 0..9)".into(),
                worker: "w1".into(),
                since: SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(2500),
            }),
            page_url: Some("http://127.0.0.1:8080/jobs/x".into()),
        };
        let back = JobStatus::try_from(pb::JobStatus::from(&status)).unwrap();
        assert_eq!(back, status);
    }

    #[test]
    fn partials_travel_with_counts_in_columns() {
        let mut partial = Partial::new();
        for (i, key) in ["a", "bb", "", "a very long key of more than sixteen bytes"]
            .into_iter()
            .enumerate()
        {
            partial
                .add(key.as_bytes().to_vec(), Value::Count(i as u64 + 1))
                .unwrap();
        }
        partial
            .add(b"t".to_vec(), Value::Text(b"x".to_vec()))
            .unwrap();
        let wire = pb::Partial::from(partial.clone());
        assert_eq!(wire.entries.len(), 1, "only the text as an entry");
        let counts = wire.counts.clone().unwrap();
        assert_eq!((counts.lengths.len(), counts.keys.len()), (4, 45));
        // Through bytes, as between processes.
        let decoded = pb::Partial::decode(wire.encode_to_vec().as_slice()).unwrap();
        assert_eq!(Partial::try_from(decoded).unwrap(), partial);
        // Columns that disagree are an invalid message, not a panic.
        let mut bad = wire;
        bad.counts.as_mut().unwrap().lengths[0] += 1;
        assert!(matches!(
            Partial::try_from(bad),
            Err(ConvertError::Invalid {
                field: "partial.counts",
                ..
            })
        ));
    }

    #[test]
    fn missing_value_is_an_error_not_a_panic() {
        let entry = pb::Entry {
            key: b"k".to_vec(),
            value: None,
        };
        assert!(matches!(
            Row::try_from(entry),
            Err(ConvertError::Missing("entry.value"))
        ));
    }
}
