//! Mixed precision on CUDA devices: libtorch's autocast around the forward pass and the
//! loss, and dynamic loss scaling for fp16 (whose narrow range underflows small
//! gradients). bf16 has fp32's range and needs no scaling. CPU devices always run fp32.

use serde::{Deserialize, Serialize};
use tch::{Device, Tensor};

pub use crate::config::MixedPrecision;

/// `training.mixed_precision` on libtorch's devices (an extension of the configuration's
/// type, which knows no devices).
pub trait Autocasting {
    /// What `self` means on `devices`: autocast applies to CUDA devices only, so a run
    /// with a CPU device stays fp32 (and says so).
    fn on(self, devices: &[Device]) -> MixedPrecision;

    /// Autocast for `device` on the calling thread until the guard drops (autocast state
    /// is per thread in libtorch); `None` for fp32.
    fn autocast(self, device: Device) -> Option<Autocast>;
}

/// libtorch's `c10::ScalarType` code of the reduced type of `precision`.
fn scalar_type(precision: MixedPrecision) -> Option<i8> {
    match precision {
        MixedPrecision::Full => None,
        MixedPrecision::Fp16 => Some(5),
        MixedPrecision::Bf16 => Some(15),
    }
}

impl Autocasting for MixedPrecision {
    fn on(self, devices: &[Device]) -> MixedPrecision {
        if self != MixedPrecision::Full && devices.iter().any(|d| !d.is_cuda()) {
            tracing::warn!(precision = ?self, "mixed precision applies to CUDA devices: this run stays fp32");
            return MixedPrecision::Full;
        }
        self
    }

    fn autocast(self, device: Device) -> Option<Autocast> {
        let dtype = scalar_type(self)?;
        let device_type = match device {
            Device::Cpu => DEVICE_TYPE_CPU,
            _ => DEVICE_TYPE_CUDA,
        };
        Some(Autocast::enter(device_type, dtype))
    }
}

/// `c10::DeviceType::CPU`.
const DEVICE_TYPE_CPU: i8 = 0;
/// `c10::DeviceType::CUDA`.
const DEVICE_TYPE_CUDA: i8 = 1;

mod ffi {
    // libtorch's per-device autocast switches. tch only exposes the CUDA switch with
    // its default fp16; these C++ functions (non-throwing setters of thread-local state,
    // taking `int8_t`-based enums by value) are called by their Itanium-mangled names in
    // the pinned libtorch 2.11, which the build checks.
    extern "C" {
        #[link_name = "_ZN2at8autocast20set_autocast_enabledEN3c1010DeviceTypeEb"]
        pub fn set_autocast_enabled(device_type: i8, enabled: bool);
        #[link_name = "_ZN2at8autocast19is_autocast_enabledEN3c1010DeviceTypeE"]
        pub fn is_autocast_enabled(device_type: i8) -> bool;
        #[link_name = "_ZN2at8autocast18set_autocast_dtypeEN3c1010DeviceTypeENS1_10ScalarTypeE"]
        pub fn set_autocast_dtype(device_type: i8, dtype: i8);
        #[link_name = "_ZN2at8autocast18get_autocast_dtypeEN3c1010DeviceTypeE"]
        pub fn get_autocast_dtype(device_type: i8) -> i8;
    }
}

/// Autocast switched on for one device type on this thread; restores the previous state
/// (and clears autocast's weight cache when the outermost guard ends) on drop.
pub struct Autocast {
    device_type: i8,
    was_enabled: bool,
    previous_dtype: i8,
}

impl Autocast {
    fn enter(device_type: i8, dtype: i8) -> Autocast {
        // Safety: see `ffi`; the arguments are valid enum values of the pinned libtorch.
        unsafe {
            let guard = Autocast {
                device_type,
                was_enabled: ffi::is_autocast_enabled(device_type),
                previous_dtype: ffi::get_autocast_dtype(device_type),
            };
            ffi::set_autocast_dtype(device_type, dtype);
            ffi::set_autocast_enabled(device_type, true);
            torch_sys::at_autocast_increment_nesting();
            guard
        }
    }
}

impl Drop for Autocast {
    fn drop(&mut self) {
        // Safety: as in `enter`.
        unsafe {
            if torch_sys::at_autocast_decrement_nesting() == 0 {
                torch_sys::at_autocast_clear_cache();
            }
            ffi::set_autocast_enabled(self.device_type, self.was_enabled);
            ffi::set_autocast_dtype(self.device_type, self.previous_dtype);
        }
    }
}

/// Dynamic loss scaling: the loss is multiplied by `scale` before backward; before the
/// optimiser step the gradients are divided by it. A step whose gradients overflow is
/// skipped and halves the scale; `growth_interval` good steps in a row double it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LossScaler {
    /// Current factor.
    pub scale: f64,
    /// Good steps since the last change of `scale`.
    pub good_steps: u64,
}

impl LossScaler {
    const GROWTH_INTERVAL: u64 = 2000;
    const INITIAL_SCALE: f64 = 65536.0;

    /// A scaler at the usual initial scale, 2¹⁶.
    pub fn new() -> LossScaler {
        LossScaler { scale: Self::INITIAL_SCALE, good_steps: 0 }
    }

    /// Divides the gradients of `params` by the scale and reports whether all are
    /// finite. When they are not, the gradients are cleared and the scale halves: the
    /// caller skips this step's update.
    pub fn unscale(&mut self, params: &mut [(String, Tensor)]) -> bool {
        let inverse = 1.0 / self.scale;
        let finite = tch::no_grad(|| {
            let mut finite = true;
            for (_, p) in params.iter() {
                let mut g = p.grad();
                if g.defined() {
                    let _ = g.g_mul_scalar_(inverse);
                    finite &= g.isfinite().all().int64_value(&[]) != 0;
                }
            }
            finite
        });
        if finite {
            self.good_steps += 1;
            if self.good_steps >= Self::GROWTH_INTERVAL {
                self.scale *= 2.0;
                self.good_steps = 0;
            }
        } else {
            for (_, p) in params.iter_mut() {
                p.zero_grad();
            }
            self.scale = (self.scale / 2.0).max(1.0);
            self.good_steps = 0;
        }
        finite
    }
}

impl Default for LossScaler {
    fn default() -> Self {
        LossScaler::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    #[test]
    fn cpu_devices_stay_fp32() {
        assert_eq!(MixedPrecision::Bf16.on(&[Device::Cpu]), MixedPrecision::Full);
        assert_eq!(MixedPrecision::Fp16.on(&[Device::Cuda(0), Device::Cpu]), MixedPrecision::Full);
        assert_eq!(MixedPrecision::Bf16.on(&[Device::Cuda(0)]), MixedPrecision::Bf16);
        assert!(MixedPrecision::Full.autocast(Device::Cuda(0)).is_none());
    }

    #[test]
    fn the_autocast_guard_switches_the_dtype_and_restores_it() {
        // The trainer only autocasts CUDA devices; the CPU switch exercises the same
        // calls into libtorch on a machine without a GPU.
        let a = Tensor::ones([4, 8], (Kind::Float, Device::Cpu));
        let b = Tensor::ones([8, 2], (Kind::Float, Device::Cpu));
        {
            let _guard = MixedPrecision::Bf16.autocast(Device::Cpu);
            assert_eq!(a.matmul(&b).kind(), Kind::BFloat16);
        }
        assert_eq!(a.matmul(&b).kind(), Kind::Float);
        // Safety: reading thread-local state.
        assert!(!unsafe { ffi::is_autocast_enabled(DEVICE_TYPE_CPU) });
    }

    #[test]
    fn loss_scaling_unscales_skips_overflow_and_adapts() {
        let mut p = Tensor::zeros([3], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let mut scaler = LossScaler::new();
        (p.sum(Kind::Float) * scaler.scale).backward();
        let mut params = vec![("w".to_owned(), p.shallow_clone())];
        assert!(scaler.unscale(&mut params));
        assert_eq!(Vec::<f32>::try_from(p.grad()).unwrap(), vec![1.0; 3]);
        assert_eq!((scaler.scale, scaler.good_steps), (65536.0, 1));

        p.zero_grad();
        (p.sum(Kind::Float) * f64::INFINITY).backward();
        assert!(!scaler.unscale(&mut params));
        assert_eq!((scaler.scale, scaler.good_steps), (32768.0, 0));
        assert_eq!(p.grad().abs().sum(Kind::Float).double_value(&[]), 0.0, "overflowed gradients are cleared");

        scaler.good_steps = LossScaler::GROWTH_INTERVAL - 1;
        p.zero_grad();
        (p.sum(Kind::Float) * scaler.scale).backward();
        assert!(scaler.unscale(&mut params));
        assert_eq!((scaler.scale, scaler.good_steps), (65536.0, 0));
    }
}
