//! `niftyhost`: parse the command line, set up logging, run the command (a library call
//! of [`niftyhost::commands`]), print its report (text on stderr, or JSON on stdout with
//! `--json`), map errors to exit codes (0: success, 2: usage or configuration, 1: everything
//! else).

use std::ffi::OsString;
use std::fmt::Display;
use std::process::ExitCode;

use anyhow::Result;
use clap::FromArgMatches;
use niftyhost::cli::{Cli, Command};
use niftyhost::commands;
use niftyhost::config::ConfigError;
use niftyhost::engine::EngineError;
use niftyhost::plugins::{ExplicitFailures, Registry, RegistryError};
use niftyhost::torch::DeviceError;
use niftyhost::{help, memory, telemetry};

fn print_json(value: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// A report as text on stderr, and as JSON on stdout with `--json`.
fn report(report: &(impl Display + serde::Serialize), json: bool) -> Result<()> {
    eprint!("{report}");
    if json {
        print_json(report)?;
    }
    Ok(())
}

fn run(cli: Cli) -> Result<()> {
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
        Command::Evaluation(args) => report(&commands::evaluation(&args)?, args.job.plugins.json)?,
        Command::Check(args) => report(&commands::check(&args)?, args.plugins.json)?,
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
        Command::Info(args) => {
            let info = commands::info(&args);
            if args.json {
                print_json(&info)?;
            } else {
                print!("{info}");
            }
            eprint!("{}", info.problems());
            info.into_result()?;
        }
    }
    Ok(())
}

/// The exit code of a failed command: 2 for a usage or configuration error anywhere in
/// the error's chain, 1 for anything else (clap's own usage errors exit 2 too; success is
/// 0).
fn exit_code(err: &anyhow::Error) -> u8 {
    let is_usage = err.chain().any(|e| {
        e.downcast_ref::<ConfigError>().is_some()
            || e.downcast_ref::<DeviceError>().is_some()
            || e.downcast_ref::<EngineError>().is_some_and(EngineError::is_usage)
            || e.downcast_ref::<RegistryError>().is_some_and(RegistryError::is_usage)
            || e.downcast_ref::<ExplicitFailures>().is_some_and(ExplicitFailures::is_usage)
    });
    if is_usage {
        2
    } else {
        1
    }
}

fn main() -> ExitCode {
    memory::keep_freed_memory();
    let args: Vec<OsString> = std::env::args_os().collect();
    let matches = help::command(&args).get_matches_from(&args);
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
