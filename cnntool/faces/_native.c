/* The per-face stages of dlib's face pipeline as plain loops: the regression-tree shape predictor and the
 * aligned chip (pyramid_down<2> and the bilinear sampling). numpy pays its per-call cost ~25 times a cascade
 * and makes ~20 passes over a chip where dlib makes one; these loops do what dlib does, in its arithmetic
 * (float32 where dlib uses float, double where it uses double, the same order of operations), so the outputs
 * are dlib's to the bit. shape.py and chips.py hold the same algorithms in numpy, used where this module
 * could not be compiled. Arrays arrive as C-contiguous buffers that the Python side has checked. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* Built with -ffp-contract=off (setup.py): a fused multiply-add rounds once where dlib rounds twice. */
#ifdef _MSC_VER
#define restrict __restrict
#endif

typedef struct {
    Py_buffer view;
    int held;
} Buf;

static int get_buf(PyObject *obj, Buf *b, Py_ssize_t want_bytes, int writable, const char *name) {
    int flags = PyBUF_C_CONTIGUOUS | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, &b->view, flags) < 0) return -1;
    b->held = 1;
    if (b->view.len != want_bytes) {
        PyErr_Format(PyExc_ValueError, "%s: %zd bytes, expected %zd", name, b->view.len, want_bytes);
        return -1;
    }
    return 0;
}

static void release(Buf *bufs, int n) {
    for (int i = 0; i < n; i++)
        if (bufs[i].held) PyBuffer_Release(&bufs[i].view);
}

enum { GROUP = 16 };

/* floor(v + 0.5) without a libm call; values no pixel could have (NaN included) become INT64_MIN, outside
 * every image, as numpy's cast makes them. */
static inline int64_t round_half_up(double v) {
    const double u = v + 0.5;
    if (!(u > -4e18 && u < 4e18)) return INT64_MIN;
    const int64_t i = (int64_t)u;
    return i - (u < (double)i);
}

/* dlib's find_similarity_transform between two point sets, 2x2 part only, in double: [[p, -q], [q, p]]. */
static void similarity(const float *src, const float *dst, int n, double out[2]) {
    double ms[2] = {0, 0}, md[2] = {0, 0};
    for (int i = 0; i < n; i++)
        for (int k = 0; k < 2; k++) {
            ms[k] += src[2 * i + k];
            md[k] += dst[2 * i + k];
        }
    for (int k = 0; k < 2; k++) {
        ms[k] /= n;
        md[k] /= n;
    }
    double norm = 0, p = 0, q = 0;
    for (int i = 0; i < n; i++) {
        double ax = src[2 * i] - ms[0], ay = src[2 * i + 1] - ms[1];
        double bx = dst[2 * i] - md[0], by = dst[2 * i + 1] - md[1];
        norm += ax * ax + ay * ay;
        p += ax * bx + ay * by;
        q += ax * by - ay * bx;
    }
    if (norm == 0) {
        out[0] = 1;
        out[1] = 0;
        return;
    }
    out[0] = p / norm;
    out[1] = q / norm;
}

/* Tree after tree, in float32, as dlib: each element's sum keeps its order, so vector lanes change nothing. */
static inline void add_leaf(float *restrict shape, const float *restrict leaf, int n) {
    for (int k = 0; k < n; k++) shape[k] += leaf[k];
}

/* shape_predict(rgb, height, width, rect, initial_shape, deltas, anchors, splits, thresholds, leaves,
 *               cascades, trees, depth, features, points, out)
 * rgb (H, W, 3) uint8; rect (left, top, right, bottom); initial_shape (P, 2) f32; deltas (C, F, 2) f32;
 * anchors (C, F) i32; splits (C, T, S, 2) i32; thresholds (C, T, S) f32; leaves (C, T, S + 1, P, 2) f32;
 * out (P, 2) int64, written with the landmark pixels. The caller has checked that every split index is below F
 * and every anchor below P (ShapeModel does, once per model). */
static PyObject *shape_predict(PyObject *self, PyObject *args) {
    PyObject *o_rgb, *o_init, *o_deltas, *o_anchors, *o_splits, *o_thr, *o_leaves, *o_out;
    Py_ssize_t h, w, left, top, right, bottom;
    int C, T, depth, F, P;
    if (!PyArg_ParseTuple(args, "Onn(nnnn)OOOOOOiiiiiO", &o_rgb, &h, &w, &left, &top, &right, &bottom, &o_init,
                          &o_deltas, &o_anchors, &o_splits, &o_thr, &o_leaves, &C, &T, &depth, &F, &P, &o_out))
        return NULL;
    if (C < 1 || T < 1 || depth < 1 || depth > 16 || F < 1 || P < 1 || h < 1 || w < 1) {
        PyErr_SetString(PyExc_ValueError, "shape_predict: bad sizes");
        return NULL;
    }
    const Py_ssize_t S = ((Py_ssize_t)1 << depth) - 1, L = S + 1;
    Buf b[8];
    memset(b, 0, sizeof b);
    float *shape = NULL, *values = NULL;
    if (get_buf(o_rgb, &b[0], h * w * 3, 0, "rgb") || get_buf(o_init, &b[1], (Py_ssize_t)P * 2 * 4, 0, "initial_shape")
        || get_buf(o_deltas, &b[2], (Py_ssize_t)C * F * 2 * 4, 0, "deltas")
        || get_buf(o_anchors, &b[3], (Py_ssize_t)C * F * 4, 0, "anchors")
        || get_buf(o_splits, &b[4], (Py_ssize_t)C * T * S * 2 * 4, 0, "splits")
        || get_buf(o_thr, &b[5], (Py_ssize_t)C * T * S * 4, 0, "thresholds")
        || get_buf(o_leaves, &b[6], (Py_ssize_t)C * T * L * P * 2 * 4, 0, "leaves")
        || get_buf(o_out, &b[7], (Py_ssize_t)P * 2 * 8, 1, "out")) {
        release(b, 8);
        return NULL;
    }
    const uint8_t *rgb = b[0].view.buf;
    const float *init = b[1].view.buf, *deltas = b[2].view.buf, *thr = b[5].view.buf, *leaves = b[6].view.buf;
    const int32_t *anchors = b[3].view.buf, *splits = b[4].view.buf;
    int64_t *out = b[7].view.buf;
    shape = malloc(sizeof(float) * P * 2);
    values = malloc(sizeof(float) * F);
    if (!shape || !values) {
        free(shape);
        free(values);
        release(b, 8);
        return PyErr_NoMemory();
    }
    const double span_x = (double)(right - left), span_y = (double)(bottom - top);
    Py_BEGIN_ALLOW_THREADS
    memcpy(shape, init, sizeof(float) * P * 2);
    for (int c = 0; c < C; c++) {
        double pq[2];
        similarity(init, shape, P, pq);
        const float m00 = (float)pq[0], m01 = (float)-pq[1], m10 = (float)pq[1], m11 = (float)pq[0];
        const float *d = deltas + (Py_ssize_t)c * F * 2;
        const int32_t *anc = anchors + (Py_ssize_t)c * F;
        for (int f = 0; f < F; f++) {
            const float dx = d[2 * f], dy = d[2 * f + 1];
            const float px = m00 * dx + m01 * dy + shape[2 * anc[f]];
            const float py = m10 * dx + m11 * dy + shape[2 * anc[f] + 1];
            const int64_t x = round_half_up((double)px * span_x + (double)left);
            const int64_t y = round_half_up((double)py * span_y + (double)top);
            if (x >= 0 && x < w && y >= 0 && y < h) {
                const uint8_t *pix = rgb + (y * w + x) * 3;
                values[f] = (float)(((int)pix[0] + pix[1] + pix[2]) / 3);  /* dlib's grey: the integer mean */
            } else {
                values[f] = 0.0f;
            }
        }
        const int32_t *sp = splits + (Py_ssize_t)c * T * S * 2;
        const float *th = thr + (Py_ssize_t)c * T * S;
        const float *lv = leaves + (Py_ssize_t)c * T * L * P * 2;
        /* Trees descend GROUP at a time, level by level and without branches, so that their memory reads
         * overlap instead of each waiting on the last; their leaves are then added in tree order. */
        for (int t0 = 0; t0 < T; t0 += GROUP) {
            const int n = T - t0 < GROUP ? T - t0 : GROUP;
            Py_ssize_t node[GROUP] = {0};
            for (int level = 0; level < depth; level++)
                for (int j = 0; j < n; j++) {
                    const Py_ssize_t at = (Py_ssize_t)(t0 + j) * S + node[j];
                    const int32_t *pair = sp + at * 2;
                    node[j] = 2 * node[j] + 2 - (values[pair[0]] - values[pair[1]] > th[at]);
                }
            for (int j = 0; j < n; j++) {
                add_leaf(shape, lv + ((Py_ssize_t)(t0 + j) * L + (node[j] - S)) * P * 2, 2 * P);
            }
        }
    }
    for (int i = 0; i < P; i++) {
        out[2 * i] = round_half_up((double)shape[2 * i] * span_x + (double)left);
        out[2 * i + 1] = round_half_up((double)shape[2 * i + 1] * span_y + (double)top);
    }
    Py_END_ALLOW_THREADS
    free(shape);
    free(values);
    release(b, 8);
    Py_RETURN_NONE;
}

static double U8[256]; /* byte → double by a load instead of a conversion; filled at import */
#ifdef __GNUC__
typedef double pair_t __attribute__((vector_size(16)));
#endif

/* The region (top, left, h, w) of a C-contiguous (height, width, 3) uint8 image, checked to lie inside it. */
typedef struct {
    const uint8_t *at; /* its top-left pixel */
    Py_ssize_t stride, h, w; /* bytes from one row to the next; its size */
} Region;

static int get_region(PyObject *obj, Buf *b, Py_ssize_t height, Py_ssize_t width, Py_ssize_t top, Py_ssize_t left,
                      Py_ssize_t h, Py_ssize_t w, Region *r) {
    if (height < 0 || width < 0 || top < 0 || left < 0 || h < 0 || w < 0 || top + h > height || left + w > width) {
        PyErr_SetString(PyExc_ValueError, "region outside the image");
        return -1;
    }
    if (get_buf(obj, b, height * width * 3, 0, "image")) return -1;
    r->at = (const uint8_t *)b->view.buf + (top * width + left) * 3;
    r->stride = width * 3;
    r->h = h;
    r->w = w;
    return 0;
}

/* The source region and the output buffer of a pixel loop; on failure both are released. */
static int open_region_and_out(PyObject *img, Py_ssize_t height, Py_ssize_t width, Py_ssize_t top, Py_ssize_t left,
                               Py_ssize_t h, Py_ssize_t w, PyObject *out, Py_ssize_t out_bytes, Buf b[2], Region *src) {
    memset(b, 0, 2 * sizeof(Buf));
    if (get_region(img, &b[0], height, width, top, left, h, w, src) || get_buf(out, &b[1], out_bytes, 1, "out")) {
        release(b, 2);
        return -1;
    }
    return 0;
}

/* pyramid_down2(image, height, width, top, left, h, w, out): dlib's pyramid_down<2> on an RGB region, out
 * ((h-3)/2, (w-3)/2, 3): the separable [1 4 6 4 1] filter on every other pixel, floor(sum / 256). The sums
 * are integers, so any order is exact: down the columns first (contiguous, vectorizes), then across. */
static PyObject *pyramid_down2(PyObject *self, PyObject *args) {
    PyObject *o_img, *o_out;
    Py_ssize_t height, width, top, left, h, w;
    if (!PyArg_ParseTuple(args, "OnnnnnnO", &o_img, &height, &width, &top, &left, &h, &w, &o_out)) return NULL;
    if (h < 5 || w < 5) {
        PyErr_SetString(PyExc_ValueError, "pyramid_down2: region smaller than the filter");
        return NULL;
    }
    const Py_ssize_t oh = (h - 3) / 2, ow = (w - 3) / 2;
    Buf b[2];
    Region src;
    if (open_region_and_out(o_img, height, width, top, left, h, w, o_out, oh * ow * 3, b, &src)) return NULL;
    uint8_t *out = b[1].view.buf;
    uint16_t *column = malloc(sizeof(uint16_t) * w * 3); /* ≤ 255·16 */
    if (!column) {
        release(b, 2);
        return PyErr_NoMemory();
    }
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t y = 0; y < oh; y++) {
        const uint8_t *restrict r0 = src.at + 2 * y * src.stride, *restrict r1 = r0 + src.stride,
                      *restrict r2 = r1 + src.stride, *restrict r3 = r2 + src.stride, *restrict r4 = r3 + src.stride;
        uint16_t *restrict sums = column;
        for (Py_ssize_t i = 0; i < w * 3; i++)
            sums[i] = (uint16_t)(r0[i] + 4 * r1[i] + 6 * r2[i] + 4 * r3[i] + r4[i]);
        uint8_t *restrict o = out + y * ow * 3;
        for (Py_ssize_t x = 0; x < ow; x++)
            for (int ch = 0; ch < 3; ch++) {
                const uint16_t *restrict p = sums + 2 * x * 3 + ch;
                o[x * 3 + ch] = (uint8_t)(((uint32_t)p[0] + 4u * p[3] + 6u * p[6] + 4u * p[9] + p[12]) >> 8);
            }
    }
    Py_END_ALLOW_THREADS
    free(column);
    release(b, 2);
    Py_RETURN_NONE;
}

/* sample_chip(image, height, width, top, left, h, w, x0, y0, col_dx, col_dy, row_dx, row_dy, size, out): the
 * size x size RGB chip whose pixel (c, r) samples the region at (x0 + c*col_dx + r*row_dx, y0 + c*col_dy +
 * r*row_dy) with dlib's interpolate_bilinear in double, truncated to 8 bits; 0 where a neighbour leaves the
 * region. */
static PyObject *sample_chip(PyObject *self, PyObject *args) {
    PyObject *o_img, *o_out;
    Py_ssize_t height, width, top, left, h, w, size;
    double x0, y0, cdx, cdy, rdx, rdy;
    if (!PyArg_ParseTuple(args, "OnnnnnnddddddnO", &o_img, &height, &width, &top, &left, &h, &w, &x0, &y0, &cdx,
                          &cdy, &rdx, &rdy, &size, &o_out))
        return NULL;
    if (size < 1) {
        PyErr_SetString(PyExc_ValueError, "sample_chip: bad size");
        return NULL;
    }
    Buf b[2];
    Region src;
    if (open_region_and_out(o_img, height, width, top, left, h, w, o_out, size * size * 3, b, &src)) return NULL;
    uint8_t *out = b[1].view.buf;
    double *col_x = malloc(sizeof(double) * size * 2);
    if (!col_x) {
        release(b, 2);
        return PyErr_NoMemory();
    }
    double *col_y = col_x + size;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t c = 0; c < size; c++) { /* x0 + c*col_dx first, as numpy's left-to-right sum does */
        col_x[c] = x0 + (double)c * cdx;
        col_y[c] = y0 + (double)c * cdy;
    }
    /* In locals: src's address was taken, and a byte store could otherwise change it for the compiler. */
    const uint8_t *restrict base = src.at;
    const Py_ssize_t stride = src.stride;
    const double last_x = (double)(src.w - 1), last_y = (double)(src.h - 1);
    for (Py_ssize_t r = 0; r < size; r++) {
        const double row_x = (double)r * rdx, row_y = (double)r * rdy;
        for (Py_ssize_t c = 0; c < size; c++) {
            const double x = col_x[c] + row_x, y = col_y[c] + row_y;
            uint8_t *o = out + (r * size + c) * 3;
            /* Inside the region (x, y ≥ 0) floor is truncation; anything else (NaN included) samples 0. */
            if (!(x >= 0 && y >= 0 && x < last_x && y < last_y)) {
                o[0] = o[1] = o[2] = 0;
                continue;
            }
            const Py_ssize_t px = (Py_ssize_t)x, py = (Py_ssize_t)y;
            const double fx = x - (double)px, fy = y - (double)py;
            const uint8_t *restrict tl = base + py * stride + px * 3, *restrict bl = tl + stride;
            uint8_t v[3]; /* written to the chip after all three are read: a byte store may alias the source */
            for (int ch = 0; ch < 3; ch++) {
#ifdef __GNUC__ /* the upper and lower rows in the two lanes of one register: the same roundings, half the work */
                const pair_t rows = (pair_t){U8[tl[ch]], U8[bl[ch]]} * (1 - fx) + (pair_t){U8[tl[ch + 3]], U8[bl[ch + 3]]} * fx;
                const pair_t weighted = rows * (pair_t){1 - fy, fy};
                v[ch] = (uint8_t)(weighted[0] + weighted[1]); /* ≥ 0: truncation is floor */
#else
                const double upper = U8[tl[ch]] * (1 - fx) + U8[tl[ch + 3]] * fx;
                const double lower = U8[bl[ch]] * (1 - fx) + U8[bl[ch + 3]] * fx;
                v[ch] = (uint8_t)(upper * (1 - fy) + lower * fy);
#endif
            }
            o[0] = v[0];
            o[1] = v[1];
            o[2] = v[2];
        }
    }
    Py_END_ALLOW_THREADS
    free(col_x);
    release(b, 2);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"shape_predict", shape_predict, METH_VARARGS, "dlib's shape predictor cascade on one face."},
    {"pyramid_down2", pyramid_down2, METH_VARARGS, "dlib's pyramid_down<2> on an RGB image."},
    {"sample_chip", sample_chip, METH_VARARGS, "dlib's bilinear chip sampling on an RGB image."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_native", NULL, -1, methods};

PyMODINIT_FUNC PyInit__native(void) {
    for (int i = 0; i < 256; i++) U8[i] = i;
    return PyModule_Create(&module);
}
