/* The C face of OpenCV: the only C++ in the tree sits behind this header,
 * for fusion/ (resizing), inference/ (OpenCV DNN), db/ (image files) and
 * the tools. Images are 8-bit grayscale, row-major, with an explicit
 * stride. Every function returns 0 (or an object) or a negative
 * errno-style code (or NULL); none throws. Where a failure has a reason
 * worth telling (OpenCV's exception text), *err receives it, allocated
 * (g_free), as in every other module; err may be NULL. Thread-safe as
 * OpenCV is: one cvw_net per thread. */
#ifndef VIGIL_CVWRAP_CVWRAP_H
#define VIGIL_CVWRAP_CVWRAP_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Area-averaging resize (keeps small dark defects visible when shrinking). */
int cvw_resize_gray(const uint8_t *src, int w, int h, int stride,
		    uint8_t *dst, int dw, int dh);

/* Writes a PNG (or any format OpenCV knows by the extension). */
int cvw_imwrite_gray(const char *path, const uint8_t *img, int w, int h, int stride);

/* Writes a PNG whose pixels are stored, not compressed: 2.6 times the
 * bytes of cvw_imwrite_gray's, decoded in a third of the time. */
int cvw_imwrite_gray_stored(const char *path, const uint8_t *img, int w, int h, int stride);

/* Reads an image as grayscale. *img is malloc'ed, owned by the caller. */
int cvw_imread_gray(const char *path, uint8_t **img, int *w, int *h);

/* Decodes an image file held in memory (PNG or any format OpenCV knows by
 * its bytes) as grayscale, for files that arrive over the network rather
 * than on disk. *img is malloc'ed, owned by the caller; -EINVAL when the
 * bytes are not an image. */
int cvw_imdecode_gray(const void *buf, size_t len, uint8_t **img, int *w, int *h);

/* Gaussian blur in place (sigma in pixels). */
int cvw_blur_gray(uint8_t *img, int w, int h, int stride, double sigma);

/* The darkest small spot of an image against its own texture (docs/model.md,
 * "A dark-residual score"): the image scaled so that its long side is
 * side pixels (area averaging, also when enlarging), less its median
 * filter of median x median (odd, >= 3), edge pixels cut from each side;
 * *score is the highest box x box mean of that residual's negative over
 * the median absolute residual (plus 1e-3). A thin or small dark defect
 * does not move the median, so it stands out; the tile's own grain and
 * shading do not. -EINVAL on bad arguments or an image too small for
 * them, -EIO when OpenCV fails. */
int cvw_dark_spot(const uint8_t *src, int w, int h, int stride, int side, int median, int box,
		  int edge, double *score);

/* Bayer RGGB..BGGR to gray is left to GStreamer's bayer2rgb. */

/* OpenCV's worker threads, n >= 1: process-wide (its resizes too), not
 * per thread; calls with the count unchanged cost nothing. */
void cvw_set_threads(int n);

typedef struct cvw_net cvw_net;

/* Loads an ONNX file with OpenCV DNN (CPU). NULL with *err on failure. */
cvw_net *cvw_net_load(const char *onnx_path, char **err);
void cvw_net_free(cvw_net *net);

/* One output to fetch: name is the ONNX output's; NULL stands for the
 * net's one output that no other entry names (a net with several outputs
 * left over is an error). len receives the output's element count. */
struct cvw_output {
	const char *name;
	float *data;
	size_t cap;
	size_t len;
};

/* Runs the net on one float32 input of the given NCHW (or NC) shape and
 * copies each requested output, flattened, into its data (cap floats);
 * -EOVERFLOW when one is larger, -ENOENT when a name is not an output,
 * -EIO when OpenCV fails; *err says why (not for -EINVAL: bad arguments). */
int cvw_net_forward(cvw_net *net, const float *in, const int *shape, int ndim,
		    struct cvw_output *outs, int n_out, char **err);

#ifdef __cplusplus
}
#endif

#endif
