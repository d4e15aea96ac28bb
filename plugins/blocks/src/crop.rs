//! Cropping, padding and crop-and-concatenate, for networks whose feature maps shrink.

use tch::Tensor;

/// The centre `size` of `x`'s spatial axes (each size at most the input's; the extra
/// voxel of an odd difference is dropped at the end).
///
/// # Shapes
/// `[N, C, *S]` → `[N, C, *size]`
pub fn centre_crop(x: &Tensor, size: &[i64]) -> Tensor {
    x.size()[2..].iter().zip(size).enumerate().fold(x.shallow_clone(), |h, (axis, (&have, &want))| {
        if have == want {
            h
        } else {
            h.narrow(axis as i64 + 2, (have - want) / 2, want)
        }
    })
}

/// Crop-and-concatenate (U-Net's skip connection): `skip` centre-cropped to `x`'s
/// spatial size, then `[skip, x]` along the channels.
///
/// # Shapes
/// `skip` `[N, C_s, *S_s]`, `x` `[N, C_x, *S]` (`S ≤ S_s`) → `[N, C_s + C_x, *S]`
pub fn crop_concat(skip: &Tensor, x: &Tensor) -> Tensor {
    let cropped = centre_crop(skip, &x.size()[2..]);
    Tensor::cat(&[&cropped, x], 1)
}

/// `x` zero-padded by `before[i]` and `after[i]` voxels on spatial axis `i`.
///
/// # Shapes
/// `[N, C, *S]` → `[N, C, *(S + before + after)]`
pub fn pad_spatial(x: &Tensor, before: &[i64], after: &[i64]) -> Tensor {
    // constant_pad_nd lists the last axis first.
    let pad: Vec<i64> = before.iter().zip(after).rev().flat_map(|(&b, &a)| [b, a]).collect();
    x.constant_pad_nd(pad.as_slice())
}

/// Runs a valid-convolution network `f` so that its output has `x`'s spatial size:
/// `x` is zero-padded by `shrink / 2` voxels in front and enough behind for `f`'s
/// output to be `admissible(s)` (the smallest output size ≥ `s` that `f` can produce),
/// and the output is cut back to `s`. Output voxel `j` is the prediction for input voxel
/// `j`, as in the valid network.
///
/// # Shapes
/// `[N, C, *S]` → `[N, K, *S]` where `f` maps `[N, C, *(O + shrink)]` → `[N, K, *O]`
pub fn same_size_valid(
    x: &Tensor,
    shrink: i64,
    admissible: impl Fn(i64) -> i64,
    f: impl FnOnce(&Tensor) -> Tensor,
) -> Tensor {
    let spatial = x.size()[2..].to_vec();
    let before = vec![shrink / 2; spatial.len()];
    let after: Vec<i64> = spatial.iter().map(|&s| admissible(s) - s + shrink - shrink / 2).collect();
    let out = f(&pad_spatial(x, &before, &after));
    spatial.iter().enumerate().fold(out, |h, (axis, &s)| h.narrow(axis as i64 + 2, 0, s))
}
