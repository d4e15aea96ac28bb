//! Distances from query voxels to nearby feature voxels, by looking at the offsets of a
//! small ball nearest first: exact for every query with a feature in its ball, and far
//! cheaper than a distance transform where queries lie close to features (as the
//! surfaces of a good segmentation lie close to the reference's).
//!
//! The squared distance of an offset `(di, dj, dk)` is summed as the distance transform
//! of [`super::edt`] sums it, `(s₂ dk)² + ((s₁ dj)² + (s₀ di)²)`, so both give the same
//! value for the same nearest feature.

use rayon::prelude::*;

/// The offsets of a ball in voxels, nearest first.
pub(crate) struct Ball {
    /// Each offset `(di, dj, dk)` with its squared length in mm², by increasing length.
    offsets: Vec<([isize; 3], f64)>,
    /// The largest `|d|` of each axis among the offsets.
    reach: [usize; 3],
}

impl Ball {
    /// Every offset at most `radius_mm` long with voxel `spacing` (mm), the centre
    /// included.
    pub(crate) fn new(radius_mm: f64, spacing: [f64; 3]) -> Self {
        let reach = spacing.map(|s| (radius_mm / s).floor() as usize);
        let r = reach.map(|r| r as isize);
        let mut offsets = Vec::new();
        for dk in -r[2]..=r[2] {
            for dj in -r[1]..=r[1] {
                for di in -r[0]..=r[0] {
                    let o = [di, dj, dk];
                    let d2 = squared_length(o, spacing);
                    if d2 <= radius_mm * radius_mm {
                        offsets.push((o, d2));
                    }
                }
            }
        }
        offsets.sort_by(|a, b| a.1.total_cmp(&b.1));
        Ball { offsets, reach }
    }
}

/// The squared length in mm² of a voxel offset, summed in the distance transform's order.
fn squared_length(o: [isize; 3], spacing: [f64; 3]) -> f64 {
    let sq = |d: isize, s: f64| {
        let x = d.unsigned_abs() as f64 * s;
        x * x
    };
    sq(o[2], spacing[2]) + (sq(o[1], spacing[1]) + sq(o[0], spacing[0]))
}

/// What [`nearby_distances`] settled and what it left.
pub(crate) struct Nearby {
    /// The distances in mm of the queries with a feature in their ball, in memory order.
    pub settled: Vec<f64>,
    /// The queries without one (a mask on the same volume); `None` when there are none.
    pub unsettled: Option<Vec<bool>>,
}

/// For each `true` voxel of `queries`, the distance in mm to the nearest `true` voxel of
/// `features` when one lies in `ball` around it (masks on `dims`, voxel `spacing` in mm).
///
/// # Panics
/// When a mask's length is not `dims[0] * dims[1] * dims[2]`.
pub(crate) fn nearby_distances(features: &[bool], queries: &[bool], dims: [usize; 3], ball: &Ball) -> Nearby {
    let [nx, ny, nz] = dims;
    let n = nx * ny * nz;
    assert_eq!(features.len(), n, "feature mask and dims disagree");
    assert_eq!(queries.len(), n, "query mask and dims disagree");
    if n == 0 {
        return Nearby { settled: Vec::new(), unsettled: None };
    }
    let strides = [1isize, nx as isize, (nx * ny) as isize];
    let linear: Vec<(isize, [isize; 3], f64)> = ball
        .offsets
        .iter()
        .map(|&(o, d2)| (o[0] * strides[0] + o[1] * strides[1] + o[2] * strides[2], o, d2))
        .collect();
    let r = ball.reach;
    let per_slice: Vec<(Vec<f64>, Vec<usize>)> = (0..nz)
        .into_par_iter()
        .map(|k| {
            let (mut settled, mut unsettled) = (Vec::new(), Vec::new());
            for j in 0..ny {
                let row = nx * (j + ny * k);
                if !queries[row..row + nx].contains(&true) {
                    continue;
                }
                let rows_inside = j >= r[1] && j + r[1] < ny && k >= r[2] && k + r[2] < nz;
                for i in (0..nx).filter(|&i| queries[row + i]) {
                    let at = row + i;
                    let inside = rows_inside && i >= r[0] && i + r[0] < nx;
                    let c = [i as isize, j as isize, k as isize];
                    let hit = linear.iter().find(|&&(step, o, _)| {
                        if inside {
                            return features[(at as isize + step) as usize];
                        }
                        let p = [c[0] + o[0], c[1] + o[1], c[2] + o[2]];
                        (0..3).all(|a| p[a] >= 0 && (p[a] as usize) < dims[a])
                            && features[(at as isize + step) as usize]
                    });
                    match hit {
                        Some(&(_, _, d2)) => settled.push(d2.sqrt()),
                        None => unsettled.push(at),
                    }
                }
            }
            (settled, unsettled)
        })
        .collect();
    let mut settled = Vec::with_capacity(per_slice.iter().map(|s| s.0.len()).sum());
    let mut unsettled = None;
    for (s, u) in per_slice {
        settled.extend(s);
        if !u.is_empty() {
            let mask = unsettled.get_or_insert_with(|| vec![false; n]);
            for at in u {
                mask[at] = true;
            }
        }
    }
    Nearby { settled, unsettled }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ball_is_complete_and_nearest_first() {
        let ball = Ball::new(2.0, [1.0; 3]);
        // 1 centre, 6 at 1, 12 at √2, 8 at √3, 6 at 2.
        assert_eq!(ball.offsets.len(), 33);
        assert!(ball.offsets.windows(2).all(|w| w[0].1 <= w[1].1));
        let flat = Ball::new(1.0, [0.5, 0.5, 3.0]);
        assert_eq!(flat.reach, [2, 2, 0]);
        assert_eq!(flat.offsets.len(), 13);
    }

    #[test]
    fn near_queries_settle_and_far_ones_do_not() {
        let dims = [9, 1, 1];
        let features: Vec<bool> = (0..9).map(|i| i == 0).collect();
        let queries: Vec<bool> = (0..9).map(|i| i == 0 || i == 2 || i == 8).collect();
        let got = nearby_distances(&features, &queries, dims, &Ball::new(3.0, [1.5, 1.0, 1.0]));
        // 0 at the feature, 3 mm two voxels away; eight voxels (12 mm) is beyond the ball.
        assert_eq!(got.settled, vec![0.0, 3.0]);
        let unsettled = got.unsettled.unwrap();
        assert_eq!(unsettled.iter().filter(|&&u| u).count(), 1);
        assert!(unsettled[8]);
    }
}
