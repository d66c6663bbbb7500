/* vigilctl escapes: parts found defective after the line passed them
 * (downstream, at goods-in, by the customer), marked with a note and listed
 * with the parts around each on its station, as the review page's Escapes
 * view shows them (vigilctl-private.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/part.h"
#include "db/db.h"
#include "tools/vigilctl-private.h"

struct escapes_ctx {
	const struct opts *o;
	enum format fmt;
	int64_t n;                 /* escapes written */
	JsonBuilder *json;
	char *err;
};

struct part_ctx {
	struct escapes_ctx *c;
	const struct db_escape *e;
	int64_t rows;              /* rows seen so far, to number them */
	int64_t self;              /* the index of the escaped part among them */
	GPtrArray *lines;          /* FMT_TABLE / FMT_CSV: one text per row */
};

/* The position of each neighbour relative to the escaped part (0): known
 * once the escaped part has been seen, so the rows are kept until then. */
static int part_row(const struct db_inspection *r, void *data)
{
	struct part_ctx *p = data;
	struct escapes_ctx *c = p->c;
	const char *verdict = vigil_verdict_name((enum vigil_verdict)r->verdict);
	char *when = vigilctl__wall_text(r->t_wall_us);

	if (r->id == p->e->inspection_id)
		p->self = p->rows;
	if (c->fmt == FMT_JSON) {
		json_builder_begin_object(c->json);
		json_builder_set_member_name(c->json, "part_id");
		json_builder_add_int_value(c->json, r->part_id);
		vigilctl__add_string(c->json, "time", when);
		vigilctl__add_string(c->json, "station", r->station);
		json_builder_set_member_name(c->json, "job");
		if (r->job >= 0)
			json_builder_add_int_value(c->json, r->job);
		else
			json_builder_add_null_value(c->json);
		vigilctl__add_string(c->json, "model_version", r->model_version);
		vigilctl__add_string(c->json, "verdict", verdict);
		vigilctl__add_number(c->json, "score", r->score);
		json_builder_set_member_name(c->json, "escape");
		json_builder_add_boolean_value(c->json, r->id == p->e->inspection_id);
		json_builder_end_object(c->json);
	} else if (c->fmt == FMT_CSV) {
		char *line = NULL;
		size_t len = 0;
		FILE *m = open_memstream(&line, &len);

		if (!m)
			return 1;
		fprintf(m, "%u,%s,", r->part_id, when);
		vigilctl__csv_field(m, r->station);
		fputc(',', m);
		if (r->job >= 0)
			fprintf(m, "%d", r->job);
		fputc(',', m);
		vigilctl__csv_field(m, r->model_version);
		fprintf(m, ",%s,%.6g", verdict, r->score);
		fclose(m);
		g_ptr_array_add(p->lines, g_strdup(line));
		free(line);
	} else {
		char job[16] = "-";

		if (r->job >= 0)
			snprintf(job, sizeof job, "%d", r->job);
		g_ptr_array_add(p->lines, g_strdup_printf(
			"%-8u %-32s %-12s %-4s %-14s %-9s %6.3f", r->part_id, when,
			r->station ? r->station : "-", job,
			r->model_version ? r->model_version : "-", verdict, r->score));
	}
	p->rows++;
	g_free(when);
	return 0;
}

static void print_csv_escape_fields(const struct db_escape *e, const char *reported)
{
	printf("%" G_GINT64_FORMAT ",%s,", e->id, reported);
	vigilctl__csv_field(stdout, e->reporter);
	fputc(',', stdout);
	vigilctl__csv_field(stdout, e->note);
	fputc(',', stdout);
}

static void print_csv_header(void)
{
	printf("escape_id,reported,reporter,note,position,part_id,time,station,job,"
	       "model_version,verdict,score\n");
}

static int escape_row(const struct db_escape *e, void *data)
{
	struct escapes_ctx *c = data;
	struct part_ctx p = { c, e, 0, -1, NULL };
	struct db_row_cb cb = { part_row, &p };
	char *reported = vigilctl__wall_text(e->t_wall_us);
	int rc;

	/* The CSV's header with its first row, so that a log that cannot be
	 * read leaves nothing on stdout. */
	if (c->fmt == FMT_CSV && c->n == 0)
		print_csv_header();
	if (c->fmt == FMT_JSON) {
		json_builder_begin_object(c->json);
		json_builder_set_member_name(c->json, "id");
		json_builder_add_int_value(c->json, e->id);
		json_builder_set_member_name(c->json, "part_id");
		json_builder_add_int_value(c->json, e->part_id);
		vigilctl__add_string(c->json, "reported", reported);
		vigilctl__add_string(c->json, "reporter", e->reporter);
		vigilctl__add_string(c->json, "note", e->note);
		json_builder_set_member_name(c->json, "parts");
		json_builder_begin_array(c->json);
	} else {
		p.lines = g_ptr_array_new_with_free_func(g_free);
	}
	rc = db_neighbours(c->o->db, e->inspection_id, (int)c->o->neighbours, &cb, &c->err);
	if (rc < 0)
		goto out;
	if (c->fmt == FMT_JSON) {
		json_builder_end_array(c->json);
		json_builder_end_object(c->json);
	} else if (c->fmt == FMT_CSV) {
		for (guint i = 0; i < p.lines->len; i++) {
			print_csv_escape_fields(e, reported);
			printf("%" G_GINT64_FORMAT ",%s\n", (int64_t)i - p.self,
			       (char *)p.lines->pdata[i]);
		}
	} else {
		printf("escape %" G_GINT64_FORMAT ": part %u, reported %s by %s\n  note: %s\n", e->id,
		       e->part_id, reported, e->reporter ? e->reporter : "-",
		       e->note ? e->note : "");
		for (guint i = 0; i < p.lines->len; i++)
			printf("  %+4" G_GINT64_FORMAT " %s\n", (int64_t)i - p.self,
			       (char *)p.lines->pdata[i]);
	}
	c->n++;
out:
	if (p.lines)
		g_ptr_array_free(p.lines, TRUE);
	g_free(reported);
	return rc < 0;
}

static int mark(const struct opts *o)
{
	char *err = NULL;
	int64_t id = 0;
	int rc;

	if (o->part < 0 || !o->note || !*o->note) {
		fprintf(stderr, "vigilctl escapes --mark: give --part ID and --note TEXT (where and "
			"how the part was found defective)\n");
		return 2;
	}
	rc = db_mark_escape_at(o->db, o->part, o->inspection, o->note,
			       o->reviewer ? o->reviewer : g_get_user_name(), &id, &err);
	if (rc < 0) {
		if (rc == -ENOENT)   /* the message leaves the path to the caller */
			fprintf(stderr, "vigilctl: %s: %s\n", o->db, err ? err : "no such part");
		else
			fprintf(stderr, "vigilctl: %s\n", err ? err : "marking the escape failed");
		free(err);
		return 1;
	}
	printf("part %" G_GINT64_FORMAT ": escape %" G_GINT64_FORMAT "\n", o->part, id);
	return 0;
}

int vigilctl__cmd_escapes(const struct opts *o)
{
	struct escapes_ctx c = { o, FMT_TABLE, 0, NULL, NULL };
	int rc;

	if (vigilctl__parse_format("escapes", o->format, &c.fmt) < 0)
		return 2;
	/* Marking reads --part, --inspection, --note and --reviewer, listing
	 * --format and --neighbours (main read the numbers): the others'
	 * would be ignored. */
	if (o->mark && (o->format || o->neighbours_text)) {
		fprintf(stderr, "vigilctl escapes --mark: --%s is for listing the escapes "
			"(without --mark)\n", o->format ? "format" : "neighbours");
		return 2;
	}
	if (!o->mark && (o->part_text || o->note || o->reviewer || o->inspection_text)) {
		fprintf(stderr, "vigilctl escapes: --%s is for marking one (escapes --mark)\n",
			o->part_text ? "part" : o->note ? "note" : o->reviewer ? "reviewer"
			: "inspection");
		return 2;
	}
	if (o->mark)
		return mark(o);
	if (c.fmt == FMT_JSON) {
		c.json = json_builder_new();
		json_builder_begin_array(c.json);
	}
	rc = db_read_escapes(o->db, escape_row, &c, &c.err);
	if (rc < 0 || c.err) {
		fprintf(stderr, "vigilctl: %s\n", c.err ? c.err : "cannot read the escapes");
		free(c.err);
		if (c.json)
			g_object_unref(c.json);
		return 1;
	}
	if (c.fmt == FMT_CSV && c.n == 0)
		print_csv_header();
	if (c.fmt == FMT_JSON) {
		json_builder_end_array(c.json);
		vigilctl__print_json(c.json);
		g_object_unref(c.json);
	} else if (c.fmt == FMT_TABLE) {
		printf("%" G_GINT64_FORMAT " escape(s)\n", c.n);
	}
	return 0;
}
