//! The fields of a JSON Lines record read by their paths in one streaming pass over the line's
//! text, with no value tree built: members off the paths are skipped (checked for syntax, never
//! stored), the values at the paths are the only ones kept, borrowed from the line where they
//! can be.
//!
//! Each answer is what looking its path up in the line's parsed [`serde_json::Value`] gives
//! (the property test below holds the two equal): the same line is refused, a repeated member
//! name means its last value, a number reads as that value's text (`1e3` as `1000.0`; a number
//! with a fraction or an exponent is kept as the `f64` it parsed to, its text made only if it
//! is asked for: [`FieldValue`]), and a composite as its compact JSON text. One difference: a
//! number outside `f64`'s range in a member no path reads does not refuse the line.

use std::borrow::Cow;
use std::fmt;

use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{
    Deserialize, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor,
};

use super::FieldValue;

/// The values at `paths` (each a list of member names or array indexes) in the JSON text
/// `line`, found in one pass: a string's contents, a number with a fraction or an exponent as
/// its `f64`, other values as JSON text; `None` where the line lacks a path or holds `null`
/// there, and for every path if the line is not one JSON value. An empty path finds nothing.
pub fn get<'a, const N: usize>(line: &'a str, paths: [&[String]; N]) -> [Found<'a>; N] {
    let mut out = std::array::from_fn(|_| None);
    let mut de = serde_json::Deserializer::from_str(line);
    let walk = Paths {
        slots: std::array::from_fn(|i| i),
        rests: paths,
        len: N,
        out: &mut out,
    };
    if walk.deserialize(&mut de).is_err() || de.end().is_err() {
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

impl<'de, const N: usize> Member<'_, '_, 'de, N> {
    fn read<D: Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        match self {
            Member::Skipped => IgnoredAny::deserialize(de).map(drop),
            Member::Walked(paths) => paths.deserialize(de),
            Member::Leaf(paths) => {
                let found = de.deserialize_any(Leaf)?;
                for &slot in &paths.slots[..paths.len] {
                    paths.out[slot].clone_from(&found);
                }
                Ok(())
            }
            Member::Mixed(paths) => {
                let value = serde_json::Value::deserialize(de)?;
                for i in 0..paths.len {
                    paths.out[paths.slots[i]] = lookup(&value, paths.rests[i]);
                }
                Ok(())
            }
        }
    }
}

impl<'de, const N: usize> DeserializeSeed<'de> for Member<'_, '_, 'de, N> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        self.read(de)
    }
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

impl<'de, const N: usize> DeserializeSeed<'de> for Paths<'_, '_, 'de, N> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de, const N: usize> Visitor<'de> for Paths<'_, '_, 'de, N> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    // A scalar where the paths go on: they are not there.
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        let mut firsts = [""; N];
        for (first, rest) in firsts.iter_mut().zip(&self.rests[..self.len]) {
            *first = rest.first().map_or("", String::as_str);
        }
        while let Some(hit) = map.next_key_seed(Name(&firsts[..self.len]))? {
            map.next_value_seed(self.member(|first| hit == Some(first)))?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        for i in 0usize.. {
            let index = |first: &str| first.parse::<usize>() == Ok(i);
            if seq.next_element_seed(self.member(index))?.is_none() {
                break;
            }
        }
        Ok(())
    }
}

/// Which of the paths' next names a member's name is (`None`: none of them), compared where it
/// lies in the line.
struct Name<'n, 'p>(&'n [&'p str]);

impl<'de, 'p> DeserializeSeed<'de> for Name<'_, 'p> {
    type Value = Option<&'p str>;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Option<&'p str>, D::Error> {
        de.deserialize_str(self)
    }
}

impl<'de, 'p> Visitor<'de> for Name<'_, 'p> {
    type Value = Option<&'p str>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a member name")
    }

    fn visit_str<E>(self, name: &str) -> Result<Option<&'p str>, E> {
        Ok(self.0.iter().copied().find(|&first| first == name))
    }
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

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]
        #[test]
        fn get_equals_the_lookup_in_the_parsed_value(
            line in line(),
            dotted in prop::array::uniform3("[abc0-2]{1}(\\.[abc0-2]){0,3}"),
        ) {
            let paths = dotted.map(|d| path(&d));
            let found = get(&line, [&paths[0], &paths[1], &paths[2]]);
            for (found, path) in found.into_iter().zip(&paths) {
                prop_assert_eq!(
                    found.map(|f| f.into_bytes().into_owned()),
                    reference(&line, path)
                );
            }
        }
    }
}
