//! An inference as `niftyhost inference` runs it: a config's held-out subjects (or one
//! shard of them, a Slurm job-array task giving the shard when none is set), or image
//! files segmented with a config's checkpoints or with an ensemble of model bundles.
//! Built with [`InferenceJob::from_config`] or [`InferenceJob::from_bundles`], then
//! [`InferenceJob::run`].

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use tch::Device;

use super::{
    infer, infer_files, predictor, with_options, worker_models, InferenceOptions, Predictor, Segmented, Shard,
};
use crate::bundle::Bundle;
use crate::config::{ConfigError, Overrides, Settings};
use crate::data::prepare::Preparation;
use crate::engine::EngineError;
use crate::plugins::Registry;

/// Images of one subject (one per modality, in the model's order) and the output file.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageFiles {
    /// The images.
    pub images: Vec<PathBuf>,
    /// The segmentation to write (`.nii` or `.nii.gz`).
    pub out: PathBuf,
}

/// What a job segments, with what it needs to.
enum Work {
    /// The config's held-out subjects (or those of `inference.shard`), read relative to
    /// `base_dir`; the predictor is built when the job runs.
    Cohort { registry: Registry, base_dir: PathBuf },
    /// One subject's files, with the predictor already built. `bundles` keeps the
    /// unpacked bundles (their weights, preprocessing files and plugins) until the end.
    Files { predictor: Predictor, preparation: Preparation, files: ImageFiles, device: Device, bundles: Vec<Bundle> },
}

/// An inference ready to run.
pub struct InferenceJob {
    settings: Settings,
    work: Work,
}

impl fmt::Debug for InferenceJob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let work = match &self.work {
            Work::Cohort { base_dir, .. } => format!("cohort in {}", base_dir.display()),
            Work::Files { files, bundles, .. } => format!("{files:?} with {} bundle(s)", bundles.len()),
        };
        f.debug_struct("InferenceJob").field("work", &work).finish_non_exhaustive()
    }
}

/// The segmentations an inference wrote, in order.
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct InferenceReport {
    /// One per subject.
    pub segmented: Vec<Segmented>,
}

impl fmt::Display for InferenceReport {
    /// One line per subject.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.segmented.iter().try_for_each(|s| writeln!(f, "{s}"))
    }
}

/// Image files are one subject: a shard (`--shard`, `inference.shard`) of more than one
/// has nothing to split. A Slurm job array's variables are not read for them, since
/// array tasks often pick their own images from them.
fn refuse_shard(shard: Option<Shard>) -> Result<(), ConfigError> {
    match shard {
        Some(shard) if !shard.is_all() => Err(ConfigError::Invalid(format!(
            "`--shard` (`inference.shard` = \"{shard}\") splits a config's subjects between processes; it does not apply to `--image`"
        ))),
        _ => Ok(()),
    }
}

impl InferenceJob {
    /// A job segmenting with the config's checkpoints: `files`, or else the config's
    /// held-out subjects (of `inference.shard`; when it is empty, of the shard that a
    /// Slurm job-array task's `SLURM_ARRAY_*` variables give). Sets libtorch's intra-op
    /// threads to `system.torch_threads`. With `files`, the predictor is built here.
    ///
    /// # Errors
    /// Bad Slurm variables; with `files`: a shard of more than one, a device that cannot
    /// be used, bad options, no checkpoint, a network or checkpoint that cannot be loaded,
    /// missing preprocessing files.
    pub fn from_config(
        mut settings: Settings,
        registry: Registry,
        base_dir: &Path,
        files: Option<ImageFiles>,
    ) -> Result<InferenceJob, EngineError> {
        crate::torch::set_intra_op_threads(settings.system.torch_threads);
        let Some(files) = files else {
            if settings.inference.shard.is_none() {
                if let Some(shard) = Shard::from_slurm(|name| std::env::var(name).ok())? {
                    tracing::info!(%shard, "shard of this Slurm job-array task (SLURM_ARRAY_TASK_ID); `--shard 0/1` segments every subject");
                    settings.inference.shard = Some(shard);
                }
            }
            return Ok(InferenceJob { settings, work: Work::Cohort { registry, base_dir: base_dir.to_owned() } });
        };
        refuse_shard(settings.inference.shard)?;
        let device = crate::torch::single_device(&settings.system.devices)?;
        let predictor = predictor(&settings, &registry, device)?;
        let preparation = Preparation::saved(&settings)?;
        Ok(InferenceJob { settings, work: Work::Files { predictor, preparation, files, device, bundles: Vec::new() } })
    }

    /// A job segmenting `files` with the ensemble of `bundles` (one model per checkpoint
    /// of each, for each worker), under the first bundle's config changed by `overrides`.
    /// Sets libtorch's intra-op threads to `system.torch_threads`.
    ///
    /// # Errors
    /// No bundle, bundles that differ in input spec or learned preprocessing, a bundled
    /// config that does not load, a shard of more than one, a device that cannot be used,
    /// bad options, a network or checkpoint that cannot be loaded.
    pub fn from_bundles(
        bundles: Vec<Bundle>,
        overrides: &Overrides,
        files: ImageFiles,
    ) -> Result<InferenceJob, EngineError> {
        let first = bundles.first().ok_or_else(|| EngineError::Other("no model bundle to segment with".into()))?;
        let settings = first.settings(overrides)?;
        refuse_shard(settings.inference.shard)?;
        crate::torch::set_intra_op_threads(settings.system.torch_threads);
        let device = crate::torch::single_device(&settings.system.devices)?;
        let options = InferenceOptions::from_settings(&settings)?;
        let mut sets: Vec<Vec<crate::engine::Model>> = (0..options.workers.max(1)).map(|_| Vec::new()).collect();
        for b in &bundles {
            if b.preprocessing_key() != first.preprocessing_key() {
                return Err(EngineError::Other(format!(
                    "bundles {} and {} differ in input spec or learned preprocessing: they cannot be ensembled",
                    first.source.display(),
                    b.source.display()
                )));
            }
            let bs = b.settings(overrides)?;
            let registry = b.registry()?;
            let channels = b.channels()?;
            let models = worker_models(&bs, &registry, device, &channels, &bs.inference.checkpoints, options.workers)?;
            for (set, models) in sets.iter_mut().zip(models) {
                set.extend(models);
            }
        }
        let models = sets.remove(0);
        let predictor = with_options(models, sets, &options)?;
        let preparation = Preparation::saved(&settings)?;
        Ok(InferenceJob { settings, work: Work::Files { predictor, preparation, files, device, bundles } })
    }

    /// The configuration the job runs with.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Segments and writes every output.
    ///
    /// # Errors
    /// As [`infer`] or [`infer_files`].
    pub fn run(self) -> Result<InferenceReport, EngineError> {
        let segmented = match self.work {
            Work::Cohort { registry, base_dir } => infer(&self.settings, &registry, &base_dir)?,
            Work::Files { mut predictor, preparation, files, device, bundles } => {
                let done = infer_files(&self.settings, &mut predictor, preparation, &files.images, &files.out, device)?;
                drop(bundles);
                vec![done]
            }
        };
        Ok(InferenceReport { segmented })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segmented(subject: &str) -> Segmented {
        Segmented {
            subject: subject.into(),
            output: PathBuf::from(format!("out/{subject}.nii.gz")),
            windows: 8,
            passes: 2,
            seconds: 1.234,
            network_seconds: 0.5,
        }
    }

    #[test]
    fn the_report_is_one_line_per_subject_and_a_json_array() {
        let report = InferenceReport { segmented: vec![segmented("a"), segmented("b")] };
        assert_eq!(report.to_string(), "a: out/a.nii.gz (8 windows, 1.23 s)\nb: out/b.nii.gz (8 windows, 1.23 s)\n");
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json.as_array().map(Vec::len), Some(2));
        assert_eq!(json[1]["subject"], "b");
        assert_eq!(InferenceReport { segmented: Vec::new() }.to_string(), "");
    }

    #[test]
    fn image_files_refuse_a_shard() {
        let err = refuse_shard(Shard::new(1, 3)).unwrap_err().to_string();
        assert!(err.contains("`inference.shard` = \"1/3\"") && err.contains("`--image`"), "{err}");
        assert!(refuse_shard(Some(Shard::ALL)).is_ok() && refuse_shard(None).is_ok());
    }
}
