//! Conversions of the fleet's messages (`crate::fleet`) to and from the wire, both ways: the
//! coordinator's fleet adapter and the worker's attachment use them.

use bytes::Bytes;
use fanfold_proto::v1 as pb;

use super::{ConvertError, job_id};
use crate::chunker::ChunkRange;
use crate::fleet::{
    Assignment, AttemptKey, ChunkOutput, FromWorker, LocalFile, LocalListing, MapOutput, MapSource,
    Payload, ReduceAssignment, ReduceKey, ReduceReport, Report, ToWorker, WorkerHello,
};
use crate::ids::{Attempt, ChunkId};
use crate::location::Location;
use crate::partial::{ChunkPartial, Row, SortOrder};
use crate::shuffle::Segment;

fn location(raw: &str, field: &'static str) -> Result<Location, ConvertError> {
    Location::parse(raw).map_err(|e| ConvertError::Invalid {
        field,
        message: e.to_string(),
    })
}

fn key(job: &str, chunk: u64, attempt: u32) -> Result<AttemptKey, ConvertError> {
    Ok(AttemptKey {
        job: job_id(job)?,
        chunk: ChunkId(chunk),
        attempt: Attempt(attempt),
    })
}

impl From<WorkerHello> for pb::Hello {
    fn from(h: WorkerHello) -> Self {
        pb::Hello {
            name: h.name,
            slots: h.slots,
            version: h.version,
            operations: h.operations,
            shared_storage: h.shared_storage,
            protocol: h.protocol,
            shuffle_address: h.shuffle_address,
            local_roots: h.local_roots,
        }
    }
}

impl From<pb::Hello> for WorkerHello {
    fn from(h: pb::Hello) -> Self {
        WorkerHello {
            name: h.name,
            slots: h.slots,
            version: h.version,
            operations: h.operations,
            shared_storage: h.shared_storage,
            protocol: h.protocol,
            shuffle_address: h.shuffle_address,
            local_roots: h.local_roots,
        }
    }
}

/// An assignment as sent: inline bytes in `data` (empty for a large chunk, whose pieces the
/// sender announces in `piece_bytes`), or a shared location in `shared_path`.
impl From<Assignment> for pb::Assign {
    fn from(a: Assignment) -> Self {
        let (data, shared_path) = match a.payload {
            Payload::Inline(data) => (data, String::new()),
            Payload::Shared(location) => (Bytes::new(), location.encoded()),
            Payload::Unread => (Bytes::new(), String::new()),
        };
        pb::Assign {
            job_id: a.job.to_string(),
            chunk: a.chunk.0,
            attempt: a.attempt.0,
            operation: a.operation,
            options: a.options.into_iter().collect(),
            location: Some(pb::ChunkLocation {
                path: a.location.encoded(),
                start: a.range.start,
                end: a.range.end,
                header: a.range.header,
            }),
            data,
            piece_bytes: 0,
            skip_bad_records: a.skip_bad_records,
            shared_path,
            reducers: a.reducers,
            whole_file: a.whole_file,
        }
    }
}

/// An assignment as received, its pieces (if any) already gathered into `data`.
impl TryFrom<pb::Assign> for Assignment {
    type Error = ConvertError;
    fn try_from(a: pb::Assign) -> Result<Self, Self::Error> {
        let key = key(&a.job_id, a.chunk, a.attempt)?;
        let place = a.location.ok_or(ConvertError::Missing("location"))?;
        if place.end < place.start || place.header > place.start {
            return Err(ConvertError::Invalid {
                field: "location",
                message: format!("range {}..{} ends before it starts", place.start, place.end),
            });
        }
        let payload = if a.shared_path.is_empty() {
            Payload::Inline(a.data)
        } else {
            Payload::Shared(location(&a.shared_path, "shared_path")?)
        };
        Ok(Assignment {
            job: key.job,
            chunk: key.chunk,
            attempt: key.attempt,
            operation: a.operation,
            options: a.options.into_iter().collect(),
            location: location(&place.path, "location.path")?,
            range: ChunkRange {
                file: 0,
                start: place.start,
                end: place.end,
                header: place.header,
            },
            payload,
            skip_bad_records: a.skip_bad_records,
            reducers: a.reducers,
            whole_file: a.whole_file,
        })
    }
}

/// Cancels as sent; an assignment through [`pb::Assign`] (whose pieces the sender adds).
impl From<ToWorker> for pb::CoordinatorMessage {
    fn from(message: ToWorker) -> Self {
        let kind = match message {
            ToWorker::Assign(a) => pb::coordinator_message::Kind::Assign(a.into()),
            ToWorker::Reduce(r) => pb::coordinator_message::Kind::Reduce(r.into()),
            ToWorker::Cancel(job) => pb::coordinator_message::Kind::Cancel(pb::CancelJob {
                job_id: job.to_string(),
            }),
            ToWorker::CancelAttempt(k) => {
                pb::coordinator_message::Kind::CancelAttempt(pb::CancelAttempt {
                    job_id: k.job.to_string(),
                    chunk: k.chunk.0,
                    attempt: k.attempt.0,
                })
            }
            ToWorker::ListLocal(l) => pb::coordinator_message::Kind::ListLocal(pb::ListLocal {
                request: l.request,
                patterns: l.patterns,
                chunk_size: l.chunk_size,
                max_files: l.max_files,
            }),
        };
        pb::CoordinatorMessage { kind: Some(kind) }
    }
}

impl From<ReduceKey> for pb::ReduceKey {
    fn from(k: ReduceKey) -> Self {
        pb::ReduceKey {
            job_id: k.job.to_string(),
            partition: k.partition,
            attempt: k.attempt.0,
        }
    }
}

impl TryFrom<Option<pb::ReduceKey>> for ReduceKey {
    type Error = ConvertError;
    fn try_from(k: Option<pb::ReduceKey>) -> Result<Self, Self::Error> {
        let k = k.ok_or(ConvertError::Missing("key"))?;
        Ok(ReduceKey {
            job: job_id(&k.job_id)?,
            partition: k.partition,
            attempt: Attempt(k.attempt),
        })
    }
}

impl From<ReduceAssignment> for pb::AssignReduce {
    fn from(r: ReduceAssignment) -> Self {
        pb::AssignReduce {
            key: Some(r.key.into()),
            operation: r.operation,
            options: r.options.into_iter().collect(),
            sort: match r.sort {
                SortOrder::Key => pb::SortOrder::Key,
                SortOrder::ValueDesc => pb::SortOrder::ValueDesc,
            } as i32,
            limit: r.limit,
            reducers: r.reducers,
            sources: r
                .sources
                .into_iter()
                .map(|s| pb::MapSource {
                    chunk: s.chunk.0,
                    attempt: s.attempt.0,
                    address: s.address,
                })
                .collect(),
        }
    }
}

impl TryFrom<pb::AssignReduce> for ReduceAssignment {
    type Error = ConvertError;
    fn try_from(r: pb::AssignReduce) -> Result<Self, Self::Error> {
        let key = ReduceKey::try_from(r.key)?;
        if key.partition >= r.reducers {
            return Err(ConvertError::Invalid {
                field: "key.partition",
                message: format!("partition {} of {} reducers", key.partition, r.reducers),
            });
        }
        let sort = match pb::SortOrder::try_from(r.sort) {
            Ok(pb::SortOrder::ValueDesc) => SortOrder::ValueDesc,
            Ok(_) => SortOrder::Key,
            Err(_) => {
                return Err(ConvertError::Invalid {
                    field: "sort",
                    message: format!("unknown sort order {}", r.sort),
                });
            }
        };
        Ok(ReduceAssignment {
            key,
            operation: r.operation,
            options: r.options.into_iter().collect(),
            sort,
            limit: r.limit,
            reducers: r.reducers,
            sources: r
                .sources
                .into_iter()
                .map(|s| MapSource {
                    chunk: ChunkId(s.chunk),
                    attempt: Attempt(s.attempt),
                    address: s.address,
                })
                .collect(),
        })
    }
}

/// A map output's partition as stored and fetched: an encoded [`pb::Partial`] whose entries
/// and count columns are in key order.
impl From<Segment> for pb::Partial {
    fn from(segment: Segment) -> Self {
        super::wire_partial(segment.entries.into_iter(), segment.counts)
    }
}

/// A segment's bytes, as kept in a map output and fetched by its reducer.
pub fn encode_segment(segment: Segment) -> Vec<u8> {
    use prost::Message;
    pb::Partial::from(segment).encode_to_vec()
}

/// A fetched segment, as a partial to fold.
pub fn decode_segment(data: &[u8]) -> Result<ChunkPartial, ConvertError> {
    use prost::Message;
    let partial = pb::Partial::decode(data).map_err(|e| ConvertError::Invalid {
        field: "segment",
        message: e.to_string(),
    })?;
    ChunkPartial::try_from(partial)
}

/// A fetched segment kept in its key order, for a merge of sorted segments.
pub fn decode_sorted_segment(data: &[u8]) -> Result<Segment, ConvertError> {
    use prost::Message;
    let partial = pb::Partial::decode(data).map_err(|e| ConvertError::Invalid {
        field: "segment",
        message: e.to_string(),
    })?;
    let entries = partial
        .entries
        .into_iter()
        .map(|e| Row::try_from(e).map(|row| (row.key, row.value)))
        .collect::<Result<Vec<_>, _>>()?;
    let counts = super::counts_from_wire(partial.counts, "segment.counts")?;
    Ok(Segment { counts, entries })
}

impl From<pb::ListLocal> for ToWorker {
    fn from(l: pb::ListLocal) -> Self {
        ToWorker::ListLocal(LocalListing {
            request: l.request,
            patterns: l.patterns,
            chunk_size: l.chunk_size,
            max_files: l.max_files,
        })
    }
}

impl TryFrom<pb::CancelJob> for ToWorker {
    type Error = ConvertError;
    fn try_from(c: pb::CancelJob) -> Result<Self, Self::Error> {
        Ok(ToWorker::Cancel(job_id(&c.job_id)?))
    }
}

impl TryFrom<pb::CancelAttempt> for ToWorker {
    type Error = ConvertError;
    fn try_from(c: pb::CancelAttempt) -> Result<Self, Self::Error> {
        Ok(ToWorker::CancelAttempt(key(&c.job_id, c.chunk, c.attempt)?))
    }
}

impl From<FromWorker> for pb::WorkerMessage {
    fn from(message: FromWorker) -> Self {
        use pb::worker_message::Kind;
        let kind = match message {
            FromWorker::Hello(hello) => Kind::Hello(hello.into()),
            FromWorker::Heartbeat => Kind::Heartbeat(pb::Heartbeat {}),
            FromWorker::Draining => Kind::Draining(pb::Draining {}),
            FromWorker::Report { key, report } => {
                let (job_id, chunk, attempt) = (key.job.to_string(), key.chunk.0, key.attempt.0);
                match report {
                    Report::Done(output) => Kind::Done(pb::ChunkDone {
                        job_id,
                        chunk,
                        attempt,
                        partial: Some(output.partial.into()),
                        counters: Some(output.stats.into()),
                        bad_records: output.bad.into_iter().map(Into::into).collect(),
                        map_output: output.map_output.map(|m| pb::MapOutput {
                            partition_bytes: m.partition_bytes,
                        }),
                    }),
                    Report::Failed { error, retryable } => Kind::Failed(pb::ChunkFailed {
                        job_id,
                        chunk,
                        attempt,
                        error,
                        retryable,
                    }),
                    Report::Released { unreadable } => Kind::Released(pb::ChunkReleased {
                        job_id,
                        chunk,
                        attempt,
                        unreadable: unreadable.unwrap_or_default(),
                    }),
                }
            }
            FromWorker::PartRows { key, rows } => Kind::PartRows(pb::PartRows {
                key: Some(key.into()),
                rows: rows.into_iter().map(Into::into).collect(),
            }),
            FromWorker::Reduced { key, report } => match report {
                ReduceReport::Done {
                    keys,
                    rows,
                    fetched_bytes,
                } => Kind::ReduceDone(pb::ReduceDone {
                    key: Some(key.into()),
                    keys,
                    rows,
                    fetched_bytes,
                }),
                ReduceReport::Failed {
                    error,
                    retryable,
                    lost,
                } => Kind::ReduceFailed(pb::ReduceFailed {
                    key: Some(key.into()),
                    error,
                    retryable,
                    lost_chunk: lost.map(|(chunk, _)| chunk.0),
                    lost_attempt: lost.map_or(0, |(_, attempt)| attempt.0),
                }),
            },
            FromWorker::LocalListed { request, result } => {
                let (files, error) = match result {
                    Ok(files) => (files, String::new()),
                    Err(error) => (Vec::new(), error),
                };
                Kind::LocalListed(pb::LocalListed {
                    request,
                    files: files
                        .into_iter()
                        .map(|f| pb::LocalFile {
                            path: f.path,
                            len: f.len,
                            ends: f.ends,
                        })
                        .collect(),
                    error,
                })
            }
        };
        pb::WorkerMessage { kind: Some(kind) }
    }
}

impl TryFrom<pb::WorkerMessage> for FromWorker {
    type Error = ConvertError;
    fn try_from(message: pb::WorkerMessage) -> Result<Self, Self::Error> {
        use pb::worker_message::Kind;
        Ok(match message.kind.ok_or(ConvertError::Missing("kind"))? {
            Kind::Hello(hello) => FromWorker::Hello(hello.into()),
            Kind::Heartbeat(_) => FromWorker::Heartbeat,
            Kind::Draining(_) => FromWorker::Draining,
            Kind::Done(done) => FromWorker::Report {
                key: key(&done.job_id, done.chunk, done.attempt)?,
                report: Report::Done(ChunkOutput {
                    partial: done.partial.unwrap_or_default().try_into()?,
                    stats: done.counters.unwrap_or_default().into(),
                    bad: done.bad_records.into_iter().map(Into::into).collect(),
                    map_output: done.map_output.map(|m| MapOutput {
                        partition_bytes: m.partition_bytes,
                    }),
                }),
            },
            Kind::Failed(failed) => FromWorker::Report {
                key: key(&failed.job_id, failed.chunk, failed.attempt)?,
                report: Report::Failed {
                    error: failed.error,
                    retryable: failed.retryable,
                },
            },
            Kind::Released(released) => FromWorker::Report {
                key: key(&released.job_id, released.chunk, released.attempt)?,
                report: Report::Released {
                    unreadable: (!released.unreadable.is_empty()).then_some(released.unreadable),
                },
            },
            Kind::PartRows(part) => FromWorker::PartRows {
                key: ReduceKey::try_from(part.key)?,
                rows: part
                    .rows
                    .into_iter()
                    .map(Row::try_from)
                    .collect::<Result<_, _>>()?,
            },
            Kind::ReduceDone(done) => FromWorker::Reduced {
                key: ReduceKey::try_from(done.key)?,
                report: ReduceReport::Done {
                    keys: done.keys,
                    rows: done.rows,
                    fetched_bytes: done.fetched_bytes,
                },
            },
            Kind::ReduceFailed(failed) => FromWorker::Reduced {
                key: ReduceKey::try_from(failed.key)?,
                report: ReduceReport::Failed {
                    error: failed.error,
                    retryable: failed.retryable,
                    lost: failed
                        .lost_chunk
                        .map(|chunk| (ChunkId(chunk), Attempt(failed.lost_attempt))),
                },
            },
            Kind::LocalListed(listed) => FromWorker::LocalListed {
                request: listed.request,
                result: if listed.error.is_empty() {
                    Ok(listed
                        .files
                        .into_iter()
                        .map(|f| LocalFile {
                            path: f.path,
                            len: f.len,
                            ends: f.ends,
                        })
                        .collect())
                } else {
                    Err(listed.error)
                },
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::JobId;
    use crate::operation::{BadRecord, ChunkStats};
    use crate::partial::{Partial, Value};

    #[test]
    fn fleet_messages_round_trip() {
        let assignment = Assignment {
            job: JobId::new(),
            chunk: ChunkId(7),
            attempt: Attempt(2),
            operation: "wordcount".into(),
            options: [("k".to_string(), "v".to_string())].into(),
            location: Location::local("logs/a.txt"),
            range: ChunkRange {
                file: 3,
                start: 10,
                end: 20,
                header: 4,
            },
            payload: Payload::Shared(Location::local("/abs/logs/a.txt")),
            skip_bad_records: true,
            reducers: 3,
            whole_file: true,
        };
        let back = Assignment::try_from(pb::Assign::from(assignment.clone())).unwrap();
        assert_eq!(back.key(), assignment.key());
        assert_eq!(back.location, assignment.location);
        assert_eq!(
            (back.range.start, back.range.end, back.range.header),
            (10, 20, 4)
        );
        assert_eq!(back.reducers, 3);
        assert!(back.whole_file);
        assert!(
            matches!(back.payload, Payload::Shared(l) if l == Location::local("/abs/logs/a.txt"))
        );
        let inline = Assignment {
            payload: Payload::Inline(Bytes::from_static(b"x y\n")),
            ..assignment.clone()
        };
        let back = Assignment::try_from(pb::Assign::from(inline)).unwrap();
        assert!(matches!(back.payload, Payload::Inline(d) if &d[..] == b"x y\n"));

        let reduce_key = ReduceKey {
            job: assignment.job,
            partition: 1,
            attempt: Attempt(2),
        };
        let reduce = ReduceAssignment {
            key: reduce_key,
            operation: "distinct".into(),
            options: Default::default(),
            sort: SortOrder::ValueDesc,
            limit: Some(5),
            reducers: 3,
            sources: vec![MapSource {
                chunk: ChunkId(4),
                attempt: Attempt(1),
                address: "10.0.0.1:7078".into(),
            }],
        };
        assert_eq!(
            ReduceAssignment::try_from(pb::AssignReduce::from(reduce.clone())).unwrap(),
            reduce
        );
        let outside = ReduceAssignment {
            reducers: 1,
            ..reduce
        };
        assert!(ReduceAssignment::try_from(pb::AssignReduce::from(outside)).is_err());

        let mut partial = Partial::new();
        partial.add(b"a".to_vec(), Value::Count(2)).unwrap();
        partial.add(b"m".to_vec(), Value::Max(1.5)).unwrap();
        let messages = [
            FromWorker::Hello(WorkerHello {
                name: "w".into(),
                slots: 2,
                version: "0.1.0".into(),
                operations: vec!["grep".into()],
                shared_storage: true,
                protocol: 9,
                shuffle_address: "127.0.0.1:9".into(),
                local_roots: vec!["/var/log".into()],
            }),
            FromWorker::Heartbeat,
            FromWorker::Draining,
            FromWorker::Report {
                key: assignment.key(),
                report: Report::Done(ChunkOutput {
                    partial: partial.into_columns(),
                    stats: ChunkStats {
                        records_in: 3,
                        ..Default::default()
                    },
                    bad: vec![BadRecord {
                        offset: 4,
                        record: b"bad".to_vec(),
                        error: "no".into(),
                    }],
                    map_output: Some(MapOutput {
                        partition_bytes: vec![5, 0, 7],
                    }),
                }),
            },
            FromWorker::Report {
                key: assignment.key(),
                report: Report::Failed {
                    error: "boom".into(),
                    retryable: false,
                },
            },
            FromWorker::Report {
                key: assignment.key(),
                report: Report::Released {
                    unreadable: Some("gone".into()),
                },
            },
            FromWorker::PartRows {
                key: reduce_key,
                rows: vec![Row {
                    key: b"k".to_vec(),
                    value: Value::Number(2.5),
                }],
            },
            FromWorker::Reduced {
                key: reduce_key,
                report: ReduceReport::Done {
                    keys: 4,
                    rows: 3,
                    fetched_bytes: 100,
                },
            },
            FromWorker::Reduced {
                key: reduce_key,
                report: ReduceReport::Failed {
                    error: "fetch".into(),
                    retryable: true,
                    lost: Some((ChunkId(0), Attempt(1))),
                },
            },
            FromWorker::LocalListed {
                request: 7,
                result: Ok(vec![LocalFile {
                    path: "/var/log/a.log".into(),
                    len: 10,
                    ends: vec![4, 10],
                }]),
            },
            FromWorker::LocalListed {
                request: 8,
                result: Err("no such directory".into()),
            },
        ];
        for message in messages {
            let wire = pb::WorkerMessage::from(clone_message(&message));
            assert_eq!(FromWorker::try_from(wire).unwrap(), message);
        }
        let cancel = pb::CoordinatorMessage::from(ToWorker::CancelAttempt(assignment.key()));
        let Some(pb::coordinator_message::Kind::CancelAttempt(c)) = cancel.kind else {
            panic!("{cancel:?}");
        };
        assert!(
            matches!(ToWorker::try_from(c).unwrap(), ToWorker::CancelAttempt(k) if k == assignment.key())
        );
        let listing = LocalListing {
            request: 3,
            patterns: vec!["/var/log/*.log".into()],
            chunk_size: 1 << 20,
            max_files: 10,
        };
        let wire = pb::CoordinatorMessage::from(ToWorker::ListLocal(listing.clone()));
        let Some(pb::coordinator_message::Kind::ListLocal(l)) = wire.kind else {
            panic!("{wire:?}");
        };
        assert!(matches!(ToWorker::from(l), ToWorker::ListLocal(back) if back == listing));
        let bad = pb::Assign {
            job_id: "not-an-id".into(),
            ..Default::default()
        };
        assert!(Assignment::try_from(bad).is_err());
    }

    fn clone_message(m: &FromWorker) -> FromWorker {
        match m {
            FromWorker::Hello(h) => FromWorker::Hello(h.clone()),
            FromWorker::Heartbeat => FromWorker::Heartbeat,
            FromWorker::Draining => FromWorker::Draining,
            FromWorker::Report { key, report } => FromWorker::Report {
                key: *key,
                report: match report {
                    Report::Done(o) => Report::Done(o.clone()),
                    Report::Failed { error, retryable } => Report::Failed {
                        error: error.clone(),
                        retryable: *retryable,
                    },
                    Report::Released { unreadable } => Report::Released {
                        unreadable: unreadable.clone(),
                    },
                },
            },
            FromWorker::PartRows { key, rows } => FromWorker::PartRows {
                key: *key,
                rows: rows.clone(),
            },
            FromWorker::Reduced { key, report } => FromWorker::Reduced {
                key: *key,
                report: report.clone(),
            },
            FromWorker::LocalListed { request, result } => FromWorker::LocalListed {
                request: *request,
                result: result.clone(),
            },
        }
    }
}
