/* The reference backend: the ONNX graph (onnx-graph.c) executed in plain
 * C, float32, NCHW, one thread. Written to be read and checked, not to be
 * fast: it is what CI compares OpenCV DNN and the cuda backend against on
 * machines without a GPU (docs/inference-engine.md).
 *
 * In int8 every Conv and Gemm quantizes its input per tensor and its
 * weights per output channel (infer-calib.c), multiplies int8 by int8 into
 * int32 sums (exact: |sum| <= 127 * 127 * k stays far below 2^31 for any
 * k under 133,000), and turns the sums back into float with the product
 * of the two scales before the bias; pooling, Relu, Sigmoid, Concat and
 * Flatten stay float32. That is the arithmetic the cuda backend's int8
 * kernels do, so the two can be compared exactly on the integer part.
 *
 * In fp16 and bf16 it rounds what the cuda backend stores in that type
 * (ref_module_load_half): the input, the Conv and Gemm weights and every
 * node's output, a Conv's or Gemm's before and after its float32 bias. */
#include <errno.h>
#include <glib.h>
#include <math.h>
#include <string.h>

#include "inference/infer-engine.h"
#include "inference/inference.h"

/* A Conv or Gemm in int8. */
struct ref_qnode {
	float inv_scale;           /* 127 / input range */
	float *dequant;            /* per output channel: input scale * weight scale */
	int8_t *w;                 /* rows of k weights, one per output channel */
	size_t k;
};

struct ref_module {
	onnx_graph *g;
	int ndim;                  /* the input shape buffers are sized for */
	int shape[ONNX_MAX_DIMS];
	float **buf;               /* per tensor: activations owned here,
				    * initializers and the input borrowed */
	struct ref_qnode **q;      /* per node, int8 only: NULL or the node's */
	int8_t *xq;                /* int8 copy of the input of the node running */
	int32_t *acc;              /* one output plane's sums */
	float (*round)(float);     /* fp16 / bf16: what each stored value becomes; NULL in
				    * fp32 and int8 */
	float **rounded;           /* per tensor, fp16 / bf16: owned rounded weights, and
				    * the rounded input copy */
};

static struct ref_qnode *qnode_new(const onnx_graph *g, const struct onnx_node *n,
				   const struct infer_quant_node *qn)
{
	struct ref_qnode *r = g_new0(struct ref_qnode, 1);
	float in_scale = qn->input_range / 127.0f;
	int channels;

	infer_quant_dims(g, n, &channels, &r->k);
	r->inv_scale = 127.0f / qn->input_range;
	r->dequant = g_new(float, channels);
	for (int c = 0; c < channels; c++)
		r->dequant[c] = in_scale * qn->weight_scale[c];
	r->w = g_new(int8_t, (size_t)channels * r->k);
	infer_quant_weights(g, n, qn->weight_scale, r->w);
	return r;
}

static void qnode_free(struct ref_qnode *r)
{
	if (!r)
		return;
	g_free(r->dequant);
	g_free(r->w);
	g_free(r);
}

void ref_module_free(ref_module *m)
{
	if (!m)
		return;
	for (int i = 0; m->q && i < m->g->n_nodes; i++)
		qnode_free(m->q[i]);
	g_free(m->q);
	g_free(m->xq);
	g_free(m->acc);
	if (m->buf && m->g)
		for (int i = 0; i < m->g->n_tensors; i++)
			if (m->g->tensors[i].producer >= 0)
				g_free(m->buf[i]);
	for (int i = 0; m->rounded && i < m->g->n_tensors; i++)
		g_free(m->rounded[i]);
	g_free(m->rounded);
	g_free(m->buf);
	onnx_graph_free(m->g);
	g_free(m);
}

ref_module *ref_module_load(const char *onnx_path, char **err)
{
	ref_module *m = g_new0(ref_module, 1);

	m->g = onnx_graph_load(onnx_path, err);
	if (!m->g) {
		ref_module_free(m);
		return NULL;
	}
	m->buf = g_new0(float *, m->g->n_tensors);
	for (int i = 0; i < m->g->n_tensors; i++)
		m->buf[i] = m->g->tensors[i].data;
	return m;
}

ref_module *ref_module_load_int8(const char *onnx_path, const struct infer_quant *quant,
				 char **err)
{
	ref_module *m = ref_module_load(onnx_path, err);

	if (!m)
		return NULL;
	m->q = g_new0(struct ref_qnode *, m->g->n_nodes);
	for (int i = 0; i < m->g->n_nodes; i++) {
		const struct onnx_node *n = &m->g->nodes[i];
		const struct infer_quant_node *qn;

		if (n->op != ONNX_OP_CONV && n->op != ONNX_OP_GEMM)
			continue;
		qn = infer_quant_node_for(quant, m->g, n, err);
		if (!qn) {
			ref_module_free(m);
			return NULL;
		}
		if (!qn->keep_fp32)
			m->q[i] = qnode_new(m->g, n, qn);
	}
	return m;
}

static float round_half(float x)
{
	return infer_round_half(x);
}

static float round_bf16(float x)
{
	return infer_round_bf16(x);
}

static void round_all(float (*round)(float), float *x, size_t n)
{
	for (size_t i = 0; i < n; i++)
		x[i] = round(x[i]);
}

ref_module *ref_module_load_half(const char *onnx_path, enum infer_precision p, char **err)
{
	ref_module *m;

	if (p != INFER_FP16 && p != INFER_BF16) {
		*err = g_strdup_printf("reference: %s is not a half precision",
				       infer_precision_names[p]);
		return NULL;
	}
	if (!(m = ref_module_load(onnx_path, err)))
		return NULL;
	m->round = p == INFER_FP16 ? round_half : round_bf16;
	m->rounded = g_new0(float *, m->g->n_tensors);
	for (int i = 0; i < m->g->n_nodes; i++) {
		const struct onnx_node *n = &m->g->nodes[i];
		const struct onnx_tensor *w;
		int t = n->in[1];

		if ((n->op != ONNX_OP_CONV && n->op != ONNX_OP_GEMM) || m->rounded[t])
			continue;
		w = &m->g->tensors[t];
		m->rounded[t] = g_memdup2(w->data, onnx_tensor_count(w) * sizeof(float));
		round_all(m->round, m->rounded[t], onnx_tensor_count(w));
		m->buf[t] = m->rounded[t];
	}
	return m;
}

const onnx_graph *ref_module_graph(const ref_module *m)
{
	return m->g;
}

/* Shapes and buffers for a new input shape; kept while it stays the same. */
static int plan(ref_module *m, const int *shape, int ndim, char **err)
{
	onnx_graph *g = m->g;
	int rc;

	if (ndim == m->ndim && memcmp(shape, m->shape, sizeof(int) * (size_t)ndim) == 0)
		return 0;
	m->ndim = 0;
	if ((rc = onnx_graph_infer_shapes(g, shape, ndim, err)) < 0)
		return rc;
	for (int i = 0; i < g->n_tensors; i++)
		if (g->tensors[i].producer >= 0) {
			g_free(m->buf[i]);
			m->buf[i] = g_new(float, onnx_tensor_count(&g->tensors[i]) + 1);
		}
	if (m->round) {
		g_free(m->rounded[g->input]);
		m->rounded[g->input] = g_new(float, onnx_tensor_count(&g->tensors[g->input]) + 1);
	}
	if (m->q) {
		size_t xn = 0, plane = 0;

		for (int i = 0; i < g->n_nodes; i++) {
			const struct onnx_tensor *x = &g->tensors[g->nodes[i].in[0]];
			const struct onnx_tensor *y = &g->tensors[g->nodes[i].out[0]];

			if (!m->q[i])
				continue;
			xn = MAX(xn, onnx_tensor_count(x));
			plane = MAX(plane, g->nodes[i].op == ONNX_OP_CONV
				    ? (size_t)y->dims[2] * y->dims[3] : 1);
		}
		g_free(m->xq);
		g_free(m->acc);
		m->xq = g_new(int8_t, xn + 1);
		m->acc = g_new(int32_t, plane + 1);
	}
	m->ndim = ndim;
	memcpy(m->shape, shape, sizeof(int) * (size_t)ndim);
	return 0;
}

/* Column kx of a kernel row: off, the input column of output column 0,
 * and [lo, hi), the output columns whose input column ox * stride + off
 * lies inside the input's wd columns (at most ow). */
static void kx_range(const struct onnx_attrs *a, int kx, int wd, int ow, int *off, int *lo,
		     int *hi)
{
	*off = kx * a->dilations[1] - a->pads[1];
	*lo = *off >= 0 ? 0 : (-*off + a->strides[1] - 1) / a->strides[1];
	*hi = wd - 1 - *off < 0 ? 0 : (wd - 1 - *off) / a->strides[1] + 1;
	if (*hi > ow)
		*hi = ow;
}

static void conv2d(const struct onnx_attrs *a, const struct onnx_tensor *xt, const float *x,
		   const struct onnx_tensor *wt, const float *w, const float *bias,
		   const struct onnx_tensor *yt, float *y)
{
	int batch = xt->dims[0], c = xt->dims[1], h = xt->dims[2], wd = xt->dims[3];
	int oc_all = yt->dims[1], oh = yt->dims[2], ow = yt->dims[3];
	int cg = wt->dims[1], ocg = oc_all / a->group, kh = wt->dims[2], kw = wt->dims[3];

	for (int n = 0; n < batch; n++)
		for (int oc = 0; oc < oc_all; oc++) {
			float *yp = y + ((size_t)n * oc_all + oc) * oh * ow;
			int grp = oc / ocg;

			for (int i = 0; i < oh * ow; i++)
				yp[i] = bias ? bias[oc] : 0.0f;
			for (int ic = 0; ic < cg; ic++) {
				const float *xp = x + ((size_t)n * c + grp * cg + ic) * h * wd;
				const float *wp = w + ((size_t)oc * cg + ic) * kh * kw;

				for (int ky = 0; ky < kh; ky++)
					for (int kx = 0; kx < kw; kx++) {
						float wv = wp[ky * kw + kx];
						int off, lo, hi;

						kx_range(a, kx, wd, ow, &off, &lo, &hi);
						for (int oy = 0; oy < oh; oy++) {
							int iy = oy * a->strides[0] - a->pads[0] +
								 ky * a->dilations[0];
							const float *xr = xp + (size_t)iy * wd + off;
							float *yr = yp + (size_t)oy * ow;

							if (iy < 0 || iy >= h)
								continue;
							for (int ox = lo; ox < hi; ox++)
								yr[ox] += wv * xr[ox * a->strides[1]];
						}
					}
			}
		}
}

static void quantize(int8_t *q, const float *x, size_t n, float inv_scale)
{
	for (size_t i = 0; i < n; i++)
		q[i] = infer_quantize(x[i], inv_scale);
}

/* conv2d's loops over int8 values into int32 sums. */
static void conv2d_int8(const struct onnx_attrs *a, const struct onnx_tensor *xt,
			const int8_t *x, const struct onnx_tensor *wt, const struct ref_qnode *q,
			const float *bias, const struct onnx_tensor *yt, float *y, int32_t *acc)
{
	int batch = xt->dims[0], c = xt->dims[1], h = xt->dims[2], wd = xt->dims[3];
	int oc_all = yt->dims[1], oh = yt->dims[2], ow = yt->dims[3];
	int cg = wt->dims[1], ocg = oc_all / a->group, kh = wt->dims[2], kw = wt->dims[3];

	for (int n = 0; n < batch; n++)
		for (int oc = 0; oc < oc_all; oc++) {
			float *yp = y + ((size_t)n * oc_all + oc) * oh * ow;
			int grp = oc / ocg;

			memset(acc, 0, sizeof(int32_t) * (size_t)oh * ow);
			for (int ic = 0; ic < cg; ic++) {
				const int8_t *xp = x + ((size_t)n * c + grp * cg + ic) * h * wd;
				const int8_t *wp = q->w + (size_t)oc * q->k + (size_t)ic * kh * kw;

				for (int ky = 0; ky < kh; ky++)
					for (int kx = 0; kx < kw; kx++) {
						int32_t wv = wp[ky * kw + kx];
						int off, lo, hi;

						kx_range(a, kx, wd, ow, &off, &lo, &hi);
						for (int oy = 0; oy < oh; oy++) {
							int iy = oy * a->strides[0] - a->pads[0] +
								 ky * a->dilations[0];
							const int8_t *xr = xp + (size_t)iy * wd + off;
							int32_t *ar = acc + (size_t)oy * ow;

							if (iy < 0 || iy >= h)
								continue;
							for (int ox = lo; ox < hi; ox++)
								ar[ox] += wv * xr[ox * a->strides[1]];
						}
					}
			}
			for (int i = 0; i < oh * ow; i++)
				yp[i] = (float)acc[i] * q->dequant[oc] + (bias ? bias[oc] : 0.0f);
		}
}

static void gemm_int8(const struct onnx_attrs *a, const struct onnx_tensor *at, const int8_t *A,
		      const struct ref_qnode *q, const float *C, size_t nc,
		      const struct onnx_tensor *yt, float *Y)
{
	int m = yt->dims[0], n = yt->dims[1];
	int lda = at->dims[1];

	for (int i = 0; i < m; i++)
		for (int j = 0; j < n; j++) {
			const int8_t *w = q->w + (size_t)j * q->k;
			int32_t acc = 0;

			for (size_t p = 0; p < q->k; p++)
				acc += (int32_t)(a->trans_a ? A[p * (size_t)lda + i]
						 : A[(size_t)i * lda + p]) * w[p];
			Y[(size_t)i * n + j] = a->alpha * ((float)acc * q->dequant[j]) +
					       (C ? a->beta * C[nc == 1 ? 0 : j] : 0.0f);
		}
}

/* A Conv or Gemm in int8 on the float buffers buf; xq and acc are scratch
 * of the input's count and of one output plane. */
static void run_int8(const onnx_graph *g, const struct onnx_node *nd, const struct ref_qnode *q,
		     const float *const *buf, int8_t *xq, int32_t *acc, float *y)
{
	const struct onnx_tensor *xt = &g->tensors[nd->in[0]], *yt = &g->tensors[nd->out[0]];
	const float *c = nd->n_in > 2 && nd->in[2] >= 0 ? buf[nd->in[2]] : NULL;

	quantize(xq, buf[nd->in[0]], onnx_tensor_count(xt), q->inv_scale);
	if (nd->op == ONNX_OP_CONV)
		conv2d_int8(&nd->a, xt, xq, &g->tensors[nd->in[1]], q, c, yt, y, acc);
	else
		gemm_int8(&nd->a, xt, xq, q, c, c ? onnx_tensor_count(&g->tensors[nd->in[2]]) : 0,
			  yt, y);
}

void ref_module_node_int8(const ref_module *m, int node, const struct infer_quant_node *qn,
			  float *y)
{
	const struct onnx_node *nd = &m->g->nodes[node];
	const struct onnx_tensor *xt = &m->g->tensors[nd->in[0]];
	const struct onnx_tensor *yt = &m->g->tensors[nd->out[0]];
	struct ref_qnode *q = qnode_new(m->g, nd, qn);
	int8_t *xq = g_new(int8_t, onnx_tensor_count(xt) + 1);
	int32_t *acc = g_new(int32_t, nd->op == ONNX_OP_CONV
			     ? (size_t)yt->dims[2] * yt->dims[3] + 1 : 1);

	run_int8(m->g, nd, q, (const float *const *)m->buf, xq, acc, y);
	g_free(acc);
	g_free(xq);
	qnode_free(q);
}

static void maxpool2d(const struct onnx_attrs *a, const struct onnx_tensor *xt, const float *x,
		      const struct onnx_tensor *yt, float *y)
{
	int planes = xt->dims[0] * xt->dims[1], h = xt->dims[2], w = xt->dims[3];
	int oh = yt->dims[2], ow = yt->dims[3];

	for (int p = 0; p < planes; p++)
		for (int oy = 0; oy < oh; oy++)
			for (int ox = 0; ox < ow; ox++) {
				float best = -INFINITY;

				/* Padding never wins: ONNX pads MaxPool with -inf. */
				for (int ky = 0; ky < a->kernel[0]; ky++) {
					int iy = oy * a->strides[0] - a->pads[0] + ky;

					if (iy < 0 || iy >= h)
						continue;
					for (int kx = 0; kx < a->kernel[1]; kx++) {
						int ix = ox * a->strides[1] - a->pads[1] + kx;

						if (ix >= 0 && ix < w && x[((size_t)p * h + iy) * w + ix] > best)
							best = x[((size_t)p * h + iy) * w + ix];
					}
				}
				y[((size_t)p * oh + oy) * ow + ox] = best;
			}
}

static void gemm(const struct onnx_attrs *a, const struct onnx_tensor *at, const float *A,
		 const struct onnx_tensor *bt, const float *B, const float *C, size_t nc,
		 const struct onnx_tensor *yt, float *Y)
{
	int m = yt->dims[0], n = yt->dims[1];
	int k = at->dims[a->trans_a ? 0 : 1];
	int lda = at->dims[1], ldb = bt->dims[1];

	for (int i = 0; i < m; i++)
		for (int j = 0; j < n; j++) {
			double acc = 0;

			for (int p = 0; p < k; p++)
				acc += (double)(a->trans_a ? A[(size_t)p * lda + i] : A[(size_t)i * lda + p]) *
				       (a->trans_b ? B[(size_t)j * ldb + p] : B[(size_t)p * ldb + j]);
			Y[(size_t)i * n + j] = a->alpha * (float)acc +
					       (C ? a->beta * C[nc == 1 ? 0 : j] : 0.0f);
		}
}

/* A Conv or Gemm as the cuda backend runs it in fp16 / bf16: the sums
 * stored, then the float32 bias (biases are never rounded: the GPU keeps
 * them in float32) added and stored again. */
static void run_half(ref_module *m, const struct onnx_node *nd, float *y)
{
	const onnx_graph *g = m->g;
	const struct onnx_tensor *xt = &g->tensors[nd->in[0]], *yt = &g->tensors[nd->out[0]];
	const struct onnx_tensor *bt = nd->n_in > 2 && nd->in[2] >= 0 ? &g->tensors[nd->in[2]]
									: NULL;
	size_t count = onnx_tensor_count(yt);

	if (nd->op == ONNX_OP_CONV)
		conv2d(&nd->a, xt, m->buf[nd->in[0]], &g->tensors[nd->in[1]], m->buf[nd->in[1]],
		       NULL, yt, y);
	else
		gemm(&nd->a, xt, m->buf[nd->in[0]], &g->tensors[nd->in[1]], m->buf[nd->in[1]],
		     NULL, 0, yt, y);
	round_all(m->round, y, count);
	if (!bt)
		return;
	if (nd->op == ONNX_OP_CONV) {
		size_t plane = (size_t)yt->dims[2] * yt->dims[3];

		for (size_t i = 0; i < count; i++)
			y[i] = m->round(y[i] + bt->data[(i / plane) % (size_t)yt->dims[1]]);
	} else {
		size_t nc = onnx_tensor_count(bt);

		for (size_t i = 0; i < count; i++)
			y[i] = m->round(y[i] + nd->a.beta * bt->data[nc == 1 ? 0 : i % (size_t)yt->dims[1]]);
	}
}

static void run_node(ref_module *m, const struct onnx_node *nd)
{
	const onnx_graph *g = m->g;
	const struct onnx_tensor *xt = &g->tensors[nd->in[0]], *yt = &g->tensors[nd->out[0]];
	const float *x = m->buf[nd->in[0]];
	float *y = m->buf[nd->out[0]];
	size_t count = onnx_tensor_count(yt);

	if (m->q && m->q[nd - g->nodes]) {
		run_int8(g, nd, m->q[nd - g->nodes], (const float *const *)m->buf, m->xq, m->acc, y);
		return;
	}
	if (m->round && (nd->op == ONNX_OP_CONV || nd->op == ONNX_OP_GEMM)) {
		run_half(m, nd, y);
		return;
	}
	switch (nd->op) {
	case ONNX_OP_CONV:
		conv2d(&nd->a, xt, x, &g->tensors[nd->in[1]], m->buf[nd->in[1]],
		       nd->n_in > 2 && nd->in[2] >= 0 ? m->buf[nd->in[2]] : NULL, yt, y);
		break;
	case ONNX_OP_MAXPOOL:
		maxpool2d(&nd->a, xt, x, yt, y);
		break;
	case ONNX_OP_GLOBALAVGPOOL: {
		size_t plane = (size_t)xt->dims[2] * xt->dims[3];

		for (size_t p = 0; p < count; p++) {
			double sum = 0;

			for (size_t i = 0; i < plane; i++)
				sum += x[p * plane + i];
			y[p] = (float)(sum / (double)plane);
		}
		break;
	}
	case ONNX_OP_RELU:
		for (size_t i = 0; i < count; i++)
			y[i] = x[i] > 0 ? x[i] : 0.0f;
		break;
	case ONNX_OP_SIGMOID:
		for (size_t i = 0; i < count; i++)
			y[i] = 1.0f / (1.0f + expf(-x[i]));
		break;
	case ONNX_OP_CONCAT: {
		int axis = nd->a.axis;
		size_t outer = 1, at = 0, row = 1;

		for (int d = 0; d < axis; d++)
			outer *= (size_t)yt->dims[d];
		for (int d = axis; d < yt->ndim; d++)
			row *= (size_t)yt->dims[d];
		for (int i = 0; i < nd->n_in; i++) {
			const struct onnx_tensor *it = &g->tensors[nd->in[i]];
			size_t chunk = onnx_tensor_count(it) / outer;

			for (size_t o = 0; o < outer; o++)
				memcpy(y + o * row + at, m->buf[nd->in[i]] + o * chunk,
				       chunk * sizeof(float));
			at += chunk;
		}
		break;
	}
	case ONNX_OP_FLATTEN:
		memcpy(y, x, count * sizeof(float));
		break;
	case ONNX_OP_GEMM: {
		const float *c = nd->n_in > 2 && nd->in[2] >= 0 ? m->buf[nd->in[2]] : NULL;

		gemm(&nd->a, xt, x, &g->tensors[nd->in[1]], m->buf[nd->in[1]], c,
		     c ? onnx_tensor_count(&g->tensors[nd->in[2]]) : 0, yt, y);
		break;
	}
	case ONNX_OP_COUNT:
		break;
	}
	if (m->round)
		round_all(m->round, y, count);
}

int ref_module_forward(ref_module *m, const float *in, const int *shape, int ndim, char **err)
{
	int rc = plan(m, shape, ndim, err);

	if (rc < 0)
		return rc;
	/* read only; kept after the forward for ref_module_tensor */
	m->buf[m->g->input] = (float *)in;
	if (m->round) {
		size_t n = onnx_tensor_count(&m->g->tensors[m->g->input]);

		memcpy(m->rounded[m->g->input], in, n * sizeof(float));
		round_all(m->round, m->rounded[m->g->input], n);
		m->buf[m->g->input] = m->rounded[m->g->input];
	}
	for (int i = 0; i < m->g->n_nodes; i++)
		run_node(m, &m->g->nodes[i]);
	return 0;
}

const float *ref_module_output(const ref_module *m, int i, size_t *len)
{
	if (i < 0 || i >= m->g->n_outputs || !m->ndim)
		return NULL;
	*len = onnx_tensor_count(&m->g->tensors[m->g->outputs[i]]);
	return m->buf[m->g->outputs[i]];
}

const float *ref_module_tensor(const ref_module *m, int t, size_t *len)
{
	if (t < 0 || t >= m->g->n_tensors || !m->ndim || !m->buf[t])
		return NULL;
	*len = onnx_tensor_count(&m->g->tensors[t]);
	return m->buf[t];
}

static void *reference_load(const char *onnx_path, char **err)
{
	return ref_module_load(onnx_path, err);
}

static void *reference_load_at(const char *onnx_path, enum infer_precision p,
			       const struct infer_quant *quant, char **err)
{
	if (p == INFER_INT8)
		return ref_module_load_int8(onnx_path, quant, err);
	if (p == INFER_FP16 || p == INFER_BF16)
		return ref_module_load_half(onnx_path, p, err);
	return ref_module_load(onnx_path, err);
}

static int named_by_other(const struct infer_tensor *out, int n_out, const char *name)
{
	for (int k = 0; k < n_out; k++)
		if (out[k].name && strcmp(out[k].name, name) == 0)
			return 1;
	return 0;
}

int engine_copy_outputs(const onnx_graph *g,
			const float *(*output)(const void *module, int i, size_t *len),
			const void *module, struct infer_tensor *out, int n_out, char **err)
{
	for (int k = 0; k < n_out; k++) {
		int i = -1;
		size_t len = 0;
		const float *y;

		if (out[k].name) {
			i = onnx_graph_output_index(g, out[k].name);
		} else {
			for (int j = 0; j < g->n_outputs && i < 0; j++)
				if (!named_by_other(out, n_out, g->tensors[g->outputs[j]].name))
					i = j;
		}
		y = i < 0 ? NULL : output(module, i, &len);
		if (!y) {
			*err = g_strdup_printf("the module has no output '%s'",
					       out[k].name ? out[k].name : "(unnamed)");
			return -ENOENT;
		}
		out[k].len = len;
		if (len > out[k].cap) {
			*err = g_strdup_printf("output of %zu values, room for %zu", len, out[k].cap);
			return -EOVERFLOW;
		}
		memcpy(out[k].data, y, len * sizeof(float));
	}
	return 0;
}

static const float *ref_output(const void *module, int i, size_t *len)
{
	return ref_module_output(module, i, len);
}

/* struct infer_backend's run: the requested outputs of one forward. */
static int reference_run(void *module, const float *in, const int *shape, int ndim,
			 struct infer_tensor *out, int n_out, char **err)
{
	int rc = ref_module_forward(module, in, shape, ndim, err);

	if (rc < 0)
		return rc;
	return engine_copy_outputs(ref_module_graph(module), ref_output, module, out, n_out, err);
}

static void reference_free(void *module)
{
	ref_module_free(module);
}

const struct infer_backend infer_backend_reference = {
	.name = "reference",
	.precisions = 1u << INFER_FP32 | 1u << INFER_FP16 | 1u << INFER_BF16 | 1u << INFER_INT8,
	.load = reference_load,
	.load_at = reference_load_at,
	.run = reference_run,
	.free = reference_free,
};
