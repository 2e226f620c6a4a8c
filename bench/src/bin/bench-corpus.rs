//! Generates the benchmark corpus: seeded, Zipf-distributed words (`w0`, `w1`, ...; rank r has
//! weight 1/(r+1)), 12 words a line, split over several files of about the same size, and the
//! exact count of every word in each file, known from generation itself (an oracle independent
//! of fanfold's word count).
//!
//!     bench-corpus --out DIR --mib 512 --files 2 [--vocab 50000] [--seed 1]
//!
//! Writes `DIR/part-NNNNN.txt` and `DIR/expected-NNNNN.tsv` (`word<TAB>count`).

use std::io::{BufWriter, Write};
use std::path::PathBuf;

use clap::Parser;

#[derive(Parser)]
struct Args {
    #[arg(long)]
    out: PathBuf,
    /// Total size in MiB (each file gets an equal share, rounded up to a whole line).
    #[arg(long)]
    mib: u64,
    #[arg(long, default_value_t = 1)]
    files: u32,
    #[arg(long, default_value_t = 50_000)]
    vocab: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// SplitMix64: tiny, fast and good enough for sampling.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Samples ranks from a Zipf(1) distribution by inverse CDF with a guide table.
struct Zipf {
    cdf: Vec<f64>,
    guide: Vec<u32>,
}

impl Zipf {
    fn new(n: usize) -> Self {
        let total: f64 = (0..n).map(|r| 1.0 / (r + 1) as f64).sum();
        let mut acc = 0.0;
        let mut cdf: Vec<f64> = (0..n)
            .map(|r| {
                acc += 1.0 / (r + 1) as f64 / total;
                acc
            })
            .collect();
        *cdf.last_mut().expect("vocabulary is not empty") = 1.0;
        let buckets = 1 << 16;
        let mut guide = Vec::with_capacity(buckets);
        let mut k = 0;
        for b in 0..buckets {
            let u = b as f64 / buckets as f64;
            while cdf[k] <= u {
                k += 1;
            }
            guide.push(k as u32);
        }
        Zipf { cdf, guide }
    }

    fn sample(&self, rng: &mut Rng) -> usize {
        let u = rng.unit();
        let mut k = self.guide[(u * self.guide.len() as f64) as usize] as usize;
        while self.cdf[k] <= u {
            k += 1;
        }
        k
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.out)?;
    let words: Vec<Vec<u8>> = (0..args.vocab)
        .map(|i| format!("w{i}").into_bytes())
        .collect();
    let zipf = Zipf::new(args.vocab);
    let mut rng = Rng(args.seed);
    let per_file = (args.mib << 20).div_ceil(u64::from(args.files));
    let mut total = 0;
    for f in 0..args.files {
        let mut counts = vec![0u64; args.vocab];
        let path = args.out.join(format!("part-{f:05}.txt"));
        let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(&path)?);
        let mut line = Vec::with_capacity(256);
        let mut written = 0u64;
        while written < per_file {
            line.clear();
            for i in 0..12 {
                let w = zipf.sample(&mut rng);
                counts[w] += 1;
                if i > 0 {
                    line.push(b' ');
                }
                line.extend_from_slice(&words[w]);
            }
            line.push(b'\n');
            out.write_all(&line)?;
            written += line.len() as u64;
        }
        out.flush()?;
        total += written;
        let mut expected = BufWriter::new(std::fs::File::create(
            args.out.join(format!("expected-{f:05}.tsv")),
        )?);
        for (w, n) in counts.iter().enumerate().filter(|(_, n)| **n > 0) {
            expected.write_all(&words[w])?;
            writeln!(expected, "\t{n}")?;
        }
        expected.flush()?;
    }
    println!(
        "{}",
        serde_json::json!({"bytes": total, "files": args.files, "vocab": args.vocab})
    );
    Ok(())
}
