/* Batch-normalisation kernels of lasres's C backend (lasres/ops/bn.py).
 *
 * Layout: x viewed as (N, C, M) -- statistics over axes 0 and 2 (the
 * "channel axes" (0, 2, 3) of an NCHW tensor).  Channel by channel, so that
 * one channel's N * M values stay in the cache across the passes; every sum
 * is accumulated in double in LR_LANES independent partial sums (channel.h),
 * whatever the data type.  Forward: a pass for the mean, one for the variance of the
 * centred values, one for the output.  Backward: one pass for both sums,
 * one for the input gradient.  The channel-blocked layout (N, CB, H, W, B),
 * statistics over axes (0, 2, 3), has kernels of its own (lr_bnb_*, below).
 *
 * Compiled as C++ by PyTensor; one instance of each kernel per data type.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifndef LR_BN_C
#define LR_BN_C

/* Channels are independent: with OpenMP (the pool oneDNN uses too) they are
 * shared out among the threads (the pool's default size), for tensors of
 * at least 32768 values (below, a parallel region costs more than it saves),
 * unless the op's c_code cleared lr_bn_parallel (the NumPy convolution
 * kernels run OpenBLAS's own thread pool, which a second pool would fight). */
static int lr_bn_parallel = 1;
#ifdef _OPENMP
#define LR_BN_PARALLEL _Pragma("omp parallel for schedule(static) if (lr_bn_parallel && n_ * c_ * m_ >= 32768)")
#else
#define LR_BN_PARALLEL
#endif

/* The rectifier's gradient at v applied to g, as Rectify's is (ops/elemwise.py):
 * g where v > 0, (T)(0.5 * g) where v == 0, +0 elsewhere (NaN included) -- chosen
 * with bit masks, not branches, so that the loop vectorises (a branch per value
 * mispredicts on random signs: 85% of this kernel's time on an AVX2 CPU). */
static inline float lr_relu_grad(float v, float g)
{
    float half = g * 0.5f, out;
    uint32_t gb, hb, r;
    memcpy(&gb, &g, sizeof gb);
    memcpy(&hb, &half, sizeof hb);
    r = (gb & (0u - (uint32_t)(v > 0))) | (hb & (0u - (uint32_t)(v == 0)));
    memcpy(&out, &r, sizeof out);
    return out;
}

static inline double lr_relu_grad(double v, double g)
{
    double half = g * 0.5, out;
    uint64_t gb, hb, r;
    memcpy(&gb, &g, sizeof gb);
    memcpy(&hb, &half, sizeof hb);
    r = (gb & (0ull - (uint64_t)(v > 0))) | (hb & (0ull - (uint64_t)(v == 0)));
    memcpy(&out, &r, sizeof out);
    return out;
}

/* LR_LANES (8) values of x as a vector of doubles: lane k of a sum of such
 * vectors is the k-th of LR_LANES partial sums, each lane computed with the
 * scalar code's operations in the same order (-ffp-contract=off: no fused
 * multiply-adds), so that the compiler need not find the vectorisation of
 * the scalar loops, which it did not for the backward pass's sums. */
typedef double lr_v8d __attribute__((vector_size(8 * sizeof(double))));
typedef float lr_v8f __attribute__((vector_size(8 * sizeof(float))));

static inline lr_v8d lr_load8_f32(const float *p)
{
    lr_v8f v;
    memcpy(&v, p, sizeof v);
    return __builtin_convertvector(v, lr_v8d);
}

static inline lr_v8d lr_load8_f64(const double *p)
{
    lr_v8d v;
    memcpy(&v, p, sizeof v);
    return v;
}

#define LR_BN_KERNELS(T, SUF)                                                            \
static double lr_bn_sqdev_##SUF(const T *x, npy_intp n_, npy_intp c_, npy_intp m_,      \
                                npy_intp c, double mu)                                   \
{                                                                                        \
    lr_v8d s = {0};              /* lane k: the k-th partial sum */                     \
    double tail = 0.0;                                                                   \
    for (npy_intp n = 0; n < n_; n++) {                                                  \
        const T *p = x + (n * c_ + c) * m_;                                              \
        npy_intp i = 0;                                                                  \
        for (; i + LR_LANES <= m_; i += LR_LANES) {                                      \
            lr_v8d d = lr_load8_##SUF(p + i) - mu;                                       \
            s += d * d;                                                                  \
        }                                                                                \
        for (; i < m_; i++) {                                                            \
            double d = (double)p[i] - mu;                                                \
            tail += d * d;                                                               \
        }                                                                                \
    }                                                                                    \
    for (int k = 0; k < LR_LANES; k++)                                                \
        tail += s[k];                                                                    \
    return tail;                                                                         \
}                                                                                        \
                                                                                         \
/* One channel's output: y = (x - mu) * scale + b, with relu the rectifier               \
 * 0.5 * (y + |y|) of lasres's Rectify applied to y (all in T, as the references). */    \
static void lr_bn_apply_##SUF(const T *x, npy_intp n_, npy_intp c_, npy_intp m_,        \
                              npy_intp c, T mu, T scale, T b, T *y, int relu)            \
{                                                                                        \
    for (npy_intp n = 0; n < n_; n++) {                                                  \
        const T *p = x + (n * c_ + c) * m_;                                              \
        T *q = y + (n * c_ + c) * m_;                                                    \
        if (relu)                                                                        \
            for (npy_intp i = 0; i < m_; i++) {                                          \
                T v = (p[i] - mu) * scale + b;                                           \
                q[i] = (T)(0.5 * (v + fabs(v)));                                         \
            }                                                                            \
        else                                                                             \
            for (npy_intp i = 0; i < m_; i++)                                            \
                q[i] = (p[i] - mu) * scale + b;                                          \
    }                                                                                    \
}                                                                                        \
                                                                                         \
/* y = (x - mean) * (gamma * inv_std) + beta; mean, inv_std and the scale used out;     \
 * with relu, the rectifier 0.5 * (y + |y|) of lasres's Rectify applied to y. */         \
static void lr_bn_train_fwd_##SUF(const T *x, const T *gamma, const T *beta, double eps,\
                                  npy_intp n_, npy_intp c_, npy_intp m_, T *y,          \
                                  T *mean_out, T *inv_out, T *scale_out, int relu)       \
{                                                                                        \
    const double count = (double)(n_ * m_);                                              \
    LR_BN_PARALLEL                                                                       \
    for (npy_intp c = 0; c < c_; c++) {                                                  \
        double mu = lr_channel_total_##SUF(x, n_, c_, m_, c) / count;                           \
        double var = lr_bn_sqdev_##SUF(x, n_, c_, m_, c, mu) / count;                    \
        double inv = 1.0 / sqrt(var + eps);                                              \
        mean_out[c] = (T)mu;                                                             \
        inv_out[c] = (T)inv;                                                             \
        const T mu_t = (T)mu, scale_t = (T)((double)gamma[c] * inv), b = beta[c];        \
        if (scale_out)                                                                   \
            scale_out[c] = scale_t;                                                      \
        lr_bn_apply_##SUF(x, n_, c_, m_, c, mu_t, scale_t, b, y, relu);                  \
    }                                                                                    \
}                                                                                        \
                                                                                         \
/* gbeta = sum gy, ggamma = sum gy * xhat,                                               \
 * gx = (gy - gbeta / count - xhat * ggamma / count) * gamma * inv_std. */               \
static void lr_bn_train_bwd_##SUF(const T *x, const T *gy, const T *gamma, const T *mean,\
                                  const T *inv_std, npy_intp n_, npy_intp c_,            \
                                  npy_intp m_, T *gx, T *ggamma_out, T *gbeta_out,       \
                                  const T *beta, const T *scale, T *gyc, const T *add)   \
{                                                                                        \
    const double count = (double)(n_ * m_);                                              \
    LR_BN_PARALLEL                                                                       \
    for (npy_intp c = 0; c < c_; c++) {                                                  \
        const double mu = (double)mean[c], inv = (double)inv_std[c];                     \
        if (scale) {                                                                     \
            /* gy is the gradient of relu(y): the rectifier's gradient, from y          \
             * recomputed as the forward pass computed it, into this channel of gyc     \
             * (the channel of gx: each value is read before it is overwritten) */      \
            const T mu_t = mean[c], scale_t = scale[c], b = beta[c];                     \
            for (npy_intp n = 0; n < n_; n++) {                                          \
                const T *p = x + (n * c_ + c) * m_;                                      \
                const T *g = gy + (n * c_ + c) * m_;                                     \
                T *q = gyc + (n * c_ + c) * m_;                                          \
                for (npy_intp i = 0; i < m_; i++) {                                      \
                    q[i] = lr_relu_grad((p[i] - mu_t) * scale_t + b, g[i]);              \
                }                                                                        \
            }                                                                            \
        }                                                                                \
        const T *gy_ = scale ? gyc : gy;                                                 \
        lr_v8d sb = {0}, sg = {0};   /* lane k: the k-th partial sums */                \
        double tb = 0.0, tg = 0.0;                                                       \
        for (npy_intp n = 0; n < n_; n++) {                                              \
            const T *p = x + (n * c_ + c) * m_;                                          \
            const T *g = gy_ + (n * c_ + c) * m_;                                         \
            npy_intp i = 0;                                                              \
            for (; i + LR_LANES <= m_; i += LR_LANES) {                                  \
                lr_v8d gv = lr_load8_##SUF(g + i);                                       \
                sb += gv;                                                                \
                sg += gv * ((lr_load8_##SUF(p + i) - mu) * inv);                         \
            }                                                                            \
            for (; i < m_; i++) {                                                        \
                double gv = (double)g[i];                                                \
                tb += gv;                                                                \
                tg += gv * (((double)p[i] - mu) * inv);                                  \
            }                                                                            \
        }                                                                                \
        for (int k = 0; k < LR_LANES; k++) {                                          \
            tb += sb[k];                                                                 \
            tg += sg[k];                                                                 \
        }                                                                                \
        gbeta_out[c] = (T)tb;                                                            \
        ggamma_out[c] = (T)tg;                                                           \
        const double k_ = (double)gamma[c] * inv, mb = tb / count, mg = tg / count;      \
        for (npy_intp n = 0; n < n_; n++) {                                              \
            const T *p = x + (n * c_ + c) * m_;                                          \
            const T *g = gy_ + (n * c_ + c) * m_;                                         \
            T *q = gx + (n * c_ + c) * m_;                                               \
            for (npy_intp i = 0; i < m_; i++) {                                          \
                double xhat = ((double)p[i] - mu) * inv;                                 \
                q[i] = (T)(((double)g[i] - mb - xhat * mg) * k_);                        \
            }                                                                            \
            if (add) {   /* gx + add, rounded as the sum of the two arrays would be */  \
                const T *a = add + (n * c_ + c) * m_;                                    \
                for (npy_intp i = 0; i < m_; i++) q[i] = q[i] + a[i];                    \
            }                                                                            \
        }                                                                                \
    }                                                                                    \
}                                                                                        \
                                                                                         \
/* y = (x - mean) * (gamma * inv_std) + beta, in T; with relu, the rectifier       \
 * 0.5 * (y + |y|) applied as lasres's Rectify computes it (ops/elemwise.py). */         \
static void lr_bn_infer_##SUF(const T *x, const T *gamma, const T *beta, const T *mean, \
                              const T *inv_std, npy_intp n_, npy_intp c_, npy_intp m_,   \
                              T *y, int relu)                                            \
{                                                                                        \
    LR_BN_PARALLEL                                                                       \
    for (npy_intp c = 0; c < c_; c++) {                                                  \
        const T scale = gamma[c] * inv_std[c], mu = mean[c], b = beta[c];                \
        lr_bn_apply_##SUF(x, n_, c_, m_, c, mu, scale, b, y, relu);                      \
    }                                                                                    \
}

LR_BN_KERNELS(float, f32)
LR_BN_KERNELS(double, f64)

/* ---- The channel-blocked layout (channel.h): x is (N, CB, H, W, B), viewed as
 * (N, CB, M, B); the per-channel arrays are (CB, B), i.e. indexed by c = cb * B + b.
 * The per-value formulas of the kernels above, in the same types and order, with
 * the loops over a block's lanes innermost.  A lane's sums over a block are
 * accumulated in double in two partial sums (even and odd m), the blocks' sums
 * added in image order after the parallel loop (lr_block_images): no result
 * depends on the number of threads.  The blocks are shared out among the threads,
 * the same ones to each thread in every pass (static schedule), so that a
 * thread's part of x stays in its cache between passes when it fits. */
#ifdef _OPENMP
#define LR_BNB_REGION _Pragma("omp parallel if (lr_bn_parallel && total_ >= 32768)")
#define LR_BNB_FOR _Pragma("omp for schedule(static)")
#define LR_BNB_SINGLE _Pragma("omp single")
#else
#define LR_BNB_REGION
#define LR_BNB_FOR
#define LR_BNB_SINGLE
#endif

/* out[k] = sum over m of (x[m, k] - mu[k])^2, in double (out may be mu_: each
 * lane group reads its means before writing its sums). */
template <typename T, int KN>
static void lr_bnb_sqdev(const T *x, npy_intp m_, npy_intp b_, const double *mu_,
                         double *out)
{
    const npy_intp S = KN ? KN : b_;
    for (npy_intp k0 = 0; k0 < S; k0 += LR_BLK_MAX) {
        const int K = LR_BLK_K(KN, S, k0);
        double s0[LR_BLK_MAX] = {0}, s1[LR_BLK_MAX] = {0}, mu[LR_BLK_MAX];
        for (int k = 0; k < K; k++)
            mu[k] = mu_[k0 + k];
        const T *p = x + k0;
        npy_intp m = 0;
        for (; m + 1 < m_; m += 2, p += 2 * S)
            for (int k = 0; k < K; k++) {
                double d0 = (double)p[k] - mu[k], d1 = (double)p[S + k] - mu[k];
                s0[k] += d0 * d0;
                s1[k] += d1 * d1;
            }
        if (m < m_)
            for (int k = 0; k < K; k++) {
                double d = (double)p[k] - mu[k];
                s0[k] += d * d;
            }
        for (int k = 0; k < K; k++)
            out[k0 + k] = s0[k] + s1[k];
    }
}

/* A block's output: y = (x - mu) * scale + beta in T, rectified (lr_bn_apply). */
template <typename T, int KN>
static void lr_bnb_apply(const T *__restrict__ x, npy_intp m_, npy_intp b_, const T *mu_,
                         const T *scale_, const T *beta_, T *__restrict__ y, int relu)
{
    const npy_intp S = KN ? KN : b_;
    for (npy_intp k0 = 0; k0 < S; k0 += LR_BLK_MAX) {
        const int K = LR_BLK_K(KN, S, k0);
        T mu[LR_BLK_MAX], sc[LR_BLK_MAX], bt[LR_BLK_MAX];
        for (int k = 0; k < K; k++) {
            mu[k] = mu_[k0 + k];
            sc[k] = scale_[k0 + k];
            bt[k] = beta_[k0 + k];
        }
        const T *p = x + k0;
        T *q = y + k0;
        if (relu)
            for (npy_intp m = 0; m < m_; m++, p += S, q += S)
                for (int k = 0; k < K; k++) {
                    T v = (p[k] - mu[k]) * sc[k] + bt[k];
                    q[k] = (T)(0.5 * (v + fabs(v)));
                }
        else
            for (npy_intp m = 0; m < m_; m++, p += S, q += S)
                for (int k = 0; k < K; k++)
                    q[k] = (p[k] - mu[k]) * sc[k] + bt[k];
    }
}

/* The gradient of y: g itself, or with RELU that of relu(y) with y recomputed as
 * the forward pass computed it (lr_bn_train_bwd). */
template <typename T, int RELU>
static inline T lr_bnb_grad(T x, T g, T mu, T scale, T beta)
{
    return RELU ? lr_relu_grad((x - mu) * scale + beta, g) : g;
}

/* A block's backward sums: ob[k] = sum gy, og[k] = sum gy * xhat (double). */
template <typename T, int KN, int RELU>
static void lr_bnb_gsum(const T *x, const T *gy, npy_intp m_, npy_intp b_,
                        const double *mu_, const double *inv_, const T *mut_,
                        const T *scale_, const T *beta_, double *ob, double *og)
{
    const npy_intp S = KN ? KN : b_;
    for (npy_intp k0 = 0; k0 < S; k0 += LR_BLK_MAX) {
        const int K = LR_BLK_K(KN, S, k0);
        double sb0[LR_BLK_MAX] = {0}, sb1[LR_BLK_MAX] = {0};
        double sg0[LR_BLK_MAX] = {0}, sg1[LR_BLK_MAX] = {0};
        double mu[LR_BLK_MAX], inv[LR_BLK_MAX];
        T mut[LR_BLK_MAX] = {0}, sc[LR_BLK_MAX] = {0}, bt[LR_BLK_MAX] = {0};
        for (int k = 0; k < K; k++) {
            mu[k] = mu_[k0 + k];
            inv[k] = inv_[k0 + k];
            if (RELU) {
                mut[k] = mut_[k0 + k];
                sc[k] = scale_[k0 + k];
                bt[k] = beta_[k0 + k];
            }
        }
        const T *p = x + k0, *g = gy + k0;
        npy_intp m = 0;
        for (; m + 1 < m_; m += 2, p += 2 * S, g += 2 * S)
            for (int k = 0; k < K; k++) {
                double g0 = (double)lr_bnb_grad<T, RELU>(p[k], g[k], mut[k], sc[k], bt[k]);
                double g1 = (double)lr_bnb_grad<T, RELU>(p[S + k], g[S + k], mut[k], sc[k],
                                                         bt[k]);
                sb0[k] += g0;
                sg0[k] += g0 * (((double)p[k] - mu[k]) * inv[k]);
                sb1[k] += g1;
                sg1[k] += g1 * (((double)p[S + k] - mu[k]) * inv[k]);
            }
        if (m < m_)
            for (int k = 0; k < K; k++) {
                double g0 = (double)lr_bnb_grad<T, RELU>(p[k], g[k], mut[k], sc[k], bt[k]);
                sb0[k] += g0;
                sg0[k] += g0 * (((double)p[k] - mu[k]) * inv[k]);
            }
        for (int k = 0; k < K; k++) {
            ob[k0 + k] = sb0[k] + sb1[k];
            og[k0 + k] = sg0[k] + sg1[k];
        }
    }
}

/* A block's input gradient: gx = (gy - mb - xhat * mg) * k, in double. */
template <typename T, int KN, int RELU>
static void lr_bnb_gx(const T *__restrict__ x, const T *__restrict__ gy, npy_intp m_,
                      npy_intp b_, const double *mu_, const double *inv_, const double *mb_,
                      const double *mg_, const double *k_, const T *mut_, const T *scale_,
                      const T *beta_, T *__restrict__ gx, const T *__restrict__ add)
{
    const npy_intp S = KN ? KN : b_;
    for (npy_intp k0 = 0; k0 < S; k0 += LR_BLK_MAX) {
        const int K = LR_BLK_K(KN, S, k0);
        double mu[LR_BLK_MAX], inv[LR_BLK_MAX], mb[LR_BLK_MAX], mg[LR_BLK_MAX],
               kk[LR_BLK_MAX];
        T mut[LR_BLK_MAX] = {0}, sc[LR_BLK_MAX] = {0}, bt[LR_BLK_MAX] = {0};
        for (int k = 0; k < K; k++) {
            mu[k] = mu_[k0 + k];
            inv[k] = inv_[k0 + k];
            mb[k] = mb_[k0 + k];
            mg[k] = mg_[k0 + k];
            kk[k] = k_[k0 + k];
            if (RELU) {
                mut[k] = mut_[k0 + k];
                sc[k] = scale_[k0 + k];
                bt[k] = beta_[k0 + k];
            }
        }
        const T *p = x + k0, *g = gy + k0;
        T *q = gx + k0;
        if (add) {   /* gx + add, rounded as the sum of the two arrays would be */
            const T *a = add + k0;
            for (npy_intp m = 0; m < m_; m++, p += S, g += S, q += S, a += S)
                for (int k = 0; k < K; k++) {
                    double gv = (double)lr_bnb_grad<T, RELU>(p[k], g[k], mut[k], sc[k], bt[k]);
                    double xhat = ((double)p[k] - mu[k]) * inv[k];
                    const T v = (T)((gv - mb[k] - xhat * mg[k]) * kk[k]);
                    q[k] = v + a[k];
                }
            continue;
        }
        for (npy_intp m = 0; m < m_; m++, p += S, g += S, q += S)
            for (int k = 0; k < K; k++) {
                double gv = (double)lr_bnb_grad<T, RELU>(p[k], g[k], mut[k], sc[k], bt[k]);
                double xhat = ((double)p[k] - mu[k]) * inv[k];
                q[k] = (T)((gv - mb[k] - xhat * mg[k]) * kk[k]);
            }
    }
}

/* lr_bn_train_fwd_* on the blocked view; work: (2 n_ + 3) * c_ doubles.
 * The statistics take one pass over x, not two: each block (one image's
 * channel block, m_ * b_ values, a few dozen KiB) is summed, then its squared
 * deviations from its own mean are summed while it is still in the cache;
 * the blocks' sums give the mean (the same sums in the same order as before:
 * the same mean), and the variance is combined from the blocks' terms, in
 * image order, as sum_t [sq_t + m_ (mean_t - mean)^2] (Chan, Golub and
 * LeVeque's pairwise update): the sum of squared deviations from the mean
 * up to the rounding of float64 sums, about 1e-16 relative.  On large
 * activations that do not stay in the cache between passes (ResNet-164's
 * 64-channel stage, 16 MB at batch 64), a pass over x is a quarter of the
 * kernel's memory traffic. */
template <typename T, int KN>
static void lr_bnb_train_fwd(const T *x, const T *gamma, const T *beta, double eps,
                             npy_intp n_, npy_intp cb_, npy_intp m_, npy_intp b_, T *y,
                             T *mean_out, T *inv_out, T *scale_out, int relu, double *work)
{
    const npy_intp c_ = cb_ * b_, nb_ = n_ * cb_, blk = m_ * b_, total_ = n_ * c_ * m_;
    const double count = (double)(n_ * m_);
    double *part = work, *sq = work + n_ * c_, *mu = sq + n_ * c_, *var = mu + c_;
    T *scale = scale_out ? scale_out : (T *)(var + c_);
    LR_BNB_REGION
    {
        LR_BNB_FOR
        for (npy_intp t = 0; t < nb_; t++) {
            double *s = part + t * b_, *q = sq + t * b_;
            lr_block_total<T, KN>(x + t * blk, m_, b_, s);
            for (npy_intp k = 0; k < b_; k++)
                q[k] = s[k] / (double)m_;      /* the block's mean, then its squares */
            lr_bnb_sqdev<T, KN>(x + t * blk, m_, b_, q, q);
        }
        LR_BNB_SINGLE
        {
            lr_block_images(part, n_, c_, mu);
            for (npy_intp c = 0; c < c_; c++) {
                mu[c] /= count;
                var[c] = 0.0;
            }
            for (npy_intp i = 0; i < n_ * c_; i++) {
                const npy_intp c = i % c_;
                const double d = part[i] / (double)m_ - mu[c];
                var[c] += sq[i] + (double)m_ * (d * d);
            }
            for (npy_intp c = 0; c < c_; c++) {
                double inv = 1.0 / sqrt(var[c] / count + eps);
                mean_out[c] = (T)mu[c];
                inv_out[c] = (T)inv;
                scale[c] = (T)((double)gamma[c] * inv);
            }
        }
        LR_BNB_FOR
        for (npy_intp t = 0; t < nb_; t++) {
            const npy_intp o = t % cb_ * b_;
            lr_bnb_apply<T, KN>(x + t * blk, m_, b_, mean_out + o, scale + o, beta + o,
                                y + t * blk, relu);
        }
    }
}

/* lr_bn_train_bwd_* on the blocked view (with scale: the rectifier's gradient
 * recomputed in both passes, nothing stored between them); work: (2 n_ + 5) c_. */
template <typename T, int KN, int RELU>
static void lr_bnb_train_bwd(const T *x, const T *gy, const T *gamma, const T *mean,
                             const T *inv_std, npy_intp n_, npy_intp cb_, npy_intp m_,
                             npy_intp b_, T *gx, T *ggamma_out, T *gbeta_out,
                             const T *beta, const T *scale, const T *add, double *work)
{
    const npy_intp c_ = cb_ * b_, nb_ = n_ * cb_, blk = m_ * b_, total_ = n_ * c_ * m_;
    const double count = (double)(n_ * m_);
    double *pb = work, *pg = pb + n_ * c_, *mu = pg + n_ * c_, *inv = mu + c_,
           *mb = inv + c_, *mg = mb + c_, *kk = mg + c_;
    for (npy_intp c = 0; c < c_; c++) {
        mu[c] = (double)mean[c];
        inv[c] = (double)inv_std[c];
    }
    LR_BNB_REGION
    {
        LR_BNB_FOR
        for (npy_intp t = 0; t < nb_; t++) {
            const npy_intp o = t % cb_ * b_;
            lr_bnb_gsum<T, KN, RELU>(x + t * blk, gy + t * blk, m_, b_, mu + o, inv + o,
                                     mean + o, RELU ? scale + o : NULL,
                                     RELU ? beta + o : NULL, pb + t * b_, pg + t * b_);
        }
        LR_BNB_SINGLE
        {
            lr_block_images(pb, n_, c_, mb);
            lr_block_images(pg, n_, c_, mg);
            for (npy_intp c = 0; c < c_; c++) {
                gbeta_out[c] = (T)mb[c];
                ggamma_out[c] = (T)mg[c];
                kk[c] = (double)gamma[c] * inv[c];
                mb[c] /= count;
                mg[c] /= count;
            }
        }
        LR_BNB_FOR
        for (npy_intp t = 0; t < nb_; t++) {
            const npy_intp o = t % cb_ * b_;
            lr_bnb_gx<T, KN, RELU>(x + t * blk, gy + t * blk, m_, b_, mu + o, inv + o,
                                   mb + o, mg + o, kk + o, mean + o,
                                   RELU ? scale + o : NULL, RELU ? beta + o : NULL,
                                   gx + t * blk, add ? add + t * blk : NULL);
        }
    }
}

/* lr_bn_infer_* on the blocked view; work: c_ values of T. */
template <typename T, int KN>
static void lr_bnb_infer(const T *x, const T *gamma, const T *beta, const T *mean,
                         const T *inv_std, npy_intp n_, npy_intp cb_, npy_intp m_,
                         npy_intp b_, T *y, int relu, T *scale)
{
    const npy_intp c_ = cb_ * b_, nb_ = n_ * cb_, blk = m_ * b_, total_ = n_ * c_ * m_;
    for (npy_intp c = 0; c < c_; c++)
        scale[c] = gamma[c] * inv_std[c];
    LR_BNB_REGION
    {
        LR_BNB_FOR
        for (npy_intp t = 0; t < nb_; t++) {
            const npy_intp o = t % cb_ * b_;
            lr_bnb_apply<T, KN>(x + t * blk, m_, b_, mean + o, scale + o, beta + o,
                                y + t * blk, relu);
        }
    }
}

/* Runs the blocked kernels: the instances for B = 16 and 8 (constant lane counts),
 * the generic one for other B. */
template <typename T>
static void lr_bnb_train_run(PyArrayObject *x, PyArrayObject *g, PyArrayObject *b, double eps,
                             const npy_intp *v, PyArrayObject *y, PyArrayObject *mean,
                             PyArrayObject *inv_std, PyArrayObject *scale, double *work)
{
    auto f = v[3] == 16 ? lr_bnb_train_fwd<T, 16>
             : v[3] == 8 ? lr_bnb_train_fwd<T, 8> : lr_bnb_train_fwd<T, 0>;
    f((const T *)PyArray_DATA(x), (const T *)PyArray_DATA(g), (const T *)PyArray_DATA(b), eps,
      v[0], v[1], v[2], v[3], (T *)PyArray_DATA(y), (T *)PyArray_DATA(mean),
      (T *)PyArray_DATA(inv_std), scale ? (T *)PyArray_DATA(scale) : NULL, scale != NULL,
      work);
}

template <typename T, int RELU>
static void lr_bnb_grad_run(PyArrayObject *x, PyArrayObject *gy, PyArrayObject *g,
                            PyArrayObject *mu, PyArrayObject *inv, const npy_intp *v,
                            PyArrayObject *gx, PyArrayObject *ggamma, PyArrayObject *gbeta,
                            PyArrayObject *beta, PyArrayObject *scale, PyArrayObject *add,
                            double *work)
{
    auto f = v[3] == 16 ? lr_bnb_train_bwd<T, 16, RELU>
             : v[3] == 8 ? lr_bnb_train_bwd<T, 8, RELU> : lr_bnb_train_bwd<T, 0, RELU>;
    f((const T *)PyArray_DATA(x), (const T *)PyArray_DATA(gy), (const T *)PyArray_DATA(g),
      (const T *)PyArray_DATA(mu), (const T *)PyArray_DATA(inv), v[0], v[1], v[2], v[3],
      (T *)PyArray_DATA(gx), (T *)PyArray_DATA(ggamma), (T *)PyArray_DATA(gbeta),
      RELU ? (const T *)PyArray_DATA(beta) : NULL, RELU ? (const T *)PyArray_DATA(scale) : NULL,
      add ? (const T *)PyArray_DATA(add) : NULL, work);
}

template <typename T>
static void lr_bnb_infer_run(PyArrayObject *x, PyArrayObject *g, PyArrayObject *b,
                             PyArrayObject *mu, PyArrayObject *inv, const npy_intp *v,
                             PyArrayObject *y, int relu, double *work)
{
    auto f = v[3] == 16 ? lr_bnb_infer<T, 16>
             : v[3] == 8 ? lr_bnb_infer<T, 8> : lr_bnb_infer<T, 0>;
    f((const T *)PyArray_DATA(x), (const T *)PyArray_DATA(g), (const T *)PyArray_DATA(b),
      (const T *)PyArray_DATA(mu), (const T *)PyArray_DATA(inv), v[0], v[1], v[2], v[3],
      (T *)PyArray_DATA(y), relu, (T *)work);
}

/* The kernels' view of x: v = (N, C, M, 1), or with blocked (a 5-d x normalised over
 * axes (0, 2, 3): the channel-blocked layout) (N, CB, H * W, B); the per-channel
 * arrays' shape in pd, of pnd (1 or 2) dimensions. */
static void lr_bn_view(PyArrayObject *x, int blocked, npy_intp *v, int *pnd, npy_intp *pd)
{
    const npy_intp *d = PyArray_DIMS(x);
    const int last = PyArray_NDIM(x) - (blocked ? 1 : 0);
    v[0] = d[0];
    v[1] = d[1];
    v[2] = 1;
    v[3] = blocked ? d[last] : 1;
    for (int k = 2; k < last; k++)
        v[2] *= d[k];
    pd[0] = v[1];
    pd[1] = v[3];
    *pnd = blocked ? 2 : 1;
}

/* Check that p has the per-channel arrays' shape; sets a Python error otherwise. */
static int lr_bn_check(PyArrayObject *p, int pnd, const npy_intp *pd, const char *what)
{
    if (PyArray_NDIM(p) == pnd && PyArray_CompareLists(PyArray_DIMS(p), pd, pnd))
        return 0;
    if (pnd == 1)
        PyErr_Format(PyExc_ValueError, "batch norm: %s must have shape (%ld,)", what,
                     (long)pd[0]);
    else
        PyErr_Format(PyExc_ValueError, "batch norm: %s must have shape (%ld, %ld)", what,
                     (long)pd[0], (long)pd[1]);
    return -1;
}

/* Scratch memory of the blocked kernels: n doubles, or NULL with a Python error. */
static double *lr_bnb_work(npy_intp n)
{
    double *w = (double *)malloc(sizeof(double) * (size_t)(n > 0 ? n : 1));
    if (w == NULL)
        PyErr_NoMemory();
    return w;
}

/* Entry points called by the ops' c_code; 0 on success, -1 with a Python error set.
 * blocked: x is 5-d in the channel-blocked layout, normalised over axes (0, 2, 3). */

/* Training forward; with scale != NULL also the per-channel scale used, and the
 * output rectified (BatchNormTrainRelu). */
static int lr_bn_train(PyArrayObject *x0, PyArrayObject *g0, PyArrayObject *b0, double eps,
                       PyArrayObject **y, PyArrayObject **mean, PyArrayObject **inv_std,
                       PyArrayObject **scale, int blocked)
{
    int tn = PyArray_TYPE(x0), rc = -1, pnd;
    PyArrayObject *x = lr_contig(x0, tn), *g = lr_contig(g0, tn), *b = lr_contig(b0, tn);
    npy_intp v[4], pd[2], n, c, m;
    double *work = NULL;
    if (!x || !g || !b) goto done;
    if (blocked && tn != NPY_FLOAT32) {   /* (the ops run perform there) */
        PyErr_SetString(PyExc_TypeError, "channel-blocked batch norm in C is float32 only");
        goto done;
    }
    lr_bn_view(x, blocked, v, &pnd, pd);
    n = v[0], c = v[1], m = v[2];
    if (lr_bn_check(g, pnd, pd, "gamma") || lr_bn_check(b, pnd, pd, "beta")) goto done;
    if (lr_out_array(y, PyArray_NDIM(x), PyArray_DIMS(x), tn) || lr_out_array(mean, pnd, pd, tn)
        || lr_out_array(inv_std, pnd, pd, tn) || (scale && lr_out_array(scale, pnd, pd, tn)))
        goto done;
    if (blocked && !(work = lr_bnb_work((2 * n + 3) * c * v[3]))) goto done;
    Py_BEGIN_ALLOW_THREADS
    if (blocked && tn == NPY_FLOAT32)
        lr_bnb_train_run<float>(x, g, b, eps, v, *y, *mean, *inv_std, scale ? *scale : NULL,
                                work);
    else if (tn == NPY_FLOAT32)
        lr_bn_train_fwd_f32((const float *)PyArray_DATA(x), (const float *)PyArray_DATA(g),
                            (const float *)PyArray_DATA(b), eps, n, c, m,
                            (float *)PyArray_DATA(*y), (float *)PyArray_DATA(*mean),
                            (float *)PyArray_DATA(*inv_std),
                            scale ? (float *)PyArray_DATA(*scale) : NULL, scale != NULL);
    else
        lr_bn_train_fwd_f64((const double *)PyArray_DATA(x), (const double *)PyArray_DATA(g),
                            (const double *)PyArray_DATA(b), eps, n, c, m,
                            (double *)PyArray_DATA(*y), (double *)PyArray_DATA(*mean),
                            (double *)PyArray_DATA(*inv_std),
                            scale ? (double *)PyArray_DATA(*scale) : NULL, scale != NULL);
    Py_END_ALLOW_THREADS
    rc = 0;
done:
    free(work);
    Py_XDECREF(x); Py_XDECREF(g); Py_XDECREF(b);
    return rc;
}

/* Training backward; with beta0 and scale0 (BatchNormReluTrainGrad), gy0 is the
 * gradient of the rectified output and the rectifier's gradient is applied first;
 * with add0 (an array of x's shape) the input gradient is gx + add0. */
static int lr_bn_train_grad(PyArrayObject *x0, PyArrayObject *gy0, PyArrayObject *g0,
                            PyArrayObject *mu0, PyArrayObject *inv0, PyArrayObject **gx,
                            PyArrayObject **ggamma, PyArrayObject **gbeta,
                            PyArrayObject *beta0, PyArrayObject *scale0, PyArrayObject *add0,
                            int blocked)
{
    int tn = PyArray_TYPE(x0), rc = -1, pnd;
    PyArrayObject *x = lr_contig(x0, tn), *gy = lr_contig(gy0, tn),
                  *g = lr_contig(g0, tn), *mu = lr_contig(mu0, tn),
                  *inv = lr_contig(inv0, tn), *beta = NULL, *scale = NULL, *add = NULL;
    npy_intp v[4], pd[2], n, c, m;
    double *work = NULL;
    if (!x || !gy || !g || !mu || !inv) goto done;
    if (scale0 && (!(beta = lr_contig(beta0, tn)) || !(scale = lr_contig(scale0, tn))))
        goto done;
    if (add0 && !(add = lr_contig(add0, tn))) goto done;
    if (blocked && tn != NPY_FLOAT32) {   /* (the ops run perform there) */
        PyErr_SetString(PyExc_TypeError, "channel-blocked batch norm in C is float32 only");
        goto done;
    }
    lr_bn_view(x, blocked, v, &pnd, pd);
    n = v[0], c = v[1], m = v[2];
    if (PyArray_NDIM(gy) != PyArray_NDIM(x)
        || !PyArray_CompareLists(PyArray_DIMS(gy), PyArray_DIMS(x), PyArray_NDIM(x))) {
        PyErr_SetString(PyExc_ValueError, "batch norm gradient: gy and x differ in shape");
        goto done;
    }
    if (add && (PyArray_NDIM(add) != PyArray_NDIM(x)
                || !PyArray_CompareLists(PyArray_DIMS(add), PyArray_DIMS(x), PyArray_NDIM(x)))) {
        PyErr_SetString(PyExc_ValueError, "batch norm gradient: the addend and x differ in shape");
        goto done;
    }
    if (lr_bn_check(g, pnd, pd, "gamma") || lr_bn_check(mu, pnd, pd, "mean")
        || lr_bn_check(inv, pnd, pd, "inv_std")) goto done;
    if (scale && (lr_bn_check(beta, pnd, pd, "beta") || lr_bn_check(scale, pnd, pd, "scale")))
        goto done;
    if (lr_out_array(gx, PyArray_NDIM(x), PyArray_DIMS(x), tn)
        || lr_out_array(ggamma, pnd, pd, tn) || lr_out_array(gbeta, pnd, pd, tn)) goto done;
    if (*gx == gy || *gx == add) {  /* never: a fresh or recycled output is not an input */
        PyErr_SetString(PyExc_RuntimeError, "batch norm gradient: output aliases gy");
        goto done;
    }
    if (blocked && !(work = lr_bnb_work((2 * n + 5) * c * v[3]))) goto done;
    Py_BEGIN_ALLOW_THREADS
    if (blocked && tn == NPY_FLOAT32 && scale)
        lr_bnb_grad_run<float, 1>(x, gy, g, mu, inv, v, *gx, *ggamma, *gbeta, beta, scale, add,
                                  work);
    else if (blocked && tn == NPY_FLOAT32)
        lr_bnb_grad_run<float, 0>(x, gy, g, mu, inv, v, *gx, *ggamma, *gbeta, beta, scale, add,
                                  work);
    else if (tn == NPY_FLOAT32)
        lr_bn_train_bwd_f32((const float *)PyArray_DATA(x), (const float *)PyArray_DATA(gy),
                            (const float *)PyArray_DATA(g), (const float *)PyArray_DATA(mu),
                            (const float *)PyArray_DATA(inv), n, c, m,
                            (float *)PyArray_DATA(*gx), (float *)PyArray_DATA(*ggamma),
                            (float *)PyArray_DATA(*gbeta),
                            scale ? (const float *)PyArray_DATA(beta) : NULL,
                            scale ? (const float *)PyArray_DATA(scale) : NULL,
                            (float *)PyArray_DATA(*gx),
                            add ? (const float *)PyArray_DATA(add) : NULL);
    else
        lr_bn_train_bwd_f64((const double *)PyArray_DATA(x), (const double *)PyArray_DATA(gy),
                            (const double *)PyArray_DATA(g), (const double *)PyArray_DATA(mu),
                            (const double *)PyArray_DATA(inv), n, c, m,
                            (double *)PyArray_DATA(*gx), (double *)PyArray_DATA(*ggamma),
                            (double *)PyArray_DATA(*gbeta),
                            scale ? (const double *)PyArray_DATA(beta) : NULL,
                            scale ? (const double *)PyArray_DATA(scale) : NULL,
                            (double *)PyArray_DATA(*gx),
                            add ? (const double *)PyArray_DATA(add) : NULL);
    Py_END_ALLOW_THREADS
    rc = 0;
done:
    free(work);
    Py_XDECREF(x); Py_XDECREF(gy); Py_XDECREF(g); Py_XDECREF(mu); Py_XDECREF(inv);
    Py_XDECREF(beta); Py_XDECREF(scale); Py_XDECREF(add);
    return rc;
}

static int lr_bn_infer(PyArrayObject *x0, PyArrayObject *g0, PyArrayObject *b0,
                       PyArrayObject *mu0, PyArrayObject *inv0, PyArrayObject **y, int relu,
                       int blocked)
{
    int tn = PyArray_TYPE(x0), rc = -1, pnd;
    PyArrayObject *x = lr_contig(x0, tn), *g = lr_contig(g0, tn),
                  *b = lr_contig(b0, tn), *mu = lr_contig(mu0, tn),
                  *inv = lr_contig(inv0, tn);
    npy_intp v[4], pd[2], n, c, m;
    double *work = NULL;
    if (!x || !g || !b || !mu || !inv) goto done;
    if (blocked && tn != NPY_FLOAT32) {   /* (the ops run perform there) */
        PyErr_SetString(PyExc_TypeError, "channel-blocked batch norm in C is float32 only");
        goto done;
    }
    lr_bn_view(x, blocked, v, &pnd, pd);
    n = v[0], c = v[1], m = v[2];
    if (lr_bn_check(g, pnd, pd, "gamma") || lr_bn_check(b, pnd, pd, "beta")
        || lr_bn_check(mu, pnd, pd, "mean") || lr_bn_check(inv, pnd, pd, "inv_std")) goto done;
    if (lr_out_array(y, PyArray_NDIM(x), PyArray_DIMS(x), tn)) goto done;
    if (blocked && !(work = lr_bnb_work(c * v[3]))) goto done;
    Py_BEGIN_ALLOW_THREADS
    if (blocked && tn == NPY_FLOAT32)
        lr_bnb_infer_run<float>(x, g, b, mu, inv, v, *y, relu, work);
    else if (tn == NPY_FLOAT32)
        lr_bn_infer_f32((const float *)PyArray_DATA(x), (const float *)PyArray_DATA(g),
                        (const float *)PyArray_DATA(b), (const float *)PyArray_DATA(mu),
                        (const float *)PyArray_DATA(inv), n, c, m, (float *)PyArray_DATA(*y),
                        relu);
    else
        lr_bn_infer_f64((const double *)PyArray_DATA(x), (const double *)PyArray_DATA(g),
                        (const double *)PyArray_DATA(b), (const double *)PyArray_DATA(mu),
                        (const double *)PyArray_DATA(inv), n, c, m, (double *)PyArray_DATA(*y),
                        relu);
    Py_END_ALLOW_THREADS
    rc = 0;
done:
    free(work);
    Py_XDECREF(x); Py_XDECREF(g); Py_XDECREF(b); Py_XDECREF(mu); Py_XDECREF(inv);
    return rc;
}

#endif /* LR_BN_C */
