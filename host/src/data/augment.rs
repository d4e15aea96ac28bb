//! The augmentation chain of training windows: plugin components applied in order, each
//! with its probability, seeded from (run seed, window index) alone so that a window is
//! augmented the same way whatever loader thread builds it.
//!
//! The sampler calls [`AugmentationChain::apply`] on each window, in its loader thread,
//! on a crop enlarged by `training.augmentation_margin` of the window on each side, and
//! keeps the centre: rotations, scalings and deformations then move real voxels into the
//! window instead of border fill. Validation and inference never see the chain: only the
//! training sampler is given one.
//!
//! Components run with one libtorch intra-op thread ([`with_one_torch_thread`]): the
//! loader threads already work on different windows in parallel, and OpenMP teams of
//! their own would compete with the trainer's (on a busy 2-core machine a 64³ rotation
//! took 80 ms with two OpenMP threads and 31 ms with one).

use std::path::PathBuf;

use abi_stable::std_types::ROption;
use niftyhost_plugin_api::{AugmentationBox, ComponentKind, RTensor, Spacing};
use tch::Tensor;

use super::DataError;
use crate::config::{AugmentationEntry, Settings};
use crate::plugins::{Registry, RegistryError};
use crate::rng::Stream;
use crate::torch::with_one_torch_thread;

/// One built component of the chain.
struct Step {
    name: String,
    probability: f64,
    file: PathBuf,
    component: AugmentationBox,
}

/// Augmentation components applied in order to each training window.
pub struct AugmentationChain {
    steps: Vec<Step>,
}

impl std::fmt::Debug for AugmentationChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.steps.iter().map(|s| (&s.name, s.probability))).finish()
    }
}

/// Stream tag of augmentation draws (distinct from the sampler's tags).
const AUGMENT: u64 = 0xA_0637;

impl AugmentationChain {
    /// Builds the components of `entries` from the registry.
    ///
    /// # Errors
    /// An unknown component (with the nearest name and the available ones) or a plugin
    /// refusing its parameters (naming the component, the key and the library file).
    pub fn build(registry: &Registry, entries: &[AugmentationEntry]) -> Result<AugmentationChain, RegistryError> {
        let steps = entries
            .iter()
            .map(|e| {
                let component = registry.new_augmentation(&e.name, &serde_json::Value::Object(e.params.clone()))?;
                let (lib, _) = registry.find(ComponentKind::Augmentation, &e.name)?;
                Ok(Step { name: e.name.clone(), probability: e.probability, file: lib.path.clone(), component })
            })
            .collect::<Result<_, RegistryError>>()?;
        Ok(AugmentationChain { steps })
    }

    /// The chain `settings` describes (NiftyNet keys, then `[[training.augmentation]]`),
    /// or `None` when it is empty.
    ///
    /// # Errors
    /// As [`AugmentationChain::build`].
    pub fn from_settings(settings: &Settings, registry: &Registry) -> Result<Option<AugmentationChain>, RegistryError> {
        let entries = crate::config::augmentation::chain(&settings.training);
        if entries.is_empty() {
            return Ok(None);
        }
        let chain = AugmentationChain::build(registry, &entries)?;
        tracing::info!(chain = ?chain, "training windows are augmented");
        Ok(Some(chain))
    }

    /// The component names, in order.
    pub fn names(&self) -> Vec<&str> {
        self.steps.iter().map(|s| s.name.as_str()).collect()
    }

    /// Augments one window: each component runs with its probability, drawn (like its
    /// seed) from `(seed, window, position in the chain)`.
    ///
    /// # Shapes
    /// - image: `[C, D, H, W]` float32 → same
    /// - label: `[1, D, H, W]` int64 → same
    /// - spacing: voxel size in mm along `(D, H, W)`
    ///
    /// # Errors
    /// A component's error, or an output of another shape or without its label, naming
    /// the component and its library.
    pub fn apply(
        &self,
        image: Tensor,
        label: Tensor,
        spacing: [f64; 3],
        seed: u64,
        window: u64,
    ) -> Result<(Tensor, Tensor), DataError> {
        with_one_torch_thread(|| self.apply_steps(image, label, spacing, seed, window))
    }

    fn apply_steps(
        &self,
        mut image: Tensor,
        mut label: Tensor,
        spacing: [f64; 3],
        seed: u64,
        window: u64,
    ) -> Result<(Tensor, Tensor), DataError> {
        let (shape, label_shape) = (image.size(), label.size());
        for (i, step) in self.steps.iter().enumerate() {
            let mut draws = Stream::new(&[seed, AUGMENT, window, i as u64]);
            let gate = (draws.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
            let component_seed = draws.next_u64();
            if gate >= step.probability {
                continue;
            }
            let fail = |what: String| {
                DataError::Invalid(vec![format!("augmentation `{}` ({}): {what}", step.name, step.file.display())])
            };
            let (img, lab) = (RTensor::from_tch(image), RTensor::from_tch(label));
            let out = step
                .component
                .apply(&img, ROption::RSome(&lab), Spacing(spacing), component_seed)
                .into_result()
                .map_err(|e| fail(e.to_string()))?;
            image = out.image.into_tch();
            label = out.label.into_option().ok_or_else(|| fail("returned no label".into()))?.into_tch();
            if image.size() != shape || label.size() != label_shape {
                return Err(fail(format!(
                    "returned image {:?} and label {:?} for image {shape:?} and label {label_shape:?}",
                    image.size(),
                    label.size()
                )));
            }
        }
        Ok((image, label))
    }
}
