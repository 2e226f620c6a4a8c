//! Record boundaries of CSV files, whose quoted fields may hold newlines: a newline ends a
//! record only outside quotes, and whether a byte is inside quotes depends on every quote
//! before it. So a CSV file is cut from one sequential scan of its quotes (memchr over the
//! bytes, at memory speed: a file without quotes costs one pass of `memchr`), not from a
//! window after each cut. The scan follows the quoting rules of the parser that maps the
//! chunks (`csv-core`: a quote opens a quoted field only at the start of a field, `""` inside
//! one is a literal quote), so every chunk starts where the whole file's parse starts a
//! record, and the chunks' records are the file's, for any cut.
//!
//! The file's first record (its header, or with `header=false` the row that sets the field
//! count) is found by the same scan; every chunk after the first carries its length and is
//! read with those bytes in front (`super::read`), so each chunk parses as the file does.

use std::io;

use crate::location::Source;

/// Bytes read per step of the scan.
const BLOCK: usize = 1 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Outside quotes.
    Unquoted,
    /// Inside a quoted field.
    Quoted,
    /// Just past a quote inside a quoted field: a second quote makes a literal quote;
    /// anything else closes the field.
    QuoteInQuoted,
}

/// A forward scan of one file's quote state.
struct Scan {
    delimiter: u8,
    state: State,
    /// The file's bytes from `base`, and `base + block.len()` is how far it has read.
    block: Vec<u8>,
    base: u64,
    /// The absolute offset the scan has reached.
    at: u64,
    /// The byte before `base` (a newline at the file's start: a field starts there).
    before_block: u8,
    len: u64,
}

impl Scan {
    fn new(delimiter: u8, len: u64) -> Self {
        Scan {
            delimiter,
            state: State::Unquoted,
            block: Vec::new(),
            base: 0,
            at: 0,
            before_block: b'\n',
            len,
        }
    }

    /// The first record boundary (offset just past a newline outside quotes; with
    /// `carriage`, a carriage return too, which also ends a record) at or after `want`, or
    /// the file's length if there is none.
    fn boundary_from(&mut self, file: &mut Source, want: u64, carriage: bool) -> io::Result<u64> {
        loop {
            if self.at >= self.base + self.block.len() as u64 && !self.refill(file)? {
                return Ok(self.len);
            }
            if let Some(boundary) = self.step(want, carriage) {
                return Ok(boundary);
            }
        }
    }

    /// Reads the next block; `false` at the end of the file.
    fn refill(&mut self, file: &mut Source) -> io::Result<bool> {
        if let Some(&last) = self.block.last() {
            self.before_block = last;
        }
        self.base += self.block.len() as u64;
        self.at = self.base;
        let want = BLOCK.min((self.len - self.base.min(self.len)) as usize);
        self.block.resize(want, 0);
        let mut filled = 0;
        while filled < want {
            let n = file.read_at(self.base + filled as u64, &mut self.block[filled..])?;
            if n == 0 {
                break; // the file shrank since it was listed: its end is here
            }
            filled += n;
        }
        self.block.truncate(filled);
        if filled == 0 {
            self.len = self.base;
        }
        Ok(filled > 0)
    }

    /// Scans the current block from `at`: the boundary at or after `want` if it is in the
    /// block, else `None` with the whole block scanned.
    fn step(&mut self, want: u64, carriage: bool) -> Option<u64> {
        let block = &self.block[..];
        let mut i = (self.at - self.base) as usize;
        while i < block.len() {
            match self.state {
                State::Quoted => match memchr::memchr(b'"', &block[i..]) {
                    Some(j) => {
                        i += j + 1;
                        self.state = State::QuoteInQuoted;
                    }
                    None => i = block.len(),
                },
                State::QuoteInQuoted => {
                    if block[i] == b'"' {
                        self.state = State::Quoted;
                        i += 1;
                    } else {
                        // Closed: this byte is read outside quotes.
                        self.state = State::Unquoted;
                    }
                }
                State::Unquoted => {
                    let quote = memchr::memchr(b'"', &block[i..]).map_or(block.len(), |j| i + j);
                    // A newline at offset `want - 1` or later ends a record at `want` or later.
                    let from = want.saturating_sub(1).saturating_sub(self.base) as usize;
                    let from = from.max(i);
                    let ends = &block[from.min(quote)..quote];
                    let end = match carriage {
                        true => memchr::memchr2(b'\n', b'\r', ends),
                        false => memchr::memchr(b'\n', ends),
                    };
                    if let Some(j) = end {
                        let end = self.base + (from + j) as u64 + 1;
                        self.at = end;
                        return Some(end);
                    }
                    if quote == block.len() {
                        i = quote;
                        continue;
                    }
                    let before = if quote == 0 {
                        self.before_block
                    } else {
                        block[quote - 1]
                    };
                    if before == self.delimiter || before == b'\n' || before == b'\r' {
                        self.state = State::Quoted;
                    }
                    i = quote + 1;
                }
            }
        }
        self.at = self.base + block.len() as u64;
        None
    }
}

/// Calls `emit(start, end, header)` for each chunk of a CSV file of `len` bytes: chunks end
/// at the first record boundary at or after `start + chunk_size`, and every chunk after the
/// first carries `header`, the length of the file's first record.
pub(super) fn plan_file(
    file: &mut Source,
    len: u64,
    chunk_size: u64,
    delimiter: u8,
    mut emit: impl FnMut(u64, u64, u64),
) -> io::Result<()> {
    if len == 0 {
        return Ok(());
    }
    let mut scan = Scan::new(delimiter, len);
    // The first record: past any blank lines (the parser skips them), to its end.
    scan.refill(file)?;
    let Some(content) = scan.block.iter().position(|&b| b != b'\n' && b != b'\r') else {
        // Nothing but line ends in the first block: not worth cutting.
        emit(0, scan.len, 0);
        return Ok(());
    };
    // It ends at a carriage return too: what follows one is the next record's.
    let header = scan.boundary_from(file, content as u64 + 1, true)?;
    let mut start = 0;
    while start < scan.len {
        let cut = start.saturating_add(chunk_size).max(header);
        let end = if cut >= scan.len {
            scan.len
        } else {
            scan.boundary_from(file, cut, false)?
        };
        emit(start, end, if start == 0 { 0 } else { header });
        start = end;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{Cut, plan, read};
    use crate::input::InputFile;
    use crate::location::Location;
    use crate::operation::{Chunk, ChunkStats, Options};
    use crate::records::{InputOptions, Record, for_each_record};
    use crate::roots::Roots;
    use proptest::prelude::*;

    /// Every row a chunk yields (its fields), and its stats.
    fn rows(chunk: &Chunk, input: &InputOptions) -> (Vec<Vec<Vec<u8>>>, ChunkStats) {
        let mut stats = ChunkStats::default();
        let mut seen = Vec::new();
        for_each_record(chunk, input, &mut stats, |record| {
            let Record::Csv { row, .. } = record else {
                panic!("not a CSV record");
            };
            seen.push(row.iter().map(<[u8]>::to_vec).collect());
            Ok(true)
        })
        .unwrap();
        (seen, stats)
    }

    /// Cuts `bytes` at every chunk size and checks that the chunks' rows, bad rows and bytes
    /// are the whole file's, as the CSV reader reads it whole.
    fn check(bytes: &[u8], delimiter: u8, header: bool, sizes: impl Iterator<Item = u64>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.csv");
        std::fs::write(&path, bytes).unwrap();
        let files = [InputFile {
            location: Location::Local(path.clone()),
            len: bytes.len() as u64,
        }];
        let options: Options = [
            ("delimiter".to_owned(), (delimiter as char).to_string()),
            ("header".to_owned(), header.to_string()),
        ]
        .into();
        let input = InputOptions::from_options("test", &options).unwrap();
        let name = path.display().to_string();
        let (whole, whole_stats) = rows(&Chunk::new(bytes, &name, 0), &input);
        for size in sizes {
            let chunks = plan(&files, size, |_| Cut::Csv { delimiter }, &Roots::default()).unwrap();
            let mut seen = Vec::new();
            let mut stats = ChunkStats::default();
            let mut next = 0;
            for chunk in &chunks {
                assert_eq!(chunk.start, next, "chunks tile the file: {chunks:?}");
                next = chunk.end;
                let data = read(&files[0].location, *chunk, &Roots::default()).unwrap();
                let (got, got_stats) = rows(&Chunk::of_range(&data, &name, *chunk), &input);
                seen.extend(got);
                stats.records_in += got_stats.records_in;
                stats.bad_records += got_stats.bad_records;
                stats.bytes_in += got_stats.bytes_in;
            }
            assert_eq!(next, bytes.len() as u64, "file covered");
            let shown = String::from_utf8_lossy(bytes);
            assert_eq!(
                seen, whole,
                "rows of {shown:?} cut every {size}: {chunks:?}"
            );
            assert_eq!(
                (stats.records_in, stats.bad_records, stats.bytes_in),
                (
                    whole_stats.records_in,
                    whole_stats.bad_records,
                    whole_stats.bytes_in
                ),
                "counts of {shown:?} cut every {size}"
            );
        }
    }

    #[test]
    fn every_cut_of_tricky_files_reads_the_whole_files_rows() {
        let files: [&[u8]; 10] = [
            // Quoted newlines, doubled quotes, a quote at the start of a chunk's first field.
            b"name,note\n\"a\",\"x\ny\"\n\"b\",\"he said \"\"hi\"\"\n\"\nc,plain\n",
            b"k,v\n\"\n\",1\n\"\"\"\",2\n\"a\n\nb\",3\n\"\",4\n",
            // CRLF line ends, inside quotes too.
            b"h1,h2\r\n\"q\r\n1\",2\r\n3,\"4\"\r\n\"\r\n\",5\r\n",
            // A quote inside an unquoted field is a literal, not the start of quotes.
            b"a,b\n5\" tv,1\nx,\"y\nz\"\nq\"\n,2\n",
            // Blank lines before the header; a quoted field closed at the end of the file.
            b"\n\r\nh,v\n1,2\n\"3\n\",4\n",
            b"h\n\"a\nb\"",
            // Malformed: an unterminated quote, a row with the wrong field count.
            b"h,i\n1,2\n\"abc\ndef\n3,4\n",
            b"h,i\n1\n2,3\n4,5,6\n\"7\n\",8\n",
            // A closing quote followed by more bytes, and a field after a quoted newline.
            b"x,y\n\"a\"b,\"c\nd\"e\n\"f\"\"\n\",g\n",
            // A header alone.
            b"only,a,header\n",
        ];
        for bytes in files {
            for header in [true, false] {
                check(bytes, b',', header, 1..=bytes.len() as u64 + 1);
            }
        }
        let semicolons = b"a;b\n\"x;\n\";2\ny;\"\n;\"\n";
        check(semicolons, b';', true, 1..=semicolons.len() as u64 + 1);
        let tabs = b"a\tb\n\"x\t\n\"\t2\n";
        check(tabs, b'\t', true, 1..=tabs.len() as u64 + 1);
    }

    #[test]
    fn a_large_file_is_cut_across_scan_blocks_into_balanced_chunks() {
        // Rows with quoted newlines, over several scan blocks.
        let mut bytes = b"id,text\n".to_vec();
        for i in 0..60_000 {
            bytes.extend(format!("{i},\"line {i}\nand \"\"more\"\"\n\"\n").as_bytes());
        }
        check(&bytes, b',', true, [100_000, 999_999, 1 << 20].into_iter());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.csv");
        std::fs::write(&path, &bytes).unwrap();
        let files = [InputFile {
            location: Location::Local(path),
            len: bytes.len() as u64,
        }];
        let cut = |_: &Location| Cut::Csv { delimiter: b',' };
        let chunks = plan(&files, 256 * 1024, cut, &Roots::default()).unwrap();
        assert!(chunks.len() >= 7, "{} chunks", chunks.len());
        assert!(chunks[1..].iter().all(|c| c.header == 8), "{chunks:?}");
        assert_eq!(chunks[0].header, 0);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn any_bytes_cut_anywhere_read_as_the_whole_file(
            bytes in prop::collection::vec(prop::sample::select(b"a,\"\n\r".to_vec()), 0..120),
            header in any::<bool>(),
            size in 1u64..40,
        ) {
            check(&bytes, b',', header, [size].into_iter());
        }
    }
}
