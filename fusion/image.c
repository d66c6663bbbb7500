/* Image preprocessing for the vision module: area-averaging resize through
 * OpenCV (small dark defects keep their mean contrast when shrinking) and
 * normalisation to (pixel / 255 - mean) / std. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cvwrap/cvwrap.h"
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

/* Fitting modes (fusion.h, enum fusion_resize). */

int fusion_resize_parse(const char *name, enum fusion_resize *out)
{
	if (!name || !out)
		return -EINVAL;
	if (strcmp(name, "stretch") == 0)
		*out = FUSION_RESIZE_STRETCH;
	else if (strcmp(name, "letterbox") == 0)
		*out = FUSION_RESIZE_LETTERBOX;
	else
		return -EINVAL;
	return 0;
}

const char *fusion_resize_name(enum fusion_resize mode)
{
	switch (mode) {
	case FUSION_RESIZE_STRETCH: return "stretch";
	case FUSION_RESIZE_LETTERBOX: return "letterbox";
	}
	return NULL;
}

/* Scales src (w x h, stride) to exactly dw x dh into dst (stride dw). */
static int scale_to(const uint8_t *src, int w, int h, int stride, uint8_t *dst, int dw, int dh)
{
	if (dw == w && dh == h) {
		for (int y = 0; y < h; y++)
			memcpy(dst + (size_t)y * (size_t)dw, src + (size_t)y * (size_t)stride,
			       (size_t)w);
		return 0;
	}
	return cvw_resize_gray(src, w, h, stride, dst, dw, dh);
}

int fusion_image_fit(const uint8_t *gray, int w, int h, int stride, int out_w, int out_h,
		     enum fusion_resize mode, int fill, uint8_t *dst)
{
	uint8_t *turned = NULL, *fitted = NULL;
	const uint8_t *src = gray;
	int sw = w, sh = h, sstride = stride, fw, fh, x0, y0, rc;

	if (!gray || !dst || w <= 0 || h <= 0 || stride < w || out_w <= 0 || out_h <= 0 ||
	    fill < -1 || fill > 255 || !fusion_resize_name(mode))
		return -EINVAL;
	if (mode == FUSION_RESIZE_STRETCH)
		return scale_to(gray, w, h, stride, dst, out_w, out_h);

	/* Long sides agree: turn a quarter clockwise, turned[y][x] = src[h-1-x][y]. */
	if ((w > h && out_w < out_h) || (w < h && out_w > out_h)) {
		turned = malloc((size_t)w * (size_t)h);
		if (!turned)
			return -ENOMEM;
		sw = h;
		sh = w;
		for (int y = 0; y < sh; y++)
			for (int x = 0; x < sw; x++)
				turned[(size_t)y * (size_t)sw + (size_t)x] =
					gray[(size_t)(h - 1 - x) * (size_t)stride + (size_t)y];
		src = turned;
		sstride = sw;
	}
	/* The largest size of the frame's aspect that fits, rounded. */
	if ((long long)sw * out_h >= (long long)sh * out_w) {
		fw = out_w;
		fh = (int)(((long long)sh * out_w * 2 + sw) / (2LL * sw));
	} else {
		fh = out_h;
		fw = (int)(((long long)sw * out_h * 2 + sh) / (2LL * sh));
	}
	fw = fw < 1 ? 1 : fw > out_w ? out_w : fw;
	fh = fh < 1 ? 1 : fh > out_h ? out_h : fh;
	fitted = malloc((size_t)fw * (size_t)fh);
	if (!fitted) {
		rc = -ENOMEM;
		goto out;
	}
	rc = scale_to(src, sw, sh, sstride, fitted, fw, fh);
	if (rc < 0)
		goto out;
	if (fill < 0) {
		unsigned long long sum = 0;
		size_t n = (size_t)fw * (size_t)fh;

		for (size_t i = 0; i < n; i++)
			sum += fitted[i];
		fill = (int)((sum + n / 2) / n);
	}
	memset(dst, fill, (size_t)out_w * (size_t)out_h);
	x0 = (out_w - fw) / 2;
	y0 = (out_h - fh) / 2;
	for (int y = 0; y < fh; y++)
		memcpy(dst + (size_t)(y0 + y) * (size_t)out_w + (size_t)x0,
		       fitted + (size_t)y * (size_t)fw, (size_t)fw);
out:
	free(turned);
	free(fitted);
	return rc;
}

int fusion_image_prepare_resize(const uint8_t *gray, int w, int h, int stride,
				int out_w, int out_h, float mean, float std,
				enum fusion_resize mode, float *out)
{
	uint8_t *fitted;
	float scale, offset;
	size_t n;
	int rc;

	if (mode == FUSION_RESIZE_STRETCH)
		return fusion_image_prepare(gray, w, h, stride, out_w, out_h, mean, std, out);
	if (!gray || !out || w <= 0 || h <= 0 || stride < w || out_w <= 0 || out_h <= 0 ||
	    !isfinite(mean) || !isfinite(std) || !(std > 0) || !fusion_resize_name(mode))
		return -EINVAL;
	n = (size_t)out_w * (size_t)out_h;
	fitted = malloc(n);
	if (!fitted)
		return -ENOMEM;
	rc = fusion_image_fit(gray, w, h, stride, out_w, out_h, mode, -1, fitted);
	if (rc == 0) {
		/* The same multiply-add as fusion_image_prepare. */
		scale = 1.0f / (255.0f * std);
		offset = -mean / std;
		for (size_t i = 0; i < n; i++)
			out[i] = (float)fitted[i] * scale + offset;
	}
	free(fitted);
	return rc;
}

int fusion_image_input(const struct fusion_image_spec *spec, const uint8_t *gray, int w, int h,
		       int stride, float *out)
{
	if (!spec)
		return -EINVAL;
	return fusion_image_prepare_resize(gray, w, h, stride, spec->width, spec->height,
					   spec->mean, spec->std, spec->resize, out);
}
