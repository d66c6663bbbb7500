/* ONNX import: one model file parsed (protobuf-c over Debian's onnx.proto)
 * into a small graph of the operators Vigil's packages use, for the
 * engines that do not go through OpenCV DNN (infer-reference.c,
 * infer-cuda.c).
 *
 * Supported (docs/inference-engine.md): Conv (2-D), MaxPool (2-D),
 * GlobalAveragePool, Relu, Sigmoid, Concat, Flatten, Gemm, float32 only,
 * default ONNX domain, opset 9 to 21. Anything else is refused at load
 * with an error naming the node and its op type, never skipped. */
#ifndef VIGIL_INFERENCE_ONNX_GRAPH_H
#define VIGIL_INFERENCE_ONNX_GRAPH_H

#include <stddef.h>

#define ONNX_MAX_DIMS 6
#define ONNX_MAX_ELEMENTS (1 << 28)  /* per tensor, for a given input */

enum onnx_op {
	ONNX_OP_CONV,
	ONNX_OP_MAXPOOL,
	ONNX_OP_GLOBALAVGPOOL,
	ONNX_OP_RELU,
	ONNX_OP_SIGMOID,
	ONNX_OP_CONCAT,
	ONNX_OP_FLATTEN,
	ONNX_OP_GEMM,
	ONNX_OP_COUNT
};

/* A value of the graph: the input, an initializer (data set) or a node's
 * output. dims of activations are set by onnx_graph_infer_shapes. */
struct onnx_tensor {
	char *name;
	int ndim;
	int dims[ONNX_MAX_DIMS];
	float *data;               /* initializers only, owned by the graph */
	int producer;              /* node index; -1 for the input and initializers */
};

/* Attributes, already checked and with ONNX defaults filled in. */
struct onnx_attrs {
	int kernel[2], strides[2], dilations[2];
	int pads[4];               /* top, left, bottom, right */
	int group;
	int axis;                  /* Concat (non-negative after shape inference), Flatten */
	float alpha, beta;         /* Gemm */
	int trans_a, trans_b;      /* Gemm */
};

struct onnx_node {
	char *name;                /* the node's name, or "#<index>" when it has none */
	enum onnx_op op;
	int n_in, n_out;
	int *in, *out;             /* tensor indices; in[i] -1 for an omitted optional input */
	struct onnx_attrs a;
};

typedef struct onnx_graph {
	char *path;                /* for messages */
	int n_tensors, n_nodes, n_outputs;
	struct onnx_tensor *tensors;
	struct onnx_node *nodes;   /* in an order where every input is computed first */
	int input;                 /* tensor index of the one graph input */
	int input_ndim;            /* its shape as the file declares it, 0 when */
	int input_dims[ONNX_MAX_DIMS]; /* absent; -1 for a symbolic dimension */
	int *outputs;              /* tensor indices of the graph outputs, in file order */
	int opset;
} onnx_graph;

/* Parses an ONNX file. NULL with *err (g_free) when the file is unreadable,
 * truncated, not ONNX, or uses anything outside the supported set. */
onnx_graph *onnx_graph_load(const char *path, char **err);
onnx_graph *onnx_graph_parse(const void *data, size_t len, const char *what, char **err);
void onnx_graph_free(onnx_graph *g);

/* Sets the dims of every activation for an input of the given shape (the
 * batch may differ from the file's). 0, or -EINVAL with *err naming the
 * node whose inputs do not fit. */
int onnx_graph_infer_shapes(onnx_graph *g, const int *shape, int ndim, char **err);

/* -1 when absent. */
int onnx_graph_find(const onnx_graph *g, const char *name);
/* Index among g->outputs of the output named name; -1 when it is not one. */
int onnx_graph_output_index(const onnx_graph *g, const char *name);

size_t onnx_tensor_count(const struct onnx_tensor *t);
const char *onnx_op_name(enum onnx_op op);

#endif
