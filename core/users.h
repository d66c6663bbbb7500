/* The review server's users file: who may read, review and administer, by
 * bearer token. One user per line, three words:
 *
 *   NAME ROLE SHA256
 *
 * NAME is 1 to 64 of [A-Za-z0-9._@-]; ROLE is viewer, reviewer or admin;
 * SHA256 is the SHA-256 of the user's token in 64 hex digits. Blank lines
 * and lines starting with # are skipped. vigild (app/review.c) reads it,
 * vigilctl user adds, lists and removes users. No state is shared between
 * threads; a users object is used by one thread at a time. */
#ifndef VIGIL_CORE_USERS_H
#define VIGIL_CORE_USERS_H

#include <stddef.h>
#include <stdint.h>

/* Ordered: a role may do what the roles below it may. */
enum users_role {
	USERS_ROLE_VIEWER = 1,    /* reads */
	USERS_ROLE_REVIEWER,      /* also posts reviews */
	USERS_ROLE_ADMIN,         /* also admin actions */
};

struct users_entry {
	const char *name;
	enum users_role role;
	uint8_t sha256[32];
	int line;                 /* in the file, from 1 */
};

typedef struct users users;

/* Reads path. 0 with *out set (users_free it); -EINVAL for a bad line, a
 * name given twice or a token hash given twice, with *err
 * "PATH:LINE: what is wrong"; another negative errno when the file cannot
 * be read, with *err "PATH: why". *err is g_free'd by the caller. An empty
 * file is a valid one with no users. */
int users_load(const char *path, users **out, char **err);
void users_free(users *u);  /* NULL ok */

size_t users_count(const users *u);
/* The i-th user in file order; owned by u. */
const struct users_entry *users_get(const users *u, size_t i);
const struct users_entry *users_find_name(const users *u, const char *name);
/* The user whose token this is, or NULL. Compares against every user's
 * hash whatever matches, so the time taken does not tell which user, or
 * how near a guess came. */
const struct users_entry *users_find_token(const users *u, const char *token, size_t len);

/* "viewer", "reviewer", "admin"; and back (-1 for anything else). */
const char *users_role_name(enum users_role role);
int users_role_from_name(const char *name);
/* Whether name is a valid user name. */
int users_name_ok(const char *name);

/* SHA-256 of a token, which is all that is ever stored of it. */
void users_token_digest(const char *token, size_t len, uint8_t out[32]);
/* A new token: 32 bytes from the kernel's random source (getrandom), as 64
 * hex digits; NULL when the kernel gives none. The caller g_free's it. */
char *users_new_token(void);
/* The line for a user: "NAME ROLE SHA256\n"; the caller g_free's it. */
char *users_format_line(const char *name, enum users_role role, const char *token);

#endif
