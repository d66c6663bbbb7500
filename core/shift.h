/* A plant's shift pattern: named shifts that start at fixed local
 * wall-clock times and repeat every day, such as
 * "early 06:00, late 14:00, night 22:00". The last shift of a day runs into
 * the next day until the first start. QA counts, trends and the shift
 * report group parts by the shift occurrence they fall in ("2026-12-06
 * night" runs from 22:00 on the 6th to 06:00 on the 7th).
 *
 * Times are local to the plan's time zone (the process's local zone unless
 * one is given), so a daylight-saving change makes one shift an hour
 * longer or shorter, as a plant's clock does.
 *
 * A plan is immutable once parsed: any number of threads may read it. */
#ifndef VIGIL_CORE_SHIFT_H
#define VIGIL_CORE_SHIFT_H

#include <stddef.h>
#include <stdint.h>

/* The default plan, three eight-hour shifts. */
#define SHIFT_PLAN_DEFAULT "early 06:00, late 14:00, night 22:00"

typedef struct shift_plan shift_plan;

/* One occurrence of a shift: [start_us, end_us) in µs since 1970 (UTC). */
typedef struct shift_span {
	int index;          /* in the plan, in start-time order */
	const char *name;   /* owned by the plan */
	int64_t start_us;
	int64_t end_us;
	char label[48];     /* "YYYY-MM-DD NAME", the local date the shift starts */
} shift_span;

/* Parses spec: comma-separated "NAME HH:MM" entries, names of letters,
 * digits, '-' and '_' (at most 31 characters), distinct names and start
 * times, at least one entry. tz: an IANA zone ("Europe/Berlin") or NULL for
 * the local zone. Returns NULL with *err (g_free) naming what is wrong. */
shift_plan *shift_plan_parse(const char *spec, const char *tz, char **err);
void shift_plan_free(shift_plan *p);

/* The plan written back in canonical form (sorted by start). g_free. */
char *shift_plan_to_string(const shift_plan *p);

size_t shift_plan_count(const shift_plan *p);
const char *shift_plan_name(const shift_plan *p, size_t i);

/* The shift occurrence that t_us falls in. */
void shift_plan_at(const shift_plan *p, int64_t t_us, shift_span *out);

/* The occurrence n shifts before (n > 0) or after (n < 0) span. */
void shift_plan_step(const shift_plan *p, const shift_span *span, int n, shift_span *out);

/* Finds an occurrence by its label "YYYY-MM-DD NAME", or by "current" or
 * "previous" relative to now_us. Returns 0, or -1 with *err (g_free)
 * naming the label and the plan's shifts. */
int shift_plan_find(const shift_plan *p, const char *label, int64_t now_us,
		    shift_span *out, char **err);

#endif
