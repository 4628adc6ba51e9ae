/*
 * store.h: the one storage interface of authsvc, and the only module that speaks SQL.
 *
 * The embedded backend is SQLite in WAL mode: when a write function (or as_store_commit) returns
 * AS_OK, the change survives kill -9 of the process; it is on disk (surviving a power loss) once
 * as_store_sync_mine (or as_store_sync) has returned, which callers do before acknowledging it.
 * Concurrent callers share one disk sync (group commit). The exception: a token or certificate
 * insert outside an explicit transaction goes into a transaction shared with other threads'
 * inserts (the group transaction), which the next sync covering it commits (or this store's
 * next other write, or a read on the inserting thread, which sees its own rows); until then it
 * does not survive kill -9 and other connections do not see it. Each thread gets its
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
/* Commits the group transaction, closes every per-thread connection and the writer connection,
 * and syncs what was committed. No thread may be inside a call on st. NULL is fine. */
void as_store_close(struct as_store *st);

/*
 * Explicit transactions on the calling thread's connection (BEGIN IMMEDIATE). Single write calls
 * outside a transaction are their own transaction. Nested begin is AS_ERR_INTERNAL.
 */
enum as_err as_store_begin(struct as_store *st) AS_WUR;
enum as_err as_store_commit(struct as_store *st) AS_WUR;
void as_store_rollback(struct as_store *st);
/* Makes every commit so far (as_store_sync) or the calling thread's latest commit
 * (as_store_sync_mine; AS_OK at once when it has none pending) durable, committing the group
 * transaction first when it holds them. AS_ERR_STORE when the disk sync fails, or when that
 * commit failed (the group's rows are gone). */
enum as_err as_store_sync(struct as_store *st) AS_WUR;
enum as_err as_store_sync_mine(struct as_store *st) AS_WUR;
/*
 * A number that grows after every commit that may change what a caller has cached from the
 * store: every write except inserting a token or a certificate and writing a setting (token
 * updates and deletions with their cascades, policies, mounts, roles, intentions, revocations,
 * CA generations). A cache entry filled after reading the epoch is valid while the epoch is
 * unchanged; a revocation has moved it before its commit call returns.
 */
uint64_t as_store_epoch(struct as_store *st);
/* The number of the calling thread's latest commit (0: none), and making every commit up to a
 * number durable. */
uint64_t as_store_my_commit(struct as_store *st);
enum as_err as_store_sync_to(struct as_store *st, uint64_t seq) AS_WUR;
/* Durations of the commits so far (explicit ones and single writes), for sys/metrics. Borrowed
 * for the store's life. */
const struct as_hist *as_store_commit_hist(const struct as_store *st);

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
 * fields are stored as text and opaque to the store. A packed record (the token cache's copies)
 * holds its strings in its own allocation, so they are read-only and never freed one by one.
 */
struct as_token_rec {
    char accessor[AS_ACCESSOR_LEN + 1];
    unsigned char secret_hash[32]; /* HMAC-SHA256(server key, secret); never the secret */
    char *parent;                  /* parent accessor, NULL for an orphan / root */
    char *policies_json;           /* JSON array of policy names */
    char *meta_json;               /* JSON object of string->string, or NULL */
    char *display_name;
    char *path;               /* creation path, e.g. "auth/token/create" */
    char *spiffe_ids_json;    /* JSON array, or NULL */
    char *allowed_dns_json;   /* JSON array of globs, or NULL */
    char *mount;              /* auth mount that issued it ("token" for the token store) */
    char *login_cert;         /* serial (colon hex) of one of our X.509-SVIDs this token
                                 logged in with (cert method), or NULL (schema v3) */
    char *bound_cidrs_json;   /* JSON array of the networks it may be used from, or NULL
                                 for anywhere (schema v6) */
    int64_t creation_time;    /* unix seconds */
    int64_t expire_time;      /* unix seconds; 0 = never expires (root tokens) */
    int64_t creation_ttl;     /* seconds */
    int64_t explicit_max_ttl; /* seconds, 0 = none */
    int64_t period;           /* seconds, 0 = none */
    int64_t num_uses;         /* remaining uses; 0 = unlimited; -1 = used up, revoke it */
    bool renewable;
    bool orphan;
    bool packed; /* the strings live in t's own block (see above) */
};
void as_token_rec_free(struct as_token_rec *t); /* frees owned strings and t itself; NULL ok */

/* Inserts a new token (into the group transaction outside an explicit one, see the top).
 * AS_ERR_EXISTS if the accessor or hash is taken. */
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
enum as_err as_store_token_use(struct as_store *st, const char *accessor,
                               int64_t *remaining) AS_WUR;
/*
 * Deletes the token and, when tree is true, every descendant (children, grandchildren, ...),
 * atomically, and in the same transaction marks revoked (revoked_at = now) every SVID record
 * those tokens obtained (SPEC §6). Children of a token deleted with tree=false become orphans
 * (parent = NULL). *deleted (may be NULL) receives a malloc'd array of the deleted accessors (each
 * malloc'd) and *ndeleted its length; free with as_store_strv_free. AS_ERR_NOT_FOUND if the token
 * is absent.
 */
enum as_err as_store_token_delete(struct as_store *st, const char *accessor, bool tree,
                                  char ***deleted, size_t *ndeleted) AS_WUR;
/* All accessors, sorted; free with as_store_strv_free. */
enum as_err as_store_token_list(struct as_store *st, char ***accessors, size_t *n) AS_WUR;
/* Deletes tokens whose expire_time is in (0, now] (with their subtrees): at most
 * AS_STORE_PURGE_BATCH of them per call, so no call holds the write lock for long; call again
 * while *n (rows deleted, subtrees included) is at least that. */
#define AS_STORE_PURGE_BATCH 1000
enum as_err as_store_token_purge_expired(struct as_store *st, int64_t now, size_t *n) AS_WUR;

/* ---- policies ---- */
/* Stores the raw policy text under name (insert or replace). */
enum as_err as_store_policy_put(struct as_store *st, const char *name, const char *text) AS_WUR;
/* *text is malloc'd. AS_ERR_NOT_FOUND if absent. */
enum as_err as_store_policy_get(struct as_store *st, const char *name, char **text) AS_WUR;
enum as_err as_store_policy_delete(struct as_store *st, const char *name) AS_WUR;
/* All names, sorted; free with as_store_strv_free. */
enum as_err as_store_policy_list(struct as_store *st, char ***names, size_t *n) AS_WUR;

/* ---- issued SVIDs (schema version 2) ---- */
/*
 * One issued SVID: an X.509 certificate (kind "x509", key = serial in lowercase colon hex) or a
 * JWT-SVID (kind "jwt", key = jti). Strings and der are owned by the record.
 */
struct as_cert_rec {
    char serial[72];
    char kind[8]; /* "x509" or "jwt" */
    char *spiffe_id;
    char *dns_json;       /* JSON array of DNS SANs, or NULL */
    char *token_accessor; /* the token that obtained it, or NULL */
    char *mount;          /* auth mount of that token's login ("token" for token-store tokens) */
    char *role;           /* role of that login, or NULL */
    char *subject;        /* login subject (JWT sub / cert CN), or NULL */
    int64_t ca_gen;       /* CA generation (x509) or JWT key generation that signed it */
    int64_t not_before;
    int64_t not_after;
    int64_t revoked_at; /* 0 = not revoked */
    int64_t issued_at;  /* when it was issued (X.509 not_before is backdated) */
    int64_t seq;        /* insertion order, set by the store (for cursors) */
    unsigned char *der; /* the certificate (x509), or NULL */
    size_t der_len;
};
void as_cert_rec_free(struct as_cert_rec *c); /* NULL ok */
void as_cert_recs_free(struct as_cert_rec **v, size_t n);

/* Inserts a record (seq is assigned; into the group transaction outside an explicit one, see
 * the top). AS_ERR_EXISTS if the serial is taken. */
enum as_err as_store_cert_insert(struct as_store *st, struct as_cert_rec *c) AS_WUR;
enum as_err as_store_cert_get(struct as_store *st, const char *serial,
                              struct as_cert_rec **out) AS_WUR;
/* Marks a record revoked at `at` (kept if already revoked: *was_revoked says so, and *at_out
 * holds the effective time). AS_ERR_NOT_FOUND if absent. In the same transaction, every token
 * that logged in with this certificate (login_cert) is deleted with its subtree, and the SVIDs
 * those tokens obtained are revoked in turn — repeatedly, until nothing more changes (SPEC §5:
 * revoking a certificate revokes the token and everything it obtained). */
enum as_err as_store_cert_revoke(struct as_store *st, const char *serial, int64_t at,
                                 int64_t *at_out, bool *was_revoked) AS_WUR;
/* Serials of kind x509 (all, or only revoked ones), sorted. as_store_strv_free. */
enum as_err as_store_cert_list(struct as_store *st, bool revoked_only, char ***serials,
                               size_t *n) AS_WUR;
/* Revoked, not yet expired (not_after > now) x509 records of one CA generation, for its CRL:
 * serials and revocation times in parallel arrays (free with as_store_strv_free and free). */
enum as_err as_store_cert_crl_entries(struct as_store *st, int64_t ca_gen, int64_t now,
                                      char ***serials, int64_t **revoked_at, size_t *n) AS_WUR;
/* The latest not_after of the SVIDs (x509 and jwt) signed by generation ca_gen; 0 if none: a
 * generation stays in the bundle until then. */
enum as_err as_store_cert_max_not_after(struct as_store *st, int64_t ca_gen, int64_t *out) AS_WUR;

/* Inventory query (SPEC §8), newest first. */
enum as_cert_state { AS_CERT_ANY, AS_CERT_ACTIVE, AS_CERT_EXPIRED, AS_CERT_REVOKED };
struct as_cert_query {
    const char *spiffe_glob; /* "*" matches any run of characters; NULL = all */
    enum as_cert_state state;
    int64_t now;       /* for active/expired */
    int64_t since;     /* issued_at >= since; 0 = no bound */
    int64_t until;     /* issued_at <= until; 0 = no bound */
    int64_t after_seq; /* only seq < after_seq; 0 = from the newest */
    int64_t limit;     /* 1..1000 */
};
enum as_err as_store_cert_query(struct as_store *st, const struct as_cert_query *q,
                                struct as_cert_rec ***out, size_t *n) AS_WUR;

/* ---- CA generations (schema version 2) ---- */
struct as_ca_gen_rec {
    int64_t id;    /* assigned by the store on insert, increasing */
    char *base;    /* file base name in the data dir ("ca", "ca-2", ...) */
    char *jwt_kid; /* kid of the generation's JWT signing key */
    char *state;   /* "prepared", "active" or "retired" */
    int64_t not_before;
    int64_t not_after;
    int64_t published_at; /* when it entered the bundle */
    int64_t activate_at;  /* when a prepared generation becomes active */
};
void as_ca_gen_rec_free(struct as_ca_gen_rec *g);
void as_ca_gen_recs_free(struct as_ca_gen_rec **v, size_t n);
/* Inserts g (g->id is set). */
enum as_err as_store_ca_gen_insert(struct as_store *st, struct as_ca_gen_rec *g) AS_WUR;
/* All generations in id order. */
enum as_err as_store_ca_gen_list(struct as_store *st, struct as_ca_gen_rec ***out,
                                 size_t *n) AS_WUR;
/* Updates state and activate_at of generation id. AS_ERR_NOT_FOUND if absent. */
enum as_err as_store_ca_gen_update(struct as_store *st, int64_t id, const char *state,
                                   int64_t activate_at) AS_WUR;

/* ---- auth mounts and roles (schema version 3) ---- */
struct as_mount_rec {
    char *path;     /* mount path without slashes, e.g. "jwt", "k8s", "cert" */
    char *type;     /* "jwt" or "cert" */
    char *accessor; /* "auth_jwt_<hex>" */
    char *description;
    char *config_json; /* method configuration (JSON object), or NULL when not configured */
    int64_t created;
};
void as_mount_rec_free(struct as_mount_rec *m);
void as_mount_recs_free(struct as_mount_rec **v, size_t n);
/* Inserts a mount. AS_ERR_EXISTS if the path is taken. */
enum as_err as_store_mount_insert(struct as_store *st, const struct as_mount_rec *m) AS_WUR;
enum as_err as_store_mount_get(struct as_store *st, const char *path,
                               struct as_mount_rec **out) AS_WUR;
enum as_err as_store_mount_list(struct as_store *st, struct as_mount_rec ***out, size_t *n) AS_WUR;
/* Replaces the mount's config JSON. AS_ERR_NOT_FOUND if absent. */
enum as_err as_store_mount_set_config(struct as_store *st, const char *path,
                                      const char *config_json) AS_WUR;
/*
 * Unmounts: in one transaction deletes the mount, its roles, and every token whose mount is
 * path (with their subtrees), revoking the SVIDs those tokens obtained (and cascading through
 * login_cert as as_store_cert_revoke does). *ntokens (may be NULL) = tokens deleted.
 * AS_ERR_NOT_FOUND if absent.
 */
enum as_err as_store_mount_delete(struct as_store *st, const char *path, size_t *ntokens) AS_WUR;

/* Roles: a JSON object per (mount, name); the method owns its shape. */
enum as_err as_store_role_put(struct as_store *st, const char *mount, const char *name,
                              const char *json) AS_WUR;
/* *json is malloc'd. AS_ERR_NOT_FOUND if absent. */
enum as_err as_store_role_get(struct as_store *st, const char *mount, const char *name,
                              char **json) AS_WUR;
enum as_err as_store_role_delete(struct as_store *st, const char *mount, const char *name) AS_WUR;
/* Role names of a mount, sorted; as_store_strv_free. */
enum as_err as_store_role_list(struct as_store *st, const char *mount, char ***names,
                               size_t *n) AS_WUR;

/* ---- intentions (schema version 4) ---- */
struct as_intention_rec {
    char id[40];       /* UUID, set by the caller */
    char *source;      /* SPIFFE ID, prefix "spiffe://td/path/" "*", or "*" */
    char *destination; /* same forms */
    char *action;      /* "allow" or "deny" */
    char *description;
    int64_t created;
    int64_t updated;
};
void as_intention_rec_free(struct as_intention_rec *i);
void as_intention_recs_free(struct as_intention_rec **v, size_t n);
/* Inserts or replaces by id (created is kept on replace). */
enum as_err as_store_intention_put(struct as_store *st, const struct as_intention_rec *i) AS_WUR;
enum as_err as_store_intention_get(struct as_store *st, const char *id,
                                   struct as_intention_rec **out) AS_WUR;
enum as_err as_store_intention_delete(struct as_store *st, const char *id) AS_WUR;
/* All intentions, ordered by id. */
enum as_err as_store_intention_list(struct as_store *st, struct as_intention_rec ***out,
                                    size_t *n) AS_WUR;
/* A number that changes whenever an intention is written or deleted (by any process), so an
 * in-memory copy knows when to reload. */
enum as_err as_store_intention_version(struct as_store *st, int64_t *out) AS_WUR;

/* Frees an array of n malloc'd strings and the array. NULL ok. */
void as_store_strv_free(char **v, size_t n);

#endif
