//! How glibc's malloc keeps and shares freed memory, set for the whole process: the
//! settings the `niftyhost` binary runs with, here so that tests and library users can
//! run with the same memory behaviour. Both are no-ops outside Linux with glibc.

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
