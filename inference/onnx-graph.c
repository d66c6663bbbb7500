#include "inference/onnx-graph.h"

#include <errno.h>
#include <glib.h>
#include <limits.h>
#include <string.h>

#include "onnx.pb-c.h"

static const char *const op_names[ONNX_OP_COUNT] = {
	[ONNX_OP_CONV] = "Conv",
	[ONNX_OP_MAXPOOL] = "MaxPool",
	[ONNX_OP_GLOBALAVGPOOL] = "GlobalAveragePool",
	[ONNX_OP_RELU] = "Relu",
	[ONNX_OP_SIGMOID] = "Sigmoid",
	[ONNX_OP_CONCAT] = "Concat",
	[ONNX_OP_FLATTEN] = "Flatten",
	[ONNX_OP_GEMM] = "Gemm",
};

/* The attributes each operator may carry; any other name is refused,
 * since an attribute we ignore could change what the node computes. */
static const char *const op_attrs[ONNX_OP_COUNT] = {
	[ONNX_OP_CONV] = "auto_pad dilations group kernel_shape pads strides",
	[ONNX_OP_MAXPOOL] = "auto_pad ceil_mode dilations kernel_shape pads storage_order strides",
	[ONNX_OP_GLOBALAVGPOOL] = "",
	[ONNX_OP_RELU] = "",
	[ONNX_OP_SIGMOID] = "",
	[ONNX_OP_CONCAT] = "axis",
	[ONNX_OP_FLATTEN] = "axis",
	[ONNX_OP_GEMM] = "alpha beta transA transB",
};

#define OPSET_MIN 9
#define OPSET_MAX 21

const char *onnx_op_name(enum onnx_op op)
{
	return op >= 0 && op < ONNX_OP_COUNT ? op_names[op] : "?";
}

size_t onnx_tensor_count(const struct onnx_tensor *t)
{
	size_t n = 1;

	for (int i = 0; i < t->ndim; i++)
		n *= (size_t)(t->dims[i] > 0 ? t->dims[i] : 0);
	return n;
}

void onnx_graph_free(onnx_graph *g)
{
	if (!g)
		return;
	for (int i = 0; i < g->n_tensors; i++) {
		g_free(g->tensors[i].name);
		g_free(g->tensors[i].data);
	}
	for (int i = 0; i < g->n_nodes; i++) {
		g_free(g->nodes[i].name);
		g_free(g->nodes[i].in);
		g_free(g->nodes[i].out);
	}
	g_free(g->tensors);
	g_free(g->nodes);
	g_free(g->outputs);
	g_free(g->path);
	g_free(g);
}

int onnx_graph_find(const onnx_graph *g, const char *name)
{
	for (int i = 0; i < g->n_tensors; i++)
		if (strcmp(g->tensors[i].name, name) == 0)
			return i;
	return -1;
}

int onnx_graph_output_index(const onnx_graph *g, const char *name)
{
	for (int i = 0; i < g->n_outputs; i++)
		if (strcmp(g->tensors[g->outputs[i]].name, name) == 0)
			return i;
	return -1;
}

static int add_tensor(onnx_graph *g, const char *name, int producer)
{
	struct onnx_tensor *t = &g->tensors[g->n_tensors];

	t->name = g_strdup(name);
	t->producer = producer;
	return g->n_tensors++;
}

static int load_initializer(onnx_graph *g, const Onnx__TensorProto *tp, char **err)
{
	struct onnx_tensor *t;
	size_t count = 1;
	int idx;

	if (!tp->name || !*tp->name) {
		*err = g_strdup_printf("%s: an initializer has no name", g->path);
		return -EINVAL;
	}
	if (tp->data_type != ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT) {
		*err = g_strdup_printf("%s: initializer '%s' has ONNX data type %d; only float32 "
				       "(1) is supported", g->path, tp->name, tp->data_type);
		return -EINVAL;
	}
	if (tp->n_dims > ONNX_MAX_DIMS) {
		*err = g_strdup_printf("%s: initializer '%s' has %zu dimensions (at most %d)",
				       g->path, tp->name, tp->n_dims, ONNX_MAX_DIMS);
		return -EINVAL;
	}
	if (tp->has_data_location &&
	    tp->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL) {
		*err = g_strdup_printf("%s: initializer '%s' keeps its data in an external file, "
				       "which is not supported", g->path, tp->name);
		return -EINVAL;
	}
	if (onnx_graph_find(g, tp->name) >= 0) {
		*err = g_strdup_printf("%s: initializer '%s' is defined twice", g->path, tp->name);
		return -EINVAL;
	}
	idx = add_tensor(g, tp->name, -1);
	t = &g->tensors[idx];
	t->ndim = (int)tp->n_dims;
	for (size_t i = 0; i < tp->n_dims; i++) {
		if (tp->dims[i] < 0 || tp->dims[i] > INT_MAX || count > (SIZE_MAX >> 33)) {
			*err = g_strdup_printf("%s: initializer '%s' has an impossible dimension %lld",
					       g->path, tp->name, (long long)tp->dims[i]);
			return -EINVAL;
		}
		t->dims[i] = (int)tp->dims[i];
		count *= (size_t)tp->dims[i];
	}
	/* raw_data is little-endian IEEE float (onnx.proto); so are the hosts
	 * Vigil runs on. */
	if (tp->has_raw_data && tp->raw_data.len == count * sizeof(float)) {
		t->data = g_malloc(count * sizeof(float) + 1);
		memcpy(t->data, tp->raw_data.data, count * sizeof(float));
	} else if (!tp->has_raw_data && tp->n_float_data == count) {
		t->data = g_malloc(count * sizeof(float) + 1);
		memcpy(t->data, tp->float_data, count * sizeof(float));
	} else {
		*err = g_strdup_printf("%s: initializer '%s' holds %zu bytes for %zu floats "
				       "(truncated or corrupt)", g->path, tp->name,
				       tp->has_raw_data ? tp->raw_data.len
						       : tp->n_float_data * sizeof(float), count);
		return -EINVAL;
	}
	return 0;
}

static const Onnx__AttributeProto *find_attr(const Onnx__NodeProto *np, const char *name)
{
	for (size_t i = 0; i < np->n_attribute; i++)
		if (np->attribute[i]->name && strcmp(np->attribute[i]->name, name) == 0)
			return np->attribute[i];
	return NULL;
}

/* Node context for messages: "file: node 'name' (Op)". */
static char *node_error(const onnx_graph *g, const struct onnx_node *n, const char *fmt, ...)
	G_GNUC_PRINTF(3, 4);
static char *node_error(const onnx_graph *g, const struct onnx_node *n, const char *fmt, ...)
{
	va_list ap;
	char *msg, *full;

	va_start(ap, fmt);
	msg = g_strdup_vprintf(fmt, ap);
	va_end(ap);
	full = g_strdup_printf("%s: node '%s' (%s): %s", g->path, n->name, onnx_op_name(n->op), msg);
	g_free(msg);
	return full;
}

static int attr_int(const onnx_graph *g, const struct onnx_node *n, const Onnx__NodeProto *np,
		    const char *name, int def, int lo, int hi, int *out, char **err)
{
	const Onnx__AttributeProto *a = find_attr(np, name);

	*out = def;
	if (!a)
		return 0;
	if (!a->has_i || a->i < lo || a->i > hi) {
		*err = node_error(g, n, "attribute %s must be an integer in [%d, %d]", name, lo, hi);
		return -EINVAL;
	}
	*out = (int)a->i;
	return 0;
}

static int attr_float(const onnx_graph *g, const struct onnx_node *n, const Onnx__NodeProto *np,
		      const char *name, float def, float *out, char **err)
{
	const Onnx__AttributeProto *a = find_attr(np, name);

	*out = def;
	if (!a)
		return 0;
	if (!a->has_f) {
		*err = node_error(g, n, "attribute %s must be a float", name);
		return -EINVAL;
	}
	*out = a->f;
	return 0;
}

/* Fills count ints of an INTS attribute; absent: def for each. */
static int attr_ints(const onnx_graph *g, const struct onnx_node *n, const Onnx__NodeProto *np,
		     const char *name, int def, int lo, int *out, size_t count, char **err)
{
	const Onnx__AttributeProto *a = find_attr(np, name);

	for (size_t i = 0; i < count; i++)
		out[i] = def;
	if (!a)
		return 0;
	if (a->n_ints != count) {
		*err = node_error(g, n, "attribute %s has %zu values; this engine supports "
				  "2-D operators only (%zu values)", name, a->n_ints, count);
		return -EINVAL;
	}
	for (size_t i = 0; i < count; i++) {
		if (a->ints[i] < lo || a->ints[i] > 65536) {
			*err = node_error(g, n, "attribute %s value %lld is out of range",
					  name, (long long)a->ints[i]);
			return -EINVAL;
		}
		out[i] = (int)a->ints[i];
	}
	return 0;
}

static int check_auto_pad(const onnx_graph *g, const struct onnx_node *n,
			  const Onnx__NodeProto *np, char **err)
{
	const Onnx__AttributeProto *a = find_attr(np, "auto_pad");

	if (!a || (a->has_s && ((a->s.len == 6 && memcmp(a->s.data, "NOTSET", 6) == 0) ||
				(a->s.len == 5 && memcmp(a->s.data, "VALID", 5) == 0))))
		return 0;
	*err = node_error(g, n, "auto_pad '%.*s' is not supported (only NOTSET or VALID)",
			  a->has_s ? (int)a->s.len : 0, a->has_s ? (const char *)a->s.data : "");
	return -EINVAL;
}

static int is_initializer(const onnx_graph *g, int t)
{
	return t >= 0 && g->tensors[t].data != NULL;
}

static int parse_attrs(onnx_graph *g, struct onnx_node *n, const Onnx__NodeProto *np, char **err)
{
	struct onnx_attrs *a = &n->a;
	int min_in = 1, max_in = 1, rc;

	for (size_t i = 0; i < np->n_attribute; i++) {
		const char *name = np->attribute[i]->name ? np->attribute[i]->name : "";
		const char *known = op_attrs[n->op];
		const char *at = *name ? strstr(known, name) : NULL;
		size_t len = strlen(name);

		while (at && !((at == known || at[-1] == ' ') && (at[len] == ' ' || !at[len])))
			at = strstr(at + 1, name);
		if (!at) {
			*err = node_error(g, n, "attribute '%s' is not supported", name);
			return -EINVAL;
		}
	}
	switch (n->op) {
	case ONNX_OP_CONV:
		min_in = 2;
		max_in = 3;
		if ((rc = check_auto_pad(g, n, np, err)) < 0 ||
		    (rc = attr_ints(g, n, np, "kernel_shape", 0, 1, a->kernel, 2, err)) < 0 ||
		    (rc = attr_ints(g, n, np, "strides", 1, 1, a->strides, 2, err)) < 0 ||
		    (rc = attr_ints(g, n, np, "dilations", 1, 1, a->dilations, 2, err)) < 0 ||
		    (rc = attr_ints(g, n, np, "pads", 0, 0, a->pads, 4, err)) < 0 ||
		    (rc = attr_int(g, n, np, "group", 1, 1, 65536, &a->group, err)) < 0)
			return rc;
		break;
	case ONNX_OP_MAXPOOL: {
		int ceil_mode, dil[2];

		if ((rc = check_auto_pad(g, n, np, err)) < 0 ||
		    (rc = attr_ints(g, n, np, "kernel_shape", 0, 1, a->kernel, 2, err)) < 0 ||
		    (rc = attr_ints(g, n, np, "strides", 1, 1, a->strides, 2, err)) < 0 ||
		    (rc = attr_ints(g, n, np, "dilations", 1, 1, dil, 2, err)) < 0 ||
		    (rc = attr_ints(g, n, np, "pads", 0, 0, a->pads, 4, err)) < 0 ||
		    (rc = attr_int(g, n, np, "ceil_mode", 0, 0, 1, &ceil_mode, err)) < 0)
			return rc;
		if (!find_attr(np, "kernel_shape")) {
			*err = node_error(g, n, "attribute kernel_shape is missing");
			return -EINVAL;
		}
		if (ceil_mode || dil[0] != 1 || dil[1] != 1) {
			*err = node_error(g, n, "ceil_mode=1 and dilations other than 1 are not "
					  "supported");
			return -EINVAL;
		}
		if (np->n_output != 1) {
			*err = node_error(g, n, "the Indices output is not supported");
			return -EINVAL;
		}
		a->dilations[0] = a->dilations[1] = 1;
		break;
	}
	case ONNX_OP_GLOBALAVGPOOL:
	case ONNX_OP_RELU:
	case ONNX_OP_SIGMOID:
		break;
	case ONNX_OP_CONCAT:
		max_in = 64;
		if (!find_attr(np, "axis")) {
			*err = node_error(g, n, "attribute axis is missing");
			return -EINVAL;
		}
		if ((rc = attr_int(g, n, np, "axis", 0, -ONNX_MAX_DIMS, ONNX_MAX_DIMS - 1,
				   &a->axis, err)) < 0)
			return rc;
		break;
	case ONNX_OP_FLATTEN:
		if ((rc = attr_int(g, n, np, "axis", 1, -ONNX_MAX_DIMS, ONNX_MAX_DIMS,
				   &a->axis, err)) < 0)
			return rc;
		break;
	case ONNX_OP_GEMM:
		min_in = 2;
		max_in = 3;
		if ((rc = attr_float(g, n, np, "alpha", 1.0f, &a->alpha, err)) < 0 ||
		    (rc = attr_float(g, n, np, "beta", 1.0f, &a->beta, err)) < 0 ||
		    (rc = attr_int(g, n, np, "transA", 0, 0, 1, &a->trans_a, err)) < 0 ||
		    (rc = attr_int(g, n, np, "transB", 0, 0, 1, &a->trans_b, err)) < 0)
			return rc;
		break;
	case ONNX_OP_COUNT:
		break;
	}
	if (n->n_in < min_in || n->n_in > max_in || n->n_out != 1) {
		*err = node_error(g, n, "has %d inputs and %d outputs; this engine expects %d to %d "
				  "inputs and 1 output", n->n_in, n->n_out, min_in, max_in);
		return -EINVAL;
	}
	for (int i = 0; i < n->n_in; i++)
		if (n->in[i] < 0 && (i == 0 || n->op == ONNX_OP_CONCAT || i < min_in)) {
			*err = node_error(g, n, "input %d is required", i);
			return -EINVAL;
		}
	/* Weights are constants: uploaded once, never recomputed per part. */
	if (n->op == ONNX_OP_CONV || n->op == ONNX_OP_GEMM) {
		const struct onnx_tensor *w = &g->tensors[n->in[1]];

		if (!is_initializer(g, n->in[1]) || (n->n_in == 3 && n->in[2] >= 0 &&
						     !is_initializer(g, n->in[2]))) {
			*err = node_error(g, n, "weights and bias must be initializers");
			return -EINVAL;
		}
		if (n->op == ONNX_OP_CONV) {
			if (w->ndim != 4) {
				*err = node_error(g, n, "weight '%s' is %d-D; only 2-D convolution "
						  "(4-D weights) is supported", w->name, w->ndim);
				return -EINVAL;
			}
			if (!find_attr(np, "kernel_shape")) {
				a->kernel[0] = w->dims[2];
				a->kernel[1] = w->dims[3];
			}
			if (a->kernel[0] != w->dims[2] || a->kernel[1] != w->dims[3] ||
			    w->dims[0] % a->group != 0) {
				*err = node_error(g, n, "kernel_shape or group disagrees with weight "
						  "'%s'", w->name);
				return -EINVAL;
			}
			if (n->n_in == 3 && n->in[2] >= 0 &&
			    onnx_tensor_count(&g->tensors[n->in[2]]) != (size_t)w->dims[0]) {
				*err = node_error(g, n, "bias has %zu values for %d output channels",
						  onnx_tensor_count(&g->tensors[n->in[2]]),
						  w->dims[0]);
				return -EINVAL;
			}
		} else if (w->ndim != 2) {
			*err = node_error(g, n, "B '%s' must be 2-D", w->name);
			return -EINVAL;
		}
	}
	return 0;
}

static int parse_node(onnx_graph *g, const Onnx__NodeProto *np, int index, char **err)
{
	struct onnx_node *n = &g->nodes[index];

	n->name = np->name && *np->name ? g_strdup(np->name) : g_strdup_printf("#%d", index);
	n->op = ONNX_OP_COUNT;
	if (np->domain && *np->domain && strcmp(np->domain, "ai.onnx") != 0) {
		*err = g_strdup_printf("%s: node '%s' uses operator '%s' of domain '%s'; only the "
				       "default ONNX domain is supported", g->path, n->name,
				       np->op_type ? np->op_type : "", np->domain);
		return -ENOTSUP;
	}
	for (int op = 0; op < ONNX_OP_COUNT; op++)
		if (np->op_type && strcmp(np->op_type, op_names[op]) == 0)
			n->op = (enum onnx_op)op;
	if (n->op == ONNX_OP_COUNT) {
		GString *list = g_string_new(NULL);

		for (int op = 0; op < ONNX_OP_COUNT; op++)
			g_string_append_printf(list, "%s%s", op ? ", " : "", op_names[op]);
		*err = g_strdup_printf("%s: node '%s' has operator '%s', which this engine does not "
				       "support (supported: %s)", g->path, n->name,
				       np->op_type ? np->op_type : "", list->str);
		g_string_free(list, TRUE);
		return -ENOTSUP;
	}
	n->n_in = (int)np->n_input;
	n->n_out = (int)np->n_output;
	n->in = g_new(int, n->n_in + 1);
	n->out = g_new(int, n->n_out + 1);
	for (int i = 0; i < n->n_in; i++) {
		const char *name = np->input[i];

		n->in[i] = -1;
		if (!*name)
			continue;        /* an omitted optional input */
		n->in[i] = onnx_graph_find(g, name);
		if (n->in[i] < 0) {
			*err = node_error(g, n, "input '%s' is neither the graph input, an "
					  "initializer nor the output of an earlier node", name);
			return -EINVAL;
		}
	}
	for (int i = 0; i < n->n_out; i++) {
		if (!*np->output[i] || onnx_graph_find(g, np->output[i]) >= 0) {
			*err = node_error(g, n, "output '%s' is empty or defined twice",
					  np->output[i]);
			return -EINVAL;
		}
		n->out[i] = add_tensor(g, np->output[i], index);
	}
	return parse_attrs(g, n, np, err);
}

static int parse_input(onnx_graph *g, const Onnx__ValueInfoProto *vi, char **err)
{
	const Onnx__TypeProto *tp = vi->type;
	struct onnx_tensor *t;

	if (!tp || tp->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE ||
	    !tp->tensor_type->has_elem_type ||
	    tp->tensor_type->elem_type != ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT) {
		*err = g_strdup_printf("%s: graph input '%s' is not a float32 tensor", g->path,
				       vi->name);
		return -EINVAL;
	}
	g->input = add_tensor(g, vi->name, -1);
	t = &g->tensors[g->input];
	if (tp->tensor_type->shape) {
		const Onnx__TensorShapeProto *s = tp->tensor_type->shape;

		if (s->n_dim < 1 || s->n_dim > ONNX_MAX_DIMS) {
			*err = g_strdup_printf("%s: graph input '%s' has %zu dimensions", g->path,
					       vi->name, s->n_dim);
			return -EINVAL;
		}
		g->input_ndim = (int)s->n_dim;
		for (size_t i = 0; i < s->n_dim; i++) {
			const Onnx__TensorShapeProto__Dimension *d = s->dim[i];

			g->input_dims[i] = -1;  /* symbolic or unknown */
			if (d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE &&
			    d->dim_value > 0 && d->dim_value <= INT_MAX)
				g->input_dims[i] = (int)d->dim_value;
		}
		t->ndim = g->input_ndim;
		memcpy(t->dims, g->input_dims, sizeof t->dims);
	}
	return 0;
}

onnx_graph *onnx_graph_parse(const void *data, size_t len, const char *what, char **err)
{
	Onnx__ModelProto *mp = onnx__model_proto__unpack(NULL, len, data);
	onnx_graph *g = g_new0(onnx_graph, 1);
	const Onnx__GraphProto *gp;
	size_t n_values;

	g->path = g_strdup(what);
	g->input = -1;
	if (!mp) {
		*err = g_strdup_printf("%s: not a valid ONNX model (truncated or corrupt protobuf)",
				       what);
		goto fail;
	}
	gp = mp->graph;
	if (!gp || gp->n_node == 0) {
		*err = g_strdup_printf("%s: the ONNX model has no graph (truncated?)", what);
		goto fail;
	}
	for (size_t i = 0; i < mp->n_opset_import; i++) {
		const Onnx__OperatorSetIdProto *os = mp->opset_import[i];

		if (!os->domain || !*os->domain || strcmp(os->domain, "ai.onnx") == 0)
			g->opset = os->has_version ? (int)os->version : 0;
	}
	if (g->opset < OPSET_MIN || g->opset > OPSET_MAX) {
		*err = g_strdup_printf("%s: ONNX opset %d is outside the supported %d to %d", what,
				       g->opset, OPSET_MIN, OPSET_MAX);
		goto fail;
	}
	if (gp->n_sparse_initializer) {
		*err = g_strdup_printf("%s: sparse initializers are not supported", what);
		goto fail;
	}
	n_values = gp->n_input + gp->n_initializer;
	for (size_t i = 0; i < gp->n_node; i++)
		n_values += gp->node[i]->n_output;
	g->tensors = g_new0(struct onnx_tensor, n_values);
	g->nodes = g_new0(struct onnx_node, gp->n_node);
	for (size_t i = 0; i < gp->n_initializer; i++)
		if (load_initializer(g, gp->initializer[i], err) < 0)
			goto fail;
	/* Before IR 4 initializers were also listed as inputs; the real input
	 * is the one that is not an initializer. */
	for (size_t i = 0; i < gp->n_input; i++) {
		if (onnx_graph_find(g, gp->input[i]->name) >= 0)
			continue;
		if (g->input >= 0) {
			*err = g_strdup_printf("%s: the graph has more than one input ('%s', '%s'); "
					       "Vigil's modules take one", what,
					       g->tensors[g->input].name, gp->input[i]->name);
			goto fail;
		}
		if (parse_input(g, gp->input[i], err) < 0)
			goto fail;
	}
	if (g->input < 0) {
		*err = g_strdup_printf("%s: the graph has no input", what);
		goto fail;
	}
	for (size_t i = 0; i < gp->n_node; i++) {
		g->n_nodes = (int)i + 1;
		if (parse_node(g, gp->node[i], (int)i, err) < 0)
			goto fail;
	}
	if (gp->n_output == 0) {
		*err = g_strdup_printf("%s: the graph has no output", what);
		goto fail;
	}
	g->outputs = g_new(int, gp->n_output);
	for (size_t i = 0; i < gp->n_output; i++) {
		int t = onnx_graph_find(g, gp->output[i]->name);

		if (t < 0 || g->tensors[t].producer < 0) {
			*err = g_strdup_printf("%s: graph output '%s' is not computed by any node",
					       what, gp->output[i]->name);
			goto fail;
		}
		g->outputs[g->n_outputs++] = t;
	}
	onnx__model_proto__free_unpacked(mp, NULL);
	return g;
fail:
	if (mp)
		onnx__model_proto__free_unpacked(mp, NULL);
	onnx_graph_free(g);
	return NULL;
}

onnx_graph *onnx_graph_load(const char *path, char **err)
{
	char *data = NULL;
	gsize len = 0;
	GError *gerr = NULL;
	onnx_graph *g;

	if (!g_file_get_contents(path, &data, &len, &gerr)) {
		*err = g_strdup(gerr->message);
		g_error_free(gerr);
		return NULL;
	}
	g = onnx_graph_parse(data, len, path, err);
	g_free(data);
	return g;
}

static int pool_out(int in, int k, int s, int d, int p0, int p1)
{
	int span = d * (k - 1) + 1;

	return in + p0 + p1 < span ? 0 : (in + p0 + p1 - span) / s + 1;
}

static int infer_node(onnx_graph *g, struct onnx_node *n, char **err)
{
	const struct onnx_tensor *x = &g->tensors[n->in[0]];
	struct onnx_tensor *y = &g->tensors[n->out[0]];
	const struct onnx_attrs *a = &n->a;

	switch (n->op) {
	case ONNX_OP_CONV:
	case ONNX_OP_MAXPOOL: {
		int c = x->dims[1];

		if (x->ndim != 4) {
			*err = node_error(g, n, "input '%s' is %d-D, expected N x C x H x W",
					  x->name, x->ndim);
			return -EINVAL;
		}
		y->ndim = 4;
		y->dims[0] = x->dims[0];
		y->dims[1] = c;
		if (n->op == ONNX_OP_CONV) {
			const struct onnx_tensor *w = &g->tensors[n->in[1]];

			if (w->dims[1] * a->group != c) {
				*err = node_error(g, n, "input has %d channels, weight '%s' expects "
						  "%d x group %d", c, w->name, w->dims[1], a->group);
				return -EINVAL;
			}
			y->dims[1] = w->dims[0];
		}
		for (int i = 0; i < 2; i++) {
			y->dims[2 + i] = pool_out(x->dims[2 + i], a->kernel[i], a->strides[i],
						  a->dilations[i], a->pads[i], a->pads[2 + i]);
			if (y->dims[2 + i] < 1) {
				*err = node_error(g, n, "input %dx%d is too small for the kernel",
						  x->dims[2], x->dims[3]);
				return -EINVAL;
			}
		}
		return 0;
	}
	case ONNX_OP_GLOBALAVGPOOL:
		if (x->ndim != 4) {
			*err = node_error(g, n, "input '%s' is %d-D, expected N x C x H x W",
					  x->name, x->ndim);
			return -EINVAL;
		}
		*y = (struct onnx_tensor){ .name = y->name, .producer = y->producer, .ndim = 4,
					   .dims = { x->dims[0], x->dims[1], 1, 1 } };
		return 0;
	case ONNX_OP_RELU:
	case ONNX_OP_SIGMOID:
		y->ndim = x->ndim;
		memcpy(y->dims, x->dims, sizeof y->dims);
		return 0;
	case ONNX_OP_CONCAT: {
		int axis = a->axis < 0 ? a->axis + x->ndim : a->axis;

		if (axis < 0 || axis >= x->ndim) {
			*err = node_error(g, n, "axis %d is outside a %d-D input", a->axis, x->ndim);
			return -EINVAL;
		}
		y->ndim = x->ndim;
		memcpy(y->dims, x->dims, sizeof y->dims);
		for (int i = 1; i < n->n_in; i++) {
			const struct onnx_tensor *xi = &g->tensors[n->in[i]];
			int ok = xi->ndim == x->ndim;

			for (int d = 0; ok && d < x->ndim; d++)
				ok = d == axis || xi->dims[d] == x->dims[d];
			if (!ok) {
				*err = node_error(g, n, "input '%s' does not match '%s' outside "
						  "axis %d", xi->name, x->name, axis);
				return -EINVAL;
			}
			y->dims[axis] += xi->dims[axis];
		}
		n->a.axis = axis;
		return 0;
	}
	case ONNX_OP_FLATTEN: {
		int axis = a->axis < 0 ? a->axis + x->ndim : a->axis;
		long long outer = 1, inner = 1;

		if (axis < 0 || axis > x->ndim) {
			*err = node_error(g, n, "axis %d is outside a %d-D input", a->axis, x->ndim);
			return -EINVAL;
		}
		for (int d = 0; d < x->ndim; d++)
			*(d < axis ? &outer : &inner) *= x->dims[d];
		y->ndim = 2;
		y->dims[0] = (int)outer;
		y->dims[1] = (int)inner;
		return 0;
	}
	case ONNX_OP_GEMM: {
		const struct onnx_tensor *b = &g->tensors[n->in[1]];
		int m, k, kb, nn;
		size_t nc;

		if (x->ndim != 2) {
			*err = node_error(g, n, "input '%s' is %d-D, expected 2-D", x->name, x->ndim);
			return -EINVAL;
		}
		m = x->dims[a->trans_a ? 1 : 0];
		k = x->dims[a->trans_a ? 0 : 1];
		kb = b->dims[a->trans_b ? 1 : 0];
		nn = b->dims[a->trans_b ? 0 : 1];
		if (k != kb) {
			*err = node_error(g, n, "A has %d columns but B '%s' has %d rows", k,
					  b->name, kb);
			return -EINVAL;
		}
		nc = n->n_in == 3 && n->in[2] >= 0 ? onnx_tensor_count(&g->tensors[n->in[2]]) : 1;
		if (nc != 1 && nc != (size_t)nn) {
			*err = node_error(g, n, "C has %zu values; only a scalar or a row of %d "
					  "is supported", nc, nn);
			return -EINVAL;
		}
		y->ndim = 2;
		y->dims[0] = m;
		y->dims[1] = nn;
		return 0;
	}
	case ONNX_OP_COUNT:
		break;
	}
	return -EINVAL;
}

int onnx_graph_infer_shapes(onnx_graph *g, const int *shape, int ndim, char **err)
{
	struct onnx_tensor *in = &g->tensors[g->input];

	if (g->input_ndim && ndim != g->input_ndim) {
		*err = g_strdup_printf("%s: input '%s' is %d-D, given a %d-D tensor", g->path,
				       in->name, g->input_ndim, ndim);
		return -EINVAL;
	}
	if (ndim < 1 || ndim > ONNX_MAX_DIMS) {
		*err = g_strdup_printf("%s: input of %d dimensions", g->path, ndim);
		return -EINVAL;
	}
	/* The file's batch dimension is a hint; any batch runs. */
	for (int d = 1; g->input_ndim && d < ndim; d++)
		if (g->input_dims[d] > 0 && g->input_dims[d] != shape[d]) {
			*err = g_strdup_printf("%s: input '%s' dimension %d is %d, given %d",
					       g->path, in->name, d, g->input_dims[d], shape[d]);
			return -EINVAL;
		}
	for (int d = 0; d < ndim; d++)
		if (shape[d] < 1) {
			*err = g_strdup_printf("%s: input dimension %d is %d", g->path, d, shape[d]);
			return -EINVAL;
		}
	in->ndim = ndim;
	memcpy(in->dims, shape, sizeof(int) * (size_t)ndim);
	for (int i = 0; i < g->n_nodes; i++) {
		const struct onnx_tensor *y;
		double count = 1;

		if (infer_node(g, &g->nodes[i], err) < 0)
			return -EINVAL;
		/* A damaged attribute (padding, dims) must not become a huge allocation. */
		y = &g->tensors[g->nodes[i].out[0]];
		for (int d = 0; d < y->ndim; d++)
			count *= y->dims[d];
		if (count > ONNX_MAX_ELEMENTS || count < 1) {
			*err = node_error(g, &g->nodes[i], "output of %.0f values is outside 1 to %d",
					  count, ONNX_MAX_ELEMENTS);
			return -EINVAL;
		}
	}
	return 0;
}
