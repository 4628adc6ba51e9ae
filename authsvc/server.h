/*
 * server.h: the daemon's internal surface, shared by the files of authsvc/ only: configuration,
 * the request/response objects the HTTP layer hands to handlers, the route table and handlers.
 */
#ifndef AS_SERVER_H
#define AS_SERVER_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "acl/acl.h"
#include "common/common.h"
#include "pki/pki.h"
#include "storage/store.h"

/* ---- configuration (SPEC §1, §10) ---- */
struct as_config {
    bool dev;
    enum as_log_level log_level; /* --log-level or AUTHSVC_LOG_LEVEL; default info */
    char *trust_domain;
    char *data_dir;
    char *listen;     /* "ADDR:PORT" */
    char *tls_listen; /* "ADDR:PORT", "" disables */
    char *tls_cert_file;
    char *tls_key_file;
    json_t *tls_names; /* array of extra DNS/IP names */
    char *storage_path;
    int64_t ca_ttl;
    char *upstream_cert_file; /* with upstream_key_file: our CAs are intermediates under it */
    char *upstream_key_file;
    char *audit_path;
    bool audit_log_allowed_checks;
    int64_t max_body_bytes;
    int64_t login_per_second;
    int64_t svid_default_ttl, svid_max_ttl, jwt_default_ttl, jwt_max_ttl, bundle_refresh_hint;
    int64_t crl_ttl;
    char *default_action;
};

/*
 * Parses "authsvc server" arguments (argv after "server") and the config file they name.
 * On a bad flag or config, prints a message naming the field to stderr and returns AS_ERR_CONFIG
 * (exit code 2).
 */
enum as_err as_config_load(int argc, char **argv, struct as_config *cfg) AS_WUR;
void as_config_free(struct as_config *cfg);

/* ---- CA generations and rotation (caset.c) ---- */
struct as_caset;

/* The generation to sign with now; pointers stay valid until as_caset_free. */
struct as_signing {
    int64_t gen_id;
    const struct as_ca *ca;
    const struct as_jwtkey *jwt;
};

struct as_server;
/* Loads every trusted generation from the store (creating the first one on a new install). */
enum as_err as_caset_open(struct as_server *srv, struct as_caset **out) AS_WUR;
void as_caset_free(struct as_caset *cs);
enum as_err as_caset_active(struct as_caset *cs, struct as_signing *out) AS_WUR;
/* PEM of every CA in the bundle (malloc'd), in generation order. */
char *as_caset_bundle_pem(struct as_caset *cs);
/* PEM of the issuing chain (as_ca_chain_pem: the CA, then its upstream chain) of every
 * generation in the bundle, concatenated (malloc'd; NULL when out of memory). Under an upstream
 * CA these are the intermediates between our SVIDs and the bundle's root. */
char *as_caset_chains_pem(struct as_caset *cs);
/* The SPIFFE bundle (JWKS) of every generation in the bundle; new reference. */
json_t *as_caset_jwks(struct as_caset *cs, int64_t refresh_hint);
/* The JWT-SVID keys in the bundle (borrowed), at most max. */
size_t as_caset_jwt_keys(struct as_caset *cs, const struct as_jwtkey **out, size_t max);
int64_t as_caset_sequence(struct as_caset *cs);
/* The generations with a CA (at most max), oldest first: for the metrics. */
struct as_gen_info {
    int64_t id;
    int64_t not_after;
    bool in_bundle;
    char state[16];
};
size_t as_caset_gens(struct as_caset *cs, struct as_gen_info *out, size_t max);
/* DER CRL of the active generation; PEM CRLs of every generation in the bundle (malloc'd). */
enum as_err as_caset_crl_der(struct as_caset *cs, unsigned char **der, size_t *len) AS_WUR;
enum as_err as_caset_crl_pem(struct as_caset *cs, char **pem) AS_WUR;
/* Runs due rotation steps; *next_event is when to call again; *activated when a new
 * generation became active (the listener certificate is then re-issued). */
enum as_err as_caset_tick(struct as_caset *cs, int64_t now, int64_t *next_event,
                          bool *activated) AS_WUR;
/* pki/rotate: prepare and publish now (if not yet), activate after activate_after seconds. */
enum as_err as_caset_rotate_now(struct as_caset *cs, int64_t activate_after,
                                int64_t *activate_at) AS_WUR;

/* ---- server ---- */
struct as_server {
    struct as_config cfg;
    struct as_store *store;
    struct as_tokens *tokens;
    struct as_caset *caset;
    struct as_audit *audit;
    struct as_json_cache *bodies; /* parsed bodies of the repeat_body routes */
    struct MHD_Daemon *http;
    struct MHD_Daemon *https;
    bool initialized; /* bootstrap done */
    pthread_t main_thread;
    pthread_mutex_t lock;
};

/* ---- requests and responses ---- */
enum as_method {
    AS_M_GET = 1u << 0,
    AS_M_POST = 1u << 1,
    AS_M_DELETE = 1u << 2,
    AS_M_LIST = 1u << 3,
    AS_M_HEAD = 1u << 4,
    AS_M_OTHER = 1u << 5,
};

#define AS_MAX_PARAMS 4

struct as_req {
    enum as_method method;
    const char *method_name;
    char path[1024];                   /* canonical, without "/v1/" */
    const char *params[AS_MAX_PARAMS]; /* ":name" captures, pointing into param_buf */
    char param_buf[1024];
    json_t *body;         /* parsed JSON object (never NULL in handlers) */
    const char *raw_body; /* the body as received (parsed by as_dispatch unless the route
                             says it is opaque) */
    size_t raw_len;
    const char *token;         /* presented secret, or NULL; borrowed */
    struct as_token_rec *auth; /* resolved token, NULL on unauthenticated routes */
    struct as_acl *acl;
    bool last_use; /* the token's final use happened in this request */
    char request_id[40];
    char remote[64];
    const struct as_route *route; /* set by as_dispatch once found, else NULL */
    bool audit_req_done;          /* the request's audit line has been written */
    int64_t start_ns;             /* monotonic, for the latency metrics */
    uint64_t store_mark;          /* the thread's latest store commit when the request began */
    struct as_buf audit_blocks;   /* the audit lines' "auth" and "request" members, written
                                     once for both lines (empty until then) */
    char login_mount[72];         /* a login's mount once it is known to exist (metrics) */
    struct MHD_Connection *conn;
    bool tls; /* the request came over the HTTPS listener */
    /* The TLS client certificate chain exactly as the client presented it (DER, leaf first),
     * judged by nobody yet: the TLS layer only proved the client holds the leaf's key
     * (PERF-NOTES trap 4); pki/clientcert.c decides what it is worth. npeer is the number the
     * client sent and may exceed AS_CLIENTCERT_MAX_CHAIN, of which only the first ones are
     * filled. Borrowed from the TLS session until the request ends. */
    size_t npeer;
    const unsigned char *peer_der[AS_CLIENTCERT_MAX_CHAIN];
    size_t peer_len[AS_CLIENTCERT_MAX_CHAIN];
};

struct as_resp {
    int status;         /* 0 until set; handlers set 200/204 */
    json_t *data;       /* envelope "data" */
    json_t *auth;       /* envelope "auth" */
    json_t *warnings;   /* array */
    json_t *raw_json;   /* bare JSON object instead of the envelope (sys/health) */
    bool copy_data_top; /* copy data keys to the top level (sys/policy, sys/auth) */
    char *raw;          /* raw body (PEM/DER) */
    size_t raw_len;
    const char *content_type;
    char err[256];        /* public error message when a handler fails */
    int retry_after;      /* seconds, sent as Retry-After with a 429 */
    const char *hdr_name; /* one extra response header (e.g. X-Authsvc-Spiffe-Id), or NULL */
    char hdr_value[AS_SPIFFE_MAX_ID + 1];
    json_t *audit_data; /* what the audit response line adds to data (a check's decision) */
    bool check_allowed; /* a proxy check said yes (decides whether it is audited) */
};

typedef enum as_err (*as_handler)(struct as_server *srv, struct as_req *req, struct as_resp *resp);

/* A request header (case-insensitive name), or NULL. Borrowed until the request ends. */
const char *as_req_header(const struct as_req *req, const char *name);
/* Looks up query parameter key, percent-decoded into out. false when absent or undecodable. */
bool as_req_query(const struct as_req *req, const char *key, char *out, size_t outlen);

/* Answers a LIST with {"keys": names} and takes the n names (freed here, as_store_strv_free);
 * none is Vault's empty 404 (AS_ERR_NOT_FOUND). */
enum as_err as_resp_keys(struct as_resp *resp, char **names, size_t n) AS_WUR;

/* Sets resp->err from a format and returns err: `return as_fail(resp, AS_ERR_INVALID, ...)`. */
enum as_err as_fail(struct as_resp *resp, enum as_err err, const char *fmt, ...) AS_PRINTF(3, 4);

/* ---- route table (routes.c) ---- */
enum as_auth_mode { AS_AUTH_NONE, AS_AUTH_TOKEN };
/* When a route's requests are audited (SPEC §8). */
enum as_audit_mode {
    AS_AUDIT_ALL,      /* every request: the request line before the handler runs */
    AS_AUDIT_READS,    /* every request, to a handler that changes nothing: both lines after it,
                          in one write (the request line before it when the request spends a
                          use of a limited-use token) */
    AS_AUDIT_NEVER,    /* sys/health */
    AS_AUDIT_CHECKS,   /* proxy checks: only denials, unless audit.log_allowed_checks; both
                          lines are written after the decision (a check changes nothing) */
    AS_AUDIT_FAILURES, /* only when refused (sys/audit/head: so the head it returns is the end
                          of the log) */
};

struct as_route {
    const char *pattern; /* segments; ":x" captures one segment, trailing "*" the rest */
    unsigned methods;    /* enum as_method bits */
    enum as_auth_mode auth;
    bool sudo; /* sudo on the path is required as well */
    as_handler handler;
    bool opaque_body; /* the body is not ours to parse (a proxy's forwarded request) */
    enum as_audit_mode audit;
    /* The same bodies come again and again (a proxy's checks): their parses are shared through
     * srv->bodies, so the handler must only read req->body. */
    bool repeat_body;
};
/* The route table, for the metrics: n rows; as_route_index of a row. */
size_t as_route_count(void);
const struct as_route *as_route_at(size_t i);
size_t as_route_index(const struct as_route *r);

/*
 * Finds the route for path. AS_ERR_NOT_FOUND if no pattern matches, AS_ERR_METHOD if one matches
 * but not for this method. Fills req->params.
 */
enum as_err as_route_find(struct as_req *req, const struct as_route **out);
/* Capabilities (any of) a method needs: GET read, POST create|update, DELETE delete, LIST list. */
uint32_t as_route_caps(enum as_method m);

/* Runs a request through auth, the route table's authorization and the handler; a failure's
 * public message is in resp->err. */
enum as_err as_dispatch(struct as_server *srv, struct as_req *req, struct as_resp *resp) AS_WUR;

/* ---- handlers ---- */
enum as_err h_sys_health(struct as_server *, struct as_req *, struct as_resp *);
enum as_err h_sys_bootstrap(struct as_server *, struct as_req *, struct as_resp *);
enum as_err h_sys_policy_list(struct as_server *, struct as_req *, struct as_resp *);
enum as_err h_sys_policy(struct as_server *, struct as_req *, struct as_resp *);
enum as_err h_sys_policies_acl_list(struct as_server *, struct as_req *, struct as_resp *);
enum as_err h_sys_policies_acl(struct as_server *, struct as_req *, struct as_resp *);
enum as_err h_sys_auth(struct as_server *, struct as_req *, struct as_resp *);

enum as_err h_token_create(struct as_server *, struct as_req *, struct as_resp *);
enum as_err h_token_lookup(struct as_server *, struct as_req *, struct as_resp *);
enum as_err h_token_renew(struct as_server *, struct as_req *, struct as_resp *);
enum as_err h_token_revoke(struct as_server *, struct as_req *, struct as_resp *);
enum as_err h_token_accessors(struct as_server *, struct as_req *, struct as_resp *);

enum as_err h_pki_ca(struct as_server *, struct as_req *, struct as_resp *);
enum as_err h_pki_bundle_pem(struct as_server *, struct as_req *, struct as_resp *);
enum as_err h_pki_crl(struct as_server *, struct as_req *, struct as_resp *);
enum as_err h_pki_cert(struct as_server *, struct as_req *, struct as_resp *);
enum as_err h_pki_certs(struct as_server *, struct as_req *, struct as_resp *);
enum as_err h_pki_revoke(struct as_server *, struct as_req *, struct as_resp *);
enum as_err h_pki_rotate(struct as_server *, struct as_req *, struct as_resp *);
enum as_err h_svid_x509(struct as_server *, struct as_req *, struct as_resp *);
enum as_err h_svid_jwt(struct as_server *, struct as_req *, struct as_resp *);
enum as_err h_svid_jwt_validate(struct as_server *, struct as_req *, struct as_resp *);
enum as_err h_svid_bundle(struct as_server *, struct as_req *, struct as_resp *);
enum as_err h_sys_identities(struct as_server *, struct as_req *, struct as_resp *);
enum as_err h_sys_audit_hash(struct as_server *, struct as_req *, struct as_resp *);
enum as_err h_sys_audit_head(struct as_server *, struct as_req *, struct as_resp *);
enum as_err h_sys_metrics(struct as_server *, struct as_req *, struct as_resp *);
enum as_err h_sys_auth_mount(struct as_server *, struct as_req *, struct as_resp *);
enum as_err h_auth_config(struct as_server *, struct as_req *, struct as_resp *);
enum as_err h_auth_role(struct as_server *, struct as_req *, struct as_resp *);
enum as_err h_auth_roles(struct as_server *, struct as_req *, struct as_resp *);
enum as_err h_auth_login(struct as_server *, struct as_req *, struct as_resp *);
enum as_err h_connect_intentions(struct as_server *, struct as_req *, struct as_resp *);
enum as_err h_connect_intention(struct as_server *, struct as_req *, struct as_resp *);
enum as_err h_connect_authorize(struct as_server *, struct as_req *, struct as_resp *);
enum as_err h_connect_ext_authz(struct as_server *, struct as_req *, struct as_resp *);
/* Frees the in-memory intention set at shutdown. */
void as_connect_shutdown(void);

/* ---- auth methods (auth.c, auth_jwt.c, auth_cert.c) ---- */
/* What a successful login grants; every member borrowed. */
struct as_login {
    const char *user; /* the login subject (JWT user claim, certificate CN or URI) */
    const char *role;
    json_t *policies;    /* array */
    json_t *meta;        /* object of strings: "role", "subject", mapped claims */
    json_t *spiffe_ids;  /* array (0 or 1 entries) */
    json_t *allowed_dns; /* array of globs */
    json_t *bound_cidrs; /* the role's token_bound_cidrs: the token may be used only from
                            these networks (array; empty or NULL for anywhere) */
    int64_t ttl;         /* 0 → 1h */
    int64_t max_ttl;     /* 0 → 24h */
    int64_t num_uses;
    bool no_default_policy;
    const char *login_cert; /* serial of our SVID used for the login (cert method), or NULL */
};
/* Takes one login from addr's bucket (limits.login_per_second, burst twice that). */
bool as_login_allowed(const struct as_server *srv, const char *addr, int *retry_after);
/* Creates the login token (an orphan of the mount) and fills resp with Vault's auth block. */
enum as_err as_login_issue(struct as_server *srv, const struct as_mount_rec *m,
                           const struct as_login *in, struct as_resp *resp) AS_WUR;
/* Role-field helpers shared by the methods: a list of strings (array or comma string, at most
 * AS_ROLE_MAX_LIST; absent gives []). CIDRs: as_cidr_ok and as_addr_in_cidrs in common.h. */
#define AS_ROLE_MAX_LIST 64
enum as_err as_role_strlist(json_t *body, const char *key, json_t **out, char *why,
                            size_t whylen) AS_WUR;
/*
 * The token_* fields every method's roles share (token_policies or policies, token_ttl,
 * token_max_ttl, token_num_uses, token_bound_cidrs, token_no_default_policy) and
 * allowed_dns_names: checked, then set normalized into role (a JSON object).
 */
enum as_err as_role_token_fields(json_t *body, json_t *role, char *why, size_t whylen) AS_WUR;
/* The parsed JSON of a stored config or role text (new reference; NULL when it does not parse),
 * from a cache keyed by the text. The value is shared: never modify it. */
json_t *as_json_parsed(const char *text);
void as_json_parsed_free_all(void);
/* An auth mount or a role's text as the store has it, served from memory while the store
 * epoch has not moved since it was read (auth.c). Same results and ownership as
 * as_store_mount_get / as_store_role_get. */
enum as_err as_mount_get_cached(struct as_server *srv, const char *path,
                                struct as_mount_rec **out) AS_WUR;
enum as_err as_role_get_cached(struct as_server *srv, const char *mount, const char *name,
                               char **text) AS_WUR;
void as_rows_cache_free_all(void);
/* Drops cached per-mount state (JWKS keys) after an unmount. */
void as_auth_mount_forget(const char *path);

/* jwt method (auth_jwt.c) */
enum as_err as_jwt_config_write(struct as_server *srv, const struct as_mount_rec *m,
                                struct as_req *req, struct as_resp *resp) AS_WUR;
enum as_err as_jwt_config_read(struct as_server *srv, const struct as_mount_rec *m,
                               struct as_resp *resp) AS_WUR;
/* Validates a role body and returns its normalized JSON (new reference). */
enum as_err as_jwt_role_parse(struct as_server *srv, json_t *body, json_t **out, char *why,
                              size_t whylen) AS_WUR;
enum as_err as_jwt_login(struct as_server *srv, const struct as_mount_rec *m, struct as_req *req,
                         struct as_resp *resp) AS_WUR;

/* cert method (auth_cert.c) */
enum as_err as_cert_role_parse(struct as_server *srv, json_t *body, json_t **out, char *why,
                               size_t whylen) AS_WUR;
enum as_err as_cert_login(struct as_server *srv, const struct as_mount_rec *m, struct as_req *req,
                          struct as_resp *resp) AS_WUR;

/* Vault's "auth" block for a token just created or renewed (secret may be NULL → ""). */
json_t *as_auth_block(const struct as_token_rec *t, const char *secret, int64_t ttl);

/* ---- audit device (audit.c, SPEC §8) ---- */
struct as_audit;
/* "hmac-sha256:" + 64 hex + NUL */
#define AS_AUDIT_HASH_LEN 77
/*
 * Loads (creating on a new store) the audit salt and the chain head from the store and opens
 * path (NULL or "" disables the file; the salt still serves sys/audit-hash). A file that cannot
 * be opened is not fatal (audited requests fail until it can be); a file that does not continue
 * the stored chain is AS_ERR_INVALID. Caller frees with as_audit_free.
 */
enum as_err as_audit_open(struct as_store *store, const char *path, bool log_allowed_checks,
                          struct as_audit **out) AS_WUR;
void as_audit_free(struct as_audit *a);
/* SIGHUP: closes and reopens the file (after a rotation), continuing the chain. */
enum as_err as_audit_reopen(struct as_audit *a) AS_WUR;
bool as_audit_enabled(const struct as_audit *a);
bool as_audit_log_allowed_checks(const struct as_audit *a);
/* "hmac-sha256:<hex>" of len bytes at in under the salt (sys/audit-hash). */
enum as_err as_audit_hash(const struct as_audit *a, const char *in, size_t len,
                          char out[AS_AUDIT_HASH_LEN]) AS_WUR;
/* The head: hash of the last line written and its number (genesis, 0 before the first line). */
enum as_err as_audit_head(struct as_audit *a, char hash[65], uint64_t *line) AS_WUR;
/* Writes the head to the store when it moved since the last call (the main loop, once a second;
 * SIGHUP; a clean stop). */
enum as_err as_audit_persist_head(struct as_audit *a) AS_WUR;
/* Writes the request / response line of req (a written line survives kill -9); the response
 * line comes with the request line, in one write, when that was not written yet. With durable,
 * the response line returns once it, every line before it and every store commit the calling
 * thread made are on disk (group commit). AS_ERR_IO when the file cannot be written or synced
 * (the caller answers 500). error: the public error or NULL. */
enum as_err as_audit_request(struct as_audit *a, struct as_req *req, const char *error) AS_WUR;
enum as_err as_audit_response(struct as_audit *a, struct as_req *req, const struct as_resp *resp,
                              int status, const char *error, bool durable) AS_WUR;
/*
 * as_audit_response with durable, without blocking: when the line is written but not yet on
 * disk, *pending is set and done(arg, ok) is called exactly once from one of the device's sync
 * threads (with its lock held: done must not call into the device) once the line and the store
 * commits before it are on disk (ok) or the file was given up (!ok). Otherwise *pending is false
 * and the result is that of as_audit_response.
 */
enum as_err as_audit_response_async(struct as_audit *a, struct as_req *req,
                                    const struct as_resp *resp, int status, const char *error,
                                    void (*done)(void *arg, bool ok), void *arg,
                                    bool *pending) AS_WUR;
/* Syncs every line written so far and records the head in the store (the main loop, once a
 * second). */
enum as_err as_audit_flush(struct as_audit *a) AS_WUR;

/* ---- metrics (metrics.c) ---- */
/* One finished request: its route (NULL when none matched), status and latency. */
void as_metrics_request(const struct as_route *route, int status, int64_t ns);
/* A login on mount ended with status. */
void as_metrics_login(const char *mount, int status);
enum as_metric_svid { AS_METRIC_SVID_X509, AS_METRIC_SVID_JWT };
void as_metrics_svid(enum as_metric_svid kind);
enum as_metric_revoke { AS_METRIC_REVOKE_TOKEN, AS_METRIC_REVOKE_CERT };
void as_metrics_revocation(enum as_metric_revoke kind);
enum as_metric_cache {
    AS_CACHE_INTENTIONS,
    AS_CACHE_JWKS,
    AS_CACHE_CERTS,
    AS_CACHE_AUTH_ROWS,
    AS_CACHE_COUNT
};
void as_metrics_cache(enum as_metric_cache c, bool hit);
void as_metrics_audit_failure(void);
/* The Prometheus text of every metric (malloc'd), NULL when out of memory. */
char *as_metrics_render(struct as_server *srv);

/* ---- server lifecycle (main.c) ---- */
/* Creates the root token exactly once. AS_ERR_EXISTS if already bootstrapped. */
enum as_err as_server_bootstrap(struct as_server *srv, char **secret,
                                struct as_token_rec **out) AS_WUR;

/* Wakes the main loop so it re-plans timed work (after pki/rotate changed the schedule). */
void as_server_wake(struct as_server *srv);

/* ---- http.c ---- */
/* Installs the HTTPS listener's certificate (PEM chain) and key; handshakes after the call use
 * them. Safe to call while serving. */
enum as_err as_http_set_cert(const char *cert_pem, const char *key_pem) AS_WUR;
enum as_err as_http_start(struct as_server *srv) AS_WUR;
void as_http_stop(struct as_server *srv);

#endif
