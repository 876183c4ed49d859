/* oneDNN (v3 C API) kernels of lasres's 2-d convolution ops (float32, NCHW).
 *
 * Included as support code by the ops in lasres/ops/conv.py (see
 * lasres/ops/onednn.py).  Each Apply node owns an lr_cache (a struct member
 * of its compiled thunk) holding, per input shape, the convolution primitive,
 * the reorders between the user's plain NCHW / OIHW arrays and the blocked
 * layouts oneDNN chooses ("any"), and the memory objects; buffers for the
 * blocked copies and the scratchpad are allocated per call (one block).
 *
 * Padding: oneDNN wants padding_r such that the output length is exact.  With
 * the floor of the output-length formula, the last input rows may never be
 * read; the source is then described as a strided view of its first `he` rows
 * (and `we` columns), which keeps padding_r >= 0.  The input gradient of such
 * rows is zero.  Unpadded 1x1 kernels keep the whole input, with a negative
 * padding_r instead (lr_uncropped).
 *
 * Backward-weights runs in blocks of images summed in float64, and on
 * oneDNN's GEMM implementation for 1x1 stride-1 convolutions, to round no
 * worse than a GEMM (see lr_gemm_bwd_weights).  The blocks are shared among
 * the OpenMP threads, each block a single-threaded primitive
 * (lr_bwdw_blocks_parallel): one small primitive on all threads spends
 * more in fork-joins than in arithmetic.  A block of one image's rows is
 * copied by its thread straight into the primitive's blocked layouts
 * (lr_pack; no reorder primitives) and its filters read back from theirs.
 */
#ifndef LASRES_ONEDNN_CONV_C
#define LASRES_ONEDNN_CONV_C

#include <oneapi/dnnl/dnnl.h>
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define LR_SLOTS 8
#define LR_MAXARGS 5
#define LR_KEYLEN 14
/* output positions per call of the direct backward-weights (see lr_bwdw_split) */
#define LR_BWDW_TERMS 512

typedef struct {
    int exec_arg;
    int is_output;
    dnnl_memory_t user_mem;
    dnnl_memory_t prim_mem;      /* == user_mem when no reorder is needed */
    dnnl_primitive_t reorder;    /* user -> prim (inputs), prim -> user (outputs) */
    size_t prim_bytes;
} lr_arg;

typedef struct {
    int valid;
    npy_intp key[LR_KEYLEN];
    unsigned long stamp;
    dnnl_primitive_t prim;
    int nargs;
    lr_arg args[LR_MAXARGS];
    size_t scratch_bytes;
    dnnl_memory_t scratch_mem;
    int packed;   /* arguments in the primitive's own layouts (lasres packs them) */
} lr_entry;

typedef struct {
    lr_entry slot[LR_SLOTS];
    unsigned long clock;
} lr_cache;

typedef struct {
    npy_intp n, c, h, w, f, kh, kw;
    npy_intp sh, sw, ph, pw;
    npy_intp oh, ow, he, we, prh, prw;
    npy_intp ohs;   /* output rows stored per image (> oh for a band of rows) */
    npy_intp bx, bz;   /* the input's and the output's channel block (0: NCHW) */
} lr_geom;

static dnnl_engine_t lr_engine = NULL;
static dnnl_stream_t lr_stream = NULL;
static dnnl_primitive_attr_t lr_attr = NULL;
/* LASRES_CONV_SPLIT=0: the blocks of a backward-weights run one after the
 * other, each on all threads (as before the threads shared the blocks; for
 * measurements) */
static int lr_no_split = -1;
/* LASRES_CONV_NATIVE=0: no weight gradient by lasres's own kernel (c/conv_bwdw.c) */
static int lr_no_native = -1;
static int lr_no_blocked_bwd_data = 0;

static int lr_fail(dnnl_status_t st, const char *what)
{
    PyErr_Format(PyExc_RuntimeError, "oneDNN: %s failed (status %d)", what, (int)st);
    return -1;
}

#define LR_TRY(call) do { dnnl_status_t st_ = (call); \
    if (st_ != dnnl_success) { lr_fail(st_, #call); goto done; } } while (0)

static int lr_init(void)
{
    dnnl_status_t st;
    if (lr_stream != NULL)
        return 0;
    {
        const char *v = getenv("LASRES_CONV_SPLIT");
        lr_no_split = v != NULL && strcmp(v, "0") == 0;
        v = getenv("LASRES_CONV_NATIVE");
        lr_no_native = v != NULL && strcmp(v, "0") == 0;
        v = getenv("LASRES_BWD_DATA_BLOCKED");
        lr_no_blocked_bwd_data = v != NULL && strcmp(v, "0") == 0;
    }
    if ((st = dnnl_engine_create(&lr_engine, dnnl_cpu, 0)) != dnnl_success)
        return lr_fail(st, "engine creation");
    if ((st = dnnl_primitive_attr_create(&lr_attr)) != dnnl_success)
        return lr_fail(st, "attribute creation");
    /* exact float32 arithmetic: no bf16/tf32 down-conversion */
    if ((st = dnnl_primitive_attr_set_fpmath_mode(lr_attr, dnnl_fpmath_mode_strict)) != dnnl_success)
        return lr_fail(st, "fpmath mode");
    if ((st = dnnl_primitive_attr_set_scratchpad_mode(lr_attr, dnnl_scratchpad_mode_user)) != dnnl_success)
        return lr_fail(st, "scratchpad mode");
    if ((st = dnnl_stream_create(&lr_stream, lr_engine, dnnl_stream_default_flags)) != dnnl_success)
        return lr_fail(st, "stream creation");
    return 0;
}

static void lr_entry_free(lr_entry *e)
{
    int i;
    for (i = 0; i < e->nargs; i++) {
        lr_arg *a = &e->args[i];
        if (a->reorder) dnnl_primitive_destroy(a->reorder);
        if (a->prim_mem && a->prim_mem != a->user_mem) dnnl_memory_destroy(a->prim_mem);
        if (a->user_mem) dnnl_memory_destroy(a->user_mem);
    }
    if (e->prim) dnnl_primitive_destroy(e->prim);
    if (e->scratch_mem) dnnl_memory_destroy(e->scratch_mem);
    memset(e, 0, sizeof(*e));
}

static void lr_cache_init(lr_cache *c)
{
    memset(c, 0, sizeof(*c));
}

static void lr_cache_free(lr_cache *c)
{
    int i;
    for (i = 0; i < LR_SLOTS; i++)
        lr_entry_free(&c->slot[i]);
}

/* The entry for `key`; *fresh is set when it must be built. */
static lr_entry *lr_lookup(lr_cache *c, const npy_intp *key, int *fresh)
{
    int i;
    lr_entry *victim = NULL;
    c->clock++;
    for (i = 0; i < LR_SLOTS; i++) {
        lr_entry *e = &c->slot[i];
        if (e->valid && memcmp(e->key, key, sizeof(e->key)) == 0) {
            e->stamp = c->clock;
            *fresh = 0;
            return e;
        }
        if (victim == NULL
            || (victim->valid && (!e->valid || e->stamp < victim->stamp)))
            victim = e;
    }
    lr_entry_free(victim);
    memcpy(victim->key, key, sizeof(victim->key));
    victim->stamp = c->clock;
    *fresh = 1;
    return victim;
}

/* Register argument `exec_arg` of the primitive `pd`, given as `user_md`. */
static int lr_add_arg(lr_entry *e, const_dnnl_primitive_desc_t pd, dnnl_query_t what,
                      int index, int exec_arg, const_dnnl_memory_desc_t user_md, int is_output)
{
    dnnl_status_t st;
    dnnl_primitive_desc_t rpd = NULL;
    lr_arg *a = &e->args[e->nargs++];
    const_dnnl_memory_desc_t pmd = dnnl_primitive_desc_query_md(pd, what, index);
    a->exec_arg = exec_arg;
    a->is_output = is_output;
    if ((st = dnnl_memory_create(&a->user_mem, user_md, lr_engine, DNNL_MEMORY_NONE)) != dnnl_success)
        return lr_fail(st, "memory creation");
    if (dnnl_memory_desc_equal(pmd, user_md)) {
        a->prim_mem = a->user_mem;
        return 0;
    }
    if ((st = dnnl_memory_create(&a->prim_mem, pmd, lr_engine, DNNL_MEMORY_NONE)) != dnnl_success)
        return lr_fail(st, "memory creation");
    a->prim_bytes = dnnl_memory_desc_get_size(pmd);
    st = is_output
        ? dnnl_reorder_primitive_desc_create(&rpd, pmd, lr_engine, user_md, lr_engine, NULL)
        : dnnl_reorder_primitive_desc_create(&rpd, user_md, lr_engine, pmd, lr_engine, NULL);
    if (st != dnnl_success)
        return lr_fail(st, "reorder descriptor creation");
    st = dnnl_primitive_create(&a->reorder, rpd);
    dnnl_primitive_desc_destroy(rpd);
    if (st != dnnl_success)
        return lr_fail(st, "reorder creation");
    return 0;
}

static int lr_finish(lr_entry *e, const_dnnl_primitive_desc_t pd)
{
    dnnl_status_t st;
    const_dnnl_memory_desc_t smd = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    e->scratch_bytes = smd ? dnnl_memory_desc_get_size(smd) : 0;
    if (e->scratch_bytes
        && (st = dnnl_memory_create(&e->scratch_mem, smd, lr_engine, DNNL_MEMORY_NONE)) != dnnl_success)
        return lr_fail(st, "scratchpad creation");
    if ((st = dnnl_primitive_create(&e->prim, pd)) != dnnl_success)
        return lr_fail(st, "primitive creation");
    e->valid = 1;
    return 0;
}

#define LR_ALIGN(x) (((x) + 63) & ~(size_t)63)

/* Run entry `e` on the user buffers `handles` (one per argument, in order). */
static int lr_run(lr_entry *e, void **handles)
{
    dnnl_status_t st;
    size_t total = LR_ALIGN(e->scratch_bytes), off;
    char *buf = NULL;
    dnnl_exec_arg_t args[LR_MAXARGS + 1], rargs[2];
    int i, nargs = 0, rc = -1;
    for (i = 0; i < e->nargs; i++)
        total += LR_ALIGN(e->args[i].prim_bytes);
    if (total > 0 && posix_memalign((void **)&buf, 64, total) != 0) {
        PyErr_NoMemory();
        return -1;
    }
    off = 0;
    if (e->scratch_bytes) {
        LR_TRY(dnnl_memory_set_data_handle(e->scratch_mem, buf));
        off = LR_ALIGN(e->scratch_bytes);
    }
    for (i = 0; i < e->nargs; i++) {
        lr_arg *a = &e->args[i];
        LR_TRY(dnnl_memory_set_data_handle(a->user_mem, handles[i]));
        if (a->reorder) {
            LR_TRY(dnnl_memory_set_data_handle(a->prim_mem, buf + off));
            off += LR_ALIGN(a->prim_bytes);
            if (!a->is_output) {
                rargs[0].arg = DNNL_ARG_FROM; rargs[0].memory = a->user_mem;
                rargs[1].arg = DNNL_ARG_TO; rargs[1].memory = a->prim_mem;
                LR_TRY(dnnl_primitive_execute(a->reorder, lr_stream, 2, rargs));
            }
        }
        args[nargs].arg = a->exec_arg;
        args[nargs].memory = a->prim_mem;
        nargs++;
    }
    if (e->scratch_bytes) {
        args[nargs].arg = DNNL_ARG_SCRATCHPAD;
        args[nargs].memory = e->scratch_mem;
        nargs++;
    }
    LR_TRY(dnnl_primitive_execute(e->prim, lr_stream, nargs, args));
    for (i = 0; i < e->nargs; i++) {
        lr_arg *a = &e->args[i];
        if (a->reorder && a->is_output) {
            rargs[0].arg = DNNL_ARG_FROM; rargs[0].memory = a->prim_mem;
            rargs[1].arg = DNNL_ARG_TO; rargs[1].memory = a->user_mem;
            LR_TRY(dnnl_primitive_execute(a->reorder, lr_stream, 2, rargs));
        }
    }
    LR_TRY(dnnl_stream_wait(lr_stream));
    rc = 0;
done:
    free(buf);
    return rc;
}

/* The bytes of the buffer lr_run_local needs for entry e. */
static size_t lr_bytes(const lr_entry *e)
{
    size_t total = LR_ALIGN(e->scratch_bytes);
    int i;
    for (i = 0; i < e->nargs; i++)
        total += LR_ALIGN(e->args[i].prim_bytes);
    return total;
}

/* Run entry `e` like lr_run, but on memory objects, a stream and a buffer
 * of the calling thread's own (`buf`: at least lr_bytes(e) bytes), so that
 * several threads may run entries at once.  Inside an OpenMP parallel
 * region oneDNN runs each primitive on the calling thread alone. */
static int lr_run_local(const lr_entry *e, void **handles, char *buf, dnnl_stream_t stream)
{
    dnnl_memory_t user[LR_MAXARGS] = {NULL}, prim[LR_MAXARGS] = {NULL}, scratch = NULL;
    dnnl_exec_arg_t args[LR_MAXARGS + 1], rargs[2];
    const_dnnl_memory_desc_t md;
    size_t off = 0;
    int i, nargs = 0, rc = -1;
    if (e->scratch_bytes) {
        if (dnnl_memory_get_memory_desc(e->scratch_mem, &md) != dnnl_success
            || dnnl_memory_create(&scratch, md, lr_engine, buf) != dnnl_success)
            goto done;
        off = LR_ALIGN(e->scratch_bytes);
    }
    for (i = 0; i < e->nargs; i++) {
        const lr_arg *a = &e->args[i];
        if (dnnl_memory_get_memory_desc(a->user_mem, &md) != dnnl_success
            || dnnl_memory_create(&user[i], md, lr_engine, handles[i]) != dnnl_success)
            goto done;
        if (a->reorder) {
            if (dnnl_memory_get_memory_desc(a->prim_mem, &md) != dnnl_success
                || dnnl_memory_create(&prim[i], md, lr_engine, buf + off) != dnnl_success)
                goto done;
            off += LR_ALIGN(a->prim_bytes);
            if (!a->is_output) {
                rargs[0].arg = DNNL_ARG_FROM; rargs[0].memory = user[i];
                rargs[1].arg = DNNL_ARG_TO; rargs[1].memory = prim[i];
                if (dnnl_primitive_execute(a->reorder, stream, 2, rargs) != dnnl_success)
                    goto done;
            }
        }
        args[nargs].arg = a->exec_arg;
        args[nargs].memory = a->reorder ? prim[i] : user[i];
        nargs++;
    }
    if (scratch) {
        args[nargs].arg = DNNL_ARG_SCRATCHPAD;
        args[nargs].memory = scratch;
        nargs++;
    }
    if (dnnl_primitive_execute(e->prim, stream, nargs, args) != dnnl_success)
        goto done;
    for (i = 0; i < e->nargs; i++) {
        const lr_arg *a = &e->args[i];
        if (a->reorder && a->is_output) {
            rargs[0].arg = DNNL_ARG_FROM; rargs[0].memory = prim[i];
            rargs[1].arg = DNNL_ARG_TO; rargs[1].memory = user[i];
            if (dnnl_primitive_execute(a->reorder, stream, 2, rargs) != dnnl_success)
                goto done;
        }
    }
    if (dnnl_stream_wait(stream) != dnnl_success)
        goto done;
    rc = 0;
done:
    for (i = 0; i < e->nargs; i++) {
        if (user[i]) dnnl_memory_destroy(user[i]);
        if (prim[i]) dnnl_memory_destroy(prim[i]);
    }
    if (scratch) dnnl_memory_destroy(scratch);
    return rc;
}

/* pad_mode: 0 explicit (ph, pw), 1 'same', 2 'full'. */
/* An unpadded 1x1 kernel along an axis (a projection shortcut) sees the
 * whole input, the rows its stride never reads included: oneDNN takes them
 * as a negative right padding (it accepts padding_r > -stride), and its 1x1
 * kernels then read and write the activation in place, where the cropped
 * view cost a reorder of the whole activation around each of them
 * (forward, input gradient) and the general direct kernel.  Other kernels
 * keep the cropped view here; the fused inference program
 * (onednn_program.conv_geometry) gives every kernel the whole input. */
static int lr_uncropped(npy_intp k, npy_intp pad)
{
    return k == 1 && pad == 0;
}

static int lr_geometry(lr_geom *g, int pad_mode)
{
    npy_intp last;
    if (pad_mode == 1) { g->ph = g->kh / 2; g->pw = g->kw / 2; }
    else if (pad_mode == 2) { g->ph = g->kh - 1; g->pw = g->kw - 1; }
    if (g->h + 2 * g->ph < g->kh || g->w + 2 * g->pw < g->kw) {
        PyErr_Format(PyExc_ValueError,
                     "convolution output would be empty: input (%ld, %ld), filter (%ld, %ld), "
                     "stride (%ld, %ld), pad (%ld, %ld)", (long)g->h, (long)g->w, (long)g->kh,
                     (long)g->kw, (long)g->sh, (long)g->sw, (long)g->ph, (long)g->pw);
        return -1;
    }
    g->oh = (g->h + 2 * g->ph - g->kh) / g->sh + 1;
    g->ohs = g->oh;
    g->ow = (g->w + 2 * g->pw - g->kw) / g->sw + 1;
    /* one past the last padded row read, in input coordinates */
    last = (g->oh - 1) * g->sh + g->kh - g->ph;
    g->he = last < g->h && !lr_uncropped(g->kh, g->ph) ? last : g->h;
    g->prh = last - g->he;
    last = (g->ow - 1) * g->sw + g->kw - g->pw;
    g->we = last < g->w && !lr_uncropped(g->kw, g->pw) ? last : g->w;
    g->prw = last - g->we;
    if (g->he < 1 || g->we < 1) {
        PyErr_SetString(PyExc_NotImplementedError,
                        "oneDNN convolution: an output reads only padding along an axis "
                        "(set LASRES_KERNELS=numpy)");
        return -1;
    }
    return 0;
}

/* plain or strided (cropped) descriptors of the user arrays */
static dnnl_status_t lr_md_image(dnnl_memory_desc_t *md, npy_intp n, npy_intp c,
                                 npy_intp h, npy_intp w, npy_intp he, npy_intp we)
{
    dnnl_dims_t dims = {n, c, he, we};
    dnnl_dims_t strides = {c * h * w, h * w, w, 1};
    return dnnl_memory_desc_create_with_strides(md, 4, dims, dnnl_f32, strides);
}

/* An activation of the graph: NCHW (block 0) or channel-blocked (N, C/B, H, W, B)
 * with B 8 or 16 (oneDNN's nChw8c / nChw16c), cropped to its first he rows
 * and we columns. */
static dnnl_status_t lr_md_act(dnnl_memory_desc_t *md, npy_intp n, npy_intp c, npy_intp h,
                               npy_intp w, npy_intp he, npy_intp we, npy_intp block)
{
    dnnl_dims_t dims = {n, c, h, w}, sub = {n, c, he, we}, offsets = {0, 0, 0, 0};
    dnnl_memory_desc_t parent = NULL;
    dnnl_status_t st;
    if (block == 0)
        return lr_md_image(md, n, c, h, w, he, we);
    if (block != 8 && block != 16)
        return dnnl_invalid_arguments;
    st = dnnl_memory_desc_create_with_tag(&parent, 4, dims, dnnl_f32,
                                          block == 16 ? dnnl_aBcd16b : dnnl_aBcd8b);
    if (st != dnnl_success || (he == h && we == w)) {
        *md = parent;
        return st;
    }
    st = dnnl_memory_desc_create_submemory(md, parent, sub, offsets);
    dnnl_memory_desc_destroy(parent);
    return st;
}

static dnnl_status_t lr_md_tag(dnnl_memory_desc_t *md, npy_intp a, npy_intp b,
                               npy_intp c, npy_intp d, dnnl_format_tag_t tag)
{
    dnnl_dims_t dims = {a, b, c, d};
    return dnnl_memory_desc_create_with_tag(md, 4, dims, dnnl_f32, tag);
}

/* A plain-float32 view of a oneDNN memory layout (blocked or not): where
 * element idx[] lies.  The last `spatial` dimensions must not be blocked, so
 * that a run along the last one has a constant stride (strides[nd - 1]). */
typedef struct {
    int nd, nblks;
    npy_intp strides[5], blks[5], idxs[5], bsize[5];
    size_t bytes;
} lr_layout;

/* Fill `l` from `md`; 0, or -1 when md is not a layout lasres can fill
 * (a format other than blocked, or one of the last `spatial` dims blocked). */
static int lr_layout_of(lr_layout *l, const_dnnl_memory_desc_t md, int spatial)
{
    int k, kind = 0, nd = 0;
    const dnnl_dims_t *strides = NULL, *blks = NULL, *idxs = NULL;
    memset(l, 0, sizeof(*l));
    if (dnnl_memory_desc_query(md, dnnl_query_format_kind, &kind) != dnnl_success
        || kind != dnnl_blocked
        || dnnl_memory_desc_query(md, dnnl_query_ndims_s32, &nd) != dnnl_success
        || nd > 5 || nd < spatial
        || dnnl_memory_desc_query(md, dnnl_query_inner_nblks_s32, &l->nblks) != dnnl_success
        || dnnl_memory_desc_query(md, dnnl_query_strides, &strides) != dnnl_success
        || dnnl_memory_desc_query(md, dnnl_query_inner_blks, &blks) != dnnl_success
        || dnnl_memory_desc_query(md, dnnl_query_inner_idxs, &idxs) != dnnl_success
        || l->nblks > 5)
        return -1;
    l->nd = nd;
    for (k = 0; k < nd; k++) {
        l->strides[k] = (*strides)[k];
        l->bsize[k] = 1;
    }
    for (k = 0; k < l->nblks; k++) {
        l->blks[k] = (*blks)[k];
        l->idxs[k] = (*idxs)[k];
        l->bsize[l->idxs[k]] *= l->blks[k];
        if (l->idxs[k] >= nd - spatial) return -1;
    }
    l->bytes = dnnl_memory_desc_get_size(md);
    return 0;
}

/* The offset (in floats) of element idx[] in layout l. */
static npy_intp lr_offset(const lr_layout *l, const npy_intp *idx)
{
    npy_intp off = 0, in = 1, rem[5];
    int k;
    for (k = 0; k < l->nd; k++) {
        off += (idx[k] / l->bsize[k]) * l->strides[k];
        rem[k] = idx[k] % l->bsize[k];
    }
    for (k = l->nblks - 1; k >= 0; k--) {
        off += (rem[l->idxs[k]] % l->blks[k]) * in;
        rem[l->idxs[k]] /= l->blks[k];
        in *= l->blks[k];
    }
    return off;
}

/* LR_BWD_WEIGHTS_1T: backward-weights planned for one thread (run by
 * lr_run_local inside a parallel region) */
/* LR_FWD_ADD: the forward pass plus an addend of the output's shape and layout
 * (oneDNN's binary post-op: read as the result is written) */
enum { LR_FWD = 0, LR_BWD_DATA = 1, LR_BWD_WEIGHTS = 2, LR_BWD_WEIGHTS_1T = 3, LR_FWD_ADD = 4 };

/* Whether oneDNN implements pd with a GEMM. */
static int lr_is_gemm(const_dnnl_primitive_desc_t pd)
{
    const char *info = NULL;
    return dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &info) == dnnl_success
           && info && strstr(info, "gemm") != NULL;
}

/* Backward-weights and float32 round-off.  oneDNN's direct (jit) kernels sum
 * all the N * oh * ow products of a filter tap in one float32 chain per
 * thread, which rounds 2-5x worse than a GEMM (the algorithm of Theano's
 * CorrMM, which Lasagne's float32 ran) on the nets' shapes.  So:
 * - the batch runs in blocks of at most LR_BWDW_TERMS output positions
 *   (several images, or bands of output rows of one image, at least one
 *   row), whose results are summed in float64;
 * - 1x1 stride-1 convolutions run oneDNN's GEMM implementation (a K-blocked
 *   SGEMM on the plain layouts, no reorders), as exact as a GEMM within an
 *   image and faster than the direct kernel there.
 * This returns oneDNN's GEMM-based primitive descriptor, or NULL. */
static dnnl_primitive_desc_t lr_gemm_bwd_weights(
    const_dnnl_memory_desc_t src, const_dnnl_memory_desc_t w, const_dnnl_memory_desc_t dst,
    const dnnl_dim_t *strides, const dnnl_dim_t *dil, const dnnl_dim_t *pl,
    const dnnl_dim_t *pr, const_dnnl_primitive_desc_t hint)
{
    dnnl_primitive_desc_t pd = NULL;
    if (dnnl_convolution_backward_weights_primitive_desc_create(
            &pd, lr_engine, dnnl_convolution_direct, src, w, NULL, dst,
            strides, dil, pl, pr, hint, lr_attr) != dnnl_success)
        return NULL;
    for (;;) {
        if (lr_is_gemm(pd))
            return pd;
        if (dnnl_primitive_desc_next_impl(pd) != dnnl_success)
            break;
    }
    dnnl_primitive_desc_destroy(pd);
    return NULL;
}

static int lr_impl_is(const_dnnl_primitive_desc_t pd, const char *prefix)
{
    const char *info = NULL;
    return dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &info) == dnnl_success
           && info && strncmp(info, prefix, strlen(prefix)) == 0;
}

/* A forward pass of 16 channels in and out, both blocked by 16: (N, 1, H, W, 16)
 * is byte for byte NHWC, where oneDNN runs its brgemm kernels, which sum in the
 * direct kernel's order (the same bits: tests/test_ops_layout.py) and run
 * 1.2-1.3x as fast on 32x32 images.  The primitive with NHWC user descriptors
 * over the blocked arrays, or NULL (then the usual one). */
/* *attr: lasres's attributes with a binary post-op adding an array of
 * descriptor md (the addend of LR_FWD_ADD), to be destroyed by the caller. */
static dnnl_status_t lr_add_attr(dnnl_primitive_attr_t *attr, const_dnnl_memory_desc_t md)
{
    dnnl_post_ops_t post = NULL;
    dnnl_status_t st = dnnl_primitive_attr_clone(attr, lr_attr);
    if (st == dnnl_success) st = dnnl_post_ops_create(&post);
    if (st == dnnl_success) st = dnnl_post_ops_append_binary(post, dnnl_binary_add, md);
    if (st == dnnl_success) st = dnnl_primitive_attr_set_post_ops(*attr, post);
    if (post) dnnl_post_ops_destroy(post);
    return st;
}

static dnnl_primitive_desc_t lr_fwd_nhwc16(const lr_geom *g, const_dnnl_memory_desc_t w_any,
                                           const_dnnl_memory_desc_t b_md,
                                           dnnl_memory_desc_t *src_user,
                                           dnnl_memory_desc_t *dst_user, int add)
{
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_memory_desc_t sn = NULL, dn = NULL;
    dnnl_dims_t strides = {g->sh, g->sw}, dil = {0, 0};
    dnnl_dims_t pl = {g->ph, g->pw}, pr = {g->prh, g->prw};
    if (g->bx != 16 || g->bz != 16 || g->c != 16 || g->f != 16 || g->kh != 3 || g->kw != 3
        || g->sh != 1 || g->sw != 1 || g->he != g->h || g->we != g->w || g->ohs != g->oh)
        return NULL;
    if (lr_md_tag(&sn, g->n, g->c, g->h, g->w, dnnl_nhwc) == dnnl_success
        && lr_md_tag(&dn, g->n, g->f, g->oh, g->ow, dnnl_nhwc) == dnnl_success
        && (!add || lr_add_attr(&attr, dn) == dnnl_success)
        && dnnl_convolution_forward_primitive_desc_create(
               &pd, lr_engine, dnnl_forward_training, dnnl_convolution_direct, sn, w_any, b_md,
               dn, strides, dil, pl, pr, add ? attr : lr_attr) == dnnl_success
        && !lr_impl_is(pd, "brg")) {
        dnnl_primitive_desc_destroy(pd);
        pd = NULL;
    }
    if (attr) dnnl_primitive_attr_destroy(attr);
    if (pd != NULL) {
        dnnl_memory_desc_destroy(*src_user);
        dnnl_memory_desc_destroy(*dst_user);
        *src_user = sn;
        *dst_user = dn;
    } else {
        if (sn) dnnl_memory_desc_destroy(sn);
        if (dn) dnnl_memory_desc_destroy(dn);
    }
    return pd;
}

/* Backward-data on the channel-blocked layout oneDNN's forward pass takes
 * for this geometry (16 channels with AVX-512, 8 with AVX2), whatever the
 * user's layouts (reordered to and from it as needed), or NULL (another
 * layout, channels not in whole blocks, or only oneDNN's reference kernel).
 * Left to choose ("any"), oneDNN picks NHWC brgemm kernels for strided 3x3
 * convolutions (brgconv_strided), reached through two reorders of whole
 * activations: 1.2-1.8x slower on ResNet-20's stage transitions, and
 * rounding worse than the direct kernel.  The layout does not depend on the
 * caller's, so NCHW and blocked graphs stay bit for bit equal. */
static dnnl_primitive_desc_t lr_bwd_data_blocked(const lr_geom *g, const_dnnl_memory_desc_t w_any,
                                                 const_dnnl_primitive_desc_t hint)
{
    dnnl_primitive_desc_t pd = NULL;
    dnnl_memory_desc_t sb = NULL, db = NULL;
    dnnl_dims_t strides = {g->sh, g->sw}, dil = {0, 0};
    dnnl_dims_t pl = {g->ph, g->pw}, pr = {g->prh, g->prw};
    const_dnnl_memory_desc_t fwd_src = dnnl_primitive_desc_query_md(hint, dnnl_query_src_md, 0);
    int B = 0, k;
    for (k = 0; k < 2 && !B; k++) {   /* the block of the forward pass's choice */
        const int b = k ? 8 : 16;
        if (lr_md_tag(&sb, g->n, g->c, g->he, g->we, b == 16 ? dnnl_aBcd16b : dnnl_aBcd8b)
                == dnnl_success && fwd_src && dnnl_memory_desc_equal(sb, fwd_src))
            B = b;
        else if (sb) {
            dnnl_memory_desc_destroy(sb);
            sb = NULL;
        }
    }
    if (!B || g->c % B || g->f % B) {
        if (sb) dnnl_memory_desc_destroy(sb);
        return NULL;
    }
    if (lr_md_tag(&db, g->n, g->f, g->oh, g->ow, B == 16 ? dnnl_aBcd16b : dnnl_aBcd8b)
            == dnnl_success
        && dnnl_convolution_backward_data_primitive_desc_create(
               &pd, lr_engine, dnnl_convolution_direct, sb, w_any, db, strides, dil, pl, pr,
               hint, lr_attr) == dnnl_success
        && lr_impl_is(pd, "ref")) {
        dnnl_primitive_desc_destroy(pd);
        pd = NULL;
    }
    if (sb) dnnl_memory_desc_destroy(sb);
    if (db) dnnl_memory_desc_destroy(db);
    return pd;
}

static int lr_build(lr_entry *e, const lr_geom *g, int kind, int has_bias)
{
    int rc = -1, one_thread = 0;
    const_dnnl_memory_desc_t src_pack = NULL, dst_pack = NULL, w_pack = NULL;
    dnnl_memory_desc_t src_any = NULL, w_any = NULL, dst_any = NULL, b_md = NULL;
    dnnl_memory_desc_t src_user = NULL, w_user = NULL, dst_user = NULL;
    dnnl_primitive_desc_t pd = NULL, hint = NULL;
    dnnl_primitive_attr_t add_attr = NULL;
    dnnl_dims_t strides = {g->sh, g->sw}, dil = {0, 0};
    dnnl_dims_t pl = {g->ph, g->pw}, pr = {g->prh, g->prw};
    dnnl_dims_t bdims = {g->f};

    LR_TRY(lr_md_tag(&src_any, g->n, g->c, g->he, g->we, dnnl_format_tag_any));
    LR_TRY(lr_md_tag(&w_any, g->f, g->c, g->kh, g->kw, dnnl_format_tag_any));
    LR_TRY(lr_md_tag(&dst_any, g->n, g->f, g->oh, g->ow, dnnl_format_tag_any));
    LR_TRY(lr_md_act(&src_user, g->n, g->c, g->h, g->w, g->he, g->we, g->bx));
    LR_TRY(lr_md_tag(&w_user, g->f, g->c, g->kh, g->kw, dnnl_oihw));
    /* (a band of rows of the stored output gradient when ohs > oh) */
    LR_TRY(lr_md_act(&dst_user, g->n, g->f, g->ohs, g->ow, g->oh, g->ow, g->bz));
    if (has_bias)
        LR_TRY(dnnl_memory_desc_create_with_tag(&b_md, 1, bdims, dnnl_f32, dnnl_a));

    if (kind == LR_BWD_WEIGHTS_1T) {   /* the same primitive, planned for one thread */
        kind = LR_BWD_WEIGHTS;
        one_thread = 1;
    }
    if (kind == LR_FWD || kind == LR_FWD_ADD) {
        pd = lr_fwd_nhwc16(g, w_any, b_md, &src_user, &dst_user, kind == LR_FWD_ADD);
        if (pd == NULL && kind == LR_FWD_ADD) {
            /* the plain forward pass's kernel and destination layout, the addend
             * read in that layout (reordered into it if the user's differs) */
            LR_TRY(dnnl_convolution_forward_primitive_desc_create(
                &hint, lr_engine, dnnl_forward_training, dnnl_convolution_direct, src_any, w_any,
                b_md, dst_any, strides, dil, pl, pr, lr_attr));
            {
                const_dnnl_memory_desc_t dmd = dnnl_primitive_desc_query_md(hint, dnnl_query_dst_md, 0);
                LR_TRY(lr_add_attr(&add_attr, dmd));
                LR_TRY(dnnl_convolution_forward_primitive_desc_create(
                    &pd, lr_engine, dnnl_forward_training, dnnl_convolution_direct, src_any,
                    w_any, b_md, dmd, strides, dil, pl, pr, add_attr));
            }
        } else if (pd == NULL)
            LR_TRY(dnnl_convolution_forward_primitive_desc_create(
                &pd, lr_engine, dnnl_forward_training, dnnl_convolution_direct, src_any, w_any,
                b_md, dst_any, strides, dil, pl, pr, lr_attr));
        if (lr_add_arg(e, pd, dnnl_query_src_md, 0, DNNL_ARG_SRC, src_user, 0)) goto done;
        if (lr_add_arg(e, pd, dnnl_query_weights_md, 0, DNNL_ARG_WEIGHTS, w_user, 0)) goto done;
        if (has_bias && lr_add_arg(e, pd, dnnl_query_weights_md, 1, DNNL_ARG_BIAS, b_md, 0))
            goto done;
        if (kind == LR_FWD_ADD
            && lr_add_arg(e, pd, dnnl_query_exec_arg_md,
                          DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_SRC_1,
                          DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_SRC_1, dst_user, 0))
            goto done;
        if (lr_add_arg(e, pd, dnnl_query_dst_md, 0, DNNL_ARG_DST, dst_user, 1)) goto done;
    } else {
        LR_TRY(dnnl_convolution_forward_primitive_desc_create(
            &hint, lr_engine, dnnl_forward_training, dnnl_convolution_direct, src_any, w_any,
            NULL, dst_any, strides, dil, pl, pr, lr_attr));
        if (kind == LR_BWD_DATA) {
            if (!lr_no_blocked_bwd_data)
                pd = lr_bwd_data_blocked(g, w_any, hint);
            if (pd == NULL)
                LR_TRY(dnnl_convolution_backward_data_primitive_desc_create(
                    &pd, lr_engine, dnnl_convolution_direct, src_any, w_any, dst_any,
                    strides, dil, pl, pr, hint, lr_attr));
            if (lr_add_arg(e, pd, dnnl_query_diff_dst_md, 0, DNNL_ARG_DIFF_DST, dst_user, 0)) goto done;
            if (lr_add_arg(e, pd, dnnl_query_weights_md, 0, DNNL_ARG_WEIGHTS, w_user, 0)) goto done;
            if (lr_add_arg(e, pd, dnnl_query_diff_src_md, 0, DNNL_ARG_DIFF_SRC, src_user, 1)) goto done;
        } else {
            if (g->kh == 1 && g->kw == 1 && g->sh == 1 && g->sw == 1 && (g->bx || g->bz)) {
                /* the GEMM on plain copies of blocked activations: the same sums */
                dnnl_memory_desc_t sp = NULL, dp = NULL;
                if (lr_md_tag(&sp, g->n, g->c, g->he, g->we, dnnl_nchw) == dnnl_success
                    && lr_md_tag(&dp, g->n, g->f, g->oh, g->ow, dnnl_nchw) == dnnl_success)
                    pd = lr_gemm_bwd_weights(sp, w_user, dp, strides, dil, pl, pr, hint);
                if (sp) dnnl_memory_desc_destroy(sp);
                if (dp) dnnl_memory_desc_destroy(dp);
            } else if (g->kh == 1 && g->kw == 1 && g->sh == 1 && g->sw == 1)
                pd = lr_gemm_bwd_weights(src_user, w_user, dst_user, strides, dil, pl, pr, hint);
            if (pd == NULL)
                LR_TRY(dnnl_convolution_backward_weights_primitive_desc_create(
                    &pd, lr_engine, dnnl_convolution_direct, src_any, w_any, NULL, dst_any,
                    strides, dil, pl, pr, hint, lr_attr));
            if (one_thread && g->n == 1 && !lr_is_gemm(pd)) {
                /* lasres packs the blocks into the primitive's own layouts
                 * (lr_bwdw_blocks_parallel): no reorders */
                const_dnnl_memory_desc_t smd = dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0);
                const_dnnl_memory_desc_t dmd = dnnl_primitive_desc_query_md(pd, dnnl_query_diff_dst_md, 0);
                const_dnnl_memory_desc_t wmd = dnnl_primitive_desc_query_md(pd, dnnl_query_diff_weights_md, 0);
                lr_layout l;
                if (!lr_layout_of(&l, smd, 2) && !lr_layout_of(&l, dmd, 2)
                    && !lr_layout_of(&l, wmd, 2)) {
                    src_pack = smd; dst_pack = dmd; w_pack = wmd;
                    e->packed = 1;
                }
            }
            if (lr_add_arg(e, pd, dnnl_query_src_md, 0, DNNL_ARG_SRC, src_pack ? src_pack : src_user, 0))
                goto done;
            if (lr_add_arg(e, pd, dnnl_query_diff_dst_md, 0, DNNL_ARG_DIFF_DST,
                           dst_pack ? dst_pack : dst_user, 0))
                goto done;
            if (lr_add_arg(e, pd, dnnl_query_diff_weights_md, 0, DNNL_ARG_DIFF_WEIGHTS,
                           w_pack ? w_pack : w_user, 1))
                goto done;
        }
    }
    if (lr_finish(e, pd)) goto done;
    rc = 0;
done:
    if (rc) lr_entry_free(e);
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (hint) dnnl_primitive_desc_destroy(hint);
    if (add_attr) dnnl_primitive_attr_destroy(add_attr);
    if (src_any) dnnl_memory_desc_destroy(src_any);
    if (w_any) dnnl_memory_desc_destroy(w_any);
    if (dst_any) dnnl_memory_desc_destroy(dst_any);
    if (src_user) dnnl_memory_desc_destroy(src_user);
    if (w_user) dnnl_memory_desc_destroy(w_user);
    if (dst_user) dnnl_memory_desc_destroy(dst_user);
    if (b_md) dnnl_memory_desc_destroy(b_md);
    return rc;
}

/* dst[f, c, i, j] = src[f, c, kh-1-i, kw-1-j] */
static void lr_flip(float *dst, const float *src, npy_intp fc, npy_intp kh, npy_intp kw)
{
    npy_intp p, i, j, k = kh * kw;
    for (p = 0; p < fc; p++)
        for (i = 0; i < kh; i++)
            for (j = 0; j < kw; j++)
                dst[p * k + i * kw + j] = src[p * k + (kh - 1 - i) * kw + (kw - 1 - j)];
}

static int lr_prepare_out(PyArrayObject **out, npy_intp a, npy_intp b, npy_intp c, npy_intp d)
{
    npy_intp dims[4] = {a, b, c, d};
    if (*out != NULL && PyArray_NDIM(*out) == 4 && PyArray_ISCARRAY(*out)
        && PyArray_TYPE(*out) == NPY_FLOAT32 && PyArray_DIMS(*out)[0] == a
        && PyArray_DIMS(*out)[1] == b && PyArray_DIMS(*out)[2] == c && PyArray_DIMS(*out)[3] == d)
        return 0;
    Py_XDECREF(*out);
    *out = (PyArrayObject *)PyArray_EMPTY(4, dims, NPY_FLOAT32, 0);
    return *out == NULL ? -1 : 0;
}

/* (N, C, H, W) of activation a: NCHW (block 0) or (N, C/B, H, W, B). */
static int lr_act_dims(PyArrayObject *a, npy_intp block, const char *what, npy_intp *n,
                       npy_intp *c, npy_intp *h, npy_intp *w)
{
    const npy_intp *d = PyArray_DIMS(a);
    if (PyArray_NDIM(a) != (block ? 5 : 4) || (block && d[4] != block)) {
        PyErr_Format(PyExc_ValueError, "%s must be %s", what,
                     block ? "channel-blocked (N, C/B, H, W, B)" : "4-d (N, C, H, W)");
        return -1;
    }
    *n = d[0]; *c = block ? d[1] * block : d[1]; *h = d[2]; *w = d[3];
    return 0;
}

/* An output activation of shape (n, c, h, w): NCHW or blocked (block B). */
static int lr_prepare_act(PyArrayObject **out, npy_intp n, npy_intp c, npy_intp h, npy_intp w,
                          npy_intp block)
{
    npy_intp dims[5] = {n, block ? c / block : c, h, w, block};
    int nd = block ? 5 : 4, k, same;
    if (block && c % block) {
        PyErr_Format(PyExc_ValueError, "%ld channels are not a whole number of blocks of %ld",
                     (long)c, (long)block);
        return -1;
    }
    same = *out != NULL && PyArray_NDIM(*out) == nd && PyArray_ISCARRAY(*out)
           && PyArray_TYPE(*out) == NPY_FLOAT32;
    for (k = 0; same && k < nd; k++)
        same = PyArray_DIMS(*out)[k] == dims[k];
    if (same)
        return 0;
    Py_XDECREF(*out);
    *out = (PyArrayObject *)PyArray_EMPTY(nd, dims, NPY_FLOAT32, 0);
    return *out == NULL ? -1 : 0;
}

/* Zeros where an input gradient lies outside the source's cropped view (rows
 * he.. and columns we.., never read by the forward pass: see lr_geometry):
 * the primitive writes the whole view, zeros at the positions a stride skips
 * included, so only this band is cleared, not the whole array (a 1x1
 * stride-2 projection's input gradient is 31 of 32 rows and columns: zeroing
 * all of it first cost more than the primitive). */
static void lr_zero_uncropped(const lr_geom *g, npy_intp block, float *out)
{
    const npy_intp b = block ? block : 1, planes = g->n * (block ? g->c / block : g->c);
    const npy_intp row = g->w * b, plane = g->h * row;
    npy_intp p, y;
    if (g->he >= g->h && g->we >= g->w)
        return;
    for (p = 0; p < planes; p++) {
        float *q = out + p * plane;
        if (g->we < g->w)
            for (y = 0; y < g->he; y++)
                memset(q + y * row + g->we * b, 0, sizeof(float) * (g->w - g->we) * b);
        if (g->he < g->h)
            memset(q + g->he * row, 0, sizeof(float) * (g->h - g->he) * row);
    }
}

/* Floats from one row of an activation to the next (within a channel block). */
static npy_intp lr_row_floats(npy_intp w, npy_intp block)
{
    return block ? w * block : w;
}

static PyArrayObject *lr_contig(PyArrayObject *a)
{
    return (PyArrayObject *)PyArray_FromAny((PyObject *)a, PyArray_DescrFromType(NPY_FLOAT32),
                                            0, 0, NPY_ARRAY_CARRAY_RO, NULL);
}

/* The entry of `cache` for geometry g (building it on a miss), or NULL. */
static lr_entry *lr_entry_for(lr_cache *cache, const lr_geom *g, int kind, int has_bias)
{
    int fresh = 0;
    lr_entry *e;
    npy_intp key[LR_KEYLEN] = {g->n, g->c, g->h, g->w, g->f, g->kh, g->kw, has_bias, kind,
                               g->he, g->ph, g->prh, g->bx, g->bz};
    if (lr_init()) return NULL;
    e = lr_lookup(cache, key, &fresh);
    if (fresh && lr_build(e, g, kind, has_bias)) return NULL;
    return e;
}

/* The entry for g and `kind` planned for one thread (kind one of the _1T
 * kinds): oneDNN plans a primitive for the threads it may use when it is
 * created. */
static lr_entry *lr_entry_1t(lr_cache *cache, const lr_geom *g, int kind, int has_bias)
{
#ifdef _OPENMP
    int saved = omp_get_max_threads();
    lr_entry *e;
    omp_set_num_threads(1);
    e = lr_entry_for(cache, g, kind, has_bias);
    omp_set_num_threads(saved);
    return e;
#else
    return lr_entry_for(cache, g, kind, has_bias);
#endif
}

/* The filters the correlation applies: w itself, or (flip) a flipped copy
 * stored in *copy (to be freed by the caller); NULL on a memory error. */
static void *lr_filters(PyArrayObject *w, const lr_geom *g, int flip, float **copy)
{
    if (!flip)
        return PyArray_DATA(w);
    if (!(*copy = (float *)malloc(sizeof(float) * PyArray_SIZE(w) + 1))) {
        PyErr_NoMemory();
        return NULL;
    }
    lr_flip(*copy, (const float *)PyArray_DATA(w), g->f * g->c, g->kh, g->kw);
    return *copy;
}

/* The output gradient gz must have the output shape of geometry g. */
static int lr_check_gz(PyArrayObject *gz, const lr_geom *g)
{
    if (PyArray_DIMS(gz)[2] == g->oh && PyArray_DIMS(gz)[3] == g->ow)
        return 0;
    PyErr_Format(PyExc_ValueError, "output gradient of spatial shape (%ld, %ld) does not fit "
                 "an input of shape (%ld, %ld) (expected (%ld, %ld))",
                 (long)PyArray_DIMS(gz)[2], (long)PyArray_DIMS(gz)[3], (long)g->h, (long)g->w,
                 (long)g->oh, (long)g->ow);
    return -1;
}

/* lasres's 16-channel kernel in the native library LR_NATIVE_LIB (defined
 * by the op's support code), or NULL while it is not there (not built yet,
 * or no compiler: oneDNN runs, with the same bits; tried again next call). */
static lr_conv16_fn lr_conv16_kernel(void)
{
    static lr_conv16_fn fn = NULL;
    if (fn == NULL) {
        void *lib = dlopen(LR_NATIVE_LIB, RTLD_NOW | RTLD_LOCAL);
        if (lib != NULL)
            fn = (lr_conv16_fn)dlsym(lib, "lr_native_conv16");
    }
    return fn;
}

/* A 16-to-16-channel 3x3 stride-1 convolution (transpose: its input
 * gradient) on 16- or 8-channel blocks by lasres's own kernel
 * (c/conv_fwd16.c: the bits of the kernel oneDNN runs for the same geometry
 * -- brgemm on 16-channel blocks, lr_fwd_nhwc16, or the direct kernels --
 * faster); 0 done, 1 not this geometry or ISA, no kernel, or
 * LASRES_CONV16=0 (the caller runs oneDNN). */
static int lr_conv16(const lr_geom *g, PyArrayObject *x, PyArrayObject *w, PyArrayObject *b,
                     PyArrayObject *a, PyArrayObject *out, int flip, int transpose)
{
    float wt[3 * 3 * 16 * 16];
    const float *W = (const float *)PyArray_DATA(w);
    const char *off = getenv("LASRES_CONV16");   /* "0": oneDNN's kernel (read per call) */
    lr_conv16_fn run;
    lr_c16 k;
    int o, c, i, j;
    if ((off != NULL && strcmp(off, "0") == 0) || (g->bx != 16 && g->bx != 8) || g->bz != g->bx
        || g->c != 16 || g->f != 16 || g->kh != 3 || g->kw != 3 || g->sh != 1 || g->sw != 1
        || g->ph != 1 || g->pw != 1 || g->prh != 1 || g->prw != 1 || g->he != g->h
        || g->we != g->w || g->ohs != g->oh || g->oh != g->h || g->ow != g->w
        || (run = lr_conv16_kernel()) == NULL)
        return 1;
    {   /* the order of the kernel oneDNN runs: 16-channel blocks on its AVX-512
         * kernels, 8-channel blocks on its AVX2 ones (not AVX-512 on 8) */
        static int avx512 = -1;
        if (avx512 < 0)
            avx512 = ((int)dnnl_get_effective_cpu_isa() & (int)dnnl_cpu_isa_avx512_core)
                     == (int)dnnl_cpu_isa_avx512_core;
        if (g->bx == 16 ? !avx512 : avx512)
            return 1;
    }
    /* the taps (O, I, 3, 3), flipped for a convolution, as (3, 3, I, O); the
     * input gradient (transpose) is the correlation of gz with the taps
     * turned around, input and output channels swapped */
    if (transpose)
        flip = !flip;
    for (o = 0; o < 16; o++)
        for (c = 0; c < 16; c++)
            for (i = 0; i < 3; i++)
                for (j = 0; j < 3; j++)
                    wt[((i * 3 + j) * 16 + (transpose ? o : c)) * 16 + (transpose ? c : o)] =
                        W[((o * 16 + c) * 3 + (flip ? 2 - i : i)) * 3 + (flip ? 2 - j : j)];
    k.n = g->n; k.h = g->h; k.w = g->w; k.block = g->bx;
    k.x = (const float *)PyArray_DATA(x);
    k.wt = wt;
    k.bias = b ? (const float *)PyArray_DATA(b) : NULL;
    k.add = a ? (const float *)PyArray_DATA(a) : NULL;
    k.y = (float *)PyArray_DATA(out);
    k.relu = 0;
    k.reverse = transpose;   /* oneDNN's input gradient sums the taps backwards */
    k.add_first = 0;   /* a binary post-op: the addend comes last */
    return run(&k);
}

/* out = conv(x, w) + b, plus a0 when given (an array of the output's shape
 * and layout, added as the result is written: the bias first, then a0) */
static int lr_conv_fwd(lr_cache *cache, PyArrayObject *x0, PyArrayObject *w0, PyArrayObject *b0,
                       PyArrayObject *a0, PyArrayObject **out, int sh, int sw, int ph, int pw,
                       int pad_mode, int flip, int bx, int bz)
{
    int rc = -1;
    lr_geom g;
    lr_entry *e;
    float *wflip = NULL;
    void *handles[LR_MAXARGS];
    int k = 0;
    PyArrayObject *x = lr_contig(x0), *w = lr_contig(w0), *b = b0 ? lr_contig(b0) : NULL;
    PyArrayObject *a = a0 ? lr_contig(a0) : NULL;
    if (!x || !w || (b0 && !b) || (a0 && !a)) goto done;
    g.bx = bx; g.bz = bz;
    if (lr_act_dims(x, bx, "the input", &g.n, &g.c, &g.h, &g.w)) goto done;
    g.f = PyArray_DIMS(w)[0]; g.kh = PyArray_DIMS(w)[2]; g.kw = PyArray_DIMS(w)[3];
    g.sh = sh; g.sw = sw; g.ph = ph; g.pw = pw;
    if (PyArray_DIMS(w)[1] != g.c) {
        PyErr_Format(PyExc_ValueError, "input has %ld channels but the filters expect %ld",
                     (long)g.c, (long)PyArray_DIMS(w)[1]);
        goto done;
    }
    if (b && (PyArray_NDIM(b) != 1 || PyArray_DIMS(b)[0] != g.f)) {
        PyErr_Format(PyExc_ValueError, "bias of %ld entries for %ld filters",
                     (long)PyArray_DIMS(b)[0], (long)g.f);
        goto done;
    }
    if (lr_geometry(&g, pad_mode)) goto done;
    if (lr_prepare_act(out, g.n, g.f, g.oh, g.ow, bz)) goto done;
    if (a && (PyArray_NDIM(a) != PyArray_NDIM(*out)
              || !PyArray_CompareLists(PyArray_DIMS(a), PyArray_DIMS(*out), PyArray_NDIM(a))
              || *out == a)) {
        PyErr_SetString(PyExc_ValueError, "the addend must have the output's shape");
        goto done;
    }
    if (g.n == 0 || g.f == 0 || g.c == 0) {
        PyErr_SetString(PyExc_NotImplementedError, "oneDNN convolution of an empty tensor "
                        "(set LASRES_KERNELS=numpy)");
        goto done;
    }
    if (lr_conv16(&g, x, w, b, a, *out, flip, 0) == 0) { rc = 0; goto done; }
    if (!(e = lr_entry_for(cache, &g, a ? LR_FWD_ADD : LR_FWD, b != NULL))) goto done;
    handles[k++] = PyArray_DATA(x);
    if (!(handles[k++] = lr_filters(w, &g, flip, &wflip))) goto done;
    if (b) handles[k++] = PyArray_DATA(b);
    if (a) handles[k++] = PyArray_DATA(a);
    handles[k++] = PyArray_DATA(*out);
    rc = lr_run(e, handles);
done:
    free(wflip);
    Py_XDECREF(x); Py_XDECREF(w); Py_XDECREF(b); Py_XDECREF(a);
    return rc;
}

/* out = d conv(x, w) / dx applied to gz, x of spatial shape (h, w) */
static int lr_conv_bwd_data(lr_cache *cache, PyArrayObject *gz0, PyArrayObject *w0,
                            npy_intp h, npy_intp wd, PyArrayObject **out,
                            int sh, int sw, int ph, int pw, int pad_mode, int flip, int bx, int bz)
{
    npy_intp zh, zw;
    int rc = -1;
    lr_geom g;
    lr_entry *e;
    float *wflip = NULL;
    void *handles[3];
    PyArrayObject *gz = lr_contig(gz0), *w = lr_contig(w0);
    if (!gz || !w) goto done;
    g.bx = bx; g.bz = bz;
    if (lr_act_dims(gz, bz, "the output gradient", &g.n, &g.f, &zh, &zw)) goto done;
    g.h = h; g.w = wd;
    g.c = PyArray_DIMS(w)[1]; g.kh = PyArray_DIMS(w)[2]; g.kw = PyArray_DIMS(w)[3];
    g.sh = sh; g.sw = sw; g.ph = ph; g.pw = pw;
    if (PyArray_DIMS(w)[0] != g.f) {
        PyErr_Format(PyExc_ValueError, "output gradient has %ld channels but the filters have %ld",
                     (long)g.f, (long)PyArray_DIMS(w)[0]);
        goto done;
    }
    if (lr_geometry(&g, pad_mode) || lr_check_gz(gz, &g)) goto done;
    if (lr_prepare_act(out, g.n, g.c, g.h, g.w, bx)) goto done;
    if (g.f == 0)
        memset(PyArray_DATA(*out), 0, PyArray_NBYTES(*out));
    else
        lr_zero_uncropped(&g, bx, (float *)PyArray_DATA(*out));
    if (g.n == 0 || g.c == 0 || g.f == 0) { rc = 0; goto done; }   /* zeros */
    if (lr_conv16(&g, gz, w, NULL, NULL, *out, flip, 1) == 0) { rc = 0; goto done; }
    if (!(e = lr_entry_for(cache, &g, LR_BWD_DATA, 0))) goto done;
    handles[0] = PyArray_DATA(gz);
    if (!(handles[1] = lr_filters(w, &g, flip, &wflip))) goto done;
    handles[2] = PyArray_DATA(*out);
    rc = lr_run(e, handles);
done:
    free(wflip);
    Py_XDECREF(gz); Py_XDECREF(w);
    return rc;
}

/* Output rows and images per call of the direct backward-weights (at most
 * LR_BWDW_TERMS output positions, at least one row; see lr_gemm_bwd_weights). */
static void lr_bwdw_split(const lr_geom *g, npy_intp *rows, npy_intp *imgs)
{
    npy_intp r = LR_BWDW_TERMS / g->ow, nb;
    r = r < 1 ? 1 : (r > g->oh ? g->oh : r);
    nb = LR_BWDW_TERMS / (r * g->ow);
    *rows = r;
    *imgs = nb < 1 ? 1 : (nb > g->n ? g->n : nb);
}

/* The geometry of output rows [r0, r0 + rows) of nb images of g: the input
 * rows they read start at row *in0 of each image, with their own top and
 * bottom padding; the arrays keep the strides of whole images. */
static void lr_band(const lr_geom *g, npy_intp r0, npy_intp rows, npy_intp nb, lr_geom *b,
                    npy_intp *in0)
{
    npy_intp first = r0 * g->sh - g->ph;            /* first (padded) input row read */
    npy_intp end = first + (rows - 1) * g->sh + g->kh;  /* one past the last */
    npy_intp stop = end < g->he ? end : g->he;
    *b = *g;
    b->n = nb;
    b->oh = rows;
    b->ph = first < 0 ? -first : 0;
    *in0 = first < 0 ? 0 : first;
    b->he = stop - *in0;
    b->prh = end - stop;
}

/* o[u * B + c] = in[c * cs + u] for B channels: the row of a block of a
 * channel-blocked layout (B a constant, so that the compiler unrolls it). */
static void lr_interleave16(float *__restrict__ o, const float *__restrict__ in, npy_intp cs, npy_intp nw)
{
    npy_intp u, c;
    for (u = 0; u < nw; u++)
        for (c = 0; c < 16; c++) o[u * 16 + c] = in[c * cs + u];
}

static void lr_interleave8(float *__restrict__ o, const float *__restrict__ in, npy_intp cs, npy_intp nw)
{
    npy_intp u, c;
    for (u = 0; u < nw; u++)
        for (c = 0; c < 8; c++) o[u * 8 + c] = in[c * cs + u];
}

/* Copy rows [0, nt) x columns [0, nw) of channels [0, nc) of one image of
 * h x w pixels (src: its first row to copy; NCHW for block 0, else blocks of
 * `block` channels, (C/B, h, w, B)) into image j of layout l (its padding
 * channels, if any, left as they are).  A channel-blocked layout is written
 * a block of channels and a row at a time, in memory order. */
static void lr_pack(float *dst, const lr_layout *l, npy_intp j, npy_intp nc, npy_intp nt,
                    npy_intp nw, const float *src, npy_intp h, npy_intp w, npy_intp block)
{
    npy_intp blk = l->bsize[1] > 64 ? 1 : l->bsize[1], ws = l->strides[3], ts = l->strides[2];
    npy_intp cs = h * w, rs = w;    /* NCHW source: channel and row strides */
    npy_intp cb, c, t, u, m, idx[4];
    npy_intp base[64];
    idx[0] = j; idx[2] = 0; idx[3] = 0;
    for (cb = 0; cb < nc; cb += blk) {
        int dense;
        m = nc - cb < blk ? nc - cb : blk;
        for (c = 0; c < m; c++) {   /* rows are unblocked: row t is t * ts further */
            idx[1] = cb + c;
            base[c] = lr_offset(l, idx);
        }
        /* a whole block, channels innermost: written in memory order */
        dense = m == blk && blk > 1 && ws == blk && base[m - 1] == base[0] + (m - 1);
        for (t = 0; t < nt; t++) {
            float *o = dst + base[0] + t * ts;
            if (block) {   /* blocked source */
                const float *in = src + (cb / block) * cs * block + t * w * block;
                if (dense && blk == block && cb % block == 0) {
                    memcpy(o, in, sizeof(float) * nw * blk);
                } else {
                    for (c = 0; c < m; c++) {
                        const float *ic = src + ((cb + c) / block) * cs * block
                                          + t * w * block + (cb + c) % block;
                        float *oc = dst + base[c] + t * ts;
                        for (u = 0; u < nw; u++) oc[u * ws] = ic[u * block];
                    }
                }
                continue;
            }
            {
                const float *in = src + cb * cs + t * rs;
                if (dense && blk == 16) {
                    lr_interleave16(o, in, cs, nw);
                } else if (dense && blk == 8) {
                    lr_interleave8(o, in, cs, nw);
                } else if (dense) {
                    for (u = 0; u < nw; u++)
                        for (c = 0; c < blk; c++) o[u * blk + c] = in[c * cs + u];
                } else {
                    for (c = 0; c < m; c++) {
                        float *oc = dst + base[c] + t * ts;
                        for (u = 0; u < nw; u++) oc[u * ws] = in[c * cs + u];
                    }
                }
            }
        }
    }
}

/* The blocks of lr_conv_bwd_weights shared among the OpenMP threads: each
 * thread runs whole blocks (oneDNN on that thread alone) in a fixed share
 * of the block list and sums their filters in its own float64 accumulator;
 * acc (zeroed) receives those sums, added in thread order.  The blocks are
 * the sequential loop's, each at most LR_BWDW_TERMS products per float32
 * chain (on all threads, a block of several images could be split into
 * shorter chains; the precision tests bound both).  Returns 0; 1 (no error set)
 * when there is only one thread, more block shapes than the cache holds at
 * once, or no OpenMP; -1 with a Python error. */
#define LR_PAR_SHAPES 4
static int lr_bwdw_blocks_parallel(lr_cache *cache, const lr_geom *g, PyArrayObject *x,
                                   PyArrayObject *gz, npy_intp rows, npy_intp nb, double *acc)
{
#ifdef _OPENMP
    lr_entry *shapes[LR_PAR_SHAPES];
    lr_geom gs[LR_PAR_SHAPES], gb;
    lr_layout lx[LR_PAR_SHAPES], lg[LR_PAR_SHAPES], lw[LR_PAR_SHAPES];
    npy_intp *wofs[LR_PAR_SHAPES] = {NULL};
    size_t xbytes = 0, gbytes = 0, wbytes = 0;
    npy_intp nbands = (g->oh + rows - 1) / rows, nblk = ((g->n + nb - 1) / nb) * nbands;
    npy_intp size = g->f * g->c * g->kh * g->kw, k, in0;
    int nshapes = 0, nthr = omp_get_max_threads(), s, failed = 0, rc = -1;
    size_t bytes = 0;
    double *part = NULL;
    if (lr_init()) return -1;
    if (nthr < 2 || nblk < 2 || omp_in_parallel() || lr_no_split)
        return 1;
    if (nthr > nblk) nthr = (int)nblk;
    /* the distinct block shapes, their entries built before the threads start */
    for (k = 0; k < nblk; k++) {
        npy_intp n0 = (k / nbands) * nb, r0 = (k % nbands) * rows;
        lr_band(g, r0, g->oh - r0 < rows ? g->oh - r0 : rows, g->n - n0 < nb ? g->n - n0 : nb,
                &gb, &in0);
        for (s = 0; s < nshapes; s++)
            if (memcmp(&gs[s], &gb, sizeof(gb)) == 0) break;
        if (s == nshapes) {
            if (nshapes == LR_PAR_SHAPES) return 1;
            gs[nshapes++] = gb;
        }
    }
    for (s = 0; s < nshapes; s++) {
        if (!(shapes[s] = lr_entry_1t(cache, &gs[s], LR_BWD_WEIGHTS_1T, 0))) return -1;
        if (lr_bytes(shapes[s]) > bytes) bytes = lr_bytes(shapes[s]);
    }
    for (s = 0; s < nshapes; s++) {    /* still cached: nothing evicted them */
        const_dnnl_memory_desc_t md;
        if (!shapes[s]->valid) { rc = 1; goto out; }
        if (!shapes[s]->packed) continue;
        if (dnnl_memory_get_memory_desc(shapes[s]->args[0].user_mem, &md) != dnnl_success
            || lr_layout_of(&lx[s], md, 2)
            || dnnl_memory_get_memory_desc(shapes[s]->args[1].user_mem, &md) != dnnl_success
            || lr_layout_of(&lg[s], md, 2)
            || dnnl_memory_get_memory_desc(shapes[s]->args[2].user_mem, &md) != dnnl_success
            || lr_layout_of(&lw[s], md, 2)) {
            rc = 1;
            goto out;
        }
        /* where each filter value (o, c, y, z), in order, lies in the layout */
        if (!(wofs[s] = (npy_intp *)malloc(sizeof(npy_intp) * size + 1))) {
            PyErr_NoMemory();
            goto out;
        }
        {
            npy_intp o, c, y, z, idx[4] = {0, 0, 0, 0}, kk = 0, base;
            for (o = 0; o < g->f; o++)
                for (c = 0; c < g->c; c++) {
                    idx[0] = o; idx[1] = c;
                    base = lr_offset(&lw[s], idx);   /* taps are unblocked */
                    for (y = 0; y < g->kh; y++)
                        for (z = 0; z < g->kw; z++)
                            wofs[s][kk++] = base + y * lw[s].strides[2] + z * lw[s].strides[3];
                }
        }
        if (lx[s].bytes > xbytes) xbytes = lx[s].bytes;
        if (lg[s].bytes > gbytes) gbytes = lg[s].bytes;
        if (lw[s].bytes > wbytes) wbytes = lw[s].bytes;
    }
    if (!(part = (double *)calloc((size_t)nthr * size + 1, sizeof(double)))) {
        PyErr_NoMemory();
        goto out;
    }
#pragma omp parallel num_threads(nthr) reduction(|:failed)
    {
        int t = omp_get_thread_num(), sh;
        npy_intp kb = nblk * t / nthr, ke = nblk * (t + 1) / nthr, kk, ii, i0;
        double *mine = part + (size_t)t * size;
        char *buf = NULL;
        float *dw = (float *)malloc(sizeof(float) * size + 1);
        float *xbuf = NULL, *gbuf = NULL, *wbuf = NULL;
        dnnl_stream_t stream = NULL;
        lr_geom gl;
        void *handles[3];
        if (!dw || (bytes && posix_memalign((void **)&buf, 64, bytes) != 0)
            || (xbytes && posix_memalign((void **)&xbuf, 64, xbytes) != 0)
            || (gbytes && posix_memalign((void **)&gbuf, 64, gbytes) != 0)
            || (wbytes && posix_memalign((void **)&wbuf, 64, wbytes) != 0)
            || dnnl_stream_create(&stream, lr_engine, dnnl_stream_default_flags) != dnnl_success)
            failed = 1;
        if (!failed) {   /* channels a block pads stay zero */
            if (xbytes) memset(xbuf, 0, xbytes);
            if (gbytes) memset(gbuf, 0, gbytes);
        }
        for (kk = kb; kk < ke && !failed; kk++) {
            npy_intp n0 = (kk / nbands) * nb, r0 = (kk % nbands) * rows;
            lr_band(g, r0, g->oh - r0 < rows ? g->oh - r0 : rows,
                    g->n - n0 < nb ? g->n - n0 : nb, &gl, &i0);
            for (sh = 0; sh < nshapes; sh++)
                if (memcmp(&gs[sh], &gl, sizeof(gl)) == 0) break;
            handles[0] = (float *)PyArray_DATA(x) + n0 * g->c * g->h * g->w
                         + i0 * lr_row_floats(g->w, g->bx);
            handles[1] = (float *)PyArray_DATA(gz) + n0 * g->f * g->oh * g->ow
                         + r0 * lr_row_floats(g->ow, g->bz);
            handles[2] = dw;
            if (!shapes[sh]->packed) {
                if (lr_run_local(shapes[sh], handles, buf, stream)) { failed = 1; break; }
                for (ii = 0; ii < size; ii++)
                    mine[ii] += dw[ii];
                continue;
            }
            /* the block's images, straight into the primitive's layouts */
            for (ii = 0; ii < gl.n; ii++) {
                lr_pack(xbuf, &lx[sh], ii, g->c, gl.he, gl.we, (const float *)handles[0]
                        + ii * g->c * g->h * g->w, g->h, g->w, g->bx);
                lr_pack(gbuf, &lg[sh], ii, g->f, gl.oh, gl.ow, (const float *)handles[1]
                        + ii * g->f * g->oh * g->ow, g->oh, g->ow, g->bz);
            }
            handles[0] = xbuf; handles[1] = gbuf; handles[2] = wbuf;
            if (lr_run_local(shapes[sh], handles, buf, stream)) { failed = 1; break; }
            for (ii = 0; ii < size; ii++)
                mine[ii] += wbuf[wofs[sh][ii]];
        }
        if (stream) dnnl_stream_destroy(stream);
        free(buf);
        free(dw);
        free(xbuf); free(gbuf); free(wbuf);
    }
    if (failed) {
        PyErr_SetString(PyExc_RuntimeError, "oneDNN: a backward-weights block failed");
        goto out;
    }
    for (k = 0; k < size; k++) {
        double sum = 0.0;
        for (s = 0; s < nthr; s++)
            sum += part[(size_t)s * size + k];
        acc[k] = sum;
    }
    rc = 0;
out:
    free(part);
    for (s = 0; s < LR_PAR_SHAPES; s++)
        free(wofs[s]);
    return rc;
#else
    (void)cache; (void)g; (void)x; (void)gz; (void)rows; (void)nb; (void)acc;
    return 1;
#endif
}

/* The weight gradient of a 3x3 or 1x1 (unpadded) stride-1 convolution by
 * lasres's own kernels (c/conv_bwdw.c), 3x3 on rows of at least 16 outputs
 * and 1x1 on images of at least 256 pixels (smaller ones run faster in
 * oneDNN), channels in whole blocks; an NCHW
 * side is copied into the blocked layout first by blocked.h's transposition
 * (the sums do not depend on B, so both graphs give the same bits).
 * 0: dw written; 1: not this geometry; -1: Python error. */
static int lr_bwdw_native(const lr_geom *g, PyArrayObject *x, PyArrayObject *gz, float *dw)
{
    npy_intp B = g->bx ? g->bx : g->bz;
    const float *xs = (const float *)PyArray_DATA(x), *zs = (const float *)PyArray_DATA(gz);
    float *xt = NULL, *zt = NULL;
    lr_bw_geom bg;
    int rc;
    if (lr_init()) return -1;
    if (lr_no_native || g->kh != g->kw || g->sh != 1 || g->sw != 1
        || g->he != g->h || g->we != g->w
        || !((g->kh == 3 && g->ow >= 16)
             || (g->kh == 1 && g->ph == 0 && g->pw == 0 && g->oh * g->ow >= 256)))
        return 1;
    if (B == 0) {
        __builtin_cpu_init();
        B = __builtin_cpu_supports("avx512f") ? 16 : 8;
    }
    if ((g->bx && g->bx != B) || (g->bz && g->bz != B) || g->c % B || g->f % B)
        return 1;
    if (!g->bx) {
        if (!(xt = (float *)malloc(sizeof(float) * g->n * g->c * g->h * g->w + 1))) return 1;
        lr_to_blocked_f32(xs, g->n, g->c / B, g->h * g->w, B, xt);
        xs = xt;
    }
    if (!g->bz) {
        if (!(zt = (float *)malloc(sizeof(float) * g->n * g->f * g->oh * g->ow + 1))) {
            free(xt);
            return 1;
        }
        lr_to_blocked_f32(zs, g->n, g->f / B, g->oh * g->ow, B, zt);
        zs = zt;
    }
    bg.n = g->n; bg.c = g->c; bg.h = g->h; bg.w = g->w; bg.f = g->f;
    bg.oh = g->oh; bg.ow = g->ow; bg.ph = g->ph; bg.pw = g->pw; bg.block = B; bg.k = g->kh;
    rc = lr_bwdw_blocked(&bg, xs, zs, dw);
    free(xt);
    free(zt);
    return rc;
}

/* out = d conv(x, w) / dw applied to gz, filters of spatial shape (kh, kw) */
static int lr_conv_bwd_weights(lr_cache *cache, PyArrayObject *x0, PyArrayObject *gz0,
                               npy_intp kh, npy_intp kw, PyArrayObject **out,
                               int sh, int sw, int ph, int pw, int pad_mode, int flip,
                               int bx, int bz)
{
    npy_intp zn, zh, zw;
    int rc = -1;
    lr_geom g, gb;
    lr_entry *e;
    float *dw = NULL;
    double *acc = NULL;
    void *handles[3];
    npy_intp i, n0, r0, nb, rows, in0, size, xstride, gzstride;
    PyArrayObject *x = lr_contig(x0), *gz = lr_contig(gz0);
    if (!x || !gz) goto done;
    g.bx = bx; g.bz = bz;
    if (lr_act_dims(x, bx, "the input", &g.n, &g.c, &g.h, &g.w)
        || lr_act_dims(gz, bz, "the output gradient", &zn, &g.f, &zh, &zw))
        goto done;
    g.kh = kh; g.kw = kw;
    g.sh = sh; g.sw = sw; g.ph = ph; g.pw = pw;
    if (zn != g.n) {
        PyErr_Format(PyExc_ValueError, "input batch %ld differs from output gradient batch %ld",
                     (long)g.n, (long)zn);
        goto done;
    }
    if (lr_geometry(&g, pad_mode) || lr_check_gz(gz, &g)) goto done;
    if (lr_prepare_out(out, g.f, g.c, g.kh, g.kw)) goto done;
    if (g.n == 0 || g.c == 0 || g.f == 0) {
        memset(PyArray_DATA(*out), 0, PyArray_NBYTES(*out));
        rc = 0;
        goto done;
    }
    size = PyArray_SIZE(*out);
    if (!(dw = (float *)malloc(sizeof(float) * size + 1))) {
        PyErr_NoMemory();
        goto done;
    }
    i = lr_bwdw_native(&g, x, gz, dw);
    if (i < 0) goto done;
    if (i == 0) goto summed_native;
    lr_bwdw_split(&g, &rows, &nb);
    if (nb >= g.n && rows >= g.oh) {   /* one call */
        if (!(e = lr_entry_for(cache, &g, LR_BWD_WEIGHTS, 0))) goto done;
        handles[0] = PyArray_DATA(x);
        handles[1] = PyArray_DATA(gz);
        if (flip) {
            handles[2] = dw;
        } else {
            handles[2] = PyArray_DATA(*out);
        }
        if (lr_run(e, handles)) goto done;
        if (flip)
            lr_flip((float *)PyArray_DATA(*out), dw, g.f * g.c, g.kh, g.kw);
        rc = 0;
        goto done;
    }
    /* blocks of nb images x rows output rows, summed in float64 */
    if (!(acc = (double *)calloc(size + 1, sizeof(double)))) {
        PyErr_NoMemory();
        goto done;
    }
    xstride = g.c * g.h * g.w;
    gzstride = g.f * g.oh * g.ow;
    if (lr_bwdw_blocks_parallel(cache, &g, x, gz, rows, nb, acc) == 0)
        goto summed;
    if (PyErr_Occurred()) goto done;
    for (n0 = 0; n0 < g.n; n0 += nb) {
        for (r0 = 0; r0 < g.oh; r0 += rows) {
            lr_band(&g, r0, g.oh - r0 < rows ? g.oh - r0 : rows, g.n - n0 < nb ? g.n - n0 : nb,
                    &gb, &in0);
            if (!(e = lr_entry_for(cache, &gb, LR_BWD_WEIGHTS, 0))) goto done;
            handles[0] = (float *)PyArray_DATA(x) + n0 * xstride + in0 * lr_row_floats(g.w, g.bx);
            handles[1] = (float *)PyArray_DATA(gz) + n0 * gzstride + r0 * lr_row_floats(g.ow, g.bz);
            handles[2] = dw;
            if (lr_run(e, handles)) goto done;
            for (i = 0; i < size; i++)
                acc[i] += dw[i];
        }
    }
summed:
    for (i = 0; i < size; i++)
        dw[i] = (float)acc[i];
summed_native:
    if (flip)
        lr_flip((float *)PyArray_DATA(*out), dw, g.f * g.c, g.kh, g.kw);
    else
        memcpy(PyArray_DATA(*out), dw, sizeof(float) * size);
    rc = 0;
done:
    free(dw);
    free(acc);
    Py_XDECREF(x); Py_XDECREF(gz);
    return rc;
}

#endif /* LASRES_ONEDNN_CONV_C */
