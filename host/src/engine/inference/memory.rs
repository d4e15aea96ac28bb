//! Fitting the windows run at once to memory. The configured batch and workers say how
//! many windows run at the same time (`inference.batch_size` per worker); NiftyNet files
//! take the training batch for it (`batch_size = 128` in its `deepmedic_config.ini`,
//! whose 195³ inference windows with 160 classes take gigabytes each). Before any volume
//! is read, one window of the fitted size runs alone while its peak memory is measured
//! ([`measure`]); each volume then runs at most as many windows at once as fit in 80 % of
//! the memory available before it (fewer windows per batch first, then fewer workers), with a
//! warning naming the keys when that is fewer than configured. A window that does not fit
//! alone fails as it is measured, with an error naming the window and its key.
//!
//! What a window costs is a fixed part and a part per voxel of its input, so that windows
//! that take a volume's full extent (0 in `inference.spatial_window_size`) are costed at
//! their size for each volume (a second, larger window is measured to tell the two parts
//! apart):
//! - on the CPU, the pass's peak (libtorch's activations, the output) and twice its
//!   float32 output (the copy the blending reads and the batch waiting to be blended);
//! - on a GPU, the pass's peak in device memory, and twice the output in host memory.
//!
//! Where the windows at once take more than half the memory, large blocks get pages of
//! their own ([`memory::map_large_blocks`]). A batch that runs out of memory all the same
//! (the measurement is one pass's; a GPU's caching allocator can hide what an earlier
//! probe left) runs again in halves ([`predict_halving`]).

use tch::{Device, Kind, Tensor};

use super::super::EngineError;
use super::predictor::Predictor;
use crate::memory::{self, PeakProbe};

/// The fraction of the available memory that the windows run at once may take.
const USABLE: f64 = 0.8;

/// The share of the usable memory above which the windows at once take large blocks
/// on their own pages ([`memory::map_large_blocks`]): a heap that keeps freed memory
/// fragments under blocks of gigabytes.
const TIGHT: f64 = 0.5;

/// The configuration keys that set how many windows run at once.
const KEYS: &str = "`inference.batch_size` (windows per batch) and `inference.workers`";

/// What one inference window costs, measured on windows of the fitted size, and the
/// memory the windows may take.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowMemory {
    /// Host bytes of a window.
    pub host: Cost,
    /// Device bytes of a window (on a GPU).
    pub device: Option<Cost>,
    /// Host memory the windows may take (80 % of what was available before the
    /// measurement), bytes; `None` where it is not known.
    pub host_usable: Option<u64>,
    /// Device memory the windows may take (80 % of what was free before the measurement,
    /// on a GPU), bytes.
    pub device_usable: Option<u64>,
    /// Voxels of the (first) window measured.
    pub voxels: usize,
    /// The windows at once chosen for the measured window ([`WindowMemory::fit`] warns
    /// again only below it).
    pub fitted: Concurrency,
}

/// The bytes of a window as a function of its voxels: a part that does not grow with
/// the window (weights reordered for the pass, libtorch's workspaces) and one per voxel.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cost {
    /// Bytes whatever the window.
    pub fixed: f64,
    /// Bytes per voxel of the input window.
    pub per_voxel: f64,
}

impl Cost {
    /// Bytes of a window of `voxels`.
    pub fn of(&self, voxels: usize) -> f64 {
        self.fixed + self.per_voxel * voxels as f64
    }

    /// The cost through the measured `(voxels, bytes)`: one point is all per voxel; two
    /// (of different sizes) give the part per voxel from their difference, at least
    /// `min_per_voxel`, the rest fixed (never negative).
    pub fn through(points: &[(usize, f64)], min_per_voxel: f64) -> Cost {
        match points {
            [(v1, b1), (v2, b2), ..] if v1 != v2 => {
                let per_voxel = ((b2 - b1) / (*v2 as f64 - *v1 as f64)).max(min_per_voxel);
                let (v, b) = if v1 > v2 { (*v1, *b1) } else { (*v2, *b2) };
                Cost { fixed: (b - per_voxel * v as f64).max(0.0), per_voxel }
            }
            [(v, b), ..] => Cost { fixed: 0.0, per_voxel: (b / (*v).max(1) as f64).max(min_per_voxel) },
            [] => Cost { fixed: 0.0, per_voxel: min_per_voxel },
        }
    }
}

/// How many windows run at the same time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Concurrency {
    /// Windows per batch.
    pub batch: usize,
    /// Workers, each running its own batch.
    pub workers: usize,
}

impl Concurrency {
    /// Windows in memory at once.
    pub fn windows(&self) -> usize {
        self.batch * self.workers
    }
}

/// At most `configured` windows at once, as many as `fit` (at least one): fewer windows
/// per batch first, then fewer workers.
pub fn limit(configured: Concurrency, fit: usize) -> Concurrency {
    let fit = fit.max(1);
    if configured.windows() <= fit {
        return configured;
    }
    let batch = (fit / configured.workers).max(1).min(configured.batch);
    let workers = (fit / batch).clamp(1, configured.workers);
    Concurrency { batch, workers }
}

/// The part of `bytes` the windows may take.
fn usable(bytes: u64) -> u64 {
    (bytes as f64 * USABLE) as u64
}

/// Host memory the windows may take now: 80 % of the smaller of the system's available
/// memory and the memory budget ([`crate::budget`]); `None` where neither is known.
fn host_usable() -> Option<u64> {
    let budget = crate::budget::budget().ok().map(|b| b.bytes);
    [memory::available(), budget].into_iter().flatten().min().map(usable)
}

/// Measures the memory of a zero window of each of `windows` `(i, j, k)` (the fitted
/// one; a second, larger one where the volumes set the size of full-extent axes, so that
/// the part of the cost that does not grow with the window is told apart) with
/// `channels` input channels through `predictor` on `device`, and the windows at once that
/// fit for the first out of `configured`, warning when that is fewer.
///
/// # Shapes
/// Each window runs as `[1, channels, wk, wj, wi]`.
///
/// # Errors
/// The predictor's error; when it ran out of memory, the message says that one window
/// does not fit and names `inference.spatial_window_size`.
pub fn measure(
    predictor: &mut Predictor,
    windows: &[[usize; 3]],
    channels: usize,
    configured: Concurrency,
    device: Device,
) -> Result<WindowMemory, EngineError> {
    let cuda = matches!(device, Device::Cuda(_));
    // Before the passes: the memory they free stays with malloc (or libtorch's caching
    // allocator) and is reused by the windows, but no longer counts as available.
    let host_usable = host_usable();
    let mut device_usable = None;
    let (mut host, mut on_device, mut min_per_voxel) = (Vec::new(), Vec::new(), 0.0f64);
    for &window in windows {
        let [i, j, k] = window.map(|w| w as i64);
        let probe = PeakProbe::start(cuda);
        device_usable = device_usable.or(probe.cuda_free_before().map(usable));
        let x = Tensor::zeros([1, channels as i64, k, j, i], (Kind::Float, device));
        // As a batch runs: every model of the ensemble on every test-time mirroring.
        let out = predictor.predict(&x).map_err(|e| out_of_memory_hint(e, window))?;
        let peak = probe.peak_bytes().unwrap_or(0) as f64;
        let voxels = window.iter().product::<usize>().max(1);
        // The output twice: the copy blended and the batch waiting.
        let outputs = 2.0 * (out.numel() * 4) as f64;
        min_per_voxel = min_per_voxel.max(outputs / voxels as f64);
        host.push((voxels, if cuda { outputs } else { peak + outputs }));
        on_device.push((voxels, peak));
    }
    let voxels = host.first().map_or(1, |p| p.0);
    let mut measured = WindowMemory {
        host: Cost::through(&host, min_per_voxel),
        device: cuda.then(|| Cost::through(&on_device, 0.0)),
        host_usable,
        device_usable,
        voxels,
        fitted: configured,
    };
    measured.fitted = measured.concurrency(voxels, configured);
    let window = windows.first().copied().unwrap_or_default();
    if measured.fitted != configured {
        warn_lowered(&measured, window, configured, measured.fitted);
    }
    let at_once = measured.host.of(voxels) * measured.fitted.windows() as f64;
    if measured.host_usable.is_some_and(|usable| at_once > TIGHT * usable as f64) {
        tracing::debug!(at_once_mb = (at_once as u64) >> 20, "the windows take most of the memory: large blocks are mapped on their own");
        memory::map_large_blocks();
    }
    Ok(measured)
}

impl WindowMemory {
    /// Windows at once of `voxels` each that fit in memory now, out of `configured`.
    pub fn concurrency(&self, voxels: usize, configured: Concurrency) -> Concurrency {
        let fits = |usable: Option<u64>, cost: Option<Cost>| match (usable, cost.map(|c| c.of(voxels))) {
            (Some(usable), Some(bytes)) if bytes > 0.0 => (usable as f64 / bytes).floor() as usize,
            _ => usize::MAX,
        };
        let fit = fits(self.host_usable, Some(self.host)).min(fits(self.device_usable, self.device));
        limit(configured, fit)
    }

    /// The windows at once for a volume whose windows are `window` `(i, j, k)` (the
    /// measured size, or larger on full-extent axes), warning when that is fewer than
    /// both `configured` and what the measured window got.
    pub fn fit(&self, window: [usize; 3], configured: Concurrency) -> Concurrency {
        let voxels = window.iter().product::<usize>();
        let chosen = self.concurrency(voxels, configured);
        if chosen != configured && chosen.windows() < self.fitted.windows() {
            warn_lowered(self, window, configured, chosen);
        }
        chosen
    }

    /// Bytes per window of `voxels`: host, and device on a GPU.
    fn bytes(&self, voxels: usize) -> (u64, Option<u64>) {
        (self.host.of(voxels) as u64, self.device.map(|d| d.of(voxels) as u64))
    }
}

/// Warns that fewer windows run at once than configured, and why.
fn warn_lowered(memory: &WindowMemory, window: [usize; 3], configured: Concurrency, chosen: Concurrency) {
    let (host, device) = memory.bytes(window.iter().product());
    tracing::warn!(
        ?window,
        window_host_mb = host >> 20,
        window_device_mb = device.map(|d| d >> 20),
        host_usable_mb = memory.host_usable.map(|u| u >> 20),
        device_usable_mb = memory.device_usable.map(|u| u >> 20),
        from_batch = configured.batch,
        from_workers = configured.workers,
        to_batch = chosen.batch,
        to_workers = chosen.workers,
        "fewer inference windows at once than {KEYS} ask for: that many do not fit in 80 % of the memory \
         available (measured on one window; NIFTYHOST_MEMORY_BUDGET bounds it)"
    );
}

/// Whether `error` is a network's forward pass that ran out of memory (libtorch's CPU
/// allocator or CUDA's).
pub fn is_out_of_memory(error: &EngineError) -> bool {
    let EngineError::Plugin { error, .. } = error else { return false };
    let message = error.message.to_ascii_lowercase();
    ["out of memory", "can't allocate memory", "cannot allocate memory"].iter().any(|m| message.contains(m))
}

/// `error` with a hint when it says the pass ran out of memory.
fn out_of_memory_hint(error: EngineError, window: [usize; 3]) -> EngineError {
    if !is_out_of_memory(&error) {
        return error;
    }
    let EngineError::Plugin { context, error } = error else { return error };
    EngineError::Plugin {
        context: format!(
            "{context}: one inference window of {window:?} (i, j, k) does not fit in memory on its own; \
             a smaller `inference.spatial_window_size` does"
        ),
        error,
    }
}

/// The predictor's output for `input`; a batch of several windows that runs out of
/// memory runs again as two halves (each halved again as needed), with one warning per
/// process.
///
/// # Shapes
/// `[N, C, D, H, W]` → `[N, K, D', H', W']`
///
/// # Errors
/// As [`Predictor::predict`]; running out of memory on one window.
pub fn predict_halving(predictor: &mut Predictor, input: &Tensor) -> Result<Tensor, EngineError> {
    static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    let n = input.size()[0];
    match predictor.predict(input) {
        Err(e) if n > 1 && is_out_of_memory(&e) => {
            if !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
                tracing::warn!(
                    windows = n,
                    "a batch of inference windows ran out of memory: it runs again in halves (`inference.batch_size` \
                     sets the batch; this is said once)"
                );
            }
            let first = predict_halving(predictor, &input.narrow(0, 0, n / 2))?;
            let second = predict_halving(predictor, &input.narrow(0, n / 2, n - n / 2))?;
            Tensor::f_cat(&[first, second], 0).map_err(super::super::tensors::torch_error("joining the halves of a batch"))
        }
        result => result,
    }
}

#[cfg(test)]
mod tests {
    use super::{limit, Concurrency, Cost};

    const fn c(batch: usize, workers: usize) -> Concurrency {
        Concurrency { batch, workers }
    }

    #[test]
    fn two_windows_tell_the_fixed_cost_from_the_cost_per_voxel() {
        // 100 MB whatever the window, 1 kB per voxel.
        let cost = Cost::through(&[(1000, 101e6), (3000, 103e6)], 0.0);
        assert!((cost.per_voxel - 1000.0).abs() < 1e-6 && (cost.fixed - 100e6).abs() < 1.0, "{cost:?}");
        assert!((cost.of(10_000) - 110e6).abs() < 1.0);
        // Measurement noise cannot make the part per voxel smaller than the outputs'.
        assert_eq!(Cost::through(&[(1000, 5e6), (2000, 4e6)], 24.0), Cost { fixed: 4e6 - 48_000.0, per_voxel: 24.0 });
        // One window: all per voxel.
        assert_eq!(Cost::through(&[(1000, 5e6)], 24.0), Cost { fixed: 0.0, per_voxel: 5000.0 });
    }

    #[test]
    fn fewer_windows_per_batch_first_then_fewer_workers() {
        assert_eq!(limit(c(4, 2), 8), c(4, 2));
        assert_eq!(limit(c(4, 2), 100), c(4, 2));
        assert_eq!(limit(c(4, 2), 7), c(3, 2));
        assert_eq!(limit(c(4, 2), 2), c(1, 2));
        assert_eq!(limit(c(4, 2), 1), c(1, 1));
        assert_eq!(limit(c(128, 1), 3), c(3, 1));
        assert_eq!(limit(c(1, 4), 3), c(1, 3));
        // One window always runs: what does not fit alone failed when it was measured.
        assert_eq!(limit(c(128, 2), 0), c(1, 1));
    }
}
