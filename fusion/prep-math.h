/* The per-pixel and per-bin formulas of fusion/'s preprocessing, written
 * out so that another implementation can compute the same inputs: the
 * cuda backend's kernels (inference/cuda-prep-kernels.cu) include this
 * header, and tests/test-fusion.c checks these formulas against the C path
 * (OpenCV's resize, FFTW) on the CPU, so the kernels' arithmetic is
 * tested on machines without a GPU.
 *
 * Header-only; compiles as C and as CUDA (__host__ __device__). The
 * vibration formulas (windows, bin power, bands, analytic gain, band
 * features) are features.c's own: it calls them, so the CPU and GPU paths
 * share one statement, and test-fusion checks them through FFTW against
 * direct DFTs. The image formulas are an independent statement of
 * image.c's OpenCV calls. */
#ifndef VIGIL_FUSION_PREP_MATH_H
#define VIGIL_FUSION_PREP_MATH_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __CUDACC__
#define FP_HD __host__ __device__ static inline
#else
#define FP_HD static inline
#endif

/* ---- images: fusion_image_fit and fusion_image_prepare_resize ---- */

/* Where the frame goes in the model input. turn: the frame is first
 * turned a quarter clockwise (turned[y][x] = frame[h-1-x][y]); sw x sh:
 * the (turned) frame; fw x fh: its size after scaling; x0, y0: its top
 * left corner in the input. Stretch is the whole input. */
struct fp_fit {
	int turn, sw, sh, fw, fh, x0, y0;
};

FP_HD void fp_fit_geometry(int w, int h, int out_w, int out_h, int letterbox, struct fp_fit *g)
{
	g->turn = 0;
	g->sw = w;
	g->sh = h;
	g->fw = out_w;
	g->fh = out_h;
	g->x0 = g->y0 = 0;
	if (!letterbox)
		return;
	if ((w > h && out_w < out_h) || (w < h && out_w > out_h)) {
		g->turn = 1;
		g->sw = h;
		g->sh = w;
	}
	/* The largest size of the frame's aspect that fits, rounded. */
	if ((long long)g->sw * out_h >= (long long)g->sh * out_w) {
		g->fw = out_w;
		g->fh = (int)(((long long)g->sh * out_w * 2 + g->sw) / (2LL * g->sw));
	} else {
		g->fh = out_h;
		g->fw = (int)(((long long)g->sw * out_h * 2 + g->sh) / (2LL * g->sh));
	}
	g->fw = g->fw < 1 ? 1 : g->fw > out_w ? out_w : g->fw;
	g->fh = g->fh < 1 ? 1 : g->fh > out_h ? out_h : g->fh;
	g->x0 = (out_w - g->fw) / 2;
	g->y0 = (out_h - g->fh) / 2;
}

/* Pixel (x, y) of the frame as fitting sees it (turned or not); h is the
 * frame's own height. */
FP_HD int fp_src(const uint8_t *frame, int stride, int h, int turn, int x, int y)
{
	return turn ? frame[(size_t)(h - 1 - x) * (size_t)stride + (size_t)y]
		    : frame[(size_t)y * (size_t)stride + (size_t)x];
}

/* OpenCV's linear coefficient along one axis for output index d of a
 * src -> dst resize: the lower source index *s and the weight of the
 * next one. area: the coefficients OpenCV's INTER_AREA uses when it
 * enlarges (sx = floor(d * scale), f = (d + 1) - (sx + 1) / scale, its
 * fraction); else INTER_LINEAR's half-pixel centres. Both clamp at the
 * borders. */
FP_HD double fp_axis(int d, int src, int dst, int area, int *s)
{
	double scale = (double)src / (double)dst, f;
	int sx;

	if (area) {
		sx = (int)floor(d * scale);
		f = (double)(d + 1) - (double)(sx + 1) / scale;
		f = f <= 0 ? 0.0 : f - floor(f);
	} else {
		double fx = (d + 0.5) * scale - 0.5;

		sx = (int)floor(fx);
		f = fx - sx;
	}
	if (sx < 0) {
		sx = 0;
		f = 0;
	}
	if (sx >= src - 1) {
		sx = src - 1;
		f = 0;
	}
	*s = sx;
	return f;
}

/* Pixel (ox, oy) of the fitted frame (cvw_resize_gray of the sw x sh
 * frame to fw x fh) before rounding: a copy at equal size; the mean of
 * the source area under the output pixel, each source pixel weighted by
 * how much of it lies inside, when neither side grows (INTER_AREA); else
 * bilinear, INTER_LINEAR's coefficients when neither side shrinks and
 * INTER_AREA's enlarging ones when one shrinks and the other grows, in
 * OpenCV's fixed point (so already a whole grey level). OpenCV's own
 * float rounding still puts a few pixels one level off; tests/test-fusion.c
 * bounds how many. */
FP_HD double fp_fit_pixel(const uint8_t *frame, int stride, int h, const struct fp_fit *g,
			  int ox, int oy)
{
	int sw = g->sw, sh = g->sh, fw = g->fw, fh = g->fh;

	if (fw == sw && fh == sh)
		return fp_src(frame, stride, h, g->turn, ox, oy);
	if (fw <= sw && fh <= sh) {
		double sx = (double)sw / fw, sy = (double)sh / fh;
		double x_lo = ox * sx, x_hi = (ox + 1) * sx, y_lo = oy * sy, y_hi = (oy + 1) * sy;
		double sum = 0;
		int ix_end = (int)ceil(x_hi - 1e-9), iy_end = (int)ceil(y_hi - 1e-9);

		if (ix_end > sw)
			ix_end = sw;
		if (iy_end > sh)
			iy_end = sh;
		for (int iy = (int)floor(y_lo); iy < iy_end; iy++) {
			double wy = fmin(y_hi, iy + 1.0) - fmax(y_lo, (double)iy);

			for (int ix = (int)floor(x_lo); ix < ix_end; ix++) {
				double wx = fmin(x_hi, ix + 1.0) - fmax(x_lo, (double)ix);

				sum += wx * wy * fp_src(frame, stride, h, g->turn, ix, iy);
			}
		}
		return sum / (sx * sy);
	}
	{
		/* OpenCV's 8-bit linear resize: each axis' two weights rounded
		 * to 11 bits, rows interpolated in integers, then columns, the
		 * sum of both rounded off 22 bits (its vector path: each
		 * product taken down 20 bits, the pair rounded off the last 2). */
		int area = fw < sw || fh < sh, x0, y0;
		float ax = (float)fp_axis(ox, sw, fw, area, &x0), ay = (float)fp_axis(oy, sh, fh, area, &y0);
		int x1 = x0 + 1 < sw ? x0 + 1 : x0, y1 = y0 + 1 < sh ? y0 + 1 : y0;
		int cx0 = (int)lrintf((1.0f - ax) * 2048.0f), cx1 = (int)lrintf(ax * 2048.0f);
		int cy0 = (int)lrintf((1.0f - ay) * 2048.0f), cy1 = (int)lrintf(ay * 2048.0f);
		int top = cx0 * fp_src(frame, stride, h, g->turn, x0, y0) +
			  cx1 * fp_src(frame, stride, h, g->turn, x1, y0);
		int bottom = cx0 * fp_src(frame, stride, h, g->turn, x0, y1) +
			     cx1 * fp_src(frame, stride, h, g->turn, x1, y1);

		return (double)((((cy0 * (top >> 4)) >> 16) + ((cy1 * (bottom >> 4)) >> 16) + 2) >> 2);
	}
}

/* The 8-bit value of a fitted pixel: nearest, halves up. */
FP_HD int fp_round_u8(double v)
{
	int u = (int)floor(v + 0.5);

	return u < 0 ? 0 : u > 255 ? 255 : u;
}

/* The model input from an 8-bit value: (p / 255 - mean) / std, as one
 * float multiply-add, exactly as image.c writes it. */
FP_HD float fp_normalise(int u8, float mean, float std)
{
	float scale = 1.0f / (255.0f * std), offset = -mean / std;

	return (float)u8 * scale + offset;
}

/* Letterbox fill: the rounded mean of the fitted frame's n pixels. */
FP_HD int fp_fill(unsigned long long sum, unsigned long long n)
{
	return (int)((sum + n / 2) / n);
}

#ifndef __CUDACC__
/* The whole model input by these formulas on the CPU, the way the GPU
 * kernels assemble it: fit every pixel, the fill from their sum, place.
 * letterbox: FUSION_RESIZE_LETTERBOX. fitted: out_w * out_h bytes of
 * scratch. For tests. */
static inline void fp_prepare_host(const uint8_t *frame, int w, int h, int stride, int out_w,
				   int out_h, float mean, float std, int letterbox,
				   uint8_t *fitted, float *out)
{
	struct fp_fit g;
	unsigned long long sum = 0;
	int fill;

	fp_fit_geometry(w, h, out_w, out_h, letterbox, &g);
	for (int y = 0; y < g.fh; y++)
		for (int x = 0; x < g.fw; x++) {
			int u = fp_round_u8(fp_fit_pixel(frame, stride, h, &g, x, y));

			fitted[y * g.fw + x] = (uint8_t)u;
			sum += (unsigned)u;
		}
	fill = fp_fill(sum, (unsigned long long)g.fw * (unsigned long long)g.fh);
	for (int y = 0; y < out_h; y++)
		for (int x = 0; x < out_w; x++) {
			int fx = x - g.x0, fy = y - g.y0;
			int u = fx >= 0 && fx < g.fw && fy >= 0 && fy < g.fh ? fitted[fy * g.fw + fx]
									     : fill;

			out[y * out_w + x] = fp_normalise(u, mean, std);
		}
}
#endif

/* ---- vibration: vigil-sigfeat-v1 (fusion/features.c) ---- */

#define FP_POWER_BANDS 64
#define FP_ENV_BANDS 32
#define FP_ENV_BAND_HZ 18.75
#define FP_HIGHPASS_HZ 2000.0
#define FP_SIGFEAT_DIM (FP_POWER_BANDS + FP_ENV_BANDS + 4)

/* Periodic Hann window, sample i of n. */
FP_HD float fp_hann(size_t i, size_t n)
{
	return (float)(0.5 - 0.5 * cos(2.0 * 3.14159265358979323846 * (double)i / (double)n));
}

/* Tukey taper: edge = n / 32 cosine samples at each end, 1 between. */
FP_HD float fp_tukey(size_t i, size_t n)
{
	size_t edge = n / 32, j = i < n - 1 - i ? i : n - 1 - i;

	if (j >= edge)
		return 1.0f;
	return (float)(0.5 - 0.5 * cos(3.14159265358979323846 * ((double)j + 0.5) / (double)edge));
}

/* One-sided power of bin k from the DFT X[k] of the Hann-windowed signal:
 * twice |X[k]|^2 except at DC and Nyquist, over n * sum(hann^2) = 3n^2/8. */
FP_HD double fp_power(double re, double im, size_t k, size_t n)
{
	double twice = (k == 0 || 2 * k == n) ? 1.0 : 2.0;

	return twice * (re * re + im * im) / ((double)n * 0.375 * (double)n);
}

/* The first bin the envelope keeps: the high-pass at 2 kHz, or rate/6
 * below 12 kHz. */
FP_HD size_t fp_highpass_bin(size_t n, double rate_hz)
{
	double hp = FP_HIGHPASS_HZ < rate_hz / 6.0 ? FP_HIGHPASS_HZ : rate_hz / 6.0;

	return (size_t)ceil(hp / (rate_hz / (double)n));
}

/* The analytic signal's spectrum from the real one: bins below the
 * high-pass and above Nyquist dropped, the rest doubled but Nyquist. */
FP_HD double fp_analytic_gain(size_t k, size_t n, size_t highpass_bin)
{
	if (k < highpass_bin || 2 * k > n)
		return 0.0;
	return 2 * k == n ? 1.0 : 2.0;
}

/* Bins [lo, hi) of the band of centre frequencies [f_lo, f_hi); the bin
 * nearest the band's centre when none falls inside; never DC. */
FP_HD void fp_band_bins(double f_lo, double f_hi, double bin_hz, size_t nbins, int *lo, int *hi)
{
	long a = (long)ceil(f_lo / bin_hz - 1e-9), b = (long)ceil(f_hi / bin_hz - 1e-9);

	if (a < 1)
		a = 1;
	if (b > (long)nbins)
		b = (long)nbins;
	if (b <= a) {
		long c = (long)floor(0.5 * (f_lo + f_hi) / bin_hz + 0.5);

		if (c < 1)
			c = 1;
		if (c > (long)nbins - 1)
			c = (long)nbins - 1;
		a = c;
		b = c + 1;
	}
	*lo = (int)a;
	*hi = (int)b;
}

/* Band b of the 64 power bands (b < FP_POWER_BANDS) or, from
 * FP_POWER_BANDS on, of the 32 envelope bands. */
FP_HD void fp_feature_band(int b, size_t n, double rate_hz, int *lo, int *hi)
{
	double bin_hz = rate_hz / (double)n, nyq = rate_hz / 2.0;
	size_t nbins = n / 2 + 1;

	if (b < FP_POWER_BANDS) {
		double top = b == FP_POWER_BANDS - 1 ? nyq + bin_hz
						     : (b + 1) * nyq / FP_POWER_BANDS;

		fp_band_bins(b * nyq / FP_POWER_BANDS, top, bin_hz, nbins, lo, hi);
	} else {
		b -= FP_POWER_BANDS;
		fp_band_bins(b * FP_ENV_BAND_HZ, (b + 1) * FP_ENV_BAND_HZ, bin_hz, nbins, lo, hi);
	}
}

/* The band features from the mean power of a band's bins: log10 with the
 * floor 1e-12; envelope bands as modulation depth (over the squared mean
 * of the squared envelope), floor 1e-10. */
FP_HD float fp_power_feature(double band_mean)
{
	return (float)log10(band_mean + 1e-12);
}

FP_HD float fp_envelope_feature(double band_mean, double env_mean)
{
	double rel = env_mean > 0 ? band_mean / (env_mean * env_mean) : 0.0;

	return (float)log10(rel + 1e-10);
}

/* The last four: log10(RMS + 1e-9) of the mean-removed window, ln(crest
 * factor), ln(kurtosis), ln(kurtosis) of the high band inside the taper;
 * a log of 0 (a constant window) is 0. ms, peak: mean square and largest
 * |x| of the mean-removed window; m2, m4: its central moments; hm2, hm4:
 * those of the analytic signal's real part over [n/32, n - n/32). */
FP_HD void fp_time_features(double ms, double peak, double m2, double m4, double hm2, double hm4,
			    float *out)
{
	float rms = (float)sqrt(ms);
	float crest = ms > 0 ? (float)(peak / sqrt(ms)) : 0.0f;
	float kurt = m2 > 0 ? (float)(m4 / (m2 * m2)) : 0.0f;
	double hk = hm2 > 0 ? hm4 / (hm2 * hm2) : 0.0;

	out[0] = (float)log10(rms + 1e-9);
	out[1] = crest > 0 ? (float)log(crest) : 0.0f;
	out[2] = kurt > 0 ? (float)log(kurt) : 0.0f;
	out[3] = hk > 0 ? (float)log(hk) : 0.0f;
}

#endif
