/*
 * store.h: the one storage interface of authsvc, and the only module that speaks SQL.
 *
 * The embedded backend is SQLite in WAL mode with synchronous=FULL: when a write function (or
 * as_store_commit) returns AS_OK, the change is on disk and survives kill -9. Each thread gets its
 * own connection, opened lazily on first use; a struct as_store may be shared by all threads.
 * Migrations are versioned (PRAGMA user_version) and applied by as_store_open.
 *
 * Errors: AS_ERR_NOT_FOUND for a missing row, AS_ERR_EXISTS for a uniqueness conflict,
 * AS_ERR_STORE when SQLite fails (busy past the timeout, I/O, corrupt), AS_ERR_NOMEM.
 */
#ifndef AS_STORE_H
#define AS_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/common.h"

struct as_store;

/* Opens (creating if missing, mode 0600) the database at path and migrates it. */
enum as_err as_store_open(const char *path, struct as_store **out) AS_WUR;
/* Closes every per-thread connection. NULL is fine. */
void as_store_close(struct as_store *st);

/*
 * Explicit transactions on the calling thread's connection (BEGIN IMMEDIATE). Single write calls
 * outside a transaction are their own transaction. Nested begin is AS_ERR_INTERNAL.
 */
enum as_err as_store_begin(struct as_store *st) AS_WUR;
enum as_err as_store_commit(struct as_store *st) AS_WUR;
void as_store_rollback(struct as_store *st);

/* ---- settings: small named blobs (server keys, bootstrap state) ---- */
/* *val is malloc'd (caller frees; wipe if secret), *len its length; AS_ERR_NOT_FOUND if unset. */
enum as_err as_store_setting_get(struct as_store *st, const char *key, unsigned char **val,
                                 size_t *len) AS_WUR;
enum as_err as_store_setting_put(struct as_store *st, const char *key, const void *val,
                                 size_t len) AS_WUR;
/* Inserts only if the key is absent; AS_ERR_EXISTS otherwise (used for "exactly once" steps). */
enum as_err as_store_setting_insert(struct as_store *st, const char *key, const void *val,
                                    size_t len) AS_WUR;

/* ---- tokens ---- */
#define AS_ACCESSOR_LEN 24 /* printable characters */

/*
 * One token row. Strings are owned by the record (as_token_rec_free frees them). JSON-valued
 * fields are stored as text and opaque to the store.
 */
struct as_token_rec {
    char accessor[AS_ACCESSOR_LEN + 1];
    unsigned char secret_hash[32]; /* HMAC-SHA256(server key, secret); never the secret */
    char *parent;                  /* parent accessor, NULL for an orphan / root */
    char *policies_json;           /* JSON array of policy names */
    char *meta_json;               /* JSON object of string->string, or NULL */
    char *display_name;
    char *path;                    /* creation path, e.g. "auth/token/create" */
    char *spiffe_ids_json;         /* JSON array, or NULL */
    char *allowed_dns_json;        /* JSON array of globs, or NULL */
    char *mount;                   /* auth mount that issued it ("token" for the token store) */
    int64_t creation_time;         /* unix seconds */
    int64_t expire_time;           /* unix seconds; 0 = never expires (root tokens) */
    int64_t creation_ttl;          /* seconds */
    int64_t explicit_max_ttl;      /* seconds, 0 = none */
    int64_t period;                /* seconds, 0 = none */
    int64_t num_uses;              /* remaining uses; 0 = unlimited; -1 = used up, revoke it */
    bool renewable;
    bool orphan;
};
void as_token_rec_free(struct as_token_rec *t); /* frees owned strings and t itself; NULL ok */

/* Inserts a new token. AS_ERR_EXISTS if the accessor or hash is taken. */
enum as_err as_store_token_insert(struct as_store *st, const struct as_token_rec *t) AS_WUR;
/* Lookups; *out is a new record (as_token_rec_free). AS_ERR_NOT_FOUND if absent. */
enum as_err as_store_token_by_hash(struct as_store *st, const unsigned char hash[32],
                                   struct as_token_rec **out) AS_WUR;
enum as_err as_store_token_by_accessor(struct as_store *st, const char *accessor,
                                       struct as_token_rec **out) AS_WUR;
/* Sets expire_time (and creation_ttl when ttl >= 0) after a renewal. AS_ERR_NOT_FOUND if absent. */
enum as_err as_store_token_set_expiry(struct as_store *st, const char *accessor,
                                      int64_t expire_time, int64_t ttl) AS_WUR;
/*
 * Uses a limited-use token once: if num_uses is 0 (unlimited) nothing changes and *remaining is
 * 0; otherwise num_uses is decremented in the same statement and *remaining is the count left
 * after this use (0 means this was the last use: the caller then revokes it). The last use
 * leaves num_uses at -1, never 0, so a used-up token cannot read as unlimited before it is revoked.
 * AS_ERR_NOT_FOUND if the token is gone or used up (a concurrent last use won).
 */
enum as_err as_store_token_use(struct as_store *st, const char *accessor, int64_t *remaining) AS_WUR;
/*
 * Deletes the token and, when tree is true, every descendant (children, grandchildren, ...),
 * atomically. Children of a token deleted with tree=false become orphans (parent = NULL).
 * *deleted (may be NULL) receives a malloc'd array of the deleted accessors (each malloc'd) and
 * *ndeleted its length; free with as_store_strv_free. AS_ERR_NOT_FOUND if the token is absent.
 */
enum as_err as_store_token_delete(struct as_store *st, const char *accessor, bool tree,
                                  char ***deleted, size_t *ndeleted) AS_WUR;
/* All accessors, sorted; free with as_store_strv_free. */
enum as_err as_store_token_list(struct as_store *st, char ***accessors, size_t *n) AS_WUR;
/* Deletes tokens whose expire_time is in (0, now] (with their subtrees). *n = rows deleted. */
enum as_err as_store_token_purge_expired(struct as_store *st, int64_t now, size_t *n) AS_WUR;

/* ---- policies ---- */
/* Stores the raw policy text under name (insert or replace). */
enum as_err as_store_policy_put(struct as_store *st, const char *name, const char *text) AS_WUR;
/* *text is malloc'd. AS_ERR_NOT_FOUND if absent. */
enum as_err as_store_policy_get(struct as_store *st, const char *name, char **text) AS_WUR;
enum as_err as_store_policy_delete(struct as_store *st, const char *name) AS_WUR;
/* All names, sorted; free with as_store_strv_free. */
enum as_err as_store_policy_list(struct as_store *st, char ***names, size_t *n) AS_WUR;

/* Frees an array of n malloc'd strings and the array. NULL ok. */
void as_store_strv_free(char **v, size_t n);

#endif
