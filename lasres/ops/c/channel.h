/* Helpers shared by the per-channel C kernels of lasres (bn.c,
 * channel_sum.c), placed before them in each op's support code by
 * lasres/ops/_csource.py.
 *
 * Layout: x viewed as (N, C, M), a channel's values are the N runs of M
 * contiguous values x[n, c, :]; or channel-blocked (below).
 */
#ifndef LR_CHANNEL_H
#define LR_CHANNEL_H

/* Independent partial sums per channel sum: lets the compiler vectorise
 * without reordering any one sum. */
#define LR_LANES 8

/* Allocate (or reuse) a C-contiguous output of the given shape and type. */
static int lr_out_array(PyArrayObject **out, int nd, const npy_intp *dims, int typenum)
{
    if (*out != NULL && PyArray_NDIM(*out) == nd && PyArray_ISCARRAY(*out)
        && PyArray_TYPE(*out) == typenum) {
        int same = 1;
        for (int d = 0; d < nd; d++)
            same &= PyArray_DIMS(*out)[d] == dims[d];
        if (same)
            return 0;
    }
    Py_XDECREF(*out);
    *out = (PyArrayObject *)PyArray_EMPTY(nd, (npy_intp *)dims, typenum, 0);
    return *out == NULL ? -1 : 0;
}

/* A C-contiguous array of the given type (new reference) or NULL. */
static PyArrayObject *lr_contig(PyArrayObject *a, int typenum)
{
    return (PyArrayObject *)PyArray_FromAny((PyObject *)a, PyArray_DescrFromType(typenum),
                                            0, 0, NPY_ARRAY_CARRAY_RO, NULL);
}

/* Sum of channel c's values in double, in LR_LANES partial sums then the tail. */
#define LR_CHANNEL_TOTAL(T, SUF)                                                         \
static double lr_channel_total_##SUF(const T *x, npy_intp n_, npy_intp c_, npy_intp m_,  \
                                     npy_intp c)                                         \
{                                                                                        \
    double s[LR_LANES] = {0};                                                            \
    double tail = 0.0;                                                                   \
    for (npy_intp n = 0; n < n_; n++) {                                                  \
        const T *p = x + (n * c_ + c) * m_;                                              \
        npy_intp i = 0;                                                                  \
        for (; i + LR_LANES <= m_; i += LR_LANES)                                        \
            for (int k = 0; k < LR_LANES; k++)                                           \
                s[k] += (double)p[i + k];                                                \
        for (; i < m_; i++)                                                              \
            tail += (double)p[i];                                                        \
    }                                                                                    \
    for (int k = 0; k < LR_LANES; k++)                                                   \
        tail += s[k];                                                                    \
    return tail;                                                                         \
}

LR_CHANNEL_TOTAL(float, f32)
LR_CHANNEL_TOTAL(double, f64)

/* The channel-blocked layout (oneDNN's nChw16c, nChw8c): x viewed as
 * (N, CB, M, B), channel c = cb * B + b; a block (n, cb) is M runs of B
 * contiguous lanes.  Kernels built for blocks of KN (16 or 8) lanes loop over
 * the lanes with constant bounds (vectorised); KN == 0: any B, in groups of
 * at most LR_BLK_MAX lanes. */
#define LR_BLK_MAX 16

/* The lanes of group k0 of a block of S lanes. */
#define LR_BLK_K(KN, S, k0) \
    ((KN) ? (KN) : (int)((S) - (k0) < LR_BLK_MAX ? (S) - (k0) : LR_BLK_MAX))

/* out[k] = sum over m of x[m, k] in double for each lane k of a block: two
 * partial sums (even and odd m), then added. */
template <typename T, int KN>
static void lr_block_total(const T *x, npy_intp m_, npy_intp b_, double *out)
{
    const npy_intp S = KN ? KN : b_;
    for (npy_intp k0 = 0; k0 < S; k0 += LR_BLK_MAX) {
        const int K = LR_BLK_K(KN, S, k0);
        double s0[LR_BLK_MAX] = {0}, s1[LR_BLK_MAX] = {0};
        const T *p = x + k0;
        npy_intp m = 0;
        for (; m + 1 < m_; m += 2, p += 2 * S)
            for (int k = 0; k < K; k++) {
                s0[k] += (double)p[k];
                s1[k] += (double)p[S + k];
            }
        if (m < m_)
            for (int k = 0; k < K; k++)
                s0[k] += (double)p[k];
        for (int k = 0; k < K; k++)
            out[k0 + k] = s0[k] + s1[k];
    }
}

/* tot[c] = sum over n, in order, of part[n * c_ + c]: the blocks' sums added
 * image by image, whichever threads computed them. */
static void lr_block_images(const double *part, npy_intp n_, npy_intp c_, double *tot)
{
    for (npy_intp c = 0; c < c_; c++)
        tot[c] = 0.0;
    for (npy_intp n = 0; n < n_; n++)
        for (npy_intp c = 0; c < c_; c++)
            tot[c] += part[n * c_ + c];
}

#endif /* LR_CHANNEL_H */
