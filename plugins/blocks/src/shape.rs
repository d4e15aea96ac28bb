//! Input checks for [`NetworkModel::check_input`](niftyhost_plugin_api::sdk::NetworkModel::check_input),
//! whose errors name the network and the constraint, and slice folding for 2D networks
//! on 3D windows.

use tch::Tensor;

/// The spatial sizes of `shape` if it is `[N, C, *S]` with `spatial_dims` axes and
/// `channels` channels.
///
/// # Errors
/// "`<net>` needs a [N, C, D, H, W] input with 1 channel, got [..]".
pub fn spatial<'a>(net: &str, shape: &'a [i64], spatial_dims: usize, channels: i64) -> Result<&'a [i64], String> {
    let layout = if spatial_dims == 2 { "[N, C, H, W]" } else { "[N, C, D, H, W]" };
    let plural = if channels == 1 { "" } else { "s" };
    match shape {
        [_, c, rest @ ..] if rest.len() == spatial_dims && *c == channels => Ok(rest),
        _ => Err(format!("{net} needs a {layout} input with {channels} channel{plural}, got {shape:?}")),
    }
}

/// Every spatial size is divisible by `by`.
///
/// # Errors
/// "`<net>` needs each spatial size divisible by `by`, got `s`".
pub fn divisible(net: &str, spatial: &[i64], by: i64) -> Result<(), String> {
    match spatial.iter().find(|&&s| s % by != 0) {
        Some(s) => Err(format!("{net} needs each spatial size divisible by {by}, got {s}")),
        None => Ok(()),
    }
}

/// Every spatial size is at least `min`.
///
/// # Errors
/// "`<net>` needs each spatial size at least `min` (`why`), got `s`".
pub fn at_least(net: &str, spatial: &[i64], min: i64, why: &str) -> Result<(), String> {
    match spatial.iter().find(|&&s| s < min) {
        Some(s) => Err(format!("{net} needs each spatial size at least {min} ({why}), got {s}")),
        None => Ok(()),
    }
}

/// Every spatial size satisfies `ok`; `rule` says what that is.
///
/// # Errors
/// "`<net>` needs each spatial size `rule`, got `s`".
pub fn each(net: &str, spatial: &[i64], rule: &str, ok: impl Fn(i64) -> bool) -> Result<(), String> {
    match spatial.iter().find(|&&s| !ok(s)) {
        Some(s) => Err(format!("{net} needs each spatial size {rule}, got {s}")),
        None => Ok(()),
    }
}

/// A 3D window as a batch of 2D slices: `[N, C, D, H, W]` → `[N·D, C, H, W]`.
pub fn fold_slices(x: &Tensor) -> Tensor {
    let s = x.size();
    x.permute([0, 2, 1, 3, 4]).reshape([s[0] * s[2], s[1], s[3], s[4]])
}

/// Undoes [`fold_slices`]: `[N·D, K, H, W]` → `[N, K, D, H, W]` for `depth` = D.
pub fn unfold_slices(x: &Tensor, depth: i64) -> Tensor {
    let s = x.size();
    x.reshape([s[0] / depth, depth, s[1], s[2], s[3]]).permute([0, 2, 1, 3, 4])
}
