/* The Pareto of reject causes by hour or shift (report.h), moved here from
 * vigilctl so that vigilctl pareto and the shift report count alike. */
#include <math.h>
#include <string.h>

#include "core/part.h"
#include "report/report.h"

struct report_pareto {
	const shift_plan *plan;  /* NULL: by hour */
	GHashTable *buckets;     /* key -> struct report_bucket (owned by order) */
	GPtrArray *order;
	uint64_t by_class[4];
};

static void free_bucket(gpointer p)
{
	struct report_bucket *b = p;

	g_free((char *)b->key);
	g_free(b);
}

report_pareto *report_pareto_new(const shift_plan *plan)
{
	report_pareto *p = g_new0(report_pareto, 1);

	p->plan = plan;
	p->buckets = g_hash_table_new(g_str_hash, g_str_equal);
	p->order = g_ptr_array_new_with_free_func(free_bucket);
	return p;
}

void report_pareto_free(report_pareto *p)
{
	if (!p)
		return;
	g_hash_table_destroy(p->buckets);
	g_ptr_array_free(p->order, TRUE);
	g_free(p);
}

static char *bucket_key(const report_pareto *p, int64_t t_us)
{
	GDateTime *s, *t;
	char *key;

	if (p->plan) {
		shift_span span;

		shift_plan_at(p->plan, t_us, &span);
		return g_strdup(span.label);
	}
	s = g_date_time_new_from_unix_local(t_us / G_USEC_PER_SEC);
	t = g_date_time_add(s, t_us % G_USEC_PER_SEC);
	key = g_date_time_format(t, "%Y-%m-%d %H:00");
	g_date_time_unref(t);
	g_date_time_unref(s);
	return key;
}

int report_pareto_add(const struct db_inspection *r, void *data)
{
	report_pareto *p = data;
	char *key = bucket_key(p, r->t_wall_us);
	struct report_bucket *b = g_hash_table_lookup(p->buckets, key);
	/* The QA-reviewed verdict counts where there is one. */
	int verdict = r->review ? r->review_verdict : r->verdict;

	if (!b) {
		b = g_new0(struct report_bucket, 1);
		b->key = key;
		g_hash_table_insert(p->buckets, key, b);
		g_ptr_array_add(p->order, b);
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
		p->by_class[r->defect_class]++;
	}
	return 0;
}

size_t report_pareto_nbuckets(const report_pareto *p)
{
	return p->order->len;
}

const struct report_bucket *report_pareto_bucket(const report_pareto *p, size_t i)
{
	return i < p->order->len ? g_ptr_array_index(p->order, i) : NULL;
}

double report_bucket_yield_pct(const struct report_bucket *b)
{
	if (!b->parts)
		return NAN;
	return 100.0 * (double)(b->parts - b->rejected - b->marginal) / (double)b->parts;
}

uint64_t report_pareto_causes(const report_pareto *p, int order[4], uint64_t counts[4])
{
	uint64_t sum = 0;

	for (int i = 0; i < 4; i++)
		order[i] = i;
	/* Largest first; a stable order among equals (class code). */
	for (int i = 0; i < 4; i++)
		for (int j = i + 1; j < 4; j++)
			if (p->by_class[order[j]] > p->by_class[order[i]]) {
				int t = order[i];

				order[i] = order[j];
				order[j] = t;
			}
	for (int i = 0; i < 4; i++) {
		counts[i] = p->by_class[order[i]];
		sum += counts[i];
	}
	return sum;
}
