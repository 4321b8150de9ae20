/* Fused float32 kernels for decoding one token (see kernels.py for what they guarantee).
 *
 * Each function does, on one position, what a handful of PyTorch ops do in
 * hrmcode.model.layers, in one call: that per-op overhead, not arithmetic, is what a
 * batch-1 decode step of a small model spends most of its time on.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#define LANES 16

/* Sum of a[i] * b[i] in LANES independent partial sums, so the compiler vectorizes it without
 * being allowed to reorder floating-point additions (no -ffast-math). */
static float dot(const float *a, const float *b, int n) {
    float acc[LANES] = {0};
    int i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int j = 0; j < LANES; j++) acc[j] += a[i + j] * b[i + j];
    float sum = 0.0f;
    for (int j = 0; j < LANES; j++) sum += acc[j];
    for (; i < n; i++) sum += a[i] * b[i];
    return sum;
}

/* Rotate-half rotary embedding of x into out: out = x * cos + cat(-x[half:], x[:half]) * sin. */
static void rotate(const float *x, const float *cos, const float *sin, int dim, float *out) {
    int half = dim / 2;
    for (int i = 0; i < half; i++) {
        out[i] = x[i] * cos[i] - x[i + half] * sin[i];
        out[i + half] = x[i + half] * cos[i + half] + x[i] * sin[i + half];
    }
}

/* One new position of causal self-attention for every head.
 *
 * qkv: [3 * heads * head_dim], the fused projection (q, then k, then v, each head-major).
 * kcache, vcache: [heads, capacity, head_dim]; positions 0..pos-1 are filled, this call writes the
 * rotated key and the value at pos. cos, sin: [head_dim], the rotary table row of pos.
 * out: [heads * head_dim], softmax(q k^T / sqrt(head_dim)) v over positions 0..pos.
 * scores: scratch of at least pos + 1 floats.
 */
void hrm_rope_attend(const float *qkv, float *kcache, float *vcache, int64_t capacity, int64_t pos,
                     const float *cos, const float *sin, int heads, int head_dim, float *out, float *scores) {
    const int hidden = heads * head_dim;
    const float scale = 1.0f / sqrtf((float)head_dim);
    float q[512];
    for (int h = 0; h < heads; h++) {
        float *keys = kcache + (int64_t)h * capacity * head_dim;
        float *values = vcache + (int64_t)h * capacity * head_dim;
        rotate(qkv + h * head_dim, cos, sin, head_dim, q);
        rotate(qkv + hidden + h * head_dim, cos, sin, head_dim, keys + pos * head_dim);
        memcpy(values + pos * head_dim, qkv + 2 * hidden + h * head_dim, sizeof(float) * head_dim);

        float max = -INFINITY;
        for (int64_t t = 0; t <= pos; t++) {
            scores[t] = dot(q, keys + t * head_dim, head_dim) * scale;
            if (scores[t] > max) max = scores[t];
        }
        float total = 0.0f;
        for (int64_t t = 0; t <= pos; t++) {
            scores[t] = expf(scores[t] - max);
            total += scores[t];
        }
        float *o = out + h * head_dim;
        float acc[512] = {0};
        for (int64_t t = 0; t <= pos; t++) {
            const float w = scores[t];
            const float *v = values + t * head_dim;
            for (int i = 0; i < head_dim; i++) acc[i] += w * v[i];
        }
        for (int i = 0; i < head_dim; i++) o[i] = acc[i] / total;
    }
}

/* h = rms_norm(h + delta) in place: (h + delta) * rsqrt(mean((h + delta)^2) + eps). */
void hrm_add_rms_norm(float *h, const float *delta, int n, float eps) {
    double squares = 0.0;
    for (int i = 0; i < n; i++) {
        h[i] += delta[i];
        squares += (double)h[i] * h[i];
    }
    const float scale = 1.0f / sqrtf((float)(squares / n) + eps);
    for (int i = 0; i < n; i++) h[i] *= scale;
}

/* out = silu(gate) * up, where gate_up = [gate (inner), up (inner)]. */
void hrm_silu_mul(const float *gate_up, float *out, int inner) {
    for (int i = 0; i < inner; i++) {
        const float g = gate_up[i];
        out[i] = g / (1.0f + expf(-g)) * gate_up[inner + i];
    }
}

/* The ABI version this file implements; kernels.py refuses a library that reports another. */
int hrm_kernels_version(void) { return 1; }
