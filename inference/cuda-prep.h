/* GPU preprocessing for the cuda backend: a part's raw uint8 frame and
 * raw vibration window go to the GPU once; the model input (resize and
 * normalisation as fusion_image_prepare_resize) and the vigil-sigfeat-v1
 * features (as fusion_sigfeat_compute, through cuFFT) are computed there,
 * into device buffers that hold a batch, ready for the graph.
 *
 * The arithmetic is fusion/prep-math.h's (checked against the C path on
 * the CPU by test-fusion); tests/test-cuda-preprocess.c compares this
 * module's output with the C path on a GPU. Built only with CUDA. */
#ifndef VIGIL_INFERENCE_CUDA_PREP_H
#define VIGIL_INFERENCE_CUDA_PREP_H

#include <stddef.h>
#include <stdint.h>

#include "fusion/fusion.h"

typedef struct cuda_prep cuda_prep;

/* For model inputs of out_w x out_h (mean, std, mode: the package's
 * [vision]), windows of window samples at rate_hz, and batches of up to
 * max_batch parts. NULL with *err (g_free) on a bad argument or without a
 * CUDA device. */
cuda_prep *cuda_prep_new(int out_w, int out_h, float mean, float std, enum fusion_resize mode,
			 size_t window, double rate_hz, int max_batch, char **err);
void cuda_prep_free(cuda_prep *p);

/* Uploads a frame (w x h, stride bytes a row) and writes its model input
 * into batch slot `slot` of the device images; returns when that is done
 * (so frame is the caller's again; a pinned, asynchronous upload is left
 * for when a GPU shows that the wait matters). */
int cuda_prep_image(cuda_prep *p, int slot, const uint8_t *frame, int w, int h, int stride,
		    char **err);
/* Uploads a window (window samples, in g) and writes its features into
 * slot `slot` of the device features. -EINVAL for a non-finite sample,
 * as fusion_sigfeat_compute. */
int cuda_prep_features(cuda_prep *p, int slot, const float *x, char **err);

/* Slot `slot`'s features become slot `from`'s (a camera of the same
 * part: one window, uploaded and computed once); returns when done. */
int cuda_prep_copy_features(cuda_prep *p, int slot, int from, char **err);

/* Waits for the work enqueued so far (both calls above already do). */
int cuda_prep_sync(cuda_prep *p, char **err);

/* Device pointers: max_batch model inputs (out_w * out_h floats each)
 * and max_batch feature vectors (FP_SIGFEAT_DIM floats each), slot after
 * slot, owned by p. */
const float *cuda_prep_images(const cuda_prep *p);
const float *cuda_prep_feature_vectors(const cuda_prep *p);
/* The stream the work runs on (a cudaStream_t). */
void *cuda_prep_stream(const cuda_prep *p);

/* Copies n slots back to the host (for tests and tools); either may be
 * NULL. Waits for the work first. */
int cuda_prep_download(cuda_prep *p, int n, float *images, float *features, char **err);

#endif
