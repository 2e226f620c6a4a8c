//! Output directories in object storage. A store has no rename, so the commit is ordered
//! instead: the parts are uploaded (each one atomically: a reader never sees half a part),
//! then `_SUCCESS` last. A reader that checks `_SUCCESS` sees all or nothing; a commit that
//! fails removes the parts it wrote and writes no `_SUCCESS`.
//!
//! At submission a prefix holding anything is refused unless the job overwrites it. At commit,
//! overwriting removes `_SUCCESS` first and then everything else beneath the prefix, so no
//! reader takes the old parts and the new ones together. Without overwrite only `part-*`
//! objects may be there (an interrupted commit's own) and they are replaced. As on disk,
//! committing is idempotent per job: a `_SUCCESS` naming this job ends it at once.

use bytes::Bytes;
use fanfold_common::ids::JobId;
use fanfold_common::objects::{self, ObjectUrl};
use fanfold_common::render::RowWriter;
use fanfold_common::roots::Roots;
use fanfold_common::spec::OutputDir;

use crate::job::JobResult;

/// Objects looked at to tell whether a prefix holds anything, or what an interrupted commit
/// left: far more than a job's parts at any size that fits a coordinator.
const LISTED_AT_MOST: usize = 1_000_000;

/// The prefix `url` names, as a "directory" (`out/job1/`).
fn directory(url: &ObjectUrl) -> ObjectUrl {
    let key = url.key.trim_end_matches('/');
    ObjectUrl {
        key: if key.is_empty() {
            String::new()
        } else {
            format!("{key}/")
        },
        ..url.clone()
    }
}

/// Checks that the directory's parent lies beneath an output root, as on disk: the root
/// itself, which other jobs' results share, is never one job's output directory.
fn beneath_a_root(dir: &ObjectUrl, roots: &Roots) -> std::io::Result<()> {
    roots.check_object(dir)?;
    let key = dir.key.trim_end_matches('/');
    let parent = ObjectUrl {
        key: key[..key.rfind('/').map_or(0, |i| i + 1)].to_owned(),
        ..dir.clone()
    };
    roots.check_object(&parent)
}

fn named(output: &OutputDir, error: impl std::fmt::Display) -> String {
    format!("output directory '{}': {error}", output.path)
}

/// Checks at submission: beneath an output root, reachable, and empty unless overwriting.
pub fn check(output: &OutputDir, url: &ObjectUrl, roots: &Roots) -> Result<(), String> {
    let dir = directory(url);
    if dir.key.is_empty() {
        return Err(named(
            output,
            "a whole bucket cannot be an output directory",
        ));
    }
    beneath_a_root(&dir, roots).map_err(|e| named(output, e))?;
    let there = objects::list(&dir, LISTED_AT_MOST).map_err(|e| named(output, e))?;
    if !there.is_empty() && !output.overwrite {
        return Err(super::exists(&output.path));
    }
    Ok(())
}

/// Writes the result's parts and then `_SUCCESS` beneath the prefix; see the module.
pub fn commit(
    output: &OutputDir,
    url: &ObjectUrl,
    job: JobId,
    result: &JobResult,
    roots: &Roots,
) -> Result<(), String> {
    let dir = directory(url);
    beneath_a_root(&dir, roots).map_err(|e| named(output, e))?;
    let at = |name: &str| ObjectUrl {
        key: format!("{}{name}", dir.key),
        ..dir.clone()
    };
    let marker = at("_SUCCESS");
    let fail = |e: std::io::Error| named(output, e);
    if let Some(text) = objects::read(&marker).map_err(fail)? {
        if text == super::marker(job).as_bytes() {
            return Ok(());
        }
        if !output.overwrite {
            return Err(super::exists(&output.path));
        }
        objects::delete(&marker).map_err(fail)?;
    }
    let there = objects::list(&dir, LISTED_AT_MOST).map_err(fail)?;
    let ours = |key: &str| key[dir.key.len()..].starts_with("part-");
    if !output.overwrite && there.iter().any(|o| !ours(&o.key)) {
        return Err(super::exists(&output.path));
    }
    for old in &there {
        objects::delete(&at(&old.key[dir.key.len()..])).map_err(fail)?;
    }
    let mut written = Vec::new();
    let upload = |written: &mut Vec<ObjectUrl>| -> std::io::Result<()> {
        for part in 0..super::parts_of(result) {
            let mut writer = RowWriter::new(output.format, Vec::new());
            writer.header()?;
            super::write_rows(result, part, &mut writer)?;
            let name = at(&super::part_name(part, output));
            objects::put(&name, Bytes::from(writer.into_inner()))?;
            written.push(name);
        }
        objects::put(&marker, Bytes::from(super::marker(job)))
    };
    if let Err(e) = upload(&mut written) {
        for part in &written {
            let _ = objects::delete(part);
        }
        return Err(fail(e));
    }
    Ok(())
}
