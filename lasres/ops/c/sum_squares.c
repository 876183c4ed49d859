/* The sum of squares of an array, in float64, in NumPy's order: what
 * np.sum(np.square(x, dtype=np.float64)) gives, bit for bit, on a C-ordered
 * array (lasres.ops.fused.SumOfSquares). NumPy sums a contiguous run
 * pairwise: fewer than 8 values one by one from zero; up to 128 values in 8
 * interleaved partial sums, added as ((0+1)+(2+3))+((4+5)+(6+7)), then the
 * rest one by one; longer runs split in two at half the length rounded
 * down to a multiple of 8. Compiled with -ffp-contract=off: a square and
 * its sum round separately, as NumPy's two passes do. */
#ifndef LASRES_SUM_SQUARES_C
#define LASRES_SUM_SQUARES_C

#define LR_SSQ(NAME, T)                                                          \
static double NAME(const T *a, npy_intp n)                                       \
{                                                                                \
    if (n < 8) {                                                                 \
        double res = 0.0;                                                        \
        npy_intp i;                                                              \
        for (i = 0; i < n; i++)                                                  \
            res += (double)a[i] * (double)a[i];                                  \
        return res;                                                              \
    }                                                                            \
    if (n <= 128) {                                                              \
        double r[8], res;                                                        \
        npy_intp i;                                                              \
        int j;                                                                   \
        for (j = 0; j < 8; j++)                                                  \
            r[j] = (double)a[j] * (double)a[j];                                  \
        for (i = 8; i < n - (n % 8); i += 8)                                     \
            for (j = 0; j < 8; j++)                                              \
                r[j] += (double)a[i + j] * (double)a[i + j];                     \
        res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7])); \
        for (; i < n; i++)                                                       \
            res += (double)a[i] * (double)a[i];                                  \
        return res;                                                              \
    }                                                                            \
    {                                                                            \
        npy_intp n2 = n / 2;                                                     \
        n2 -= n2 % 8;                                                            \
        return NAME(a, n2) + NAME(a + n2, n - n2);                               \
    }                                                                            \
}

LR_SSQ(lr_ssq_f32, float)
LR_SSQ(lr_ssq_f64, double)

#endif /* LASRES_SUM_SQUARES_C */
