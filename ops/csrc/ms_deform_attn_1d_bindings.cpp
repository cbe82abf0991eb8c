// Python bindings and device dispatch of the 1-D multi-scale deformable attention op.
#include "ms_deform_attn_1d.h"

#include <torch/extension.h>

namespace tp2detr_ops {

void check_inputs(const at::Tensor& value, const at::Tensor& level_lengths,
                  const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
                  const at::Tensor& attention_weights) {
  TORCH_CHECK(value.dim() == 4, "ms_deform_attn_1d: value must be [N, S, M, D], found shape ",
              value.sizes());
  TORCH_CHECK(sampling_locations.dim() == 5,
              "ms_deform_attn_1d: sampling_locations must be [N, Lq, M, L, P], found shape ",
              sampling_locations.sizes());
  TORCH_CHECK(attention_weights.sizes() == sampling_locations.sizes(),
              "ms_deform_attn_1d: attention_weights must have the shape of sampling_locations ",
              sampling_locations.sizes(), ", found ", attention_weights.sizes());
  TORCH_CHECK(sampling_locations.size(0) == value.size(0) &&
                  sampling_locations.size(2) == value.size(2),
              "ms_deform_attn_1d: sampling_locations must match value in N and M, found ",
              sampling_locations.sizes(), " for value ", value.sizes());
  const int64_t L = sampling_locations.size(3);
  for (const auto* t : {&level_lengths, &level_start_index}) {
    TORCH_CHECK(t->dim() == 1 && t->size(0) == L && t->scalar_type() == at::kLong,
                "ms_deform_attn_1d: level_lengths and level_start_index must be int64 [L] with L = ",
                L, ", found shape ", t->sizes(), " and dtype ", t->scalar_type());
    TORCH_CHECK(t->device() == value.device(),
                "ms_deform_attn_1d: level tensors must be on the value's device ", value.device(),
                ", found ", t->device());
    TORCH_CHECK(t->is_contiguous(), "ms_deform_attn_1d: level tensors must be contiguous");
  }
  for (const auto* t : {&value, &sampling_locations, &attention_weights}) {
    TORCH_CHECK(t->is_contiguous(), "ms_deform_attn_1d: inputs must be contiguous, found strides ",
                t->strides(), " for shape ", t->sizes());
    TORCH_CHECK(t->device() == value.device(),
                "ms_deform_attn_1d: all inputs must be on the value's device ", value.device(),
                ", found ", t->device());
  }
}

namespace {

at::Tensor forward(const at::Tensor& value, const at::Tensor& level_lengths,
                   const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
                   const at::Tensor& attention_weights) {
  if (value.is_cuda()) {
#ifdef TP2DETR_WITH_CUDA
    return ms_deform_attn_1d_forward_cuda(value, level_lengths, level_start_index,
                                          sampling_locations, attention_weights);
#else
    TORCH_CHECK(false, "ms_deform_attn_1d: this build of the op has no CUDA kernels");
#endif
  }
  TORCH_CHECK(value.device().is_cpu(), "ms_deform_attn_1d: unsupported device ", value.device());
  return ms_deform_attn_1d_forward_cpu(value, level_lengths, level_start_index,
                                       sampling_locations, attention_weights);
}

std::vector<at::Tensor> backward(const at::Tensor& value, const at::Tensor& level_lengths,
                                 const at::Tensor& level_start_index,
                                 const at::Tensor& sampling_locations,
                                 const at::Tensor& attention_weights, const at::Tensor& grad_output,
                                 bool deterministic) {
  if (value.is_cuda()) {
#ifdef TP2DETR_WITH_CUDA
    return ms_deform_attn_1d_backward_cuda(value, level_lengths, level_start_index,
                                           sampling_locations, attention_weights, grad_output,
                                           deterministic);
#else
    TORCH_CHECK(false, "ms_deform_attn_1d: this build of the op has no CUDA kernels");
#endif
  }
  TORCH_CHECK(value.device().is_cpu(), "ms_deform_attn_1d: unsupported device ", value.device());
  // The CPU backward is always deterministic.
  return ms_deform_attn_1d_backward_cpu(value, level_lengths, level_start_index,
                                        sampling_locations, attention_weights, grad_output);
}

bool with_cuda() {
#ifdef TP2DETR_WITH_CUDA
  return true;
#else
  return false;
#endif
}

}  // namespace
}  // namespace tp2detr_ops

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "1-D multi-scale deformable attention (tp2detr)";
  m.def("forward", &tp2detr_ops::forward,
        "value [N,S,M,D], level_lengths [L], level_start_index [L], sampling_locations "
        "[N,Lq,M,L,P], attention_weights [N,Lq,M,L,P] -> [N,Lq,M*D]");
  m.def("backward", &tp2detr_ops::backward,
        "the forward's inputs, grad_output [N,Lq,M*D], deterministic -> [grad_value, "
        "grad_locations, grad_weights]");
  m.def("with_cuda", &tp2detr_ops::with_cuda, "whether this build has the CUDA kernels");
}
