//! The grid of windows that covers a volume for inference.

/// Window start positions along one axis: every `step` voxels, the last one flush with
/// the end, so the windows cover `0..dim`. A window larger than the axis starts at 0
/// (the rest is padding).
pub fn positions(dim: usize, window: usize, overlap: f64) -> Vec<usize> {
    if dim <= window {
        return vec![0];
    }
    let step = ((window as f64 * (1.0 - overlap)).floor() as usize).max(1);
    let mut out: Vec<usize> = (0..dim - window).step_by(step).collect();
    out.push(dim - window);
    out
}

/// All window corners `(i, j, k)` covering a volume of `dims`.
pub fn corners(dims: [usize; 3], window: [usize; 3], overlap: f64) -> Vec<[usize; 3]> {
    let p: Vec<Vec<usize>> = (0..3).map(|a| positions(dims[a], window[a], overlap)).collect();
    let mut out = Vec::with_capacity(p[0].len() * p[1].len() * p[2].len());
    for &k in &p[2] {
        for &j in &p[1] {
            for &i in &p[0] {
                out.push([i, j, k]);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_cover_the_axis_and_end_flush() {
        assert_eq!(positions(99, 32, 0.25), vec![0, 24, 48, 67]);
        assert_eq!(positions(32, 32, 0.5), vec![0]);
        assert_eq!(positions(10, 32, 0.0), vec![0]);
        assert_eq!(positions(64, 32, 0.0), vec![0, 32]);
    }

    #[test]
    fn every_voxel_is_covered() {
        for (dim, win, ov) in [(117, 32, 0.25), (95, 16, 0.0), (50, 48, 0.9)] {
            let mut hit = vec![false; dim];
            for p in positions(dim, win, ov) {
                hit[p..(p + win).min(dim)].iter_mut().for_each(|h| *h = true);
            }
            assert!(hit.iter().all(|&h| h), "{dim} {win} {ov}");
        }
    }
}
