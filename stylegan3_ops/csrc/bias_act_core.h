// Activations of bias_act with their first and second derivatives, for one sample.
// Shared by the CUDA kernel and its CPU emulation; the formulas follow the PyTorch
// functions the reference implementation calls (stylegan3_ops/bias_act.py).
#pragma once

#include "common.h"

namespace sg3 {

enum Activation : int {
    kLinear = 0, kRelu = 1, kLrelu = 2, kTanh = 3, kSigmoid = 4,
    kElu = 5, kSelu = 6, kSoftplus = 7, kSwish = 8,
};

enum BiasActMode : int {
    kBiasActForward = 0,  // out = clamp(act(x + b) * gain)
    kBiasActGrad = 1,     // out = dy * d out / d x
    kBiasActGrad2 = 2,    // out = ggx * dy * d^2 out / d x^2  (the x-part of the grad's gradient)
};

constexpr float kSeluAlpha = 1.6732632423543772848170429916717f;
constexpr float kSeluScale = 1.0507009873554804934193349852946f;
constexpr float kSoftplusThreshold = 20.f;  // torch's default: linear above it

SG3_HD float sigmoidf_(float x) { return 1.f / (1.f + expf(-x)); }

SG3_HD float act_value(int act, float x, float alpha) {
    switch (act) {
        case kRelu: return x > 0.f ? x : 0.f;
        case kLrelu: return x > 0.f ? x : x * alpha;
        case kTanh: return tanhf(x);
        case kSigmoid: return sigmoidf_(x);
        case kElu: return x > 0.f ? x : expm1f(x);
        case kSelu: return kSeluScale * (x > 0.f ? x : kSeluAlpha * expm1f(x));
        case kSoftplus: return x > kSoftplusThreshold ? x : log1pf(expf(x));
        case kSwish: return x * sigmoidf_(x);
        default: return x;
    }
}

SG3_HD float act_deriv(int act, float x, float alpha) {
    switch (act) {
        case kRelu: return x > 0.f ? 1.f : 0.f;
        case kLrelu: return x > 0.f ? 1.f : alpha;
        case kTanh: { const float t = tanhf(x); return 1.f - t * t; }
        case kSigmoid: { const float s = sigmoidf_(x); return s * (1.f - s); }
        case kElu: return x > 0.f ? 1.f : expf(x);
        case kSelu: return x > 0.f ? kSeluScale : kSeluScale * kSeluAlpha * expf(x);
        case kSoftplus: return x > kSoftplusThreshold ? 1.f : sigmoidf_(x);
        case kSwish: { const float s = sigmoidf_(x); return s * (1.f + x * (1.f - s)); }
        default: return 1.f;
    }
}

SG3_HD float act_deriv2(int act, float x, float alpha) {
    switch (act) {
        case kTanh: { const float t = tanhf(x); return -2.f * t * (1.f - t * t); }
        case kSigmoid: { const float s = sigmoidf_(x); return s * (1.f - s) * (1.f - 2.f * s); }
        case kElu: return x > 0.f ? 0.f : expf(x);
        case kSelu: return x > 0.f ? 0.f : kSeluScale * kSeluAlpha * expf(x);
        case kSoftplus: { if (x > kSoftplusThreshold) return 0.f; const float s = sigmoidf_(x); return s * (1.f - s); }
        case kSwish: { const float s = sigmoidf_(x); return s * (1.f - s) * (2.f + x * (1.f - 2.f * s)); }
        default: return 0.f;  // linear, relu, lrelu: piecewise linear
    }
}

// One sample of bias_act in any mode. z = x + b; a = dy (grad modes); c = ggx (kBiasActGrad2).
// clamp < 0: no clamping. Clamping passes gradients where |act(z) * gain| <= clamp.
SG3_HD float bias_act_one(int mode, int act, float z, float a, float c, float alpha, float gain, float clamp) {
    if (mode == kBiasActForward) {
        float y = act_value(act, z, alpha) * gain;
        if (clamp >= 0.f) y = y > clamp ? clamp : (y < -clamp ? -clamp : y);
        return y;
    }
    if (clamp >= 0.f && !(fabsf(act_value(act, z, alpha) * gain) <= clamp)) return 0.f;
    if (mode == kBiasActGrad) return a * gain * act_deriv(act, z, alpha);
    return c * a * gain * act_deriv2(act, z, alpha);
}

// Index along the bias dimension of element i (memory order) of a dense tensor whose bias
// dimension has the given stride and size. 32-bit arithmetic unless the tensor is "wide".
SG3_HD int64_t bias_channel(int64_t i, int64_t stride, int64_t size, bool wide) {
    return wide ? (i / stride) % size : (int64_t)(((uint32_t)i / (uint32_t)stride) % (uint32_t)size);
}

// V consecutive elements starting at element i0, in place in v. The channel is found with
// one division per chunk and then walked: it advances whenever the position within the
// current run of `stride` elements wraps (any stride, e.g. 1 for channels-last, and runs
// that do not line up with the chunks, e.g. 150 x 150 planes in chunks of 8).
// ACT >= 0 fixes the activation at compile time (the switch folds away); -1 reads `act`.
// Shared by the CUDA kernel (16-byte vectors) and the CPU emulation (same chunking).
template <int V, int ACT, typename BT>
SG3_HD void bias_act_span(float (&v)[V], const float (&a)[V], const float (&c)[V], int64_t i0, const BT* b,
                          int64_t stride, int64_t size, bool wide, int mode, int act, float alpha, float gain,
                          float clamp) {
    if (b) {
        const int64_t q = wide ? i0 / stride : (int64_t)((uint32_t)i0 / (uint32_t)stride);
        int64_t r = i0 - q * stride;  // position within the current run of one channel
        int64_t ch = wide ? q % size : (int64_t)((uint32_t)q % (uint32_t)size);
        float bv = static_cast<float>(b[ch]);
SG3_UNROLL
        for (int j = 0; j < V; ++j) {
            v[j] += bv;
            if (j + 1 < V && ++r == stride) {
                r = 0;
                ch = ch + 1 == size ? 0 : ch + 1;
                bv = static_cast<float>(b[ch]);
            }
        }
    }
    const int ac = ACT >= 0 ? ACT : act;
SG3_UNROLL
    for (int j = 0; j < V; ++j) v[j] = bias_act_one(mode, ac, v[j], a[j], c[j], alpha, gain, clamp);
}

}  // namespace sg3
