//! Surface voxels and surface distances: Hausdorff, percentile Hausdorff, average
//! symmetric surface distance and normalised surface Dice.
//!
//! # Definitions
//! - **Surface voxel**: a foreground voxel with at least one of its 6 face neighbours in
//!   the background. Neighbours outside the volume count as background (a mask touching
//!   the border has a surface there, as with `scipy.ndimage.binary_erosion`'s default
//!   `border_value=0`), except along an axis where the *volume* is one voxel thick: such
//!   an axis has no neighbours, so a 2D image (`dims[2] = 1`) has 2D (4-connected)
//!   surfaces instead of being all surface.
//! - **Surface distance** of a voxel of one surface: the Euclidean distance in mm,
//!   honouring the voxel spacing, from its centre to the centre of the nearest voxel of
//!   the other surface. The directed sets `d(S→R)` (one value per surface voxel of the
//!   segmentation) and `d(R→S)` come from an exact distance transform ([`super::edt`]).
//! - **Hausdorff distance** `HD = max(max d(S→R), max d(R→S))`.
//! - **HD95** `= max(P95(d(S→R)), P95(d(R→S)))`: the larger of the two directed 95th
//!   percentiles (MONAI's `compute_hausdorff_distance(percentile=95)` and DeepMind's
//!   `compute_robust_hausdorff` do the same), where `P_q` interpolates linearly between
//!   order statistics: with the `n` values sorted, `P_q = x[⌊h⌋] + (h − ⌊h⌋)(x[⌊h⌋+1] −
//!   x[⌊h⌋])`, `h = (n − 1) q / 100` (numpy's default `linear` method).
//! - **ASSD** `= (Σ d(S→R) + Σ d(R→S)) / (|∂S| + |∂R|)`: the mean over both directed
//!   sets together (MONAI's `symmetric=True` average surface distance).
//! - **Normalised surface Dice** at tolerance `τ` mm (Nikolov et al. 2021, counting
//!   surface voxels instead of surfel areas): `(|{d(S→R) ≤ τ}| + |{d(R→S) ≤ τ}|) /
//!   (|∂S| + |∂R|)`.
//!
//! # Empty masks
//! Both empty: every distance and the surface Dice are NaN (undefined). One empty: the
//! distances are `+∞` and the surface Dice is 0.

use serde::Serialize;

use rayon::prelude::*;

use super::bbox::{bounding_box, crop};
use super::edt::query_distances_at;
use super::nearby::{nearby_distances, Ball, Nearby};

/// Surface voxels of `mask` (see the module docs for the definition).
///
/// # Panics
/// When `mask.len()` is not `dims[0] * dims[1] * dims[2]`.
pub fn surface_voxels(mask: &[bool], dims: [usize; 3]) -> Vec<bool> {
    surface_in_crop(mask, dims, dims)
}

/// Surface of a mask given on a crop of a volume of `volume_dims` (outside the crop is
/// background; an axis of the volume one voxel thick has no neighbours).
///
/// Row by row: a voxel is interior when it and its six neighbours are all set, and a
/// surface voxel when it is set and not interior.
pub(crate) fn surface_in_crop(mask: &[bool], dims: [usize; 3], volume_dims: [usize; 3]) -> Vec<bool> {
    let [nx, ny, nz] = dims;
    assert_eq!(mask.len(), nx * ny * nz, "mask and dims disagree");
    let mut out = vec![false; mask.len()];
    if out.is_empty() {
        return out;
    }
    let flat = volume_dims.map(|d| d <= 1);
    let row = |j: usize, k: usize| &mask[nx * (j + ny * k)..nx * (j + ny * k + 1)];
    out.par_chunks_mut(nx * ny).enumerate().for_each(|(k, slice)| {
        let mut interior = vec![false; nx];
        for (j, out_row) in slice.chunks_mut(nx).enumerate() {
            let centre = row(j, k);
            if !centre.contains(&true) {
                continue;
            }
            // The neighbour rows along j and k; `None` past the crop: background, unless
            // the volume is flat along that axis (no neighbour there at all).
            let neighbours = [
                (j > 0).then(|| row(j - 1, k)),
                (j + 1 < ny).then(|| row(j + 1, k)),
                (k > 0).then(|| row(j, k - 1)),
                (k + 1 < nz).then(|| row(j, k + 1)),
            ];
            let flat_axis = [flat[1], flat[1], flat[2], flat[2]];
            if neighbours.iter().zip(flat_axis).any(|(n, f)| n.is_none() && !f) {
                out_row.copy_from_slice(centre);
                continue;
            }
            interior.copy_from_slice(centre);
            if !flat[0] {
                // Along i: the row's ends border background.
                interior[0] = false;
                interior[nx - 1] = false;
                for i in 1..nx.saturating_sub(1) {
                    interior[i] = centre[i - 1] & centre[i] & centre[i + 1];
                }
            }
            for n in neighbours.into_iter().flatten() {
                for (v, &m) in interior.iter_mut().zip(n) {
                    *v &= m;
                }
            }
            for ((o, &c), &v) in out_row.iter_mut().zip(centre).zip(&interior) {
                *o = c & !v;
            }
        }
    });
    out
}

/// Radius of the ball searched around each query first, in voxels of the finest spacing.
const BALL_VOXELS: f64 = 3.0;

/// Margin in mm around the queries of [`transformed_distances`]'s first box: distances up
/// to about this are settled there.
const FIRST_MARGIN_MM: f64 = 4.0;

/// The distance in mm from each `true` voxel of `queries` to the nearest `true` voxel of
/// `features`, in a fixed order (each mask on `dims`, voxel `spacing` in mm).
///
/// Queries with a feature within [`BALL_VOXELS`] are settled by looking there
/// ([`nearby_distances`]); the others by the distance transform
/// ([`transformed_distances`]).
fn directed_distances(features: &[bool], queries: &[bool], dims: [usize; 3], spacing: [f64; 3]) -> Vec<f64> {
    let finest = spacing.iter().copied().fold(f64::INFINITY, f64::min);
    let ball = Ball::new(BALL_VOXELS * finest, spacing);
    let Nearby { mut settled, unsettled } = nearby_distances(features, queries, dims, &ball);
    if let Some(rest) = unsettled {
        settled.extend(transformed_distances(features, rest, dims, spacing));
    }
    settled
}

/// [`directed_distances`] by the distance transform, over boxes that provably hold the
/// queries' nearest features, smaller than the volume when the queries are close to
/// features: first the queries' bounding box widened by [`FIRST_MARGIN_MM`], which
/// settles each query no farther from its found feature than from anything outside the
/// box; then, for the rest, their bounding box widened by the largest distance found for
/// them (no nearer feature can lie beyond it).
fn transformed_distances(features: &[bool], queries: Vec<bool>, dims: [usize; 3], spacing: [f64; 3]) -> Vec<f64> {
    let mut out = Vec::new();
    let Some((lo, hi)) = bounding_box(&[&queries], dims) else {
        return out;
    };
    let margin = spacing.map(|s| (FIRST_MARGIN_MM / s).ceil());
    let (blo, bhi) = widened(lo, hi, margin, dims);
    // Features outside the box are at least this far from every query inside.
    let reach = (0..3)
        .flat_map(|a| {
            let below = (blo[a] > 0).then(|| (lo[a] - blo[a] + 1) as f64 * spacing[a]);
            let above = (bhi[a] < dims[a]).then(|| (bhi[a] - hi[a] + 1) as f64 * spacing[a]);
            [below, above]
        })
        .flatten()
        .fold(f64::INFINITY, f64::min);
    let mut unsettled = Vec::new();
    for (at, d) in distances_in_box(features, &queries, dims, spacing, blo, bhi) {
        if d <= reach {
            out.push(d);
        } else {
            unsettled.push((at, d));
        }
    }
    if !unsettled.is_empty() {
        let farthest = unsettled.iter().map(|&(_, d)| d).fold(0.0, f64::max);
        let mut rest = queries;
        rest.fill(false);
        for &(at, _) in &unsettled {
            rest[at] = true;
        }
        let (lo, hi) = bounding_box(&[&rest], dims).expect("unsettled queries are in the mask");
        let (blo, bhi) = widened(lo, hi, spacing.map(|s| (farthest / s).ceil()), dims);
        out.extend(distances_in_box(features, &rest, dims, spacing, blo, bhi).into_iter().map(|(_, d)| d));
    }
    out
}

/// The box `[lo, hi)` widened by `margin` voxels on each side (`+∞` or more than the
/// volume: to the whole axis) and clipped to `dims`; the whole volume when that box
/// would hold more than half of it (cropping would save little).
fn widened(lo: [usize; 3], hi: [usize; 3], margin: [f64; 3], dims: [usize; 3]) -> ([usize; 3], [usize; 3]) {
    let mut blo = [0; 3];
    let mut bhi = dims;
    for a in 0..3 {
        if margin[a] < dims[a] as f64 {
            let m = margin[a] as usize;
            blo[a] = lo[a].saturating_sub(m);
            bhi[a] = (hi[a] + m).min(dims[a]);
        }
    }
    let inside: usize = (0..3).map(|a| bhi[a] - blo[a]).product();
    if 2 * inside > dims.iter().product() {
        ([0; 3], dims)
    } else {
        (blo, bhi)
    }
}

/// [`query_distances_at`] on the box `[lo, hi)` of the volume, with indices in the
/// volume: exact for the queries whose nearest feature lies in the box.
fn distances_in_box(
    features: &[bool],
    queries: &[bool],
    dims: [usize; 3],
    spacing: [f64; 3],
    lo: [usize; 3],
    hi: [usize; 3],
) -> Vec<(usize, f64)> {
    if (lo, hi) == ([0; 3], dims) {
        return query_distances_at(features, queries, dims, spacing);
    }
    let box_dims = [hi[0] - lo[0], hi[1] - lo[1], hi[2] - lo[2]];
    let (f, q) = (crop(features, dims, lo, hi), crop(queries, dims, lo, hi));
    let [bx, by, _] = box_dims;
    let in_volume = |at: usize| {
        let (i, j, k) = (at % bx, (at / bx) % by, at / (bx * by));
        (lo[0] + i) + dims[0] * ((lo[1] + j) + dims[1] * (lo[2] + k))
    };
    query_distances_at(&f, &q, box_dims, spacing).into_iter().map(|(at, d)| (in_volume(at), d)).collect()
}

/// The two directed sets of surface distances between a segmentation and a reference.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SurfaceDistances {
    /// From each surface voxel of the segmentation to the reference surface, mm.
    pub seg_to_ref: Vec<f64>,
    /// From each surface voxel of the reference to the segmentation surface, mm.
    pub ref_to_seg: Vec<f64>,
}

impl SurfaceDistances {
    /// Computes both directed sets. Only the bounding box of the two masks is
    /// transformed: every surface voxel lies in it, so the distances are exact.
    ///
    /// # Panics
    /// When a mask's length is not `dims[0] * dims[1] * dims[2]`.
    pub fn compute(seg: &[bool], reference: &[bool], dims: [usize; 3], spacing: [f64; 3]) -> Self {
        let n: usize = dims.iter().product();
        assert_eq!(seg.len(), n, "segmentation mask and dims disagree");
        assert_eq!(reference.len(), n, "reference mask and dims disagree");
        let Some((lo, hi)) = bounding_box(&[seg, reference], dims) else {
            return Self::default();
        };
        let box_dims = [hi[0] - lo[0], hi[1] - lo[1], hi[2] - lo[2]];
        let (s, r) = (crop(seg, dims, lo, hi), crop(reference, dims, lo, hi));
        let (ss, rs) = rayon::join(|| surface_in_crop(&s, box_dims, dims), || surface_in_crop(&r, box_dims, dims));
        drop((s, r));
        let (seg_to_ref, ref_to_seg) = rayon::join(
            || directed_distances(&rs, &ss, box_dims, spacing),
            || directed_distances(&ss, &rs, box_dims, spacing),
        );
        Self { seg_to_ref, ref_to_seg }
    }

    /// Surface voxels of the segmentation.
    pub fn seg_surface_voxels(&self) -> usize {
        self.seg_to_ref.len()
    }

    /// Surface voxels of the reference.
    pub fn ref_surface_voxels(&self) -> usize {
        self.ref_to_seg.len()
    }

    fn both_empty(&self) -> bool {
        self.seg_to_ref.is_empty() && self.ref_to_seg.is_empty()
    }

    fn one_empty(&self) -> bool {
        self.seg_to_ref.is_empty() != self.ref_to_seg.is_empty()
    }

    /// Hausdorff distance, mm (NaN when both are empty, `+∞` when one is).
    pub fn hausdorff(&self) -> f64 {
        if self.both_empty() {
            return f64::NAN;
        }
        if self.one_empty() {
            return f64::INFINITY;
        }
        self.seg_to_ref.iter().chain(&self.ref_to_seg).copied().fold(0.0, f64::max)
    }

    /// `max(P_q(d(S→R)), P_q(d(R→S)))`, mm, `q` in percent (see the module docs).
    pub fn percentile_hausdorff(&self, q: f64) -> f64 {
        if self.both_empty() {
            return f64::NAN;
        }
        if self.one_empty() {
            return f64::INFINITY;
        }
        percentile(&self.seg_to_ref, q).max(percentile(&self.ref_to_seg, q))
    }

    /// Average symmetric surface distance, mm.
    pub fn average_symmetric(&self) -> f64 {
        if self.both_empty() {
            return f64::NAN;
        }
        if self.one_empty() {
            return f64::INFINITY;
        }
        let n = self.seg_to_ref.len() + self.ref_to_seg.len();
        self.seg_to_ref.iter().chain(&self.ref_to_seg).sum::<f64>() / n as f64
    }

    /// Mean of `d(S→R)` (NaN when the segmentation is empty, `+∞` when only the
    /// reference is).
    pub fn mean_seg_to_ref(&self) -> f64 {
        mean(&self.seg_to_ref)
    }

    /// Mean of `d(R→S)`.
    pub fn mean_ref_to_seg(&self) -> f64 {
        mean(&self.ref_to_seg)
    }

    /// Normalised surface Dice at tolerance `tau` mm.
    pub fn surface_dice(&self, tau: f64) -> f64 {
        if self.both_empty() {
            return f64::NAN;
        }
        let n = self.seg_to_ref.len() + self.ref_to_seg.len();
        let within = self.seg_to_ref.iter().chain(&self.ref_to_seg).filter(|&&d| d <= tau).count();
        within as f64 / n as f64
    }
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        f64::NAN
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// The `q`-th percentile (0..=100) with linear interpolation between order statistics
/// (numpy's default); NaN for no values. Runs in linear time (selection, no sort).
pub fn percentile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let h = (values.len() - 1) as f64 * (q / 100.0).clamp(0.0, 1.0);
    let lo = h.floor() as usize;
    let mut v = values.to_vec();
    let (_, &mut x_lo, upper) = v.select_nth_unstable_by(lo, f64::total_cmp);
    let frac = h - lo as f64;
    if frac == 0.0 || upper.is_empty() {
        return x_lo;
    }
    let x_hi = upper.iter().copied().fold(f64::INFINITY, f64::min);
    if x_hi == x_lo {
        x_lo
    } else {
        x_lo + frac * (x_hi - x_lo)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_interpolates_like_numpy() {
        let v = [4.0, 1.0, 3.0, 2.0, 10.0];
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert_eq!(percentile(&v, 100.0), 10.0);
        assert_eq!(percentile(&v, 50.0), 3.0);
        // numpy.percentile([1,2,3,4,10], 95) = 4 + 0.8 * 6
        assert!((percentile(&v, 95.0) - 8.8).abs() < 1e-12);
        assert_eq!(percentile(&[7.0], 95.0), 7.0);
        assert!(percentile(&[], 95.0).is_nan());
        assert_eq!(percentile(&[1.0, f64::INFINITY], 50.0), f64::INFINITY);
    }

    #[test]
    fn surface_of_a_cube_is_its_shell_and_border_counts_as_background() {
        let dims = [5, 5, 5];
        let mask: Vec<bool> = (0..125)
            .map(|n| n % 5 >= 1 && n % 5 <= 3 && (n / 5) % 5 >= 1 && (n / 5) % 5 <= 3 && n / 25 >= 1 && n / 25 <= 3)
            .collect();
        let s = surface_voxels(&mask, dims);
        assert_eq!(s.iter().filter(|&&x| x).count(), 26, "3×3×3 cube: all but the centre");
        let full = surface_voxels(&[true; 27], [3, 3, 3]);
        assert_eq!(full.iter().filter(|&&x| x).count(), 26, "the volume border is background");
        // A 2D image: the flat axis has no neighbours.
        let flat = surface_voxels(&[true; 9], [3, 3, 1]);
        assert_eq!(flat.iter().filter(|&&x| x).count(), 8);
    }

    /// Directed surface distances by comparing every surface voxel with every other.
    fn brute_force(from: &[bool], to: &[bool], dims: [usize; 3], spacing: [f64; 3]) -> Vec<f64> {
        let coords = |n: usize| [n % dims[0], (n / dims[0]) % dims[1], n / (dims[0] * dims[1])];
        let targets: Vec<[usize; 3]> = (0..to.len()).filter(|&n| to[n]).map(coords).collect();
        let mut out: Vec<f64> = (0..from.len())
            .filter(|&n| from[n])
            .map(|n| {
                let p = coords(n);
                let d2 =
                    |q: &[usize; 3]| (0..3).map(|a| ((p[a] as f64 - q[a] as f64) * spacing[a]).powi(2)).sum::<f64>();
                targets.iter().map(d2).fold(f64::INFINITY, f64::min).sqrt()
            })
            .collect();
        out.sort_by(f64::total_cmp);
        out
    }

    /// A blob of voxels within `radius` voxels of `centre`, each kept with chance
    /// `density` (deterministic).
    fn blob(dims: [usize; 3], centre: [f64; 3], radius: f64, density: f64, seed: u64) -> Vec<bool> {
        let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (0..dims.iter().product::<usize>())
            .map(|n| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let c = [n % dims[0], (n / dims[0]) % dims[1], n / (dims[0] * dims[1])];
                let r2: f64 = (0..3).map(|a| (c[a] as f64 - centre[a]).powi(2)).sum();
                r2 <= radius * radius && (x % 1000) as f64 / 1000.0 < density
            })
            .collect()
    }

    #[test]
    fn distances_match_brute_force_near_and_far() {
        // Near surfaces (settled in the ball), surfaces a few voxels apart (the first
        // box), a far spurious blob (the widened second box) and masks touching the
        // volume border, with anisotropic voxels.
        let dims = [24, 20, 16];
        let spacings = [[1.0, 1.0, 1.0], [0.7, 1.3, 2.9], [2.0, 0.5, 1.0]];
        for (t, &spacing) in spacings.iter().enumerate() {
            let reference = blob(dims, [11.0, 9.0, 7.0], 6.0, 1.0, 1);
            let mut cases = vec![
                blob(dims, [11.5, 9.0, 7.5], 6.2, 1.0, 2),
                blob(dims, [12.0, 10.0, 7.0], 4.0, 0.9, 3 + t as u64),
                blob(dims, [11.0, 9.0, 7.0], 40.0, 1.0, 4),
            ];
            let mut far = cases[0].clone();
            for (f, b) in far.iter_mut().zip(blob(dims, [22.0, 18.0, 14.0], 1.5, 1.0, 5)) {
                *f |= b;
            }
            cases.push(far);
            for (c, seg) in cases.iter().enumerate() {
                let got = SurfaceDistances::compute(seg, &reference, dims, spacing);
                let (ss, rs) = (surface_voxels(seg, dims), surface_voxels(&reference, dims));
                for (mut got, want) in [
                    (got.seg_to_ref.clone(), brute_force(&ss, &rs, dims, spacing)),
                    (got.ref_to_seg.clone(), brute_force(&rs, &ss, dims, spacing)),
                ] {
                    got.sort_by(f64::total_cmp);
                    assert_eq!(got.len(), want.len(), "case {c}, spacing {spacing:?}");
                    for (g, w) in got.iter().zip(&want) {
                        assert!((g - w).abs() <= 1e-9 * w.max(1.0), "case {c}, spacing {spacing:?}: {g} vs {w}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_nearer_feature_outside_the_first_box_is_found() {
        // From the segmentation voxel at (14, 14, 10): the reference voxel (10, 10, 10),
        // √32 mm away, lies in the first box (4 voxels around); (14, 14, 15), 5 mm away
        // and nearer, lies outside it and only in the widened second box.
        let dims = [40, 36, 30];
        let at = |i: usize, j: usize, k: usize| i + dims[0] * (j + dims[1] * k);
        let mut seg = vec![false; dims.iter().product()];
        let mut reference = seg.clone();
        seg[at(14, 14, 10)] = true;
        reference[at(10, 10, 10)] = true;
        reference[at(14, 14, 15)] = true;
        // Voxels in both at opposite corners, so that the boxes are smaller than the volume.
        for m in [&mut seg, &mut reference] {
            m[at(0, 0, 0)] = true;
            m[at(39, 35, 29)] = true;
        }
        let d = SurfaceDistances::compute(&seg, &reference, dims, [1.0; 3]);
        let sorted = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v
        };
        assert_eq!(sorted(d.seg_to_ref), vec![0.0, 0.0, 5.0]);
        assert_eq!(sorted(d.ref_to_seg), vec![0.0, 0.0, 5.0, 32f64.sqrt()]);
    }

    #[test]
    fn surface_of_rows_at_crop_edges_and_flat_axes() {
        // The row-wise surface against the definition, voxel by voxel, on a random mask.
        let dims = [7, 5, 4];
        let mask = blob(dims, [3.0, 2.0, 1.5], 4.0, 0.8, 9);
        let s = surface_voxels(&mask, dims);
        let at = |c: [isize; 3]| {
            (0..3).all(|a| c[a] >= 0 && (c[a] as usize) < dims[a])
                && mask[c[0] as usize + dims[0] * (c[1] as usize + dims[1] * c[2] as usize)]
        };
        for n in 0..mask.len() {
            let c = [(n % 7) as isize, ((n / 7) % 5) as isize, (n / 35) as isize];
            let open = [[1, 0, 0], [0, 1, 0], [0, 0, 1]]
                .iter()
                .any(|o| !at([c[0] + o[0], c[1] + o[1], c[2] + o[2]]) || !at([c[0] - o[0], c[1] - o[1], c[2] - o[2]]));
            assert_eq!(s[n], mask[n] && open, "voxel {n}");
        }
        // A line along i in a volume flat along j and k: only its ends.
        let line = surface_voxels(&[false, true, true, true, true], [5, 1, 1]);
        assert_eq!(line, [false, true, false, false, true]);
    }

    #[test]
    fn single_voxels_and_empty_masks() {
        let dims = [4, 4, 4];
        let mut a = vec![false; 64];
        let mut b = vec![false; 64];
        a[0] = true;
        b[63] = true;
        let d = SurfaceDistances::compute(&a, &b, dims, [1.0, 2.0, 3.0]);
        let want = (9.0f64 + 36.0 + 81.0).sqrt();
        assert!((d.hausdorff() - want).abs() < 1e-12);
        assert!((d.percentile_hausdorff(95.0) - want).abs() < 1e-12);
        assert!((d.average_symmetric() - want).abs() < 1e-12);
        assert_eq!(d.surface_dice(1.0), 0.0);
        let same = SurfaceDistances::compute(&a, &a, dims, [1.0; 3]);
        assert_eq!((same.hausdorff(), same.surface_dice(0.0)), (0.0, 1.0));
        let none = vec![false; 64];
        let one = SurfaceDistances::compute(&a, &none, dims, [1.0; 3]);
        assert_eq!(one.hausdorff(), f64::INFINITY);
        assert_eq!(one.percentile_hausdorff(95.0), f64::INFINITY);
        assert_eq!(one.average_symmetric(), f64::INFINITY);
        assert_eq!(one.surface_dice(5.0), 0.0);
        let neither = SurfaceDistances::compute(&none, &none, dims, [1.0; 3]);
        assert!(neither.hausdorff().is_nan() && neither.average_symmetric().is_nan());
        assert!(neither.surface_dice(1.0).is_nan() && neither.percentile_hausdorff(95.0).is_nan());
    }
}
