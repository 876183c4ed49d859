/* The sum of two arrays of one shape (lasres/ops/add.py): out = a + b, in
 * the arrays' type, one IEEE addition per element (the bits of NumPy's and
 * PyTensor's add).  Arrays of at least LR_ADD_PARALLEL values are shared
 * among the threads of libgomp's pool (oneDNN's too) in contiguous halves,
 * and the loop is vectorised: PyTensor's generic elementwise loop runs one
 * value at a time on one core (a 4 MiB gradient sum took 0.9 ms in a
 * ResNet-20 training step).
 *
 * Compiled as C++ by PyTensor; channel.h (lr_out_array, lr_contig) comes first.
 */
#ifndef LR_ADD_C
#define LR_ADD_C

/* cleared by the op's c_code when the NumPy convolution kernels (OpenBLAS's
 * thread pool) run: two pools on the same cores fight */
static int lr_add_parallel = 1;
#define LR_ADD_PARALLEL 65536

#define LR_ADD_KERNEL(T, SUF)                                                            \
static void lr_add_##SUF(const T *__restrict a, const T *__restrict b, T *out, npy_intp n) \
{                                                                                        \
    _Pragma("omp parallel for simd schedule(static) if (lr_add_parallel && n >= LR_ADD_PARALLEL)") \
    for (npy_intp i = 0; i < n; i++)                                                     \
        out[i] = a[i] + b[i];                                                            \
}

LR_ADD_KERNEL(float, f32)
LR_ADD_KERNEL(double, f64)

/* Entry point called by ParallelAdd's c_code; 0 on success, -1 with a Python
 * error set. */
static int lr_parallel_add(PyArrayObject *a0, PyArrayObject *b0, PyArrayObject **out)
{
    int tn = PyArray_TYPE(a0), nd = PyArray_NDIM(a0);
    PyArrayObject *a, *b;
    if (PyArray_TYPE(b0) != tn || PyArray_NDIM(b0) != nd
        || !PyArray_CompareLists(PyArray_DIMS(a0), PyArray_DIMS(b0), nd)) {
        PyErr_SetString(PyExc_ValueError, "ParallelAdd: the two arrays differ in shape or type");
        return -1;
    }
    if (tn != NPY_FLOAT32 && tn != NPY_FLOAT64) {
        PyErr_SetString(PyExc_TypeError, "ParallelAdd: float32 or float64 arrays only");
        return -1;
    }
    a = lr_contig(a0, tn);
    b = a ? lr_contig(b0, tn) : NULL;
    if (b == NULL || lr_out_array(out, nd, PyArray_DIMS(a), tn)) {
        Py_XDECREF(a);
        Py_XDECREF(b);
        return -1;
    }
    {
        npy_intp n = PyArray_SIZE(a);
        Py_BEGIN_ALLOW_THREADS
        if (tn == NPY_FLOAT32)
            lr_add_f32((const float *)PyArray_DATA(a), (const float *)PyArray_DATA(b),
                       (float *)PyArray_DATA(*out), n);
        else
            lr_add_f64((const double *)PyArray_DATA(a), (const double *)PyArray_DATA(b),
                       (double *)PyArray_DATA(*out), n);
        Py_END_ALLOW_THREADS
    }
    Py_DECREF(a);
    Py_DECREF(b);
    return 0;
}

#endif /* LR_ADD_C */
