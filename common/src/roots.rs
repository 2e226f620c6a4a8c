//! Confined paths: the directories a coordinator's jobs may read (`--data-root`) or write
//! (`--output-root`) beneath, and the one way input files are opened ([`Roots::open`]).
//!
//! With roots, a path must name a place beneath one of them as written (no `..`), and is
//! opened with `openat2(2)` relative to the root's directory with `RESOLVE_BENEATH` (and no
//! `/proc` magic links): a symlink that points out of the root, whenever it was put there,
//! fails the open itself, so there is no window between a check and the use. Every open,
//! with roots or without, takes only regular files, opened non-blocking so a FIFO cannot hang
//! a reader; with roots, files of `/proc` and `/sys` are refused too.
//!
//! The coordinator checks at submission and opens through its roots every time it reads;
//! a worker on shared storage opens through the same roots, sent in its welcome.
//!
//! A root may also be an object-store prefix (`s3://bucket/prefix/`): with roots, an object
//! is read only if its key lies beneath one, by whole path segments ([`Roots::check_object`]).

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use crate::objects::{self, ObjectUrl};

/// Directories paths must lie beneath, and object prefixes objects must lie beneath; none of
/// either means any path and any object.
#[derive(Clone, Debug, Default)]
pub struct Roots {
    dirs: Arc<Vec<Root>>,
    objects: Arc<Vec<ObjectUrl>>,
}

#[derive(Debug)]
struct Root {
    /// As given, made absolute.
    given: PathBuf,
    /// After following symlinks.
    canonical: PathBuf,
    dir: File,
}

/// What [`Roots::open`] and [`Roots::check`] refuse; the caller names the path.
fn refused(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, message.into())
}

impl Roots {
    /// Opens each directory of `dirs`, failing on one that is not a directory; an object-store
    /// URL among them is an object prefix.
    pub fn new(dirs: &[PathBuf]) -> io::Result<Roots> {
        let mut roots = Vec::with_capacity(dirs.len());
        let mut prefixes = Vec::new();
        for dir in dirs {
            if let Some(text) = dir.to_str()
                && crate::location::scheme(text).is_some_and(objects::is_object_scheme)
            {
                let url = ObjectUrl::parse(text).ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("{text}: an object root names its bucket (s3://BUCKET/PREFIX)"),
                    )
                })?;
                prefixes.push(url);
                continue;
            }
            let named = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", dir.display()));
            let canonical = std::fs::canonicalize(dir).map_err(named)?;
            if !canonical.is_dir() {
                return Err(named(io::Error::other("not a directory")));
            }
            let file = File::open(&canonical).map_err(named)?;
            roots.push(Root {
                given: std::path::absolute(dir).map_err(named)?,
                canonical,
                dir: file,
            });
        }
        Ok(Roots {
            dirs: Arc::new(roots),
            objects: Arc::new(prefixes),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.dirs.is_empty() && self.objects.is_empty()
    }

    /// The roots, directories after following symlinks, then object prefixes (what a worker
    /// is told; [`Roots::new`] reads them back).
    pub fn paths(&self) -> Vec<PathBuf> {
        let dirs = self.dirs.iter().map(|r| r.canonical.clone());
        dirs.chain(self.objects.iter().map(|u| PathBuf::from(u.to_string())))
            .collect()
    }

    /// The roots, as a message names them.
    fn listed(&self) -> String {
        let dirs = self.dirs.iter().map(|r| r.given.display().to_string());
        let paths: Vec<String> = dirs
            .chain(self.objects.iter().map(ToString::to_string))
            .collect();
        paths.join(", ")
    }

    /// Checks that the object (or object prefix) `url` lies beneath an object root, by whole
    /// segments (`s3://b/logs` holds `s3://b/logs/x`, not `s3://b/logsx`); with no roots at
    /// all, any object does. With roots, `.` and `..` segments are refused.
    pub fn check_object(&self, url: &ObjectUrl) -> io::Result<()> {
        if self.is_empty() {
            return Ok(());
        }
        if url.key.split('/').any(|s| s == "." || s == "..") {
            return Err(refused(format!(
                "{url}: '.' and '..' are not allowed in a key while data roots are set"
            )));
        }
        let beneath = |root: &ObjectUrl| {
            let prefix = root.key.trim_end_matches('/');
            root.scheme == url.scheme
                && root.bucket == url.bucket
                && (prefix.is_empty()
                    || url.key == prefix
                    || url
                        .key
                        .strip_prefix(prefix)
                        .is_some_and(|rest| rest.starts_with('/')))
        };
        if self.objects.iter().any(beneath) {
            Ok(())
        } else {
            Err(refused(format!(
                "{url}: outside the allowed roots ({})",
                self.listed()
            )))
        }
    }

    /// The root `path` lies beneath as written, and the rest of the path below it. Fails
    /// when there are no roots (the caller treats that as "anywhere").
    fn beneath<'a>(&'a self, path: &Path) -> io::Result<(&'a Root, PathBuf)> {
        if path.components().any(|c| c == Component::ParentDir) {
            return Err(refused(
                "'..' is not allowed in a path while data or output roots are set",
            ));
        }
        let absolute = std::path::absolute(path)?;
        for root in self.dirs.iter() {
            for base in [&root.given, &root.canonical] {
                if let Ok(rest) = absolute.strip_prefix(base) {
                    return Ok((root, rest.to_path_buf()));
                }
            }
        }
        Err(refused(format!(
            "outside the allowed roots ({})",
            self.listed()
        )))
    }

    /// Checks that `path` lies beneath a root as written (a glob's directory, an output
    /// directory); with no roots, anything does. Follows nothing: [`Roots::open`] and
    /// [`Roots::check_dir`] do the resolving.
    pub fn check(&self, path: &Path) -> io::Result<()> {
        if self.is_empty() {
            return Ok(());
        }
        self.beneath(path).map(|_| ())
    }

    /// Checks that the directory `path` (which must exist) lies beneath a root after
    /// following every symlink in it.
    pub fn check_dir(&self, path: &Path) -> io::Result<()> {
        if self.is_empty() {
            return Ok(());
        }
        self.open_beneath(path, libc::O_PATH | libc::O_DIRECTORY)
            .map(drop)
    }

    /// Opens `path` beneath the root it lies in. The kernel refuses every absolute symlink
    /// on the way (it would start over at `/`); one that leads back inside a root is
    /// followed by opening the path's resolved form, again beneath its root, so a symlink
    /// swapped in meanwhile is refused all the same.
    fn open_beneath(&self, path: &Path, flags: i32) -> io::Result<File> {
        let (root, rest) = self.beneath(path)?;
        match openat2(&root.dir, &rest, flags) {
            Err(e) if is_escape(&e) => {
                let Ok(resolved) = std::fs::canonicalize(path) else {
                    return Err(e);
                };
                let (root, rest) = self.beneath(&resolved).map_err(|_| e)?;
                openat2(&root.dir, &rest, flags)
            }
            opened => opened,
        }
    }

    /// Opens the regular file `path` for reading: beneath a root, if there are roots.
    pub fn open(&self, path: &Path) -> io::Result<File> {
        use std::os::unix::fs::OpenOptionsExt;
        let flags = libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY;
        let file = if self.is_empty() {
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
                .open(path)?
        } else {
            let file = self.open_beneath(path, flags)?;
            if pseudo_filesystem(&file)? {
                return Err(refused("a file of /proc or /sys"));
            }
            file
        };
        let kind = file.metadata()?.file_type();
        if !kind.is_file() {
            return Err(refused(
                "not a regular file (a directory, device, FIFO or socket)",
            ));
        }
        Ok(file)
    }
}

/// The message of a path that leads out of its root.
const ESCAPES: &str = "it leads out of its root (through a symlink)";

fn is_escape(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::PermissionDenied && e.to_string() == ESCAPES
}

/// `openat2(dir, rest, flags, RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)`.
fn openat2(dir: &File, rest: &Path, flags: i32) -> io::Result<File> {
    let rest = if rest.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rest
    };
    let name = CString::new(rest.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in the path"))?;
    // SAFETY: open_how is plain data; zeroed is its documented initial state.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: the pointers are valid for the call; the kernel copies `how` and `name`.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            name.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        let error = io::Error::last_os_error();
        return Err(match error.raw_os_error() {
            Some(libc::EXDEV) => refused(ESCAPES),
            Some(libc::ELOOP) => refused("it goes through a /proc magic link"),
            Some(libc::ENOSYS) => io::Error::other(
                "this kernel has no openat2 (Linux 5.6 or later is needed for data roots)",
            ),
            _ => error,
        });
    }
    // SAFETY: the kernel returned a new descriptor that nothing else owns.
    Ok(unsafe { File::from_raw_fd(fd as i32) })
}

/// Whether `file` lives in /proc or /sys, whose "regular" files are the kernel's state.
fn pseudo_filesystem(file: &File) -> io::Result<bool> {
    // SAFETY: statfs is plain data, filled by the kernel.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid descriptor and a valid pointer.
    if unsafe { libc::fstatfs(file.as_raw_fd(), &mut stat) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(matches!(
        stat.f_type,
        libc::PROC_SUPER_MAGIC | libc::SYSFS_MAGIC
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(roots: &Roots, path: &Path) -> String {
        match roots.open(path) {
            Ok(_) => panic!("{} was opened", path.display()),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn only_regular_files_beneath_the_roots_open() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("data");
        let outside = dir.path().join("secret");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/a.txt"), "a\n").unwrap();
        std::fs::write(&outside, "secret\n").unwrap();
        std::os::unix::fs::symlink(&outside, root.join("link-out")).unwrap();
        std::os::unix::fs::symlink(dir.path(), root.join("dir-out")).unwrap();
        std::os::unix::fs::symlink(root.join("sub/a.txt"), root.join("link-in")).unwrap();
        let fifo = CString::new(root.join("fifo").as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        let roots = Roots::new(std::slice::from_ref(&root)).unwrap();

        let mut text = String::new();
        use std::io::Read;
        roots
            .open(&root.join("sub/a.txt"))
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "a\n");
        assert!(
            roots.open(&root.join("link-in")).is_ok(),
            "a symlink within stays in"
        );

        assert!(refusal(&roots, &outside).starts_with("outside the allowed roots"));
        assert!(refusal(&roots, &root.join("../secret")).contains("'..'"));
        assert!(refusal(&roots, &root.join("link-out")).contains("out of its root"));
        assert!(refusal(&roots, &root.join("dir-out/secret")).contains("out of its root"));
        assert!(refusal(&roots, &root.join("fifo")).contains("not a regular file"));
        assert!(refusal(&roots, &root.join("sub")).contains("not a regular file"));
        assert!(refusal(&roots, Path::new("/dev/zero")).starts_with("outside"));
        assert!(refusal(&roots, Path::new("/proc/self/environ")).starts_with("outside"));
        assert!(roots.check_dir(&root.join("sub")).is_ok());
        assert!(roots.check_dir(&root.join("dir-out")).is_err());

        // With / as the root, /proc and devices are still refused.
        let everything = Roots::new(&[PathBuf::from("/")]).unwrap();
        assert!(refusal(&everything, Path::new("/proc/self/environ")).contains("/proc"));
        assert!(refusal(&everything, Path::new("/dev/zero")).contains("not a regular file"));

        // Without roots, any regular file opens, and still no FIFO or device.
        let open = Roots::default();
        assert!(open.open(&outside).is_ok());
        assert!(refusal(&open, &root.join("fifo")).contains("not a regular file"));
        assert!(refusal(&open, Path::new("/dev/zero")).contains("not a regular file"));
    }

    #[test]
    fn objects_lie_beneath_object_roots_by_whole_segments() {
        let dir = tempfile::tempdir().unwrap();
        let roots =
            Roots::new(&[dir.path().to_path_buf(), PathBuf::from("s3://data/logs/")]).unwrap();
        let url = |text: &str| ObjectUrl::parse(text).unwrap();
        assert!(roots.check_object(&url("s3://data/logs/a.txt")).is_ok());
        assert!(roots.check_object(&url("s3://data/logs")).is_ok());
        for outside in [
            "s3://data/logsx/a.txt",
            "s3://data/other/a.txt",
            "s3://other/logs/a.txt",
            "gs://data/logs/a.txt",
            "s3://data/logs/../secret",
        ] {
            let refused = roots.check_object(&url(outside)).unwrap_err();
            assert_eq!(refused.kind(), io::ErrorKind::PermissionDenied, "{outside}");
        }
        // Workers are told both kinds and read them back the same.
        let told = Roots::new(&roots.paths()).unwrap();
        assert!(told.check_object(&url("s3://data/logs/b")).is_ok());
        assert!(told.check_object(&url("s3://data/x")).is_err());
        // Only object roots: no local file is readable, and any object with no roots at all.
        let only_objects = Roots::new(&[PathBuf::from("s3://data/")]).unwrap();
        assert!(only_objects.open(&dir.path().join("f")).is_err());
        assert!(
            Roots::default()
                .check_object(&url("s3://any/thing"))
                .is_ok()
        );
    }
}
