//! The channels-last-3d memory layout, which the host may give a network's parameters
//! and inputs at inference (`inference.channels_last`): `[N, C, D, H, W]` tensors whose
//! channels are fastest in memory. libtorch keeps the layout through most operations;
//! code that needs the default layout for an operation can detect it and restore it.

use tch::Tensor;

/// `x` `[N, C, D, H, W]` with channels-last-3d strides (`C` fastest in memory), same
/// shape and values.
pub fn channels_last_3d(x: &Tensor) -> Tensor {
    x.permute([0, 2, 3, 4, 1]).contiguous().permute([0, 4, 1, 2, 3])
}

/// Whether `x` `[N, C, D, H, W]` is stored channels-last (`C` fastest in memory) rather
/// than contiguous.
pub fn is_channels_last_3d(x: &Tensor) -> bool {
    x.dim() == 5 && x.size()[1] > 1 && !x.is_contiguous() && x.permute([0, 2, 3, 4, 1]).is_contiguous()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn channels_last_keeps_values_and_is_recognised() {
        let x = Tensor::randn([2, 3, 4, 5, 6], (Kind::Float, Device::Cpu));
        let cl = channels_last_3d(&x);
        assert_eq!(cl.stride(), vec![360, 1, 90, 18, 3]);
        assert!(cl.equal(&x));
        assert!(is_channels_last_3d(&cl) && !is_channels_last_3d(&x));
        // One channel: both layouts are the same memory, so it counts as contiguous.
        assert!(!is_channels_last_3d(&channels_last_3d(&x.narrow(1, 0, 1))));
    }
}
