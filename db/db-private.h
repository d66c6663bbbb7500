/* Private to db/: the log's state and the helpers its files share.
 *   db.c         open/close, submitting, the counters, shared helpers
 *   db-schema.c  migrations (user_version), WAL, the integrity check at open
 *   db-insert.c  the writer's prepared statements and binding items to them
 *   db-writer.c  the writer thread: batches, the spool while writes fail
 *   db-media.c   the media thread and the file formats it writes
 *   db-retain.c  retention, run by the writer
 *   db-ring.c    the recent ring's totals and trimming, run by the writer
 *   db-follow.c  the file deleted or moved under the writer: found, recovered
 *   db-read.c    readers, each on a connection of its own */
#ifndef VIGIL_DB_DB_PRIVATE_H
#define VIGIL_DB_DB_PRIVATE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <glib.h>
#include <sqlite3.h>

#include "core/bqueue.h"
#include "db/db.h"

/* How long a connection retries a lock held by another process (the sqlite3
 * CLI, a backup, vigil-sim reading) before giving up with SQLITE_BUSY. */
#define DB_BUSY_TIMEOUT_MS 5000
/* At open, how long vigild waits for such a lock before refusing to start
 * (below systemd's default start timeout of 90 s); it says so after
 * DB_OPEN_WAIT_NOTICE_MS. */
#define DB_OPEN_WAIT_MS 60000
#define DB_OPEN_WAIT_NOTICE_MS 1000

/* Rows written per transaction at most. One commit per burst instead of one
 * per row is what keeps the writer ahead of the line; 256 rows of about
 * 200 bytes keeps a transaction short enough that readers see rows promptly. */
#define DB_BATCH_MAX 256

/* The writer connection's page cache, in KiB (PRAGMA cache_size = -N):
 * SQLite's usual default, now a bound of ours. The writer mostly appends:
 * the pages it needs again are the right edges of the tables and of the
 * time index, and the part_id index while part ids rise. */
#define DB_WRITER_CACHE_KIB 2000

enum db_item_kind {
	DB_ITEM_INSPECTION,
	DB_ITEM_EVENT,
	DB_ITEM_MEDIA,      /* files written: their media rows */
	DB_ITEM_LATENCY,    /* latency_ms of an earlier row, by ticket */
	DB_ITEM_RETAIN,     /* run retention now (db_retain_now) */
	DB_ITEM_SYNC,       /* wake whoever waits for everything before it */
	DB_ITEM_TREND,      /* a vibration transmitter reading (db_trend) */
	DB_ITEM_LATE,       /* the model's late judgement of a row, by ticket */
	DB_ITEM_CHECK_PATH, /* look at the file at the path now (db_check_path) */
};

/* A file the media thread wrote, relative to the media directory. */
struct media_file {
	char *camera;       /* NULL but for images */
	const char *kind;   /* static: "image", "heatmap", "anomaly", "vibration" */
	char *path;
	int64_t bytes;
	char *staged;       /* media thread: the absolute temporary name, until
			     * the file is renamed into place */
};

/* What write_batch did with an item. */
enum db_item_outcome {
	DB_ITEM_UNTRIED,
	DB_ITEM_WRITTEN,    /* committed, or nothing to write */
	DB_ITEM_REFUSED,    /* the database refused the row itself */
	DB_ITEM_PENDING,    /* a fault of the file or disk: to be tried again */
};

/* One queued row. Owns its strings (g_strdup, freed by item_free): the
 * submitter's buffers may be gone by the time the writer gets to it. */
struct db_item {
	enum db_item_kind kind;
	union {
		struct db_inspection row;   /* strings point at the copies below */
		struct {
			int64_t t_wall_us;
		} event;
		struct {
			int64_t inspection_id;
			int64_t t_wall_us;  /* the part's, for the ring's age */
			int nfiles;
			/* the images, the defect map, the anomaly map
			 * and the vibration window */
			struct media_file files[DB_MEDIA_MAX_IMAGES + 3];
		} media;
		struct {
			uint64_t ticket;
			double ms;
		} latency;
		struct db_trend trend;      /* source points at str1 */
	};
	char *str1, *str2;  /* model_version, image_path; or kind, message; or source */
	char *str3;         /* an inspection's station */
	struct db_media_set *media_set;  /* an inspection's files, to be written */
	bool recent;                     /* inspections: its files go to the ring
					  * only; media: ring files */
	uint64_t ticket;                 /* inspections: the place in write order */
	uint64_t late_ticket;            /* DB_ITEM_LATE: the row it completes */
	uint64_t generation;             /* media: db_log.generation of its row */
	int64_t t_queued_us;
	/* Set by the writer while the item's transaction is open. */
	int64_t rowid;
	bool in_transaction;
	enum db_item_outcome outcome;    /* of the last write_batch */
};

/* The files of one committed inspection, for the media thread. */
struct media_job {
	int64_t inspection_id;
	int64_t t_wall_us;
	uint32_t part_id;
	bool recent;        /* into the ring (media/recent/) */
	uint64_t generation; /* db_log.generation when its row was written */
	struct db_media_set *set;
};

/* Tickets of recent rows and their row ids, so that a latency that comes
 * after the row finds it. A ticket older than the ring is forgotten: its
 * row keeps latency NULL. */
#define DB_TICKET_RING 16384

/* The writer's prepared statements, all on db_log.conn. */
struct db_statements {
	sqlite3_stmt *insert_inspection;
	sqlite3_stmt *insert_vibration;
	sqlite3_stmt *insert_event;
	sqlite3_stmt *insert_trend;
	sqlite3_stmt *insert_media;
	sqlite3_stmt *set_image_path;
	sqlite3_stmt *set_latency;
	sqlite3_stmt *set_late;
};

#define HOUR_US (INT64_C(3600) * G_USEC_PER_SEC)
#define DAY_US (24 * HOUR_US)

/* A mark of the boot-time clock against the id the next row of each table
 * retention ages will get (db-clock.c). */
struct db_clock_mark {
	int64_t boot_us;
	int64_t next_id[DB_NTABLES];
};

/* A file as the kernel knows it, whatever its name now. */
struct db_file_id {
	dev_t dev;
	ino_t ino;          /* 0: none */
};

struct db_log {
	char *path;
	char *media_dir;                /* absolute */
	char *station;                  /* opt.station or the host name */
	char *shifts;                   /* opt.shifts, copied: the open sequence
					 * records it again in a new file */
	bool media_given;               /* opt.media_dir was given to db_open_with */
	struct db_options opt;
	/* Used by db_open, then only by the writer thread until db_close has
	 * joined it. */
	sqlite3 *conn;
	struct db_statements st;
	/* The file conn writes (db-follow.c): an O_PATH descriptor of it,
	 * which tells a file deleted (no link left) from one renamed and
	 * finds its new name, and takes no part in SQLite's POSIX locks (the
	 * kernel drops a process's locks when any other descriptor of the
	 * file closes, but not for O_PATH); -1 when it could not be opened.
	 * And the -wal and -shm it was opened with: a new file at the path
	 * must never be paired with those. */
	int file_fd;
	struct db_file_id wal_id, shm_id;
	bqueue *queue;                  /* struct db_item *, owned by the queue's reader */
	GThread *writer;
	struct db_item *batch[DB_BATCH_MAX];
	struct {
		uint64_t ticket;
		int64_t rowid;
	} tickets[DB_TICKET_RING];
	int64_t next_retention_us;
	int retain_chunks;              /* transactions left in this retention slice */
	uint64_t media_drops_logged;
	int64_t next_drop_event_us;
	/* Which file the rows go to: one more each time the writer starts a
	 * fresh file at the path (db-follow.c), so that the files of a part
	 * logged in the file before never get a media row in the new one,
	 * where its row id means another part. Writer only; a media job and
	 * its item carry the value of their row. */
	uint64_t generation;
	/* Media jobs handed to the media thread (writer only) and finished by
	 * it, their rows queued to the writer or dropped (media thread). */
	uint64_t media_handed;
	_Atomic uint64_t media_done;
	/* The file deleted or moved under the writer (db-follow.c), writer
	 * only: when to look next, the episode (since when, the grace for
	 * media of rows already in the moved file, the next try, the
	 * warnings held back). */
	int64_t next_path_check_us;
	bool astray, moved_told;
	char *rescued_to;               /* a deleted file's copy beside the path,
					 * another file having taken the path */
	int64_t astray_since_us, follow_grace_end_us, next_follow_try_us;
	int64_t next_follow_warning_us;
	uint64_t follow_warnings_held;
	_Atomic uint64_t file_moves;    /* db_stats.file_moves */
	_Atomic int file_away;          /* db_stats.file_away */
	/* The wall clock's steps (db-clock.c), writer only but clock_steps:
	 * marks oldest first, the wall clock less the boot clock at the last
	 * turn. */
	GArray *clock_marks;            /* struct db_clock_mark */
	int64_t clock_skew_us;
	bool clock_skew_known;
	_Atomic uint64_t clock_steps;   /* db_stats.clock_steps */
	int64_t open_wait_since_us;     /* open_busy's episode: opening thread only */
	bool open_wait_told;
	int64_t next_media_warning_us;  /* media_warning's period: media thread only */
	uint64_t media_warnings_held;
	char *recovered;                /* where a corrupt file was moved, for the event */

	int media_lock_fd;              /* the media directory, flock'ed: -1 when
					 * another log holds it */
	bqueue *media_queue;            /* struct media_job * */
	GThread *media_writer;

	GMutex submit_lock;             /* ticket order is queue order */
	uint64_t next_ticket;           /* under submit_lock */
	uint64_t accepted_seen;         /* under submit_lock */

	GMutex sync_lock;
	GCond sync_cond;
	uint64_t syncs;                 /* RETAIN and SYNC items done, under sync_lock */

	_Atomic uint64_t rows_written;
	_Atomic uint64_t rows_failed;
	_Atomic uint64_t settled;
	_Atomic int ok;
	_Atomic uint64_t media_dropped, media_written;
	_Atomic int64_t lag_us, lag_max_us;
	_Atomic int64_t writer_beat_us; /* db_writer_heartbeat_us */

	/* The recent ring: totals the writer keeps (set at open from the
	 * rows, moved by each ring media row written or removed), read by
	 * db_get_stats. ring_squeeze: set by any thread that met a full disk,
	 * cleared by the writer once it has let the ring give way. */
	_Atomic int64_t ring_files, ring_bytes, ring_oldest_us;
	_Atomic uint64_t ring_dropped, ring_removed;
	_Atomic int ring_squeeze;
	_Atomic int ring_paused;        /* the disk short even with the ring empty */
	/* Writer only: when to say again that the ring gave way; ring rows
	 * whose files are gone but whose delete failed (the disk full),
	 * oldest first, to be deleted once writes work - every ring row up to
	 * ring_orphan_max is one, and counts no more in the totals. */
	int64_t ring_next_note_us;
	GArray *ring_orphans;           /* int64_t media ids */
	int64_t ring_orphan_max;
	bool fault_full;                /* the fault's first failure: full or I/O */

	/* Writer only, while writes fail: the items waiting (struct db_item *,
	 * oldest first, at most opt.spool_rows), the inspections among them by
	 * ticket (for their latency), when to try again, and what the events
	 * written once writing works need: since when, why, the drops then,
	 * the rows spooled, and which of those events are written. */
	bool faulted;
	GQueue spool;
	GHashTable *spooled;            /* &item->ticket -> item */
	int64_t next_retry_us;
	int64_t fault_since_us;
	char *fault_error;
	uint64_t fault_dropped_before[DB_NTABLES][DB_NDROP_CAUSES];
	uint64_t fault_spooled;
	bool fault_logged, drops_logged, spool_overflowed;

	_Atomic uint64_t dropped[DB_NTABLES][DB_NDROP_CAUSES];
	_Atomic size_t spool_depth;

	GMutex error_lock;
	char *last_error;               /* malloc, under error_lock */
};

/* The schema version this build writes. */
int db__schema_version(void);

/* db-schema.c, at open, before the writer starts. Brings db->conn's schema
 * to db__schema_version() and sets the connection up for the writer; a
 * database from a newer build is refused untouched. 0 or DB_ESQLITE with
 * *err set (malloc). */
int db__prepare_schema(db_log *db, char **err);
/* PRAGMA quick_check on path, on a connection of its own: 1 when it passes
 * or there is no file, 0 when it fails (*why: g_malloc'ed reason), -1 when
 * it cannot be judged (left to the open to report). */
int db__check_integrity(const char *path, char **why);
/* Moves path and its -wal and -shm aside, never deleting them; returns the
 * new name (g_malloc), or NULL with *err set (malloc). */
char *db__move_aside(const char *path, char **err);

/* db.c. The open sequence of the file at db->path, the one db_open_with
 * runs and the writer runs again on a new file when the old one was
 * deleted or moved (db-follow.c): with check, the integrity check that
 * moves a corrupt file aside (db->recovered); the connection (at_start:
 * waiting for another process's lock as open_busy says; else the usual
 * busy timeout), the schema and the connection's settings
 * (db__prepare_schema), the media folder and shift plan recorded for
 * readers, the writer's statements, the ring's totals, and the file's
 * identity (file_fd, wal_id, shm_id). Sets db->conn and db->st; on
 * failure leaves them NULL (nothing open) and returns DB_ESQLITE with
 * *err set (malloc). */
int db__open_file(db_log *db, bool at_start, bool check, char **err);

/* db-insert.c. The writer's statements on db->conn: prepared at open
 * before the writer starts (0, or DB_ESQLITE with the message on
 * db->conn), finalized (and set NULL) at close once it has been joined,
 * or when the writer leaves a file (also those never prepared). */
int db__prepare_statements(db_log *db);
void db__finalize_statements(struct db_statements *st);
/* Writer thread, inside its open transaction: writes one item. Returns the
 * SQLite code, SQLITE_DONE on success; *used is the statement to reset
 * (after the caller has read the error), or NULL. */
int db__insert_item(db_log *db, struct db_item *it, sqlite3_stmt **used);

/* The writer thread (db-writer.c); data is the log. */
gpointer db__writer_main(gpointer data);

/* A verdict the log stores (accept, reject, marginal); not NONE. */
bool db__verdict_valid(int v);

/* Sets *err (if err is not NULL) to a malloc'ed message: strings that leave
 * this module go through malloc so that callers free() them. */
void db__set_error(char **err, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
const char *db__sqlite_message(sqlite3 *conn, int rc);
int db__class_from_name(const char *name);
/* Runs a statement that yields one integer (a PRAGMA). */
int db__query_int(sqlite3 *conn, const char *sql, int64_t *value);
int db__bind_text_or_null(sqlite3_stmt *st, int i, const char *s);
char *db__default_media_dir(const char *db_path);
/* The media folder of the log at db_path given the one recorded in it
 * (NULL: none): the recorded one, except that a log copied or moved with
 * its folder uses FILE.media beside it. A log recording OTHER.media while
 * OTHER is another existing file was copied from it: *copied_from (when
 * not NULL) gets OTHER, and the folder is the one beside this file, even
 * missing, so that nothing reads or sweeps the original's files. Both
 * g_free'd by the caller; no I/O beyond stat. */
char *db__resolve_media_dir(const char *db_path, const char *recorded, char **copied_from);

/* Writer thread only. */
void db__item_free(struct db_item *it);
void db__write_event(db_log *db, const char *kind, const char *message);
/* Writes one event now in a transaction of its own, never spooled; true
 * when it committed. */
bool db__write_event_now(db_log *db, int64_t t_wall_us, const char *kind, const char *message);
/* A media item whose row is in a file the writer has left: its rows must
 * not go into the file the writer writes now. */
bool db__stale_media(const db_log *db, const struct db_item *it);

/* db-follow.c, writer thread. Looks at the file at the path once
 * DB_PATH_CHECK_MS has passed since the last look (now: at once), and
 * when the file the writer writes is not the one there any more, writes
 * it back there (deleted) or starts a fresh one there (moved), as db.h
 * says under db_check_path; a recovery that fails is tried again. */
void db__follow_path(db_log *db, bool now);

/* db-clock.c, writer thread (db__clock_restart also at open, before it
 * starts). Restart: a file whose rows this run did not write (at open, a
 * fresh file at the path). Check, each turn: a step of the wall clock is
 * told, and a mark taken once an hour. Keep_from: the lowest id of table
 * t this run wrote less than age_us ago by the boot clock (a mark period
 * more at most); rows from it on are not old, whatever their stamp says.
 * INT64_MAX before the first mark. */
void db__clock_restart(db_log *db);
void db__clock_check(db_log *db);
int64_t db__clock_keep_from(const db_log *db, enum db_table t, int64_t age_us);
/* At db_close, the writer joined, before the connection closes: a last
 * try; then a deleted file that could not be written back is copied
 * where it can be (the temporary folder), and a moved one is made whole
 * (its WAL checkpointed into it), each with a warning. */
void db__follow_close(db_log *db);
/* Hands a committed inspection's files to the media thread, or drops them. */
void db__hand_media(db_log *db, struct db_item *it);
/* One slice of retention; true when there is more to do right away. */
bool db__retain(db_log *db);
bool db__retention_on(const db_log *db);
/* The ring's folder below the media directory; its day folders are named
 * as the long-term ones. */
#define DB_RING_FOLDER "recent"

/* db-ring.c. At open, before the writer starts: the ring's totals from
 * its rows (through the partial index media_recent). 0 or DB_ESQLITE. */
int db__ring_load(db_log *db);
/* Writer thread, between batches: removes the oldest ring files (files
 * first, then their rows) while the ring is over its bounds, or half of
 * it after a full disk (ring_squeeze), and while its file system has less
 * than 5 % free (one statvfs). Cheap when there is nothing to do. */
void db__ring_trim(db_log *db);
/* Writer thread: ring files of a media item now committed. */
void db__ring_added(db_log *db, const struct db_item *it);
bool db__ring_on(const db_log *db);

/* Logs dropped files as an event, at most once per period. */
void db__log_media_drops(db_log *db);

/* At open, before the media thread starts: takes the media directory's
 * lock and, when no other log holds it, removes what a crash left behind
 * in the day folders written last (temporary files, files without a row). */
void db__sweep_media(db_log *db);

/* Writer thread: removes the files of a media item whose rows failed. */
void db__remove_media_files(db_log *db, const struct db_item *it);

/* The media thread; data is the log. */
gpointer db__media_main(gpointer data);

#endif
