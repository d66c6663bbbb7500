/* Fixtures shared by the inference engine tests (test-inference-engine.c,
 * test-inference-cuda.c): where the shipped packages are, deterministic
 * inputs, and a module's input shape. */
#ifndef VIGIL_TESTS_INFERTEST_H
#define VIGIL_TESTS_INFERTEST_H

#include <glib.h>
#include <stddef.h>

#include "inference/inference.h"
#include "inference/onnx-graph.h"

/* models/PKG/FILE under $VIGIL_SOURCE_ROOT (FILE may be NULL: the folder);
 * g_free it. */
char *infertest_package_path(const char *pkg, const char *file);

/* A deterministic input: smooth structure plus noise, like a normalised
 * image or a feature vector, times scale. */
void infertest_fill_input(float *x, size_t n, guint32 seed, float scale);

/* The input shape the file declares, batch set to `batch`; returns ndim. */
int infertest_module_shape(const onnx_graph *g, int batch, int *shape);
size_t infertest_shape_count(const int *shape, int ndim);

/* A copy of the package folder src in a new temporary folder; remove it
 * (and free the string) with infertest_remove_package. */
char *infertest_copy_package(const char *src);
void infertest_remove_package(char *dir);

/* Replaces the first occurrence of from (which must be there) with to in
 * dir/file. */
void infertest_edit_file(const char *dir, const char *file, const char *from, const char *to);

/* Bounds on |p - p_fp32| (fused, vision and signal probabilities) of
 * infertest_check_precision's synthetic parts in fp16 and bf16, for the
 * reference executor's rounding (CPU) and the cuda backend (GPU). The
 * noise parts drive the packages far outside what they were trained on;
 * tests/test-inference-engine.c reports what they measure. */
#define INFERTEST_FP16_MARGIN 0.02f
#define INFERTEST_BF16_MARGIN 0.05f

/* Reduced precision on one package over `parts` synthetic parts: the
 * candidate (backend at prec) against the yardstick (ref_backend at
 * ref_prec). No probability may move by more than margin, and every
 * verdict agrees unless the yardstick's fused score lies within margin of
 * a threshold (borderline: the noise parts of the real packages mostly
 * sit at p = 1, by their thresholds of ~0.99). Reports the counts and the
 * worst move (g_test_message). */
struct infertest_precision {
	int agree;                 /* verdicts compared, all equal */
	int borderline;            /* parts too near a threshold to compare */
	int moved;                 /* parts with some probability not the yardstick's */
	float worst;               /* the largest move */
};
struct infertest_precision infertest_check_precision(const char *pkg, const char *ref_backend,
						     enum infer_precision ref_prec,
						     const char *backend, enum infer_precision prec,
						     float margin, int parts);

#endif
