/* The forward 3x3, stride-1, padding-1 convolution of 16 channels into 16
 * on channel-blocked arrays, lasres's own kernel (no oneDNN call): AVX-512 on
 * 16-channel blocks, below; AVX2 on 8-channel blocks, lr_c8_block.
 *
 *   y[n, r, q, o] = act((sum over i, j, c of x[n, r+i-1, q+j-1, c] * w[i, j, c, o]
 *                        [+ b[o]]) [+ a[n, r, q, o]])
 *
 * x, y and a are (N, H, W, 16): oneDNN's nChw16c of 16 channels, byte for
 * byte NHWC; w is (3, 3, 16 in, 16 out) (oneDNN's cdba of the (O, I, 3, 3)
 * filter, the cross-correlation's taps); the bias b and the addend a (a
 * residual sum; it may be y itself, summed in place) are optional; act is
 * the identity or ReLU.
 *
 * The lanes of a vector are the 16 output channels. A block of 16 output
 * pixels of a row has 16 accumulators; for each tap (i, j) and input channel
 * c the kernel loads that tap's 16 weights once and multiplies them with the
 * 16 pixels' inputs, broadcast from memory: 16 FMAs per load of weights, no
 * packing, the 9 KiB of weights in L1. Each output sums its 144 products in
 * one float32 FMA chain in the order (i, j, c) from zero, skipping the taps
 * in the padding, then adds the bias, then the addend: the order of
 * oneDNN's direct and brgemm kernels for this geometry, so the result is
 * the same bits (tests/test_ops_conv_fwd16.py). The input gradient of such
 * a convolution is one too (of the output gradient, with the taps turned
 * around and the channels swapped); oneDNN's kernel sums its taps in the
 * reverse order, and so does this one there (reverse). Rows are shared among
 * libgomp's threads (oneDNN's pool) in contiguous ranges.
 *
 * Why: oneDNN's brgemm kernel, its fastest for these 16-channel layers (the
 * first stage of every CIFAR ResNet), runs them at about 85% of the
 * machine's float32 GEMM rate; this one at the GEMM rate (AMD EPYC Zen 5:
 * 0.19 against 0.22 ms for 20 images of 32x32, benchmarks/RESULTS.md).
 *
 * lr_conv16_fwd returns 0 (y written) or 1 (not this geometry or not a CPU
 * for the block: the caller runs oneDNN). With 16-channel blocks W must be
 * a multiple of 16. */
#ifndef LASRES_CONV_FWD16_C
#define LASRES_CONV_FWD16_C

#include <immintrin.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* lr_c16: conv16.h */

/* 16 output pixels of row oy from column p0; left / right: the block starts /
 * ends a row, where the taps reaching into the padding are skipped; rev:
 * the taps in reverse order (compile-time constants once inlined). */
__attribute__((always_inline, target("avx512f")))
static inline void lr_c16_block(const lr_c16 *g, long img, long oy, long p0, const int left,
                                const int right, const int rev)
{
    const long at = (img * g->h + oy) * g->w + p0;   /* the block's first pixel */
    __m512 acc[16];
    int p, ii, jj, c;
#pragma GCC unroll 16
    for (p = 0; p < 16; p++)
        acc[p] = _mm512_setzero_ps();
    for (ii = 0; ii < 3; ii++) {
        const int i = rev ? 2 - ii : ii;
        const long iy = oy + i - 1;
        if (iy < 0 || iy >= g->h)
            continue;
        {
            const float *xr = g->x + ((img * g->h + iy) * g->w + p0) * 16;
#pragma GCC unroll 3
            for (jj = 0; jj < 3; jj++) {
                const int j = rev ? 2 - jj : jj;
                const float *wk = g->wt + (i * 3 + j) * 256;
#pragma GCC unroll 4
                for (c = 0; c < 16; c++) {
                    const __m512 wv = _mm512_loadu_ps(wk + c * 16);
#pragma GCC unroll 16
                    for (p = 0; p < 16; p++) {
                        if ((left && p + j - 1 < 0) || (right && p + j - 1 >= 16))
                            continue;
                        acc[p] = _mm512_fmadd_ps(_mm512_set1_ps(xr[(p + j - 1) * 16 + c]), wv,
                                                 acc[p]);
                    }
                }
            }
        }
    }
    {
        const __m512 zero = _mm512_setzero_ps();
        const __m512 b = g->bias ? _mm512_loadu_ps(g->bias) : zero;
        float *yr = g->y + at * 16;
        const float *ar = g->add ? g->add + at * 16 : NULL;
#pragma GCC unroll 16
        for (p = 0; p < 16; p++) {
            __m512 v = g->bias ? _mm512_add_ps(acc[p], b) : acc[p];
            if (ar)
                v = _mm512_add_ps(v, _mm512_loadu_ps(ar + p * 16));
            if (g->relu)
                v = _mm512_max_ps(v, zero);
            _mm512_storeu_ps(yr + p * 16, v);
        }
    }
}

/* Output rows [r0, r1) of all images (row r: image r / h, row r % h), each
 * row's blocks from left to right. */
#define LR_C16_ROWS(NAME, REV)                                                            \
__attribute__((target("avx512f")))                                                       \
static void NAME(const lr_c16 *g, long r0, long r1)                                      \
{                                                                                        \
    long r, p0;                                                                          \
    for (r = r0; r < r1; r++) {                                                          \
        const long img = r / g->h, oy = r % g->h;                                        \
        if (g->w == 16) {                                                                \
            lr_c16_block(g, img, oy, 0, 1, 1, REV);                                      \
            continue;                                                                    \
        }                                                                                \
        lr_c16_block(g, img, oy, 0, 1, 0, REV);                                          \
        for (p0 = 16; p0 < g->w - 16; p0 += 16)                                          \
            lr_c16_block(g, img, oy, p0, 0, 0, REV);                                     \
        lr_c16_block(g, img, oy, g->w - 16, 0, 1, REV);                                  \
    }                                                                                    \
}
LR_C16_ROWS(lr_c16_rows, 0)
LR_C16_ROWS(lr_c16_rows_rev, 1)

/* AVX2 (8-channel blocks, x and y (N, 2, H, W, 8)): P output pixels of row
 * oy from column p0 into 2 x P accumulators of 8 output channels (P <= 6:
 * 12 of the 16 registers), the input channels block by block, each block's
 * taps in order, the block's 8 channels within a tap, from the bias (and,
 * add_first, the addend plus the bias: oneDNN's sum post-op), then the
 * addend: oneDNN's AVX2 direct kernel's order. */
__attribute__((always_inline, target("avx2,fma")))
static inline void lr_c8_block(const lr_c16 *g, long img, long oy, long p0, const int P,
                               const int left, const int right, const int rev)
{
    const long plane = g->h * g->w * 8;   /* one 8-channel block of an image */
    __m256 acc[2][6];
    int p, ii, jj, c, cb;
    const __m256 b0 = g->bias ? _mm256_loadu_ps(g->bias) : _mm256_setzero_ps();
    const __m256 b1 = g->bias ? _mm256_loadu_ps(g->bias + 8) : _mm256_setzero_ps();
    const int add_first = g->add != NULL && g->add_first;
#pragma GCC unroll 6
    for (p = 0; p < 6; p++) {   /* the sums start from the bias (and the addend) */
        acc[0][p] = b0;
        acc[1][p] = b1;
    }
    if (add_first) {
        int ob;
        for (ob = 0; ob < 2; ob++) {
            const float *ar = g->add + (((img * 2 + ob) * g->h + oy) * g->w + p0) * 8;
            for (p = 0; p < P; p++)
                acc[ob][p] = _mm256_add_ps(_mm256_loadu_ps(ar + p * 8), acc[ob][p]);
        }
    }
    for (cb = 0; cb < 2; cb++) {
        for (ii = 0; ii < 3; ii++) {
            const int i = rev ? 2 - ii : ii;
            const long iy = oy + i - 1;
            if (iy < 0 || iy >= g->h)
                continue;
            {
                const float *xr = g->x + (img * 2 + cb) * plane + (iy * g->w + p0) * 8;
#pragma GCC unroll 3
                for (jj = 0; jj < 3; jj++) {
                    const int j = rev ? 2 - jj : jj;
                    const float *wk = g->wt + ((i * 3 + j) * 16 + cb * 8) * 16;
#pragma GCC unroll 2
                    for (c = 0; c < 8; c++) {
                        const __m256 w0 = _mm256_loadu_ps(wk + c * 16);
                        const __m256 w1 = _mm256_loadu_ps(wk + c * 16 + 8);
#pragma GCC unroll 6
                        for (p = 0; p < 6; p++) {
                            if (p >= P || (left && p + j - 1 < 0) || (right && p + j - 1 >= P))
                                continue;
                            {
                                const __m256 v = _mm256_broadcast_ss(xr + (p + j - 1) * 8 + c);
                                acc[0][p] = _mm256_fmadd_ps(v, w0, acc[0][p]);
                                acc[1][p] = _mm256_fmadd_ps(v, w1, acc[1][p]);
                            }
                        }
                    }
                }
            }
        }
    }
    {
        const __m256 zero = _mm256_setzero_ps();
        int ob;
        for (ob = 0; ob < 2; ob++) {
            const long at = ((img * 2 + ob) * g->h + oy) * g->w + p0;
            float *yr = g->y + at * 8;
            const float *ar = g->add && !add_first ? g->add + at * 8 : NULL;
#pragma GCC unroll 6
            for (p = 0; p < 6; p++) {
                __m256 v;
                if (p >= P)
                    continue;
                v = acc[ob][p];
                if (ar)
                    v = _mm256_add_ps(v, _mm256_loadu_ps(ar + p * 8));
                if (g->relu)
                    v = _mm256_max_ps(v, zero);
                _mm256_storeu_ps(yr + p * 8, v);
            }
        }
    }
}

/* The right end of a row: its last P (1..6) pixels. */
__attribute__((always_inline, target("avx2,fma")))
static inline void lr_c8_right(const lr_c16 *g, long img, long oy, long p0, const int left,
                               const int rev)
{
    switch (g->w - p0) {
    case 1: lr_c8_block(g, img, oy, p0, 1, left, 1, rev); break;
    case 2: lr_c8_block(g, img, oy, p0, 2, left, 1, rev); break;
    case 3: lr_c8_block(g, img, oy, p0, 3, left, 1, rev); break;
    case 4: lr_c8_block(g, img, oy, p0, 4, left, 1, rev); break;
    case 5: lr_c8_block(g, img, oy, p0, 5, left, 1, rev); break;
    default: lr_c8_block(g, img, oy, p0, 6, left, 1, rev); break;
    }
}

#define LR_C8_ROWS(NAME, REV)                                                             \
__attribute__((target("avx2,fma")))                                                      \
static void NAME(const lr_c16 *g, long r0, long r1)                                      \
{                                                                                        \
    long r, p0;                                                                          \
    for (r = r0; r < r1; r++) {                                                          \
        const long img = r / g->h, oy = r % g->h;                                        \
        if (g->w <= 6) {                                                                 \
            lr_c8_right(g, img, oy, 0, 1, REV);                                          \
            continue;                                                                    \
        }                                                                                \
        lr_c8_block(g, img, oy, 0, 6, 1, 0, REV);                                        \
        for (p0 = 6; p0 + 6 < g->w; p0 += 6)                                             \
            lr_c8_block(g, img, oy, p0, 6, 0, 0, REV);                                   \
        lr_c8_right(g, img, oy, p0, 0, REV);                                             \
    }                                                                                    \
}
LR_C8_ROWS(lr_c8_rows, 0)
LR_C8_ROWS(lr_c8_rows_rev, 1)

static int lr_conv16_fwd(const lr_c16 *g)
{
    void (*rows)(const lr_c16 *, long, long);
    long total;
    int nthr = 1;
    if (g->n < 1 || g->h < 1 || g->w < 1)
        return 1;
    __builtin_cpu_init();
    if (g->block == 16) {
        if (g->w < 16 || g->w % 16 || !__builtin_cpu_supports("avx512f"))
            return 1;
        rows = g->reverse ? lr_c16_rows_rev : lr_c16_rows;
    } else if (g->block == 8) {
        if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma"))
            return 1;
        rows = g->reverse ? lr_c8_rows_rev : lr_c8_rows;
    } else
        return 1;
    total = g->n * g->h;
#ifdef _OPENMP
    nthr = omp_in_parallel() ? 1 : omp_get_max_threads();
    if (nthr > total) nthr = (int)total;
#pragma omp parallel num_threads(nthr)
    {
        const long t = omp_get_thread_num();
        rows(g, total * t / nthr, total * (t + 1) / nthr);
    }
#else
    (void)nthr;
    rows(g, 0, total);
#endif
    return 0;
}

#endif /* LASRES_CONV_FWD16_C */
