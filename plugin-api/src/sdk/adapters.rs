//! Rust-side traits for plugin authors, and their adapters to the `#[sabi_trait]`s.

use abi_stable::std_types::{ROption, RResult, RStr, RString, RVec};
use tch::nn::VarStore;
use tch::Tensor;

use super::{guard, parse_device};
use crate::{Augmentation, AugmentedSample, Loss, NamedTensor, Network, PluginError, RTensor, Spacing};

/// A network written with ordinary `tch::nn` code. Its parameters live in the `VarStore`
/// whose root path the [`super::NetworkDef::build`] function received.
pub trait NetworkModel: Send + 'static {
    /// Checks an input shape before running, naming the violated constraint
    /// (e.g. "V-Net needs each spatial size divisible by 16, got 60").
    ///
    /// # Errors
    /// The constraint the shape violates.
    fn check_input(&self, shape: &[i64]) -> Result<(), String> {
        let _ = shape;
        Ok(())
    }

    /// Runs the network.
    ///
    /// # Shapes
    /// `[N, C_in, D, H, W]` → `[N, num_classes, D', H', W']`
    fn forward_t(&self, input: &Tensor, train: bool) -> Tensor;
}

/// A loss written with `tch`.
pub trait LossFn: Send + 'static {
    /// See [`crate::Loss::loss`] for shapes.
    ///
    /// # Errors
    /// Mismatched shapes or label values.
    fn loss(&self, logits: &Tensor, labels: &Tensor, weight: Option<&Tensor>) -> Result<Tensor, PluginError>;
}

/// What an [`AugmentFn`] returns: the augmented image and label (the label `None` when
/// none was given).
pub type Augmented = Result<(Tensor, Option<Tensor>), PluginError>;

/// An augmentation written with `tch`.
pub trait AugmentFn: Send + Sync + 'static {
    /// See [`crate::Augmentation::apply`] for shapes.
    ///
    /// # Errors
    /// Inputs the transform cannot take.
    fn apply(&self, image: &Tensor, label: Option<&Tensor>, spacing: [f64; 3], seed: u64) -> Augmented;
}

/// A [`NetworkModel`] with its parameters, exposed as a [`Network`].
pub(crate) struct NetworkAdapter {
    pub(crate) name: &'static str,
    pub(crate) vs: VarStore,
    pub(crate) model: Box<dyn NetworkModel>,
}

impl NetworkAdapter {
    fn named(&self, trainable: bool) -> RVec<NamedTensor> {
        let mut vars: Vec<(String, Tensor)> =
            self.vs.variables().into_iter().filter(|(_, t)| t.requires_grad() == trainable).collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        vars.into_iter()
            .map(|(name, t)| NamedTensor { name: RString::from(name), tensor: RTensor::from_tch(t) })
            .collect()
    }
}

impl Network for NetworkAdapter {
    fn forward(&mut self, input: &RTensor, train: bool) -> RResult<RTensor, PluginError> {
        guard(|| {
            let x = input.view();
            self.model.check_input(&x.size()).map_err(|msg| PluginError::new(format!("{}: {msg}", self.name)))?;
            Ok(RTensor::from_tch(self.model.forward_t(&x, train)))
        })
    }

    fn named_parameters(&self) -> RResult<RVec<NamedTensor>, PluginError> {
        guard(|| Ok(self.named(true)))
    }

    fn named_buffers(&self) -> RResult<RVec<NamedTensor>, PluginError> {
        guard(|| Ok(self.named(false)))
    }

    fn set_device(&mut self, device: RStr<'_>) -> RResult<(), PluginError> {
        guard(|| {
            let device = parse_device(device.as_str())?;
            self.vs.set_device(device);
            Ok(())
        })
    }
}

/// A [`LossFn`] exposed as a [`Loss`].
pub(crate) struct LossAdapter(pub(crate) Box<dyn LossFn>);

impl Loss for LossAdapter {
    fn loss(&self, logits: &RTensor, labels: &RTensor, weight: ROption<&RTensor>) -> RResult<RTensor, PluginError> {
        guard(|| {
            let weight = weight.map(RTensor::view);
            let value = self.0.loss(&logits.view(), &labels.view(), weight.as_deref().into_option())?;
            Ok(RTensor::from_tch(value))
        })
    }
}

/// An [`AugmentFn`] exposed as an [`Augmentation`].
pub(crate) struct AugmentationAdapter(pub(crate) Box<dyn AugmentFn>);

impl Augmentation for AugmentationAdapter {
    fn apply(
        &self,
        image: &RTensor,
        label: ROption<&RTensor>,
        spacing: Spacing,
        seed: u64,
    ) -> RResult<AugmentedSample, PluginError> {
        guard(|| {
            let label = label.map(RTensor::view);
            let (image, label) = self.0.apply(&image.view(), label.as_deref().into_option(), spacing.0, seed)?;
            Ok(AugmentedSample { image: RTensor::from_tch(image), label: label.map(RTensor::from_tch).into() })
        })
    }
}
