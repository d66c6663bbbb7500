/* The C face of OpenCV: the only C++ in the tree sits behind this header.
 * Images are 8-bit grayscale, row-major, with an explicit stride.
 * Every function returns 0 or a negative errno-style code; none throws. */
#ifndef VIGIL_FUSION_CVWRAP_H
#define VIGIL_FUSION_CVWRAP_H

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

/* Reads an image as grayscale. *img is malloc'ed, owned by the caller. */
int cvw_imread_gray(const char *path, uint8_t **img, int *w, int *h);

/* Gaussian blur in place (sigma in pixels). */
int cvw_blur_gray(uint8_t *img, int w, int h, int stride, double sigma);

/* Bayer RGGB..BGGR to gray is left to GStreamer's bayer2rgb. */

typedef struct cvw_net cvw_net;

/* Loads an ONNX file with OpenCV DNN (CPU). On failure returns NULL and
 * writes the reason into err. */
cvw_net *cvw_net_load(const char *onnx_path, char *err, size_t errlen);
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
 * -EOVERFLOW when one is larger, -ENOENT when a name is not an output. */
int cvw_net_forward(cvw_net *net, const float *in, const int *shape, int ndim,
		    struct cvw_output *outs, int n_out, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif

#endif
