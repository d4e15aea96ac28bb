//! Spatial augmentation: random flips, rotation, scaling and elastic deformation, drawn
//! together per sample and resampled **once** (image linear, label nearest).
//!
//! Geometry. Positions are in mm from the patch centre, axes `(x, y, z) = (i, j, k)`
//! (the tensor's `W, H, D`), so anisotropic voxels rotate and deform as physical space
//! does. The output voxel at `p` takes the input at
//!
//! `M p + u(p)`, with `M = F · Rz · Ry · Rx · S⁻¹`,
//!
//! `F` the drawn flips (diagonal ±1), `R·` rotations about each axis by angles drawn
//! uniformly from their ranges (degrees), `S` the scale factors `1 + s/100` (`s` drawn
//! from `scaling_percentage`; one draw for all axes when `isotropic_scaling`), and `u` the
//! elastic displacement (mm): a cubic B-spline with `num_ctrl_points` control points per
//! axis spanning the patch (uniform knots; the first and last control points lie one knot
//! outside the patch), control displacements normal with standard deviation
//! `deformation_sigma` mm, applied to a sample with probability `proportion_to_deform`.
//! Positions outside the input repeat its border voxels (so labels keep their own values).
//!
//! A draw without rotation, scaling or deformation (e.g. flips only, or nothing) is done
//! exactly with `flip` instead of resampling: flips are exact involutions and the
//! identity is the identity.

use niftyhost_plugin_api::sdk::{AugmentFn, Augmented, Param, ParamType, Params};
use niftyhost_plugin_api::PluginError;
use tch::{Kind, Tensor};

use crate::common::{check_inputs, number, range};
use crate::rng::Rng;

/// Elastic deformation settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Elastic {
    /// Control points per axis (≥ 4).
    pub ctrl_points: i64,
    /// Standard deviation of the control displacements, mm.
    pub sigma_mm: f64,
    /// Probability that a sample is deformed.
    pub proportion: f64,
}

/// A spatial augmentation: any subset of flip, rotation, scaling and elastic deformation.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Spatial {
    /// The component's name, for errors.
    pub name: &'static str,
    /// Axes that may be flipped, `0, 1, 2 = i, j, k`.
    pub flip_axes: Vec<usize>,
    /// Probability of flipping each of them.
    pub flip_probability: f64,
    /// Angle range about `i`, `j`, `k`, degrees (`None`: no rotation about that axis).
    pub rotation: [Option<(f64, f64)>; 3],
    /// Scaling range, percent.
    pub scaling: Option<(f64, f64)>,
    /// One scale for all axes.
    pub isotropic: bool,
    /// Elastic deformation.
    pub elastic: Option<Elastic>,
}

/// One drawn transform.
#[derive(Debug, Clone)]
pub struct Draw {
    /// `M`, row-major, acting on `(x, y, z)` mm.
    pub matrix: [[f64; 3]; 3],
    /// Flips along `(i, j, k)`.
    pub flips: [bool; 3],
    /// Whether `M` is only flips (no rotation, no scaling).
    pub flips_only: bool,
    /// Control displacements `[3 (x, y, z), K (z), K (y), K (x)]` in mm, row-major.
    pub control: Option<Vec<f32>>,
}

fn matmul(a: [[f64; 3]; 3], b: [[f64; 3]; 3]) -> [[f64; 3]; 3] {
    std::array::from_fn(|r| std::array::from_fn(|c| (0..3).map(|k| a[r][k] * b[k][c]).sum()))
}

fn rotation(axis: usize, degrees: f64) -> [[f64; 3]; 3] {
    let (s, c) = degrees.to_radians().sin_cos();
    let (a, b) = ((axis + 1) % 3, (axis + 2) % 3);
    let mut m = [[0.0; 3]; 3];
    m[axis][axis] = 1.0;
    m[a][a] = c;
    m[a][b] = -s;
    m[b][a] = s;
    m[b][b] = c;
    m
}

impl Spatial {
    /// Draws one transform from `seed`. The order of the draws is fixed (flips, angles,
    /// scales, deformation), so a seed always gives the same transform.
    pub fn draw(&self, seed: u64) -> Draw {
        let mut rng = Rng::new(seed);
        let mut flips = [false; 3];
        for &a in &self.flip_axes {
            flips[a] = rng.chance(self.flip_probability);
        }
        let angles: [f64; 3] = std::array::from_fn(|a| self.rotation[a].map_or(0.0, |(lo, hi)| rng.uniform(lo, hi)));
        let scales: [f64; 3] = match self.scaling {
            None => [1.0; 3],
            Some((lo, hi)) if self.isotropic => [1.0 + rng.uniform(lo, hi) / 100.0; 3],
            Some((lo, hi)) => std::array::from_fn(|_| 1.0 + rng.uniform(lo, hi) / 100.0),
        };
        let control = self.elastic.as_ref().and_then(|e| {
            rng.chance(e.proportion).then(|| {
                let n = 3 * (e.ctrl_points as usize).pow(3);
                rng.normals_f32(n).into_iter().map(|v| v * e.sigma_mm as f32).collect()
            })
        });
        let flips_only = angles == [0.0; 3] && scales == [1.0; 3];
        let f: [[f64; 3]; 3] = std::array::from_fn(|r| {
            std::array::from_fn(|c| {
                if r != c {
                    0.0
                } else if flips[r] {
                    -1.0
                } else {
                    1.0
                }
            })
        });
        let inv_scale: [[f64; 3]; 3] =
            std::array::from_fn(|r| std::array::from_fn(|c| if r == c { 1.0 / scales[r] } else { 0.0 }));
        let r = matmul(rotation(2, angles[2]), matmul(rotation(1, angles[1]), rotation(0, angles[0])));
        let matrix = matmul(f, matmul(r, inv_scale));
        Draw { matrix, flips, flips_only, control }
    }
}

/// The cubic B-spline kernel.
fn bspline3(t: f64) -> f64 {
    let t = t.abs();
    if t < 1.0 {
        2.0 / 3.0 - t * t + t * t * t / 2.0
    } else if t < 2.0 {
        (2.0 - t).powi(3) / 6.0
    } else {
        0.0
    }
}

/// `[n, k]` weights of `k` uniform cubic B-spline control points at `n` voxels: voxel 0
/// sits on knot 1 and voxel `n − 1` on knot `k − 2`.
fn bspline_weights(n: i64, k: i64) -> Tensor {
    let mut w = Vec::with_capacity((n * k) as usize);
    for p in 0..n {
        let u = if n > 1 { 1.0 + p as f64 / (n - 1) as f64 * (k - 3) as f64 } else { 1.0 };
        w.extend((0..k).map(|c| bspline3(u - c as f64) as f32));
    }
    Tensor::from_slice(&w).view([n, k])
}

/// The dense displacement `[3 (x, y, z), D, H, W]`, mm, of control displacements
/// `[3, K, K, K]` (tensor-product B-spline, evaluated separably).
fn displacement(control: &[f32], k: i64, [d, h, w]: [i64; 3]) -> Tensor {
    let c = Tensor::from_slice(control).view([3, k, k, k]);
    let t = c.matmul(&bspline_weights(w, k).tr()); // [3, Kz, Ky, W]
    let t = bspline_weights(h, k).matmul(&t); // [3, Kz, H, W]
    let t = bspline_weights(d, k).matmul(&t.view([3, k, h * w])); // [3, D, H·W]
    t.view([3, d, h, w])
}

/// The sampling grid `[1, D, H, W, 3]` (grid_sampler's normalised `(x, y, z)`, corners
/// aligned) of transform `matrix` plus `disp` (`[3, D, H, W]` mm), for a patch of
/// `[D, H, W]` voxels of `spacing` mm along `(D, H, W)`.
///
/// With corners aligned, normalised coordinate `g_a = c_a / h_a` where `c_a` is the
/// position in mm from the centre and `h_a` the half extent, so the affine part is
/// libtorch's `affine_grid_generator` with `θ[b][a] = M[b][a] · h_a / h_b`.
pub fn sampling_grid(matrix: [[f64; 3]; 3], disp: Option<&Tensor>, size: [i64; 3], spacing: [f64; 3]) -> Tensor {
    // (x, y, z) = (W, H, D)
    let n = [size[2], size[1], size[0]];
    let s = [spacing[2], spacing[1], spacing[0]];
    let half: [f64; 3] = std::array::from_fn(|a| if n[a] > 1 { s[a] * (n[a] - 1) as f64 / 2.0 } else { 1.0 });
    let mut theta = Vec::with_capacity(12);
    for b in 0..3 {
        theta.extend((0..3).map(|a| (matrix[b][a] * half[a] / half[b]) as f32));
        theta.push(0.0);
    }
    let theta = Tensor::from_slice(&theta).view([1, 3, 4]);
    let grid = Tensor::affine_grid_generator(&theta, [1, 1, size[0], size[1], size[2]], true);
    match disp {
        None => grid,
        Some(u) => {
            let scale = Tensor::from_slice(&half.map(|h| (1.0 / h) as f32)).view([3, 1, 1, 1]);
            grid + (u * scale).permute([1, 2, 3, 0]).unsqueeze(0)
        }
    }
}

/// Resamples `image` `[C, D, H, W]` (linear) and `label` `[1, D, H, W]` (nearest) on
/// `grid` from [`sampling_grid`], repeating border voxels outside.
pub fn resample(image: &Tensor, label: Option<&Tensor>, grid: &Tensor) -> (Tensor, Option<Tensor>) {
    const BILINEAR: i64 = 0;
    const NEAREST: i64 = 1;
    const BORDER: i64 = 1;
    let kind = image.kind();
    let g = grid.to_kind(kind);
    let out = image.unsqueeze(0).grid_sampler(&g, BILINEAR, BORDER, true).squeeze_dim(0);
    let label = label.map(|l| {
        let lk = l.kind();
        let f = l.to_kind(Kind::Float).unsqueeze(0);
        f.grid_sampler(&grid.to_kind(Kind::Float), NEAREST, BORDER, true).squeeze_dim(0).to_kind(lk)
    });
    (out, label)
}

impl AugmentFn for Spatial {
    fn apply(&self, image: &Tensor, label: Option<&Tensor>, spacing: [f64; 3], seed: u64) -> Augmented {
        check_inputs(self.name, image, label)?;
        if spacing.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            return Err(PluginError::new(format!("{}: voxel spacing must be positive, got {spacing:?}", self.name)));
        }
        let draw = self.draw(seed);
        if draw.flips_only && draw.control.is_none() {
            // Tensor dims: i → 3 (W), j → 2 (H), k → 1 (D).
            let dims: Vec<i64> = (0..3).filter(|&a| draw.flips[a]).map(|a| 3 - a as i64).collect();
            if dims.is_empty() {
                return Ok((image.shallow_clone(), label.map(Tensor::shallow_clone)));
            }
            return Ok((image.flip(&dims), label.map(|l| l.flip(&dims))));
        }
        let s = image.size();
        let size = [s[1], s[2], s[3]];
        let disp = match (&draw.control, &self.elastic) {
            (Some(c), Some(e)) => Some(displacement(c, e.ctrl_points, size)),
            _ => None,
        };
        let grid = sampling_grid(draw.matrix, disp.as_ref(), size, spacing);
        Ok(resample(image, label, &grid))
    }
}

/// Parameters of flips.
pub const FLIP_PARAMS: &[Param] = &[
    Param {
        name: "random_flipping_axes",
        ty: ParamType::IntList,
        default: "[0, 1, 2]",
        doc: "axes that may be flipped: 0, 1, 2 = i, j, k ([] = none)",
    },
    Param { name: "flip_probability", ty: ParamType::Float, default: "0.5", doc: "probability of flipping each axis" },
];

/// Parameters of rotation.
pub const ROTATION_PARAMS: &[Param] = &[
    Param {
        name: "rotation_angle",
        ty: ParamType::FloatList,
        default: "[-10.0, 10.0]",
        doc: "[lo, hi] degrees about each axis, drawn per axis ([] = none)",
    },
    Param {
        name: "rotation_angle_x",
        ty: ParamType::FloatList,
        default: "[]",
        doc: "[lo, hi] degrees about i (overrides rotation_angle)",
    },
    Param {
        name: "rotation_angle_y",
        ty: ParamType::FloatList,
        default: "[]",
        doc: "[lo, hi] degrees about j (overrides rotation_angle)",
    },
    Param {
        name: "rotation_angle_z",
        ty: ParamType::FloatList,
        default: "[]",
        doc: "[lo, hi] degrees about k (overrides rotation_angle)",
    },
];

/// Parameters of scaling.
pub const SCALING_PARAMS: &[Param] = &[
    Param {
        name: "scaling_percentage",
        ty: ParamType::FloatList,
        default: "[-10.0, 10.0]",
        doc: "[lo, hi] percent; the image is scaled by 1 + s/100 ([] = none)",
    },
    Param { name: "isotropic_scaling", ty: ParamType::Bool, default: "false", doc: "one scale for all axes" },
];

/// Parameters of elastic deformation.
pub const ELASTIC_PARAMS: &[Param] = &[
    Param { name: "num_ctrl_points", ty: ParamType::Int, default: "4", doc: "B-spline control points per axis (>= 4)" },
    Param {
        name: "deformation_sigma",
        ty: ParamType::Float,
        default: "15.0",
        doc: "standard deviation of the control-point displacements, mm",
    },
    Param {
        name: "proportion_to_deform",
        ty: ParamType::Float,
        default: "0.5",
        doc: "probability that a sample is deformed",
    },
];

fn flips(p: &Params, name: &str) -> Result<(Vec<usize>, f64), PluginError> {
    let axes = p.floats("random_flipping_axes")?;
    let mut out = Vec::new();
    for a in axes {
        if !(a == 0.0 || a == 1.0 || a == 2.0) {
            return Err(PluginError::new(format!(
                "{name}: parameter `random_flipping_axes` takes axes 0, 1, 2 (i, j, k), got {a}"
            )));
        }
        if !out.contains(&(a as usize)) {
            out.push(a as usize);
        }
    }
    let prob = number(p, name, "flip_probability", "in [0, 1]", |v| (0.0..=1.0).contains(&v))?;
    Ok((out, prob))
}

fn rotations(p: &Params, name: &str) -> Result<[Option<(f64, f64)>; 3], PluginError> {
    let finite = |v: f64| v.is_finite() && v.abs() <= 360.0;
    let all = range(p, name, "rotation_angle", "degrees within ±360", finite)?;
    let mut out = [all; 3];
    for (a, key) in ["rotation_angle_x", "rotation_angle_y", "rotation_angle_z"].iter().enumerate() {
        if let Some(r) = range(p, name, key, "degrees within ±360", finite)? {
            out[a] = Some(r);
        }
    }
    Ok(out)
}

fn scaling(p: &Params, name: &str) -> Result<(Option<(f64, f64)>, bool), PluginError> {
    let r = range(p, name, "scaling_percentage", "percentages above -100", |v| v.is_finite() && v > -100.0)?;
    Ok((r, p.bool("isotropic_scaling")?))
}

fn elastic(p: &Params, name: &str) -> Result<Elastic, PluginError> {
    let ctrl_points = p.int("num_ctrl_points")?;
    if !(4..=64).contains(&ctrl_points) {
        return Err(PluginError::new(format!(
            "{name}: parameter `num_ctrl_points` must be in 4..=64 (cubic B-spline), got {ctrl_points}"
        )));
    }
    Ok(Elastic {
        ctrl_points,
        sigma_mm: number(p, name, "deformation_sigma", "finite and >= 0", |v| v.is_finite() && v >= 0.0)?,
        proportion: number(p, name, "proportion_to_deform", "in [0, 1]", |v| (0.0..=1.0).contains(&v))?,
    })
}

/// The `flip` component.
///
/// # Errors
/// An axis other than 0, 1, 2 or a probability outside `[0, 1]`.
pub fn build_flip(p: &Params) -> Result<Box<dyn AugmentFn>, PluginError> {
    let (flip_axes, flip_probability) = flips(p, "flip")?;
    Ok(Box::new(Spatial { name: "flip", flip_axes, flip_probability, ..Default::default() }))
}

/// The `rotation` component.
///
/// # Errors
/// A malformed angle range.
pub fn build_rotation(p: &Params) -> Result<Box<dyn AugmentFn>, PluginError> {
    Ok(Box::new(Spatial { name: "rotation", rotation: rotations(p, "rotation")?, ..Default::default() }))
}

/// The `scaling` component.
///
/// # Errors
/// A malformed percentage range.
pub fn build_scaling(p: &Params) -> Result<Box<dyn AugmentFn>, PluginError> {
    let (scaling, isotropic) = scaling(p, "scaling")?;
    Ok(Box::new(Spatial { name: "scaling", scaling, isotropic, ..Default::default() }))
}

/// The `elastic` component.
///
/// # Errors
/// Too few control points, a negative sigma or a proportion outside `[0, 1]`.
pub fn build_elastic(p: &Params) -> Result<Box<dyn AugmentFn>, PluginError> {
    Ok(Box::new(Spatial { name: "elastic", elastic: Some(elastic(p, "elastic")?), ..Default::default() }))
}

/// Parameters of the composed `spatial` component: every part, each off by default.
pub const SPATIAL_PARAMS: &[Param] = &[
    Param { name: "random_flipping_axes", ty: ParamType::IntList, default: "[]", doc: FLIP_PARAMS[0].doc },
    FLIP_PARAMS[1],
    Param { name: "rotation_angle", ty: ParamType::FloatList, default: "[]", doc: ROTATION_PARAMS[0].doc },
    ROTATION_PARAMS[1],
    ROTATION_PARAMS[2],
    ROTATION_PARAMS[3],
    Param { name: "scaling_percentage", ty: ParamType::FloatList, default: "[]", doc: SCALING_PARAMS[0].doc },
    SCALING_PARAMS[1],
    Param { name: "do_elastic_deformation", ty: ParamType::Bool, default: "false", doc: "add an elastic deformation" },
    ELASTIC_PARAMS[0],
    ELASTIC_PARAMS[1],
    ELASTIC_PARAMS[2],
];

/// The `spatial` component: flips, rotation, scaling and deformation in one resampling.
///
/// # Errors
/// Any part's parameter errors.
pub fn build_spatial(p: &Params) -> Result<Box<dyn AugmentFn>, PluginError> {
    let (flip_axes, flip_probability) = flips(p, "spatial")?;
    let (scaling, isotropic) = scaling(p, "spatial")?;
    let elastic = if p.bool("do_elastic_deformation")? { Some(elastic(p, "spatial")?) } else { None };
    Ok(Box::new(Spatial {
        name: "spatial",
        flip_axes,
        flip_probability,
        rotation: rotations(p, "spatial")?,
        scaling,
        isotropic,
        elastic,
    }))
}
