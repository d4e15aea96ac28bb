//! Voxel-to-world affines of a header, as nibabel chooses them, and back.
//!
//! - [`best_affine`]: the sform when `sform_code > 0`, else the qform when
//!   `qform_code > 0`, else nibabel's fall-back from the voxel size (x flipped, origin at
//!   the array centre, or at SPM's `origin` field for Analyze).
//! - [`qform`]: the quaternion form as `nifti1_io` computes it: `qfac` is −1 when
//!   `pixdim[0] < 0` and +1 otherwise, a non-positive voxel size counts as 1, and a
//!   quaternion with `b² + c² + d² > 1` is renormalised. Odd values never panic.
//! - [`quaternion_of`]: the nearest quaternion form of any affine (for writing a qform
//!   that agrees with an sform).
//! - [`axcodes`]: nibabel's `aff2axcodes` (e.g. `RAS`, `LPS`).

use super::header::{Format, NiftiHeader};

/// A 4×4 voxel-to-world matrix, row-major: `world = A · (i, j, k, 1)`.
pub type Affine = [[f64; 4]; 4];

type Mat3 = [[f64; 3]; 3];

/// Which header fields an affine came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AffineSource {
    /// `srow_x/y/z` (sform_code > 0).
    Sform,
    /// The quaternion, `qoffset_*` and `pixdim` (qform_code > 0, sform_code ≤ 0).
    Qform,
    /// Neither code set (or Analyze): nibabel's convention from `pixdim`.
    Pixdim,
}

impl std::fmt::Display for AffineSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AffineSource::Sform => "sform",
            AffineSource::Qform => "qform",
            AffineSource::Pixdim => "pixdim",
        })
    }
}

/// The name of a `qform_code`/`sform_code` value.
pub fn xform_name(code: i32) -> &'static str {
    match code {
        0 => "unknown",
        1 => "scanner",
        2 => "aligned",
        3 => "talairach",
        4 => "mni",
        5 => "template",
        _ => "invalid",
    }
}

/// The affine nibabel uses for this header, and where it came from.
pub fn best_affine(h: &NiftiHeader) -> (Affine, AffineSource) {
    if h.format != Format::Analyze75 && h.sform_code > 0 {
        (sform(h), AffineSource::Sform)
    } else if h.format != Format::Analyze75 && h.qform_code > 0 {
        (qform(h), AffineSource::Qform)
    } else {
        (base_affine(h), AffineSource::Pixdim)
    }
}

/// The header fields the affine of `source` is computed from, by name, with their values.
fn affine_fields(h: &NiftiHeader, source: AffineSource) -> Vec<(String, f64)> {
    let mut fields = Vec::new();
    match source {
        AffineSource::Sform => {
            for (row, values) in [("srow_x", h.srow_x), ("srow_y", h.srow_y), ("srow_z", h.srow_z)] {
                fields.extend(values.iter().enumerate().map(|(c, &v)| (format!("{row}[{c}]"), v)));
            }
        }
        AffineSource::Qform => {
            fields.extend(
                [
                    ("quatern_b", h.quatern_b),
                    ("quatern_c", h.quatern_c),
                    ("quatern_d", h.quatern_d),
                    ("qoffset_x", h.qoffset_x),
                    ("qoffset_y", h.qoffset_y),
                    ("qoffset_z", h.qoffset_z),
                ]
                .map(|(name, v)| (name.to_owned(), v)),
            );
            fields.extend((1..=3).map(|i| (format!("pixdim[{i}]"), h.pixdim[i])));
        }
        AffineSource::Pixdim => {
            let ndim = h.dim[0].clamp(0, 3) as usize;
            fields.extend((1..=ndim).map(|i| (format!("pixdim[{i}]"), h.pixdim[i])));
        }
    }
    fields
}

/// Why the affine nibabel would use for this header (see [`best_affine`]) cannot be
/// used: the fields it comes from that are NaN or infinite, named with their values
/// (`"the sform is not finite: srow_x[0] = NaN (expected finite values)"`), or an
/// affine that overflows from finite fields. `None` when it is finite.
pub fn nonfinite_affine(h: &NiftiHeader) -> Option<String> {
    let (affine, source) = best_affine(h);
    let bad: Vec<String> = affine_fields(h, source)
        .into_iter()
        .filter(|(_, v)| !v.is_finite())
        .map(|(name, v)| format!("{name} = {}", if v.is_nan() { "NaN".to_owned() } else { v.to_string() }))
        .collect();
    if !bad.is_empty() {
        return Some(format!("the {source} is not finite: {} (expected finite values)", bad.join(", ")));
    }
    if affine.iter().flatten().any(|v| !v.is_finite()) {
        return Some(format!("the affine computed from the {source} overflows to non-finite values: {affine:?}"));
    }
    None
}

/// The sform rows as an affine (whatever sform_code says).
pub fn sform(h: &NiftiHeader) -> Affine {
    [h.srow_x, h.srow_y, h.srow_z, [0.0, 0.0, 0.0, 1.0]]
}

/// The parameters of a NIfTI quaternion form.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quaternion {
    /// `quatern_b`, `quatern_c`, `quatern_d` (the rotation; `a` is implied, ≥ 0).
    pub bcd: [f64; 3],
    /// `qoffset_x/y/z`.
    pub offset: [f64; 3],
    /// `pixdim[1..=3]`.
    pub pixdim: [f64; 3],
    /// `pixdim[0]`: −1 flips the third axis, +1 does not.
    pub qfac: f64,
}

/// The qform of a header (whatever qform_code says), as `nifti1_io` computes it.
pub fn qform(h: &NiftiHeader) -> Affine {
    quaternion_affine(&Quaternion {
        bcd: [h.quatern_b, h.quatern_c, h.quatern_d],
        offset: [h.qoffset_x, h.qoffset_y, h.qoffset_z],
        pixdim: [h.pixdim[1], h.pixdim[2], h.pixdim[3]],
        qfac: h.pixdim[0],
    })
}

/// The affine of a quaternion form (`nifti_quatern_to_mat44`): qfac < 0 means −1, else
/// +1; a voxel size that is not positive counts as 1; `b² + c² + d²` above 1 is
/// renormalised with `a = 0`.
pub fn quaternion_affine(q: &Quaternion) -> Affine {
    let [mut b, mut c, mut d] = q.bcd;
    let n2 = b * b + c * c + d * d;
    let a = if 1.0 - n2 < 1e-7 {
        let n = n2.sqrt();
        if n > 0.0 && n.is_finite() {
            b /= n;
            c /= n;
            d /= n;
        }
        0.0
    } else {
        (1.0 - n2).sqrt()
    };
    let size = |v: f64| if v > 0.0 { v } else { 1.0 };
    let qfac = if q.qfac < 0.0 { -1.0 } else { 1.0 };
    let z = [size(q.pixdim[0]), size(q.pixdim[1]), qfac * size(q.pixdim[2])];
    let r = [
        [a * a + b * b - c * c - d * d, 2.0 * (b * c - a * d), 2.0 * (b * d + a * c)],
        [2.0 * (b * c + a * d), a * a + c * c - b * b - d * d, 2.0 * (c * d - a * b)],
        [2.0 * (b * d - a * c), 2.0 * (c * d + a * b), a * a + d * d - c * c - b * b],
    ];
    let mut out = identity();
    for i in 0..3 {
        for j in 0..3 {
            out[i][j] = r[i][j] * z[j];
        }
        out[i][3] = q.offset[i];
    }
    out
}

/// nibabel's affine for a header without usable sform/qform: voxel sizes on the
/// diagonal, x flipped, and the origin at the array centre — or, for Analyze, at SPM's
/// 1-based `origin` when it is set and within (−dim, 2·dim).
pub fn base_affine(h: &NiftiHeader) -> Affine {
    let ndim = h.dim[0].clamp(0, 7) as usize;
    let shape: [f64; 3] = std::array::from_fn(|i| if i < ndim { h.dim[i + 1] as f64 } else { 1.0 });
    let mut zooms: [f64; 3] = std::array::from_fn(|i| if i < ndim { h.pixdim[i + 1] } else { 1.0 });
    zooms[0] = -zooms[0];
    let mut origin: [f64; 3] = std::array::from_fn(|i| (shape[i] - 1.0) / 2.0);
    if h.format == Format::Analyze75 {
        let o = h.spm_origin.map(f64::from);
        let dims: [f64; 3] = std::array::from_fn(|i| h.dim[i + 1] as f64);
        let usable = o.iter().any(|&v| v != 0.0) && (0..3).all(|i| o[i] > -dims[i] && o[i] < 2.0 * dims[i]);
        if usable {
            origin = o.map(|v| v - 1.0);
        }
    }
    let mut out = identity();
    for i in 0..3 {
        out[i][i] = zooms[i];
        out[i][3] = -origin[i] * zooms[i];
    }
    out
}

/// The identity affine.
pub fn identity() -> Affine {
    [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
}

/// The Euclidean norms of the affine's first three columns: the voxel size it implies.
pub fn column_norms(a: &Affine) -> [f64; 3] {
    std::array::from_fn(|c| (0..3).map(|r| a[r][c] * a[r][c]).sum::<f64>().sqrt())
}

/// The quaternion form closest to an affine (as `nifti_mat44_to_quatern`): voxel sizes
/// are the column norms (1 for a zero column), the rotation is the orthogonal polar
/// factor of the normalised columns (which removes any shear), and `qfac` is −1 when
/// that factor is a reflection. The offset is the affine's translation. Never panics;
/// a non-finite affine gives the identity rotation.
pub fn quaternion_of(a: &Affine) -> Quaternion {
    let norms = column_norms(a);
    let pixdim = norms.map(|n| if n > 0.0 && n.is_finite() { n } else { 1.0 });
    let m: Mat3 = std::array::from_fn(|r| std::array::from_fn(|c| a[r][c] / pixdim[c]));
    let mut q = if m.iter().flatten().all(|v| v.is_finite()) { polar(&m, true) } else { mat3_identity() };
    let qfac = if det3(&q) < 0.0 {
        for row in &mut q {
            row[2] = -row[2];
        }
        -1.0
    } else {
        1.0
    };
    Quaternion { bcd: rotation_quaternion(&q), offset: [a[0][3], a[1][3], a[2][3]], pixdim, qfac }
}

/// `(b, c, d)` of the unit quaternion (with `a ≥ 0`) of a proper rotation matrix.
fn rotation_quaternion(r: &Mat3) -> [f64; 3] {
    let trace = r[0][0] + r[1][1] + r[2][2];
    let (a, b, c, d) = if trace > 0.0 {
        let s = 2.0 * (trace + 1.0).sqrt();
        (0.25 * s, (r[2][1] - r[1][2]) / s, (r[0][2] - r[2][0]) / s, (r[1][0] - r[0][1]) / s)
    } else if r[0][0] > r[1][1] && r[0][0] > r[2][2] {
        let s = 2.0 * (1.0 + r[0][0] - r[1][1] - r[2][2]).max(0.0).sqrt();
        ((r[2][1] - r[1][2]) / s, 0.25 * s, (r[0][1] + r[1][0]) / s, (r[0][2] + r[2][0]) / s)
    } else if r[1][1] > r[2][2] {
        let s = 2.0 * (1.0 + r[1][1] - r[0][0] - r[2][2]).max(0.0).sqrt();
        ((r[0][2] - r[2][0]) / s, (r[0][1] + r[1][0]) / s, 0.25 * s, (r[1][2] + r[2][1]) / s)
    } else {
        let s = 2.0 * (1.0 + r[2][2] - r[0][0] - r[1][1]).max(0.0).sqrt();
        ((r[1][0] - r[0][1]) / s, (r[0][2] + r[2][0]) / s, (r[1][2] + r[2][1]) / s, 0.25 * s)
    };
    let sign = if a < 0.0 { -1.0 } else { 1.0 };
    let out = [sign * b, sign * c, sign * d];
    if out.iter().all(|v| v.is_finite()) {
        out
    } else {
        [0.0; 3]
    }
}

/// Axis codes of an affine, as nibabel's `aff2axcodes`: for each voxel axis, the world
/// axis it moves along most (`R`/`L`, `A`/`P`, `S`/`I` by direction), after removing
/// zoom and shear; `None` for an axis the affine collapses.
pub fn axcodes(a: &Affine) -> [Option<char>; 3] {
    const LABELS: [(char, char); 3] = [('L', 'R'), ('P', 'A'), ('I', 'S')];
    let norms = column_norms(a);
    let zooms = norms.map(|n| if n == 0.0 { 1.0 } else { n });
    let rs: Mat3 = std::array::from_fn(|r| std::array::from_fn(|c| a[r][c] / zooms[c]));
    if !rs.iter().flatten().all(|v| v.is_finite()) {
        return [None; 3];
    }
    let mut r = polar(&rs, false);
    let mut out = [None; 3];
    for (input, code) in out.iter_mut().enumerate() {
        let col = [r[0][input], r[1][input], r[2][input]];
        if col.iter().all(|v| v.abs() <= 1e-8) {
            continue;
        }
        let world = (0..3).fold(0, |best, i| if col[i].abs() > col[best].abs() { i } else { best });
        *code = Some(if col[world] < 0.0 { LABELS[world].0 } else { LABELS[world].1 });
        r[world] = [0.0; 3];
    }
    out
}

/// [`axcodes`] as text, `?` for a collapsed axis (`"RAS"`, `"LPS"`).
pub fn axcodes_string(a: &Affine) -> String {
    axcodes(a).iter().map(|c| c.unwrap_or('?')).collect()
}

fn mat3_identity() -> Mat3 {
    [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
}

fn det3(m: &Mat3) -> f64 {
    m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
}

fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]
}

fn normalised(v: [f64; 3]) -> [f64; 3] {
    let n = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    if n > 0.0 {
        v.map(|x| x / n)
    } else {
        v
    }
}

/// Eigen-decomposition of a symmetric 3×3 matrix by cyclic Jacobi rotations:
/// eigenvalues and the eigenvectors as the columns of the second matrix.
fn symmetric_eigen(s: &Mat3) -> ([f64; 3], Mat3) {
    let mut a = *s;
    let mut v = mat3_identity();
    for _ in 0..64 {
        let off = a[0][1] * a[0][1] + a[0][2] * a[0][2] + a[1][2] * a[1][2];
        let diag = a[0][0] * a[0][0] + a[1][1] * a[1][1] + a[2][2] * a[2][2];
        if off <= f64::EPSILON * f64::EPSILON * diag || off < f64::MIN_POSITIVE {
            break;
        }
        for (p, q) in [(0, 1), (0, 2), (1, 2)] {
            if a[p][q] == 0.0 {
                continue;
            }
            let theta = (a[q][q] - a[p][p]) / (2.0 * a[p][q]);
            let t = if theta.abs() > 1e150 {
                0.5 / theta
            } else {
                theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt())
            };
            let c = 1.0 / (t * t + 1.0).sqrt();
            let s = t * c;
            for row in &mut a {
                let (akp, akq) = (row[p], row[q]);
                row[p] = c * akp - s * akq;
                row[q] = s * akp + c * akq;
            }
            let (row_p, row_q) = (a[p], a[q]);
            a[p] = std::array::from_fn(|k| c * row_p[k] - s * row_q[k]);
            a[q] = std::array::from_fn(|k| s * row_p[k] + c * row_q[k]);
            for row in &mut v {
                let (vp, vq) = (row[p], row[q]);
                row[p] = c * vp - s * vq;
                row[q] = s * vp + c * vq;
            }
        }
    }
    ([a[0][0], a[1][1], a[2][2]], v)
}

/// The orthogonal polar factor `U Vᵀ` of `m = U S Vᵀ`, over the singular values above
/// a relative tolerance (as nibabel's `io_orientation` does). With `complete`, the
/// singular directions are filled in so that the result is orthogonal even for a
/// rank-deficient `m`.
fn polar(m: &Mat3, complete: bool) -> Mat3 {
    let mut mtm = [[0.0; 3]; 3];
    for i in 0..3 {
        for j in 0..3 {
            mtm[i][j] = (0..3).map(|k| m[k][i] * m[k][j]).sum();
        }
    }
    let (values, v) = symmetric_eigen(&mtm);
    let sv = values.map(|l| l.max(0.0).sqrt());
    let smax = sv.iter().copied().fold(0.0, f64::max);
    let tol = smax * 1e-6;
    let vcol = |i: usize| [v[0][i], v[1][i], v[2][i]];
    let mut u: [Option<[f64; 3]>; 3] = [None; 3];
    for (i, ui) in u.iter_mut().enumerate() {
        if smax > 0.0 && sv[i] > tol {
            let vi = vcol(i);
            *ui = Some(std::array::from_fn(|r| (0..3).map(|k| m[r][k] * vi[k]).sum::<f64>() / sv[i]));
        }
    }
    if complete {
        let kept: Vec<usize> = (0..3).filter(|&i| u[i].is_some()).collect();
        match kept.len() {
            0 => u = [Some([1.0, 0.0, 0.0]), Some([0.0, 1.0, 0.0]), Some([0.0, 0.0, 1.0])],
            1 => {
                let u0 = u[kept[0]].unwrap_or([1.0, 0.0, 0.0]);
                let least = (0..3).fold(0, |best, i| if u0[i].abs() < u0[best].abs() { i } else { best });
                let mut e = [0.0; 3];
                e[least] = 1.0;
                let u1 = normalised(cross(u0, e));
                let u2 = cross(u0, u1);
                let missing: Vec<usize> = (0..3).filter(|i| !kept.contains(i)).collect();
                u[missing[0]] = Some(u1);
                u[missing[1]] = Some(u2);
            }
            2 => {
                let (a, b) = (u[kept[0]].unwrap_or_default(), u[kept[1]].unwrap_or_default());
                let missing = (0..3).find(|i| !kept.contains(i)).unwrap_or(2);
                u[missing] = Some(normalised(cross(a, b)));
            }
            _ => {}
        }
    }
    let mut out = [[0.0; 3]; 3];
    for (i, ui) in u.iter().enumerate() {
        if let Some(ui) = ui {
            let vi = vcol(i);
            for (row, &x) in out.iter_mut().zip(ui) {
                for (o, &y) in row.iter_mut().zip(&vi) {
                    *o += x * y;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: &Affine, b: &Affine, tol: f64) -> bool {
        a.iter().flatten().zip(b.iter().flatten()).all(|(x, y)| (x - y).abs() <= tol)
    }

    fn header_with(edit: impl FnOnce(&mut NiftiHeader)) -> NiftiHeader {
        let mut h = NiftiHeader::default();
        h.dim = [3, 4, 4, 4, 1, 1, 1, 1];
        h.pixdim = [1.0, 2.0, 2.0, 2.0, 1.0, 1.0, 1.0, 1.0];
        edit(&mut h);
        h
    }

    #[test]
    fn a_nonfinite_field_of_the_chosen_affine_is_named() {
        let finite = header_with(|h| {
            h.sform_code = 1;
            h.srow_x = [2.0, 0.0, 0.0, 1.0];
            h.srow_y = [0.0, 2.0, 0.0, 1.0];
            h.srow_z = [0.0, 0.0, 2.0, 1.0];
        });
        assert_eq!(nonfinite_affine(&finite), None);
        let mut nan = finite.clone();
        nan.srow_x[0] = f64::NAN;
        nan.srow_z[3] = f64::NEG_INFINITY;
        assert_eq!(
            nonfinite_affine(&nan).unwrap(),
            "the sform is not finite: srow_x[0] = NaN, srow_z[3] = -inf (expected finite values)"
        );
        // A field the chosen affine does not use is not a problem.
        let mut unused = finite.clone();
        unused.quatern_b = f64::NAN;
        assert_eq!(nonfinite_affine(&unused), None);
        let qform = header_with(|h| {
            h.qform_code = 1;
            h.quatern_b = f64::NAN;
            h.qoffset_y = f64::INFINITY;
        });
        assert_eq!(
            nonfinite_affine(&qform).unwrap(),
            "the qform is not finite: quatern_b = NaN, qoffset_y = inf (expected finite values)"
        );
        let pixdim = header_with(|h| h.pixdim[2] = f64::NAN);
        assert_eq!(
            nonfinite_affine(&pixdim).unwrap(),
            "the pixdim is not finite: pixdim[2] = NaN (expected finite values)"
        );
        // The origin at the array centre, 1.5 voxels of f64::MAX mm, is infinite.
        let overflow = header_with(|h| h.pixdim[1] = f64::MAX);
        assert!(nonfinite_affine(&overflow).unwrap().contains("overflows"), "{:?}", nonfinite_affine(&overflow));
    }

    #[test]
    fn qfac_minus_one_flips_the_third_axis() {
        // nibabel's anatomical.nii: quaternion (0, 1, 0), qfac −1, 2 mm: LAS.
        let q = Quaternion { bcd: [0.0, 1.0, 0.0], offset: [32.0, -40.0, -16.0], pixdim: [2.0; 3], qfac: -1.0 };
        let want = [[-2.0, 0.0, 0.0, 32.0], [0.0, 2.0, 0.0, -40.0], [0.0, 0.0, 2.0, -16.0], [0.0, 0.0, 0.0, 1.0]];
        assert!(close(&quaternion_affine(&q), &want, 1e-12));
        assert_eq!(axcodes_string(&want), "LAS");
        let back = quaternion_of(&want);
        assert_eq!(back.qfac, -1.0);
        assert!(close(&quaternion_affine(&back), &want, 1e-12), "{back:?}");
    }

    #[test]
    fn odd_quaternions_do_not_panic() {
        for (bcd, qfac, pixdim) in [
            ([0.9, 0.9, 0.9], 0.0, [1.0, 1.0, 1.0]),
            ([f64::NAN, 0.0, 0.0], 7.0, [0.0, -1.0, f64::NAN]),
            ([0.0, 0.0, 0.0], -3.0, [f64::INFINITY, 1.0, 1.0]),
        ] {
            let _ = quaternion_affine(&Quaternion { bcd, offset: [0.0; 3], pixdim, qfac });
        }
        let a = quaternion_affine(&Quaternion { bcd: [0.9, 0.9, 0.9], offset: [0.0; 3], pixdim: [1.0; 3], qfac: 0.0 });
        // Renormalised: a proper rotation with unit columns.
        assert!(column_norms(&a).iter().all(|n| (n - 1.0).abs() < 1e-12));
    }

    #[test]
    fn oblique_and_sheared_affines_round_trip_through_a_quaternion() {
        let q = Quaternion {
            bcd: [-0.004917616955935955, -0.30487439036369324, 0.9523785710334778],
            offset: [118.76, 132.19, 22.82],
            pixdim: [4.0, 4.0, 5.0],
            qfac: 1.0,
        };
        let a = quaternion_affine(&q);
        assert_eq!(axcodes_string(&a), "LPS");
        let back = quaternion_of(&a);
        assert!(close(&quaternion_affine(&back), &a, 1e-9), "{back:?} vs {q:?}");
        // A sheared affine: the quaternion keeps the voxel sizes and the nearest rotation.
        let sheared =
            [[2.0, 0.0, 30.0, -123.4], [0.0, 2.0, 30.0, -102.9], [0.0, 0.0, 32.0, -38.8], [0.0, 0.0, 0.0, 1.0]];
        let q = quaternion_of(&sheared);
        assert!((q.pixdim[2] - (900.0f64 + 900.0 + 1024.0).sqrt()).abs() < 1e-9);
        assert_eq!(axcodes_string(&sheared), "RAS");
        // Degenerate affines give an orthogonal rotation, never a panic.
        let flat = [[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]];
        let q = quaternion_of(&flat);
        let r = quaternion_affine(&q);
        assert!(column_norms(&r).iter().all(|n| (n - 1.0).abs() < 1e-9), "{r:?}");
        assert_eq!(axcodes(&flat), [Some('R'), None, None]);
    }

    #[test]
    fn permuted_axes_give_permuted_codes() {
        // dipy small_64D: i → −y, j → −x.
        let a =
            [[0.0, -2.0, 0.0, 20.0], [-1.94, 0.0, -0.4872, 25.17], [-0.4872, 0.0, 1.94, 12.32], [0.0, 0.0, 0.0, 1.0]];
        assert_eq!(axcodes_string(&a), "PLS");
    }

    #[test]
    fn analyze_base_affine_uses_the_spm_origin_when_sensible() {
        let mut h = NiftiHeader {
            format: Format::Analyze75,
            magic: String::new(),
            dim: [3, 3, 5, 7, 1, 1, 1, 1],
            pixdim: [1.0, 3.0, 2.0, 1.0, 1.0, 1.0, 1.0, 1.0],
            ..NiftiHeader::default()
        };
        let centre = [[-3.0, 0.0, 0.0, 3.0], [0.0, 2.0, 0.0, -4.0], [0.0, 0.0, 1.0, -3.0], [0.0, 0.0, 0.0, 1.0]];
        assert!(close(&best_affine(&h).0, &centre, 0.0));
        h.spm_origin = [3, 4, 5];
        let origin = [[-3.0, 0.0, 0.0, 6.0], [0.0, 2.0, 0.0, -6.0], [0.0, 0.0, 1.0, -4.0], [0.0, 0.0, 0.0, 1.0]];
        assert!(close(&best_affine(&h).0, &origin, 0.0));
        h.spm_origin = [300, 4, 5];
        assert!(close(&best_affine(&h).0, &centre, 0.0));
    }
}
