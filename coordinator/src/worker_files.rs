//! Worker files: inputs that live on the workers' own disks (`worker://NAME/PATH`, or
//! `worker://*/PATH` for the same path on every worker that offers files of its own). The
//! coordinator cannot read them, so planning asks each worker named to list its files and
//! cut them at record boundaries (`ToWorker::ListLocal`, over its Attach stream); the
//! answers come back through the fleet adapter to [`Listings::answer`]. Each file becomes a
//! [`Location::Worker`], whose chunks the scheduler assigns only to that worker.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use fanfold_common::fleet::{LocalFile, LocalListing, ToWorker};
use fanfold_common::ids::WorkerId;
use fanfold_common::input::{InputError, InputFile};
use fanfold_common::location::{Location, WorkerFile, WorkerInput};
use tokio::sync::oneshot;

use crate::scheduler::{Handle, LocalWorker};

/// How long a worker may take to list and cut its files.
const LISTING_TIMEOUT: Duration = Duration::from_secs(120);

type Answer = Result<Vec<LocalFile>, String>;

/// Listings asked of workers and not answered yet, by request.
#[derive(Default)]
pub struct Listings {
    next: AtomicU64,
    waiting: Mutex<HashMap<u64, (WorkerId, oneshot::Sender<Answer>)>>,
}

impl Listings {
    /// A worker's answer to request `request`; dropped if nobody waits for it (or it came
    /// from another worker than the one asked).
    pub fn answer(&self, worker: WorkerId, request: u64, answer: Answer) {
        let mut waiting = self.waiting.lock().expect("listings");
        if waiting
            .get(&request)
            .is_some_and(|(asked, _)| *asked == worker)
            && let Some((_, reply)) = waiting.remove(&request)
        {
            let _ = reply.send(answer);
        }
    }

    /// The worker's stream ended: what it was asked will not be answered.
    pub fn forget(&self, worker: WorkerId) {
        let mut waiting = self.waiting.lock().expect("listings");
        waiting.retain(|_, (asked, _)| *asked != worker);
    }

    /// Asks `worker` to list and cut the files `patterns` name.
    async fn ask(
        &self,
        worker: &LocalWorker,
        patterns: Vec<String>,
        chunk_size: u64,
        max_files: usize,
    ) -> Answer {
        let request = self.next.fetch_add(1, Ordering::Relaxed);
        let (reply, answer) = oneshot::channel();
        self.waiting
            .lock()
            .expect("listings")
            .insert(request, (worker.id, reply));
        // However this ends (answered, timed out, or the submission dropped), the request
        // is not kept waiting.
        let _forget = Forget {
            listings: self,
            request,
        };
        let listing = LocalListing {
            request,
            patterns,
            chunk_size,
            max_files: max_files as u64,
        };
        let asked = async {
            worker
                .outbox
                .send(ToWorker::ListLocal(listing))
                .await
                .map_err(|_| "it left".to_owned())?;
            answer
                .await
                .map_err(|_| "it left before answering".to_owned())?
        };
        let answered = tokio::time::timeout(LISTING_TIMEOUT, asked).await;
        answered.unwrap_or_else(|_| Err(format!("no answer in {LISTING_TIMEOUT:?}")))
    }
}

/// Removes a listing request when dropped.
struct Forget<'a> {
    listings: &'a Listings,
    request: u64,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        if let Ok(mut waiting) = self.listings.waiting.lock() {
            waiting.remove(&self.request);
        }
    }
}

/// One worker input argument: as written, and what it names.
pub struct Named<'a> {
    pub text: &'a str,
    pub input: WorkerInput,
}

/// The inputs of a spec that name worker files, and the rest; an ill-formed `worker://`
/// input is refused, naming it.
pub fn split(inputs: &[String]) -> Result<(Vec<Named<'_>>, Vec<String>), InputError> {
    let mut named = Vec::new();
    let mut rest = Vec::new();
    for text in inputs {
        match WorkerInput::parse(text) {
            Some(input) => named.push(Named {
                text,
                input: input?,
            }),
            None => rest.push(text.clone()),
        }
    }
    Ok((named, rest))
}

/// What planning needs to reach the workers: the scheduler (which workers offer files) and
/// the listings awaiting answers.
#[derive(Clone)]
pub struct WorkerFiles {
    pub scheduler: Handle,
    pub listings: std::sync::Arc<Listings>,
}

/// The files the worker inputs name, each with its chunk ends, in the order of the inputs
/// (and within one, by worker name and path), each file once; at most `max` files in all.
/// An input that names no file on any worker it names fails, as does one naming a worker
/// that is not attached, offers no files, or cannot list them.
pub async fn list(
    reach: &WorkerFiles,
    inputs: &[Named<'_>],
    chunk_size: u64,
    max: usize,
) -> Result<Vec<(InputFile, Vec<u64>)>, InputError> {
    let listings = &reach.listings;
    let workers = reach
        .scheduler
        .local_workers()
        .await
        .map_err(|e| InputError::Io {
            input: "worker://".into(),
            source: std::io::Error::other(e.to_string()),
        })?;
    // One worker per name: a second one of the same name is refused when it attaches.
    let mut by_name: BTreeMap<&str, &LocalWorker> = BTreeMap::new();
    for worker in &workers {
        by_name.entry(&worker.name).or_insert(worker);
    }
    let failed = |text: &str, message: String| InputError::Io {
        input: text.to_owned(),
        source: std::io::Error::other(message),
    };
    let mut seen: HashSet<Location> = HashSet::new();
    let mut files = Vec::new();
    for named in inputs {
        let asked: Vec<&LocalWorker> = match &named.input.worker {
            Some(name) => vec![*by_name.get(name.as_str()).ok_or_else(|| {
                failed(
                    named.text,
                    format!(
                        "no worker named '{name}' that offers files of its own (--local-root) \
                         is attached"
                    ),
                )
            })?],
            None if by_name.is_empty() => {
                return Err(failed(
                    named.text,
                    "no attached worker offers files of its own (--local-root)".into(),
                ));
            }
            None => by_name.values().copied().collect(),
        };
        let answers = futures::future::join_all(asked.iter().map(|worker| {
            listings.ask(worker, vec![named.input.pattern.clone()], chunk_size, max)
        }))
        .await;
        // Whether the input named anything, counted before files named twice are dropped.
        let mut named_any = false;
        for (worker, answer) in asked.iter().zip(answers) {
            let listed =
                answer.map_err(|e| failed(named.text, format!("worker {}: {e}", worker.name)))?;
            named_any |= !listed.is_empty();
            for file in listed {
                let (file, ends) = checked(&worker.name, file)
                    .map_err(|e| failed(named.text, format!("worker {}: {e}", worker.name)))?;
                if seen.insert(file.location.clone()) {
                    files.push((file, ends));
                }
            }
            if files.len() > max {
                return Err(InputError::TooMany(max));
            }
        }
        if !named_any {
            let offered: Vec<String> = asked
                .iter()
                .map(|w| format!("{} ({})", w.name, w.roots.join(", ")))
                .collect();
            return Err(failed(
                named.text,
                format!(
                    "no file matches beneath the local roots of {}",
                    offered.join(", ")
                ),
            ));
        }
    }
    Ok(files)
}

/// A worker's listed file as a location, its chunk ends checked: rising, the last the
/// file's length, the path absolute.
fn checked(worker: &str, file: LocalFile) -> Result<(InputFile, Vec<u64>), String> {
    let rising = file.ends.windows(2).all(|w| w[0] < w[1]) && file.ends.first() != Some(&0);
    let whole = file.ends.last().copied().unwrap_or(0) == file.len;
    if !file.path.starts_with('/') || !rising || !whole {
        return Err(format!("listed '{}' with unusable chunks", file.path));
    }
    let location = Location::Worker(WorkerFile {
        worker: worker.to_owned(),
        path: file.path.into(),
    });
    Ok((
        InputFile {
            location,
            len: file.len,
        },
        file.ends,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_files_are_checked() {
        let file = |ends: Vec<u64>, len| LocalFile {
            path: "/logs/a".into(),
            len,
            ends,
        };
        let (input, ends) = checked("w1", file(vec![4, 9], 9)).unwrap();
        assert_eq!(input.location.to_string(), "worker://w1/logs/a");
        assert_eq!(ends, vec![4, 9]);
        assert!(checked("w1", file(vec![], 0)).is_ok(), "an empty file");
        for bad in [file(vec![9, 4], 9), file(vec![4], 9), file(vec![0, 9], 9)] {
            assert!(checked("w1", bad).is_err());
        }
        let relative = LocalFile {
            path: "logs/a".into(),
            len: 1,
            ends: vec![1],
        };
        assert!(checked("w1", relative).is_err());
    }

    #[test]
    fn worker_inputs_are_told_apart() {
        let inputs = vec![
            "worker://*/var/log/*.log".to_owned(),
            "/data/a.txt".to_owned(),
            "worker://w2/srv/x".to_owned(),
        ];
        let (named, rest) = split(&inputs).unwrap();
        assert_eq!(rest, vec!["/data/a.txt".to_owned()]);
        assert_eq!(named.len(), 2);
        assert_eq!(named[0].input.worker, None);
        assert_eq!(named[1].input.worker.as_deref(), Some("w2"));
        assert!(split(&["worker://w2".to_owned()]).is_err());
    }
}
