/* Channel-blocked layout conversions of lasres's C backend (lasres/ops/layout.py).
 *
 * NCHW (N, C, H, W) <-> oneDNN's nChw8c / nChw16c, as 5-d arrays
 * (N, C/B, H, W, B): channel c of pixel m at [n, c / B, m, c % B].  Each
 * (image, block of channels) is one transposition of a (B, M) tile, done in
 * strips of LR_LT_STRIP pixels so that the B rows being read stay in the
 * cache; the (image, block) pairs are shared among the OpenMP threads.
 *
 * Compiled as C++ by PyTensor, after channel.h (lr_out_array).
 */
#ifndef LR_LAYOUT_C
#define LR_LAYOUT_C

#include <string.h>

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

/* to_blocked: x (N, C, H, W) -> *out (N, C/B, H, W, B); from_blocked the reverse.
 * 0, or -1 with a Python error. */
static int lr_layout_convert(PyArrayObject *x0, npy_intp block, int to_blocked,
                             PyArrayObject **out)
{
    int typenum = PyArray_TYPE(x0), rc = -1;
    PyArrayObject *x = NULL;
    npy_intp n, cb, h, w, dims[5];
    if (typenum != NPY_FLOAT32 && typenum != NPY_FLOAT64) {
        PyErr_SetString(PyExc_TypeError, "layout conversion: float32 or float64 only");
        return -1;
    }
    if (PyArray_NDIM(x0) != (to_blocked ? 4 : 5)
        || (to_blocked ? PyArray_DIMS(x0)[1] % block : PyArray_DIMS(x0)[4] != block)) {
        PyErr_Format(PyExc_ValueError, "layout conversion: expected %s with blocks of %ld",
                     to_blocked ? "(N, C, H, W)" : "(N, C/B, H, W, B)", (long)block);
        return -1;
    }
    x = (PyArrayObject *)PyArray_FromAny((PyObject *)x0, PyArray_DescrFromType(typenum), 0, 0,
                                         NPY_ARRAY_CARRAY_RO, NULL);
    if (!x) return -1;
    n = PyArray_DIMS(x)[0];
    cb = to_blocked ? PyArray_DIMS(x)[1] / block : PyArray_DIMS(x)[1];
    h = PyArray_DIMS(x)[2];
    w = PyArray_DIMS(x)[3];
    if (to_blocked) {
        dims[0] = n; dims[1] = cb; dims[2] = h; dims[3] = w; dims[4] = block;
        if (lr_out_array(out, 5, dims, typenum)) goto done;
    } else {
        dims[0] = n; dims[1] = cb * block; dims[2] = h; dims[3] = w;
        if (lr_out_array(out, 4, dims, typenum)) goto done;
    }
    if (typenum == NPY_FLOAT32) {
        if (to_blocked)
            lr_to_blocked_f32((const float *)PyArray_DATA(x), n, cb, h * w, block,
                              (float *)PyArray_DATA(*out));
        else
            lr_from_blocked_f32((const float *)PyArray_DATA(x), n, cb, h * w, block,
                                (float *)PyArray_DATA(*out));
    } else {
        if (to_blocked)
            lr_to_blocked_f64((const double *)PyArray_DATA(x), n, cb, h * w, block,
                              (double *)PyArray_DATA(*out));
        else
            lr_from_blocked_f64((const double *)PyArray_DATA(x), n, cb, h * w, block,
                                (double *)PyArray_DATA(*out));
    }
    rc = 0;
done:
    Py_DECREF(x);
    return rc;
}

#endif /* LR_LAYOUT_C */
