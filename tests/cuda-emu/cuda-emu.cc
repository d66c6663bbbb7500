// The CUDA emulation: the parts of the CUDA runtime, cuDNN, cuBLAS and
// cuFFT that inference/infer-cuda.c and inference/cuda-prep.c call,
// implemented on the CPU, so that the cuda backend's own code (planning,
// padded batches, folded activations, int8, CUDA graph capture and replay,
// GPU preprocessing) runs in the tests of a machine without a GPU. A mock
// by necessity: the real libraries need a device. It follows each
// library's documented semantics (cuBLAS column-major, cuDNN NCHW
// cross-correlation, unnormalised cuFFT) and refuses what they refuse
// where the backend could get it wrong: mismatched descriptors, a
// workspace smaller than the algorithm's, allocation or synchronisation
// during capture, a launch of over 1024 threads.
//
// Device memory is host memory filled with 0xff bytes (NaN as float) when
// allocated, as a real device's is garbage: a result that reads memory
// nothing wrote comes out NaN. Every operation runs when it is enqueued;
// on a capturing stream it is recorded, and cudaGraphLaunch replays it.
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <cudnn.h>
#include <cufft.h>
#include <fftw3.h>
#include <algorithm>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>

#include <functional>
#include <map>
#include <mutex>
#include <typeindex>
#include <vector>

#include "tests/cuda-emu/cuda-emu.h"

using op = std::function<void()>;

struct CUstream_st {
	bool capturing = false;
	bool broken = false;        // an operation not allowed in capture
	std::vector<op> recorded;
};

struct CUgraph_st {
	std::vector<op> ops;
};

struct CUgraphExec_st {
	std::vector<op> ops;
};

namespace {

std::recursive_mutex emu_lock;
cudaError_t last_error = cudaSuccess;
int capturing_streams = 0;
std::map<void *, size_t> allocations;

// Runs f now, or records it when s is capturing.
void submit(cudaStream_t s, op f)
{
	if (s && s->capturing)
		s->recorded.push_back(std::move(f));
	else
		f();
}

// ---- fibers: one per thread of the block running ----

constexpr size_t kStack = 64 << 10;

struct fiber {
	ucontext_t ctx;
	std::vector<char> stack;
	bool done;
};

ucontext_t scheduler;
std::vector<fiber> fibers;
fiber *running;
const std::function<void()> *fiber_body;
bool synced;                       // a fiber of this launch waited at a barrier
// Kernels that never reached a barrier in their first launch run their
// threads as plain calls after it (a fiber switch is two system calls).
std::map<std::type_index, bool> uses_barrier;

void fiber_main()
{
	(*fiber_body)();
	running->done = true;
}

void run_block(unsigned threads, const std::function<void()> &body)
{
	if (fibers.size() < threads)
		fibers.resize(threads);
	fiber_body = &body;
	for (unsigned t = 0; t < threads; t++) {
		fiber &f = fibers[t];

		if (f.stack.empty())
			f.stack.resize(kStack);
		getcontext(&f.ctx);
		f.ctx.uc_stack.ss_sp = f.stack.data();
		f.ctx.uc_stack.ss_size = f.stack.size();
		f.ctx.uc_link = &scheduler;
		f.done = false;
		makecontext(&f.ctx, fiber_main, 0);
	}
	// Round after round: each thread runs to its next barrier (or end).
	for (bool again = true; again;) {
		again = false;
		for (unsigned t = 0; t < threads; t++) {
			fiber &f = fibers[t];

			if (f.done)
				continue;
			running = &f;
			vk_emu_thread_idx = uint3{ t, 0, 0 };
			swapcontext(&scheduler, &f.ctx);
			again |= !f.done;
		}
	}
}

// ---- element types ----

float load(cudaDataType_t t, const void *p, size_t i)
{
	switch (t) {
	case CUDA_R_16F: return __half2float(((const __half *)p)[i]);
	case CUDA_R_16BF: return __bfloat162float(((const __nv_bfloat16 *)p)[i]);
	default: return ((const float *)p)[i];
	}
}

void store(cudaDataType_t t, void *p, size_t i, float v)
{
	switch (t) {
	case CUDA_R_16F: ((__half *)p)[i] = __float2half_rn(v); break;
	case CUDA_R_16BF: ((__nv_bfloat16 *)p)[i] = __float2bfloat16_rn(v); break;
	default: ((float *)p)[i] = v; break;
	}
}

bool dnn_type(cudnnDataType_t d, cudaDataType_t *t)
{
	switch (d) {
	case CUDNN_DATA_FLOAT: *t = CUDA_R_32F; return true;
	case CUDNN_DATA_HALF: *t = CUDA_R_16F; return true;
	case CUDNN_DATA_BFLOAT16: *t = CUDA_R_16BF; return true;
	default: return false;
	}
}

} // namespace

// ---- kernels (cuda-emu.h) ----

extern "C" {
uint3 vk_emu_thread_idx, vk_emu_block_idx;
dim3 vk_emu_block_dim, vk_emu_grid_dim;

void vk_emu_syncthreads(void)
{
	if (!running) {
		fprintf(stderr, "cuda-emu: __syncthreads() in a kernel that did not reach one in "
			"its first launch\n");
		abort();
	}
	synced = true;
	swapcontext(&running->ctx, &scheduler);
}
}

void vk_emu_launch(unsigned grid, unsigned block, cudaStream_t stream,
		   std::function<void()> body)
{
	std::lock_guard<std::recursive_mutex> g(emu_lock);

	if (grid == 0 || block == 0 || block > 1024) {
		last_error = cudaErrorInvalidConfiguration;
		return;
	}
	submit(stream, [grid, block, body]() {
		std::lock_guard<std::recursive_mutex> g2(emu_lock);

		auto known = uses_barrier.find(std::type_index(body.target_type()));

		vk_emu_grid_dim = dim3(grid, 1, 1);
		vk_emu_block_dim = dim3(block, 1, 1);
		synced = false;
		for (unsigned b = 0; b < grid; b++) {
			vk_emu_block_idx = uint3{ b, 0, 0 };
			if (known != uses_barrier.end() && !known->second) {
				for (unsigned t = 0; t < block; t++) {
					vk_emu_thread_idx = uint3{ t, 0, 0 };
					body();
				}
			} else {
				run_block(block, body);
			}
		}
		running = NULL;
		if (known == uses_barrier.end())
			uses_barrier[std::type_index(body.target_type())] = synced;
	});
}

// ---- the runtime ----

extern "C" {

cudaError_t cudaGetDeviceCount(int *count)
{
	*count = 1;
	return cudaSuccess;
}

cudaError_t cudaGetLastError(void)
{
	std::lock_guard<std::recursive_mutex> g(emu_lock);
	cudaError_t e = last_error;

	last_error = cudaSuccess;
	return e;
}

const char *cudaGetErrorString(cudaError_t e)
{
	switch (e) {
	case cudaSuccess: return "no error (emulated)";
	case cudaErrorInvalidValue: return "invalid argument (emulated)";
	case cudaErrorMemoryAllocation: return "out of memory (emulated)";
	case cudaErrorInvalidConfiguration: return "invalid configuration argument (emulated)";
	case cudaErrorStreamCaptureUnsupported:
		return "operation not permitted when stream is capturing (emulated)";
	case cudaErrorStreamCaptureInvalidated: return "capture invalidated (emulated)";
	default: return "error (emulated)";
	}
}

cudaError_t cudaMalloc(void **p, size_t size)
{
	std::lock_guard<std::recursive_mutex> g(emu_lock);

	*p = NULL;
	if (capturing_streams)
		return cudaErrorStreamCaptureUnsupported;
	*p = aligned_alloc(256, (size + 255) / 256 * 256 + 256);
	if (!*p)
		return cudaErrorMemoryAllocation;
	memset(*p, 0xff, size);
	allocations[*p] = size;
	return cudaSuccess;
}

cudaError_t cudaFree(void *p)
{
	std::lock_guard<std::recursive_mutex> g(emu_lock);

	if (!p)
		return cudaSuccess;
	if (!allocations.erase(p))
		return cudaErrorInvalidValue;
	free(p);
	return cudaSuccess;
}

cudaError_t cudaMemcpy(void *dst, const void *src, size_t n, enum cudaMemcpyKind kind)
{
	(void)kind;
	memcpy(dst, src, n);
	return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, enum cudaMemcpyKind kind,
			    cudaStream_t s)
{
	std::lock_guard<std::recursive_mutex> g(emu_lock);

	if (s && s->capturing && kind != cudaMemcpyDeviceToDevice) {
		// the host side of a copy in a graph must outlive it: not ours
		s->broken = true;
		return cudaErrorStreamCaptureUnsupported;
	}
	submit(s, [=]() { memcpy(dst, src, n); });
	return cudaSuccess;
}

cudaError_t cudaMemsetAsync(void *p, int v, size_t n, cudaStream_t s)
{
	std::lock_guard<std::recursive_mutex> g(emu_lock);

	submit(s, [=]() { memset(p, v, n); });
	return cudaSuccess;
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags)
{
	(void)flags;
	*s = new CUstream_st;
	return cudaSuccess;
}

cudaError_t cudaStreamDestroy(cudaStream_t s)
{
	delete s;
	return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t s)
{
	std::lock_guard<std::recursive_mutex> g(emu_lock);

	if (s && s->capturing) {
		s->broken = true;
		return cudaErrorStreamCaptureUnsupported;
	}
	return cudaSuccess;
}

cudaError_t cudaStreamBeginCapture(cudaStream_t s, enum cudaStreamCaptureMode mode)
{
	std::lock_guard<std::recursive_mutex> g(emu_lock);

	(void)mode;
	if (!s || s->capturing)
		return cudaErrorInvalidValue;
	s->capturing = true;
	s->broken = false;
	s->recorded.clear();
	capturing_streams++;
	return cudaSuccess;
}

cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t *graph)
{
	std::lock_guard<std::recursive_mutex> g(emu_lock);

	*graph = NULL;
	if (!s || !s->capturing)
		return cudaErrorInvalidValue;
	s->capturing = false;
	capturing_streams--;
	if (s->broken)
		return cudaErrorStreamCaptureInvalidated;
	*graph = new CUgraph_st;
	(*graph)->ops.swap(s->recorded);
	return cudaSuccess;
}

cudaError_t cudaGraphInstantiate(cudaGraphExec_t *exec, cudaGraph_t graph,
				 unsigned long long flags)
{
	(void)flags;
	*exec = new CUgraphExec_st;
	(*exec)->ops = graph->ops;
	return cudaSuccess;
}

cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t s)
{
	std::lock_guard<std::recursive_mutex> g(emu_lock);

	for (const op &o : exec->ops)
		submit(s, o);
	return cudaSuccess;
}

cudaError_t cudaGraphDestroy(cudaGraph_t graph)
{
	delete graph;
	return cudaSuccess;
}

cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec)
{
	delete exec;
	return cudaSuccess;
}

} // extern "C"

// ---- cuDNN ----

struct cudnnContext {
	cudaStream_t stream = NULL;
};

struct cudnnTensorStruct {
	bool set = false;
	cudnnDataType_t dt;
	int n, c, h, w;
};

struct cudnnFilterStruct {
	bool set = false;
	cudnnDataType_t dt;
	int k, c, h, w;
};

struct cudnnConvolutionStruct {
	bool set = false;
	int pad[2], stride[2], dilation[2], groups = 1;
	cudnnMathType_t math = CUDNN_DEFAULT_MATH;
	cudnnDataType_t compute;
};

struct cudnnPoolingStruct {
	bool set = false;
	cudnnPoolingMode_t mode;
	int win[2], pad[2], stride[2];
};

namespace {

// The workspace each algorithm asks for in the emulation: none for the
// implicit GEMM, some for the rest, so that a plan that sizes its
// workspace for one algorithm and runs another is refused.
size_t algo_workspace(cudnnConvolutionFwdAlgo_t a, const cudnnTensorStruct *y)
{
	size_t out = (size_t)y->n * y->c * y->h * y->w * 4;

	switch (a) {
	case CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM: return 0;
	case CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM: return 4096;
	case CUDNN_CONVOLUTION_FWD_ALGO_GEMM: return out * 9;
	default: return out * 2;
	}
}

template <typename T> cudnnStatus_t make(T **d)
{
	*d = new T;
	return CUDNN_STATUS_SUCCESS;
}

template <typename T> cudnnStatus_t drop(T *d)
{
	delete d;
	return CUDNN_STATUS_SUCCESS;
}

// A 4-d NCHW tensor or filter of a type we emulate, every dimension >= 1.
bool dims_ok(cudnnTensorFormat_t format, cudnnDataType_t dt, int a, int b, int c, int d)
{
	cudaDataType_t t;

	return format == CUDNN_TENSOR_NCHW && dnn_type(dt, &t) && a >= 1 && b >= 1 && c >= 1 &&
	       d >= 1;
}

bool conv_shapes_agree(const cudnnTensorStruct *x, const cudnnFilterStruct *w,
		       const cudnnConvolutionStruct *c, const cudnnTensorStruct *y)
{
	if (!x->set || !w->set || !c->set || !y->set || x->dt != w->dt || x->dt != y->dt)
		return false;
	if (c->groups < 1 || x->c % c->groups || w->k % c->groups || x->c / c->groups != w->c ||
	    y->c != w->k || y->n != x->n)
		return false;
	for (int d = 0; d < 2; d++) {
		int in = d ? x->w : x->h, k = d ? w->w : w->h, out = d ? y->w : y->h;
		int span = (k - 1) * c->dilation[d] + 1;

		if (out != (in + 2 * c->pad[d] - span) / c->stride[d] + 1)
			return false;
	}
	return true;
}

} // namespace

extern "C" {

const char *cudnnGetErrorString(cudnnStatus_t s)
{
	switch (s) {
	case CUDNN_STATUS_SUCCESS: return "CUDNN_STATUS_SUCCESS (emulated)";
	case CUDNN_STATUS_BAD_PARAM: return "CUDNN_STATUS_BAD_PARAM (emulated)";
	case CUDNN_STATUS_NOT_SUPPORTED: return "CUDNN_STATUS_NOT_SUPPORTED (emulated)";
	default: return "CUDNN_STATUS_ERROR (emulated)";
	}
}

cudnnStatus_t cudnnCreate(cudnnHandle_t *h)
{
	*h = new cudnnContext;
	return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnDestroy(cudnnHandle_t h)
{
	delete h;
	return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetStream(cudnnHandle_t h, cudaStream_t s)
{
	h->stream = s;
	return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnCreateTensorDescriptor(cudnnTensorDescriptor_t *d)
{
	return make(d);
}

cudnnStatus_t cudnnDestroyTensorDescriptor(cudnnTensorDescriptor_t d)
{
	return drop(d);
}

cudnnStatus_t cudnnSetTensor4dDescriptor(cudnnTensorDescriptor_t d, cudnnTensorFormat_t format,
					 cudnnDataType_t dt, int n, int c, int h, int w)
{
	if (!dims_ok(format, dt, n, c, h, w))
		return CUDNN_STATUS_BAD_PARAM;
	*d = cudnnTensorStruct{ true, dt, n, c, h, w };
	return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnCreateFilterDescriptor(cudnnFilterDescriptor_t *d)
{
	return make(d);
}

cudnnStatus_t cudnnDestroyFilterDescriptor(cudnnFilterDescriptor_t d)
{
	return drop(d);
}

cudnnStatus_t cudnnSetFilter4dDescriptor(cudnnFilterDescriptor_t d, cudnnDataType_t dt,
					 cudnnTensorFormat_t format, int k, int c, int h, int w)
{
	if (!dims_ok(format, dt, k, c, h, w))
		return CUDNN_STATUS_BAD_PARAM;
	*d = cudnnFilterStruct{ true, dt, k, c, h, w };
	return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnCreateConvolutionDescriptor(cudnnConvolutionDescriptor_t *d)
{
	return make(d);
}

cudnnStatus_t cudnnDestroyConvolutionDescriptor(cudnnConvolutionDescriptor_t d)
{
	return drop(d);
}

cudnnStatus_t cudnnSetConvolution2dDescriptor(cudnnConvolutionDescriptor_t d, int pad_h,
					      int pad_w, int u, int v, int dilation_h,
					      int dilation_w, cudnnConvolutionMode_t mode,
					      cudnnDataType_t compute)
{
	if (pad_h < 0 || pad_w < 0 || u < 1 || v < 1 || dilation_h < 1 || dilation_w < 1 ||
	    mode != CUDNN_CROSS_CORRELATION || compute != CUDNN_DATA_FLOAT)
		return CUDNN_STATUS_BAD_PARAM;
	d->set = true;
	d->pad[0] = pad_h;
	d->pad[1] = pad_w;
	d->stride[0] = u;
	d->stride[1] = v;
	d->dilation[0] = dilation_h;
	d->dilation[1] = dilation_w;
	d->compute = compute;
	return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetConvolutionGroupCount(cudnnConvolutionDescriptor_t d, int groups)
{
	if (groups < 1)
		return CUDNN_STATUS_BAD_PARAM;
	d->groups = groups;
	return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetConvolutionMathType(cudnnConvolutionDescriptor_t d, cudnnMathType_t m)
{
	d->math = m;
	return CUDNN_STATUS_SUCCESS;
}

// The heuristics' list, fastest first as cuDNN orders it: in float a
// transform (Winograd) ahead of the summing algorithms and one that is not
// supported, so the backend's preference is what picks; in half precision
// tensor-op math ahead of FMA.
cudnnStatus_t cudnnGetConvolutionForwardAlgorithm_v7(cudnnHandle_t h, const cudnnTensorDescriptor_t x,
						     const cudnnFilterDescriptor_t w,
						     const cudnnConvolutionDescriptor_t c,
						     const cudnnTensorDescriptor_t y, const int requested,
						     int *returned, cudnnConvolutionFwdAlgoPerf_t *perf)
{
	static const struct {
		cudnnConvolutionFwdAlgo_t algo;
		bool ok;
	} order[] = {
		{ CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING, false },
		{ CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED, true },
		{ CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM, true },
		{ CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, true },
		{ CUDNN_CONVOLUTION_FWD_ALGO_GEMM, true },
	};
	int n = 0;

	(void)h;
	if (!conv_shapes_agree(x, w, c, y) || requested < 1)
		return CUDNN_STATUS_BAD_PARAM;
	for (; n < (int)(sizeof order / sizeof order[0]) && n < requested; n++) {
		perf[n] = cudnnConvolutionFwdAlgoPerf_t{};
		perf[n].algo = order[n].algo;
		perf[n].status = order[n].ok ? CUDNN_STATUS_SUCCESS : CUDNN_STATUS_NOT_SUPPORTED;
		perf[n].time = (float)(n + 1);
		perf[n].memory = algo_workspace(order[n].algo, y);
		perf[n].mathType = x->dt == CUDNN_DATA_FLOAT ? c->math
				   : n % 2 ? CUDNN_TENSOR_OP_MATH : CUDNN_FMA_MATH;
	}
	*returned = n;
	return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnGetConvolutionForwardWorkspaceSize(cudnnHandle_t h, const cudnnTensorDescriptor_t x,
						      const cudnnFilterDescriptor_t w,
						      const cudnnConvolutionDescriptor_t c,
						      const cudnnTensorDescriptor_t y,
						      cudnnConvolutionFwdAlgo_t algo, size_t *size)
{
	(void)h;
	if (!conv_shapes_agree(x, w, c, y))
		return CUDNN_STATUS_BAD_PARAM;
	*size = algo_workspace(algo, y);
	return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnConvolutionForward(cudnnHandle_t h, const void *alpha,
				      const cudnnTensorDescriptor_t xd, const void *x,
				      const cudnnFilterDescriptor_t wd, const void *w,
				      const cudnnConvolutionDescriptor_t cd,
				      cudnnConvolutionFwdAlgo_t algo, void *ws, size_t ws_size,
				      const void *beta, const cudnnTensorDescriptor_t yd, void *y)
{
	cudaDataType_t t;

	if (!conv_shapes_agree(xd, wd, cd, yd) || !dnn_type(xd->dt, &t) || !x || !w || !y ||
	    ws_size < algo_workspace(algo, yd) || (algo_workspace(algo, yd) && !ws))
		return CUDNN_STATUS_BAD_PARAM;
	{
		const float a = *(const float *)alpha, b = *(const float *)beta;
		const cudnnTensorStruct xs = *xd, ys = *yd;
		const cudnnFilterStruct fs = *wd;
		const cudnnConvolutionStruct cs = *cd;

		submit(h->stream, [=]() {
			int cg = fs.c, ocg = fs.k / cs.groups;
			size_t plane = (size_t)xs.h * xs.w, taps = (size_t)cg * fs.h * fs.w;
			std::vector<float> xf((size_t)xs.n * xs.c * plane), wf((size_t)fs.k * taps);

			for (size_t i = 0; i < xf.size(); i++)
				xf[i] = load(t, x, i);
			for (size_t i = 0; i < wf.size(); i++)
				wf[i] = load(t, w, i);
			std::vector<float> row((size_t)ys.w);

			// Output row by row, each tap added to the whole row: every
			// output still sums its products in (ic, ky, kx) order.
			for (int n = 0; n < ys.n; n++)
				for (int oc = 0; oc < ys.c; oc++) {
					const float *wp = &wf[(size_t)oc * taps];
					const float *xg = &xf[((size_t)n * xs.c + (size_t)(oc / ocg) * cg) * plane];

					for (int oy = 0; oy < ys.h; oy++) {
						size_t o = (((size_t)n * ys.c + oc) * ys.h + oy) * ys.w;

						std::fill(row.begin(), row.end(), 0.0f);
						for (int ic = 0; ic < cg; ic++)
							for (int ky = 0; ky < fs.h; ky++) {
								int iy = oy * cs.stride[0] - cs.pad[0] + ky * cs.dilation[0];

								if (iy < 0 || iy >= xs.h)
									continue;
								for (int kx = 0; kx < fs.w; kx++) {
									const float *xr = xg + ic * plane + (size_t)iy * xs.w;
									float wv = wp[((size_t)ic * fs.h + ky) * fs.w + kx];
									int off = kx * cs.dilation[1] - cs.pad[1], st = cs.stride[1];
									// ox with 0 <= ox * st + off < xs.w
									int lo = off >= 0 ? 0 : (-off + st - 1) / st;
									int hi = xs.w - off <= 0 ? 0 : (xs.w - off + st - 1) / st;

									if (hi > ys.w)
										hi = ys.w;
									for (int ox = lo; ox < hi; ox++)
										row[ox] += wv * xr[ox * st + off];
								}
							}
						for (int ox = 0; ox < ys.w; ox++)
							store(t, y, o + ox, a * row[ox] +
							      (b != 0 ? b * load(t, y, o + ox) : 0.0f));
					}
				}
		});
	}
	return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnCreatePoolingDescriptor(cudnnPoolingDescriptor_t *d)
{
	return make(d);
}

cudnnStatus_t cudnnDestroyPoolingDescriptor(cudnnPoolingDescriptor_t d)
{
	return drop(d);
}

cudnnStatus_t cudnnSetPooling2dDescriptor(cudnnPoolingDescriptor_t d, cudnnPoolingMode_t mode,
					  cudnnNanPropagation_t nan, int wh, int ww, int ph, int pw,
					  int sh, int sw)
{
	(void)nan;
	if (wh < 1 || ww < 1 || ph < 0 || pw < 0 || sh < 1 || sw < 1 ||
	    (mode != CUDNN_POOLING_MAX && mode != CUDNN_POOLING_MAX_DETERMINISTIC &&
	     mode != CUDNN_POOLING_AVERAGE_COUNT_INCLUDE_PADDING))
		return CUDNN_STATUS_BAD_PARAM;
	*d = cudnnPoolingStruct{ true, mode, { wh, ww }, { ph, pw }, { sh, sw } };
	return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnPoolingForward(cudnnHandle_t h, const cudnnPoolingDescriptor_t pd,
				  const void *alpha, const cudnnTensorDescriptor_t xd, const void *x,
				  const void *beta, const cudnnTensorDescriptor_t yd, void *y)
{
	cudaDataType_t t;

	if (!pd->set || !xd->set || !yd->set || xd->dt != yd->dt || !dnn_type(xd->dt, &t) ||
	    xd->n != yd->n || xd->c != yd->c ||
	    yd->h != (xd->h + 2 * pd->pad[0] - pd->win[0]) / pd->stride[0] + 1 ||
	    yd->w != (xd->w + 2 * pd->pad[1] - pd->win[1]) / pd->stride[1] + 1)
		return CUDNN_STATUS_BAD_PARAM;
	{
		const float a = *(const float *)alpha, b = *(const float *)beta;
		const cudnnTensorStruct xs = *xd, ys = *yd;
		const cudnnPoolingStruct ps = *pd;

		submit(h->stream, [=]() {
			bool avg = ps.mode == CUDNN_POOLING_AVERAGE_COUNT_INCLUDE_PADDING;

			for (int p = 0; p < ys.n * ys.c; p++)
				for (int oy = 0; oy < ys.h; oy++)
					for (int ox = 0; ox < ys.w; ox++) {
						float acc = avg ? 0.0f : -INFINITY;
						size_t o = ((size_t)p * ys.h + oy) * ys.w + ox;

						for (int ky = 0; ky < ps.win[0]; ky++)
							for (int kx = 0; kx < ps.win[1]; kx++) {
								int iy = oy * ps.stride[0] - ps.pad[0] + ky;
								int ix = ox * ps.stride[1] - ps.pad[1] + kx;
								float v = iy < 0 || iy >= xs.h || ix < 0 || ix >= xs.w ? 0.0f
									  : load(t, x, ((size_t)p * xs.h + iy) * xs.w + ix);

								if (avg)
									acc += v;
								else if (iy >= 0 && iy < xs.h && ix >= 0 && ix < xs.w)
									acc = v > acc ? v : acc;
							}
						if (avg)
							acc /= (float)(ps.win[0] * ps.win[1]);
						store(t, y, o, a * acc + (b != 0 ? b * load(t, y, o) : 0.0f));
					}
		});
	}
	return CUDNN_STATUS_SUCCESS;
}

} // extern "C"

// ---- cuBLAS ----

struct cublasContext {
	cudaStream_t stream = NULL;
	void *ws = NULL;
	size_t ws_size = 0;
};

extern "C" {

cublasStatus_t cublasCreate(cublasHandle_t *h)
{
	*h = new cublasContext;
	return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasDestroy(cublasHandle_t h)
{
	delete h;
	return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t s)
{
	h->stream = s;
	return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetWorkspace(cublasHandle_t h, void *ws, size_t size)
{
	h->ws = ws;
	h->ws_size = size;
	return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetMathMode(cublasHandle_t h, cublasMath_t mode)
{
	(void)h;
	(void)mode;
	return CUBLAS_STATUS_SUCCESS;
}

const char *cublasGetStatusString(cublasStatus_t s)
{
	return s == CUBLAS_STATUS_SUCCESS ? "CUBLAS_STATUS_SUCCESS (emulated)"
	       : s == CUBLAS_STATUS_INVALID_VALUE ? "CUBLAS_STATUS_INVALID_VALUE (emulated)"
	       : "CUBLAS_STATUS_ERROR (emulated)";
}

// C = alpha op(A) op(B) + beta C, column-major, as cuBLAS.
cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
			    int n, int k, const void *alpha, const void *A, cudaDataType at,
			    int lda, const void *B, cudaDataType bt, int ldb, const void *beta,
			    void *C, cudaDataType ct, int ldc, cublasComputeType_t compute,
			    cublasGemmAlgo_t algo)
{
	(void)algo;
	if (m < 1 || n < 1 || k < 1 || at != bt || at != ct ||
	    (at != CUDA_R_32F && at != CUDA_R_16F && at != CUDA_R_16BF) ||
	    compute != CUBLAS_COMPUTE_32F || lda < (ta == CUBLAS_OP_N ? m : k) ||
	    ldb < (tb == CUBLAS_OP_N ? k : n) || ldc < m || (ta != CUBLAS_OP_N && ta != CUBLAS_OP_T) ||
	    (tb != CUBLAS_OP_N && tb != CUBLAS_OP_T))
		return CUBLAS_STATUS_INVALID_VALUE;
	if (h->stream && h->stream->capturing && !h->ws)
		return CUBLAS_STATUS_NOT_SUPPORTED; // it would allocate inside the capture
	{
		const float a = *(const float *)alpha, b = *(const float *)beta;
		cudaDataType t = at;

		submit(h->stream, [=]() {
			// op(A) as m x k and op(B) as k x n, row by row, in float
			std::vector<float> af((size_t)m * k), bf((size_t)k * n);

			for (int i = 0; i < m; i++)
				for (int p = 0; p < k; p++)
					af[(size_t)i * k + p] = load(t, A, ta == CUBLAS_OP_N ? i + (size_t)p * lda
									 : p + (size_t)i * lda);
			for (int j = 0; j < n; j++)
				for (int p = 0; p < k; p++)
					bf[(size_t)j * k + p] = load(t, B, tb == CUBLAS_OP_N ? p + (size_t)j * ldb
									 : j + (size_t)p * ldb);
			for (int j = 0; j < n; j++)
				for (int i = 0; i < m; i++) {
					const float *ar = &af[(size_t)i * k], *bc = &bf[(size_t)j * k];
					size_t o = i + (size_t)j * ldc;
					float acc = 0;

					for (int p = 0; p < k; p++)
						acc += ar[p] * bc[p];
					store(t, C, o, a * acc + (b != 0 ? b * load(t, C, o) : 0.0f));
				}
		});
	}
	return CUBLAS_STATUS_SUCCESS;
}

} // extern "C"

// ---- cuFFT (through FFTW, single precision, unnormalised like cuFFT) ----

namespace {

struct fft_plan {
	int n;
	cufftType type;
	cudaStream_t stream;
};

std::map<cufftHandle, fft_plan> fft_plans;
cufftHandle next_fft = 1;

} // namespace

extern "C" {

cufftResult cufftPlan1d(cufftHandle *plan, int nx, cufftType type, int batch)
{
	std::lock_guard<std::recursive_mutex> g(emu_lock);

	if (nx < 2 || batch != 1 || (type != CUFFT_R2C && type != CUFFT_C2C))
		return CUFFT_INVALID_VALUE;
	*plan = next_fft++;
	fft_plans[*plan] = fft_plan{ nx, type, NULL };
	return CUFFT_SUCCESS;
}

cufftResult cufftSetStream(cufftHandle plan, cudaStream_t s)
{
	std::lock_guard<std::recursive_mutex> g(emu_lock);
	auto it = fft_plans.find(plan);

	if (it == fft_plans.end())
		return CUFFT_INVALID_PLAN;
	it->second.stream = s;
	return CUFFT_SUCCESS;
}

cufftResult cufftDestroy(cufftHandle plan)
{
	std::lock_guard<std::recursive_mutex> g(emu_lock);

	return fft_plans.erase(plan) ? CUFFT_SUCCESS : CUFFT_INVALID_PLAN;
}

cufftResult cufftExecR2C(cufftHandle plan, cufftReal *in, cufftComplex *out)
{
	std::lock_guard<std::recursive_mutex> g(emu_lock);
	auto it = fft_plans.find(plan);

	if (it == fft_plans.end() || it->second.type != CUFFT_R2C)
		return CUFFT_INVALID_PLAN;
	{
		int n = it->second.n;

		submit(it->second.stream, [=]() {
			std::lock_guard<std::recursive_mutex> g2(emu_lock);
			std::vector<float> x(in, in + n);
			std::vector<fftwf_complex> y((size_t)n / 2 + 1);
			fftwf_plan p = fftwf_plan_dft_r2c_1d(n, x.data(), y.data(), FFTW_ESTIMATE);

			fftwf_execute(p);
			fftwf_destroy_plan(p);
			memcpy(out, y.data(), y.size() * sizeof y[0]);
		});
	}
	return CUFFT_SUCCESS;
}

cufftResult cufftExecC2C(cufftHandle plan, cufftComplex *in, cufftComplex *out, int direction)
{
	std::lock_guard<std::recursive_mutex> g(emu_lock);
	auto it = fft_plans.find(plan);

	if (it == fft_plans.end() || it->second.type != CUFFT_C2C ||
	    (direction != CUFFT_FORWARD && direction != CUFFT_INVERSE))
		return CUFFT_INVALID_PLAN;
	{
		int n = it->second.n;

		submit(it->second.stream, [=]() {
			std::lock_guard<std::recursive_mutex> g2(emu_lock);
			std::vector<fftwf_complex> x((size_t)n), y((size_t)n);
			fftwf_plan p;

			memcpy(x.data(), in, x.size() * sizeof x[0]);
			p = fftwf_plan_dft_1d(n, x.data(), y.data(),
					      direction == CUFFT_FORWARD ? FFTW_FORWARD : FFTW_BACKWARD,
					      FFTW_ESTIMATE);
			fftwf_execute(p);
			fftwf_destroy_plan(p);
			memcpy(out, y.data(), y.size() * sizeof y[0]);
		});
	}
	return CUFFT_SUCCESS;
}

} // extern "C"
