/* The recent ring: every part's files for a recent window, beside the
 * long-term sample, bounded by size (and, if set, by age). Its totals are
 * kept as the rows are written, so that no part costs a scan of the folder
 * or of the media table; the oldest ring rows are found through the
 * partial index media_recent. Run by the writer thread (db/db-private.h). */
#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/statvfs.h>

#include <glib.h>
#include <glib/gstdio.h>
#include <sqlite3.h>

#include "db/db-private.h"

#define MIB (INT64_C(1024) * 1024)
/* Ring files removed per transaction, and transactions per trim: a ring
 * made much smaller than it was (a config change) shrinks over a few
 * batches, rows written in between. */
#define RING_CHUNK 256
#define RING_CHUNKS_PER_TRIM 8

/* Once over its size, the ring is cut to 15/16 of it: one trim per
 * sixteenth of the ring written, not one per part. */
#define RING_SLACK 16

/* The ring never takes the last 5 % of its file system: below that much
 * free it shrinks (to leave twice that), so that it is not the ring that
 * fills the disk the rows and the long-term files need. */
#define RING_KEEP_FREE_PCT 5
/* At most one message a minute on giving way to the disk. */
#define RING_NOTE_PERIOD_US (60 * G_USEC_PER_SEC)

/* Bytes the ring should give back for the disk's sake: 0 while the file
 * system has RING_KEEP_FREE_PCT free (or cannot be asked). One statvfs
 * per batch, never a walk of the folder. */
static int64_t disk_shortfall(db_log *db)
{
	struct statvfs sv;
	int64_t size, free_bytes, keep;

	if (statvfs(db->media_dir, &sv) < 0 || sv.f_blocks == 0)
		return 0;
	size = (int64_t)sv.f_blocks * (int64_t)sv.f_frsize;
	free_bytes = (int64_t)sv.f_bavail * (int64_t)sv.f_frsize;
	keep = size / 100 * RING_KEEP_FREE_PCT;
	return free_bytes < keep ? 2 * keep - free_bytes : 0;
}

bool db__ring_on(const db_log *db)
{
	return db->opt.recent_images_mb > 0;
}

/* The wall clock of the oldest part in the ring, 0 when it is empty. */
static int64_t ring_oldest(db_log *db)
{
	char *sql = g_strdup_printf("SELECT coalesce(i.t_wall_us, 0) FROM media m LEFT JOIN"
				    " inspections i ON i.id = m.inspection_id WHERE m.recent = 1"
				    " AND m.id > %" PRId64 " ORDER BY m.id LIMIT 1",
				    db->ring_orphan_max);
	int64_t t = 0;

	if (db__query_int(db->conn, sql, &t) != SQLITE_OK)
		t = 0;   /* no ring rows (or unreadable: counts as empty) */
	g_free(sql);
	return t;
}

int db__ring_load(db_log *db)
{
	sqlite3_stmt *st = NULL;
	int rc;

	rc = sqlite3_prepare_v2(db->conn, "SELECT count(*), coalesce(sum(bytes), 0) FROM media"
				" WHERE recent = 1 AND id > ?1", -1, &st, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 1, db->ring_orphan_max);
	if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		atomic_store(&db->ring_files, sqlite3_column_int64(st, 0));
		atomic_store(&db->ring_bytes, sqlite3_column_int64(st, 1));
		rc = SQLITE_OK;
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_OK)
		return DB_ESQLITE;
	atomic_store(&db->ring_oldest_us, ring_oldest(db));
	return 0;
}

void db__ring_added(db_log *db, const struct db_item *it)
{
	int64_t bytes = 0;

	for (int i = 0; i < it->media.nfiles; i++)
		bytes += MAX(it->media.files[i].bytes, 0);
	atomic_fetch_add(&db->ring_files, it->media.nfiles);
	atomic_fetch_add(&db->ring_bytes, bytes);
	if (atomic_load(&db->ring_oldest_us) == 0)
		atomic_store(&db->ring_oldest_us, it->media.t_wall_us);
}

/* Deletes the rows in ids in one transaction: true when it committed. */
static bool delete_rows(db_log *db, GArray *ids)
{
	sqlite3_stmt *st = NULL;
	int rc;

	if (sqlite3_exec(db->conn, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
		return false;
	rc = sqlite3_prepare_v2(db->conn, "DELETE FROM media WHERE id = ?1", -1, &st, NULL);
	for (guint i = 0; rc == SQLITE_OK && i < ids->len; i++) {
		sqlite3_bind_int64(st, 1, g_array_index(ids, int64_t, i));
		if (sqlite3_step(st) != SQLITE_DONE)
			rc = SQLITE_ERROR;
		sqlite3_reset(st);
	}
	sqlite3_finalize(st);
	if (rc == SQLITE_OK && sqlite3_exec(db->conn, "COMMIT", NULL, NULL, NULL) == SQLITE_OK)
		return true;
	if (!sqlite3_get_autocommit(db->conn))
		sqlite3_exec(db->conn, "ROLLBACK", NULL, NULL, NULL);
	return false;
}

/* Removes the oldest ring files while the ring holds more than target
 * bytes or they are of parts before cut_us (but for parts from id
 * keep_from on: this run wrote them later than that), a part's files all
 * together (*last: the inspection whose files went last): up to RING_CHUNK
 * files, then their rows in one transaction. The files go first: on a full
 * disk that is what frees it, and the delete may then fail; those rows become
 * orphans (ring_orphans), out of the totals, deleted once writes work.
 * Returns the files removed, or -1; *more: the chunk was not enough. */
static int64_t trim_chunk(db_log *db, int64_t target, int64_t cut_us, int64_t keep_from,
			  int64_t *last, bool *more)
{
	static const char sql[] =
		"SELECT m.id, m.path, m.bytes, coalesce(i.t_wall_us, 0), m.inspection_id"
		" FROM media m"
		" LEFT JOIN inspections i ON i.id = m.inspection_id"
		" WHERE m.recent = 1 AND m.id > ?1 ORDER BY m.id LIMIT " G_STRINGIFY(RING_CHUNK);
	GArray *ids = g_array_new(FALSE, FALSE, sizeof(int64_t));
	int64_t bytes = atomic_load(&db->ring_bytes), freed = 0, n = -1;
	sqlite3_stmt *st = NULL;
	int rc;

	*more = false;
	if (sqlite3_prepare_v2(db->conn, sql, -1, &st, NULL) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 1, db->ring_orphan_max) != SQLITE_OK)
		goto out;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		int64_t id = sqlite3_column_int64(st, 0);
		const char *rel = (const char *)sqlite3_column_text(st, 1);
		int64_t size = MAX(sqlite3_column_int64(st, 2), 0);
		char *full;

		if (bytes - freed <= target &&
		    (sqlite3_column_int64(st, 3) >= cut_us ||
		     sqlite3_column_int64(st, 4) >= keep_from) &&
		    sqlite3_column_int64(st, 4) != *last)
			break;
		*last = sqlite3_column_int64(st, 4);
		full = rel ? g_build_filename(db->media_dir, rel, NULL) : NULL;
		if (full && g_remove(full) < 0 && errno != ENOENT)
			g_warning("database %s: cannot remove %s: %s", db->path, full,
				  g_strerror(errno));
		g_free(full);
		freed += size;
		g_array_append_val(ids, id);
	}
	*more = rc == SQLITE_ROW ? false : ids->len == RING_CHUNK;
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		goto out;
	sqlite3_finalize(st);
	st = NULL;
	if (ids->len == 0) {
		n = 0;
		goto out;
	}
	n = ids->len;
	if (!delete_rows(db, ids)) {
		g_array_append_vals(db->ring_orphans, ids->data, ids->len);
		db->ring_orphan_max = g_array_index(ids, int64_t, ids->len - 1);
	}
	atomic_fetch_sub(&db->ring_files, n);
	atomic_fetch_sub(&db->ring_bytes, freed);
	atomic_fetch_add(&db->ring_removed, (uint64_t)n);
out:
	if (n < 0)
		*more = false;
	sqlite3_finalize(st);
	g_array_free(ids, TRUE);
	return n;
}

void db__ring_trim(db_log *db)
{
	int64_t bound = db->opt.recent_images_mb * MIB;
	int64_t bytes = atomic_load(&db->ring_bytes);
	int64_t oldest = atomic_load(&db->ring_oldest_us);
	int64_t age = (int64_t)db->opt.recent_images_hours * HOUR_US;
	int64_t cut = age > 0 ? vigil_wall_us() - age : INT64_MIN;
	int64_t keep_from;
	bool squeeze = atomic_exchange(&db->ring_squeeze, 0) && bytes > 0;
	/* The ring off (bound 0): what an earlier run left in it goes too. */
	bool over = bytes > bound;
	bool aged = oldest != 0 && oldest < cut;
	int64_t short_by = db__ring_on(db) || bytes > 0 ? disk_shortfall(db) : 0;
	int64_t target, removed = 0, n, last = -1, now = vigil_now_us();
	bool more = true;

	/* Even an empty ring would leave the disk short: no new ring files
	 * (db_submit_media) until there is room again, rather than files
	 * written only to be removed. */
	atomic_store(&db->ring_paused, short_by > bytes);
	if (db->ring_orphans->len && !db->faulted && delete_rows(db, db->ring_orphans)) {
		g_array_set_size(db->ring_orphans, 0);
		db->ring_orphan_max = 0;
	}
	if (bytes == 0 || (!squeeze && !over && !aged && !short_by))
		return;
	/* While writes fail the rows cannot go: only a squeeze runs then,
	 * for the room its files give back; the rest waits for the disk. */
	if (db->faulted && !squeeze)
		return;
	target = over ? bound - bound / RING_SLACK : bytes;
	/* A write failed (a full disk): half the ring goes, to leave room
	 * for the long-term files and the rows, which must not stop. */
	if (squeeze)
		target = MIN(target, bytes / 2);
	if (short_by)
		target = MIN(target, MAX(bytes - short_by, 0));
	keep_from = age > 0 ? db__clock_keep_from(db, DB_TABLE_INSPECTIONS, age) : INT64_MAX;
	for (int k = 0; k < RING_CHUNKS_PER_TRIM && more; k++) {
		if ((n = trim_chunk(db, target, cut, keep_from, &last, &more)) < 0) {
			g_warning("database %s: the recent ring: cannot remove its oldest rows: %s",
				  db->path, sqlite3_errmsg(db->conn));
			break;
		}
		removed += n;
	}
	if ((squeeze || short_by) && removed && now >= db->ring_next_note_us) {
		db->ring_next_note_us = now + RING_NOTE_PERIOD_US;
		g_message("database %s: %s: removed %" PRId64 " file(s) of the recent ring to "
			  "make room", db->path, squeeze ? "a write failed (disk full?)"
			  : "the disk is nearly full", removed);
	}
	if (removed)
		atomic_store(&db->ring_oldest_us, ring_oldest(db));
}
