/* Frame-to-input geometries that the preprocessing tests share: shrinking
 * by whole and fractional factors, enlarging, one side shrinking while the
 * other grows, and the letterbox with and without its quarter turn.
 * tests/test-fusion.c holds fusion/prep-math.h's formulas to OpenCV on
 * them, tests/test-cuda-preprocess.c the GPU kernels to both. */
#ifndef VIGIL_TESTS_PREP_CASES_H
#define VIGIL_TESTS_PREP_CASES_H

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

#endif
