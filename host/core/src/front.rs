//! What the `niftyhost` front binary does, and what it shares with the engine binary:
//! running the commands that need no libtorch ([`TorchFree`]), handing every other
//! command line to the engine ([`exec_engine`]), printing reports, setting up logs and
//! mapping errors to exit codes (0: success, 2: usage or configuration, 1: everything
//! else).

use std::error::Error;
use std::ffi::OsString;
use std::fmt::Display;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

use crate::cli::{Cli, Command, EvaluationArgs, InfoArgs, JobArgs};
use crate::commands;
use crate::config::ConfigError;
use crate::evaluation::EvaluationError;

/// The file name of the engine binary, which the front looks for beside itself.
pub const ENGINE: &str = "niftyhost-engine";

/// A command that runs without libtorch and without plugins.
#[derive(Debug, Clone, Copy)]
pub enum TorchFree<'a> {
    /// `niftyhost evaluation`.
    Evaluation(&'a EvaluationArgs),
    /// `niftyhost check`.
    Check(&'a JobArgs),
    /// `niftyhost info`.
    Info(&'a InfoArgs),
}

impl<'a> TorchFree<'a> {
    /// `command` if it runs without libtorch; `None` for the engine's commands.
    pub fn of(command: &'a Command) -> Option<TorchFree<'a>> {
        match command {
            Command::Evaluation(args) => Some(TorchFree::Evaluation(args)),
            Command::Check(args) => Some(TorchFree::Check(args)),
            Command::Info(args) => Some(TorchFree::Info(args)),
            _ => None,
        }
    }

    /// Runs the command and prints its report (text on stderr, JSON on stdout with
    /// `--json`; `info`'s table on stdout).
    ///
    /// # Errors
    /// The command's: a bad configuration, bad data, a file that cannot be read.
    pub fn run(self) -> Result<()> {
        match self {
            TorchFree::Evaluation(args) => report(&commands::evaluation(args)?, args.job.plugins.json),
            TorchFree::Check(args) => report(&commands::check(args)?, args.plugins.json),
            TorchFree::Info(args) => {
                let info = commands::info(args);
                if args.json {
                    print_json(&info)?;
                } else {
                    print!("{info}");
                }
                eprint!("{}", info.problems());
                Ok(info.into_result()?)
            }
        }
    }
}

/// `value` as pretty JSON on stdout.
///
/// # Errors
/// A value that cannot be written as JSON.
pub fn print_json(value: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// A report as text on stderr, and as JSON on stdout with `json`.
///
/// # Errors
/// As [`print_json`].
pub fn report(report: &(impl Display + serde::Serialize), json: bool) -> Result<()> {
    eprint!("{report}");
    if json {
        print_json(report)?;
    }
    Ok(())
}

/// Logs and progress on stderr at the verbosity of `cli`; in a job of several processes
/// only rank 0 reports progress, the others warn.
pub fn init_logging(cli: &Cli) {
    let secondary_rank = crate::launch::from_env().is_ok_and(|w| w.rank > 0);
    crate::telemetry::init(cli.verbose, cli.quiet || secondary_rank);
}

/// Whether `e` is a usage or configuration error of the torch-free part: a bad
/// configuration, or an evaluation asked for something it cannot do.
pub fn is_usage(e: &(dyn Error + 'static)) -> bool {
    e.downcast_ref::<ConfigError>().is_some()
        || e.downcast_ref::<EvaluationError>().is_some_and(EvaluationError::is_usage)
}

/// The exit code of a failed command: 2 when `is_usage` holds for an error anywhere in
/// `err`'s chain, 1 otherwise (clap's own usage errors exit 2 too; success is 0).
pub fn exit_code(err: &anyhow::Error, is_usage: impl Fn(&(dyn Error + 'static)) -> bool) -> u8 {
    if err.chain().any(is_usage) {
        2
    } else {
        1
    }
}

/// The engine binary: [`ENGINE`] in the folder of this process's executable (links
/// resolved, so a link to the front finds the engine beside the real file).
///
/// # Errors
/// This process's executable cannot be found.
pub fn engine_path() -> std::io::Result<PathBuf> {
    Ok(std::env::current_exe()?.with_file_name(ENGINE))
}

/// Replaces this process by the engine, run with `args` unchanged (`args[0]` stays the
/// program name the user typed, so help and errors read as before), so the exit code,
/// signals and process id are the engine's. Returns only when the engine cannot be
/// started, with exit code 1 after saying which file is missing or why it failed.
pub fn exec_engine(args: &[OsString]) -> ExitCode {
    let engine = match engine_path() {
        Ok(path) => path,
        Err(e) => {
            eprintln!("error: cannot find this executable to look for {ENGINE} beside it: {e}");
            return ExitCode::from(1);
        }
    };
    let arg0 = args.first().cloned().unwrap_or_else(|| "niftyhost".into());
    let err = std::process::Command::new(&engine).arg0(arg0).args(args.iter().skip(1)).exec();
    let what = if err.kind() == std::io::ErrorKind::NotFound { "is missing" } else { "cannot be run" };
    eprintln!(
        "error: the engine binary {} {what} ({err}): `niftyhost` runs evaluation, info and check itself and every \
         other command through {ENGINE}, which must lie beside it",
        engine.display()
    );
    ExitCode::from(1)
}
