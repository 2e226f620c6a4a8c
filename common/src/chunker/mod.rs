//! Cuts files into record-aligned chunks and reads a chunk's bytes.
//!
//! A cut at byte offset `n` moves forward to the next record boundary, so a chunk owns every
//! record that *starts* inside its nominal range (Hadoop's TextInputFormat rule): no record is
//! split, lost or read twice, CRLF included, and a record longer than the chunk size stays whole
//! in one chunk. For newline-delimited files planning reads only a small window after each
//! cut, never the whole dataset; a CSV file is scanned once for its quotes ([`csv`]), since a
//! newline inside a quoted field is not a boundary.
//!
//! The coordinator plans at submission and reads each chunk's bytes when it assigns the chunk.

use std::io;

use crate::input::InputFile;
use crate::location::{Location, Source};
use crate::roots::Roots;

mod csv;

/// How a file is cut into chunks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cut {
    /// At newlines: text and JSON Lines.
    Lines,
    /// At newlines outside quoted fields, each chunk after the first read with the file's
    /// first record in front (its header, or the row that sets a header-less file's field
    /// count).
    Csv { delimiter: u8 },
    /// Not at all: one chunk per file (compressed files, whole-file jobs).
    Whole,
}

/// A record-aligned byte range `[start, end)` of one input file, `file` indexing the job's files.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChunkRange {
    pub file: u32,
    pub start: u64,
    pub end: u64,
    /// The length of the file's first record, read in front of the range (`[0, header)` then
    /// `[start, end)`: a CSV chunk after the first); 0 for none.
    pub header: u64,
}

impl ChunkRange {
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }
}

/// Bytes scanned per read while looking for the record boundary after a cut.
const SCAN_WINDOW: usize = 64 * 1024;

/// Plans the chunks of every file, in file order, each file cut as `cut` says. Empty files
/// yield no chunk.
pub fn plan(
    files: &[InputFile],
    chunk_size: u64,
    cut: impl Fn(&Location) -> Cut,
    roots: &Roots,
) -> io::Result<Vec<ChunkRange>> {
    assert!(chunk_size > 0, "chunk size must be positive");
    let mut chunks = Vec::new();
    for (index, file) in files.iter().enumerate() {
        let index = u32::try_from(index).map_err(|_| io::Error::other("too many input files"))?;
        let mut emit = |start, end, header| {
            chunks.push(ChunkRange {
                file: index,
                start,
                end,
                header,
            })
        };
        let planned = match cut(&file.location) {
            Cut::Whole => {
                if file.len > 0 {
                    emit(0, file.len, 0);
                }
                Ok(())
            }
            Cut::Lines => plan_file(&file.location, file.len, chunk_size, roots, |s, e| {
                emit(s, e, 0)
            }),
            Cut::Csv { .. } if file.len == 0 => Ok(()),
            Cut::Csv { delimiter } => file.location.open(roots).and_then(|mut source| {
                csv::plan_file(&mut source, file.len, chunk_size, delimiter, &mut emit)
            }),
        };
        planned.map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", file.location)))?;
    }
    Ok(chunks)
}

/// Fails, naming the file and byte range, if a chunk is larger than `max` bytes: a single record
/// (or a whole, compressed or CSV file) that large cannot travel to a worker in one message,
/// nor be held whole by one. Files for which `unbounded` says so are exempt (a worker's own
/// compressed file, which its worker decompresses as it maps, reading it where it is).
pub fn check_sizes(
    files: &[InputFile],
    chunks: &[ChunkRange],
    max: u64,
    unbounded: impl Fn(&Location) -> bool,
) -> Result<(), String> {
    let bounded = |c: &&ChunkRange| !unbounded(&files[c.file as usize].location);
    match chunks.iter().filter(bounded).find(|c| c.len() > max) {
        None => Ok(()),
        Some(c) => Err(format!(
            "input '{}': bytes {}..{} must be one chunk (one record, or a file that is read \
             whole) and are larger than the {max} bytes a chunk may have",
            files[c.file as usize].location, c.start, c.end
        )),
    }
}

/// Calls `emit(start, end)` for each record-aligned chunk of a file of `len` bytes.
fn plan_file(
    location: &Location,
    len: u64,
    chunk_size: u64,
    roots: &Roots,
    mut emit: impl FnMut(u64, u64),
) -> io::Result<()> {
    if len == 0 {
        return Ok(());
    }
    let mut file = location.open(roots)?;
    let mut window = vec![0u8; SCAN_WINDOW];
    let mut start = 0;
    while start < len {
        let cut = start.saturating_add(chunk_size);
        let end = if cut >= len {
            len
        } else {
            // The record starting at or after `cut` begins just past the first '\n' at
            // offset cut-1 or later.
            next_record_start(&mut file, cut - 1, len, &mut window)?
        };
        emit(start, end);
        start = end;
    }
    Ok(())
}

/// The offset just past the first newline at or after `from`, or `len` if there is none.
fn next_record_start(file: &mut Source, from: u64, len: u64, window: &mut [u8]) -> io::Result<u64> {
    let mut offset = from;
    while offset < len {
        let n = file.read_at(offset, window)?;
        if n == 0 {
            break; // the file shrank since planning began; treat as its end
        }
        if let Some(i) = memchr::memchr(b'\n', &window[..n]) {
            return Ok(offset + i as u64 + 1);
        }
        offset += n as u64;
    }
    Ok(len)
}

/// Reads the bytes of a planned chunk, its file's first record in front if it carries one.
/// Fails if the file changed so the range no longer exists.
pub fn read(location: &Location, range: ChunkRange, roots: &Roots) -> io::Result<Vec<u8>> {
    if range.header == 0 {
        return location.read_range(roots, range.start, range.end);
    }
    let mut data = location.read_range(roots, 0, range.header)?;
    data.extend(location.read_range(roots, range.start, range.end)?);
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::path::{Path, PathBuf};

    fn write_files(dir: &Path, contents: &[Vec<u8>]) -> Vec<InputFile> {
        contents
            .iter()
            .enumerate()
            .map(|(i, bytes)| {
                let path: PathBuf = dir.join(format!("part-{i:05}"));
                std::fs::write(&path, bytes).unwrap();
                InputFile {
                    location: Location::Local(path),
                    len: bytes.len() as u64,
                }
            })
            .collect()
    }

    /// Records as a plain reader sees them: split after each '\n', last one possibly unterminated.
    fn records(bytes: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut rest = bytes;
        while !rest.is_empty() {
            let end = rest
                .iter()
                .position(|&b| b == b'\n')
                .map_or(rest.len(), |i| i + 1);
            out.push(rest[..end].to_vec());
            rest = &rest[end..];
        }
        out
    }

    /// Plans, reads every chunk, and checks the invariants against the files' own records.
    fn check(contents: &[Vec<u8>], chunk_size: u64) {
        let dir = tempfile::tempdir().unwrap();
        let files = write_files(dir.path(), contents);
        let chunks = plan(&files, chunk_size, |_| Cut::Lines, &Roots::default()).unwrap();
        let mut seen: Vec<Vec<Vec<u8>>> = vec![Vec::new(); files.len()];
        let mut expected_start = vec![0u64; files.len()];
        for chunk in &chunks {
            let file = chunk.file as usize;
            let bytes = &contents[file];
            assert!(!chunk.is_empty(), "empty chunk {chunk:?}");
            assert_eq!(
                chunk.start, expected_start[file],
                "chunks must tile the file"
            );
            expected_start[file] = chunk.end;
            assert!(
                chunk.end as usize == bytes.len() || bytes[chunk.end as usize - 1] == b'\n',
                "cut inside a record: {chunk:?}"
            );
            let data = read(&files[file].location, *chunk, &Roots::default()).unwrap();
            // A chunk is only as long as the cut forces: it ends at the first record boundary
            // at or after start + chunk_size.
            if chunk.len() > chunk_size {
                let tail = &data[chunk_size as usize - 1..data.len() - 1];
                assert!(
                    !tail.contains(&b'\n'),
                    "chunk overran a boundary: {chunk:?}"
                );
            }
            seen[file].extend(records(&data));
        }
        for (file, bytes) in contents.iter().enumerate() {
            assert_eq!(expected_start[file], bytes.len() as u64, "file not covered");
            assert_eq!(seen[file], records(bytes), "records of file {file}");
        }
    }

    #[test]
    fn every_cut_offset_of_small_inputs() {
        let inputs: [&[u8]; 6] = [
            b"a\nbb\nccc\n\ndddd\n",
            b"one two\r\nthree\r\n\r\nfour",
            b"no newline at all",
            b"\n\n\n\n",
            b"x",
            b"tail without newline\nlast",
        ];
        for input in inputs {
            for size in 1..=input.len() as u64 + 1 {
                check(&[input.to_vec()], size);
            }
        }
    }

    #[test]
    fn empty_file_yields_no_chunk_and_neighbours_are_kept() {
        check(&[b"a\n".to_vec(), Vec::new(), b"b\nc".to_vec()], 1);
        let dir = tempfile::tempdir().unwrap();
        let files = write_files(dir.path(), &[Vec::new()]);
        assert!(
            plan(&files, 10, |_| Cut::Lines, &Roots::default())
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn a_line_longer_than_the_chunk_stays_whole() {
        let mut input = b"short\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', 200_000)); // longer than the scan window
        input.extend(b"\nafter\n");
        check(std::slice::from_ref(&input), 10);
        let dir = tempfile::tempdir().unwrap();
        let files = write_files(dir.path(), &[input]);
        let chunks = plan(&files, 10, |_| Cut::Lines, &Roots::default()).unwrap();
        // The long line starts inside the first chunk's range, so the first chunk holds it.
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[0].len(), 6 + 200_001);
    }

    #[test]
    fn whole_files_are_one_chunk_each() {
        let dir = tempfile::tempdir().unwrap();
        let files = write_files(
            dir.path(),
            &[b"a\nb\nc\n".to_vec(), Vec::new(), b"d\ne\n".to_vec()],
        );
        let chunks = plan(
            &files,
            1,
            |l| match l.to_string().ends_with("part-00002") {
                true => Cut::Lines,
                false => Cut::Whole,
            },
            &Roots::default(),
        )
        .unwrap();
        let spans: Vec<_> = chunks.iter().map(|c| (c.file, c.start, c.end)).collect();
        assert_eq!(spans, [(0, 0, 6), (2, 0, 2), (2, 2, 4)]);
    }

    #[test]
    fn an_oversized_record_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let files = write_files(dir.path(), &[b"ok\n0123456789\nok\n".to_vec()]);
        let chunks = plan(&files, 1, |_| Cut::Lines, &Roots::default()).unwrap();
        assert!(check_sizes(&files, &chunks, 11, |_| false).is_ok());
        assert!(check_sizes(&files, &chunks, 10, |_| true).is_ok());
        let err = check_sizes(&files, &chunks, 10, |_| false).unwrap_err();
        assert_eq!(
            err,
            format!(
                "input '{}': bytes 3..14 must be one chunk (one record, or a file that is read \
                 whole) and are larger than the 10 bytes a chunk may have",
                files[0].location
            )
        );
    }

    #[test]
    fn many_tiny_files() {
        let contents: Vec<Vec<u8>> = (0..300).map(|i| format!("f{i}\n").into_bytes()).collect();
        check(&contents, 4096);
        check(&contents, 1);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn chunks_partition_records_exactly_once(
            files in prop::collection::vec(
                prop::collection::vec(prop::sample::select(b"ab \r\n".to_vec()), 0..120),
                1..4,
            ),
            chunk_size in 1u64..50,
        ) {
            check(&files, chunk_size);
        }
    }
}
