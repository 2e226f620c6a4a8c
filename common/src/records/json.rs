//! The fields of a JSON Lines record read by their paths in one pass over the line's text,
//! with no value tree built: members off the paths are skipped (checked for syntax, never
//! stored), the values at the paths are the only ones kept, borrowed from the line where they
//! can be. The pass is this file's own ([`Scan`]): strings skipped a `memchr` at a time, no
//! visitor per value; `serde_json` reads only the values at the paths' ends, from their text.
//! Through `serde_json`'s streaming deserializer with visitors, the pass was half of a JSON
//! group-by's time.
//!
//! Each answer is what looking its path up in the line's parsed [`serde_json::Value`] gives
//! (the property tests below hold the two equal): the same line is refused, a repeated member
//! name means its last value, a number reads as that value's text (`1e3` as `1000.0`; a number
//! with a fraction or an exponent is kept as the `f64` it parsed to, its text made only if it
//! is asked for: [`FieldValue`]), and a composite as its compact JSON text. One difference: a
//! number outside `f64`'s range in a member no path reads does not refuse the line.

use std::borrow::Cow;
use std::fmt;

use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use super::FieldValue;

/// The values at `paths` (each a list of member names or array indexes) in the JSON text
/// `line`, found in one pass: a string's contents, a number with a fraction or an exponent as
/// its `f64`, other values as JSON text; `None` where the line lacks a path or holds `null`
/// there, and for every path if the line is not one JSON value. An empty path finds nothing.
pub fn get<'a, const N: usize>(line: &'a str, paths: [&[String]; N]) -> [Found<'a>; N] {
    let mut out = std::array::from_fn(|_| None);
    let mut scan = Scan {
        line,
        at: 0,
        depth: 0,
    };
    let walk = Paths {
        slots: std::array::from_fn(|i| i),
        rests: paths,
        len: N,
        out: &mut out,
    };
    if scan.walk(walk).is_err() || {
        scan.space();
        scan.at != line.len()
    } {
        return std::array::from_fn(|_| None);
    }
    out
}

/// What a path finds.
pub type Found<'de> = Option<FieldValue<'de>>;

/// Walks a value along the rest of some of the paths (the first `len`): `rests[i]` is what is
/// left of the path whose answer goes to `out[slots[i]]`. An empty path finds nothing.
struct Paths<'o, 'p, 'de, const N: usize> {
    slots: [usize; N],
    rests: [&'p [String]; N],
    len: usize,
    out: &'o mut [Found<'de>; N],
}

impl<'o, 'p, 'de, const N: usize> Paths<'o, 'p, 'de, N> {
    /// The paths that go on into a member or element (`hit` says which) past their first
    /// segment; their answers are cleared, since this member decides them (a later member of
    /// the same name replaces an earlier one, as in a parsed map).
    fn member(&mut self, hit: impl Fn(&str) -> bool) -> Member<'_, 'p, 'de, N> {
        let mut slots = [0; N];
        let mut rests: [&'p [String]; N] = [&[]; N];
        let (mut len, mut leaves) = (0, 0);
        for i in 0..self.len {
            if let Some((first, rest)) = self.rests[i].split_first()
                && hit(first)
            {
                self.out[self.slots[i]] = None;
                (slots[len], rests[len]) = (self.slots[i], rest);
                len += 1;
                leaves += usize::from(rest.is_empty());
            }
        }
        let paths = Paths {
            slots,
            rests,
            len,
            out: &mut *self.out,
        };
        match (len, leaves) {
            (0, _) => Member::Skipped,
            (_, 0) => Member::Walked(paths),
            (n, l) if n == l => Member::Leaf(paths),
            _ => Member::Mixed(paths),
        }
    }
}

/// How a member or element on some paths is read.
enum Member<'o, 'p, 'de, const N: usize> {
    /// On no path.
    Skipped,
    /// Every path goes on into it.
    Walked(Paths<'o, 'p, 'de, N>),
    /// Every path ends at it.
    Leaf(Paths<'o, 'p, 'de, N>),
    /// Some paths end at it and some go on: it is parsed whole (rare: `a` and `a.b` asked
    /// together).
    Mixed(Paths<'o, 'p, 'de, N>),
}

/// A path's value in a parsed value, as [`get`] gives it.
fn lookup(value: &serde_json::Value, path: &[String]) -> Found<'static> {
    let mut current = value;
    for segment in path {
        current = match current {
            serde_json::Value::Object(map) => map.get(segment)?,
            serde_json::Value::Array(items) => items.get(segment.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    found(current)
}

/// A parsed value as a path's answer: a string's contents, anything else but `null` as its
/// compact JSON text.
fn found(value: &serde_json::Value) -> Found<'static> {
    let bytes = match value {
        serde_json::Value::Null => return None,
        serde_json::Value::String(s) => s.as_bytes().to_vec(),
        other => other.to_string().into_bytes(),
    };
    Some(FieldValue::Bytes(Cow::Owned(bytes)))
}

/// Why a line is not one JSON value (where and what is not said: the line is a bad record).
#[derive(Debug)]
struct Bad;

type Scanned<T = ()> = Result<T, Bad>;

/// How deep arrays and objects may nest, as `serde_json` allows: a line nested deeper is not
/// read by it, so not here either.
const MAX_DEPTH: u32 = 127;

/// The bytes that end a run of a string's plain characters: its closing quote, an escape, and
/// the control characters, which may not appear unescaped.
const ENDS_RUN: [bool; 256] = {
    let mut ends = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        ends[b] = true;
        b += 1;
    }
    ends[b'"' as usize] = true;
    ends[b'\\' as usize] = true;
    ends
};

/// A pass over one line's text that checks its syntax as `serde_json` does (strings, escapes,
/// numbers, literals, nesting, no trailing commas) and follows the paths through it. A value
/// on no path is only checked; a value at a path's end is handed, as its own text, to
/// `serde_json` ([`Leaf`]) to become the answer, unless it is a string without escapes (then
/// it is borrowed as it lies); a scalar where a path goes on is read by `serde_json` too, as
/// the whole-line parse would read it (a number out of range, a bad escape refuse the line).
/// Member names are compared where they lie; one with an escape is unescaped by `serde_json`.
struct Scan<'a> {
    line: &'a str,
    at: usize,
    depth: u32,
}

impl<'a> Scan<'a> {
    fn bytes(&self) -> &'a [u8] {
        self.line.as_bytes()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes().get(self.at).copied()
    }

    /// Skips JSON whitespace.
    fn space(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    /// Takes `byte` next, after whitespace.
    fn expect(&mut self, byte: u8) -> Scanned {
        self.space();
        if self.peek() == Some(byte) {
            self.at += 1;
            Ok(())
        } else {
            Err(Bad)
        }
    }

    fn enter(&mut self) -> Scanned {
        self.depth += 1;
        self.at += 1;
        if self.depth > MAX_DEPTH {
            Err(Bad)
        } else {
            Ok(())
        }
    }

    /// A string at `self.at` (its opening quote); returns its contents' span and whether it
    /// holds an escape.
    fn string(&mut self) -> Scanned<(usize, usize, bool)> {
        let bytes = self.bytes();
        let start = self.at + 1;
        let mut at = start;
        let mut escaped = false;
        loop {
            // A byte at a time: member names and values are mostly short, and a `memchr`
            // call per string cost more than it saved.
            let mut next = at;
            while bytes.get(next).is_some_and(|&b| !ENDS_RUN[usize::from(b)]) {
                next += 1;
            }
            match bytes.get(next) {
                Some(b'"') => {
                    self.at = next + 1;
                    return Ok((start, next, escaped));
                }
                Some(b'\\') => {}
                // The end of the line, or a control character (they must be escaped).
                _ => return Err(Bad),
            }
            escaped = true;
            at = match bytes.get(next + 1).ok_or(Bad)? {
                b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => next + 2,
                b'u' => {
                    // A surrogate must be a leading one followed by a trailing one, as
                    // serde_json requires where it reads the string.
                    let unit = |at: usize| -> Scanned<u16> {
                        let hex = bytes.get(at..at + 4).ok_or(Bad)?;
                        let hex = std::str::from_utf8(hex).map_err(|_| Bad)?;
                        if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                            return Err(Bad);
                        }
                        u16::from_str_radix(hex, 16).map_err(|_| Bad)
                    };
                    match unit(next + 2)? {
                        0xD800..=0xDBFF => {
                            if bytes.get(next + 6..next + 8) != Some(b"\\u") {
                                return Err(Bad);
                            }
                            if !(0xDC00..=0xDFFF).contains(&unit(next + 8)?) {
                                return Err(Bad);
                            }
                            next + 12
                        }
                        0xDC00..=0xDFFF => return Err(Bad),
                        _ => next + 6,
                    }
                }
                _ => return Err(Bad),
            };
        }
    }

    /// A number at `self.at`: `-`, an integer part without leading zeros, then maybe a
    /// fraction and an exponent, each with at least one digit.
    fn number(&mut self) -> Scanned {
        let bytes = self.bytes();
        let digits = |at: &mut usize| {
            let start = *at;
            while bytes.get(*at).is_some_and(u8::is_ascii_digit) {
                *at += 1;
            }
            *at - start
        };
        let mut at = self.at;
        if bytes.get(at) == Some(&b'-') {
            at += 1;
        }
        match bytes.get(at) {
            Some(b'0') => at += 1,
            Some(b'1'..=b'9') => {
                digits(&mut at);
            }
            _ => return Err(Bad),
        }
        if bytes.get(at) == Some(&b'.') {
            at += 1;
            if digits(&mut at) == 0 {
                return Err(Bad);
            }
        }
        if let Some(b'e' | b'E') = bytes.get(at) {
            at += 1;
            if let Some(b'+' | b'-') = bytes.get(at) {
                at += 1;
            }
            if digits(&mut at) == 0 {
                return Err(Bad);
            }
        }
        self.at = at;
        Ok(())
    }

    fn literal(&mut self, word: &[u8]) -> Scanned {
        if self.bytes()[self.at..].starts_with(word) {
            self.at += word.len();
            Ok(())
        } else {
            Err(Bad)
        }
    }

    /// Checks the value that starts here (after whitespace) and steps past it.
    fn skip(&mut self) -> Scanned {
        self.space();
        match self.peek().ok_or(Bad)? {
            b'"' => self.string().map(drop),
            b'{' => {
                self.enter()?;
                self.members(|scan, _, _| scan.skip())
            }
            b'[' => {
                self.enter()?;
                self.elements(|scan, _| scan.skip())
            }
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => self.number(),
        }
    }

    /// An object's members after its `{`, each name given to `value` (and, if it holds an
    /// escape, its quoted text), which reads the member's value; then the closing `}`.
    fn members(
        &mut self,
        mut value: impl FnMut(&mut Self, &'a str, Option<&'a str>) -> Scanned,
    ) -> Scanned {
        self.space();
        if self.peek() == Some(b'}') {
            self.at += 1;
            self.depth -= 1;
            return Ok(());
        }
        loop {
            self.space();
            if self.peek() != Some(b'"') {
                return Err(Bad);
            }
            let (start, end, escaped) = self.string()?;
            self.expect(b':')?;
            let line = self.line;
            let quoted = escaped.then(|| &line[start - 1..end + 1]);
            value(self, &line[start..end], quoted)?;
            self.space();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b'}') => {
                    self.at += 1;
                    self.depth -= 1;
                    return Ok(());
                }
                _ => return Err(Bad),
            }
        }
    }

    /// An array's elements after its `[`, each read by `value` with its index; then `]`.
    fn elements(&mut self, mut value: impl FnMut(&mut Self, usize) -> Scanned) -> Scanned {
        self.space();
        if self.peek() == Some(b']') {
            self.at += 1;
            self.depth -= 1;
            return Ok(());
        }
        for index in 0usize.. {
            value(self, index)?;
            self.space();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b']') => break,
                _ => return Err(Bad),
            }
        }
        self.at += 1;
        self.depth -= 1;
        Ok(())
    }

    /// The text of the value that starts here, checked and stepped past.
    fn value_text(&mut self) -> Scanned<&'a str> {
        self.space();
        let start = self.at;
        self.skip()?;
        Ok(&self.line[start..self.at])
    }

    /// Follows `paths` into the value that starts here.
    fn walk<const N: usize>(&mut self, mut paths: Paths<'_, '_, 'a, N>) -> Scanned {
        self.space();
        match self.peek().ok_or(Bad)? {
            b'{' => {
                self.enter()?;
                let mut firsts = [""; N];
                for (first, rest) in firsts.iter_mut().zip(&paths.rests[..paths.len]) {
                    *first = rest.first().map_or("", String::as_str);
                }
                self.members(|scan, name, quoted| {
                    let name: Cow<'a, str> = match quoted {
                        Some(quoted) => {
                            Cow::Owned(serde_json::from_str::<String>(quoted).map_err(|_| Bad)?)
                        }
                        None => Cow::Borrowed(name),
                    };
                    let hit = firsts[..paths.len].iter().any(|&first| same(first, &name));
                    if !hit {
                        return scan.skip();
                    }
                    scan.member(paths.member(|first| same(first, &name)))
                })
            }
            b'[' => {
                self.enter()?;
                self.elements(|scan, index| {
                    scan.member(paths.member(|first| first.parse::<usize>() == Ok(index)))
                })
            }
            // A scalar where the paths go on: they are not there; read as the whole-line parse
            // reads it.
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => {
                let text = self.value_text()?;
                leaf(text).map(drop)
            }
        }
    }

    /// Reads a member or element as the paths on it need.
    fn member<const N: usize>(&mut self, member: Member<'_, '_, 'a, N>) -> Scanned {
        match member {
            Member::Skipped => self.skip(),
            Member::Walked(paths) => self.walk(paths),
            Member::Leaf(paths) => {
                self.space();
                let found = if self.peek() == Some(b'"') {
                    match self.string()? {
                        (start, end, false) => {
                            Some(FieldValue::Bytes(Cow::Borrowed(&self.bytes()[start..end])))
                        }
                        (start, end, true) => leaf(&self.line[start - 1..end + 1])?,
                    }
                } else {
                    let text = self.value_text()?;
                    // A non-negative integer of up to 19 digits (so within `u64`) reads as its
                    // own digits, which JSON writes without leading zeros: borrowed, with no
                    // `serde_json` call and no text made per record.
                    if text.len() <= 19 && text.bytes().all(|b| b.is_ascii_digit()) {
                        Some(FieldValue::Bytes(Cow::Borrowed(text.as_bytes())))
                    } else {
                        leaf(text)?
                    }
                };
                for &slot in &paths.slots[..paths.len] {
                    paths.out[slot].clone_from(&found);
                }
                Ok(())
            }
            Member::Mixed(paths) => {
                let text = self.value_text()?;
                let value = serde_json::from_str::<serde_json::Value>(text).map_err(|_| Bad)?;
                for i in 0..paths.len {
                    paths.out[paths.slots[i]] = lookup(&value, paths.rests[i]);
                }
                Ok(())
            }
        }
    }
}

/// Whether two member names are the same, compared inline: names are short, and a `memcmp`
/// call per member and path was 7% of a JSON group-by.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).all(|(x, y)| x == y)
}

/// A value's own text as a path's answer, read by `serde_json`.
fn leaf(text: &str) -> Scanned<Found<'_>> {
    let mut de = serde_json::Deserializer::from_str(text);
    let found = de.deserialize_any(Leaf).map_err(|_| Bad)?;
    de.end().map_err(|_| Bad)?;
    Ok(found)
}

/// The value at the end of the path.
struct Leaf;

impl<'de> Visitor<'de> for Leaf {
    type Value = Found<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<Found<'de>, E> {
        Ok(None)
    }

    fn visit_bool<E>(self, b: bool) -> Result<Found<'de>, E> {
        Ok(Some(FieldValue::Bytes(Cow::Borrowed(if b {
            b"true"
        } else {
            b"false"
        }))))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Found<'de>, E> {
        Ok(Some(FieldValue::Bytes(Cow::Owned(
            n.to_string().into_bytes(),
        ))))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Found<'de>, E> {
        Ok(Some(FieldValue::Bytes(Cow::Owned(
            n.to_string().into_bytes(),
        ))))
    }

    fn visit_f64<E>(self, x: f64) -> Result<Found<'de>, E> {
        // Kept as a number: its text (`1e3` as `1000.0`) only if it is asked for.
        Ok(Some(FieldValue::Float(x)))
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Found<'de>, E> {
        Ok(Some(FieldValue::Bytes(Cow::Borrowed(s.as_bytes()))))
    }

    /// A string with escapes, unescaped.
    fn visit_str<E>(self, s: &str) -> Result<Found<'de>, E> {
        Ok(Some(FieldValue::Bytes(Cow::Owned(s.as_bytes().to_vec()))))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Found<'de>, A::Error> {
        let value = serde_json::Value::deserialize(MapAccessDeserializer::new(map))?;
        Ok(found(&value))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Found<'de>, A::Error> {
        let value = serde_json::Value::deserialize(SeqAccessDeserializer::new(seq))?;
        Ok(found(&value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What the path gives looked up in the line's parsed value tree: the plain lookup `get`
    /// must equal. Written out here rather than calling `lookup`, which the walk itself uses
    /// where one path ends at a member another goes into.
    fn reference(line: &str, path: &[String]) -> Option<Vec<u8>> {
        let mut current = &serde_json::from_str::<serde_json::Value>(line).ok()?;
        for segment in path {
            current = match current {
                serde_json::Value::Object(map) => map.get(segment)?,
                serde_json::Value::Array(items) => items.get(segment.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        match current {
            serde_json::Value::Null => None,
            serde_json::Value::String(s) => Some(s.as_bytes().to_vec()),
            other => Some(other.to_string().into_bytes()),
        }
    }

    fn path(dotted: &str) -> Vec<String> {
        dotted.split('.').map(str::to_owned).collect()
    }

    fn got(line: &str, dotted: &str) -> Option<String> {
        let [found] = get(line, [&path(dotted)]);
        found.map(|v| String::from_utf8(v.into_bytes().into_owned()).unwrap())
    }

    #[test]
    fn paths_reach_members_and_elements() {
        let line = r#"{"a": {"b": [1, {"c": "x\ty"}], "n": null}, "s": "plain", "f": 1e3}"#;
        assert_eq!(got(line, "a.b.1.c").as_deref(), Some("x\ty"));
        assert_eq!(got(line, "a.b.0").as_deref(), Some("1"));
        assert_eq!(got(line, "a.b").as_deref(), Some(r#"[1,{"c":"x\ty"}]"#));
        assert_eq!(got(line, "f").as_deref(), Some("1000.0"));
        assert_eq!(got(line, "a.n"), None);
        assert_eq!(got(line, "a.b.2"), None);
        assert_eq!(got(line, "s.t"), None);
        assert!(matches!(
            get(line, [&path("s")]),
            [Some(FieldValue::Bytes(Cow::Borrowed(b"plain")))]
        ));
        assert_eq!(
            get(line, [&path("f"), &path("a.b.0")]),
            [
                Some(FieldValue::Float(1000.0)),
                Some(FieldValue::Bytes(Cow::Borrowed(b"1")))
            ]
        );
        // Several paths in one pass, sharing members, one ending where another goes on.
        let [c, b, b0, s, f] = get(
            line,
            [
                &path("a.b.1.c"),
                &path("a.b"),
                &path("a.b.0"),
                &path("s"),
                &path("f"),
            ],
        )
        .map(|v| v.map(|v| String::from_utf8(v.into_bytes().into_owned()).unwrap()));
        assert_eq!(c.as_deref(), Some("x\ty"));
        assert_eq!(b.as_deref(), Some(r#"[1,{"c":"x\ty"}]"#));
        assert_eq!(b0.as_deref(), Some("1"));
        assert_eq!(
            (s.as_deref(), f.as_deref()),
            (Some("plain"), Some("1000.0"))
        );
        // The last of repeated names; a line that is not one JSON value gives nothing.
        assert_eq!(got(r#"{"k":1,"k":{"j":2}}"#, "k.j").as_deref(), Some("2"));
        assert_eq!(got(r#"{"k":{"j":2},"k":1}"#, "k.j"), None);
        assert_eq!(got(r#"{"k":1} {"k":2}"#, "k"), None);
        assert_eq!(got(r#"{"k":1,"x":[}"#, "k"), None);
    }

    /// A JSON value drawn from a small alphabet of names, so paths often hit: nested objects
    /// and arrays, repeated names, escapes, integers, floats and exponents, `null`.
    fn value() -> impl Strategy<Value = serde_json::Value> {
        use serde_json::Value;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            (-1e6f64..1e6).prop_map(Value::from),
            "[a-c\"\\\\\\t é]{0,4}".prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec(("[abc]", inner), 0..4)
                    .prop_map(|members| Value::Object(members.into_iter().collect())),
            ]
        })
    }

    /// A line written from a value: compact or spaced, maybe a member repeated, maybe cut
    /// short or with a byte put in.
    fn line() -> impl Strategy<Value = String> {
        (
            value(),
            any::<bool>(),
            0..4u8,
            any::<prop::sample::Index>(),
            "[ ,:\\[{}\"x0]",
        )
            .prop_map(|(v, spaced, damage, at, byte)| {
                let mut text = if spaced {
                    serde_json::to_string_pretty(&v).unwrap().replace('\n', " ")
                } else {
                    v.to_string()
                };
                let cut = |t: &String| at.index(t.len() + 1).min(t.len());
                let mut at = cut(&text);
                while !text.is_char_boundary(at) {
                    at -= 1;
                }
                match damage {
                    0 => text.truncate(at),
                    1 => text.insert_str(at, &byte),
                    2 if text.starts_with('{') && text.len() > 2 => {
                        // A repeated member: the first one of the object again, at the end.
                        let first = text[1..].split(',').next().unwrap().trim_end_matches('}');
                        let first = first.to_owned();
                        text.truncate(text.len() - 1);
                        text.push_str(&format!(",{first}}}"));
                    }
                    _ => {}
                }
                text
            })
    }

    #[test]
    fn lines_are_refused_as_serde_json_refuses_them() {
        // Nesting: as deep as serde_json reads, and one level deeper.
        for depth in [126, 127, 128] {
            let line = format!(
                "{{\"a\":{}1{}}}",
                "[".repeat(depth - 1),
                "]".repeat(depth - 1)
            );
            let refused = serde_json::from_str::<serde_json::Value>(&line).is_err();
            assert_eq!(got(&line, "a").is_none(), refused, "depth {depth}");
            assert_eq!(got(&line, "a.0").is_none(), refused || depth == 1);
        }
        for line in [
            r#"{"a":1,}"#,
            r#"{"a":[1,]}"#,
            r#"{"a":01}"#,
            r#"{"a":1.}"#,
            r#"{"a":-}"#,
            r#"{"a":1e}"#,
            r#"{"a":"\x"}"#,
            r#"{"a":"\u12g4"}"#,
            "{\"a\":\"tab\there\"}",
            "{\"a\":\"bell\u{7}\"}",
            r#"{"a":tru}"#,
            r#"{"a":1 "b":2}"#,
            r#"{"\ud800":1,"a":2}"#,
            r#"{"a":{"b":"\ud800"}}"#,
            r#"{"a":"\ud800"}"#,
            r#"{"a":1e400}"#,
            r#"{"b":"\ud800","a":1}"#,
            r#"{"b":"\udc00","a":1}"#,
            r#"{"b":"\ud800\u0041","a":1}"#,
            r#"{"b":"\ud83d\ude00","a":"\ud83d\ude00"}"#,
            r#"{"a":2} x"#,
            r#" {"a" : [ 1 , 2 ] } "#,
            r#"{"a":-0}"#,
            r#"{"a":0}"#,
            r#"{"a":9999999999999999999}"#,
            r#"{"a":18446744073709551615}"#,
            r#"{"a":-9223372036854775808}"#,
            r#"{"a":18446744073709551616}"#,
        ] {
            let want = reference(line, &path("a"));
            assert_eq!(got(line, "a").map(String::into_bytes), want, "{line}");
        }
        // Escaped names are unescaped before they are compared.
        assert_eq!(got(r#"{"\u0061":"x"}"#, "a").as_deref(), Some("x"));
        assert_eq!(
            got(r#"{"a\"b":{"c":true}}"#, "a\"b.c").as_deref(),
            Some("true")
        );
    }

    /// Each dotted path's answer in one pass is its lookup in the parsed value.
    fn same_as_reference<const N: usize>(
        line: &str,
        dotted: [String; N],
    ) -> Result<(), TestCaseError> {
        let paths = dotted.map(|d| path(&d));
        let found = get::<N>(line, std::array::from_fn(|i| &paths[i][..]));
        for (found, path) in found.into_iter().zip(&paths) {
            prop_assert_eq!(
                found.map(|f| f.into_bytes().into_owned()),
                reference(line, path)
            );
        }
        Ok(())
    }

    /// Any text over an alphabet of JSON's tokens and near misses.
    fn token_soup() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop_oneof![
                Just("{"),
                Just("}"),
                Just("["),
                Just("]"),
                Just(","),
                Just(":"),
                Just(" "),
                Just(r#""a""#),
                Just(r#""b""#),
                Just(r#""\u0061""#),
                Just(r#""\n""#),
                Just(r#""\q""#),
                Just("\"\t\""),
                Just("0"),
                Just("-1"),
                Just("12"),
                Just("1.5"),
                Just("2e3"),
                Just("01"),
                Just("1."),
                Just("true"),
                Just("nul"),
                Just("null"),
                Just("\""),
                Just("x"),
            ],
            1..24,
        )
        .prop_map(|tokens| tokens.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]
        /// Refused exactly when the parsed value is refused, the same answers otherwise.
        #[test]
        fn token_soup_is_read_as_the_parsed_value(
            line in token_soup(),
            dotted in prop::array::uniform2("[ab0]{1}(\\.[ab0]){0,2}"),
        ) {
            same_as_reference(&line, dotted)?;
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]
        #[test]
        fn get_equals_the_lookup_in_the_parsed_value(
            line in line(),
            dotted in prop::array::uniform3("[abc0-2]{1}(\\.[abc0-2]){0,3}"),
        ) {
            same_as_reference(&line, dotted)?;
        }
    }
}
