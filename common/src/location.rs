//! Where input bytes live: [`Location`], the one type every input, plan, assignment, chunk and
//! bad record names its file by, with the three things fanfold asks of a source: list what an
//! input argument names ([`crate::input::resolve`]), a file's length, and a ranged read.
//!
//! A location is a path on the local filesystem (the coordinator's, or a worker's on shared
//! storage), a file on one worker's own disk (`worker://NAME/path`, read only by that worker,
//! beneath its `--local-root`), or an object in object storage (`s3://bucket/key`,
//! [`crate::objects`]), with the version (ETag) it had when the job was planned, so a chunk
//! never mixes two versions. Any other URL scheme is refused clearly instead of being taken
//! for a relative path.

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::objects::{self, ObjectUrl};
use crate::roots::Roots;

/// One input file: where its bytes are.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Location {
    /// A file on the local filesystem, named as the job named it.
    Local(PathBuf),
    /// An object in object storage.
    Object(ObjectLocation),
    /// A file on one worker's own disk.
    Worker(WorkerFile),
}

/// A file only one worker reads: the worker's name and the absolute path on its machine.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WorkerFile {
    pub worker: String,
    pub path: PathBuf,
}

/// The scheme of worker-local files: `worker://NAME/path`, `worker://*/pattern` in inputs.
pub const WORKER_SCHEME: &str = "worker";

/// Whether `name` may name a worker's files: letters, digits, `.`, `_` and `-`, not empty
/// (so `worker://NAME/PATH` reads back the same, and `*` means every worker).
pub fn is_worker_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// An input naming worker-local files: which workers (`None` for `*`, every worker that
/// offers local files) and the absolute path, directory or glob on each.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerInput {
    pub worker: Option<String>,
    pub pattern: String,
}

impl WorkerInput {
    /// Reads `worker://NAME/PATH` or `worker://*/PATH`; `None` if `text` is not a
    /// `worker://` URL at all.
    pub fn parse(text: &str) -> Option<Result<WorkerInput, LocationError>> {
        let rest = text.strip_prefix("worker://")?;
        let bad = || LocationError::BadWorkerFile {
            text: text.to_owned(),
        };
        let Some(slash) = rest.find('/') else {
            return Some(Err(bad()));
        };
        let (worker, pattern) = rest.split_at(slash);
        if worker.is_empty() || pattern.len() < 2 || pattern.contains('\0') {
            return Some(Err(bad()));
        }
        Some(Ok(WorkerInput {
            worker: (worker != "*").then(|| worker.to_owned()),
            pattern: pattern.to_owned(),
        }))
    }
}

/// An object and the version of it a job reads.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectLocation {
    pub url: ObjectUrl,
    /// Its ETag at planning, when the store gave one.
    pub etag: Option<String>,
}

/// Separates an object's URL from its ETag in [`Location::encoded`]: no URL holds it.
const VERSION_SEPARATOR: char = '\0';

/// A location that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LocationError {
    #[error(
        "'{text}': {scheme}:// inputs are not supported (local paths and s3://, gs://, az:// \
         objects and worker:// files are)"
    )]
    UnsupportedScheme { text: String, scheme: String },
    #[error(
        "'{text}': a worker file names its worker and an absolute path (worker://NAME/PATH, or \
         worker://*/PATH for every worker)"
    )]
    BadWorkerFile { text: String },
    #[error("'{text}': an object URL names its bucket (s3://BUCKET/KEY)")]
    NoBucket { text: String },
    #[error("an empty location")]
    Empty,
}

/// The scheme of a URL-like text (`s3` of `s3://b/k`), if it is one.
pub fn scheme(text: &str) -> Option<&str> {
    let (scheme, _) = text.split_once("://")?;
    let mut chars = scheme.chars();
    let first = chars.next()?;
    (first.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
    .then_some(scheme)
}

impl Location {
    /// Reads an input argument or a stored location ([`Location::encoded`]): `file:///p` and
    /// plain paths are local, object-store URLs are objects; any other `scheme://` is
    /// refused, naming it.
    pub fn parse(text: &str) -> Result<Location, LocationError> {
        if text.is_empty() {
            return Err(LocationError::Empty);
        }
        match scheme(text) {
            None => Ok(Location::Local(PathBuf::from(text))),
            Some("file") => Ok(Location::Local(PathBuf::from(&text["file://".len()..]))),
            Some(WORKER_SCHEME) => match WorkerInput::parse(text) {
                Some(Ok(WorkerInput {
                    worker: Some(worker),
                    pattern,
                })) => Ok(Location::Worker(WorkerFile {
                    worker,
                    path: PathBuf::from(pattern),
                })),
                _ => Err(LocationError::BadWorkerFile {
                    text: text.to_owned(),
                }),
            },
            Some(scheme) if objects::is_object_scheme(scheme) => {
                let (url, etag) = match text.split_once(VERSION_SEPARATOR) {
                    Some((url, etag)) => (url, Some(etag.to_owned())),
                    None => (text, None),
                };
                let url = ObjectUrl::parse(url).ok_or_else(|| LocationError::NoBucket {
                    text: url.to_owned(),
                })?;
                Ok(Location::Object(ObjectLocation { url, etag }))
            }
            Some(scheme) => Err(LocationError::UnsupportedScheme {
                text: text.to_owned(),
                scheme: scheme.to_owned(),
            }),
        }
    }

    pub fn local(path: impl Into<PathBuf>) -> Location {
        Location::Local(path.into())
    }

    /// The local path, if the location is one.
    pub fn as_path(&self) -> Option<&Path> {
        match self {
            Location::Local(path) => Some(path),
            Location::Object(_) | Location::Worker(_) => None,
        }
    }

    /// The worker that alone may read the location, if only one may.
    pub fn owner(&self) -> Option<&str> {
        match self {
            Location::Worker(file) => Some(&file.worker),
            Location::Local(_) | Location::Object(_) => None,
        }
    }

    /// The location with its version, as stored and sent to workers ([`Location::parse`]
    /// reads it back); [`fmt::Display`] gives the name alone.
    pub fn encoded(&self) -> String {
        match self {
            Location::Object(ObjectLocation {
                url,
                etag: Some(etag),
            }) => format!("{url}{VERSION_SEPARATOR}{etag}"),
            other => other.to_string(),
        }
    }

    /// The same location as seen from any working directory: a worker reading shared storage
    /// must not resolve a relative path against its own.
    pub fn absolute(&self) -> Location {
        match self {
            Location::Local(path) => {
                Location::Local(std::path::absolute(path).unwrap_or_else(|_| path.clone()))
            }
            Location::Object(_) | Location::Worker(_) => self.clone(),
        }
    }

    /// Opens the file for ranged reads, beneath `roots` if there are any
    /// ([`crate::roots::Roots::open`]: regular files only); a worker file beneath its
    /// worker's local roots, which the caller passes (and must not be empty).
    /// Opens an object by asking the store for its size (and checking it is still the
    /// version planned).
    pub fn open(&self, roots: &Roots) -> io::Result<Source> {
        match self {
            Location::Local(path) => Ok(Source::Local(roots.open(path)?)),
            Location::Worker(file) => Ok(Source::Local(roots.open(&file.path)?)),
            Location::Object(object) => {
                roots.check_object(&object.url)?;
                let Some(found) = objects::head(&object.url)? else {
                    return Err(io::Error::new(
                        io::ErrorKind::NotFound,
                        format!("{}: no such object", object.url),
                    ));
                };
                if object.etag.is_some() && found.etag.is_some() && found.etag != object.etag {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "{}: the object changed since the job was planned (its ETag differs)",
                            object.url
                        ),
                    ));
                }
                Ok(Source::Object {
                    object: object.clone(),
                    len: found.size,
                })
            }
        }
    }

    /// Reads bytes `start..end`. Fails if the file is shorter than that (it changed since the
    /// job was planned), or if the object is no longer the version planned.
    pub fn read_range(&self, roots: &Roots, start: u64, end: u64) -> io::Result<Vec<u8>> {
        match self {
            Location::Local(_) | Location::Worker(_) => self.open(roots)?.read_range(start, end),
            Location::Object(object) => {
                roots.check_object(&object.url)?;
                let bytes = objects::read_range(&object.url, start..end, object.etag.as_deref())?;
                Ok(Vec::from(bytes))
            }
        }
    }
}

impl fmt::Display for Location {
    /// The job's own name for the file: what keys, messages and bad records show.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Local(path) => write!(f, "{}", path.display()),
            Location::Object(object) => write!(f, "{}", object.url),
            Location::Worker(file) => write!(f, "worker://{}{}", file.worker, file.path.display()),
        }
    }
}

/// An opened location, read by range.
pub enum Source {
    Local(File),
    /// An object: every read is a ranged GET of that version.
    Object {
        object: ObjectLocation,
        len: u64,
    },
}

impl Source {
    /// The file's length now. (Not a collection: `is_empty` would mean nothing here.)
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> io::Result<u64> {
        match self {
            Source::Local(file) => Ok(file.metadata()?.len()),
            Source::Object { len, .. } => Ok(*len),
        }
    }

    /// Reads up to `buf.len()` bytes at `offset`; fewer only at the end of the file.
    pub fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Source::Local(file) => {
                file.seek(SeekFrom::Start(offset))?;
                file.read(buf)
            }
            Source::Object { object, len } => {
                let end = (*len).min(offset.saturating_add(buf.len() as u64));
                if offset >= end {
                    return Ok(0);
                }
                let bytes = objects::read_range(&object.url, offset..end, object.etag.as_deref())?;
                buf[..bytes.len()].copy_from_slice(&bytes);
                Ok(bytes.len())
            }
        }
    }

    /// Reads bytes `start..end`, failing if the file ends before `end`.
    pub fn read_range(&mut self, start: u64, end: u64) -> io::Result<Vec<u8>> {
        let len = usize::try_from(end.saturating_sub(start))
            .map_err(|_| io::Error::other("range too large"))?;
        match self {
            Source::Local(file) => {
                file.seek(SeekFrom::Start(start))?;
                // Read into spare capacity: zeroing a 16 MiB buffer first costs a pass over it.
                let mut data = Vec::with_capacity(len);
                file.take(len as u64).read_to_end(&mut data)?;
                if data.len() < len {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "file is shorter than when the job was planned",
                    ));
                }
                Ok(data)
            }
            Source::Object { object, .. } => {
                objects::read_range(&object.url, start..end, object.etag.as_deref()).map(Vec::from)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_local_and_urls_are_recognised() {
        assert_eq!(
            Location::parse("/data/a.txt"),
            Ok(Location::local("/data/a.txt"))
        );
        assert_eq!(
            Location::parse("rel/a.txt"),
            Ok(Location::local("rel/a.txt"))
        );
        assert_eq!(
            Location::parse("file:///data/a.txt"),
            Ok(Location::local("/data/a.txt"))
        );
        assert_eq!(
            Location::parse("hdfs://nn/key").unwrap_err().to_string(),
            "'hdfs://nn/key': hdfs:// inputs are not supported (local paths and s3://, gs://, \
             az:// objects and worker:// files are)"
        );
        let file = Location::parse("worker://web-3/var/log/app.log").unwrap();
        assert_eq!(file.owner(), Some("web-3"));
        assert_eq!(file.to_string(), "worker://web-3/var/log/app.log");
        assert_eq!(Location::parse(&file.encoded()), Ok(file));
        for bad in [
            "worker://*/var/log",
            "worker://web-3",
            "worker:///var/log",
            "worker://w/",
        ] {
            assert!(
                matches!(
                    Location::parse(bad),
                    Err(LocationError::BadWorkerFile { .. })
                ),
                "{bad}"
            );
        }
        assert_eq!(
            WorkerInput::parse("worker://*/var/log/*.log").unwrap(),
            Ok(WorkerInput {
                worker: None,
                pattern: "/var/log/*.log".into()
            })
        );
        assert!(WorkerInput::parse("/var/log").is_none());
        assert!(is_worker_name("web-3.eu_west"));
        for bad in ["", "*", "web/1", "a b", "wörker"] {
            assert!(!is_worker_name(bad), "{bad}");
        }
        let object = Location::parse("s3://bucket/logs/a.gz").unwrap();
        assert_eq!(object.to_string(), "s3://bucket/logs/a.gz");
        let Location::Object(mut versioned) = object.clone() else {
            panic!("an object: {object:?}")
        };
        versioned.etag = Some("\"abc\"".into());
        let versioned = Location::Object(versioned);
        assert_eq!(versioned.to_string(), "s3://bucket/logs/a.gz");
        assert_eq!(Location::parse(&versioned.encoded()), Ok(versioned));
        assert_eq!(object.encoded(), "s3://bucket/logs/a.gz");
        assert!(matches!(
            Location::parse("s3://"),
            Err(LocationError::NoBucket { .. })
        ));
        assert_eq!(scheme("s3://b/k"), Some("s3"));
        assert_eq!(scheme("/a/b://c"), None);
        assert_eq!(scheme("dir/x"), None);
        assert_eq!(Location::parse(""), Err(LocationError::Empty));
    }

    #[test]
    fn ranges_read_exactly_or_fail_when_the_file_shrank() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"0123456789").unwrap();
        let location = Location::local(&path);
        let anywhere = Roots::default();
        assert_eq!(location.open(&anywhere).unwrap().len().unwrap(), 10);
        assert_eq!(location.read_range(&anywhere, 2, 5).unwrap(), b"234");
        let short = location.read_range(&anywhere, 8, 12).unwrap_err();
        assert_eq!(short.kind(), io::ErrorKind::UnexpectedEof);
        let mut buf = [0u8; 4];
        assert_eq!(
            location
                .open(&anywhere)
                .unwrap()
                .read_at(8, &mut buf)
                .unwrap(),
            2
        );
        assert_eq!(location.to_string(), path.display().to_string());
    }
}
