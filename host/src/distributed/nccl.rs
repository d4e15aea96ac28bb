//! The NCCL backend: GPU all-reduce and broadcast through `libnccl`, opened at run time
//! from the libtorch installation's NVIDIA libraries (nothing links against it, so a CPU
//! build runs without it). The ranks agree on NCCL's unique id through MPI when MPI
//! started them and the build has it, else through the TCP rendezvous on
//! `MASTER_ADDR:MASTER_PORT` ([`super::rendezvous`]).
//!
//! Operations go on the CUDA default stream, the one libtorch computes on, so they are
//! ordered after the backward pass that produced the gradients; `finish` polls the stream
//! against the deadline.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use libloading::Library;
use tch::{Device, Kind, Tensor};

use super::{check_buffer, CommError, Communicator, World};

/// NCCL's `ncclUniqueId`: 128 opaque bytes.
#[repr(C)]
#[derive(Clone, Copy)]
struct UniqueId {
    internal: [c_char; 128],
}

type Comm = *mut c_void;
type Stream = *mut c_void;
const NCCL_FLOAT32: c_int = 7;
const NCCL_FLOAT64: c_int = 8;
const NCCL_SUM: c_int = 0;
const CUDA_SUCCESS: c_int = 0;
const CUDA_NOT_READY: c_int = 600;

/// The NCCL and CUDA runtime entry points used.
struct Api {
    get_unique_id: unsafe extern "C" fn(*mut UniqueId) -> c_int,
    comm_init_rank: unsafe extern "C" fn(*mut Comm, c_int, UniqueId, c_int) -> c_int,
    all_reduce: unsafe extern "C" fn(*const c_void, *mut c_void, usize, c_int, c_int, Comm, Stream) -> c_int,
    broadcast: unsafe extern "C" fn(*const c_void, *mut c_void, usize, c_int, c_int, Comm, Stream) -> c_int,
    comm_abort: unsafe extern "C" fn(Comm) -> c_int,
    comm_destroy: unsafe extern "C" fn(Comm) -> c_int,
    async_error: unsafe extern "C" fn(Comm, *mut c_int) -> c_int,
    error_string: unsafe extern "C" fn(c_int) -> *const c_char,
    set_device: unsafe extern "C" fn(c_int) -> c_int,
    stream_query: unsafe extern "C" fn(Stream) -> c_int,
    // Keep the libraries open while the function pointers live.
    _libraries: [Library; 2],
}

fn failure(message: String) -> CommError {
    CommError::Backend { backend: "nccl", message }
}

/// Where a library may be: an explicit file (environment variable), its soname (found if
/// libtorch's CUDA libraries already loaded it, or on the loader's path), then beside
/// libtorch and in the pip layout's `nvidia/*/lib` folders.
pub fn candidates(variable: &str, sonames: &[&str], libtorch: Option<&Path>) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::env::var_os(variable).map(PathBuf::from).into_iter().collect();
    out.extend(sonames.iter().map(PathBuf::from));
    if let Some(dir) = libtorch {
        for soname in sonames {
            out.push(dir.join(soname));
            if let Some(site) = dir.parent().and_then(Path::parent) {
                for sub in ["nccl", "cu13", "cu12", "cuda_runtime"] {
                    out.push(site.join("nvidia").join(sub).join("lib").join(soname));
                }
            }
        }
    }
    out
}

/// Opens the first candidate that loads.
///
/// # Errors
/// None loads: every place tried, with its reason.
fn open_first(what: &str, variable: &str, tried: &[PathBuf]) -> Result<Library, CommError> {
    let mut reasons = Vec::new();
    for path in tried {
        // SAFETY: NCCL's and the CUDA runtime's initialisers have no preconditions.
        match unsafe { Library::new(path) } {
            Ok(lib) => {
                tracing::debug!(library = %path.display(), "opened {what}");
                return Ok(lib);
            }
            Err(e) => reasons.push(format!("  {}: {e}", path.display())),
        }
    }
    Err(failure(format!(
        "cannot open {what} (install a CUDA build of libtorch, or point {variable} at the library); tried:\n{}",
        reasons.join("\n")
    )))
}

macro_rules! symbol {
    ($lib:expr, $name:literal) => {
        // SAFETY: the type is the symbol's C signature in nccl.h / cuda_runtime_api.h.
        *unsafe { $lib.get($name.as_bytes()) }
            .map_err(|e| failure(format!("{} lacks {}: {e}", stringify!($lib), $name)))?
    };
}

impl Api {
    fn open() -> Result<Api, CommError> {
        let libtorch = crate::torch::libtorch_dir();
        let nccl = open_first(
            "libnccl",
            "NIFTYHOST_NCCL",
            &candidates("NIFTYHOST_NCCL", &["libnccl.so.2", "libnccl.so"], libtorch.as_deref()),
        )?;
        let cudart = open_first(
            "the CUDA runtime",
            "NIFTYHOST_CUDART",
            &candidates(
                "NIFTYHOST_CUDART",
                &["libcudart.so.13", "libcudart.so.12", "libcudart.so"],
                libtorch.as_deref(),
            ),
        )?;
        Ok(Api {
            get_unique_id: symbol!(nccl, "ncclGetUniqueId"),
            comm_init_rank: symbol!(nccl, "ncclCommInitRank"),
            all_reduce: symbol!(nccl, "ncclAllReduce"),
            broadcast: symbol!(nccl, "ncclBroadcast"),
            comm_abort: symbol!(nccl, "ncclCommAbort"),
            comm_destroy: symbol!(nccl, "ncclCommDestroy"),
            async_error: symbol!(nccl, "ncclCommGetAsyncError"),
            error_string: symbol!(nccl, "ncclGetErrorString"),
            set_device: symbol!(cudart, "cudaSetDevice"),
            stream_query: symbol!(cudart, "cudaStreamQuery"),
            _libraries: [nccl, cudart],
        })
    }

    fn check(&self, code: c_int, what: &str) -> Result<(), CommError> {
        if code == 0 {
            return Ok(());
        }
        // SAFETY: ncclGetErrorString returns a static C string for any code.
        let text = unsafe { CStr::from_ptr((self.error_string)(code)) }.to_string_lossy();
        Err(failure(format!("{what} failed: {text} (NCCL code {code})")))
    }

    fn check_cuda(&self, code: c_int, what: &str) -> Result<(), CommError> {
        if code == CUDA_SUCCESS {
            Ok(())
        } else {
            Err(failure(format!("{what} failed with CUDA error {code}")))
        }
    }
}

/// This process's NCCL communicator, on one GPU.
pub struct Nccl {
    api: Api,
    comm: Comm,
    world: World,
    device: usize,
    timeout: Duration,
    /// Tensors of operations in flight, kept alive until `finish`.
    in_flight: Vec<Tensor>,
}

fn nccl_kind(kind: Kind) -> c_int {
    if kind == Kind::Double {
        NCCL_FLOAT64
    } else {
        NCCL_FLOAT32
    }
}

impl Nccl {
    /// Opens NCCL and joins the job's communicator on `cuda:device`.
    ///
    /// # Errors
    /// libnccl or the CUDA runtime missing (every place tried is named), a failed
    /// rendezvous, or NCCL refusing to start.
    pub fn connect(world: World, device: usize, timeout: Duration) -> Result<Nccl, CommError> {
        let api = Api::open()?;
        let mut id = UniqueId { internal: [0; 128] };
        if world.rank == 0 {
            // SAFETY: `id` is a valid ncclUniqueId to fill.
            api.check(unsafe { (api.get_unique_id)(&mut id) }, "ncclGetUniqueId")?;
        }
        let bytes: Vec<u8> = id.internal.iter().map(|&c| c as u8).collect();
        let shared = super::rendezvous::exchange(&world, world.master.as_deref(), &bytes, timeout)?;
        if shared.len() != 128 {
            return Err(failure(format!("the rendezvous sent {} bytes, expected a 128-byte NCCL id", shared.len())));
        }
        for (c, b) in id.internal.iter_mut().zip(&shared) {
            *c = *b as c_char;
        }
        // SAFETY: a valid device index; NCCL binds the communicator to the current device.
        api.check_cuda(unsafe { (api.set_device)(device as c_int) }, "cudaSetDevice")?;
        let mut comm: Comm = std::ptr::null_mut();
        // SAFETY: `comm` receives the new communicator; every rank passes the same id.
        api.check(
            unsafe { (api.comm_init_rank)(&mut comm, world.size as c_int, id, world.rank as c_int) },
            "ncclCommInitRank",
        )?;
        tracing::info!(rank = world.rank, size = world.size, device, "NCCL connected");
        Ok(Nccl { api, comm, world, device, timeout, in_flight: Vec::new() })
    }
}

impl Communicator for Nccl {
    fn backend(&self) -> &'static str {
        "nccl"
    }

    fn world(&self) -> &World {
        &self.world
    }

    fn device(&self) -> Device {
        Device::Cuda(self.device)
    }

    fn start_all_reduce(&mut self, tensor: &Tensor) -> Result<(), CommError> {
        let n = check_buffer("nccl", tensor, self.device())?;
        let ptr = tensor.data_ptr();
        // SAFETY: in place on `n` contiguous device elements, kept alive until `finish`;
        // the null stream is the CUDA default stream libtorch computes on.
        let code = unsafe {
            (self.api.all_reduce)(ptr, ptr, n, nccl_kind(tensor.kind()), NCCL_SUM, self.comm, std::ptr::null_mut())
        };
        self.api.check(code, "ncclAllReduce")?;
        self.in_flight.push(tensor.shallow_clone());
        Ok(())
    }

    fn start_broadcast(&mut self, tensor: &Tensor, root: usize) -> Result<(), CommError> {
        let n = check_buffer("nccl", tensor, self.device())?;
        let ptr = tensor.data_ptr();
        // SAFETY: as in `start_all_reduce`.
        let code = unsafe {
            (self.api.broadcast)(ptr, ptr, n, nccl_kind(tensor.kind()), root as c_int, self.comm, std::ptr::null_mut())
        };
        self.api.check(code, "ncclBroadcast")?;
        self.in_flight.push(tensor.shallow_clone());
        Ok(())
    }

    fn finish(&mut self) -> Result<(), CommError> {
        let started = Instant::now();
        loop {
            // SAFETY: querying the default stream.
            let code = unsafe { (self.api.stream_query)(std::ptr::null_mut()) };
            match code {
                CUDA_SUCCESS => break,
                CUDA_NOT_READY => {}
                other => return Err(failure(format!("the CUDA stream failed with error {other}"))),
            }
            let mut pending: c_int = 0;
            // SAFETY: `comm` is live.
            self.api.check(unsafe { (self.api.async_error)(self.comm, &mut pending) }, "ncclCommGetAsyncError")?;
            self.api.check(pending, "an NCCL collective")?;
            if started.elapsed() > self.timeout {
                let op = format!("NCCL collective ({} buffer(s))", self.in_flight.len());
                // SAFETY: aborting frees the communicator's resources; it is not used again.
                unsafe { (self.api.comm_abort)(self.comm) };
                self.comm = std::ptr::null_mut();
                std::mem::forget(std::mem::take(&mut self.in_flight));
                return Err(CommError::Timeout { rank: self.world.rank, op, seconds: self.timeout.as_secs_f64() });
            }
            std::thread::sleep(Duration::from_micros(50));
        }
        self.in_flight.clear();
        Ok(())
    }

    fn abort(&mut self, code: i32) {
        if !self.comm.is_null() {
            // SAFETY: `comm` is live and not used again.
            unsafe { (self.api.comm_abort)(self.comm) };
            self.comm = std::ptr::null_mut();
        }
        if self.world.size > 1 {
            // Peers see their collectives fail or time out; leaving now frees the GPU.
            std::process::exit(code);
        }
    }
}

impl Drop for Nccl {
    fn drop(&mut self) {
        if !self.comm.is_null() {
            // SAFETY: `comm` is live and not used again.
            unsafe { (self.api.comm_destroy)(self.comm) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libraries_are_sought_by_variable_soname_and_beside_libtorch() {
        let dir = Path::new("/venv/lib/python3.12/site-packages/torch/lib");
        let c = candidates("NIFTYHOST_TEST_UNSET_VARIABLE", &["libnccl.so.2"], Some(dir));
        assert_eq!(c[0], PathBuf::from("libnccl.so.2"));
        assert!(c.contains(&dir.join("libnccl.so.2")));
        assert!(c.contains(&PathBuf::from("/venv/lib/python3.12/site-packages/nvidia/nccl/lib/libnccl.so.2")));
    }

    #[test]
    fn a_missing_library_names_every_place_tried() {
        let tried = [PathBuf::from("/nonexistent/libnccl.so.2"), PathBuf::from("libnccl-nonexistent.so")];
        let e = open_first("libnccl", "NIFTYHOST_NCCL", &tried).map(drop).expect_err("no such library").to_string();
        assert!(e.contains("/nonexistent/libnccl.so.2") && e.contains("libnccl-nonexistent.so"), "{e}");
        assert!(e.contains("NIFTYHOST_NCCL"), "{e}");
    }
}
