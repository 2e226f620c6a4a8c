//! Writes a finished job's rows to its output directory, atomically.
//!
//! The rows go to part files (`part-00000.tsv`, ... of at most [`ROWS_PER_PART`] rows; a
//! partitioned job's part N holds partition N, read from its part file as it goes) and a
//! `_SUCCESS` marker in a temporary directory beside the target (`.NAME.tmp-JOB`), which is then
//! renamed into place: a reader sees no directory or the whole result, never half of one. An
//! existing target is refused unless the job asked to overwrite; then the old directory is
//! renamed aside first and removed after the new one is in place.
//!
//! `_SUCCESS` names the job that committed the directory (`job_id <ID>`). Committing is
//! idempotent per job: a coordinator that finishes the same job again after a restart finds
//! its own commit and leaves it as it is (a committed output is final), and clears what an
//! interrupted attempt of its own left beside the target. Input resolution skips names
//! starting with `_` or `.`, so an output directory can be the input of the next job.
//!
//! An output directory in object storage (`s3://bucket/out/job1/`) is committed the way
//! object stores allow (`objects`): parts uploaded, `_SUCCESS` written last.
//!
//! Called by the scheduler's finalize task on the blocking pool.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use fanfold_common::ids::JobId;
use fanfold_common::objects::ObjectUrl;
use fanfold_common::partial::Row;
use fanfold_common::render::RowWriter;
use fanfold_common::roots::Roots;
use fanfold_common::spec::OutputDir;

use crate::job::JobResult;
use crate::parts::PartReader;

mod objects;

/// Rows per part file.
pub const ROWS_PER_PART: usize = 1_000_000;

/// Checks at submission that the target can be written: it lies beneath an output root (if
/// there are any) with its parent resolved, it is not a symlink, its parent is a directory,
/// and it does not exist unless overwriting.
pub fn check(output: &OutputDir, roots: &Roots) -> Result<(), String> {
    if let Some(url) = ObjectUrl::parse(&output.path) {
        return objects::check(output, &url, roots);
    }
    let target = Path::new(&output.path);
    let parent = parent(target)?;
    if !parent.is_dir() {
        return Err(format!(
            "output directory '{}': parent '{}' is not a directory",
            output.path,
            parent.display()
        ));
    }
    confined(target, parent, roots)?;
    if target.exists() && !output.overwrite {
        return Err(exists(&output.path));
    }
    Ok(())
}

/// Refuses a target outside `roots`: as written, after following its parent's symlinks, or
/// itself a symlink.
fn confined(target: &Path, parent: &Path, roots: &Roots) -> Result<(), String> {
    if roots.is_empty() {
        return Ok(());
    }
    let named = |e: io::Error| format!("output directory '{}': {e}", target.display());
    roots.check(target).map_err(named)?;
    roots.check_dir(parent).map_err(named)?;
    if fs::symlink_metadata(target).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(named(io::Error::other("it is a symlink")));
    }
    Ok(())
}

/// Refuses a target that is the coordinator's state directory, inside it or around it: an
/// overwrite would remove the coordinator's own state.
pub fn apart_from(output: &OutputDir, state: &Path) -> Result<(), String> {
    if ObjectUrl::parse(&output.path).is_some() {
        return Ok(());
    }
    let target = Path::new(&output.path);
    let resolved = |p: &Path| {
        let parent = p.parent().and_then(|d| fs::canonicalize(d).ok());
        match (parent, p.file_name()) {
            (Some(parent), Some(name)) => parent.join(name),
            _ => p.to_path_buf(),
        }
    };
    let state = fs::canonicalize(state).unwrap_or_else(|_| state.to_path_buf());
    let target = resolved(target);
    if target.starts_with(&state) || state.starts_with(&target) {
        return Err(format!(
            "output directory '{}' overlaps the coordinator's state directory",
            output.path
        ));
    }
    Ok(())
}

fn exists(path: &str) -> String {
    format!("output directory '{path}' exists; ask to overwrite it (submit-job --overwrite)")
}

fn parent(target: &Path) -> Result<&Path, String> {
    match (target.parent(), target.file_name()) {
        (Some(parent), Some(_)) => Ok(parent),
        _ => Err(format!(
            "output directory '{}' has no parent",
            target.display()
        )),
    }
}

/// The `_SUCCESS` marker's text for `job`.
fn marker(job: JobId) -> String {
    format!("job_id {job}\n")
}

/// Whether `target` is a directory `job` committed.
fn committed_by(target: &Path, job: JobId) -> bool {
    fs::read_to_string(target.join("_SUCCESS")).is_ok_and(|text| text == marker(job))
}

/// Writes `rows` and commits the directory; on failure leaves nothing behind but the target's
/// previous state. A target this job committed already is kept as it is. The output roots
/// are checked again first: a parent swapped for a symlink since submission is refused.
pub fn commit(
    output: &OutputDir,
    job: JobId,
    result: &JobResult,
    roots: &Roots,
) -> Result<(), String> {
    if let Some(url) = ObjectUrl::parse(&output.path) {
        return objects::commit(output, &url, job, result, roots);
    }
    let target = PathBuf::from(&output.path);
    let parent = parent(&target)?;
    confined(&target, parent, roots)?;
    let name = target.file_name().expect("checked").to_string_lossy();
    let temp = parent.join(format!(".{name}.tmp-{job}"));
    let old = parent.join(format!(".{name}.old-{job}"));
    if committed_by(&target, job) {
        // Committed before a restart; only the previous directory may still be beside it.
        let _ = fs::remove_dir_all(&old);
        return Ok(());
    }
    if !target.exists() && old.exists() {
        // A crash came between moving the previous directory aside and renaming the new one
        // in: put it back first, so a failure now leaves the target as it was.
        fs::rename(&old, &target)
            .map_err(|e| format!("cannot write output directory '{}': {e}", output.path))?;
    }
    let write = || -> io::Result<()> {
        // What an attempt of this job left before a crash is this job's own to replace.
        match fs::remove_dir_all(&temp) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        fs::create_dir(&temp)?;
        for part in 0..parts_of(result) {
            write_part(&temp, part, output, |writer| {
                write_rows(result, part, writer)
            })?;
        }
        let mut success = File::create(temp.join("_SUCCESS"))?;
        success.write_all(marker(job).as_bytes())?;
        success.sync_all()?;
        // The directory's entries, durable before the rename publishes them.
        File::open(&temp)?.sync_all()
    };
    let describe = |e: io::Error| format!("cannot write output directory '{}': {e}", output.path);
    if let Err(e) = write() {
        let _ = fs::remove_dir_all(&temp);
        return Err(describe(e));
    }
    let moved_aside = if target.exists() {
        if !output.overwrite {
            let _ = fs::remove_dir_all(&temp);
            return Err(exists(&output.path));
        }
        if let Err(e) = fs::rename(&target, &old) {
            let _ = fs::remove_dir_all(&temp);
            return Err(describe(e));
        }
        true
    } else {
        false
    };
    if let Err(e) = fs::rename(&temp, &target) {
        if moved_aside {
            let _ = fs::rename(&old, &target);
        }
        let _ = fs::remove_dir_all(&temp);
        return Err(describe(e));
    }
    // The rename itself, durable before the job's success is journaled.
    let dir = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    File::open(dir)
        .and_then(|dir| dir.sync_all())
        .map_err(describe)?;
    if moved_aside || old.exists() {
        let _ = fs::remove_dir_all(&old).or_else(|_| fs::remove_file(&old));
    }
    Ok(())
}

/// The number of part files `result` is written as.
fn parts_of(result: &JobResult) -> usize {
    match result {
        JobResult::Rows(rows) => rows.len().div_ceil(ROWS_PER_PART).max(1),
        JobResult::Parts(parts) => parts.len(),
    }
}

/// Writes the rows of part `part` of `result` (of [`parts_of`]).
fn write_rows<W: Write>(
    result: &JobResult,
    part: usize,
    writer: &mut RowWriter<W>,
) -> io::Result<()> {
    match result {
        JobResult::Rows(rows) => {
            let end = rows.len().min((part + 1) * ROWS_PER_PART);
            rows[part * ROWS_PER_PART..end]
                .iter()
                .try_for_each(|row| writer.write(row))
        }
        JobResult::Parts(parts) => {
            let mut reader = PartReader::open(&parts[part].path)?;
            while let Some(entry) = reader.next_entry()? {
                let row = Row::try_from(entry)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                writer.write(&row)?;
            }
            Ok(())
        }
    }
}

/// The name of part file `part` in the output's format.
fn part_name(part: usize, output: &OutputDir) -> String {
    format!("part-{part:05}.{}", output.format.extension())
}

/// Writes part file `part` of `dir` in the output's format, its rows from `rows`, synced.
fn write_part(
    dir: &Path,
    part: usize,
    output: &OutputDir,
    rows: impl FnOnce(&mut RowWriter<BufWriter<File>>) -> io::Result<()>,
) -> io::Result<()> {
    let path = dir.join(part_name(part, output));
    let mut writer = RowWriter::new(output.format, BufWriter::new(File::create(path)?));
    writer.header()?;
    rows(&mut writer)?;
    let file = writer
        .into_inner()
        .into_inner()
        .map_err(|e| e.into_error())?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use fanfold_common::partial::Value;
    use fanfold_common::render::Format;

    #[test]
    fn an_output_directory_may_not_overlap_the_state_directory() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        fs::create_dir_all(state.join("parts")).unwrap();
        let output = |path: &Path| OutputDir {
            path: path.display().to_string(),
            format: Format::Tsv,
            overwrite: true,
        };
        for overlapping in [
            state.clone(),
            state.join("parts"),
            dir.path().to_path_buf(),
            state.join("parts/../parts"),
        ] {
            let refused = apart_from(&output(&overlapping), &state).unwrap_err();
            assert!(
                refused.contains("overlaps the coordinator's state"),
                "{refused}"
            );
        }
        assert!(apart_from(&output(&dir.path().join("results")), &state).is_ok());
    }

    fn rows(n: u64) -> JobResult {
        JobResult::Rows(std::sync::Arc::new(
            (0..n)
                .map(|i| Row {
                    key: format!("k{i}").into_bytes(),
                    value: Value::Count(i),
                })
                .collect(),
        ))
    }

    #[test]
    fn commits_whole_and_refuses_an_existing_target_unless_overwriting() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out");
        let mut output = OutputDir {
            path: target.display().to_string(),
            format: Format::Csv,
            overwrite: false,
        };
        check(&output, &Roots::default()).unwrap();
        commit(&output, JobId::new(), &rows(3), &Roots::default()).unwrap();
        let names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["out"], "no temporary directory left behind");
        assert_eq!(
            fs::read_to_string(target.join("part-00000.csv")).unwrap(),
            "key,value\r\nk0,0\r\nk1,1\r\nk2,2\r\n"
        );
        assert!(target.join("_SUCCESS").exists());
        let refused = check(&output, &Roots::default()).unwrap_err();
        assert!(refused.contains("exists; ask to overwrite"), "{refused}");
        assert!(commit(&output, JobId::new(), &rows(1), &Roots::default()).is_err());
        output.overwrite = true;
        output.format = Format::Tsv;
        commit(&output, JobId::new(), &rows(1), &Roots::default()).unwrap();
        let mut names: Vec<String> = fs::read_dir(&target)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["_SUCCESS", "part-00000.tsv"]);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_job_recognises_its_own_commit_and_clears_what_a_crash_left() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out");
        let output = OutputDir {
            path: target.display().to_string(),
            format: Format::Tsv,
            overwrite: false,
        };
        let job = JobId::new();
        // An attempt of this job that crashed while writing left its temporary directory.
        let stale = dir.path().join(format!(".out.tmp-{job}"));
        fs::create_dir(&stale).unwrap();
        fs::write(stale.join("part-00000.tsv"), "half").unwrap();
        commit(&output, job, &rows(2), &Roots::default()).unwrap();
        assert_eq!(
            fs::read_to_string(target.join("_SUCCESS")).unwrap(),
            format!("job_id {job}\n")
        );
        let written = fs::read_to_string(target.join("part-00000.tsv")).unwrap();
        assert_eq!(written, "k0\t0\nk1\t1\n");
        // Finishing the same job again (after a restart) keeps its commit as it is.
        commit(&output, job, &rows(2), &Roots::default()).unwrap();
        assert_eq!(
            fs::read_to_string(target.join("part-00000.tsv")).unwrap(),
            written
        );
        let names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["out"]);
        // Another job's directory is still refused.
        let refused = commit(&output, JobId::new(), &rows(1), &Roots::default()).unwrap_err();
        assert!(refused.contains("exists; ask to overwrite"), "{refused}");
    }

    #[test]
    fn a_missing_parent_is_named() {
        let output = OutputDir {
            path: "/nonexistent/fanfold/out".into(),
            ..Default::default()
        };
        assert_eq!(
            check(&output, &Roots::default()).unwrap_err(),
            "output directory '/nonexistent/fanfold/out': parent '/nonexistent/fanfold' is not a directory"
        );
    }
}
