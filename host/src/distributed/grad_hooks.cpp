// Autograd hooks for niftyhost's overlapped gradient all-reduce (host/src/distributed/overlap.rs):
// tch exposes no way to learn when backward has computed a parameter's gradient.
#include <ATen/core/Tensor.h>

#include <cstddef>
#include <exception>
#include <memory>

extern "C" {
/// Called from the autograd engine with the parameter's index and its new gradient.
typedef void (*nh_grad_ready_fn)(void *context, size_t index, at::Tensor *grad);

/// Gives up one reference to `context`.
typedef void (*nh_release_fn)(void *context);

/// Registers a hook on `param` that calls `ready(context, index, &grad)` every time the
/// backward pass has computed the gradient of `param`, before it is accumulated, and
/// writes the hook's position (for `nh_remove_grad_hook`) to `*position`.
///
/// The hook owns one reference to `context`: `release(context)` is called once the hook
/// is destroyed (removed, or freed with the tensor), or before this returns if
/// registering fails. Returns 0, or 1 if libtorch refused (a tensor that does not
/// require gradients).
int nh_register_grad_hook(at::Tensor *param, nh_grad_ready_fn ready, void *context, nh_release_fn release,
                          size_t index, unsigned *position) {
  try {
    // Should allocating the count fail, the constructor releases `context` itself.
    std::shared_ptr<void> owner(context, release);
    *position = param->register_hook([=](at::Tensor grad) { ready(owner.get(), index, &grad); });
    return 0;
  } catch (const std::exception &) {
    return 1;
  }
}

/// Removes the hook at `position` of `param` and destroys it (releasing its context).
/// Returns 0, or 1 if libtorch refused (no hook there).
int nh_remove_grad_hook(at::Tensor *param, unsigned position) {
  try {
    param->remove_hook(position);
    return 0;
  } catch (const std::exception &) {
    return 1;
  }
}
}
