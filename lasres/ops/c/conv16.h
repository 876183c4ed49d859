/* The arguments of lasres's 16-channel convolution kernel (c/conv_fwd16.c),
 * shared by the kernel, built into lasres's native library
 * (lasres/ops/native.py), and by the convolution ops' modules
 * (c/onednn_conv.c), which reach it in that library: compiled once, not
 * into every module (a few seconds of cold start). */
#ifndef LASRES_CONV16_H
#define LASRES_CONV16_H

typedef struct {
    long n, h, w;          /* images, rows, columns */
    long block;            /* channel block: 16 (x is (n, h, w, 16)) or 8 ((n, 2, h, w, 8)) */
    const float *x;        /* (n, h, w, 16) */
    const float *wt;       /* (3, 3, 16, 16): tap row, tap column, input, output */
    const float *bias;     /* (16,), or NULL: none */
    const float *add;      /* (n, h, w, 16), or NULL: none; may be y itself */
    float *y;              /* (n, h, w, 16) */
    int relu;
    int reverse;           /* taps summed from (2, 2) back to (0, 0) */
    int add_first;         /* 8-channel blocks: the sums start from add + bias, not bias */
} lr_c16;

/* lr_native_conv16 in the native library: 0 done, 1 not this geometry or CPU */
typedef int (*lr_conv16_fn)(const lr_c16 *);

#endif /* LASRES_CONV16_H */
