// CPU emulation of the CUDA kernels, for tests on machines without a GPU: the same
// index arithmetic (resample_core.h, bias_act_core.h), one thread block at a time with a
// single "thread". Not part of the extension; the tests compile it with the host C++
// compiler into a small shared library and call it through ctypes.
#include <vector>

#include "bias_act_core.h"
#include "resample_core.h"

extern "C" {

// ints as in ops.cu's resample(), preceded by planes, channels, src_h, src_w. Returns the
// mask's [mask_h, mask_stride] in mask_dims[0:2] when the forward pass writes it (the caller
// first calls with mask == nullptr and query == 1 to learn the size), and the tile used in
// mask_dims[2:4]. tile_w <= 0: the tile the GPU launcher picks (96 KiB of shared memory).
int sg3_resample_f32(const float* src, float* dst, const float* bias, unsigned char* mask, const float* f1,
                     const float* f3, const long long* ints, float slope, float gain, float clamp,
                     int tile_w, int tile_h, int* mask_dims, int query) {
    sg3::ResampleParams p{};
    p.planes = (int)ints[0]; p.channels = (int)ints[1];  // then the launcher's 22
    p.src_h = (int)ints[2]; p.src_w = (int)ints[3];
    const bool write_mask = sg3::read_int_params(p, ints + 4);
    p.slope = slope; p.gain = gain; p.clamp = clamp;
    p.src = src; p.dst = dst; p.bias = bias; p.f1 = f1; p.f3 = f3;
    if (tile_w <= 0 && !sg3::pick_tile(p, 96 * 1024, &tile_w, &tile_h)) return -1;  // the GPU's choice
    mask_dims[2] = tile_w;
    mask_dims[3] = tile_h;
    const int floats = sg3::tile_geometry(p, tile_w, tile_h);
    if (p.mode == sg3::kLreluForward && write_mask) {
        p.mask_w = (p.tiles_x - 1) * p.tile_w * p.down_x + p.mid_w;
        p.mask_h = (p.tiles_y - 1) * p.tile_h * p.down_y + p.mid_h;
        p.mask_stride = p.mask_w / 4;
        mask_dims[0] = p.mask_h;
        mask_dims[1] = p.mask_stride;
        if (query) return 0;
        p.mask = mask;
    } else if (p.mode == sg3::kMaskBackward) {
        p.mask_h = mask_dims[0];
        p.mask_stride = mask_dims[1];
        p.mask_w = p.mask_stride * 4;
        p.mask = mask;
    }
    if (query) return 0;
    std::vector<float> smem(floats);
    for (int plane = 0; plane < p.planes; ++plane) {
        for (int tile = 0; tile < p.tiles_x * p.tiles_y; ++tile) {
            sg3::load_filters(p, smem.data(), 0, 1);
            sg3::resample_tile<float>(p, tile, plane, smem.data(), 0, 1);
        }
    }
    return floats;
}

void sg3_bias_act_f32(const float* x, const float* b, const float* a, const float* c, float* out, long long n,
                      long long bias_stride, long long bias_size, int mode, int act, float alpha, float gain,
                      float clamp) {
    for (long long i = 0; i < n; ++i) {
        float z = x[i] + (b ? b[(i / bias_stride) % bias_size] : 0.f);
        out[i] = sg3::bias_act_one(mode, act, z, a ? a[i] : 0.f, c ? c[i] : 0.f, alpha, gain, clamp);
    }
}

// The kernel's chunking: chunks of V = 4 floats (16 bytes) through bias_act_span, then the
// last n % 4 elements one by one, exactly as bias_act_kernel does with vec = true.
void sg3_bias_act_vec_f32(const float* x, const float* b, const float* a, const float* c, float* out, long long n,
                          long long bias_stride, long long bias_size, int mode, int act, float alpha, float gain,
                          float clamp) {
    constexpr int V = 4;
    const bool wide = n >= (1LL << 31);
    const long long nv = n / V;
    for (long long k = 0; k < nv; ++k) {
        float v[V], av[V], cv[V];
        for (int j = 0; j < V; ++j) {
            v[j] = x[k * V + j];
            av[j] = a ? a[k * V + j] : 0.f;
            cv[j] = c ? c[k * V + j] : 0.f;
        }
        sg3::bias_act_span<V, -1, float>(v, av, cv, k * V, b, bias_stride, bias_size, wide, mode, act, alpha, gain,
                                         clamp);
        for (int j = 0; j < V; ++j) out[k * V + j] = v[j];
    }
    for (long long i = nv * V; i < n; ++i) {
        float v[1] = {x[i]};
        const float av[1] = {a ? a[i] : 0.f}, cv[1] = {c ? c[i] : 0.f};
        sg3::bias_act_span<1, -1, float>(v, av, cv, i, b, bias_stride, bias_size, wide, mode, act, alpha, gain, clamp);
        out[i] = v[0];
    }
}

}  // extern "C"
