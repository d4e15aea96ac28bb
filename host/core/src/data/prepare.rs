//! Preparing a subject's volumes for the network, and undoing it on outputs.
//!
//! Forward, per volume: reorient to `axcodes`, resample to `pixdim` (images linear,
//! labels and weight maps nearest), pad by `volume_padding_size`; then, on images,
//! histogram standardisation and whitening, and on labels the label map. Outputs go
//! back in reverse: crop, resample class probabilities onto the reoriented input grid
//! (linear), take the arg-max, reorient to the input's own axis codes, invert the label
//! map. The learned parts (histogram landmarks, label map) are learned on the TRAIN
//! subjects and saved in the model folder, so inference applies the same ones.

use std::sync::Arc;

use super::DataError;
use crate::config::{ForegroundType, MultimodForeground, NormType, PaddingMode, Settings};
use crate::io::Volume;
use crate::preprocess::{
    crop, pad, pad_record, reorient, reoriented_grid, resample_to_grid, resampled_grid, AxCodes, FixedIntensity, Grid,
    HistogramConfig, HistogramModel, Interp, LabelMap, MaskRule, PadMode, PadRecord, PreprocessError, SavedModel,
};

fn error(what: &str, e: PreprocessError) -> DataError {
    DataError::Invalid(vec![format!("{what}: {e}")])
}

/// How a subject's geometry is changed: every intermediate grid is kept so that the
/// changes can be undone exactly on outputs.
#[derive(Debug, Clone)]
pub struct Geometry {
    /// The grid of the files.
    pub original: Grid,
    /// The files' own axis codes.
    pub original_codes: AxCodes,
    /// After reorientation (the original grid when `axcodes` is unset).
    pub reoriented: Grid,
    /// After resampling (the reoriented grid when `pixdim` is unset).
    pub resampled: Grid,
    /// Padding added after resampling.
    pub padding: PadRecord,
    /// The grid the network sees.
    pub prepared: Grid,
}

/// The geometry settings of a job.
#[derive(Debug, Clone, PartialEq)]
pub struct GeometryOptions {
    /// Target axis codes.
    pub axcodes: Option<AxCodes>,
    /// Target voxel size, mm.
    pub pixdim: Option<[f64; 3]>,
    /// Voxels added on each side.
    pub padding: [usize; 3],
    /// How images are padded (`minimum` is a constant per channel).
    pub padding_mode: PaddingMode,
}

impl Geometry {
    /// Plans the changes for a volume on `original`.
    ///
    /// # Errors
    /// An affine whose axis codes cannot be read.
    pub fn plan(original: Grid, options: &GeometryOptions) -> Result<Geometry, PreprocessError> {
        let original_codes = crate::preprocess::axcodes(&original.affine)?;
        let reoriented = match options.axcodes {
            Some(codes) => reoriented_grid(&original, codes)?,
            None => original,
        };
        let resampled = match options.pixdim {
            Some(p) => resampled_grid(&reoriented, p)?,
            None => reoriented,
        };
        let with_padding: [usize; 3] = std::array::from_fn(|a| resampled.dims[a] + 2 * options.padding[a]);
        let padding = pad_record(resampled.dims, with_padding);
        // The config bounds the padding, so the padded size cannot overflow.
        let prepared = padding.padded_grid(&resampled).expect("volume_padding_size is bounded by the config");
        Ok(Geometry { original, original_codes, reoriented, resampled, padding, prepared })
    }

    /// Moves `data` (`channels` volumes on the original grid) onto the prepared grid; an
    /// unchanged grid returns `data` itself (no copy).
    ///
    /// # Errors
    /// Data that does not fill the original grid.
    pub fn forward(
        &self,
        data: Vec<f32>,
        channels: usize,
        interp: Interp,
        mode: PadMode,
    ) -> Result<Vec<f32>, PreprocessError> {
        let data = if self.reoriented == self.original {
            data
        } else {
            let codes = crate::preprocess::axcodes(&self.reoriented.affine)?;
            reorient(&data, channels, &self.original, codes)?.0
        };
        let data = if self.resampled == self.reoriented {
            data
        } else {
            resample_to_grid(&data, channels, &self.reoriented, &self.resampled, interp)?
        };
        if self.padding.is_empty() {
            return Ok(data);
        }
        Ok(pad(&data, channels, &self.resampled, &self.padding, mode)?.0)
    }

    /// A weight map (one volume on the original grid) moved onto the prepared grid as the
    /// samplers' and the loss's weight maps are: nearest neighbour, zero padding.
    ///
    /// # Errors
    /// Data that does not fill the original grid.
    pub fn weight_map(&self, data: Vec<f32>) -> Result<Vec<f32>, PreprocessError> {
        self.forward(data, 1, Interp::Nearest, PadMode::Constant(0.0))
    }

    /// Class probabilities `[K, prepared grid]` → `[K, reoriented grid]`: crop, then
    /// linear resampling.
    ///
    /// # Errors
    /// Data that does not fill the prepared grid.
    pub fn probabilities_to_input(&self, probs: &[f32], classes: usize) -> Result<Vec<f32>, PreprocessError> {
        let probs = if self.padding.is_empty() {
            probs.to_vec()
        } else {
            crop(probs, classes, &self.prepared, &self.padding)?.0
        };
        if self.resampled == self.reoriented {
            return Ok(probs);
        }
        resample_to_grid(&probs, classes, &self.resampled, &self.reoriented, Interp::Linear)
    }

    /// Labels on the reoriented grid → labels on the original grid (exact).
    ///
    /// # Errors
    /// Data that does not fill the reoriented grid.
    pub fn labels_to_original(&self, labels: Vec<f32>) -> Result<Vec<f32>, PreprocessError> {
        if self.reoriented == self.original {
            return Ok(labels);
        }
        Ok(reorient(&labels, 1, &self.reoriented, self.original_codes)?.0)
    }
}

/// The histogram standardisation the `[network]` keys ask for.
fn histogram_config(settings: &Settings) -> HistogramConfig {
    let n = &settings.network;
    let cutoff = [n.cutoff[0], n.cutoff[1]];
    match n.norm_type {
        NormType::Quartile => HistogramConfig::quartiles(cutoff, [0.0, 100.0], foreground_rule(settings)),
        NormType::Percentile => HistogramConfig::deciles(cutoff, [0.0, 100.0], foreground_rule(settings)),
    }
}

/// Whether a histogram file is in NiftyNet's text format (`histogram_ref_file = *.txt`).
fn is_niftynet_text(path: &std::path::Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("txt"))
}

/// The modality name of each image channel in NiftyNet's text format: the image
/// sections' names, or `image_<c>` when a section has several channels.
fn histogram_names(settings: &Settings, channels: usize) -> Vec<String> {
    let sections = &settings.segmentation.image;
    if sections.len() == channels {
        sections.clone()
    } else {
        (0..channels).map(|c| format!("image_{c}")).collect()
    }
}

/// A saved histogram model: NiftyNet's text format for a `.txt` file (its channel count
/// that of the image sections), else niftyhost's JSON.
fn load_histogram(settings: &Settings, path: &std::path::Path) -> Result<HistogramModel, DataError> {
    let fail = |e| error(&path.display().to_string(), e);
    if !is_niftynet_text(path) {
        return HistogramModel::load(path).map_err(fail);
    }
    let text =
        std::fs::read_to_string(path).map_err(|source| fail(PreprocessError::Io { path: path.to_owned(), source }))?;
    let names = histogram_names(settings, settings.segmentation.image.len());
    HistogramModel::from_niftynet_text(&text, &names, histogram_config(settings)).map_err(fail)
}

/// A subject's volumes on the prepared grid.
#[derive(Debug, Clone)]
pub struct PreparedVolumes {
    /// How they were moved there.
    pub geometry: Geometry,
    /// Image channels.
    pub images: Vec<f32>,
    /// Labels (mapped to classes).
    pub label: Option<Vec<f32>>,
    /// Sampler weights.
    pub weights: Option<Vec<f32>>,
}

/// Everything that prepares a subject: geometry, intensity normalisation, label map.
#[derive(Debug, Clone)]
pub struct Preparation {
    /// Geometry changes.
    pub geometry: GeometryOptions,
    /// How images are resampled (`input.<name>.interp_order`; labels: nearest).
    pub image_interp: Interp,
    /// Whitening, and its foreground rule (`MaskRule::All` for the whole channel).
    pub whitening: Option<MaskRule>,
    /// How the channels' foreground masks combine for whitening.
    pub multimod: MultimodForeground,
    /// Fixed intensity normalisation of each image section (`intensity_clip`,
    /// `intensity_zscore`), in `segmentation.image` order; a section with a fixed z-score
    /// is not whitened.
    pub fixed_intensity: Vec<FixedIntensity>,
    /// Learned histogram standardisation.
    pub histogram: Option<Arc<HistogramModel>>,
    /// Learned label map.
    pub label_map: Option<Arc<LabelMap>>,
}

fn foreground_rule(settings: &Settings) -> MaskRule {
    let n = &settings.network;
    match n.foreground_type {
        ForegroundType::Mean => MaskRule::Mean,
        ForegroundType::Threshold => MaskRule::Threshold(n.foreground_threshold as f32),
        ForegroundType::Otsu => MaskRule::Otsu,
        ForegroundType::OtsuMinus => MaskRule::OtsuBelow,
        ForegroundType::ThresholdMinus => MaskRule::ThresholdBelow(n.foreground_threshold as f32),
    }
}

/// The geometry settings of a job (sections agree: checked by the config).
pub fn geometry_options(settings: &Settings) -> GeometryOptions {
    let section = &settings.input[&settings.segmentation.image[0]];
    let p = &section.pixdim;
    let v = &settings.network.volume_padding_size;
    GeometryOptions {
        axcodes: section.axcodes,
        pixdim: (p.len() == 3).then(|| [p[0], p[1], p[2]]),
        padding: [v[0], v[1], v[2]],
        padding_mode: settings.network.volume_padding_mode,
    }
}

/// Whitening with the channels' masks combined as `multimod` says: each its own, or one
/// mask (their intersection or union) shared by every channel.
fn whiten_combined(
    images: &mut [f32],
    channels: usize,
    rule: MaskRule,
    multimod: MultimodForeground,
) -> Result<(), PreprocessError> {
    let shared = match multimod {
        _ if rule == MaskRule::All || channels < 2 => None,
        MultimodForeground::Multi => None,
        MultimodForeground::And | MultimodForeground::Or => {
            let n = images.len() / channels;
            let mut combined: Option<Vec<bool>> = None;
            for channel in images.chunks(n) {
                let mask = crate::preprocess::foreground_mask(channel, rule)?;
                combined = Some(match combined {
                    None => mask,
                    Some(mut c) => {
                        let and = multimod == MultimodForeground::And;
                        c.iter_mut().zip(mask).for_each(|(c, m)| *c = if and { *c && m } else { *c || m });
                        c
                    }
                });
            }
            combined
        }
    };
    match shared {
        Some(mask) => crate::preprocess::whiten_with_mask(images, channels, &mask)?,
        None => crate::preprocess::whiten(images, channels, rule)?,
    };
    Ok(())
}

/// The fixed intensity normalisation of each image section (checked by the config).
fn fixed_intensity(settings: &Settings) -> Vec<FixedIntensity> {
    let pair = |v: &[f64]| (v.len() == 2).then(|| [v[0], v[1]]);
    settings
        .segmentation
        .image
        .iter()
        .map(|name| {
            let section = &settings.input[name];
            FixedIntensity { clip: pair(&section.intensity_clip), zscore: pair(&section.intensity_zscore) }
        })
        .collect()
}

impl Preparation {
    /// Geometry and whitening only (nothing learned): enough to learn the rest.
    pub fn unlearned(settings: &Settings) -> Preparation {
        let n = &settings.network;
        let rule = if n.normalise_foreground_only { foreground_rule(settings) } else { MaskRule::All };
        Preparation {
            geometry: geometry_options(settings),
            image_interp: settings.image_interp(),
            whitening: n.whitening.then_some(rule),
            multimod: n.multimod_foreground_type,
            fixed_intensity: fixed_intensity(settings),
            histogram: None,
            label_map: None,
        }
    }

    /// Reads the learned parts saved by training.
    ///
    /// # Errors
    /// A learned part the config enables but whose file is missing or malformed.
    pub fn saved(settings: &Settings) -> Result<Preparation, DataError> {
        let mut p = Preparation::unlearned(settings);
        if settings.network.normalisation {
            p.histogram = Some(Arc::new(load_histogram(settings, &settings.histogram_file())?));
        }
        if settings.segmentation.label_normalisation {
            let path = settings.label_map_file();
            p.label_map = Some(Arc::new(LabelMap::load(&path).map_err(|e| error(&path.display().to_string(), e))?));
        }
        Ok(p)
    }

    /// Reuses the saved learned parts, learning (and saving) those that are missing from
    /// `train` volumes, read in parallel.
    ///
    /// # Errors
    /// Unreadable files or a failed fit.
    pub fn learn_or_load(settings: &Settings, train: &[super::Subject]) -> Result<Preparation, DataError> {
        use rayon::prelude::*;
        let mut p = Preparation::unlearned(settings);
        let n = &settings.network;
        if n.normalisation {
            let path = settings.histogram_file();
            let model = if path.exists() {
                load_histogram(settings, &path)?
            } else {
                let config = histogram_config(settings);
                let images: Vec<(Vec<f32>, usize)> = train
                    .par_iter()
                    .map(|s| {
                        let mut vols: Vec<Volume> =
                            s.images.iter().map(|f| crate::io::read_volume(f)).collect::<Result<_, _>>()?;
                        let channels = vols.iter().map(|v| v.channels).sum();
                        let first = std::mem::take(&mut vols[0].data);
                        let data = super::dataset::concat_channels(first, &vols[1..], &s.id)
                            .map_err(|e| DataError::Invalid(vec![e.to_string()]))?;
                        Ok((data, channels))
                    })
                    .collect::<Result<_, DataError>>()?;
                let model = HistogramModel::learn(config, images.iter().map(|(d, c)| (d.as_slice(), *c)))
                    .map_err(|e| error("histogram standardisation", e))?;
                // As NiftyNet (`touch_folder`), the file's folder is made: default_multimodal_segmentation.ini
                // names ./example_volumes/multimodal_parcellation/, which NiftyNet's examples do not have.
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)
                        .map_err(|source| PreprocessError::Io { path: dir.to_owned(), source })
                        .map_err(|e| error(&path.display().to_string(), e))?;
                }
                if is_niftynet_text(&path) {
                    std::fs::write(&path, model.to_niftynet_text(&histogram_names(settings, model.channels())))
                        .map_err(|source| PreprocessError::Io { path: path.clone(), source })
                        .map_err(|e| error(&path.display().to_string(), e))?;
                } else {
                    model.save(&path).map_err(|e| error(&path.display().to_string(), e))?;
                }
                tracing::info!(file = %path.display(), subjects = train.len(), "histogram landmarks learned");
                model
            };
            p.histogram = Some(Arc::new(model));
        }
        if settings.segmentation.label_normalisation {
            let path = settings.label_map_file();
            let map = if path.exists() {
                LabelMap::load(&path).map_err(|e| error(&path.display().to_string(), e))?
            } else {
                let labels: Vec<Vec<f32>> = train
                    .par_iter()
                    .filter_map(|s| s.label.as_ref())
                    .map(|f| crate::io::read_volume(f).map(|v| v.data).map_err(DataError::from))
                    .collect::<Result<_, _>>()?;
                let map =
                    LabelMap::learn(labels.iter().map(Vec::as_slice)).map_err(|e| error("label normalisation", e))?;
                map.save(&path).map_err(|e| error(&path.display().to_string(), e))?;
                tracing::info!(file = %path.display(), classes = map.num_classes(), "label map learned");
                map
            };
            // Fewer values than classes is NiftyNet's rule too (its example files keep
            // num_classes = 160 on any data): the classes past them are never labelled.
            let (found, classes) = (map.num_classes(), settings.segmentation.num_classes);
            if found > classes {
                return Err(DataError::Invalid(vec![format!(
                    "label normalisation found {found} label values in TRAIN ({}) but segmentation.num_classes is {classes}",
                    path.display(),
                )]));
            }
            if found < classes {
                tracing::warn!(found, classes, "label normalisation found fewer label values in TRAIN than segmentation.num_classes: the other classes are never labelled");
            }
            p.label_map = Some(Arc::new(map));
        }
        Ok(p)
    }

    /// The padding mode of images with `data` (`minimum` is each channel's minimum).
    fn image_padding(&self, data: &[f32]) -> PadMode {
        match self.geometry.padding_mode {
            PaddingMode::Edge => PadMode::Edge,
            PaddingMode::Symmetric => PadMode::Symmetric,
            PaddingMode::Reflect => PadMode::Reflect,
            PaddingMode::Constant => PadMode::Constant(0.0),
            PaddingMode::Minimum => {
                PadMode::Constant(data.iter().copied().filter(|v| v.is_finite()).fold(f32::INFINITY, f32::min))
            }
        }
    }

    /// Each image section's fixed intensity normalisation, then whitening of the
    /// channels of sections without a fixed z-score. With no fixed z-score anywhere, all
    /// channels are whitened together, their masks combined as `multimod` says; sections
    /// beside a fixed z-score are whitened each with its own channels' masks.
    ///
    /// # Errors
    /// Images that do not hold `channels` (per section) equal channels.
    fn normalise(&self, images: &mut [f32], channels: &[usize]) -> Result<(), PreprocessError> {
        let total: usize = channels.iter().sum();
        let voxels = images.len() / total.max(1);
        if voxels * total != images.len() {
            return Err(PreprocessError::InvalidParameter {
                what: "image buffer",
                expected: "the same number of voxels in every channel",
                got: format!("{} values for {total} channels", images.len()),
            });
        }
        let fixed = |n: usize| self.fixed_intensity.get(n).copied().unwrap_or_default();
        let any_zscore = (0..channels.len()).any(|n| fixed(n).zscore.is_some());
        let mut rest = &mut *images;
        for (n, &c) in channels.iter().enumerate() {
            let (section, tail) = rest.split_at_mut(c * voxels);
            rest = tail;
            for channel in section.chunks_mut(voxels.max(1)) {
                fixed(n).apply(channel);
            }
            if let (Some(rule), true, None) = (self.whitening, any_zscore, fixed(n).zscore) {
                crate::preprocess::whiten(section, c, rule)?;
            }
        }
        if let (Some(rule), false) = (self.whitening, any_zscore) {
            whiten_combined(images, total, rule, self.multimod)?;
        }
        Ok(())
    }

    /// Prepares a subject's volumes (geometry of `first`): images (`channels`: the
    /// channels of each image section, in order), labels, weights.
    ///
    /// # Errors
    /// Anything the preprocessing refuses (e.g. a label value the map does not know),
    /// naming the subject.
    pub fn apply(
        &self,
        subject: &str,
        first: &Volume,
        images: Vec<f32>,
        channels: &[usize],
        label: Option<Vec<f32>>,
        weights: Option<Vec<f32>>,
    ) -> Result<PreparedVolumes, DataError> {
        let fail = |e: PreprocessError| error(&format!("subject `{subject}`"), e);
        let grid = Grid::new(first.dims, first.affine).map_err(fail)?;
        let geometry = Geometry::plan(grid, &self.geometry).map_err(fail)?;
        let total: usize = channels.iter().sum();
        let mode = self.image_padding(&images);
        let mut images = geometry.forward(images, total, self.image_interp, mode).map_err(fail)?;
        if let Some(h) = &self.histogram {
            h.apply(&mut images, total).map_err(fail)?;
        }
        self.normalise(&mut images, channels).map_err(fail)?;
        let zero = PadMode::Constant(0.0);
        let label = match label {
            Some(l) => {
                let mut l = geometry.forward(l, 1, Interp::Nearest, zero).map_err(fail)?;
                if let Some(map) = &self.label_map {
                    map.apply(&mut l).map_err(fail)?;
                }
                Some(l)
            }
            None => None,
        };
        let weights = weights.map(|w| geometry.weight_map(w)).transpose().map_err(fail)?;
        Ok(PreparedVolumes { geometry, images, label, weights })
    }
}
