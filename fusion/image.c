/* Image preprocessing for the vision module: area-averaging resize through
 * OpenCV (small dark defects keep their mean contrast when shrinking) and
 * normalisation to (pixel / 255 - mean) / std. */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
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

/* Where a letterboxed w x h frame lies in an out_w x out_h input: turned
 * (a quarter clockwise first, when the long sides disagree), then scaled
 * to fw x fh at (x0, y0). fusion_image_fit places the pixels there and
 * fusion_map_to_frame carries a map back from there: one geometry. */
struct fit {
	bool turned;
	int fw, fh, x0, y0;
};

static struct fit fit_geometry(int w, int h, int out_w, int out_h)
{
	struct fit g = { .turned = (w > h && out_w < out_h) || (w < h && out_w > out_h) };
	int sw = g.turned ? h : w, sh = g.turned ? w : h;

	/* The largest size of the frame's aspect that fits, rounded. */
	if ((long long)sw * out_h >= (long long)sh * out_w) {
		g.fw = out_w;
		g.fh = (int)(((long long)sh * out_w * 2 + sw) / (2LL * sw));
	} else {
		g.fh = out_h;
		g.fw = (int)(((long long)sw * out_h * 2 + sh) / (2LL * sh));
	}
	g.fw = g.fw < 1 ? 1 : g.fw > out_w ? out_w : g.fw;
	g.fh = g.fh < 1 ? 1 : g.fh > out_h ? out_h : g.fh;
	g.x0 = (out_w - g.fw) / 2;
	g.y0 = (out_h - g.fh) / 2;
	return g;
}

int fusion_image_fit(const uint8_t *gray, int w, int h, int stride, int out_w, int out_h,
		     enum fusion_resize mode, int fill, uint8_t *dst)
{
	uint8_t *turned = NULL, *fitted = NULL;
	const uint8_t *src = gray;
	int sw = w, sh = h, sstride = stride, fw, fh, x0, y0, rc;
	struct fit g;

	if (!gray || !dst || w <= 0 || h <= 0 || stride < w || out_w <= 0 || out_h <= 0 ||
	    fill < -1 || fill > 255 || !fusion_resize_name(mode))
		return -EINVAL;
	if (mode == FUSION_RESIZE_STRETCH)
		return scale_to(gray, w, h, stride, dst, out_w, out_h);

	g = fit_geometry(w, h, out_w, out_h);
	/* Long sides agree: turn a quarter clockwise, turned[y][x] = src[h-1-x][y]. */
	if (g.turned) {
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
	fw = g.fw;
	fh = g.fh;
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
	x0 = g.x0;
	y0 = g.y0;
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

/* The map's value at cell coordinates (cx, cy), cell centres at integers,
 * bilinear, clamped to the map. */
static float map_at(const float *map, int mw, int mh, float cx, float cy)
{
	int x, y, x1, y1;
	float ax, ay;

	cx = cx < 0 ? 0 : cx > (float)(mw - 1) ? (float)(mw - 1) : cx;
	cy = cy < 0 ? 0 : cy > (float)(mh - 1) ? (float)(mh - 1) : cy;
	x = (int)cx;
	y = (int)cy;
	x1 = x + 1 < mw ? x + 1 : x;
	y1 = y + 1 < mh ? y + 1 : y;
	ax = cx - (float)x;
	ay = cy - (float)y;
	return (1 - ay) * ((1 - ax) * map[(size_t)y * (size_t)mw + (size_t)x] +
			   ax * map[(size_t)y * (size_t)mw + (size_t)x1]) +
	       ay * ((1 - ax) * map[(size_t)y1 * (size_t)mw + (size_t)x] +
		     ax * map[(size_t)y1 * (size_t)mw + (size_t)x1]);
}

float *fusion_map_to_frame(const struct fusion_image_spec *spec, int w, int h,
			   const float *map, int mw, int mh, int *ow, int *oh)
{
	struct fit g;
	float *out;
	int sw, sh;

	if (!spec || !map || !ow || !oh || w <= 0 || h <= 0 || mw <= 0 || mh <= 0 ||
	    spec->width <= 0 || spec->height <= 0 || !fusion_resize_name(spec->resize))
		return NULL;
	if (spec->resize == FUSION_RESIZE_STRETCH) {
		/* Already lies over the whole frame, stretched as the frame was. */
		out = malloc((size_t)mw * (size_t)mh * sizeof *out);
		if (!out)
			return NULL;
		*ow = mw;
		*oh = mh;
		return memcpy(out, map, (size_t)mw * (size_t)mh * sizeof *out);
	}
	g = fit_geometry(w, h, spec->width, spec->height);
	sw = g.turned ? h : w;
	sh = g.turned ? w : h;
	{
		/* As many cells as the map spent on the frame, in its turn. */
		int cw = (int)lrint((double)g.fw * mw / spec->width);
		int ch = (int)lrint((double)g.fh * mh / spec->height);

		cw = cw < 1 ? 1 : cw;
		ch = ch < 1 ? 1 : ch;
		*ow = g.turned ? ch : cw;
		*oh = g.turned ? cw : ch;
	}
	out = malloc((size_t)*ow * (size_t)*oh * sizeof *out);
	if (!out)
		return NULL;
	for (int oy = 0; oy < *oh; oy++) {
		for (int ox = 0; ox < *ow; ox++) {
			/* The cell's centre on the frame, then in the turned
			 * frame (turned[ty][tx] = frame[h-1-tx][ty]), then in
			 * the input and on the map (cell centres at .5). */
			float fx = ((float)ox + 0.5f) * (float)w / (float)*ow;
			float fy = ((float)oy + 0.5f) * (float)h / (float)*oh;
			float tx = g.turned ? (float)h - fy : fx;
			float ty = g.turned ? fx : fy;
			float u = (float)g.x0 + tx * (float)g.fw / (float)sw;
			float v = (float)g.y0 + ty * (float)g.fh / (float)sh;

			out[(size_t)oy * (size_t)*ow + (size_t)ox] =
				map_at(map, mw, mh, u * (float)mw / (float)spec->width - 0.5f,
				       v * (float)mh / (float)spec->height - 0.5f);
		}
	}
	return out;
}

int fusion_dark_score(const struct fusion_dark_spec *spec, const uint8_t *gray, int w, int h,
		      int stride, float *out)
{
	double score;
	int rc;

	if (!spec || !out)
		return -EINVAL;
	rc = cvw_dark_spot(gray, w, h, stride, spec->side, spec->median, spec->box, spec->edge,
			   &score);
	if (rc < 0)
		return rc;
	/* A frame with no pixel below its median scores 0: a floor, not -inf. */
	*out = (float)log(fmax(score, 1e-6));
	return 0;
}
