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

/// The arithmetic of the forward passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// float32.
    Fp32,
    /// bfloat16 parameters and activations (float32's range, 8 bits of mantissa).
    Bf16,
    /// bf16 when the network runs in it (`auto`), else float32: a network with an
    /// operation libtorch lacks in bf16 on this device falls back on its first batch.
    Bf16OrFp32,
}

impl Precision {
    /// Parses `fp32`, `bf16` or `auto` (bf16 on a CPU with bf16 dot products, fp32
    /// elsewhere) for `device`.
    ///
    /// # Errors
    /// Any other name.
    pub fn parse(name: &str, device: Device) -> Result<Precision, String> {
        match name {
            "fp32" => Ok(Precision::Fp32),
            "bf16" => Ok(Precision::Bf16),
            "auto" if device == Device::Cpu && cpu_has_bf16() => Ok(Precision::Bf16OrFp32),
            "auto" => Ok(Precision::Fp32),
            _ => Err(format!("expected fp32, bf16 or auto, got \"{name}\"")),
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
    /// The arithmetic.
    pub precision: Precision,
    /// Whether 5-D parameters and inputs are stored channels-last-3d.
    pub channels_last: bool,
}

impl Default for Compute {
    /// float32 in libtorch's default layout: what training uses.
    fn default() -> Self {
        Compute { precision: Precision::Fp32, channels_last: false }
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
            (Precision::Bf16 | Precision::Bf16OrFp32, Kind::Float | Kind::Double | Kind::Half) => {
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
        assert_eq!(Precision::parse("fp32", Device::Cpu), Ok(Precision::Fp32));
        assert_eq!(Precision::parse("bf16", Device::Cpu), Ok(Precision::Bf16));
        assert_eq!(Precision::parse("auto", Device::Cuda(0)), Ok(Precision::Fp32));
        let auto = if cpu_has_bf16() { Precision::Bf16OrFp32 } else { Precision::Fp32 };
        assert_eq!(Precision::parse("auto", Device::Cpu), Ok(auto));
        assert!(Precision::parse("fp16", Device::Cpu).unwrap_err().contains("\"fp16\""));
    }

    #[test]
    fn converted_inputs_keep_their_values_and_shape() {
        let x = Tensor::randn([2, 3, 4, 5, 6], (Kind::Float, Device::Cpu));
        let cl = Compute { precision: Precision::Fp32, channels_last: true }.prepare_input(&x);
        assert_eq!(cl.size(), x.size());
        assert_eq!(cl.stride(), vec![360, 1, 90, 18, 3]);
        assert!(cl.equal(&x));
        let bf = Compute { precision: Precision::Bf16, channels_last: false }.prepare_input(&x);
        assert_eq!(bf.kind(), Kind::BFloat16);
        assert!(bf.to_kind(Kind::Float).allclose(&x, 1e-2, 1e-2, false));
    }
}
