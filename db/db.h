/* The inspection log: one SQLite file (WAL), written by one writer thread
 * in batched transactions so that a slow disk never delays inspection.
 *
 * Strings handed to the caller (err messages, db_last_error) are allocated
 * with malloc() and freed by the caller with free(). */
#ifndef VIGIL_DB_DB_H
#define VIGIL_DB_DB_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "core/config.h"
#include "core/part.h"

/* Project error codes, below -DB_ENOBASE; others are negative errno. */
#define DB_ENOBASE 30000
#define DB_ESQLITE (-(DB_ENOBASE + 1))  /* SQLite error; see *err or db_last_error */
#define DB_ECLOSED (-(DB_ENOBASE + 2))

/* One inspection row. Strings are copied on submit. A NaN score is stored
 * as NULL and read back as NaN. */
struct db_inspection {
	uint32_t part_id;
	uint32_t trigger_counter;
	uint64_t seq;
	int64_t t_wall_us;        /* wall clock at the trigger */
	int verdict;              /* enum vigil_verdict, accept/reject/marginal */
	int defect_class;         /* enum vigil_defect_class */
	uint32_t flags;           /* enum vigil_part_flags */
	double score, vision_score, signal_score;
	double latency_ms;        /* trigger to PLC write */
	double infer_ms;
	const char *model_version; /* may be NULL */
	const char *image_path;   /* may be NULL */
	/* The job in force when the part was triggered (0: the [model]
	 * package; -1: not known yet, as for a fail-safe row written at the
	 * deadline, stored NULL) and the station that inspected it (NULL: the
	 * log's own, db_options.station). Both for tracing escapes: a central
	 * log mixes stations. */
	int job;
	const char *station;
	/* Read side only: the row id and the latest QA review, if any. */
	int64_t id;
	const char *review;       /* "confirm" or "overrule", NULL if not reviewed */
	int review_verdict;       /* the verdict QA says is right */
	const char *review_note;
	const char *review_defect_type; /* QA's defect type, NULL if none */
	const char *review_mask;  /* the painted mask, relative to the media
				   * directory; NULL if none */
	/* The model's own verdict and fused score (model_verdict 0: no model
	 * judged the part). They differ from verdict and score when a fault
	 * or the deadline forced a fail-safe reject. */
	int model_verdict;
	double model_score;
	int has_vibration;        /* vibration holds the part's condition figures */
	struct vigil_vibration vibration; /* a row of table vibration */
};

typedef struct db_log db_log;

/* How the log is kept. Start from DB_OPTIONS_DEFAULT; zero fields mean the
 * default noted. */
struct db_options {
	size_t queue_depth;           /* rows waiting to be written (4096) */
	const char *media_dir;        /* NULL: the one the log records, else
				       * "<db path>.media" beside the file */
	size_t media_queue;           /* parts whose files wait to be written (64) */
	int keep_accepted_every;      /* media of one accepted part in N; 0: none */
	/* Retention: rows older than max_age_days go (0: kept for ever), but
	 * never those of the last protect_days; media files go first, oldest
	 * first, while media + database exceed disk_budget_mb (0: no budget). */
	int max_age_days, protect_days;
	int64_t disk_budget_mb;
	int retention_period_s;       /* how often the writer checks (600) */
	/* While writes fail (disk full, I/O error, the file locked) rows wait
	 * in memory, at most this many (4096), and are written once a write
	 * works again; see db_ok. */
	size_t spool_rows;
	/* Test only: PRAGMA max_page_count on the writer's connection, to
	 * simulate a full disk (0: no limit); and a pause before each commit,
	 * to simulate a slow disk. */
	int64_t max_pages;
	int commit_delay_ms;
	/* The plant's shift plan (core/shift.h), recorded in the log for
	 * readers (vigilctl, the review page, trends); NULL leaves the record
	 * as it is. */
	const char *shifts;
	/* The recent ring: the files of every part that the sampling above
	 * does not keep (images, defect map, vibration window: enough for
	 * the review page and vigilctl export) go to <media_dir>/recent/,
	 * and the oldest of them are removed once they take more than
	 * recent_images_mb (0: no ring) or, with recent_images_hours > 0,
	 * are older than that (0: the ring
	 * is off, and what an earlier run left in it is removed). Only ring
	 * files are ever removed for the ring's bounds; between a part's row
	 * and the trim right after it the ring may be over by that part. */
	int64_t recent_images_mb;
	int recent_images_hours;
	/* The station name stored with each row that names none; NULL: the
	 * host name. */
	const char *station;
};
#define DB_OPTIONS_DEFAULT { .queue_depth = 4096, .media_queue = 64, \
			     .retention_period_s = 600, .spool_rows = 4096 }

/* The [database] section as db_options_read reads it (db-config.c): the
 * settings own their strings, which opt points to. */
struct db_settings {
	struct db_options opt;
	char *path;                   /* path, required */
	char *media_dir;              /* media_dir ("<path>.media") */
	char *shifts;                 /* shifts (SHIFT_PLAN_DEFAULT) */
	char *station;                /* station (the host name) */
	int commit_timeout_ms;        /* a result waits this long for its row (100) */
};
/* Reads [database] of cfg into *s, which it overwrites: 0, or -EINVAL with
 * *err (g_free it) naming the file, line and key. *s owns what it holds
 * even on failure: free it with db_settings_clear (NULL ok). */
int db_options_read(const config *cfg, struct db_settings *s, char **err);
void db_settings_clear(struct db_settings *s);

/* Files kept with one inspection, handed to db_submit_media. The buffers
 * are malloc'ed (g_malloc) and owned by the set; NULL pointers are absent
 * files. */
#define DB_MEDIA_MAX_IMAGES 8
struct db_media_set {
	int nimages;
	struct {
		char *camera;         /* camera name, part of the file name */
		uint8_t *gray;        /* 8-bit gray, width * height, no padding */
		int width, height;
	} images[DB_MEDIA_MAX_IMAGES];
	/* The maps over the frame of images[] they belong to: the defect map,
	 * and the good-only model's anomaly map (a fused package's second
	 * map, a good-only package's only one), values in [0, 1],
	 * heatmap_w * heatmap_h each; either may be NULL. */
	float *heatmap;
	int heatmap_w, heatmap_h;
	float *anomaly_map;
	float *vibration;             /* the part's window, in g */
	size_t vibration_len;
	double rate_hz;
};
/* Frees the set and everything it owns. NULL ok. */
void db_media_set_free(struct db_media_set *m);

/* Opens (creating if needed) the database at path, applies the schema
 * (PRAGMA user_version), switches to WAL and starts the writer thread.
 * A database whose schema is newer than this build knows is refused and
 * left untouched. queue_depth bounds the rows waiting to be written. On
 * failure returns NULL and sets *err (if err is not NULL) to a message that
 * names the path, which the caller frees with free(). */
db_log *db_open(const char *path, size_t queue_depth, char **err);

/* db_open with every setting. Before anything else, a database that fails
 * PRAGMA quick_check is moved aside to "<path>.corrupt-<time>" (with its
 * -wal and -shm; never deleted), a warning names both files, a fresh log
 * is started and its first event ("db-recovered") says so. A file that is
 * not SQLite at all is refused as by db_open. The log that opens the media
 * directory first holds it (flock) until db_close; that log removes what a
 * crash left in the two day folders changed last: temporary files and
 * files no media row names. */
db_log *db_open_with(const char *path, const struct db_options *opt, char **err);

/* Queues a copy of row for writing. Blocks only while the queue is full.
 * Safe to call from several threads. Returns 0, -EINVAL (NULL argument, or a
 * verdict or defect class that enum vigil_verdict / vigil_defect_class does
 * not name; VIGIL_VERDICT_NONE is refused), or DB_ECLOSED. */
int db_submit(db_log *db, const struct db_inspection *row);

/* db_submit with the part's files: media (may be NULL) is taken over, even
 * on error. Reject and marginal parts keep their files, accepted parts one in
 * keep_accepted_every; with the recent ring on, the other accepted parts
 * keep their files in the ring (only while the media queue is less than
 * half full, so that the ring never crowds out a reject's files). The
 * files are written by a thread of their own,
 * flushed to the disk (syncfs, once per batch of parts), renamed into place
 * and their folder fsync'ed before the media rows naming them are queued
 * (after the inspection row has committed); a media row that fails takes
 * its files with it. When
 * its queue is full they are dropped, counted (db_media_dropped) and an
 * event "media-dropped" says so: never does this wait for a disk.
 * Waits up to timeout_us for room in the row queue (< 0: for ever), then
 * returns -EAGAIN; with timeout_us 0 it never waits, not even for another
 * submitter.
 * On success *ticket (if not NULL) is the row's place in the write order:
 * once db_settled(db) >= *ticket the row has been committed, refused, or
 * put in the spool to wait for the disk (then db_ok(db) is false). */
int db_submit_media(db_log *db, const struct db_inspection *row, struct db_media_set *media,
		    int64_t timeout_us, uint64_t *ticket);

/* The highest ticket the writer has dealt with (committed, refused or
 * spooled).
 * Tickets grow in the order rows were queued. */
uint64_t db_settled(db_log *db);

/* Sets latency_ms of the row queued with ticket, known only once the PLC
 * has the result; written in order with the rows. Does not block: returns
 * -EAGAIN with the queue full (the row keeps latency NULL). */
int db_set_latency(db_log *db, uint64_t ticket, double latency_ms);

/* Completes the row queued with ticket once more is known of its part:
 * the model's judgement that came after the part's fail-safe row was
 * written at the deadline, or that its result never reached the PLC.
 * row's flags are added to the row's; its verdict and score (what the PLC
 * got, or its rule for a missing result: a reject) replace the row's;
 * its model verdict and score, per-modality scores, model version,
 * infer_ms, condition figures and files (media, taken over even on error)
 * are stored beside them. Should that row have failed, row is written in
 * its place. Waits for room in the queue. 0, or -EINVAL / DB_ECLOSED. */
int db_set_late(db_log *db, uint64_t ticket, const struct db_inspection *row,
		struct db_media_set *media);

/* False from a write that fails for the file or the disk (full, I/O
 * error, locked) until the rows it left waiting are written. Meanwhile
 * every row goes to the spool (at most spool_rows, in memory; an
 * inspection's files are dropped) and counts as settled at once; the
 * writer tries again every DB_RETRY_MS by itself. Once the spool is
 * written, events "db-fault" (stamped with the time writes began to fail,
 * and the error), "db-rows-dropped" (only if rows were dropped meanwhile,
 * with the counts by cause) and "db-ok" record the fault. */
#define DB_RETRY_MS 500
int db_ok(db_log *db);

/* Rows given up for good, counted by table and cause. */
enum db_table { DB_TABLE_INSPECTIONS, DB_TABLE_EVENTS, DB_TABLE_TREND, DB_NTABLES };
enum db_drop_cause {
	DB_DROP_SPOOL_FULL,   /* writes failed longer than the spool could hold */
	DB_DROP_REFUSED,      /* the database refused the row itself (a constraint,
			       * a trigger): writing it again would not help */
	DB_DROP_CLOSED,       /* still in the spool at db_close, writes still failing */
	DB_NDROP_CAUSES
};
/* Static names, as /metrics labels them: "inspections"; "spool_full". */
const char *db_table_name(enum db_table table);
const char *db_drop_cause_name(enum db_drop_cause cause);
/* Runs retention now, on the writer thread, and waits for it (for tests and
 * vigilctl). Returns 0 or a negative code. */
int db_retain_now(db_log *db);

/* The file at the log's path, looked at by the writer about once every
 * DB_PATH_CHECK_MS (one stat), is the file it writes, or the log follows
 * the path so that no row is lost without a word:
 *   - deleted (the open file has no name left, e.g. rm vigil.db*): the
 *     whole open database is copied (SQLite's backup API) under a
 *     temporary name beside the path, renamed to the path, and the writer
 *     goes on in it: every row before and after is in the file at the
 *     path. Should another file have taken the path meanwhile, the copy
 *     keeps its temporary name, and the writer goes on in the file at the
 *     path as below;
 *   - moved (renamed, e.g. by log rotation): the rows so far stay in the
 *     moved file, which gets a last event "db-moved" saying where the log
 *     goes on and its WAL checkpointed into it (it keeps its old name, and
 *     SQLite does not checkpoint a moved file when it closes it); a fresh
 *     log is started at the path, as db_open_with opens one. The files of
 *     parts logged in the moved file that come in the next 2 s still get
 *     their rows there; any later ones are removed (media-dropped).
 * Either way its -wal and -shm, which keep the old names, are removed
 * first, so that the new file is never paired with them; then a warning
 * and an event ("db-deleted", "db-moved") in the file at the path, and
 * db_stats.file_moves counts it. A recovery that fails (no folder, a full
 * disk, a moved file whose WAL another reader still holds) is tried again
 * every 5 s, with a warning at most once a minute, rows going on into
 * the open file meanwhile (db_stats.file_away); at db_close a deleted file
 * that could still not be written back is copied to the temporary folder
 * (g_get_tmp_dir), with a warning naming the copy.
 * db_check_path looks now, on the writer thread, and waits for it (for
 * tests). 0 or a negative code. */
#define DB_PATH_CHECK_MS 1000
int db_check_path(db_log *db);

/* Queues an entry for the events table (e.g. kind "start", "plc-fault"),
 * stamped with the wall clock now and written in order with the rows.
 * kind and message are copied. Returns 0, -EINVAL or DB_ECLOSED. */
int db_event(db_log *db, const char *kind, const char *message);

/* One reading of a Modbus vibration transmitter for the trend table: a
 * periodic trend point (part_id -1) or the reading attached to a part.
 * A NaN value was not read; stale: the transmitter had stopped answering
 * and this is its last reading. source is copied. Returns as db_event. */
struct db_trend {
	const char *source;
	int64_t t_wall_us;        /* wall clock of the reading */
	int64_t part_id;          /* -1: not attached to a part */
	double velocity_mm_s, accel_g, temperature_c;
	int stale;
};
int db_trend(db_log *db, const struct db_trend *row);

/* Writes everything queued, stops the writer and closes the file. NULL ok.
 * No db_submit or db_event may run during or after it. */
void db_close(db_log *db);

/* Everything the log counts, in one call: for /metrics, status, benchmarks
 * and tests. (db_settled and db_ok stay single calls: a result waiting for
 * its row asks them every poll.)
 *
 * Any thread, at any time between db_open and db_close; db NULL fills *out
 * with zeros (ok 0). Each field is read atomically on its own while the
 * writer goes on, so *out is a snapshot good for counters, not one instant.
 * What does hold: settled is read first, and the writer moves it last, so
 * ok and the row counts already include how the rows up to settled went (a
 * submitter whose ticket <= settled finds its row counted). What does not:
 * while rows are being dropped, rows_failed may differ from the sum of
 * rows_dropped by those few; spool_depth and write_lag_ms may belong to a
 * later batch than the counts; the media counts follow the media thread,
 * which writes a part's files after its row has settled. Once the writer
 * and the media thread are idle, all agree. */
struct db_stats {
	uint64_t settled;         /* the highest ticket dealt with (db_submit_media) */
	int ok;                   /* 0 while writes fail, until the spool is written */
	/* Rows of tables inspections, events and trend (not vibration or media
	 * rows): committed, and given up for good (the sum of rows_dropped,
	 * each logged with g_warning). A row counts as written once its
	 * transaction has committed, so rows_written is what the file holds,
	 * less what retention removed. */
	uint64_t rows_written, rows_failed;
	uint64_t rows_dropped[DB_NTABLES][DB_NDROP_CAUSES];
	size_t spool_depth;       /* items waiting in the spool now */
	/* Parts whose files were dropped (queue full or write failed), and files
	 * written. */
	uint64_t media_dropped, media_written;
	/* The recent ring (writer thread's running totals, never a scan of
	 * the folder): its files and bytes, the wall clock of its oldest
	 * part (0: empty); parts whose ring files were not kept (the media
	 * queue half full, a write failed, the database in fault), and ring
	 * files removed for the ring's bounds or to make room on a full disk. */
	uint64_t ring_files, ring_bytes;
	int64_t ring_oldest_us;
	uint64_t ring_dropped, ring_removed;
	size_t queue_high_water;  /* the deepest the row queue has been */
	/* From queueing to commit, of the oldest row of the last batch
	 * written, and the most seen. */
	double write_lag_ms, write_lag_max_ms;
	/* Times the log followed its path (its file deleted or moved,
	 * db_check_path), and 1 while the file it writes is not the one at
	 * the path and recovery has not worked yet. */
	uint64_t file_moves;
	int file_away;
	/* Steps of the wall clock seen (more than 2 s against the boot
	 * clock between two turns of the writer; event clock-stepped). */
	uint64_t clock_steps;
};
void db_get_stats(db_log *db, struct db_stats *out);

/* Monotonic time (vigil_now_us) of the writer thread's last turn of its
 * loop, for a watchdog: it turns at least every DB_WRITER_IDLE_TURN_MS
 * while idle, and after each batch written. Any thread; 0 for NULL. */
#define DB_WRITER_IDLE_TURN_MS 500
int64_t db_writer_heartbeat_us(db_log *db);

/* The writer's most recent SQLite error, or NULL if none yet. The caller
 * frees the returned string with free(). */
char *db_last_error(db_log *db);

/* A static description of a code returned by this module. */
const char *db_strerror(int code);

/* Read side, on its own read-only connection, for tools and tests. */
struct db_row_cb {
	/* Called per inspection in the order written (row id); return non-zero
	 * to stop. The row's strings are valid only during the call. */
	int (*fn)(const struct db_inspection *row, void *data);
	void *data;
};
/* Return 0 (also when the callback stopped early) or a negative code with
 * *err set as for db_open. */
int db_read_inspections(const char *path, const struct db_row_cb *cb, char **err);
/* Returns the number of inspections, or a negative code with *err set. */
int64_t db_count_inspections(const char *path, char **err);

/* What a QA engineer filters on. Zero / NULL / NaN fields do not filter:
 * start from DB_FILTER_ALL. Values are bound as SQL parameters, never
 * pasted into the statement. */
struct db_filter {
	int64_t since_us, until_us;   /* wall clock, [since, until) */
	const char *verdict;          /* accept, reject, marginal */
	const char *defect_class;     /* none, surface, vibration, surface+vibration */
	double min_score, max_score;  /* fused score range, inclusive */
	int64_t part_id;              /* -1: any */
	int reviewed;                 /* -1 any, 0 not reviewed, 1 reviewed */
	int64_t limit;                /* 0: no limit; newest first when set */
	/* A shift occurrence by its label ("2026-12-06 night", or "current" /
	 * "previous") under the shift plan the log records (db_shifts): its
	 * [start, end), within since/until if those are set too. A shift's
	 * name alone ("night") is its local hours on every day. */
	const char *shift;
	int64_t job;                  /* -1: any */
	const char *model_version;
	const char *station;
};
#define DB_FILTER_ALL { 0, 0, NULL, NULL, NAN, NAN, -1, -1, 0, NULL, -1, NULL, NULL }

/* The filters as a person types them: vigilctl's options and the review
 * API's query parameters are read by these one rules (db-filter.c), so
 * that the two take the same values and refuse the same ones. The shift
 * is not among them: its labels are the log's plan's (db_query). */
enum db_filter_field {
	DB_FILTER_SINCE, DB_FILTER_UNTIL, DB_FILTER_VERDICT, DB_FILTER_CLASS,
	DB_FILTER_MIN_SCORE, DB_FILTER_MAX_SCORE, DB_FILTER_PART, DB_FILTER_REVIEWED,
	DB_FILTER_LIMIT, DB_FILTER_JOB, DB_FILTER_MODEL, DB_FILTER_STATION,
	DB_FILTER_FIELDS
};
/* The most rows a limit asks for. */
#define DB_FILTER_MAX_LIMIT 10000
/* Sets field of f from text: 0, or -EINVAL with f unchanged. Text is never
 * "no filter": an empty or malformed value, a limit of 0 or a score of
 * nan is refused. Strings (verdict, class, model, station) point into
 * text. A time without a zone is local (TZ). */
int db_filter_set(struct db_filter *f, enum db_filter_field field, const char *text);
/* What a value of field must be, worded to follow "NAME is " in a refusal:
 * "accept, reject or marginal". Static. */
const char *db_filter_rule(enum db_filter_field field);
/* A pair of bounds no part can meet (a time range that ends before it
 * starts, a score range upside down), which would answer "no parts" to a
 * mistyped filter: DB_FILTER_SINCE (since not before until) or
 * DB_FILTER_MIN_SCORE (min above max), DB_FILTER_FIELDS when there is
 * none. */
enum db_filter_field db_filter_empty_range(const struct db_filter *f);

/* Like db_read_inspections, only the rows that pass the filter (oldest
 * first; with a limit, the newest `limit` rows, still oldest first).
 * -EINVAL with *err naming the field for a verdict or class that is not
 * one, or a shift label the plan has no occurrence for. */
int db_query(const char *path, const struct db_filter *f, const struct db_row_cb *cb,
	     char **err);

/* Counts of inspections in one time bucket [start_us, end_us) of wall
 * clock, for trends: by verdict and by defect class (enum
 * vigil_defect_class, the class the part was logged with). */
struct db_bucket_counts {
	int64_t start_us, end_us;
	int64_t parts, accepted, rejected, marginal;
	int64_t by_class[VIGIL_CLASS_BOTH + 1];
};
/* Counts the inspections of nbuckets consecutive buckets, bucket i being
 * [edges[i], edges[i + 1]) (edges has nbuckets + 1 entries, not
 * decreasing), into out[i] (the caller's array). SQLite counts each bucket
 * over the time index, in one read transaction: the cost is one pass over
 * the rows in range, the memory one struct per bucket. 0, -EINVAL, or a
 * negative code with *err set as for db_open. */
int db_count_buckets(const char *path, const int64_t *edges, size_t nbuckets,
		     struct db_bucket_counts *out, char **err);
/* How many rows pass the filter, its limit aside (the list's "200 of 260");
 * a negative code on error, like db_query. */
int64_t db_query_count(const char *path, const struct db_filter *f, char **err);
/* The distinct values of one filter column ("job", "model_version" or
 * "station") in the log, with their row counts, most recent first (by
 * their last row); NULL values are skipped. fn returns non-zero to stop;
 * value is valid only during the call (a job as its decimal text). 0, or
 * -EINVAL for another column, or a negative code with *err set. */
int db_facets(const char *path, const char *column,
	      int (*fn)(const char *value, int64_t rows, void *data), void *data, char **err);

/* The rows around inspection_id on its line: up to n inspections of the
 * same station written before it, the row itself, and up to n after, in
 * the order written. 0 (no rows for an id that is not there), or a
 * negative code with *err set. */
int db_neighbours(const char *path, int64_t inspection_id, int n, const struct db_row_cb *cb,
		  char **err);

/* An escape: a part the line passed (or judged) that was later found
 * defective downstream or by the customer. */
struct db_escape {
	int64_t id, inspection_id;
	uint32_t part_id;
	int64_t t_wall_us;            /* when it was reported */
	int64_t t_part_us;            /* when the part was inspected */
	const char *note, *reporter;  /* may be NULL */
};
/* Marks the latest inspection of part_id as an escape, on a connection of
 * its own as db_review. *id_out (if not NULL) is the escape's id. 0,
 * -ENOENT when no such part was inspected, or a negative code with *err. */
int db_mark_escape(const char *path, int64_t part_id, const char *note, const char *reporter,
		   int64_t *id_out, char **err);
/* db_mark_escape of one inspection of part_id by its row id, not the
 * latest: of a part id the line used twice, the one QA has open.
 * inspection_id < 0 is the latest; -ENOENT when it is not one of
 * part_id's. */
int db_mark_escape_at(const char *path, int64_t part_id, int64_t inspection_id,
		      const char *note, const char *reporter, int64_t *id_out, char **err);
/* Calls fn for each escape, newest report first; strings are valid only
 * during the call; fn returns non-zero to stop. 0 or a negative code with
 * *err set. */
int db_read_escapes(const char *path, int (*fn)(const struct db_escape *e, void *data),
		    void *data, char **err);

/* A QA review of the latest inspection of part_id: decision "confirm" (the
 * verdict stands) or "overrule" with the right verdict. Written on its own
 * connection (vigild may be writing at the same time). -ENOENT when no such
 * part was inspected; -EINVAL for an overrule to the verdict the line gave
 * (nothing to overrule: a confirm agrees). *err says which, without the
 * path: the review API shows it. */
int db_review(const char *path, int64_t part_id, const char *decision, int verdict,
	      const char *note, const char *reviewer, char **err);

/* One QA review as stored (table reviews). */
struct db_review_row {
	int64_t id, inspection_id;
	int64_t t_wall_us;            /* when it was saved, wall clock */
	const char *decision;         /* "confirm" or "overrule" */
	int verdict;                  /* the verdict QA says is right */
	const char *note, *reviewer;  /* NULL when none was given */
};

/* Calls fn for every review of every inspection of part_id, newest first
 * (the first is the one that counts); strings are valid only during the
 * call; fn returns non-zero to stop. 0 (also with none), or a negative code
 * with *err set as for db_open. */
int db_read_reviews(const char *path, int64_t part_id,
		    int (*fn)(const struct db_review_row *r, void *data), void *data, char **err);

/* What a review may add to the verdict, for training: both optional
 * (NULL). mask_path is relative to the media directory (db_media_dir); the
 * caller has written the file there. */
struct db_review_label {
	const char *defect_type;
	const char *mask_path;
};
/* db_review with a label (label may be NULL: db_review). */
int db_review_labeled(const char *path, int64_t part_id, const char *decision, int verdict,
		      const char *note, const char *reviewer,
		      const struct db_review_label *label, char **err);
/* db_review_labeled of one inspection of part_id by its row id (the
 * id of a db_query row), not the latest: a part id the line used twice
 * (its counter started over) names two inspections, and the one reviewed
 * is the one looked at. inspection_id < 0 is the latest. -ENOENT when
 * inspection_id is not one of part_id's. */
int db_review_at(const char *path, int64_t part_id, int64_t inspection_id,
		 const char *decision, int verdict, const char *note, const char *reviewer,
		 const struct db_review_label *label, char **err);

/* The vibration condition figures logged with inspection inspection_id
 * (the id of a db_query row). 0, -ENOENT when none were logged, or a
 * negative code with *err set as for db_open. */
int db_read_vibration(const char *path, int64_t inspection_id, struct vigil_vibration *out,
		      char **err);

/* One file kept with an inspection (table media). path is relative to the
 * media directory (db_media_dir). recent: a file of the recent ring, kept
 * only for the ring's window (its path starts with "recent/"). */
struct db_media {
	int64_t id, inspection_id;
	const char *camera, *kind, *path;
	int64_t bytes;
	int recent;
};

/* Calls fn for each media file of inspection_id (images first, in camera
 * order); strings are valid only during the call; fn returns non-zero to
 * stop. 0 (also with no media), or a negative code with *err set. */
int db_read_media(const char *db_path, int64_t inspection_id,
		  int (*fn)(const struct db_media *m, void *data), void *data, char **err);

/* One row of table events (db_event). */
struct db_event_row {
	int64_t id, t_wall_us;
	const char *kind, *message;
};
/* Calls fn for each event with since_us <= t_wall_us < until_us (until_us
 * 0: no end), oldest first; strings are valid only during the call; fn
 * returns non-zero to stop. 0, or a negative code with *err set. */
int db_read_events(const char *db_path, int64_t since_us, int64_t until_us,
		   int (*fn)(const struct db_event_row *e, void *data), void *data, char **err);

/* The media directory of the log at db_path: the one vigild recorded in it,
 * else the default "<db_path>.media"; for a log copied or moved with its
 * folder (recording OTHER.media, or a folder that is gone) the
 * "<db_path>.media" beside it. The caller frees it with free(). NULL with
 * *err set when the file cannot be read or the folder does not exist (the
 * message names the path tried). */
char *db_media_dir(const char *db_path, char **err);

/* The shift plan the log records ([database] shifts of the vigild that
 * wrote it), or SHIFT_PLAN_DEFAULT for a log without one. Returns a string
 * for shift_plan_parse (free()), or NULL with *err. */
char *db_shifts(const char *db_path, char **err);

#endif
