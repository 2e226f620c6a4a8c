//! streaming: any executable as the mapper (and optionally the reducer), as Hadoop Streaming.
//!
//! Options: `mapper=CMD` (required) and `reducer=` a built-in (`sum`, `count`, `min`, `max`,
//! `mean`, `distinct`, `collect`; default `collect`) or a command. Commands run with `sh -c`.
//!
//! - The mapper runs once per chunk on a worker: the chunk's records (decompressed) on its
//!   stdin, `FANFOLD_INPUT_PATH` and `FANFOLD_CHUNK_START` in its environment. Each stdout line
//!   is `key<TAB>value` (split at the first tab; a line without one is a key with an empty
//!   value). An empty line, or a value a numeric reducer cannot parse, is a bad record.
//! - A built-in reducer folds the values per key like any aggregate (`count` counts lines,
//!   `distinct` counts distinct values, `collect` lists them sorted).
//! - A reducer command runs once, at the coordinator, when the job is finalized: it reads every
//!   `key<TAB>value` line sorted by key (then value), so each key's values arrive together (the
//!   Hadoop Streaming contract), and its stdout lines are the result rows. Values that read as
//!   numbers are numbers (for `--sort value`), others text.
//! - A stderr line `reporter:counter:GROUP,NAME,AMOUNT` adds AMOUNT to the job's counter
//!   `GROUP.NAME` (only for the attempt whose result is folded); other stderr lines are kept,
//!   the last few quoted in the error if the program exits non-zero, which fails the chunk (or
//!   the job, for the reducer).
//!
//! This runs arbitrary programs, so [`Operation::runs_programs`] says so and a registry refuses
//! to build it unless programs are allowed (`--allow-streaming` on the worker and coordinator).
//! A program runs in its own process group, killed as a whole when the chunk is stopped (job
//! cancelled, worker stopping; see [`Chunk::stopped`]) or the map ends early; on Linux the shell
//! is also killed if the thread that started it dies with the worker.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;

use crate::operation::{
    Chunk, ChunkStats, Finalized, MapError, Operation, Options, SpecError, check_options,
};
use crate::partial::{self, Partial, Row, SortOrder, Value};
use crate::records::{lines, number};
use crate::sketch::ExactSum;

pub const NAME: &str = "streaming";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Builtin {
    Sum,
    Count,
    Min,
    Max,
    Mean,
    Distinct,
    Collect,
}

#[derive(Clone, Debug)]
enum Reducer {
    Builtin(Builtin),
    Command(String),
}

pub struct Streaming {
    mapper: String,
    reducer: Reducer,
}

pub fn factory(options: &Options) -> Result<Arc<dyn Operation>, SpecError> {
    check_options(NAME, options, &["mapper", "reducer"])?;
    let mapper = options
        .get("mapper")
        .filter(|m| !m.trim().is_empty())
        .ok_or_else(|| SpecError::BadOption {
            operation: NAME.into(),
            message: "option 'mapper' (a command) is required".into(),
        })?;
    let reducer = match options.get("reducer").map(String::as_str) {
        None | Some("collect") => Reducer::Builtin(Builtin::Collect),
        Some("sum") => Reducer::Builtin(Builtin::Sum),
        Some("count") => Reducer::Builtin(Builtin::Count),
        Some("min") => Reducer::Builtin(Builtin::Min),
        Some("max") => Reducer::Builtin(Builtin::Max),
        Some("mean") => Reducer::Builtin(Builtin::Mean),
        Some("distinct") => Reducer::Builtin(Builtin::Distinct),
        Some(command) => Reducer::Command(command.to_owned()),
    };
    Ok(Arc::new(Streaming {
        mapper: mapper.clone(),
        reducer,
    }))
}

/// Splits a program's output line at the first tab.
fn key_value(line: &[u8]) -> (&[u8], &[u8]) {
    match memchr::memchr(b'\t', line) {
        Some(tab) => (&line[..tab], &line[tab + 1..]),
        None => (line, &[]),
    }
}

impl Operation for Streaming {
    fn map(&self, chunk: &Chunk<'_>, stats: &mut ChunkStats) -> Result<Partial, MapError> {
        stats.bytes_in += chunk.data.len() as u64;
        stats.records_in += lines(chunk.data).count() as u64;
        let start = chunk.start.to_string();
        let run = run_program(
            "mapper",
            &self.mapper,
            chunk.data,
            &[
                ("FANFOLD_INPUT_PATH", chunk.path),
                ("FANFOLD_CHUNK_START", &start),
            ],
            &|| chunk.stopped(),
        )
        .map_err(MapError::Failed)?;
        for (name, amount) in run.counters {
            *stats.user.entry(name).or_default() += amount;
        }
        let builtin = match self.reducer {
            Reducer::Builtin(b) => b,
            // The reducer command needs every value: collect them.
            Reducer::Command(_) => Builtin::Collect,
        };
        let mut partial = Partial::new();
        for line in lines(&run.stdout) {
            if line.is_empty() {
                stats.bad_records += 1;
                continue;
            }
            let (key, value) = key_value(line);
            let x = number(value);
            let value = match (builtin, x) {
                (Builtin::Sum, Some(x)) => Value::Sum(ExactSum::of(x)),
                (Builtin::Min, Some(x)) => Value::Min(x),
                (Builtin::Max, Some(x)) => Value::Max(x),
                (Builtin::Mean, Some(x)) => Value::Mean {
                    sum: ExactSum::of(x),
                    count: 1,
                },
                (Builtin::Sum | Builtin::Min | Builtin::Max | Builtin::Mean, None) => {
                    stats.bad_records += 1;
                    continue;
                }
                (Builtin::Count, _) => Value::Count(1),
                (Builtin::Distinct, _) => Value::Distinct(BTreeSet::from([value.to_vec()])),
                (Builtin::Collect, _) => Value::Collect(vec![value.to_vec()]),
            };
            partial.add(key.to_vec(), value)?;
        }
        Ok(partial)
    }

    fn finalize(
        &self,
        partial: Partial,
        sort: SortOrder,
        limit: Option<u64>,
    ) -> Result<Finalized, MapError> {
        let Reducer::Command(reducer) = &self.reducer else {
            return Ok(Finalized::sorted(partial, sort, limit));
        };
        // Every key's values, grouped, keys and values sorted.
        let mut grouped: Vec<(Vec<u8>, Vec<Vec<u8>>)> = partial
            .into_entries()
            .map(|(key, value)| match value {
                Value::Collect(mut values) => {
                    values.sort_unstable();
                    (key, values)
                }
                other => (key, vec![format!("{other:?}").into_bytes()]),
            })
            .collect();
        grouped.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut input = Vec::new();
        for (key, values) in &grouped {
            for value in values {
                input.extend_from_slice(key);
                input.push(b'\t');
                input.extend_from_slice(value);
                input.push(b'\n');
            }
        }
        drop(grouped);
        let run =
            run_program("reducer", reducer, &input, &[], &|| false).map_err(MapError::Failed)?;
        let rows: Vec<Row> = lines(&run.stdout)
            .filter(|line| !line.is_empty())
            .map(|line| {
                let (key, value) = key_value(line);
                let value = match std::str::from_utf8(value).ok() {
                    Some(text) if text.parse::<u64>().is_ok() => {
                        Value::Count(text.parse().unwrap_or_default())
                    }
                    _ => match number(value) {
                        Some(x) => Value::Number(x),
                        None => Value::Text(value.to_vec()),
                    },
                };
                Row {
                    key: key.to_vec(),
                    value,
                }
            })
            .collect();
        Ok(Finalized {
            keys: rows.len() as u64,
            rows: partial::order(rows, sort, limit, |a, b| a.key.cmp(&b.key)),
        })
    }

    fn runs_programs(&self) -> bool {
        true
    }
}

/// What a program printed: stdout, and the counters it reported on stderr.
struct Ran {
    stdout: Vec<u8>,
    counters: BTreeMap<String, u64>,
}

/// Stderr lines kept for the error message of a failed program.
const STDERR_TAIL_LINES: usize = 8;

/// A child in its own process group; the group is killed and the child reaped if dropped
/// before it was waited for.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            kill_group(self.0.id());
            let _ = self.0.wait();
        }
    }
}

/// Kills a child's whole process group: `sh -c` and whatever it started.
fn kill_group(pid: u32) {
    if let Ok(pid) = i32::try_from(pid) {
        // SAFETY: kill has no memory effects; a stale group id at worst fails with ESRCH.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    }
}

/// How often a running program checks whether its result is still wanted.
const STOP_POLL: std::time::Duration = std::time::Duration::from_millis(20);

/// Runs `sh -c command` with `input` on stdin; fails, quoting its stderr tail, if it cannot
/// start or exits non-zero. If `stop()` turns true, the program's process group is killed.
fn run_program(
    role: &str,
    command: &str,
    input: &[u8],
    env: &[(&str, &str)],
    stop: &(dyn Fn() -> bool + Sync),
) -> Result<Ran, String> {
    let mut builder = Command::new("sh");
    builder
        .arg("-c")
        .arg(command)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    std::os::unix::process::CommandExt::process_group(&mut builder, 0);
    die_with_parent(&mut builder);
    let mut child = KillOnDrop(
        builder
            .spawn()
            .map_err(|e| format!("{role} `{command}` cannot start: {e}"))?,
    );
    let mut stdin = child.0.stdin.take().expect("piped stdin");
    let mut stdout = child.0.stdout.take().expect("piped stdout");
    let stderr = child.0.stderr.take().expect("piped stderr");
    let pid = child.0.id();
    let finished = std::sync::atomic::AtomicBool::new(false);
    let mut stopped = false;
    let (out, (counters, tail)) = std::thread::scope(|scope| {
        // A program may stop reading early (head, grep -m): a broken pipe is not an error.
        scope.spawn(move || {
            let _ = stdin.write_all(input);
        });
        let reporter = scope.spawn(move || read_stderr(stderr));
        let watcher = scope.spawn(|| {
            while !finished.load(std::sync::atomic::Ordering::Relaxed) {
                if stop() {
                    kill_group(pid);
                    return true;
                }
                std::thread::sleep(STOP_POLL);
            }
            false
        });
        let mut out = Vec::new();
        let read = stdout.read_to_end(&mut out);
        let reported = reporter.join().unwrap_or_default();
        finished.store(true, std::sync::atomic::Ordering::Relaxed);
        stopped = watcher.join().unwrap_or(false);
        (read.map(|_| out), reported)
    });
    if stopped {
        return Err(format!(
            "{role} `{command}` stopped: its result is no longer wanted"
        ));
    }
    let out = out.map_err(|e| format!("{role} `{command}`: cannot read its output: {e}"))?;
    let status: ExitStatus = child
        .0
        .wait()
        .map_err(|e| format!("{role} `{command}`: {e}"))?;
    if !status.success() {
        let tail: Vec<String> = tail.into_iter().collect();
        return Err(format!(
            "{role} `{command}` failed ({status}); stderr: {}",
            if tail.is_empty() {
                "(empty)".to_string()
            } else {
                tail.join(" / ")
            }
        ));
    }
    Ok(Ran {
        stdout: out,
        counters,
    })
}

/// Reads a program's stderr: counter lines (`reporter:counter:GROUP,NAME,AMOUNT`) and the last
/// other lines.
fn read_stderr(stderr: impl Read) -> (BTreeMap<String, u64>, VecDeque<String>) {
    let mut counters = BTreeMap::new();
    let mut tail = VecDeque::new();
    for line in BufReader::new(stderr).split(b'\n') {
        let Ok(line) = line else { break };
        let line = String::from_utf8_lossy(&line).trim_end().to_string();
        let counter = line.strip_prefix("reporter:counter:").and_then(|spec| {
            let mut parts = spec.rsplitn(2, ',');
            let amount = parts.next()?.trim().parse::<u64>().ok()?;
            let (group, name) = parts.next()?.split_once(',')?;
            Some((format!("{group}.{name}"), amount))
        });
        match counter {
            Some((name, amount)) => *counters.entry(name).or_default() += amount,
            None if line.starts_with("reporter:") => {}
            None => {
                if tail.len() == STDERR_TAIL_LINES {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
        }
    }
    (counters, tail)
}

/// Asks Linux to kill the child if the thread that started it dies (the worker crashed).
#[cfg(target_os = "linux")]
fn die_with_parent(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_command: &mut Command) {}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(options: &[(&str, &str)]) -> Arc<dyn Operation> {
        factory(
            &options
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn a_shell_mapper_with_a_builtin_reducer_and_counters() {
        let op = op(&[
            (
                "mapper",
                "tr ' ' '\\n' | grep -v '^$' | sed 's/$/\t1/'; echo reporter:counter:words,seen,3 >&2",
            ),
            ("reducer", "sum"),
        ]);
        let mut stats = ChunkStats::default();
        let p = op
            .map(&Chunk::new(b"a b\nb\n", "f.txt", 0), &mut stats)
            .unwrap();
        let done = op.finalize(p, SortOrder::Key, None).unwrap();
        assert_eq!(
            done.rows,
            [
                Row {
                    key: b"a".to_vec(),
                    value: Value::Number(1.0)
                },
                Row {
                    key: b"b".to_vec(),
                    value: Value::Number(2.0)
                },
            ]
        );
        assert_eq!(stats.records_in, 2);
        assert_eq!(stats.user, BTreeMap::from([("words.seen".to_string(), 3)]));
    }

    #[test]
    fn a_failing_program_quotes_its_stderr_tail() {
        let op = op(&[("mapper", "echo one >&2; echo two >&2; exit 3")]);
        let err = op
            .map(&Chunk::new(b"x\n", "f", 0), &mut ChunkStats::default())
            .err()
            .unwrap()
            .to_string();
        assert_eq!(
            err,
            "mapper `echo one >&2; echo two >&2; exit 3` failed (exit status: 3); stderr: one / two"
        );
    }

    #[test]
    fn a_stopped_chunk_kills_its_program_group() {
        let op = op(&[("mapper", "sleep 30 | cat")]);
        let stop = std::sync::atomic::AtomicBool::new(false);
        let started = std::time::Instant::now();
        let err = std::thread::scope(|scope| {
            scope.spawn(|| {
                std::thread::sleep(std::time::Duration::from_millis(200));
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
            });
            op.map(
                &Chunk::new(b"x\n", "f", 0).with_stop(&stop),
                &mut ChunkStats::default(),
            )
            .err()
            .unwrap()
            .to_string()
        });
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
        assert_eq!(
            err,
            "mapper `sleep 30 | cat` stopped: its result is no longer wanted"
        );
    }

    #[test]
    fn a_reducer_command_gets_sorted_groups() {
        let op = op(&[
            ("mapper", "cat"),
            ("reducer", "awk -F'\\t' '{print $1 \"\\t\" NR \":\" $2}'"),
        ]);
        let mut p = op
            .map(
                &Chunk::new(b"b\t2\na\tz\n", "f", 0),
                &mut ChunkStats::default(),
            )
            .unwrap();
        p.merge(
            op.map(&Chunk::new(b"a\ty\n", "g", 0), &mut ChunkStats::default())
                .unwrap(),
        )
        .unwrap();
        let done = op.finalize(p, SortOrder::Key, None).unwrap();
        let shown: Vec<(String, Value)> = done
            .rows
            .into_iter()
            .map(|r| (String::from_utf8(r.key).unwrap(), r.value))
            .collect();
        assert_eq!(
            shown,
            [
                ("a".into(), Value::Text(b"1:y".to_vec())),
                ("a".into(), Value::Text(b"2:z".to_vec())),
                ("b".into(), Value::Text(b"3:2".to_vec())),
            ]
        );
    }
}
