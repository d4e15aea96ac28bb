//! libtorch at run time: device selection, and loading `libtorch_cuda.so` when a CUDA
//! device is asked for. rustc links with `--as-needed`, which drops libtorch_cuda (no
//! symbol of it is referenced), so CUDA would never be registered; it must be opened
//! before the first CUDA query, because libtorch caches that first answer.

use std::path::PathBuf;
use std::sync::OnceLock;

use niftyhost_plugin_api::sdk::parse_device;
use tch::Device;

/// Devices that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The name is not a device.
    #[error("`system.devices`: {0}")]
    Name(String),
    /// More devices than the job can use.
    #[error("`system.devices` lists {0} devices; this version runs on one device only")]
    TooMany(usize),
    /// CUDA was asked for but cannot be had.
    #[error("`system.devices` asks for {device}, but {why}")]
    Unavailable {
        /// The device asked for.
        device: String,
        /// Why it cannot be used.
        why: String,
    },
}

/// The folder holding the `libtorch_cpu.so` this process mapped.
pub(crate) fn libtorch_dir() -> Option<PathBuf> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| p.ends_with("/libtorch_cpu.so"))
        .and_then(|p| PathBuf::from(p).parent().map(PathBuf::from))
}

/// Opens `libtorch_cuda.so` beside the mapped `libtorch_cpu.so`, once per process.
///
/// # Errors
/// Why it could not be opened.
pub fn load_cuda() -> Result<(), String> {
    static LOADED: OnceLock<Result<(), String>> = OnceLock::new();
    LOADED
        .get_or_init(|| {
            let dir = libtorch_dir().ok_or("libtorch_cpu.so is not mapped")?;
            let path = dir.join("libtorch_cuda.so");
            // SAFETY: libtorch_cuda's initialisers only register CUDA kernels and hooks.
            let lib = unsafe {
                libloading::os::unix::Library::open(
                    Some(&path),
                    libloading::os::unix::RTLD_NOW | libloading::os::unix::RTLD_GLOBAL,
                )
            }
            .map_err(|e| format!("cannot load {}: {e}", path.display()))?;
            std::mem::forget(lib); // never unloaded
            Ok(())
        })
        .clone()
}

/// Sets libtorch's intra-op threads to `system.torch_threads`; 0 keeps libtorch's
/// default (the core count).
pub fn set_intra_op_threads(torch_threads: usize) {
    if torch_threads > 0 {
        tch::set_num_threads(torch_threads as i32);
    }
}

/// Parses and checks the configured devices, loading CUDA first when one is a GPU.
///
/// # Errors
/// An unknown name, or a CUDA device that is not there.
pub fn select_devices(names: &[String]) -> Result<Vec<Device>, DeviceError> {
    let devices: Vec<Device> = names
        .iter()
        .map(|n| parse_device(n).map_err(|e| DeviceError::Name(e.message.to_string())))
        .collect::<Result<_, _>>()?;
    for (name, device) in names.iter().zip(&devices) {
        if let Device::Cuda(index) = device {
            load_cuda().map_err(|why| DeviceError::Unavailable { device: name.clone(), why })?;
            let count = tch::Cuda::device_count() as usize;
            if *index >= count {
                return Err(DeviceError::Unavailable {
                    device: name.clone(),
                    why: format!("libtorch sees {count} CUDA device(s)"),
                });
            }
        }
    }
    Ok(devices)
}

/// The one device a job runs on.
///
/// # Errors
/// As [`select_devices`], or more than one device (the multi-device trainer is not there yet).
pub fn single_device(names: &[String]) -> Result<Device, DeviceError> {
    match select_devices(names)?.as_slice() {
        [one] => Ok(*one),
        many => Err(DeviceError::TooMany(many.len())),
    }
}
