/* The inspection log: open and close, submitting rows, the counters, and
 * the helpers db/'s files share (db/db.h, db/db-private.h). */
#include "db/db.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib.h>
#include <sqlite3.h>

#include "core/bqueue.h"
#include "core/part.h"
#include "db/db-private.h"

/* Strings that leave this module go through malloc so that callers free()
 * them, as db.h promises; internal copies use GLib. */
void db__set_error(char **err, const char *fmt, ...)
{
	va_list ap;

	if (!err)
		return;
	va_start(ap, fmt);
	if (vasprintf(err, fmt, ap) < 0)
		*err = NULL;
	va_end(ap);
}

/* SQLite's message for the last failure on conn; conn is NULL when
 * sqlite3_open_v2 could not even allocate a handle. */
const char *db__sqlite_message(sqlite3 *conn, int rc)
{
	return conn ? sqlite3_errmsg(conn) : sqlite3_errstr(rc);
}

bool db__verdict_valid(int v)
{
	return v >= VIGIL_VERDICT_ACCEPT && v <= VIGIL_VERDICT_MARGINAL;
}

/* Keep in step with enum vigil_defect_class (core/part.h). */
static bool class_valid(int c)
{
	return c >= VIGIL_CLASS_NONE && c <= VIGIL_CLASS_BOTH;
}

/* The log stores the class by name; the read side maps it back. */
int db__class_from_name(const char *name)
{
	if (!name)
		return -1;
	for (int c = VIGIL_CLASS_NONE; c <= VIGIL_CLASS_BOTH; c++)
		if (strcmp(name, vigil_class_name((enum vigil_defect_class)c)) == 0)
			return c;
	return -1;
}

/* Runs a statement that yields one integer (a PRAGMA). */
int db__query_int(sqlite3 *conn, const char *sql, int64_t *value)
{
	sqlite3_stmt *st = NULL;
	int rc;

	rc = sqlite3_prepare_v2(conn, sql, -1, &st, NULL);
	if (rc != SQLITE_OK)
		goto out;
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*value = sqlite3_column_int64(st, 0);
		rc = SQLITE_OK;
	} else if (rc == SQLITE_DONE) {
		rc = SQLITE_ERROR;
	}
out:
	sqlite3_finalize(st);
	return rc;
}

int db__bind_text_or_null(sqlite3_stmt *st, int i, const char *s)
{
	/* SQLITE_STATIC: the item outlives the step and reset that use it. */
	return s ? sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC) : sqlite3_bind_null(st, i);
}

void db__item_free(struct db_item *it)
{
	if (!it)
		return;
	g_free(it->str1);
	g_free(it->str2);
	g_free(it->str3);
	if (it->kind == DB_ITEM_MEDIA)
		for (int i = 0; i < it->media.nfiles; i++) {
			g_free(it->media.files[i].camera);
			g_free(it->media.files[i].path);
			g_free(it->media.files[i].staged);
		}
	db_media_set_free(it->media_set);
	g_free(it);
}

char *db__default_media_dir(const char *db_path)
{
	return g_strconcat(db_path, ".media", NULL);
}

/* The media directory is recorded in the log, so that readers (vigilctl,
 * the review page) find the files from the database file alone. Given in
 * the options (vigild's [database] media_dir, or its default) it replaces
 * the record; not given (vigilctl upgrade, tools), the recorded one stays
 * in force (as db_media_dir finds it for a copied log) and only a log
 * without one gets the default. */
static int settle_media_dir(db_log *db, bool given)
{
	sqlite3_stmt *st = NULL;
	int rc;

	if (!given) {
		rc = sqlite3_prepare_v2(db->conn, "SELECT value FROM meta WHERE key = 'media_dir'",
					-1, &st, NULL);
		if (rc == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW &&
		    sqlite3_column_text(st, 0)) {
			/* A copy must not sweep its original's folder. */
			g_free(db->media_dir);
			db->media_dir = db__resolve_media_dir(
				db->path, (const char *)sqlite3_column_text(st, 0), NULL);
			db->opt.media_dir = db->media_dir;
		}
		sqlite3_finalize(st);
		st = NULL;
	}
	rc = sqlite3_prepare_v2(db->conn, given ? "INSERT OR REPLACE INTO meta (key, value)"
				" VALUES ('media_dir', ?1)" : "INSERT OR IGNORE INTO meta (key, value)"
				" VALUES ('media_dir', ?1)", -1, &st, NULL);
	if (rc == SQLITE_OK) {
		sqlite3_bind_text(st, 1, db->media_dir, -1, SQLITE_STATIC);
		rc = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : SQLITE_ERROR;
	}
	sqlite3_finalize(st);
	return rc == SQLITE_OK ? 0 : DB_ESQLITE;
}

/* The shift plan is recorded for readers as the media directory is. */
static int record_shifts(db_log *db, const char *shifts)
{
	sqlite3_stmt *st = NULL;
	int rc;

	if (!shifts)
		return 0;
	rc = sqlite3_prepare_v2(db->conn, "INSERT OR REPLACE INTO meta (key, value)"
				" VALUES ('shifts', ?1)", -1, &st, NULL);
	if (rc == SQLITE_OK) {
		sqlite3_bind_text(st, 1, shifts, -1, SQLITE_STATIC);
		rc = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : SQLITE_ERROR;
	}
	sqlite3_finalize(st);
	return rc == SQLITE_OK ? 0 : DB_ESQLITE;
}

/* sqlite3's busy handler while the log opens: another process holding the
 * write lock (a QA engineer's script in the sqlite3 shell, a backup) would
 * otherwise refuse vigild's start after the usual 5 s, and the line would
 * not come up. It waits up to DB_OPEN_WAIT_MS an episode, polling, and
 * says once that it waits; a lock held longer still refuses the start. */
static int open_busy(void *data, int count)
{
	db_log *db = data;
	int64_t now = vigil_now_us();

	if (count == 0)
		db->open_wait_since_us = now;
	if (now - db->open_wait_since_us >= (int64_t)DB_OPEN_WAIT_MS * 1000)
		return 0;
	if (!db->open_wait_told &&
	    now - db->open_wait_since_us >= (int64_t)DB_OPEN_WAIT_NOTICE_MS * 1000) {
		g_warning("database %s is locked by another process; waiting up to %d s for it "
			  "before starting", db->path, DB_OPEN_WAIT_MS / 1000);
		db->open_wait_told = true;
	}
	g_usleep(10000);
	return 1;
}

/* What tells the file just opened from any other later (db-follow.c):
 * its O_PATH descriptor, and the -wal and -shm beside it. */
static void file_id_of(const char *path, const char *suffix, struct db_file_id *id)
{
	char *name = g_strconcat(path, suffix, NULL);
	struct stat sb;

	*id = (struct db_file_id){ 0 };
	if (stat(name, &sb) == 0)
		*id = (struct db_file_id){ sb.st_dev, sb.st_ino };
	g_free(name);
}

static void identify_file(db_log *db)
{
	db->file_fd = open(db->path, O_PATH | O_CLOEXEC);
	file_id_of(db->path, "-wal", &db->wal_id);
	file_id_of(db->path, "-shm", &db->shm_id);
}

int db__open_file(db_log *db, bool at_start, bool check, char **err)
{
	char *why = NULL;
	int rc, ret = DB_ESQLITE;

	if (check && db__check_integrity(db->path, &why) == 0) {
		g_free(db->recovered);
		db->recovered = db__move_aside(db->path, err);
		if (!db->recovered) {
			g_free(why);
			return DB_ESQLITE;
		}
		g_warning("database %s is corrupt (quick_check: %s); moved it to %s and starting "
			  "a fresh log", db->path, why, db->recovered);
		g_free(why);
	}

	rc = sqlite3_open_v2(db->path, &db->conn, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
			     NULL);
	if (rc != SQLITE_OK) {
		db__set_error(err, "cannot open %s: %s", db->path, db__sqlite_message(db->conn, rc));
		goto fail;
	}
	/* At start another process's lock is waited for (open_busy); later
	 * the writer must not wait that long for a file of its own making. */
	if (at_start)
		sqlite3_busy_handler(db->conn, open_busy, db);
	else
		sqlite3_busy_timeout(db->conn, DB_BUSY_TIMEOUT_MS);

	if ((ret = db__prepare_schema(db, err)) < 0)
		goto fail;
	/* Once started, the folder the media thread writes to is the one a
	 * new file records, given or not. */
	if (settle_media_dir(db, at_start ? db->media_given : true) < 0 ||
	    record_shifts(db, db->shifts) < 0 || db__prepare_statements(db) < 0 ||
	    db__ring_load(db) < 0) {
		db__set_error(err, "cannot open %s: %s", db->path, sqlite3_errmsg(db->conn));
		ret = DB_ESQLITE;
		goto fail;
	}
	if (db->opt.max_pages > 0) {
		char *sql = sqlite3_mprintf("PRAGMA max_page_count = %lld",
					    (long long)db->opt.max_pages);

		sqlite3_exec(db->conn, sql, NULL, NULL, NULL);
		sqlite3_free(sql);
	}
	/* After the schema: by now the connection has read the file in WAL
	 * mode, so its -wal and -shm exist. */
	identify_file(db);
	return 0;

fail:
	db__finalize_statements(&db->st);
	sqlite3_close(db->conn);
	db->conn = NULL;
	return ret;
}

db_log *db_open_with(const char *path, const struct db_options *opt_in, char **err)
{
	static const struct db_options defaults = DB_OPTIONS_DEFAULT;
	struct db_options opt = opt_in ? *opt_in : defaults;
	db_log *db;
	GError *gerr = NULL;
	char *dir;

	if (!path || opt.queue_depth == 0) {
		db__set_error(err, "cannot open %s: %s", path ? path : "(no path)",
			  path ? "queue depth must be at least 1" : "no path given");
		return NULL;
	}
	if (opt.media_queue == 0)
		opt.media_queue = defaults.media_queue;
	if (opt.retention_period_s <= 0)
		opt.retention_period_s = defaults.retention_period_s;
	if (opt.spool_rows == 0)
		opt.spool_rows = defaults.spool_rows;

	db = g_new0(db_log, 1);
	g_mutex_init(&db->error_lock);
	g_mutex_init(&db->submit_lock);
	g_mutex_init(&db->sync_lock);
	g_cond_init(&db->sync_cond);
	atomic_init(&db->rows_written, 0);
	atomic_init(&db->rows_failed, 0);
	atomic_init(&db->settled, 0);
	atomic_init(&db->ok, 1);
	atomic_init(&db->media_dropped, 0);
	atomic_init(&db->media_written, 0);
	atomic_init(&db->media_done, 0);
	atomic_init(&db->file_moves, 0);
	atomic_init(&db->file_away, 0);
	atomic_init(&db->lag_us, 0);
	atomic_init(&db->lag_max_us, 0);
	atomic_init(&db->ring_files, 0);
	atomic_init(&db->ring_bytes, 0);
	atomic_init(&db->ring_oldest_us, 0);
	atomic_init(&db->ring_dropped, 0);
	atomic_init(&db->ring_removed, 0);
	atomic_init(&db->ring_squeeze, 0);
	atomic_init(&db->ring_paused, 0);
	for (int t = 0; t < DB_NTABLES; t++)
		for (int c = 0; c < DB_NDROP_CAUSES; c++)
			atomic_init(&db->dropped[t][c], 0);
	atomic_init(&db->spool_depth, 0);
	g_queue_init(&db->spool);
	db->spooled = g_hash_table_new(g_int64_hash, g_int64_equal);
	db->media_lock_fd = -1;
	db->file_fd = -1;
	db->ring_orphans = g_array_new(FALSE, FALSE, sizeof(int64_t));
	db->clock_marks = g_array_new(FALSE, FALSE, sizeof(struct db_clock_mark));
	atomic_init(&db->clock_steps, 0);
	db->path = g_strdup(path);
	db->opt = opt;
	db->media_given = opt.media_dir != NULL;
	dir = opt.media_dir ? g_strdup(opt.media_dir) : db__default_media_dir(path);
	db->media_dir = g_canonicalize_filename(dir, NULL);
	g_free(dir);
	db->opt.media_dir = db->media_dir;
	db->station = g_strdup(opt.station ? opt.station : g_get_host_name());
	db->opt.station = db->station;
	db->shifts = g_strdup(opt.shifts);
	db->opt.shifts = db->shifts;

	if (db__open_file(db, true, true, err) < 0)
		goto fail;
	if (g_mkdir_with_parents(db->media_dir, 0755) < 0) {
		db__set_error(err, "cannot open %s: cannot create the media directory %s: %s", path,
			  db->media_dir, g_strerror(errno));
		goto fail;
	}
	/* Before the media thread starts: what a crash left half done. */
	db__sweep_media(db);
	/* Opened: from here on a lock is a write that fails and is retried
	 * (the spool), never a wait of the writer's. */
	sqlite3_busy_timeout(db->conn, DB_BUSY_TIMEOUT_MS);
	if (db->open_wait_told)
		g_message("database %s: the lock is gone; opened", path);

	/* The rows from here on are this run's: aged by the boot clock too. */
	db__clock_restart(db);
	db->next_retention_us = vigil_now_us();
	db->next_path_check_us = vigil_now_us() + (int64_t)DB_PATH_CHECK_MS * 1000;
	db->queue = bqueue_new(opt.queue_depth);
	db->media_queue = bqueue_new(opt.media_queue);
	atomic_store(&db->writer_beat_us, vigil_now_us());
	db->writer = g_thread_try_new("db-writer", db__writer_main, db, &gerr);
	if (db->writer)
		db->media_writer = g_thread_try_new("db-media", db__media_main, db, &gerr);
	if (!db->writer || !db->media_writer) {
		db__set_error(err, "cannot open %s: cannot start the writer threads: %s", path,
			  gerr->message);
		g_error_free(gerr);
		goto fail;
	}
	return db;

fail:
	db_close(db);
	return NULL;
}

db_log *db_open(const char *path, size_t queue_depth, char **err)
{
	struct db_options opt = DB_OPTIONS_DEFAULT;

	opt.queue_depth = queue_depth;
	return db_open_with(path, &opt, err);
}

static int enqueue(db_log *db, struct db_item *it, int64_t timeout_us)
{
	int rc;

	it->t_queued_us = vigil_now_us();
	rc = bqueue_push(db->queue, it, timeout_us);
	if (rc < 0) {
		db__item_free(it);
		return rc == -EPIPE ? DB_ECLOSED : rc == -ETIMEDOUT ? -EAGAIN : rc;
	}
	return 0;
}

/* A queued copy of row, owning its strings and media. */
static struct db_item *new_row_item(enum db_item_kind kind, const struct db_inspection *row,
				    struct db_media_set *media)
{
	struct db_item *it = g_new0(struct db_item, 1);

	it->kind = kind;
	it->row = *row;
	it->str1 = g_strdup(row->model_version);
	it->str2 = g_strdup(row->image_path);
	it->row.model_version = it->str1;
	it->row.image_path = it->str2;
	it->str3 = g_strdup(row->station);
	it->row.station = it->str3;
	it->media_set = media;
	return it;
}

int db_submit_media(db_log *db, const struct db_inspection *row, struct db_media_set *media,
		    int64_t timeout_us, uint64_t *ticket)
{
	struct db_item *it;
	uint64_t t;
	int rc;

	if (!db || !row || !db__verdict_valid(row->verdict) || !class_valid(row->defect_class)) {
		db_media_set_free(media);
		return -EINVAL;
	}
	it = new_row_item(DB_ITEM_INSPECTION, row, media);

	/* One lock for the ticket and the push: tickets reach the writer in
	 * the order they were handed out. A caller that may not wait does not
	 * wait for the lock either (another submitter may hold it while it
	 * waits for room). */
	if (timeout_us == 0) {
		if (!g_mutex_trylock(&db->submit_lock)) {
			db__item_free(it);
			return -EAGAIN;
		}
	} else {
		g_mutex_lock(&db->submit_lock);
	}
	if (media && row->verdict == VIGIL_VERDICT_ACCEPT &&
	    (db->opt.keep_accepted_every <= 0 ||
	     db->accepted_seen++ % (uint64_t)db->opt.keep_accepted_every != 0)) {
		/* Not sampled: the ring keeps its images, unless that would
		 * hold images in memory behind a writer that is behind (every
		 * queued row could then carry one) or the disk fails. */
		if (db__ring_on(db) && atomic_load(&db->ok) && !atomic_load(&db->ring_paused) &&
		    bqueue_depth(db->queue) < db->opt.media_queue &&
		    bqueue_depth(db->media_queue) < db->opt.media_queue / 2 + 1) {
			it->recent = true;
		} else {
			db_media_set_free(it->media_set);
			it->media_set = NULL;
			if (db__ring_on(db))
				atomic_fetch_add(&db->ring_dropped, 1);
		}
	}
	t = it->ticket = ++db->next_ticket;
	rc = enqueue(db, it, timeout_us);
	g_mutex_unlock(&db->submit_lock);
	if (rc == 0 && ticket)
		*ticket = t;
	return rc;
}


int db_submit(db_log *db, const struct db_inspection *row)
{
	return db_submit_media(db, row, NULL, -1, NULL);
}

int db_set_latency(db_log *db, uint64_t ticket, double latency_ms)
{
	struct db_item *it;

	if (!db || !ticket)
		return -EINVAL;
	it = g_new0(struct db_item, 1);
	it->kind = DB_ITEM_LATENCY;
	it->latency.ticket = ticket;
	it->latency.ms = latency_ms;
	return enqueue(db, it, 0);
}

int db_set_late(db_log *db, uint64_t ticket, const struct db_inspection *row,
		struct db_media_set *media)
{
	struct db_item *it;

	if (!db || !ticket || !row || !db__verdict_valid(row->verdict) ||
	    !class_valid(row->defect_class)) {
		db_media_set_free(media);
		return -EINVAL;
	}
	it = new_row_item(DB_ITEM_LATE, row, media);
	it->late_ticket = ticket;
	return enqueue(db, it, -1);
}

int db_event(db_log *db, const char *kind, const char *message)
{
	struct db_item *it;

	if (!db || !kind || !message)
		return -EINVAL;
	it = g_new0(struct db_item, 1);
	it->kind = DB_ITEM_EVENT;
	it->event.t_wall_us = vigil_wall_us();
	it->str1 = g_strdup(kind);
	it->str2 = g_strdup(message);
	return enqueue(db, it, -1);
}

int db_trend(db_log *db, const struct db_trend *row)
{
	struct db_item *it;

	if (!db || !row || !row->source)
		return -EINVAL;
	it = g_new0(struct db_item, 1);
	it->kind = DB_ITEM_TREND;
	it->trend = *row;
	it->str1 = g_strdup(row->source);
	it->trend.source = it->str1;
	return enqueue(db, it, -1);
}

/* Queues an item of kind and waits until the writer has dealt with it and
 * everything queued before it. */
static int writer_sync(db_log *db, enum db_item_kind kind)
{
	struct db_item *it = g_new0(struct db_item, 1);
	uint64_t runs;
	int rc;

	it->kind = kind;
	g_mutex_lock(&db->sync_lock);
	runs = db->syncs;
	g_mutex_unlock(&db->sync_lock);
	if ((rc = enqueue(db, it, -1)) < 0)
		return rc;
	g_mutex_lock(&db->sync_lock);
	while (db->syncs == runs)
		g_cond_wait(&db->sync_cond, &db->sync_lock);
	g_mutex_unlock(&db->sync_lock);
	return 0;
}

int db_retain_now(db_log *db)
{
	return db ? writer_sync(db, DB_ITEM_RETAIN) : -EINVAL;
}

int db_check_path(db_log *db)
{
	return db ? writer_sync(db, DB_ITEM_CHECK_PATH) : -EINVAL;
}

void db_close(db_log *db)
{
	int rc;

	if (!db)
		return;
	/* Rows first, so that every committed part's files are handed to
	 * the media thread; then the media thread, which may still queue rows
	 * for its files, which the writer, still running, takes. Then the
	 * writer drains its queue and returns. */
	if (db->writer && db->media_writer)
		writer_sync(db, DB_ITEM_SYNC);
	if (db->media_queue)
		bqueue_close(db->media_queue);
	if (db->media_writer)
		g_thread_join(db->media_writer);
	if (db->queue)
		bqueue_close(db->queue);
	if (db->writer)
		g_thread_join(db->writer);
	if (db->writer && db->conn)
		db__follow_close(db);
	db__finalize_statements(&db->st);
	/* The last connection to close checkpoints the WAL into the file and
	 * removes it (not for a file moved meanwhile: db__follow_close). */
	rc = sqlite3_close(db->conn);
	if (rc != SQLITE_OK)
		g_warning("database %s: close: %s", db->path, sqlite3_errstr(rc));
	if (db->media_queue) {
		void *job;

		/* Jobs left when the media thread could not start. */
		while (bqueue_pop(db->media_queue, &job, 0) == 0) {
			db_media_set_free(((struct media_job *)job)->set);
			g_free(job);
		}
	}
	bqueue_free(db->media_queue);
	bqueue_free(db->queue);
	g_mutex_clear(&db->error_lock);
	g_mutex_clear(&db->submit_lock);
	g_mutex_clear(&db->sync_lock);
	g_cond_clear(&db->sync_cond);
	free(db->last_error);
	g_free(db->fault_error);
	/* Items the writer left spooled only when it never ran. */
	g_queue_clear_full(&db->spool, (GDestroyNotify)db__item_free);
	if (db->spooled)
		g_hash_table_destroy(db->spooled);
	if (db->ring_orphans)
		g_array_free(db->ring_orphans, TRUE);
	if (db->clock_marks)
		g_array_free(db->clock_marks, TRUE);
	if (db->media_lock_fd >= 0)
		close(db->media_lock_fd);
	if (db->file_fd >= 0)
		close(db->file_fd);
	g_free(db->recovered);
	g_free(db->rescued_to);
	g_free(db->shifts);
	g_free(db->media_dir);
	g_free(db->station);
	g_free(db->path);
	g_free(db);
}

int64_t db_writer_heartbeat_us(db_log *db)
{
	return db ? atomic_load(&db->writer_beat_us) : 0;
}

void db_get_stats(db_log *db, struct db_stats *out)
{
	int64_t ring_files, ring_bytes;

	memset(out, 0, sizeof *out);
	if (!db)
		return;
	/* First: the writer stores settled after everything else a batch
	 * changes (write_items), so what follows includes those rows. */
	out->settled = atomic_load(&db->settled);
	out->ok = atomic_load(&db->ok);
	out->rows_written = atomic_load(&db->rows_written);
	out->rows_failed = atomic_load(&db->rows_failed);
	for (int t = 0; t < DB_NTABLES; t++)
		for (int c = 0; c < DB_NDROP_CAUSES; c++)
			out->rows_dropped[t][c] = atomic_load(&db->dropped[t][c]);
	out->spool_depth = atomic_load(&db->spool_depth);
	out->media_dropped = atomic_load(&db->media_dropped);
	out->media_written = atomic_load(&db->media_written);
	ring_files = atomic_load(&db->ring_files);
	ring_bytes = atomic_load(&db->ring_bytes);
	out->ring_files = (uint64_t)MAX(ring_files, 0);
	out->ring_bytes = (uint64_t)MAX(ring_bytes, 0);
	out->ring_oldest_us = atomic_load(&db->ring_oldest_us);
	out->ring_dropped = atomic_load(&db->ring_dropped);
	out->ring_removed = atomic_load(&db->ring_removed);
	out->queue_high_water = db->queue ? bqueue_high_water(db->queue) : 0;
	out->write_lag_ms = (double)atomic_load(&db->lag_us) / 1000.0;
	out->write_lag_max_ms = (double)atomic_load(&db->lag_max_us) / 1000.0;
	out->file_moves = atomic_load(&db->file_moves);
	out->file_away = atomic_load(&db->file_away);
	out->clock_steps = atomic_load(&db->clock_steps);
}

const char *db_table_name(enum db_table table)
{
	static const char *const names[DB_NTABLES] = { "inspections", "events", "trend" };

	return (int)table >= 0 && table < DB_NTABLES ? names[table] : "unknown";
}

const char *db_drop_cause_name(enum db_drop_cause cause)
{
	static const char *const names[DB_NDROP_CAUSES] = { "spool_full", "refused", "closed" };

	return (int)cause >= 0 && cause < DB_NDROP_CAUSES ? names[cause] : "unknown";
}

uint64_t db_settled(db_log *db)
{
	return db ? atomic_load(&db->settled) : 0;
}

int db_ok(db_log *db)
{
	return db ? atomic_load(&db->ok) : 0;
}

char *db_last_error(db_log *db)
{
	char *copy = NULL;

	if (!db)
		return NULL;
	g_mutex_lock(&db->error_lock);
	if (db->last_error)
		copy = strdup(db->last_error);
	g_mutex_unlock(&db->error_lock);
	return copy;
}

const char *db_strerror(int code)
{
	switch (code) {
	case 0:
		return "success";
	case DB_ESQLITE:
		return "SQLite error";
	case DB_ECLOSED:
		return "database log is closed";
	}
	if (code < 0 && code > -DB_ENOBASE)
		return g_strerror(-code);
	return "unknown error";
}
