//! The augmentation chain a config describes: NiftyNet's training keys become a
//! `spatial` component (flips, rotation, scaling, elastic deformation, resampled once)
//! and a `bias_field` component, followed by the `[[training.augmentation]]` list.

use serde_json::{json, Map, Value};

use super::settings::{inconsistent, AugmentationEntry, Inconsistency, Training};

/// The components to apply to each training window, in order.
///
/// NiftyNet keys come first (`spatial` when any of `random_flipping_axes`,
/// `rotation_angle[_x|_y|_z]`, `scaling_percentage` or `do_elastic_deformation` is set;
/// then `bias_field` when `bias_field_range` is set), then the explicit list.
pub fn chain(t: &Training) -> Vec<AugmentationEntry> {
    let mut out = Vec::new();
    let axes: Vec<i64> = t.random_flipping_axes.iter().copied().filter(|&a| a >= 0).collect();
    let rotations = [
        ("rotation_angle", &t.rotation_angle),
        ("rotation_angle_x", &t.rotation_angle_x),
        ("rotation_angle_y", &t.rotation_angle_y),
        ("rotation_angle_z", &t.rotation_angle_z),
    ];
    let rotates = rotations.iter().any(|(_, r)| !r.is_empty());
    if !axes.is_empty() || rotates || !t.scaling_percentage.is_empty() || t.do_elastic_deformation {
        let mut params = Map::new();
        params.insert("random_flipping_axes".into(), json!(axes));
        for (key, r) in rotations {
            params.insert(key.into(), json!(r));
        }
        params.insert("scaling_percentage".into(), json!(t.scaling_percentage));
        params.insert("isotropic_scaling".into(), json!(t.isotropic_scaling));
        params.insert("do_elastic_deformation".into(), json!(t.do_elastic_deformation));
        if t.do_elastic_deformation {
            params.insert("num_ctrl_points".into(), json!(t.num_ctrl_points));
            params.insert("deformation_sigma".into(), json!(t.deformation_sigma));
            params.insert("proportion_to_deform".into(), json!(t.proportion_to_deform));
        }
        out.push(AugmentationEntry { name: "spatial".into(), probability: 1.0, params });
    }
    if !t.bias_field_range.is_empty() {
        let mut params = Map::new();
        params.insert("bias_field_range".into(), json!(t.bias_field_range));
        params.insert("bf_order".into(), Value::from(t.bf_order));
        out.push(AugmentationEntry { name: "bias_field".into(), probability: 1.0, params });
    }
    out.extend(t.augmentation.iter().cloned());
    out
}

/// Checks what the host owns: names, probabilities, the margin and the flip axes (the
/// plugins check their own parameters when the chain is built).
///
/// # Errors
/// The first bad value, naming its key (and the entry's position in the list).
pub fn validate(t: &Training) -> Result<(), Inconsistency> {
    let invalid = |key: &str, m: String| inconsistent(&[key], m);
    for (i, e) in t.augmentation.iter().enumerate() {
        if e.name.trim().is_empty() {
            return invalid("training.augmentation", format!("`training.augmentation[{i}]` has an empty `name`"));
        }
        if !(0.0..=1.0).contains(&e.probability) {
            return invalid(
                "training.augmentation",
                format!(
                    "`training.augmentation[{i}]` (`{}`): `probability` must be in [0, 1], got {}",
                    e.name, e.probability
                ),
            );
        }
    }
    if !(0.0..=1.0).contains(&t.augmentation_margin) {
        return invalid(
            "training.augmentation_margin",
            format!("`training.augmentation_margin` must be in [0, 1], got {}", t.augmentation_margin),
        );
    }
    if let Some(a) = t.random_flipping_axes.iter().find(|&&a| !(-1..=2).contains(&a)) {
        return invalid(
            "training.random_flipping_axes",
            format!("`training.random_flipping_axes` takes axes 0, 1, 2 (i, j, k), or -1 for none, got {a}"),
        );
    }
    Ok(())
}
