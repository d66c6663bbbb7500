/* Frame-to-input geometries that the preprocessing tests share: shrinking
 * by whole and fractional factors, enlarging, one side shrinking while the
 * other grows, and the letterbox with and without its quarter turn.
 * tests/test-fusion.c holds fusion/prep-math.h's formulas to OpenCV on
 * them, tests/test-cuda-preprocess.c the GPU kernels to both. */
#ifndef VIGIL_TESTS_PREP_CASES_H
#define VIGIL_TESTS_PREP_CASES_H

#include <glib.h>
#include <math.h>
#include <stddef.h>

#include "fusion/fusion.h"

static const struct prep_case {
	int w, h, ow, oh;
	enum fusion_resize mode;
} prep_cases[] = {
	{ 96, 96, 96, 96, FUSION_RESIZE_STRETCH },
	{ 192, 192, 96, 96, FUSION_RESIZE_STRETCH },
	{ 640, 480, 160, 112, FUSION_RESIZE_STRETCH },
	{ 333, 251, 96, 96, FUSION_RESIZE_STRETCH },
	{ 300, 200, 299, 199, FUSION_RESIZE_STRETCH },
	{ 64, 48, 160, 112, FUSION_RESIZE_STRETCH },
	{ 57, 41, 96, 96, FUSION_RESIZE_STRETCH },
	{ 200, 60, 96, 96, FUSION_RESIZE_STRETCH },
	{ 640, 480, 160, 112, FUSION_RESIZE_LETTERBOX },
	{ 480, 640, 160, 112, FUSION_RESIZE_LETTERBOX },
	{ 150, 40, 96, 96, FUSION_RESIZE_LETTERBOX },
	{ 50, 70, 160, 112, FUSION_RESIZE_LETTERBOX },
};

/* Adds a bearing-like signal of kind to a window of n samples at rate:
 * 0, impacts ringing at 3 kHz, repeating at 107.4 Hz (an outer-race
 * defect); 1, shaft and gear sines on a 2 g offset; 2, nothing. */
static inline void prep_add_signal(float *x, size_t n, double rate, int kind)
{
	for (size_t i = 0; i < n; i++) {
		double t = (double)i / rate;

		if (kind == 0)
			x[i] += (float)(0.4 * exp(-fmod(t, 1 / 107.4) / 0.0008) *
					sin(2 * G_PI * 3000 * t));
		else if (kind == 1)
			x[i] += (float)(0.8 * sin(2 * G_PI * 29.95 * t) +
					0.1 * sin(2 * G_PI * 1234.5 * t) + 2.0);
	}
}

#endif
