//! Word count. Tokenizers (`tokenizer=`):
//! - `whitespace` (default): maximal runs of bytes that are not ASCII whitespace (exactly what
//!   Python's `bytes.split()` yields: space, \t, \n, \v, \f, \r separate), case kept, any bytes.
//! - `unicode`: Unicode words (UAX #29 word boundaries, words holding a letter or digit),
//!   lowercased; a line that is not UTF-8 is a bad record.
//!
//! A line holding a NUL byte is binary data: skipped, counted as a bad record.
//!
//! Over 500 lines on purpose: the fast path, the plain reference it must equal and the
//! property test between them stay in one file, so a change to one is checked by the others.

use std::sync::Arc;

use rustc_hash::FxHashMap;
use unicode_segmentation::UnicodeSegmentation;

use crate::operation::{Chunk, ChunkStats, MapError, Operation, Options, SpecError, check_options};
use crate::partial::{ChunkPartial, Columns, Partial};
use crate::records::lines;

pub const NAME: &str = "wordcount";

/// How text splits into terms; shared with the inverted index.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Tokenizer {
    #[default]
    Whitespace,
    Unicode,
}

impl Tokenizer {
    pub fn from_options(operation: &str, options: &Options) -> Result<Self, SpecError> {
        match options.get("tokenizer").map(String::as_str) {
            None | Some("whitespace") => Ok(Tokenizer::Whitespace),
            Some("unicode") => Ok(Tokenizer::Unicode),
            Some(other) => Err(SpecError::BadOption {
                operation: operation.to_owned(),
                message: format!("tokenizer '{other}' is not one of whitespace, unicode"),
            }),
        }
    }

    /// Calls `each` with every token of a line; `false` if the line is not usable (not UTF-8
    /// for the Unicode tokenizer).
    pub fn tokens(self, line: &[u8], mut each: impl FnMut(&[u8])) -> bool {
        match self {
            Tokenizer::Whitespace => {
                for token in line
                    .split(|b| WHITESPACE[*b as usize])
                    .filter(|t| !t.is_empty())
                {
                    each(token);
                }
                true
            }
            Tokenizer::Unicode => {
                let Ok(text) = std::str::from_utf8(line) else {
                    return false;
                };
                for word in text.unicode_words() {
                    each(word.to_lowercase().as_bytes());
                }
                true
            }
        }
    }
}

/// Counts each token's occurrences.
#[derive(Debug, Default)]
pub struct WordCount {
    tokenizer: Tokenizer,
}

pub fn factory(options: &Options) -> Result<Arc<dyn Operation>, SpecError> {
    check_options(NAME, options, &["tokenizer"])?;
    Ok(Arc::new(WordCount {
        tokenizer: Tokenizer::from_options(NAME, options)?,
    }))
}

const fn whitespace_table() -> [bool; 256] {
    let mut table = [false; 256];
    let mut i = 0;
    let separators = b" \t\n\x0b\x0c\r";
    while i < separators.len() {
        table[separators[i] as usize] = true;
        i += 1;
    }
    table
}

static WHITESPACE: [bool; 256] = whitespace_table();

impl Operation for WordCount {
    /// Its finalize is the default one.
    fn finalizes_by_key(&self) -> bool {
        true
    }

    fn map(&self, chunk: &Chunk<'_>, stats: &mut ChunkStats) -> Result<Partial, MapError> {
        Ok(self.map_columns(chunk, stats)?.into_partial()?)
    }

    /// Counts go straight into the columns a worker sends: each distinct token copied once.
    fn map_columns(
        &self,
        chunk: &Chunk<'_>,
        stats: &mut ChunkStats,
    ) -> Result<ChunkPartial, MapError> {
        let data = chunk.data;
        stats.bytes_in += data.len() as u64;
        if self.tokenizer == Tokenizer::Whitespace {
            // The common case, one pass over the chunk, unless it holds a NUL byte.
            if let Some(counted) = fast::count_tokens(data) {
                stats.records_in +=
                    counted.newlines + u64::from(data.last().is_some_and(|&b| b != b'\n'));
                return Ok(ChunkPartial {
                    entries: Partial::new(),
                    counts: counted.counts,
                });
            }
        }
        let mut counts: FxHashMap<Vec<u8>, u64> = FxHashMap::default();
        for line in lines(data) {
            let good = !line.contains(&0)
                && self.tokenizer.tokens(line, |token| {
                    *counts.entry(token.to_vec()).or_default() += 1;
                });
            stats.record(good);
        }
        let mut columns = Columns::with_capacity(counts.len());
        for (key, n) in &counts {
            columns.push(key, *n);
        }
        Ok(ChunkPartial {
            entries: Partial::new(),
            counts: columns.finish(),
        })
    }
}

/// The whitespace tokenizer over a whole chunk, the hot loop of a word count. It classifies 64
/// bytes at a time (SSE2 on x86_64, plain integer arithmetic elsewhere) into a whitespace
/// bitmask, walks the token boundaries with bit tricks, and counts each token in a table with
/// a hash computed once. A token of at most 8 bytes, most of them, is one 64-bit word: loaded
/// at once, hashed with one multiplication, compared in one instruction, kept in a 16-byte
/// entry. Newlines and NUL bytes are counted in the same pass.
mod fast {
    use hashbrown::HashTable;

    use crate::partial::{Columns, Counts};

    /// What [`count_tokens`] found.
    pub(super) struct Counted {
        /// Each distinct token, once, with its number of occurrences.
        pub(super) counts: Counts,
        /// How many \n bytes the data holds.
        pub(super) newlines: u64,
    }

    /// Counts the whitespace-separated tokens of `data`, as `bytes.split()` in Python splits
    /// them; `None` if `data` holds a NUL byte.
    pub(super) fn count_tokens(data: &[u8]) -> Option<Counted> {
        let mut counter = Counter {
            data,
            short: HashTable::with_capacity(1024),
            long: HashTable::new(),
            before_ws: 1,
            running: None,
            newlines: 0,
        };
        let mut base = 0;
        // Each block is seen through a window of it and the 8 bytes after it, so that the
        // 8-byte load of a token starting in the block stays in bounds.
        while let Some(window) = data.get(base..base + WINDOW) {
            counter.block(window.try_into().expect("a window"), base)?;
            base += 64;
        }
        // The last block or two, padded with spaces: a token running into the padding ends
        // at the end of the data.
        while base < data.len() {
            let rest = &data[base..data.len().min(base + WINDOW)];
            let mut padded = [b' '; WINDOW];
            padded[..rest.len()].copy_from_slice(rest);
            counter.block(&padded, base)?;
            base += 64;
        }
        if let Some(start) = counter.running {
            counter.count_running(start, data.len());
        }
        // Every key is copied once, into the columns the worker sends.
        let mut counts = Columns::with_capacity(counter.short.len() + counter.long.len());
        for s in counter.short {
            counts.push(&s.word.to_le_bytes()[..short_len(s.word)], s.count);
        }
        for e in counter.long {
            counts.push(e.key, e.count);
        }
        Some(Counted {
            counts: counts.finish(),
            newlines: counter.newlines,
        })
    }

    /// A block and the 8 bytes after it.
    const WINDOW: usize = 64 + 8;

    /// `MASKS[n]` keeps the first `n` bytes of a little-endian word.
    const MASKS: [u64; 9] = {
        let mut masks = [0; 9];
        let mut n = 1;
        while n <= 8 {
            masks[n] = u64::MAX >> (64 - 8 * n);
            n += 1;
        }
        masks
    };

    struct Counter<'a> {
        data: &'a [u8],
        /// Tokens of at most 8 bytes.
        short: HashTable<Short>,
        /// Longer tokens.
        long: HashTable<Long<'a>>,
        /// 1 if the byte before the current block is whitespace (or there is none).
        before_ws: u64,
        /// Where the token running into the current block started.
        running: Option<usize>,
        newlines: u64,
    }

    impl Counter<'_> {
        /// Counts the tokens ending in the block at `base`, the first 64 bytes of `window`,
        /// and notes where one still running at its end started; `None` if the block holds
        /// a NUL byte (its tokens are not counted, so no counted token holds a NUL).
        #[inline(always)]
        fn block(&mut self, window: &[u8; WINDOW], base: usize) -> Option<()> {
            let classes = classify(window.first_chunk().expect("a block"));
            if classes.nul {
                return None;
            }
            self.newlines += u64::from(classes.newlines);
            let ws = classes.whitespace;
            let shifted = (ws << 1) | self.before_ws;
            self.before_ws = ws >> 63;
            // Bit i: a token starts (ends) at byte i, the first byte of a run of non-whitespace
            // (whitespace). Starts and ends alternate.
            let mut starts = !ws & shifted;
            let mut ends = ws & !shifted;
            if let Some(start) = self.running {
                if ends == 0 {
                    return Some(());
                }
                self.count_running(start, base + ends.trailing_zeros() as usize);
                ends &= ends - 1;
                self.running = None;
            }
            while starts != 0 {
                let start = starts.trailing_zeros() as usize;
                starts &= starts - 1;
                if ends == 0 {
                    self.running = Some(base + start);
                    break;
                }
                let end = ends.trailing_zeros() as usize;
                ends &= ends - 1;
                let len = end - start;
                if len <= 8 {
                    // `start` < 64: the load is within the window, no bounds check needed.
                    let word = word(&window[start..start + 8]) & MASKS[len];
                    count_short(&mut self.short, word);
                } else {
                    count_long(&mut self.long, &self.data[base + start..base + end]);
                }
            }
            Some(())
        }

        /// Counts the token `data[start..end]` (not empty), which started in an earlier block.
        #[inline(always)]
        fn count_running(&mut self, start: usize, end: usize) {
            let key = &self.data[start..end];
            if key.len() <= 8 {
                let word = match self.data.get(start..start + 8) {
                    Some(bytes) => word(bytes) & MASKS[key.len()],
                    None => padded_word(key),
                };
                count_short(&mut self.short, word);
            } else {
                count_long(&mut self.long, key);
            }
        }
    }

    /// A token of at most 8 bytes and its count. `word` is the token, little-endian, padded
    /// with zero bytes: a counted token holds no NUL, so its length is its count of nonzero
    /// bytes, and equal words are equal tokens.
    struct Short {
        word: u64,
        count: u64,
    }

    #[inline(always)]
    fn count_short(table: &mut HashTable<Short>, word: u64) {
        let hash = short_hash(word);
        match table.find_mut(hash, |e| e.word == word) {
            Some(entry) => entry.count += 1,
            None => insert_short(table, hash, word),
        }
    }

    #[cold]
    #[inline(never)]
    fn insert_short(table: &mut HashTable<Short>, hash: u64, word: u64) {
        table.insert_unique(hash, Short { word, count: 1 }, |e| short_hash(e.word));
    }

    /// The length of a short token from its word.
    fn short_len(word: u64) -> usize {
        8 - word.leading_zeros() as usize / 8
    }

    /// A token longer than 8 bytes and its count.
    struct Long<'a> {
        hash: u64,
        key: &'a [u8],
        count: u64,
    }

    #[inline(never)]
    fn count_long<'a>(table: &mut HashTable<Long<'a>>, key: &'a [u8]) {
        let hash = long_hash(key);
        match table.find_mut(hash, |e| e.hash == hash && e.key == key) {
            Some(entry) => entry.count += 1,
            None => {
                let entry = Long {
                    hash,
                    key,
                    count: 1,
                };
                table.insert_unique(hash, entry, |e| e.hash);
            }
        }
    }

    /// What a block of 64 bytes holds, as far as the walk is concerned.
    #[derive(Debug, PartialEq, Eq)]
    struct Classes {
        /// Bit i set when byte i is whitespace: space, \t, \n, \v, \f or \r.
        whitespace: u64,
        /// How many bytes are \n.
        newlines: u32,
        /// Whether a byte is NUL.
        nul: bool,
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    fn classify(block: &[u8; 64]) -> Classes {
        use std::arch::x86_64::{
            __m128i, _mm_add_epi8, _mm_cmpeq_epi8, _mm_cmplt_epi8, _mm_cvtsi128_si64,
            _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128, _mm_sad_epu8, _mm_set1_epi8,
            _mm_setzero_si128, _mm_sub_epi8, _mm_unpackhi_epi64,
        };
        let mut whitespace = 0;
        // SAFETY: SSE2 is part of the x86_64 baseline, so its intrinsics are always there;
        // each load reads the 16 bytes of `lane`, and an unaligned load needs no alignment.
        let (newlines, nul) = unsafe {
            let zero = _mm_setzero_si128();
            let mut newlines = zero;
            let mut nul = zero;
            for (i, lane) in block.chunks_exact(16).enumerate() {
                let x = _mm_loadu_si128(lane.as_ptr().cast::<__m128i>());
                let space = _mm_cmpeq_epi8(x, _mm_set1_epi8(b' ' as i8));
                // Adding 0x77 takes \t..=\r (9..=13), and only them, to -128..=-124.
                let control =
                    _mm_cmplt_epi8(_mm_add_epi8(x, _mm_set1_epi8(0x77)), _mm_set1_epi8(-123));
                let bits = _mm_movemask_epi8(_mm_or_si128(space, control)) as u16;
                whitespace |= u64::from(bits) << (16 * i);
                // A \n compares to -1: subtracting counts it, at most 4 in each byte.
                let newline = _mm_cmpeq_epi8(x, _mm_set1_epi8(b'\n' as i8));
                newlines = _mm_sub_epi8(newlines, newline);
                nul = _mm_or_si128(nul, _mm_cmpeq_epi8(x, zero));
            }
            // The sums of the low 8 and of the high 8 byte counts.
            let sums = _mm_sad_epu8(newlines, zero);
            let sum = _mm_cvtsi128_si64(sums) + _mm_cvtsi128_si64(_mm_unpackhi_epi64(sums, sums));
            (sum as u32, _mm_movemask_epi8(nul) != 0)
        };
        Classes {
            whitespace,
            newlines,
            nul,
        }
    }

    #[cfg(not(target_arch = "x86_64"))]
    #[inline(always)]
    fn classify(block: &[u8; 64]) -> Classes {
        classify_swar(block)
    }

    /// [`classify`] eight bytes at a time in plain integer arithmetic.
    #[cfg_attr(all(target_arch = "x86_64", not(test)), allow(dead_code))]
    #[inline(always)]
    fn classify_swar(block: &[u8; 64]) -> Classes {
        const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
        const HIGH: u64 = !LOW7;
        const fn splat(b: u8) -> u64 {
            u64::from_ne_bytes([b; 8])
        }
        /// The high bit of each byte set when the byte is 0: (b & 0x7f) + 0x7f has its high
        /// bit set when b's low 7 bits are not all 0, and never carries into the next byte.
        fn zero_bytes(x: u64) -> u64 {
            !((x & LOW7).wrapping_add(LOW7) | x) & HIGH
        }
        let mut whitespace = 0;
        let mut newlines = 0;
        let mut nul = 0;
        for (i, lane) in block.chunks_exact(8).enumerate() {
            let x = word(lane);
            // Per byte, on its low 7 bits (no carry crosses into the next byte), the high bit
            // of each sum says: not a space, at least 9, at least 14.
            let t = x & LOW7;
            let not_space = (t ^ splat(b' ')).wrapping_add(LOW7);
            let from_tab = t.wrapping_add(splat(0x80 - 9));
            let from_so = t.wrapping_add(splat(0x80 - 14));
            let ws = (!not_space | (from_tab & !from_so)) & !x & HIGH;
            // Gathers the eight high bits into the top byte.
            whitespace |= ((ws >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56) << (8 * i);
            // Adds up the eight 0-or-1 bytes in the top byte.
            newlines += (zero_bytes(x ^ splat(b'\n')) >> 7).wrapping_mul(splat(1)) >> 56;
            nul |= zero_bytes(x);
        }
        Classes {
            whitespace,
            newlines: newlines as u32,
            nul: nul != 0,
        }
    }

    #[inline(always)]
    fn word(bytes: &[u8]) -> u64 {
        u64::from_le_bytes(bytes.try_into().expect("8 bytes"))
    }

    /// A token of at most 8 bytes as a zero-padded little-endian word.
    fn padded_word(key: &[u8]) -> u64 {
        let mut bytes = [0; 8];
        bytes[..key.len()].copy_from_slice(key);
        u64::from_le_bytes(bytes)
    }

    const SEED: u64 = 0x243f_6a88_85a3_08d3;
    const MULTIPLIER: u64 = 0x9e37_79b9_7f4a_7c15;

    /// The 128-bit product of `a` and `b`, its halves xored: a cheap mix whose low bits (the
    /// table's index) and high bits (its tag) both depend on all of `a`.
    #[inline(always)]
    fn folded_multiply(a: u64, b: u64) -> u64 {
        let product = u128::from(a) * u128::from(b);
        (product as u64) ^ ((product >> 64) as u64)
    }

    #[inline(always)]
    fn short_hash(word: u64) -> u64 {
        folded_multiply(word ^ SEED, MULTIPLIER)
    }

    /// The hash of a token longer than 8 bytes: 8 bytes at a time, the last 8 overlapping.
    fn long_hash(key: &[u8]) -> u64 {
        let mut hash = SEED ^ key.len() as u64;
        let mut rest = key;
        while rest.len() > 8 {
            hash = folded_multiply(hash ^ word(&rest[..8]), MULTIPLIER);
            rest = &rest[8..];
        }
        let last = word(&key[key.len() - 8..]);
        folded_multiply(hash ^ last, MULTIPLIER ^ SEED)
    }

    #[cfg(test)]
    mod tests {
        use proptest::prelude::*;

        use super::*;

        fn is_whitespace(b: u8) -> bool {
            b" \t\n\x0b\x0c\r".contains(&b)
        }

        /// [`Classes`] the obvious way.
        fn reference(block: &[u8; 64]) -> Classes {
            Classes {
                whitespace: (0..64).fold(0, |m, i| m | u64::from(is_whitespace(block[i])) << i),
                newlines: block.iter().filter(|&&b| b == b'\n').count() as u32,
                nul: block.contains(&0),
            }
        }

        #[test]
        fn classifies_every_byte_at_every_position() {
            for b in 0..=255u8 {
                for i in 0..64 {
                    let mut block = [b'x'; 64];
                    block[i] = b;
                    assert_eq!(classify(&block), reference(&block), "{b:#04x} at {i}");
                    assert_eq!(classify_swar(&block), reference(&block), "{b:#04x} at {i}");
                }
                assert_eq!(classify(&[b; 64]), reference(&[b; 64]));
                assert_eq!(classify_swar(&[b; 64]), reference(&[b; 64]));
            }
        }

        proptest! {
            #[test]
            fn classifications_agree(
                head in prop::array::uniform32(prop::sample::select(&b"\0\n\t\r \x0b\x0c\x08\x0e\x1fa\x80\x8a\xa0\xff"[..])),
                tail in prop::array::uniform32(any::<u8>()),
            ) {
                let mut block = [0; 64];
                block[..32].copy_from_slice(&head);
                block[32..].copy_from_slice(&tail);
                prop_assert_eq!(classify(&block), reference(&block));
                prop_assert_eq!(classify_swar(&block), reference(&block));
            }
        }

        #[test]
        fn short_tokens_round_trip_through_their_word() {
            for key in [
                &b"a"[..],
                b"\xff",
                b"ab\x80",
                b"12345678",
                b"\x01\x01\x01\x01\x01\x01\x01",
            ] {
                let word = padded_word(key);
                assert_eq!(&word.to_le_bytes()[..short_len(word)], key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;
    use crate::partial::Value;

    fn map(op: &WordCount, data: &[u8]) -> (Partial, ChunkStats) {
        let mut stats = ChunkStats::default();
        let p = op.map(&Chunk::new(data, "f.txt", 0), &mut stats).unwrap();
        (p, stats)
    }

    #[test]
    fn splits_like_python_bytes_split() {
        let (p, stats) = map(
            &WordCount::default(),
            b"a b\ta\r\nb\x0bc\x0c\xffd  a\n\nlast",
        );
        // python3 -c "import collections; print(collections.Counter(
        //   b'a b\ta\r\nb\x0bc\x0c\xffd  a\n\nlast'.split()))"
        assert_eq!(p.get(b"a"), Some(&Value::Count(3)));
        assert_eq!(p.get(b"b"), Some(&Value::Count(2)));
        assert_eq!(p.get(b"c"), Some(&Value::Count(1)));
        assert_eq!(p.get(b"\xffd"), Some(&Value::Count(1)));
        assert_eq!(p.get(b"last"), Some(&Value::Count(1)));
        assert_eq!(p.len(), 5);
        assert_eq!(stats.records_in, 4);
        assert_eq!(stats.bytes_in, 22);
    }

    #[test]
    fn nul_lines_are_bad_records_and_unicode_words_fold_case() {
        let (p, stats) = map(&WordCount::default(), b"a b\nbin\0ary\nb\n");
        assert_eq!(p.get(b"b"), Some(&Value::Count(2)));
        assert_eq!(p.get(b"bin\0ary"), None);
        assert_eq!((stats.records_in, stats.bad_records), (3, 1));
        let unicode = WordCount {
            tokenizer: Tokenizer::Unicode,
        };
        let (p, stats) = map(&unicode, "Straße, STRASSE; Élan élan!\n\u{ff}\n".as_bytes());
        assert_eq!(p.get("straße".as_bytes()), Some(&Value::Count(1)));
        assert_eq!(p.get(b"strasse"), Some(&Value::Count(1)));
        assert_eq!(p.get("élan".as_bytes()), Some(&Value::Count(2)));
        assert_eq!(stats.bad_records, 0);
        let (_, stats) = map(&unicode, b"ok\n\xff\xfe\n");
        assert_eq!((stats.records_in, stats.bad_records), (2, 1));
    }

    /// Python's `bytes.split()` counted, written the obvious way.
    fn reference(data: &[u8]) -> BTreeMap<Vec<u8>, u64> {
        let mut counts = BTreeMap::new();
        for token in data
            .split(|b| b" \t\n\x0b\x0c\r".contains(b))
            .filter(|t| !t.is_empty())
        {
            *counts.entry(token.to_vec()).or_default() += 1;
        }
        counts
    }

    /// Maps `data` with the whitespace tokenizer and checks it against [`reference`].
    fn check_against_reference(data: &[u8]) -> Result<(), TestCaseError> {
        let (p, stats) = map(&WordCount::default(), data);
        let got: BTreeMap<Vec<u8>, u64> = p
            .into_entries()
            .map(|(k, v)| match v {
                Value::Count(n) => (k, n),
                other => panic!("not a count: {other:?}"),
            })
            .collect();
        prop_assert_eq!(got, reference(data), "{:?}", String::from_utf8_lossy(data));
        let lines = data.iter().filter(|&&b| b == b'\n').count()
            + usize::from(data.last().is_some_and(|&b| b != b'\n'));
        prop_assert_eq!(stats.records_in, lines as u64);
        prop_assert_eq!(stats.bytes_in, data.len() as u64);
        prop_assert_eq!(stats.bad_records, 0);
        Ok(())
    }

    /// Pieces of text: mostly single bytes from a small alphabet (all six separators, bytes
    /// next to them that are not separators, letters, high bytes), sometimes a word longer
    /// than 8 or 16 bytes.
    fn piece() -> impl Strategy<Value = Vec<u8>> {
        let alphabet: &[u8] = b" \t\n\x0b\x0c\r\x08\x0e\x1c\x1f!\x7fab\x80\x85\x89\x8d\xa0\xff";
        let long = prop::collection::vec(prop::sample::select(&b"xyz\x80\xff"[..]), 9..40);
        prop_oneof![
            12 => prop::sample::select(alphabet).prop_map(|b| vec![b]),
            1 => long,
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]
        #[test]
        fn fast_path_counts_like_the_reference(pieces in prop::collection::vec(piece(), 0..200)) {
            check_against_reference(&pieces.concat())?;
        }
    }

    #[test]
    fn tokens_straddling_every_word_and_block_boundary() {
        for len in 1..=24 {
            let token: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            for offset in 0..=72 {
                // A token at every offset, once followed by a newline, once ending the data.
                let mut data = vec![b' '; offset];
                data.extend_from_slice(&token);
                data.push(b'\n');
                data.extend_from_slice(&token);
                check_against_reference(&data).unwrap();
                // Packed tokens of two lengths, at every alignment.
                let mut packed = vec![b'\t'; offset % 17];
                for i in 0..9 {
                    packed.extend_from_slice(&token[..(len + i) % len + 1]);
                    packed.push(b"\x0b\x0c\r \n"[i % 5]);
                }
                check_against_reference(&packed).unwrap();
            }
        }
    }

    #[test]
    fn a_nul_anywhere_makes_its_line_a_bad_record() {
        let text: Vec<u8> = (0..40)
            .flat_map(|i| {
                format!("w{i} x{}{}", i % 7, if i % 5 == 4 { "\n" } else { " " }).into_bytes()
            })
            .collect();
        for at in 0..text.len() {
            let mut data = text.clone();
            data[at] = 0;
            let (p, stats) = map(&WordCount::default(), &data);
            let mut lines: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
            if data.last() == Some(&b'\n') {
                lines.pop();
            }
            let good: Vec<u8> = lines
                .iter()
                .filter(|line| !line.contains(&0))
                .flat_map(|line| line.iter().chain(b"\n"))
                .copied()
                .collect();
            let want = reference(&good);
            assert_eq!(p.len(), want.len(), "NUL at {at}");
            for (key, n) in want {
                assert_eq!(p.get(&key), Some(&Value::Count(n)), "NUL at {at}");
            }
            assert_eq!(stats.records_in, lines.len() as u64);
            assert_eq!(stats.bad_records, 1);
        }
    }

    #[test]
    fn rejects_unknown_options() {
        let mut options = Options::new();
        options.insert("case".into(), "fold".into());
        assert!(factory(&options).is_err());
        options.clear();
        options.insert("tokenizer".into(), "bpe".into());
        assert!(factory(&options).is_err());
    }
}
