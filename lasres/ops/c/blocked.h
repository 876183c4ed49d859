/* The channel-blocked layout's transpositions, NCHW (N, C, M) <-> (N, C/B, M, B),
 * for float and double: lr_to_blocked_f32/_f64 and lr_from_blocked_f32/_f64.
 * Each (image, block of channels) is one transposition of a (B, M) tile, in
 * strips of LR_LT_STRIP pixels so that the B rows being read stay in the
 * cache; the (image, block) pairs are shared among the OpenMP threads (when
 * lr_lt_parallel is set and the array is large).  Used by the layout
 * conversions (layout.c) and by the convolutions' own weight gradient
 * (onednn_conv.c). */
#ifndef LR_BLOCKED_H
#define LR_BLOCKED_H

#define LR_LT_STRIP 64

static int lr_lt_parallel = 1;
#ifdef _OPENMP
#define LR_LT_PARALLEL _Pragma("omp parallel for schedule(static) if (lr_lt_parallel && n_ * cb_ * m_ * b_ >= 32768)")
#else
#define LR_LT_PARALLEL
#endif

#define LR_LT_KERNELS(T, SUF)                                                            \
/* y[n, cb, m, b] = x[n, cb * B + b, m] */                                               \
static void lr_to_blocked_##SUF(const T *x, npy_intp n_, npy_intp cb_, npy_intp m_,     \
                                npy_intp b_, T *y)                                       \
{                                                                                        \
    LR_LT_PARALLEL                                                                       \
    for (npy_intp t = 0; t < n_ * cb_; t++) {                                            \
        const T *src = x + t * b_ * m_;                                                  \
        T *dst = y + t * b_ * m_;                                                        \
        for (npy_intp m0 = 0; m0 < m_; m0 += LR_LT_STRIP) {                              \
            npy_intp m1 = m0 + LR_LT_STRIP < m_ ? m0 + LR_LT_STRIP : m_;                 \
            if (b_ == 16) {                                                              \
                for (npy_intp m = m0; m < m1; m++)                                       \
                    for (npy_intp b = 0; b < 16; b++)                                    \
                        dst[m * 16 + b] = src[b * m_ + m];                               \
            } else if (b_ == 8) {                                                        \
                for (npy_intp m = m0; m < m1; m++)                                       \
                    for (npy_intp b = 0; b < 8; b++)                                     \
                        dst[m * 8 + b] = src[b * m_ + m];                                \
            } else {                                                                     \
                for (npy_intp m = m0; m < m1; m++)                                       \
                    for (npy_intp b = 0; b < b_; b++)                                    \
                        dst[m * b_ + b] = src[b * m_ + m];                               \
            }                                                                            \
        }                                                                                \
    }                                                                                    \
}                                                                                        \
                                                                                         \
/* x[n, cb * B + b, m] = y[n, cb, m, b] */                                               \
static void lr_from_blocked_##SUF(const T *y, npy_intp n_, npy_intp cb_, npy_intp m_,   \
                                  npy_intp b_, T *x)                                     \
{                                                                                        \
    LR_LT_PARALLEL                                                                       \
    for (npy_intp t = 0; t < n_ * cb_; t++) {                                            \
        const T *src = y + t * b_ * m_;                                                  \
        T *dst = x + t * b_ * m_;                                                        \
        for (npy_intp m0 = 0; m0 < m_; m0 += LR_LT_STRIP) {                              \
            npy_intp m1 = m0 + LR_LT_STRIP < m_ ? m0 + LR_LT_STRIP : m_;                 \
            if (b_ == 16) {                                                              \
                for (npy_intp b = 0; b < 16; b++)                                        \
                    for (npy_intp m = m0; m < m1; m++)                                   \
                        dst[b * m_ + m] = src[m * 16 + b];                               \
            } else if (b_ == 8) {                                                        \
                for (npy_intp b = 0; b < 8; b++)                                         \
                    for (npy_intp m = m0; m < m1; m++)                                   \
                        dst[b * m_ + m] = src[m * 8 + b];                                \
            } else {                                                                     \
                for (npy_intp b = 0; b < b_; b++)                                        \
                    for (npy_intp m = m0; m < m1; m++)                                   \
                        dst[b * m_ + m] = src[m * b_ + b];                               \
            }                                                                            \
        }                                                                                \
    }                                                                                    \
}

LR_LT_KERNELS(float, f32)
LR_LT_KERNELS(double, f64)

#endif /* LR_BLOCKED_H */
