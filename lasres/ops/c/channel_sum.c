/* Per-channel sum of lasres's C backend (lasres/ops/reduce.py).
 *
 * x viewed as (N, C, M); out[c] = sum over n and i of x[n, c, i], accumulated
 * in double as bn.c's statistics are (lr_channel_total, channel.h), returned
 * in x's type.  Channels are independent:
 * with OpenMP they are shared among the threads of libgomp's pool (oneDNN's
 * pool too) for tensors of at least 32768 values.
 *
 * Compiled as C++ by PyTensor.
 */
#ifndef LR_CHANNEL_SUM_C
#define LR_CHANNEL_SUM_C

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

#endif /* LR_CHANNEL_SUM_C */
