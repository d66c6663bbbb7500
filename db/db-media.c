/* The media thread: a part's files, written after its row commits, off the
 * writer thread so that encoding images never holds up the rows. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib.h>
#include <glib/gstdio.h>
#include <sqlite3.h>

#include "core/wav.h"
#include "db/db-private.h"
#include "cvwrap/cvwrap.h"

/* ---- file formats of the media directory ---- */

/* Files appear whole or not at all, also after a power cut. The media
 * thread writes a batch of parts' files under temporary names (same
 * extension, so OpenCV picks the format), flushes them to the disk at once
 * (syncfs), renames them, flushes their folders (fsync), and only then
 * queues the rows that name them. A crash in between leaves a temporary
 * file or a file without a row, never a row without its whole file;
 * db__sweep_media removes those at the next start. One flush per batch
 * rather than one per file: a burst of rejects costs two flushes, not
 * three per part. */
#define TEMP_INFIX ".tmp"
#define MEDIA_BATCH 64   /* parts whose files share one flush */
#define MEDIA_NICE 10    /* the media thread's nice value (db__media_main) */

static char *temp_name(const char *path)
{
	const char *ext = strrchr(path, '.');

	return g_strdup_printf("%.*s" TEMP_INFIX "%s",
			       (int)(ext ? ext - path : (ptrdiff_t)strlen(path)), path,
			       ext ? ext : "");
}

/* fsync(2) of a folder, or syncfs(2) of the file system it is on: 0 or
 * -errno. */
static int sync_folder(const char *path, bool whole_fs)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc = 0;

	if (fd < 0)
		return -errno;
	if ((whole_fs ? syncfs(fd) : fsync(fd)) < 0)
		rc = -errno;
	close(fd);
	return rc;
}

static int media_write_png(const char *path, const uint8_t *gray, int w, int h)
{
	return cvw_imwrite_gray(path, gray, w, h, w);
}

/* A per-pixel map (the defect map, the anomaly map) as 8-bit
 * gray, 0..1 -> 0..255 (NaN as 0). */
static int media_write_map(const char *path, const float *map, int w, int h)
{
	uint8_t *px = g_malloc((gsize)w * (gsize)h);
	int rc;

	for (size_t i = 0; i < (size_t)w * (size_t)h; i++) {
		float v = isfinite(map[i]) ? CLAMP(map[i], 0.0f, 1.0f) : 0.0f;

		px[i] = (uint8_t)lrintf(v * 255.0f);
	}
	rc = media_write_png(path, px, w, h);
	g_free(px);
	return rc;
}

void db_media_set_free(struct db_media_set *m)
{
	if (!m)
		return;
	for (int i = 0; i < m->nimages && i < DB_MEDIA_MAX_IMAGES; i++) {
		g_free(m->images[i].camera);
		g_free(m->images[i].gray);
	}
	g_free(m->heatmap);
	g_free(m->anomaly_map);
	g_free(m->vibration);
	g_free(m);
}

/* ---- media files: their own thread, so that encoding and writing images
 * never holds up the rows ---- */

/* Hands a committed inspection's files to the media thread, or drops them
 * when it is behind: the line never waits for a disk. */
void db__hand_media(db_log *db, struct db_item *it)
{
	struct media_job *job = g_new0(struct media_job, 1);

	job->inspection_id = it->rowid;
	job->t_wall_us = it->row.t_wall_us;
	job->part_id = it->row.part_id;
	job->recent = it->recent;
	job->generation = db->generation;
	job->set = it->media_set;
	/* Ring parts take at most half the queue: the rest is kept for the
	 * files of rejects and samples. */
	if (it->recent && bqueue_depth(db->media_queue) > db->opt.media_queue / 2) {
		atomic_fetch_add(&db->ring_dropped, 1);
		g_free(job);
	} else if (bqueue_push(db->media_queue, job, 0) == 0) {
		it->media_set = NULL;
		db->media_handed++;
	} else {
		atomic_fetch_add(it->recent ? &db->ring_dropped : &db->media_dropped, 1);
		g_free(job);
	}
}

/* One event per period at most, however many files were dropped. */
#define DB_DROP_EVENT_PERIOD_US (10 * G_USEC_PER_SEC)

void db__log_media_drops(db_log *db)
{
	uint64_t dropped = atomic_load(&db->media_dropped);
	int64_t now = vigil_now_us();
	char *msg;

	if (dropped == db->media_drops_logged || now < db->next_drop_event_us)
		return;
	msg = g_strdup_printf("%" PRIu64 " part(s)' files not kept (%" PRIu64 " in all): the "
			      "media writer is behind or the disk refuses them",
			      dropped - db->media_drops_logged, dropped);
	g_warning("database %s: %s", db->path, msg);
	db__write_event(db, "media-dropped", msg);
	g_free(msg);
	db->media_drops_logged = dropped;
	db->next_drop_event_us = now + DB_DROP_EVENT_PERIOD_US;
}

/* The media thread's warnings that come once a part (its folder or a file
 * that cannot be made): the first at once, then at most one a period with
 * the number held back, so that a dead media folder costs a line every
 * 10 s rather than one a part; the parts are counted and evented
 * (db__log_media_drops) all the same. Media thread only. */
static void media_warning(db_log *db, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
static void media_warning(db_log *db, const char *fmt, ...)
{
	int64_t now = vigil_now_us();
	va_list ap;
	char *msg;

	if (now < db->next_media_warning_us) {
		db->media_warnings_held++;
		return;
	}
	va_start(ap, fmt);
	msg = g_strdup_vprintf(fmt, ap);
	va_end(ap);
	if (db->media_warnings_held)
		g_warning("database %s: %s (and %" PRIu64 " more such in the last %d s)", db->path,
			  msg, db->media_warnings_held, (int)(DB_DROP_EVENT_PERIOD_US / G_USEC_PER_SEC));
	else
		g_warning("database %s: %s", db->path, msg);
	g_free(msg);
	db->media_warnings_held = 0;
	db->next_media_warning_us = now + DB_DROP_EVENT_PERIOD_US;
}

/* The media folder removed while vigild runs (rm -r by hand, a clean-up
 * script): the files would still be written, into a folder made again
 * without a word, while the rows of every part before point at files
 * that are gone. Said once (a warning and an event), and the folder's
 * lock (db__sweep_media) taken again on the new folder: the old one
 * guards nothing now. Media thread only. */
static void media_dir_gone(db_log *db)
{
	char *msg;
	int fd;

	if (g_mkdir_with_parents(db->media_dir, 0755) < 0)
		return;   /* stage_job says why */
	msg = g_strdup_printf("the media folder %s was removed while vigild ran: made again; "
			      "the files of the parts logged before it went are gone with it",
			      db->media_dir);
	g_warning("database %s: %s", db->path, msg);
	db_event(db, "media-folder-gone", msg);
	g_free(msg);
	if (db->media_lock_fd < 0)
		return;   /* another log held it: that log sweeps it */
	fd = open(db->media_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) == 0) {
		close(db->media_lock_fd);
		db->media_lock_fd = fd;
	} else if (fd >= 0) {
		close(fd);
	}
}

static bool name_is_safe(const char *name)
{
	if (!name || !*name || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
		return false;
	for (const char *c = name; *c; c++)
		if (!g_ascii_isalnum(*c) && *c != '-' && *c != '_' && *c != '.')
			return false;
	return true;
}

/* Writes one job's files under <media_dir>/<UTC day>/ (a ring job's under
 * <media_dir>/recent/<UTC day>/), each under its
 * temporary name, and returns the item of their rows (their temporary
 * names in staged), or NULL when none was written. A file that cannot be
 * written is left out (and the part counted as dropped). */
static struct db_item *stage_job(db_log *db, struct media_job *job)
{
	struct db_media_set *m = job->set;
	struct db_item *it = g_new0(struct db_item, 1);
	GDateTime *t = g_date_time_new_from_unix_utc(job->t_wall_us / G_USEC_PER_SEC);
	char *stamp = t ? g_date_time_format(t, "%Y%m%d") : g_strdup("undated");
	char *day = job->recent ? g_build_filename(DB_RING_FOLDER, stamp, NULL) : g_strdup(stamp);
	char *dir = g_build_filename(db->media_dir, day, NULL);
	char *parent = g_path_get_dirname(dir);
	bool failed = false, fresh = !g_file_test(dir, G_FILE_TEST_IS_DIR);
	bool fresh_parent = !g_file_test(parent, G_FILE_TEST_IS_DIR);
	int nimages = CLAMP(m->nimages, 0, DB_MEDIA_MAX_IMAGES);
	int rc;

	if (t)
		g_date_time_unref(t);
	g_free(stamp);
	it->kind = DB_ITEM_MEDIA;
	it->recent = job->recent;
	it->generation = job->generation;
	it->media.inspection_id = job->inspection_id;
	it->media.t_wall_us = job->t_wall_us;
	if (!g_file_test(db->media_dir, G_FILE_TEST_IS_DIR))
		media_dir_gone(db);
	rc = g_mkdir_with_parents(dir, 0755) < 0 ? -errno : 0;
	/* A new folder's own name must reach the disk as well (and the
	 * ring's folder's, the first time). */
	if (rc == 0 && fresh_parent && strcmp(parent, db->media_dir) != 0)
		rc = sync_folder(db->media_dir, false);
	if (rc == 0 && fresh)
		rc = sync_folder(parent, false);
	g_free(parent);
	if (rc < 0) {
		media_warning(db, "cannot create %s: %s", dir, g_strerror(-rc));
		failed = true;
		goto out;
	}
	/* The images, then the defect map, the anomaly map and the vibration
	 * window: one slot each in it->media.files. */
	for (int i = 0; i < nimages + 3; i++) {
		struct media_file *f = &it->media.files[it->media.nfiles];
		char *name, *tmp;

		if (i < nimages) {
			const char *cam = name_is_safe(m->images[i].camera) ? m->images[i].camera
									   : "camera";

			if (!m->images[i].gray)
				continue;
			name = g_strdup_printf("%" PRId64 "-%u-%s.png", job->inspection_id,
					       job->part_id, cam);
			tmp = temp_name(name);
			f->staged = g_build_filename(dir, tmp, NULL);
			rc = media_write_png(f->staged, m->images[i].gray, m->images[i].width,
					     m->images[i].height);
			f->camera = g_strdup(m->images[i].camera);
			f->kind = "image";
		} else if (i <= nimages + 1) {
			/* The defect map, then the anomaly map, named by their
			 * kind; the anomaly map is kept wherever the defect map
			 * is (ring or long-term, rejects and sampled parts): the
			 * review page shows the two over the same image. */
			const float *map = i == nimages ? m->heatmap : m->anomaly_map;
			const char *kind = i == nimages ? "heatmap" : "anomaly";

			if (!map || m->heatmap_w <= 0 || m->heatmap_h <= 0)
				continue;
			name = g_strdup_printf("%" PRId64 "-%u-%s.png", job->inspection_id,
					       job->part_id, kind);
			tmp = temp_name(name);
			f->staged = g_build_filename(dir, tmp, NULL);
			rc = media_write_map(f->staged, map, m->heatmap_w, m->heatmap_h);
			f->kind = kind;
		} else {
			if (!m->vibration || m->vibration_len == 0)
				continue;
			name = g_strdup_printf("%" PRId64 "-%u-vibration.wav", job->inspection_id,
					       job->part_id);
			tmp = temp_name(name);
			f->staged = g_build_filename(dir, tmp, NULL);
			/* Mono float32 at the sensor rate (core/wav.h), which audio
			 * tools and Python's soundfile/scipy read as is. */
			rc = wav_write_file(f->staged, m->vibration, m->vibration_len, m->rate_hz);
			f->kind = "vibration";
		}
		if (rc < 0) {
			/* OpenCV does not say why (-EIO): a long-term file
			 * that cannot be written may be a full disk, and the
			 * ring is the first to give way (db__ring_trim). */
			if (!job->recent) {
				atomic_store(&db->ring_squeeze, 1);
				media_warning(db, "cannot write %s: %s", f->staged,
					      g_strerror(-rc));
			}
			g_remove(f->staged);
			g_free(f->staged);
			g_free(f->camera);
			*f = (struct media_file){ 0 };
			failed = true;
		} else {
			GStatBuf sb;

			f->path = g_build_filename(day, name, NULL);
			f->bytes = g_stat(f->staged, &sb) == 0 ? (int64_t)sb.st_size : -1;
			it->media.nfiles++;
		}
		g_free(tmp);
		g_free(name);
	}
out:
	if (failed)
		atomic_fetch_add(job->recent ? &db->ring_dropped : &db->media_dropped, 1);
	g_free(dir);
	g_free(day);
	if (it->media.nfiles == 0) {
		db__item_free(it);
		return NULL;
	}
	return it;
}

/* Gives up on a staged item: its files go, temporary or renamed. */
static void drop_staged(db_log *db, struct db_item *it)
{
	for (int i = 0; i < it->media.nfiles; i++)
		if (it->media.files[i].staged)
			g_remove(it->media.files[i].staged);
	db__remove_media_files(db, it);
	atomic_fetch_add(it->recent ? &db->ring_dropped : &db->media_dropped, 1);
	db__item_free(it);
}

/* Puts a batch of staged items' files in place, durably, and queues their
 * rows: the data on the disk, then the names, then the rows. */
static void publish(db_log *db, struct db_item **batch, size_t n)
{
	GHashTable *folders = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
	GHashTableIter iter;
	gpointer key;
	int rc = sync_folder(db->media_dir, true);

	if (rc < 0) {
		g_warning("database %s: cannot flush the files in %s: %s; %zu part(s)' files "
			  "not kept", db->path, db->media_dir, g_strerror(-rc), n);
		for (size_t k = 0; k < n; k++)
			drop_staged(db, batch[k]);
		goto out;
	}
	for (size_t k = 0; k < n; k++) {
		struct db_item *it = batch[k];

		for (int i = 0; it && i < it->media.nfiles; i++) {
			struct media_file *f = &it->media.files[i];
			char *full = g_build_filename(db->media_dir, f->path, NULL);

			if (rename(f->staged, full) < 0) {
				g_warning("database %s: cannot rename %s: %s; the part's files are "
					  "not kept", db->path, f->staged, g_strerror(errno));
				drop_staged(db, it);
				it = batch[k] = NULL;
			} else {
				g_free(f->staged);
				f->staged = NULL;
			}
			g_free(full);
		}
		if (it)
			g_hash_table_add(folders, g_path_get_dirname(it->media.files[0].path));
	}
	/* The new names on the disk before any row points at them. */
	g_hash_table_iter_init(&iter, folders);
	while (g_hash_table_iter_next(&iter, &key, NULL)) {
		char *dir = g_build_filename(db->media_dir, (const char *)key, NULL);

		if ((rc = sync_folder(dir, false)) < 0) {
			g_warning("database %s: cannot flush %s: %s; its parts' files are not kept",
				  db->path, dir, g_strerror(-rc));
			for (size_t k = 0; k < n; k++) {
				char *d = batch[k] ? g_path_get_dirname(batch[k]->media.files[0].path)
						   : NULL;

				if (d && strcmp(d, key) == 0) {
					drop_staged(db, batch[k]);
					batch[k] = NULL;
				}
				g_free(d);
			}
		}
		g_free(dir);
	}
	for (size_t k = 0; k < n; k++) {
		struct db_item *it = batch[k];

		if (!it)
			continue;
		/* Ring files count in the ring's totals once their rows commit. */
		if (!it->recent)
			atomic_fetch_add(&db->media_written, (uint64_t)it->media.nfiles);
		it->t_queued_us = vigil_now_us();
		/* The writer drains its queue until db_close has joined this
		 * thread, so this push cannot wait for ever. */
		if (bqueue_push(db->queue, it, -1) < 0)
			db__item_free(it);
	}
out:
	g_hash_table_destroy(folders);
}

gpointer db__media_main(gpointer data)
{
	db_log *db = data;
	void *item;

	/* Encoding images is the heaviest work after the model, and no verdict
	 * waits for it: below the line's threads, it takes mostly the CPU they
	 * leave rather than the model's (on Linux the nice value is the
	 * thread's). */
	if (setpriority(PRIO_PROCESS, (id_t)gettid(), MEDIA_NICE) < 0)
		g_debug("database %s: media thread keeps its priority: %s", db->path,
			g_strerror(errno));
	while (bqueue_pop(db->media_queue, &item, -1) == 0) {
		struct db_item *batch[MEDIA_BATCH];
		size_t n = 0;
		uint64_t jobs = 0;

		/* The first job, and whatever else is waiting: one flush. */
		do {
			struct media_job *job = item;

			if ((batch[n] = stage_job(db, job)))
				n++;
			db_media_set_free(job->set);
			g_free(job);
			jobs++;
		} while (n < MEDIA_BATCH && bqueue_pop(db->media_queue, &item, 0) == 0);
		if (n)
			publish(db, batch, n);
		/* After their rows are queued: the writer, seeing these jobs
		 * done, finds the rows in its queue (db-follow.c). */
		atomic_fetch_add(&db->media_done, jobs);
	}
	return NULL;
}

void db__remove_media_files(db_log *db, const struct db_item *it)
{
	for (int i = 0; i < it->media.nfiles; i++) {
		char *full = g_build_filename(db->media_dir, it->media.files[i].path, NULL);

		if (g_remove(full) < 0 && errno != ENOENT)
			g_warning("database %s: cannot remove %s: %s", db->path, full,
				  g_strerror(errno));
		g_free(full);
	}
}

/* ---- what a crash left behind ---- */

/* The inspection id of a name write_job gives a file,
 * "<inspection id>-<part id>-<what>.png|.wav", else -1. */
static int64_t media_name_id(const char *name)
{
	char *end;
	int64_t id;

	if (!g_ascii_isdigit(name[0]) || strstr(name, TEMP_INFIX ".") ||
	    !(g_str_has_suffix(name, ".png") || g_str_has_suffix(name, ".wav")))
		return -1;
	id = g_ascii_strtoll(name, &end, 10);
	return *end == '-' ? id : -1;
}

static bool is_temp_name(const char *name)
{
	return g_str_has_suffix(name, TEMP_INFIX ".png") || g_str_has_suffix(name, TEMP_INFIX ".wav");
}

static bool is_day_folder(const char *name)
{
	if (strcmp(name, "undated") == 0)
		return true;
	for (int i = 0; i < 8; i++)
		if (!g_ascii_isdigit(name[i]))
			return false;
	return name[8] == '\0';
}

/* Removes the temporary files of one day folder, and the files no media
 * row names. Returns the files removed. */
static int64_t sweep_day(db_log *db, const char *day)
{
	char *dir = g_build_filename(db->media_dir, day, NULL);
	GDir *d = g_dir_open(dir, 0, NULL);
	GPtrArray *names = g_ptr_array_new_with_free_func(g_free);
	GHashTable *known = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
	int64_t min_id = INT64_MAX, removed = 0;
	sqlite3_stmt *st = NULL;
	const char *name;
	int rc;

	if (!d)
		goto out;
	while ((name = g_dir_read_name(d))) {
		int64_t id = media_name_id(name);

		if (id >= 0)
			min_id = MIN(min_id, id);
		if (id >= 0 || is_temp_name(name))
			g_ptr_array_add(names, g_strdup(name));
	}
	g_dir_close(d);
	/* The rows of the ids in the folder, through the inspection index. */
	if (min_id != INT64_MAX) {
		if (sqlite3_prepare_v2(db->conn, "SELECT path FROM media WHERE inspection_id >= ?1",
				       -1, &st, NULL) != SQLITE_OK)
			goto out;
		sqlite3_bind_int64(st, 1, min_id);
		while ((rc = sqlite3_step(st)) == SQLITE_ROW)
			g_hash_table_add(known, g_strdup((const char *)sqlite3_column_text(st, 0)));
		if (rc != SQLITE_DONE)
			goto out;   /* not sure which files have rows: keep them all */
	}
	for (guint i = 0; i < names->len; i++) {
		const char *n = g_ptr_array_index(names, i);
		char *rel = g_build_filename(day, n, NULL);

		if (is_temp_name(n) || !g_hash_table_contains(known, rel)) {
			char *full = g_build_filename(db->media_dir, rel, NULL);

			if (g_remove(full) == 0)
				removed++;
			else if (errno != ENOENT)
				g_warning("database %s: cannot remove %s: %s", db->path, full,
					  g_strerror(errno));
			g_free(full);
		}
		g_free(rel);
	}
out:
	sqlite3_finalize(st);
	g_hash_table_destroy(known);
	g_ptr_array_free(names, TRUE);
	g_free(dir);
	return removed;
}

/* Only the media thread of the log holding the lock writes files, so no
 * other log's files are taken for leftovers while their rows are on the
 * way. The lock goes with the process, also with a SIGKILL. A crash can
 * only leave files in the folders being written when it came: the two
 * whose entries changed last (two at a change of day). */
#define SWEEP_FOLDERS 2

/* Sweeps the SWEEP_FOLDERS day folders changed last in <media_dir>/<sub>
 * (sub NULL: the media directory itself). Returns the files removed. */
static int64_t sweep_latest(db_log *db, const char *sub)
{
	struct {
		char *name;
		int64_t mtime_ns;
	} last[SWEEP_FOLDERS] = { { 0 } };
	char *top = sub ? g_build_filename(db->media_dir, sub, NULL) : g_strdup(db->media_dir);
	GDir *d = g_dir_open(top, 0, NULL);
	const char *name;
	int64_t removed = 0;

	while (d && (name = g_dir_read_name(d))) {
		char *full = g_build_filename(top, name, NULL);
		struct stat sb;
		int64_t t;

		if (is_day_folder(name) && stat(full, &sb) == 0 && S_ISDIR(sb.st_mode)) {
			t = (int64_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec;
			for (int i = 0; i < SWEEP_FOLDERS; i++)
				if (!last[i].name || t > last[i].mtime_ns) {
					g_free(last[SWEEP_FOLDERS - 1].name);
					memmove(&last[i + 1], &last[i],
						sizeof last[0] * (SWEEP_FOLDERS - 1 - (size_t)i));
					last[i].name = g_strdup(name);
					last[i].mtime_ns = t;
					break;
				}
		}
		g_free(full);
	}
	if (d)
		g_dir_close(d);
	for (int i = 0; i < SWEEP_FOLDERS; i++)
		if (last[i].name) {
			char *rel = sub ? g_build_filename(sub, last[i].name, NULL)
					: g_strdup(last[i].name);

			removed += sweep_day(db, rel);
			g_free(rel);
			g_free(last[i].name);
		}
	g_free(top);
	return removed;
}

void db__sweep_media(db_log *db)
{
	int64_t removed;
	int fd = open(db->media_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0)
		return;
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		g_message("database %s: %s is in use by another log: not checked for leftovers",
			  db->path, db->media_dir);
		close(fd);
		return;
	}
	db->media_lock_fd = fd;
	/* The long-term files and the ring's, each in its own day folders. */
	removed = sweep_latest(db, NULL) + sweep_latest(db, DB_RING_FOLDER);
	if (removed)
		g_message("database %s: removed %" PRId64 " file(s) a crash left in %s (temporary, "
			  "or without a row)", db->path, removed, db->media_dir);
}
