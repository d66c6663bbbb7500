/* The users file (users.h). */
#include <errno.h>
#include <string.h>
#include <sys/random.h>

#include <glib.h>

#include "core/users.h"

#define USERS_MAX_NAME 64

struct users {
	GPtrArray *entries;  /* struct users_entry, names owned */
};

static const char *const role_names[] = { NULL, "viewer", "reviewer", "admin", NULL };

const char *users_role_name(enum users_role role)
{
	return role >= USERS_ROLE_VIEWER && role <= USERS_ROLE_ADMIN ? role_names[role] : "?";
}

int users_role_from_name(const char *name)
{
	for (int r = USERS_ROLE_VIEWER; r <= USERS_ROLE_ADMIN; r++)
		if (name && strcmp(name, role_names[r]) == 0)
			return r;
	return -1;
}

int users_name_ok(const char *name)
{
	size_t n = name ? strlen(name) : 0;

	if (n == 0 || n > USERS_MAX_NAME)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!g_ascii_isalnum(name[i]) && !strchr("._@-", name[i]))
			return 0;
	return 1;
}

void users_token_digest(const char *token, size_t len, uint8_t out[32])
{
	GChecksum *c = g_checksum_new(G_CHECKSUM_SHA256);
	gsize n = 32;

	g_checksum_update(c, (const guchar *)token, (gssize)len);
	g_checksum_get_digest(c, out, &n);
	g_checksum_free(c);
}

char *users_new_token(void)
{
	uint8_t raw[32];
	char *hex = g_malloc(2 * sizeof raw + 1);

	/* getrandom blocks only until the kernel's pool is first seeded; a
	 * request of 32 bytes is never cut short once it is. */
	if (getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw) {
		g_free(hex);
		return NULL;
	}
	for (size_t i = 0; i < sizeof raw; i++)
		g_snprintf(hex + 2 * i, 3, "%02x", raw[i]);
	memset(raw, 0, sizeof raw);
	return hex;
}

char *users_format_line(const char *name, enum users_role role, const char *token)
{
	uint8_t d[32];
	GString *line = g_string_new(NULL);

	users_token_digest(token, strlen(token), d);
	g_string_printf(line, "%s %s ", name, users_role_name(role));
	for (int i = 0; i < 32; i++)
		g_string_append_printf(line, "%02x", d[i]);
	g_string_append_c(line, '\n');
	return g_string_free(line, FALSE);
}

static void entry_free(gpointer p)
{
	struct users_entry *e = p;

	g_free((char *)e->name);
	g_free(e);
}

void users_free(users *u)
{
	if (!u)
		return;
	if (u->entries)
		g_ptr_array_unref(u->entries);
	g_free(u);
}

size_t users_count(const users *u)
{
	return u->entries->len;
}

const struct users_entry *users_get(const users *u, size_t i)
{
	return i < u->entries->len ? g_ptr_array_index(u->entries, i) : NULL;
}

const struct users_entry *users_find_name(const users *u, const char *name)
{
	for (guint i = 0; i < u->entries->len; i++) {
		const struct users_entry *e = g_ptr_array_index(u->entries, i);

		if (strcmp(e->name, name) == 0)
			return e;
	}
	return NULL;
}

const struct users_entry *users_find_token(const users *u, const char *token, size_t len)
{
	const struct users_entry *found = NULL;
	uint8_t given[32];

	users_token_digest(token, len, given);
	for (guint i = 0; i < u->entries->len; i++) {
		const struct users_entry *e = g_ptr_array_index(u->entries, i);
		uint8_t diff = 0;

		for (int k = 0; k < 32; k++)
			diff |= (uint8_t)(given[k] ^ e->sha256[k]);
		if (diff == 0)
			found = e;
	}
	return found;
}

/* One line's three words into e; NULL, or what is wrong (static text or
 * *why_owned). */
static const char *parse_line(char *text, struct users_entry *e, char **why_owned)
{
	char **w = g_strsplit_set(g_strstrip(text), " \t", -1);
	char *words[4] = { NULL };
	const char *why = NULL;
	int n = 0, role;

	for (int i = 0; w[i]; i++)
		if (*w[i]) {
			if (n < 4)
				words[n] = w[i];
			n++;
		}
	if (n != 3) {
		why = "a user is three words: NAME ROLE SHA256";
	} else if (!users_name_ok(words[0])) {
		*why_owned = g_strdup_printf("name '%.70s' is not 1 to %d of A-Z a-z 0-9 . _ @ -",
					     words[0], USERS_MAX_NAME);
	} else if ((role = users_role_from_name(words[1])) < 0) {
		*why_owned = g_strdup_printf("role '%.40s' of %s is not viewer, reviewer or admin",
					     words[1], words[0]);
	} else if (strlen(words[2]) != 64) {
		*why_owned = g_strdup_printf("the token hash of %s is not 64 hex digits (SHA-256; "
					     "vigilctl user add writes it)", words[0]);
	} else {
		for (int i = 0; i < 32 && !why; i++) {
			int hi = g_ascii_xdigit_value(words[2][2 * i]);
			int lo = g_ascii_xdigit_value(words[2][2 * i + 1]);

			if (hi < 0 || lo < 0)
				why = "the token hash is not 64 hex digits";
			else
				e->sha256[i] = (uint8_t)(hi << 4 | lo);
		}
		if (!why) {
			e->name = g_strdup(words[0]);
			e->role = (enum users_role)role;
		}
	}
	g_strfreev(w);
	return why;
}

int users_load(const char *path, users **out, char **err)
{
	users *u = g_new0(users, 1);
	char *text = NULL, **lines = NULL;
	GError *gerr = NULL;
	int rc = -EINVAL;

	*out = NULL;
	u->entries = g_ptr_array_new_with_free_func(entry_free);
	if (!g_file_get_contents(path, &text, NULL, &gerr)) {
		*err = g_strdup_printf("%s: %s", path, gerr->message);
		rc = gerr->domain == G_FILE_ERROR && gerr->code == G_FILE_ERROR_NOENT ? -ENOENT
										       : -EIO;
		g_error_free(gerr);
		goto fail;
	}
	lines = g_strsplit(text, "\n", -1);
	for (int i = 0; lines[i]; i++) {
		struct users_entry *e;
		const char *why;
		char *why_owned = NULL, *s = g_strstrip(lines[i]);
		const struct users_entry *other;

		if (!*s || *s == '#')
			continue;
		e = g_new0(struct users_entry, 1);
		e->line = i + 1;
		if ((why = parse_line(s, e, &why_owned)) || why_owned) {
			*err = g_strdup_printf("%s:%d: %s", path, i + 1, why ? why : why_owned);
			g_free(why_owned);
			entry_free(e);
			goto fail;
		}
		if ((other = users_find_name(u, e->name))) {
			*err = g_strdup_printf("%s:%d: user %s is given twice (also line %d)", path,
					       i + 1, e->name, other->line);
			entry_free(e);
			goto fail;
		}
		for (guint k = 0; k < u->entries->len; k++) {
			other = g_ptr_array_index(u->entries, k);
			/* One token, two names: who did what could not be told. */
			if (memcmp(other->sha256, e->sha256, 32) == 0) {
				*err = g_strdup_printf("%s:%d: user %s has the same token as %s "
						       "(line %d)", path, i + 1, e->name,
						       other->name, other->line);
				entry_free(e);
				goto fail;
			}
		}
		g_ptr_array_add(u->entries, e);
	}
	*out = u;
	u = NULL;
	rc = 0;
fail:
	g_strfreev(lines);
	g_free(text);
	users_free(u);
	return rc;
}
