/* Image preprocessing for the vision module: area-averaging resize through
 * OpenCV (small dark defects keep their mean contrast when shrinking) and
 * normalisation to (pixel / 255 - mean) / std. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>

#include "fusion/cvwrap.h"
#include "fusion/fusion.h"

int fusion_image_prepare(const uint8_t *gray, int w, int h, int stride,
			 int out_w, int out_h, float mean, float std, float *out)
{
	const uint8_t *src = gray;
	uint8_t *resized = NULL;
	int src_stride = stride;
	float scale, offset;
	int rc = 0;

	if (!gray || !out || w <= 0 || h <= 0 || stride < w || out_w <= 0 || out_h <= 0 ||
	    !isfinite(mean) || !isfinite(std) || !(std > 0))
		return -EINVAL;
	if (out_w != w || out_h != h) {
		resized = malloc((size_t)out_w * (size_t)out_h);
		if (!resized)
			return -ENOMEM;
		rc = cvw_resize_gray(gray, w, h, stride, resized, out_w, out_h);
		if (rc < 0)
			goto out;
		src = resized;
		src_stride = out_w;
	}
	/* (p / 255 - mean) / std as one multiply-add per pixel. */
	scale = 1.0f / (255.0f * std);
	offset = -mean / std;
	for (int y = 0; y < out_h; y++) {
		const uint8_t *row = src + (size_t)y * (size_t)src_stride;
		float *o = out + (size_t)y * (size_t)out_w;

		for (int x = 0; x < out_w; x++)
			o[x] = (float)row[x] * scale + offset;
	}
out:
	free(resized);
	return rc;
}
