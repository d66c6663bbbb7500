/* The CPU backend: OpenCV DNN through fusion/cvwrap.h. */
#include <glib.h>

#include "fusion/cvwrap.h"
#include "inference/inference.h"

static void *opencv_load(const char *onnx_path, char **err)
{
	char msg[512] = "";
	cvw_net *net = cvw_net_load(onnx_path, msg, sizeof msg);

	if (!net)
		*err = g_strdup_printf("%s: OpenCV DNN cannot load it: %s", onnx_path, msg);
	return net;
}

static int opencv_run(void *module, const float *in, const int *shape, int ndim,
		      float *out, size_t out_cap, size_t *out_len, char **err)
{
	char msg[512] = "";
	int rc = cvw_net_forward(module, in, shape, ndim, out, out_cap, out_len, msg, sizeof msg);

	if (rc < 0)
		*err = g_strdup_printf("OpenCV DNN forward failed: %s", msg);
	return rc;
}

static void opencv_free(void *module)
{
	cvw_net_free(module);
}

const struct infer_backend infer_backend_opencv = {
	.name = "opencv",
	.load = opencv_load,
	.run = opencv_run,
	.free = opencv_free,
};
