/* vigilctl pareto: rejects by cause and yield per hour or shift, as a
 * table, CSV or JSON (vigilctl.c has the options). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/part.h"
#include "tools/vigilctl-private.h"

struct bucket {
	char *key;
	uint64_t parts, rejected, marginal, by_class[4];
};

struct pareto_ctx {
	gboolean by_shift;
	GHashTable *buckets;   /* key -> struct bucket */
	GPtrArray *order;
	uint64_t by_class[4], rejected;
};

static int pareto_row(const struct db_inspection *r, void *data)
{
	struct pareto_ctx *c = data;
	GDateTime *t = vigilctl__local_time(r->t_wall_us);
	char *key;
	struct bucket *b;
	/* The QA-reviewed verdict counts where there is one. */
	int verdict = r->review ? r->review_verdict : r->verdict;

	if (c->by_shift) {
		int h = g_date_time_get_hour(t);
		/* Three 8-hour shifts: 06-14 early, 14-22 late, 22-06 night
		 * (the night shift belongs to the day it started). */
		GDateTime *day = h < 6 ? g_date_time_add_days(t, -1) : g_date_time_ref(t);
		char *date = g_date_time_format(day, "%Y-%m-%d");

		key = g_strdup_printf("%s %s", date, h >= 6 && h < 14 ? "early" :
						     h >= 14 && h < 22 ? "late" : "night");
		g_free(date);
		g_date_time_unref(day);
	} else {
		key = g_date_time_format(t, "%Y-%m-%d %H:00");
	}
	g_date_time_unref(t);
	b = g_hash_table_lookup(c->buckets, key);
	if (!b) {
		b = g_new0(struct bucket, 1);
		b->key = key;
		g_hash_table_insert(c->buckets, key, b);
		g_ptr_array_add(c->order, b);
	} else {
		g_free(key);
	}
	b->parts++;
	if (verdict == VIGIL_VERDICT_REJECT)
		b->rejected++;
	else if (verdict == VIGIL_VERDICT_MARGINAL)
		b->marginal++;
	if (verdict != VIGIL_VERDICT_ACCEPT && r->defect_class >= 0 && r->defect_class < 4) {
		b->by_class[r->defect_class]++;
		c->by_class[r->defect_class]++;
		c->rejected++;
	}
	return 0;
}

static void free_bucket(gpointer p)
{
	struct bucket *b = p;

	g_free(b->key);
	g_free(b);
}

static const int class_order[4] = { VIGIL_CLASS_SURFACE, VIGIL_CLASS_VIBRATION, VIGIL_CLASS_BOTH,
				    VIGIL_CLASS_NONE };

static double yield_pct(const struct bucket *b)
{
	return 100.0 * (double)(b->parts - b->rejected - b->marginal) / (double)b->parts;
}

static void pareto_table(const struct pareto_ctx *c, const int *idx)
{
	uint64_t run = 0;

	printf("%-18s %7s %7s %8s %7s   %s\n", c->by_shift ? "shift" : "hour", "parts", "yield",
	       "rejected", "marginal", "rejects by class (surface/vibration/both/none)");
	for (guint i = 0; i < c->order->len; i++) {
		struct bucket *b = g_ptr_array_index(c->order, i);

		printf("%-18s %7" G_GUINT64_FORMAT " %6.1f%% %8" G_GUINT64_FORMAT " %7"
		       G_GUINT64_FORMAT "   %" G_GUINT64_FORMAT "/%" G_GUINT64_FORMAT "/%"
		       G_GUINT64_FORMAT "/%" G_GUINT64_FORMAT "\n", b->key, b->parts, yield_pct(b),
		       b->rejected, b->marginal, b->by_class[VIGIL_CLASS_SURFACE],
		       b->by_class[VIGIL_CLASS_VIBRATION], b->by_class[VIGIL_CLASS_BOTH],
		       b->by_class[VIGIL_CLASS_NONE]);
	}
	printf("\nreject causes (Pareto):\n");
	for (int i = 0; i < 4; i++) {
		uint64_t n = c->by_class[idx[i]];

		if (!n)
			continue;
		run += n;
		printf("  %-18s %7" G_GUINT64_FORMAT "  %5.1f%%  cumulative %5.1f%%\n",
		       vigil_class_name((enum vigil_defect_class)idx[i]), n,
		       100.0 * (double)n / (double)c->rejected, 100.0 * (double)run / (double)c->rejected);
	}
}

/* One table, so one CSV: the buckets. The Pareto of causes is the sum of
 * the rejects_* columns (json gives it worked out). */
static void pareto_csv(const struct pareto_ctx *c)
{
	printf("%s,parts,yield_pct,rejected,marginal,rejects_surface,rejects_vibration,"
	       "rejects_both,rejects_none\n", c->by_shift ? "shift" : "hour");
	for (guint i = 0; i < c->order->len; i++) {
		struct bucket *b = g_ptr_array_index(c->order, i);

		vigilctl__csv_field(stdout, b->key);
		printf(",%" G_GUINT64_FORMAT ",%.3f,%" G_GUINT64_FORMAT ",%" G_GUINT64_FORMAT,
		       b->parts, yield_pct(b), b->rejected, b->marginal);
		for (int k = 0; k < 4; k++)
			printf(",%" G_GUINT64_FORMAT, b->by_class[class_order[k]]);
		putchar('\n');
	}
}

static void pareto_json(const struct pareto_ctx *c, const int *idx)
{
	JsonBuilder *j = json_builder_new();
	JsonGenerator *gen = json_generator_new();
	JsonNode *root;
	char *text;
	uint64_t run = 0;

	json_builder_begin_object(j);
	json_builder_set_member_name(j, "buckets");
	json_builder_begin_array(j);
	for (guint i = 0; i < c->order->len; i++) {
		struct bucket *b = g_ptr_array_index(c->order, i);

		json_builder_begin_object(j);
		vigilctl__add_string(j, c->by_shift ? "shift" : "hour", b->key);
		json_builder_set_member_name(j, "parts");
		json_builder_add_int_value(j, (gint64)b->parts);
		vigilctl__add_number(j, "yield_pct", yield_pct(b));
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
		uint64_t n = c->by_class[idx[i]];

		if (!n)
			continue;
		run += n;
		json_builder_begin_object(j);
		vigilctl__add_string(j, "class", vigil_class_name((enum vigil_defect_class)idx[i]));
		json_builder_set_member_name(j, "rejects");
		json_builder_add_int_value(j, (gint64)n);
		vigilctl__add_number(j, "share_pct", 100.0 * (double)n / (double)c->rejected);
		vigilctl__add_number(j, "cumulative_pct", 100.0 * (double)run / (double)c->rejected);
		json_builder_end_object(j);
	}
	json_builder_end_array(j);
	json_builder_end_object(j);
	root = json_builder_get_root(j);
	json_generator_set_root(gen, root);
	json_generator_set_pretty(gen, TRUE);
	text = json_generator_to_data(gen, NULL);
	printf("%s\n", text);
	g_free(text);
	json_node_unref(root);
	g_object_unref(gen);
	g_object_unref(j);
}

int vigilctl__cmd_pareto(const struct opts *o)
{
	struct pareto_ctx c = { 0 };
	struct db_filter f;
	struct db_row_cb cb = { pareto_row, &c };
	char *err = NULL;
	enum format fmt;
	int idx[4] = { 0, 1, 2, 3 };

	if (vigilctl__parse_format("pareto", o->format, &fmt) < 0)
		return 2;
	if (o->by && strcmp(o->by, "hour") != 0 && strcmp(o->by, "shift") != 0) {
		fprintf(stderr, "vigilctl: --by is hour or shift, not '%s'\n", o->by);
		return 2;
	}
	if (vigilctl__build_filter(o, &f) < 0)
		return 2;
	c.by_shift = o->by && strcmp(o->by, "shift") == 0;
	c.buckets = g_hash_table_new(g_str_hash, g_str_equal);
	c.order = g_ptr_array_new_with_free_func(free_bucket);
	if (db_query(o->db, &f, &cb, &err) < 0) {
		fprintf(stderr, "vigilctl: %s\n", err ? err : "query failed");
		free(err);
		g_hash_table_destroy(c.buckets);
		g_ptr_array_free(c.order, TRUE);
		return 1;
	}
	/* The Pareto of reject causes: largest first, with the running share. */
	for (int i = 0; i < 4; i++)
		for (int j = i + 1; j < 4; j++)
			if (c.by_class[idx[j]] > c.by_class[idx[i]]) {
				int t = idx[i];

				idx[i] = idx[j];
				idx[j] = t;
			}
	if (fmt == FMT_TABLE)
		pareto_table(&c, idx);
	else if (fmt == FMT_CSV)
		pareto_csv(&c);
	else
		pareto_json(&c, idx);
	g_hash_table_destroy(c.buckets);
	g_ptr_array_free(c.order, TRUE);
	return 0;
}
