/* Channel-blocked layout conversions of lasres's C backend (lasres/ops/layout.py).
 *
 * NCHW (N, C, H, W) <-> oneDNN's nChw8c / nChw16c, as 5-d arrays
 * (N, C/B, H, W, B): channel c of pixel m at [n, c / B, m, c % B].  Each
 * (image, block of channels) is one transposition of a (B, M) tile, done in
 * strips of LR_LT_STRIP pixels so that the B rows being read stay in the
 * cache; the (image, block) pairs are shared among the OpenMP threads.
 *
 * Compiled as C++ by PyTensor, after channel.h (lr_out_array) and blocked.h
 * (the transpositions).
 */
#ifndef LR_LAYOUT_C
#define LR_LAYOUT_C

#include <string.h>


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
