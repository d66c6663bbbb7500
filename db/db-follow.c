/* The log's file deleted or moved while the writer writes it (db/db.h,
 * db_check_path): found by the writer between batches, and recovered so
 * that no row is lost without a word.
 *
 * What SQLite (3.40) does, and this file relies on:
 *   - SQLITE_FCNTL_HAS_MOVED "writes a boolean into that integer depending
 *     on whether or not the file has been renamed, moved, or deleted since
 *     it was first opened" (sqlite3.h); the unix VFS answers with one
 *     stat() of the path, compared by inode with the open file: cheap
 *     enough for once a second.
 *   - In WAL mode writes through a connection whose file was deleted or
 *     renamed go on working (the DBMOVED refusal guards rollback journals
 *     only), into the open file and its -wal, which keep the old names:
 *     a deleted log is lost when the connection closes, a renamed one
 *     lacks whatever is still in the -wal beside the old name. And the
 *     pager does not checkpoint a moved file when its last connection
 *     closes (sqlite3PagerClose checks databaseIsUnmoved).
 *   - "How To Corrupt An SQLite Database File", 2.5: a new database file
 *     created at the old name shares the old one's -wal and -shm, since
 *     their names come from the database's; "a rollback or recovery for
 *     one of the databases might use content from the other database,
 *     resulting in corruption". So renaming a WAL database while it is
 *     open is unsafe unless nothing opens a new file at the old name
 *     while the old -wal and -shm are there: here they are checkpointed
 *     and removed (known by inode, from the open) before any new file is
 *     opened at the path.
 *   - The online backup API copies a database through a connection, so
 *     what is in its WAL comes along, and holds the source's read lock
 *     only while it reads ("the backup may be performed on a live source
 *     database"): the open connection of a deleted file copies it whole. */
#include "db/db.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib.h>
#include <glib/gstdio.h>
#include <sqlite3.h>

#include "core/bqueue.h"
#include "core/part.h"
#include "db/db-private.h"

/* A recovery that failed is tried again this often; its warning comes at
 * most once a period (the first at once), with the tries held back. */
#define FOLLOW_RETRY_US (5 * G_USEC_PER_SEC)
#define FOLLOW_WARNING_PERIOD_US (60 * G_USEC_PER_SEC)
/* After a move, the files of parts whose rows are in the moved file get
 * their media rows there if they come within this long (the media thread
 * writes them after the row commits). */
#define FOLLOW_GRACE_US (2 * G_USEC_PER_SEC)

enum whereabouts {
	AT_PATH,    /* the file at the path is the one the writer writes */
	DELETED,    /* the open file has no name left */
	MOVED,      /* it has another name (renamed, or moved in the file system) */
};

static enum whereabouts whereabouts(db_log *db)
{
	struct stat sb;
	int moved = 0;

	if (sqlite3_file_control(db->conn, "main", SQLITE_FCNTL_HAS_MOVED, &moved) != SQLITE_OK ||
	    !moved)
		return AT_PATH;
	/* Without its descriptor the file is taken for deleted: a copy too
	 * many beats a log lost. */
	if (db->file_fd >= 0 && fstat(db->file_fd, &sb) == 0 && sb.st_nlink > 0)
		return MOVED;
	return DELETED;
}

/* The open file's name now (g_free), from its descriptor; NULL if unknown. */
static char *current_name(db_log *db)
{
	char link[64];
	char *name;

	if (db->file_fd < 0)
		return NULL;
	snprintf(link, sizeof link, "/proc/self/fd/%d", db->file_fd);
	name = g_file_read_link(link, NULL);
	if (name && g_str_has_suffix(name, " (deleted)")) {
		g_free(name);
		return NULL;
	}
	return name;
}

static void follow_warning(db_log *db, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
static void follow_warning(db_log *db, const char *fmt, ...)
{
	int64_t now = vigil_now_us();
	va_list ap;
	char *msg;

	if (now < db->next_follow_warning_us) {
		db->follow_warnings_held++;
		return;
	}
	va_start(ap, fmt);
	msg = g_strdup_vprintf(fmt, ap);
	va_end(ap);
	if (db->follow_warnings_held)
		g_warning("database %s: %s (%" PRIu64 " more tries failed in the last %d s)",
			  db->path, msg, db->follow_warnings_held,
			  (int)(FOLLOW_WARNING_PERIOD_US / G_USEC_PER_SEC));
	else
		g_warning("database %s: %s", db->path, msg);
	g_free(msg);
	db->follow_warnings_held = 0;
	db->next_follow_warning_us = now + FOLLOW_WARNING_PERIOD_US;
}

/* Copies the log, through the writer's connection, into target (created,
 * or overwritten). 0, or DB_ESQLITE with *err set (malloc). */
static int copy_log(db_log *db, const char *target, char **err)
{
	sqlite3 *dest = NULL;
	sqlite3_backup *b;
	int rc;

	rc = sqlite3_open_v2(target, &dest, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
	if (rc == SQLITE_OK) {
		sqlite3_busy_timeout(dest, DB_BUSY_TIMEOUT_MS);
		b = sqlite3_backup_init(dest, "main", db->conn, "main");
		if (!b) {
			rc = sqlite3_errcode(dest);
		} else {
			/* All at once: the writer does nothing else meanwhile, and
			 * rows wait in the queue (DB_OPTIONS_DEFAULT: 4096). */
			rc = sqlite3_backup_step(b, -1);
			if (rc == SQLITE_DONE)
				rc = SQLITE_OK;
			if (sqlite3_backup_finish(b) != SQLITE_OK && rc == SQLITE_OK)
				rc = sqlite3_errcode(dest);
		}
	}
	if (rc != SQLITE_OK)
		db__set_error(err, "cannot write %s: %s", target, db__sqlite_message(dest, rc));
	sqlite3_close(dest);
	return rc == SQLITE_OK ? 0 : DB_ESQLITE;
}

/* Removes path's -wal and -shm where they are still the ones the writer's
 * file was opened with, or belong to no file (none at the path), so that
 * no new file at the path is ever paired with them; another file's are
 * left alone. 0 or -errno. */
static int remove_old_journals(db_log *db, char **err)
{
	static const char *const sfx[] = { "-wal", "-shm" };
	const struct db_file_id *ids[] = { &db->wal_id, &db->shm_id };
	struct stat sb;
	bool orphans = stat(db->path, &sb) < 0 && errno == ENOENT;

	for (size_t i = 0; i < G_N_ELEMENTS(sfx); i++) {
		char *name = g_strconcat(db->path, sfx[i], NULL);
		int rc = 0;

		if (stat(name, &sb) == 0 &&
		    (orphans || (sb.st_dev == ids[i]->dev && sb.st_ino == ids[i]->ino)) &&
		    unlink(name) < 0 && errno != ENOENT) {
			rc = -errno;
			db__set_error(err, "cannot remove %s: %s", name, g_strerror(errno));
		}
		g_free(name);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* A new name in a folder lasts a power cut once the folder is synced. */
static void sync_parent(const char *path)
{
	char *dir = g_path_get_dirname(path);
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
	g_free(dir);
}

/* The writer leaves its file for the one at the path, opened by the open
 * sequence of db_open_with (check: with its integrity check, for a file
 * the writer did not make). The old file stays open until the new one
 * works. 0, or negative with *err set. */
static int switch_file(db_log *db, bool check, char **err)
{
	sqlite3 *old_conn = db->conn;
	struct db_statements old_st = db->st;
	int old_fd = db->file_fd;
	struct db_file_id old_wal = db->wal_id, old_shm = db->shm_id;
	int rc;

	db->conn = NULL;
	db->st = (struct db_statements){ 0 };
	db->file_fd = -1;
	rc = db__open_file(db, false, check, err);
	if (rc < 0) {
		db->conn = old_conn;
		db->st = old_st;
		db->file_fd = old_fd;
		db->wal_id = old_wal;
		db->shm_id = old_shm;
		return rc;
	}
	db__finalize_statements(&old_st);
	if (sqlite3_close(old_conn) != SQLITE_OK)
		g_warning("database %s: closing the file left: %s", db->path,
			  sqlite3_errmsg(old_conn));
	if (old_fd >= 0)
		close(old_fd);
	return 0;
}

/* A fresh file: nothing the writer remembers of the rows before is
 * valid in it. Latencies and late verdicts of those rows find no row
 * (a late verdict is then written as the part's row, as for a row that
 * failed), their files come too late (db__stale_media), the ring's
 * totals and leftovers are the new file's. */
static void forget_old_rows(db_log *db)
{
	db->generation++;
	memset(db->tickets, 0, sizeof db->tickets);
	g_array_set_size(db->ring_orphans, 0);
	db->ring_orphan_max = 0;
	db__clock_restart(db);
}

static void recovered_event(db_log *db)
{
	char *msg;

	if (!db->recovered)
		return;
	msg = g_strdup_printf("%s failed its integrity check; it was moved to %s and this log "
			      "started afresh", db->path, db->recovered);
	db__write_event(db, "db-recovered", msg);
	g_free(msg);
	g_clear_pointer(&db->recovered, g_free);
}

static void followed(db_log *db, const char *kind, char *msg)
{
	g_warning("database %s: %s", db->path, msg);
	recovered_event(db);
	db__write_event(db, kind, msg);
	g_free(msg);
	atomic_fetch_add(&db->file_moves, 1);
}

/* The open file has no name left: it is written back to the path whole.
 * The copy is made under a name of its own and renamed into place, so that
 * no reader ever opens half a copy at the path. Should another file have
 * taken the path, the copy is left beside it (db->rescued_to, made again
 * at each try, so that it holds every row up to the switch) and the log
 * goes on in that file. */
static int write_back(db_log *db, char **err)
{
	char *tmp = g_strconcat(db->path, ".rescue", NULL);
	char *tmp_journal = g_strconcat(tmp, "-journal", NULL);
	bool in_place = false;
	int64_t rows = 0;
	int rc;

	/* What an earlier try (or a crash during one) left. */
	g_remove(tmp);
	g_remove(tmp_journal);
	if ((rc = copy_log(db, db->rescued_to ? db->rescued_to : tmp, err)) < 0)
		goto out;
	if (!db->rescued_to) {
		if ((rc = remove_old_journals(db, err)) < 0)
			goto out;
		in_place = renameat2(AT_FDCWD, tmp, AT_FDCWD, db->path, RENAME_NOREPLACE) == 0;
		if (!in_place && errno != EEXIST) {
			rc = -errno;
			db__set_error(err, "cannot rename %s to %s: %s", tmp, db->path,
				      g_strerror(errno));
			goto out;
		}
		if (!in_place) {
			GDateTime *now = g_date_time_new_now_utc();
			char *stamp = g_date_time_format(now, "%Y%m%dT%H%M%SZ");
			char *aside = g_strdup_printf("%s.deleted-%s", db->path, stamp);

			g_date_time_unref(now);
			g_free(stamp);
			if (rename(tmp, aside) < 0) {
				rc = -errno;
				db__set_error(err, "cannot rename %s to %s: %s", tmp, aside,
					      g_strerror(errno));
				g_free(aside);
				goto out;
			}
			db->rescued_to = aside;
		}
		sync_parent(db->path);
	}
	db__query_int(db->conn, "SELECT count(*) FROM inspections", &rows);
	if ((rc = switch_file(db, !in_place, err)) < 0) {
		/* Next try: a new copy, made as the file is then. */
		if (in_place)
			g_remove(db->path);
		goto out;
	}
	if (in_place) {
		followed(db, "db-deleted", g_strdup_printf(
			"the log file was deleted while vigild wrote it: the whole log (%" PRId64
			" inspections) was written back to %s from the open file, and logging goes "
			"on there", rows, db->path));
	} else {
		forget_old_rows(db);
		followed(db, "db-deleted", g_strdup_printf(
			"the log file was deleted while vigild wrote it, and another file took "
			"its place at %s: the whole log (%" PRId64 " inspections) was copied from "
			"the open file to %s, and logging goes on in the file at the path",
			db->path, rows, db->rescued_to));
		g_clear_pointer(&db->rescued_to, g_free);
	}
out:
	g_remove(tmp);
	g_free(tmp);
	g_free(tmp_journal);
	return rc;
}

/* The open file was renamed or moved: its rows stay in it, and a fresh
 * log starts at the path. -EAGAIN while a reader (another connection of
 * this process, or another process) holds frames of its WAL that the
 * file does not have yet. */
static int start_afresh(db_log *db, char **err)
{
	char *moved_to = current_name(db), *msg;
	int nlog = -1, nckpt = -1, rc;

	/* The moved file says where the log goes on, once. */
	if (!db->moved_told) {
		msg = g_strdup_printf("this log file was moved away from %s while vigild wrote it; "
				      "logging goes on in a fresh log there", db->path);
		db->moved_told = db__write_event_now(db, vigil_wall_us(), "db-moved", msg);
		g_free(msg);
	}
	/* Its last transactions into the file itself: they are in the -wal
	 * beside the old name, which is about to go. PASSIVE never waits: a
	 * reader in the way is waited for by the next try. */
	rc = sqlite3_wal_checkpoint_v2(db->conn, "main", SQLITE_CHECKPOINT_PASSIVE, &nlog, &nckpt);
	if (rc != SQLITE_OK || nlog != nckpt) {
		db__set_error(err, "the moved file %s does not hold all of its transactions yet "
			      "(checkpoint: %s, %d of %d frames)", moved_to ? moved_to : "(name unknown)",
			      rc == SQLITE_OK ? "a reader holds the rest" : sqlite3_errmsg(db->conn),
			      nckpt, nlog);
		g_free(moved_to);
		return -EAGAIN;
	}
	if ((rc = remove_old_journals(db, err)) < 0 || (rc = switch_file(db, true, err)) < 0) {
		g_free(moved_to);
		return rc;
	}
	forget_old_rows(db);
	followed(db, "db-moved", g_strdup_printf(
		"the log file was renamed or moved while vigild wrote it: the rows until now are "
		"in %s (its last transactions checkpointed into it), and a fresh log started at %s",
		moved_to ? moved_to : "the moved file (its new name unknown)", db->path));
	g_free(moved_to);
	return 0;
}

/* Every media job handed out before now has its rows in the writer's
 * queue, and the queue is empty: the files of parts in the moved file
 * have their rows there. done is read before the queue's depth: the media
 * thread queues the rows before it counts the job done. */
static bool media_settled(db_log *db)
{
	return atomic_load(&db->media_done) == db->media_handed && bqueue_depth(db->queue) == 0;
}

void db__follow_path(db_log *db, bool now)
{
	int64_t t = vigil_now_us();
	enum whereabouts where;
	char *err = NULL;
	int rc;

	if (!now && t < db->next_path_check_us)
		return;
	db->next_path_check_us = t + (int64_t)DB_PATH_CHECK_MS * 1000;
	where = whereabouts(db);
	if (where == AT_PATH) {
		if (db->astray)
			g_message("database %s: the log file is back at its path; logging goes on "
				  "in it", db->path);
		db->astray = false;
		atomic_store(&db->file_away, 0);
		return;
	}
	if (!db->astray) {
		db->astray = true;
		db->astray_since_us = t;
		db->follow_grace_end_us = t + FOLLOW_GRACE_US;
		db->next_follow_try_us = t;
		db->next_follow_warning_us = 0;
		db->follow_warnings_held = 0;
		db->moved_told = false;
		g_clear_pointer(&db->rescued_to, g_free);
		atomic_store(&db->file_away, 1);
	}
	if (!now && t < db->next_follow_try_us)
		return;
	if (where == MOVED && !now && t < db->follow_grace_end_us && !media_settled(db))
		return;
	rc = where == DELETED ? write_back(db, &err) : start_afresh(db, &err);
	if (rc == 0) {
		db->astray = false;
		atomic_store(&db->file_away, 0);
	} else if (rc == -EAGAIN && t - db->astray_since_us < FOLLOW_RETRY_US) {
		/* A reader in the way for a moment: next look, no warning. */
	} else {
		db->next_follow_try_us = t + FOLLOW_RETRY_US;
		if (where == DELETED)
			follow_warning(db, "the log file was deleted while vigild writes it, and "
				       "cannot be written back yet (%s): rows go on into the open "
				       "file, kept until vigild stops; trying again every %d s",
				       err ? err : "out of memory",
				       (int)(FOLLOW_RETRY_US / G_USEC_PER_SEC));
		else
			follow_warning(db, "the log file was moved while vigild writes it, and no "
				       "fresh log can be started at the path yet (%s): rows go on "
				       "into the moved file; trying again every %d s",
				       err ? err : "out of memory",
				       (int)(FOLLOW_RETRY_US / G_USEC_PER_SEC));
	}
	free(err);
}

void db__follow_close(db_log *db)
{
	enum whereabouts where;
	char *err = NULL;

	db__follow_path(db, true);
	if (!db->astray)
		return;
	if (db->rescued_to)
		g_warning("database %s: the log file was deleted while vigild wrote it; a copy "
			  "of it up to some time before is %s", db->path, db->rescued_to);
	where = whereabouts(db);
	if (where == DELETED) {
		GDateTime *now = g_date_time_new_now_utc();
		char *stamp = g_date_time_format(now, "%Y%m%dT%H%M%SZ");
		char *base = g_path_get_basename(db->path);
		char *name = g_strdup_printf("%s.rescued-%s-%d", base, stamp, (int)getpid());
		char *target = g_build_filename(g_get_tmp_dir(), name, NULL);

		g_date_time_unref(now);
		if (copy_log(db, target, &err) == 0) {
			g_warning("database %s: the log file was deleted while vigild wrote it and "
				  "could not be written back; the whole log is copied to %s",
				  db->path, target);
		} else {
			g_warning("database %s: the log file was deleted while vigild wrote it and "
				  "could not be written back, nor copied to %s (%s): its rows are "
				  "lost as it closes", db->path, target, err ? err : "out of memory");
			g_remove(target);
		}
		g_free(stamp);
		g_free(base);
		g_free(name);
		g_free(target);
	} else if (where == MOVED) {
		char *moved_to = current_name(db);
		int nlog = -1, nckpt = -1;

		/* Closing a moved file does not checkpoint it: its last
		 * transactions would stay behind in the -wal of the old name. */
		if (sqlite3_wal_checkpoint_v2(db->conn, "main", SQLITE_CHECKPOINT_TRUNCATE, &nlog,
					      &nckpt) == SQLITE_OK && nlog == nckpt &&
		    remove_old_journals(db, NULL) == 0)
			g_warning("database %s: the log file was moved while vigild wrote it; its "
				  "rows are in %s", db->path, moved_to ? moved_to : "the moved file");
		else
			g_warning("database %s: the log file was moved while vigild wrote it; its "
				  "rows are in %s, its last transactions in %s-wal (open the moved "
				  "file with that beside it, renamed to its name plus -wal)",
				  db->path, moved_to ? moved_to : "the moved file", db->path);
		g_free(moved_to);
	}
	free(err);
}
