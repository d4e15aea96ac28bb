//! The `seglosses` plugin's losses, loaded through the host's registry from the built
//! `libseglosses.so`: values on hand-computed cases, gradients against central finite
//! differences, the voxel weight map, and shape errors.
//!
//! Tolerances: f64 values against hand computation 1e-12 (absolute); f32 values against
//! the f64 ones 1e-5; f64 gradients against central differences with h = 1e-5,
//! |analytic − numeric| ≤ 1e-7 · max(1, |numeric|) (truncation error ~h² ≈ 1e-10, rounding
//! ~1e-16/h ≈ 1e-11); weight-map identities 1e-12; perfect predictions (logits ±30) within
//! 1e-9 of the minimum 0.

use abi_stable::std_types::ROption;
use niftyhost::plugins::{Registry, SearchPath};
use niftyhost_plugin_api::{LossBox, RTensor};
use niftyhost_tests::workspace_plugin;
use serde_json::{json, Value};
use tch::{Kind, Tensor};

const S: f64 = 1e-5; // the default `smooth`

fn registry() -> Registry {
    let reg = Registry::load(&SearchPath { files: vec![workspace_plugin("seglosses")], dirs: Vec::new() });
    assert!(reg.failures.is_empty(), "{:?}", reg.failures);
    reg
}

fn new_loss(reg: &Registry, name: &str, params: &Value) -> LossBox {
    reg.new_loss(name, params).unwrap_or_else(|e| panic!("{name} {params}: {e}"))
}

/// The loss as a tensor (on the autograd graph of `logits`), or the plugin's error.
fn try_eval(
    loss: &LossBox,
    logits: &Tensor,
    labels: &Tensor,
    weight: Option<&Tensor>,
) -> Result<Tensor, niftyhost_plugin_api::PluginError> {
    let (x, y) = (RTensor::from_tch(logits.shallow_clone()), RTensor::from_tch(labels.shallow_clone()));
    let w = weight.map(|w| RTensor::from_tch(w.shallow_clone()));
    let w = match &w {
        Some(w) => ROption::RSome(w),
        None => ROption::RNone,
    };
    loss.loss(&x, &y, w).into_result().map(RTensor::into_tch)
}

fn eval_t(loss: &LossBox, logits: &Tensor, labels: &Tensor, weight: Option<&Tensor>) -> Tensor {
    let out = try_eval(loss, logits, labels, weight).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.size(), Vec::<i64>::new(), "a scalar");
    out
}

fn eval(loss: &LossBox, logits: &Tensor, labels: &Tensor, weight: Option<&Tensor>) -> f64 {
    f64::try_from(eval_t(loss, logits, labels, weight).to_kind(Kind::Double)).unwrap()
}

/// `[N, K, 1, 1, V]` f64 logits from `[voxel][class]` rows (N = 1).
fn logits_of(rows: &[&[f64]]) -> Tensor {
    let k = rows[0].len() as i64;
    let flat: Vec<f64> = rows.iter().flat_map(|r| r.iter().copied()).collect();
    Tensor::from_slice(&flat).view([1, rows.len() as i64, k]).permute([0, 2, 1]).contiguous().view([1, k, 1, 1, -1])
}

fn labels_of(y: &[i64]) -> Tensor {
    Tensor::from_slice(y).view([1, 1, 1, 1, -1])
}

fn weights_of(w: &[f64]) -> Tensor {
    Tensor::from_slice(w).view([1, 1, 1, 1, -1])
}

fn softmax(row: &[f64]) -> Vec<f64> {
    let e: Vec<f64> = row.iter().map(|v| v.exp()).collect();
    let z: f64 = e.iter().sum();
    e.iter().map(|v| v / z).collect()
}

fn close(got: f64, want: f64, tol: f64, what: &str) {
    assert!((got - want).abs() <= tol, "{what}: got {got}, want {want} (|Δ| = {:e} > {tol:e})", (got - want).abs());
}

/// Every component, with the parameter sets the generic tests run it with.
fn every_loss() -> Vec<(&'static str, Value)> {
    vec![
        ("cross_entropy", json!({})),
        ("focal", json!({})),
        ("focal", json!({"gamma": 1.5, "alpha": [0.2, 0.5, 0.3]})),
        ("dice", json!({})),
        ("dice_squared", json!({})),
        ("dice_ce", json!({"dice_weight": 0.7, "ce_weight": 0.4})),
        ("generalised_dice", json!({})),
        ("tversky", json!({})),
        ("tversky", json!({"alpha": 0.8, "beta": 0.1})),
        ("generalised_wasserstein_dice", json!({})),
        ("generalised_wasserstein_dice", json!({"distance_matrix": [0, 1, 2, 1, 0, 0.5, 2, 0.5, 0]})),
        ("sensitivity_specificity", json!({})),
        ("sensitivity_specificity", json!({"r": 0.6})),
    ]
}

// Case A: K = 2, two voxels, labels [0, 1].
const A: [[f64; 2]; 2] = [[1.0, -0.5], [0.2, 0.7]];

#[test]
fn values_match_hand_computation_two_classes() {
    let reg = registry();
    let x = logits_of(&[&A[0], &A[1]]);
    let y = labels_of(&[0, 1]);
    // Softmax of two logits, written out: p(class 0) = 1 / (1 + e^(b − a)).
    let a0 = 1.0 / (1.0 + (A[0][1] - A[0][0]).exp());
    let a1 = 1.0 / (1.0 + (A[1][1] - A[1][0]).exp());
    let p = [[a0, 1.0 - a0], [a1, 1.0 - a1]]; // [voxel][class]
    let (pt0, pt1) = (p[0][0], p[1][1]); // probability of the true class

    let ce = (-pt0.ln() - pt1.ln()) / 2.0;
    let focal = ((1.0 - pt0).powi(2) * -pt0.ln() + (1.0 - pt1).powi(2) * -pt1.ln()) / 2.0;
    let focal_alpha = (0.25 * (1.0 - pt0).powf(0.5) * -pt0.ln() + 0.75 * (1.0 - pt1).powf(0.5) * -pt1.ln()) / 2.0;
    // Dice: class c has I = p(true voxel of c), P = Σ_v p_v[c], G = 1.
    let d0 = (2.0 * p[0][0] + S) / (p[0][0] + p[1][0] + 1.0 + S);
    let d1 = (2.0 * p[1][1] + S) / (p[0][1] + p[1][1] + 1.0 + S);
    let dice = 1.0 - (d0 + d1) / 2.0;
    let q0 = (2.0 * p[0][0] + S) / (p[0][0].powi(2) + p[1][0].powi(2) + 1.0 + S);
    let q1 = (2.0 * p[1][1] + S) / (p[0][1].powi(2) + p[1][1].powi(2) + 1.0 + S);
    let dice_squared = 1.0 - (q0 + q1) / 2.0;
    // Generalised Dice: both classes have G = 1, equal weights 1/2 each.
    let gdice =
        1.0 - (2.0 * 0.5 * (p[0][0] + p[1][1]) + S) / (0.5 * (p[0][0] + p[1][0] + 1.0 + p[0][1] + p[1][1] + 1.0) + S);
    // Tversky α = 0.3, β = 0.7: class 0 FP = p_1[0], FN = 1 − p_0[0]; class 1 FP = p_0[1], FN = 1 − p_1[1].
    let t0 = (p[0][0] + S) / (p[0][0] + 0.3 * p[1][0] + 0.7 * (1.0 - p[0][0]) + S);
    let t1 = (p[1][1] + S) / (p[1][1] + 0.3 * p[0][1] + 0.7 * (1.0 - p[1][1]) + S);
    let tversky = 1.0 - (t0 + t1) / 2.0;
    // Wasserstein Dice, default matrix: TP = p_1[1] (voxel 1 is the only foreground voxel),
    // E = (1 − p_0[0]) + (1 − p_1[1]).
    let (tp, e) = (p[1][1], (1.0 - p[0][0]) + (1.0 - p[1][1]));
    let gwd = 1.0 - (2.0 * tp + S) / (2.0 * tp + e + S);
    // … which is the foreground class's plain soft Dice.
    let fg_dice = 1.0 - (2.0 * p[1][1] + S) / (p[0][1] + p[1][1] + 1.0 + S);
    // Sensitivity-specificity, r = 0.05; each class has one voxel in and one out.
    let r = 0.05;
    let ss0 = r * (1.0 - p[0][0]).powi(2) / (1.0 + S) + (1.0 - r) * p[1][0].powi(2) / (1.0 + S);
    let ss1 = r * (1.0 - p[1][1]).powi(2) / (1.0 + S) + (1.0 - r) * p[0][1].powi(2) / (1.0 + S);
    let ss = (ss0 + ss1) / 2.0;

    let cases = [
        ("cross_entropy", json!({}), ce),
        ("focal", json!({}), focal),
        ("focal", json!({"gamma": 0.5, "alpha": [0.25, 0.75]}), focal_alpha),
        ("focal", json!({"gamma": 0}), ce),
        ("dice", json!({}), dice),
        ("dice_squared", json!({}), dice_squared),
        ("dice_ce", json!({}), dice + ce),
        ("dice_ce", json!({"dice_weight": 0.25, "ce_weight": 2.0}), 0.25 * dice + 2.0 * ce),
        ("generalised_dice", json!({}), gdice),
        ("tversky", json!({}), tversky),
        ("tversky", json!({"alpha": 0.5, "beta": 0.5, "smooth": S / 2.0}), dice), // Dice with smooth s
        ("generalised_wasserstein_dice", json!({}), gwd),
        ("generalised_wasserstein_dice", json!({}), fg_dice),
        ("generalised_wasserstein_dice", json!({"distance_matrix": [0, 1, 1, 0]}), gwd),
        ("sensitivity_specificity", json!({}), ss),
    ];
    for (name, params, want) in cases {
        let loss = new_loss(&reg, name, &params);
        close(eval(&loss, &x, &y, None), want, 1e-12, &format!("{name} {params}"));
        // f32 logits are computed in f32.
        let got32 = eval_t(&loss, &x.to_kind(Kind::Float), &y, None);
        assert_eq!(got32.kind(), Kind::Float);
        close(f64::try_from(got32.to_kind(Kind::Double)).unwrap(), want, 1e-5, &format!("{name} {params} (f32)"));
    }
}

// Case B: K = 3, three voxels, labels [0, 0, 1]: class 2 absent.
const B: [[f64; 3]; 3] = [[2.0, 0.0, -1.0], [0.5, 0.5, 0.0], [-1.0, 1.0, 0.3]];

#[test]
fn values_match_hand_computation_three_classes() {
    let reg = registry();
    let x = logits_of(&[&B[0], &B[1], &B[2]]);
    let y = labels_of(&[0, 0, 1]);
    let p: Vec<Vec<f64>> = B.iter().map(|r| softmax(r)).collect();

    // Generalised Dice: G = [2, 1, 0], raw weights [1/4, 1, absent → largest = 1],
    // normalised by their sum 2.25.
    let w = [0.25 / 2.25, 1.0 / 2.25, 1.0 / 2.25];
    let intersection = [p[0][0] + p[1][0], p[2][1], 0.0];
    let predicted = [p[0][0] + p[1][0] + p[2][0], p[0][1] + p[1][1] + p[2][1], p[0][2] + p[1][2] + p[2][2]];
    let truth = [2.0, 1.0, 0.0];
    let num = 2.0 * (w[0] * intersection[0] + w[1] * intersection[1] + w[2] * intersection[2]) + S;
    let den =
        w[0] * (predicted[0] + truth[0]) + w[1] * (predicted[1] + truth[1]) + w[2] * (predicted[2] + truth[2]) + S;
    let gdice = 1.0 - num / den;

    // Wasserstein Dice with M = [[0,1,1],[1,0,.5],[1,.5,0]]: W_v = Σ_l p_v[l] M[l, y_v];
    // α = M[·, 0] = [0, 1, 1]; TP = Σ_v α_{y_v} (α_{y_v} − W_v) = 1 · (1 − W_2).
    let w0 = p[0][1] + p[0][2];
    let w1 = p[1][1] + p[1][2];
    let w2 = p[2][0] + 0.5 * p[2][2];
    let tp = 1.0 - w2;
    let gwd = 1.0 - (2.0 * tp + S) / (2.0 * tp + w0 + w1 + w2 + S);
    // Default matrix: W_v = 1 − p_v[y_v]; TP = p_2[1].
    let (e0, e1, e2) = (1.0 - p[0][0], 1.0 - p[1][0], 1.0 - p[2][1]);
    let gwd_default = 1.0 - (2.0 * p[2][1] + S) / (2.0 * p[2][1] + e0 + e1 + e2 + S);

    // Focal with per-class alpha.
    let a = [0.2, 0.5, 0.3];
    let fl = |v: usize, c: usize| a[c] * (1.0 - p[v][c]).powi(2) * -p[v][c].ln();
    let focal = (fl(0, 0) + fl(1, 0) + fl(2, 1)) / 3.0;

    // Sensitivity-specificity per class, r = 0.05; class 2 has no voxels: its sensitivity
    // term is 0 / (0 + s) = 0.
    let r = 0.05;
    let ss0 =
        r * ((1.0 - p[0][0]).powi(2) + (1.0 - p[1][0]).powi(2)) / (2.0 + S) + (1.0 - r) * p[2][0].powi(2) / (1.0 + S);
    let ss1 = r * (1.0 - p[2][1]).powi(2) / (1.0 + S) + (1.0 - r) * (p[0][1].powi(2) + p[1][1].powi(2)) / (2.0 + S);
    let ss2 = (1.0 - r) * (p[0][2].powi(2) + p[1][2].powi(2) + p[2][2].powi(2)) / (3.0 + S);
    let ss = (ss0 + ss1 + ss2) / 3.0;

    // Dice includes the absent class: its score is s / (P_2 + s).
    let d = [
        (2.0 * intersection[0] + S) / (predicted[0] + 2.0 + S),
        (2.0 * intersection[1] + S) / (predicted[1] + 1.0 + S),
        S / (predicted[2] + S),
    ];
    let dice = 1.0 - (d[0] + d[1] + d[2]) / 3.0;

    let cases = [
        ("generalised_dice", json!({}), gdice),
        ("generalised_wasserstein_dice", json!({"distance_matrix": [0, 1, 1, 1, 0, 0.5, 1, 0.5, 0]}), gwd),
        ("generalised_wasserstein_dice", json!({}), gwd_default),
        ("focal", json!({"alpha": a}), focal),
        ("sensitivity_specificity", json!({}), ss),
        ("dice", json!({}), dice),
    ];
    for (name, params, want) in cases {
        let loss = new_loss(&reg, name, &params);
        close(eval(&loss, &x, &y, None), want, 1e-12, &format!("{name} {params}"));
    }
}

#[test]
fn a_perfect_prediction_reaches_the_minimum() {
    let reg = registry();
    let y = labels_of(&[0, 2, 1, 2]);
    let onehot = y.squeeze_dim(1).one_hot(3).permute([0, 4, 1, 2, 3]).to_kind(Kind::Double);
    let perfect = &onehot * 60.0 - 30.0; // +30 on the true class, −30 elsewhere
    let wrong = -&perfect;
    for (name, params) in every_loss() {
        let loss = new_loss(&reg, name, &params);
        let best = eval(&loss, &perfect, &y, None);
        close(best, 0.0, 1e-9, &format!("{name} {params}: perfect prediction"));
        let worst = eval(&loss, &wrong, &y, None);
        assert!(worst > best + 0.01, "{name} {params}: wrong prediction {worst} vs perfect {best}");
    }
}

/// Deterministic pseudo-random f64 values in [lo, hi).
fn pseudo_random(n: usize, seed: u64, lo: f64, hi: f64) -> Vec<f64> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            lo + (hi - lo) * ((s >> 11) as f64 / (1u64 << 53) as f64)
        })
        .collect()
}

/// A batch of 2, 3 classes, 2×2×1 voxels, every class present.
fn batch() -> (Tensor, Tensor, Tensor) {
    let logits = Tensor::from_slice(&pseudo_random(24, 7, -2.0, 2.0)).view([2, 3, 2, 2, 1]);
    let labels = Tensor::from_slice(&[0i64, 1, 2, 1, 2, 2, 0, 1]).view([2, 1, 2, 2, 1]);
    let weight = Tensor::from_slice(&pseudo_random(8, 11, 0.2, 2.0)).view([2, 1, 2, 2, 1]);
    (logits, labels, weight)
}

#[test]
fn gradients_match_central_differences() {
    let reg = registry();
    let (logits, labels, weight) = batch();
    let h = 1e-5;
    for (name, params) in every_loss() {
        let loss = new_loss(&reg, name, &params);
        for w in [None, Some(&weight)] {
            let x = logits.copy().set_requires_grad(true);
            eval_t(&loss, &x, &labels, w).backward();
            let grad: Vec<f64> = Vec::try_from(x.grad().flatten(0, -1)).unwrap();
            let base: Vec<f64> = Vec::try_from(logits.flatten(0, -1)).unwrap();
            for (j, g) in grad.iter().enumerate() {
                let at = |d: f64| {
                    let mut v = base.clone();
                    v[j] += d;
                    eval(&loss, &Tensor::from_slice(&v).view([2, 3, 2, 2, 1]), &labels, w)
                };
                let numeric = (at(h) - at(-h)) / (2.0 * h);
                let tol = 1e-7 * numeric.abs().max(1.0);
                assert!(
                    (g - numeric).abs() <= tol,
                    "{name} {params} weighted={}: d/dx[{j}] analytic {g}, numeric {numeric}",
                    w.is_some()
                );
            }
        }
    }
}

#[test]
fn f32_gradients_agree_with_f64_ones() {
    let reg = registry();
    let (logits, labels, weight) = batch();
    for (name, params) in every_loss() {
        let loss = new_loss(&reg, name, &params);
        let grad = |kind: Kind| {
            let x = logits.to_kind(kind).copy().set_requires_grad(true);
            eval_t(&loss, &x, &labels, Some(&weight)).backward();
            x.grad().to_kind(Kind::Double)
        };
        let diff = f64::try_from((grad(Kind::Float) - grad(Kind::Double)).abs().max()).unwrap();
        assert!(diff <= 1e-5, "{name} {params}: f32 vs f64 gradient differ by {diff}");
    }
}

#[test]
fn all_ones_weights_equal_no_weights() {
    let reg = registry();
    let (logits, labels, weight) = batch();
    let ones = weight.ones_like();
    for (name, params) in every_loss() {
        let loss = new_loss(&reg, name, &params);
        let plain = eval(&loss, &logits, &labels, None);
        close(eval(&loss, &logits, &labels, Some(&ones)), plain, 1e-12, &format!("{name} {params}"));
        // Non-trivial weights do change the value.
        assert!((eval(&loss, &logits, &labels, Some(&weight)) - plain).abs() > 1e-6, "{name} {params}");
    }
}

#[test]
fn a_zero_weight_removes_the_voxel() {
    let reg = registry();
    let x = logits_of(&[&B[0], &B[1], &B[2], &[3.0, -2.0, 0.4]]);
    let y = labels_of(&[0, 0, 1, 2]);
    let w = weights_of(&[1.0, 1.0, 1.0, 0.0]);
    // The same voxel with other logits and another label.
    let x_other = logits_of(&[&B[0], &B[1], &B[2], &[-5.0, 0.0, 7.0]]);
    let y_other = labels_of(&[0, 0, 1, 0]);
    let x_removed = x.narrow(4, 0, 3);
    let y_removed = y.narrow(4, 0, 3);
    for (name, params) in every_loss() {
        let loss = new_loss(&reg, name, &params);
        let what = format!("{name} {params}");
        let weighted = eval(&loss, &x, &y, Some(&w));
        close(weighted, eval(&loss, &x_removed, &y_removed, None), 1e-12, &what);
        close(eval(&loss, &x_other, &y_other, Some(&w)), weighted, 1e-12, &what);
        // No gradient flows to the removed voxel.
        let xg = x.copy().set_requires_grad(true);
        eval_t(&loss, &xg, &y, Some(&w)).backward();
        let g = f64::try_from(xg.grad().narrow(4, 3, 1).abs().max()).unwrap();
        assert_eq!(g, 0.0, "{what}: gradient at the zero-weight voxel");
    }
}

#[test]
fn an_integer_weight_counts_the_voxel_that_many_times() {
    // Weights multiply each voxel's term once inside every sum: weight 2 is the voxel twice.
    let reg = registry();
    let x = logits_of(&[&B[0], &B[1], &B[2]]);
    let y = labels_of(&[0, 2, 1]);
    let w = weights_of(&[1.0, 2.0, 1.0]);
    let x_twice = logits_of(&[&B[0], &B[1], &B[1], &B[2]]);
    let y_twice = labels_of(&[0, 2, 2, 1]);
    for (name, params) in every_loss() {
        let loss = new_loss(&reg, name, &params);
        close(eval(&loss, &x, &y, Some(&w)), eval(&loss, &x_twice, &y_twice, None), 1e-12, &format!("{name} {params}"));
    }
}

/// The voxels of a batch laid out in one row `[1, K, 1, 1, V']`, voxel `v` (in
/// `[N, 1, D, H, W]` order) repeated `times[v]` times: logits and labels.
fn repeated(logits: &Tensor, labels: &Tensor, times: &[i64]) -> (Tensor, Tensor) {
    let k = logits.size()[1];
    let rows = logits.movedim(&[1], &[4]).reshape([-1, k]);
    let index: Vec<i64> =
        times.iter().enumerate().flat_map(|(v, &n)| std::iter::repeat_n(v as i64, n as usize)).collect();
    let index = Tensor::from_slice(&index);
    let x = rows.index_select(0, &index).transpose(0, 1).contiguous().view([1, k, 1, 1, -1]);
    let y = labels.reshape([-1]).index_select(0, &index).view([1, 1, 1, 1, -1]);
    (x, y)
}

#[test]
fn a_weight_map_of_zeros_and_twos_removes_and_doubles_whole_regions_of_a_batch() {
    // Every loss sums over the batch and all voxels together (voxel means, or per-class
    // soft counts), so the layout of the voxels does not change its value: weight 0 on a
    // region equals the loss on the other voxels alone, and weight 2 equals those voxels
    // present twice, the voxel-wise means' denominators Σw counting them twice too.
    let reg = registry();
    let dims = [2i64, 3, 3, 4, 2]; // N, K, D, H, W
    let logits = Tensor::from_slice(&pseudo_random(dims.iter().product::<i64>() as usize, 5, -2.0, 2.0)).view(dims);
    let labels: Vec<i64> = (0..2 * 3 * 4 * 2).map(|v| (v * 7 + v / 5) % 3).collect();
    let labels = Tensor::from_slice(&labels).view([2, 1, 3, 4, 2]);
    // Window 0: the slice d = 0 weighs 0; window 1: rows h >= 2 weigh 2; the rest 1.
    let mut times = Vec::new();
    for n in 0..2 {
        for d in 0..3 {
            for h in 0..4 {
                for _w in 0..2 {
                    times.push(if n == 0 && d == 0 {
                        0
                    } else if n == 1 && h >= 2 {
                        2
                    } else {
                        1
                    });
                }
            }
        }
    }
    let weight = Tensor::from_slice(&times).to_kind(Kind::Double).view([2, 1, 3, 4, 2]);
    let (x_rows, y_rows) = repeated(&logits, &labels, &times);
    for (name, params) in every_loss() {
        let loss = new_loss(&reg, name, &params);
        let what = format!("{name} {params}");
        let x = logits.copy().set_requires_grad(true);
        let weighted = eval_t(&loss, &x, &labels, Some(&weight));
        close(f64::try_from(&weighted).unwrap(), eval(&loss, &x_rows, &y_rows, None), 1e-12, &what);
        weighted.backward();
        let grad = x.grad();
        let zero_region = f64::try_from(grad.narrow(0, 0, 1).narrow(2, 0, 1).abs().max()).unwrap();
        assert_eq!(zero_region, 0.0, "{what}: gradient in the zero-weight region");
        let elsewhere = f64::try_from(grad.narrow(2, 1, 2).abs().max()).unwrap();
        assert!(elsewhere > 0.0, "{what}: no gradient outside the zero-weight region");
    }
}

#[test]
fn shape_and_value_errors_are_errors_not_panics() {
    let reg = registry();
    let x = Tensor::zeros([1, 2, 1, 1, 2], (Kind::Double, tch::Device::Cpu));
    let good_y = labels_of(&[0, 1]);
    let bad = [
        ("labels", Tensor::zeros([1, 1, 1, 1, 3], (Kind::Int64, tch::Device::Cpu)), None, "[1, 1, 1, 1, 3]"),
        (
            "labels with K channels",
            Tensor::zeros([1, 2, 1, 1, 2], (Kind::Int64, tch::Device::Cpu)),
            None,
            "[1, 2, 1, 1, 2]",
        ),
        ("labels of another rank", Tensor::zeros([1, 1, 2], (Kind::Int64, tch::Device::Cpu)), None, "[1, 1, 2]"),
        (
            "weights",
            good_y.shallow_clone(),
            Some(Tensor::ones([2, 1, 1, 1, 2], (Kind::Double, tch::Device::Cpu))),
            "[2, 1, 1, 1, 2]",
        ),
        ("label out of range", labels_of(&[0, 2]), None, "0..2"),
        ("negative label", labels_of(&[-1, 1]), None, "0..2"),
        ("fractional label", Tensor::from_slice(&[0.0, 0.5]).view([1, 1, 1, 1, 2]), None, "fractional"),
        ("negative weight", good_y.shallow_clone(), Some(weights_of(&[1.0, -1.0])), "non-negative"),
    ];
    for (name, params) in every_loss() {
        let loss = new_loss(&reg, name, &params);
        for (what, y, w, needle) in &bad {
            let err = try_eval(&loss, &x, y, w.as_ref()).expect_err(&format!("{name}: {what} accepted"));
            assert!(!err.panicked, "{name}: {what} panicked: {}", err.message);
            assert!(err.message.contains(needle), "{name}: {what}: {}", err.message);
            if *what != "negative weight" {
                assert!(err.message.contains("[1, 2, 1, 1, 2]"), "{name}: {what} names the logits: {}", err.message);
            }
        }
    }
}

#[test]
fn parameters_are_checked() {
    let reg = registry();
    let refused = [
        ("tversky", json!({"alpha": -1})),
        ("sensitivity_specificity", json!({"r": 1.5})),
        ("focal", json!({"gamma": -0.5})),
        ("focal", json!({"alpha": [0.5, -0.1]})),
        ("dice", json!({"smooth": -1})),
        ("generalised_wasserstein_dice", json!({"distance_matrix": [0, 1, 1]})),
        ("generalised_wasserstein_dice", json!({"distance_matrix": [1, 1, 1, 0]})),
        ("generalised_wasserstein_dice", json!({"distance_matrix": [0, 1, 2, 0]})),
        ("tversky", json!({"alpah": 0.3})),
    ];
    for (name, params) in refused {
        assert!(reg.new_loss(name, &params).is_err(), "{name} {params} accepted");
    }
    // A matrix or alpha of the wrong size for the logits is an error at the call.
    let x = logits_of(&[&A[0], &A[1]]);
    let y = labels_of(&[0, 1]);
    for (name, params) in [
        ("generalised_wasserstein_dice", json!({"distance_matrix": [0, 1, 1, 1, 0, 1, 1, 1, 0]})),
        ("focal", json!({"alpha": [1, 1, 1]})),
    ] {
        let err = try_eval(&new_loss(&reg, name, &params), &x, &y, None).expect_err(name);
        assert!(!err.panicked && err.message.contains("2 classes"), "{name}: {}", err.message);
    }
}
