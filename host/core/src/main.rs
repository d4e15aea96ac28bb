//! `niftyhost`, the front binary: it links no libtorch, so the commands that compute no
//! tensor (`evaluation`, `info`, `check`) start at once. It runs those itself and replaces
//! itself with the engine binary (`niftyhost-engine`, beside it) for everything else:
//! the other commands, help and version (the engine's help lists plugin parameters), and
//! command lines clap refuses (the engine says why, as it always did).

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};
use niftyhost_core::cli::Cli;
use niftyhost_core::front::{self, TorchFree};
use niftyhost_core::memory;

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    let parsed = Cli::command().try_get_matches_from(&args).and_then(|m| Cli::from_arg_matches(&m));
    let Ok(cli) = parsed else { return front::exec_engine(&args) };
    let Some(job) = TorchFree::of(&cli.command) else { return front::exec_engine(&args) };
    memory::keep_freed_memory();
    front::init_logging(&cli);
    match job.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(front::exit_code(&err, front::is_usage))
        }
    }
}
