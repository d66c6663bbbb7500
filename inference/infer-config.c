/* [model]: the package the line starts on, how it runs, and the gate its
 * held-out figures must pass. The keys, their defaults and their ranges
 * live here, beside the backends that use them; vigild only hands the
 * section to infer_options_read. */
#include <errno.h>
#include <math.h>
#include <string.h>

#include <glib.h>

#include "inference/inference.h"

/* learn is read by the line (app/line-config.c: it changes what the line
 * does with a verdict, not how the model reaches it), but it is a [model]
 * key all the same. */
static const char *const model_keys[] = { "package", "backend", "precision", "threads",
					  "max_batch", "learn",
					  "min_heldout_parts", "min_heldout_accuracy",
					  "max_heldout_escape_rate",
					  "max_heldout_false_reject_rate", NULL };

/* The gate's keys and defaults, in enum infer_gate_limit order. The
 * defaults refuse what is plainly broken (the two-epoch package that
 * rejected every good part: false reject rate 1.0) and let every package
 * in models/ through: real-v1, the weakest, misses 38 % of defects at
 * 0.7 % false rejects, so the escape limit is 0.5 (a model that misses
 * half of what it is there to find), the false reject limit 0.2 (a fifth
 * of good parts to manual check would swamp it), accuracy 0.5 (no better
 * than a coin) and no minimum of held-out parts. */
static const struct {
	const char *key, *figure, *what;
	int is_max;
	double def, lo, hi;
} gate_keys[INFER_GATE_LIMITS] = {
	[INFER_GATE_PARTS] = { "min_heldout_parts", "heldout_parts", "held-out parts", 0,
			       0, 0, 1e9 },
	[INFER_GATE_ACCURACY] = { "min_heldout_accuracy", "heldout_accuracy",
				  "held-out accuracy", 0, 0.5, 0, 1 },
	[INFER_GATE_ESCAPE_RATE] = { "max_heldout_escape_rate", "heldout_escape_rate",
				     "held-out escape rate", 1, 0.5, 0, 1 },
	[INFER_GATE_FALSE_REJECT_RATE] = { "max_heldout_false_reject_rate",
					   "heldout_false_reject_rate",
					   "held-out false reject rate", 1, 0.2, 0, 1 },
};

static int read_gate(const config *cfg, struct infer_gate *g, char **err)
{
	for (int i = 0; i < INFER_GATE_LIMITS; i++) {
		char *raw = NULL;

		if (config_get_double(cfg, "model", gate_keys[i].key, gate_keys[i].def,
				      gate_keys[i].lo, gate_keys[i].hi, &g->limit[i], err) < 0 ||
		    config_get_string(cfg, "model", gate_keys[i].key, "", &raw, err) < 0)
			return -EINVAL;
		if (i == INFER_GATE_PARTS && g->limit[i] != floor(g->limit[i])) {
			*err = config_error(cfg, "model", gate_keys[i].key,
					    "'%s' is not a whole number", raw);
			g_free(raw);
			return -EINVAL;
		}
		/* The refusal is told long after the file was read (a job
		 * switch), so the key's place is kept now; config_error's
		 * "FILE:LINE: [model] KEY: " less its trailing separator. */
		if (raw[0]) {
			char *e = config_error(cfg, "model", gate_keys[i].key, "%s", "");

			g_strchomp(e);
			if (g_str_has_suffix(e, ":"))
				e[strlen(e) - 1] = '\0';
			g->where[i] = e;
		}
		g_free(raw);
	}
	return 0;
}

int infer_options_read(const config *cfg, struct infer_settings *s, char **err)
{
	const struct infer_backend *be;
	int precision = 0;

	*s = (struct infer_settings){ 0 };
	if (config_check_keys(cfg, "model", model_keys, err) < 0 ||
	    config_get_string(cfg, "model", "package", NULL, &s->package, err) < 0 ||
	    config_get_string(cfg, "model", "backend", INFER_BACKEND_AUTO, &s->backend, err) < 0 ||
	    config_get_choice(cfg, "model", "precision", "fp32", infer_precision_names,
			      &precision, err) < 0 ||
	    config_get_int(cfg, "model", "threads", infer_default_threads(), 0, 1024, &s->threads,
			   err) < 0 ||
	    config_get_int(cfg, "model", "max_batch", INFER_DEFAULT_MAX_BATCH, 1,
			   INFER_MAX_BATCH, &s->max_batch, err) < 0 ||
	    read_gate(cfg, &s->gate, err) < 0)
		return -EINVAL;
	s->precision = (enum infer_precision)precision;
	/* An unknown backend is refused with the package, naming what this
	 * build has; a known one must run the precision asked. */
	if (strcmp(s->backend, INFER_BACKEND_AUTO) == 0) {
		char *list = infer_auto_candidates(s->precision);
		int none = !list[0];

		if (none)
			*err = config_error(cfg, "model", "precision",
					    "backend auto has no CPU backend that runs %s; "
					    "name one in [model] backend",
					    infer_precision_names[s->precision]);
		g_free(list);
		return none ? -EINVAL : 0;
	}
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
	for (int i = 0; i < INFER_GATE_LIMITS; i++)
		g_free(s->gate.where[i]);
	*s = (struct infer_settings){ 0 };
}

/* The limit i and where it comes from, for a message: "the maximum set at
 * FILE:LINE: [model] KEY" or "the default maximum of [model] KEY (not
 * set)". Owned by the caller. */
static char *limit_source(const struct infer_gate *g, int i)
{
	const char *kind = gate_keys[i].is_max ? "maximum" : "minimum";

	return g->where[i] ? g_strdup_printf("the %s set at %s", kind, g->where[i])
			   : g_strdup_printf("the default %s of [model] %s (not set)", kind,
					     gate_keys[i].key);
}

int infer_gate_check(const struct infer_gate *g, const struct infer_info *info, char **err,
		     char **warning)
{
	const struct infer_metrics *mt = &info->metrics;
	const double figure[INFER_GATE_LIMITS] = {
		[INFER_GATE_PARTS] = mt->parts ? mt->parts : NAN,
		[INFER_GATE_ACCURACY] = mt->accuracy,
		[INFER_GATE_ESCAPE_RATE] = mt->escape_rate,
		[INFER_GATE_FALSE_REJECT_RATE] = mt->false_reject_rate,
	};
	GString *unchecked = NULL;

	*warning = NULL;
	for (int i = 0; i < INFER_GATE_LIMITS; i++) {
		const double x = figure[i], lim = g->limit[i];
		char *src;

		if (isnan(x)) {
			if (g->where[i]) {
				*err = g_strdup_printf("it has no %s ([metrics] %s in its "
						       "manifest), which %s demands",
						       gate_keys[i].what, gate_keys[i].figure,
						       g->where[i]);
				goto refused;
			}
			/* A default that checks nothing has nothing to miss. */
			if (gate_keys[i].is_max ? lim < 1 : lim > 0) {
				if (!unchecked)
					unchecked = g_string_new(NULL);
				g_string_append_printf(unchecked, "%s%s",
						       unchecked->len ? ", " : "",
						       gate_keys[i].figure);
			}
			continue;
		}
		if (gate_keys[i].is_max ? x <= lim : x >= lim)
			continue;
		src = limit_source(g, i);
		if (i == INFER_GATE_PARTS)
			*err = g_strdup_printf("its %s are %.0f ([metrics] %s), fewer than %.0f, "
					       "%s", gate_keys[i].what, x, gate_keys[i].figure, lim,
					       src);
		else
			*err = g_strdup_printf("its %s is %.4f ([metrics] %s), %s %g, %s",
					       gate_keys[i].what, x, gate_keys[i].figure,
					       gate_keys[i].is_max ? "above" : "below", lim, src);
		g_free(src);
		goto refused;
	}
	if (unchecked)
		*warning = g_strdup_printf("model %s has no held-out figures (%s in [metrics]): "
					   "not checked against the [model] limits",
					   info->version, unchecked->str);
	if (unchecked)
		g_string_free(unchecked, TRUE);
	return 0;
refused:
	if (unchecked)
		g_string_free(unchecked, TRUE);
	return INFER_EGATE;
}
