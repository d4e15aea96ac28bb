//! Training windows drawn uniformly from the loaded subjects.

use std::sync::Arc;

use tch::{Kind, Tensor};

use super::window::extract;
use super::SubjectVolumes;
use crate::rng::Stream;

/// One training batch, in host memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// `[N, C, wk, wj, wi]` images.
    pub images: Vec<f32>,
    /// `[N, 1, wk, wj, wi]` labels (integral values).
    pub labels: Vec<f32>,
    /// Windows in the batch.
    pub size: usize,
    /// Image channels.
    pub channels: usize,
    /// Window `(wi, wj, wk)`.
    pub window: [usize; 3],
}

impl Batch {
    /// The batch as tensors: images `[N, C, D, H, W]` float32 and labels
    /// `[N, 1, D, H, W]` int64 (`D, H, W = wk, wj, wi`).
    pub fn to_tensors(&self) -> (Tensor, Tensor) {
        let [wi, wj, wk] = self.window;
        let (n, c) = (self.size as i64, self.channels as i64);
        let images = Tensor::from_slice(&self.images).view([n, c, wk as i64, wj as i64, wi as i64]);
        let labels =
            Tensor::from_slice(&self.labels).view([n, 1, wk as i64, wj as i64, wi as i64]).to_kind(Kind::Int64);
        (images, labels)
    }
}

/// Draws batches of windows uniformly: a subject, then a corner, per window.
///
/// Batch `t` depends only on (seed, t), never on the thread that builds it.
#[derive(Debug, Clone)]
pub struct WindowSampler {
    volumes: Arc<Vec<SubjectVolumes>>,
    window: [usize; 3],
    batch_size: usize,
    seed: u64,
}

impl WindowSampler {
    /// A sampler over subjects that all have labels.
    pub fn new(volumes: Arc<Vec<SubjectVolumes>>, window: [usize; 3], batch_size: usize, seed: u64) -> Self {
        WindowSampler { volumes, window, batch_size, seed }
    }

    /// The batch of iteration `t`.
    pub fn batch(&self, t: u64) -> Batch {
        let channels = self.volumes[0].channels;
        let per = self.window.iter().product::<usize>();
        let mut images = Vec::with_capacity(self.batch_size * channels * per);
        let mut labels = Vec::with_capacity(self.batch_size * per);
        for b in 0..self.batch_size {
            let mut rng = Stream::new(&[self.seed, t, b as u64]);
            let v = &self.volumes[rng.below(self.volumes.len() as u64) as usize];
            // Corners range over every placement inside the volume, or, along an axis
            // shorter than the window, over every placement that covers the whole axis.
            let corner: [isize; 3] = std::array::from_fn(|axis| {
                let free = v.dims[axis] as isize - self.window[axis] as isize;
                let (lo, hi) = (free.min(0), free.max(0));
                lo + rng.below((hi - lo + 1) as u64) as isize
            });
            extract(&v.image, v.dims, v.channels, corner, self.window, 0.0, &mut images);
            let label = v.label.as_deref().expect("training subjects have labels");
            extract(label, v.dims, 1, corner, self.window, 0.0, &mut labels);
        }
        Batch { images, labels, size: self.batch_size, channels, window: self.window }
    }
}
