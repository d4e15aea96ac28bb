//! libtorch at run time: device selection (training runs one replica per configured
//! device, inference runs on one), loading `libtorch_cuda.so` when a CUDA device is
//! asked for, and libtorch's intra-op (OpenMP) thread counts.
//!
//! rustc links with `--as-needed`, which drops libtorch_cuda (no symbol of it is
//! referenced), so CUDA would never be registered; it must be opened before the first
//! CUDA query, because libtorch caches that first answer.

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
    /// More devices than a one-device job (inference) can use.
    #[error("`system.devices` lists {0} devices; inference runs on one device (training runs a replica on each)")]
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

/// With `system.cpu_fallback` (NiftyNet's configurations turn it on), a job whose CUDA
/// devices are not there runs on the CPU instead, with a warning naming the devices and
/// why; without it, [`select_devices`] refuses them. Returns whether it fell back.
pub fn fall_back_to_cpu(settings: &mut crate::config::Settings) -> bool {
    if !settings.system.cpu_fallback {
        return false;
    }
    let names = settings.device_names();
    let Err(why) = select_devices(&names) else { return false };
    tracing::warn!(devices = ?names, reason = %why, "the CUDA devices asked for are not there: running on the CPU (system.cpu_fallback)");
    settings.system.num_gpus = 0;
    settings.system.devices = vec!["cpu".to_owned()];
    true
}

/// The device of a job that runs on one (inference); training takes every device of
/// [`select_devices`] instead, one replica on each.
///
/// # Errors
/// As [`select_devices`], or more than one device.
pub fn single_device(names: &[String]) -> Result<Device, DeviceError> {
    match select_devices(names)?.as_slice() {
        [one] => Ok(*one),
        many => Err(DeviceError::TooMany(many.len())),
    }
}

type OmpSetNumThreads = unsafe extern "C" fn(libc::c_int);
type OmpGetMaxThreads = unsafe extern "C" fn() -> libc::c_int;

/// OpenMP's `omp_set_num_threads` and `omp_get_max_threads`, from the libgomp that
/// libtorch loaded (`None` for a libtorch without OpenMP).
fn omp() -> Option<(OmpSetNumThreads, OmpGetMaxThreads)> {
    static OMP: std::sync::OnceLock<Option<(usize, usize)>> = std::sync::OnceLock::new();
    let (set, get) = (*OMP.get_or_init(|| {
        // SAFETY: dlsym with RTLD_DEFAULT only looks symbols up; both names are C strings.
        let (set, get) = unsafe {
            (
                libc::dlsym(libc::RTLD_DEFAULT, c"omp_set_num_threads".as_ptr()),
                libc::dlsym(libc::RTLD_DEFAULT, c"omp_get_max_threads".as_ptr()),
            )
        };
        (!set.is_null() && !get.is_null()).then_some((set as usize, get as usize))
    }))?;
    // SAFETY: the addresses are OpenMP's functions with these C signatures.
    Some(unsafe {
        (std::mem::transmute::<usize, OmpSetNumThreads>(set), std::mem::transmute::<usize, OmpGetMaxThreads>(get))
    })
}

/// Runs `f` with one libtorch (OpenMP) intra-op thread in the calling thread, then
/// restores the calling thread's setting. OpenMP's thread count is per thread, so other
/// threads (the trainer's) keep theirs.
pub fn with_one_torch_thread<T>(f: impl FnOnce() -> T) -> T {
    with_torch_threads(1, f)
}

/// Runs `f` with `threads` libtorch (OpenMP) intra-op threads in the calling thread, then
/// restores the calling thread's setting (see [`with_one_torch_thread`]).
pub fn with_torch_threads<T>(threads: usize, f: impl FnOnce() -> T) -> T {
    let Some((set, get)) = omp() else { return f() };
    // libtorch sets a thread's OpenMP count on its first parallel operation (to
    // `set_num_threads`' value, or the core count): have that happen first, so that it
    // does not undo the count set here.
    let _ = tch::get_num_threads();
    // SAFETY: plain OpenMP calls on the calling thread's own setting.
    let before = unsafe { get() };
    unsafe { set(threads.max(1) as libc::c_int) };
    let out = f();
    unsafe { set(before) };
    out
}
