/* Private to inference/: the engines that run an onnx_graph themselves
 * (reference on the CPU, cuda on the GPU), beyond struct infer_backend's
 * one-output run: every graph output of the last forward, so a module
 * with a second output (the vision module's defect map) is served by the
 * same forward pass. */
#ifndef VIGIL_INFERENCE_INFER_ENGINE_H
#define VIGIL_INFERENCE_INFER_ENGINE_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "inference/infer-private.h"
#include "inference/inference.h"
#include "inference/onnx-graph.h"

/* One Conv or Gemm node's int8 calibration (infer-calib.c). */
struct infer_quant_node {
	char *node;                /* the node's name in the graph */
	float input_range;         /* |x| the input is scaled to: scale = range / 127 */
	int channels;              /* output channels */
	float *weight_scale;       /* per output channel: max |w| / 127, 1 when all zero */
	int keep_fp32;             /* calibration found int8 too coarse here: run float32 */
};

/* One module's calibration, read from the package's INFER_CALIB_FILE. */
struct infer_quant {
	char *file;                /* the module file name */
	char *sha256;              /* of the module file it was made for */
	int n_nodes;
	struct infer_quant_node *nodes;
};

/* Reads the calibration file at path for the modules named groups[0..n)
 * ("vision", "signal", "decision"): out[i] for groups[i]. 0, or
 * INFER_ECALIB with *err naming the file (and line and key where there is
 * one) when it is missing, unreadable, fails its checksum or lacks a
 * module. */
int infer_quant_load(const char *path, const char *const *groups, int n,
		     struct infer_quant **out, char **err);
void infer_quant_free(struct infer_quant *q);

/* The entry for node, or NULL with *err naming the node when q has none
 * or one of another channel count. */
const struct infer_quant_node *infer_quant_node_for(const struct infer_quant *q,
						   const onnx_graph *g,
						   const struct onnx_node *n, char **err);

/* A Conv's or Gemm's weights as rows, one per output channel: channels
 * and k (the row length). */
void infer_quant_dims(const onnx_graph *g, const struct onnx_node *n, int *channels, size_t *k);
/* Per output channel max |w| / 127 (1 for an all-zero channel) into scale. */
void infer_quant_weight_scales(const onnx_graph *g, const struct onnx_node *n, float *scale);
/* The weights in int8 rows, out[oc * k + i], Gemm's B transposed when
 * needed so that a row is always one output's weights. */
void infer_quant_weights(const onnx_graph *g, const struct onnx_node *n, const float *scale,
			 int8_t *out);

/* Symmetric int8 with round-to-nearest-even, as the GPU's __float2int_rn. */
static inline int8_t infer_quantize(float x, float inv_scale)
{
	float q = nearbyintf(x * inv_scale);

	if (q != q)
		return 0;
	return (int8_t)(q > 127.0f ? 127 : q < -127.0f ? -127 : q);
}

/* x rounded to the nearest half (IEEE binary16), ties to even, as the
 * GPU's __float2half_rn: subnormals below 2^-14 in steps of 2^-24, and
 * beyond the largest half (65504) infinity from 65520 on. */
static inline float infer_round_half(float x)
{
	float a = fabsf(x), q;
	int e;

	if (!(a < INFINITY))
		return x;
	if (a >= 65520.0f)
		return copysignf(INFINITY, x);
	if (a < 0x1p-14f) {
		q = 0x1p-24f;
	} else {
		(void)frexpf(a, &e); /* a = f 2^e, f in [0.5, 1): 10 bits below 2^(e-1) */
		q = ldexpf(1.0f, e - 11);
	}
	/* a / q < 2^11 is exact, and so is the product */
	return copysignf(nearbyintf(a / q) * q, x);
}

/* x rounded to the nearest bfloat16 (float32's top 16 bits), ties to even,
 * as __float2bfloat16_rn. */
static inline float infer_round_bf16(float x)
{
	union { float f; uint32_t u; } v = { .f = x };

	if (x != x)
		return x;
	v.u = (v.u + 0x7fffu + ((v.u >> 16) & 1u)) & 0xffff0000u;
	return v.f;
}

/* The reference executor: plain C, float32, one thread; the yardstick the
 * other engines are checked against. */
typedef struct ref_module ref_module;

ref_module *ref_module_load(const char *onnx_path, char **err);
/* The int8 executor: every Conv and Gemm from quant (which must cover
 * them), the rest in float32. */
ref_module *ref_module_load_int8(const char *onnx_path, const struct infer_quant *quant,
				 char **err);
/* The half-precision executor (fp16 or bf16 in p): what the cuda backend
 * stores, rounded the same way. The input, every Conv and Gemm weight and
 * every node's output are rounded to p, a Conv's and a Gemm's output both
 * before and after the (float32) bias is added; sums are float32 or
 * wider. It predicts on the CPU what a GPU's half-precision run does to
 * the scores and verdicts (docs/inference-engine.md); it is not exact,
 * since the GPU's sums run in another order. */
ref_module *ref_module_load_half(const char *onnx_path, enum infer_precision p, char **err);
void ref_module_free(ref_module *m);
const onnx_graph *ref_module_graph(const ref_module *m);

/* Runs the graph on in (shape: ndim dims, any batch). 0 or a negative
 * errno with *err (g_free). */
int ref_module_forward(ref_module *m, const float *in, const int *shape, int ndim, char **err);

/* Output i (graph order) of the last forward; owned by m, valid until the
 * next forward. NULL when i is out of range. */
const float *ref_module_output(const ref_module *m, int i, size_t *len);
/* Node's output computed in int8 from its float input of the last forward
 * (ranges and scales from qn), into y (the output's count of floats); for
 * calibration to measure what int8 costs at each node. */
void ref_module_node_int8(const ref_module *m, int node, const struct infer_quant_node *qn,
			  float *y);

/* Any tensor (graph index) of the last forward, for calibration; the
 * input is the caller's memory given to that forward (in fp16 / bf16 its
 * rounded copy). NULL before one. */
const float *ref_module_tensor(const ref_module *m, int t, size_t *len);

/* Copies the requested outputs of an engine's last forward (struct
 * infer_backend's run contract) from output(module, i, &len), graph order.
 * A NULL name takes the first graph output no other request names. */
struct infer_tensor;
int engine_copy_outputs(const onnx_graph *g,
			const float *(*output)(const void *module, int i, size_t *len),
			const void *module, struct infer_tensor *out, int n_out, char **err);

#ifdef VIGIL_HAVE_CUDA
/* The cuda backend (infer-cuda.c), a module from one of the infer_backend_cuda*
 * tables' load: the same contract as ref_module_forward / _output. */
int cuda_module_forward(void *module, const float *in, const int *shape, int ndim, char **err);
const float *cuda_module_output(const void *module, int i, size_t *len);
#endif

#endif
