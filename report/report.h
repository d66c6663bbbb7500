/* Reports over vigild's log: the Pareto of reject causes by hour or shift
 * (vigilctl pareto) and the shift report, one HTML document per shift
 * occurrence that vigild serves at /report and vigilctl report writes to
 * a file, from this one renderer so the two agree.
 *
 * Reads the log through db.h's read side (connections of its own, while
 * vigild writes). An object here belongs to one thread; nothing is shared.
 * Error strings (*err) are freed with g_free. */
#ifndef VIGIL_REPORT_REPORT_H
#define VIGIL_REPORT_REPORT_H

#include <stddef.h>
#include <stdint.h>

#include <glib.h>

#include "core/shift.h"
#include "db/db.h"

/* ---- Pareto ---- */

typedef struct report_pareto report_pareto;

/* One hour or shift: parts, rejects and marginals by the QA-reviewed
 * verdict where there is one, and the non-accepted parts by defect class
 * (indexed by enum vigil_defect_class). */
struct report_bucket {
	const char *key;          /* "YYYY-MM-DD HH:00" or a shift label */
	uint64_t parts, rejected, marginal, by_class[4];
};

/* plan NULL: buckets by local hour; else by shift occurrence of plan,
 * which is borrowed and must outlive the pareto. */
report_pareto *report_pareto_new(const shift_plan *plan);
void report_pareto_free(report_pareto *p);
/* Counts one row; a db_row_cb function (data: the pareto). Returns 0. */
int report_pareto_add(const struct db_inspection *row, void *data);
/* Buckets in the order their first row came; valid until the next add. */
size_t report_pareto_nbuckets(const report_pareto *p);
const struct report_bucket *report_pareto_bucket(const report_pareto *p, size_t i);
/* Yield of a bucket in % (neither rejected nor marginal); NaN when empty. */
double report_bucket_yield_pct(const struct report_bucket *b);
/* The reject causes, largest first: order[] the four classes, counts[]
 * their non-accepted parts over every bucket. Returns their sum. */
uint64_t report_pareto_causes(const report_pareto *p, int order[4], uint64_t counts[4]);

/* ---- shift report ---- */

/* Where a top defect's image comes from. A file a QA engineer mails must
 * stand alone, so vigilctl embeds each as a data: URI; the served page
 * links /api/parts/ID/media/MEDIA_ID, which the browser already may load,
 * and stays small. That src is the only difference between the two. */
enum report_images { REPORT_IMAGES_EMBED, REPORT_IMAGES_LINK };

struct report_request {
	const char *db_path;
	const char *shift;        /* "YYYY-MM-DD NAME", "current" or "previous" */
	int64_t now_us;           /* for current / previous and "generated"; 0: now */
	enum report_images images;
	int top_defects;          /* how many highest-scoring rejects; 0: 12 */
	/* If not NULL, REPORT_LABEL_MAX bytes that get the occurrence
	 * reported, "YYYY-MM-DD NAME" (what "current" was), on success. */
	char *label_out;
};
#define REPORT_LABEL_MAX 48

/* Appends the report of the shift occurrence rq->shift names (the plan is
 * the log's, db_shifts) to out as one HTML document; every text from the
 * log is escaped. 0; -EINVAL for a shift the plan does not have (*err
 * names it and the plan's shifts, never a path: the review server answers
 * with it); -EIO for a log whose recorded plan is not valid; or a negative
 * db code with *err. */
int report_shift_html(const struct report_request *rq, GString *out, char **err);

/* The Content-Security-Policy source that allows the report's one inline
 * style sheet and nothing else: "'sha256-...'". Static. */
const char *report_style_source(void);

#endif
