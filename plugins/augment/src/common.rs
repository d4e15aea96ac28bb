//! What every component shares: input checks and the parsing of `[lo, hi]` ranges.

use niftyhost_plugin_api::sdk::Params;
use niftyhost_plugin_api::PluginError;
use tch::{Kind, Tensor};

/// Checks an image `[C, D, H, W]` (float) and its label `[1, D, H, W]`.
///
/// # Errors
/// Another rank, a non-float image, or a label whose spatial size differs, naming the
/// component and both shapes.
pub fn check_inputs(component: &str, image: &Tensor, label: Option<&Tensor>) -> Result<(), PluginError> {
    let s = image.size();
    if s.len() != 4 {
        return Err(PluginError::new(format!("{component}: image must be [C, D, H, W], got {s:?}")));
    }
    if !matches!(image.kind(), Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16) {
        return Err(PluginError::new(format!("{component}: image must be floating point, got {:?}", image.kind())));
    }
    if let Some(l) = label {
        let ls = l.size();
        if ls.len() != 4 || ls[0] != 1 || ls[1..] != s[1..] {
            return Err(PluginError::new(format!(
                "{component}: label must be [1, D, H, W] matching the image {s:?}, got {ls:?}"
            )));
        }
    }
    Ok(())
}

/// A `[lo, hi]` parameter (`[]` gives `None`) whose bounds satisfy `ok`.
///
/// # Errors
/// Not two numbers, `lo > hi`, or a bound outside what `ok` accepts (described by `what`).
pub fn range(
    p: &Params,
    component: &str,
    key: &str,
    what: &str,
    ok: impl Fn(f64) -> bool,
) -> Result<Option<(f64, f64)>, PluginError> {
    let v = p.floats(key)?;
    match v.as_slice() {
        [] => Ok(None),
        [lo, hi] if lo <= hi && ok(*lo) && ok(*hi) => Ok(Some((*lo, *hi))),
        _ => Err(PluginError::new(format!(
            "{component}: parameter `{key}` must be [] or [lo, hi] with lo <= hi, {what}, got {v:?}"
        ))),
    }
}

/// A number parameter satisfying `ok`.
///
/// # Errors
/// A value `ok` refuses, described by `what`.
pub fn number(
    p: &Params,
    component: &str,
    key: &str,
    what: &str,
    ok: impl Fn(f64) -> bool,
) -> Result<f64, PluginError> {
    let v = p.float(key)?;
    if ok(v) {
        Ok(v)
    } else {
        Err(PluginError::new(format!("{component}: parameter `{key}` must be {what}, got {v}")))
    }
}
