//! Resolves a job's input arguments (files, directories, glob patterns) into a list of files:
//! the `list` of a [`Location`]'s source.
//!
//! Called by the coordinator at submission, on its own filesystem. With data roots, every
//! argument must lie beneath one as written (a glob's fixed leading directories too), and
//! every file found is opened through them ([`Roots::open`]), so nothing outside is listed
//! or read. Directories are walked
//! recursively, skipping hidden (`.`) and underscore-prefixed entries, as Hadoop's input formats
//! do (`_SUCCESS`, `.crc`). The result is sorted and free of duplicates, so a plan is reproducible.
//!
//! Object-store URLs resolve the same way through the store's listing: a key names one
//! object; a key ending in `/` (or naming no object) is a prefix whose objects are all taken,
//! hidden ones skipped; a key with glob characters lists its fixed leading segments and keeps
//! the keys the pattern matches, `*` not crossing `/`. Each object keeps its size and ETag.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::location::{Location, LocationError, ObjectLocation};
use crate::objects::{self, ObjectUrl};
use crate::roots::Roots;

/// One input file and its length at planning time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputFile {
    pub location: Location,
    pub len: u64,
}

/// Why an input argument could not be resolved; each names the argument.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("no input given")]
    Empty,
    #[error("input '{input}': {source}")]
    Io {
        input: String,
        #[source]
        source: std::io::Error,
    },
    #[error("input '{input}': bad glob pattern: {message}")]
    BadPattern { input: String, message: String },
    #[error("input '{input}': no file matches")]
    NoMatch { input: String },
    #[error("input '{input}': not a regular file or directory")]
    NotAFile { input: String },
    /// Worker files are listed by their workers, not here.
    #[error("input '{input}': a worker's own files are listed by that worker")]
    OnAWorker { input: String },
    #[error("input {0}")]
    Location(#[from] LocationError),
    #[error("the inputs name more than {0} files, the most a job may (--max-inputs)")]
    TooMany(usize),
}

/// Resolves every argument; fails on the first that names nothing readable, anything
/// outside `roots`, or more than `max` files (as soon as it finds one more).
pub fn resolve(inputs: &[String], roots: &Roots, max: usize) -> Result<Vec<InputFile>, InputError> {
    if inputs.is_empty() {
        return Err(InputError::Empty);
    }
    let mut paths = BTreeSet::new();
    let mut objects: Vec<InputFile> = Vec::new();
    for input in inputs {
        if input.contains('\0') {
            return Err(InputError::NotAFile {
                input: input.escape_debug().to_string(),
            });
        }
        let local = match Location::parse(input)? {
            Location::Local(local) => local,
            Location::Worker(_) => {
                return Err(InputError::OnAWorker {
                    input: input.clone(),
                });
            }
            Location::Object(object) => {
                objects.extend(objects_of(input, &object.url, roots, max)?);
                if objects.len() + paths.len() > max {
                    return Err(InputError::TooMany(max));
                }
                continue;
            }
        };
        let Some(local) = local.to_str() else {
            return Err(InputError::NotAFile {
                input: input.clone(),
            });
        };
        let confined = |path: &Path| {
            roots.check(path).map_err(|source| InputError::Io {
                input: input.clone(),
                source,
            })
        };
        if is_pattern(local) {
            // The directories before the first pattern character are listed: they must be
            // inside a root before anything is.
            let fixed: PathBuf = Path::new(local)
                .components()
                .take_while(|c| !is_pattern(&c.as_os_str().to_string_lossy()))
                .collect();
            confined(&fixed)?;
            let mut matched = false;
            let entries = glob::glob(local).map_err(|e| InputError::BadPattern {
                input: input.clone(),
                message: e.to_string(),
            })?;
            for entry in entries {
                let path = entry.map_err(|e| InputError::Io {
                    input: input.clone(),
                    source: e.into(),
                })?;
                // A wildcard may pass through a symlinked directory: a match out of the roots
                // is refused naming the pattern, not the outside name it found.
                if let Some(parent) = path.parent()
                    && roots.check_dir(parent).is_err()
                {
                    return Err(InputError::Io {
                        input: input.clone(),
                        source: std::io::Error::new(
                            std::io::ErrorKind::PermissionDenied,
                            "a match leads out of its root (through a symlink)",
                        ),
                    });
                }
                add(input, &path, roots, &mut paths)?;
                matched = true;
                if paths.len() > max {
                    return Err(InputError::TooMany(max));
                }
            }
            if !matched {
                return Err(InputError::NoMatch {
                    input: input.clone(),
                });
            }
        } else {
            confined(Path::new(local))?;
            add(input, Path::new(local), roots, &mut paths)?;
        }
        if paths.len() + objects.len() > max {
            return Err(InputError::TooMany(max));
        }
    }
    objects.sort_by(|a, b| a.location.cmp(&b.location));
    objects.dedup_by(|a, b| a.location == b.location);
    let locals: Vec<InputFile> = paths
        .into_iter()
        .map(|path| {
            let io = |source| InputError::Io {
                input: path.display().to_string(),
                source,
            };
            let len = roots.open(&path).map_err(io)?.metadata().map_err(io)?.len();
            Ok(InputFile {
                location: Location::Local(path),
                len,
            })
        })
        .collect::<Result<_, InputError>>()?;
    Ok(locals.into_iter().chain(objects).collect())
}

/// The objects an object-store input names (see the module's rules).
fn objects_of(
    input: &str,
    url: &ObjectUrl,
    roots: &Roots,
    max: usize,
) -> Result<Vec<InputFile>, InputError> {
    let io = |source| InputError::Io {
        input: input.to_owned(),
        source,
    };
    let file = |object: objects::Object| InputFile {
        location: Location::Object(ObjectLocation {
            url: ObjectUrl {
                key: object.key,
                ..url.clone()
            },
            etag: object.etag,
        }),
        len: object.size,
    };
    let pattern = is_pattern(&url.key);
    // What is listed: the segments before the first pattern character, or the key as a
    // "directory".
    let prefix = if pattern {
        let literal = &url.key[..url.key.find(['*', '?', '[']).unwrap_or(url.key.len())];
        literal[..literal.rfind('/').map_or(0, |i| i + 1)].to_owned()
    } else if url.key.is_empty() || url.key.ends_with('/') {
        url.key.clone()
    } else {
        // One object, if the key names one; else the prefix of that name.
        let whole = ObjectUrl {
            key: url.key.clone(),
            ..url.clone()
        };
        roots.check_object(&whole).map_err(io)?;
        match objects::head(&whole) {
            Ok(Some(object)) => return Ok(vec![file(object)]),
            Ok(None) => {}
            // Some servers fail a HEAD of a "directory" instead of answering 404: a prefix
            // with objects beneath it is still one; otherwise the HEAD's error stands.
            Err(e) => {
                let beneath = ObjectUrl {
                    key: format!("{}/", url.key),
                    ..url.clone()
                };
                let listed = objects::list(&beneath, max).map_err(io)?;
                if listed.is_empty() {
                    return Err(io(e));
                }
            }
        }
        format!("{}/", url.key)
    };
    let listed_url = ObjectUrl {
        key: prefix.clone(),
        ..url.clone()
    };
    roots.check_object(&listed_url).map_err(io)?;
    let matcher = pattern
        .then(|| glob::Pattern::new(&url.key))
        .transpose()
        .map_err(|e| InputError::BadPattern {
            input: input.to_owned(),
            message: e.to_string(),
        })?;
    let options = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: false,
    };
    let mut found = Vec::new();
    for object in objects::list(&listed_url, max).map_err(io)? {
        let rest = &object.key[prefix.len().min(object.key.len())..];
        let taken = match &matcher {
            Some(matcher) => matcher.matches_with(&object.key, options),
            // Directory markers and hidden objects are not inputs.
            None => !rest.is_empty() && !rest.split('/').any(|s| is_hidden(s.as_ref())),
        };
        if taken && !object.key.ends_with('/') {
            found.push(file(object));
        }
    }
    if found.is_empty() {
        return Err(InputError::NoMatch {
            input: input.to_owned(),
        });
    }
    Ok(found)
}

/// Whether an input is a glob pattern.
pub fn is_pattern(input: &str) -> bool {
    input.contains(['*', '?', '['])
}

fn add(
    input: &str,
    path: &Path,
    roots: &Roots,
    paths: &mut BTreeSet<PathBuf>,
) -> Result<(), InputError> {
    let io = |source| InputError::Io {
        input: input.to_owned(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if meta.is_file() {
        paths.insert(path.to_path_buf());
    } else if meta.is_dir() {
        roots.check_dir(path).map_err(io)?;
        // Beneath data roots a directory's symlinks are not followed (a link to `/` would
        // walk the whole filesystem); a symlinked file is taken and opened beneath its root.
        let walk = walkdir::WalkDir::new(path)
            .follow_links(roots.is_empty())
            .sort_by_file_name()
            .into_iter()
            .filter_entry(|e| e.depth() == 0 || !is_hidden(e.file_name()));
        for entry in walk {
            let entry = entry.map_err(|e| io(e.into()))?;
            let file = entry.file_type().is_file()
                || (entry.path_is_symlink()
                    && std::fs::metadata(entry.path()).is_ok_and(|m| m.is_file()));
            if file {
                paths.insert(entry.into_path());
            }
        }
    } else {
        return Err(InputError::NotAFile {
            input: input.to_owned(),
        });
    }
    Ok(())
}

fn is_hidden(name: &std::ffi::OsStr) -> bool {
    let name = name.as_encoded_bytes();
    name.starts_with(b".") || name.starts_with(b"_")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(p: &Path) -> String {
        p.display().to_string()
    }

    /// Resolution with no roots and no limit.
    fn resolve(inputs: &[String]) -> Result<Vec<InputFile>, InputError> {
        super::resolve(inputs, &Roots::default(), usize::MAX)
    }

    #[test]
    fn with_data_roots_nothing_outside_is_listed_or_opened() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("data");
        std::fs::create_dir_all(root.join("logs")).unwrap();
        std::fs::write(root.join("logs/a.log"), "a\n").unwrap();
        std::fs::write(dir.path().join("secret.log"), "s\n").unwrap();
        std::os::unix::fs::symlink(dir.path(), root.join("up")).unwrap();
        let roots = Roots::new(std::slice::from_ref(&root)).unwrap();
        let inside = super::resolve(&[s(&root.join("logs/*.log"))], &roots, 10).unwrap();
        assert_eq!(inside.len(), 1);
        assert_eq!(inside[0].len, 2);
        // The root walked whole: its symlink to the directory above is not followed.
        let walked = super::resolve(&[s(&root)], &roots, 10).unwrap();
        let walked: Vec<String> = walked.iter().map(|f| f.location.to_string()).collect();
        assert_eq!(walked, [s(&root.join("logs/a.log"))]);
        let over = super::resolve(&[s(&root)], &roots, 0).unwrap_err();
        assert!(matches!(over, InputError::TooMany(0)), "{over}");
        let refused = |input: String| match super::resolve(std::slice::from_ref(&input), &roots, 10)
        {
            Ok(files) => panic!("{input} resolved to {files:?}"),
            Err(e) => e.to_string(),
        };
        for outside in [
            s(&dir.path().join("secret.log")),
            s(&dir.path().join("*.log")),
            format!("{}/*/secret.log", dir.path().display()),
            s(&root.join("../secret.log")),
            s(&root.join("up/secret.log")),
            s(&root.join("up")),
            "/etc/passwd".to_owned(),
            "/proc/self/environ".to_owned(),
        ] {
            let error = refused(outside.clone());
            assert!(error.starts_with("input '"), "{outside}: {error}");
            assert!(
                !error.contains("secret.log") || outside.contains("secret.log"),
                "{error}"
            );
        }
    }

    #[test]
    fn files_directories_and_globs_resolve_sorted_and_deduplicated() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("sub/deeper")).unwrap();
        for name in [
            "a.txt",
            "b.log",
            "sub/c.txt",
            "sub/deeper/d.txt",
            "_SUCCESS",
            ".hidden",
        ] {
            std::fs::write(root.join(name), name).unwrap();
        }
        let files = resolve(&[
            s(root),
            s(&root.join("a.txt")),
            format!("{}/*.txt", s(root)),
        ])
        .unwrap();
        let names: Vec<_> = files
            .iter()
            .map(|f| {
                let path = f.location.as_path().unwrap();
                path.strip_prefix(root).unwrap().display().to_string()
            })
            .collect();
        assert_eq!(names, ["a.txt", "b.log", "sub/c.txt", "sub/deeper/d.txt"]);
        // A file:// URL names the same local files.
        let url = format!("file://{}", s(&root.join("sub")));
        let by_url = resolve(&[url]).unwrap();
        assert_eq!(by_url, resolve(&[s(&root.join("sub"))]).unwrap());
        assert_eq!(files[0].len, 5);
    }

    #[test]
    fn missing_inputs_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = s(&dir.path().join("nope.txt"));
        let err = resolve(std::slice::from_ref(&missing)).unwrap_err();
        assert!(err.to_string().contains(&missing), "{err}");
        let pattern = format!("{}/*.csv", s(dir.path()));
        let err = resolve(std::slice::from_ref(&pattern)).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("input '{pattern}': no file matches")
        );
        assert!(matches!(resolve(&[]), Err(InputError::Empty)));
        let as_url = format!("file://{}", s(&dir.path().join("nope.txt")));
        assert!(
            resolve(std::slice::from_ref(&as_url))
                .unwrap_err()
                .to_string()
                .contains(&missing)
        );
        let url = "hdfs://nn/logs/".to_owned();
        assert_eq!(
            resolve(&[url]).unwrap_err().to_string(),
            "input 'hdfs://nn/logs/': hdfs:// inputs are not supported (local paths and s3://, \
             gs://, az:// objects and worker:// files are)"
        );
    }
}
