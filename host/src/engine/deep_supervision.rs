//! Deep supervision: the training (and validation) loss of a network with auxiliary
//! outputs at lower resolutions ([`niftyhost_plugin_api::Network::forward_outputs`]).
//!
//! Rule (nnU-Net's, Isensee et al. 2021): the loss is computed on every output against the
//! labels (and loss weights) subsampled to that output's spatial size, and the losses are
//! combined with weights halving per output, 1, 1/2, 1/4, …, normalised to sum 1. A network
//! with one output gets the loss of that output unchanged.
//!
//! Subsampling is nearest-neighbour by an integer factor `f` per axis: output voxel `i`
//! covers label voxels `f·i … f·i + f − 1` and takes the one at its centre, `f·i + (f − 1) / 2`
//! (for an even factor, the voxel just before the centre).

use tch::Tensor;

use super::tensors::torch_error;
use super::EngineError;

/// The weight of each of `n` outputs: `2^-i`, normalised to sum 1.
pub fn output_weights(n: usize) -> Vec<f64> {
    let raw: Vec<f64> = (0..n).map(|i| 0.5f64.powi(i as i32)).collect();
    let total: f64 = raw.iter().sum();
    raw.into_iter().map(|w| w / total).collect()
}

/// `volume` subsampled to the spatial size `size` by nearest neighbour (the voxel at each
/// output voxel's centre).
///
/// # Shapes
/// `[N, C, D, H, W]` → `[N, C, size[0], size[1], size[2]]`
///
/// # Errors
/// A size that does not divide the volume's along some axis (named, with both shapes), or
/// a libtorch failure.
pub fn subsample(volume: &Tensor, size: &[i64], what: &str) -> Result<Tensor, EngineError> {
    let shape = volume.size();
    if shape.len() != 5 || size.len() != 3 {
        return Err(EngineError::Other(format!(
            "deep supervision: {what} of shape {shape:?} cannot be subsampled to {size:?}: expected [N, C, D, H, W] and 3 sizes"
        )));
    }
    let mut out = volume.shallow_clone();
    for (axis, (&from, &to)) in shape[2..].iter().zip(size).enumerate() {
        if to < 1 || from % to != 0 {
            return Err(EngineError::Other(format!(
                "deep supervision: an output of spatial size {size:?} is not an integer subsampling of the {what}, \
                 of spatial size {:?} (axis {axis}: {from} is not a multiple of {to}); the network's auxiliary outputs must divide \
                 its main output",
                &shape[2..]
            )));
        }
        let factor = from / to;
        if factor > 1 {
            out = out.f_slice(2 + axis as i64, (factor - 1) / 2, None, factor).map_err(torch_error(format_args!(
                "deep supervision: subsampling the {what} by {factor} along axis {axis}"
            )))?;
        }
    }
    out.f_contiguous().map_err(torch_error(format_args!("deep supervision: copying the subsampled {what}")))
}

/// Refuses auxiliary outputs together with a label window (`network.label_size` smaller
/// than the window, `border` voxels per side in `(i, j, k)`): the loss would need the
/// window cropped at every output's resolution, which is not supported.
///
/// # Errors
/// More than one output and a non-zero border, naming the network.
pub fn refuse_label_border(outputs: usize, border: [usize; 3], network: &str) -> Result<(), EngineError> {
    if outputs > 1 && border != [0, 0, 0] {
        return Err(EngineError::Other(format!(
            "network `{network}` returned {} auxiliary outputs (deep supervision), which a label window \
             (`network.label_size` smaller than the window, border {border:?} (i, j, k)) does not support: \
             turn deep supervision off or set `network.label_size` to the window",
            outputs - 1
        )));
    }
    Ok(())
}

/// The loss of a network's outputs (main first, then auxiliary ones): `loss` on each output
/// with the labels and loss weights subsampled to its size, combined with
/// [`output_weights`]. One output: `loss` of it, unchanged.
///
/// # Shapes
/// outputs `[N, K, D_i, H_i, W_i]`; labels and loss weights `[N, 1, D, H, W]`, where each
/// `D_i, H_i, W_i` divides `D, H, W`
///
/// # Errors
/// An output whose size does not divide the labels' ([`subsample`]), `loss`'s error, or a
/// libtorch failure combining the losses.
pub fn supervised_loss(
    outputs: Vec<Tensor>,
    labels: Tensor,
    loss_weights: Option<Tensor>,
    mut loss: impl FnMut(Tensor, Tensor, Option<Tensor>) -> Result<Tensor, EngineError>,
) -> Result<Tensor, EngineError> {
    if outputs.len() == 1 {
        let main = outputs.into_iter().next().expect("one output");
        return loss(main, labels, loss_weights);
    }
    let weights = output_weights(outputs.len());
    let mut total: Option<Tensor> = None;
    for (i, (output, weight)) in outputs.into_iter().zip(weights).enumerate() {
        let size = output.size().get(2..).map(<[i64]>::to_vec).unwrap_or_default();
        let y = subsample(&labels, &size, "labels")?;
        let w = loss_weights.as_ref().map(|w| subsample(w, &size, "loss weights")).transpose()?;
        let weighted = loss(output, y, w)?
            .f_mul_scalar(weight)
            .map_err(torch_error(format_args!("deep supervision: weighting the loss of output {i}")))?;
        total = Some(match total {
            None => weighted,
            Some(t) => t.f_add(&weighted).map_err(torch_error(format_args!(
                "deep supervision: adding the loss of output {i} (is every output's loss a scalar?)"
            )))?,
        });
    }
    total.ok_or_else(|| EngineError::Other("deep supervision: the network returned no output".into()))
}

#[cfg(test)]
mod tests {
    use tch::{Device, Kind};

    use super::*;

    #[test]
    fn weights_halve_per_output_and_sum_to_one() {
        assert_eq!(output_weights(1), [1.0]);
        assert_eq!(output_weights(2), [2.0 / 3.0, 1.0 / 3.0]);
        let w = output_weights(3);
        assert_eq!(w, [4.0 / 7.0, 2.0 / 7.0, 1.0 / 7.0]);
        assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn subsampling_takes_the_voxel_at_each_output_voxels_centre() {
        // Values are their own index along W (0..12), constant along D and H.
        let v = Tensor::arange(12, (Kind::Int64, Device::Cpu)).view([1, 1, 1, 1, 12]).repeat([2, 1, 3, 4, 1]);
        // Factor 3 along W: voxels 1, 4, 7, 10 (centres); factor 1 along D, 2 along H.
        let s = subsample(&v, &[3, 2, 4], "labels").unwrap();
        assert_eq!(s.size(), [2, 1, 3, 2, 4]);
        assert_eq!(Vec::<i64>::try_from(s.get(0).get(0).get(0).get(0)).unwrap(), [1, 4, 7, 10]);
        // Factor 4: voxels 1, 5, 9 (just before the centre 1.5, 5.5, 9.5); factor 2: 0, 2, … .
        let s = subsample(&v, &[3, 4, 3], "labels").unwrap();
        assert_eq!(Vec::<i64>::try_from(s.get(1).get(0).get(2).get(3)).unwrap(), [1, 5, 9]);
        let s = subsample(&v, &[3, 4, 6], "labels").unwrap();
        assert_eq!(Vec::<i64>::try_from(s.get(0).get(0).get(0).get(0)).unwrap(), [0, 2, 4, 6, 8, 10]);
        let err = subsample(&v, &[3, 4, 5], "labels").unwrap_err().to_string();
        assert!(err.contains("not an integer subsampling of the labels, of spatial size [3, 4, 12] (axis 2: 12 is not a multiple of 5)"), "{err}");
    }

    /// A weighted mean squared error between the class-1 logit and the label, standing in
    /// for a loss plugin.
    fn mse(logits: Tensor, labels: Tensor, weights: Option<Tensor>) -> Result<Tensor, EngineError> {
        let d = logits.narrow(1, 1, 1) - labels.to_kind(Kind::Float);
        let sq = &d * &d;
        Ok(match weights {
            Some(w) => (&sq * &w).sum(Kind::Float) / w.sum(Kind::Float),
            None => sq.mean(Kind::Float),
        })
    }

    #[test]
    fn the_combined_loss_is_the_weighted_sum_of_each_outputs_loss_on_subsampled_labels() {
        tch::manual_seed(7);
        let opts = (Kind::Float, Device::Cpu);
        let labels = Tensor::randint(2, [2, 1, 4, 8, 8], (Kind::Int64, Device::Cpu));
        let weights = Tensor::rand([2, 1, 4, 8, 8], opts) + 0.5;
        let outputs = vec![
            Tensor::randn([2, 2, 4, 8, 8], opts),
            Tensor::randn([2, 2, 4, 4, 4], opts),
            Tensor::randn([2, 2, 2, 2, 2], opts),
        ];
        let combined = supervised_loss(
            outputs.iter().map(Tensor::shallow_clone).collect(),
            labels.shallow_clone(),
            Some(weights.shallow_clone()),
            mse,
        )
        .unwrap()
        .double_value(&[]);
        // By hand: output 1 halves H and W (centres 0, 2, 4, 6), output 2 halves D and
        // quarters H and W (voxels 0, 2 along D; 1, 5 along H and W).
        let pick = |t: &Tensor, d: &[i64], h: &[i64]| {
            let index = |v: &[i64]| Tensor::from_slice(v);
            t.index_select(2, &index(d)).index_select(3, &index(h)).index_select(4, &index(h))
        };
        let l0 = mse(outputs[0].shallow_clone(), labels.shallow_clone(), Some(weights.shallow_clone())).unwrap();
        let (d1, h1) = (&[0, 1, 2, 3][..], &[0, 2, 4, 6][..]);
        let l1 = mse(outputs[1].shallow_clone(), pick(&labels, d1, h1), Some(pick(&weights, d1, h1))).unwrap();
        let (d2, h2) = (&[0, 2][..], &[1, 5][..]);
        let l2 = mse(outputs[2].shallow_clone(), pick(&labels, d2, h2), Some(pick(&weights, d2, h2))).unwrap();
        let by_hand = (4.0 * l0.double_value(&[]) + 2.0 * l1.double_value(&[]) + l2.double_value(&[])) / 7.0;
        assert!((combined - by_hand).abs() < 1e-6, "{combined} against {by_hand}");
        // One output: the loss itself, without weights.
        let single = supervised_loss(vec![outputs[0].shallow_clone()], labels.shallow_clone(), None, mse).unwrap();
        assert_eq!(single.double_value(&[]), mse(outputs[0].shallow_clone(), labels, None).unwrap().double_value(&[]));
    }

    #[test]
    fn auxiliary_outputs_with_a_label_window_are_refused() {
        assert!(refuse_label_border(1, [2, 2, 2], "net").is_ok());
        assert!(refuse_label_border(3, [0, 0, 0], "net").is_ok());
        let err = refuse_label_border(3, [2, 0, 2], "net").unwrap_err().to_string();
        assert!(err.starts_with("network `net` returned 2 auxiliary outputs (deep supervision)"), "{err}");
        assert!(err.contains("border [2, 0, 2] (i, j, k)"), "{err}");
    }

    #[test]
    fn an_output_that_does_not_divide_the_labels_is_refused() {
        let labels = Tensor::zeros([1, 1, 8, 8, 8], (Kind::Int64, Device::Cpu));
        let outputs = vec![
            Tensor::zeros([1, 2, 8, 8, 8], (Kind::Float, Device::Cpu)),
            Tensor::zeros([1, 2, 3, 4, 4], (Kind::Float, Device::Cpu)),
        ];
        let err = supervised_loss(outputs, labels, None, mse).unwrap_err().to_string();
        assert!(err.contains("axis 0: 8 is not a multiple of 3"), "{err}");
    }
}
