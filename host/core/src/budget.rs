//! Fallible volume-sized allocations, checked against a memory budget.
//!
//! A volume can be larger than the memory the process may use (a 1024³ uint8 image
//! needs 1 GiB as stored and 4 GiB as `f32`; a gzip file can claim gigabytes). Every
//! volume-sized buffer is therefore allocated through this module: its size is first
//! checked against the budget, then the allocation itself is fallible, so that running
//! out of memory is an error naming what was being allocated, its size and the budget
//! (callers add the file) instead of an abort.
//!
//! # The budget
//! One allocation may take at most the smallest of:
//! - `NIFTYHOST_MEMORY_BUDGET` when set (bytes, or with a binary suffix: `512M`, `8G`,
//!   `1.5T`);
//! - otherwise the address space left under `RLIMIT_AS` (`ulimit -v`, `prlimit --as`):
//!   the limit minus what the process maps now;
//! - the memory the system could ever give: physical memory plus swap, or the cgroup's
//!   `memory.max` (a container's limit) when smaller.
//!
//! The budget bounds each allocation, not their sum: it turns what can never succeed
//! into an error early; what fails anyway is caught by the fallible allocation itself.

use std::sync::OnceLock;

/// The environment variable that sets the budget (bytes per allocation).
pub const BUDGET_ENV: &str = "NIFTYHOST_MEMORY_BUDGET";

/// The budget one allocation may take, and where it comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Bytes.
    pub bytes: u64,
    /// Which rule set it (see the module documentation).
    pub source: &'static str,
}

/// Why a volume-sized buffer could not be allocated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocError {
    /// More than the budget.
    #[error(
        "holding {what} takes {bytes} bytes ({}), more than the memory budget of {} bytes ({}, {source}; \
         {BUDGET_ENV} sets it)",
        human(*bytes), budget.bytes, human(budget.bytes), source = budget.source
    )]
    OverBudget {
        /// What the buffer is for.
        what: String,
        /// Its size.
        bytes: u64,
        /// The budget it exceeds.
        budget: Budget,
    },
    /// Within the budget, but the system refused it.
    #[error(
        "out of memory: allocating {bytes} bytes ({}) to hold {what} failed (memory budget {} bytes, {source})",
        human(*bytes), budget.bytes, source = budget.source
    )]
    Refused {
        /// What the buffer is for.
        what: String,
        /// Its size.
        bytes: u64,
        /// The budget in force.
        budget: Budget,
    },
    /// `NIFTYHOST_MEMORY_BUDGET` does not hold a size.
    #[error("{BUDGET_ENV} is `{0}`, expected a number of bytes, optionally with a suffix K, M, G or T (e.g. 8G)")]
    BadSetting(String),
}

/// The budget now (see the module documentation).
///
/// # Errors
/// `NIFTYHOST_MEMORY_BUDGET` set to something that is not a size.
pub fn budget() -> Result<Budget, AllocError> {
    static ENV: OnceLock<Option<Result<u64, String>>> = OnceLock::new();
    let env =
        ENV.get_or_init(|| std::env::var(BUDGET_ENV).ok().map(|v| parse_size(&v).ok_or_else(|| v.trim().to_owned())));
    match env {
        Some(Ok(bytes)) => return Ok(Budget { bytes: *bytes, source: BUDGET_ENV }),
        Some(Err(text)) => return Err(AllocError::BadSetting(text.clone())),
        None => {}
    }
    let mut best = system_memory();
    if let Some(left) = address_space_left() {
        if left < best.bytes {
            best = Budget { bytes: left, source: "the address space left under RLIMIT_AS" };
        }
    }
    Ok(best)
}

/// Checks that `bytes` fit in the budget.
///
/// # Errors
/// [`AllocError::OverBudget`] (or a bad `NIFTYHOST_MEMORY_BUDGET`), `what` naming the buffer.
pub fn check(bytes: u64, what: &dyn Fn() -> String) -> Result<Budget, AllocError> {
    check_within(bytes, budget()?, what)
}

fn check_within(bytes: u64, budget: Budget, what: &dyn Fn() -> String) -> Result<Budget, AllocError> {
    if bytes > budget.bytes {
        return Err(AllocError::OverBudget { what: what(), bytes, budget });
    }
    Ok(budget)
}

/// Bytes of `len` values of `T`, saturating.
fn bytes_of<T>(len: usize) -> u64 {
    (len as u64).saturating_mul(std::mem::size_of::<T>() as u64)
}

/// Reserves room for exactly `additional` more values in `v`, within the budget (counted
/// as the whole buffer's new size).
///
/// # Errors
/// Over the budget, or refused by the system; `what` names the buffer.
pub fn try_reserve<T>(v: &mut Vec<T>, additional: usize, what: &dyn Fn() -> String) -> Result<(), AllocError> {
    reserve_within(v, additional, budget()?, what)
}

fn reserve_within<T>(
    v: &mut Vec<T>,
    additional: usize,
    budget: Budget,
    what: &dyn Fn() -> String,
) -> Result<(), AllocError> {
    let bytes = bytes_of::<T>(v.len().saturating_add(additional));
    let budget = check_within(bytes, budget, what)?;
    v.try_reserve_exact(additional).map_err(|_| AllocError::Refused { what: what(), bytes, budget })
}

/// An empty vector with room for `len` values, within the budget.
///
/// # Errors
/// As [`try_reserve`].
pub fn try_with_capacity<T>(len: usize, what: &dyn Fn() -> String) -> Result<Vec<T>, AllocError> {
    let mut v = Vec::new();
    try_reserve(&mut v, len, what)?;
    Ok(v)
}

/// `len` copies of `value`, within the budget.
///
/// # Errors
/// As [`try_reserve`].
pub fn try_filled<T: Clone>(len: usize, value: T, what: &dyn Fn() -> String) -> Result<Vec<T>, AllocError> {
    let mut v = try_with_capacity(len, what)?;
    v.resize(len, value);
    Ok(v)
}

/// Number types whose all-zero bit pattern is the value 0.
///
/// # Safety
/// Implement only for types for which every byte 0 is a valid value.
pub unsafe trait Zeroed: Copy {}

// SAFETY: all-zero bytes are the value 0 of every primitive number type.
unsafe impl Zeroed for u8 {}
// SAFETY: as above.
unsafe impl Zeroed for i8 {}
// SAFETY: as above.
unsafe impl Zeroed for u16 {}
// SAFETY: as above.
unsafe impl Zeroed for i16 {}
// SAFETY: as above.
unsafe impl Zeroed for u32 {}
// SAFETY: as above.
unsafe impl Zeroed for i32 {}
// SAFETY: as above.
unsafe impl Zeroed for u64 {}
// SAFETY: as above.
unsafe impl Zeroed for i64 {}
// SAFETY: as above.
unsafe impl Zeroed for f32 {}
// SAFETY: as above.
unsafe impl Zeroed for f64 {}

/// `len` zeros, within the budget. Like `vec![0; len]` (and unlike [`try_filled`]) the
/// memory comes zeroed from the allocator, so a large buffer's pages are mapped lazily,
/// when first written.
///
/// # Errors
/// As [`try_reserve`].
pub fn try_zeroed<T: Zeroed>(len: usize, what: &dyn Fn() -> String) -> Result<Vec<T>, AllocError> {
    zeroed_within(len, budget()?, what)
}

fn zeroed_within<T: Zeroed>(len: usize, budget: Budget, what: &dyn Fn() -> String) -> Result<Vec<T>, AllocError> {
    let bytes = bytes_of::<T>(len);
    let budget = check_within(bytes, budget, what)?;
    let refused = || AllocError::Refused { what: what(), bytes, budget };
    let layout = std::alloc::Layout::array::<T>(len).map_err(|_| refused())?;
    if layout.size() == 0 {
        return Ok(vec![]);
    }
    // SAFETY: the layout has a non-zero size (checked above).
    let ptr = unsafe { std::alloc::alloc_zeroed(layout) }.cast::<T>();
    if ptr.is_null() {
        return Err(refused());
    }
    // SAFETY: `ptr` was allocated by the global allocator with the layout of `[T; len]`
    // (so capacity `len` and T's alignment), and its `len` values are zero bytes, which
    // `T: Zeroed` makes valid values.
    Ok(unsafe { Vec::from_raw_parts(ptr, len, len) })
}

/// Parses `1073741824`, `512M`, `8G`, `1.5T` (binary units, case-insensitive, an optional
/// `B`/`iB` after the suffix) into bytes.
fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim().to_ascii_uppercase();
    let t = t.strip_suffix("IB").or_else(|| t.strip_suffix('B')).unwrap_or(&t);
    let (number, shift) = match t.chars().last()? {
        'K' => (&t[..t.len() - 1], 10),
        'M' => (&t[..t.len() - 1], 20),
        'G' => (&t[..t.len() - 1], 30),
        'T' => (&t[..t.len() - 1], 40),
        _ => (t, 0),
    };
    let value: f64 = number.trim().parse().ok()?;
    let bytes = value * f64::from(1u32 << (shift / 2)) * f64::from(1u32 << (shift - shift / 2));
    (bytes.is_finite() && bytes >= 0.0 && bytes < 1.8e19).then_some(bytes as u64)
}

/// `1.00 GiB`-style sizes for the messages.
fn human(bytes: u64) -> String {
    let units = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < units.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{v:.2} {}", units[unit])
    }
}

/// The most memory the system could give this process: physical memory plus swap, or
/// the cgroup's limit when smaller (read once).
fn system_memory() -> Budget {
    static FOUND: OnceLock<Budget> = OnceLock::new();
    *FOUND.get_or_init(|| {
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let field = |name: &str| crate::memory::proc_kb_field(&meminfo, name);
        let mut best = match (field("MemTotal:"), field("SwapTotal:")) {
            (Some(mem), swap) => Budget { bytes: mem + swap.unwrap_or(0), source: "physical memory and swap" },
            (None, _) => Budget { bytes: u64::MAX, source: "no memory limit found" },
        };
        let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max").ok();
        if let Some(limit) = cgroup.and_then(|t| t.trim().parse::<u64>().ok()) {
            if limit < best.bytes {
                best = Budget { bytes: limit, source: "the cgroup's memory.max" };
            }
        }
        best
    })
}

/// `RLIMIT_AS` minus the address space mapped now, when there is such a limit.
fn address_space_left() -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit writes the limit into the struct passed, which lives on our stack.
        if unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut limit) } != 0 || limit.rlim_cur == libc::RLIM_INFINITY {
            return None;
        }
        // /proc/self/statm: the first field is the mapped size in pages.
        let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
        let pages: u64 = statm.split_whitespace().next()?.parse().ok()?;
        // SAFETY: sysconf only reads a system constant.
        let page = u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
        Some(u64::from(limit.rlim_cur).saturating_sub(pages.saturating_mul(page)))
    }
    #[cfg(not(target_os = "linux"))]
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_suffixes() {
        assert_eq!(parse_size("1048576"), Some(1 << 20));
        assert_eq!(parse_size("512M"), Some(512 << 20));
        assert_eq!(parse_size(" 8g "), Some(8 << 30));
        assert_eq!(parse_size("1.5GiB"), Some(3 << 29));
        assert_eq!(parse_size("2kb"), Some(2048));
        assert_eq!(parse_size("lots"), None);
        assert_eq!(parse_size("-1G"), None);
        assert_eq!(human(3 << 29), "1.50 GiB");
        assert_eq!(human(100), "100 bytes");
    }

    #[test]
    fn the_system_budget_is_positive() {
        let b = system_memory();
        assert!(b.bytes > 0 && !b.source.is_empty(), "{b:?}");
    }

    #[test]
    fn allocations_over_the_budget_are_errors_naming_size_and_budget() {
        let budget = Budget { bytes: 1000, source: "a test" };
        let what = || "the voxels of test.nii".to_owned();
        let e = zeroed_within::<f32>(300, budget, &what).unwrap_err();
        assert_eq!(zeroed_within::<u8>(1000, budget, &what).map(|v| v.len()), Ok(1000));
        let text = e.to_string();
        assert!(text.contains("holding the voxels of test.nii takes 1200 bytes"), "{text}");
        assert!(text.contains("memory budget of 1000 bytes (1000 bytes, a test;"), "{text}");
        let mut grown = vec![0u8; 900];
        let over = reserve_within(&mut grown, 101, budget, &what).unwrap_err();
        assert!(matches!(over, AllocError::OverBudget { bytes: 1001, .. }), "{over:?}");
        reserve_within(&mut grown, 100, budget, &what).unwrap();
        assert!(grown.capacity() >= 1000);
        assert!(zeroed_within::<u8>(0, budget, &what).unwrap().is_empty());
        assert_eq!(try_filled(3, 7u16, &what), Ok(vec![7u16; 3]));
    }

    #[test]
    fn zeroed_buffers_are_zero() {
        let v = try_zeroed::<f64>(1 << 16, &|| "test".to_owned()).unwrap();
        assert_eq!(v.len(), 1 << 16);
        assert!(v.iter().all(|&x| x == 0.0));
    }
}
