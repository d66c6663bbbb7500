/* vigilctl pareto: rejects by cause and yield per hour or shift, as a
 * table, CSV or JSON (vigilctl.c has the options). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/part.h"
#include "report/report.h"
#include "tools/vigilctl-private.h"

/* The counting is report_pareto's (report/report.h), which the shift
 * report shares; here only the three ways of printing it. */

static const int class_order[4] = { VIGIL_CLASS_SURFACE, VIGIL_CLASS_VIBRATION, VIGIL_CLASS_BOTH,
				    VIGIL_CLASS_NONE };

/* What one printing needs: the buckets, the causes largest first. */
struct pareto_view {
	const report_pareto *p;
	gboolean by_shift;
	int order[4];
	uint64_t counts[4], rejected;
};

static void pareto_table(const struct pareto_view *v)
{
	uint64_t run = 0;

	printf("%-18s %7s %7s %8s %7s   %s\n", v->by_shift ? "shift" : "hour", "parts", "yield",
	       "rejected", "marginal", "rejects by class (surface/vibration/both/none)");
	for (size_t i = 0; i < report_pareto_nbuckets(v->p); i++) {
		const struct report_bucket *b = report_pareto_bucket(v->p, i);

		printf("%-18s %7" G_GUINT64_FORMAT " %6.1f%% %8" G_GUINT64_FORMAT " %7"
		       G_GUINT64_FORMAT "   %" G_GUINT64_FORMAT "/%" G_GUINT64_FORMAT "/%"
		       G_GUINT64_FORMAT "/%" G_GUINT64_FORMAT "\n", b->key, b->parts,
		       report_bucket_yield_pct(b), b->rejected, b->marginal,
		       b->by_class[VIGIL_CLASS_SURFACE], b->by_class[VIGIL_CLASS_VIBRATION],
		       b->by_class[VIGIL_CLASS_BOTH], b->by_class[VIGIL_CLASS_NONE]);
	}
	printf("\nreject causes (Pareto):\n");
	for (int i = 0; i < 4; i++) {
		uint64_t n = v->counts[i];

		if (!n)
			continue;
		run += n;
		printf("  %-18s %7" G_GUINT64_FORMAT "  %5.1f%%  cumulative %5.1f%%\n",
		       vigil_class_name((enum vigil_defect_class)v->order[i]), n,
		       100.0 * (double)n / (double)v->rejected, 100.0 * (double)run / (double)v->rejected);
	}
}

/* One table, so one CSV: the buckets. The Pareto of causes is the sum of
 * the rejects_* columns (json gives it worked out). */
static void pareto_csv(const struct pareto_view *v)
{
	printf("%s,parts,yield_pct,rejected,marginal,rejects_surface,rejects_vibration,"
	       "rejects_both,rejects_none\n", v->by_shift ? "shift" : "hour");
	for (size_t i = 0; i < report_pareto_nbuckets(v->p); i++) {
		const struct report_bucket *b = report_pareto_bucket(v->p, i);

		vigilctl__csv_field(stdout, b->key);
		printf(",%" G_GUINT64_FORMAT ",%.3f,%" G_GUINT64_FORMAT ",%" G_GUINT64_FORMAT,
		       b->parts, report_bucket_yield_pct(b), b->rejected, b->marginal);
		for (int k = 0; k < 4; k++)
			printf(",%" G_GUINT64_FORMAT, b->by_class[class_order[k]]);
		putchar('\n');
	}
}

static void pareto_json(const struct pareto_view *v)
{
	JsonBuilder *j = json_builder_new();
	uint64_t run = 0;

	json_builder_begin_object(j);
	json_builder_set_member_name(j, "buckets");
	json_builder_begin_array(j);
	for (size_t i = 0; i < report_pareto_nbuckets(v->p); i++) {
		const struct report_bucket *b = report_pareto_bucket(v->p, i);

		json_builder_begin_object(j);
		vigilctl__add_string(j, v->by_shift ? "shift" : "hour", b->key);
		json_builder_set_member_name(j, "parts");
		json_builder_add_int_value(j, (gint64)b->parts);
		vigilctl__add_number(j, "yield_pct", report_bucket_yield_pct(b));
		json_builder_set_member_name(j, "rejected");
		json_builder_add_int_value(j, (gint64)b->rejected);
		json_builder_set_member_name(j, "marginal");
		json_builder_add_int_value(j, (gint64)b->marginal);
		json_builder_set_member_name(j, "rejects_by_class");
		json_builder_begin_object(j);
		for (int k = 0; k < 4; k++) {
			json_builder_set_member_name(j, vigil_class_name(class_order[k]));
			json_builder_add_int_value(j, (gint64)b->by_class[class_order[k]]);
		}
		json_builder_end_object(j);
		json_builder_end_object(j);
	}
	json_builder_end_array(j);
	json_builder_set_member_name(j, "causes");
	json_builder_begin_array(j);
	for (int i = 0; i < 4; i++) {
		uint64_t n = v->counts[i];

		if (!n)
			continue;
		run += n;
		json_builder_begin_object(j);
		vigilctl__add_string(j, "class", vigil_class_name((enum vigil_defect_class)v->order[i]));
		json_builder_set_member_name(j, "rejects");
		json_builder_add_int_value(j, (gint64)n);
		vigilctl__add_number(j, "share_pct", 100.0 * (double)n / (double)v->rejected);
		vigilctl__add_number(j, "cumulative_pct", 100.0 * (double)run / (double)v->rejected);
		json_builder_end_object(j);
	}
	json_builder_end_array(j);
	json_builder_end_object(j);
	vigilctl__print_json(j);
	g_object_unref(j);
}

int vigilctl__cmd_pareto(const struct opts *o)
{
	struct pareto_view v = { 0 };
	report_pareto *p = NULL;
	shift_plan *plan = NULL;
	struct db_filter f;
	char *err = NULL, *spec = NULL, *perr = NULL;
	enum format fmt;
	int rc = 1;

	if (vigilctl__parse_format("pareto", o->format, &fmt) < 0)
		return 2;
	if (o->by && strcmp(o->by, "hour") != 0 && strcmp(o->by, "shift") != 0) {
		fprintf(stderr, "vigilctl: --by is hour or shift, not '%s'\n", o->by);
		return 2;
	}
	if ((rc = vigilctl__build_filter(o, &f)) < 0)
		return rc == -EINVAL ? 2 : 1;
	rc = 1;
	v.by_shift = o->by && strcmp(o->by, "shift") == 0;
	/* Shifts as the plant names them: the plan vigild recorded in the log. */
	if (v.by_shift) {
		if (!(spec = db_shifts(o->db, &err)))
			goto fail;
		if (!(plan = shift_plan_parse(spec, NULL, &perr))) {
			fprintf(stderr, "vigilctl: the shift plan in %s: %s\n", o->db, perr);
			goto out;
		}
	}
	p = report_pareto_new(plan);
	v.p = p;
	if (db_query(o->db, &f, &(struct db_row_cb){ report_pareto_add, p }, &err) < 0)
		goto fail;
	v.rejected = report_pareto_causes(p, v.order, v.counts);
	if (fmt == FMT_TABLE)
		pareto_table(&v);
	else if (fmt == FMT_CSV)
		pareto_csv(&v);
	else
		pareto_json(&v);
	rc = 0;
	goto out;
fail:
	fprintf(stderr, "vigilctl: %s\n", err ? err : "query failed");
out:
	free(err);
	g_free(perr);
	free(spec);
	report_pareto_free(p);
	shift_plan_free(plan);
	return rc;
}
