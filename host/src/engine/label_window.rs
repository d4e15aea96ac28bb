//! The label window of training (`network.label_size`, NiftyNet's label
//! `spatial_window_size`): the loss, validation and the logged predictions see only the
//! centre of each training window, `border = (window - label) / 2` voxels in from each
//! side. A network with valid convolutions returns an output smaller than its input: when
//! that output is exactly the label window, only the labels (and loss weights) are
//! cropped; when the output has the input's size, the logits are cropped too.

use tch::Tensor;

use super::tensors::torch_error;
use super::EngineError;
use crate::config::Settings;

/// The centre window the loss is computed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LabelWindow {
    /// Voxels dropped from each side of a training window, `(i, j, k)`.
    pub border: [usize; 3],
}

/// A batch's network output, labels and loss weights, all on the label window.
#[derive(Debug)]
pub struct OnLabelWindow {
    /// `[N, K, ld, lh, lw]`.
    pub logits: Tensor,
    /// `[N, 1, ld, lh, lw]`.
    pub labels: Tensor,
    /// `[N, 1, ld, lh, lw]`, when the loss has voxel weights.
    pub weights: Option<Tensor>,
}

impl LabelWindow {
    /// The label window of `settings` ([`Settings::label_border`]).
    pub fn from_settings(settings: &Settings) -> LabelWindow {
        LabelWindow { border: settings.label_border() }
    }

    /// The border along the spatial dimensions of a `[N, C, D, H, W]` tensor (`D` is `k`).
    fn tensor_border(&self) -> [i64; 3] {
        let [i, j, k] = self.border;
        [k as i64, j as i64, i as i64]
    }

    /// The centre of `t` without `border` voxels on each side, contiguous (`t` itself
    /// when the border is 0).
    ///
    /// # Shapes
    /// `[N, C, D, H, W]` → `[N, C, D - 2·bk, H - 2·bj, W - 2·bi]`
    ///
    /// # Errors
    /// A tensor that is not 5-D or not larger than twice the border, named by `what`.
    pub fn crop(&self, t: &Tensor, what: &str) -> Result<Tensor, EngineError> {
        let border = self.tensor_border();
        if border == [0, 0, 0] {
            return Ok(t.shallow_clone());
        }
        let size = t.size();
        if size.len() != 5 || (0..3).any(|a| size[a + 2] <= 2 * border[a]) {
            return Err(EngineError::Other(format!(
                "{what} of shape {size:?} has no centre inside a border of {:?} voxels (i, j, k)",
                self.border
            )));
        }
        let mut out = t.shallow_clone();
        for (a, &b) in border.iter().enumerate() {
            let dim = a as i64 + 2;
            out = out.f_narrow(dim, b, size[a + 2] - 2 * b).map_err(torch_error(format_args!("cropping {what}")))?;
        }
        out.f_contiguous().map_err(torch_error(format_args!("cropping {what}")))
    }

    /// Brings `logits`, `labels` and `weights` onto the label window: when the output
    /// has the input's (the labels') spatial size, all three are cropped; when it is
    /// already the label window (valid convolutions), the labels and weights are.
    ///
    /// # Shapes
    /// `logits` `[N, K, d, h, w]`, `labels` and `weights` `[N, 1, D, H, W]`
    ///
    /// # Errors
    /// Any other output size, naming `network`, the shapes and the label window.
    pub fn apply(
        &self,
        logits: Tensor,
        labels: Tensor,
        weights: Option<Tensor>,
        network: &str,
    ) -> Result<OnLabelWindow, EngineError> {
        let (out, input) = (logits.size(), labels.size());
        let label: Vec<i64> = input.iter().skip(2).zip(self.tensor_border()).map(|(s, b)| s - 2 * b).collect();
        let crop_labels = |labels: &Tensor, weights: Option<Tensor>| -> Result<_, EngineError> {
            let labels = self.crop(labels, "the labels")?;
            let weights = weights.map(|w| self.crop(&w, "the loss weights")).transpose()?;
            Ok((labels, weights))
        };
        if out.len() == 5 && input.len() == 5 && out[2..] == input[2..] {
            let logits = self.crop(&logits, &format!("the output of network `{network}`"))?;
            let (labels, weights) = crop_labels(&labels, weights)?;
            return Ok(OnLabelWindow { logits, labels, weights });
        }
        if out.len() == 5 && input.len() == 5 && out[2..] == label[..] {
            let (labels, weights) = crop_labels(&labels, weights)?;
            return Ok(OnLabelWindow { logits, labels, weights });
        }
        let hint = if self.border == [0, 0, 0] && out.len() == 5 && input.len() == 5 {
            // A smaller output centred in the window: say which label window fits it.
            let fit: Vec<i64> = out[2..].iter().rev().copied().collect();
            format!("; for a network with valid convolutions set `network.label_size` to its output, {fit:?} (i, j, k)")
        } else {
            String::new()
        };
        Err(EngineError::Other(format!(
            "network `{network}` returned {out:?} for windows of {input:?} (labels): the loss needs an output of the \
             window's size or of the label window's, [N, K, {}] (`network.label_size`, border {:?} (i, j, k)){hint}",
            label.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", "),
            self.border
        )))
    }
}

#[cfg(test)]
mod tests {
    use tch::{Device, Kind, Tensor};

    use super::LabelWindow;

    fn ramp(shape: [i64; 5]) -> Tensor {
        Tensor::arange(shape.iter().product::<i64>(), (Kind::Float, Device::Cpu)).view(shape)
    }

    #[test]
    fn the_centre_is_cut_per_axis_in_nifti_order() {
        // Border (i, j, k) = (1, 0, 2) on windows [k, j, i] = [6, 3, 4].
        let w = LabelWindow { border: [1, 0, 2] };
        let x = ramp([2, 1, 6, 3, 4]);
        let c = w.crop(&x, "x").unwrap();
        assert_eq!(c.size(), [2, 1, 2, 3, 2]);
        assert!(c.equal(&x.narrow(2, 2, 2).narrow(4, 1, 2)));
        assert!(w.crop(&ramp([1, 1, 4, 3, 4]), "x").unwrap_err().to_string().contains("no centre"));
        let none = LabelWindow::default();
        assert!(none.crop(&x, "x").unwrap().equal(&x));
    }

    #[test]
    fn labels_follow_a_smaller_output_and_other_sizes_are_named() {
        let w = LabelWindow { border: [3, 3, 3] };
        let labels = ramp([1, 1, 10, 10, 10]);
        let weights = Some(ramp([1, 1, 10, 10, 10]));
        // Same size: everything cropped.
        let same = w.apply(ramp([1, 2, 10, 10, 10]), labels.shallow_clone(), weights, "n").unwrap();
        assert_eq!((same.logits.size(), same.labels.size()), (vec![1, 2, 4, 4, 4], vec![1, 1, 4, 4, 4]));
        assert_eq!(same.weights.unwrap().size(), [1, 1, 4, 4, 4]);
        // A valid network's output of the label window: logits untouched.
        let valid = ramp([1, 2, 4, 4, 4]);
        let small = w.apply(valid.shallow_clone(), labels.shallow_clone(), None, "n").unwrap();
        assert!(small.logits.equal(&valid));
        assert!(small.labels.equal(&labels.narrow(2, 3, 4).narrow(3, 3, 4).narrow(4, 3, 4)));
        // Anything else names the network and shapes.
        let err = w.apply(ramp([1, 2, 6, 6, 6]), labels.shallow_clone(), None, "deepmedic").unwrap_err().to_string();
        assert!(
            err.contains("`deepmedic`") && err.contains("[1, 2, 6, 6, 6]") && err.contains("[N, K, 4, 4, 4]"),
            "{err}"
        );
        let err = LabelWindow::default().apply(ramp([1, 2, 6, 8, 4]), labels, None, "deepmedic").unwrap_err();
        assert!(err.to_string().contains("`network.label_size` to its output, [4, 8, 6]"), "{err}");
    }
}
