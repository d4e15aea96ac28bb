//! The [`Augmentation`] trait, run in the host's loader threads.

use abi_stable::sabi_trait;
use abi_stable::std_types::{RBox, ROption, RResult};
use abi_stable::StableAbi;

use crate::{PluginError, RTensor};

/// An image with its (optional) label after augmentation.
#[repr(C)]
#[derive(StableAbi, Debug)]
pub struct AugmentedSample {
    /// The transformed image.
    pub image: RTensor,
    /// The transformed label, when one was given.
    pub label: ROption<RTensor>,
}

/// Voxel size in mm along (D, H, W).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq)]
pub struct Spacing(pub [f64; 3]);

/// A random transform of one sample.
///
/// Implementations are deterministic in `seed`: the host derives it from
/// (run seed, subject, sample index), so results do not depend on thread scheduling.
#[sabi_trait]
pub trait Augmentation: Send + Sync {
    /// Transforms one sample.
    ///
    /// # Shapes
    /// - image: `[C, D, H, W]` float32
    /// - label: `[1, D, H, W]` int64
    /// - spacing: voxel size in mm along (D, H, W)
    #[sabi(last_prefix_field)]
    fn apply(
        &self,
        image: &RTensor,
        label: ROption<&RTensor>,
        spacing: Spacing,
        seed: u64,
    ) -> RResult<AugmentedSample, PluginError>;
}

/// An owned, type-erased augmentation.
pub type AugmentationBox = Augmentation_TO<'static, RBox<()>>;
