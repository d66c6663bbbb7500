/* The onednn backend: the ONNX graph (onnx-graph.c) on the CPU through
 * oneDNN 2.6's C API (Debian's libdnnl-dev), the library under PyTorch's
 * and OpenVINO's CPU paths (docs/inference-engine.md).
 *
 * The gain over OpenCV DNN is in the graph, not in any one call: every
 * Conv asks for format `any`, so oneDNN picks its blocked layouts, and the
 * tensors stay in them from layer to layer; reorders run only at the
 * graph's input and outputs and where an op needs a plain layout
 * (Flatten, Gemm). Bias and a following Relu are fused into the Conv or
 * Gemm (post-op). Primitives, their memories and the weights in the
 * chosen layouts are made once per input shape and kept (PLAN_CACHE
 * shapes, so a line alternating batch sizes builds nothing per run); a
 * run is then one stream of primitive executions.
 *
 * Precision ([model] precision):
 * - fp32: everything float32.
 * - bf16: activations and Conv / Gemm weights in bfloat16, sums and biases
 *   in float32 (oneDNN's bf16 primitives); needs AVX512_BF16 and is
 *   refused on a CPU without it.
 * - int8: every Conv and Gemm the calibration (infer-calib.c) keeps in
 *   int8 runs on int8 inputs and weights with int32 sums, as the
 *   reference executor does: input clipped to its range and quantized per
 *   tensor (round to nearest even), weights per output channel, output
 *   scales per channel, bias and Relu fused; the rest in float32.
 *   Between two int8 Convs the activations stay int8: the first writes
 *   the second's quantized input itself (qnode s8_scale), with no float32
 *   tensor and no reorder between them. Not through a MaxPool: oneDNN
 *   2.6's int8 pooling on the Conv's int8 layout took longer than float32
 *   pooling and the reorder together (docs/performance.md).
 *
 * Threads: oneDNN from Debian runs on OpenMP (libgomp); [model] threads
 * sets how many threads a run uses (onednn_set_threads, on the running
 * thread: OpenMP keeps the count per thread); 0 leaves OpenMP's own
 * default (OMP_NUM_THREADS, else one per core). A module is
 * not safe to run from two threads at once (one stream, one set of
 * buffers), as inference.h says of a model. */
#include <errno.h>
#include <glib.h>
#include <omp.h>
#include <oneapi/dnnl/dnnl.h>
#include <oneapi/dnnl/dnnl_debug.h>
#include <stdio.h>
#include <string.h>

#include "inference/infer-engine.h"
#include "inference/inference.h"
#include "inference/onnx-graph.h"

/* Input shapes whose primitives a module keeps. */
#define PLAN_CACHE 4

#define MAX_ARGS 8

/* One primitive execution of the forward. */
struct step {
	dnnl_primitive_t prim;
	int nargs;
	dnnl_exec_arg_t args[MAX_ARGS];
	const char *node;          /* the ONNX node it is (part) of, "" for the input's */
	double us;                 /* VIGIL_ONEDNN_PROFILE: time spent since the last report */
};

/* Everything one input shape needs, made once. */
struct plan {
	int ndim, shape[ONNX_MAX_DIMS];
	unsigned long used;        /* for replacing the least recently used */
	dnnl_memory_t *mem;        /* per tensor: where the forward leaves it (NULL for
				    * initializers); some are views or aliases of others */
	dnnl_memory_t in_user;     /* the caller's float32 input, handle set per run */
	float **out;               /* per graph output: its float32 values, plain */
	size_t *out_len;
	GPtrArray *owned_mem;      /* dnnl_memory_t made for this plan */
	GArray *steps;             /* struct step, in order */
	GPtrArray *owned_prim;     /* dnnl_primitive_t to destroy */
};

/* Conv / Gemm in int8 (from the calibration). */
struct qnode {
	float inv_scale;           /* 127 / input range */
	float range;
	float *out_scale;          /* per output channel: input scale * weight scale (Gemm: * alpha) */
	float *bias;               /* per output channel, divided by out_scale: oneDNN 2.x adds the
				    * bias to the int32 sums before the output scales */
	int8_t *w;                 /* rows of k weights, one per output channel */
	/* A Conv whose Relu'd output feeds only another int8 Conv writes it
	 * as that Conv's int8 input at once:
	 * per output channel out_scale * the reader's 127 / range, the
	 * int8 saturation at 127 being the reader's clip (the Relu leaves
	 * nothing below 0). NULL: the output is float32. */
	float *s8_scale;
};

typedef struct onednn_module {
	onnx_graph *g;
	enum infer_precision prec;
	dnnl_data_type_t act;      /* activations: f32, or bf16 */
	dnnl_engine_t engine;
	dnnl_stream_t stream;
	struct qnode **q;          /* per node, int8 only */
	float **gemm_w;            /* per node: a Gemm's B times alpha, as K x N */
	float **gemm_b;            /* per node: a Gemm's beta * C as a row of N */
	int *fuse_relu;            /* per node: a Conv / Gemm whose next node, a Relu, is folded */
	int *folded;               /* per node: a Relu folded into its producer */
	struct plan *plans[PLAN_CACHE];
	struct plan *cur;
	unsigned long clock;
	/* VIGIL_ONEDNN_PROFILE=N (a developer's tool, docs/performance.md):
	 * every N runs of a shape, each step's mean time to stderr; 0: off. */
	unsigned long profile_every, runs;
} onednn_module;

static int dnnl_fail(dnnl_status_t s, const onnx_graph *g, const struct onnx_node *n,
		     const char *what, char **err)
{
	if (s == dnnl_success)
		return 0;
	if (n)
		*err = g_strdup_printf("onednn: %s: node '%s' (%s): %s: %s", g->path, n->name,
				       onnx_op_name(n->op), what, dnnl_status2str(s));
	else
		*err = g_strdup_printf("onednn: %s: %s: %s", g->path, what, dnnl_status2str(s));
	return -EIO;
}

static void plan_free(struct plan *p)
{
	if (!p)
		return;
	if (p->owned_prim)
		for (guint i = 0; i < p->owned_prim->len; i++)
			dnnl_primitive_destroy(p->owned_prim->pdata[i]);
	if (p->owned_mem)
		for (guint i = 0; i < p->owned_mem->len; i++)
			dnnl_memory_destroy(p->owned_mem->pdata[i]);
	if (p->owned_prim)
		g_ptr_array_free(p->owned_prim, TRUE);
	if (p->owned_mem)
		g_ptr_array_free(p->owned_mem, TRUE);
	if (p->steps)
		g_array_free(p->steps, TRUE);
	if (p->in_user)
		dnnl_memory_destroy(p->in_user);
	g_free(p->mem);
	g_free(p->out_len);
	g_free(p->out);
	g_free(p);
}

static void module_free(void *module)
{
	onednn_module *m = module;

	if (!m)
		return;
	for (int i = 0; i < PLAN_CACHE; i++)
		plan_free(m->plans[i]);
	for (int i = 0; m->g && i < m->g->n_nodes; i++) {
		if (m->q && m->q[i]) {
			g_free(m->q[i]->out_scale);
			g_free(m->q[i]->s8_scale);
			g_free(m->q[i]->bias);
			g_free(m->q[i]->w);
			g_free(m->q[i]);
		}
		if (m->gemm_w)
			g_free(m->gemm_w[i]);
		if (m->gemm_b)
			g_free(m->gemm_b[i]);
	}
	g_free(m->q);
	g_free(m->gemm_w);
	g_free(m->gemm_b);
	g_free(m->fuse_relu);
	g_free(m->folded);
	if (m->stream)
		dnnl_stream_destroy(m->stream);
	if (m->engine)
		dnnl_engine_destroy(m->engine);
	onnx_graph_free(m->g);
	g_free(m);
}

static dnnl_format_tag_t plain_tag(int ndim)
{
	static const dnnl_format_tag_t tags[] = { dnnl_format_tag_undef, dnnl_a, dnnl_ab, dnnl_abc,
						  dnnl_abcd, dnnl_abcde, dnnl_abcdef };

	return ndim >= 1 && ndim <= 6 ? tags[ndim] : dnnl_format_tag_undef;
}

static void dims_of(const struct onnx_tensor *t, dnnl_dims_t d)
{
	for (int i = 0; i < t->ndim; i++)
		d[i] = t->dims[i];
}

static int md_plain(dnnl_memory_desc_t *md, const struct onnx_tensor *t, dnnl_data_type_t dt)
{
	dnnl_dims_t d;

	dims_of(t, d);
	return dnnl_memory_desc_init_by_tag(md, t->ndim, d, dt, plain_tag(t->ndim));
}

static const dnnl_memory_desc_t *md_of(dnnl_memory_t mem)
{
	const dnnl_memory_desc_t *md = NULL;

	dnnl_memory_get_memory_desc(mem, &md);
	return md;
}

static int new_mem(onednn_module *m, struct plan *p, const dnnl_memory_desc_t *md, void *handle,
		   dnnl_memory_t *out, const struct onnx_node *n, char **err)
{
	int rc = dnnl_fail(dnnl_memory_create(out, md, m->engine, handle), m->g, n, "memory", err);

	if (rc == 0)
		g_ptr_array_add(p->owned_mem, *out);
	return rc;
}

/* A primitive from pd (which it consumes) appended as a step with args. */
static int add_step(onednn_module *m, struct plan *p, dnnl_primitive_desc_t pd,
		    const dnnl_exec_arg_t *args, int nargs, const struct onnx_node *n, char **err)
{
	struct step s = { .nargs = nargs, .node = n ? n->name : "" };
	int rc = dnnl_fail(dnnl_primitive_create(&s.prim, pd), m->g, n, "primitive", err);

	dnnl_primitive_desc_destroy(pd);
	if (rc < 0)
		return rc;
	g_ptr_array_add(p->owned_prim, s.prim);
	memcpy(s.args, args, sizeof(*args) * (size_t)nargs);
	g_array_append_val(p->steps, s);
	return 0;
}

/* A reorder from src into a new memory of md (scale: a quantization
 * factor, 0 for none); now (at plan time, for weights) or as a step. */
static int reorder(onednn_module *m, struct plan *p, dnnl_memory_t src, const dnnl_memory_desc_t *md,
		   float scale, int now, dnnl_memory_t *dst, const struct onnx_node *n, char **err)
{
	dnnl_primitive_desc_t pd = NULL;
	dnnl_primitive_attr_t attr = NULL;
	dnnl_exec_arg_t args[2];
	int rc;

	if ((rc = new_mem(m, p, md, DNNL_MEMORY_ALLOCATE, dst, n, err)) < 0)
		return rc;
	if ((rc = dnnl_fail(dnnl_primitive_attr_create(&attr), m->g, n, "attr", err)) < 0)
		return rc;
	if (scale != 0)
		rc = dnnl_fail(dnnl_primitive_attr_set_output_scales(attr, 1, 0, &scale), m->g, n,
			       "reorder scale", err);
	if (rc == 0)
		rc = dnnl_fail(dnnl_reorder_primitive_desc_create(&pd, md_of(src), m->engine, md,
								  m->engine, attr), m->g, n, "reorder",
			       err);
	dnnl_primitive_attr_destroy(attr);
	if (rc < 0)
		return rc;
	args[0] = (dnnl_exec_arg_t){ DNNL_ARG_FROM, src };
	args[1] = (dnnl_exec_arg_t){ DNNL_ARG_TO, *dst };
	if (now) {
		dnnl_primitive_t prim = NULL;

		rc = dnnl_fail(dnnl_primitive_create(&prim, pd), m->g, n, "reorder", err);
		dnnl_primitive_desc_destroy(pd);
		if (rc == 0)
			rc = dnnl_fail(dnnl_primitive_execute(prim, m->stream, 2, args), m->g, n,
				       "reorder", err);
		if (rc == 0)
			rc = dnnl_fail(dnnl_stream_wait(m->stream), m->g, n, "reorder", err);
		if (prim)
			dnnl_primitive_destroy(prim);
		return rc;
	}
	return add_step(m, p, pd, args, 2, n, err);
}

/* Tensor t in layout md: its memory when it already is, else a reorder. */
static int as_md(onednn_module *m, struct plan *p, int t, const dnnl_memory_desc_t *md,
		 dnnl_memory_t *out, const struct onnx_node *n, char **err)
{
	if (dnnl_memory_desc_equal(md_of(p->mem[t]), md)) {
		*out = p->mem[t];
		return 0;
	}
	return reorder(m, p, p->mem[t], md, 0, 0, out, n, err);
}

/* A user memory over host data (float32, plain, the tensor's dims or
 * dims given), reordered now into md. */
static int weights_into(onednn_module *m, struct plan *p, const dnnl_memory_desc_t *user,
			const void *data, const dnnl_memory_desc_t *md, dnnl_memory_t *out,
			const struct onnx_node *n, char **err)
{
	dnnl_memory_t src;
	int rc = new_mem(m, p, user, (void *)data, &src, n, err);

	if (rc < 0)
		return rc;
	if (dnnl_memory_desc_equal(user, md)) {
		*out = src;
		return 0;
	}
	return reorder(m, p, src, md, 0, 1, out, n, err);
}

/* Whether tensor t can only hold values >= 0 (a Relu's, a Sigmoid's, or
 * pooled, flattened or concatenated from those): its int8 quantization
 * cannot meet the negative end of the range. */
static int nonnegative(const onednn_module *m, int t)
{
	const onnx_graph *g = m->g;
	int pr = g->tensors[t].producer;
	const struct onnx_node *n;

	if (pr < 0)
		return 0;
	n = &g->nodes[pr];
	switch (n->op) {
	case ONNX_OP_RELU:
	case ONNX_OP_SIGMOID:
		return 1;
	case ONNX_OP_MAXPOOL:
	case ONNX_OP_GLOBALAVGPOOL:
	case ONNX_OP_FLATTEN:
		return nonnegative(m, n->in[0]);
	case ONNX_OP_CONCAT:
		for (int i = 0; i < n->n_in; i++)
			if (!nonnegative(m, n->in[i]))
				return 0;
		return 1;
	default:
		return 0;
	}
}

/* The int8 input of node n (tensor t) in md: clipped to the calibrated
 * range (the reference clips to +-127 steps; a saturating reorder would
 * give -128), then quantized with round to nearest even. */
static int quantized_input(onednn_module *m, struct plan *p, const struct onnx_node *n,
			   const struct qnode *q, const dnnl_memory_desc_t *md, dnnl_memory_t *out,
			   char **err)
{
	dnnl_memory_t x = p->mem[n->in[0]];
	int rc;

	/* Quantized by its producer (s8_scale): at most a change of layout. */
	if (md_of(x)->data_type == dnnl_s8)
		return as_md(m, p, n->in[0], md, out, n, err);
	if (!nonnegative(m, n->in[0])) {
		dnnl_eltwise_desc_t ed;
		dnnl_primitive_desc_t pd = NULL;
		dnnl_memory_t clipped;
		dnnl_exec_arg_t args[2];

		if ((rc = dnnl_fail(dnnl_eltwise_forward_desc_init(&ed, dnnl_forward_inference,
								   dnnl_eltwise_clip, md_of(x),
								   -q->range, q->range), m->g, n,
				    "clip", err)) < 0 ||
		    (rc = dnnl_fail(dnnl_primitive_desc_create(&pd, &ed, NULL, m->engine, NULL), m->g,
				    n, "clip", err)) < 0 ||
		    (rc = new_mem(m, p, md_of(x), DNNL_MEMORY_ALLOCATE, &clipped, n, err)) < 0)
			return rc;
		args[0] = (dnnl_exec_arg_t){ DNNL_ARG_SRC, x };
		args[1] = (dnnl_exec_arg_t){ DNNL_ARG_DST, clipped };
		if ((rc = add_step(m, p, pd, args, 2, n, err)) < 0)
			return rc;
		x = clipped;
	}
	return reorder(m, p, x, md, q->inv_scale, 0, out, n, err);
}

/* attr for a Conv / Gemm: the folded Relu, and int8's output scales. */
static int node_attr(onednn_module *m, int i, dnnl_primitive_attr_t *attr, char **err)
{
	const struct onnx_node *n = &m->g->nodes[i];
	int rc = dnnl_fail(dnnl_primitive_attr_create(attr), m->g, n, "attr", err);

	if (rc < 0)
		return rc;
	if (m->fuse_relu[i]) {
		dnnl_post_ops_t po = NULL;

		if ((rc = dnnl_fail(dnnl_post_ops_create(&po), m->g, n, "post-ops", err)) < 0)
			return rc;
		rc = dnnl_fail(dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_relu, 0, 0), m->g,
			       n, "post-ops", err);
		if (rc == 0)
			rc = dnnl_fail(dnnl_primitive_attr_set_post_ops(*attr, po), m->g, n, "post-ops",
				       err);
		dnnl_post_ops_destroy(po);
		if (rc < 0)
			return rc;
	}
	if (m->q && m->q[i]) {
		const struct onnx_tensor *y = &m->g->tensors[n->out[0]];

		rc = dnnl_fail(dnnl_primitive_attr_set_output_scales(*attr, y->dims[1], 1 << 1,
								     m->q[i]->s8_scale ? m->q[i]->s8_scale
								     : m->q[i]->out_scale),
			       m->g, n, "output scales", err);
	}
	return rc;
}

/* The output memory of node i (dst of md), aliased by a folded Relu. */
static int set_output(onednn_module *m, struct plan *p, int i, const dnnl_memory_desc_t *md,
		      char **err)
{
	const struct onnx_node *n = &m->g->nodes[i];
	int rc = new_mem(m, p, md, DNNL_MEMORY_ALLOCATE, &p->mem[n->out[0]], n, err);

	if (rc == 0 && m->fuse_relu[i])
		p->mem[m->g->nodes[i + 1].out[0]] = p->mem[n->out[0]];
	return rc;
}

static int plan_conv(onednn_module *m, struct plan *p, int i, char **err)
{
	const onnx_graph *g = m->g;
	const struct onnx_node *n = &g->nodes[i];
	const struct onnx_tensor *xt = &g->tensors[n->in[0]], *yt = &g->tensors[n->out[0]];
	const struct onnx_tensor *wt = &g->tensors[n->in[1]];
	const struct qnode *q = m->q ? m->q[i] : NULL;
	int has_b = n->n_in > 2 && n->in[2] >= 0, grp = n->a.group, rc;
	dnnl_data_type_t xdt = q ? dnnl_s8 : m->act;
	dnnl_data_type_t ydt = q ? (q->s8_scale ? dnnl_s8 : dnnl_f32) : m->act;
	dnnl_memory_desc_t xmd, wmd, bmd, ymd, wuser, buser;
	dnnl_dims_t xd, yd, wd, bd = { yt->dims[1] }, strides = { n->a.strides[0], n->a.strides[1] };
	/* oneDNN counts dilation from 0 (none), ONNX from 1 */
	dnnl_dims_t dil = { n->a.dilations[0] - 1, n->a.dilations[1] - 1 };
	dnnl_dims_t pl = { n->a.pads[0], n->a.pads[1] }, pr = { n->a.pads[2], n->a.pads[3] };
	dnnl_convolution_desc_t cd;
	dnnl_primitive_attr_t attr = NULL;
	dnnl_primitive_desc_t pd = NULL;
	dnnl_memory_t x, w, b = NULL;
	dnnl_exec_arg_t args[4];
	int wnd;

	dims_of(xt, xd);
	dims_of(yt, yd);
	if (grp > 1) {
		wd[0] = grp;
		wd[1] = wt->dims[0] / grp;
		wd[2] = wt->dims[1];
		wd[3] = wt->dims[2];
		wd[4] = wt->dims[3];
		wnd = 5;
	} else {
		dims_of(wt, wd);
		wnd = 4;
	}
	if ((rc = dnnl_fail(dnnl_memory_desc_init_by_tag(&xmd, 4, xd, xdt, dnnl_format_tag_any), g, n,
			    "src", err)) < 0 ||
	    (rc = dnnl_fail(dnnl_memory_desc_init_by_tag(&ymd, 4, yd, ydt, dnnl_format_tag_any), g, n,
			    "dst", err)) < 0 ||
	    (rc = dnnl_fail(dnnl_memory_desc_init_by_tag(&wmd, wnd, wd, q ? dnnl_s8 : m->act,
							 dnnl_format_tag_any), g, n, "weights",
			    err)) < 0 ||
	    (rc = dnnl_fail(dnnl_memory_desc_init_by_tag(&wuser, wnd, wd, q ? dnnl_s8 : dnnl_f32,
							 plain_tag(wnd)), g, n, "weights", err)) < 0 ||
	    (rc = dnnl_fail(dnnl_memory_desc_init_by_tag(&bmd, 1, bd, dnnl_f32, dnnl_a), g, n, "bias",
			    err)) < 0)
		return rc;
	buser = bmd;
	if ((rc = dnnl_fail(dnnl_dilated_convolution_forward_desc_init(
			    &cd, dnnl_forward_inference, dnnl_convolution_direct, &xmd, &wmd,
			    has_b || q ? &bmd : NULL, &ymd, strides, dil, pl, pr), g, n,
			    "convolution", err)) < 0 ||
	    (rc = node_attr(m, i, &attr, err)) < 0)
		goto out;
	if ((rc = dnnl_fail(dnnl_primitive_desc_create(&pd, &cd, attr, m->engine, NULL), g, n,
			    "convolution", err)) < 0)
		goto out;
	if ((rc = weights_into(m, p, &wuser, q ? (void *)q->w : (void *)wt->data,
			       dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0), &w, n,
			       err)) < 0 ||
	    (q && (rc = new_mem(m, p, &buser, q->bias, &b, n, err)) < 0) ||
	    (!q && has_b && (rc = new_mem(m, p, &buser, g->tensors[n->in[2]].data, &b, n, err)) < 0))
		goto out;
	if (q)
		rc = quantized_input(m, p, n, q, dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0),
				     &x, err);
	else
		rc = as_md(m, p, n->in[0], dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0), &x,
			   n, err);
	if (rc < 0 ||
	    (rc = set_output(m, p, i, dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0), err)) < 0)
		goto out;
	args[0] = (dnnl_exec_arg_t){ DNNL_ARG_SRC, x };
	args[1] = (dnnl_exec_arg_t){ DNNL_ARG_WEIGHTS, w };
	args[2] = (dnnl_exec_arg_t){ DNNL_ARG_DST, p->mem[n->out[0]] };
	args[3] = (dnnl_exec_arg_t){ DNNL_ARG_BIAS, b };
	rc = add_step(m, p, pd, args, b ? 4 : 3, n, err);
	pd = NULL;
out:
	if (pd)
		dnnl_primitive_desc_destroy(pd);
	if (attr)
		dnnl_primitive_attr_destroy(attr);
	return rc;
}

/* Gemm as a matmul: A (M x K, plain), B times alpha as K x N, beta * C as
 * a bias row. */
static int plan_gemm(onednn_module *m, struct plan *p, int i, char **err)
{
	const onnx_graph *g = m->g;
	const struct onnx_node *n = &g->nodes[i];
	const struct onnx_tensor *xt = &g->tensors[n->in[0]], *yt = &g->tensors[n->out[0]];
	const struct qnode *q = m->q ? m->q[i] : NULL;
	int mm = yt->dims[0], nn = yt->dims[1], kk = xt->dims[1], rc;
	dnnl_dims_t xd = { mm, kk }, wd = { kk, nn }, bd = { 1, nn }, yd = { mm, nn };
	/* int8 weights are rows of k per output (infer_quant_weights): N x K */
	dnnl_dims_t wstr = { q ? 1 : nn, q ? kk : 1 };
	dnnl_memory_desc_t xmd, wmd, wuser, bmd, ymd;
	dnnl_matmul_desc_t md;
	dnnl_primitive_attr_t attr = NULL;
	dnnl_primitive_desc_t pd = NULL;
	dnnl_memory_t x, w, b = NULL;
	dnnl_exec_arg_t args[4];

	if ((rc = dnnl_fail(dnnl_memory_desc_init_by_tag(&xmd, 2, xd, q ? dnnl_s8 : m->act, dnnl_ab),
			    g, n, "src", err)) < 0 ||
	    (rc = dnnl_fail(dnnl_memory_desc_init_by_tag(&wmd, 2, wd, q ? dnnl_s8 : m->act,
							 dnnl_format_tag_any), g, n, "weights",
			    err)) < 0 ||
	    (rc = dnnl_fail(dnnl_memory_desc_init_by_strides(&wuser, 2, wd, q ? dnnl_s8 : dnnl_f32,
							     wstr), g, n, "weights", err)) < 0 ||
	    (rc = dnnl_fail(dnnl_memory_desc_init_by_tag(&bmd, 2, bd, dnnl_f32, dnnl_ab), g, n, "bias",
			    err)) < 0 ||
	    (rc = dnnl_fail(dnnl_memory_desc_init_by_tag(&ymd, 2, yd, q ? dnnl_f32 : m->act, dnnl_ab),
			    g, n, "dst", err)) < 0 ||
	    (rc = dnnl_fail(dnnl_matmul_desc_init(&md, &xmd, &wmd, &bmd, &ymd), g, n, "matmul",
			    err)) < 0 ||
	    (rc = node_attr(m, i, &attr, err)) < 0)
		goto out;
	if ((rc = dnnl_fail(dnnl_primitive_desc_create(&pd, &md, attr, m->engine, NULL), g, n,
			    "matmul", err)) < 0)
		goto out;
	if ((rc = weights_into(m, p, &wuser, q ? (void *)q->w : (void *)m->gemm_w[i],
			       dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0), &w, n,
			       err)) < 0 ||
	    (rc = new_mem(m, p, &bmd, q ? q->bias : m->gemm_b[i], &b, n, err)) < 0)
		goto out;
	if (q)
		rc = quantized_input(m, p, n, q, &xmd, &x, err);
	else
		rc = as_md(m, p, n->in[0], &xmd, &x, n, err);
	if (rc < 0 || (rc = set_output(m, p, i, &ymd, err)) < 0)
		goto out;
	args[0] = (dnnl_exec_arg_t){ DNNL_ARG_SRC, x };
	args[1] = (dnnl_exec_arg_t){ DNNL_ARG_WEIGHTS, w };
	args[2] = (dnnl_exec_arg_t){ DNNL_ARG_DST, p->mem[n->out[0]] };
	args[3] = (dnnl_exec_arg_t){ DNNL_ARG_BIAS, b };
	rc = add_step(m, p, pd, args, 4, n, err);
	pd = NULL;
out:
	if (pd)
		dnnl_primitive_desc_destroy(pd);
	if (attr)
		dnnl_primitive_attr_destroy(attr);
	return rc;
}

/* A primitive with one source in the tensor's own layout and its dst
 * where oneDNN puts it (op_desc already set up on that source). */
static int plan_simple(onednn_module *m, struct plan *p, int i, const void *op_desc, char **err)
{
	const struct onnx_node *n = &m->g->nodes[i];
	dnnl_primitive_desc_t pd = NULL;
	dnnl_exec_arg_t args[2];
	int rc = dnnl_fail(dnnl_primitive_desc_create(&pd, op_desc, NULL, m->engine, NULL), m->g, n,
			   "primitive", err);

	if (rc < 0)
		return rc;
	if ((rc = new_mem(m, p, dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0),
			  DNNL_MEMORY_ALLOCATE, &p->mem[n->out[0]], n, err)) < 0) {
		dnnl_primitive_desc_destroy(pd);
		return rc;
	}
	args[0] = (dnnl_exec_arg_t){ DNNL_ARG_SRC, p->mem[n->in[0]] };
	args[1] = (dnnl_exec_arg_t){ DNNL_ARG_DST, p->mem[n->out[0]] };
	return add_step(m, p, pd, args, 2, n, err);
}

static int plan_node(onednn_module *m, struct plan *p, int i, char **err)
{
	const onnx_graph *g = m->g;
	const struct onnx_node *n = &g->nodes[i];
	const struct onnx_tensor *xt = &g->tensors[n->in[0]], *yt = &g->tensors[n->out[0]];
	const dnnl_memory_desc_t *xmd = md_of(p->mem[n->in[0]]);
	dnnl_data_type_t dt = xmd->data_type;
	int rc;

	if (m->folded[i])
		return 0;
	switch (n->op) {
	case ONNX_OP_CONV:
		return plan_conv(m, p, i, err);
	case ONNX_OP_GEMM:
		return plan_gemm(m, p, i, err);
	case ONNX_OP_MAXPOOL:
	case ONNX_OP_GLOBALAVGPOOL: {
		int gap = n->op == ONNX_OP_GLOBALAVGPOOL;
		dnnl_dims_t yd, kernel = { gap ? xt->dims[2] : n->a.kernel[0],
					  gap ? xt->dims[3] : n->a.kernel[1] };
		dnnl_dims_t strides = { gap ? 1 : n->a.strides[0], gap ? 1 : n->a.strides[1] };
		dnnl_dims_t dil = { 0, 0 }, pl = { 0, 0 }, pr = { 0, 0 };
		dnnl_memory_desc_t ymd;
		dnnl_pooling_v2_desc_t pdsc;

		if (!gap) {
			pl[0] = n->a.pads[0];
			pl[1] = n->a.pads[1];
			pr[0] = n->a.pads[2];
			pr[1] = n->a.pads[3];
		}
		dims_of(yt, yd);
		/* MaxPool: padding never wins, as ONNX's -inf padding */
		if ((rc = dnnl_fail(dnnl_memory_desc_init_by_tag(&ymd, 4, yd, dt, dnnl_format_tag_any),
				    g, n, "dst", err)) < 0 ||
		    (rc = dnnl_fail(dnnl_pooling_v2_forward_desc_init(
				    &pdsc, dnnl_forward_inference,
				    gap ? dnnl_pooling_avg_exclude_padding : dnnl_pooling_max, xmd,
				    &ymd, strides, kernel, dil, pl, pr), g, n, "pooling", err)) < 0)
			return rc;
		return plan_simple(m, p, i, &pdsc, err);
	}
	case ONNX_OP_RELU:
	case ONNX_OP_SIGMOID: {
		dnnl_eltwise_desc_t ed;

		if ((rc = dnnl_fail(dnnl_eltwise_forward_desc_init(
				    &ed, dnnl_forward_inference,
				    n->op == ONNX_OP_RELU ? dnnl_eltwise_relu : dnnl_eltwise_logistic,
				    xmd, 0, 0), g, n, "eltwise", err)) < 0)
			return rc;
		return plan_simple(m, p, i, &ed, err);
	}
	case ONNX_OP_CONCAT: {
		dnnl_memory_desc_t *src = g_new(dnnl_memory_desc_t, n->n_in);
		dnnl_exec_arg_t args[MAX_ARGS];
		dnnl_primitive_desc_t pd = NULL;

		if (n->n_in + 1 > MAX_ARGS) {
			g_free(src);
			*err = g_strdup_printf("onednn: %s: node '%s' (Concat): %d inputs, at most %d",
					       g->path, n->name, n->n_in, MAX_ARGS - 1);
			return -EINVAL;
		}
		for (int k = 0; k < n->n_in; k++) {
			src[k] = *md_of(p->mem[n->in[k]]);
			args[k] = (dnnl_exec_arg_t){ DNNL_ARG_MULTIPLE_SRC + k, p->mem[n->in[k]] };
		}
		rc = dnnl_fail(dnnl_concat_primitive_desc_create(&pd, NULL, n->n_in, n->a.axis, src,
								 NULL, m->engine), g, n, "concat", err);
		g_free(src);
		if (rc < 0 ||
		    (rc = new_mem(m, p, dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0),
				  DNNL_MEMORY_ALLOCATE, &p->mem[n->out[0]], n, err)) < 0) {
			if (pd)
				dnnl_primitive_desc_destroy(pd);
			return rc;
		}
		args[n->n_in] = (dnnl_exec_arg_t){ DNNL_ARG_DST, p->mem[n->out[0]] };
		return add_step(m, p, pd, args, n->n_in + 1, n, err);
	}
	case ONNX_OP_FLATTEN: {
		/* a view of the input in plain layout */
		dnnl_memory_desc_t plain, ymd;
		dnnl_memory_t x;
		void *h = NULL;

		if ((rc = dnnl_fail(md_plain(&plain, xt, dt), g, n, "flatten", err)) < 0 ||
		    (rc = dnnl_fail(md_plain(&ymd, yt, dt), g, n, "flatten", err)) < 0 ||
		    (rc = as_md(m, p, n->in[0], &plain, &x, n, err)) < 0)
			return rc;
		dnnl_memory_get_data_handle(x, &h);
		return new_mem(m, p, &ymd, h, &p->mem[n->out[0]], n, err);
	}
	case ONNX_OP_COUNT:
		break;
	}
	return 0;
}

static struct plan *plan_new(onednn_module *m, const int *shape, int ndim, char **err)
{
	onnx_graph *g = m->g;
	struct plan *p = g_new0(struct plan, 1);
	dnnl_memory_desc_t md;
	int rc;

	p->owned_mem = g_ptr_array_new();
	p->owned_prim = g_ptr_array_new();
	p->steps = g_array_new(FALSE, FALSE, sizeof(struct step));
	p->mem = g_new0(dnnl_memory_t, g->n_tensors);
	p->out = g_new0(float *, g->n_outputs);
	p->out_len = g_new0(size_t, g->n_outputs);
	if ((rc = onnx_graph_infer_shapes(g, shape, ndim, err)) < 0)
		goto fail;
	if ((rc = dnnl_fail(md_plain(&md, &g->tensors[g->input], dnnl_f32), g, NULL, "input", err)) < 0 ||
	    (rc = dnnl_fail(dnnl_memory_create(&p->in_user, &md, m->engine, DNNL_MEMORY_NONE), g,
			    NULL, "input", err)) < 0)
		goto fail;
	p->mem[g->input] = p->in_user;
	if (m->act != dnnl_f32) {
		dnnl_memory_t conv;

		if ((rc = dnnl_fail(md_plain(&md, &g->tensors[g->input], m->act), g, NULL, "input",
				    err)) < 0 ||
		    (rc = reorder(m, p, p->in_user, &md, 0, 0, &conv, NULL, err)) < 0)
			goto fail;
		p->mem[g->input] = conv;
	}
	for (int i = 0; i < g->n_nodes; i++)
		if ((rc = plan_node(m, p, i, err)) < 0)
			goto fail;
	for (int i = 0; i < g->n_outputs; i++) {
		const struct onnx_tensor *t = &g->tensors[g->outputs[i]];
		dnnl_memory_t user;

		p->out_len[i] = onnx_tensor_count(t);
		if ((rc = dnnl_fail(md_plain(&md, t, dnnl_f32), g, NULL, "output", err)) < 0 ||
		    (rc = reorder(m, p, p->mem[g->outputs[i]], &md, 0, 0, &user, NULL, err)) < 0)
			goto fail;
		dnnl_memory_get_data_handle(user, (void **)&p->out[i]);
	}
	p->ndim = ndim;
	memcpy(p->shape, shape, sizeof(int) * (size_t)ndim);
	return p;
fail:
	plan_free(p);
	return NULL;
}

/* The plan for this input shape: kept, or made (replacing the least
 * recently used). */
static struct plan *plan_for(onednn_module *m, const int *shape, int ndim, char **err)
{
	int slot = 0;

	for (int i = 0; i < PLAN_CACHE; i++) {
		struct plan *p = m->plans[i];

		if (p && p->ndim == ndim && memcmp(p->shape, shape, sizeof(int) * (size_t)ndim) == 0) {
			p->used = ++m->clock;
			return p;
		}
		if (!p || (m->plans[slot] && p->used < m->plans[slot]->used))
			slot = i;
	}
	if (ndim < 1 || ndim > ONNX_MAX_DIMS) {
		*err = g_strdup_printf("onednn: input of %d dimensions cannot run", ndim);
		return NULL;
	}
	plan_free(m->plans[slot]);
	m->plans[slot] = plan_new(m, shape, ndim, err);
	if (m->plans[slot])
		m->plans[slot]->used = ++m->clock;
	return m->plans[slot];
}

/* Each step of p, its primitive's kind and implementation, and its mean
 * time over the last profile_every runs, to stderr; then starts over. */
static void profile_report(onednn_module *m, struct plan *p)
{
	double total = 0;

	for (guint i = 0; i < p->steps->len; i++)
		total += g_array_index(p->steps, struct step, i).us;
	fprintf(stderr, "onednn profile: %s, input %d", m->g->path, p->shape[0]);
	for (int d = 1; d < p->ndim; d++)
		fprintf(stderr, "x%d", p->shape[d]);
	fprintf(stderr, ", %lu runs, %.1f us a run\n", m->profile_every, total / (double)m->profile_every);
	for (guint i = 0; i < p->steps->len; i++) {
		struct step *s = &g_array_index(p->steps, struct step, i);
		const_dnnl_primitive_desc_t pd = NULL;
		dnnl_primitive_kind_t kind = dnnl_undefined_primitive;
		const char *impl = "?";

		dnnl_primitive_get_primitive_desc(s->prim, &pd);
		dnnl_primitive_desc_query(pd, dnnl_query_primitive_kind, 0, &kind);
		dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
		fprintf(stderr, "onednn profile: %3u %-12s %-30s %8.1f us  %s\n", i,
			dnnl_prim_kind2str(kind), impl, s->us / (double)m->profile_every, s->node);
		s->us = 0;
	}
}

static int onednn_forward(onednn_module *m, const float *in, const int *shape, int ndim, char **err)
{
	struct plan *p = plan_for(m, shape, ndim, err);
	int rc;

	m->cur = NULL;
	if (!p)
		return -EINVAL;
	/* read only: the first step reorders out of it */
	if ((rc = dnnl_fail(dnnl_memory_set_data_handle(p->in_user, (void *)in), m->g, NULL, "input",
			    err)) < 0)
		return rc;
	for (guint i = 0; i < p->steps->len; i++) {
		struct step *s = &g_array_index(p->steps, struct step, i);
		gint64 t0 = m->profile_every ? g_get_monotonic_time() : 0;

		if ((rc = dnnl_fail(dnnl_primitive_execute(s->prim, m->stream, s->nargs, s->args), m->g,
				    NULL, "execute", err)) < 0)
			return rc;
		/* The CPU engine runs a primitive before execute returns. */
		if (m->profile_every)
			s->us += (double)(g_get_monotonic_time() - t0);
	}
	if ((rc = dnnl_fail(dnnl_stream_wait(m->stream), m->g, NULL, "execute", err)) < 0)
		return rc;
	m->cur = p;
	if (m->profile_every && ++m->runs % m->profile_every == 0)
		profile_report(m, p);
	return 0;
}

static const float *onednn_output(const void *module, int i, size_t *len)
{
	const onednn_module *m = module;

	if (!m->cur || i < 0 || i >= m->g->n_outputs)
		return NULL;
	*len = m->cur->out_len[i];
	return m->cur->out[i];
}

static int onednn_run(void *module, const float *in, const int *shape, int ndim,
		      struct infer_tensor *out, int n_out, char **err)
{
	onednn_module *m = module;
	int rc = onednn_forward(m, in, shape, ndim, err);

	if (rc < 0)
		return rc;
	return engine_copy_outputs(m->g, onednn_output, m, out, n_out, err);
}

/* The node that alone reads tensor t (as its first input or any other),
 * or -1: none, several, or t is a graph output. */
static int sole_reader(const onnx_graph *g, int t)
{
	int reader = -1;

	for (int k = 0; k < g->n_outputs; k++)
		if (g->outputs[k] == t)
			return -1;
	for (int k = 0; k < g->n_nodes; k++)
		for (int j = 0; j < g->nodes[k].n_in; j++)
			if (g->nodes[k].in[j] == t) {
				if (reader >= 0)
					return -1;
				reader = k;
			}
	return reader;
}

/* Keeps int8 Conv i's output in int8 (qnode s8_scale) when its Relu'd
 * output is read by nothing but an int8 Conv, as that Conv's data input. */
static void chain_int8(onednn_module *m, int i)
{
	const onnx_graph *g = m->g;
	struct qnode *q = m->q[i];
	int t, r, channels;

	if (!q || g->nodes[i].op != ONNX_OP_CONV || !m->fuse_relu[i])
		return;
	t = g->nodes[i + 1].out[0];
	r = sole_reader(g, t);
	if (r < 0 || g->nodes[r].op != ONNX_OP_CONV || !m->q[r] || g->nodes[r].in[0] != t)
		return;
	channels = g->tensors[g->nodes[i].in[1]].dims[0];
	q->s8_scale = g_new(float, channels);
	for (int c = 0; c < channels; c++)
		q->s8_scale[c] = q->out_scale[c] * m->q[r]->inv_scale;
}

/* int8 weights, scales and the bias in oneDNN 2.x's order for node i. */
static struct qnode *qnode_new(const onnx_graph *g, const struct onnx_node *n,
			       const struct infer_quant_node *qn)
{
	struct qnode *q = g_new0(struct qnode, 1);
	int channels, has_b = n->n_in > 2 && n->in[2] >= 0;
	float alpha = n->op == ONNX_OP_GEMM ? n->a.alpha : 1.0f;
	float beta = n->op == ONNX_OP_GEMM ? n->a.beta : 1.0f;
	size_t k, nc = has_b ? onnx_tensor_count(&g->tensors[n->in[2]]) : 0;

	infer_quant_dims(g, n, &channels, &k);
	q->range = qn->input_range;
	q->inv_scale = 127.0f / qn->input_range;
	q->out_scale = g_new(float, channels);
	q->bias = g_new0(float, channels);
	q->w = g_new(int8_t, (size_t)channels * k);
	infer_quant_weights(g, n, qn->weight_scale, q->w);
	for (int c = 0; c < channels; c++) {
		/* the reference's dequantization factor, then Gemm's alpha */
		float dq = qn->input_range / 127.0f * qn->weight_scale[c];

		q->out_scale[c] = alpha * dq;
		if (has_b)
			q->bias[c] = beta * g->tensors[n->in[2]].data[nc == 1 ? 0 : c] / q->out_scale[c];
	}
	return q;
}

static void *onednn_load_at(const char *onnx_path, enum infer_precision prec,
			    const struct infer_quant *quant, char **err)
{
	onednn_module *m = g_new0(onednn_module, 1);
	onnx_graph *g;
	int rc;

	if (prec == INFER_BF16) {
		dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();

		if ((isa & dnnl_cpu_isa_avx512_core_bf16) != dnnl_cpu_isa_avx512_core_bf16) {
			*err = g_strdup_printf("onednn backend: bf16 needs a CPU with AVX512_BF16, and "
					       "oneDNN finds none here (its instruction set: 0x%x; "
					       "ONEDNN_MAX_CPU_ISA may limit it); run fp32 or int8",
					       (unsigned)isa);
			g_free(m);
			return NULL;
		}
	}
	m->prec = prec;
	m->act = prec == INFER_BF16 ? dnnl_bf16 : dnnl_f32;
	m->profile_every = g_ascii_strtoull(g_getenv("VIGIL_ONEDNN_PROFILE") ?: "0", NULL, 10);
	m->g = g = onnx_graph_load(onnx_path, err);
	if (!g)
		goto fail;
	if ((rc = dnnl_fail(dnnl_engine_create(&m->engine, dnnl_cpu, 0), g, NULL, "engine", err)) < 0 ||
	    (rc = dnnl_fail(dnnl_stream_create(&m->stream, m->engine, dnnl_stream_default_flags), g,
			    NULL, "stream", err)) < 0)
		goto fail;
	m->gemm_w = g_new0(float *, g->n_nodes);
	m->gemm_b = g_new0(float *, g->n_nodes);
	m->fuse_relu = g_new0(int, g->n_nodes);
	m->folded = g_new0(int, g->n_nodes);
	if (prec == INFER_INT8)
		m->q = g_new0(struct qnode *, g->n_nodes);
	for (int i = 0; i < g->n_nodes; i++) {
		const struct onnx_node *n = &g->nodes[i];

		if (n->op == ONNX_OP_GEMM && n->a.trans_a) {
			*err = g_strdup_printf("%s: node '%s' (Gemm): transA is not supported by the "
					       "onednn backend", onnx_path, n->name);
			goto fail;
		}
		if (n->op != ONNX_OP_CONV && n->op != ONNX_OP_GEMM)
			continue;
		if (m->q) {
			const struct infer_quant_node *qn = infer_quant_node_for(quant, g, n, err);

			if (!qn)
				goto fail;
			if (!qn->keep_fp32)
				m->q[i] = qnode_new(g, n, qn);
		}
		if (n->op == ONNX_OP_GEMM) {
			const struct onnx_tensor *bt = &g->tensors[n->in[1]];
			int kk = bt->dims[n->a.trans_b ? 1 : 0], nn = bt->dims[n->a.trans_b ? 0 : 1];
			int has_c = n->n_in > 2 && n->in[2] >= 0;
			size_t nc = has_c ? onnx_tensor_count(&g->tensors[n->in[2]]) : 0;

			/* K x N row-major, alpha folded in */
			m->gemm_w[i] = g_new(float, (size_t)kk * nn);
			for (int r = 0; r < kk; r++)
				for (int c = 0; c < nn; c++)
					m->gemm_w[i][(size_t)r * nn + c] = n->a.alpha *
						bt->data[n->a.trans_b ? (size_t)c * kk + r : (size_t)r * nn + c];
			m->gemm_b[i] = g_new0(float, nn);
			for (int c = 0; has_c && c < nn; c++)
				m->gemm_b[i][c] = n->a.beta * g->tensors[n->in[2]].data[nc == 1 ? 0 : c];
		}
		/* A Relu right after whose input nothing else reads: a post-op. */
		if (i + 1 < g->n_nodes && g->nodes[i + 1].op == ONNX_OP_RELU &&
		    sole_reader(g, n->out[0]) == i + 1) {
			m->fuse_relu[i] = 1;
			m->folded[i + 1] = 1;
		}
	}
	for (int i = 0; m->q && i < g->n_nodes; i++)
		chain_int8(m, i);
	return m;
fail:
	module_free(m);
	return NULL;
}

static void *onednn_load(const char *onnx_path, char **err)
{
	return onednn_load_at(onnx_path, INFER_FP32, NULL, err);
}

static void onednn_set_threads(int n)
{
	if (omp_get_max_threads() != n)
		omp_set_num_threads(n);
}

const struct infer_backend infer_backend_onednn = {
	.name = "onednn",
	.precisions = 1u << INFER_FP32 | 1u << INFER_BF16 | 1u << INFER_INT8,
	.load = onednn_load,
	.load_at = onednn_load_at,
	.run = onednn_run,
	.free = module_free,
	.set_threads = onednn_set_threads,
};
