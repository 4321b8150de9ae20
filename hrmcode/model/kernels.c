/* Fused CPU kernels for generation (see kernels.py for what they guarantee).
 *
 * The block kernels do, for one or a few positions, what a handful of PyTorch ops do in
 * hrmcode.model.layers, in one call: that per-op overhead, not arithmetic, is what a batch-1
 * decode step of a small model spends most of its time on. The int8 kernels are the matmuls of
 * hrmcode.quantize.torch_backend.DynamicInt8Linear, and whole int8 blocks.
 */
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif
#if defined(__AVX512F__) && defined(__AVX512VNNI__)
#define HRM_VNNI 1
#endif
/* Without AVX-512: AVX2 with FMA and F16C (x86-64-v3: Haswell, Zen and later) runs the same loops 8 lanes wide.
 * The int8 matmul needs only AVX2, and takes it whenever VNNI is missing (see qgemm). */
#if !defined(__AVX512F__) && defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define HRM_AVX2 1
#endif

#define LANES 16

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
 * Two versions: hrm_rope_attend keeps the cache in float32 (float models, the same cache PyTorch
 * reads); hrm_rope_attend_h in float16 (int8 models, whose cache only these kernels touch: half
 * the memory; keys and values are rounded to float16 once, when written). */
/* sum_i q[i] * k[i], and acc[i] += w * v[i], for each cache type. Partial sums in LANES independent lanes, so the
 * float32 loops vectorize without -ffast-math; the float16 ones convert 16 values per instruction. */
static float dot_f32(const float *q, const float *k, int n) {
    float acc[LANES] = {0};
    int i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int j = 0; j < LANES; j++) acc[j] += q[i + j] * k[i + j];
    float sum = 0.0f;
    for (int j = 0; j < LANES; j++) sum += acc[j];
    for (; i < n; i++) sum += q[i] * k[i];
    return sum;
}

static void axpy_f32(float *acc, float w, const float *v, int n) {
    for (int i = 0; i < n; i++) acc[i] += w * v[i];
}

#ifdef HRM_AVX2
static float sum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}
#endif

static float dot_f16(const float *q, const _Float16 *k, int n) {
    int i = 0;
    float sum = 0.0f;
#ifdef __AVX512F__
    __m512 acc = _mm512_setzero_ps();
    for (; i + 16 <= n; i += 16)
        acc = _mm512_fmadd_ps(_mm512_loadu_ps(q + i), _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(k + i))),
                              acc);
    sum = _mm512_reduce_add_ps(acc);
#elif defined(HRM_AVX2)
    __m256 acc = _mm256_setzero_ps();
    for (; i + 8 <= n; i += 8)
        acc = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(k + i))), acc);
    sum = sum8(acc);
#endif
    for (; i < n; i++) sum += q[i] * (float)k[i];
    return sum;
}

/* scores[t] = q . keys[t] for count consecutive cached positions of n values each. The float16 version takes 4
 * positions per pass and reduces their 4 sums together (one horizontal sum per position is what dominates a
 * 64-value dot product). */
static void dots_f32(const float *q, const float *keys, int64_t count, int n, float *scores) {
    for (int64_t t = 0; t < count; t++) scores[t] = dot_f32(q, keys + t * n, n);
}

static void dots_f16(const float *q, const _Float16 *keys, int64_t count, int n, float *scores) {
    int64_t t = 0;
#ifdef __AVX512F__
    if (n % 16 == 0)
        for (; t + 4 <= count; t += 4) {
            const _Float16 *k = keys + t * n;
            __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
            for (int i = 0; i < n; i += 16) {
                const __m512 qv = _mm512_loadu_ps(q + i);
#define KEY(p) _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(k + (p) * n + i)))
                a0 = _mm512_fmadd_ps(qv, KEY(0), a0);
                a1 = _mm512_fmadd_ps(qv, KEY(1), a1);
                a2 = _mm512_fmadd_ps(qv, KEY(2), a2);
                a3 = _mm512_fmadd_ps(qv, KEY(3), a3);
#undef KEY
            }
#define HALVES(a) \
    _mm256_add_ps(_mm512_castps512_ps256(a), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1)))
            const __m256 h =
                _mm256_hadd_ps(_mm256_hadd_ps(HALVES(a0), HALVES(a1)), _mm256_hadd_ps(HALVES(a2), HALVES(a3)));
#undef HALVES
            _mm_storeu_ps(scores + t, _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)));
        }
#elif defined(HRM_AVX2)
    if (n % 8 == 0)
        for (; t + 4 <= count; t += 4) {
            const _Float16 *k = keys + t * n;
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
            for (int i = 0; i < n; i += 8) {
                const __m256 qv = _mm256_loadu_ps(q + i);
#define KEY(p) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(k + (p) * n + i)))
                a0 = _mm256_fmadd_ps(qv, KEY(0), a0);
                a1 = _mm256_fmadd_ps(qv, KEY(1), a1);
                a2 = _mm256_fmadd_ps(qv, KEY(2), a2);
                a3 = _mm256_fmadd_ps(qv, KEY(3), a3);
#undef KEY
            }
            const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
            _mm_storeu_ps(scores + t, _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)));
        }
#endif
    for (; t < count; t++) scores[t] = dot_f16(q, keys + t * n, n);
}

/* out[i] = sum_t weights[t] * values[t][i], each sum in position order. The float16 version keeps 64 outputs in
 * registers across all positions instead of loading and storing them once per position. */
static void weighted_sum_f32(const float *weights, const float *values, int64_t count, int n, float *out) {
    for (int i = 0; i < n; i++) out[i] = 0.0f;
    for (int64_t t = 0; t < count; t++) axpy_f32(out, weights[t], values + t * n, n);
}

static void weighted_sum_f16(const float *weights, const _Float16 *values, int64_t count, int n, float *out) {
    int i = 0;
#ifdef __AVX512F__
#define VALUE(p) _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(values + t * n + (p))))
    for (; i + 64 <= n; i += 64) {
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int64_t t = 0; t < count; t++) {
            const __m512 w = _mm512_set1_ps(weights[t]);
            a0 = _mm512_fmadd_ps(w, VALUE(i), a0);
            a1 = _mm512_fmadd_ps(w, VALUE(i + 16), a1);
            a2 = _mm512_fmadd_ps(w, VALUE(i + 32), a2);
            a3 = _mm512_fmadd_ps(w, VALUE(i + 48), a3);
        }
        _mm512_storeu_ps(out + i, a0);
        _mm512_storeu_ps(out + i + 16, a1);
        _mm512_storeu_ps(out + i + 32, a2);
        _mm512_storeu_ps(out + i + 48, a3);
    }
    for (; i + 16 <= n; i += 16) {
        __m512 a = _mm512_setzero_ps();
        for (int64_t t = 0; t < count; t++) a = _mm512_fmadd_ps(_mm512_set1_ps(weights[t]), VALUE(i), a);
        _mm512_storeu_ps(out + i, a);
    }
#undef VALUE
#elif defined(HRM_AVX2)
#define VALUE(p) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(values + t * n + (p))))
    for (; i + 32 <= n; i += 32) {
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int64_t t = 0; t < count; t++) {
            const __m256 w = _mm256_set1_ps(weights[t]);
            a0 = _mm256_fmadd_ps(w, VALUE(i), a0);
            a1 = _mm256_fmadd_ps(w, VALUE(i + 8), a1);
            a2 = _mm256_fmadd_ps(w, VALUE(i + 16), a2);
            a3 = _mm256_fmadd_ps(w, VALUE(i + 24), a3);
        }
        _mm256_storeu_ps(out + i, a0);
        _mm256_storeu_ps(out + i + 8, a1);
        _mm256_storeu_ps(out + i + 16, a2);
        _mm256_storeu_ps(out + i + 24, a3);
    }
    for (; i + 8 <= n; i += 8) {
        __m256 a = _mm256_setzero_ps();
        for (int64_t t = 0; t < count; t++) a = _mm256_fmadd_ps(_mm256_set1_ps(weights[t]), VALUE(i), a);
        _mm256_storeu_ps(out + i, a);
    }
#undef VALUE
#endif
    for (; i < n; i++) {
        float sum = 0.0f;
        for (int64_t t = 0; t < count; t++) sum += weights[t] * (float)values[t * n + i];
        out[i] = sum;
    }
}

#ifdef __AVX512F__
/* e^x for 16 lanes: x = n ln2 + r (|r| <= ln2 / 2, ln2 in two parts), e^r by Cephes' expf polynomial, times 2^n by
 * scalef (which gives 0 and inf past the float range). Within 2 ulp of expf. */
static __m512 exp16(__m512 x) {
    /* past [-104, 89] e^x is 0 or inf in float; clamped so that r stays small (a NaN stays NaN) */
    x = _mm512_min_ps(_mm512_set1_ps(89.0f), _mm512_max_ps(_mm512_set1_ps(-104.0f), x));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(p, n);
}
#elif defined(HRM_AVX2)
/* e^x for 8 lanes: exp16's reduction and polynomial, times 2^n written into the exponent bits, so x is clamped to
 * [-87, 88] (n stays a normal float's exponent): below, e^x is under 1.7e-38 (exp16 goes on into denormals). */
static __m256 exp8(__m256 x) {
    x = _mm256_min_ps(_mm256_set1_ps(88.0f), _mm256_max_ps(_mm256_set1_ps(-87.0f), x)); /* a NaN stays NaN */
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    const __m256i two_n = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(two_n));
}
#endif

/* scores[t] = e^(scores[t] - max) for t < count; returns their sum (16 lanes at a time with AVX-512, 8 with AVX2). */
static float softmax_weights(float *scores, int64_t count, float max) {
    int64_t t = 0;
    float total = 0.0f;
#ifdef __AVX512F__
    __m512 sums = _mm512_setzero_ps();
    const __m512 top = _mm512_set1_ps(max);
    for (; t + 16 <= count; t += 16) {
        const __m512 e = exp16(_mm512_sub_ps(_mm512_loadu_ps(scores + t), top));
        _mm512_storeu_ps(scores + t, e);
        sums = _mm512_add_ps(sums, e);
    }
    total = _mm512_reduce_add_ps(sums);
#elif defined(HRM_AVX2)
    __m256 sums = _mm256_setzero_ps();
    const __m256 top = _mm256_set1_ps(max);
    for (; t + 8 <= count; t += 8) {
        const __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(scores + t), top));
        _mm256_storeu_ps(scores + t, e);
        sums = _mm256_add_ps(sums, e);
    }
    total = sum8(sums);
#endif
    for (; t < count; t++) {
        scores[t] = expf(scores[t] - max);
        total += scores[t];
    }
    return total;
}

#define ROPE_ATTEND(NAME, CACHE_T, DOTS, WEIGHTED_SUM)                                                      \
    void NAME(const float *qkv, CACHE_T *kcache, CACHE_T *vcache, int64_t capacity, int64_t pos,              \
              const float *cos, const float *sin, int heads, int head_dim, float *out, float *scores) {       \
        const int hidden = heads * head_dim;                                                                 \
        const float scale = 1.0f / sqrtf((float)head_dim);                                                   \
        float q[512], key[512];                                                                              \
        for (int h = 0; h < heads; h++) {                                                                    \
            CACHE_T *keys = kcache + (int64_t)h * capacity * head_dim;                                       \
            CACHE_T *values = vcache + (int64_t)h * capacity * head_dim;                                     \
            const float *v_new = qkv + 2 * hidden + h * head_dim;                                            \
            rotate(qkv + h * head_dim, cos, sin, head_dim, q);                                               \
            rotate(qkv + hidden + h * head_dim, cos, sin, head_dim, key);                                    \
            for (int i = 0; i < head_dim; i++) {                                                             \
                keys[pos * head_dim + i] = (CACHE_T)key[i];                                                  \
                values[pos * head_dim + i] = (CACHE_T)v_new[i];                                              \
            }                                                                                                \
            DOTS(q, keys, pos + 1, head_dim, scores);                                                        \
            float max = -INFINITY;                                                                           \
            for (int64_t t = 0; t <= pos; t++) {                                                             \
                scores[t] *= scale;                                                                          \
                if (scores[t] > max) max = scores[t];                                                        \
            }                                                                                                \
            const float total = softmax_weights(scores, pos + 1, max);                                       \
            float *o = out + h * head_dim;                                                                   \
            WEIGHTED_SUM(scores, values, pos + 1, head_dim, o);                                              \
            for (int i = 0; i < head_dim; i++) o[i] /= total;                                                \
        }                                                                                                    \
    }

ROPE_ATTEND(hrm_rope_attend, float, dots_f32, weighted_sum_f32)
ROPE_ATTEND(hrm_rope_attend_h, _Float16, dots_f16, weighted_sum_f16)

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
    int i = 0;
#ifdef __AVX512F__
    for (; i + 16 <= inner; i += 16) {
        const __m512 g = _mm512_loadu_ps(gate_up + i);
        const __m512 e = exp16(_mm512_sub_ps(_mm512_setzero_ps(), g));
        _mm512_storeu_ps(out + i, _mm512_mul_ps(_mm512_div_ps(g, _mm512_add_ps(_mm512_set1_ps(1.0f), e)),
                                                _mm512_loadu_ps(gate_up + inner + i)));
    }
#elif defined(HRM_AVX2)
    for (; i + 8 <= inner; i += 8) {
        const __m256 g = _mm256_loadu_ps(gate_up + i);
        const __m256 e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), g));
        _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(_mm256_set1_ps(1.0f), e)),
                                                _mm256_loadu_ps(gate_up + inner + i)));
    }
#endif
    for (; i < inner; i++) {
        const float g = gate_up[i];
        out[i] = g / (1.0f + expf(-g)) * gate_up[inner + i];
    }
}

/* ---- int8 linear layers: int8 weights x int8 activations quantized per call ----------------------
 *
 * Weights: int8, symmetric per output row (w ~ q * wscale[n]); rowsum[n] = sum_k q[n, k]. They are packed in
 * blocks of 16 output rows x 4 inputs (64 bytes, one AVX-512 register): packed[b][i][r][c] = q[16 b + r][4 i + c]
 * for b < ceil(n / 16), i < k / 4 (rows past n are zero). Each dot product then accumulates 16 outputs at once
 * (VNNI vpdpbusd) with no horizontal sums. k must be a multiple of 4.
 * Activations: each input row is quantized to uint8 on the fly, asymmetric over [min(x, 0), max(x, 0)]:
 *   scale = (hi - lo) / 255, zero = clamp(round(-lo / scale), 0, 255), q = clamp(round(x / scale) + zero, 0, 255).
 * Output: y[m, n] = (xscale[m] * wscale[n]) * (float)(sum_k qx[m, k] * qw[n, k] - zero[m] * rowsum[n]).
 * hrmcode.quantize.torch_backend.dynamic_int8_reference computes the same numbers with PyTorch ops. */

static void quantize_row(const float *x, int k, uint8_t *q, float *scale_out, int32_t *zero_out) {
    float lo = 0.0f, hi = 0.0f;
    int i = 0;
#ifdef __AVX512F__
    __m512 los = _mm512_setzero_ps(), his = los;
    for (; i + 16 <= k; i += 16) { /* min/max are exact in any order */
        const __m512 v = _mm512_loadu_ps(x + i);
        los = _mm512_min_ps(v, los); /* a NaN lane keeps the running value, as below */
        his = _mm512_max_ps(v, his);
    }
    lo = _mm512_reduce_min_ps(los);
    hi = _mm512_reduce_max_ps(his);
#elif defined(HRM_AVX2)
    __m256 los = _mm256_setzero_ps(), his = los;
    for (; i + 8 <= k; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        los = _mm256_min_ps(v, los);
        his = _mm256_max_ps(v, his);
    }
    float lanes_lo[8], lanes_hi[8];
    _mm256_storeu_ps(lanes_lo, los);
    _mm256_storeu_ps(lanes_hi, his);
    for (int j = 0; j < 8; j++) {
        lo = lanes_lo[j] < lo ? lanes_lo[j] : lo;
        hi = lanes_hi[j] > hi ? lanes_hi[j] : hi;
    }
#endif
    for (; i < k; i++) {
        lo = x[i] < lo ? x[i] : lo;
        hi = x[i] > hi ? x[i] : hi;
    }
    float scale = (hi - lo) / 255.0f;
    if (scale == 0.0f) scale = 1.0f; /* an all-zero row */
    int32_t zero = (int32_t)nearbyintf(-lo / scale);
    zero = zero < 0 ? 0 : (zero > 255 ? 255 : zero);
    const float inverse = 1.0f / scale;
    int not_finite = 0;
    for (i = 0; i < k; i++) {
        not_finite |= !(x[i] - x[i] == 0.0f); /* NaN or an infinity */
        const float v = nearbyintf(x[i] * inverse) + (float)zero; /* clamped as a float: a NaN becomes 0, defined */
        q[i] = (uint8_t)(v > 0.0f ? (v < 255.0f ? v : 255.0f) : 0.0f);
    }
    *scale_out = not_finite ? NAN : scale; /* a row holding NaN or inf gives NaN outputs, as the reference */
    *zero_out = zero;
}

typedef struct {
    const uint8_t *qx; /* rows x k quantized activations */
    const float *xscale;
    const int32_t *xzero;
    int rows, k;
    const int8_t *w; /* packed */
    const float *wscale;
    const int32_t *rowsum;
    int n, b0, b1; /* row blocks [b0, b1) */
    float *y;      /* activation row j, output r at y[j * n + r] */
} qgemm_task;

/* Outputs 16 b .. 16 b + 15 of activation row j from their 16 exact sums. */
static void store16(const qgemm_task *t, int j, int b, const int32_t *acc) {
    const int r0 = 16 * b, count = t->n - r0 < 16 ? t->n - r0 : 16;
    float *out = t->y + (int64_t)j * t->n + r0;
    for (int c = 0; c < count; c++)
        out[c] = (t->xscale[j] * t->wscale[r0 + c]) * (float)(acc[c] - t->xzero[j] * t->rowsum[r0 + c]);
}

#define TILE 8 /* activation rows per pass over a row block */
/* Row blocks per tile for R rows: as many as the 32 vector registers allow (R x NB accumulators + NB weights + 1). */
#define WIDE(R) ((R) <= 4 ? 4 : 3)

static inline int32_t load4(const uint8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

#ifdef HRM_VNNI

/* Activation rows j0 .. j0 + R - 1 times row blocks b .. b + NB - 1 (R <= 8, NB <= 4): R x NB accumulators in
 * registers, so each weight register loaded feeds R products and each broadcast activation NB. R and NB are
 * constants at every call site: the accumulators are named variables (an array of them is spilled to the stack)
 * and the unused ones vanish. The sums are exact int32, so the tile shape never changes a result. */
#define DP(j, c) a##j##c = _mm512_dpbusd_epi32(a##j##c, xv, w##c)
#define TILE_ROW(j)                                                                                          \
    if (R > j) {                                                                                             \
        const __m512i xv = _mm512_set1_epi32(load4(x + (int64_t)j * t->k + 4 * i));                          \
        DP(j, 0);                                                                                            \
        if (NB > 1) DP(j, 1);                                                                                \
        if (NB > 2) DP(j, 2);                                                                                \
        if (NB > 3) DP(j, 3);                                                                                \
    }
#define TILE_ACC(j) __m512i a##j##0 = zero, a##j##1 = zero, a##j##2 = zero, a##j##3 = zero;
#define TILE_OUT(j)                                                                                          \
    if (R > j) {                                                                                             \
        const __m512i row[4] = {a##j##0, a##j##1, a##j##2, a##j##3};                                         \
        for (int c = 0; c < NB; c++) {                                                                       \
            _mm512_storeu_si512(sums, row[c]);                                                               \
            store16(t, j0 + j, b + c, sums);                                                                 \
        }                                                                                                    \
    }
static inline __attribute__((always_inline)) void tile(const qgemm_task *t, int b, int j0, const int R, const int NB) {
    const int k4 = t->k / 4;
    const int8_t *w = t->w + (int64_t)b * k4 * 64;
    const uint8_t *x = t->qx + (int64_t)j0 * t->k;
    const __m512i zero = _mm512_setzero_si512();
    TILE_ACC(0) TILE_ACC(1) TILE_ACC(2) TILE_ACC(3) TILE_ACC(4) TILE_ACC(5) TILE_ACC(6) TILE_ACC(7)
    for (int i = 0; i < k4; i++) {
        const __m512i w0 = _mm512_loadu_si512(w + (int64_t)i * 64);
        const __m512i w1 = NB > 1 ? _mm512_loadu_si512(w + ((int64_t)k4 + i) * 64) : zero;
        const __m512i w2 = NB > 2 ? _mm512_loadu_si512(w + ((int64_t)2 * k4 + i) * 64) : zero;
        const __m512i w3 = NB > 3 ? _mm512_loadu_si512(w + ((int64_t)3 * k4 + i) * 64) : zero;
        TILE_ROW(0) TILE_ROW(1) TILE_ROW(2) TILE_ROW(3) TILE_ROW(4) TILE_ROW(5) TILE_ROW(6) TILE_ROW(7)
    }
    int32_t sums[16];
    TILE_OUT(0) TILE_OUT(1) TILE_OUT(2) TILE_OUT(3) TILE_OUT(4) TILE_OUT(5) TILE_OUT(6) TILE_OUT(7)
}

#define TILES(R)                                                                                             \
    static void tile_##R##_wide(const qgemm_task *t, int b, int j0) { tile(t, b, j0, R, WIDE(R)); }          \
    static void tile_##R##_one(const qgemm_task *t, int b, int j0) { tile(t, b, j0, R, 1); }
TILES(1) TILES(2) TILES(3) TILES(4) TILES(5) TILES(6) TILES(7) TILES(8)
typedef void (*tile_fn)(const qgemm_task *, int, int);
static const tile_fn wide_tiles[TILE + 1] = {0, tile_1_wide, tile_2_wide, tile_3_wide, tile_4_wide,
                                              tile_5_wide, tile_6_wide, tile_7_wide, tile_8_wide};
static const tile_fn one_tiles[TILE + 1] = {0, tile_1_one, tile_2_one, tile_3_one, tile_4_one,
                                             tile_5_one, tile_6_one, tile_7_one, tile_8_one};

/* Each group of row blocks is applied to every activation row (8 at a time) while it is in cache. */
static void qgemm(const qgemm_task *t) {
    const int tail = t->rows % TILE ? t->rows % TILE : TILE;
    const int nb = WIDE(t->rows < TILE ? t->rows : TILE);
    int b = t->b0;
    for (; b < t->b1; b += nb) {
        const int wide = b + nb <= t->b1;
        for (int j0 = 0; j0 < t->rows; j0 += TILE) {
            const int r = t->rows - j0 < TILE ? tail : TILE;
            if (wide && WIDE(r) == nb)
                wide_tiles[r](t, b, j0);
            else
                for (int c = b; c < b + nb && c < t->b1; c++) one_tiles[r](t, c, j0);
        }
    }
}
#elif defined(__AVX2__) /* AVX-512 without VNNI (Skylake) included */
/* Activation rows j0 .. j0 + R - 1 (R <= 3) times row block b, without VNNI: each quarter of a packed step (4 outputs
 * x 4 inputs, 16 bytes) is widened to int16 and multiplied with the row's 4 codes, repeated and widened alike
 * (vpmaddwd: exact, a pair of products is at most 2 x 255 x 128 in magnitude), into one accumulator per quarter that
 * holds each of its outputs' two pair sums, added at the end. 4R accumulators + R activations + 1 weight register fit
 * AVX2's 16 for R = 3; a row block (16 k bytes) stays in L1 for the next rows. Same exact int32 sums as VNNI. */
#define ROWS3 3
#define Q_ACC(j) __m256i a##j##0 = zero, a##j##1 = zero, a##j##2 = zero, a##j##3 = zero;
#define Q_X(j) \
    const __m256i x##j = R > j ? _mm256_cvtepu8_epi16(_mm_set1_epi32(load4(x + (int64_t)j * t->k + 4 * i))) : zero;
#define Q_MUL(q)                                                                                             \
    {                                                                                                        \
        const __m256i wq = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(wi + 16 * (q))));         \
        a0##q = _mm256_add_epi32(a0##q, _mm256_madd_epi16(wq, x0));                                          \
        if (R > 1) a1##q = _mm256_add_epi32(a1##q, _mm256_madd_epi16(wq, x1));                               \
        if (R > 2) a2##q = _mm256_add_epi32(a2##q, _mm256_madd_epi16(wq, x2));                               \
    }
#define Q_OUT(j)                                                                                             \
    if (R > j) {                                                                                             \
        const __m256i quarters[4] = {a##j##0, a##j##1, a##j##2, a##j##3};                                    \
        for (int q = 0; q < 4; q++) {                                                                        \
            _mm256_storeu_si256((__m256i *)pairs, quarters[q]);                                              \
            for (int o = 0; o < 4; o++) sums[4 * q + o] = pairs[2 * o] + pairs[2 * o + 1];                   \
        }                                                                                                    \
        store16(t, j0 + j, b, sums);                                                                         \
    }
static inline __attribute__((always_inline)) void tile(const qgemm_task *t, int b, int j0, const int R) {
    const int k4 = t->k / 4;
    const int8_t *w = t->w + (int64_t)b * k4 * 64;
    const uint8_t *x = t->qx + (int64_t)j0 * t->k;
    const __m256i zero = _mm256_setzero_si256();
    Q_ACC(0) Q_ACC(1) Q_ACC(2)
    for (int i = 0; i < k4; i++) {
        const int8_t *wi = w + (int64_t)i * 64;
        Q_X(0) Q_X(1) Q_X(2)
        Q_MUL(0) Q_MUL(1) Q_MUL(2) Q_MUL(3)
    }
    int32_t pairs[8], sums[16];
    Q_OUT(0) Q_OUT(1) Q_OUT(2)
}

static void tile_1(const qgemm_task *t, int b, int j0) { tile(t, b, j0, 1); }
static void tile_2(const qgemm_task *t, int b, int j0) { tile(t, b, j0, 2); }
static void tile_3(const qgemm_task *t, int b, int j0) { tile(t, b, j0, 3); }

static void qgemm(const qgemm_task *t) {
    for (int b = t->b0; b < t->b1; b++)
        for (int j0 = 0; j0 < t->rows; j0 += ROWS3) {
            const int r = t->rows - j0;
            (r >= 3 ? tile_3 : r == 2 ? tile_2 : tile_1)(t, b, j0);
        }
}
#else
/* Portable C: the same sums, TILE activation rows per pass over a row block. */
static void qgemm(const qgemm_task *t) {
    const int k4 = t->k / 4;
    for (int b = t->b0; b < t->b1; b++) {
        const int8_t *wb = t->w + (int64_t)b * k4 * 64;
        for (int j0 = 0; j0 < t->rows; j0 += TILE) {
            const int jn = t->rows - j0 < TILE ? t->rows - j0 : TILE;
            int32_t acc[TILE][16];
            memset(acc, 0, sizeof(acc));
            for (int i = 0; i < k4; i++) {
                const int8_t *wv = wb + (int64_t)i * 64;
                for (int j = 0; j < jn; j++) {
                    const uint8_t *x = t->qx + (int64_t)(j0 + j) * t->k + 4 * i;
                    for (int r = 0; r < 16; r++)
                        acc[j][r] += x[0] * wv[4 * r] + x[1] * wv[4 * r + 1] + x[2] * wv[4 * r + 2] +
                                     x[3] * wv[4 * r + 3];
                }
            }
            for (int j = 0; j < jn; j++) store16(t, j0 + j, b, acc[j]);
        }
    }
}
#endif

/* ---- a second thread -------------------------------------------------------------------------------
 *
 * A job is split into chunks (a matmul's row blocks in groups, a batch's rows for attention) that the caller and
 * one persistent worker claim one at a time from a shared ticket, so neither waits for the other to start: on a
 * loaded machine where the worker is not scheduled, the caller claims every chunk itself and the job costs what it
 * costs single-threaded (the caller only ever waits for a chunk the worker has claimed and is computing). The worker
 * spins for 100 us between jobs (a decode step's jobs come microseconds apart) and then sleeps on a condition
 * variable, so it does not take a core from the Python work between decode steps (an HTTP server's, say).
 * Callers that find the worker busy (another generation is using it) run alone. Each chunk is computed whole by one
 * thread with the same code whoever claims it, so results never depend on the thread count or the schedule. */

#define SPIN_NS 100000 /* how long the worker spins for the next job before it sleeps */

typedef void (*chunk_fn)(void *arg, int chunk);

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;    /* held by the caller using the worker */
static pthread_mutex_t sleep_lock = PTHREAD_MUTEX_INITIALIZER;   /* guards the worker's sleep */
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static _Atomic uint64_t ticket; /* job number << 32 | chunks << 16 | next unclaimed chunk */
static atomic_int chunks_done, worker_sleeping;
static uint32_t last_job; /* under pool_lock */
static chunk_fn job_fn;
static void *job_arg;
static int pool_threads = 1; /* 1 or 2 */
static int worker_started;

static void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* Claim and compute chunks of job `job` until none is left. A claim succeeds only while the ticket still names
 * this job, and the caller publishes the next job only after every chunk of this one is done, so job_fn and
 * job_arg read after a claim are this job's. */
static void work(uint32_t job) {
    uint64_t t = atomic_load(&ticket);
    for (;;) {
        if ((uint32_t)(t >> 32) != job || (t & 0xffff) >= ((t >> 16) & 0xffff)) return;
        if (!atomic_compare_exchange_weak(&ticket, &t, t + 1)) continue; /* t reloaded */
        job_fn(job_arg, (int)(t & 0xffff));
        atomic_fetch_add(&chunks_done, 1);
        t = atomic_load(&ticket);
    }
}

static int64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static void *worker_main(void *unused) {
    (void)unused;
    uint32_t seen = 0;
    for (;;) {
        const int64_t until = now_ns() + SPIN_NS; /* by time, not count: a pause costs 10 to 150 cycles by CPU */
        int spins = 0;
        while ((uint32_t)(atomic_load(&ticket) >> 32) == seen) {
            if (++spins % 64 || now_ns() < until) {
                cpu_relax();
                continue;
            }
            pthread_mutex_lock(&sleep_lock);
            atomic_store(&worker_sleeping, 1);
            while ((uint32_t)(atomic_load(&ticket) >> 32) == seen) pthread_cond_wait(&wake, &sleep_lock);
            atomic_store(&worker_sleeping, 0);
            pthread_mutex_unlock(&sleep_lock);
        }
        seen = (uint32_t)(atomic_load(&ticket) >> 32);
        work(seen);
    }
    return NULL;
}

/* Use 1 or 2 threads for the int8 matmuls and a batch's attention; returns the number now in use. */
int hrm_set_threads(int threads) {
    pthread_mutex_lock(&pool_lock);
    if (threads > 1 && !worker_started) {
        pthread_t id;
        if (pthread_create(&id, NULL, worker_main, NULL) == 0) {
            pthread_detach(id);
            worker_started = 1;
        }
    }
    pool_threads = (threads > 1 && worker_started) ? 2 : 1;
    pthread_mutex_unlock(&pool_lock);
    return pool_threads;
}

/* fn(arg, c) for every chunk c < chunks, with the worker's help when it is free (and chunks fit the ticket). */
static void run_chunks(chunk_fn fn, void *arg, int chunks) {
    if (pool_threads < 2 || chunks < 2 || chunks > 0xffff || pthread_mutex_trylock(&pool_lock) != 0) {
        for (int c = 0; c < chunks; c++) fn(arg, c);
        return;
    }
    job_fn = fn;
    job_arg = arg;
    atomic_store(&chunks_done, 0);
    const uint32_t job = ++last_job ? last_job : ++last_job; /* 0 is the worker's "none seen yet" */
    atomic_store(&ticket, (uint64_t)job << 32 | (uint64_t)chunks << 16);
    if (atomic_load(&worker_sleeping)) {
        pthread_mutex_lock(&sleep_lock);
        pthread_cond_signal(&wake);
        pthread_mutex_unlock(&sleep_lock);
    }
    work(job);
    /* a chunk takes microseconds; a longer wait means the worker was preempted mid-chunk: let it have the core */
    for (int spins = 0; atomic_load(&chunks_done) != chunks; spins++)
        if (spins < 4096)
            cpu_relax();
        else
            sched_yield();
    pthread_mutex_unlock(&pool_lock);
}

/* A matmul's chunk: `per` row blocks (a multiple of the tile width the rows use). */
typedef struct {
    const qgemm_task *task;
    int per;
} qlinear_job;

static void qlinear_chunk(void *arg, int chunk) {
    const qlinear_job *job = arg;
    qgemm_task t = *job->task;
    t.b0 = t.b0 + chunk * job->per;
    t.b1 = t.b0 + job->per < job->task->b1 ? t.b0 + job->per : job->task->b1;
    qgemm(&t);
}

/* y [m, n] = x [m, k] @ dequantized(w).T, as described above; w packed. qx: scratch of min(m, 64) * k bytes. */
void hrm_qlinear(const float *x, int64_t m, int k, const int8_t *w, const float *wscale, const int32_t *rowsum,
                 int n, float *y, uint8_t *qx) {
    float xscale[64];
    int32_t xzero[64];
    const int blocks = (n + 15) / 16;
    for (int64_t m0 = 0; m0 < m; m0 += 64) { /* rows in chunks of 64: their codes fit the scratch */
        const int rows = (int)(m - m0 < 64 ? m - m0 : 64);
        for (int j = 0; j < rows; j++) quantize_row(x + (m0 + j) * k, k, qx + (int64_t)j * k, &xscale[j], &xzero[j]);
        qgemm_task task = {qx, xscale, xzero, rows, k, w, wscale, rowsum, n, 0, blocks, y + m0 * n};
        const qlinear_job job = {&task, 2 * WIDE(rows < TILE ? rows : TILE)};
        if (blocks >= 8)
            run_chunks(qlinear_chunk, (void *)&job, (blocks + job.per - 1) / job.per);
        else
            qgemm(&task);
    }
}

/* Pack q [n, k] (row-major) into the layout above and sum its rows, in one pass with no temporaries. */
void hrm_pack_q8(const int8_t *q, int n, int k, int8_t *packed, int32_t *rowsum) {
    const int k4 = k / 4, blocks = (n + 15) / 16;
    memset(packed, 0, (size_t)blocks * k4 * 64);
    for (int r = 0; r < n; r++) {
        const int8_t *row = q + (int64_t)r * k;
        int8_t *out = packed + (int64_t)(r / 16) * k4 * 64 + (r % 16) * 4;
        int32_t sum = 0;
        for (int i = 0; i < k4; i++) {
            memcpy(out + (int64_t)i * 64, row + 4 * i, 4);
            sum += row[4 * i] + row[4 * i + 1] + row[4 * i + 2] + row[4 * i + 3];
        }
        rowsum[r] = sum;
    }
}

/* ---- whole blocks for new positions, every projection an int8 linear ------------------------------- */

typedef struct {
    const int8_t *weight;
    const float *scale;
    const int32_t *rowsum;
    int32_t out_features, in_features;
} hrm_q8_linear;

typedef struct {
    hrm_q8_linear qkv, o, gate_up, down;
} hrm_q8_block;

/* Row t of a batch through hrm_rope_attend_h: its own sequence's cache and position, its own scores. */
typedef struct {
    const float *qkv;
    _Float16 *kcache, *vcache;
    int64_t capacity, row_stride;
    const int64_t *positions;
    const float *cos, *sin;
    int heads, head_dim;
    float *attended, *scores;
} attend_job;

static void attend_row(void *arg, int t) {
    const attend_job *j = arg;
    const int hidden = j->heads * j->head_dim;
    hrm_rope_attend_h(j->qkv + (int64_t)t * 3 * hidden, j->kcache + t * j->row_stride, j->vcache + t * j->row_stride,
                      j->capacity, j->positions[t], j->cos + t * j->head_dim, j->sin + t * j->head_dim, j->heads,
                      j->head_dim, j->attended + (int64_t)t * hidden, j->scores + t * j->capacity);
}

/* h [rows, hidden] = block(h) in place. Row t is at position positions[t] of its own sequence, whose keys and
 * values start at kcache/vcache + t * row_stride (positions NULL: one sequence, row t at pos + t, row_stride 0);
 * each row attends to its sequence's cached positions and, causally, the rows before it of the same sequence. What
 * hrm_qlinear, hrm_rope_attend, hrm_add_rms_norm and hrm_silu_mul do one after the other. cos, sin:
 * [rows, head_dim]. scratch: rows * (4 * hidden + 3 * inner) + capacity floats (rows of different sequences, whose
 * attention runs in parallel: rows * (4 * hidden + 3 * inner + capacity)); qscratch: min(rows, 64) *
 * max(hidden, inner) bytes. */
static void block_q8(const hrm_q8_block *b, float *h, int rows, int heads, int head_dim, float eps,
                     _Float16 *kcache, _Float16 *vcache, int64_t capacity, int64_t row_stride, int64_t pos,
                     const int64_t *positions, const float *cos, const float *sin, float *scratch, uint8_t *qscratch) {
    const int hidden = heads * head_dim, inner = b->down.in_features;
    float *qkv = scratch, *attended = qkv + (int64_t)rows * 3 * hidden, *projected = attended + (int64_t)rows * hidden;
    float *gated = projected + (int64_t)rows * 2 * inner, *scores = gated + (int64_t)rows * inner;
    hrm_qlinear(h, rows, hidden, b->qkv.weight, b->qkv.scale, b->qkv.rowsum, b->qkv.out_features, qkv, qscratch);
    attend_job job = {qkv, kcache, vcache, capacity, row_stride, positions,
                      cos, sin, heads, head_dim, attended, scores};
    if (positions) /* rows of different sequences: independent, one chunk each */
        run_chunks(attend_row, &job, rows);
    else /* one sequence: row t attends to the key row t - 1 wrote */
        for (int t = 0; t < rows; t++) {
            hrm_rope_attend_h(qkv + (int64_t)t * 3 * hidden, kcache, vcache, capacity, pos + t, cos + t * head_dim,
                              sin + t * head_dim, heads, head_dim, attended + (int64_t)t * hidden, scores);
        }
    hrm_qlinear(attended, rows, hidden, b->o.weight, b->o.scale, b->o.rowsum, hidden, projected, qscratch);
    for (int t = 0; t < rows; t++)
        hrm_add_rms_norm(h + (int64_t)t * hidden, projected + (int64_t)t * hidden, hidden, eps);
    hrm_qlinear(h, rows, hidden, b->gate_up.weight, b->gate_up.scale, b->gate_up.rowsum, 2 * inner, projected,
                qscratch);
    for (int t = 0; t < rows; t++)
        hrm_silu_mul(projected + (int64_t)t * 2 * inner, gated + (int64_t)t * inner, inner);
    hrm_qlinear(gated, rows, inner, b->down.weight, b->down.scale, b->down.rowsum, hidden, projected, qscratch);
    for (int t = 0; t < rows; t++)
        hrm_add_rms_norm(h + (int64_t)t * hidden, projected + (int64_t)t * hidden, hidden, eps);
}

/* One sequence: new positions pos .. pos + rows - 1 through n blocks in a row, block i with its own float16 KV
 * cache (kcaches[i], vcaches[i]). */
void hrm_stack_q8(const hrm_q8_block *blocks, int n, float *h, int rows, int heads, int head_dim, float eps,
                  _Float16 *const *kcaches, _Float16 *const *vcaches, int64_t capacity, int64_t pos, const float *cos,
                  const float *sin, float *scratch, uint8_t *qscratch) {
    for (int i = 0; i < n; i++)
        block_q8(&blocks[i], h, rows, heads, head_dim, eps, kcaches[i], vcaches[i], capacity, 0, pos, NULL, cos, sin,
                 scratch, qscratch);
}

/* Continuous batching: row t is the next position (positions[t]) of sequence t, whose cache in block i is row t
 * of kcaches[i]/vcaches[i] ([rows, heads, capacity, head_dim]); the int8 matmuls take all rows in one pass over
 * the weights. */
void hrm_stack_q8_rows(const hrm_q8_block *blocks, int n, float *h, int rows, int heads, int head_dim, float eps,
                       _Float16 *const *kcaches, _Float16 *const *vcaches, int64_t capacity, const int64_t *positions,
                       const float *cos, const float *sin, float *scratch, uint8_t *qscratch) {
    const int64_t row_stride = (int64_t)heads * capacity * head_dim;
    for (int i = 0; i < n; i++)
        block_q8(&blocks[i], h, rows, heads, head_dim, eps, kcaches[i], vcaches[i], capacity, row_stride, 0, positions,
                 cos, sin, scratch, qscratch);
}

/* The ABI version this file implements; kernels.py refuses a library that reports another. */
int hrm_kernels_version(void) { return 14; }
