/* Fixtures shared by the inference engine tests (test-inference-engine.c,
 * test-inference-cuda.c): where the shipped packages are, deterministic
 * inputs, and a module's input shape. */
#ifndef VIGIL_TESTS_INFERTEST_H
#define VIGIL_TESTS_INFERTEST_H

#include <glib.h>
#include <stddef.h>

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

#endif
