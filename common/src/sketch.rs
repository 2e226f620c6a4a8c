//! Order-independent numeric and cardinality accumulators used by [`crate::partial::Value`]:
//! an exact floating-point sum and a HyperLogLog distinct-count sketch.
//!
//! Both merge associatively and commutatively *exactly*, so a job's result does not depend on
//! how its input was chunked or in which order partials were folded.

/// The exact sum of finite `f64`s, kept as non-overlapping partials (Shewchuk's algorithm, as
/// in Python's `math.fsum`); [`ExactSum::value`] is the correctly rounded sum. Plain `f64`
/// addition depends on order; this does not.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ExactSum {
    partials: Vec<f64>,
}

impl ExactSum {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn of(x: f64) -> Self {
        let mut sum = Self::new();
        sum.add(x);
        sum
    }

    /// Rebuilds a sum from its wire partials.
    pub fn from_partials(partials: Vec<f64>) -> Self {
        let mut sum = Self::new();
        for p in partials {
            sum.add(p);
        }
        sum
    }

    pub fn partials(&self) -> &[f64] {
        &self.partials
    }

    /// Adds a finite number exactly.
    pub fn add(&mut self, mut x: f64) {
        let mut kept = 0;
        for j in 0..self.partials.len() {
            let mut y = self.partials[j];
            if x.abs() < y.abs() {
                std::mem::swap(&mut x, &mut y);
            }
            let hi = x + y;
            let lo = y - (hi - x);
            if lo != 0.0 {
                self.partials[kept] = lo;
                kept += 1;
            }
            x = hi;
        }
        self.partials.truncate(kept);
        self.partials.push(x);
    }

    pub fn merge(&mut self, other: &ExactSum) {
        for &p in &other.partials {
            self.add(p);
        }
    }

    /// The correctly rounded value of the exact sum (round half to even, as `math.fsum`).
    pub fn value(&self) -> f64 {
        let p = &self.partials;
        let mut n = p.len();
        if n == 0 {
            return 0.0;
        }
        n -= 1;
        let mut hi = p[n];
        let mut lo = 0.0;
        while n > 0 {
            let x = hi;
            n -= 1;
            let y = p[n];
            hi = x + y;
            let yr = hi - x;
            lo = y - yr;
            if lo != 0.0 {
                break;
            }
        }
        if n > 0 && ((lo < 0.0 && p[n - 1] < 0.0) || (lo > 0.0 && p[n - 1] > 0.0)) {
            let y = lo * 2.0;
            let x = hi + y;
            let yr = x - hi;
            if y == yr {
                hi = x;
            }
        }
        hi
    }
}

/// Registers of the HyperLogLog sketch: 2^12, for a standard error of 1.04/sqrt(4096) ≈ 1.6%.
pub const SKETCH_REGISTERS: usize = 1 << SKETCH_BITS;
const SKETCH_BITS: u32 = 12;

/// A HyperLogLog sketch of a set of byte strings. Merging takes each register's maximum, which
/// is exactly associative and commutative. Estimates use linear counting for small sets.
#[derive(Clone, PartialEq, Eq)]
pub struct Sketch {
    registers: Box<[u8; SKETCH_REGISTERS]>,
}

impl std::fmt::Debug for Sketch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sketch(~{})", self.estimate())
    }
}

impl Default for Sketch {
    fn default() -> Self {
        Sketch {
            registers: Box::new([0; SKETCH_REGISTERS]),
        }
    }
}

impl Sketch {
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuilds a sketch from its wire registers; `None` if the length is wrong.
    pub fn from_registers(bytes: &[u8]) -> Option<Self> {
        let registers: Box<[u8; SKETCH_REGISTERS]> =
            bytes.to_vec().into_boxed_slice().try_into().ok()?;
        Some(Sketch { registers })
    }

    pub fn registers(&self) -> &[u8] {
        &self.registers[..]
    }

    pub fn insert(&mut self, item: &[u8]) {
        let hash = hash64(item);
        let index = (hash >> (64 - SKETCH_BITS)) as usize;
        let rest = hash << SKETCH_BITS;
        let rank = (rest.leading_zeros() + 1).min(64 - SKETCH_BITS + 1) as u8;
        if rank > self.registers[index] {
            self.registers[index] = rank;
        }
    }

    pub fn merge(&mut self, other: &Sketch) {
        for (mine, theirs) in self.registers.iter_mut().zip(other.registers.iter()) {
            *mine = (*mine).max(*theirs);
        }
    }

    /// The estimated number of distinct items inserted.
    pub fn estimate(&self) -> u64 {
        let m = SKETCH_REGISTERS as f64;
        let alpha = 0.7213 / (1.0 + 1.079 / m);
        let mut sum = 0.0;
        let mut zeros = 0u32;
        for &r in self.registers.iter() {
            sum += 2f64.powi(-i32::from(r));
            zeros += u32::from(r == 0);
        }
        let raw = alpha * m * m / sum;
        let estimate = if raw <= 2.5 * m && zeros > 0 {
            m * (m / f64::from(zeros)).ln()
        } else {
            raw
        };
        estimate.round() as u64
    }
}

/// FNV-1a with a MurmurHash3 finalizer: stable across processes and builds, unlike std's
/// hasher, which a sketch built on one worker and merged on another needs.
fn hash64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn exact_sum_is_correctly_rounded() {
        // python3 -c "import math; print(math.fsum([0.1]*10), math.fsum([1e100, 1.0, -1e100]))"
        let mut s = ExactSum::new();
        for _ in 0..10 {
            s.add(0.1);
        }
        assert_eq!(s.value(), 1.0);
        let mut t = ExactSum::new();
        for x in [1e100, 1.0, -1e100] {
            t.add(x);
        }
        assert_eq!(t.value(), 1.0);
        assert_eq!(ExactSum::new().value(), 0.0);
    }

    proptest! {
        #[test]
        fn exact_sum_does_not_depend_on_grouping(
            xs in prop::collection::vec(-1e12f64..1e12, 0..60),
            cut in 0usize..60,
        ) {
            let cut = cut.min(xs.len());
            let mut whole = ExactSum::new();
            for &x in &xs { whole.add(x); }
            let mut left = ExactSum::new();
            for &x in &xs[..cut] { left.add(x); }
            let mut right = ExactSum::new();
            for &x in xs[cut..].iter().rev() { right.add(x); }
            right.merge(&left);
            prop_assert_eq!(whole.value(), right.value());
        }
    }

    #[test]
    fn sketch_estimates_within_its_stated_error() {
        for n in [0u64, 1, 10, 1000, 50_000] {
            let mut a = Sketch::new();
            let mut b = Sketch::new();
            for i in 0..n {
                let item = format!("item-{i}");
                if i % 2 == 0 {
                    a.insert(item.as_bytes())
                } else {
                    b.insert(item.as_bytes())
                }
                a.insert(b"item-0"); // duplicates do not count
            }
            a.merge(&b);
            let estimate = a.estimate() as f64;
            // Four standard errors (1.6% each) at most.
            assert!(
                (estimate - n as f64).abs() <= (n as f64 * 0.065).max(1.0),
                "{n}: {estimate}"
            );
            assert_eq!(Sketch::from_registers(a.registers()), Some(a));
        }
    }
}
