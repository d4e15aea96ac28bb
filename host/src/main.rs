//! `niftyhost-engine`: parse the command line, set up logging, run the command (a library
//! call of [`niftyhost::commands`]), print its report (text on stderr, or JSON on stdout
//! with `--json`), map errors to exit codes (0: success, 2: usage or configuration, 1:
//! everything else). The `niftyhost` front binary (crate `niftyhost-core`) runs
//! `evaluation`, `info` and `check` without libtorch and replaces itself with this binary
//! for every other command line, unchanged; this binary runs those three too.

use std::ffi::OsString;
use std::process::ExitCode;

use anyhow::Result;
use clap::FromArgMatches;
use niftyhost::cli::{Cli, Command};
use niftyhost::commands;
use niftyhost::engine::EngineError;
use niftyhost::plugins::{ExplicitFailures, Registry, RegistryError};
use niftyhost::torch::DeviceError;
use niftyhost::{help, memory};
use niftyhost_core::front::{self, print_json, report, TorchFree};

fn run(cli: Cli) -> Result<()> {
    if let Some(job) = TorchFree::of(&cli.command) {
        return job.run();
    }
    match cli.command {
        Command::Train(args) if args.all_folds => report(&commands::train_all_folds(&args)?, args.job.plugins.json)?,
        Command::Train(args) => {
            let trained = commands::train(&args)?;
            // Rank 0 speaks for a job of several processes.
            if trained.rank == 0 {
                report(&trained, args.job.plugins.json)?;
            }
        }
        Command::Inference(args) => {
            memory::one_malloc_arena();
            report(&commands::inference(&args)?, args.job.plugins.json)?;
        }
        Command::Export(args) => report(&commands::export(&args)?, args.job.plugins.json)?,
        Command::Bench(args) if args.inference => {
            // As `niftyhost inference` runs.
            memory::one_malloc_arena();
            report(&commands::bench_inference(&args)?, args.plugins.json)?;
        }
        Command::Bench(args) => report(&commands::bench(&args)?, args.plugins.json)?,
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
            reg.check_explicit(&search)?;
        }
        Command::Config(args) if args.explain => {
            let explained = commands::explain(&args.job);
            let (Ok(report) | Err(commands::ExplainFailure { report, .. })) = &explained;
            if args.job.plugins.json {
                print_json(report)?;
            } else {
                print!("{report}");
            }
            explained.map_err(|failure| failure.error)?;
        }
        Command::Config(args) => {
            let args = args.job;
            let config = commands::config(&args)?;
            if args.plugins.json {
                print_json(&config.settings)?;
            } else {
                println!("{}", toml::to_string_pretty(&config.settings)?);
                eprintln!("{}", config.parameters);
            }
        }
        Command::Plan(args) => report(&niftyhost::plan::plan(&args)?, args.job.plugins.json)?,
        // Run above, as the front binary runs them.
        Command::Evaluation(_) | Command::Check(_) | Command::Info(_) => {}
    }
    Ok(())
}

/// Whether `e` is a usage or configuration error: the torch-free part's, a device that is
/// not one or cannot be had, and the engine's and plugin registry's usage errors.
fn is_usage(e: &(dyn std::error::Error + 'static)) -> bool {
    front::is_usage(e)
        || e.downcast_ref::<DeviceError>().is_some()
        || e.downcast_ref::<EngineError>().is_some_and(EngineError::is_usage)
        || e.downcast_ref::<RegistryError>().is_some_and(RegistryError::is_usage)
        || e.downcast_ref::<ExplicitFailures>().is_some_and(ExplicitFailures::is_usage)
}

fn main() -> ExitCode {
    memory::keep_freed_memory();
    let args: Vec<OsString> = std::env::args_os().collect();
    let matches = help::command(&args).get_matches_from(&args);
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    front::init_logging(&cli);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(front::exit_code(&err, is_usage))
        }
    }
}
