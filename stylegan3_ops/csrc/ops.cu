// CUDA kernels of the StyleGAN3 ops and their host-side launchers.
//
// * bias_act: one grid-stride element-wise kernel for the forward pass and both gradient
//   levels (bias_act_core.h).
// * resample: the fused, shared-memory-tiled upsample / FIR / point-wise / FIR / downsample
//   pipeline of resample_core.h, used by upfirdn2d and filtered_lrelu in both directions.
//
// The Python side (stylegan3_ops/_kernels.py) resolves filter flips and gains and the
// offsets of each direction; this file only checks tensors, picks a tile and launches.

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>
#include <vector>

#include "bias_act_core.h"
#include "resample_core.h"

namespace sg3 {

// ---------------------------------------------------------------------------------------------
// bias_act

// 16 bytes of T as floats (V = 16 / sizeof(T)): one vector load or store per operand.
template <typename T, int V>
__device__ __forceinline__ void load_vec(const T* __restrict__ p, float (&v)[V]) {
    alignas(16) T t[V];
    *reinterpret_cast<uint4*>(t) = __ldg(reinterpret_cast<const uint4*>(p));
#pragma unroll
    for (int j = 0; j < V; ++j) v[j] = static_cast<float>(t[j]);
}

template <typename T, int V>
__device__ __forceinline__ void store_vec(T* __restrict__ p, const float (&v)[V]) {
    alignas(16) T t[V];
#pragma unroll
    for (int j = 0; j < V; ++j) t[j] = static_cast<T>(v[j]);
    *reinterpret_cast<uint4*>(p) = *reinterpret_cast<const uint4*>(t);
}

// Grid-stride over 16-byte chunks of V elements (when every operand is 16-byte aligned),
// then the last n % V elements one by one. One pass over memory in every mode: x (and dy,
// ggx) in, out out; the bias is read per chunk (per element when the chunk spans channels).
template <typename T, typename BT, int ACT>
__global__ void __launch_bounds__(256)
    bias_act_kernel(const T* __restrict__ x, const BT* __restrict__ b, const T* __restrict__ a,
                    const T* __restrict__ c, T* __restrict__ out, int64_t n, int64_t bias_stride, int64_t bias_size,
                    bool wide, bool vec, int mode, int act, float alpha, float gain, float clamp) {
    constexpr int V = 16 / sizeof(T);
    const int64_t step = (int64_t)blockDim.x * gridDim.x;
    const int64_t first = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    int64_t done = 0;
    if (vec) {
        const int64_t nv = n / V;
        for (int64_t k = first; k < nv; k += step) {
            const int64_t i0 = k * V;
            float v[V], av[V], cv[V];
            load_vec<T, V>(x + i0, v);
            if (a) {
                load_vec<T, V>(a + i0, av);
            } else {
#pragma unroll
                for (int j = 0; j < V; ++j) av[j] = 0.f;
            }
            if (c) {
                load_vec<T, V>(c + i0, cv);
            } else {
#pragma unroll
                for (int j = 0; j < V; ++j) cv[j] = 0.f;
            }
            bias_act_span<V, ACT, BT>(v, av, cv, i0, b, bias_stride, bias_size, wide, mode, act, alpha, gain, clamp);
            store_vec<T, V>(out + i0, v);
        }
        done = nv * V;
    }
    for (int64_t i = done + first; i < n; i += step) {
        float v[1] = {static_cast<float>(x[i])};
        const float av[1] = {a ? static_cast<float>(a[i]) : 0.f};
        const float cv[1] = {c ? static_cast<float>(c[i]) : 0.f};
        bias_act_span<1, ACT, BT>(v, av, cv, i, b, bias_stride, bias_size, wide, mode, act, alpha, gain, clamp);
        out[i] = static_cast<T>(v[0]);
    }
}

static int multiprocessor_count(int device) {
    static int cached[64] = {0};
    int& sms = cached[device & 63];
    if (sms == 0) C10_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
    return sms;
}

static bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

template <typename T, typename BT>
static void launch_bias_act(int act, dim3 blocks, dim3 threads, cudaStream_t stream, const T* x, const BT* b,
                            const T* a, const T* c, T* out, int64_t n, int64_t stride, int64_t size, bool wide,
                            bool vec, int mode, float alpha, float gain, float clamp) {
    // The generator's activations get a compile-time activation; the others share one kernel.
    if (act == kLrelu)
        bias_act_kernel<T, BT, kLrelu><<<blocks, threads, 0, stream>>>(x, b, a, c, out, n, stride, size, wide, vec,
                                                                       mode, act, alpha, gain, clamp);
    else if (act == kLinear)
        bias_act_kernel<T, BT, kLinear><<<blocks, threads, 0, stream>>>(x, b, a, c, out, n, stride, size, wide, vec,
                                                                        mode, act, alpha, gain, clamp);
    else
        bias_act_kernel<T, BT, -1><<<blocks, threads, 0, stream>>>(x, b, a, c, out, n, stride, size, wide, vec,
                                                                   mode, act, alpha, gain, clamp);
}

static void check_same_layout(const at::Tensor& t, const at::Tensor& x, const char* name) {
    TORCH_CHECK(t.device() == x.device() && t.scalar_type() == x.scalar_type() && t.sizes() == x.sizes() &&
                    t.strides() == x.strides(),
                "bias_act: ", name, " must match x in device, dtype, shape and strides");
}

at::Tensor bias_act(at::Tensor x, c10::optional<at::Tensor> b, c10::optional<at::Tensor> a,
                    c10::optional<at::Tensor> c, int64_t dim, int64_t mode, int64_t act, double alpha,
                    double gain, double clamp) {
    TORCH_CHECK(x.is_cuda(), "bias_act: x must be a CUDA tensor");
    TORCH_CHECK(x.is_non_overlapping_and_dense(), "bias_act: x must be dense (contiguous in some layout)");
    TORCH_CHECK(dim >= 0 && dim < x.dim(), "bias_act: bad dim");
    const at::Tensor* bp = b && b->defined() ? &*b : nullptr;
    const at::Tensor* ap = a && a->defined() ? &*a : nullptr;
    const at::Tensor* cp = c && c->defined() ? &*c : nullptr;
    if (bp) {
        TORCH_CHECK(bp->is_cuda() && bp->device() == x.device() &&
                        (bp->scalar_type() == at::kFloat || bp->scalar_type() == x.scalar_type()) &&
                        bp->dim() == 1 && bp->is_contiguous() && bp->size(0) == x.size(dim),
                    "bias_act: b must be a contiguous CUDA tensor [x.shape[dim]] of float32 or x's dtype");
    }
    if (ap) check_same_layout(*ap, x, "dy");
    if (cp) check_same_layout(*cp, x, "ggx");
    TORCH_CHECK(mode == kBiasActForward || ap, "bias_act: gradient modes need dy");
    TORCH_CHECK(mode != kBiasActGrad2 || cp, "bias_act: the second-order mode needs ggx");

    c10::cuda::CUDAGuard guard(x.device());
    at::Tensor out = at::empty_like(x);  // same dense layout as x (empty_like preserves it)
    const int64_t n = x.numel();
    if (n == 0) return out;
    TORCH_CHECK(out.strides() == x.strides(), "bias_act: unexpected output layout");
    const int64_t stride = x.stride(dim), size = x.size(dim);
    const bool wide = n >= (int64_t(1) << 31);
    const int threads = 256;
    const int64_t max_blocks = (int64_t)multiprocessor_count(x.get_device()) * 32;
    auto stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "bias_act", [&] {
        constexpr int V = 16 / sizeof(scalar_t);
        const scalar_t* xp = x.data_ptr<scalar_t>();
        const scalar_t* aptr = ap ? ap->data_ptr<scalar_t>() : nullptr;
        const scalar_t* cptr = cp ? cp->data_ptr<scalar_t>() : nullptr;
        scalar_t* op = out.data_ptr<scalar_t>();
        const bool vec = aligned16(xp) && aligned16(op) && (!aptr || aligned16(aptr)) && (!cptr || aligned16(cptr));
        const int64_t work = vec ? n / V + n % V : n;
        const int blocks = (int)std::max<int64_t>(1, std::min<int64_t>((work + threads - 1) / threads, max_blocks));
        const float fa = (float)alpha, fg = (float)gain, fc = (float)clamp;
        if (bp && bp->scalar_type() != at::kFloat) {
            launch_bias_act<scalar_t, scalar_t>((int)act, blocks, threads, stream, xp, bp->data_ptr<scalar_t>(), aptr,
                                                cptr, op, n, stride, size, wide, vec, (int)mode, fa, fg, fc);
        } else {
            const float* bptr = bp ? bp->data_ptr<float>() : nullptr;
            launch_bias_act<scalar_t, float>((int)act, blocks, threads, stream, xp, bptr, aptr, cptr, op, n, stride,
                                             size, wide, vec, (int)mode, fa, fg, fc);
        }
    });
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    return out;
}

// ---------------------------------------------------------------------------------------------
// resample

template <typename T>
__global__ void __launch_bounds__(256) resample_kernel(ResampleParams p) {
    extern __shared__ float4 smem4[];  // float4: 16-byte alignment for the vector accesses
    float* smem = reinterpret_cast<float*>(smem4);
    load_filters(p, smem, threadIdx.x, blockDim.x);
    __syncthreads();
    for (int plane = blockIdx.y; plane < p.planes; plane += gridDim.y)
        resample_tile<T>(p, blockIdx.x, plane, smem, threadIdx.x, blockDim.x);
}

// Pick the tile (resample_core.h's pick_tile, shared with the CPU emulation) and fill in its geometry.
static int choose_tile(ResampleParams& p, int max_smem_bytes) {
    int tw = 0, th = 0;
    TORCH_CHECK(pick_tile(p, max_smem_bytes, &tw, &th), "resample: the filters are too large for shared memory");
    return tile_geometry(p, tw, th) * 4;
}

// ints: dst_h, dst_w, up_x, up_y, f1_w, f1_h, f1_sep, p0_x, p0_y, down_x, down_y, f3_w, f3_h,
//       f3_sep, q0_x, q0_y, mode, write_mask, valid_x0, valid_x1, valid_y0, valid_y1
// Returns [dst, mask]; mask is written (and returned) in mode kLreluForward with write_mask,
// read in mode kMaskBackward, else an empty tensor.
std::vector<at::Tensor> resample(at::Tensor src, c10::optional<at::Tensor> bias, c10::optional<at::Tensor> mask_in,
                                 at::Tensor f1, at::Tensor f3, std::vector<int64_t> ints, double slope, double gain,
                                 double clamp) {
    TORCH_CHECK(ints.size() == 22, "resample: expected 22 integer parameters");
    TORCH_CHECK(src.is_cuda() && src.dim() == 4 && src.is_contiguous(), "resample: src must be a contiguous CUDA [N, C, H, W]");
    TORCH_CHECK(f1.is_cuda() && f1.scalar_type() == at::kFloat && f1.is_contiguous(), "resample: bad f1");
    TORCH_CHECK(f3.is_cuda() && f3.scalar_type() == at::kFloat && f3.is_contiguous(), "resample: bad f3");
    ResampleParams p{};
    p.planes = (int)(src.size(0) * src.size(1));
    p.channels = (int)src.size(1);
    p.src_h = (int)src.size(2);
    p.src_w = (int)src.size(3);
    const bool write_mask = read_int_params(p, ints.data());
    p.slope = (float)slope;
    p.gain = (float)gain;
    p.clamp = (float)clamp;
    TORCH_CHECK(p.up_x >= 1 && p.up_y >= 1 && p.down_x >= 1 && p.down_y >= 1, "resample: factors must be >= 1");
    TORCH_CHECK(p.f1_w >= 1 && p.f1_h >= 1 && p.f3_w >= 1 && p.f3_h >= 1, "resample: empty filter");
    TORCH_CHECK(f1.numel() == filter_floats(p.f1_w, p.f1_h, p.f1_sep), "resample: f1 size mismatch");
    TORCH_CHECK(f3.numel() == filter_floats(p.f3_w, p.f3_h, p.f3_sep), "resample: f3 size mismatch");
    TORCH_CHECK(p.dst_h >= 1 && p.dst_w >= 1, "resample: empty output");
    TORCH_CHECK(src.numel() < (int64_t(1) << 62), "resample: input too large");

    c10::cuda::CUDAGuard guard(src.device());
    const at::Tensor* bp = bias && bias->defined() ? &*bias : nullptr;
    if (bp) {
        TORCH_CHECK(bp->is_cuda() && bp->scalar_type() == src.scalar_type() && bp->is_contiguous() &&
                        bp->numel() == p.channels,
                    "resample: bias must be a contiguous CUDA tensor [C] of the source's dtype");
        p.bias = bp->data_ptr();
    }
    p.f1 = f1.data_ptr<float>();
    p.f3 = f3.data_ptr<float>();

    int max_smem = 0;
    const int device = src.get_device();
    C10_CUDA_CHECK(cudaDeviceGetAttribute(&max_smem, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
    const int smem_bytes = choose_tile(p, std::min(max_smem, 96 * 1024));

    at::Tensor mask;
    if (p.mode == kLreluForward && write_mask) {
        TORCH_CHECK(p.q0_x == 0 && p.q0_y == 0 && (p.tile_w * p.down_x) % 4 == 0,
                    "resample: the forward mask needs tiles aligned to 4 samples");
        p.mask_w = (p.tiles_x - 1) * p.tile_w * p.down_x + p.mid_w;
        p.mask_h = (p.tiles_y - 1) * p.tile_h * p.down_y + p.mid_h;
        p.mask_stride = p.mask_w / 4;
        mask = at::empty({p.planes, p.mask_h, p.mask_stride}, src.options().dtype(at::kByte));
        p.mask = mask.data_ptr<uint8_t>();
    } else if (p.mode == kMaskBackward) {
        TORCH_CHECK(mask_in && mask_in->defined(), "resample: the backward pass needs the mask");
        mask = *mask_in;
        TORCH_CHECK(mask.is_cuda() && mask.scalar_type() == at::kByte && mask.dim() == 3 && mask.is_contiguous() &&
                        mask.size(0) == p.planes,
                    "resample: bad mask");
        p.mask_h = (int)mask.size(1);
        p.mask_stride = (int)mask.size(2);
        p.mask_w = p.mask_stride * 4;
        p.mask = mask.data_ptr<uint8_t>();
    }

    at::Tensor dst = at::empty({src.size(0), src.size(1), p.dst_h, p.dst_w}, src.options());
    p.src = src.data_ptr();
    p.dst = dst.data_ptr();
    if (p.planes == 0) return {dst, mask.defined() ? mask : at::Tensor()};

    const dim3 grid((unsigned)(p.tiles_x * p.tiles_y), (unsigned)std::min(p.planes, 65535));
    const dim3 block(256);
    auto stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, src.scalar_type(), "resample", [&] {
        // Opt in to more than 48 KiB of dynamic shared memory once per device and size.
        static thread_local int configured[64] = {0};
        int& done = configured[device & 63];
        if (smem_bytes > 48 * 1024 && smem_bytes > done) {
            C10_CUDA_CHECK(cudaFuncSetAttribute(resample_kernel<scalar_t>,
                                                cudaFuncAttributeMaxDynamicSharedMemorySize, smem_bytes));
            done = smem_bytes;
        }
        resample_kernel<scalar_t><<<grid, block, smem_bytes, stream>>>(p);
    });
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    if (p.mode != kLreluForward) return {dst, at::Tensor()};
    return {dst, mask.defined() ? mask : at::Tensor()};
}

}  // namespace sg3
