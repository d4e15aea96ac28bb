//! The [`Network`] trait: a model whose maths lives in a plugin.

use abi_stable::sabi_trait;
use abi_stable::std_types::{RBox, RResult, RStr, RString, RVec};
use abi_stable::StableAbi;

use crate::{PluginError, RTensor};

/// A parameter or buffer with its hierarchical name (`down0.conv1.weight`).
#[repr(C)]
#[derive(StableAbi, Debug)]
pub struct NamedTensor {
    /// Dot-separated name, stable across runs (it keys checkpoints).
    pub name: RString,
    /// A shallow clone: it shares storage (and gradient) with the plugin's tensor.
    pub tensor: RTensor,
}

/// A network instance. One instance per thread or device replica: it is `Send`, not `Sync`.
///
/// Parameters are owned by the plugin. The host fetches shallow clones with
/// [`Network::named_parameters`]; the plugin changes parameters only in place, so those
/// clones stay valid until [`Network::set_device`], after which the host fetches again.
#[sabi_trait]
pub trait Network: Send {
    /// Runs the network.
    ///
    /// # Shapes
    /// - input: `[N, C_in, D, H, W]` float32 (`[N, C_in, H, W]` when `spatial_dims = 2`)
    /// - output: `[N, num_classes, D', H', W']` logits, where the output window may be
    ///   smaller than the input for networks without padding (see the plugin's README)
    ///
    /// # Errors
    /// An input shape the architecture cannot take names the constraint.
    fn forward(&mut self, input: &RTensor, train: bool) -> RResult<RTensor, PluginError>;

    /// The trainable parameters, as shallow clones.
    fn named_parameters(&self) -> RResult<RVec<NamedTensor>, PluginError>;

    /// The non-trainable state (e.g. batch-norm running statistics), as shallow clones.
    fn named_buffers(&self) -> RResult<RVec<NamedTensor>, PluginError>;

    /// Moves every parameter and buffer to a device (`cpu`, `cuda:0`, …).
    #[sabi(last_prefix_field)]
    fn set_device(&mut self, device: RStr<'_>) -> RResult<(), PluginError>;

    /// Since 1.2: runs the network and returns every output it has, the main output
    /// (the one [`Network::forward`] returns) first, then auxiliary outputs (deep
    /// supervision) from the finest to the coarsest resolution. Hosts train on all of them
    /// and infer with [`Network::forward`].
    ///
    /// The default, which a plugin built against plugin-api 1.0 or 1.1 gets (its vtable lacks
    /// this method), is the main output alone.
    ///
    /// # Shapes
    /// - input: as [`Network::forward`]
    /// - outputs: `[N, num_classes, D_i, H_i, W_i]`, the first as [`Network::forward`]'s
    ///   output, each auxiliary one at a resolution that divides the first's
    ///
    /// # Errors
    /// As [`Network::forward`].
    fn forward_outputs(&mut self, input: &RTensor, train: bool) -> RResult<RVec<RTensor>, PluginError> {
        self.forward(input, train).map(|main| RVec::from(vec![main]))
    }
}

/// An owned, type-erased network.
pub type NetworkBox = Network_TO<'static, RBox<()>>;
