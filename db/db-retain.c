/* Retention by age and disk budget, run by the writer between batches. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>
#include <glib/gstdio.h>
#include <sqlite3.h>

#include "db/db-private.h"

/* ---- retention, run by the writer between batches ---- */

#define DB_RETAIN_CHUNK 500   /* rows or files per transaction */
/* Transactions per run: a backlog (retention just switched on over a year
 * of rows) is worked off in slices, with rows written in between. */
#define DB_RETAIN_CHUNKS_PER_RUN 20

/* Deletes the files of the media rows `where` selects (oldest first, at
 * most DB_RETAIN_CHUNK, and no more than it takes to free `need` bytes
 * when need > 0), then the rows. Returns the number removed, or -1 on an
 * SQLite error; *bytes grows by their size. */
static int64_t drop_media(db_log *db, const char *where, int64_t bind, int64_t *bytes,
			  int64_t need)
{
	int64_t freed = 0;
	sqlite3_stmt *st = NULL;
	char *sql = g_strdup_printf("SELECT id, path, bytes FROM media WHERE %s LIMIT %d",
				    where, DB_RETAIN_CHUNK);
	GArray *ids = g_array_new(FALSE, FALSE, sizeof(int64_t));
	int64_t n = -1;
	int rc;

	rc = sqlite3_prepare_v2(db->conn, sql, -1, &st, NULL);
	g_free(sql);
	if (rc != SQLITE_OK)
		goto out;
	sqlite3_bind_int64(st, 1, bind);
	while ((need <= 0 || freed < need) && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		int64_t id = sqlite3_column_int64(st, 0);
		const char *rel = (const char *)sqlite3_column_text(st, 1);
		char *full = rel ? g_build_filename(db->media_dir, rel, NULL) : NULL;

		/* A file already gone is as good as removed. */
		if (full && g_remove(full) < 0 && errno != ENOENT)
			g_warning("database %s: cannot remove %s: %s", db->path, full,
				  g_strerror(errno));
		g_free(full);
		freed += MAX(sqlite3_column_int64(st, 2), 0);
		g_array_append_val(ids, id);
	}
	sqlite3_finalize(st);
	st = NULL;
	if (rc != SQLITE_DONE && rc != SQLITE_ROW)
		goto out;
	*bytes += freed;
	db->retain_chunks--;
	if (sqlite3_exec(db->conn, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
		goto out;
	rc = sqlite3_prepare_v2(db->conn, "DELETE FROM media WHERE id = ?1", -1, &st, NULL);
	for (guint i = 0; rc == SQLITE_OK && i < ids->len; i++) {
		sqlite3_bind_int64(st, 1, g_array_index(ids, int64_t, i));
		if (sqlite3_step(st) != SQLITE_DONE)
			rc = SQLITE_ERROR;
		sqlite3_reset(st);
	}
	sqlite3_finalize(st);
	st = NULL;
	if (rc == SQLITE_OK && sqlite3_exec(db->conn, "COMMIT", NULL, NULL, NULL) == SQLITE_OK)
		n = ids->len;
	else if (!sqlite3_get_autocommit(db->conn))
		sqlite3_exec(db->conn, "ROLLBACK", NULL, NULL, NULL);
out:
	sqlite3_finalize(st);
	g_array_free(ids, TRUE);
	return n;
}

/* Deletes up to DB_RETAIN_CHUNK of the oldest inspections before cut_us
 * and below id keep_from with everything that hangs off them (their media
 * files first). Returns the number of inspections removed, or -1. */
static int64_t drop_rows(db_log *db, int64_t cut_us, int64_t keep_from, int64_t *files,
			 int64_t *bytes)
{
	static const char *const del[] = {
		"DELETE FROM vibration WHERE inspection_id IN (SELECT id FROM doomed)",
		"DELETE FROM reviews WHERE inspection_id IN (SELECT id FROM doomed)",
		"DELETE FROM escapes WHERE inspection_id IN (SELECT id FROM doomed)",
		"DELETE FROM inspections WHERE id IN (SELECT id FROM doomed)",
	};
	sqlite3_stmt *st = NULL;
	int64_t n, m, ret = -1;
	char *sql, *which = g_strdup_printf("inspection_id IN (SELECT id FROM inspections WHERE"
					    " t_wall_us < ?1 AND id < %" PRId64 " ORDER BY id"
					    " LIMIT %d)", keep_from, DB_RETAIN_CHUNK);

	/* Media first, so that no row is gone while its file stays. */
	do {
		m = drop_media(db, which, cut_us, bytes, 0);
		if (m < 0) {
			g_free(which);
			return -1;
		}
		*files += m;
	} while (m == DB_RETAIN_CHUNK && db->retain_chunks > 0);
	g_free(which);
	if (db->retain_chunks <= 0)
		return 0;

	db->retain_chunks--;
	if (sqlite3_exec(db->conn, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
		return -1;
	sql = g_strdup_printf("CREATE TEMP TABLE doomed AS SELECT id FROM inspections"
			      " WHERE t_wall_us < ?1 AND id < %" PRId64 " ORDER BY id LIMIT %d",
			      keep_from, DB_RETAIN_CHUNK);
	if (sqlite3_prepare_v2(db->conn, sql, -1, &st, NULL) != SQLITE_OK)
		goto out;
	sqlite3_bind_int64(st, 1, cut_us);
	if (sqlite3_step(st) != SQLITE_DONE)
		goto out;
	sqlite3_finalize(st);
	st = NULL;
	for (size_t i = 0; i < G_N_ELEMENTS(del); i++)
		if (sqlite3_exec(db->conn, del[i], NULL, NULL, NULL) != SQLITE_OK)
			goto out;
	n = sqlite3_changes64(db->conn);
	if (sqlite3_exec(db->conn, "DROP TABLE doomed", NULL, NULL, NULL) != SQLITE_OK ||
	    sqlite3_exec(db->conn, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
		goto out;
	ret = n;
out:
	g_free(sql);
	sqlite3_finalize(st);
	if (!sqlite3_get_autocommit(db->conn))
		sqlite3_exec(db->conn, "ROLLBACK", NULL, NULL, NULL);
	return ret;
}

/* Deletes up to DB_RETAIN_CHUNK of the oldest rows of table (events or
 * trend) before cut_us and below id keep_from in one transaction. Both are
 * written in time order, so the oldest are the first ids and the scan
 * stops early. Returns the number removed, or -1. */
static int64_t drop_old(db_log *db, enum db_table t, int64_t cut_us, int64_t keep_from)
{
	const char *table = db_table_name(t);
	char *sql = g_strdup_printf("DELETE FROM %s WHERE id IN (SELECT id FROM %s"
				    " WHERE t_wall_us < ?1 AND id < %" PRId64 " ORDER BY id LIMIT "
				    G_STRINGIFY(DB_RETAIN_CHUNK) ")", table, table, keep_from);
	sqlite3_stmt *st = NULL;
	int64_t n = -1;

	db->retain_chunks--;
	if (sqlite3_prepare_v2(db->conn, sql, -1, &st, NULL) == SQLITE_OK) {
		sqlite3_bind_int64(st, 1, cut_us);
		if (sqlite3_step(st) == SQLITE_DONE)
			n = sqlite3_changes64(db->conn);
	}
	sqlite3_finalize(st);
	g_free(sql);
	return n;
}

/* Bytes the log takes on disk: pages in use plus the media files. */
static int64_t disk_use(db_log *db)
{
	int64_t pages = 0, free_pages = 0, page_size = 0, media = 0;

	db__query_int(db->conn, "PRAGMA page_count", &pages);
	db__query_int(db->conn, "PRAGMA freelist_count", &free_pages);
	db__query_int(db->conn, "PRAGMA page_size", &page_size);
	db__query_int(db->conn, "SELECT coalesce(sum(bytes), 0) FROM media", &media);
	return (pages - free_pages) * page_size + media;
}

/* The lowest id of table t that retention may not take: a row this run
 * wrote less than age_us ago (db-clock.c), or the table's newest row,
 * whatever its age. SQLite gives a new row the highest id plus one, so
 * with the newest row gone the next would take an id already used: the
 * plant forwarder's high-water mark would pass it by, and a link to the
 * old row (?inspection=, an escape) would name it. */
static int64_t keep_from(db_log *db, enum db_table t, int64_t age_us)
{
	char *sql = g_strdup_printf("SELECT coalesce(max(id), 0) FROM %s", db_table_name(t));
	int64_t newest = 0;

	if (db__query_int(db->conn, sql, &newest) != SQLITE_OK)
		newest = 0;   /* unknown: nothing goes this time */
	g_free(sql);
	return MIN(db__clock_keep_from(db, t, age_us), newest);
}

/* Age first: rows older than max_age_days go, with their files. Then the
 * disk budget: the recent ring's files go first, then images (oldest
 * first), then the other files, then whole rows, oldest first - but never
 * a row of the last protect_days. A row's age is its stamp's, but for the
 * rows this run wrote, which are no older than the time since they were
 * written (db-clock.c: the wall clock may have stepped forward since). */
bool db__retain(db_log *db)
{
	int64_t now = vigil_wall_us();
	int64_t protect_age = (int64_t)db->opt.protect_days * DAY_US;
	int64_t protect_cut = now - protect_age;
	int64_t age = MAX((int64_t)db->opt.max_age_days * DAY_US, protect_age);
	int64_t keep[DB_NTABLES];
	int64_t rows = 0, files = 0, bytes = 0, events = 0, trend = 0, n = 0;
	bool over = false, failed = false, more;

	db->retain_chunks = DB_RETAIN_CHUNKS_PER_RUN;
#define BUDGET_LEFT (db->retain_chunks > 0)

	for (int t = 0; t < DB_NTABLES; t++)
		keep[t] = keep_from(db, (enum db_table)t, age);
	if (db->opt.max_age_days > 0) {
		int64_t cut = now - age;

		while (BUDGET_LEFT &&
		       (n = drop_rows(db, cut, keep[DB_TABLE_INSPECTIONS], &files, &bytes)) > 0)
			rows += n;
		failed |= n < 0;
		/* Files whose row went before the media thread wrote them. */
		while (!failed && BUDGET_LEFT && (n = drop_media(db, "inspection_id NOT IN (SELECT id FROM"
						  " inspections) AND ?1 ORDER BY id", 1, &bytes, 0)) > 0)
			files += n;
		failed |= n < 0;
		/* Events and transmitter readings age out like the rows, under
		 * the same protection. */
		while (!failed && BUDGET_LEFT &&
		       (n = drop_old(db, DB_TABLE_EVENTS, cut, keep[DB_TABLE_EVENTS])) > 0) {
			events += n;
			if (n < DB_RETAIN_CHUNK)
				break;
		}
		failed |= n < 0;
		while (!failed && BUDGET_LEFT &&
		       (n = drop_old(db, DB_TABLE_TREND, cut, keep[DB_TABLE_TREND])) > 0) {
			trend += n;
			if (n < DB_RETAIN_CHUNK)
				break;
		}
		failed |= n < 0;
	}
	if (db->opt.disk_budget_mb > 0) {
		int64_t budget = db->opt.disk_budget_mb * 1024 * 1024;
		/* Looked up once: retention never takes the newest row. */
		int64_t protect_from = keep_from(db, DB_TABLE_INSPECTIONS, protect_age);
		static const char *const order[] = { "recent = 1 AND ?1 ORDER BY id",
						     "kind = 'image' ORDER BY id",
						     "?1 ORDER BY id" };

		for (size_t k = 0; k < G_N_ELEMENTS(order) && !failed; k++)
			while (BUDGET_LEFT && (over = disk_use(db) > budget)) {
				n = drop_media(db, order[k], 1, &bytes, disk_use(db) - budget);
				if (n <= 0) {
					failed |= n < 0;
					break;
				}
				files += n;
			}
		while (!failed && BUDGET_LEFT && (over = disk_use(db) > budget)) {
			if ((n = drop_rows(db, protect_cut, protect_from, &files, &bytes)) <= 0) {
				failed |= n < 0;
				break;
			}
			rows += n;
		}
	}
#undef BUDGET_LEFT
	more = db->retain_chunks <= 0 && !failed;
	if (more)
		over = false;   /* not known yet: the next slice will tell */
	if (failed)
		g_warning("database %s: retention: %s", db->path, sqlite3_errmsg(db->conn));
	if (rows || files || events || trend || over) {
		char *msg = g_strdup_printf("removed %" PRId64 " inspection(s) and %" PRId64
					    " file(s) (%" PRId64 " bytes), %" PRId64 " event(s), %"
					    PRId64 " trend reading(s)%s",
					    rows, files, bytes, events, trend,
					    more ? "; more to remove, continuing"
					    : over ? "; still over the disk budget: the rest is of the"
						     " protected last days" : "");

		g_message("database %s: retention: %s", db->path, msg);
		db__write_event(db, over ? "retention-over-budget" : "retention", msg);
		g_free(msg);
	}
	return more;
}

bool db__retention_on(const db_log *db)
{
	return db->opt.max_age_days > 0 || db->opt.disk_budget_mb > 0;
}

