/* The writer thread: batched transactions, the spool that keeps rows while
 * the disk fails, and the counters db_get_stats reads (db/db-private.h). */
#include "db/db.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>
#include <sqlite3.h>

#include "core/bqueue.h"
#include "core/part.h"
#include "db/db-private.h"

/* Errors of the file or the disk, as opposed to one row refused by a
 * constraint or trigger: these make the database fault, and the rows wait
 * in the spool for the disk to come back. */
static bool is_fault(int rc)
{
	switch (rc & 0xff) {
	case SQLITE_FULL:
	case SQLITE_IOERR:
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB:
	case SQLITE_READONLY:
	case SQLITE_CANTOPEN:
	case SQLITE_NOMEM:
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
	case SQLITE_PROTOCOL:
		return true;
	}
	return false;
}

/* The table an item's row goes to, or -1 for items that are not counted
 * as rows (media rows, latencies, control items). */
static int item_table(const struct db_item *it)
{
	switch (it->kind) {
	case DB_ITEM_INSPECTION:
		return DB_TABLE_INSPECTIONS;
	case DB_ITEM_EVENT:
		return DB_TABLE_EVENTS;
	case DB_ITEM_TREND:
		return DB_TABLE_TREND;
	default:
		return -1;
	}
}

static bool is_control(const struct db_item *it)
{
	return it->kind == DB_ITEM_RETAIN || it->kind == DB_ITEM_SYNC ||
	       it->kind == DB_ITEM_CHECK_PATH;
}

bool db__stale_media(const db_log *db, const struct db_item *it)
{
	return it->kind == DB_ITEM_MEDIA && it->generation != db->generation;
}

/* The failure of a batch for the warning and db_last_error: the first,
 * unless a fault follows a refused row (the fault is what the operator
 * has to act on). */
static void note_failure(db_log *db, char **error, const char *during, bool fault)
{
	int rc = sqlite3_extended_errcode(db->conn);

	/* A full disk, or one failing: the recent ring gives way first, once
	 * a fault (begin_fault), not at every retry. */
	if (fault && !db->faulted)
		db->fault_full = (rc & 0xff) == SQLITE_FULL || (rc & 0xff) == SQLITE_IOERR;
	if (*error && !fault)
		return;
	free(*error);
	if (asprintf(error, "%s: %s (%s)", during, sqlite3_errmsg(db->conn),
		     sqlite3_errstr(rc)) < 0)
		*error = NULL;
}

/* Writes batch[0..n) in one transaction and sets each item's outcome. A
 * row the database refuses on its own (a constraint, a trigger) is
 * refused and the rest commit; if its error took the transaction with it
 * (RAISE(ROLLBACK)), the rows before it go again in a new one. A fault of
 * the file or the disk (full, I/O, locked) stops the batch: the
 * transaction is rolled back and every row not refused is pending, to be
 * tried again. Returns true on a fault; *error (malloc) is the first
 * failure, if any. */
static bool write_batch(db_log *db, struct db_item **batch, size_t n, char **error)
{
	bool in_transaction = false, fault = false;
	size_t first = 0, i = 0, stale = 0;

	for (size_t k = 0; k < n; k++) {
		/* Its part's row is in the file the writer left: here its row id
		 * is another part's. Refused, so that its files go with it. */
		stale += db__stale_media(db, batch[k]);
		batch[k]->outcome = db__stale_media(db, batch[k]) ? DB_ITEM_REFUSED
								   : DB_ITEM_UNTRIED;
		batch[k]->in_transaction = false;
	}
	if (stale)
		g_warning("database %s: the files of %zu part(s) logged in the file before the "
			  "fresh log came too late for it: removed", db->path, stale);
	while (i < n && !fault) {
		struct db_item *it = batch[i];
		sqlite3_stmt *st = NULL;
		int rc;

		if (it->outcome == DB_ITEM_REFUSED) {
			i++;
			continue;
		}
		if (!in_transaction) {
			if (sqlite3_exec(db->conn, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
				note_failure(db, error, "begin", true);
				fault = true;
				break;
			}
			in_transaction = true;
			first = i;
		}
		rc = db__insert_item(db, it, &st);
		if (rc == SQLITE_DONE) {
			it->in_transaction = true;
		} else if (is_fault(sqlite3_extended_errcode(db->conn))) {
			note_failure(db, error, "insert", true);
			fault = true;
		} else {
			note_failure(db, error, "insert", false);
			it->outcome = DB_ITEM_REFUSED;
			it->rowid = 0;
			if (sqlite3_get_autocommit(db->conn)) {
				for (size_t k = first; k < i; k++) {
					batch[k]->in_transaction = false;
					batch[k]->rowid = 0;
				}
				in_transaction = false;
				if (st)
					sqlite3_reset(st);
				i = first;
				continue;
			}
		}
		if (st)
			sqlite3_reset(st);
		i++;
	}
	if (in_transaction && !fault) {
		if (db->opt.commit_delay_ms > 0)
			g_usleep((gulong)db->opt.commit_delay_ms * 1000);
		if (sqlite3_exec(db->conn, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
			note_failure(db, error, "commit", true);
			fault = true;
		}
	}
	/* After SQLITE_FULL SQLite may have rolled back the statement only,
	 * or the whole transaction; either way nothing of it may stay open. */
	if (fault && !sqlite3_get_autocommit(db->conn))
		sqlite3_exec(db->conn, "ROLLBACK", NULL, NULL, NULL);
	for (size_t k = 0; k < n; k++) {
		struct db_item *it = batch[k];

		if (it->outcome == DB_ITEM_REFUSED)
			continue;
		it->outcome = fault ? DB_ITEM_PENDING : DB_ITEM_WRITTEN;
		if (fault)
			it->rowid = 0;
		it->in_transaction = false;
	}
	return fault;
}

/* Counts an item given up for good (its files go with it). */
static void drop_item(db_log *db, struct db_item *it, enum db_drop_cause cause)
{
	int table = item_table(it);

	if (table >= 0) {
		atomic_fetch_add(&db->dropped[table][cause], 1);
		atomic_fetch_add(&db->rows_failed, 1);
	}
	if (it->kind == DB_ITEM_MEDIA) {
		/* No row will point at these files: they go now rather than
		 * wait for the sweep at the next start. */
		db__remove_media_files(db, it);
		atomic_fetch_add(it->recent ? &db->ring_dropped : &db->media_dropped, 1);
	}
}

/* What follows a write: written rows counted, remembered by ticket and
 * their files handed on; refused ones dropped. Pending ones are the
 * caller's. */
static void settle_items(db_log *db, struct db_item **batch, size_t n)
{
	int64_t now = vigil_now_us(), lag = -1;
	uint64_t written = 0;

	for (size_t i = 0; i < n; i++) {
		struct db_item *it = batch[i];

		if (it->outcome == DB_ITEM_REFUSED) {
			drop_item(db, it, DB_DROP_REFUSED);
			continue;
		}
		if (it->outcome != DB_ITEM_WRITTEN || is_control(it))
			continue;
		written += item_table(it) >= 0;
		if (it->ticket && it->rowid) {
			size_t slot = it->ticket % DB_TICKET_RING;

			db->tickets[slot].ticket = it->ticket;
			db->tickets[slot].rowid = it->rowid;
		}
		if (it->media_set && it->rowid)
			db__hand_media(db, it);
		if (it->kind == DB_ITEM_MEDIA && it->recent)
			db__ring_added(db, it);
		lag = MAX(lag, now - it->t_queued_us);
	}
	atomic_fetch_add(&db->rows_written, written);
	if (lag >= 0) {
		atomic_store(&db->lag_us, lag);
		if (lag > atomic_load(&db->lag_max_us))
			atomic_store(&db->lag_max_us, lag);
	}
}

static void set_last_error(db_log *db, char *error)
{
	g_mutex_lock(&db->error_lock);
	free(db->last_error);
	db->last_error = error;
	g_mutex_unlock(&db->error_lock);
}

/* For the events that say how a fault went, and the last one of a moved
 * file (db-follow.c). */
bool db__write_event_now(db_log *db, int64_t t_wall_us, const char *kind, const char *message)
{
	struct db_item it = { .kind = DB_ITEM_EVENT, .event.t_wall_us = t_wall_us };
	struct db_item *one = &it;
	char *error = NULL;

	it.str1 = (char *)kind;
	it.str2 = (char *)message;
	write_batch(db, &one, 1, &error);
	free(error);
	if (it.outcome != DB_ITEM_WRITTEN)
		return false;
	atomic_fetch_add(&db->rows_written, 1);
	return true;
}

/* What comes later for a row still in the spool goes into the row itself,
 * so that it is written once, whole: its latency; or the model's late
 * judgement (db_set_late), which takes the row's place as the UPDATE would
 * have changed it (flags added, the judgement's fields replacing the
 * row's; time, ids, latency and image path kept). Takes over it and
 * returns true when it did so. */
static bool absorb_spooled(db_log *db, struct db_item *it)
{
	uint64_t ticket = it->kind == DB_ITEM_LATENCY ? it->latency.ticket
			: it->kind == DB_ITEM_LATE   ? it->late_ticket
						     : 0;
	struct db_item *row = ticket ? g_hash_table_lookup(db->spooled, &ticket) : NULL;
	GList *link;
	char *keep;

	if (!row)
		return false;
	if (it->kind == DB_ITEM_LATENCY) {
		row->row.latency_ms = it->latency.ms;
		db__item_free(it);
		return true;
	}
	it->kind = DB_ITEM_INSPECTION;
	it->ticket = row->ticket;
	it->late_ticket = 0;
	it->row.flags |= row->row.flags;
	it->row.part_id = row->row.part_id;
	it->row.trigger_counter = row->row.trigger_counter;
	it->row.seq = row->row.seq;
	it->row.t_wall_us = row->row.t_wall_us;
	it->row.latency_ms = row->row.latency_ms;
	keep = it->str2;
	it->str2 = row->str2;
	it->row.image_path = it->str2;
	row->str2 = keep;
	if (it->media_set) {
		db_media_set_free(it->media_set);
		it->media_set = NULL;
		atomic_fetch_add(it->recent ? &db->ring_dropped : &db->media_dropped, 1);
	}
	link = g_queue_find(&db->spool, row);
	link->data = it;
	g_hash_table_remove(db->spooled, &row->ticket);
	g_hash_table_insert(db->spooled, &it->ticket, it);
	db__item_free(row);
	return true;
}

/* Accepted parts and trend readings go first when the spool is full: the
 * rejects and marginals are what QA reviews and traceability asks for.
 * Among equals the oldest goes: the newest rows are of the parts still in
 * the plant, the ones QA can still act on. */
static bool expendable(const struct db_item *it)
{
	return it->kind == DB_ITEM_TREND || it->kind == DB_ITEM_LATENCY ||
	       (it->kind == DB_ITEM_INSPECTION && it->row.verdict == VIGIL_VERDICT_ACCEPT);
}

/* Makes room for incoming in a full spool: drops the oldest expendable
 * item, incoming included (then returns false: incoming is gone), else the
 * oldest item. */
static bool spool_evict(db_log *db, struct db_item *incoming)
{
	GList *victim = NULL;
	struct db_item *it;

	for (GList *l = db->spool.head; l && !victim; l = l->next)
		if (expendable(l->data))
			victim = l;
	if (!victim && expendable(incoming)) {
		it = incoming;
	} else {
		victim = victim ? victim : db->spool.head;
		it = victim->data;
		g_queue_delete_link(&db->spool, victim);
		if (it->kind == DB_ITEM_INSPECTION)
			g_hash_table_remove(db->spooled, &it->ticket);
	}
	if (!db->spool_overflowed) {
		g_warning("database %s: the spool is full (%zu rows): rows are dropped from now "
			  "on until writes work again, accepted parts and trend readings first",
			  db->path, db->opt.spool_rows);
		db->spool_overflowed = true;
	}
	drop_item(db, it, DB_DROP_SPOOL_FULL);
	db__item_free(it);
	return victim != NULL;
}

/* Takes over it: to the spool's tail (or its head: items coming back from
 * a retry, pushed newest first), making room if the spool is full. An
 * inspection's files are not kept: they would need the disk that fails,
 * and memory for thousands of images. */
static void spool_push(db_log *db, struct db_item *it, bool head)
{
	if (is_control(it)) {
		db__item_free(it);
		return;
	}
	if (absorb_spooled(db, it))
		return;
	if (it->media_set) {
		db_media_set_free(it->media_set);
		it->media_set = NULL;
		atomic_fetch_add(it->recent ? &db->ring_dropped : &db->media_dropped, 1);
	}
	if (!head) {
		db->fault_spooled += item_table(it) >= 0;
		if (g_queue_get_length(&db->spool) >= db->opt.spool_rows &&
		    !spool_evict(db, it))
			return;
	}
	if (head)
		g_queue_push_head(&db->spool, it);
	else
		g_queue_push_tail(&db->spool, it);
	if (it->kind == DB_ITEM_INSPECTION && it->ticket)
		g_hash_table_insert(db->spooled, &it->ticket, it);
	atomic_store(&db->spool_depth, g_queue_get_length(&db->spool));
}

static void begin_fault(db_log *db, const char *error)
{
	if (db->faulted)
		return;
	db->faulted = true;
	if (db->fault_full)
		atomic_store(&db->ring_squeeze, 1);
	db->fault_full = false;
	db->fault_since_us = vigil_wall_us();
	g_free(db->fault_error);
	db->fault_error = g_strdup(error ? error : "out of memory");
	for (int t = 0; t < DB_NTABLES; t++)
		for (int c = 0; c < DB_NDROP_CAUSES; c++)
			db->fault_dropped_before[t][c] = atomic_load(&db->dropped[t][c]);
	db->fault_spooled = 0;
	db->fault_logged = db->drops_logged = db->spool_overflowed = false;
	db->next_retry_us = vigil_now_us() + DB_RETRY_MS * 1000;
	g_warning("database %s: writes fail (%s): rows wait in memory (at most %zu) and are "
		  "written once the disk takes them again", db->path, db->fault_error,
		  db->opt.spool_rows);
	atomic_store(&db->ok, 0);
}

/* Writes items[0..n) (in queue order) or, while writes fail, keeps them
 * in the spool; takes over every item it keeps (items[i] set to NULL). */
static void write_items(db_log *db, struct db_item **items, size_t n)
{
	uint64_t settled = 0;

	for (size_t i = 0; i < n; i++)
		if (items[i]->ticket)
			settled = items[i]->ticket;
	if (!db->faulted) {
		char *error = NULL;
		bool fault = write_batch(db, items, n, &error);
		uint64_t refused = 0;

		/* The error is in place before the counters move (settle_items),
		 * so that whoever sees rows_failed grow finds db_last_error set.
		 * It stays valid below: only this thread replaces it. */
		if (error)
			set_last_error(db, error);
		settle_items(db, items, n);
		for (size_t i = 0; i < n; i++)
			refused += items[i]->outcome == DB_ITEM_REFUSED && item_table(items[i]) >= 0;
		if (refused)
			g_warning("database %s: %" PRIu64 " of %zu rows not written: %s", db->path,
				  refused, n, error ? error : "out of memory");
		if (fault)
			begin_fault(db, error);
		for (size_t i = 0; fault && i < n; i++)
			if (items[i]->outcome == DB_ITEM_PENDING) {
				spool_push(db, items[i], false);
				items[i] = NULL;
			}
	} else {
		for (size_t i = 0; i < n; i++) {
			spool_push(db, items[i], false);
			items[i] = NULL;
		}
	}
	/* Last: a submitter that sees its ticket settled finds db_ok and the
	 * counters already telling how it went. */
	if (settled)
		atomic_store(&db->settled, settled);
}

void db__write_event(db_log *db, const char *kind, const char *message)
{
	struct db_item *it = g_new0(struct db_item, 1);

	it->kind = DB_ITEM_EVENT;
	it->event.t_wall_us = vigil_wall_us();
	it->t_queued_us = vigil_now_us();
	it->str1 = g_strdup(kind);
	it->str2 = g_strdup(message);
	write_items(db, &it, 1);
	db__item_free(it);
}

static void drops_since_fault(db_log *db, uint64_t by_cause[DB_NDROP_CAUSES],
			      uint64_t by_table[DB_NTABLES])
{
	memset(by_cause, 0, sizeof(uint64_t) * DB_NDROP_CAUSES);
	memset(by_table, 0, sizeof(uint64_t) * DB_NTABLES);
	for (int t = 0; t < DB_NTABLES; t++)
		for (int c = 0; c < DB_NDROP_CAUSES; c++) {
			uint64_t d = atomic_load(&db->dropped[t][c]) - db->fault_dropped_before[t][c];

			by_cause[c] += d;
			by_table[t] += d;
		}
}

/* While in fault, every DB_RETRY_MS: the "db-fault" event first (the
 * cheapest probe of whether the disk takes writes again), then the spool,
 * oldest first, in batches; once it is empty, "db-rows-dropped" (if any
 * were) and "db-ok", and the fault is over. Whatever fails waits for the
 * next try, in place. */
static void retry_spool(db_log *db)
{
	struct db_item *batch[DB_BATCH_MAX];
	uint64_t by_cause[DB_NDROP_CAUSES], by_table[DB_NTABLES], total = 0;
	char *msg;

	db->next_retry_us = vigil_now_us() + DB_RETRY_MS * 1000;
	if (!db->fault_logged) {
		msg = g_strdup_printf("writes failed from here on: %s", db->fault_error);
		db->fault_logged = db__write_event_now(db, db->fault_since_us, "db-fault", msg);
		g_free(msg);
		if (!db->fault_logged)
			return;
	}
	while (!g_queue_is_empty(&db->spool)) {
		char *error = NULL;
		size_t n = 0;
		bool fault;

		while (n < DB_BATCH_MAX && !g_queue_is_empty(&db->spool)) {
			batch[n] = g_queue_pop_head(&db->spool);
			if (batch[n]->kind == DB_ITEM_INSPECTION)
				g_hash_table_remove(db->spooled, &batch[n]->ticket);
			n++;
		}
		fault = write_batch(db, batch, n, &error);
		settle_items(db, batch, n);
		if (error)
			set_last_error(db, error);
		for (size_t i = n; i-- > 0;) {
			if (batch[i]->outcome == DB_ITEM_PENDING)
				spool_push(db, batch[i], true);
			else
				db__item_free(batch[i]);
		}
		atomic_store(&db->spool_depth, g_queue_get_length(&db->spool));
		if (fault)
			return;
	}
	/* Pages the full disk kept in the WAL go to the file now. */
	sqlite3_wal_checkpoint_v2(db->conn, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
	drops_since_fault(db, by_cause, by_table);
	for (int c = 0; c < DB_NDROP_CAUSES; c++)
		total += by_cause[c];
	if (total && !db->drops_logged) {
		msg = g_strdup_printf("%" PRIu64 " row(s) dropped during the fault: %" PRIu64
				      " because the spool was full (spool_rows %zu), %" PRIu64
				      " refused by the database; %" PRIu64 " inspection(s), %" PRIu64
				      " event(s), %" PRIu64 " trend reading(s)",
				      total, by_cause[DB_DROP_SPOOL_FULL], db->opt.spool_rows,
				      by_cause[DB_DROP_REFUSED], by_table[DB_TABLE_INSPECTIONS],
				      by_table[DB_TABLE_EVENTS], by_table[DB_TABLE_TREND]);
		db->drops_logged = db__write_event_now(db, vigil_wall_us(), "db-rows-dropped", msg);
		g_free(msg);
		if (!db->drops_logged)
			return;
	}
	msg = g_strdup_printf("the database accepts writes again; %" PRIu64 " row(s) written "
			      "from the spool, %" PRIu64 " dropped", db->fault_spooled - total,
			      total);
	if (!db__write_event_now(db, vigil_wall_us(), "db-ok", msg)) {
		g_free(msg);
		return;
	}
	g_message("database %s: writing works again: %s", db->path, msg);
	g_free(msg);
	db->faulted = false;
	atomic_store(&db->ok, 1);
}

#define RING_AGE_CHECK_US (60 * G_USEC_PER_SEC)
#define IDLE_TURN_US ((int64_t)DB_WRITER_IDLE_TURN_MS * 1000)

gpointer db__writer_main(gpointer data)
{
	db_log *db = data;
	void *item;
	int rc;

	if (db->recovered) {
		char *msg = g_strdup_printf("%s failed its integrity check; it was moved to %s "
					    "and this log started afresh", db->path, db->recovered);

		db__write_event(db, "db-recovered", msg);
		g_free(msg);
	}
	/* Block for the first row (or until retention or a retry is due),
	 * then take what else is already waiting, so that a burst costs one
	 * commit. The pop fails only once db_close has closed the queue and
	 * everything in it has been written. */
	for (;;) {
		int64_t wait = -1;
		size_t n = 0;
		bool retain_asked = false, sync_asked = false, check_asked = false;

		if (db__retention_on(db))
			wait = MAX(db->next_retention_us - vigil_now_us(), 0);
		if (db->faulted) {
			int64_t retry = MAX(db->next_retry_us - vigil_now_us(), 0);

			wait = wait < 0 ? retry : MIN(wait, retry);
		}
		/* A ring bounded by age ages while the line stands. */
		if (db->opt.recent_images_hours > 0)
			wait = wait < 0 ? RING_AGE_CHECK_US : MIN(wait, RING_AGE_CHECK_US);
		/* An idle writer still turns, so that its heartbeat tells a
		 * writer stuck in one call from one with nothing to do. */
		wait = wait < 0 ? IDLE_TURN_US : MIN(wait, IDLE_TURN_US);
		atomic_store(&db->writer_beat_us, vigil_now_us());
		rc = bqueue_pop(db->queue, &item, wait);
		if (rc == -EPIPE)
			break;
		if (rc == 0) {
			db->batch[n++] = item;
			while (n < DB_BATCH_MAX && bqueue_pop(db->queue, &item, 0) == 0)
				db->batch[n++] = item;
			for (size_t i = 0; i < n; i++) {
				retain_asked |= db->batch[i]->kind == DB_ITEM_RETAIN;
				sync_asked |= db->batch[i]->kind == DB_ITEM_SYNC;
				check_asked |= db->batch[i]->kind == DB_ITEM_CHECK_PATH;
			}
			write_items(db, db->batch, n);
		}
		for (size_t i = 0; i < n; i++) {
			db__item_free(db->batch[i]);
			db->batch[i] = NULL;
		}
		if (db->faulted && vigil_now_us() >= db->next_retry_us)
			retry_spool(db);
		/* Between batches, never in one: a file that is left is left
		 * with every transaction committed. */
		db__follow_path(db, check_asked);
		db__clock_check(db);
		db__ring_trim(db);
		db__log_media_drops(db);
		if (retain_asked || (db__retention_on(db) && vigil_now_us() >= db->next_retention_us)) {
			/* A backlog goes in slices, a second apart, rows between. */
			db->next_retention_us = vigil_now_us() +
				(db__retain(db) ? G_USEC_PER_SEC
						: (int64_t)db->opt.retention_period_s * G_USEC_PER_SEC);
			/* Retention may have taken ring files with their rows or
			 * for the disk budget: the totals from the rows again. */
			db__ring_load(db);
		}
		if (retain_asked || sync_asked || check_asked) {
			g_mutex_lock(&db->sync_lock);
			db->syncs++;
			g_cond_broadcast(&db->sync_cond);
			g_mutex_unlock(&db->sync_lock);
		}
	}
	/* Closing: one last try; what the disk still refuses is lost. */
	if (db->faulted)
		retry_spool(db);
	if (!g_queue_is_empty(&db->spool))
		g_warning("database %s: closing with writes still failing: %u row(s) waiting in "
			  "the spool are lost", db->path, g_queue_get_length(&db->spool));
	g_hash_table_remove_all(db->spooled);
	while (!g_queue_is_empty(&db->spool)) {
		struct db_item *it = g_queue_pop_head(&db->spool);

		drop_item(db, it, DB_DROP_CLOSED);
		db__item_free(it);
	}
	atomic_store(&db->spool_depth, 0);
	return NULL;
}
