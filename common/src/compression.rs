//! Compressed input: which files are compressed (by name), and their bytes decompressed,
//! whole or as a stream handed on in blocks of whole records (gzip members and zstd frames,
//! concatenated ones included).

use std::borrow::Cow;
use std::io::Read;

/// How a file is compressed, by its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    pub fn of(path: &str) -> Compression {
        let lower = path.to_ascii_lowercase();
        if lower.ends_with(".gz") {
            Compression::Gzip
        } else if lower.ends_with(".zst") || lower.ends_with(".zstd") {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

pub(crate) fn strip_compression(path: &str) -> &str {
    let cut = match Compression::of(path) {
        Compression::None => 0,
        Compression::Gzip => 3,
        Compression::Zstd if path.to_ascii_lowercase().ends_with(".zstd") => 5,
        Compression::Zstd => 4,
    };
    &path[..path.len() - cut]
}

/// Whether a chunk of the file `name` is decompressed and mapped block by block
/// ([`for_each_block`], whose blocks end at newlines): a compressed file of records cut at
/// newlines, unless the job (`whole_file`) takes each file whole. A compressed CSV is mapped
/// whole (its quoted fields may hold newlines; its header is only at its start). The worker
/// maps by this rule, and the coordinator bounds the chunks that do not follow it.
pub fn streams(name: &str, whole_file: bool, operation: &dyn crate::operation::Operation) -> bool {
    Compression::of(name) != Compression::None
        && !whole_file
        && operation.cut(name) == crate::chunker::Cut::Lines
}

/// Decompressed bytes handed to a map at once by [`for_each_block`]: whole records, about
/// this many (more for a record that is longer).
pub const DECOMPRESSED_BLOCK: usize = 16 << 20;

/// Decompresses `source` as `path` names it (gzip members or zstd frames, concatenated ones
/// included; other files pass as they are) and calls `each` with whole records about `block`
/// bytes at a time, each with its offset in the decompressed stream: memory holds a block
/// and the decompressor's state, however large the file. A record is never split; a last
/// record without its newline comes last.
pub fn for_each_block(
    path: &str,
    source: impl Read,
    block: usize,
    mut each: impl FnMut(&[u8], u64) -> Result<(), String>,
) -> Result<(), String> {
    let bad = |e: std::io::Error| match Compression::of(path) {
        Compression::Gzip => format!("{path}: not valid gzip: {e}"),
        Compression::Zstd => format!("{path}: not valid zstd: {e}"),
        Compression::None => format!("{path}: {e}"),
    };
    let mut reader: Box<dyn Read + '_> = match Compression::of(path) {
        Compression::None => Box::new(source),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(std::io::BufReader::new(
            source,
        ))),
        Compression::Zstd => Box::new(ZstdFrames::Between(std::io::BufReader::new(source))),
    };
    let block = block.max(1);
    // One buffer, zeroed once: `filled` bytes of it hold data not yet handed on.
    let mut buf = vec![0u8; block];
    let mut filled = 0;
    let mut offset = 0u64;
    let mut want = block;
    let mut ended = false;
    while !ended || filled > 0 {
        if buf.len() < want {
            buf.resize(want, 0);
        }
        while !ended && filled < want {
            match reader.read(&mut buf[filled..want]) {
                Ok(0) => ended = true,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(bad(e)),
            }
        }
        let cut = match memchr::memrchr(b'\n', &buf[..filled]) {
            _ if ended => filled,
            Some(i) => i + 1,
            None => {
                // One record longer than a block: read on until it ends.
                want = filled * 2;
                continue;
            }
        };
        if cut > 0 {
            each(&buf[..cut], offset)?;
        }
        offset += cut as u64;
        buf.copy_within(cut..filled, 0);
        filled -= cut;
        want = block.max(filled + 1);
    }
    Ok(())
}

/// Concatenated zstd frames as one stream.
enum ZstdFrames<R: std::io::BufRead> {
    Between(R),
    In(Box<ruzstd::decoding::StreamingDecoder<R, ruzstd::decoding::FrameDecoder>>),
    Done,
}

impl<R: std::io::BufRead> Read for ZstdFrames<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        loop {
            match std::mem::replace(self, ZstdFrames::Done) {
                ZstdFrames::Done => return Ok(0),
                ZstdFrames::Between(mut source) => {
                    if source.fill_buf()?.is_empty() {
                        return Ok(0);
                    }
                    let frame = ruzstd::decoding::StreamingDecoder::new(source)
                        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
                    *self = ZstdFrames::In(Box::new(frame));
                }
                ZstdFrames::In(mut frame) => {
                    let n = frame.read(out)?;
                    if n > 0 || out.is_empty() {
                        *self = ZstdFrames::In(frame);
                        return Ok(n);
                    }
                    *self = ZstdFrames::Between(frame.into_inner());
                }
            }
        }
    }
}

/// Decompresses a whole file's bytes by its name (gzip members or zstd frames, concatenated
/// ones included); other files come back as they are.
pub fn decompress<'a>(path: &str, data: &'a [u8]) -> Result<Cow<'a, [u8]>, String> {
    let mut out = Vec::new();
    match Compression::of(path) {
        Compression::None => return Ok(Cow::Borrowed(data)),
        Compression::Gzip => flate2::read::MultiGzDecoder::new(data)
            .read_to_end(&mut out)
            .map_err(|e| format!("{path}: not valid gzip: {e}"))?,
        Compression::Zstd => {
            let mut source = data;
            while !source.is_empty() {
                let mut frame = ruzstd::decoding::StreamingDecoder::new(&mut source)
                    .map_err(|e| format!("{path}: not valid zstd: {e}"))?;
                frame
                    .read_to_end(&mut out)
                    .map_err(|e| format!("{path}: not valid zstd: {e}"))?;
            }
            out.len()
        }
    };
    Ok(Cow::Owned(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_whole_records_that_make_up_the_file_in_order() {
        // Lines of every length up to 300, one far longer than any block, no final newline.
        let mut text = Vec::new();
        for i in 0..400usize {
            text.extend(std::iter::repeat_n(b'a' + (i % 26) as u8, (i * 37) % 300));
            text.push(b'\n');
            if i == 200 {
                text.extend(std::iter::repeat_n(b'L', 5000));
                text.push(b'\n');
            }
        }
        text.extend_from_slice(b"tail");
        let (first, second) = text.split_at(text.len() / 3);
        let mut gz = Vec::new();
        for part in [first, second] {
            let mut member = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            std::io::Write::write_all(&mut member, part).unwrap();
            gz.extend(member.finish().unwrap());
        }
        let mut zst = Vec::new();
        for part in [first, second] {
            ruzstd::encoding::compress(part, &mut zst, ruzstd::encoding::CompressionLevel::Fastest);
        }
        for (name, data) in [("f.gz", &gz), ("f.zst", &zst), ("f.txt", &text)] {
            for block in [1, 7, 100, 4096, 1 << 20] {
                let mut got = Vec::new();
                let mut blocks = 0;
                for_each_block(name, &data[..], block, |records, offset| {
                    assert_eq!(offset, got.len() as u64, "{name} block {block}");
                    got.extend_from_slice(records);
                    blocks += 1;
                    let last = got.len() == text.len();
                    assert!(
                        last || records.ends_with(b"\n"),
                        "{name}: a record was split"
                    );
                    Ok(())
                })
                .unwrap();
                assert!(got == text, "{name}, blocks of {block}: not the file");
                assert!(
                    block > 4096 || blocks > 1,
                    "{name}: {blocks} blocks of {block}"
                );
            }
        }
        let err = for_each_block("f.gz", &b"plain"[..], 10, |_, _| Ok(())).unwrap_err();
        assert!(err.starts_with("f.gz: not valid gzip"), "{err}");
        let err = for_each_block("f.zst", &b"plain"[..], 10, |_, _| Ok(())).unwrap_err();
        assert!(err.starts_with("f.zst: not valid zstd"), "{err}");
    }
}
