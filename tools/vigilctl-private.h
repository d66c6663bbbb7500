/* Private to vigilctl: what vigilctl.c (options, list, review, upgrade,
 * export), vigilctl-pareto.c (pareto), vigilctl-user.c (user) and
 * vigilctl-report.c (report), vigilctl-trace.c (escapes) and vigilctl-central.c
 * (--central, the plant's PostgreSQL) share. One thread. */
#ifndef VIGIL_TOOLS_VIGILCTL_PRIVATE_H
#define VIGIL_TOOLS_VIGILCTL_PRIVATE_H

#include <stdint.h>
#include <stdio.h>

#include <glib.h>
#include <json-glib/json-glib.h>

#include "db/db.h"

/* The command line. Every value is taken as text and read by vigilctl.c
 * (the filters by db_filter_set, as the review API reads its parameters),
 * so that a bad one is refused naming the option and the value, and one
 * given to a command that does not read it is refused, not ignored. */
struct opts {
	char *db, *since, *until, *verdict, *cls, *format, *by, *reviewed;
	char *overrule, *note, *reviewer, *split, *out;
	char *shift, *job, *model, *station;   /* tracing filters */
	char *central, *site, *line, *defect_type;   /* --central (vigilctl-central.c) */
	char *min_score, *max_score, *limit;    /* filters, read by vigilctl__build_filter */
	char *part_text, *neighbours_text;      /* read into part and neighbours */
	char *inspection_text;                  /* read into inspection */
	gint64 part;                            /* -1: none given */
	/* review, escapes --mark: this inspection of --part (a part id the
	 * line used twice names two), -1: the part's latest. */
	gint64 inspection;
	gint64 neighbours;                      /* escapes: rows either side */
	gboolean confirm, mark;
	gboolean accepted_as_good;              /* export: unreviewed accepted parts too */
};

enum format { FMT_TABLE, FMT_CSV, FMT_JSON };

/* escapes --neighbours: at most this many rows either side. */
#define VIGILCTL_MAX_NEIGHBOURS 100

/* The wall clock us (µs since the epoch) in vigilctl's local zone; unref it. */
GDateTime *vigilctl__local_time(int64_t us);
/* A CSV field, quoted as RFC 4180 asks when it must be; NULL writes nothing. */
void vigilctl__csv_field(FILE *out, const char *s);
/* JSON members: a string or null; a number, null when not finite. */
void vigilctl__add_string(JsonBuilder *b, const char *name, const char *s);
void vigilctl__add_number(JsonBuilder *b, const char *name, double x);
/* b's root as indented JSON and a newline on stdout (--format json);
 * b stays the caller's. */
void vigilctl__print_json(JsonBuilder *b);
/* --format for cmd (table when not given); -EINVAL with a message on stderr. */
int vigilctl__parse_format(const char *cmd, const char *text, enum format *fmt);
/* The filter options into f (--part is read by main); -EINVAL with a
 * message on stderr naming the option, its value and what it must be. */
int vigilctl__build_filter(const struct opts *o, struct db_filter *f);

/* vigilctl pareto (vigilctl-pareto.c); the exit status. */
int vigilctl__cmd_pareto(const struct opts *o);
/* vigilctl user (vigilctl-user.c), argv[1] being "user": its own options
 * (the users file, not the log); the exit status. */
int vigilctl__main_user(int argc, char **argv);
/* vigilctl report (vigilctl-report.c); the exit status. */
int vigilctl__cmd_report(const struct opts *o);
/* vigilctl escapes (vigilctl-trace.c); the exit status. */
int vigilctl__cmd_escapes(const struct opts *o);
/* vigilctl --central CONNINFO (vigilctl-central.c): argv[1] the command,
 * argv[2] a row's SITE/LINE/STATION/LOCAL_ID for show and review; the exit
 * status. */
int vigilctl__main_central(const struct opts *o, int argc, char **argv);
/* Local time with its offset, "2026-12-06T05:15:00.000000+01:00"; g_free. */
char *vigilctl__wall_text(int64_t us);

#endif
