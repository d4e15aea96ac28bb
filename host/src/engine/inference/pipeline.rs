//! Running a volume's windows through the predictor: the grid cut into batches
//! ([`Batches`], a constant window runs once), the batches run on this thread or on one
//! thread per worker ([`run`]), and their outputs blended in grid order ([`Blender`]).

use std::collections::VecDeque;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use tch::{Device, Tensor};

use super::super::tensors::{to_device, torch_error};
use super::super::EngineError;
use super::aggregate::Aggregator;
use super::predictor::Predictor;
use super::tiling::Tiling;
use crate::data::window::extract;
use crate::data::SubjectVolumes;

/// Where a window's output comes from.
#[derive(Debug, Clone, Copy)]
enum Source {
    /// This window of its batch.
    Batch(usize),
    /// The output of constant window number `n` (computed in this or an earlier batch).
    Constant(usize),
}

/// Distinct constant windows whose output is kept for reuse (each holds one window of
/// class scores).
const MAX_CONSTANTS: usize = 4;

/// The bits of each channel's value when every voxel of each channel of `window`
/// (`[C, ...]`) is the same, else `None`.
fn constant_key(window: &[f32], channels: usize) -> Option<Vec<u32>> {
    let per = window.len() / channels.max(1);
    window
        .chunks(per.max(1))
        .map(|c| {
            let first = c[0].to_bits();
            c.iter().all(|v| v.to_bits() == first).then_some(first)
        })
        .collect()
}

/// A batch of windows: the network's input and where each window's output goes.
#[derive(Default)]
pub(super) struct Batch {
    /// `[N, C, wk, wj, wi]` of the windows run.
    input: Vec<f32>,
    /// `[N, C, wk, wj, wi]`: `N` windows run.
    shape: [i64; 5],
    /// Every window of this stretch of the grid, in grid order, with its output's source.
    windows: Vec<([usize; 3], Source)>,
    /// Constant windows first seen in this batch: (constant, window of the batch).
    firsts: Vec<(usize, usize)>,
}

impl Batch {
    /// Windows run.
    fn run(&self) -> usize {
        self.shape[0] as usize
    }
}

/// The grid of window corners cut into batches of `batch_size` windows run. A constant
/// window whose constant has run before joins a batch without running.
pub(super) struct Batches<'a> {
    volume: &'a SubjectVolumes,
    tiling: &'a Tiling,
    grid: &'a [[usize; 3]],
    next: usize,
    constants: Vec<Vec<u32>>,
}

impl<'a> Batches<'a> {
    /// The batches of the windows at `grid` (corners of kept regions, `k` slowest) over
    /// `volume`.
    pub(super) fn new(volume: &'a SubjectVolumes, tiling: &'a Tiling, grid: &'a [[usize; 3]]) -> Batches<'a> {
        Batches { volume, tiling, grid, next: 0, constants: Vec::new() }
    }

    /// Where the window just appended to `batch.input` (from `start`) gets its output:
    /// a constant window seen before shares that one's (and leaves the batch).
    fn place(&mut self, batch: &mut Batch, start: usize) -> Source {
        let run = batch.run();
        let Some(key) = constant_key(&batch.input[start..], self.volume.channels) else {
            batch.shape[0] += 1;
            return Source::Batch(run);
        };
        if let Some(n) = self.constants.iter().position(|k| *k == key) {
            batch.input.truncate(start);
            return Source::Constant(n);
        }
        if self.constants.len() < MAX_CONSTANTS {
            batch.firsts.push((self.constants.len(), run));
            self.constants.push(key);
        }
        batch.shape[0] += 1;
        Source::Batch(run)
    }
}

impl Iterator for Batches<'_> {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        if self.next == self.grid.len() {
            return None;
        }
        let [wi, wj, wk] = self.tiling.window;
        let channels = self.volume.channels;
        let mut batch = Batch {
            input: Vec::with_capacity(self.tiling.batch_size * channels * wi * wj * wk),
            shape: [0, channels as i64, wk as i64, wj as i64, wi as i64],
            ..Batch::default()
        };
        while self.next < self.grid.len() && batch.run() < self.tiling.batch_size {
            let corner = self.grid[self.next];
            self.next += 1;
            let start = batch.input.len();
            let v = self.volume;
            extract(
                &v.image,
                v.dims,
                channels,
                self.tiling.window_start(corner),
                self.tiling.window,
                0.0,
                &mut batch.input,
            );
            let source = self.place(&mut batch, start);
            batch.windows.push((corner, source));
        }
        Some(batch)
    }
}

/// The outputs of a batch's run windows.
#[derive(Debug, Default)]
pub(super) struct Outputs {
    /// `[N, K, ok, oj, oi]` as float32.
    values: Vec<f32>,
    /// One output window `(oi, oj, ok)`: the input window, or smaller by the same on
    /// both sides (valid convolutions; checked by [`check_output`]).
    dims: [usize; 3],
}

/// Adds the windows of a finished batch to the aggregator, in grid order, and keeps the
/// outputs of its first constant windows.
pub(super) struct Blender {
    agg: Aggregator,
    shared: Vec<Outputs>,
    classes: usize,
    window: [usize; 3],
    border: [usize; 3],
}

impl Blender {
    /// A blender of the window outputs of `tiling` with `classes` classes into `agg`.
    pub(super) fn new(agg: Aggregator, tiling: &Tiling, classes: usize) -> Blender {
        Blender { agg, shared: Vec::new(), classes, window: tiling.window, border: tiling.border }
    }

    /// Where the kept region starts inside an output window of `dims`: the border less
    /// what the network already left out on each side.
    fn offset(&self, dims: [usize; 3]) -> [usize; 3] {
        std::array::from_fn(|a| self.border[a] - (self.window[a] - dims[a]) / 2)
    }

    /// The finished volume.
    ///
    /// # Errors
    /// As [`Aggregator::finish`].
    pub(super) fn into_volume(self) -> Result<super::Aggregated, EngineError> {
        self.agg.finish()
    }

    /// Blends `batch`, whose run windows gave `outputs`.
    fn finish(&mut self, batch: &Batch, outputs: &Outputs) -> Result<(), EngineError> {
        let per = self.classes * outputs.dims.iter().product::<usize>();
        let values = &outputs.values;
        for &(constant, b) in &batch.firsts {
            debug_assert_eq!(self.shared.len(), constant);
            self.shared.push(Outputs { values: values[b * per..(b + 1) * per].to_vec(), dims: outputs.dims });
        }
        for &(corner, source) in &batch.windows {
            let (output, dims) = match source {
                Source::Batch(b) => (&values[b * per..(b + 1) * per], outputs.dims),
                Source::Constant(n) => (&self.shared[n].values[..], self.shared[n].dims),
            };
            self.agg.add(corner, output, dims, self.offset(dims))?;
        }
        Ok(())
    }
}

/// Checks a batch's output `size` against its input `shape`: the input's window, or a
/// window smaller by the same on both sides of each axis by at most `border` (a network
/// with valid convolutions; the kept region must lie inside it). Returns the output
/// window `(oi, oj, ok)`.
pub(super) fn check_output(
    size: &[i64],
    shape: &[i64; 5],
    num_classes: usize,
    border: [usize; 3],
) -> Result<[usize; 3], EngineError> {
    // Spatial sizes in (i, j, k) order, tensors being [N, K, k, j, i].
    let fits = |a: usize| {
        let (o, w, b) = (size[4 - a], shape[4 - a], border[a] as i64);
        o <= w && (w - o) % 2 == 0 && (w - o) / 2 <= b
    };
    if size.len() != 5 || size[0] != shape[0] || !(0..3).all(fits) {
        return Err(EngineError::Other(format!(
            "the network returned {size:?} for inputs of {shape:?}; inference needs outputs of the input's window \
             size, or smaller by the same on both sides by at most the border {border:?} (i, j, k) \
             (`network.label_size`, `inference.border`)"
        )));
    }
    if size[1] as usize != num_classes {
        return Err(EngineError::Other(format!(
            "the network returned {} classes, segmentation.num_classes is {num_classes}",
            size[1]
        )));
    }
    Ok([size[4] as usize, size[3] as usize, size[2] as usize])
}

/// Where batches run and what their outputs must be.
#[derive(Debug, Clone, Copy)]
pub(super) struct Target {
    /// The device the network runs on.
    pub device: Device,
    /// The classes each output voxel must have.
    pub num_classes: usize,
    /// Voxels dropped from each side of an input window, `(i, j, k)`: the most an output
    /// may be smaller by on each side.
    pub border: [usize; 3],
}

/// Runs `input` of `shape` through `predictor`: the outputs, and the time the forward
/// pass took.
fn run_batch(
    predictor: &mut Predictor,
    input: &[f32],
    shape: [i64; 5],
    target: Target,
) -> Result<(Outputs, Duration), EngineError> {
    let x = Tensor::from_slice(input).f_view(shape).map_err(torch_error("shaping a batch of windows"))?;
    let x = to_device(&x, target.device, "a batch of windows")?;
    let started = std::time::Instant::now();
    let out = super::memory::predict_halving(predictor, &x)?;
    let elapsed = started.elapsed();
    let dims = check_output(&out.size(), &shape, target.num_classes, target.border)?;
    let values = out
        .f_view([-1])
        .and_then(|v| Vec::<f32>::try_from(v))
        .map_err(|e| EngineError::Other(format!("network output: {e}")))?;
    Ok((Outputs { values, dims }, elapsed))
}

/// Runs every batch through `predictor` (on its workers' threads too, when it has
/// helpers and `workers` > 1: at most `workers` batches at once) and blends the outputs
/// in grid order. Returns the time spent in forward
/// passes, summed over the workers.
///
/// # Errors
/// A plugin failure, a network whose output is neither its input's size nor smaller by
/// at most the border on each side, or a class count other than `target.num_classes`.
pub(super) fn run(
    predictor: &mut Predictor,
    batches: Batches<'_>,
    blender: &mut Blender,
    target: Target,
    workers: usize,
) -> Result<Duration, EngineError> {
    if workers > 1 && !predictor.helpers.is_empty() {
        return run_on_workers(predictor, batches, blender, target, workers);
    }
    let mut network = Duration::ZERO;
    for batch in batches {
        let outputs = if batch.run() > 0 {
            let (outputs, seconds) = run_batch(predictor, &batch.input, batch.shape, target)?;
            network += seconds;
            outputs
        } else {
            Outputs::default()
        };
        blender.finish(&batch, &outputs)?;
    }
    Ok(network)
}

/// What a worker sends back: the batch's number and its outputs.
type Done = (usize, Result<(Outputs, Duration), EngineError>);

/// Batches sent to the workers, in grid order, with their outputs once back.
struct InFlight {
    queue: VecDeque<(Batch, Option<Outputs>)>,
    /// Number of the batch at the front.
    first: usize,
    network: Duration,
}

impl InFlight {
    /// Sends `batch` to the workers (one without windows to run is done at once).
    fn send(&mut self, mut batch: Batch, jobs: &Sender<(usize, Vec<f32>, [i64; 5])>) -> Result<(), EngineError> {
        if batch.run() == 0 {
            self.queue.push_back((batch, Some(Outputs::default())));
            return Ok(());
        }
        let input = std::mem::take(&mut batch.input);
        jobs.send((self.first + self.queue.len(), input, batch.shape)).map_err(|_| stopped())?;
        self.queue.push_back((batch, None));
        Ok(())
    }

    /// Waits for one batch's outputs.
    fn receive(&mut self, done: &Receiver<Done>) -> Result<(), EngineError> {
        let (seq, out) = done.recv().map_err(|_| stopped())?;
        let (outputs, seconds) = out?;
        self.network += seconds;
        self.queue[seq - self.first].1 = Some(outputs);
        Ok(())
    }

    /// Blends the batches at the front whose outputs are back.
    fn drain(&mut self, blender: &mut Blender) -> Result<(), EngineError> {
        while self.queue.front().is_some_and(|(_, v)| v.is_some()) {
            if let Some((batch, Some(outputs))) = self.queue.pop_front() {
                blender.finish(&batch, &outputs)?;
                self.first += 1;
            }
        }
        Ok(())
    }
}

fn stopped() -> EngineError {
    EngineError::Other("the inference workers stopped".into())
}

/// [`run`] with one thread per worker (`predictor` and its first `workers - 1` helpers)
/// running batches while this thread cuts windows and blends outputs in grid order.
fn run_on_workers(
    predictor: &mut Predictor,
    batches: Batches<'_>,
    blender: &mut Blender,
    target: Target,
    workers: usize,
) -> Result<Duration, EngineError> {
    let threads = predictor.worker_threads;
    let mut helpers = std::mem::take(&mut predictor.helpers);
    let workers = workers.min(1 + helpers.len());
    let result = std::thread::scope(|scope| -> Result<Duration, EngineError> {
        let (jobs, job_rx) = crossbeam_channel::unbounded::<(usize, Vec<f32>, [i64; 5])>();
        let (done_tx, done) = crossbeam_channel::unbounded::<Done>();
        for p in std::iter::once(&mut *predictor).chain(helpers.iter_mut().take(workers - 1)) {
            let (job_rx, done_tx) = (job_rx.clone(), done_tx.clone());
            scope.spawn(move || {
                crate::torch::with_torch_threads(threads, || {
                    for (seq, input, shape) in job_rx {
                        if done_tx.send((seq, run_batch(p, &input, shape, target))).is_err() {
                            break;
                        }
                    }
                })
            });
        }
        drop(done_tx);
        let mut flight = InFlight { queue: VecDeque::new(), first: 0, network: Duration::ZERO };
        for batch in batches {
            flight.send(batch, &jobs)?;
            flight.drain(blender)?;
            // One batch per worker in flight and one waiting bound memory (each holds its
            // outputs, K floats per voxel, until it is blended).
            while flight.queue.len() > workers {
                flight.receive(&done)?;
                flight.drain(blender)?;
            }
        }
        drop(jobs);
        while !flight.queue.is_empty() {
            flight.receive(&done)?;
            flight.drain(blender)?;
        }
        Ok(flight.network)
    });
    predictor.helpers = helpers;
    result
}
