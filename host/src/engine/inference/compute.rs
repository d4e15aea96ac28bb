//! How the network's forward passes are computed at inference: the arithmetic
//! (`inference.precision`) and the memory layout (`inference.channels_last`).
//!
//! On the CPU, libtorch's oneDNN convolutions run about twice as fast on bf16 as on
//! fp32 where the processor has bf16 dot products (AVX512-BF16 or AMX), and faster on
//! channels-last-3d tensors (`[N, D, H, W, C]` in memory) than on the default layout, which
//! they reorder on every call. Both are applied by converting the network's parameters in
//! place (the plugin sees the same tensors, as the plugin rules allow) and the input of
//! every forward pass; the output is read back as float32 in the usual layout.

use niftyhost_plugin_api::sdk::channels_last_3d;
use tch::{Device, Kind, Tensor};

use super::super::Model;
pub use crate::config::InferencePrecision;

/// `inference.precision` on a libtorch device (an extension of the configuration's type,
/// which knows no devices).
pub trait PrecisionOnDevice {
    /// What `self` means on `device`: `auto` stays (bf16, or float32 when the network
    /// fails in bf16 on its first batch) on a CPU with bf16 dot products, and is float32
    /// elsewhere. Probes the CPU.
    fn on(self, device: Device) -> InferencePrecision;
}

impl PrecisionOnDevice for InferencePrecision {
    fn on(self, device: Device) -> InferencePrecision {
        match self {
            InferencePrecision::Auto if device != Device::Cpu || !cpu_has_bf16() => InferencePrecision::Fp32,
            other => other,
        }
    }
}

/// Whether this CPU computes bf16 dot products natively (AVX512-BF16, or AMX);
/// elsewhere oneDNN emulates bf16 and gains little.
pub fn cpu_has_bf16() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        // Processors with AMX-BF16 have AVX512-BF16 too.
        std::arch::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Precision and layout of the forward passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compute {
    /// The arithmetic, for the device ([`InferencePrecision::on`]): `Auto` here is bf16
    /// with a fall-back to float32 should the network fail in it.
    pub precision: InferencePrecision,
    /// Whether 5-D parameters and inputs are stored channels-last-3d.
    pub channels_last: bool,
}

impl Default for Compute {
    /// float32 in libtorch's default layout: what training uses.
    fn default() -> Self {
        Compute { precision: InferencePrecision::Fp32, channels_last: false }
    }
}

impl Compute {
    /// Converts the model's floating-point parameters and buffers in place (`set_data`
    /// on the tensors it shares with the plugin): to bf16, and 5-D ones to
    /// channels-last-3d.
    pub fn prepare_model(&self, model: &mut Model) {
        if *self == Compute::default() {
            return;
        }
        for (_, t) in model.params.iter_mut().chain(model.buffers.iter_mut()) {
            let converted = self.convert(t);
            tch::no_grad(|| t.set_data(&converted));
        }
    }

    /// The network's input in this precision and layout.
    ///
    /// # Shapes
    /// `[N, C, D, H, W]` → the same
    pub fn prepare_input(&self, input: &Tensor) -> Tensor {
        self.convert(input)
    }

    fn convert(&self, t: &Tensor) -> Tensor {
        let t = match (self.precision, t.kind()) {
            (InferencePrecision::Bf16 | InferencePrecision::Auto, Kind::Float | Kind::Double | Kind::Half) => {
                t.to_kind(Kind::BFloat16)
            }
            _ => t.shallow_clone(),
        };
        if self.channels_last && t.dim() == 5 {
            channels_last_3d(&t)
        } else {
            t
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_precisions_and_rejects_others() {
        let parse = |name: &str, device| name.parse::<InferencePrecision>().map(|p| p.on(device));
        assert_eq!(parse("fp32", Device::Cpu), Ok(InferencePrecision::Fp32));
        assert_eq!(parse("bf16", Device::Cpu), Ok(InferencePrecision::Bf16));
        assert_eq!(parse("auto", Device::Cuda(0)), Ok(InferencePrecision::Fp32));
        let auto = if cpu_has_bf16() { InferencePrecision::Auto } else { InferencePrecision::Fp32 };
        assert_eq!(parse("auto", Device::Cpu), Ok(auto));
        assert!(parse("fp16", Device::Cpu).unwrap_err().contains("\"fp16\""));
    }

    #[test]
    fn converted_inputs_keep_their_values_and_shape() {
        let x = Tensor::randn([2, 3, 4, 5, 6], (Kind::Float, Device::Cpu));
        let cl = Compute { precision: InferencePrecision::Fp32, channels_last: true }.prepare_input(&x);
        assert_eq!(cl.size(), x.size());
        assert_eq!(cl.stride(), vec![360, 1, 90, 18, 3]);
        assert!(cl.equal(&x));
        let bf = Compute { precision: InferencePrecision::Bf16, channels_last: false }.prepare_input(&x);
        assert_eq!(bf.kind(), Kind::BFloat16);
        assert!(bf.to_kind(Kind::Float).allclose(&x, 1e-2, 1e-2, false));
    }
}
