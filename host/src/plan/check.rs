//! The planned batch checked for real: one forward and backward pass of the planned
//! network on a batch of random windows, on the configured device, measuring the time and
//! the memory it took (on a GPU the memory the CUDA driver lost to the pass, which
//! libtorch's caching allocator keeps; on a CPU the growth of the peak resident set).

use std::time::Instant;

use tch::{Device, Kind, Tensor};

use crate::config::Settings;
use crate::data::ChannelLayout;
use crate::engine::Model;
use crate::memory::PeakProbe;
use crate::plugins::Registry;

/// What one forward/backward pass took.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measured {
    /// Seconds, forward and backward.
    pub seconds: f64,
    /// Bytes the pass used at its peak, when they could be measured.
    pub peak_bytes: Option<u64>,
}

/// One planned training step to try: the network of `settings` on `device`, `batch`
/// random windows of `patch` `(i, j, k)` with `channels` input channels.
pub struct Trial<'a> {
    /// Where the network plugin is found.
    pub registry: &'a Registry,
    /// The planned config.
    pub settings: &'a Settings,
    /// The input channels.
    pub channels: &'a ChannelLayout,
    /// The device of the pass.
    pub device: Device,
    /// Windows per step.
    pub batch: usize,
    /// Window `(i, j, k)`.
    pub patch: [usize; 3],
}

impl Trial<'_> {
    /// Runs the step's forward and backward pass once, measuring its time and memory.
    ///
    /// # Errors
    /// The network cannot be built, or the pass fails (out of memory, a size the network
    /// cannot take): the message says which.
    pub fn forward_backward(&self) -> Result<Measured, String> {
        let (mut model, shape) = self.model()?;
        let probe = PeakProbe::start(matches!(self.device, Device::Cuda(_)));
        let result = timed_pass(&mut model, shape, self.device);
        let peak_bytes = probe.peak_bytes();
        drop(model);
        result.map(|seconds| Measured { seconds, peak_bytes })
    }

    /// The step's time once warm: one pass to warm up (allocator, kernel selection), then
    /// `repeats` timed passes; their median, seconds.
    ///
    /// # Errors
    /// As [`Trial::forward_backward`].
    pub fn warm_step_seconds(&self, repeats: usize) -> Result<f64, String> {
        let (mut model, shape) = self.model()?;
        timed_pass(&mut model, shape, self.device)?;
        let mut times =
            (0..repeats.max(1)).map(|_| timed_pass(&mut model, shape, self.device)).collect::<Result<Vec<_>, _>>()?;
        times.sort_by(f64::total_cmp);
        Ok(times[times.len() / 2])
    }

    /// The network built on the device, and the input shape `[batch, channels, D, H, W]`.
    ///
    /// # Errors
    /// The network cannot be built: the message says why.
    fn model(&self) -> Result<(Model, [i64; 5]), String> {
        let model = Model::build(self.registry, self.settings, self.channels.clone(), self.device)
            .map_err(|e| e.to_string())?;
        let p = self.patch;
        Ok((model, [self.batch as i64, self.channels.total() as i64, p[2] as i64, p[1] as i64, p[0] as i64]))
    }
}

/// One forward and backward pass of `model` on random windows of `shape`
/// `[batch, channels, D, H, W]`, every output (deep-supervision heads included) in the
/// loss as training runs them; seconds, the device synchronised.
///
/// # Errors
/// The pass fails: the message says why.
fn timed_pass(model: &mut Model, shape: [i64; 5], device: Device) -> Result<f64, String> {
    let sync = || {
        if let Device::Cuda(i) = device {
            tch::Cuda::synchronize(i as i64);
        }
    };
    sync();
    let start = Instant::now();
    let x = Tensor::f_randn(shape, (Kind::Float, device)).map_err(|e| e.to_string())?;
    let outputs = model.forward_outputs(&x, true).map_err(|e| e.to_string())?;
    let mut loss = Tensor::f_zeros([], (Kind::Float, device)).map_err(|e| e.to_string())?;
    for out in &outputs {
        loss = loss.f_add(&out.f_mean(Kind::Float).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    }
    loss.f_backward().map_err(|e| e.to_string())?;
    sync();
    Ok(start.elapsed().as_secs_f64())
}
