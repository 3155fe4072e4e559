// One fused, tiled resampling pipeline serving upfirdn2d and filtered_lrelu, forward and
// backward. Per image plane and per axis it computes
//
//   stage 1  mid[m] = sum_t S[m + t - p0] * f1[t]        S: the source upsampled by `up`
//                                                         (up - 1 zeros after each sample)
//   stage 2  a[m]   = point-wise op of mid[m]             identity, leaky ReLU (writing a
//                                                         2-bit sign/clamp code per sample),
//                                                         or multiply by the slope that code
//                                                         stands for (the backward pass)
//   stage 3  out[i] = sum_t a[i * down + t - q0] * f3[t]
//
// with correlation filters f1, f3 (flips and gains are resolved by the caller) that are
// either separable (one 1-D filter per axis) or full 2-D. A thread block owns a tile of
// `tile_h x tile_w` outputs of one plane: it loads the source samples the tile needs into
// shared memory, builds the tile's `mid_h x mid_w` intermediate there (polyphase: only the
// taps that meet real samples are summed) and filters it down, so the intermediate never
// travels through global memory.
//
// Backward passes reuse the pipeline: the adjoint of "upsample by u, correlate with f,
// keep every d-th sample" is "upsample by d, correlate with the reversed f, keep every
// u-th sample", with the offsets worked out on the Python side (stylegan3_ops/_kernels.py).
//
// The code between SG3_SYNC() barriers only exchanges data through shared memory, so a
// block can be emulated on the CPU by running it with one "thread" (tid 0 of 1):
// csrc/emulate.cpp does exactly that for the tests.
#pragma once

#include "common.h"

namespace sg3 {

enum PointMode : int {
    kIdentity = 0,      // a = mid
    kLreluForward = 1,  // a = clamp(lrelu(mid, slope) * gain), optionally writing the mask
    kMaskBackward = 2,  // a = mid * slope_code(mask), zero outside the valid range
};

struct ResampleParams {
    const void* src;     // [planes, src_h, src_w], scalar type T
    void* dst;           // [planes, dst_h, dst_w], scalar type T
    const void* bias;    // [channels], scalar type T, added to every loaded source sample, or nullptr
    uint8_t* mask;       // [planes, mask_h, mask_stride] 2-bit codes, 4 samples a byte, or nullptr
    const float* f1;     // separable: [f1_w taps along x, then f1_h taps along y]; else [f1_h][f1_w]
    const float* f3;     // likewise for stage 3
    int planes, channels;
    int src_w, src_h, dst_w, dst_h;
    int up_x, up_y, f1_w, f1_h, f1_sep, p0_x, p0_y;
    int down_x, down_y, f3_w, f3_h, f3_sep, q0_x, q0_y;
    int mode;
    float slope, gain, clamp;  // clamp < 0: no clamping
    int valid_x0, valid_x1, valid_y0, valid_y1;  // kMaskBackward: a = 0 outside [x0, x1) x [y0, y1)
    int mask_w, mask_h, mask_stride;             // mask_stride = bytes per row = mask_w / 4
    // Tiling (chosen by the host, see tile_geometry).
    int tile_w, tile_h, tiles_x, tiles_y;
    int mid_w, mid_h;            // intermediate tile; mid_w is a multiple of 4
    int src_tile_w, src_tile_h;  // source tile
    int region_a;                // floats of shared memory shared by the source tile, the stage-1
                                 // x-pass and the stage-3 x-pass
};

SG3_HD int filter_floats(int w, int h, int sep) { return sep ? w + h : w * h; }

// Identity stages (a 1x1 filter, factor 1): upfirdn2d's downsampling has no stage 1, its
// upsampling no stage 3 (nor has ToRGB). Stage 1 is then a scaled copy of the source tile,
// which has the mid tile's shape, and stage 3 a scaled copy of the mid tile (mid = output
// tile): resample_tile loads the source straight into the mid tile and stores the mid tile
// straight out, without the source tile and the separable passes (nor their shared memory).
SG3_HD bool stage1_is_copy(const ResampleParams& p) {
    return p.mode == kIdentity && p.f1_sep && p.up_x == 1 && p.up_y == 1 && p.f1_w == 1 && p.f1_h == 1;
}
SG3_HD bool stage3_is_copy(const ResampleParams& p) {
    return p.f3_sep && p.down_x == 1 && p.down_y == 1 && p.f3_w == 1 && p.f3_h == 1;
}
SG3_HD int round4(int n) { return (n + 3) / 4 * 4; }

// Offsets (in floats) of the shared-memory regions; every region starts at a multiple of
// 4 floats so that rows of the intermediate tiles can be accessed as float4.
struct SmemLayout {
    int f1, f3, src, up, down, mid, total;
};

SG3_HD SmemLayout smem_layout(const ResampleParams& p) {
    SmemLayout l;
    l.f1 = 0;
    l.f3 = round4(filter_floats(p.f1_w, p.f1_h, p.f1_sep));
    l.src = l.f3 + round4(filter_floats(p.f3_w, p.f3_h, p.f3_sep));
    l.up = l.src + round4(p.src_tile_w * p.src_tile_h);
    l.down = l.src;  // the stage-3 x pass reuses region A once stage 1 is done
    l.mid = l.src + round4(p.region_a);
    l.total = l.mid + p.mid_h * p.mid_w + 4;  // + 4: slack for padded vector reads
    return l;
}

// Fill in the tile geometry for a tile of tile_w x tile_h outputs; returns the shared
// memory needed, in floats.
// The 22 integer parameters the Python side sends (stylegan3_ops/_kernels.py `_ints`), in
// order: dst size, stage-1 factors/filter/padding, stage-3 factors/filter/offset, mode, whether
// to write the mask, and the valid window. Shared by the launcher and the CPU emulation so the
// two cannot read them differently. Returns write_mask.
template <typename Int>
inline bool read_int_params(ResampleParams& p, const Int* ints) {
    int k = 0;
    p.dst_h = (int)ints[k++]; p.dst_w = (int)ints[k++];
    p.up_x = (int)ints[k++]; p.up_y = (int)ints[k++];
    p.f1_w = (int)ints[k++]; p.f1_h = (int)ints[k++]; p.f1_sep = (int)ints[k++];
    p.p0_x = (int)ints[k++]; p.p0_y = (int)ints[k++];
    p.down_x = (int)ints[k++]; p.down_y = (int)ints[k++];
    p.f3_w = (int)ints[k++]; p.f3_h = (int)ints[k++]; p.f3_sep = (int)ints[k++];
    p.q0_x = (int)ints[k++]; p.q0_y = (int)ints[k++];
    p.mode = (int)ints[k++];
    const bool write_mask = ints[k++] != 0;
    p.valid_x0 = (int)ints[k++]; p.valid_x1 = (int)ints[k++];
    p.valid_y0 = (int)ints[k++]; p.valid_y1 = (int)ints[k++];
    return write_mask;
}

inline int tile_geometry(ResampleParams& p, int tile_w, int tile_h) {
    p.tile_w = tile_w;
    p.tile_h = tile_h;
    p.tiles_x = ceil_div(p.dst_w, tile_w);
    p.tiles_y = ceil_div(p.dst_h, tile_h);
    p.mid_w = round4((tile_w - 1) * p.down_x + p.f3_w);
    p.mid_h = (tile_h - 1) * p.down_y + p.f3_h;
    // Source samples k with k * up in [m0 - p0, m0 - p0 + mid + f1 - 2]: at most (mid + f1 - 2) / up + 1.
    p.src_tile_w = (p.mid_w + p.f1_w - 2) / p.up_x + 1;
    p.src_tile_h = (p.mid_h + p.f1_h - 2) / p.up_y + 1;
    int a = stage1_is_copy(p) ? 0 : round4(p.src_tile_w * p.src_tile_h) + (p.f1_sep ? p.src_tile_h * p.mid_w : 0);
    int b = p.f3_sep && !stage3_is_copy(p) ? p.mid_h * tile_w : 0;
    p.region_a = a > b ? a : b;
    return smem_layout(p).total;
}

// The tile with the least estimated work (halo included) whose shared memory fits in
// max_smem_bytes: the host's choice for every launch (ops.cu), also used by the CPU
// emulation when asked for "the GPU's tile". False when none fits.
inline bool pick_tile(const ResampleParams& p, int max_smem_bytes, int* tile_w, int* tile_h) {
    // (tile_w, tile_h): tile_w a multiple of 4 and tile_h even (mask bytes, paired outputs).
    static const int kTiles[][2] = {{64, 32}, {36, 36}, {32, 32}, {28, 28}, {32, 16}, {24, 24}, {20, 20},
                                    {16, 16}, {12, 12}, {16, 8}, {8, 8}, {4, 4}};
    double best_cost = -1;
    int best = -1;
    for (int i = 0; i < (int)(sizeof(kTiles) / sizeof(kTiles[0])); ++i) {
        ResampleParams q = p;
        const int floats = tile_geometry(q, kTiles[i][0], kTiles[i][1]);
        if ((double)floats * 4 > max_smem_bytes) continue;
        const double s1 = p.f1_sep ? (double)q.src_tile_h * q.mid_w * p.f1_w / p.up_x +
                                         (double)q.mid_h * q.mid_w * p.f1_h / p.up_y
                                   : (double)q.mid_h * q.mid_w * p.f1_w * p.f1_h / (p.up_x * p.up_y);
        const double s3 = p.f3_sep ? (double)q.mid_h * q.tile_w * p.f3_w + (double)q.tile_h * q.tile_w * p.f3_h
                                   : (double)q.tile_h * q.tile_w * p.f3_w * p.f3_h;
        const double mem = (double)q.src_tile_w * q.src_tile_h + (double)q.mid_h * q.mid_w + q.tile_h * q.tile_w;
        const double cost = (double)q.tiles_x * q.tiles_y * (s1 + s3 + 4 * mem + 2000);  // 2000: per-tile overhead
        if (best < 0 || cost < best_cost) {
            best_cost = cost;
            best = i;
        }
    }
    if (best < 0) return false;
    *tile_w = kTiles[best][0];
    *tile_h = kTiles[best][1];
    return true;
}

// Copy both filters to the start of shared memory (once per block).
SG3_DEV void load_filters(const ResampleParams& p, float* smem, int tid, int nt) {
    const SmemLayout l = smem_layout(p);
    const int n1 = filter_floats(p.f1_w, p.f1_h, p.f1_sep);
    const int n3 = filter_floats(p.f3_w, p.f3_h, p.f3_sep);
    for (int i = tid; i < n1; i += nt) smem[l.f1 + i] = p.f1[i];
    for (int i = tid; i < n3; i += nt) smem[l.f3 + i] = p.f3[i];
}

// The stage-2 op on one intermediate sample at global position (mx, my); sets *code to the
// 2-bit code (bit 0: not positive, bit 1: clamped) in kLreluForward.
SG3_DEV float point_op(const ResampleParams& p, float v, int plane, int mx, int my, uint32_t* code) {
    if (p.mode == kLreluForward) {
        const bool neg = !(v > 0.f);
        v = neg ? v * p.slope : v;
        v *= p.gain;
        bool clamped = false;
        if (p.clamp >= 0.f) {
            clamped = !(fabsf(v) <= p.clamp);
            v = v > p.clamp ? p.clamp : (v < -p.clamp ? -p.clamp : v);
        }
        *code = (neg ? 1u : 0u) | (clamped ? 2u : 0u);
        return v;
    }
    if (p.mode == kMaskBackward) {
        const bool valid = mx >= p.valid_x0 && mx < p.valid_x1 && my >= p.valid_y0 && my < p.valid_y1 &&
                           mx >= 0 && mx < p.mask_w && my >= 0 && my < p.mask_h;
        if (!valid) return 0.f;
        const uint8_t byte = p.mask[((int64_t)plane * p.mask_h + my) * p.mask_stride + (mx >> 2)];
        const uint32_t c = (byte >> ((mx & 3) * 2)) & 3u;
        return (c & 2u) ? 0.f : v * ((c & 1u) ? p.gain * p.slope : p.gain);
    }
    return v;
}

// --- Specialised separable passes for the generator's filters ---------------------------
// Compile-time factor and tap count: fully unrolled loops, taps in registers, and register
// windows of source samples shared by neighbouring outputs. Each reproduces exactly the
// generic loop it replaces (same sums, same order of taps); see resample_tile.

// The upsampling filter split into its U phases: output phase u uses taps (U - u) % U + U * r.
template <int U, int F>
SG3_DEV void polyphase_weights(const float* f, float (&w)[U][F / U]) {
SG3_UNROLL
    for (int u = 0; u < U; ++u)
SG3_UNROLL
        for (int r = 0; r < F / U; ++r) w[u][r] = f[(U - u) % U + U * r];
}

// Stage 1 along x: a thread makes the U intermediate samples that share one window of
// R + 1 source samples. For a group starting at mid sample mb with (mb - p0) = U * kb,
// sample mb + u takes taps t = (U - u) % U + U * r from source kb + (u > 0) + r.
template <int U, int F>
SG3_DEV void up_pass_x(const ResampleParams& p, const float* s_src, float* s_up, const float* f, int m0x, int k0x,
                       int tid, int nt) {
    constexpr int R = F / U;
    float w[U][R];
    polyphase_weights<U, F>(f, w);
    const int sw = p.src_tile_w, sh = p.src_tile_h, mw = p.mid_w;
    const int shift = pos_mod(m0x - p.p0_x, U);            // mb of group 0 is m0x - shift
    const int kb0 = (m0x - shift - p.p0_x) / U - k0x;       // its local source index (exact division)
    const int groups = (mw + shift + U - 1) / U;
    for (int i = tid; i < sh * groups; i += nt) {
        const int ly = i / groups, g = i - ly * groups;
        const float* row = s_src + ly * sw;
        const int lk = kb0 + g;
        float win[R + 1];
SG3_UNROLL
        for (int r = 0; r <= R; ++r) win[r] = (lk + r >= 0 && lk + r < sw) ? row[lk + r] : 0.f;
        const int lmb = g * U - shift;
SG3_UNROLL
        for (int u = 0; u < U; ++u) {
            const int lmx = lmb + u;
            if (lmx < 0 || lmx >= mw) continue;
            const int off = u > 0 ? 1 : 0;
            float acc = 0.f;
SG3_UNROLL
            for (int r = 0; r < R; ++r) acc += win[r + off] * w[u][r];
            s_up[ly * mw + lmx] = acc;
        }
    }
}

// Stage 1 along y plus stage 2: a thread makes U rows x 4 columns of intermediate samples
// (the 4 columns share a mask byte), from R + 1 rows x 4 columns of the x pass.
template <int U, int F>
SG3_DEV void up_pass_y(const ResampleParams& p, const float* s_up, float* s_mid, const float* f, int plane, int m0x,
                       int m0y, int k0y, int tid, int nt) {
    constexpr int R = F / U;
    float w[U][R];
    polyphase_weights<U, F>(f, w);
    const int sh = p.src_tile_h, mw = p.mid_w, mh = p.mid_h;
    const int shift = pos_mod(m0y - p.p0_y, U);
    const int kb0 = (m0y - shift - p.p0_y) / U - k0y;
    const int ygroups = (mh + shift + U - 1) / U, xgroups = mw / 4;
    uint8_t* mask_plane = p.mask ? p.mask + (int64_t)plane * p.mask_h * p.mask_stride : nullptr;
    for (int i = tid; i < ygroups * xgroups; i += nt) {
        const int gy = i / xgroups, gx = i - gy * xgroups;
        const int lk = kb0 + gy, lmx0 = gx * 4;
        float win[R + 1][4];
SG3_UNROLL
        for (int r = 0; r <= R; ++r) {
            if (lk + r >= 0 && lk + r < sh) {
                load4(s_up + (lk + r) * mw + lmx0, win[r]);
            } else {
                win[r][0] = win[r][1] = win[r][2] = win[r][3] = 0.f;
            }
        }
SG3_UNROLL
        for (int u = 0; u < U; ++u) {
            const int lmy = gy * U - shift + u;
            if (lmy < 0 || lmy >= mh) continue;
            const int my = m0y + lmy, off = u > 0 ? 1 : 0;
            float v[4];
            uint32_t byte = 0;
SG3_UNROLL
            for (int j = 0; j < 4; ++j) {
                float acc = 0.f;
SG3_UNROLL
                for (int r = 0; r < R; ++r) acc += win[r + off][j] * w[u][r];
                uint32_t code = 0;
                v[j] = point_op(p, acc, plane, m0x + lmx0 + j, my, &code);
                byte |= code << (2 * j);
            }
            store4(s_mid + lmy * mw + lmx0, v);
            if (p.mode == kLreluForward && mask_plane && my >= 0 && my < p.mask_h) {
                const int col = (m0x + lmx0) >> 2;
                if (m0x + lmx0 >= 0 && col < p.mask_stride)
                    mask_plane[(int64_t)my * p.mask_stride + col] = static_cast<uint8_t>(byte);
            }
        }
    }
}

// Stage 3 along x: a thread makes 2 neighbouring outputs of one row from a window of
// D + F intermediate samples (read as float4: the window starts at a multiple of 4).
template <int D, int F>
SG3_DEV void down_pass_x(const ResampleParams& p, const float* s_mid, float* s_down, const float* f, int tid, int nt) {
    constexpr int W = (D + F + 3) / 4 * 4;
    float w[F];
SG3_UNROLL
    for (int t = 0; t < F; ++t) w[t] = f[t];
    const int mw = p.mid_w, mh = p.mid_h, ow = p.tile_w, groups = p.tile_w / 2;
    for (int i = tid; i < mh * groups; i += nt) {
        const int lmy = i / groups, g = i - lmy * groups;
        const float* row = s_mid + lmy * mw + g * 2 * D;
        float win[W];
SG3_UNROLL
        for (int k = 0; k < W; k += 4) load4(row + k, win + k);
        float acc0 = 0.f, acc1 = 0.f;
SG3_UNROLL
        for (int t = 0; t < F; ++t) {
            acc0 += win[t] * w[t];
            acc1 += win[D + t] * w[t];
        }
        s_down[lmy * ow + 2 * g] = acc0;
        s_down[lmy * ow + 2 * g + 1] = acc1;
    }
}

// Stage 3 along y: a thread makes 2 vertically neighbouring outputs of one column.
template <typename T, int D, int F>
SG3_DEV void down_pass_y(const ResampleParams& p, const float* s_down, T* dst, const float* f, int o0x, int o0y,
                         int tid, int nt) {
    float w[F];
SG3_UNROLL
    for (int t = 0; t < F; ++t) w[t] = f[t];
    const int ow = p.tile_w, groups = p.tile_h / 2;
    for (int i = tid; i < groups * ow; i += nt) {
        const int g = i / ow, lox = i - g * ow;
        const int ox = o0x + lox, oy = o0y + 2 * g;
        if (ox >= p.dst_w || oy >= p.dst_h) continue;
        const float* col = s_down + g * 2 * D * ow + lox;
        float win[D + F];
SG3_UNROLL
        for (int k = 0; k < D + F; ++k) win[k] = col[k * ow];
        float acc0 = 0.f, acc1 = 0.f;
SG3_UNROLL
        for (int t = 0; t < F; ++t) {
            acc0 += win[t] * w[t];
            acc1 += win[D + t] * w[t];
        }
        dst[(int64_t)oy * p.dst_w + ox] = static_cast<T>(acc0);
        if (oy + 1 < p.dst_h) dst[(int64_t)(oy + 1) * p.dst_w + ox] = static_cast<T>(acc1);
    }
}

// The specialisations compiled in: (factor, taps) of the generator's filters, both directions.
#define SG3_FAST_CASES(X) X(2, 12) X(4, 24)

SG3_DEV bool up_x_fast(const ResampleParams& p, const float* s_src, float* s_up, const float* f, int m0x, int k0x,
                       int tid, int nt) {
#define SG3_CASE(U, F) \
    if (p.up_x == U && p.f1_w == F) { up_pass_x<U, F>(p, s_src, s_up, f, m0x, k0x, tid, nt); return true; }
    SG3_FAST_CASES(SG3_CASE)
#undef SG3_CASE
    return false;
}

SG3_DEV bool up_y_fast(const ResampleParams& p, const float* s_up, float* s_mid, const float* f, int plane, int m0x,
                       int m0y, int k0y, int tid, int nt) {
#define SG3_CASE(U, F) \
    if (p.up_y == U && p.f1_h == F) { up_pass_y<U, F>(p, s_up, s_mid, f, plane, m0x, m0y, k0y, tid, nt); return true; }
    SG3_FAST_CASES(SG3_CASE)
#undef SG3_CASE
    return false;
}

SG3_DEV bool down_x_fast(const ResampleParams& p, const float* s_mid, float* s_down, const float* f, int tid, int nt) {
    if (p.tile_w % 2) return false;
#define SG3_CASE(D, F) \
    if (p.down_x == D && p.f3_w == F) { down_pass_x<D, F>(p, s_mid, s_down, f, tid, nt); return true; }
    SG3_FAST_CASES(SG3_CASE)
#undef SG3_CASE
    return false;
}

template <typename T>
SG3_DEV bool down_y_fast(const ResampleParams& p, const float* s_down, T* dst, const float* f, int o0x, int o0y,
                         int tid, int nt) {
    if (p.tile_h % 2) return false;
#define SG3_CASE(D, F) \
    if (p.down_y == D && p.f3_h == F) { down_pass_y<T, D, F>(p, s_down, dst, f, o0x, o0y, tid, nt); return true; }
    SG3_FAST_CASES(SG3_CASE)
#undef SG3_CASE
    return false;
}

// Stage 1 with a full 2-D filter (config R's radial filter, in the backward pass) plus
// stage 2: a thread makes 4 neighbouring samples of one row. Their x phases repeat from
// group to group (groups start at multiples of 4), so with S = (mx0 - p0) mod U known at
// compile time every tap and window index is static; the window holds the C source
// columns the 4 samples read.
template <int U, int F, int S>
SG3_DEV void up_pass_2d(const ResampleParams& p, const float* s_src, float* s_mid, const float* f, int plane,
                        int m0x, int m0y, int k0x, int k0y, int tid, int nt) {
    constexpr int R = F / U;
    constexpr int C = R + (S + 3 + U - 1) / U - (S + U - 1) / U;  // columns spanned by the 4 samples
    const int sw = p.src_tile_w, mw = p.mid_w, mh = p.mid_h, groups = mw / 4;
    uint8_t* mask_plane = p.mask ? p.mask + (int64_t)plane * p.mask_h * p.mask_stride : nullptr;
    for (int i = tid; i < mh * groups; i += nt) {
        const int lmy = i / groups, lmx0 = (i - lmy * groups) * 4;
        const int my = m0y + lmy, mx0 = m0x + lmx0;
        const int t0y = pos_mod(p.p0_y - my, U);
        const int lky = (my + t0y - p.p0_y) / U - k0y;
        const int lk0 = (mx0 + (U - S) % U - p.p0_x) / U - k0x;  // source column of sample 0's first tap
        float acc[4] = {0.f, 0.f, 0.f, 0.f};
        for (int ry = 0; ry < R; ++ry) {
            const float* row = s_src + (lky + ry) * sw;
            float win[C];
            SG3_UNROLL
            for (int c = 0; c < C; ++c) win[c] = (lk0 + c < sw) ? row[lk0 + c] : 0.f;
            const float* frow = f + (t0y + U * ry) * F;
            SG3_UNROLL
            for (int j = 0; j < 4; ++j) {
                const int t0x = (U - (S + j) % U) % U;               // static after unrolling
                const int dk = (S + j + U - 1) / U - (S + U - 1) / U;  // static after unrolling
                SG3_UNROLL
                for (int rx = 0; rx < R; ++rx) acc[j] += win[dk + rx] * frow[t0x + U * rx];
            }
        }
        float v[4];
        uint32_t byte = 0;
        SG3_UNROLL
        for (int j = 0; j < 4; ++j) {
            uint32_t code = 0;
            v[j] = point_op(p, acc[j], plane, mx0 + j, my, &code);
            byte |= code << (2 * j);
        }
        store4(s_mid + lmy * mw + lmx0, v);
        if (p.mode == kLreluForward && mask_plane && my >= 0 && my < p.mask_h) {
            const int col = mx0 >> 2;
            if (mx0 >= 0 && col < p.mask_stride) mask_plane[(int64_t)my * p.mask_stride + col] = static_cast<uint8_t>(byte);
        }
    }
}

// Stage 3 with a full 2-D filter (config R's radial filter, forward): a thread makes 4
// neighbouring outputs of one row; per filter row, one window of intermediate samples
// and the row of taps are read as float4.
template <typename T, int D, int F>
SG3_DEV void down_pass_2d(const ResampleParams& p, const float* s_mid, T* dst, const float* f, int o0x, int o0y,
                          int tid, int nt) {
    constexpr int B = 4;
    constexpr int W = ((B - 1) * D + F + 3) / 4 * 4;
    const int mw = p.mid_w, groups = p.tile_w / B;
    for (int i = tid; i < p.tile_h * groups; i += nt) {
        const int loy = i / groups, g = i - loy * groups;
        const int oy = o0y + loy, ox0 = o0x + g * B;
        if (oy >= p.dst_h || ox0 >= p.dst_w) continue;
        float acc[B];
        SG3_UNROLL
        for (int b = 0; b < B; ++b) acc[b] = 0.f;
        for (int ty = 0; ty < F; ++ty) {
            const float* row = s_mid + (loy * D + ty) * mw + g * B * D;
            float win[W], w[F];
            SG3_UNROLL
            for (int k = 0; k < W; k += 4) load4(row + k, win + k);
            SG3_UNROLL
            for (int k = 0; k < F; k += 4) load4(f + ty * F + k, w + k);
            SG3_UNROLL
            for (int t = 0; t < F; ++t)
                SG3_UNROLL
                for (int b = 0; b < B; ++b) acc[b] += win[b * D + t] * w[t];
        }
        SG3_UNROLL
        for (int b = 0; b < B; ++b)
            if (ox0 + b < p.dst_w) dst[(int64_t)oy * p.dst_w + ox0 + b] = static_cast<T>(acc[b]);
    }
}

SG3_DEV bool up_2d_fast(const ResampleParams& p, const float* s_src, float* s_mid, const float* f, int plane,
                        int m0x, int m0y, int k0x, int k0y, int tid, int nt) {
    if (p.up_x != 2 || p.up_y != 2 || p.f1_w != 12 || p.f1_h != 12) return false;
    if (pos_mod(m0x - p.p0_x, 2) == 0)
        up_pass_2d<2, 12, 0>(p, s_src, s_mid, f, plane, m0x, m0y, k0x, k0y, tid, nt);
    else
        up_pass_2d<2, 12, 1>(p, s_src, s_mid, f, plane, m0x, m0y, k0x, k0y, tid, nt);
    return true;
}

template <typename T>
SG3_DEV bool down_2d_fast(const ResampleParams& p, const float* s_mid, T* dst, const float* f, int o0x, int o0y,
                          int tid, int nt) {
    if (p.down_x != 2 || p.down_y != 2 || p.f3_w != 12 || p.f3_h != 12 || p.tile_w % 4) return false;
    down_pass_2d<T, 2, 12>(p, s_mid, dst, f, o0x, o0y, tid, nt);
    return true;
}

// One output tile of one plane. Shared memory layout (floats):
//   [f1][f3][region A: source tile + stage-1 x-pass | stage-3 x-pass][mid tile]
template <typename T>
SG3_DEV void resample_tile(const ResampleParams& p, int tile, int plane, float* smem, int tid, int nt) {
    const SmemLayout l = smem_layout(p);
    const float* sf1 = smem + l.f1;
    const float* sf3 = smem + l.f3;
    float* s_src = smem + l.src;    // [src_tile_h][src_tile_w]
    float* s_up = smem + l.up;      // [src_tile_h][mid_w]  (separable f1)
    float* s_down = smem + l.down;  // [mid_h][tile_w]      (separable f3)
    float* s_mid = smem + l.mid;    // [mid_h][mid_w]

    const int sw = p.src_tile_w, sh = p.src_tile_h, mw = p.mid_w, mh = p.mid_h, ow = p.tile_w, oh = p.tile_h;
    const int tile_x = tile % p.tiles_x, tile_y = tile / p.tiles_x;
    const int o0x = tile_x * ow, o0y = tile_y * oh;              // first output of the tile
    const int m0x = o0x * p.down_x - p.q0_x, m0y = o0y * p.down_y - p.q0_y;  // first mid sample
    const int k0x = ceil_div(m0x - p.p0_x, p.up_x), k0y = ceil_div(m0y - p.p0_y, p.up_y);  // first source sample

    // Copy stages (stage1_is_copy, stage3_is_copy): bit-identical to the general passes
    // (same products in the same order), without their shared-memory round trips.
    const bool direct_in = stage1_is_copy(p);
    const bool direct_out = stage3_is_copy(p);

    // 1. Source tile (plus bias), zero outside the image.
    if (direct_in) {
        const T* src = static_cast<const T*>(p.src) + (int64_t)plane * p.src_h * p.src_w;
        const float bias = p.bias ? static_cast<float>(static_cast<const T*>(p.bias)[plane % p.channels]) : 0.f;
        const float gx_ = sf1[0], gy_ = sf1[1];
        for (int i = tid; i < mh * mw; i += nt) {
            const int ly = i / mw, lx = i - ly * mw;
            const int gy = k0y + ly, gx = k0x + lx;
            float v = 0.f;
            if (gx >= 0 && gx < p.src_w && gy >= 0 && gy < p.src_h)
                v = static_cast<float>(src[(int64_t)gy * p.src_w + gx]) + bias;
            s_mid[i] = v * gx_ * gy_;
        }
    } else {
        const T* src = static_cast<const T*>(p.src) + (int64_t)plane * p.src_h * p.src_w;
        const float bias = p.bias ? static_cast<float>(static_cast<const T*>(p.bias)[plane % p.channels]) : 0.f;
        for (int i = tid; i < sw * sh; i += nt) {
            const int ly = i / sw, lx = i - ly * sw;
            const int gy = k0y + ly, gx = k0x + lx;
            float v = 0.f;
            if (gx >= 0 && gx < p.src_w && gy >= 0 && gy < p.src_h)
                v = static_cast<float>(src[(int64_t)gy * p.src_w + gx]) + bias;
            s_src[i] = v;
        }
    }
    SG3_SYNC();

    // 2a. Separable stage 1, x pass: upsample and filter the rows of the source tile.
    if (p.f1_sep && !direct_in) {
        const float* fx = sf1;
        const bool fast = up_x_fast(p, s_src, s_up, fx, m0x, k0x, tid, nt);
        for (int i = fast ? sh * mw : tid; i < sh * mw; i += nt) {
            const int ly = i / mw, lmx = i - ly * mw;
            const int m = m0x + lmx;
            const int t0 = pos_mod(p.p0_x - m, p.up_x);  // first tap that meets a real sample
            const int lk = (m + t0 - p.p0_x) / p.up_x - k0x;  // exact division
            const float* row = s_src + ly * sw + lk;
            float acc = 0.f;
            for (int t = t0, r = 0; t < p.f1_w; t += p.up_x, ++r) acc += row[r] * fx[t];
            s_up[i] = acc;
        }
        SG3_SYNC();
    }

    // 2b. Stage 1 along y (or in 2-D) and stage 2, four neighbouring samples along x per
    // step so that the mask byte they share is written by one thread.
    const bool fast_y = direct_in ||
                        (p.f1_sep ? up_y_fast(p, s_up, s_mid, sf1 + p.f1_w, plane, m0x, m0y, k0y, tid, nt)
                                  : up_2d_fast(p, s_src, s_mid, sf1, plane, m0x, m0y, k0x, k0y, tid, nt));
    if (!fast_y) {
        const int groups = mw / 4;
        uint8_t* mask_plane = p.mask ? p.mask + (int64_t)plane * p.mask_h * p.mask_stride : nullptr;
        for (int g = tid; g < mh * groups; g += nt) {
            const int lmy = g / groups, lmx0 = (g - lmy * groups) * 4;
            const int my = m0y + lmy;
            const int t0y = pos_mod(p.p0_y - my, p.up_y);
            const int lky = (my + t0y - p.p0_y) / p.up_y - k0y;
            uint32_t byte = 0;
            for (int j = 0; j < 4; ++j) {
                const int lmx = lmx0 + j, mx = m0x + lmx;
                float acc = 0.f;
                if (p.f1_sep) {
                    const float* fy = sf1 + p.f1_w;
                    const float* col = s_up + lky * mw + lmx;
                    for (int t = t0y, r = 0; t < p.f1_h; t += p.up_y, ++r) acc += col[r * mw] * fy[t];
                } else {
                    const int t0x = pos_mod(p.p0_x - mx, p.up_x);
                    const int lkx = (mx + t0x - p.p0_x) / p.up_x - k0x;
                    for (int ty = t0y, ry = 0; ty < p.f1_h; ty += p.up_y, ++ry) {
                        const float* row = s_src + (lky + ry) * sw + lkx;
                        const float* frow = sf1 + ty * p.f1_w;
                        for (int tx = t0x, rx = 0; tx < p.f1_w; tx += p.up_x, ++rx) acc += row[rx] * frow[tx];
                    }
                }
                uint32_t code = 0;
                s_mid[lmy * mw + lmx] = point_op(p, acc, plane, mx, my, &code);
                byte |= code << (2 * j);
            }
            // Forward tiles start at multiples of 4 along x (the host checks), so a group is
            // one whole mask byte; overlapping tiles write identical bytes.
            if (p.mode == kLreluForward && mask_plane && my >= 0 && my < p.mask_h) {
                const int col = (m0x + lmx0) >> 2;
                if (m0x + lmx0 >= 0 && col < p.mask_stride)
                    mask_plane[(int64_t)my * p.mask_stride + col] = static_cast<uint8_t>(byte);
            }
        }
    }
    SG3_SYNC();

    // 3. Filter the intermediate tile and keep every down-th sample.
    T* dst = static_cast<T*>(p.dst) + (int64_t)plane * p.dst_h * p.dst_w;
    if (direct_out) {
        const float gx_ = sf3[0], gy_ = sf3[1];
        for (int i = tid; i < oh * ow; i += nt) {
            const int loy = i / ow, lox = i - loy * ow;
            const int oy = o0y + loy, ox = o0x + lox;
            if (oy < p.dst_h && ox < p.dst_w) dst[(int64_t)oy * p.dst_w + ox] = static_cast<T>(s_mid[loy * mw + lox] * gx_ * gy_);
        }
    } else if (p.f3_sep) {
        const float* fx = sf3;
        const float* fy = sf3 + p.f3_w;
        const bool fast_x = down_x_fast(p, s_mid, s_down, fx, tid, nt);
        for (int i = fast_x ? mh * ow : tid; i < mh * ow; i += nt) {
            const int lmy = i / ow, lox = i - lmy * ow;
            const float* row = s_mid + lmy * mw + lox * p.down_x;
            float acc = 0.f;
            for (int t = 0; t < p.f3_w; ++t) acc += row[t] * fx[t];
            s_down[i] = acc;
        }
        SG3_SYNC();
        const bool fast_y3 = down_y_fast<T>(p, s_down, dst, fy, o0x, o0y, tid, nt);
        for (int i = fast_y3 ? oh * ow : tid; i < oh * ow; i += nt) {
            const int loy = i / ow, lox = i - loy * ow;
            const int oy = o0y + loy, ox = o0x + lox;
            if (oy < p.dst_h && ox < p.dst_w) {
                const float* col = s_down + loy * p.down_y * ow + lox;
                float acc = 0.f;
                for (int t = 0; t < p.f3_h; ++t) acc += col[t * ow] * fy[t];
                dst[(int64_t)oy * p.dst_w + ox] = static_cast<T>(acc);
            }
        }
    } else {
        const bool fast = down_2d_fast<T>(p, s_mid, dst, sf3, o0x, o0y, tid, nt);
        for (int i = fast ? oh * ow : tid; i < oh * ow; i += nt) {
            const int loy = i / ow, lox = i - loy * ow;
            const int oy = o0y + loy, ox = o0x + lox;
            if (oy < p.dst_h && ox < p.dst_w) {
                float acc = 0.f;
                for (int ty = 0; ty < p.f3_h; ++ty) {
                    const float* row = s_mid + (loy * p.down_y + ty) * mw + lox * p.down_x;
                    const float* frow = sf3 + ty * p.f3_w;
                    for (int tx = 0; tx < p.f3_w; ++tx) acc += row[tx] * frow[tx];
                }
                dst[(int64_t)oy * p.dst_w + ox] = static_cast<T>(acc);
            }
        }
    }
    SG3_SYNC();  // shared memory is reused by the next plane
}

}  // namespace sg3
