/* fusion/: the preprocessing library. It turns one part's frame and
 * vibration window into model inputs (image fitting and normalisation;
 * spectra, envelope, RMS, kurtosis) and nothing else: it knows neither
 * where the data came from nor where verdicts go, and calls no stage.
 * Its callers are inference/ (the CPU path of infer_model_run_raw),
 * vigild (features and condition figures in the acquire thread, images
 * in the inspect thread) and the tools (vigil-features, which the
 * training tool calls, vigil-eval, vigil-calibrate), so that training,
 * evaluation and run time see identical inputs. The cuda backend
 * computes the same inputs on the GPU by fusion/prep-math.h's formulas.
 * It resizes through cvwrap/ and computes spectra with FFTW.
 *
 * Threads: the functions are reentrant; a fusion_sigfeat is used by one
 * thread at a time. Errors are negative errno codes. */
#ifndef VIGIL_FUSION_FUSION_H
#define VIGIL_FUSION_FUSION_H

#include <stddef.h>
#include <stdint.h>

/* Name of the signal feature layout computed below; a model manifest names
 * the layout it was trained on and vigild refuses a mismatch. */
#define FUSION_SIGFEAT_VERSION "vigil-sigfeat-v1"

/* Image preprocessing: resize (area averaging when shrinking) to out_w x
 * out_h and normalise to (pixel / 255 - mean) / std into out (out_w*out_h
 * floats, row-major, one channel). Returns 0 or -EINVAL / -ENOMEM. */
int fusion_image_prepare(const uint8_t *gray, int w, int h, int stride,
			 int out_w, int out_h, float mean, float std, float *out);

typedef struct fusion_sigfeat fusion_sigfeat;

/* Spectral features of one vibration window of window_len samples at
 * rate_hz (FFTW plans made once here; not thread-safe per object: use one
 * per thread). NULL on invalid arguments. */
fusion_sigfeat *fusion_sigfeat_new(size_t window_len, double rate_hz);
void fusion_sigfeat_free(fusion_sigfeat *f);

/* Number of floats fusion_sigfeat_compute writes. */
size_t fusion_sigfeat_dim(const fusion_sigfeat *f);

/* Computes the feature vector of x (window_len samples, in g) into out.
 * Layout (FUSION_SIGFEAT_VERSION): see fusion/features.c. Returns 0 or a
 * negative errno code (e.g. -EINVAL for non-finite input). */
int fusion_sigfeat_compute(fusion_sigfeat *f, const float *x, float *out);

/* One-sided power spectrum of x (Hann window, window_len/2+1 bins, bin k at
 * k*rate/window_len Hz), for tests and condition figures. */
int fusion_power_spectrum(fusion_sigfeat *f, const float *x, float *power);

/* Time-domain condition figures of a window. */
struct fusion_condition {
	float rms;
	float peak;
	float crest_factor;
	float kurtosis;
};
int fusion_condition(const float *x, size_t n, struct fusion_condition *out);

/* How a frame is fitted to the model input (a model manifest's [vision]
 * resize key; docs/model.md). */
enum fusion_resize {
	/* Both sides scaled to the input size, aspect ratio not kept (the
	 * default, and what fusion_image_prepare does). */
	FUSION_RESIZE_STRETCH = 0,
	/* Aspect ratio kept: a frame whose long side disagrees with the
	 * input's (portrait frame, landscape input or the reverse) is first
	 * turned a quarter clockwise; it is then scaled so that it fits the
	 * input (area averaging when shrinking), centred, and the rest is
	 * filled (fusion_image_fit). */
	FUSION_RESIZE_LETTERBOX = 1,
};

/* "stretch" or "letterbox" to the enum; 0 or -EINVAL. */
int fusion_resize_parse(const char *name, enum fusion_resize *out);
/* The manifest name of a mode ("stretch", "letterbox"); NULL if unknown. */
const char *fusion_resize_name(enum fusion_resize mode);

/* The geometric part: the frame fitted to out_w x out_h 8-bit pixels in
 * dst (stride out_w) by mode. fill is the value of the pixels the frame
 * does not cover (letterbox), 0..255, or -1 for the rounded mean of the
 * fitted frame's pixels. Masks go through this with fill 0 so that they
 * stay aligned with their image. Returns 0 or -EINVAL / -ENOMEM / -EIO. */
int fusion_image_fit(const uint8_t *gray, int w, int h, int stride, int out_w, int out_h,
		     enum fusion_resize mode, int fill, uint8_t *dst);

/* The image input a model declares: its manifest's [vision] input_width,
 * input_height, mean, std and resize (docs/model.md). */
struct fusion_image_spec {
	int width, height;
	float mean, std;
	enum fusion_resize resize;
};

/* The CPU preprocessing of one frame for a model: gray (w x h, stride)
 * fitted by spec->resize and normalised into out (spec->width *
 * spec->height floats), as fusion_image_prepare_resize. The one place the
 * CPU paths (inference/, vigild, the tools) turn a frame into a model's
 * input, so they cannot drift apart. 0 or -EINVAL / -ENOMEM / -EIO. */
int fusion_image_input(const struct fusion_image_spec *spec, const uint8_t *gray, int w, int h,
		       int stride, float *out);

/* A map over a model's input (mw x mh cells laid over spec->width x
 * spec->height, as infer_output.heatmap) carried back onto the w x h frame
 * it was made from, so that it lies over the frame when stretched onto
 * it, as the review page draws it: for FUSION_RESIZE_LETTERBOX the border
 * cut away and the quarter turn undone, as many cells as the map spent on
 * the frame (*ow x *oh, in the frame's orientation), bilinear; a stretch
 * map already is that and comes back as a copy. malloc'ed, the caller
 * frees it (free); NULL on bad arguments or no memory. Any thread. */
float *fusion_map_to_frame(const struct fusion_image_spec *spec, int w, int h,
			   const float *map, int mw, int mh, int *ow, int *oh);

/* fusion_image_prepare with a fitting mode: FUSION_RESIZE_STRETCH is
 * exactly fusion_image_prepare; FUSION_RESIZE_LETTERBOX fits the frame by
 * fusion_image_fit (fill -1: the uncovered border has the frame's mean
 * brightness) and normalises the same way. */
int fusion_image_prepare_resize(const uint8_t *gray, int w, int h, int stride,
				int out_w, int out_h, float mean, float std,
				enum fusion_resize mode, float *out);

/* A package's dark-residual score (its manifest's [dark]: docs/model.md):
 * the darkest small spot of the frame against the frame's own texture,
 * which finds thin cracks and small holes that a model fed 160 x 112
 * pixels cannot see. It is computed on the full frame, not the model's
 * input, and on the CPU in every path. */
struct fusion_dark_spec {
	int side;                  /* the frame's long side is scaled to this */
	int median;                /* the median filter's width (odd) */
	int box;                   /* the spot's width */
	int edge;                  /* pixels left out at each side */
};

/* The natural log of cvw_dark_spot's score of gray under spec into *out
 * (the log, since the score is a ratio with a long tail). 0 or -EINVAL /
 * -EIO. Any thread. */
int fusion_dark_score(const struct fusion_dark_spec *spec, const uint8_t *gray, int w, int h,
		      int stride, float *out);

#endif
