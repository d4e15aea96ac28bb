//! Which launcher started this process, and where the process sits in the job: read from
//! the environment that `mpirun` (Open MPI or MPICH), `srun` (Slurm) and `torchrun` set.

use std::fmt;

/// The program that started this process as one of several.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Launcher {
    /// Started alone: a job of one process.
    Alone,
    /// Open MPI's `mpirun` / `mpiexec` (`OMPI_COMM_WORLD_*`).
    OpenMpi,
    /// An MPICH-style process manager such as Hydra (`PMI_RANK`, `PMI_SIZE`).
    Pmi,
    /// A Slurm job step started by `srun` (`SLURM_PROCID`, `SLURM_STEP_NUM_TASKS`).
    Slurm,
    /// `torchrun` or any launcher that sets `RANK`, `WORLD_SIZE`, `LOCAL_RANK`.
    Torchrun,
}

impl Launcher {
    /// Whether the processes were started by an MPI-aware launcher, so that MPI can
    /// connect them.
    pub fn speaks_mpi(self) -> bool {
        matches!(self, Launcher::OpenMpi | Launcher::Pmi | Launcher::Slurm)
    }
}

impl fmt::Display for Launcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Launcher::Alone => "a single process",
            Launcher::OpenMpi => "Open MPI's mpirun",
            Launcher::Pmi => "an MPICH-style mpiexec (PMI)",
            Launcher::Slurm => "Slurm's srun",
            Launcher::Torchrun => "torchrun-style environment (RANK, WORLD_SIZE)",
        })
    }
}

/// This process's place in the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct World {
    /// Who started it.
    pub launcher: Launcher,
    /// Its rank, `0..size`.
    pub rank: usize,
    /// Number of processes in the job.
    pub size: usize,
    /// Its rank among the processes on its own node (picks its GPUs).
    pub local_rank: usize,
    /// `MASTER_ADDR:MASTER_PORT`, where rank 0 listens for a TCP rendezvous, if set.
    pub master: Option<String>,
}

impl World {
    /// A job of one process.
    pub fn alone() -> World {
        World { launcher: Launcher::Alone, rank: 0, size: 1, local_rank: 0, master: None }
    }

    /// Whether this process writes checkpoints and logs.
    pub fn is_primary(&self) -> bool {
        self.rank == 0
    }
}

/// A launcher variable that is set but cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("environment variable {variable}={value:?}: {expected}")]
pub struct LaunchError {
    /// The variable.
    pub variable: String,
    /// Its value.
    pub value: String,
    /// What it should have been.
    pub expected: String,
}

/// Each launcher's variables for rank, size and local rank; the first launcher whose size
/// variable is set wins. Slurm's batch script sets `SLURM_PROCID` too, but only a job step
/// started by `srun` sets `SLURM_STEP_NUM_TASKS`.
const LAUNCHERS: [(Launcher, &str, &str, &str); 4] = [
    (Launcher::OpenMpi, "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK"),
    (Launcher::Pmi, "PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID"),
    (Launcher::Torchrun, "RANK", "WORLD_SIZE", "LOCAL_RANK"),
    (Launcher::Slurm, "SLURM_PROCID", "SLURM_STEP_NUM_TASKS", "SLURM_LOCALID"),
];

/// Reads the launcher's variables through `var` (the process environment in
/// [`from_env`]).
///
/// # Errors
/// A variable that is not a number, a size of 0, or a rank not below the size.
pub fn detect(var: impl Fn(&str) -> Option<String>) -> Result<World, LaunchError> {
    let number = |name: &str| -> Result<Option<usize>, LaunchError> {
        match var(name) {
            None => Ok(None),
            Some(v) => v.trim().parse::<usize>().map(Some).map_err(|_| LaunchError {
                variable: name.to_owned(),
                value: v,
                expected: "a non-negative integer".into(),
            }),
        }
    };
    for (launcher, rank_var, size_var, local_var) in LAUNCHERS {
        let Some(size) = number(size_var)? else { continue };
        if size == 0 {
            return Err(LaunchError { variable: size_var.into(), value: "0".into(), expected: "at least 1".into() });
        }
        let rank = number(rank_var)?.ok_or_else(|| LaunchError {
            variable: rank_var.into(),
            value: String::new(),
            expected: format!("set, since {size_var} is"),
        })?;
        if rank >= size {
            return Err(LaunchError {
                variable: rank_var.into(),
                value: rank.to_string(),
                expected: format!("below {size_var}={size}"),
            });
        }
        let local_rank = number(local_var)?.unwrap_or(0);
        let master = match (var("MASTER_ADDR"), number("MASTER_PORT")?) {
            (Some(addr), Some(port)) => Some(format!("{addr}:{port}")),
            _ => None,
        };
        return Ok(World { launcher, rank, size, local_rank, master });
    }
    Ok(World::alone())
}

/// [`detect`] on this process's environment.
///
/// # Errors
/// As [`detect`].
pub fn from_env() -> Result<World, LaunchError> {
    detect(|name| std::env::var(name).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn world(vars: &[(&str, &str)]) -> Result<World, LaunchError> {
        detect(|name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_owned()))
    }

    #[test]
    fn each_launcher_is_recognised_by_its_variables() {
        let w =
            world(&[("OMPI_COMM_WORLD_RANK", "1"), ("OMPI_COMM_WORLD_SIZE", "4"), ("OMPI_COMM_WORLD_LOCAL_RANK", "1")])
                .unwrap();
        assert_eq!((w.launcher, w.rank, w.size, w.local_rank), (Launcher::OpenMpi, 1, 4, 1));
        let w = world(&[("PMI_RANK", "2"), ("PMI_SIZE", "3")]).unwrap();
        assert_eq!((w.launcher, w.rank, w.size, w.local_rank), (Launcher::Pmi, 2, 3, 0));
        let w = world(&[
            ("RANK", "3"),
            ("WORLD_SIZE", "8"),
            ("LOCAL_RANK", "3"),
            ("MASTER_ADDR", "node01"),
            ("MASTER_PORT", "29500"),
        ])
        .unwrap();
        assert_eq!((w.launcher, w.rank, w.size, w.local_rank), (Launcher::Torchrun, 3, 8, 3));
        assert_eq!(w.master.as_deref(), Some("node01:29500"));
        let w = world(&[("SLURM_PROCID", "5"), ("SLURM_STEP_NUM_TASKS", "6"), ("SLURM_LOCALID", "1")]).unwrap();
        assert_eq!((w.launcher, w.rank, w.size, w.local_rank), (Launcher::Slurm, 5, 6, 1));
        assert!(Launcher::Slurm.speaks_mpi() && !Launcher::Torchrun.speaks_mpi());
    }

    #[test]
    fn a_slurm_batch_script_or_no_launcher_is_a_job_of_one() {
        assert_eq!(world(&[]).unwrap(), World::alone());
        // sbatch sets SLURM_PROCID and SLURM_NTASKS in the batch script itself.
        assert_eq!(world(&[("SLURM_PROCID", "0"), ("SLURM_NTASKS", "4")]).unwrap(), World::alone());
    }

    #[test]
    fn mpirun_under_slurm_is_read_as_mpirun() {
        let w = world(&[
            ("OMPI_COMM_WORLD_RANK", "0"),
            ("OMPI_COMM_WORLD_SIZE", "2"),
            ("SLURM_PROCID", "0"),
            ("SLURM_STEP_NUM_TASKS", "1"),
        ])
        .unwrap();
        assert_eq!((w.launcher, w.size), (Launcher::OpenMpi, 2));
    }

    #[test]
    fn bad_values_name_the_variable() {
        let e = world(&[("RANK", "4"), ("WORLD_SIZE", "4")]).unwrap_err();
        assert_eq!(e.variable, "RANK");
        assert!(e.to_string().contains("below WORLD_SIZE=4"), "{e}");
        let e = world(&[("RANK", "x"), ("WORLD_SIZE", "2")]).unwrap_err();
        assert!(e.to_string().contains("RANK=\"x\"") && e.to_string().contains("integer"), "{e}");
        assert_eq!(world(&[("WORLD_SIZE", "0"), ("RANK", "0")]).unwrap_err().variable, "WORLD_SIZE");
        assert_eq!(world(&[("WORLD_SIZE", "2")]).unwrap_err().variable, "RANK");
        let e = world(&[("RANK", "0"), ("WORLD_SIZE", "2"), ("MASTER_ADDR", "h"), ("MASTER_PORT", "p")]).unwrap_err();
        assert_eq!(e.variable, "MASTER_PORT");
    }
}
