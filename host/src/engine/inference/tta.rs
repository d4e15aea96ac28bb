//! Test-time augmentation by mirroring: the flips a [`Predictor`](super::Predictor) runs
//! every model on, each output flipped back before the average.

/// The mirrorings of test-time augmentation: every subset of `axes` (`0 = i`, `1 = j`,
/// `2 = k`), the identity first, as tensor dimensions of `[N, C, D, H, W]`.
///
/// # Errors
/// An axis above 2 or given twice.
pub fn mirrorings(axes: &[usize]) -> Result<Vec<Vec<i64>>, String> {
    let mut seen = [false; 3];
    for &a in axes {
        if a > 2 || seen[a] {
            return Err(format!("mirror axes must be distinct values in 0..=2 (i, j, k), got {axes:?}"));
        }
        seen[a] = true;
    }
    let mut out = Vec::with_capacity(1 << axes.len());
    for mask in 0u32..(1 << axes.len()) {
        // Axis i is tensor dimension 4 (W), j is 3 (H), k is 2 (D).
        out.push(axes.iter().enumerate().filter(|(b, _)| mask & (1 << b) != 0).map(|(_, &a)| 4 - a as i64).collect());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrorings_are_every_subset_with_identity_first() {
        assert_eq!(mirrorings(&[]).unwrap(), vec![Vec::<i64>::new()]);
        assert_eq!(mirrorings(&[0, 2]).unwrap(), vec![vec![], vec![4], vec![2], vec![4, 2]]);
        assert!(mirrorings(&[3]).is_err());
        assert!(mirrorings(&[1, 1]).is_err());
    }
}
