/* The weight gradient of a 3x3 or 1x1, stride-1 convolution on
 * channel-blocked arrays, lasres's own kernels (no oneDNN call).
 *
 *   dw[o, c, y, z] = sum over n, r, q of gz[n, o, r, q] * x[n, c, r + y - ph, q + z - pw]
 *
 * x is (N, C/B, H, W, B) and gz (N, F/B, OH, OW, B), B = 16 (AVX-512) or 8
 * (AVX2), C and F multiples of B.  The lanes of a vector are B output
 * channels; for one input column the kernel broadcasts G input channels and
 * multiplies them with the output gradient at the three columns that meet
 * that input column through the filter's three taps of a row: 3 x G
 * accumulators (G = 8 of 32 registers with AVX-512, 4 of 16 with AVX2).
 * A 1x1 filter (no padding) has B accumulators, one per input channel of
 * the block, and runs along the pixels as along one row.
 *
 * Round-off: each accumulator sums at most LR_CHAIN products in float32
 * (3x3: whole output rows, at least one; 1x1: LR_CHAIN1 pixels; a chain goes
 * on into the next image),
 * then is added to a float64 sum; the threads take whole images, in order,
 * each with its own float64 sums, and those are added in thread order.  A
 * GEMM (Lasagne's CorrMM) sums a K-block of a few hundred products in
 * float32 and adds the blocks in float32: this rounds no worse
 * (tests/test_ops_conv_native.py, tests/test_float32_precision.py).
 *
 * lr_bwdw_blocked returns 0 (dw written), 1 (not this geometry, this CPU or
 * no memory: the caller runs oneDNN) -- never an error of its own. */
#ifndef LASRES_CONV_BWDW_C
#define LASRES_CONV_BWDW_C

#include <immintrin.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define LR_CHAIN 128
/* The 1x1 kernel's chains: 32 pixels.  With 128, a small 1x1 layer's weight
 * gradient (6 images of 17x19 pixels, 16 -> 32 channels) rounded worse than
 * OpenBLAS's float32 GEMM on an Intel Xeon (Sapphire Rapids), whose kernel for
 * such small products keeps many partial sums (rms error 4.5e-6 against
 * 2.8e-6; now 2.3e-6; a bottleneck's 64 -> 16 layer 9.1e-6 -> 5.1e-6 against
 * the GEMM's 1.6e-5); the more frequent float64 flushes cost about 15% of
 * the kernel's time. */
#define LR_CHAIN1 32
/* the images of one pass over the (output block, input block) pairs: their
 * x and gz in about this many bytes (L2), so that each pair's sums and
 * chains stay in L1 while they run through the pass's images */
#define LR_BW_CHUNK (512 * 1024)

typedef struct {
    long n, c, h, w, f, oh, ow, ph, pw, block, k;   /* k: the filter's size, 3 or 1 */
} lr_bw_geom;

/* One image's (output block, input block) pair: adds its products into the
 * float32 chains st (continued from the image before), which are added to
 * the float64 sums acc64 once they hold LR_CHAIN products (rows; chain[y]
 * counts them); both laid out [y][z][c in block][o in block].  The taps
 * z = 0, 1, 2 of an input column meet output columns col + pw, col + pw - 1
 * and col + pw - 2; in [lo, hi) all three exist, elsewhere some are skipped. */
#define LR_BW_KERNEL(NAME, TARGET, VEC, B, G, ZERO, LOAD, STORE, BCAST, FMA, FLUSH)           \
__attribute__((target(TARGET)))                                                            \
static void NAME(const lr_bw_geom *g, const float *xb, const float *gb, double *acc64,     \
                 float *st, long *chain)                                                   \
{                                                                                          \
    long y, ig, r, col, rows_per = LR_CHAIN / g->ow;                                       \
    const long lo = 2 - g->pw > 0 ? 2 - g->pw : 0;                                         \
    const long hi0 = g->ow - g->pw, hi = hi0 < g->w ? hi0 : g->w;                          \
    if (rows_per < 1) rows_per = 1;                                                        \
    for (y = 0; y < 3; y++) {                                                              \
        long chained = 0;                                                                  \
        for (ig = 0; ig < B / G; ig++) {                                                   \
            VEC a0[G], a1[G], a2[G];                                                       \
            long i;                                                                        \
            const long off = (y * 3 * B + ig * G) * B;                                     \
            double *out = acc64 + off;                                                     \
            float *keep = st + off;                                                        \
            chained = chain[y];                                                            \
            _Pragma("GCC unroll 8")                                                        \
            for (i = 0; i < G; i++) {                                                      \
                a0[i] = LOAD(keep + i * B);                                                \
                a1[i] = LOAD(keep + (B + i) * B);                                          \
                a2[i] = LOAD(keep + (2 * B + i) * B);                                      \
            }                                                                              \
            for (r = 0; r < g->oh; r++) {                                                  \
                const long t = r + y - g->ph;                                              \
                const float *xr, *gr;                                                      \
                if (t < 0 || t >= g->h) continue;                                          \
                xr = xb + t * g->w * B + ig * G;                                           \
                gr = gb + r * g->ow * B + g->pw * B;   /* gr + col * B: tap 0's column */  \
                for (col = 0; col < g->w; col++) {                                         \
                    const float *xc = xr + col * B, *gc = gr + col * B;                    \
                    const long q0 = col + g->pw;                                           \
                    const int v0 = q0 < g->ow, v1 = q0 >= 1 && q0 - 1 < g->ow,             \
                              v2 = q0 >= 2 && q0 - 2 < g->ow;                              \
                    if (col >= lo && col < hi) {   /* all three taps: the hot loop */      \
                        for (; col < hi; col++, xc += B, gc += B) {                        \
                            const VEC g0 = LOAD(gc), g1 = LOAD(gc - B), g2 = LOAD(gc - 2 * B); \
                            _Pragma("GCC unroll 8")                                        \
                            for (i = 0; i < G; i++) {                                      \
                                const VEC xv = BCAST(xc + i);                              \
                                a0[i] = FMA(xv, g0, a0[i]);                                \
                                a1[i] = FMA(xv, g1, a1[i]);                                \
                                a2[i] = FMA(xv, g2, a2[i]);                                \
                            }                                                              \
                        }                                                                  \
                        col--;                                                             \
                        continue;                                                          \
                    }                                                                      \
                    {                                                                      \
                        const VEC g0 = v0 ? LOAD(gc) : ZERO, g1 = v1 ? LOAD(gc - B) : ZERO, \
                                  g2 = v2 ? LOAD(gc - 2 * B) : ZERO;                       \
                        if (v0) {                                                          \
                            _Pragma("GCC unroll 8")                                        \
                            for (i = 0; i < G; i++) a0[i] = FMA(BCAST(xc + i), g0, a0[i]); \
                        }                                                                  \
                        if (v1) {                                                          \
                            _Pragma("GCC unroll 8")                                        \
                            for (i = 0; i < G; i++) a1[i] = FMA(BCAST(xc + i), g1, a1[i]); \
                        }                                                                  \
                        if (v2) {                                                          \
                            _Pragma("GCC unroll 8")                                        \
                            for (i = 0; i < G; i++) a2[i] = FMA(BCAST(xc + i), g2, a2[i]); \
                        }                                                                  \
                    }                                                                      \
                }                                                                          \
                if (++chained >= rows_per) {                                               \
                    _Pragma("GCC unroll 8")                                                \
                    for (i = 0; i < G; i++) {                                              \
                        FLUSH(out + i * B, a0[i]);                                         \
                        FLUSH(out + (B + i) * B, a1[i]);                                   \
                        FLUSH(out + (2 * B + i) * B, a2[i]);                               \
                        a0[i] = a1[i] = a2[i] = ZERO;                                      \
                    }                                                                      \
                    chained = 0;                                                           \
                }                                                                          \
            }                                                                              \
            _Pragma("GCC unroll 8")                                                        \
            for (i = 0; i < G; i++) {                                                      \
                STORE(keep + i * B, a0[i]);                                                \
                STORE(keep + (B + i) * B, a1[i]);                                          \
                STORE(keep + (2 * B + i) * B, a2[i]);                                      \
            }                                                                              \
        }                                                                                  \
        chain[y] = chained;                                                                \
    }                                                                                      \
}

/* The 1x1 kernel: dw[o, c] += gz[p, o] * x[p, c] along the image's pixels p,
 * flushed to acc64 every LR_CHAIN pixels (chain[0] counts them). */
#define LR_BW1_KERNEL(NAME, TARGET, VEC, B, ZERO, LOAD, STORE, BCAST, FMA, FLUSH)               \
__attribute__((target(TARGET)))                                                            \
static void NAME(const lr_bw_geom *g, const float *xb, const float *gb, double *acc64,     \
                 float *st, long *chain)                                                   \
{                                                                                          \
    const long np = g->oh * g->ow;                                                         \
    long p = 0, i, count = chain[0];                                                       \
    VEC a[B];                                                                              \
    _Pragma("GCC unroll 16")                                                               \
    for (i = 0; i < B; i++) a[i] = LOAD(st + i * B);                                       \
    while (p < np) {                                                                       \
        const long stop = np - p < LR_CHAIN1 - count ? np : p + LR_CHAIN1 - count;          \
        count += stop - p;                                                                 \
        for (; p < stop; p++) {                                                            \
            const VEC gv = LOAD(gb + p * B);                                               \
            const float *xp = xb + p * B;                                                  \
            _Pragma("GCC unroll 16")                                                       \
            for (i = 0; i < B; i++) a[i] = FMA(BCAST(xp + i), gv, a[i]);                   \
        }                                                                                  \
        if (count == LR_CHAIN1) {                                                           \
            _Pragma("GCC unroll 16")                                                       \
            for (i = 0; i < B; i++) {                                                      \
                FLUSH(acc64 + i * B, a[i]);                                                \
                a[i] = ZERO;                                                               \
            }                                                                              \
            count = 0;                                                                     \
        }                                                                                  \
    }                                                                                      \
    _Pragma("GCC unroll 16")                                                               \
    for (i = 0; i < B; i++) STORE(st + i * B, a[i]);                                       \
    chain[0] = count;                                                                      \
}

#define LR_F16_FLUSH(p, v) do {                                                            \
        __m512d lo_ = _mm512_cvtps_pd(_mm512_castps512_ps256(v));                          \
        __m512d hi_ = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(             \
            _mm512_castps_pd(v), 1)));                                                     \
        _mm512_storeu_pd((p), _mm512_add_pd(_mm512_loadu_pd(p), lo_));                     \
        _mm512_storeu_pd((p) + 8, _mm512_add_pd(_mm512_loadu_pd((p) + 8), hi_));           \
    } while (0)
#define LR_F8_FLUSH(p, v) do {                                                             \
        __m256d lo_ = _mm256_cvtps_pd(_mm256_castps256_ps128(v));                          \
        __m256d hi_ = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));                        \
        _mm256_storeu_pd((p), _mm256_add_pd(_mm256_loadu_pd(p), lo_));                     \
        _mm256_storeu_pd((p) + 4, _mm256_add_pd(_mm256_loadu_pd((p) + 4), hi_));           \
    } while (0)

#define LR_BC16(p) _mm512_set1_ps(*(p))
LR_BW_KERNEL(lr_bw_pair16, "avx512f,tune=generic", __m512, 16, 8, _mm512_setzero_ps(),
             _mm512_loadu_ps, _mm512_storeu_ps, LR_BC16, _mm512_fmadd_ps, LR_F16_FLUSH)
LR_BW_KERNEL(lr_bw_pair8, "avx2,fma,tune=generic", __m256, 8, 4, _mm256_setzero_ps(),
             _mm256_loadu_ps, _mm256_storeu_ps, _mm256_broadcast_ss, _mm256_fmadd_ps, LR_F8_FLUSH)
LR_BW1_KERNEL(lr_bw1_pair16, "avx512f,tune=generic", __m512, 16, _mm512_setzero_ps(),
              _mm512_loadu_ps, _mm512_storeu_ps, LR_BC16, _mm512_fmadd_ps, LR_F16_FLUSH)
LR_BW1_KERNEL(lr_bw1_pair8, "avx2,fma,tune=generic", __m256, 8, _mm256_setzero_ps(),
              _mm256_loadu_ps, _mm256_storeu_ps, _mm256_broadcast_ss, _mm256_fmadd_ps, LR_F8_FLUSH)

/* dw (F, C, k, k) of g's arrays; see the top of this file. */
/* The threads' float64 sums, open float32 chains and their row counts, kept between calls
 * (the ops hold the GIL: one call at a time per module), so that a call
 * neither maps fresh pages nor zeroes them on one thread. */
static double *lr_bw_part = NULL;
static size_t lr_bw_cap = 0;

static int lr_bwdw_blocked(const lr_bw_geom *g, const float *x, const float *gz, float *dw)
{
    const long B = g->block, cb = g->c / B, fb = g->f / B, kk = g->k * g->k;
    const long size = g->f * g->c * kk, pb = kk * B * B;   /* all sums; one pair's */
    const long xs = g->h * g->w * B, zs = g->oh * g->ow * B;
    /* per thread, in doubles: the sums, the chains (floats, then 8 floats
     * apart), the chains' counts (longs, 3 per pair) */
    const size_t per = (size_t)size + ((size_t)size + 8) / 2 + (size_t)fb * cb * 3 + 8;
    void (*pair)(const lr_bw_geom *, const float *, const float *, double *, float *,
                 long *) = NULL;
    long imgs = LR_BW_CHUNK / (long)(sizeof(float) * (xs * cb + zs * fb));
    int nthr = 1, wide;
    if (g->c % B || g->f % B || g->n < 1 || g->oh < 1 || g->ow < 1)
        return 1;
    if (g->k == 3 ? g->ph < 0 || g->ph > 2 || g->pw < 0 || g->pw > 2
                  : g->k != 1 || g->ph || g->pw || g->oh != g->h || g->ow != g->w)
        return 1;
    if (imgs < 1) imgs = 1;
    __builtin_cpu_init();
    wide = B == 16 && __builtin_cpu_supports("avx512f");
    if (wide)
        pair = g->k == 3 ? lr_bw_pair16 : lr_bw1_pair16;
    else if (B == 8 && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        pair = g->k == 3 ? lr_bw_pair8 : lr_bw1_pair8;
    if (!pair)
        return 1;
#ifdef _OPENMP
    nthr = omp_in_parallel() ? 1 : omp_get_max_threads();
    if (nthr > g->n) nthr = (int)g->n;
#endif
    if ((size_t)nthr * per > lr_bw_cap) {
        double *p = (double *)malloc(sizeof(double) * (size_t)nthr * per);
        if (!p) return 1;
        free(lr_bw_part);
        lr_bw_part = p;
        lr_bw_cap = (size_t)nthr * per;
    }
#ifdef _OPENMP
#pragma omp parallel num_threads(nthr)
#endif
    {
#ifdef _OPENMP
        const int t = omp_get_thread_num();
#else
        const int t = 0;
#endif
        double *mine = lr_bw_part + (size_t)t * per;
        float *st = (float *)(mine + size);
        long *counts = (long *)(st + size + 8), n, n0, ob, ib, j;
        const long first = g->n * t / nthr, end = g->n * (t + 1) / nthr;
        memset(mine, 0, sizeof(double) * size);
        memset(st, 0, sizeof(float) * size);
        memset(counts, 0, sizeof(long) * fb * cb * 3);
        for (n0 = first; n0 < end; n0 += imgs) {   /* a pass: images [n0, n0 + imgs) */
            const long n1 = end - n0 < imgs ? end : n0 + imgs;
            for (ob = 0; ob < fb; ob++)
                for (ib = 0; ib < cb; ib++)
                    for (n = n0; n < n1; n++)
                        pair(g, x + (n * cb + ib) * xs, gz + (n * fb + ob) * zs,
                             mine + (ob * cb + ib) * pb, st + (ob * cb + ib) * pb,
                             counts + (ob * cb + ib) * 3);
        }
        for (j = 0; j < size; j++)   /* the chains still open */
            mine[j] += st[j];
#ifdef _OPENMP
#pragma omp barrier
#endif
        /* the threads' sums in thread order; j runs over [ob][ib][y][z][ci][oj] */
        for (j = size * t / nthr; j < size * (t + 1) / nthr; j++) {
            const long oj = j % B, ci = (j / B) % B, yz = (j / (B * B)) % kk;
            const long ibk = (j / pb) % cb, obk = j / (pb * cb);
            double sum = 0.0;
            int s;
            for (s = 0; s < nthr; s++)
                sum += lr_bw_part[(size_t)s * per + j];
            dw[((obk * B + oj) * g->c + ibk * B + ci) * kk + yz] = (float)sum;
        }
    }
    return 0;
}

#endif /* LASRES_CONV_BWDW_C */
