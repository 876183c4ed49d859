/* Per-channel sum of lasres's C backend (lasres/ops/reduce.py).
 *
 * x viewed as (N, C, M); out[c] = sum over n and i of x[n, c, i], accumulated
 * in double as bn.c's statistics are (lr_channel_total, channel.h), returned
 * in x's type.  Channels are independent:
 * with OpenMP they are shared among the threads of libgomp's pool (oneDNN's
 * pool too) for tensors of at least 32768 values.  Channel-blocked x
 * (N, CB, H, W, B): out (CB, B), each lane summed over a block as bn.c's
 * blocked kernels do (lr_block_total), the blocks shared among the threads and
 * added in image order (lr_block_images): the same result for any thread count.
 *
 * Compiled as C++ by PyTensor.
 */
#ifndef LR_CHANNEL_SUM_C
#define LR_CHANNEL_SUM_C

#include <stdlib.h>

/* cleared by the op's c_code when the NumPy convolution kernels (OpenBLAS's
 * thread pool) run: two pools on the same cores fight */
static int lr_cs_parallel = 1;
#ifdef _OPENMP
#define LR_CS_PARALLEL _Pragma("omp parallel for schedule(static) if (lr_cs_parallel && n_ * c_ * m_ >= 32768)")
#else
#define LR_CS_PARALLEL
#endif

#define LR_CS_KERNEL(T, SUF)                                                             \
static void lr_channel_sum_##SUF(const T *x, npy_intp n_, npy_intp c_, npy_intp m_,     \
                                 T *out)                                                 \
{                                                                                        \
    LR_CS_PARALLEL                                                                       \
    for (npy_intp c = 0; c < c_; c++)                                                    \
        out[c] = (T)lr_channel_total_##SUF(x, n_, c_, m_, c);                           \
}

LR_CS_KERNEL(float, f32)
LR_CS_KERNEL(double, f64)

/* Entry point called by ChannelSum's c_code; 0 on success, -1 with a Python error set. */
static int lr_channel_sum(PyArrayObject *x0, PyArrayObject **out)
{
    int tn = PyArray_TYPE(x0);
    PyArrayObject *x = lr_contig(x0, tn);
    if (x == NULL)
        return -1;
    npy_intp n_ = PyArray_DIMS(x)[0], c_ = PyArray_DIMS(x)[1], m_ = 1;
    for (int d = 2; d < PyArray_NDIM(x); d++)
        m_ *= PyArray_DIMS(x)[d];
    if (lr_out_array(out, 1, &c_, tn)) {
        Py_DECREF(x);
        return -1;
    }
    Py_BEGIN_ALLOW_THREADS
    if (tn == NPY_FLOAT32)
        lr_channel_sum_f32((const float *)PyArray_DATA(x), n_, c_, m_,
                           (float *)PyArray_DATA(*out));
    else
        lr_channel_sum_f64((const double *)PyArray_DATA(x), n_, c_, m_,
                           (double *)PyArray_DATA(*out));
    Py_END_ALLOW_THREADS
    Py_DECREF(x);
    return 0;
}

/* The channel-blocked sum; part: n_ * cb_ * b_ doubles, tot: cb_ * b_. */
template <typename T, int KN>
static void lr_blocked_sum(const T *x, npy_intp n_, npy_intp cb_, npy_intp m_, npy_intp b_,
                           T *out, double *part, double *tot)
{
    const npy_intp c_ = cb_ * b_, nb_ = n_ * cb_, blk = m_ * b_;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (lr_cs_parallel && n_ * c_ * m_ >= 32768)
#endif
    for (npy_intp t = 0; t < nb_; t++)
        lr_block_total<T, KN>(x + t * blk, m_, b_, part + t * b_);
    lr_block_images(part, n_, c_, tot);
    for (npy_intp c = 0; c < c_; c++)
        out[c] = (T)tot[c];
}

template <typename T>
static void lr_blocked_sum_run(PyArrayObject *x, const npy_intp *v, PyArrayObject *out,
                               double *work)
{
    auto f = v[3] == 16 ? lr_blocked_sum<T, 16>
             : v[3] == 8 ? lr_blocked_sum<T, 8> : lr_blocked_sum<T, 0>;
    f((const T *)PyArray_DATA(x), v[0], v[1], v[2], v[3], (T *)PyArray_DATA(out), work,
      work + v[0] * v[1] * v[3]);
}

/* Entry point called by BlockedChannelSum's c_code: x 5-d (N, CB, H, W, B), out
 * (CB, B); 0 on success, -1 with a Python error set. */
static int lr_blocked_channel_sum(PyArrayObject *x0, PyArrayObject **out)
{
    int tn = PyArray_TYPE(x0), rc = -1;
    PyArrayObject *x = lr_contig(x0, tn);
    double *work = NULL;
    npy_intp v[4], od[2];
    if (x == NULL)
        return -1;
    if (PyArray_NDIM(x) != 5) {
        PyErr_SetString(PyExc_ValueError, "blocked channel sum: x must be 5-d");
        goto done;
    }
    v[0] = PyArray_DIMS(x)[0];
    v[1] = od[0] = PyArray_DIMS(x)[1];
    v[2] = PyArray_DIMS(x)[2] * PyArray_DIMS(x)[3];
    v[3] = od[1] = PyArray_DIMS(x)[4];
    if (lr_out_array(out, 2, od, tn))
        goto done;
    work = (double *)malloc(sizeof(double) * (size_t)((v[0] + 1) * v[1] * v[3] + 1));
    if (work == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    if (tn == NPY_FLOAT32)
        lr_blocked_sum_run<float>(x, v, *out, work);
    else
        lr_blocked_sum_run<double>(x, v, *out, work);
    Py_END_ALLOW_THREADS
    rc = 0;
done:
    free(work);
    Py_DECREF(x);
    return rc;
}

#endif /* LR_CHANNEL_SUM_C */
