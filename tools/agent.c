/*
 * agent.c: the workload agent (SPEC §9; see agent.h for the shape).
 *
 * Decisions where SPEC §9 is silent (also in the README):
 *   - Input files (ca_file, token_file, login files, pid_file) are relative to the working
 *     directory; output files are relative to out_dir, which is created (0700) if missing.
 *   - address defaults to AUTHSVC_ADDR (else http://127.0.0.1:8200), ca_file to AUTHSVC_CACERT.
 *   - For an https address the agent trusts ca_file (or libcurl's default CA file when there is
 *     none) plus the bundle it keeps, through a combined PEM file it writes to
 *     <out_dir>/.authctl-agent-trust.pem; a bundle.pem left by an earlier run seeds it.
 *   - The SVID's life is measured from the moment it was asked for (not the backdated
 *     notBefore); renewal at renew_at * U(0.9, 1.1) of it, clamped to [0.05, 0.95].
 *   - The token is renewed (renew-self) at 2/3 of its TTL while renewable; when the renewal
 *     comes back under half the original TTL (near its max) or fails, the agent logs in again:
 *     with the SVID on svid_login_mount when allowed, else with the configured credentials
 *     (token_file is re-read). Old tokens are never revoked: revoking one would revoke the SVIDs
 *     it obtained, and the tokens that logged in with them.
 *   - The reload runs after an SVID rotation and after a bundle or CRL change, once the files of
 *     that change are in place; not for JWT-SVID refreshes (their files are simply replaced).
 *   - JWT-SVID files hold the bare token (no newline), mode 0600.
 *   - SIGHUP makes every task due now.
 */
#include "tools/agent.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "common/common.h"
#include "tools/client.h"
#include "tools/csr.h"

extern char **environ;

#define AGENT_MAX_CONFIG (256 * 1024)
#define AGENT_MAX_PATH 4096
#define AGENT_MAX_SECRET_FILE (64 * 1024)
#define AGENT_MAX_PEM_FILE (4 * 1024 * 1024)
#define AGENT_MAX_AUDIENCE 180 /* "jwt_" + base64url + ".token" stays under NAME_MAX */
#define AGENT_MAX_AUDIENCES 16
#define AGENT_DEFAULT_ADDR "http://127.0.0.1:8200"
#define AGENT_TRUST_FILE ".authctl-agent-trust.pem"
#define AGENT_BACKOFF_MIN_MS 1000
#define AGENT_BACKOFF_MAX_MS 60000
#define AGENT_DEFAULT_HINT_S 300
#define AGENT_MAX_HINT_S 86400
#define AGENT_MIN_DELAY_MS 500
#define AGENT_RELOAD_TIMEOUT_MS 30000
#define AGENT_SVID_LOGIN_MARGIN_MS 1000 /* the SVID must stay valid through the login */
#define NEVER INT64_MAX

/* ---- configuration ---- */

enum cred_kind { CRED_NONE, CRED_TOKEN, CRED_TOKEN_FILE, CRED_JWT, CRED_CERT };

struct agent_cfg {
    char *address;
    char *ca_file; /* NULL: libcurl's default store */
    bool https;
    enum cred_kind cred;
    char *token; /* secret */
    char *token_file;
    char *login_mount;
    char *login_role;
    char *jwt_file;
    char *cert_file;
    char *cert_key_file;
    bool renew_with_svid;
    char *svid_login_mount;
    char *spiffe_id;
    int64_t ttl; /* 0: the server's default */
    json_t *dns_names;
    char *out_dir;
    char *svid_path;
    char *key_path;
    char *bundle_path;
    char *crl_path; /* NULL: no CRL file */
    char *trust_path;
    double renew_at;
    char *reload_command;
    int reload_signal; /* 0: none */
    char *pid_file;
    json_t *audiences;
};

static const char *const TOP_KEYS[] = {
    "address",          "ca_file",        "token",
    "token_file",       "login",          "renew_with_svid",
    "svid_login_mount", "spiffe_id",      "ttl",
    "dns_names",        "out_dir",        "svid_file",
    "key_file",         "bundle_file",    "crl_file",
    "renew_at",         "reload_command", "reload_signal",
    "pid_file",         "jwt_audiences",  NULL,
};
static const char *const JWT_KEYS[] = {"method", "mount", "role", "jwt_file", NULL};
static const char *const CERT_KEYS[] = {"method", "mount", "role", "cert_file", "key_file", NULL};

static const struct {
    const char *name;
    int sig;
} SIGNALS[] = {
    {"HUP", SIGHUP},   {"INT", SIGINT},   {"QUIT", SIGQUIT},   {"USR1", SIGUSR1},
    {"USR2", SIGUSR2}, {"TERM", SIGTERM}, {"WINCH", SIGWINCH},
};

static void cfg_free(struct agent_cfg *c)
{
    char **strs[] = {
        &c->address,    &c->ca_file,        &c->token_file,    &c->login_mount,      &c->login_role,
        &c->jwt_file,   &c->cert_file,      &c->cert_key_file, &c->svid_login_mount, &c->spiffe_id,
        &c->out_dir,    &c->svid_path,      &c->key_path,      &c->bundle_path,      &c->crl_path,
        &c->trust_path, &c->reload_command, &c->pid_file,
    };
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++) {
        free(*strs[i]);
        *strs[i] = NULL;
    }
    as_free_secret_str(c->token);
    c->token = NULL;
    json_decref(c->dns_names);
    json_decref(c->audiences);
    c->dns_names = NULL;
    c->audiences = NULL;
}

static enum as_err cfg_fail(char *why, size_t whylen, const char *fmt, ...) AS_PRINTF(3, 4);

static enum as_err cfg_fail(char *why, size_t whylen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, whylen, fmt, ap);
    va_end(ap);
    return AS_ERR_CONFIG;
}

static bool in_list(const char *key, const char *const *list)
{
    for (size_t i = 0; list[i] != NULL; i++) {
        if (strcmp(list[i], key) == 0) {
            return true;
        }
    }
    return false;
}

/* Every key of o must be in allowed; the error names the first that is not. */
static enum as_err check_keys(json_t *o, const char *const *allowed, const char *prefix, char *why,
                              size_t whylen)
{
    const char *key;
    json_t *v;
    json_object_foreach(o, key, v)
    {
        if (!in_list(key, allowed)) {
            return cfg_fail(why, whylen, "unknown key \"%s%.64s\"", prefix, key);
        }
    }
    return AS_OK;
}

/* An optional non-empty string field, copied into *out (left NULL when absent). */
static enum as_err cfg_str(json_t *o, const char *key, const char *prefix, char **out, char *why,
                           size_t whylen)
{
    const char *s = NULL;
    bool present = false;
    if (as_json_get_string(o, key, &s, &present) != AS_OK) {
        return cfg_fail(why, whylen, "\"%s%s\" must be a string", prefix, key);
    }
    if (!present) {
        return AS_OK;
    }
    size_t len = json_string_length(json_object_get(o, key));
    if (len == 0 || len != strlen(s) || len > AGENT_MAX_PATH) {
        return cfg_fail(why, whylen, "\"%s%s\" must be a non-empty string (at most %d bytes)",
                        prefix, key, AGENT_MAX_PATH);
    }
    if ((*out = strdup(s)) == NULL) {
        return AS_ERR_NOMEM;
    }
    return AS_OK;
}

/* dir/name, or name itself when it is absolute. */
static enum as_err join_path(const char *dir, const char *name, char **out)
{
    struct as_buf b;
    enum as_err r;
    as_buf_init(&b, AGENT_MAX_PATH);
    r = name[0] == '/' ? as_buf_printf(&b, "%s", name) : as_buf_printf(&b, "%s/%s", dir, name);
    if (r != AS_OK) {
        as_buf_free(&b, false);
        return r;
    }
    *out = b.data;
    return AS_OK;
}

static enum as_err parse_login(struct agent_cfg *c, json_t *login, char *why, size_t whylen)
{
    enum as_err r;
    char *method = NULL;
    if (!json_is_object(login)) {
        return cfg_fail(why, whylen, "\"login\" must be an object");
    }
    if ((r = cfg_str(login, "method", "login.", &method, why, whylen)) != AS_OK) {
        goto out;
    }
    bool jwt = method != NULL && strcmp(method, "jwt") == 0;
    bool cert = method != NULL && strcmp(method, "cert") == 0;
    if (!jwt && !cert) {
        r = cfg_fail(why, whylen, "\"login.method\" must be \"jwt\" or \"cert\"");
        goto out;
    }
    c->cred = jwt ? CRED_JWT : CRED_CERT;
    if ((r = check_keys(login, jwt ? JWT_KEYS : CERT_KEYS, "login.", why, whylen)) != AS_OK ||
        (r = cfg_str(login, "mount", "login.", &c->login_mount, why, whylen)) != AS_OK ||
        (r = cfg_str(login, "role", "login.", &c->login_role, why, whylen)) != AS_OK ||
        (r = cfg_str(login, "jwt_file", "login.", &c->jwt_file, why, whylen)) != AS_OK ||
        (r = cfg_str(login, "cert_file", "login.", &c->cert_file, why, whylen)) != AS_OK ||
        (r = cfg_str(login, "key_file", "login.", &c->cert_key_file, why, whylen)) != AS_OK) {
        goto out;
    }
    if (c->login_mount == NULL && (c->login_mount = strdup(method)) == NULL) {
        r = AS_ERR_NOMEM;
        goto out;
    }
    if (jwt && c->jwt_file == NULL) {
        r = cfg_fail(why, whylen, "\"login.jwt_file\" is required with method jwt");
    } else if (cert && (c->cert_file == NULL || c->cert_key_file == NULL)) {
        r = cfg_fail(why, whylen,
                     "\"login.cert_file\" and \"login.key_file\" are required "
                     "with method cert");
    } else if (cert && !c->https) {
        r = cfg_fail(why, whylen,
                     "\"login.method\" cert needs an https address (the client "
                     "certificate is presented in the TLS handshake)");
    }
out:
    free(method);
    return r;
}

static enum as_err parse_creds(struct agent_cfg *c, json_t *o, char *why, size_t whylen)
{
    enum as_err r;
    json_t *login = json_object_get(o, "login");
    int n = 0;
    if ((r = cfg_str(o, "token", "", &c->token, why, whylen)) != AS_OK ||
        (r = cfg_str(o, "token_file", "", &c->token_file, why, whylen)) != AS_OK) {
        return r;
    }
    n += c->token != NULL;
    n += c->token_file != NULL;
    n += login != NULL && !json_is_null(login);
    if (n == 0) {
        return cfg_fail(why, whylen,
                        "missing credentials: set one of \"token\", \"token_file\" "
                        "or \"login\"");
    }
    if (n > 1) {
        return cfg_fail(why, whylen,
                        "only one of \"token\", \"token_file\" and \"login\" may "
                        "be set");
    }
    if (c->token != NULL) {
        c->cred = CRED_TOKEN;
        return AS_OK;
    }
    if (c->token_file != NULL) {
        c->cred = CRED_TOKEN_FILE;
        return AS_OK;
    }
    return parse_login(c, login, why, whylen);
}

static enum as_err parse_address(struct agent_cfg *c, json_t *o, char *why, size_t whylen)
{
    enum as_err r;
    if ((r = cfg_str(o, "address", "", &c->address, why, whylen)) != AS_OK ||
        (r = cfg_str(o, "ca_file", "", &c->ca_file, why, whylen)) != AS_OK) {
        return r;
    }
    const char *env = getenv("AUTHSVC_ADDR");
    if (c->address == NULL &&
        (c->address = strdup(env != NULL && *env != '\0' ? env : AGENT_DEFAULT_ADDR)) == NULL) {
        return AS_ERR_NOMEM;
    }
    env = getenv("AUTHSVC_CACERT");
    if (c->ca_file == NULL && env != NULL && *env != '\0' && (c->ca_file = strdup(env)) == NULL) {
        return AS_ERR_NOMEM;
    }
    c->https = strncasecmp(c->address, "https://", 8) == 0;
    if (!c->https && strncasecmp(c->address, "http://", 7) != 0) {
        return cfg_fail(why, whylen, "\"address\" must be an http:// or https:// URL");
    }
    return AS_OK;
}

/* svid_file, key_file, bundle_file, crl_file and the trust file, under out_dir. */
static enum as_err parse_files(struct agent_cfg *c, json_t *o, char *why, size_t whylen)
{
    static const char *const keys[] = {"svid_file", "key_file", "bundle_file", "crl_file"};
    static const char *const defaults[] = {"svid.pem", "svid_key.pem", "bundle.pem", NULL};
    char **outs[] = {&c->svid_path, &c->key_path, &c->bundle_path, &c->crl_path};
    enum as_err r;
    if ((r = cfg_str(o, "out_dir", "", &c->out_dir, why, whylen)) != AS_OK) {
        return r;
    }
    if (c->out_dir == NULL) {
        return cfg_fail(why, whylen, "\"out_dir\" is required");
    }
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        char *name = NULL;
        if ((r = cfg_str(o, keys[i], "", &name, why, whylen)) != AS_OK) {
            return r;
        }
        const char *use = name != NULL ? name : defaults[i];
        r = use != NULL ? join_path(c->out_dir, use, outs[i]) : AS_OK;
        free(name);
        if (r != AS_OK) {
            return cfg_fail(why, whylen, "\"%s\" makes a path longer than %d bytes", keys[i],
                            AGENT_MAX_PATH);
        }
    }
    if (join_path(c->out_dir, AGENT_TRUST_FILE, &c->trust_path) != AS_OK) {
        return cfg_fail(why, whylen, "\"out_dir\" is too long");
    }
    const char *paths[] = {c->svid_path, c->key_path, c->bundle_path, c->crl_path, c->trust_path};
    for (size_t i = 0; i < 5; i++) {
        for (size_t k = i + 1; k < 5; k++) {
            if (paths[i] != NULL && paths[k] != NULL && strcmp(paths[i], paths[k]) == 0) {
                return cfg_fail(why, whylen, "two output files are both %.200s", paths[i]);
            }
        }
    }
    return AS_OK;
}

static enum as_err parse_signal(struct agent_cfg *c, json_t *v, char *why, size_t whylen)
{
    if (json_is_integer(v)) {
        json_int_t n = json_integer_value(v);
        if (n < 1 || n > SIGRTMAX) {
            return cfg_fail(why, whylen, "\"reload_signal\" is not a signal number");
        }
        c->reload_signal = (int)n;
        return AS_OK;
    }
    const char *s = json_string_value(v);
    if (s == NULL) {
        return cfg_fail(why, whylen, "\"reload_signal\" must be a signal name or number");
    }
    if (strncasecmp(s, "SIG", 3) == 0) {
        s += 3;
    }
    for (size_t i = 0; i < sizeof SIGNALS / sizeof SIGNALS[0]; i++) {
        if (strcasecmp(s, SIGNALS[i].name) == 0) {
            c->reload_signal = SIGNALS[i].sig;
            return AS_OK;
        }
    }
    return cfg_fail(why, whylen,
                    "\"reload_signal\": unknown signal (use HUP, INT, QUIT, USR1, "
                    "USR2, TERM, WINCH or a number)");
}

static enum as_err parse_reload(struct agent_cfg *c, json_t *o, char *why, size_t whylen)
{
    enum as_err r;
    json_t *sig = json_object_get(o, "reload_signal");
    if ((r = cfg_str(o, "reload_command", "", &c->reload_command, why, whylen)) != AS_OK ||
        (r = cfg_str(o, "pid_file", "", &c->pid_file, why, whylen)) != AS_OK) {
        return r;
    }
    if (sig != NULL && !json_is_null(sig) && (r = parse_signal(c, sig, why, whylen)) != AS_OK) {
        return r;
    }
    if (c->reload_command != NULL && c->reload_signal != 0) {
        return cfg_fail(why, whylen,
                        "set either \"reload_command\" or \"reload_signal\", not both");
    }
    if (c->reload_signal != 0 && c->pid_file == NULL) {
        return cfg_fail(why, whylen, "\"reload_signal\" needs \"pid_file\"");
    }
    if (c->reload_signal == 0 && c->pid_file != NULL) {
        return cfg_fail(why, whylen, "\"pid_file\" is only used with \"reload_signal\"");
    }
    return AS_OK;
}

static enum as_err parse_audiences(struct agent_cfg *c, json_t *o, char *why, size_t whylen)
{
    size_t i;
    json_t *v;
    if (as_json_get_strlist(o, "jwt_audiences", &c->audiences, NULL) != AS_OK) {
        return cfg_fail(why, whylen, "\"jwt_audiences\" must be a list of strings");
    }
    if (c->audiences == NULL && (c->audiences = json_array()) == NULL) {
        return AS_ERR_NOMEM;
    }
    if (json_array_size(c->audiences) > AGENT_MAX_AUDIENCES) {
        return cfg_fail(why, whylen, "\"jwt_audiences\": at most %d", AGENT_MAX_AUDIENCES);
    }
    json_array_foreach(c->audiences, i, v)
    {
        size_t len = json_string_length(v);
        if (len == 0 || len > AGENT_MAX_AUDIENCE || len != strlen(json_string_value(v))) {
            return cfg_fail(why, whylen, "\"jwt_audiences\": each audience must be 1 to %d bytes",
                            AGENT_MAX_AUDIENCE);
        }
        for (size_t k = 0; k < i; k++) {
            if (json_equal(json_array_get(c->audiences, k), v)) {
                return cfg_fail(why, whylen, "\"jwt_audiences\": \"%.64s\" is listed twice",
                                json_string_value(v));
            }
        }
    }
    return AS_OK;
}

/* spiffe_id, ttl, dns_names, renew_at, renew_with_svid, svid_login_mount. */
static enum as_err parse_svid(struct agent_cfg *c, json_t *o, char *why, size_t whylen)
{
    enum as_err r;
    bool present = false;
    json_t *ra = json_object_get(o, "renew_at");
    if ((r = cfg_str(o, "spiffe_id", "", &c->spiffe_id, why, whylen)) != AS_OK ||
        (r = cfg_str(o, "svid_login_mount", "", &c->svid_login_mount, why, whylen)) != AS_OK) {
        return r;
    }
    if (as_json_get_duration(o, "ttl", &c->ttl, NULL) != AS_OK) {
        return cfg_fail(why, whylen, "\"ttl\" must be a duration (\"1h\", \"90s\" or seconds)");
    }
    if (as_json_get_strlist(o, "dns_names", &c->dns_names, NULL) != AS_OK) {
        return cfg_fail(why, whylen, "\"dns_names\" must be a list of strings");
    }
    c->renew_with_svid = true;
    if (as_json_get_bool(o, "renew_with_svid", &c->renew_with_svid, &present) != AS_OK) {
        return cfg_fail(why, whylen, "\"renew_with_svid\" must be a boolean");
    }
    c->renew_at = 0.5;
    if (ra != NULL && !json_is_null(ra)) {
        c->renew_at = json_is_number(ra) ? json_number_value(ra) : -1.0;
        if (!(c->renew_at > 0.0 && c->renew_at < 1.0)) {
            return cfg_fail(why, whylen, "\"renew_at\" must be a number between 0 and 1");
        }
    }
    if (c->svid_login_mount != NULL && c->renew_with_svid && !c->https) {
        return cfg_fail(why, whylen,
                        "\"svid_login_mount\" needs an https address (the SVID is "
                        "presented in the TLS handshake)");
    }
    return AS_OK;
}

/* Loads and checks the config; on AS_ERR_CONFIG (or another failure) why says what is wrong. */
static enum as_err cfg_load(const char *path, struct agent_cfg *c, char *why, size_t whylen)
{
    enum as_err r;
    char *text = NULL;
    size_t len = 0;
    json_t *o = NULL;
    char perr[160];
    if ((r = as_file_read(path, AGENT_MAX_CONFIG, &text, &len)) != AS_OK) {
        r = cfg_fail(why, whylen, "cannot read the file (%s)", as_strerror(r));
        goto out;
    }
    if (as_json_parse_object(text, len, &o, perr, sizeof perr) != AS_OK) {
        r = cfg_fail(why, whylen, "not a JSON object: %s", perr);
        goto out;
    }
    if ((r = check_keys(o, TOP_KEYS, "", why, whylen)) != AS_OK ||
        (r = parse_address(c, o, why, whylen)) != AS_OK ||
        (r = parse_creds(c, o, why, whylen)) != AS_OK ||
        (r = parse_svid(c, o, why, whylen)) != AS_OK ||
        (r = parse_files(c, o, why, whylen)) != AS_OK ||
        (r = parse_reload(c, o, why, whylen)) != AS_OK ||
        (r = parse_audiences(c, o, why, whylen)) != AS_OK) {
        goto out;
    }
out:
    if (r == AS_ERR_NOMEM) {
        snprintf(why, whylen, "out of memory");
    }
    /* The config may hold a static token. */
    if (text != NULL) {
        as_wipe(text, len);
        free(text);
    }
    json_decref(o);
    return r;
}

/* ---- runtime state ---- */

enum task { T_TOKEN, T_BUNDLE, T_SVID, T_JWT, T_COUNT };

static const char *const TASK_NAMES[T_COUNT] = {"token", "bundle", "x509-svid", "jwt-svid"};

struct jwt_slot {
    const char *audience; /* borrowed from cfg.audiences */
    char *path;
    int64_t due; /* monotonic ms */
};

struct agent {
    struct agent_cfg cfg;
    struct as_client *client;
    bool once;
    sigset_t sigs;
    bool stop;
    /* token */
    char *token;    /* secret; NULL: none */
    bool token_bad; /* refused by the server: log in again instead of renewing */
    bool token_renewable;
    int64_t token_ttl0; /* seconds, at login; 0: never expires */
    /* files */
    char *bundle_pem; /* what bundle_file holds (NULL: nothing written yet) */
    char *crl_pem;
    bool have_svid;
    int64_t svid_not_after; /* unix seconds */
    bool changed;           /* a file of a reload group changed since the last reload */
    /* scheduling */
    int64_t hint_s;
    int64_t due[T_COUNT]; /* monotonic ms */
    unsigned fails[T_COUNT];
    struct jwt_slot *jwt;
    size_t njwt;
};

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t real_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A uniform factor in [0.9, 1.1]: the ±10 % jitter of renewals. */
static double jitter(void)
{
    uint32_t v = 0;
    if (as_rand_bytes(&v, sizeof v) != AS_OK) {
        return 1.0;
    }
    return 0.9 + 0.2 * ((double)v / (double)UINT32_MAX);
}

/* The monotonic deadline at renew_at (jittered) of a life of life_ms that starts now. */
static int64_t renewal_due(const struct agent *a, int64_t life_ms)
{
    double f = a->cfg.renew_at * jitter();
    f = f < 0.05 ? 0.05 : f > 0.95 ? 0.95 : f;
    int64_t delay = (int64_t)((double)life_ms * f);
    return mono_ms() + (delay < AGENT_MIN_DELAY_MS ? AGENT_MIN_DELAY_MS : delay);
}

static void replace_str(char **slot, char *v, bool secret)
{
    if (secret) {
        as_free_secret_str(*slot);
    } else {
        free(*slot);
    }
    *slot = v;
}

/* ---- files ---- */

/* A file written to a temp name and fsynced, renamed into place by commit_files. */
struct staged {
    const char *path;
    char tmp[AGENT_MAX_PATH + 32];
    bool ready;   /* the temp file is written */
    bool renamed; /* it is in place */
};

static enum as_err write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            return AS_ERR_IO;
        }
        p += w;
        n -= (size_t)w;
    }
    return AS_OK;
}

static enum as_err stage_file(struct staged *s, const char *path, const char *data, size_t len,
                              unsigned mode)
{
    unsigned char rnd[6];
    char hex[13];
    int fd = -1;
    enum as_err r = AS_ERR_IO;
    s->path = path;
    s->ready = false;
    s->renamed = false;
    if (as_rand_bytes(rnd, sizeof rnd) != AS_OK) {
        return AS_ERR_CRYPTO;
    }
    as_hex(rnd, sizeof rnd, hex);
    if ((size_t)snprintf(s->tmp, sizeof s->tmp, "%s.tmp-%s", path, hex) >= sizeof s->tmp) {
        return AS_ERR_INVALID;
    }
    fd = open(s->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, (mode_t)mode);
    if (fd < 0) {
        as_error("cannot create %s: %s", s->tmp, strerror(errno));
        return AS_ERR_IO;
    }
    if (fchmod(fd, (mode_t)mode) != 0 || write_all(fd, data, len) != AS_OK || fsync(fd) != 0) {
        as_error("cannot write %s: %s", s->tmp, strerror(errno));
        goto out;
    }
    r = AS_OK;
out:
    if (close(fd) != 0 && r == AS_OK) {
        as_error("cannot write %s: %s", s->tmp, strerror(errno));
        r = AS_ERR_IO;
    }
    if (r != AS_OK) {
        unlink(s->tmp);
        return r;
    }
    s->ready = true;
    return AS_OK;
}

static void fsync_parent(const char *path)
{
    char dir[AGENT_MAX_PATH + 1];
    if ((size_t)snprintf(dir, sizeof dir, "%s", path) >= sizeof dir) {
        return;
    }
    int fd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
}

/* Removes the temp files not renamed. */
static void discard_staged(struct staged *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (v[i].ready) {
            unlink(v[i].tmp);
            v[i].ready = false;
        }
    }
}

/*
 * Renames the staged files into place in order, back to back (everything slow, the writes and
 * fsyncs, happened before), then fsyncs their directories. On failure the rest is discarded.
 */
static enum as_err commit_files(struct staged *v, size_t n)
{
    enum as_err r = AS_OK;
    for (size_t i = 0; i < n && r == AS_OK; i++) {
        if (!v[i].ready) {
            continue;
        }
        if (rename(v[i].tmp, v[i].path) != 0) {
            as_error("cannot rename %s: %s", v[i].tmp, strerror(errno));
            r = AS_ERR_IO;
            continue;
        }
        v[i].ready = false;
        v[i].renamed = true;
    }
    discard_staged(v, n);
    for (size_t i = 0; i < n; i++) {
        if (v[i].renamed) {
            fsync_parent(v[i].path);
        }
    }
    return r;
}

/* Checks that pem holds at least one certificate (or CRL) and nothing unparsable. */
static enum as_err pem_check(const char *pem, size_t len, bool crl)
{
    size_t count = 0;
    BIO *bio = len <= INT_MAX ? BIO_new_mem_buf(pem, (int)len) : NULL;
    if (bio == NULL) {
        return AS_ERR_NOMEM;
    }
    for (;;) {
        void *obj = crl ? (void *)PEM_read_bio_X509_CRL(bio, NULL, NULL, NULL)
                        : (void *)PEM_read_bio_X509(bio, NULL, NULL, NULL);
        if (obj == NULL) {
            break;
        }
        if (crl) {
            X509_CRL_free(obj);
        } else {
            X509_free(obj);
        }
        count++;
    }
    unsigned long e = ERR_peek_last_error();
    bool clean_end = ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE;
    ERR_clear_error();
    BIO_free(bio);
    return count > 0 && clean_end ? AS_OK : AS_ERR_INVALID;
}

/* ---- server access ---- */

static const char *first_error(json_t *resp)
{
    const char *s = json_string_value(json_array_get(json_object_get(resp, "errors"), 0));
    return s != NULL ? s : "";
}

/*
 * One request. AS_OK on 200 or 204; otherwise logged and classified: AS_ERR_IO (no answer: the
 * server is away), AS_ERR_PERMISSION (403), AS_ERR_STORE (429 or 5xx), AS_ERR_INVALID (another
 * status) or what the client returned. raw (may be NULL) is always initialised.
 */
static enum as_err api(struct agent *a, const char *method, const char *path, json_t *body,
                       json_t **resp, struct as_buf *raw)
{
    long status = 0;
    json_t *ans = NULL;
    enum as_err r = as_client_request(a->client, method, path, body, &status, &ans, raw);
    if (r != AS_OK) {
        as_warn("%s %s: %s", method, path,
                r == AS_ERR_IO ? as_client_error(a->client) : as_strerror(r));
        goto out;
    }
    if (status == 200 || status == 204) {
        goto out;
    }
    as_warn("%s %s: status %ld: %.300s", method, path, status, first_error(ans));
    r = status == 403                    ? AS_ERR_PERMISSION
        : status == 429 || status >= 500 ? AS_ERR_STORE
                                         : AS_ERR_INVALID;
out:
    if (r == AS_OK && resp != NULL) {
        *resp = ans;
        ans = NULL;
    }
    json_decref(ans);
    return r;
}

/* libcurl's built-in CA file (the system store), or NULL. */
static const char *default_ca_file(void)
{
    static char path[AGENT_MAX_PATH];
    char *p = NULL;
    CURL *h = curl_easy_init();
    if (h == NULL) {
        return NULL;
    }
    if (curl_easy_getinfo(h, CURLINFO_CAINFO, &p) == CURLE_OK && p != NULL &&
        (size_t)snprintf(path, sizeof path, "%s", p) < sizeof path) {
        curl_easy_cleanup(h);
        return path;
    }
    curl_easy_cleanup(h);
    return NULL;
}

/* Opens a new client trusting cacert (NULL: the default store), keeping the current token. */
static enum as_err client_open(struct agent *a, const char *cacert)
{
    struct as_client *c = NULL;
    enum as_err r = as_client_new(a->cfg.address, cacert, &c);
    if (r != AS_OK) {
        as_error("cannot set up the client for %s: %s", a->cfg.address, as_strerror(r));
        return r;
    }
    if (a->token != NULL && (r = as_client_set_token(c, a->token)) != AS_OK) {
        as_client_free(c);
        return r;
    }
    as_client_free(a->client);
    a->client = c;
    return AS_OK;
}

/*
 * The trust for an https server: ca_file (else the system store), then the bundle we keep,
 * combined into the trust file. A new client is opened each time: libcurl caches CA stores by
 * file name, so a rewritten file would not be read again by the same handle.
 */
static enum as_err trust_update(struct agent *a)
{
    enum as_err r;
    struct as_buf b;
    char *base = NULL;
    size_t base_len = 0;
    if (!a->cfg.https || a->bundle_pem == NULL) {
        return client_open(a, a->cfg.https ? a->cfg.ca_file : NULL);
    }
    const char *first = a->cfg.ca_file != NULL ? a->cfg.ca_file : default_ca_file();
    if (first != NULL && as_file_read(first, AGENT_MAX_PEM_FILE, &base, &base_len) != AS_OK) {
        as_warn("cannot read the CA file %s; trusting the bundle only", first);
    }
    as_buf_init(&b, 2 * AGENT_MAX_PEM_FILE + 2);
    r = base != NULL ? as_buf_printf(&b, "%s\n", base) : AS_OK;
    if (r == AS_OK) {
        r = as_buf_printf(&b, "%s", a->bundle_pem);
    }
    if (r == AS_OK) {
        r = as_file_write_atomic(a->cfg.trust_path, b.data, b.len, 0644);
    }
    if (r == AS_OK) {
        r = client_open(a, a->cfg.trust_path);
    }
    as_buf_free(&b, false);
    free(base);
    return r;
}

/* ---- token ---- */

static void token_schedule(struct agent *a, int64_t ttl_s)
{
    if (ttl_s <= 0) {
        a->due[T_TOKEN] = NEVER;
        return;
    }
    int64_t delay = ttl_s * 2000 / 3;
    a->due[T_TOKEN] = mono_ms() + (delay < AGENT_MIN_DELAY_MS ? AGENT_MIN_DELAY_MS : delay);
}

/* Puts the current token (or none) back into the client after a failed attempt. */
static void restore_token(struct agent *a)
{
    if (as_client_set_token(a->client, a->token) != AS_OK) {
        as_error("cannot restore the current token in the client");
    }
}

/* Takes secret as the current token (copied). */
static enum as_err token_adopt(struct agent *a, const char *secret, int64_t ttl, bool renewable)
{
    char *copy = strdup(secret);
    if (copy == NULL) {
        return AS_ERR_NOMEM;
    }
    enum as_err r = as_client_set_token(a->client, copy);
    if (r != AS_OK) {
        as_free_secret_str(copy);
        restore_token(a);
        as_error("the server returned an unusable token");
        return AS_ERR_INVALID;
    }
    replace_str(&a->token, copy, true);
    a->token_bad = false;
    a->token_ttl0 = ttl;
    a->token_renewable = renewable;
    token_schedule(a, ttl);
    return AS_OK;
}

/* The auth block of a login or renewal answer. */
static enum as_err auth_block(json_t *resp, const char **secret, int64_t *ttl, bool *renewable)
{
    json_t *auth = json_object_get(resp, "auth");
    json_t *lease = json_object_get(auth, "lease_duration");
    *secret = json_string_value(json_object_get(auth, "client_token"));
    *ttl = json_is_integer(lease) ? (int64_t)json_integer_value(lease) : 0;
    *renewable = json_is_true(json_object_get(auth, "renewable"));
    return json_is_object(auth) ? AS_OK : AS_ERR_INVALID;
}

/* POST auth/MOUNT/login with body, without a token; adopts the token it returns. */
static enum as_err login_post(struct agent *a, const char *how, const char *mount, json_t *body)
{
    enum as_err r;
    json_t *resp = NULL;
    struct as_buf path;
    const char *secret = NULL;
    int64_t ttl = 0;
    bool renewable = false;
    as_buf_init(&path, AS_CLIENT_MAX_PATH);
    if ((r = as_buf_printf(&path, "auth/%s/login", mount)) != AS_OK ||
        (r = as_client_set_token(a->client, NULL)) != AS_OK) {
        goto out;
    }
    r = api(a, "POST", path.data, body, &resp, NULL);
    if (r == AS_OK && (auth_block(resp, &secret, &ttl, &renewable) != AS_OK || secret == NULL)) {
        as_error("POST %s: the answer has no token", path.data);
        r = AS_ERR_INVALID;
    }
    if (r == AS_OK) {
        r = token_adopt(a, secret, ttl, renewable);
    }
    if (r == AS_OK) {
        json_t *acc = json_object_get(json_object_get(resp, "auth"), "accessor");
        as_info("logged in on auth/%s %s: token accessor %s, ttl %" PRId64 " s%s", mount, how,
                json_is_string(acc) ? json_string_value(acc) : "?", ttl,
                renewable ? ", renewable" : "");
    }
out:
    if (r != AS_OK) {
        restore_token(a);
    }
    as_buf_free(&path, false);
    json_decref(resp);
    return r;
}

/* The cert method: the TLS client certificate is cert_file/key_file. */
static enum as_err login_cert(struct agent *a, const char *how, const char *mount, const char *role,
                              const char *cert_file, const char *key_file)
{
    enum as_err r;
    json_t *body = role != NULL ? json_pack("{s:s}", "name", role) : json_object();
    if (body == NULL) {
        return AS_ERR_NOMEM;
    }
    if ((r = as_client_set_client_cert(a->client, cert_file, key_file)) == AS_OK) {
        r = login_post(a, how, mount, body);
    }
    /* Clearing cannot fail; the certificate is only presented for the login. */
    if (as_client_set_client_cert(a->client, NULL, NULL) != AS_OK) {
        r = r == AS_OK ? AS_ERR_INTERNAL : r;
    }
    json_decref(body);
    return r;
}

/* Reads a secret file (a token or a JWT) without its surrounding whitespace. */
static enum as_err read_secret(const char *path, char **out)
{
    char *s = NULL;
    size_t len = 0;
    enum as_err r = as_file_read(path, AGENT_MAX_SECRET_FILE, &s, &len);
    *out = NULL;
    if (r != AS_OK) {
        /* A local problem, not the server's: AS_ERR_CONFIG keeps it apart from an outage. */
        as_error("cannot read %s: %s", path, as_strerror(r));
        return AS_ERR_CONFIG;
    }
    size_t start = strspn(s, " \t\r\n");
    size_t end = len;
    while (end > start && strchr(" \t\r\n", s[end - 1]) != NULL) {
        end--;
    }
    if (end == start || memchr(s + start, '\0', end - start) != NULL) {
        as_error("%s is empty or not text", path);
        r = AS_ERR_CONFIG;
    } else if ((*out = strndup(s + start, end - start)) == NULL) {
        r = AS_ERR_NOMEM;
    }
    as_wipe(s, len);
    free(s);
    return r;
}

static enum as_err login_jwt(struct agent *a)
{
    char *jwt = NULL;
    json_t *body = NULL;
    enum as_err r = read_secret(a->cfg.jwt_file, &jwt);
    if (r != AS_OK) {
        return r;
    }
    body = json_pack("{s:s}", "jwt", jwt);
    as_free_secret_str(jwt);
    if (body == NULL || (a->cfg.login_role != NULL &&
                         json_object_set_new(body, "role", json_string(a->cfg.login_role)) != 0)) {
        json_decref(body);
        return AS_ERR_NOMEM;
    }
    r = login_post(a, "with the JWT", a->cfg.login_mount, body);
    json_decref(body);
    return r;
}

/* A given token (static or from token_file): learn its TTL with lookup-self. */
static enum as_err login_token(struct agent *a, const char *secret, const char *how)
{
    json_t *resp = NULL;
    enum as_err r = as_client_set_token(a->client, secret);
    if (r != AS_OK) {
        as_error("the token %s is not a valid token string", how);
        restore_token(a);
        return AS_ERR_INVALID;
    }
    r = api(a, "GET", "auth/token/lookup-self", NULL, &resp, NULL);
    if (r == AS_OK) {
        json_t *d = json_object_get(resp, "data");
        json_t *ttl = json_object_get(d, "ttl");
        int64_t t = json_is_integer(ttl) ? (int64_t)json_integer_value(ttl) : 0;
        r = token_adopt(a, secret, t, json_is_true(json_object_get(d, "renewable")));
        if (r == AS_OK) {
            as_info("using the token %s: accessor %s, ttl %" PRId64 " s", how,
                    json_string_value(json_object_get(d, "accessor")) != NULL
                        ? json_string_value(json_object_get(d, "accessor"))
                        : "?",
                    t);
        }
    } else {
        restore_token(a);
    }
    json_decref(resp);
    return r;
}

static bool svid_login_ok(const struct agent *a)
{
    return a->cfg.renew_with_svid && a->cfg.svid_login_mount != NULL && a->have_svid &&
           a->svid_not_after * 1000 > real_ms() + AGENT_SVID_LOGIN_MARGIN_MS;
}

/* A fresh token: with the SVID when allowed, else (or when that fails) the configured way. */
static enum as_err token_login(struct agent *a)
{
    enum as_err r;
    char *tok = NULL;
    if (svid_login_ok(a)) {
        r = login_cert(a, "with the SVID", a->cfg.svid_login_mount, NULL, a->cfg.svid_path,
                       a->cfg.key_path);
        if (r == AS_OK || r == AS_ERR_IO) {
            return r;
        }
        as_warn("login with the SVID failed; falling back to the configured credentials");
    }
    switch (a->cfg.cred) {
    case CRED_TOKEN:
        return login_token(a, a->cfg.token, "from the config");
    case CRED_TOKEN_FILE:
        if ((r = read_secret(a->cfg.token_file, &tok)) == AS_OK) {
            r = login_token(a, tok, "from token_file");
        }
        as_free_secret_str(tok);
        return r;
    case CRED_JWT:
        return login_jwt(a);
    case CRED_CERT:
        return login_cert(a, "with the client certificate", a->cfg.login_mount, a->cfg.login_role,
                          a->cfg.cert_file, a->cfg.cert_key_file);
    case CRED_NONE:
        break;
    }
    return AS_ERR_CONFIG;
}

/*
 * renew-self for the original TTL. *near_max: the server granted less than half of it (the
 * token is close to its max TTL), so a new login is due.
 */
static enum as_err token_renew(struct agent *a, bool *near_max)
{
    enum as_err r;
    json_t *resp = NULL;
    json_t *body = json_pack("{s:I}", "increment", (json_int_t)a->token_ttl0);
    const char *secret = NULL;
    int64_t ttl = 0;
    bool renewable = false;
    *near_max = false;
    if (body == NULL) {
        return AS_ERR_NOMEM;
    }
    r = api(a, "POST", "auth/token/renew-self", body, &resp, NULL);
    if (r == AS_OK && auth_block(resp, &secret, &ttl, &renewable) != AS_OK) {
        r = AS_ERR_INVALID;
    }
    if (r == AS_OK) {
        *near_max = ttl * 2 < a->token_ttl0;
        a->token_renewable = renewable;
        token_schedule(a, ttl);
        as_info("token renewed: ttl %" PRId64 " s%s", ttl, *near_max ? " (near its max TTL)" : "");
    }
    json_decref(body);
    json_decref(resp);
    return r;
}

static bool can_relogin(const struct agent *a)
{
    return a->cfg.cred != CRED_TOKEN || svid_login_ok(a);
}

static enum as_err task_token(struct agent *a)
{
    bool near_max = false;
    if (a->token != NULL && !a->token_bad && a->token_renewable && a->token_ttl0 > 0) {
        enum as_err r = token_renew(a, &near_max);
        if (r == AS_ERR_IO || r == AS_ERR_STORE || (r == AS_OK && !near_max) ||
            (r == AS_OK && !can_relogin(a))) {
            return r;
        }
    }
    return token_login(a);
}

/* ---- bundle and CRLs ---- */

/* GET of a PEM document (certificates or CRLs) into *out. */
static enum as_err fetch_pem(struct agent *a, const char *path, bool crl, char **out)
{
    struct as_buf raw;
    enum as_err r = api(a, "GET", path, NULL, NULL, &raw);
    *out = NULL;
    if (r == AS_OK && (raw.data == NULL || pem_check(raw.data, raw.len, crl) != AS_OK)) {
        as_warn("GET %s: the answer is not PEM %s", path, crl ? "CRLs" : "certificates");
        r = AS_ERR_INVALID;
    }
    if (r == AS_OK) {
        *out = raw.data;
        as_buf_init(&raw, 0);
    }
    as_buf_free(&raw, false);
    return r;
}

/* Stages text for path unless it equals *have. */
static enum as_err stage_if_changed(struct staged *s, const char *path, const char *text,
                                    const char *have)
{
    s->ready = false;
    s->renamed = false;
    s->path = path;
    if (have != NULL && strcmp(have, text) == 0) {
        return AS_OK;
    }
    return stage_file(s, path, text, strlen(text), 0644);
}

/* The spiffe_refresh_hint of svid/bundle, in seconds. */
static enum as_err fetch_hint(struct agent *a, int64_t *hint)
{
    json_t *resp = NULL;
    enum as_err r = api(a, "GET", "svid/bundle", NULL, &resp, NULL);
    json_t *h = json_object_get(resp, "spiffe_refresh_hint");
    *hint = AGENT_DEFAULT_HINT_S;
    if (r == AS_OK && json_is_integer(h) && json_integer_value(h) > 0) {
        *hint = json_integer_value(h) > AGENT_MAX_HINT_S ? AGENT_MAX_HINT_S
                                                         : (int64_t)json_integer_value(h);
    }
    json_decref(resp);
    return r;
}

/* Writes the bundle and CRL files that changed; takes bundle and crl on success. */
static enum as_err commit_trust(struct agent *a, char **bundle, char **crl)
{
    struct staged st[2];
    enum as_err r;
    bool bundle_new =
        *bundle != NULL && (a->bundle_pem == NULL || strcmp(a->bundle_pem, *bundle) != 0);
    bool crl_new = *crl != NULL && (a->crl_pem == NULL || strcmp(a->crl_pem, *crl) != 0);
    memset(st, 0, sizeof st);
    if ((*bundle != NULL &&
         (r = stage_if_changed(&st[0], a->cfg.bundle_path, *bundle, a->bundle_pem)) != AS_OK) ||
        (*crl != NULL &&
         (r = stage_if_changed(&st[1], a->cfg.crl_path, *crl, a->crl_pem)) != AS_OK) ||
        (r = commit_files(st, 2)) != AS_OK) {
        discard_staged(st, 2);
        return r;
    }
    if (bundle_new) {
        replace_str(&a->bundle_pem, *bundle, false);
        *bundle = NULL;
        as_info("wrote %s", a->cfg.bundle_path);
        a->changed = true;
        if (a->cfg.https) {
            (void)trust_update(a);
        }
    }
    if (crl_new) {
        replace_str(&a->crl_pem, *crl, false);
        *crl = NULL;
        as_info("wrote %s", a->cfg.crl_path);
        a->changed = true;
    }
    return AS_OK;
}

static enum as_err task_bundle(struct agent *a)
{
    enum as_err r;
    char *bundle = NULL;
    char *crl = NULL;
    int64_t hint = 0;
    if ((r = fetch_hint(a, &hint)) != AS_OK ||
        (r = fetch_pem(a, "pki/bundle/pem", false, &bundle)) != AS_OK ||
        (a->cfg.crl_path != NULL && (r = fetch_pem(a, "pki/crl/pem", true, &crl)) != AS_OK) ||
        (r = commit_trust(a, &bundle, &crl)) != AS_OK) {
        goto out;
    }
    if (hint != a->hint_s) {
        as_info("bundle refresh every %" PRId64 " s (spiffe_refresh_hint)", hint);
    }
    a->hint_s = hint;
    a->due[T_BUNDLE] = mono_ms() + hint * 1000;
out:
    free(bundle);
    free(crl);
    return r;
}

/* ---- X.509-SVID ---- */

static json_t *svid_body(const struct agent *a, const char *csr)
{
    json_t *b = json_pack("{s:s}", "csr", csr);
    if (b == NULL) {
        return NULL;
    }
    if ((a->cfg.spiffe_id != NULL &&
         json_object_set_new(b, "spiffe_id", json_string(a->cfg.spiffe_id)) != 0) ||
        (a->cfg.ttl > 0 && json_object_set_new(b, "ttl", json_integer(a->cfg.ttl)) != 0) ||
        (json_array_size(a->cfg.dns_names) > 0 &&
         json_object_set(b, "dns_names", a->cfg.dns_names) != 0)) {
        json_decref(b);
        return NULL;
    }
    return b;
}

/* svid.pem: the leaf, then the intermediates (never the root). */
static enum as_err svid_chain(json_t *data, struct as_buf *out)
{
    json_t *chain = json_object_get(data, "ca_chain");
    const char *leaf = json_string_value(json_object_get(data, "certificate"));
    size_t i;
    json_t *v;
    if (leaf == NULL || *leaf == '\0' ||
        (chain != NULL && !json_is_array(chain) && !json_is_null(chain))) {
        return AS_ERR_INVALID;
    }
    enum as_err r = as_buf_printf(out, "%s%s", leaf, leaf[strlen(leaf) - 1] == '\n' ? "" : "\n");
    json_array_foreach(chain, i, v)
    {
        const char *pem = json_string_value(v);
        if (r == AS_OK) {
            r = pem == NULL || *pem == '\0'
                    ? AS_ERR_INVALID
                    : as_buf_printf(out, "%s%s", pem, pem[strlen(pem) - 1] == '\n' ? "" : "\n");
        }
    }
    return r == AS_OK ? pem_check(out->data, out->len, false) : r;
}

/* Writes bundle (when changed), key, then certificate, renamed back to back. */
static enum as_err svid_commit(struct agent *a, const char *key, size_t key_len,
                               const struct as_buf *chain, const char *bundle)
{
    struct staged st[3];
    enum as_err r;
    memset(st, 0, sizeof st);
    if ((bundle != NULL &&
         (r = stage_if_changed(&st[0], a->cfg.bundle_path, bundle, a->bundle_pem)) != AS_OK) ||
        (r = stage_file(&st[1], a->cfg.key_path, key, key_len, 0600)) != AS_OK ||
        (r = stage_file(&st[2], a->cfg.svid_path, chain->data, chain->len, 0644)) != AS_OK ||
        (r = commit_files(st, 3)) != AS_OK) {
        discard_staged(st, 3);
        return r;
    }
    if (bundle != NULL && (a->bundle_pem == NULL || strcmp(a->bundle_pem, bundle) != 0)) {
        char *copy = strdup(bundle);
        if (copy != NULL) {
            replace_str(&a->bundle_pem, copy, false);
            if (a->cfg.https) {
                (void)trust_update(a);
            }
        }
    }
    return AS_OK;
}

/* Checks the answer and writes the files of a rotation. */
static enum as_err svid_store(struct agent *a, json_t *resp, const char *key, size_t key_len,
                              const char *csr, int64_t asked_ms)
{
    json_t *data = json_object_get(resp, "data");
    const char *cert = json_string_value(json_object_get(data, "certificate"));
    const char *bundle = json_string_value(json_object_get(data, "bundle"));
    json_t *exp = json_object_get(data, "expiration");
    struct as_buf chain;
    enum as_err r = AS_ERR_INVALID;
    as_buf_init(&chain, AS_CLIENT_MAX_RESPONSE);
    if (cert == NULL || !json_is_integer(exp) || as_csr_cert_matches(cert, csr) != AS_OK ||
        (bundle != NULL && pem_check(bundle, strlen(bundle), false) != AS_OK) ||
        svid_chain(data, &chain) != AS_OK) {
        as_error("POST svid/x509: the answer is not a certificate for the key sent");
        goto out;
    }
    int64_t not_after = (int64_t)json_integer_value(exp);
    int64_t life_ms = not_after * 1000 - asked_ms;
    if ((r = svid_commit(a, key, key_len, &chain, bundle)) != AS_OK) {
        goto out;
    }
    a->have_svid = true;
    a->svid_not_after = not_after;
    a->changed = true;
    a->due[T_SVID] = renewal_due(a, life_ms);
    as_info("x509-svid %s for %s written to %s (expires in %" PRId64 " s, renewal in %" PRId64
            " s)",
            json_string_value(json_object_get(data, "serial_number")) != NULL
                ? json_string_value(json_object_get(data, "serial_number"))
                : "?",
            json_string_value(json_object_get(data, "spiffe_id")) != NULL
                ? json_string_value(json_object_get(data, "spiffe_id"))
                : "?",
            a->cfg.svid_path, life_ms / 1000, (a->due[T_SVID] - mono_ms()) / 1000);
out:
    as_buf_free(&chain, false);
    return r;
}

static enum as_err task_svid(struct agent *a)
{
    enum as_err r;
    char *key = NULL;
    size_t key_len = 0;
    char *csr = NULL;
    json_t *body = NULL;
    json_t *resp = NULL;
    /* The key is made here and never leaves this process except into key_file. */
    if ((r = as_csr_new_p256(&key, &key_len, &csr)) != AS_OK) {
        goto out;
    }
    if ((body = svid_body(a, csr)) == NULL) {
        r = AS_ERR_NOMEM;
        goto out;
    }
    int64_t asked = real_ms();
    if ((r = api(a, "POST", "svid/x509", body, &resp, NULL)) != AS_OK) {
        goto out;
    }
    r = svid_store(a, resp, key, key_len, csr, asked);
out:
    as_free_secret_str(key);
    free(csr);
    json_decref(body);
    json_decref(resp);
    return r;
}

/* ---- JWT-SVIDs ---- */

static enum as_err jwt_one(struct agent *a, struct jwt_slot *s)
{
    enum as_err r;
    json_t *resp = NULL;
    json_t *body = json_pack("{s:s}", "audience", s->audience);
    if (body == NULL ||
        (a->cfg.spiffe_id != NULL &&
         json_object_set_new(body, "spiffe_id", json_string(a->cfg.spiffe_id)) != 0)) {
        json_decref(body);
        return AS_ERR_NOMEM;
    }
    int64_t asked = real_ms();
    if ((r = api(a, "POST", "svid/jwt", body, &resp, NULL)) != AS_OK) {
        goto out;
    }
    json_t *data = json_object_get(resp, "data");
    const char *tok = json_string_value(json_object_get(data, "token"));
    json_t *exp = json_object_get(data, "expiration");
    if (tok == NULL || *tok == '\0' || !json_is_integer(exp)) {
        as_error("POST svid/jwt: the answer has no token");
        r = AS_ERR_INVALID;
        goto out;
    }
    if ((r = as_file_write_atomic(s->path, tok, strlen(tok), 0600)) != AS_OK) {
        goto out;
    }
    int64_t life_ms = (int64_t)json_integer_value(exp) * 1000 - asked;
    s->due = renewal_due(a, life_ms);
    as_info("jwt-svid for audience \"%s\" written to %s (expires in %" PRId64 " s)", s->audience,
            s->path, life_ms / 1000);
out:
    json_decref(body);
    json_decref(resp);
    return r;
}

/* Refreshes every JWT-SVID that is due; the task is next due at the earliest slot. */
static enum as_err task_jwt(struct agent *a)
{
    enum as_err r = AS_OK;
    int64_t next = NEVER;
    for (size_t i = 0; i < a->njwt; i++) {
        struct jwt_slot *s = &a->jwt[i];
        if (s->due <= mono_ms() && r == AS_OK) {
            r = jwt_one(a, s);
        }
        next = s->due < next ? s->due : next;
    }
    a->due[T_JWT] = next;
    return r;
}

static enum as_err jwt_slots_init(struct agent *a)
{
    size_t n = json_array_size(a->cfg.audiences);
    a->njwt = 0;
    a->jwt = n > 0 ? calloc(n, sizeof *a->jwt) : NULL;
    if (n > 0 && a->jwt == NULL) {
        return AS_ERR_NOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        const char *aud = json_string_value(json_array_get(a->cfg.audiences, i));
        char b64[4 * ((AGENT_MAX_AUDIENCE + 2) / 3) + 1];
        char name[sizeof b64 + 16];
        as_b64url((const unsigned char *)aud, strlen(aud), b64);
        snprintf(name, sizeof name, "jwt_%s.token", b64);
        a->jwt[i].audience = aud;
        a->jwt[i].due = 0;
        if (join_path(a->cfg.out_dir, name, &a->jwt[i].path) != AS_OK) {
            return AS_ERR_NOMEM;
        }
        a->njwt++;
    }
    a->due[T_JWT] = n > 0 ? 0 : NEVER;
    return AS_OK;
}

/* ---- reload ---- */

static enum as_err wait_child(pid_t pid, int *status)
{
    for (int waited = 0;; waited += 20) {
        pid_t w = waitpid(pid, status, WNOHANG);
        if (w == pid) {
            return AS_OK;
        }
        if (w < 0 && errno != EINTR) {
            return AS_ERR_IO;
        }
        if (waited >= AGENT_RELOAD_TIMEOUT_MS) {
            as_warn("reload command still running after %d s; killing it",
                    AGENT_RELOAD_TIMEOUT_MS / 1000);
            kill(pid, SIGKILL);
            while (waitpid(pid, status, 0) < 0 && errno == EINTR) {
            }
            return AS_ERR_IO;
        }
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

/* Runs reload_command with /bin/sh, with default signal handling and an empty signal mask. */
static enum as_err reload_run_command(const struct agent *a)
{
    posix_spawnattr_t at;
    sigset_t empty;
    sigset_t def;
    pid_t pid = 0;
    int status = 0;
    char sh[] = "sh";
    char opt[] = "-c";
    char *argv[] = {sh, opt, a->cfg.reload_command, NULL};
    enum as_err r = AS_ERR_IO;
    sigemptyset(&empty);
    sigemptyset(&def);
    sigaddset(&def, SIGPIPE);
    sigaddset(&def, SIGTERM);
    sigaddset(&def, SIGINT);
    sigaddset(&def, SIGHUP);
    if (posix_spawnattr_init(&at) != 0) {
        return AS_ERR_NOMEM;
    }
    if (posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF) != 0 ||
        posix_spawnattr_setsigmask(&at, &empty) != 0 ||
        posix_spawnattr_setsigdefault(&at, &def) != 0) {
        goto out;
    }
    int e = posix_spawn(&pid, "/bin/sh", NULL, &at, argv, environ);
    if (e != 0) {
        as_error("cannot run the reload command: %s", strerror(e));
        goto out;
    }
    if ((r = wait_child(pid, &status)) != AS_OK) {
        goto out;
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        as_info("reload command ran");
    } else {
        as_warn("reload command failed (%s %d)", WIFEXITED(status) ? "exit status" : "signal",
                WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
        r = AS_ERR_IO;
    }
out:
    posix_spawnattr_destroy(&at);
    return r;
}

/* Sends reload_signal to the process named in pid_file (read each time: it may restart). */
static enum as_err reload_send_signal(const struct agent *a)
{
    char *text = NULL;
    size_t len = 0;
    char *end = NULL;
    enum as_err r = as_file_read(a->cfg.pid_file, 64, &text, &len);
    if (r != AS_OK) {
        as_error("cannot read the pid file %s", a->cfg.pid_file);
        return r;
    }
    errno = 0;
    long pid = strtol(text, &end, 10);
    while (end != NULL && (*end == '\n' || *end == ' ' || *end == '\r' || *end == '\t')) {
        end++;
    }
    /* Never 0, 1 or negative: kill() would signal a process group or every process. */
    if (errno != 0 || end == text || *end != '\0' || pid <= 1 || pid > INT_MAX) {
        as_error("the pid file %s does not hold a process id", a->cfg.pid_file);
        r = AS_ERR_INVALID;
    } else if (kill((pid_t)pid, a->cfg.reload_signal) != 0) {
        as_error("cannot signal process %ld: %s", pid, strerror(errno));
        r = AS_ERR_IO;
    } else {
        as_info("sent signal %d to process %ld", a->cfg.reload_signal, pid);
    }
    free(text);
    return r;
}

static enum as_err reload(struct agent *a)
{
    a->changed = false;
    if (a->cfg.reload_command != NULL) {
        return reload_run_command(a);
    }
    if (a->cfg.reload_signal != 0) {
        return reload_send_signal(a);
    }
    return AS_OK;
}

/* ---- the loop ---- */

static bool server_away(enum as_err r)
{
    return r == AS_ERR_IO || r == AS_ERR_STORE;
}

/* After a task ran: reset its backoff, or schedule its retry (1 s doubling to 60 s). */
static void task_done(struct agent *a, enum task t, enum as_err r)
{
    if (r == AS_OK) {
        a->fails[t] = 0;
        return;
    }
    if (r == AS_ERR_PERMISSION && t != T_TOKEN) {
        /* The token was refused (expired, revoked): log in again before retrying. */
        a->token_bad = true;
        a->due[T_TOKEN] = mono_ms();
    }
    unsigned f = a->fails[t] < 6 ? a->fails[t] : 6;
    int64_t delay = (int64_t)AGENT_BACKOFF_MIN_MS << f;
    delay = delay > AGENT_BACKOFF_MAX_MS ? AGENT_BACKOFF_MAX_MS : delay;
    a->fails[t]++;
    a->due[t] = mono_ms() + delay;
    as_warn("%s: %s; keeping the current files, retrying in %" PRId64 " s", TASK_NAMES[t],
            server_away(r) ? "server unavailable" : "failed", delay / 1000);
}

/* Reacts to pending signals without waiting; true when asked to stop. */
static bool poll_signals(struct agent *a, int64_t wait_ms)
{
    struct timespec ts = {(time_t)(wait_ms / 1000), (long)(wait_ms % 1000) * 1000000L};
    siginfo_t info;
    int sig = sigtimedwait(&a->sigs, &info, &ts);
    if (sig == SIGTERM || sig == SIGINT) {
        as_info("received %s; stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
        a->stop = true;
    } else if (sig == SIGHUP) {
        as_info("received SIGHUP; refreshing everything now");
        a->due[T_BUNDLE] = 0;
        a->due[T_SVID] = 0;
        for (size_t i = 0; i < a->njwt; i++) {
            a->jwt[i].due = 0;
        }
        a->due[T_JWT] = a->njwt > 0 ? 0 : NEVER;
    }
    return a->stop;
}

static enum as_err run_task(struct agent *a, enum task t)
{
    switch (t) {
    case T_TOKEN:
        return task_token(a);
    case T_BUNDLE:
        return task_bundle(a);
    case T_SVID:
        return task_svid(a);
    case T_JWT:
        return task_jwt(a);
    case T_COUNT:
        break;
    }
    return AS_ERR_INTERNAL;
}

/* Runs every task that is due, in order (token first); then the reload if files changed. */
static void run_due(struct agent *a)
{
    for (int t = 0; t < T_COUNT && !a->stop; t++) {
        if (a->due[t] > mono_ms()) {
            continue;
        }
        if ((t == T_SVID || t == T_JWT) && a->token == NULL) {
            a->due[t] = a->due[T_TOKEN]; /* nothing to ask with until the login works */
            continue;
        }
        task_done(a, (enum task)t, run_task(a, (enum task)t));
        (void)poll_signals(a, 0);
    }
    if (a->changed && a->have_svid && !a->stop) {
        (void)reload(a);
    }
}

static int64_t next_due(const struct agent *a)
{
    int64_t next = NEVER;
    for (int t = 0; t < T_COUNT; t++) {
        next = a->due[t] < next ? a->due[t] : next;
    }
    return next;
}

static void loop(struct agent *a)
{
    while (!a->stop) {
        run_due(a);
        int64_t wait = next_due(a) - mono_ms();
        if (wait <= 0) {
            continue;
        }
        /* Wake at least hourly; sigtimedwait returns early on a signal. */
        (void)poll_signals(a, wait > 3600000 ? 3600000 : wait);
    }
}

/* -once: every task one time, in order; any failure fails the run. */
static enum as_err run_once(struct agent *a)
{
    enum as_err r;
    for (int t = 0; t < T_COUNT; t++) {
        if (t == T_JWT && a->njwt == 0) {
            continue;
        }
        if ((r = run_task(a, (enum task)t)) != AS_OK) {
            as_error("%s: failed (%s)", TASK_NAMES[t], as_strerror(r));
            return r;
        }
    }
    return reload(a);
}

/* ---- setup ---- */

static enum as_err ensure_out_dir(const char *dir)
{
    struct stat st;
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        as_error("cannot create %s: %s", dir, strerror(errno));
        return AS_ERR_IO;
    }
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        as_error("%s is not a directory", dir);
        return AS_ERR_IO;
    }
    return AS_OK;
}

/* A bundle left by an earlier run seeds the https trust (it is ours: out_dir is ours). */
static void seed_bundle(struct agent *a)
{
    char *text = NULL;
    size_t len = 0;
    if (!a->cfg.https ||
        as_file_read(a->cfg.bundle_path, AGENT_MAX_PEM_FILE, &text, &len) != AS_OK) {
        return;
    }
    if (pem_check(text, len, false) == AS_OK) {
        a->bundle_pem = text;
        return;
    }
    free(text);
}

static enum as_err agent_init(struct agent *a, const char *config_path, bool once, char *why,
                              size_t whylen)
{
    enum as_err r = cfg_load(config_path, &a->cfg, why, whylen);
    if (r != AS_OK) {
        return r;
    }
    a->once = once;
    a->hint_s = AGENT_DEFAULT_HINT_S;
    for (int t = 0; t < T_COUNT; t++) {
        a->due[t] = 0;
    }
    if ((r = jwt_slots_init(a)) != AS_OK || (r = ensure_out_dir(a->cfg.out_dir)) != AS_OK) {
        return r;
    }
    seed_bundle(a);
    return trust_update(a);
}

static void agent_free(struct agent *a)
{
    as_client_free(a->client);
    as_free_secret_str(a->token);
    free(a->bundle_pem);
    free(a->crl_pem);
    for (size_t i = 0; i < a->njwt; i++) {
        free(a->jwt[i].path);
    }
    free(a->jwt);
    cfg_free(&a->cfg);
}

static const char *cred_name(enum cred_kind k)
{
    static const char *const names[] = {"none", "token", "token_file", "jwt login", "cert login"};
    return names[k];
}

int as_agent_run(const char *config_path, bool once)
{
    struct agent a;
    char why[512] = "";
    sigset_t old;
    int rc = AS_AGENT_EXIT_OK;
    memset(&a, 0, sizeof a);
    /* Signals are taken with sigtimedwait; a closed connection must not kill us (libcurl runs
     * with CURLOPT_NOSIGNAL, so SIGPIPE is ours to ignore). */
    sigemptyset(&a.sigs);
    sigaddset(&a.sigs, SIGTERM);
    sigaddset(&a.sigs, SIGINT);
    sigaddset(&a.sigs, SIGHUP);
    sigprocmask(SIG_BLOCK, &a.sigs, &old);
    signal(SIGPIPE, SIG_IGN);
    enum as_err r = agent_init(&a, config_path, once, why, sizeof why);
    if (r == AS_ERR_CONFIG) {
        fprintf(stderr, "Error: agent config %s: %s\n", config_path, why);
        rc = AS_AGENT_EXIT_CONFIG;
        goto out;
    }
    if (r != AS_OK) {
        fprintf(stderr, "Error: cannot start the agent: %s\n", as_strerror(r));
        rc = AS_AGENT_EXIT_FAIL;
        goto out;
    }
    as_info("agent starting%s: address %s, credentials: %s%s%s, out_dir %s", once ? " (-once)" : "",
            a.cfg.address, cred_name(a.cfg.cred),
            a.cfg.svid_login_mount != NULL && a.cfg.renew_with_svid ? ", then the SVID on auth/"
                                                                    : "",
            a.cfg.svid_login_mount != NULL && a.cfg.renew_with_svid ? a.cfg.svid_login_mount : "",
            a.cfg.out_dir);
    if (once) {
        rc = run_once(&a) == AS_OK ? AS_AGENT_EXIT_OK : AS_AGENT_EXIT_FAIL;
        goto out;
    }
    loop(&a);
    as_info("agent stopped");
out:
    agent_free(&a);
    sigprocmask(SIG_SETMASK, &old, NULL);
    return rc;
}
