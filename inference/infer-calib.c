/* INT8 calibration: the file beside a model package that gives every Conv
 * and Gemm its input range and its weights' scales (docs/inference-engine.md),
 * how it is measured (the reference executor in float32 over calibration
 * parts), written and read back.
 *
 * Symmetric int8 throughout, so that zero (the padding of a convolution,
 * a Relu's floor) is exactly 0 and no zero point enters the integer sums:
 * weights q = round(w / s_w[oc]) with s_w[oc] = max |w| of output channel
 * oc / 127; inputs q = round(x / s_x) with s_x = range / 127 for one range
 * per tensor, clipped to [-127, 127]. The range is the largest |x| seen
 * on the calibration parts, or a percentile of |x| (INFER_RANGE_PERCENTILE),
 * which gives the bulk of the values a finer step at the cost of clipping
 * the rarest ones.
 *
 * A last pass runs each node in int8 on its float input and compares its
 * output with float32; where the error is over CALIB_MAX_NODE_ERROR of the
 * output's spread the file says run=fp32 and the engines keep that node in
 * float32 (a first layer fed raw values on large offsets needs it).
 *
 * Wiring runs in float32 whatever its error: a Conv or Gemm whose weights
 * are all -1, 0 or 1 picks, subtracts or adds columns (the maximum that
 * tools/fuse.py builds as Relu(a - b) + b, the column picks of joined
 * packages). It has nothing learned to quantize, costs nothing, and its
 * input joins unrelated quantities (a logit beside features of range
 * 170), so one int8 step per tensor would round the verdict's logit to a
 * step of 1.3 while its error against that wide spread looks small. */
#include <errno.h>
#include <glib.h>
#include <math.h>
#include <string.h>

#include "core/config.h"
#include "inference/infer-engine.h"
#include "inference/infer-private.h"
#include "inference/inference.h"

#define CALIB_FORMAT 1
#define HIST_BINS 4096
/* A node whose int8 output is off by more than this, RMS over its float
 * output's spread within each channel, runs in float32 (mixed precision). */
#define CALIB_MAX_NODE_ERROR 0.05

/* ---- the weights ---- */

void infer_quant_dims(const onnx_graph *g, const struct onnx_node *n, int *channels, size_t *k)
{
	const struct onnx_tensor *w = &g->tensors[n->in[1]];

	if (n->op == ONNX_OP_CONV) {
		*channels = w->dims[0];
		*k = onnx_tensor_count(w) / (size_t)(w->dims[0] ? w->dims[0] : 1);
	} else {
		/* Gemm: B is [N, K] with transB, [K, N] without */
		*channels = n->a.trans_b ? w->dims[0] : w->dims[1];
		*k = (size_t)(n->a.trans_b ? w->dims[1] : w->dims[0]);
	}
}

/* Weight i of output channel c. */
static float weight_at(const onnx_graph *g, const struct onnx_node *n, int c, size_t i,
		       int channels, size_t k)
{
	const float *w = g->tensors[n->in[1]].data;

	if (n->op == ONNX_OP_CONV || n->a.trans_b)
		return w[(size_t)c * k + i];
	return w[i * (size_t)channels + c];
}

void infer_quant_weight_scales(const onnx_graph *g, const struct onnx_node *n, float *scale)
{
	int channels;
	size_t k;

	infer_quant_dims(g, n, &channels, &k);
	for (int c = 0; c < channels; c++) {
		float mx = 0;

		for (size_t i = 0; i < k; i++)
			mx = fmaxf(mx, fabsf(weight_at(g, n, c, i, channels, k)));
		scale[c] = mx > 0 ? mx / 127.0f : 1.0f;
	}
}

void infer_quant_weights(const onnx_graph *g, const struct onnx_node *n, const float *scale,
			 int8_t *out)
{
	int channels;
	size_t k;

	infer_quant_dims(g, n, &channels, &k);
	for (int c = 0; c < channels; c++)
		for (size_t i = 0; i < k; i++)
			out[(size_t)c * k + i] = infer_quantize(weight_at(g, n, c, i, channels, k),
								1.0f / scale[c]);
}

/* ---- reading the file ---- */

void infer_quant_free(struct infer_quant *q)
{
	if (!q)
		return;
	for (int i = 0; i < q->n_nodes; i++) {
		g_free(q->nodes[i].node);
		g_free(q->nodes[i].weight_scale);
	}
	g_free(q->nodes);
	g_free(q->file);
	g_free(q->sha256);
	g_free(q);
}

const struct infer_quant_node *infer_quant_node_for(const struct infer_quant *q,
						   const onnx_graph *g,
						   const struct onnx_node *n, char **err)
{
	int channels;
	size_t k;

	infer_quant_dims(g, n, &channels, &k);
	for (int i = 0; q && i < q->n_nodes; i++) {
		if (strcmp(q->nodes[i].node, n->name) != 0)
			continue;
		if (q->nodes[i].channels != channels) {
			*err = g_strdup_printf("%s: node '%s' of %s has %d weight scales for %d "
					       "output channels", INFER_CALIB_FILE, n->name, g->path,
					       q->nodes[i].channels, channels);
			return NULL;
		}
		return &q->nodes[i];
	}
	*err = g_strdup_printf("%s has no entry for node '%s' (%s) of %s", INFER_CALIB_FILE,
			       n->name, onnx_op_name(n->op), g->path);
	return NULL;
}

/* The file's text without its checksum line, and the checksum it states. */
static char *strip_checksum(const char *text, char **stated)
{
	GString *rest = g_string_new(NULL);
	const char *line = text;

	*stated = NULL;
	while (*line) {
		const char *end = strchr(line, '\n');
		size_t len = end ? (size_t)(end - line) + 1 : strlen(line);

		if (!*stated && g_str_has_prefix(line, "checksum="))
			*stated = g_strstrip(g_strndup(line + 9, len - 9));
		else
			g_string_append_len(rest, line, (gssize)len);
		line += len;
	}
	return g_string_free(rest, FALSE);
}

static char *sha256_hex(const char *text)
{
	return g_compute_checksum_for_string(G_CHECKSUM_SHA256, text, -1);
}

static int parse_scales(const config *c, const char *group, const char *text,
			struct infer_quant_node *qn, char **err)
{
	char **parts = g_strsplit(text, ",", -1);
	int rc = 0;

	qn->channels = (int)g_strv_length(parts);
	qn->weight_scale = g_new(float, qn->channels ? qn->channels : 1);
	for (int i = 0; i < qn->channels && rc == 0; i++) {
		char *end = NULL;
		double v = g_ascii_strtod(g_strstrip(parts[i]), &end);

		if (end == parts[i] || *end || !(v > 0) || !isfinite(v)) {
			*err = config_error(c, group, "weight_scales",
					    "value %d, '%s', is not a positive number", i + 1, parts[i]);
			rc = INFER_ECALIB;
		}
		qn->weight_scale[i] = (float)v;
	}
	if (rc == 0 && !qn->channels) {
		*err = config_error(c, group, "weight_scales", "no values");
		rc = INFER_ECALIB;
	}
	g_strfreev(parts);
	return rc;
}

static struct infer_quant *read_module(const config *c, const char *module, char **err)
{
	struct infer_quant *q = g_new0(struct infer_quant, 1);
	char *prefix = g_strconcat(module, " ", NULL);
	char **groups = NULL;

	if (!config_has_group(c, module)) {
		*err = g_strdup_printf("%s: no [%s] section", config_name(c), module);
		goto fail;
	}
	if (config_get_string(c, module, "file", NULL, &q->file, err) < 0 ||
	    config_get_string(c, module, "sha256", NULL, &q->sha256, err) < 0)
		goto fail;
	groups = config_groups(c, prefix);
	q->n_nodes = (int)g_strv_length(groups);
	q->nodes = g_new0(struct infer_quant_node, q->n_nodes + 1);
	for (int i = 0; i < q->n_nodes; i++) {
		struct infer_quant_node *qn = &q->nodes[i];
		char *scales = NULL;
		double range;
		int rc;

		qn->node = g_strdup(groups[i] + strlen(prefix));
		if (config_get_double(c, groups[i], "input_range", 0, 1e-30, 1e30, &range, err) < 0)
			goto fail;
		qn->input_range = (float)range;
		{
			static const char *const runs[] = { "int8", "fp32", NULL };
			int run = 0;

			if (config_get_choice(c, groups[i], "run", "int8", runs, &run, err) < 0)
				goto fail;
			qn->keep_fp32 = run == 1;
		}
		if (config_get_string(c, groups[i], "weight_scales", NULL, &scales, err) < 0)
			goto fail;
		rc = parse_scales(c, groups[i], scales, qn, err);
		g_free(scales);
		if (rc < 0)
			goto fail;
	}
	g_strfreev(groups);
	g_free(prefix);
	return q;
fail:
	g_strfreev(groups);
	g_free(prefix);
	infer_quant_free(q);
	return NULL;
}

int infer_quant_load(const char *path, const char *const *groups, int n,
		     struct infer_quant **out, char **err)
{
	char *text = NULL, *body = NULL, *stated = NULL, *actual = NULL;
	config *c = NULL;
	GError *gerr = NULL;
	int format = 0, rc = INFER_ECALIB;

	for (int i = 0; i < n; i++)
		out[i] = NULL;
	if (!g_file_get_contents(path, &text, NULL, &gerr)) {
		*err = g_strdup_printf("int8 needs the package's calibration: %s (make it with "
				       "vigil-calibrate)", gerr->message);
		g_error_free(gerr);
		goto out;
	}
	body = strip_checksum(text, &stated);
	actual = sha256_hex(body);
	if (!stated || g_ascii_strcasecmp(stated, actual) != 0) {
		*err = g_strdup_printf("%s: %s (edited or damaged; make it again with "
				       "vigil-calibrate)", path, stated ? "checksum does not match"
				       : "no checksum line");
		goto out;
	}
	c = config_load_data(text, path, err);
	if (!c || config_get_int(c, "calibration", "format", 0, CALIB_FORMAT, CALIB_FORMAT,
				 &format, err) < 0)
		goto out;
	for (int i = 0; i < n; i++)
		if (!(out[i] = read_module(c, groups[i], err)))
			goto out;
	rc = 0;
out:
	if (rc < 0)
		for (int i = 0; i < n; i++) {
			infer_quant_free(out[i]);
			out[i] = NULL;
		}
	config_free(c);
	g_free(text);
	g_free(body);
	g_free(stated);
	g_free(actual);
	return rc;
}

/* ---- measuring and writing ---- */

/* What calibration measures of one Conv or Gemm's input. */
struct calib_node {
	int node;                  /* index in its graph */
	double max_abs;
	guint64 *hist;             /* HIST_BINS over [0, max_abs], percentile only */
	guint64 count;
	struct infer_quant_node q; /* what is written */
	/* per output channel, over the parts: the float32 output's sum and
	 * sum of squares, and the squared error of the int8 output */
	double *sum, *sum2, *sse;
	guint64 per_channel;       /* values per channel seen */
	double error;              /* sqrt(sse / within-channel variance), all channels */
	gboolean wiring;           /* weights all -1, 0 or 1: float32 whatever the error */
};

struct infer_calibrator {
	char *dir;
	infer_model *model;        /* reference backend, float32 */
	enum infer_range range;
	double percentile;
	double max_error;          /* a node over it stays float32 */
	GPtrArray *images, *sigfeats;
	size_t image_n, sig_n;
	int n_nodes[3];
	struct calib_node *nodes[3];
};

static const char *const calib_module[3] = { "vision", "signal", "decision" };

void infer_calibrator_free(infer_calibrator *c)
{
	if (!c)
		return;
	for (int k = 0; k < 3; k++) {
		for (int i = 0; i < c->n_nodes[k]; i++) {
			struct calib_node *cn = &c->nodes[k][i];

			g_free(cn->hist);
			g_free(cn->q.weight_scale);
			g_free(cn->sum);
			g_free(cn->sum2);
			g_free(cn->sse);
		}
		g_free(c->nodes[k]);
	}
	if (c->images)
		g_ptr_array_free(c->images, TRUE);
	if (c->sigfeats)
		g_ptr_array_free(c->sigfeats, TRUE);
	infer_model_free(c->model);
	g_free(c->dir);
	g_free(c);
}

infer_calibrator *infer_calibrator_new(const char *dir, enum infer_range range,
				       double percentile, char **err)
{
	infer_calibrator *c = g_new0(infer_calibrator, 1);
	const struct infer_info *in;

	if (range == INFER_RANGE_PERCENTILE && !(percentile > 50 && percentile <= 100)) {
		*err = g_strdup_printf("percentile %g is not in (50, 100]", percentile);
		g_free(c);
		return NULL;
	}
	c->model = infer_model_load(dir, "reference", err, NULL);
	if (!c->model) {
		infer_calibrator_free(c);
		return NULL;
	}
	c->dir = g_strdup(dir);
	c->range = range;
	c->percentile = percentile;
	c->max_error = CALIB_MAX_NODE_ERROR;
	c->images = g_ptr_array_new_with_free_func(g_free);
	c->sigfeats = g_ptr_array_new_with_free_func(g_free);
	in = infer_model_info(c->model);
	c->image_n = (size_t)in->input_width * in->input_height;
	c->sig_n = (size_t)in->signal_dim;
	for (int k = 0; k < 3; k++) {
		const onnx_graph *g = ref_module_graph(infer_model_module(c->model, k));

		c->nodes[k] = g_new0(struct calib_node, g->n_nodes + 1);
		for (int i = 0; i < g->n_nodes; i++)
			if (g->nodes[i].op == ONNX_OP_CONV || g->nodes[i].op == ONNX_OP_GEMM)
				c->nodes[k][c->n_nodes[k]++].node = i;
	}
	return c;
}

int infer_calibrator_add(infer_calibrator *c, const float *image, const float *sigfeat,
			 char **err)
{
	for (size_t i = 0; i < c->image_n; i++)
		if (!isfinite(image[i]))
			goto bad;
	for (size_t i = 0; i < c->sig_n; i++)
		if (!isfinite(sigfeat[i]))
			goto bad;
	g_ptr_array_add(c->images, g_memdup2(image, c->image_n * sizeof(float)));
	g_ptr_array_add(c->sigfeats, g_memdup2(sigfeat, c->sig_n * sizeof(float)));
	return 0;
bad:
	*err = g_strdup("a calibration part has a non-finite input");
	return -EINVAL;
}

/* Runs every part and feeds each quantized node's input to see(), with
 * the module the node is in. */
static int sweep(infer_calibrator *c,
		 void (*see)(struct calib_node *, const ref_module *, const float *, size_t),
		 char **err)
{
	for (guint p = 0; p < c->images->len; p++) {
		struct infer_output out;
		int rc = infer_model_run(c->model, c->images->pdata[p], c->sigfeats->pdata[p], &out,
					 err);

		if (rc < 0)
			return rc;
		for (int k = 0; k < 3; k++) {
			const ref_module *rm = infer_model_module(c->model, k);
			const onnx_graph *g = ref_module_graph(rm);

			for (int i = 0; i < c->n_nodes[k]; i++) {
				struct calib_node *cn = &c->nodes[k][i];
				size_t len = 0;
				const float *x = ref_module_tensor(rm, g->nodes[cn->node].in[0], &len);

				if (!x) {
					*err = g_strdup_printf("no value for the input of node '%s'",
							       g->nodes[cn->node].name);
					return -EIO;
				}
				see(cn, rm, x, len);
			}
		}
	}
	return 0;
}

static void see_max(struct calib_node *cn, const ref_module *rm, const float *x, size_t n)
{
	(void)rm;
	for (size_t i = 0; i < n; i++)
		cn->max_abs = fmax(cn->max_abs, fabs((double)x[i]));
}

static void see_hist(struct calib_node *cn, const ref_module *rm, const float *x, size_t n)
{
	(void)rm;
	for (size_t i = 0; i < n; i++) {
		double b = fabs((double)x[i]) / cn->max_abs * HIST_BINS;

		cn->hist[b >= HIST_BINS ? HIST_BINS - 1 : (int)b]++;
	}
	cn->count += n;
}

/* The range of a node's input: the percentile's bin, by its upper edge. */
static double node_range(const infer_calibrator *c, const struct calib_node *cn)
{
	guint64 want, seen = 0;

	if (c->range == INFER_RANGE_MAX || !cn->count)
		return cn->max_abs;
	want = (guint64)ceil(c->percentile / 100.0 * (double)cn->count);
	for (int b = 0; b < HIST_BINS; b++) {
		seen += cn->hist[b];
		if (seen >= want)
			return cn->max_abs * (b + 1) / HIST_BINS;
	}
	return cn->max_abs;
}

/* What int8 costs at a node on its own: its output from int8 against
 * float32, for the same float input. */
static void see_error(struct calib_node *cn, const ref_module *rm, const float *x, size_t n)
{
	const onnx_graph *g = ref_module_graph(rm);
	size_t len = 0, plane;
	const float *y = ref_module_tensor(rm, g->nodes[cn->node].out[0], &len);
	float *y8 = g_new(float, len + 1);

	(void)x;
	(void)n;
	ref_module_node_int8(rm, cn->node, &cn->q, y8);
	plane = len / (size_t)cn->q.channels;  /* batch 1: [1, C, ...] */
	for (size_t e = 0; e < len; e++) {
		int ch = (int)(e / plane);
		double d = (double)y8[e] - y[e];

		cn->sum[ch] += y[e];
		cn->sum2[ch] += (double)y[e] * y[e];
		cn->sse[ch] += d * d;
	}
	cn->per_channel += plane;
	g_free(y8);
}

/* A node that only moves values: every weight -1, 0 or 1 (see the top). */
static gboolean is_wiring(const onnx_graph *g, const struct onnx_node *n)
{
	const struct onnx_tensor *w = &g->tensors[n->in[1]];
	size_t count = onnx_tensor_count(w);

	for (size_t i = 0; i < count; i++)
		if (w->data[i] != 0.0f && w->data[i] != 1.0f && w->data[i] != -1.0f)
			return FALSE;
	return TRUE;
}

/* What int8 costs at each node, over every part; a node whose relative
 * error is above max_error, or that is wiring, keeps float32. */
static int sweep_error(infer_calibrator *c, char **err)
{
	int rc = sweep(c, see_error, err);

	if (rc < 0)
		return rc;
	for (int k = 0; k < 3; k++) {
		const onnx_graph *g = ref_module_graph(infer_model_module(c->model, k));

		for (int i = 0; i < c->n_nodes[k]; i++) {
			struct calib_node *cn = &c->nodes[k][i];
			double sse = 0, var = 0, n = (double)cn->per_channel;

			for (int ch = 0; ch < cn->q.channels; ch++) {
				sse += cn->sse[ch];
				var += cn->sum2[ch] - cn->sum[ch] * cn->sum[ch] / n;
			}
			cn->error = var > 0 ? sqrt(sse / var) : sse > 0 ? INFINITY : 0;
			cn->wiring = is_wiring(g, &g->nodes[cn->node]);
			cn->q.keep_fp32 = !(cn->error <= c->max_error) || cn->wiring;
		}
	}
	return 0;
}

static void append_float(GString *s, double v)
{
	char buf[G_ASCII_DTOSTR_BUF_SIZE];

	/* %.9g: a float read back is the float written */
	g_string_append(s, g_ascii_formatd(buf, sizeof buf, "%.9g", v));
}

static int module_sha256(const char *dir, const char *file, char **hex, char **err)
{
	char *path = g_build_filename(dir, file, NULL);
	int rc = infer_file_sha256(path, hex, err);

	g_free(path);
	return rc;
}

int infer_calibrator_write(infer_calibrator *c, const char *note, char **err)
{
	const struct infer_info *in = infer_model_info(c->model);
	char *man_path = g_build_filename(c->dir, "manifest.ini", NULL);
	char *path = g_build_filename(c->dir, INFER_CALIB_FILE, NULL);
	char *one_line = g_strdelimit(g_strdup(note ? note : ""), "\r\n", ' ');
	char *sum = NULL, *text = NULL;
	config *man = NULL;
	GString *s = g_string_new(NULL);
	GError *gerr = NULL;
	int rc;

	if (!c->images->len) {
		*err = g_strdup("no calibration parts");
		rc = -EINVAL;
		goto out;
	}
	if ((rc = sweep(c, see_max, err)) < 0)
		goto out;
	if (c->range == INFER_RANGE_PERCENTILE) {
		for (int k = 0; k < 3; k++)
			for (int i = 0; i < c->n_nodes[k]; i++)
				c->nodes[k][i].hist = g_new0(guint64, HIST_BINS);
		if ((rc = sweep(c, see_hist, err)) < 0)
			goto out;
	}
	for (int k = 0; k < 3; k++) {
		const onnx_graph *g = ref_module_graph(infer_model_module(c->model, k));

		for (int i = 0; i < c->n_nodes[k]; i++) {
			struct calib_node *cn = &c->nodes[k][i];
			const struct onnx_node *n = &g->nodes[cn->node];
			size_t kk;

			if (strpbrk(n->name, "[]\r\n")) {
				*err = g_strdup_printf("node '%s' of %s: its name cannot be a section "
						       "of %s", n->name, g->path, INFER_CALIB_FILE);
				rc = -EINVAL;
				goto out;
			}
			cn->q.node = n->name;  /* borrowed from the graph */
			cn->q.input_range = (float)node_range(c, cn);
			if (!(cn->q.input_range > 0)) {
				*err = g_strdup_printf("node '%s' of %s: its input was 0 on every "
						       "calibration part; calibrate on parts that "
						       "exercise it", n->name, g->path);
				rc = -EINVAL;
				goto out;
			}
			infer_quant_dims(g, n, &cn->q.channels, &kk);
			cn->q.weight_scale = g_new(float, cn->q.channels);
			infer_quant_weight_scales(g, n, cn->q.weight_scale);
			cn->sum = g_new0(double, cn->q.channels);
			cn->sum2 = g_new0(double, cn->q.channels);
			cn->sse = g_new0(double, cn->q.channels);
		}
	}
	if ((rc = sweep_error(c, err)) < 0)
		goto out;
	man = config_load_file(man_path, err);
	if (!man) {
		rc = INFER_EMANIFEST;
		goto out;
	}

	g_string_append_printf(s, "# INT8 calibration of model package %s (%s), "
			       "docs/inference-engine.md.\n# Written by vigil-calibrate; an edit "
			       "breaks the checksum and int8 then refuses the package.\n",
			       in->name, in->version);
	g_string_append_printf(s, "[calibration]\nformat=%d\npackage=%s\nparts=%u\n",
			       CALIB_FORMAT, in->version, c->images->len);
	if (c->range == INFER_RANGE_MAX) {
		g_string_append(s, "activation_range=max\n");
	} else {
		g_string_append(s, "activation_range=percentile ");
		append_float(s, c->percentile);
		g_string_append_c(s, '\n');
	}
	g_string_append_printf(s, "note=%s\n", one_line);
	for (int k = 0; k < 3; k++) {
		const onnx_graph *g = ref_module_graph(infer_model_module(c->model, k));
		char *file = NULL, *hex = NULL;

		if ((rc = config_get_string(man, calib_module[k], "file", NULL, &file,
					    err)) < 0 ||
		    (rc = module_sha256(c->dir, file, &hex, err)) < 0) {
			g_free(file);
			goto out;
		}
		g_string_append_printf(s, "\n[%s]\nfile=%s\nsha256=%s\n", calib_module[k], file, hex);
		g_free(file);
		g_free(hex);
		for (int i = 0; i < c->n_nodes[k]; i++) {
			const struct calib_node *cn = &c->nodes[k][i];
			const struct onnx_node *n = &g->nodes[cn->node];

			g_string_append_printf(s, "\n[%s %s]\n# %s, %d output channels, max |x| ",
					       calib_module[k], n->name, onnx_op_name(n->op),
					       cn->q.channels);
			append_float(s, cn->max_abs);
			g_string_append(s, ", int8 error ");
			append_float(s, cn->error);
			if (cn->wiring)
				g_string_append(s, ", wiring (weights -1, 0, 1)");
			g_string_append_printf(s, "\nrun=%s\ninput_range=", cn->q.keep_fp32 ? "fp32"
					       : "int8");
			append_float(s, cn->q.input_range);
			g_string_append(s, "\nweight_scales=");
			for (int ch = 0; ch < cn->q.channels; ch++) {
				if (ch)
					g_string_append_c(s, ',');
				append_float(s, cn->q.weight_scale[ch]);
			}
			g_string_append_c(s, '\n');
		}
	}
	sum = sha256_hex(s->str);
	/* the checksum line goes inside [calibration], after format */
	{
		const char *at = strstr(s->str, "\npackage=");
		char *line = g_strdup_printf("\nchecksum=%s", sum);

		g_string_insert(s, at - s->str, line);
		g_free(line);
	}
	text = g_string_free(s, FALSE);
	s = NULL;
	if (!g_file_set_contents(path, text, -1, &gerr)) {
		*err = g_strdup(gerr->message);
		g_error_free(gerr);
		rc = -EIO;
		goto out;
	}
	rc = 0;
out:
	if (s)
		g_string_free(s, TRUE);
	config_free(man);
	g_free(text);
	g_free(sum);
	g_free(one_line);
	g_free(path);
	g_free(man_path);
	return rc;
}
