//! Conversions between [`RTensor`] and `tch::Tensor`.

use std::ffi::c_void;
use std::mem::ManuallyDrop;
use std::ops::Deref;
use std::ptr::NonNull;

use tch::Tensor;
use torch_sys::C_tensor;

use crate::RTensor;

extern "C" fn free_tensor(ptr: *mut c_void) {
    // SAFETY: `ptr` was produced by `RTensor::from_tch`, which gave up its ownership.
    drop(unsafe { Tensor::from_ptr(ptr as *mut C_tensor) })
}

impl RTensor {
    /// Moves a `tch::Tensor` into a handle, without copying.
    pub fn from_tch(tensor: Tensor) -> Self {
        let mut tensor = ManuallyDrop::new(tensor);
        let ptr = NonNull::new(tensor.as_mut_ptr() as *mut c_void).expect("tch::Tensor never holds a null pointer");
        // SAFETY: the pointer is owned (the tensor is never dropped) and freed by tch.
        unsafe { RTensor::from_raw(ptr, free_tensor) }
    }

    /// Moves the handle out as a `tch::Tensor`, without copying.
    pub fn into_tch(self) -> Tensor {
        // SAFETY: one libtorch per process: the pointer is a `torch::Tensor*` of the
        // shim, and ownership moves from the handle to the returned tensor.
        unsafe { Tensor::from_ptr(self.into_raw().as_ptr() as *mut C_tensor) }
    }

    /// Borrows the handle as a `tch::Tensor` (no reference count change).
    pub fn view(&self) -> TensorView<'_> {
        // SAFETY: as for `into_tch`; the view never drops the tensor.
        let tensor = unsafe { Tensor::from_ptr(self.as_raw().as_ptr() as *mut C_tensor) };
        TensorView { tensor: ManuallyDrop::new(tensor), _owner: std::marker::PhantomData }
    }

    /// A new handle sharing storage with this one (a shallow clone).
    pub fn shallow_clone(&self) -> RTensor {
        RTensor::from_tch(self.view().shallow_clone())
    }
}

/// A borrowed `tch::Tensor` view of an [`RTensor`]: derefs to `Tensor`, frees nothing.
pub struct TensorView<'a> {
    tensor: ManuallyDrop<Tensor>,
    _owner: std::marker::PhantomData<&'a RTensor>,
}

impl Deref for TensorView<'_> {
    type Target = Tensor;
    fn deref(&self) -> &Tensor {
        &self.tensor
    }
}
