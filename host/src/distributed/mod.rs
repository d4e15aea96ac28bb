//! Past one process: the communicator the trainer averages gradients through, and the
//! launchers that start several processes (`mpirun`, `srun`, `torchrun`).
//!
//! Gradients are reduced in two stages. Within a process, the replicas of its devices are
//! summed into the primary replica by the replica threads ([`crate::engine`]). Across
//! processes, the primary's gradients are summed by a [`Communicator`], in buckets
//! ([`buckets`]). Three backends implement it:
//!
//! - [`InProcess`]: a job of one process, whose replicas are all in this process;
//! - `Mpi` (cargo feature `mpi`): MPI through the `mpi` crate, on CPU tensors, over any
//!   transport the MPI library has (shared memory, TCP, InfiniBand);
//! - [`nccl::Nccl`]: NCCL on GPU tensors, `libnccl` loaded at run time.
//!
//! Every collective has a deadline (`system.comm_timeout_s`): a peer that died or hangs
//! ends the run with an error naming the operation, instead of a hang.

pub mod buckets;
#[cfg(feature = "mpi")]
pub mod mpi;
pub mod nccl;
pub mod overlap;
pub mod rendezvous;

use std::time::Duration;

use tch::{Device, Kind, Tensor};

pub use launch::{LaunchError, Launcher, World};
pub use niftyhost_core::launch;

use crate::config::{Distributed, Settings};

/// A collective that failed.
#[derive(Debug, thiserror::Error)]
pub enum CommError {
    /// A collective that did not complete before the deadline.
    #[error(
        "rank {rank}: {op} did not complete within {seconds} s (system.comm_timeout_s): \
         a peer process is dead or hung"
    )]
    Timeout {
        /// This process's rank.
        rank: usize,
        /// The collective, e.g. "all-reduce of 3 gradient buckets".
        op: String,
        /// The deadline.
        seconds: f64,
    },
    /// The launcher's environment cannot be used.
    #[error(transparent)]
    Launch(#[from] LaunchError),
    /// A backend that cannot be used or failed.
    #[error("{backend} backend: {message}")]
    Backend {
        /// "mpi", "nccl" or "in-process".
        backend: &'static str,
        /// What went wrong.
        message: String,
    },
}

/// Sums and broadcasts among the processes of a job.
///
/// Operations are started and then finished together, so that several buckets are in
/// flight at once: `start_*` enqueues (the tensor must stay untouched until `finish`),
/// `finish` waits for every started operation, up to the deadline. Tensors must be
/// contiguous, `Float` or `Double`, and on [`Communicator::device`].
pub trait Communicator {
    /// The backend's name, for logs.
    fn backend(&self) -> &'static str;

    /// This process's place in the job.
    fn world(&self) -> &World;

    /// Where the tensors of collectives must live.
    fn device(&self) -> Device;

    /// Starts summing `tensor` over every process, in place.
    ///
    /// # Errors
    /// A tensor of the wrong device, kind or layout, or a backend failure.
    fn start_all_reduce(&mut self, tensor: &Tensor) -> Result<(), CommError>;

    /// Starts copying `root`'s `tensor` into every other process's `tensor`.
    ///
    /// # Errors
    /// As [`Communicator::start_all_reduce`].
    fn start_broadcast(&mut self, tensor: &Tensor, root: usize) -> Result<(), CommError>;

    /// Waits for every started operation.
    ///
    /// # Errors
    /// [`CommError::Timeout`] past the deadline, or a backend failure.
    fn finish(&mut self) -> Result<(), CommError>;

    /// Ends every process of the job at once, after an error on this one, so that the
    /// others do not wait for the deadline. A job of one process just returns.
    fn abort(&mut self, code: i32);

    /// Whether every collective is the identity (the in-process backend), so callers can
    /// skip preparing buffers. A real backend with one process still runs its
    /// collectives, so that path is exercised on one GPU too.
    fn is_identity(&self) -> bool {
        false
    }

    /// Sums `tensor` over every process, in place.
    ///
    /// # Errors
    /// As [`Communicator::finish`].
    fn all_reduce(&mut self, tensor: &Tensor) -> Result<(), CommError> {
        self.start_all_reduce(tensor)?;
        self.finish()
    }

    /// Waits until every process has reached this point.
    ///
    /// # Errors
    /// As [`Communicator::finish`].
    fn barrier(&mut self) -> Result<(), CommError> {
        self.all_reduce(&Tensor::zeros([1], (Kind::Float, self.device())))
    }

    /// The mean of `value` over every process.
    ///
    /// # Errors
    /// As [`Communicator::finish`].
    fn mean(&mut self, value: f64) -> Result<f64, CommError> {
        if self.is_identity() {
            return Ok(value);
        }
        let t = Tensor::from_slice(&[value]).to_device(self.device());
        self.all_reduce(&t)?;
        Ok(t.double_value(&[0]) / self.world().size as f64)
    }
}

/// The communicator of a job of one process: every operation is the identity.
pub struct InProcess {
    world: World,
}

impl InProcess {
    /// The communicator of a process alone in its job.
    pub fn new() -> InProcess {
        InProcess { world: World::alone() }
    }
}

impl Default for InProcess {
    fn default() -> Self {
        InProcess::new()
    }
}

impl Communicator for InProcess {
    fn backend(&self) -> &'static str {
        "in-process"
    }
    fn world(&self) -> &World {
        &self.world
    }
    fn device(&self) -> Device {
        Device::Cpu
    }
    fn start_all_reduce(&mut self, _: &Tensor) -> Result<(), CommError> {
        Ok(())
    }
    fn start_broadcast(&mut self, _: &Tensor, _: usize) -> Result<(), CommError> {
        Ok(())
    }
    fn finish(&mut self) -> Result<(), CommError> {
        Ok(())
    }
    fn abort(&mut self, _: i32) {}
    fn is_identity(&self) -> bool {
        true
    }
}

/// The backend `system.distributed` names for this launch: `auto` picks in-process for a
/// job of one process, NCCL when the replicas are GPUs, and MPI otherwise.
pub fn choose_backend(configured: Distributed, world: &World, devices: &[Device]) -> &'static str {
    match configured {
        Distributed::InProcess | Distributed::Mpi | Distributed::Nccl => configured.name(),
        Distributed::Auto if world.size == 1 => "in-process",
        Distributed::Auto if !devices.is_empty() && devices.iter().all(|d| matches!(d, Device::Cuda(_))) => "nccl",
        Distributed::Auto => "mpi",
    }
}

/// Connects this process to the others of its job ([`launch::from_env`]), as
/// `system.distributed` says. `devices` are this process's replicas.
///
/// # Errors
/// A launcher variable that cannot be used, a backend this build lacks or that cannot
/// start, or `in-process` under a launcher that started several processes.
pub fn connect(settings: &Settings, world: World, devices: &[Device]) -> Result<Box<dyn Communicator>, CommError> {
    let timeout = Duration::from_secs_f64(settings.system.comm_timeout_s.max(0.001));
    let backend = choose_backend(settings.system.distributed, &world, devices);
    tracing::debug!(backend, rank = world.rank, size = world.size, launcher = %world.launcher, "connecting");
    match backend {
        "in-process" if world.size > 1 => Err(CommError::Backend {
            backend: "in-process",
            message: format!(
                "system.distributed = \"in-process\", but {} started {} processes: use \"auto\", \"mpi\" or \"nccl\"",
                world.launcher, world.size
            ),
        }),
        "in-process" => Ok(Box::new(InProcess::new())),
        "nccl" => {
            let device = match devices.first() {
                Some(&Device::Cuda(i)) => i,
                _ => {
                    return Err(CommError::Backend {
                        backend: "nccl",
                        message: format!("NCCL reduces GPU tensors, but this process's devices are {devices:?}"),
                    })
                }
            };
            Ok(Box::new(nccl::Nccl::connect(world, device, timeout)?))
        }
        _ => connect_mpi(world, timeout),
    }
}

#[cfg(feature = "mpi")]
fn connect_mpi(world: World, timeout: Duration) -> Result<Box<dyn Communicator>, CommError> {
    Ok(Box::new(mpi::Mpi::connect(world, timeout)?))
}

#[cfg(not(feature = "mpi"))]
fn connect_mpi(world: World, _: Duration) -> Result<Box<dyn Communicator>, CommError> {
    Err(CommError::Backend {
        backend: "mpi",
        message: format!(
            "{} started {} processes, but this niftyhost was built without MPI: rebuild it with \
             `cargo build --release --features niftyhost/mpi` (needs Debian's libopenmpi-dev and libclang-dev)",
            world.launcher, world.size
        ),
    })
}

/// The devices of this process: with `system.num_gpus` = g in a job of several
/// processes, the process of local rank l drives `cuda:l·g … cuda:l·g+g-1`, so the
/// processes of a node share its GPUs out; otherwise the configured devices.
pub fn local_device_names(settings: &Settings, world: &World) -> Vec<String> {
    let g = settings.system.num_gpus;
    if g == 0 || world.size == 1 {
        return settings.device_names();
    }
    (world.local_rank * g..(world.local_rank + 1) * g).map(|i| format!("cuda:{i}")).collect()
}

/// Checks that `tensor` can take part in a collective on `device`; returns its element
/// count.
///
/// # Errors
/// Another device, a kind other than `Float` or `Double`, or a non-contiguous layout.
pub fn check_buffer(backend: &'static str, tensor: &Tensor, device: Device) -> Result<usize, CommError> {
    let problem = if tensor.device() != device {
        Some(format!("a tensor on {:?}, expected {device:?}", tensor.device()))
    } else if !matches!(tensor.kind(), Kind::Float | Kind::Double) {
        Some(format!("a {:?} tensor, expected Float or Double", tensor.kind()))
    } else if !tensor.is_contiguous() {
        Some("a non-contiguous tensor".to_owned())
    } else {
        None
    };
    match problem {
        Some(message) => Err(CommError::Backend { backend, message }),
        None => Ok(tensor.numel()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_picks_the_backend_from_the_launch_and_the_devices() {
        let two = World { launcher: Launcher::OpenMpi, rank: 0, size: 2, local_rank: 0, master: None };
        assert_eq!(choose_backend(Distributed::Auto, &World::alone(), &[Device::Cuda(0)]), "in-process");
        assert_eq!(choose_backend(Distributed::Auto, &two, &[Device::Cpu]), "mpi");
        assert_eq!(choose_backend(Distributed::Auto, &two, &[Device::Cuda(0), Device::Cuda(1)]), "nccl");
        assert_eq!(choose_backend(Distributed::Auto, &two, &[Device::Cuda(0), Device::Cpu]), "mpi");
        assert_eq!(choose_backend(Distributed::Nccl, &World::alone(), &[Device::Cpu]), "nccl");
    }

    #[test]
    fn the_in_process_communicator_leaves_values_alone() {
        let mut c = InProcess::new();
        let t = Tensor::from_slice(&[1.5f32, -2.0]);
        c.all_reduce(&t).unwrap();
        c.barrier().unwrap();
        assert_eq!(Vec::<f32>::try_from(&t).unwrap(), vec![1.5, -2.0]);
        assert_eq!(c.mean(3.25).unwrap(), 3.25);
    }

    #[test]
    fn buffers_of_the_wrong_kind_or_layout_are_refused() {
        let ok = Tensor::zeros([4], (Kind::Float, Device::Cpu));
        assert_eq!(check_buffer("mpi", &ok, Device::Cpu).unwrap(), 4);
        let ints = Tensor::zeros([4], (Kind::Int64, Device::Cpu));
        assert!(check_buffer("mpi", &ints, Device::Cpu).unwrap_err().to_string().contains("Int64"));
        let strided = Tensor::zeros([4, 4], (Kind::Float, Device::Cpu)).tr();
        assert!(check_buffer("mpi", &strided, Device::Cpu).unwrap_err().to_string().contains("non-contiguous"));
        let e = check_buffer("nccl", &ok, Device::Cuda(0)).unwrap_err().to_string();
        assert!(e.starts_with("nccl backend") && e.contains("Cuda(0)"), "{e}");
    }
}
