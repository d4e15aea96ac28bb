//! [`RTensor`]: an owning, FFI-safe handle to one libtorch tensor.

use std::ffi::c_void;
use std::ptr::NonNull;

use abi_stable::StableAbi;

/// An owning handle to one libtorch tensor (a `torch::Tensor` allocated by torch-sys'
/// C shim, the pointer that `tch::Tensor::as_mut_ptr` returns).
///
/// The handle carries the function that frees it, taken from the side that made it, so
/// dropping never needs `tch` in the default build. Ownership moves with the value:
/// arguments across the boundary are borrowed (`&RTensor`), results are owned.
///
/// # Safety
/// The process maps exactly one libtorch; host and plugins are built against the same
/// libtorch (checked through [`crate::PluginModule::torch_abi_tag`]), so a tensor made on
/// one side is a valid tensor on the other.
#[repr(C)]
#[derive(StableAbi)]
pub struct RTensor {
    ptr: NonNull<c_void>,
    free: extern "C" fn(*mut c_void),
}

// SAFETY: a libtorch tensor handle may move between threads; libtorch tensors are
// reference-counted with atomic counts.
unsafe impl Send for RTensor {}

impl RTensor {
    /// Wraps a raw tensor pointer with the function that frees it.
    ///
    /// # Safety
    /// `ptr` must be an owned `torch::Tensor*` of torch-sys' shim and `free` must release it.
    pub unsafe fn from_raw(ptr: NonNull<c_void>, free: extern "C" fn(*mut c_void)) -> Self {
        Self { ptr, free }
    }

    /// Gives up ownership and returns the raw pointer; the caller must free it.
    pub fn into_raw(self) -> NonNull<c_void> {
        let ptr = self.ptr;
        std::mem::forget(self);
        ptr
    }

    /// The raw pointer, still owned by `self`.
    pub fn as_raw(&self) -> NonNull<c_void> {
        self.ptr
    }
}

impl Drop for RTensor {
    fn drop(&mut self) {
        (self.free)(self.ptr.as_ptr())
    }
}

impl std::fmt::Debug for RTensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RTensor({:p})", self.ptr)
    }
}
