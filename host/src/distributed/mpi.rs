//! The MPI backend: collectives on CPU tensors through the `mpi` crate, started as
//! non-blocking operations and polled against the deadline.

use std::os::raw::c_int;
use std::time::{Duration, Instant};

use mpi::environment::Universe;
use mpi::ffi;
use mpi::traits::Communicator as _;
use tch::{Device, Kind, Tensor};

use super::{check_buffer, CommError, Communicator, World};

/// An operation in flight: its request, the tensor it works on and, for an all-reduce,
/// the buffer receiving the sum (copied into the tensor when it completes).
struct InFlight {
    request: ffi::MPI_Request,
    tensor: Tensor,
    received: Option<Tensor>,
}

/// This process's connection to the other processes of an MPI job.
pub struct Mpi {
    // Finalises MPI when dropped.
    _universe: Universe,
    world: World,
    timeout: Duration,
    in_flight: Vec<InFlight>,
}

fn backend_error(message: String) -> CommError {
    CommError::Backend { backend: "mpi", message }
}

fn datatype(kind: Kind) -> ffi::MPI_Datatype {
    // SAFETY: reading constants that MPI defines at start-up.
    unsafe {
        match kind {
            Kind::Double => ffi::RSMPI_DOUBLE,
            _ => ffi::RSMPI_FLOAT,
        }
    }
}

fn count(numel: usize) -> Result<c_int, CommError> {
    c_int::try_from(numel)
        .map_err(|_| backend_error(format!("a buffer of {numel} elements is too large for one MPI call")))
}

fn check(code: c_int, what: &str) -> Result<(), CommError> {
    if code == ffi::MPI_SUCCESS as c_int {
        Ok(())
    } else {
        Err(backend_error(format!("{what} failed with MPI error code {code}")))
    }
}

/// Ends the process with a clear error if a blocking call that has no deadline of its own
/// has not returned in time.
struct Watchdog {
    disarm: std::sync::mpsc::Sender<()>,
}

impl Watchdog {
    fn arm(timeout: Duration, rank: usize, op: &'static str) -> Watchdog {
        let (disarm, disarmed) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = disarmed.recv_timeout(timeout) {
                let error = CommError::Timeout { rank, op: op.to_owned(), seconds: timeout.as_secs_f64() };
                tracing::error!("{error}");
                eprintln!("error: {error}");
                std::process::exit(1);
            }
        });
        Watchdog { disarm }
    }

    fn disarm(self) {
        let _ = self.disarm.send(());
    }
}

impl Mpi {
    /// Initialises MPI and checks that it sees the job the launcher described.
    ///
    /// # Errors
    /// MPI already initialised in this process, or a rank or size that differs from the
    /// launcher's variables (an `mpirun` of another MPI library than the one niftyhost
    /// was built with).
    pub fn connect(launched: World, timeout: Duration) -> Result<Mpi, CommError> {
        // MPI_Init waits for every rank and has no deadline of its own.
        let watchdog = Watchdog::arm(timeout, launched.rank, "MPI_Init (joining the other ranks)");
        let initialised = mpi::initialize_with_threading(mpi::Threading::Serialized);
        watchdog.disarm();
        let (universe, _) =
            initialised.ok_or_else(|| backend_error("MPI was already initialised in this process".into()))?;
        let comm = universe.world();
        let (rank, size) = (comm.rank() as usize, comm.size() as usize);
        if launched.size > 1 && (rank, size) != (launched.rank, launched.size) {
            return Err(backend_error(format!(
                "MPI sees rank {rank} of {size}, but {} set rank {} of {}: was niftyhost started by the \
                 mpirun of the MPI library it was built with ({})?",
                launched.launcher,
                launched.rank,
                launched.size,
                mpi::environment::library_version().unwrap_or_default().lines().next().unwrap_or("")
            )));
        }
        let world = World { rank, size, ..launched };
        tracing::info!(rank, size, "MPI connected");
        Ok(Mpi { _universe: universe, world, timeout, in_flight: Vec::new() })
    }

    fn op_names(&self) -> String {
        let all_reduces = self.in_flight.iter().filter(|f| f.received.is_some()).count();
        let broadcasts = self.in_flight.len() - all_reduces;
        match (all_reduces, broadcasts) {
            (a, 0) => format!("all-reduce of {a} buffer(s)"),
            (0, b) => format!("broadcast of {b} buffer(s)"),
            (a, b) => format!("all-reduce of {a} and broadcast of {b} buffer(s)"),
        }
    }
}

impl Communicator for Mpi {
    fn backend(&self) -> &'static str {
        "mpi"
    }

    fn world(&self) -> &World {
        &self.world
    }

    fn device(&self) -> Device {
        Device::Cpu
    }

    fn start_all_reduce(&mut self, tensor: &Tensor) -> Result<(), CommError> {
        let n = count(check_buffer("mpi", tensor, Device::Cpu)?)?;
        let received = tensor.empty_like();
        // SAFETY: reading a constant MPI defines at start-up.
        let mut request = unsafe { ffi::RSMPI_REQUEST_NULL };
        // SAFETY: both buffers hold `n` contiguous elements of the datatype and are kept
        // alive in `in_flight` until the request completes in `finish`.
        let code = unsafe {
            ffi::MPI_Iallreduce(
                tensor.data_ptr(),
                received.data_ptr(),
                n,
                datatype(tensor.kind()),
                ffi::RSMPI_SUM,
                ffi::RSMPI_COMM_WORLD,
                &mut request,
            )
        };
        check(code, "MPI_Iallreduce")?;
        self.in_flight.push(InFlight { request, tensor: tensor.shallow_clone(), received: Some(received) });
        Ok(())
    }

    fn start_broadcast(&mut self, tensor: &Tensor, root: usize) -> Result<(), CommError> {
        let n = count(check_buffer("mpi", tensor, Device::Cpu)?)?;
        // SAFETY: reading a constant MPI defines at start-up.
        let mut request = unsafe { ffi::RSMPI_REQUEST_NULL };
        // SAFETY: as in `start_all_reduce`.
        let code = unsafe {
            ffi::MPI_Ibcast(
                tensor.data_ptr(),
                n,
                datatype(tensor.kind()),
                root as c_int,
                ffi::RSMPI_COMM_WORLD,
                &mut request,
            )
        };
        check(code, "MPI_Ibcast")?;
        self.in_flight.push(InFlight { request, tensor: tensor.shallow_clone(), received: None });
        Ok(())
    }

    fn finish(&mut self) -> Result<(), CommError> {
        if self.in_flight.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let mut requests: Vec<ffi::MPI_Request> = self.in_flight.iter().map(|f| f.request).collect();
        loop {
            let mut done: c_int = 0;
            // SAFETY: `requests` are the live requests of `in_flight`; MPI sets completed
            // ones to MPI_REQUEST_NULL.
            let code = unsafe {
                ffi::MPI_Testall(requests.len() as c_int, requests.as_mut_ptr(), &mut done, ffi::RSMPI_STATUSES_IGNORE)
            };
            check(code, "MPI_Testall")?;
            if done != 0 {
                break;
            }
            let waited = started.elapsed();
            if waited > self.timeout {
                let error = CommError::Timeout {
                    rank: self.world.rank,
                    op: self.op_names(),
                    seconds: self.timeout.as_secs_f64(),
                };
                // The buffers stay owned by MPI: never freed, since the job is ending.
                for f in self.in_flight.drain(..) {
                    std::mem::forget(f);
                }
                return Err(error);
            }
            // Spin briefly (sums on shared memory finish within microseconds), then sleep
            // so a waiting rank leaves the cores to the busy ones.
            if waited < Duration::from_millis(2) {
                std::thread::yield_now();
            } else {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        for f in self.in_flight.drain(..) {
            if let Some(received) = f.received {
                let mut tensor = f.tensor;
                tensor.copy_(&received);
            }
        }
        Ok(())
    }

    fn abort(&mut self, code: i32) {
        if self.world.size > 1 {
            // SAFETY: MPI_Abort ends every process of the job and does not return.
            unsafe {
                ffi::MPI_Abort(ffi::RSMPI_COMM_WORLD, code);
            }
        }
    }
}
