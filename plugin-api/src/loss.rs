//! The [`Loss`] trait.

use abi_stable::sabi_trait;
use abi_stable::std_types::{RBox, ROption, RResult};

use crate::{PluginError, RTensor};

/// A segmentation loss.
#[sabi_trait]
pub trait Loss: Send {
    /// Computes the loss as a scalar tensor that the host differentiates.
    ///
    /// # Shapes
    /// - logits: `[N, K, D, H, W]` float (K classes, before softmax)
    /// - labels: `[N, 1, D, H, W]` int64 in `0..K`
    /// - weight (optional): `[N, 1, D, H, W]` float voxel weights
    /// - result: `[]`
    ///
    /// # Errors
    /// Mismatched shapes name both shapes.
    #[sabi(last_prefix_field)]
    fn loss(&self, logits: &RTensor, labels: &RTensor, weight: ROption<&RTensor>) -> RResult<RTensor, PluginError>;
}

/// An owned, type-erased loss.
pub type LossBox = Loss_TO<'static, RBox<()>>;
