/* The cuda backend: the ONNX graph (onnx-graph.c) on an NVIDIA GPU.
 * Convolutions and pooling through cuDNN (legacy API, still in cuDNN 9),
 * GEMMs through cuBLAS, the rest as our own kernels
 * (infer-cuda-kernels.cu). Weights are uploaded once at load; buffers,
 * descriptors and algorithms are chosen once per input shape, and the
 * whole forward is captured in a CUDA graph that each run replays.
 *
 * Precision ([model] precision): fp32 (no TF32, so it matches the CPU
 * backends), fp16 and bf16 (activations and weights in half / bfloat16 on
 * tensor cores, accumulation in float), int8 (Conv and Gemm with int8
 * weights per output channel and inputs per tensor from the package's
 * calibration, int32 sums, in our kernels; everything else float32).
 *
 * Batches: the graph is captured for a batch of B parts, B the smallest
 * power of two that holds the largest batch asked for so far; a smaller
 * batch runs in it padded (the spare parts' rows are computed and
 * ignored), so a line whose batch size changes from part to part does
 * not capture a graph each time. Every supported operator treats the
 * parts of a batch independently, so the padding cannot change a real
 * part's result. */
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>
#include <errno.h>
#include <glib.h>
#include <string.h>

#include "inference/infer-cuda-kernels.h"
#include "inference/infer-engine.h"
#include "inference/onnx-graph.h"
#include "inference/inference.h"

/* cuBLAS workspace, bytes. */
#define BLAS_WORKSPACE (32 << 20)

struct cuda_node {
	cudnnTensorDescriptor_t x, y;
	cudnnFilterDescriptor_t w;
	cudnnConvolutionDescriptor_t conv;
	cudnnPoolingDescriptor_t pool;
	cudnnConvolutionFwdAlgo_t algo;
	int act;                   /* VK_ACT_* fused into this node's output */
	int skip;                  /* a Relu folded into the node before it */
};

/* A Conv or Gemm in int8: uploaded once at load (free_plan leaves it). */
struct cuda_qnode {
	int8_t *w;                 /* device: rows of k weights, one per output channel;
				    * NULL for a node the calibration keeps in float32 */
	float *dequant;            /* device: per output channel input scale * weight scale */
	float inv_scale;           /* 127 / input range */
};

typedef struct cuda_module {
	onnx_graph *g;
	int type;                  /* VK_F32 / VK_F16 / VK_BF16 */
	struct cuda_qnode *q;      /* per node, int8 only (type VK_F32); NULL otherwise */
	int8_t *xq;                /* the int8 input of the node running */
	cudnnDataType_t dt;
	cudaDataType_t ct;
	cudaStream_t stream;
	cudnnHandle_t dnn;
	cublasHandle_t blas;
	void *blas_ws;
	void **dev;                /* per tensor, in `type`: weights (uploaded once) and activations */
	float **bias32;            /* per tensor: float32 copies of biases */
	struct cuda_node *nodes;
	void *ws;                  /* cuDNN workspace */
	size_t ws_size;
	float *in32, *out32;       /* float32 staging for the input and all outputs */
	float *host_out;           /* the outputs of the last run, on the host */
	size_t in_n, *out_off;     /* output i is out32[out_off[i] .. out_off[i + 1]) */
	int ndim, shape[ONNX_MAX_DIMS]; /* the planned input; shape[0] the batch B */
	int padded;                /* every output leads with B: smaller batches fit */
	int run_n;                 /* parts in the last forward, <= B */
	cudaGraphExec_t exec;
} cuda_module;

static size_t elem_size(int type)
{
	return type == VK_F32 ? 4 : 2;
}

static int cuda_fail(cudaError_t e, const char *what, char **err)
{
	if (e == cudaSuccess)
		return 0;
	*err = g_strdup_printf("cuda: %s: %s", what, cudaGetErrorString(e));
	return -EIO;
}

static int dnn_fail(cudnnStatus_t s, const char *what, char **err)
{
	if (s == CUDNN_STATUS_SUCCESS)
		return 0;
	*err = g_strdup_printf("cuDNN: %s: %s", what, cudnnGetErrorString(s));
	return -EIO;
}

static int blas_fail(cublasStatus_t s, const char *what, char **err)
{
	if (s == CUBLAS_STATUS_SUCCESS)
		return 0;
	*err = g_strdup_printf("cuBLAS: %s: %s", what, cublasGetStatusString(s));
	return -EIO;
}

static int kern_fail(int e, const char *what, char **err)
{
	return cuda_fail((cudaError_t)e, what, err);
}

static void free_plan(cuda_module *m)
{
	if (m->exec)
		cudaGraphExecDestroy(m->exec);
	m->exec = NULL;
	/* folded Relus share their producer's buffer: forget them first */
	for (int i = 0; m->nodes && m->dev && i < m->g->n_nodes; i++)
		if (m->nodes[i].skip)
			m->dev[m->g->nodes[i].out[0]] = NULL;
	for (int i = 0; m->nodes && i < m->g->n_nodes; i++) {
		struct cuda_node *c = &m->nodes[i];

		if (c->x)
			cudnnDestroyTensorDescriptor(c->x);
		if (c->y)
			cudnnDestroyTensorDescriptor(c->y);
		if (c->w)
			cudnnDestroyFilterDescriptor(c->w);
		if (c->conv)
			cudnnDestroyConvolutionDescriptor(c->conv);
		if (c->pool)
			cudnnDestroyPoolingDescriptor(c->pool);
		memset(c, 0, sizeof *c);
	}
	for (int i = 0; m->dev && i < m->g->n_tensors; i++)
		if (m->g->tensors[i].producer >= 0 || i == m->g->input) {
			cudaFree(m->dev[i]);
			m->dev[i] = NULL;
		}
	cudaFree(m->ws);
	cudaFree(m->xq);
	m->xq = NULL;
	cudaFree(m->in32);
	cudaFree(m->out32);
	m->ws = NULL;
	m->in32 = m->out32 = NULL;
	g_free(m->host_out);
	m->host_out = NULL;
	m->ws_size = 0;
	m->ndim = 0;
}

static void cuda_module_free(void *module)
{
	cuda_module *m = module;

	if (!m)
		return;
	if (m->g) {
		free_plan(m);
		for (int i = 0; m->dev && i < m->g->n_tensors; i++)
			cudaFree(m->dev[i]);
		for (int i = 0; m->bias32 && i < m->g->n_tensors; i++)
			cudaFree(m->bias32[i]);
		for (int i = 0; m->q && i < m->g->n_nodes; i++) {
			cudaFree(m->q[i].w);
			cudaFree(m->q[i].dequant);
		}
	}
	g_free(m->q);
	g_free(m->dev);
	g_free(m->bias32);
	g_free(m->nodes);
	g_free(m->out_off);
	cudaFree(m->blas_ws);
	if (m->blas)
		cublasDestroy(m->blas);
	if (m->dnn)
		cudnnDestroy(m->dnn);
	if (m->stream)
		cudaStreamDestroy(m->stream);
	onnx_graph_free(m->g);
	g_free(m);
}

/* Uploads an initializer in the module's type (and a float copy for biases). */
static int upload(cuda_module *m, int t, int as_bias, char **err)
{
	const struct onnx_tensor *ts = &m->g->tensors[t];
	size_t n = onnx_tensor_count(ts);
	float *tmp = NULL;
	int rc;

	/* A tensor may be one node's weight and another's bias: each once. */
	if (as_bias ? m->bias32[t] != NULL : m->dev[t] != NULL)
		return 0;
	/* On the module's stream: it is non-blocking, so nothing orders it
	 * after a copy on the legacy default stream (cudaMemcpy), and the
	 * conversion below must read the finished copy. */
	if ((rc = cuda_fail(cudaMalloc((void **)&tmp, n * 4 + 4), "cudaMalloc", err)) < 0 ||
	    (rc = cuda_fail(cudaMemcpyAsync(tmp, ts->data, n * 4, cudaMemcpyHostToDevice,
					    m->stream), "weight upload", err)) < 0)
		goto out;
	if (as_bias) {
		m->bias32[t] = tmp;
		tmp = NULL;
	} else if (m->type == VK_F32) {
		m->dev[t] = tmp;
		tmp = NULL;
	} else {
		if ((rc = cuda_fail(cudaMalloc(&m->dev[t], n * elem_size(m->type) + 4), "cudaMalloc",
				    err)) < 0 ||
		    (rc = kern_fail(vk_convert(m->dev[t], m->type, tmp, VK_F32, n, m->stream),
				    "weight conversion", err)) < 0)
			goto out;
	}
out:
	if (rc == 0)
		rc = cuda_fail(cudaStreamSynchronize(m->stream), "weight upload", err);
	cudaFree(tmp);
	return rc;
}

/* Node i's weights in int8 and its dequantization scales, on the device. */
static int upload_int8(cuda_module *m, int i, const struct infer_quant_node *qn, char **err)
{
	const struct onnx_node *n = &m->g->nodes[i];
	struct cuda_qnode *q = &m->q[i];
	int channels, rc;
	size_t k;
	int8_t *w;
	float *dequant;

	infer_quant_dims(m->g, n, &channels, &k);
	w = g_new(int8_t, (size_t)channels * k);
	dequant = g_new(float, channels);
	infer_quant_weights(m->g, n, qn->weight_scale, w);
	for (int c = 0; c < channels; c++)
		dequant[c] = qn->input_range / 127.0f * qn->weight_scale[c];
	q->inv_scale = 127.0f / qn->input_range;
	/* on a failure q->w and q->dequant are freed with the module */
	if ((rc = cuda_fail(cudaMalloc((void **)&q->w, (size_t)channels * k + 4), "cudaMalloc",
			    err)) == 0 &&
	    (rc = cuda_fail(cudaMalloc((void **)&q->dequant, sizeof(float) * (size_t)channels),
			    "cudaMalloc", err)) == 0 &&
	    (rc = cuda_fail(cudaMemcpyAsync(q->w, w, (size_t)channels * k, cudaMemcpyHostToDevice,
					    m->stream), "weight upload", err)) == 0 &&
	    (rc = cuda_fail(cudaMemcpyAsync(q->dequant, dequant, sizeof(float) * (size_t)channels,
					    cudaMemcpyHostToDevice, m->stream), "weight upload",
			    err)) == 0)
		rc = cuda_fail(cudaStreamSynchronize(m->stream), "weight upload", err);
	g_free(w);
	g_free(dequant);
	return rc;
}

static void *cuda_load(const char *onnx_path, cudnnDataType_t dt, cudaDataType_t ct, int type,
		       const struct infer_quant *quant, char **err)
{
	cuda_module *m = g_new0(cuda_module, 1);
	int devices = 0, rc;
	cudaError_t e = cudaGetDeviceCount(&devices);

	if (e != cudaSuccess || devices == 0) {
		*err = g_strdup_printf("cuda backend: no CUDA device (%s)",
				       e != cudaSuccess ? cudaGetErrorString(e) : "none found");
		g_free(m);
		return NULL;
	}
	m->type = type;
	m->dt = dt;
	m->ct = ct;
	m->g = onnx_graph_load(onnx_path, err);
	if (!m->g)
		goto fail;
	m->dev = g_new0(void *, m->g->n_tensors);
	m->bias32 = g_new0(float *, m->g->n_tensors);
	m->nodes = g_new0(struct cuda_node, m->g->n_nodes);
	m->out_off = g_new0(size_t, m->g->n_outputs + 1);
	if (quant)
		m->q = g_new0(struct cuda_qnode, m->g->n_nodes);
	if ((rc = cuda_fail(cudaStreamCreateWithFlags(&m->stream, cudaStreamNonBlocking),
			    "stream", err)) < 0 ||
	    (rc = dnn_fail(cudnnCreate(&m->dnn), "create", err)) < 0 ||
	    (rc = dnn_fail(cudnnSetStream(m->dnn, m->stream), "stream", err)) < 0 ||
	    (rc = blas_fail(cublasCreate(&m->blas), "create", err)) < 0 ||
	    (rc = blas_fail(cublasSetStream(m->blas, m->stream), "stream", err)) < 0 ||
	    /* A fixed workspace: cuBLAS must not allocate inside graph capture.
	     * 32 MiB is what cuBLAS's guide suggests for Hopper (less only
	     * rules out some kernels). */
	    (rc = cuda_fail(cudaMalloc(&m->blas_ws, BLAS_WORKSPACE), "cudaMalloc", err)) < 0 ||
	    (rc = blas_fail(cublasSetWorkspace(m->blas, m->blas_ws, BLAS_WORKSPACE), "workspace",
			    err)) < 0 ||
	    (rc = blas_fail(cublasSetMathMode(m->blas, type == VK_F32 ? CUBLAS_PEDANTIC_MATH
					      : CUBLAS_DEFAULT_MATH), "math mode", err)) < 0)
		goto fail;
	for (int i = 0; i < m->g->n_nodes; i++) {
		const struct onnx_node *n = &m->g->nodes[i];

		if (n->op == ONNX_OP_CONV && (n->a.pads[0] != n->a.pads[2] ||
					      n->a.pads[1] != n->a.pads[3])) {
			*err = g_strdup_printf("%s: node '%s' (Conv): asymmetric padding is not "
					       "supported by the cuda backend", onnx_path, n->name);
			goto fail;
		}
		if (n->op == ONNX_OP_MAXPOOL && (n->a.pads[0] || n->a.pads[1] || n->a.pads[2] ||
						 n->a.pads[3])) {
			*err = g_strdup_printf("%s: node '%s' (MaxPool): padding is not supported "
					       "by the cuda backend", onnx_path, n->name);
			goto fail;
		}
		if (n->op == ONNX_OP_CONV || n->op == ONNX_OP_GEMM) {
			/* int8 unless the calibration kept the node in float32 */
			const struct infer_quant_node *qn = NULL;

			if (quant && !(qn = infer_quant_node_for(quant, m->g, n, err)))
				goto fail;
			if ((qn && !qn->keep_fp32 ? upload_int8(m, i, qn, err)
			     : upload(m, n->in[1], 0, err)) < 0 ||
			    (n->n_in > 2 && n->in[2] >= 0 && upload(m, n->in[2], 1, err) < 0))
				goto fail;
		}
	}
	return m;
fail:
	cuda_module_free(m);
	return NULL;
}

static int set4d(cudnnTensorDescriptor_t *d, cudnnDataType_t dt, const struct onnx_tensor *t,
		 char **err)
{
	int rc = dnn_fail(cudnnCreateTensorDescriptor(d), "tensor descriptor", err);

	if (rc < 0)
		return rc;
	return dnn_fail(cudnnSetTensor4dDescriptor(*d, CUDNN_TENSOR_NCHW, dt, t->dims[0],
						   t->dims[1], t->dims[2], t->dims[3]),
			"tensor descriptor", err);
}

/* A convolution algorithm that sums the products as a direct
 * convolution does, rather than through a transform. */
static int sums_products(cudnnConvolutionFwdAlgo_t a)
{
	return a == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM ||
	       a == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM ||
	       a == CUDNN_CONVOLUTION_FWD_ALGO_GEMM || a == CUDNN_CONVOLUTION_FWD_ALGO_DIRECT;
}

static int plan_node(cuda_module *m, int i, char **err)
{
	const struct onnx_node *n = &m->g->nodes[i];
	const struct onnx_tensor *x = &m->g->tensors[n->in[0]], *y = &m->g->tensors[n->out[0]];
	struct cuda_node *c = &m->nodes[i];
	int rc;

	if (n->op == ONNX_OP_CONV && !(m->q && m->q[i].w)) {
		const struct onnx_tensor *w = &m->g->tensors[n->in[1]];
		cudnnConvolutionFwdAlgoPerf_t perf[8];
		int found = 0;
		size_t ws = 0;

		if ((rc = set4d(&c->x, m->dt, x, err)) < 0 || (rc = set4d(&c->y, m->dt, y, err)) < 0 ||
		    (rc = dnn_fail(cudnnCreateFilterDescriptor(&c->w), "filter", err)) < 0 ||
		    (rc = dnn_fail(cudnnSetFilter4dDescriptor(c->w, m->dt, CUDNN_TENSOR_NCHW,
							      w->dims[0], w->dims[1], w->dims[2],
							      w->dims[3]), "filter", err)) < 0 ||
		    (rc = dnn_fail(cudnnCreateConvolutionDescriptor(&c->conv), "convolution", err)) < 0 ||
		    (rc = dnn_fail(cudnnSetConvolution2dDescriptor(c->conv, n->a.pads[0], n->a.pads[1],
								   n->a.strides[0], n->a.strides[1],
								   n->a.dilations[0], n->a.dilations[1],
								   CUDNN_CROSS_CORRELATION,
								   CUDNN_DATA_FLOAT), "convolution", err)) < 0 ||
		    (rc = dnn_fail(cudnnSetConvolutionGroupCount(c->conv, n->a.group), "group", err)) < 0 ||
		    /* float32 stays float32 (no TF32) so it agrees with the CPU backends. */
		    (rc = dnn_fail(cudnnSetConvolutionMathType(c->conv, m->type == VK_F32 ? CUDNN_FMA_MATH
							       : CUDNN_TENSOR_OP_MATH), "math", err)) < 0 ||
		    (rc = dnn_fail(cudnnGetConvolutionForwardAlgorithm_v7(m->dnn, c->x, c->w, c->conv,
									  c->y, 8, &found, perf),
				   "algorithm", err)) < 0)
			return rc;
		/* The fastest that cuDNN can run. In half precision the math type
		 * is part of the choice. In fp32 the fastest in FMA math (no
		 * TF32), the descriptor staying FMA, and of those one that sums
		 * the products themselves (implicit GEMM, GEMM, direct) before
		 * one that transforms them (FFT, Winograd), whose rounding is
		 * larger: fp32 is the precision that must match the CPU. */
		{
			int pick = -1, rank = 0;

			for (int k = 0; k < found; k++) {
				int r;

				if (perf[k].status != CUDNN_STATUS_SUCCESS)
					continue;
				if (m->type != VK_F32)
					r = 3;
				else if (perf[k].mathType != CUDNN_FMA_MATH)
					r = 1;
				else
					r = sums_products(perf[k].algo) ? 3 : 2;
				if (r > rank) {
					pick = k;
					rank = r;
				}
			}
			if (pick < 0) {
				*err = g_strdup_printf("cuDNN: node '%s' (Conv): no forward algorithm for "
						       "this shape and precision", n->name);
				return -EIO;
			}
			c->algo = perf[pick].algo;
			if (m->type != VK_F32 &&
			    (rc = dnn_fail(cudnnSetConvolutionMathType(c->conv, perf[pick].mathType),
					   "math", err)) < 0)
				return rc;
		}
		if ((rc = dnn_fail(cudnnGetConvolutionForwardWorkspaceSize(m->dnn, c->x, c->w, c->conv,
									   c->y, c->algo, &ws),
				   "workspace", err)) < 0)
			return rc;
		if (ws > m->ws_size)
			m->ws_size = ws;
	} else if (n->op == ONNX_OP_MAXPOOL || n->op == ONNX_OP_GLOBALAVGPOOL) {
		int gap = n->op == ONNX_OP_GLOBALAVGPOOL;

		if ((rc = set4d(&c->x, m->dt, x, err)) < 0 || (rc = set4d(&c->y, m->dt, y, err)) < 0 ||
		    (rc = dnn_fail(cudnnCreatePoolingDescriptor(&c->pool), "pooling", err)) < 0 ||
		    (rc = dnn_fail(cudnnSetPooling2dDescriptor(
				   c->pool, gap ? CUDNN_POOLING_AVERAGE_COUNT_INCLUDE_PADDING
				   : CUDNN_POOLING_MAX_DETERMINISTIC, CUDNN_NOT_PROPAGATE_NAN,
				   gap ? x->dims[2] : n->a.kernel[0], gap ? x->dims[3] : n->a.kernel[1],
				   0, 0, gap ? 1 : n->a.strides[0], gap ? 1 : n->a.strides[1]),
				   "pooling", err)) < 0)
			return rc;
	}
	/* A Relu right after a Conv or Gemm whose output nothing else reads
	 * runs inside that node's bias kernel. */
	if ((n->op == ONNX_OP_CONV || n->op == ONNX_OP_GEMM) && i + 1 < m->g->n_nodes &&
	    m->g->nodes[i + 1].op == ONNX_OP_RELU && m->g->nodes[i + 1].in[0] == n->out[0]) {
		int readers = 0, is_output = 0;

		for (int k = 0; k < m->g->n_nodes; k++)
			for (int j = 0; j < m->g->nodes[k].n_in; j++)
				readers += m->g->nodes[k].in[j] == n->out[0];
		for (int k = 0; k < m->g->n_outputs; k++)
			is_output |= m->g->outputs[k] == n->out[0];
		if (readers == 1 && !is_output) {
			c->act = VK_ACT_RELU;
			m->nodes[i + 1].skip = 1;
		}
	}
	return 0;
}

/* A Conv or Gemm in int8: its input quantized, then our kernel. */
static int enqueue_int8(cuda_module *m, int i, char **err)
{
	const onnx_graph *g = m->g;
	const struct onnx_node *n = &g->nodes[i];
	const struct cuda_qnode *q = &m->q[i];
	const struct onnx_tensor *xt = &g->tensors[n->in[0]], *yt = &g->tensors[n->out[0]];
	int has_b = n->n_in > 2 && n->in[2] >= 0;
	const float *bias = has_b ? m->bias32[n->in[2]] : NULL;
	int rc;

	if ((rc = kern_fail(vk_quantize(m->xq, m->dev[n->in[0]], onnx_tensor_count(xt),
					q->inv_scale, m->stream), n->name, err)) < 0)
		return rc;
	if (n->op == ONNX_OP_CONV) {
		const struct onnx_tensor *wt = &g->tensors[n->in[1]];
		struct vk_conv s = {
			.batch = xt->dims[0], .c = xt->dims[1], .h = xt->dims[2], .w = xt->dims[3],
			.oc = yt->dims[1], .oh = yt->dims[2], .ow = yt->dims[3],
			.kh = wt->dims[2], .kw = wt->dims[3], .group = n->a.group,
			.stride = { n->a.strides[0], n->a.strides[1] },
			.pad = { n->a.pads[0], n->a.pads[1] },
			.dilation = { n->a.dilations[0], n->a.dilations[1] },
		};

		return kern_fail(vk_conv_int8(m->dev[n->out[0]], m->xq, q->w, q->dequant, bias, &s,
					      m->nodes[i].act, m->stream), n->name, err);
	}
	{
		int channels;
		size_t k;

		infer_quant_dims(g, n, &channels, &k);
		return kern_fail(vk_gemm_int8(m->dev[n->out[0]], m->xq, q->w, q->dequant, n->a.alpha,
					      bias, has_b ? onnx_tensor_count(&g->tensors[n->in[2]])
					      : 0, n->a.beta, yt->dims[0], yt->dims[1], (int)k,
					      n->a.trans_a, m->nodes[i].act, m->stream),
				 n->name, err);
	}
}

/* Enqueues the forward; captured once per shape into m->exec. */
static int enqueue(cuda_module *m, char **err)
{
	const onnx_graph *g = m->g;
	const float one = 1.0f, zero = 0.0f;
	int rc;

	if ((rc = kern_fail(vk_convert(m->dev[g->input], m->type, m->in32, VK_F32, m->in_n,
				       m->stream), "input conversion", err)) < 0)
		return rc;
	for (int i = 0; i < g->n_nodes; i++) {
		const struct onnx_node *n = &g->nodes[i];
		struct cuda_node *c = &m->nodes[i];
		const struct onnx_tensor *xt = &g->tensors[n->in[0]], *yt = &g->tensors[n->out[0]];
		void *x = m->dev[n->in[0]], *y = m->dev[n->out[0]];
		size_t count = onnx_tensor_count(yt);

		if (c->skip) {
			/* folded: the output is the producer's buffer */
			continue;
		}
		if (m->q && m->q[i].w) {
			if ((rc = enqueue_int8(m, i, err)) < 0)
				return rc;
			continue;
		}
		switch (n->op) {
		case ONNX_OP_CONV:
			if ((rc = dnn_fail(cudnnConvolutionForward(m->dnn, &one, c->x, x, c->w,
								   m->dev[n->in[1]], c->conv, c->algo,
								   m->ws, m->ws_size, &zero, c->y, y),
					   n->name, err)) < 0 ||
			    (rc = kern_fail(vk_bias_act(y, m->type, n->n_in > 2 && n->in[2] >= 0
							? m->bias32[n->in[2]] : NULL, 1.0f, count,
							(size_t)yt->dims[2] * yt->dims[3],
							(size_t)yt->dims[1], c->act, m->stream),
					    n->name, err)) < 0)
				return rc;
			break;
		case ONNX_OP_MAXPOOL:
		case ONNX_OP_GLOBALAVGPOOL:
			if ((rc = dnn_fail(cudnnPoolingForward(m->dnn, c->pool, &one, c->x, x, &zero,
							       c->y, y), n->name, err)) < 0)
				return rc;
			break;
		case ONNX_OP_RELU:
		case ONNX_OP_SIGMOID:
			if ((rc = kern_fail(vk_act(y, x, m->type, count, n->op == ONNX_OP_RELU
						   ? VK_ACT_RELU : VK_ACT_SIGMOID, m->stream),
					    n->name, err)) < 0)
				return rc;
			break;
		case ONNX_OP_CONCAT: {
			size_t outer = 1, row = 1, at = 0;

			for (int d = 0; d < n->a.axis; d++)
				outer *= (size_t)yt->dims[d];
			row = count / outer;
			for (int k = 0; k < n->n_in; k++) {
				size_t chunk = onnx_tensor_count(&g->tensors[n->in[k]]) / outer;

				if ((rc = kern_fail(vk_concat_part(y, m->dev[n->in[k]], m->type, outer,
								   chunk, row, at, m->stream),
						    n->name, err)) < 0)
					return rc;
				at += chunk;
			}
			break;
		}
		case ONNX_OP_FLATTEN:
			if ((rc = cuda_fail(cudaMemcpyAsync(y, x, count * elem_size(m->type),
							    cudaMemcpyDeviceToDevice, m->stream),
					    n->name, err)) < 0)
				return rc;
			break;
		case ONNX_OP_GEMM: {
			/* Row-major Y[M,N] = op(A)[M,K] op(B)[K,N] is column-major
			 * Y^T = op(B)^T op(A)^T: B's buffer first. */
			const struct onnx_tensor *bt = &g->tensors[n->in[1]];
			int mm = yt->dims[0], nn = yt->dims[1];
			int kk = xt->dims[n->a.trans_a ? 0 : 1];
			int has_c = n->n_in > 2 && n->in[2] >= 0;

			if ((rc = blas_fail(cublasGemmEx(m->blas,
							 n->a.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
							 n->a.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
							 nn, mm, kk, &n->a.alpha,
							 m->dev[n->in[1]], m->ct, bt->dims[1],
							 x, m->ct, xt->dims[1], &zero, y, m->ct, nn,
							 CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
					    n->name, err)) < 0)
				return rc;
			if (has_c || c->act) {
				size_t nc = has_c ? onnx_tensor_count(&g->tensors[n->in[2]]) : 1;

				if ((rc = kern_fail(vk_bias_act(y, m->type, has_c ? m->bias32[n->in[2]]
								: NULL, n->a.beta, count, 1,
								nc == 1 ? 1 : (size_t)nn, c->act,
								m->stream), n->name, err)) < 0)
					return rc;
			}
			break;
		}
		case ONNX_OP_COUNT:
			break;
		}
	}
	for (int i = 0; i < g->n_outputs; i++)
		if ((rc = kern_fail(vk_convert(m->out32 + m->out_off[i], VK_F32, m->dev[g->outputs[i]],
					       m->type, m->out_off[i + 1] - m->out_off[i], m->stream),
				    "output conversion", err)) < 0)
			return rc;
	return 0;
}

static int plan(cuda_module *m, const int *shape, int ndim, char **err)
{
	onnx_graph *g = m->g;
	cudaGraph_t graph = NULL;
	int planned[ONNX_MAX_DIMS], batch = 1, rc;

	if (ndim == m->ndim && ndim > 0 &&
	    memcmp(shape + 1, m->shape + 1, sizeof(int) * (size_t)(ndim - 1)) == 0 &&
	    (shape[0] == m->shape[0] || (m->padded && shape[0] < m->shape[0])))
		return 0;
	if (ndim < 1 || ndim > ONNX_MAX_DIMS || shape[0] < 1) {
		*err = g_strdup_printf("cuda: input of %d dimensions cannot run", ndim);
		return -EINVAL;
	}
	while (batch < shape[0] && batch < (1 << 20))
		batch *= 2;
	if (ndim == m->ndim && memcmp(shape + 1, m->shape + 1, sizeof(int) * (size_t)(ndim - 1)) == 0 &&
	    m->shape[0] > batch)
		batch = m->shape[0];
	memcpy(planned, shape, sizeof(int) * (size_t)ndim);
	planned[0] = batch;
	free_plan(m);
	if ((rc = onnx_graph_infer_shapes(g, planned, ndim, err)) < 0)
		return rc;
	m->padded = 1;
	for (int i = 0; i < g->n_outputs; i++) {
		const struct onnx_tensor *t = &g->tensors[g->outputs[i]];

		if (t->ndim < 1 || t->dims[0] != batch)
			m->padded = 0;
	}
	/* An output that does not lead with the batch: plan the exact shape. */
	if (!m->padded && batch != shape[0]) {
		memcpy(planned, shape, sizeof(int) * (size_t)ndim);
		if ((rc = onnx_graph_infer_shapes(g, planned, ndim, err)) < 0)
			return rc;
	}
	for (int i = 0; i < g->n_nodes; i++)
		if ((rc = plan_node(m, i, err)) < 0)
			return rc;
	/* A folded Relu's output is its producer's buffer. */
	for (int i = 0; i < g->n_tensors; i++) {
		const struct onnx_tensor *t = &g->tensors[i];

		if ((t->producer < 0 && i != g->input) || (t->producer >= 0 && m->nodes[t->producer].skip))
			continue;
		if ((rc = cuda_fail(cudaMalloc(&m->dev[i], onnx_tensor_count(t) *
					       elem_size(m->type) + 16), "activation buffer", err)) < 0)
			return rc;
	}
	for (int i = 0; i < g->n_nodes; i++)
		if (m->nodes[i].skip)
			m->dev[g->nodes[i].out[0]] = m->dev[g->nodes[i].in[0]];
	if (m->q) {
		size_t xn = 0;

		for (int i = 0; i < g->n_nodes; i++)
			if (g->nodes[i].op == ONNX_OP_CONV || g->nodes[i].op == ONNX_OP_GEMM)
				xn = MAX(xn, onnx_tensor_count(&g->tensors[g->nodes[i].in[0]]));
		if ((rc = cuda_fail(cudaMalloc((void **)&m->xq, xn + 16), "int8 buffer", err)) < 0)
			return rc;
	}
	m->in_n = onnx_tensor_count(&g->tensors[g->input]);
	for (int i = 0; i < g->n_outputs; i++)
		m->out_off[i + 1] = m->out_off[i] + onnx_tensor_count(&g->tensors[g->outputs[i]]);
	m->host_out = g_new(float, m->out_off[g->n_outputs] + 1);
	if ((rc = cuda_fail(cudaMalloc(&m->ws, m->ws_size + 16), "workspace", err)) < 0 ||
	    (rc = cuda_fail(cudaMalloc((void **)&m->in32, m->in_n * 4), "input", err)) < 0 ||
	    (rc = cuda_fail(cudaMalloc((void **)&m->out32, m->out_off[g->n_outputs] * 4), "output",
			    err)) < 0)
		return rc;
	/* One eager run first, on zeros: cuDNN and cuBLAS do their lazy set-up
	 * outside the capture, and a failure here is the arithmetic's, not the
	 * capture's. */
	if ((rc = cuda_fail(cudaMemsetAsync(m->in32, 0, m->in_n * 4, m->stream), "input clear",
			    err)) < 0 ||
	    (rc = enqueue(m, err)) < 0 ||
	    (rc = cuda_fail(cudaStreamSynchronize(m->stream), "first run", err)) < 0)
		return rc;
	if (!g_getenv("VIGIL_CUDA_NO_GRAPH")) {
		char *why = NULL;

		rc = cuda_fail(cudaStreamBeginCapture(m->stream, cudaStreamCaptureModeThreadLocal),
			       "graph capture", &why);
		if (rc == 0) {
			cudaError_t e;

			rc = enqueue(m, &why);
			e = cudaStreamEndCapture(m->stream, &graph);
			if (rc == 0)
				rc = cuda_fail(e, "graph capture", &why);
		}
		if (rc == 0)
			rc = cuda_fail(cudaGraphInstantiate(&m->exec, graph, 0), "graph instantiate",
				       &why);
		if (graph)
			cudaGraphDestroy(graph);
		if (rc < 0) {
			/* The eager run above worked: run eagerly, and say why. */
			(void)cudaGetLastError();
			m->exec = NULL;
			g_warning("cuda: %s: no CUDA graph, each run enqueued anew (%s)",
				  m->g->path, why ? why : "capture failed");
		}
		g_free(why);
	}
	/* The spare rows of a padded batch read zeros until a larger batch
	 * has run; then what it left, which no real part's rows ever mix with. */
	if ((rc = cuda_fail(cudaMemsetAsync(m->in32, 0, m->in_n * 4, m->stream), "input clear",
			    err)) < 0)
		return rc;
	m->ndim = ndim;
	memcpy(m->shape, planned, sizeof(int) * (size_t)ndim);
	return 0;
}

/* One forward from in, host or device memory (kind: its cudaMemcpyKind). */
static int forward(cuda_module *m, const float *in, enum cudaMemcpyKind kind, const int *shape,
		   int ndim, char **err)
{
	int rc = plan(m, shape, ndim, err);

	if (rc < 0) {
		free_plan(m);
		return rc;
	}
	m->run_n = shape[0];
	if ((rc = cuda_fail(cudaMemcpyAsync(m->in32, in, m->in_n / (size_t)m->shape[0] *
					    (size_t)shape[0] * 4, kind, m->stream),
			    "input copy", err)) < 0 ||
	    (rc = m->exec ? cuda_fail(cudaGraphLaunch(m->exec, m->stream), "graph launch", err)
			  : enqueue(m, err)) < 0 ||
	    (rc = cuda_fail(cudaMemcpyAsync(m->host_out, m->out32, m->out_off[m->g->n_outputs] * 4,
					    cudaMemcpyDeviceToHost, m->stream), "output copy",
			    err)) < 0 ||
	    (rc = cuda_fail(cudaStreamSynchronize(m->stream), "forward", err)) < 0)
		return rc;
	return 0;
}

int cuda_module_forward(void *module, const float *in, const int *shape, int ndim, char **err)
{
	return forward(module, in, cudaMemcpyHostToDevice, shape, ndim, err);
}

const float *cuda_module_output(const void *module, int i, size_t *len)
{
	const cuda_module *m = module;

	if (i < 0 || i >= m->g->n_outputs || !m->host_out)
		return NULL;
	/* A padded batch: the first run_n parts of the planned B. */
	*len = m->out_off[i + 1] - m->out_off[i];
	if (m->run_n < m->shape[0])
		*len = *len / (size_t)m->shape[0] * (size_t)m->run_n;
	return m->host_out + m->out_off[i];
}

/* struct infer_backend's run: the requested outputs of one forward. */
static int cuda_run(void *module, const float *in, const int *shape, int ndim,
		    struct infer_tensor *out, int n_out, char **err)
{
	int rc = cuda_module_forward(module, in, shape, ndim, err);

	if (rc < 0)
		return rc;
	return engine_copy_outputs(((cuda_module *)module)->g, cuda_module_output, module, out,
				   n_out, err);
}

/* struct infer_backend's run_device: the input is already on the GPU
 * (cuda-prep.h's buffers), on any stream that has finished with it. */
static int cuda_run_device(void *module, const float *dev_in, const int *shape, int ndim,
			   struct infer_tensor *out, int n_out, char **err)
{
	int rc = forward(module, dev_in, cudaMemcpyDeviceToDevice, shape, ndim, err);

	if (rc < 0)
		return rc;
	return engine_copy_outputs(((cuda_module *)module)->g, cuda_module_output, module, out,
				   n_out, err);
}

static void *load_f32(const char *p, char **err)
{
	return cuda_load(p, CUDNN_DATA_FLOAT, CUDA_R_32F, VK_F32, NULL, err);
}

/* [model] precision: fp16 and bf16 keep weights and activations in that
 * type on tensor cores, accumulating in float; int8 keeps activations in
 * float32 between the int8 Conv and Gemm nodes. */
static void *load_at(const char *p, enum infer_precision prec, const struct infer_quant *quant,
		     char **err)
{
	switch (prec) {
	case INFER_FP16:
		return cuda_load(p, CUDNN_DATA_HALF, CUDA_R_16F, VK_F16, NULL, err);
	case INFER_BF16:
		return cuda_load(p, CUDNN_DATA_BFLOAT16, CUDA_R_16BF, VK_BF16, NULL, err);
	case INFER_INT8:
		return cuda_load(p, CUDNN_DATA_FLOAT, CUDA_R_32F, VK_F32, quant, err);
	default:
		return load_f32(p, err);
	}
}

const struct infer_backend infer_backend_cuda = {
	.name = "cuda",
	.precisions = 1u << INFER_FP32 | 1u << INFER_FP16 | 1u << INFER_BF16 | 1u << INFER_INT8,
	.load = load_f32,
	.load_at = load_at,
	.run = cuda_run,
	.free = cuda_module_free,
	.run_device = cuda_run_device,
};
