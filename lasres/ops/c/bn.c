/* Batch-normalisation kernels of lasres's C backend (lasres/ops/bn.py).
 *
 * Layout: x viewed as (N, C, M) -- statistics over axes 0 and 2 (the
 * "channel axes" (0, 2, 3) of an NCHW tensor).  Channel by channel, so that
 * one channel's N * M values stay in the cache across the passes; every sum
 * is accumulated in double in LR_LANES independent partial sums (channel.h),
 * whatever the data type.  Forward: a pass for the mean, one for the variance of the
 * centred values, one for the output.  Backward: one pass for both sums,
 * one for the input gradient.
 *
 * Compiled as C++ by PyTensor; one instance of each kernel per data type.
 */
#include <math.h>
#include <stdint.h>
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

/* Check that p is a vector of c values; sets a Python error otherwise. */
static int lr_bn_check_vec(PyArrayObject *p, npy_intp c, const char *what)
{
    if (PyArray_NDIM(p) != 1 || PyArray_DIMS(p)[0] != c) {
        PyErr_Format(PyExc_ValueError, "batch norm: %s must have shape (%ld,)", what, (long)c);
        return -1;
    }
    return 0;
}

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
                                  const T *beta, const T *scale, T *gyc)                 \
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

/* (N, C, M) of an array of at least 2 dimensions. */
static void lr_bn_ncm(PyArrayObject *x, npy_intp *n, npy_intp *c, npy_intp *m)
{
    *n = PyArray_DIMS(x)[0];
    *c = PyArray_DIMS(x)[1];
    *m = 1;
    for (int d = 2; d < PyArray_NDIM(x); d++)
        *m *= PyArray_DIMS(x)[d];
}

/* Entry points called by the ops' c_code; 0 on success, -1 with a Python error set. */

/* Training forward; with scale != NULL also the per-channel scale used, and the
 * output rectified (BatchNormTrainRelu). */
static int lr_bn_train(PyArrayObject *x0, PyArrayObject *g0, PyArrayObject *b0, double eps,
                       PyArrayObject **y, PyArrayObject **mean, PyArrayObject **inv_std,
                       PyArrayObject **scale)
{
    int tn = PyArray_TYPE(x0), rc = -1;
    PyArrayObject *x = lr_contig(x0, tn), *g = lr_contig(g0, tn), *b = lr_contig(b0, tn);
    npy_intp n, c, m;
    if (!x || !g || !b) goto done;
    lr_bn_ncm(x, &n, &c, &m);
    if (lr_bn_check_vec(g, c, "gamma") || lr_bn_check_vec(b, c, "beta")) goto done;
    if (lr_out_array(y, PyArray_NDIM(x), PyArray_DIMS(x), tn) || lr_out_array(mean, 1, &c, tn)
        || lr_out_array(inv_std, 1, &c, tn) || (scale && lr_out_array(scale, 1, &c, tn))) goto done;
    Py_BEGIN_ALLOW_THREADS
    if (tn == NPY_FLOAT32)
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
    Py_XDECREF(x); Py_XDECREF(g); Py_XDECREF(b);
    return rc;
}

/* Training backward; with beta0 and scale0 (BatchNormReluTrainGrad), gy0 is the
 * gradient of the rectified output and the rectifier's gradient is applied first. */
static int lr_bn_train_grad(PyArrayObject *x0, PyArrayObject *gy0, PyArrayObject *g0,
                            PyArrayObject *mu0, PyArrayObject *inv0, PyArrayObject **gx,
                            PyArrayObject **ggamma, PyArrayObject **gbeta,
                            PyArrayObject *beta0, PyArrayObject *scale0)
{
    int tn = PyArray_TYPE(x0), rc = -1;
    PyArrayObject *x = lr_contig(x0, tn), *gy = lr_contig(gy0, tn),
                  *g = lr_contig(g0, tn), *mu = lr_contig(mu0, tn),
                  *inv = lr_contig(inv0, tn), *beta = NULL, *scale = NULL;
    npy_intp n, c, m;
    if (!x || !gy || !g || !mu || !inv) goto done;
    if (scale0 && (!(beta = lr_contig(beta0, tn)) || !(scale = lr_contig(scale0, tn))))
        goto done;
    lr_bn_ncm(x, &n, &c, &m);
    if (PyArray_NDIM(gy) != PyArray_NDIM(x)
        || !PyArray_CompareLists(PyArray_DIMS(gy), PyArray_DIMS(x), PyArray_NDIM(x))) {
        PyErr_SetString(PyExc_ValueError, "batch norm gradient: gy and x differ in shape");
        goto done;
    }
    if (lr_bn_check_vec(g, c, "gamma") || lr_bn_check_vec(mu, c, "mean")
        || lr_bn_check_vec(inv, c, "inv_std")) goto done;
    if (scale && (lr_bn_check_vec(beta, c, "beta") || lr_bn_check_vec(scale, c, "scale")))
        goto done;
    if (lr_out_array(gx, PyArray_NDIM(x), PyArray_DIMS(x), tn) || lr_out_array(ggamma, 1, &c, tn)
        || lr_out_array(gbeta, 1, &c, tn)) goto done;
    if (*gx == gy) {  /* never: a fresh or recycled output is not an input */
        PyErr_SetString(PyExc_RuntimeError, "batch norm gradient: output aliases gy");
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    if (tn == NPY_FLOAT32)
        lr_bn_train_bwd_f32((const float *)PyArray_DATA(x), (const float *)PyArray_DATA(gy),
                            (const float *)PyArray_DATA(g), (const float *)PyArray_DATA(mu),
                            (const float *)PyArray_DATA(inv), n, c, m,
                            (float *)PyArray_DATA(*gx), (float *)PyArray_DATA(*ggamma),
                            (float *)PyArray_DATA(*gbeta),
                            scale ? (const float *)PyArray_DATA(beta) : NULL,
                            scale ? (const float *)PyArray_DATA(scale) : NULL,
                            (float *)PyArray_DATA(*gx));
    else
        lr_bn_train_bwd_f64((const double *)PyArray_DATA(x), (const double *)PyArray_DATA(gy),
                            (const double *)PyArray_DATA(g), (const double *)PyArray_DATA(mu),
                            (const double *)PyArray_DATA(inv), n, c, m,
                            (double *)PyArray_DATA(*gx), (double *)PyArray_DATA(*ggamma),
                            (double *)PyArray_DATA(*gbeta),
                            scale ? (const double *)PyArray_DATA(beta) : NULL,
                            scale ? (const double *)PyArray_DATA(scale) : NULL,
                            (double *)PyArray_DATA(*gx));
    Py_END_ALLOW_THREADS
    rc = 0;
done:
    Py_XDECREF(x); Py_XDECREF(gy); Py_XDECREF(g); Py_XDECREF(mu); Py_XDECREF(inv);
    Py_XDECREF(beta); Py_XDECREF(scale);
    return rc;
}

static int lr_bn_infer(PyArrayObject *x0, PyArrayObject *g0, PyArrayObject *b0,
                       PyArrayObject *mu0, PyArrayObject *inv0, PyArrayObject **y, int relu)
{
    int tn = PyArray_TYPE(x0), rc = -1;
    PyArrayObject *x = lr_contig(x0, tn), *g = lr_contig(g0, tn),
                  *b = lr_contig(b0, tn), *mu = lr_contig(mu0, tn),
                  *inv = lr_contig(inv0, tn);
    npy_intp n, c, m;
    if (!x || !g || !b || !mu || !inv) goto done;
    lr_bn_ncm(x, &n, &c, &m);
    if (lr_bn_check_vec(g, c, "gamma") || lr_bn_check_vec(b, c, "beta")
        || lr_bn_check_vec(mu, c, "mean") || lr_bn_check_vec(inv, c, "inv_std")) goto done;
    if (lr_out_array(y, PyArray_NDIM(x), PyArray_DIMS(x), tn)) goto done;
    Py_BEGIN_ALLOW_THREADS
    if (tn == NPY_FLOAT32)
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
    Py_XDECREF(x); Py_XDECREF(g); Py_XDECREF(b); Py_XDECREF(mu); Py_XDECREF(inv);
    return rc;
}

#endif /* LR_BN_C */
