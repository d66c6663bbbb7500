/* [model]: the package the line starts on and how it runs. The keys, their
 * defaults and their ranges live here, beside the backends that use them;
 * vigild only hands the section to infer_options_read. */
#include <errno.h>

#include <glib.h>

#include "inference/inference.h"

static const char *const model_keys[] = { "package", "backend", "precision", "max_batch", NULL };

int infer_options_read(const config *cfg, struct infer_settings *s, char **err)
{
	const struct infer_backend *be;
	int precision = 0;

	*s = (struct infer_settings){ 0 };
	if (config_check_keys(cfg, "model", model_keys, err) < 0 ||
	    config_get_string(cfg, "model", "package", NULL, &s->package, err) < 0 ||
	    config_get_string(cfg, "model", "backend", "opencv", &s->backend, err) < 0 ||
	    config_get_choice(cfg, "model", "precision", "fp32", infer_precision_names,
			      &precision, err) < 0 ||
	    config_get_int(cfg, "model", "max_batch", INFER_DEFAULT_MAX_BATCH, 1,
			   INFER_MAX_BATCH, &s->max_batch, err) < 0)
		return -EINVAL;
	s->precision = (enum infer_precision)precision;
	/* An unknown backend is refused with the package, naming what this
	 * build has; a known one must run the precision asked. */
	be = infer_backend_find(s->backend);
	if (be && !infer_backend_has_precision(be, s->precision)) {
		char *list = infer_backend_precision_list(be);

		*err = config_error(cfg, "model", "precision",
				    "the %s backend does not run %s (it runs: %s)",
				    s->backend, infer_precision_names[s->precision], list);
		g_free(list);
		return -EINVAL;
	}
	return 0;
}

void infer_settings_clear(struct infer_settings *s)
{
	if (!s)
		return;
	g_free(s->package);
	g_free(s->backend);
	*s = (struct infer_settings){ 0 };
}
