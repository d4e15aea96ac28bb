//! Cubic B-spline interpolation of images (NiftyNet's `interp_order = 3`).
//!
//! The volume is first turned into B-spline coefficients (the interpolating prefilter of
//! Unser, Aldroubi and Eden 1991, run along `i`, `j` and `k` with mirror boundaries, the
//! signal reflected about its edge voxels), then each output voxel is the sum of the
//! `4 × 4 × 4` coefficients around its position weighted by the cubic B-spline. The spline
//! passes through every input value, and reproduces polynomials up to degree 3 away from
//! the edges (the prefilter's boundary effect decays as `0.268^d` with the distance `d` in
//! voxels). Positions are clamped to the volume as [`super::resample`]'s other modes are.

use rayon::prelude::*;

use super::{Grid, PreprocessError};

/// The pole of the cubic B-spline prefilter, `√3 − 2`.
const POLE: f64 = -0.267_949_192_431_122_7;

/// Terms of the causal initialisation sum before `POLE^k` is below `1e-15`.
const HORIZON: usize = 27;

/// The mirror image of index `i` in `0..n` (reflection about the edge voxels).
#[inline]
fn mirror(i: isize, n: usize) -> usize {
    if n == 1 {
        return 0;
    }
    let period = 2 * (n as isize - 1);
    let m = i.rem_euclid(period);
    (if m >= n as isize { period - m } else { m }) as usize
}

/// Replaces `line` by its cubic B-spline coefficients (mirror boundaries): afterwards
/// `(c[x−1] + 4c[x] + c[x+1]) / 6 = s[x]` at every `x`.
pub(crate) fn prefilter(line: &mut [f64]) {
    let n = line.len();
    if n < 2 {
        return;
    }
    let gain = (1.0 - POLE) * (1.0 - 1.0 / POLE);
    for v in line.iter_mut() {
        *v *= gain;
    }
    // Causal initialisation: Σ z^k s[k] over the mirrored signal.
    let first = if n > HORIZON {
        let mut zk = 1.0;
        let mut sum = 0.0;
        for v in &line[..HORIZON] {
            sum += zk * v;
            zk *= POLE;
        }
        sum
    } else {
        let z2n = POLE.powi(2 * n as i32 - 2);
        let mut zk = POLE;
        let mut zr = POLE.powi(2 * n as i32 - 3);
        let mut sum = line[0] + POLE.powi(n as i32 - 1) * line[n - 1];
        for v in &line[1..n - 1] {
            sum += (zk + zr) * v;
            zk *= POLE;
            zr /= POLE;
        }
        sum / (1.0 - z2n)
    };
    line[0] = first;
    for x in 1..n {
        line[x] += POLE * line[x - 1];
    }
    line[n - 1] = POLE / (POLE * POLE - 1.0) * (line[n - 1] + POLE * line[n - 2]);
    for x in (0..n - 1).rev() {
        line[x] = POLE * (line[x + 1] - line[x]);
    }
}

/// The four cubic B-spline weights of the coefficients at `floor(p) − 1 ..= floor(p) + 2`
/// for the fraction `t = p − floor(p)`.
#[inline]
pub(crate) fn weights(t: f64) -> [f64; 4] {
    let u = 1.0 - t;
    let t2 = t * t;
    let t3 = t2 * t;
    [u * u * u / 6.0, (4.0 - 6.0 * t2 + 3.0 * t3) / 6.0, (1.0 + 3.0 * t + 3.0 * t2 - 3.0 * t3) / 6.0, t3 / 6.0]
}

/// The coefficient volume of one channel (`i` fastest), prefiltered along each axis.
fn coefficients(channel: &[f32], dims: [usize; 3]) -> Result<Vec<f64>, PreprocessError> {
    let [n0, n1, n2] = dims;
    let mut c = crate::budget::try_with_capacity(channel.len(), &|| {
        format!("cubic B-spline coefficients of {} voxels", channel.len())
    })?;
    c.extend(channel.iter().map(|&v| f64::from(v)));
    c.par_chunks_mut(n0).for_each(prefilter);
    // Along j and k: each k-slice holds whole j lines; k lines are gathered per (i, j).
    c.par_chunks_mut(n0 * n1).for_each(|slice| {
        let mut line = vec![0.0; n1];
        for i in 0..n0 {
            for (j, v) in line.iter_mut().enumerate() {
                *v = slice[i + j * n0];
            }
            prefilter(&mut line);
            for (j, v) in line.iter().enumerate() {
                slice[i + j * n0] = *v;
            }
        }
    });
    let plane = n0 * n1;
    let mut line = vec![0.0; n2];
    for o in 0..plane {
        for (k, v) in line.iter_mut().enumerate() {
            *v = c[o + k * plane];
        }
        prefilter(&mut line);
        for (k, v) in line.iter().enumerate() {
            c[o + k * plane] = *v;
        }
    }
    Ok(c)
}

/// The spline's value at voxel position `p` (clamped into the volume).
#[inline]
fn value_at(c: &[f64], dims: [usize; 3], p: [f64; 3]) -> f64 {
    let mut base = [0isize; 3];
    let mut w = [[0.0; 4]; 3];
    for a in 0..3 {
        let last = (dims[a] - 1) as f64;
        let q = if p[a].is_nan() { 0.0 } else { p[a].clamp(0.0, last) };
        let f = q.floor();
        base[a] = f as isize - 1;
        w[a] = weights(q - f);
    }
    let [n0, n1, n2] = dims;
    let mut sum = 0.0;
    for (dk, wk) in w[2].iter().enumerate() {
        let k = mirror(base[2] + dk as isize, n2) * n0 * n1;
        for (dj, wj) in w[1].iter().enumerate() {
            let j = mirror(base[1] + dj as isize, n1) * n0;
            let mut row = 0.0;
            for (di, wi) in w[0].iter().enumerate() {
                row += wi * c[mirror(base[0] + di as isize, n0) + j + k];
            }
            sum += wj * wk * row;
        }
    }
    sum
}

/// Samples every output voxel of `to` at input position `map · (i, j, k, 1)` on the cubic
/// B-spline through `data` (on `from`).
///
/// # Shapes
/// `data`: `channels ×` `from.dims`; returns `channels ×` `to.dims`.
///
/// # Errors
/// [`PreprocessError::SizeOverflow`] / [`PreprocessError::Allocation`].
pub(crate) fn sample(
    data: &[f32],
    channels: usize,
    from: &Grid,
    to: &Grid,
    map: &[[f64; 4]; 4],
) -> Result<Vec<f32>, PreprocessError> {
    let in_voxels = from.voxels();
    let [m0, m1, m2] = to.dims;
    let slice = m0 * m1;
    let mut out = super::resample::output_buffer(channels, to.dims)?;
    for (c, dst) in out.chunks_mut(slice * m2).enumerate() {
        let coeff = coefficients(&data[c * in_voxels..(c + 1) * in_voxels], from.dims)?;
        dst.par_chunks_mut(slice).enumerate().for_each(|(k, plane)| {
            for j in 0..m1 {
                for i in 0..m0 {
                    let (x, y, z) = (i as f64, j as f64, k as f64);
                    let p: [f64; 3] =
                        std::array::from_fn(|r| map[r][0] * x + map[r][1] * y + map[r][2] * z + map[r][3]);
                    plane[j * m0 + i] = value_at(&coeff, from.dims, p) as f32;
                }
            }
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preprocess::IDENTITY;

    /// Evaluates the 1-D spline of `samples` at `p` (the 3-D code on an `n × 1 × 1` volume).
    fn spline_1d(samples: &[f64], p: f64) -> f64 {
        let data: Vec<f32> = samples.iter().map(|&v| v as f32).collect();
        let c = coefficients(&data, [samples.len(), 1, 1]).unwrap();
        value_at(&c, [samples.len(), 1, 1], [p, 0.0, 0.0])
    }

    #[test]
    fn preprocess_bspline_weights_sum_to_one_and_match_hand_values() {
        // t = 0.5: (1/48, 23/48, 23/48, 1/48).
        let w = weights(0.5);
        for (got, want) in w.iter().zip([1.0 / 48.0, 23.0 / 48.0, 23.0 / 48.0, 1.0 / 48.0]) {
            assert!((got - want).abs() < 1e-15, "{w:?}");
        }
        for t in [0.0, 0.1, 0.77] {
            assert!((weights(t).iter().sum::<f64>() - 1.0).abs() < 1e-15);
        }
        assert_eq!(weights(0.0), [1.0 / 6.0, 4.0 / 6.0, 1.0 / 6.0, 0.0]);
    }

    #[test]
    fn preprocess_bspline_hand_computed_case() {
        // The coefficients c of s = (0, 6, 0) satisfy (c[x−1] + 4c[x] + c[x+1]) / 6 = s[x].
        // Solving by hand: with c0 = c2 = a (symmetry) and mirror c[−1] = c[1] = b:
        //   x = 0: (b + 4a + b)/6 = 0  →  b = −2a
        //   x = 1: (a + 4b + a)/6 = 6  →  2a − 8a = 36 → a = −6, b = 12.
        let mut line = [0.0, 6.0, 0.0];
        prefilter(&mut line);
        for (got, want) in line.iter().zip([-6.0, 12.0, -6.0]) {
            assert!((got - want).abs() < 1e-12, "{line:?}");
        }
        // Half-way between 0 and 1: (c[−1] + 23c[0] + 23c[1] + c[2]) / 48
        //   = (12 − 138 + 276 − 6) / 48 = 3.
        assert!((spline_1d(&[0.0, 6.0, 0.0], 0.5) - 3.0).abs() < 1e-6);
        // Interpolating: the samples themselves come back.
        for (x, s) in [0.0, 6.0, 0.0].iter().enumerate() {
            assert!((spline_1d(&[0.0, 6.0, 0.0], x as f64) - s).abs() < 1e-6);
        }
    }

    #[test]
    fn preprocess_bspline_reproduces_cubics_and_ramps_in_the_interior() {
        let n = 64;
        let cubic = |x: f64| 0.001 * (x - 20.0).powi(3) - 0.05 * x * x + 2.0 * x - 7.0;
        let samples: Vec<f64> = (0..n).map(|x| cubic(x as f64)).collect();
        let ramp: Vec<f64> = (0..n).map(|x| 3.0 * x as f64 - 5.0).collect();
        for p in [20.25, 31.5, 40.75, 43.1] {
            let rel = (spline_1d(&samples, p) - cubic(p)).abs() / cubic(p).abs().max(1.0);
            assert!(rel < 1e-5, "cubic at {p}: {} vs {}", spline_1d(&samples, p), cubic(p));
            assert!((spline_1d(&ramp, p) - (3.0 * p - 5.0)).abs() < 1e-4, "ramp at {p}");
        }
    }

    #[test]
    fn preprocess_bspline_3d_shift_of_a_separable_cubic() {
        // f(i, j, k) = g(i) + g(j) · g(k)/100 sampled on 24³, resampled half a voxel on.
        let n = 24;
        let g = |x: f64| 0.01 * x * x * x - 0.2 * x * x + x;
        let f = |p: [f64; 3]| g(p[0]) + g(p[1]) * g(p[2]) / 100.0;
        let mut data = Vec::with_capacity(n * n * n);
        for k in 0..n {
            for j in 0..n {
                for i in 0..n {
                    data.push(f([i as f64, j as f64, k as f64]) as f32);
                }
            }
        }
        let grid = Grid::from_dims([n, n, n]);
        let mut map = IDENTITY;
        for r in 0..3 {
            map[r][3] = 0.5;
        }
        let out = sample(&data, 1, &grid, &grid, &map).unwrap();
        for p in [[10usize, 11, 12], [8, 14, 9]] {
            let got = f64::from(out[p[0] + p[1] * n + p[2] * n * n]);
            let want = f([p[0] as f64 + 0.5, p[1] as f64 + 0.5, p[2] as f64 + 0.5]);
            assert!((got - want).abs() < 1e-3 * want.abs().max(1.0), "{p:?}: {got} vs {want}");
        }
    }
}
