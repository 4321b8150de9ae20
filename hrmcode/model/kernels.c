/* Fused float32 kernels for decoding one token (see kernels.py for what they guarantee).
 *
 * Each function does, on one position, what a handful of PyTorch ops do in
 * hrmcode.model.layers, in one call: that per-op overhead, not arithmetic, is what a
 * batch-1 decode step of a small model spends most of its time on.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>
#if defined(__AVX512F__) && defined(__AVX512VNNI__)
#include <immintrin.h>
#define HRM_VNNI 1
#endif

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

/* ---- int8 linear layers: int8 weights x int8 activations quantized per call ----------------------
 *
 * Weights: int8 [n, k] row-major, symmetric per output row (w ~ q * wscale[n]); rowsum[n] = sum_k q[n, k].
 * Activations: each input row is quantized to uint8 on the fly, asymmetric over [min(x, 0), max(x, 0)]:
 *   scale = (hi - lo) / 255, zero = clamp(round(-lo / scale), 0, 255), q = clamp(round(x / scale) + zero, 0, 255).
 * Output: y[m, n] = (xscale[m] * wscale[n]) * (float)(sum_k qx[m, k] * qw[n, k] - zero[m] * rowsum[n]).
 * hrmcode.quantize.torch_backend.dynamic_int8_reference computes the same numbers with PyTorch ops. */

static void quantize_row(const float *x, int k, uint8_t *q, float *scale_out, int32_t *zero_out) {
    float lo = 0.0f, hi = 0.0f;
    for (int i = 0; i < k; i++) {
        lo = x[i] < lo ? x[i] : lo;
        hi = x[i] > hi ? x[i] : hi;
    }
    float scale = (hi - lo) / 255.0f;
    if (scale == 0.0f) scale = 1.0f; /* an all-zero row */
    int32_t zero = (int32_t)nearbyintf(-lo / scale);
    zero = zero < 0 ? 0 : (zero > 255 ? 255 : zero);
    const float inverse = 1.0f / scale;
    for (int i = 0; i < k; i++) {
        int32_t v = (int32_t)nearbyintf(x[i] * inverse) + zero;
        q[i] = (uint8_t)(v < 0 ? 0 : (v > 255 ? 255 : v));
    }
    *scale_out = scale;
    *zero_out = zero;
}

/* acc[r * stride] = sum_i x[i] * w[r, i] for rows r0 .. r0 + 3 (exact int32). */
static void dot4(const uint8_t *x, const int8_t *w, int k, int32_t *acc) {
    const int8_t *w0 = w, *w1 = w + k, *w2 = w + 2 * k, *w3 = w + 3 * k;
#ifdef HRM_VNNI
    if (k % 64 == 0) {
        __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
        for (int i = 0; i < k; i += 64) {
            const __m512i xv = _mm512_loadu_si512(x + i);
            a0 = _mm512_dpbusd_epi32(a0, xv, _mm512_loadu_si512(w0 + i));
            a1 = _mm512_dpbusd_epi32(a1, xv, _mm512_loadu_si512(w1 + i));
            a2 = _mm512_dpbusd_epi32(a2, xv, _mm512_loadu_si512(w2 + i));
            a3 = _mm512_dpbusd_epi32(a3, xv, _mm512_loadu_si512(w3 + i));
        }
        acc[0] = _mm512_reduce_add_epi32(a0);
        acc[1] = _mm512_reduce_add_epi32(a1);
        acc[2] = _mm512_reduce_add_epi32(a2);
        acc[3] = _mm512_reduce_add_epi32(a3);
        return;
    }
#endif
    int32_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (int i = 0; i < k; i++) {
        const int32_t xi = x[i];
        s0 += xi * w0[i];
        s1 += xi * w1[i];
        s2 += xi * w2[i];
        s3 += xi * w3[i];
    }
    acc[0] = s0, acc[1] = s1, acc[2] = s2, acc[3] = s3;
}

static int32_t dot1(const uint8_t *x, const int8_t *w, int k) {
    int32_t s = 0;
    for (int i = 0; i < k; i++) s += (int32_t)x[i] * w[i];
    return s;
}

/* y [m, n] = x [m, k] @ dequantized(w).T, as described above. qx: scratch of m * k bytes. */
void hrm_qlinear(const float *x, int64_t m, int k, const int8_t *w, const float *wscale, const int32_t *rowsum,
                 int n, float *y, uint8_t *qx) {
    float xscale[64];
    int32_t xzero[64];
    for (int64_t m0 = 0; m0 < m; m0 += 64) { /* rows in chunks, so the weights are read once per 64 rows */
        const int rows = (int)(m - m0 < 64 ? m - m0 : 64);
        for (int j = 0; j < rows; j++) quantize_row(x + (m0 + j) * k, k, qx + (int64_t)j * k, &xscale[j], &xzero[j]);
        int r = 0;
        for (; r + 4 <= n; r += 4) {
            for (int j = 0; j < rows; j++) {
                int32_t acc[4];
                dot4(qx + (int64_t)j * k, w + (int64_t)r * k, k, acc);
                float *out = y + (m0 + j) * n + r;
                for (int t = 0; t < 4; t++)
                    out[t] = (xscale[j] * wscale[r + t]) * (float)(acc[t] - xzero[j] * rowsum[r + t]);
            }
        }
        for (; r < n; r++)
            for (int j = 0; j < rows; j++) {
                int32_t acc = dot1(qx + (int64_t)j * k, w + (int64_t)r * k, k);
                y[(m0 + j) * n + r] = (xscale[j] * wscale[r]) * (float)(acc - xzero[j] * rowsum[r]);
            }
    }
}

/* ---- one whole block for one position, every projection an int8 linear ------------------------------ */

typedef struct {
    const int8_t *weight;
    const float *scale;
    const int32_t *rowsum;
    int32_t out_features, in_features;
} hrm_q8_linear;

typedef struct {
    hrm_q8_linear qkv, o, gate_up, down;
} hrm_q8_block;

/* h [hidden] = block(h) in place: what hrm_rope_attend, hrm_add_rms_norm, hrm_silu_mul and hrm_qlinear do
 * one after the other. scratch: 3 * hidden + hidden + 2 * inner + inner + (pos + 1) floats;
 * qscratch: max(hidden, inner) bytes. */
void hrm_block_q8(const hrm_q8_block *b, float *h, int heads, int head_dim, float eps, float *kcache, float *vcache,
                  int64_t capacity, int64_t pos, const float *cos, const float *sin, float *scratch, uint8_t *qscratch) {
    const int hidden = heads * head_dim, inner = b->down.in_features;
    float *qkv = scratch, *attended = qkv + 3 * hidden, *projected = attended + hidden;
    float *gated = projected + 2 * inner, *scores = gated + inner;
    hrm_qlinear(h, 1, hidden, b->qkv.weight, b->qkv.scale, b->qkv.rowsum, b->qkv.out_features, qkv, qscratch);
    hrm_rope_attend(qkv, kcache, vcache, capacity, pos, cos, sin, heads, head_dim, attended, scores);
    hrm_qlinear(attended, 1, hidden, b->o.weight, b->o.scale, b->o.rowsum, hidden, projected, qscratch);
    hrm_add_rms_norm(h, projected, hidden, eps);
    hrm_qlinear(h, 1, hidden, b->gate_up.weight, b->gate_up.scale, b->gate_up.rowsum, 2 * inner, projected, qscratch);
    hrm_silu_mul(projected, gated, inner);
    hrm_qlinear(gated, 1, inner, b->down.weight, b->down.scale, b->down.rowsum, hidden, projected, qscratch);
    hrm_add_rms_norm(h, projected, hidden, eps);
}

/* hrm_block_q8 for n blocks in a row, block i with its own KV cache (kcaches[i], vcaches[i]). */
void hrm_stack_q8(const hrm_q8_block *blocks, int n, float *h, int heads, int head_dim, float eps,
                  float *const *kcaches, float *const *vcaches, int64_t capacity, int64_t pos, const float *cos,
                  const float *sin, float *scratch, uint8_t *qscratch) {
    for (int i = 0; i < n; i++)
        hrm_block_q8(&blocks[i], h, heads, head_dim, eps, kcaches[i], vcaches[i], capacity, pos, cos, sin, scratch,
                     qscratch);
}

/* The ABI version this file implements; kernels.py refuses a library that reports another. */
int hrm_kernels_version(void) { return 4; }
