// Autograd hooks for niftyhost's overlapped gradient all-reduce (host/src/dist/overlap.rs):
// tch exposes no way to learn when backward has computed a parameter's gradient.
#include <ATen/core/Tensor.h>

#include <cstddef>
#include <exception>

extern "C" {
/// Called from the autograd engine with the parameter's index and its new gradient.
typedef void (*nh_grad_ready_fn)(void *context, size_t index, at::Tensor *grad);

/// Registers a hook on `param` that calls `ready(context, index, &grad)` every time the
/// backward pass has computed the gradient of `param`, before it is accumulated. Returns
/// 0, or 1 if libtorch refused (a tensor that does not require gradients).
int nh_register_grad_hook(at::Tensor *param, nh_grad_ready_fn ready, void *context, size_t index) {
  try {
    param->register_hook([=](at::Tensor grad) { ready(context, index, &grad); });
    return 0;
  } catch (const std::exception &) {
    return 1;
  }
}
}
