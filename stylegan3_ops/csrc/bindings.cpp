// Python bindings of the StyleGAN3 CUDA ops (ops.cu). The Python wrappers in
// stylegan3_ops/_kernels.py are the only callers; they validate arguments first.
#include <torch/extension.h>

#include <vector>

namespace sg3 {
at::Tensor bias_act(at::Tensor x, c10::optional<at::Tensor> b, c10::optional<at::Tensor> a,
                    c10::optional<at::Tensor> c, int64_t dim, int64_t mode, int64_t act, double alpha,
                    double gain, double clamp);
std::vector<at::Tensor> resample(at::Tensor src, c10::optional<at::Tensor> bias, c10::optional<at::Tensor> mask_in,
                                 at::Tensor f1, at::Tensor f3, std::vector<int64_t> ints, double slope, double gain,
                                 double clamp);
}  // namespace sg3

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    m.def("bias_act", &sg3::bias_act, "Fused bias + activation + gain + clamp and its gradients");
    m.def("resample", &sg3::resample, "Fused tiled upsample / FIR / point-wise / FIR / downsample");
}
