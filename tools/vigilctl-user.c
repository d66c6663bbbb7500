/* vigilctl user: the review server's users file ([review] users_file, see
 * core/users.h): add a user with a new token, list, remove. Its own
 * options, since it works on the users file, not on the log.
 *
 *   vigilctl user add NAME --role viewer|reviewer|admin --users FILE
 *   vigilctl user list --users FILE
 *   vigilctl user remove NAME --users FILE
 *
 * add prints the token once, on stdout, and keeps only its SHA-256. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib.h>
#include <glib/gstdio.h>

#include "core/users.h"
#include "tools/tool-common.h"
#include "tools/vigilctl-private.h"

#define USAGE "usage: vigilctl user add NAME --role viewer|reviewer|admin --users FILE\n" \
	      "       vigilctl user list --users FILE\n" \
	      "       vigilctl user remove NAME --users FILE\n"

/* The users in path; NULL with the reason on stderr, or, when missing_ok
 * and there is no such file, NULL with *missing set and nothing said. */
static users *load(const char *path, gboolean missing_ok, gboolean *missing)
{
	users *u = NULL;
	char *err = NULL;
	int rc = users_load(path, &u, &err);

	*missing = rc == -ENOENT && missing_ok;
	if (rc < 0 && !*missing)
		fprintf(stderr, "vigilctl user: %s\n", err);
	g_free(err);
	return u;
}

static int user_add(const char *file, const char *name, const char *role_name)
{
	gboolean missing;
	users *u = NULL;
	int role = users_role_from_name(role_name), fd = -1, rc = 1;
	char *token = NULL, *line = NULL;
	size_t len;

	/* The values first: a bad one is a usage error (2) whatever state
	 * the file is in. */
	if (!users_name_ok(name)) {
		fprintf(stderr, "vigilctl user add: name '%s' is not 1 to 64 of A-Z a-z 0-9 . _ @ -\n",
			name);
		return 2;
	}
	if (role < 0) {
		fprintf(stderr, "vigilctl user add: --role is viewer, reviewer or admin, not '%s'\n",
			role_name ? role_name : "(none)");
		return 2;
	}
	if (!(u = load(file, TRUE, &missing)) && !missing)
		goto out;
	if (u && users_find_name(u, name)) {
		fprintf(stderr, "vigilctl user add: %s is already in %s (remove it first for a new "
			"token)\n", name, file);
		goto out;
	}
	if (!(token = users_new_token())) {
		fprintf(stderr, "vigilctl user add: no random bytes from the kernel: %s\n",
			g_strerror(errno));
		goto out;
	}
	line = users_format_line(name, (enum users_role)role, token);
	len = strlen(line);
	/* Owner-only when made here: the hashes are no secret that opens
	 * anything, but who may do what is nobody else's business. */
	if ((fd = g_open(file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600)) < 0 ||
	    write(fd, line, len) != (ssize_t)len || fsync(fd) < 0) {
		fprintf(stderr, "vigilctl user add: cannot write %s: %s\n", file, g_strerror(errno));
		goto out;
	}
	printf("%s\n", token);
	fprintf(stderr, "vigilctl user: added %s (%s) to %s. The token above is shown only "
		"this once; vigild reads the users file at start, so restart it.\n", name,
		users_role_name((enum users_role)role), file);
	rc = 0;
out:
	if (fd >= 0)
		close(fd);
	if (token)
		memset(token, 0, strlen(token));
	g_free(token);
	g_free(line);
	users_free(u);
	return rc;
}

static int user_list(const char *file)
{
	gboolean missing;
	users *u = load(file, FALSE, &missing);

	if (!u)
		return 1;
	printf("%-24s %s\n", "name", "role");
	for (size_t i = 0; i < users_count(u); i++) {
		const struct users_entry *e = users_get(u, i);

		printf("%-24s %s\n", e->name, users_role_name(e->role));
	}
	users_free(u);
	return 0;
}

/* Rewrites the file without the user's line, keeping every other line
 * (comments too) and the file's mode; the new file replaces the old one
 * whole (g_file_set_contents), so vigild never reads half of it. */
static int user_remove(const char *file, const char *name)
{
	gboolean missing;
	users *u = load(file, FALSE, &missing);
	const struct users_entry *e;
	char *text = NULL, **lines = NULL;
	GString *out = g_string_new(NULL);
	GError *gerr = NULL;
	GStatBuf st;
	int rc = 1;

	if (!u)
		goto out;
	if (!(e = users_find_name(u, name))) {
		fprintf(stderr, "vigilctl user remove: no user %s in %s\n", name, file);
		goto out;
	}
	if (g_stat(file, &st) < 0 || !g_file_get_contents(file, &text, NULL, &gerr)) {
		fprintf(stderr, "vigilctl user remove: cannot read %s: %s\n", file,
			gerr ? gerr->message : g_strerror(errno));
		goto out;
	}
	lines = g_strsplit(text, "\n", -1);
	for (int i = 0; lines[i]; i++) {
		if (i + 1 == e->line)
			continue;
		g_string_append(out, lines[i]);
		if (lines[i + 1])
			g_string_append_c(out, '\n');
	}
	if (!g_file_set_contents_full(file, out->str, (gssize)out->len,
				      G_FILE_SET_CONTENTS_CONSISTENT, (int)(st.st_mode & 07777),
				      &gerr)) {
		fprintf(stderr, "vigilctl user remove: %s\n", gerr->message);
		goto out;
	}
	fprintf(stderr, "vigilctl user: removed %s from %s; restart vigild for it to count\n",
		name, file);
	rc = 0;
out:
	if (gerr)
		g_error_free(gerr);
	g_strfreev(lines);
	g_free(text);
	g_string_free(out, TRUE);
	users_free(u);
	return rc;
}

int vigilctl__main_user(int argc, char **argv)
{
	char *file = NULL, *role = NULL;
	GOptionEntry entries[] = {
		{ "users", 0, 0, G_OPTION_ARG_FILENAME, &file, "the users file", "FILE" },
		{ "role", 0, 0, G_OPTION_ARG_STRING, &role, "add: viewer, reviewer or admin", "ROLE" },
		{ NULL, 0, 0, 0, NULL, NULL, NULL },
	};
	GOptionContext *ctx = g_option_context_new("add NAME|list|remove NAME - the review "
						   "server's users");
	int rc = 2;

	/* argv[1] is "user"; GOption reads from argv[1] on, so skip it. */
	argv[1] = argv[0];
	argc--;
	argv++;
	if (tool_options_parse(ctx, entries, "vigilctl user", &argc, &argv) < 0)
		goto out;
	if (!file || argc < 2) {
		fputs(USAGE, stderr);
	} else if (role && strcmp(argv[1], "add") != 0) {
		/* Refused rather than ignored, as vigilctl's other options. */
		fprintf(stderr, "vigilctl user %s: --role is for add, not %s\n", argv[1], argv[1]);
	} else if (strcmp(argv[1], "add") == 0 && argc == 3) {
		rc = user_add(file, argv[2], role);
	} else if (strcmp(argv[1], "list") == 0 && argc == 2) {
		rc = user_list(file);
	} else if (strcmp(argv[1], "remove") == 0 && argc == 3) {
		rc = user_remove(file, argv[2]);
	} else {
		fputs(USAGE, stderr);
	}
out:
	g_option_context_free(ctx);
	g_free(file);
	g_free(role);
	return rc;
}
