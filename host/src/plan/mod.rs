//! `niftyhost plan`: reads every labelled subject of a dataset once (the input sections
//! of a config, or a Decathlon folder), writes its fingerprint (`fingerprint.json`) and a
//! complete, commented training configuration derived from it by nnU-Net's rules
//! ([`rules`]), the batch checked by a real forward/backward pass ([`check`]).

pub mod check;
pub mod decathlon;
pub mod fingerprint;
pub mod rules;
pub mod writer;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use serde::Serialize;

use self::fingerprint::{Fingerprint, SubjectFingerprint};
use self::rules::{Ruled, Topology};
use self::writer::Plan;
use crate::cli::PlanArgs;
use crate::config::{self, ConfigError, Overrides, Settings};
use crate::data::{find_subjects, ChannelLayout, DataError, Needs};
use crate::preprocess::AxCodes;

/// What `niftyhost plan` did.
#[derive(Debug, Clone, Serialize)]
pub struct PlanReport {
    /// Labelled subjects read.
    pub subjects: usize,
    /// The planned config.
    pub config: PathBuf,
    /// The fingerprint.
    pub fingerprint: PathBuf,
    /// Axis codes.
    pub axcodes: String,
    /// Target voxel size `(i, j, k)`, mm.
    pub spacing: [f64; 3],
    /// Patch `(i, j, k)`.
    pub patch: [usize; 3],
    /// Stride reaching each level `(i, j, k)`.
    pub strides: Vec<[usize; 3]>,
    /// Kernel of each level `(i, j, k)`.
    pub kernels: Vec<[usize; 3]>,
    /// Windows per step.
    pub batch: usize,
    /// Estimated memory of a step, bytes.
    pub estimated_bytes: u64,
    /// The memory budget, bytes.
    pub budget_bytes: u64,
    /// The forward/backward check: every try, as a sentence.
    pub checks: Vec<String>,
    /// Seconds the whole plan took.
    pub seconds: f64,
}

impl std::fmt::Display for PlanReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "planned {} from {} subjects in {:.1} s", self.config.display(), self.subjects, self.seconds)?;
        writeln!(f, "fingerprint: {}", self.fingerprint.display())?;
        writeln!(f, "axis codes {}, spacing {} mm, patch {:?}", self.axcodes, rules::mm(&self.spacing), self.patch)?;
        for (l, (s, k)) in self.strides.iter().zip(&self.kernels).enumerate() {
            writeln!(f, "  level {l}: stride {s:?}, kernel {k:?} (i, j, k)")?;
        }
        let gib = |b: u64| b as f64 / f64::from(1u32 << 30);
        writeln!(
            f,
            "batch {} (estimated {:.2} GiB of a {:.1} GiB budget)",
            self.batch,
            gib(self.estimated_bytes),
            gib(self.budget_bytes)
        )?;
        for c in &self.checks {
            writeln!(f, "check: {c}")?;
        }
        Ok(())
    }
}

/// The input sections, image sections and label section a plan reads, and the declared
/// classes.
struct Source {
    settings: Settings,
    class_names: Vec<String>,
    described: String,
}

/// The settings to plan from: `-c` (its input sections), or a Decathlon folder's
/// sections on top of it.
fn source(args: &PlanArgs) -> Result<Source> {
    let mut overrides = args.job.overrides()?;
    let Some(dir) = &args.dataset else {
        let Some(file) = &args.job.config else {
            return Err(ConfigError::Invalid(
                "`niftyhost plan` needs `-c CONFIG` (its input sections) or `--dataset DIR` (a Decathlon folder)"
                    .into(),
            )
            .into());
        };
        let settings = crate::commands::settings(&args.job)?;
        settings.require_images("plan")?;
        return Ok(Source { settings, class_names: Vec::new(), described: file.display().to_string() });
    };
    let d = decathlon::read(dir)?;
    // The dataset's sections go in before the flags, so `--set` still wins.
    let entry = |key: String, value: toml::Value| ("--dataset".to_owned(), key, value.to_string());
    let strings = |v: &[String]| toml::Value::Array(v.iter().map(|s| toml::Value::String(s.clone())).collect());
    let mut entries = Vec::new();
    for (name, section) in d.sections() {
        let keys = [
            ("path_to_search", toml::Value::String(section.path_to_search)),
            ("inference_path_to_search", toml::Value::String(section.inference_path_to_search)),
            ("filename_contains", strings(&section.filename_contains)),
            ("modality", toml::Value::String(section.modality)),
        ];
        entries.extend(keys.into_iter().map(|(k, v)| entry(format!("input.{name}.{k}"), v)));
    }
    let image: Vec<String> = d.channels.iter().map(|c| c.section.clone()).collect();
    entries.push(entry("segmentation.image".into(), strings(&image)));
    entries.push(entry("segmentation.label".into(), toml::Value::String("label".into())));
    entries.push(entry("segmentation.num_classes".into(), toml::Value::Integer(d.labels.len() as i64)));
    overrides.cli.splice(0..0, entries);
    let settings = config::load(args.job.config.as_deref(), &overrides)?;
    Ok(Source { settings, class_names: d.labels, described: format!("the dataset {}", dir.display()) })
}

/// The memory budget: `--memory-gb`, else the GPU's memory when the first device is one,
/// else 4 GiB.
fn budget(args: &PlanArgs, gpu: bool) -> (u64, String) {
    let gib = |g: f64| (g * f64::from(1u32 << 30)) as u64;
    if let Some(g) = args.memory_gb {
        return (gib(g), format!("--memory-gb {g}"));
    }
    if gpu {
        if let Some((_, total)) = crate::memory::cuda_memory() {
            return (total, "the GPU's memory".into());
        }
    }
    (gib(4.0), "4 GiB (no GPU)".into())
}

/// Subject shapes and spacings in the target axes.
fn in_axes(subjects: &[SubjectFingerprint], target: AxCodes) -> Result<Vec<([usize; 3], [f64; 3])>, DataError> {
    subjects.iter().map(|s| s.in_axes(target)).collect::<Result<_, _>>().map_err(|e| DataError::Invalid(vec![e]))
}

/// `niftyhost plan`.
///
/// # Errors
/// A usage or configuration problem (no source, fewer than 2 subjects, a bad
/// `dataset.json`): [`ConfigError`]; data that cannot be planned with (shapes or spacings
/// that contradict their labels, labels outside the declared classes, unreadable files):
/// [`DataError`], listing every problem.
pub fn plan(args: &PlanArgs) -> Result<PlanReport> {
    let started = Instant::now();
    if let Some(m) = args.minutes.filter(|m| !(m.is_finite() && *m > 0.0)) {
        return Err(ConfigError::Invalid(format!("`--minutes` must be a positive number of minutes, got {m}")).into());
    }
    let Source { settings, class_names, described } = source(args)?;
    let needs = Needs { labels: true, ..Needs::default() };
    let subjects = find_subjects(&settings, Path::new("."), needs)?;
    if subjects.len() < 2 {
        let ids: Vec<&str> = subjects.iter().map(|s| s.id.as_str()).collect();
        return Err(ConfigError::Invalid(format!(
            "`niftyhost plan` needs at least 2 labelled subjects to derive a plan from, found {} ({})",
            subjects.len(),
            ids.join(", ")
        ))
        .into());
    }
    let num_classes = settings.segmentation.num_classes;
    let measured = fingerprint::measure_all(&subjects, num_classes).map_err(DataError::Invalid)?;
    let axcodes = rules::target_axcodes(&measured.iter().map(|s| s.axcodes.clone()).collect::<Vec<_>>());
    let target = AxCodes::parse(&axcodes.value).map_err(|e| DataError::Invalid(vec![e.to_string()]))?;
    let aggregates = fingerprint::aggregate(&measured, target, num_classes).map_err(|e| DataError::Invalid(vec![e]))?;
    let geometry = in_axes(&measured, target)?;
    let spacings: Vec<[f64; 3]> = geometry.iter().map(|g| g.1).collect();
    let shapes: Vec<[usize; 3]> = geometry.iter().map(|g| g.0).collect();
    let pixdim = rules::target_spacing(&spacings, &shapes);
    let pixdim = Ruled { value: pixdim.value.map(fingerprint::round_mm), rule: pixdim.rule };
    let resampled: Vec<[f64; 3]> =
        geometry.iter().map(|(shape, s)| std::array::from_fn(|a| shape[a] as f64 * s[a] / pixdim.value[a])).collect();
    let median_shape: [f64; 3] =
        std::array::from_fn(|a| fingerprint::median(&resampled.iter().map(|r| r[a]).collect::<Vec<_>>()));
    let cohort_voxels: f64 = resampled.iter().map(|r| r.iter().product::<f64>()).sum();

    let layout = ChannelLayout::of_subject(&settings.segmentation.image, &subjects[0])?;
    let mut first_channel = 0;
    let mut normalisation = Vec::new();
    let mut channel_names = Vec::new();
    for (name, &c) in settings.segmentation.image.iter().zip(layout.counts()) {
        let modality = &settings.input[name].modality;
        normalisation.push(rules::normalisation(modality, &aggregates.intensity[first_channel]));
        channel_names.extend((0..c).map(|k| if c == 1 { name.clone() } else { format!("{name}[{k}]") }));
        first_channel += c;
    }

    let devices = settings.device_names();
    let gpu = devices.first().is_some_and(|d| d.starts_with("cuda"));
    let device = crate::torch::select_devices(&devices[..1.min(devices.len())])?.first().copied();
    let (budget_bytes, budget_source) = budget(args, gpu);
    let base_width = rules::base_width(gpu);
    let base = base_width.value;
    let widths_of = move |levels| rules::widths(base, levels);
    let classes = num_classes;
    let (topology, batch) =
        rules::fit(pixdim.value, median_shape, &widths_of, layout.total(), classes, budget_bytes, cohort_voxels);
    let iterations = match args.iterations {
        Some(n) => Ruled { value: n, rule: "--iterations".into() },
        None => rules::iterations(gpu),
    };
    let image = settings.segmentation.image.clone();
    let label = settings.segmentation.label.clone();
    let sections = image.iter().chain([&label]).map(|n| (n.clone(), settings.input[n].clone())).collect();
    let mut plan = Plan {
        source: described,
        seed: settings.system.seed,
        devices: devices.clone(),
        model_dir: settings.system.model_dir.display().to_string(),
        sections,
        image,
        label,
        num_classes,
        class_names,
        axcodes,
        pixdim: pixdim.clone(),
        normalisation,
        patch_rule: patch_rule(&topology, median_shape, &budget_source),
        topology,
        base_width,
        batch,
        iterations,
        held_out: rules::held_out_fraction(subjects.len()),
        checked: "forward/backward not checked".into(),
        finest_mm: pixdim.value.iter().copied().fold(f64::INFINITY, f64::min),
    };
    let out = &args.out;
    write_and_load(&plan, out)?;
    let mut checks = Vec::new();
    if let (false, Some(device)) = (args.no_check, device) {
        let registry = crate::commands::registry(&args.job.plugins)?;
        if registry.find(niftyhost_plugin_api::ComponentKind::Network, "dynunet").is_err() {
            if args.minutes.is_some() {
                return Err(ConfigError::Invalid(
                    "`--minutes` needs the step time measured by the `dynunet` network plugin, which was not found"
                        .into(),
                )
                .into());
            }
            tracing::warn!(
                "the `dynunet` network plugin was not found: the batch is not checked by a forward/backward pass"
            );
            checks.push("skipped: no dynunet plugin".into());
        } else {
            check_batch(&mut plan, &registry, &layout, device, budget_bytes, median_shape, &mut checks)?;
            if let Some(minutes) = args.minutes {
                plan.iterations = budget_iterations(&plan, &registry, &layout, device, minutes, &mut checks)?;
            }
            write_and_load(&plan, out)?;
        }
    }
    let estimated_bytes = rules::memory_estimate(
        &plan.topology,
        &widths_of(plan.topology.strides.len()),
        layout.total(),
        classes,
        plan.batch.value,
    );
    let fingerprint_path = args.fingerprint.clone().unwrap_or_else(|| out.with_file_name("fingerprint.json"));
    let fp = Fingerprint { channels: channel_names, num_classes, subjects: measured, aggregates };
    let json = serde_json::to_string_pretty(&fp).context("fingerprint as JSON")?;
    std::fs::write(&fingerprint_path, json + "\n")
        .with_context(|| format!("cannot write {}", fingerprint_path.display()))?;
    Ok(PlanReport {
        subjects: subjects.len(),
        config: out.clone(),
        fingerprint: fingerprint_path,
        axcodes: plan.axcodes.value.clone(),
        spacing: plan.pixdim.value,
        patch: plan.topology.patch,
        strides: plan.topology.strides.clone(),
        kernels: plan.topology.kernels.clone(),
        batch: plan.batch.value,
        estimated_bytes,
        budget_bytes,
        checks,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The iterations of the checked batch that fit in `minutes`, from its warm step time.
///
/// # Errors
/// The planned config cannot be written, or the timed passes fail.
fn budget_iterations(
    plan: &Plan,
    registry: &crate::plugins::Registry,
    layout: &ChannelLayout,
    device: tch::Device,
    minutes: f64,
    checks: &mut Vec<String>,
) -> Result<Ruled<u64>> {
    let settings = candidate_settings(plan)?;
    let (batch, patch) = (plan.batch.value, plan.topology.patch);
    let trial = check::Trial { registry, settings: &settings, channels: layout, device, batch, patch };
    let seconds = trial
        .warm_step_seconds(3)
        .map_err(|e| anyhow::anyhow!("timing a step of {batch} windows of {patch:?} on {device:?}: {e}"))?;
    let ruled = rules::iterations_in_budget(minutes, seconds, &format!("{device:?}"));
    let line = format!(
        "a warm step of {batch} windows of {patch:?} on {device:?}: {seconds:.2} s, {} iterations in {minutes} min",
        ruled.value
    );
    tracing::info!("{line}");
    checks.push(line);
    Ok(ruled)
}

/// The patch's comment.
fn patch_rule(t: &Topology, median_shape: [f64; 3], budget: &str) -> String {
    let median: Vec<String> = median_shape.iter().map(|m| format!("{m:.0}")).collect();
    format!(
        "rule: 256³ voxels' volume shaped by the spacing, clipped to the median shape [{}], shrunk until a batch of 2 fits the memory budget ({budget}), divisible by each axis's total stride {:?} (nnU-Net)",
        median.join(", "),
        std::array::from_fn::<usize, 3, _>(|a| t.strides.iter().map(|s| s[a]).product())
    )
}

/// Writes the planned config and loads it back (so it is known to be valid).
///
/// # Errors
/// It cannot be written, or does not load (a bug of the writer: the message names it).
fn write_and_load(plan: &Plan, out: &Path) -> Result<Settings> {
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(out, writer::render(plan)).with_context(|| format!("cannot write {}", out.display()))?;
    config::load(Some(out), &Overrides::default())
        .with_context(|| format!("the planned config {} does not load", out.display()))
}

/// The settings `plan` describes, written to a temporary file and loaded back.
///
/// # Errors
/// As [`write_and_load`].
fn candidate_settings(plan: &Plan) -> Result<Settings> {
    let path = std::env::temp_dir().join(format!("niftyhost-plan-{}.toml", std::process::id()));
    let loaded = write_and_load(plan, &path);
    let _ = std::fs::remove_file(&path);
    loaded
}

/// Runs one forward/backward pass of the planned batch; while it fails or measures more
/// than the budget, shrinks the batch (down to 2), then the patch, and writes the config
/// again. Each try is recorded in `checks` and logged.
///
/// # Errors
/// Nothing fits (the last failure named), or the config cannot be written.
fn check_batch(
    plan: &mut Plan,
    registry: &crate::plugins::Registry,
    layout: &ChannelLayout,
    device: tch::Device,
    budget: u64,
    median_shape: [f64; 3],
    checks: &mut Vec<String>,
) -> Result<()> {
    let gib = |b: u64| b as f64 / f64::from(1u32 << 30);
    let out_of_budget = |p: Option<u64>| p.is_some_and(|p| p > budget);
    loop {
        let candidate = candidate_settings(plan)?;
        let (batch, patch) = (plan.batch.value, plan.topology.patch);
        let trial = check::Trial { registry, settings: &candidate, channels: layout, device, batch, patch };
        let result = trial.forward_backward();
        let line = match &result {
            Ok(m) => format!(
                "forward/backward of {batch} windows of {patch:?} on {device:?}: {:.2} s, {}",
                m.seconds,
                m.peak_bytes.map_or("memory not measured".into(), |b| format!("{:.2} GiB at the peak", gib(b)))
            ),
            Err(e) => format!("forward/backward of {batch} windows of {patch:?} on {device:?} failed: {e}"),
        };
        tracing::info!("{line}");
        checks.push(line);
        match result {
            Ok(m) if !out_of_budget(m.peak_bytes) => {
                plan.checked = format!("checked by a forward/backward pass of one batch on {device:?}");
                return Ok(());
            }
            _ if plan.batch.value > 2 => {
                plan.batch.value -= 1;
                plan.batch.rule =
                    "rule: the estimate's batch less what the forward/backward check could not run".into();
            }
            failed => match rules::shrink(&plan.topology, plan.pixdim.value, median_shape) {
                Some(smaller) => plan.topology = smaller,
                None => {
                    let why = failed.err().unwrap_or_else(|| "more memory than the budget".into());
                    return Err(anyhow::anyhow!("no batch of 2 windows fits: {why}"));
                }
            },
        }
    }
}
