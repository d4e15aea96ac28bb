//! `augment`: data augmentations run by the host's loader threads on each training patch.
//!
//! Every component takes an image `[C, D, H, W]` (float), an optional label
//! `[1, D, H, W]` (integer), the voxel spacing in mm along `(D, H, W)` and a seed, and
//! returns both transformed. Each draws its random values from the seed alone (its own
//! SplitMix64 stream, never libtorch's global generator), so the host gets the same
//! sample whatever thread runs it. Axes in parameters are NIfTI's `(i, j, k)` = `0, 1, 2`
//! (the tensor's `W, H, D`), as in NiftyNet.
//!
//! Spatial ([`spatial`]; image linear, label nearest, positions in mm):
//! - `spatial`: flips, rotation, scaling and elastic deformation composed into one
//!   sampling grid and resampled once — the component the host builds from NiftyNet's
//!   training keys;
//! - `flip`, `rotation`, `scaling`, `elastic`: each part alone.
//!
//! Intensity (the label passes through): `bias_field` ([`bias`]), `gamma`,
//! `gaussian_noise`, `contrast_brightness` ([`intensity`]) and `gaussian_blur`
//! ([`blur`], σ in mm).

pub mod bias;
pub mod blur;
pub mod common;
pub mod intensity;
pub mod rng;
pub mod spatial;

use niftyhost_plugin_api::sdk::{AugmentationDef, PluginDef};

/// The library's declaration.
pub static PLUGIN: PluginDef = PluginDef {
    name: "augment",
    version: env!("CARGO_PKG_VERSION"),
    description: "augmentations: flip, rotation, scaling, elastic (composed as `spatial`), bias field, gamma, \
                  Gaussian noise, Gaussian blur, contrast/brightness",
    networks: &[],
    losses: &[],
    augmentations: &[
        AugmentationDef {
            name: "spatial",
            description:
                "flip + rotation + scaling + elastic deformation, resampled once (image linear, label nearest)",
            params: spatial::SPATIAL_PARAMS,
            build: spatial::build_spatial,
        },
        AugmentationDef {
            name: "flip",
            description: "random flips along (i, j, k) axes (exact)",
            params: spatial::FLIP_PARAMS,
            build: spatial::build_flip,
        },
        AugmentationDef {
            name: "rotation",
            description: "random rotation about each axis, in mm space",
            params: spatial::ROTATION_PARAMS,
            build: spatial::build_rotation,
        },
        AugmentationDef {
            name: "scaling",
            description: "random scaling, isotropic or per axis",
            params: spatial::SCALING_PARAMS,
            build: spatial::build_scaling,
        },
        AugmentationDef {
            name: "elastic",
            description: "elastic deformation from a cubic B-spline control grid",
            params: spatial::ELASTIC_PARAMS,
            build: spatial::build_elastic,
        },
        AugmentationDef {
            name: "bias_field",
            description: "multiplicative polynomial bias field (exp of a polynomial)",
            params: bias::BIAS_PARAMS,
            build: bias::build_bias,
        },
        AugmentationDef {
            name: "gamma",
            description: "gamma on each channel's [min, max] range",
            params: intensity::GAMMA_PARAMS,
            build: intensity::build_gamma,
        },
        AugmentationDef {
            name: "gaussian_noise",
            description: "additive Gaussian noise",
            params: intensity::NOISE_PARAMS,
            build: intensity::build_noise,
        },
        AugmentationDef {
            name: "gaussian_blur",
            description: "Gaussian blur, sigma in mm",
            params: blur::BLUR_PARAMS,
            build: blur::build_blur,
        },
        AugmentationDef {
            name: "contrast_brightness",
            description: "contrast about each channel's mean, then a brightness offset",
            params: intensity::CONTRAST_PARAMS,
            build: intensity::build_contrast,
        },
    ],
};
niftyhost_plugin_api::export_plugin!(PLUGIN);

#[cfg(test)]
mod tests;
