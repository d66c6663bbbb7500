/* Private to inference/: the engines that run an onnx_graph themselves
 * (reference on the CPU, cuda on the GPU), beyond struct infer_backend's
 * one-output run: every graph output of the last forward, so a module
 * with a second output (the vision module's defect map) is served by the
 * same forward pass. */
#ifndef VIGIL_INFERENCE_INFER_ENGINE_H
#define VIGIL_INFERENCE_INFER_ENGINE_H

#include <stddef.h>

#include "inference/onnx-graph.h"

/* The reference executor: plain C, float32, one thread; the yardstick the
 * other engines are checked against. */
typedef struct ref_module ref_module;

ref_module *ref_module_load(const char *onnx_path, char **err);
void ref_module_free(ref_module *m);
const onnx_graph *ref_module_graph(const ref_module *m);

/* Runs the graph on in (shape: ndim dims, any batch). 0 or a negative
 * errno with *err (g_free). */
int ref_module_forward(ref_module *m, const float *in, const int *shape, int ndim, char **err);

/* Output i (graph order) of the last forward; owned by m, valid until the
 * next forward. NULL when i is out of range. */
const float *ref_module_output(const ref_module *m, int i, size_t *len);

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
