//! The operations that ship with fanfold, each a [`crate::operation::Operation`] registered by
//! name in [`crate::registry::Registry::builtin`]. README.md documents each one's options.

pub mod distinct;
pub mod grep;
pub mod groupby;
pub mod histogram;
pub mod index;
pub mod sort;
pub mod streaming;
pub mod wordcount;

#[cfg(test)]
mod tests {
    //! The equivalence invariant for every built-in operation: cutting the input into chunks
    //! at any record boundaries and folding their partials in any order gives exactly the
    //! result of mapping it whole.

    use proptest::prelude::*;

    use crate::operation::{Chunk, ChunkStats, Options};
    use crate::partial::{Partial, SortOrder};
    use crate::registry::Registry;

    fn line(pick: u8, n: u16) -> String {
        match pick % 6 {
            0 => format!(
                "{{\"k\":\"g{}\",\"v\":{},\"w\":\"t{}\"}}",
                n % 7,
                f64::from(n) / 3.0 - 50.0,
                n % 5
            ),
            1 => format!("{{\"k\":\"g{}\",\"v\":\"{}.25\"}}", n % 3, n),
            2 => "not json Élan".into(),
            3 => format!("{{\"k\":\"g{}\",\"v\":\"oops\"}}", n % 4),
            4 => "{\"k\":\"g1\",\"v\":1e300}".into(),
            _ => format!("{{\"k\":\"g{}\",\"v\":{}}}\r", n % 2, n),
        }
    }

    fn operations() -> Vec<(&'static str, Vec<(&'static str, &'static str)>)> {
        let mut ops = vec![
            ("wordcount", vec![]),
            ("wordcount", vec![("tokenizer", "unicode")]),
            ("index", vec![]),
            ("grep", vec![("pattern", "g[12]")]),
            ("grep", vec![("pattern", "g[12]"), ("output", "lines")]),
            ("distinct", vec![]),
            ("distinct", vec![("field", "w")]),
            ("sort", vec![]),
            ("sort", vec![("field", "v"), ("numeric", "true")]),
            ("histogram", vec![("field", "v"), ("edges", "-10,0,10,100")]),
        ];
        for agg in [
            "count",
            "sum",
            "min",
            "max",
            "mean",
            "distinct",
            "approx_distinct",
            "topk",
        ] {
            ops.push(("groupby", vec![("key", "k"), ("agg", agg), ("value", "v")]));
        }
        ops
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn any_chunking_and_fold_order_gives_the_same_result(
            lines in prop::collection::vec((any::<u8>(), any::<u16>()), 0..80),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
            reverse in any::<bool>(),
        ) {
            let text: String = lines.iter().map(|&(p, n)| line(p, n) + "\n").collect();
            let data = text.as_bytes();
            let starts: Vec<usize> = std::iter::once(0)
                .chain(data.iter().enumerate().filter(|(_, b)| **b == b'\n').map(|(i, _)| i + 1))
                .filter(|&i| i < data.len())
                .collect();
            let mut bounds: Vec<usize> = cuts
                .iter()
                .filter(|_| !starts.is_empty())
                .map(|c| starts[c.index(starts.len())])
                .collect();
            bounds.extend([0, data.len()]);
            bounds.sort_unstable();
            bounds.dedup();
            let registry = Registry::builtin();
            for (name, options) in operations() {
                let options: Options = options.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
                let op = registry.build(name, &options).unwrap();
                let mut whole_stats = ChunkStats::default();
                let whole = op.map(&Chunk::new(data, "d.jsonl", 0), &mut whole_stats).unwrap();
                let mut parts: Vec<Partial> = Vec::new();
                let mut stats = ChunkStats::default();
                for w in bounds.windows(2) {
                    let chunk = Chunk::new(&data[w[0]..w[1]], "d.jsonl", w[0] as u64);
                    parts.push(op.map(&chunk, &mut stats).unwrap());
                }
                if reverse {
                    parts.reverse();
                }
                let mut folded = Partial::new();
                for p in parts {
                    folded.merge(p).unwrap();
                }
                for sort in [SortOrder::Key, SortOrder::ValueDesc] {
                    prop_assert_eq!(
                        op.finalize(folded.clone(), sort, Some(50)).unwrap(),
                        op.finalize(whole.clone(), sort, Some(50)).unwrap(),
                        "{} {:?}", name, options
                    );
                }
                prop_assert_eq!(&stats, &whole_stats, "{} {:?}", name, options);
            }
        }
    }
}
