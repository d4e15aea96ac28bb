//! The plugin's own counter-based generator: every draw of one `apply` call comes from
//! its `seed`, never from libtorch's global generator (which threads would share).

/// SplitMix64 (Steele, Lea & Flood 2014): a 64-bit state advanced by a Weyl constant and
/// finalised by a bijective mix.
#[derive(Debug, Clone)]
pub struct Rng {
    state: u64,
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Rng {
    /// The generator of `seed` (distinct seeds give unrelated streams).
    pub fn new(seed: u64) -> Rng {
        Rng { state: mix(seed ^ 0x2545_f491_4f6c_dd1d) }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.state)
    }

    /// Uniform in `[0, 1)` with 53 random bits.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `[lo, hi]` (exactly `lo` when `lo == hi`).
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        if lo == hi {
            // Keeps a degenerate range exact (e.g. a zero rotation stays 0.0).
            self.next_u64();
            return lo;
        }
        lo + (hi - lo) * self.unit()
    }

    /// `true` with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// A standard normal draw (Box–Muller, one of the pair).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.unit(); // in (0, 1]: the log is finite
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// `n` standard normal draws as `f32`, two per Box–Muller pair.
    pub fn normals_f32(&mut self, n: usize) -> Vec<f32> {
        let mut out = Vec::with_capacity(n + 1);
        while out.len() < n {
            let u1 = 1.0 - self.unit();
            let u2 = self.unit();
            let r = (-2.0 * u1.ln()).sqrt();
            let (s, c) = (std::f64::consts::TAU * u2).sin_cos();
            out.push((r * c) as f32);
            out.push((r * s) as f32);
        }
        out.truncate(n);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_and_normals_have_unit_variance() {
        let (mut a, mut b) = (Rng::new(5), Rng::new(5));
        assert_eq!(a.next_u64(), b.next_u64());
        assert_ne!(Rng::new(5).next_u64(), Rng::new(6).next_u64());
        let v = Rng::new(1).normals_f32(20_000);
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / v.len() as f64;
        assert!(mean.abs() < 0.03 && (var - 1.0).abs() < 0.05, "mean {mean} var {var}");
    }

    #[test]
    fn degenerate_range_is_exact() {
        let mut r = Rng::new(3);
        assert_eq!(r.uniform(0.0, 0.0), 0.0);
        let x = r.uniform(-2.0, 3.0);
        assert!((-2.0..=3.0).contains(&x));
    }
}
