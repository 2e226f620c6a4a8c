//! The worker's own files (`--local-root`): the files a job's `worker://` inputs name here,
//! listed and cut into record-aligned chunks the way the coordinator lists and cuts its own
//! (`fanfold_common::input`, `fanfold_common::chunker`), so the coordinator plans chunks whose
//! bytes it never reads. Everything is opened beneath the local roots. Blocking.

use std::path::{Path, PathBuf};

use fanfold_common::chunker;
use fanfold_common::fleet::{LocalFile, LocalListing};
use fanfold_common::input::{self, InputError, InputFile};
use fanfold_common::records::Compression;
use fanfold_common::roots::Roots;

/// The files `listing` names beneath `roots`, each with its chunk ends. A pattern that names
/// nothing here, or lies outside the roots, adds nothing (the coordinator fails an input
/// that names nothing anywhere); anything else that goes wrong fails the listing, naming the
/// pattern.
pub fn list(roots: Option<&Roots>, listing: &LocalListing) -> Result<Vec<LocalFile>, String> {
    let Some(roots) = roots else {
        return Err("it offers no files of its own (start it with --local-root DIR)".into());
    };
    if listing.chunk_size == 0 {
        return Err("a chunk size of 0".into());
    }
    let max = usize::try_from(listing.max_files).unwrap_or(usize::MAX);
    let mut files: Vec<InputFile> = Vec::new();
    for pattern in &listing.patterns {
        if !pattern.starts_with('/') {
            return Err(format!("'{pattern}': a worker file's path is absolute"));
        }
        files.extend(matching(pattern, roots, max)?);
        if files.len() > max {
            return Err(InputError::TooMany(max).to_string());
        }
    }
    files.sort_by(|a, b| a.location.cmp(&b.location));
    files.dedup_by(|a, b| a.location == b.location);
    let cut = |location: &fanfold_common::location::Location| match Compression::of(
        &location.to_string(),
    ) {
        Compression::None => chunker::Cut::Lines,
        _ => chunker::Cut::Whole,
    };
    let chunks =
        chunker::plan(&files, listing.chunk_size, cut, roots).map_err(|e| e.to_string())?;
    let mut listed: Vec<LocalFile> = files
        .iter()
        .map(|f| LocalFile {
            path: f.location.to_string(),
            len: f.len,
            ends: Vec::new(),
        })
        .collect();
    for chunk in chunks {
        listed[chunk.file as usize].ends.push(chunk.end);
    }
    Ok(listed)
}

/// The files beneath `roots` that `pattern` names. A pattern beneath a root is resolved as
/// the coordinator resolves its inputs; one that reaches above roots (`/srv/*/app.log` on a
/// worker whose root is `/srv/a`) names the files beneath those roots that it matches, so
/// each worker of a fleet answers `worker://*/...` with its own files. Names nothing: empty.
fn matching(pattern: &str, roots: &Roots, max: usize) -> Result<Vec<InputFile>, String> {
    let fixed: PathBuf = Path::new(pattern)
        .components()
        .take_while(|c| !input::is_pattern(&c.as_os_str().to_string_lossy()))
        .collect();
    // Not found means nothing here only if what the pattern starts from is not here; a file
    // that vanishes mid-walk fails the listing rather than dropping this worker's files.
    let resolved = |inputs: &[String]| match input::resolve(inputs, roots, max) {
        Ok(found) => Ok(found),
        Err(InputError::NoMatch { .. }) => Ok(Vec::new()),
        Err(InputError::Io { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound && !fixed.exists() =>
        {
            Ok(Vec::new())
        }
        Err(e) => Err(e.to_string()),
    };
    // Roots are kept with symlinks followed; so is the pattern's start, to compare them.
    let canonical = std::fs::canonicalize(&fixed).unwrap_or_else(|_| fixed.clone());
    let dirs = roots.paths();
    if dirs
        .iter()
        .any(|root| fixed.starts_with(root) || canonical.starts_with(root))
    {
        return resolved(&[pattern.to_owned()]);
    }
    let rest = Path::new(pattern)
        .strip_prefix(&fixed)
        .expect("the fixed part is a prefix");
    let pattern = canonical.join(rest).display().to_string();
    let fixed = canonical;
    let glob = input::is_pattern(&pattern)
        .then(|| glob::Pattern::new(&pattern))
        .transpose()
        .map_err(|e| format!("'{pattern}': bad glob pattern: {e}"))?;
    let options = glob::MatchOptions {
        require_literal_separator: true,
        ..Default::default()
    };
    let mut found = Vec::new();
    for root in dirs.iter().filter(|root| root.starts_with(&fixed)) {
        for file in resolved(&[root.display().to_string()])? {
            let path = file.location.as_path().expect("a local file");
            // The file matches, or a directory it is in does (a pattern naming directories).
            let matches = match &glob {
                None => true,
                Some(glob) => path
                    .ancestors()
                    .take_while(|a| a.starts_with(&fixed))
                    .any(|a| glob.matches_path_with(a, options)),
            };
            if matches {
                found.push(file);
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(patterns: &[String], chunk_size: u64) -> LocalListing {
        LocalListing {
            request: 1,
            patterns: patterns.to_vec(),
            chunk_size,
            max_files: 100,
        }
    }

    #[test]
    fn files_beneath_the_roots_are_listed_and_cut_at_record_boundaries() {
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().join("logs");
        std::fs::create_dir(&logs).unwrap();
        std::fs::write(logs.join("a.log"), "one\ntwo\nthree\nfour\n").unwrap();
        std::fs::write(logs.join("b.log.gz"), "not really gzip, never cut").unwrap();
        std::fs::write(dir.path().join("outside.log"), "x\n").unwrap();
        let roots = Roots::new(std::slice::from_ref(&logs)).unwrap();
        let all = format!("{}/*", logs.display());

        let files = list(Some(&roots), &listing(std::slice::from_ref(&all), 5)).unwrap();
        assert_eq!(files.len(), 2);
        // Cuts land just past a newline at or after each 5 bytes: "one\ntwo\n", "three\n", ...
        assert_eq!(files[0].path, logs.join("a.log").display().to_string());
        assert_eq!(files[0].ends, vec![8, 14, 19]);
        assert_eq!(files[1].ends, vec![files[1].len], "compressed: one chunk");

        // A pattern naming nothing here adds nothing, nor does one outside the roots.
        let none = format!("{}/*.txt", logs.display());
        assert!(list(Some(&roots), &listing(&[none], 5)).unwrap().is_empty());
        let outside = dir.path().join("outside.log").display().to_string();
        assert!(
            list(Some(&roots), &listing(&[outside], 5))
                .unwrap()
                .is_empty()
        );
        // A pattern reaching above the roots names the files beneath them that it matches.
        let above = format!("{}/*/*.log", dir.path().display());
        let files = list(Some(&roots), &listing(&[above], 1 << 20)).unwrap();
        assert_eq!(files.len(), 1, "{files:?}");
        assert_eq!(files[0].path, logs.join("a.log").display().to_string());
        let parent = dir.path().display().to_string();
        assert_eq!(
            list(Some(&roots), &listing(&[parent], 1 << 20))
                .unwrap()
                .len(),
            2
        );
        // Without local roots a worker offers nothing.
        let err = list(None, &listing(&[all], 5)).unwrap_err();
        assert!(err.contains("--local-root"), "{err}");
        // A root and a pattern named through a symlink are the same directory.
        let alias = dir.path().join("alias");
        std::os::unix::fs::symlink(&logs, &alias).unwrap();
        let by_alias = Roots::new(std::slice::from_ref(&alias)).unwrap();
        let through = format!("{}/*.log", alias.display());
        assert_eq!(
            list(Some(&by_alias), &listing(&[through], 5))
                .unwrap()
                .len(),
            1
        );
        let above = format!("{}/*/a.log", dir.path().display());
        assert_eq!(
            list(Some(&by_alias), &listing(&[above], 5)).unwrap().len(),
            1
        );
        // A symlink out of a root is not followed.
        std::os::unix::fs::symlink(dir.path().join("outside.log"), logs.join("link.log")).unwrap();
        let linked = logs.join("link.log").display().to_string();
        let err = list(Some(&roots), &listing(&[linked], 5)).unwrap_err();
        assert!(err.contains("leads out of its root"), "{err}");
    }
}
