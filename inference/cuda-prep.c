/* GPU preprocessing (cuda-prep.h): cuFFT plans, buffers and the order of
 * the kernels in cuda-prep-kernels.cu, following fusion/features.c step
 * by step. */
#include <cuda_runtime.h>
#include <cufft.h>
#include <errno.h>
#include <glib.h>
#include <math.h>

#include "inference/cuda-prep-kernels.h"
#include "inference/cuda-prep.h"

struct cuda_prep {
	int out_w, out_h, max_batch;
	float mean, std;
	enum fusion_resize mode;
	size_t n;                  /* window samples */
	double rate_hz;
	size_t highpass_bin;
	cudaStream_t stream;
	cufftHandle r2c, c2c;
	int have_r2c, have_c2c;
	uint8_t *frame;            /* the last frame uploaded */
	size_t frame_cap;
	uint8_t *fitted;           /* out_w * out_h bytes */
	unsigned long long *sum;
	float *images, *features;  /* the batch, on the device */
	float *x, *centred, *real, *env;   /* n floats each */
	float *spec;               /* n/2+1 complex */
	float *aspec, *analytic;   /* n complex each */
	double *stats;             /* VP_STATS doubles */
};

static int cuda_fail(cudaError_t e, const char *what, char **err)
{
	if (e == cudaSuccess)
		return 0;
	*err = g_strdup_printf("cuda preprocessing: %s: %s", what, cudaGetErrorString(e));
	return -EIO;
}

static int fft_fail(cufftResult r, const char *what, char **err)
{
	if (r == CUFFT_SUCCESS)
		return 0;
	*err = g_strdup_printf("cuda preprocessing: cuFFT %s failed (%d)", what, (int)r);
	return -EIO;
}

static int kern(int e, const char *what, char **err)
{
	return cuda_fail((cudaError_t)e, what, err);
}

void cuda_prep_free(cuda_prep *p)
{
	if (!p)
		return;
	if (p->have_r2c)
		cufftDestroy(p->r2c);
	if (p->have_c2c)
		cufftDestroy(p->c2c);
	cudaFree(p->frame);
	cudaFree(p->fitted);
	cudaFree(p->sum);
	cudaFree(p->images);
	cudaFree(p->features);
	cudaFree(p->x);
	cudaFree(p->centred);
	cudaFree(p->real);
	cudaFree(p->env);
	cudaFree(p->spec);
	cudaFree(p->aspec);
	cudaFree(p->analytic);
	cudaFree(p->stats);
	if (p->stream)
		cudaStreamDestroy(p->stream);
	g_free(p);
}

cuda_prep *cuda_prep_new(int out_w, int out_h, float mean, float std, enum fusion_resize mode,
			 size_t window, double rate_hz, int max_batch, char **err)
{
	cuda_prep *p;
	size_t npix = (size_t)out_w * (size_t)out_h;
	int devices = 0;

	if (out_w <= 0 || out_h <= 0 || !(std > 0) || !isfinite(mean) || !fusion_resize_name(mode) ||
	    window < 64 || window > (1u << 24) || !(rate_hz > 0) || max_batch < 1) {
		*err = g_strdup("cuda preprocessing: invalid geometry, window or batch");
		return NULL;
	}
	if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
		cudaGetLastError();
		*err = g_strdup("cuda preprocessing: no CUDA device");
		return NULL;
	}
	p = g_new0(cuda_prep, 1);
	p->out_w = out_w;
	p->out_h = out_h;
	p->max_batch = max_batch;
	p->mean = mean;
	p->std = std;
	p->mode = mode;
	p->n = window;
	p->rate_hz = rate_hz;
	p->highpass_bin = fp_highpass_bin(window, rate_hz);
	if (cuda_fail(cudaStreamCreateWithFlags(&p->stream, cudaStreamNonBlocking), "stream", err) < 0 ||
	    cuda_fail(cudaMalloc((void **)&p->fitted, npix), "buffers", err) < 0 ||
	    cuda_fail(cudaMalloc((void **)&p->sum, sizeof *p->sum), "buffers", err) < 0 ||
	    cuda_fail(cudaMalloc((void **)&p->images, npix * (size_t)max_batch * 4), "buffers", err) < 0 ||
	    cuda_fail(cudaMalloc((void **)&p->features, (size_t)FP_SIGFEAT_DIM * max_batch * 4),
		      "buffers", err) < 0 ||
	    cuda_fail(cudaMalloc((void **)&p->x, window * 4), "buffers", err) < 0 ||
	    cuda_fail(cudaMalloc((void **)&p->centred, window * 4), "buffers", err) < 0 ||
	    cuda_fail(cudaMalloc((void **)&p->real, window * 4), "buffers", err) < 0 ||
	    cuda_fail(cudaMalloc((void **)&p->env, window * 4), "buffers", err) < 0 ||
	    cuda_fail(cudaMalloc((void **)&p->spec, (window / 2 + 1) * 8), "buffers", err) < 0 ||
	    cuda_fail(cudaMalloc((void **)&p->aspec, window * 8), "buffers", err) < 0 ||
	    cuda_fail(cudaMalloc((void **)&p->analytic, window * 8), "buffers", err) < 0 ||
	    cuda_fail(cudaMalloc((void **)&p->stats, VP_STATS * sizeof(double)), "buffers", err) < 0)
		goto fail;
	if (fft_fail(cufftPlan1d(&p->r2c, (int)window, CUFFT_R2C, 1), "r2c plan", err) < 0)
		goto fail;
	p->have_r2c = 1;
	if (fft_fail(cufftPlan1d(&p->c2c, (int)window, CUFFT_C2C, 1), "c2c plan", err) < 0)
		goto fail;
	p->have_c2c = 1;
	if (fft_fail(cufftSetStream(p->r2c, p->stream), "stream", err) < 0 ||
	    fft_fail(cufftSetStream(p->c2c, p->stream), "stream", err) < 0)
		goto fail;
	return p;
fail:
	cuda_prep_free(p);
	return NULL;
}

int cuda_prep_image(cuda_prep *p, int slot, const uint8_t *frame, int w, int h, int stride,
		    char **err)
{
	size_t bytes = (size_t)stride * (size_t)(h - 1) + (size_t)w;
	struct fp_fit g;
	int rc;

	if (slot < 0 || slot >= p->max_batch || !frame || w <= 0 || h <= 0 || stride < w) {
		*err = g_strdup_printf("cuda preprocessing: bad frame %dx%d (stride %d) or slot %d",
				       w, h, stride, slot);
		return -EINVAL;
	}
	if (bytes > p->frame_cap) {
		/* The first frame, or a larger camera: a new upload buffer. */
		if ((rc = cuda_fail(cudaStreamSynchronize(p->stream), "frame buffer", err)) < 0)
			return rc;
		cudaFree(p->frame);
		p->frame = NULL;
		p->frame_cap = 0;
		if ((rc = cuda_fail(cudaMalloc((void **)&p->frame, bytes), "frame buffer", err)) < 0)
			return rc;
		p->frame_cap = bytes;
	}
	fp_fit_geometry(w, h, p->out_w, p->out_h, p->mode == FUSION_RESIZE_LETTERBOX, &g);
	/* One stream: the previous image's kernels have read the upload
	 * buffer before this copy overwrites it; the wait at the end gives
	 * the caller its frame back (the frame is pageable memory). */
	if ((rc = cuda_fail(cudaMemcpyAsync(p->frame, frame, bytes, cudaMemcpyHostToDevice,
					    p->stream), "frame upload", err)) < 0 ||
	    (rc = cuda_fail(cudaMemsetAsync(p->sum, 0, sizeof *p->sum, p->stream), "sum", err)) < 0 ||
	    (rc = kern(vp_fit(p->fitted, p->sum, p->frame, stride, h, g, p->stream), "fit", err)) < 0 ||
	    (rc = kern(vp_place(p->images + (size_t)slot * p->out_w * p->out_h, p->fitted, p->sum, g,
				p->out_w, p->out_h, p->mean, p->std, p->stream), "place", err)) < 0)
		return rc;
	return cuda_fail(cudaStreamSynchronize(p->stream), "frame upload", err);
}

int cuda_prep_features(cuda_prep *p, int slot, const float *x, char **err)
{
	size_t n = p->n;
	float *feat = p->features + (size_t)slot * FP_SIGFEAT_DIM;
	int rc;

	if (slot < 0 || slot >= p->max_batch || !x) {
		*err = g_strdup_printf("cuda preprocessing: bad window or slot %d", slot);
		return -EINVAL;
	}
	for (size_t i = 0; i < n; i++)
		if (!isfinite(x[i])) {
			*err = g_strdup_printf("cuda preprocessing: sample %zu is not finite", i);
			return -EINVAL;
		}
	/* As fusion_sigfeat_compute: band powers of the Hann-windowed
	 * mean-removed window; the analytic signal of its tapered high band,
	 * its squared envelope and the envelope's spectrum; moments. */
	if ((rc = cuda_fail(cudaMemcpyAsync(p->x, x, n * 4, cudaMemcpyHostToDevice, p->stream),
			    "window upload", err)) < 0 ||
	    (rc = kern(vp_centre(p->centred, p->stats, p->x, n, p->stream), "centre", err)) < 0 ||
	    (rc = kern(vp_window(p->real, p->centred, n, 0, p->stream), "hann", err)) < 0 ||
	    (rc = fft_fail(cufftExecR2C(p->r2c, p->real, (cufftComplex *)p->spec), "r2c", err)) < 0 ||
	    (rc = kern(vp_bands(feat, p->spec, n, p->rate_hz, 0, FP_POWER_BANDS, p->stats,
				p->stream), "power bands", err)) < 0 ||
	    (rc = kern(vp_window(p->real, p->centred, n, 1, p->stream), "tukey", err)) < 0 ||
	    (rc = fft_fail(cufftExecR2C(p->r2c, p->real, (cufftComplex *)p->spec), "r2c", err)) < 0 ||
	    (rc = kern(vp_analytic(p->aspec, p->spec, n, p->highpass_bin, p->stream), "analytic",
		       err)) < 0 ||
	    (rc = fft_fail(cufftExecC2C(p->c2c, (cufftComplex *)p->aspec, (cufftComplex *)p->analytic,
					CUFFT_INVERSE), "c2c", err)) < 0 ||
	    (rc = kern(vp_envelope(p->env, p->stats, p->analytic, n, p->stream), "envelope",
		       err)) < 0 ||
	    (rc = kern(vp_envelope_window(p->real, p->env, p->stats, n, p->stream), "envelope hann",
		       err)) < 0 ||
	    (rc = fft_fail(cufftExecR2C(p->r2c, p->real, (cufftComplex *)p->spec), "r2c", err)) < 0 ||
	    (rc = kern(vp_bands(feat, p->spec, n, p->rate_hz, FP_POWER_BANDS, FP_ENV_BANDS, p->stats,
				p->stream), "envelope bands", err)) < 0 ||
	    (rc = kern(vp_time_features(feat, p->stats, p->stream), "time features", err)) < 0)
		return rc;
	/* x is the caller's again only once the upload is done. */
	return cuda_fail(cudaStreamSynchronize(p->stream), "window upload", err);
}

int cuda_prep_copy_features(cuda_prep *p, int slot, int from, char **err)
{
	if (slot < 0 || slot >= p->max_batch || from < 0 || from >= p->max_batch) {
		*err = g_strdup_printf("cuda preprocessing: bad slots %d, %d", slot, from);
		return -EINVAL;
	}
	int rc = cuda_fail(cudaMemcpyAsync(p->features + (size_t)slot * FP_SIGFEAT_DIM,
					   p->features + (size_t)from * FP_SIGFEAT_DIM,
					   FP_SIGFEAT_DIM * 4, cudaMemcpyDeviceToDevice, p->stream),
			   "feature copy", err);

	/* Done before return, like the calls above: the modules read the
	 * features on their own stream. */
	return rc < 0 ? rc : cuda_prep_sync(p, err);
}

int cuda_prep_sync(cuda_prep *p, char **err)
{
	return cuda_fail(cudaStreamSynchronize(p->stream), "preprocessing", err);
}

const float *cuda_prep_images(const cuda_prep *p)
{
	return p->images;
}

const float *cuda_prep_feature_vectors(const cuda_prep *p)
{
	return p->features;
}

void *cuda_prep_stream(const cuda_prep *p)
{
	return p->stream;
}

int cuda_prep_download(cuda_prep *p, int n, float *images, float *features, char **err)
{
	int rc;

	if (n < 0 || n > p->max_batch) {
		*err = g_strdup_printf("cuda preprocessing: %d slots of %d", n, p->max_batch);
		return -EINVAL;
	}
	if (images && (rc = cuda_fail(cudaMemcpyAsync(images, p->images, (size_t)n * p->out_w *
						      p->out_h * 4, cudaMemcpyDeviceToHost,
						      p->stream), "download", err)) < 0)
		return rc;
	if (features && (rc = cuda_fail(cudaMemcpyAsync(features, p->features,
							(size_t)n * FP_SIGFEAT_DIM * 4,
							cudaMemcpyDeviceToHost, p->stream),
					 "download", err)) < 0)
		return rc;
	return cuda_prep_sync(p, err);
}
