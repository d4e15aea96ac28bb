//! Training windows: which subject and where, drawn from counters, never from a shared
//! generator, so batch `t` is the same whatever thread builds it.
//!
//! Window `g = t · batch_size + b` comes from the subject at position
//! `(g / sample_per_volume) mod n` of epoch `(g / sample_per_volume) / n`'s shuffled
//! subject order, at a place drawn by its sampler:
//! - `uniform`: a corner uniformly among the placements inside the volume (along an axis
//!   shorter than the window: among those covering the whole axis);
//! - `weighted`: a centre voxel with probability proportional to the subject's weight map;
//! - `balanced`: a label class uniformly among the classes present, then a centre voxel
//!   uniformly among that class's voxels;
//! - `resize`: the whole volume resized to the window (trilinear, labels nearest);
//! - `foreground` (nnU-Net's oversampling): the last [`foreground_windows`] windows of
//!   each iteration's batch are centred on a labelled voxel (label ≠ 0 after the label
//!   map) drawn uniformly among them, the others placed as `uniform` places them (with
//!   the same draws, so `foreground_oversample = 0` gives exactly `uniform`'s windows). A
//!   subject without a labelled voxel gets uniform windows, with one warning naming it.
//!   Under sharding the batch is the iteration's whole batch over every process, so the
//!   ranks together draw what one process with the whole batch would.
//!
//! Voxels of a window outside the volume are 0 in images, labels and loss weights. The
//! loss weight map (`segmentation.weight`), when loaded, is cut with the very same
//! windows as the labels (resized nearest with `resize`).
//!
//! With an augmentation chain (training only), each window is cut with a margin of
//! `training.augmentation_margin` × window on each side, augmented (see
//! [`super::augment`]) and cropped back to its centre; `resize` windows are augmented
//! without a margin.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use tch::{Kind, Tensor};

use super::augment::AugmentationChain;
use super::cache::{CacheSize, VolumeCache};
use super::dataset::Label;
use super::labels::{ClassIndex, LabelVolume};
use super::window::extract;
use super::{DataError, SubjectVolumes};
use crate::config::WindowSampling;
use crate::rng::Stream;

/// Where window centres may be drawn, precomputed per subject.
#[derive(Debug)]
enum Centres {
    /// No index needed.
    Anywhere,
    /// Where the voxels of each label class lie.
    ByClass(ClassIndex),
    /// Sum of the weight map over each k-slice.
    WeightedSlices(Vec<f64>),
    /// Where the labelled (non-zero) voxels lie.
    Foreground(ClassIndex),
}

/// A subject ready for sampling: its volumes and its sampler's index.
#[derive(Debug)]
pub struct Prepared {
    /// The volumes.
    pub volumes: SubjectVolumes,
    centres: Centres,
}

impl Prepared {
    /// Builds the index `sampling` needs.
    ///
    /// # Errors
    /// A volume too large for 32-bit voxel indices, a missing label / weight map, or an
    /// index over the memory budget.
    pub fn new(volumes: SubjectVolumes, sampling: WindowSampling, num_classes: usize) -> Result<Prepared, DataError> {
        let id = &volumes.id;
        let missing = |what: &str| DataError::Invalid(vec![format!("subject `{id}` has no {what} for the sampler")]);
        let what = || format!("the labels of subject `{id}`");
        let fail = |e: String| DataError::Invalid(vec![e]);
        let label = || volumes.label.as_ref().ok_or_else(|| missing("label"));
        let centres = match sampling {
            WindowSampling::Uniform | WindowSampling::Resize => Centres::Anywhere,
            WindowSampling::Balanced => {
                Centres::ByClass(ClassIndex::by_class(label()?, num_classes, &what).map_err(fail)?)
            }
            WindowSampling::Foreground => Centres::Foreground(ClassIndex::foreground(label()?, &what).map_err(fail)?),
            WindowSampling::Weighted => {
                let weights = volumes.weights.as_ref().ok_or_else(|| missing("weight map"))?;
                let slice = volumes.dims[0] * volumes.dims[1];
                Centres::WeightedSlices(weights.chunks(slice).map(|s| s.iter().map(|&w| w as f64).sum()).collect())
            }
        };
        Ok(Prepared { volumes, centres })
    }

    /// The labels of a training subject.
    fn labels(&self) -> &LabelVolume {
        self.volumes.label.as_ref().expect("training subjects have labels")
    }
}

impl CacheSize for Prepared {
    fn bytes(&self) -> usize {
        let index = match &self.centres {
            Centres::Anywhere => 0,
            Centres::ByClass(c) | Centres::Foreground(c) => c.bytes(),
            Centres::WeightedSlices(s) => 8 * s.len(),
        };
        self.volumes.bytes() + index
    }
}

/// One training batch, in host memory.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Batch {
    /// `[N, C, wk, wj, wi]` images.
    pub images: Vec<f32>,
    /// `[N, 1, wk, wj, wi]` labels.
    pub labels: Vec<Label>,
    /// `[N, 1, wk, wj, wi]` loss weights (`segmentation.weight`); empty without them.
    pub loss_weights: Vec<f32>,
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
        let [wi, wj, wk] = self.window.map(|w| w as i64);
        let (n, c) = (self.size as i64, self.channels as i64);
        let images = Tensor::from_slice(&self.images).view([n, c, wk, wj, wi]);
        let labels = Tensor::from_slice(&self.labels).view([n, 1, wk, wj, wi]).to_kind(Kind::Int64);
        (images, labels)
    }

    /// The loss weights as a `[N, 1, D, H, W]` float32 tensor, if the batch has them.
    pub fn loss_weight_tensor(&self) -> Option<Tensor> {
        if self.loss_weights.is_empty() {
            return None;
        }
        let [wi, wj, wk] = self.window.map(|w| w as i64);
        Some(Tensor::from_slice(&self.loss_weights).view([self.size as i64, 1, wk, wj, wi]))
    }
}

/// How many of a batch of `batch` windows `foreground` sampling centres on a labelled
/// voxel when `share` of them should be: `round(batch · share)` (halves away from 0),
/// but at least one when `share > 0`, and at most `batch`. For `batch = 2` and the
/// default `share = 0.33` that is 1.
pub fn foreground_windows(batch: usize, share: f64) -> usize {
    if share <= 0.0 || batch == 0 {
        return 0;
    }
    ((batch as f64 * share).round() as usize).clamp(1, batch)
}

/// What a [`WindowSampler`] draws: the windows, how many per batch and per volume, and
/// how they are placed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowPlan {
    /// Window size `(i, j, k)` in voxels.
    pub window: [usize; 3],
    /// Windows per batch (of this process).
    pub batch_size: usize,
    /// The seed every draw derives from.
    pub seed: u64,
    /// Windows in a row from one volume (at least 1).
    pub sample_per_volume: u64,
    /// How windows are placed in a volume.
    pub sampling: WindowSampling,
    /// `foreground` sampling: the share of each batch centred on labelled voxels.
    pub foreground_oversample: f64,
}

/// Draws batches of training windows.
pub struct WindowSampler {
    cache: Arc<VolumeCache<Prepared>>,
    subjects: usize,
    plan: WindowPlan,
    augment: Option<Arc<AugmentationChain>>,
    margin: [usize; 3],
    /// This process's share of each iteration's windows: `(rank, processes)`.
    shard: (u64, u64),
    /// Subjects already warned about having no labelled voxel for `foreground` sampling.
    warned_no_foreground: Mutex<BTreeSet<String>>,
}

/// Stream tags, so that draws of different purposes never share a stream.
const ORDER: u64 = 0x0_5DE5;
const PLACE: u64 = 0x9_1ACE;

impl WindowSampler {
    /// A sampler over `subjects` cached subjects.
    pub fn new(cache: Arc<VolumeCache<Prepared>>, subjects: usize, plan: WindowPlan) -> Self {
        let plan = WindowPlan { sample_per_volume: plan.sample_per_volume.max(1), ..plan };
        WindowSampler {
            cache,
            subjects,
            plan,
            augment: None,
            margin: [0; 3],
            shard: (0, 1),
            warned_no_foreground: Mutex::new(BTreeSet::new()),
        }
    }

    /// Makes this sampler draw only rank `rank`'s share of a job of `processes`: every
    /// iteration's windows are those of one batch of `processes` × `batch_size`, and rank
    /// r takes the r-th run of `batch_size` of them. The ranks' windows are disjoint, and
    /// together they are the windows one process with the whole batch would draw.
    pub fn with_shard(mut self, rank: usize, processes: usize) -> Self {
        self.shard = (rank as u64, processes.max(1) as u64);
        self
    }

    /// Augments every window with `chain`, cut with `margin` × window more on each side
    /// (rounded to voxels) and cropped back to its centre afterwards.
    pub fn with_augmentation(mut self, chain: Arc<AugmentationChain>, margin: f64) -> Self {
        self.margin = self.plan.window.map(|w| (w as f64 * margin).round() as usize);
        self.augment = Some(chain);
        self
    }

    /// Augments window `g` of subject `v` and appends its centre to `images` / `labels`.
    ///
    /// # Shapes
    /// `image` `[C, k, j, i]` and `label` `[k, j, i]` in memory, each axis the window plus
    /// `margin` voxels on each side; appended: `[C, wk, wj, wi]` and `[wk, wj, wi]`.
    ///
    /// # Errors
    /// A component's error, naming it and its library.
    #[allow(clippy::too_many_arguments)]
    fn augmented(
        &self,
        chain: &AugmentationChain,
        v: &SubjectVolumes,
        (image, label): (&[f32], &[Label]),
        margin: [usize; 3],
        g: u64,
        images: &mut Vec<f32>,
        labels: &mut Vec<Label>,
    ) -> Result<(), DataError> {
        let size: [i64; 3] = std::array::from_fn(|a| (self.plan.window[a] + 2 * margin[a]) as i64);
        let [si, sj, sk] = size;
        let image = Tensor::from_slice(image).view([v.channels as i64, sk, sj, si]);
        let label = Tensor::from_slice(label).view([1, sk, sj, si]).to_kind(Kind::Int64);
        let [pi, pj, pk] = v.geometry.prepared.pixdim();
        let (image, label) = chain.apply(image, label, [pk, pj, pi], self.plan.seed, g)?;
        let [wi, wj, wk] = self.plan.window.map(|w| w as i64);
        let [mi, mj, mk] = margin.map(|m| m as i64);
        let centre = |t: Tensor| t.narrow(1, mk, wk).narrow(2, mj, wj).narrow(3, mi, wi).contiguous().view([-1]);
        let bad = |e: tch::TchError| DataError::Invalid(vec![format!("augmented window of `{}`: {e}", v.id)]);
        images.extend(Vec::<f32>::try_from(centre(image.to_kind(Kind::Float))).map_err(bad)?);
        labels.extend(Vec::<Label>::try_from(centre(label.to_kind(Kind::Int16))).map_err(bad)?);
        Ok(())
    }

    /// The subject of window group `group`: epochs visit every subject once, in an order
    /// shuffled per epoch.
    fn subject_of(&self, group: u64) -> usize {
        let n = self.subjects as u64;
        let (epoch, position) = (group / n, group % n);
        let mut order: Vec<usize> = (0..self.subjects).collect();
        let mut rng = Stream::new(&[self.plan.seed, ORDER, epoch]);
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i as u64 + 1) as usize);
        }
        order[position as usize]
    }

    fn corner_from_centre(&self, dims: [usize; 3], index: usize) -> [isize; 3] {
        let centre = [index % dims[0], (index / dims[0]) % dims[1], index / (dims[0] * dims[1])];
        std::array::from_fn(|a| centre[a] as isize - (self.plan.window[a] / 2) as isize)
    }

    /// A corner drawn uniformly among the placements inside a volume of `dims`.
    fn uniform_corner(&self, dims: [usize; 3], rng: &mut Stream) -> [isize; 3] {
        std::array::from_fn(|axis| {
            let free = dims[axis] as isize - self.plan.window[axis] as isize;
            let (lo, hi) = (free.min(0), free.max(0));
            lo + rng.below((hi - lo + 1) as u64) as isize
        })
    }

    /// Whether window `g` is one of its batch's [`foreground_windows`] (the last ones of
    /// the iteration's whole batch over every process).
    fn is_foreground_window(&self, g: u64) -> bool {
        let whole = self.plan.batch_size * self.shard.1 as usize;
        let position = (g % whole as u64) as usize;
        position >= whole - foreground_windows(whole, self.plan.foreground_oversample)
    }

    /// Where window `g` of subject `p` starts (voxel `(i, j, k)`, possibly outside).
    fn corner(&self, p: &Prepared, g: u64) -> [isize; 3] {
        let rng = &mut Stream::new(&[self.plan.seed, PLACE, g]);
        let v = &p.volumes;
        match &p.centres {
            Centres::Anywhere => self.uniform_corner(v.dims, rng),
            Centres::Foreground(index) => {
                if !self.is_foreground_window(g) {
                    return self.uniform_corner(v.dims, rng);
                }
                let count = index.count(0);
                if count == 0 {
                    let mut warned = self.warned_no_foreground.lock().unwrap_or_else(|e| e.into_inner());
                    if warned.insert(v.id.clone()) {
                        tracing::warn!(subject = %v.id, "subject has no labelled voxel: its foreground windows are placed uniformly");
                    }
                    return self.uniform_corner(v.dims, rng);
                }
                let voxel = index.nth(p.labels(), 0, rng.below(count as u64) as usize);
                self.corner_from_centre(v.dims, voxel.expect("the index counts the voxel"))
            }
            Centres::ByClass(index) => {
                let present: Vec<(usize, usize)> =
                    index.counts().into_iter().enumerate().filter(|&(_, n)| n > 0).collect();
                let (class, count) = present[rng.below(present.len() as u64) as usize];
                let voxel = index.nth(p.labels(), class, rng.below(count as u64) as usize);
                self.corner_from_centre(v.dims, voxel.expect("the index counts the voxel"))
            }
            Centres::WeightedSlices(slices) => {
                let weights = v.weights.as_deref().expect("weighted subjects have weights");
                let total: f64 = slices.iter().sum();
                let mut u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * total;
                let slice_len = v.dims[0] * v.dims[1];
                let mut k = 0;
                while k + 1 < slices.len() && u >= slices[k] {
                    u -= slices[k];
                    k += 1;
                }
                let slice = &weights[k * slice_len..(k + 1) * slice_len];
                let mut chosen = slice.iter().rposition(|&w| w > 0.0).unwrap_or(0);
                for (i, &w) in slice.iter().enumerate() {
                    if u < w as f64 {
                        chosen = i;
                        break;
                    }
                    u -= w as f64;
                }
                self.corner_from_centre(v.dims, k * slice_len + chosen)
            }
        }
    }

    /// Appends the whole volume resized to the window (images trilinear, labels and loss
    /// weights nearest; loss weights only when the subject has them).
    fn resized(&self, v: &SubjectVolumes, images: &mut Vec<f32>, labels: &mut Vec<Label>, loss_weights: &mut Vec<f32>) {
        let [di, dj, dk] = v.dims.map(|d| d as i64);
        let [wi, wj, wk] = self.plan.window.map(|w| w as i64);
        images.extend(resize_trilinear(&v.image, v.channels, v.dims, self.plan.window).expect("float32 maps"));
        let nearest =
            |t: Tensor| t.view([1, 1, dk, dj, di]).upsample_nearest3d([wk, wj, wi], None, None, None).view([-1]);
        let label = match v.label.as_ref().expect("training subjects have labels") {
            LabelVolume::U8(l) => Tensor::from_slice(l),
            LabelVolume::I16(l) => Tensor::from_slice(l),
        };
        let label = nearest(label.to_kind(Kind::Float)).to_kind(Kind::Int16);
        labels.extend(Vec::<Label>::try_from(label).expect("int16 tensor"));
        if let Some(w) = &v.loss_weight {
            loss_weights.extend(Vec::<f32>::try_from(nearest(Tensor::from_slice(w))).expect("float32 tensor"));
        }
    }

    /// The batch of iteration `t`.
    ///
    /// # Errors
    /// A subject that cannot be loaded.
    pub fn batch(&self, t: u64) -> Result<Batch, DataError> {
        let mut batch = Batch::default();
        self.batch_into(t, &mut batch)?;
        Ok(batch)
    }

    /// The batch of iteration `t`, written into `batch`'s buffers (their memory is reused:
    /// fresh multi-megabyte buffers per batch would cost a page fault per 4 KiB).
    ///
    /// # Errors
    /// A subject that cannot be loaded.
    pub fn batch_into(&self, t: u64, batch: &mut Batch) -> Result<(), DataError> {
        let per = self.plan.window.iter().product::<usize>();
        batch.images.clear();
        batch.labels.clear();
        batch.loss_weights.clear();
        batch.labels.reserve(self.plan.batch_size * per);
        for b in 0..self.plan.batch_size {
            let (rank, processes) = self.shard;
            let g = (t * processes + rank) * self.plan.batch_size as u64 + b as u64;
            let p = self.cache.get(self.subject_of(g / self.plan.sample_per_volume))?;
            let v = &p.volumes;
            batch.channels = v.channels;
            batch.images.reserve(self.plan.batch_size * v.channels * per);
            if let Some(chain) = &self.augment {
                if v.loss_weight.is_some() {
                    return Err(DataError::Invalid(vec![format!(
                        "subject `{}`: loss weight maps (segmentation.weight) cannot follow augmented windows",
                        v.id
                    )]));
                }
                let (mut image, mut label) = (Vec::new(), Vec::new());
                let margin = if self.plan.sampling == WindowSampling::Resize {
                    self.resized(v, &mut image, &mut label, &mut Vec::new());
                    [0; 3]
                } else {
                    let corner = self.corner(&p, g);
                    let m = self.margin;
                    let corner: [isize; 3] = std::array::from_fn(|a| corner[a] - m[a] as isize);
                    let size: [usize; 3] = std::array::from_fn(|a| self.plan.window[a] + 2 * m[a]);
                    extract(&v.image, v.dims, v.channels, corner, size, 0.0, &mut image);
                    p.labels().extract(v.dims, corner, size, &mut label);
                    m
                };
                self.augmented(chain, v, (&image, &label), margin, g, &mut batch.images, &mut batch.labels)?;
                continue;
            }
            if self.plan.sampling == WindowSampling::Resize {
                self.resized(v, &mut batch.images, &mut batch.labels, &mut batch.loss_weights);
                continue;
            }
            let corner = self.corner(&p, g);
            extract(&v.image, v.dims, v.channels, corner, self.plan.window, 0.0, &mut batch.images);
            p.labels().extract(v.dims, corner, self.plan.window, &mut batch.labels);
            if let Some(w) = &v.loss_weight {
                extract(w, v.dims, 1, corner, self.plan.window, 0.0, &mut batch.loss_weights);
            }
        }
        batch.size = self.plan.batch_size;
        batch.window = self.plan.window;
        Ok(())
    }
}

/// The training sampler `settings` describes, over `subjects`, with a volume cache of
/// `system.cache_mb`.
///
/// # Errors
/// Learned preprocessing (histogram, label map) that cannot be loaded, or fitted from
/// unreadable training files.
pub fn training_sampler(
    settings: &crate::config::Settings,
    subjects: Vec<super::Subject>,
) -> Result<WindowSampler, DataError> {
    let sampling = settings.network.window_sampling;
    let preparation = super::prepare::Preparation::learn_or_load(settings, &subjects)?;
    let options = super::LoadOptions::new(settings, preparation);
    let classes = settings.segmentation.num_classes;
    let n = subjects.len();
    let cache = VolumeCache::new((settings.system.cache_mb as usize) << 20, move |i| {
        Prepared::new(super::load_subject(&subjects[i], &options)?, sampling, classes)
    });
    let plan = WindowPlan {
        window: settings.train_window(),
        batch_size: settings.network.batch_size,
        seed: settings.system.seed,
        sample_per_volume: settings.training.sample_per_volume,
        sampling,
        foreground_oversample: settings.network.foreground_oversample,
    };
    Ok(WindowSampler::new(Arc::new(cache), n, plan))
}

/// `values` (`channels` maps of `from` `(i, j, k)`) resized to `to` by trilinear
/// interpolation with half-pixel centres: how `window_sampling = "resize"` shrinks a
/// volume to the training window, and so how inference must resize it too.
///
/// # Shapes
/// `[channels, fk, fj, fi]` → `[channels, tk, tj, ti]`
///
/// # Errors
/// `values` do not hold `channels` maps of `from`.
pub fn resize_trilinear(
    values: &[f32],
    channels: usize,
    from: [usize; 3],
    to: [usize; 3],
) -> Result<Vec<f32>, tch::TchError> {
    let [fi, fj, fk] = from.map(|d| d as i64);
    let [ti, tj, tk] = to.map(|d| d as i64);
    let resized = Tensor::from_slice(values)
        .f_view([1, channels as i64, fk, fj, fi])?
        .f_upsample_trilinear3d([tk, tj, ti], false, None, None, None)?;
    Vec::<f32>::try_from(resized.f_view([-1])?)
}
