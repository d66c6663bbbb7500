/* The CPU backend: OpenCV DNN through cvwrap/cvwrap.h. */
#include <errno.h>
#include <glib.h>

#include "cvwrap/cvwrap.h"
#include "inference/infer-private.h"
#include "inference/inference.h"

static void *opencv_load(const char *onnx_path, char **err)
{
	char *why = NULL;
	cvw_net *net = cvw_net_load(onnx_path, &why);

	if (!net)
		*err = g_strdup_printf("%s: OpenCV DNN cannot load it: %s", onnx_path,
				       why ? why : "");
	g_free(why);
	return net;
}

static int opencv_run(void *module, const float *in, const int *shape, int ndim,
		      struct infer_tensor *out, int n_out, char **err)
{
	char *why = NULL;
	struct cvw_output outs[INFER_MAX_OUTPUTS];
	int rc;

	if (n_out <= 0 || n_out > INFER_MAX_OUTPUTS)
		return -EINVAL;
	for (int i = 0; i < n_out; i++)
		outs[i] = (struct cvw_output){ out[i].name, out[i].data, out[i].cap, 0 };
	rc = cvw_net_forward(module, in, shape, ndim, outs, n_out, &why);
	for (int i = 0; i < n_out; i++)
		out[i].len = outs[i].len;
	if (rc < 0)
		*err = g_strdup_printf("OpenCV DNN forward failed: %s", why ? why : "");
	g_free(why);
	return rc;
}

static void opencv_free(void *module)
{
	cvw_net_free(module);
}

const struct infer_backend infer_backend_opencv = {
	.name = "opencv",
	.precisions = 1u << INFER_FP32,
	.load = opencv_load,
	.run = opencv_run,
	.free = opencv_free,
	.set_threads = cvw_set_threads,
};
