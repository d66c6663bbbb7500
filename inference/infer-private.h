/* Private to inference/ (and the white-box tests of its backends): the
 * backend table and what only inference/'s own files share. Other folders
 * see backends by name only, through inference/inference.h. */
#ifndef VIGIL_INFERENCE_INFER_PRIVATE_H
#define VIGIL_INFERENCE_INFER_PRIVATE_H

#include <stddef.h>

#include "inference/inference.h"

/* One output of a module, fetched by name into caller-owned memory. */
struct infer_tensor {
	const char *name;          /* ONNX output name; NULL: the module's one output
				    * that no other requested tensor names */
	float *data;               /* cap floats, filled flattened */
	size_t cap;
	size_t len;                /* set by run: the output's element count */
};

#define INFER_MAX_OUTPUTS 4   /* outputs one run may fetch */

struct infer_quant;           /* one module's int8 calibration (inference/infer-engine.h) */

/* A backend runs one ONNX module; a const table chosen by name. load gives
 * a float32 module; load_at (NULL for a float32-only backend) the
 * precisions in the precisions mask (1u << INFER_*), with quant the
 * module's calibration for INFER_INT8 and NULL otherwise. run fills n_out
 * outputs of one forward pass; an output larger than its cap fails with
 * -EOVERFLOW (len still set). It is also the batch entry point: shape[0]
 * is the number of parts N, in holds them one after another and each
 * output holds N parts' values in the same order (every backend runs any
 * N >= 1 in one forward pass, in every precision it has). */
struct infer_backend {
	const char *name;
	unsigned precisions;
	void *(*load)(const char *onnx_path, char **err);
	void *(*load_at)(const char *onnx_path, enum infer_precision p,
			 const struct infer_quant *quant, char **err);
	int (*run)(void *module, const float *in, const int *shape, int ndim,
		   struct infer_tensor *out, int n_out, char **err);
	void (*free)(void *module);
	/* run with the input in GPU memory (the cuda backends, fed by their
	 * own preprocessing, inference/cuda-prep.h); NULL for CPU backends. */
	int (*run_device)(void *module, const float *dev_in, const int *shape, int ndim,
			  struct infer_tensor *out, int n_out, char **err);
	/* n >= 1 threads for the runs that follow on the calling thread (NULL:
	 * the backend has no such setting); called before every run, so it
	 * must be cheap when n is unchanged. */
	void (*set_threads)(int n);
};

/* be->run for one output of a module, the one called name (NULL: its
 * main output): out gets at most cap floats, *len their count. For tests. */
int infer_backend_run1(const struct infer_backend *be, void *module, const float *in,
		       const int *shape, int ndim, const char *name, float *out, size_t cap,
		       size_t *len, char **err);

extern const struct infer_backend infer_backend_opencv;     /* infer-opencv.c */
extern const struct infer_backend infer_backend_reference;  /* infer-reference.c */
#ifdef VIGIL_HAVE_CUDA
extern const struct infer_backend infer_backend_cuda;       /* infer-cuda.c */
#endif
#ifdef VIGIL_HAVE_ONEDNN
extern const struct infer_backend infer_backend_onednn;     /* infer-onednn.c */
#endif

/* The backend module running vision (0), signal (1) or decision (2), for
 * calibration, which drives the reference executor directly; owned by m. */
void *infer_model_module(infer_model *m, int which);

/* The SHA-256 of the file at path as lowercase hex into *hex (g_free): the
 * one file hash of model packages and their calibration. 0, or -EIO with
 * *err (g_free) GLib's reason when the file cannot be read. */
int infer_file_sha256(const char *path, char **hex, char **err);

#endif
