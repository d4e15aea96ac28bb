//! The process's memory: how glibc's malloc keeps and shares freed memory, set for the
//! whole process (the settings the `niftyhost` binary runs with, here so that tests and
//! library users can run with the same memory behaviour; no-ops outside Linux with
//! glibc), and what a piece of work used at its peak and what is still available
//! ([`PeakProbe`], [`available`], [`cuda_memory`]).

/// Keeps freed memory in the process for reuse. glibc's malloc serves blocks above its
/// mmap threshold (at most 32 MB) with fresh pages and unmaps them on free, and returns
/// the top of the heap to the system past its trim threshold; libtorch allocates and
/// frees every activation of every forward pass, so the kernel zeroed pages all the time
/// (1.4 to 7 s of system time in a whole-volume inference). Without mmap'd blocks and
/// with a high trim threshold, the heap keeps those pages; the peak RSS barely changes.
///
/// Call it first thing in `main`, before any thread starts.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes malloc's parameters; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 512 << 20);
    }
}

/// Undoes [`keep_freed_memory`] for large blocks: blocks of 32 MB and more (glibc's
/// largest mmap threshold) get pages of their own again, given back when freed, and the
/// heap's free pages go back to the system now. For work whose blocks are gigabytes
/// (inference windows of hundreds of voxels a side with many classes), the heap that keeps
/// freed memory fragments: blocks of other sizes do not fit the holes, and the resident
/// set grew to twice a pass's peak within a few windows. There, fresh pages cost little
/// beside the pass.
///
/// Callable at any time (malloc's parameters are set under its lock).
pub fn map_large_blocks() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes malloc's parameters; malloc_trim only releases free
    // memory malloc holds.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_MMAP_MAX, 65_536);
        libc::malloc_trim(0);
    }
}

/// One malloc arena for all threads of an inference: each worker thread's own arena
/// would keep its freed memory apart (300 to 400 MB more at the peak on a 512×512×400
/// volume with 10 classes); the workers allocate a few large blocks per batch, so they
/// hardly contend for it.
///
/// Call it before the inference workers start.
pub fn one_malloc_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes malloc's parameters.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// Free and total memory of the current CUDA device, bytes, from the CUDA runtime that
/// libtorch loaded (`None` without one).
pub fn cuda_memory() -> Option<(u64, u64)> {
    type MemGetInfo = unsafe extern "C" fn(*mut usize, *mut usize) -> libc::c_int;
    // SAFETY: dlsym with RTLD_DEFAULT only looks the name up; a C string.
    let f = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"cudaMemGetInfo".as_ptr()) };
    if f.is_null() {
        return None;
    }
    // SAFETY: cudaMemGetInfo has this C signature and writes two size_t.
    let f: MemGetInfo = unsafe { std::mem::transmute::<*mut libc::c_void, MemGetInfo>(f) };
    let (mut free, mut total) = (0usize, 0usize);
    // SAFETY: both pointers are valid for writes.
    let rc = unsafe { f(&mut free, &mut total) };
    (rc == 0).then_some((free as u64, total as u64))
}

/// The field `name` (with its colon: `MemTotal:`) of a `/proc` file's `text`
/// (`/proc/meminfo`, `/proc/self/status`), given in kB, as bytes.
pub(crate) fn proc_kb_field(text: &str, name: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(name))?;
    line[name.len()..].split_whitespace().next()?.parse::<u64>().ok().map(|kb| kb * 1024)
}

/// The memory the system can give now without swapping (`MemAvailable` of
/// `/proc/meminfo`), bytes; `None` where it is not known.
pub fn available() -> Option<u64> {
    proc_kb_field(&std::fs::read_to_string("/proc/meminfo").ok()?, "MemAvailable:")
}

/// The peak resident set of this process (`VmHWM`), bytes.
fn peak_resident() -> Option<u64> {
    proc_kb_field(&std::fs::read_to_string("/proc/self/status").ok()?, "VmHWM:")
}

/// Gives the heap's free pages back to the system and resets the peak resident set to
/// the current one (Linux `clear_refs` 5); whether the reset worked.
fn restart_peak_resident() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory malloc holds.
    unsafe {
        libc::malloc_trim(0);
    }
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Measures the memory a piece of work takes at its peak: on a GPU, the device memory it
/// took (libtorch's caching allocator keeps what a pass reserved, so the drop in free
/// memory is the pass's peak reservation); on the CPU, the growth of the peak resident
/// set, after the heap's free pages went back to the system, so that the work cannot
/// reuse them unseen ([`keep_freed_memory`] keeps them otherwise).
///
/// The CPU figure is the process's: other threads' allocations during the work count too.
#[derive(Debug, Clone, Copy)]
pub struct PeakProbe {
    /// Free device memory before the work (on a GPU).
    cuda_free: Option<u64>,
    /// The resident set before the work (on the CPU).
    resident: Option<u64>,
}

impl PeakProbe {
    /// Starts measuring, for work on a CUDA device when `cuda`, else on the CPU.
    pub fn start(cuda: bool) -> PeakProbe {
        if cuda {
            PeakProbe { cuda_free: cuda_memory().map(|m| m.0), resident: None }
        } else {
            PeakProbe { cuda_free: None, resident: restart_peak_resident().then(peak_resident).flatten() }
        }
    }

    /// Free device memory when the probe started (on a GPU).
    pub fn cuda_free_before(&self) -> Option<u64> {
        self.cuda_free
    }

    /// The bytes the work took at its peak so far; `None` where they cannot be measured.
    pub fn peak_bytes(&self) -> Option<u64> {
        match (self.cuda_free, self.resident) {
            (Some(before), _) => cuda_memory().map(|(free, _)| before.saturating_sub(free)),
            (None, Some(before)) => peak_resident().map(|p| p.saturating_sub(before)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::PeakProbe;

    #[test]
    #[cfg(target_os = "linux")]
    fn the_cpu_peak_counts_memory_touched_then_freed() {
        let probe = PeakProbe::start(false);
        if probe.peak_bytes().is_none() {
            return; // no /proc/self/clear_refs here
        }
        let size = 64 << 20;
        let mut block = vec![0u8; size];
        // Touch every page so that it is resident.
        for page in block.chunks_mut(4096) {
            page[0] = 1;
        }
        assert_eq!(std::hint::black_box(&block).iter().step_by(4096).count(), size / 4096);
        drop(block);
        let peak = probe.peak_bytes().expect("measured before");
        assert!(peak >= size as u64 - (1 << 20), "peak {peak} after touching {size} bytes");
    }
}
