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

    /// Runs the network and returns every output: the main one (as [`Self::forward_t`])
    /// first, then auxiliary outputs (deep supervision) from the finest resolution to the
    /// coarsest. The default is the main output alone.
    ///
    /// # Shapes
    /// `[N, C_in, D, H, W]` → `[N, num_classes, D_i, H_i, W_i]` per output
    fn forward_outputs_t(&self, input: &Tensor, train: bool) -> Vec<Tensor> {
        vec![self.forward_t(input, train)]
    }
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
    fn check_input(&self, x: &Tensor) -> Result<(), PluginError> {
        self.model.check_input(&x.size()).map_err(|msg| PluginError::new(format!("{}: {msg}", self.name)))
    }

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
            self.check_input(&x)?;
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

    fn forward_outputs(&mut self, input: &RTensor, train: bool) -> RResult<RVec<RTensor>, PluginError> {
        guard(|| {
            let x = input.view();
            self.check_input(&x)?;
            Ok(self.model.forward_outputs_t(&x, train).into_iter().map(RTensor::from_tch).collect())
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

#[cfg(test)]
mod tests {
    use abi_stable::sabi_trait::TD_Opaque;
    use tch::{Device, Kind};

    use super::*;
    use crate::Network_TO;

    /// A network as a plugin of plugin-api 1.1 wrote it: no `forward_outputs`.
    struct OlderNetwork;

    impl Network for OlderNetwork {
        fn forward(&mut self, input: &RTensor, _: bool) -> RResult<RTensor, PluginError> {
            RResult::ROk(RTensor::from_tch(input.view().f_mul_scalar(2.0).unwrap()))
        }
        fn named_parameters(&self) -> RResult<RVec<NamedTensor>, PluginError> {
            RResult::ROk(RVec::new())
        }
        fn named_buffers(&self) -> RResult<RVec<NamedTensor>, PluginError> {
            RResult::ROk(RVec::new())
        }
        fn set_device(&mut self, _: RStr<'_>) -> RResult<(), PluginError> {
            RResult::ROk(())
        }
    }

    /// A model with one auxiliary output at half resolution.
    struct TwoOutputs;

    impl NetworkModel for TwoOutputs {
        fn check_input(&self, shape: &[i64]) -> Result<(), String> {
            if shape[2] % 2 == 0 {
                Ok(())
            } else {
                Err(format!("needs an even depth, got {}", shape[2]))
            }
        }
        fn forward_t(&self, input: &Tensor, _: bool) -> Tensor {
            input + 1.0
        }
        fn forward_outputs_t(&self, input: &Tensor, train: bool) -> Vec<Tensor> {
            vec![self.forward_t(input, train), input.avg_pool3d([2, 2, 2], [2, 2, 2], [0, 0, 0], false, true, None)]
        }
    }

    #[test]
    fn forward_outputs_defaults_to_the_main_output_alone() {
        let mut net = Network_TO::from_value(OlderNetwork, TD_Opaque);
        let x = Tensor::ones([1, 1, 2, 2, 2], (Kind::Float, Device::Cpu));
        let outputs = net.forward_outputs(&RTensor::from_tch(x.shallow_clone()), false).unwrap();
        assert_eq!(outputs.len(), 1);
        let main = outputs.into_iter().next().unwrap().into_tch();
        assert!(main.equal(&(&x * 2.0)));
    }

    #[test]
    fn the_adapter_returns_every_output_and_checks_the_input() {
        let vs = VarStore::new(Device::Cpu);
        let mut net =
            Network_TO::from_value(NetworkAdapter { name: "two", vs, model: Box::new(TwoOutputs) }, TD_Opaque);
        let x = Tensor::ones([1, 1, 4, 4, 4], (Kind::Float, Device::Cpu));
        let outputs: Vec<Tensor> = net
            .forward_outputs(&RTensor::from_tch(x.shallow_clone()), true)
            .unwrap()
            .into_iter()
            .map(RTensor::into_tch)
            .collect();
        assert_eq!(outputs.iter().map(Tensor::size).collect::<Vec<_>>(), [vec![1, 1, 4, 4, 4], vec![1, 1, 2, 2, 2]]);
        let main = net.forward(&RTensor::from_tch(x.shallow_clone()), true).unwrap().into_tch();
        assert!(main.equal(&outputs[0]));
        let odd = Tensor::ones([1, 1, 3, 4, 4], (Kind::Float, Device::Cpu));
        let err = net.forward_outputs(&RTensor::from_tch(odd), true).unwrap_err();
        assert_eq!(err.message.as_str(), "two: needs an even depth, got 3");
    }
}
