//! `niftyhost`: parse the command line, set up logging, run the job, map errors to exit
//! codes (2: usage or configuration, 1: everything else).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{CommandFactory, FromArgMatches};
use niftyhost::cli::{Cli, Command, InferenceArgs, JobArgs, PluginArgs};
use niftyhost::config::{self, ConfigError, Settings};
use niftyhost::data::phases as dataset_check;
use niftyhost::engine::{evaluation, inference, trainer, EngineError};
use niftyhost::plugins::Registry;
use niftyhost::{bench, bundle, help, telemetry};

/// The plugin flags of a command line, read before clap so `-h` can list plugin parameters.
fn prescan_plugins(args: &[OsString]) -> PluginArgs {
    let mut out = PluginArgs::default();
    let mut it = args.iter().filter_map(|a| a.to_str());
    while let Some(a) = it.next() {
        let (flag, inline) = a.split_once('=').map_or((a, None), |(f, v)| (f, Some(v.to_owned())));
        let target = match flag {
            "--plugin" => &mut out.plugins,
            "--plugin-dir" => &mut out.plugin_dirs,
            _ => continue,
        };
        if let Some(v) = inline.or_else(|| it.next().map(str::to_owned)) {
            target.push(PathBuf::from(v));
        }
    }
    out
}

fn command_with_parameter_help(args: &[OsString]) -> clap::Command {
    let cmd = Cli::command();
    let wants_help = args.iter().any(|a| a == "-h" || a == "--help");
    if !wants_help {
        return cmd;
    }
    let registry = Registry::load(&prescan_plugins(args).search_path());
    let listing = format!("{}{}", help::host_parameters(), help::plugin_parameters(&registry));
    cmd.mut_subcommand("train", |c| c.after_help(listing.clone()))
        .mut_subcommand("inference", |c| c.after_help(listing.clone()))
        .mut_subcommand("export", |c| c.after_help(listing.clone()))
        .mut_subcommand("evaluation", |c| c.after_help(listing.clone()))
        .mut_subcommand("config", |c| c.after_help(listing.clone()))
}

fn settings(args: &JobArgs) -> Result<Settings> {
    let overrides = args.overrides()?;
    Ok(config::load(args.config.as_deref(), &overrides)?)
}

/// Loads plugins; a library named with `--plugin` that fails ends the run.
fn registry(args: &PluginArgs) -> Result<Registry> {
    let search = args.search_path();
    let registry = Registry::load(&search);
    let explicit: Vec<String> = registry.explicit_failures(&search).map(ToString::to_string).collect();
    if !explicit.is_empty() {
        anyhow::bail!("{}", explicit.join("\n"));
    }
    Ok(registry)
}

/// `--image` segments the files given: a shard of more than one (`--shard`,
/// `inference.shard`) has nothing to split. A Slurm job array's variables are not read
/// here, since array tasks often pick their own `--image` from them.
fn refuse_shard(s: &Settings) -> Result<(), ConfigError> {
    match inference::Shard::parse(&s.inference.shard) {
        Ok(shard) if shard.is_all() => Ok(()),
        _ => Err(ConfigError::Invalid(format!(
            "`--shard` (`inference.shard` = \"{}\") splits a config's subjects between processes; it does not apply to `--image`",
            s.inference.shard
        ))),
    }
}

/// `inference`: with a config (its INFER subjects, or `--image`), or with bundles.
fn run_inference(args: &InferenceArgs) -> Result<Vec<inference::Segmented>> {
    if args.images.is_empty() != args.out.is_none() {
        return Err(ConfigError::Invalid("`--image` and `--out` go together".into()).into());
    }
    let overrides = args.overrides()?;
    if args.models.is_empty() {
        let mut s = config::load(args.job.config.as_deref(), &overrides)?;
        niftyhost::torch::set_intra_op_threads(s.system.torch_threads);
        one_malloc_arena();
        let reg = registry(&args.job.plugins)?;
        let Some(out) = &args.out else {
            if s.inference.shard.is_empty() {
                if let Some(shard) = inference::Shard::from_slurm(|name| std::env::var(name).ok())? {
                    tracing::info!(%shard, "shard of this Slurm job-array task (SLURM_ARRAY_TASK_ID); `--shard 0/1` segments every subject");
                    s.inference.shard = shard.to_string();
                }
            }
            return inference::infer(&s, &reg, Path::new(".")).context("inference failed");
        };
        refuse_shard(&s)?;
        let device = niftyhost::torch::single_device(&s.system.devices)?;
        let mut predictor = inference::predictor(&s, &reg, device)?;
        let preparation = niftyhost::data::prepare::Preparation::saved(&s)?;
        let done = inference::infer_files(&s, &mut predictor, preparation, &args.images, out, device)
            .context("inference failed")?;
        return Ok(vec![done]);
    }
    if args.job.config.is_some() {
        return Err(
            ConfigError::Invalid("`--model` carries its own config: change it with `--set`, not `-c`".into()).into()
        );
    }
    let Some(out) = &args.out else {
        return Err(ConfigError::Invalid("`--model` segments `--image` files into `--out`".into()).into());
    };
    let mut bundles = Vec::new();
    for m in &args.models {
        bundles.push(bundle::open(m)?);
    }
    let first = &bundles[0];
    let s = first.settings(&overrides)?;
    refuse_shard(&s)?;
    niftyhost::torch::set_intra_op_threads(s.system.torch_threads);
    one_malloc_arena();
    let device = niftyhost::torch::single_device(&s.system.devices)?;
    let options = inference::InferenceOptions::from_settings(&s)?;
    let mut sets: Vec<Vec<niftyhost::engine::Model>> = (0..options.workers.max(1)).map(|_| Vec::new()).collect();
    for b in &bundles {
        if b.preprocessing_key() != first.preprocessing_key() {
            anyhow::bail!(
                "bundles {} and {} differ in input spec or learned preprocessing: they cannot be ensembled",
                first.source.display(),
                b.source.display()
            );
        }
        let bs = b.settings(&overrides)?;
        let reg = b.registry()?;
        let models = inference::worker_models(&bs, &reg, device, &bs.inference.checkpoints, options.workers)?;
        for (set, models) in sets.iter_mut().zip(models) {
            set.extend(models);
        }
    }
    let models = sets.remove(0);
    let mut predictor = inference::with_options(models, sets, &options)?;
    let preparation = niftyhost::data::prepare::Preparation::saved(&s)?;
    let done = inference::infer_files(&s, &mut predictor, preparation, &args.images, out, device)
        .context("inference failed")?;
    Ok(vec![done])
}

fn print_json(value: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn run(cli: Cli) -> Result<()> {
    let here = Path::new(".");
    match cli.command {
        Command::Train(args) => {
            let s = settings(&args)?;
            let reg = registry(&args.plugins)?;
            let report = trainer::train(&s, &reg, here).context("training failed")?;
            if report.rank > 0 {
                return Ok(());
            }
            eprintln!(
                "trained {} to iteration {} (loss {:.4}, {:.3} s/iteration, {:.1} patches/s, data wait {:.1}%)\ncheckpoint: {}\nlog: {}",
                s.network.name,
                report.iterations,
                report.final_loss,
                report.seconds_per_iteration,
                report.patches_per_second,
                100.0 * report.data_wait_share,
                report.checkpoint.display(),
                report.log.display()
            );
            if args.plugins.json {
                print_json(&report)?;
            }
        }
        Command::Inference(args) => {
            let written = run_inference(&args)?;
            for w in &written {
                eprintln!("{}: {} ({} windows, {:.2} s)", w.subject, w.output.display(), w.windows, w.seconds);
            }
            if args.job.plugins.json {
                print_json(&written)?;
            }
        }
        Command::Export(args) => {
            let s = settings(&args.job)?;
            let reg = registry(&args.job.plugins)?;
            let exported = bundle::export(&s, &reg, &args.out).context("export failed")?;
            eprintln!(
                "exported {} ({} weights file(s), {:.1} MB)\nsha256 {}",
                exported.bundle.display(),
                exported.manifest.weights.len(),
                exported.bytes as f64 / 1e6,
                exported.sha256
            );
            if args.job.plugins.json {
                print_json(&exported)?;
            }
        }
        Command::Evaluation(args) => {
            let s = config::load(args.job.config.as_deref(), &args.overrides()?)?;
            let report = evaluation::evaluate(&s, here).context("evaluation failed")?;
            for (label, dice) in &report.mean_dice {
                eprintln!("label {label}: mean Dice {dice:.4}");
            }
            eprintln!("metrics: {}", report.csv.display());
            if args.job.plugins.json {
                print_json(&report)?;
            }
        }
        Command::Check(args) => {
            let s = settings(&args)?;
            let report = dataset_check::check(&s, here)?;
            eprintln!(
                "{} subjects: every file readable, images and labels agree (split: {})",
                report.subjects,
                report.split.display()
            );
            if args.plugins.json {
                print_json(&report)?;
            }
        }
        Command::Bench(args) => {
            let scratch = std::env::temp_dir().join(format!("niftyhost-bench-{}", std::process::id()));
            let opts = bench::BenchOptions {
                data_dir: args.data_dir.clone(),
                window: args.window,
                batch_size: args.batch_size,
                threads: args.threads,
                batches: args.batches,
                train_iterations: args.train_iterations,
                scratch: scratch.clone(),
                augment: args.augment,
                runs: args.runs,
            };
            let reg = registry(&args.plugins)?;
            if args.inference {
                // As `niftyhost inference` runs.
                one_malloc_arena();
                let report = bench::run_inference(&opts, &reg);
                let _ = std::fs::remove_dir_all(&scratch);
                let report = report.context("inference benchmark failed")?;
                eprintln!(
                    "{} {:?}: {}, window {}³, overlap {}, batch {}, {} worker(s), precision {}",
                    report.image.display(),
                    report.dims,
                    report.network,
                    report.window,
                    report.overlap,
                    report.batch_size,
                    report.workers,
                    report.precision
                );
                for r in &report.runs {
                    eprintln!(
                        "crop_to_foreground = {}: {} windows, {:.2} s reading to writing (best of {}), {:.2} s in the network",
                        r.crop_to_foreground, r.windows, r.seconds, args.runs, r.network_seconds
                    );
                }
                eprintln!("peak RSS {:.0} MB", report.peak_rss_mb);
                if args.plugins.json {
                    print_json(&report)?;
                }
                return Ok(());
            }
            let report = bench::run(&opts, &reg);
            let _ = std::fs::remove_dir_all(&scratch);
            let report = report.context("benchmark failed")?;
            let d = &report.decode;
            eprintln!("window {0}³, batch {1}, {2} loader threads", report.window, report.batch_size, report.threads);
            eprintln!(
                "decode {}: {:.1} ms ({:.0} Mvoxel/s)",
                d.file.display(),
                d.milliseconds,
                d.megavoxels_per_second
            );
            for s in &report.samplers {
                eprintln!("{} sampler: {:.0} patches/s", s.sampler, s.patches_per_second);
            }
            if let Some(t) = &report.training {
                eprintln!(
                    "{} training: {:.3} s/iteration, data wait {:.2}%, host overhead {:.2}% (plugin forward/backward {:.3} s, optimiser {:.4} s per step)",
                    t.network,
                    t.seconds_per_iteration,
                    100.0 * t.data_wait_share,
                    100.0 * t.host_overhead_share,
                    t.step_parts.plugin,
                    t.step_parts.optimiser,
                );
            }
            if let Some(a) = &report.augmentation {
                for c in &a.costs {
                    eprintln!("augmentation {} ({}³): {:.1} ms/window", c.name, c.edge, c.milliseconds);
                }
                if let Some(t) = &a.training {
                    eprintln!(
                        "{} training with the default chain: {:.3} s/iteration, data wait {:.2}%",
                        t.network,
                        t.seconds_per_iteration,
                        100.0 * t.data_wait_share
                    );
                }
            }
            if args.plugins.json {
                print_json(&report)?;
            }
        }
        Command::ListPlugins(args) => {
            let search = args.search_path();
            let reg = Registry::load(&search);
            let rows = reg.listing();
            if args.json {
                print_json(&rows)?;
            } else {
                print!("{}", niftyhost::plugins::ListingTable { rows: &rows, shadowed: cli.verbose > 0 });
                if rows.is_empty() {
                    let dirs: Vec<String> = search.dirs.iter().map(|d| d.display().to_string()).collect();
                    eprintln!("no plugins found in: {}", dirs.join(", "));
                }
            }
            if reg.explicit_failures(&search).next().is_some() {
                std::process::exit(1);
            }
        }
        Command::Config(args) => {
            let s = settings(&args)?;
            let reg = Registry::load(&args.plugins.search_path());
            if args.plugins.json {
                print_json(&s)?;
            } else {
                println!("{}", toml::to_string_pretty(&s)?);
                eprintln!("{}{}", help::host_parameters(), help::plugin_parameters(&reg));
            }
        }
        Command::Info(args) => niftyhost::io::info::run(&args)?,
    }
    Ok(())
}

fn exit_code(err: &anyhow::Error) -> u8 {
    let is_config = err.chain().any(|e| {
        e.downcast_ref::<ConfigError>().is_some()
            || matches!(e.downcast_ref::<EngineError>(), Some(EngineError::Config(_)))
    });
    if is_config {
        2
    } else {
        1
    }
}

/// Keeps freed memory in the process for reuse. glibc's malloc serves blocks above its
/// mmap threshold (at most 32 MB) with fresh pages and unmaps them on free, and returns
/// the top of the heap to the system past its trim threshold; libtorch allocates and
/// frees every activation of every forward pass, so the kernel zeroed pages all the time
/// (1.4 to 7 s of system time in a whole-volume inference). Without mmap'd blocks and
/// with a high trim threshold, the heap keeps those pages; the peak RSS barely changes.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes malloc's parameters; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 512 << 20);
    }
}

/// One malloc arena for all threads of an inference: each worker thread's own arena
/// would keep its freed memory apart (300 to 400 MB more at the peak on a 512×512×400
/// volume with 10 classes); the workers allocate a few large blocks per batch, so they
/// hardly contend for it. Called before the workers start.
fn one_malloc_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes malloc's parameters.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

fn main() -> ExitCode {
    keep_freed_memory();
    let args: Vec<OsString> = std::env::args_os().collect();
    let matches = command_with_parameter_help(&args).get_matches_from(&args);
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    // In a job of several processes, only rank 0 reports progress; the others warn.
    let secondary_rank = niftyhost::distributed::launch::from_env().is_ok_and(|w| w.rank > 0);
    telemetry::init(cli.verbose, cli.quiet || secondary_rank);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(exit_code(&err))
        }
    }
}
