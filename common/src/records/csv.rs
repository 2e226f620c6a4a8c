//! CSV rows read in place: a row's fields are slices of the chunk, found by one pass over its
//! bytes, and nothing is copied unless a field holds a doubled quote (`"a ""b"" c"`) or bytes
//! after its closing quote (`"a"b`). Such a row is read by `csv-core`'s state machine into a
//! scratch buffer instead, so the answer is always `csv-core`'s: RFC 4180 quoting, `\n`,
//! `\r\n` or a lone `\r` ending a row, blank rows skipped, a quote inside an unquoted field
//! taken as it is. A property test holds every row equal to the `csv` crate's reading.

/// One CSV row: its fields, borrowed from the chunk (or from the reader's scratch buffer).
#[derive(Clone, Copy, Debug)]
pub struct CsvRow<'a> {
    base: &'a [u8],
    spans: &'a [(usize, usize)],
}

impl<'a> CsvRow<'a> {
    /// How many fields the row has.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// The field at `index`, if the row has one there.
    pub fn get(&self, index: usize) -> Option<&'a [u8]> {
        let base = self.base;
        self.spans.get(index).map(|&(start, end)| &base[start..end])
    }

    pub fn iter(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        let base = self.base;
        self.spans
            .iter()
            .map(move |&(start, end)| &base[start..end])
    }
}

/// A row kept past the reading of the next: the file's header.
#[derive(Debug, Default)]
pub struct OwnedRow {
    bytes: Vec<u8>,
    spans: Vec<(usize, usize)>,
}

impl OwnedRow {
    pub fn of(row: CsvRow<'_>) -> OwnedRow {
        let mut owned = OwnedRow::default();
        for field in row.iter() {
            let start = owned.bytes.len();
            owned.bytes.extend_from_slice(field);
            owned.spans.push((start, owned.bytes.len()));
        }
        owned
    }

    pub fn row(&self) -> CsvRow<'_> {
        CsvRow {
            base: &self.bytes,
            spans: &self.spans,
        }
    }
}

/// What a byte is to an unquoted field.
const PLAIN: u8 = 0;
const DELIMITER: u8 = 1;
const TERMINATOR: u8 = 2;

/// Reads the rows of one chunk's bytes in order.
pub struct Rows<'d> {
    data: &'d [u8],
    /// Where the next row starts (or blank lines before it).
    at: usize,
    delimiter: u8,
    class: [u8; 256],
    spans: Vec<(usize, usize)>,
    /// The slow path's unescaped fields and their ends.
    scratch: Vec<u8>,
    ends: Vec<usize>,
    core: csv_core::Reader,
}

impl<'d> Rows<'d> {
    pub fn new(data: &'d [u8], delimiter: u8) -> Rows<'d> {
        let mut class = [PLAIN; 256];
        class[usize::from(b'\n')] = TERMINATOR;
        class[usize::from(b'\r')] = TERMINATOR;
        class[usize::from(delimiter)] = DELIMITER;
        Rows {
            data,
            at: 0,
            delimiter,
            class,
            spans: Vec::new(),
            scratch: vec![0; 1024],
            ends: vec![0; 64],
            core: csv_core::ReaderBuilder::new().delimiter(delimiter).build(),
        }
    }

    /// The next row; `None` at the end of the chunk.
    #[allow(clippy::should_implement_trait)] // A lending iterator: the row borrows the reader.
    pub fn next(&mut self) -> Option<CsvRow<'_>> {
        let data = self.data;
        // Blank rows are skipped, as csv-core skips them.
        while self.at < data.len() && self.class[usize::from(data[self.at])] == TERMINATOR {
            self.at += 1;
        }
        if self.at == data.len() {
            return None;
        }
        match self.in_place() {
            Some(end) => {
                self.at = end;
                Some(CsvRow {
                    base: data,
                    spans: &self.spans,
                })
            }
            None => self.unescaped(),
        }
    }

    /// Finds the fields of the row at `self.at` as slices of the data; returns where the row
    /// ends, or `None` if a field must be unescaped.
    fn in_place(&mut self) -> Option<usize> {
        let (data, class, delimiter) = (self.data, &self.class, self.delimiter);
        self.spans.clear();
        let mut i = self.at;
        loop {
            if data.get(i) == Some(&b'"') {
                let start = i + 1;
                // A quoted field left open at the end of the chunk goes the slow way.
                let close = start + memchr::memchr(b'"', &data[start..])?;
                self.spans.push((start, close));
                match data.get(close + 1) {
                    None => return Some(close + 1),
                    Some(&b) if b == delimiter => i = close + 2,
                    Some(b'\n' | b'\r') => return Some(close + 1),
                    // A doubled quote, or bytes after the closing quote.
                    Some(_) => return None,
                }
            } else {
                let start = i;
                while i < data.len() && class[usize::from(data[i])] == PLAIN {
                    i += 1;
                }
                self.spans.push((start, i));
                match data.get(i) {
                    Some(&b) if b == delimiter => i += 1,
                    _ => return Some(i),
                }
            }
        }
    }

    /// Reads the row at `self.at` with csv-core, its fields unescaped into the scratch buffer.
    fn unescaped(&mut self) -> Option<CsvRow<'_>> {
        use csv_core::ReadRecordResult;
        self.core.reset();
        let mut input = &self.data[self.at..];
        let (mut out, mut ends) = (0, 0);
        loop {
            let (result, read, wrote, ended) =
                self.core
                    .read_record(input, &mut self.scratch[out..], &mut self.ends[ends..]);
            input = &input[read..];
            self.at += read;
            out += wrote;
            ends += ended;
            match result {
                // The rest of the chunk is the row: the next call, with no input, ends it.
                ReadRecordResult::InputEmpty => {}
                ReadRecordResult::OutputFull => {
                    let len = self.scratch.len();
                    self.scratch.resize(len * 2, 0);
                }
                ReadRecordResult::OutputEndsFull => {
                    let len = self.ends.len();
                    self.ends.resize(len * 2, 0);
                }
                ReadRecordResult::Record => break,
                ReadRecordResult::End => return None,
            }
        }
        self.spans.clear();
        let mut start = 0;
        for &end in &self.ends[..ends] {
            self.spans.push((start, end));
            start = end;
        }
        Some(CsvRow {
            base: &self.scratch,
            spans: &self.spans,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Every row of `data` as the `csv` crate reads it (without a header, any field count).
    fn reference(data: &[u8], delimiter: u8) -> Vec<Vec<Vec<u8>>> {
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .has_headers(false)
            .flexible(true)
            .from_reader(data);
        let mut row = csv::ByteRecord::new();
        let mut rows = Vec::new();
        while reader.read_byte_record(&mut row).unwrap() {
            rows.push(row.iter().map(<[u8]>::to_vec).collect());
        }
        rows
    }

    fn read(data: &[u8], delimiter: u8) -> Vec<Vec<Vec<u8>>> {
        let mut rows = Rows::new(data, delimiter);
        let mut seen = Vec::new();
        while let Some(row) = rows.next() {
            assert_eq!(row.len(), row.iter().count());
            seen.push(row.iter().map(<[u8]>::to_vec).collect());
        }
        seen
    }

    #[test]
    fn fields_are_read_in_place_or_unescaped_as_csv_reads_them() {
        let data: &[u8] = b"a,b\r\n\"x, y\",\"two\nlines\"\n\n\"say \"\"hi\"\"\",z\r\
                            \"a\"b,c\nq\"uote,\"\",\nlast,\"open";
        let rows = read(data, b',');
        assert_eq!(rows, reference(data, b','));
        assert_eq!(rows[2][0], b"say \"hi\"");
        assert_eq!(rows[3][0], b"ab");
        assert_eq!(rows.len(), 6);
        let long = format!("\"{}\"\"\",{}\n", "x".repeat(5000), ",".repeat(200));
        assert_eq!(
            read(long.as_bytes(), b','),
            reference(long.as_bytes(), b',')
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        /// Any bytes over an alphabet of the characters CSV treats specially: the rows are
        /// the csv crate's, field for field.
        #[test]
        fn rows_are_the_csv_crates(
            bytes in proptest::collection::vec(
                prop_oneof![
                    Just(b'a'), Just(b'b'), Just(b','), Just(b';'), Just(b'"'), Just(b'\n'),
                    Just(b'\r'), Just(b' '), Just(0u8)
                ],
                0..120,
            ),
            semicolon in any::<bool>(),
        ) {
            let delimiter = if semicolon { b';' } else { b',' };
            prop_assert_eq!(read(&bytes, delimiter), reference(&bytes, delimiter));
        }
    }
}
