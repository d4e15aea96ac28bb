//! Counter-based randomness: every draw is a pure function of (seed, stream, counter), so
//! results never depend on which thread drew them or in which order.

/// SplitMix64's finaliser: a bijective 64-bit mix with good avalanche.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A small generator for one stream, e.g. one (seed, iteration, sample) triple.
#[derive(Debug, Clone)]
pub struct Stream {
    state: u64,
}

impl Stream {
    /// The stream identified by `keys` (folded in order).
    pub fn new(keys: &[u64]) -> Stream {
        let state = keys.iter().fold(0x6a09_e667_f3bc_c908_u64, |acc, &k| mix64(acc ^ mix64(k)));
        Stream { state }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix64(self.state)
    }

    /// A uniform integer in `0..n` (`n > 0`), by widening multiplication.
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_keys_give_same_draws_and_different_keys_differ() {
        let a: Vec<u64> = (0..4)
            .map({
                let mut s = Stream::new(&[1, 2]);
                move |_| s.next_u64()
            })
            .collect();
        let b: Vec<u64> = (0..4)
            .map({
                let mut s = Stream::new(&[1, 2]);
                move |_| s.next_u64()
            })
            .collect();
        let c: Vec<u64> = (0..4)
            .map({
                let mut s = Stream::new(&[2, 1]);
                move |_| s.next_u64()
            })
            .collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let mut s = Stream::new(&[7]);
        let mut seen = [false; 5];
        for _ in 0..200 {
            let v = s.below(5) as usize;
            assert!(v < 5);
            seen[v] = true;
        }
        assert!(seen.iter().all(|&x| x));
    }
}
