/*
 * authctl.c: the authsvc command-line client (SPEC §1). It follows Vault's CLI: the same generic
 * read/write/list/delete commands, token and policy commands, flag style (-flag=value, -flag
 * value, --flag), output tables, JSON output and exit codes: 0 success, 1 an API or I/O error,
 * 2 a usage error.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>

#include <curl/curl.h>
#include <jansson.h>

#include "common/common.h"
#include "tools/agent.h"
#include "tools/audit.h"
#include "tools/client.h"
#include "tools/csr.h"

#define CTL_OK 0
#define CTL_ERR 1
#define CTL_USAGE 2
#define CTL_HELP (-1) /* internal: -help was asked, print usage on stdout and exit 0 */

#define DEFAULT_ADDR "http://127.0.0.1:8200"
#define TOKEN_FILE_NAME ".authsvc-token"
#define BOOTSTRAP_CODE_FILE "./authsvc-data/bootstrap-code"
/* Cap for anything read from a file or stdin into a request: the server's default body cap. */
#define MAX_INPUT_BYTES AS_MAX_BODY_BYTES
#define MAX_TOKEN_FILE_BYTES (64 * 1024)

/* ---- a wiping allocator for jansson ---- */

/* ---- flags ---- */

enum flag_kind { FK_BOOL, FK_STRING, FK_LIST };

enum flag_id {
    /* global */
    F_FORMAT,
    F_ADDRESS,
    F_CA_CERT,
    F_CLIENT_CERT,
    F_CLIENT_KEY,
    F_HELP,
    /* per command */
    F_FORCE,
    F_CODE,
    F_POLICY,
    F_TTL,
    F_EXPLICIT_MAX_TTL,
    F_DISPLAY_NAME,
    F_NUM_USES,
    F_RENEWABLE,
    F_ORPHAN,
    F_NO_DEFAULT_POLICY,
    F_PERIOD,
    F_METADATA,
    F_SPIFFE_ID,
    F_ALLOWED_DNS_NAME,
    F_ACCESSOR,
    F_INCREMENT,
    F_SELF,
    F_MODE,
    F_OUT_DIR,
    F_DNS,
    F_AUDIENCE,
    F_STATE,
    F_LIMIT,
    F_METHOD,
    F_MOUNT,
    F_ROLE,
    F_JWT,
    F_NO_STORE,
    F_CONFIG,
    F_ONCE,
    F_HEAD,
    F_FROM_HASH,
    F_COUNT
};

#define FM(id) (UINT64_C(1) << (id))
_Static_assert(F_COUNT <= 64, "the flag masks are 64 bits wide");
#define GLOBAL_FLAGS                                                                       \
    (FM(F_FORMAT) | FM(F_ADDRESS) | FM(F_CA_CERT) | FM(F_CLIENT_CERT) | FM(F_CLIENT_KEY) | \
     FM(F_HELP))

struct flag_def {
    const char *name;
    const char *alias; /* NULL: none */
    enum flag_kind kind;
};

static const struct flag_def flag_defs[F_COUNT] = {
    [F_FORMAT] = {"format", NULL, FK_STRING},
    [F_ADDRESS] = {"address", NULL, FK_STRING},
    [F_CA_CERT] = {"ca-cert", NULL, FK_STRING},
    [F_CLIENT_CERT] = {"client-cert", NULL, FK_STRING},
    [F_CLIENT_KEY] = {"client-key", NULL, FK_STRING},
    [F_HELP] = {"help", "h", FK_BOOL},
    [F_FORCE] = {"force", "f", FK_BOOL},
    [F_CODE] = {"code", NULL, FK_STRING},
    [F_POLICY] = {"policy", NULL, FK_LIST},
    [F_TTL] = {"ttl", NULL, FK_STRING},
    [F_EXPLICIT_MAX_TTL] = {"explicit-max-ttl", NULL, FK_STRING},
    [F_DISPLAY_NAME] = {"display-name", NULL, FK_STRING},
    [F_NUM_USES] = {"num-uses", "use-limit", FK_STRING},
    [F_RENEWABLE] = {"renewable", NULL, FK_BOOL},
    [F_ORPHAN] = {"orphan", NULL, FK_BOOL},
    [F_NO_DEFAULT_POLICY] = {"no-default-policy", NULL, FK_BOOL},
    [F_PERIOD] = {"period", NULL, FK_STRING},
    [F_METADATA] = {"metadata", NULL, FK_LIST},
    [F_SPIFFE_ID] = {"spiffe-id", NULL, FK_LIST},
    [F_ALLOWED_DNS_NAME] = {"allowed-dns-name", NULL, FK_LIST},
    [F_ACCESSOR] = {"accessor", NULL, FK_BOOL},
    [F_INCREMENT] = {"increment", "i", FK_STRING},
    [F_SELF] = {"self", NULL, FK_BOOL},
    [F_MODE] = {"mode", NULL, FK_STRING},
    [F_OUT_DIR] = {"out-dir", NULL, FK_STRING},
    [F_DNS] = {"dns", NULL, FK_LIST},
    [F_AUDIENCE] = {"audience", NULL, FK_LIST},
    [F_STATE] = {"state", NULL, FK_STRING},
    [F_LIMIT] = {"limit", NULL, FK_STRING},
    [F_METHOD] = {"method", NULL, FK_STRING},
    [F_MOUNT] = {"mount", "path", FK_STRING},
    [F_ROLE] = {"role", NULL, FK_STRING},
    [F_JWT] = {"jwt", NULL, FK_STRING},
    [F_NO_STORE] = {"no-store", NULL, FK_BOOL},
    [F_CONFIG] = {"config", NULL, FK_STRING},
    [F_ONCE] = {"once", NULL, FK_BOOL},
    [F_HEAD] = {"head", NULL, FK_STRING},
    [F_FROM_HASH] = {"from-hash", NULL, FK_STRING},
};

struct flag_val {
    bool seen;
    bool on;         /* FK_BOOL */
    const char *str; /* FK_STRING: the last value given (borrowed from argv) */
    json_t *list;    /* FK_LIST: array of strings, in order */
};

struct ctl;

struct command {
    const char *name;
    const char *sub; /* NULL for one-word commands */
    int (*run)(struct ctl *x);
    uint64_t flags; /* allowed besides GLOBAL_FLAGS */
    size_t min_args;
    size_t max_args;
    const char *usage;
};

struct ctl {
    const struct command *cmd;
    struct flag_val f[F_COUNT];
    const char **pos; /* positional arguments, borrowed from argv */
    size_t npos;
    const char **args; /* the command's own arguments (pos after the command words) */
    size_t nargs;
    bool json;
    struct as_client *client;
};

/* ---- small helpers ---- */

static bool is_space(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\v' || ch == '\f';
}

/* Trims ASCII whitespace in place; returns the first non-space character. */
static char *trim(char *s)
{
    while (is_space(*s)) {
        s++;
    }
    size_t n = strlen(s);
    while (n > 0 && is_space(s[n - 1])) {
        s[--n] = '\0';
    }
    return s;
}

/* Span of s without surrounding ASCII whitespace. */
static void trim_span(const char *s, const char **start, size_t *len)
{
    size_t n = strlen(s);
    while (n > 0 && is_space(*s)) {
        s++;
        n--;
    }
    while (n > 0 && is_space(s[n - 1])) {
        n--;
    }
    *start = s;
    *len = n;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The keys of obj sorted bytewise (Go's sort.Strings). Caller frees the array (not the keys). */
static enum as_err sorted_keys(json_t *obj, const char ***out, size_t *n)
{
    size_t cnt = json_object_size(obj);
    const char **keys = calloc(cnt > 0 ? cnt : 1, sizeof *keys);
    if (keys == NULL) {
        return AS_ERR_NOMEM;
    }
    size_t i = 0;
    const char *k;
    json_t *v;
    json_object_foreach(obj, k, v)
    {
        (void)v;
        keys[i++] = k;
    }
    qsort(keys, i, sizeof *keys, cmp_str);
    *out = keys;
    *n = i;
    return AS_OK;
}

/*
 * Reads all of path ("-" is standard input) into out, whose cap the caller set. AS_ERR_NOT_FOUND
 * when the file does not exist, AS_ERR_TOO_LARGE over the cap, AS_ERR_IO otherwise; *errnum
 * keeps errno for the message.
 */
static enum as_err read_input(const char *path, struct as_buf *out, int *errnum)
{
    enum as_err r = AS_OK;
    char chunk[4096];
    FILE *f = stdin;
    *errnum = 0;
    if (strcmp(path, "-") != 0) {
        f = fopen(path, "rb");
        if (f == NULL) {
            *errnum = errno;
            return errno == ENOENT ? AS_ERR_NOT_FOUND : AS_ERR_IO;
        }
    }
    for (;;) {
        size_t n = fread(chunk, 1, sizeof chunk, f);
        if (n > 0 && (r = as_buf_append(out, chunk, n)) != AS_OK) {
            goto out;
        }
        if (n < sizeof chunk) {
            if (ferror(f)) {
                *errnum = errno;
                r = AS_ERR_IO;
            }
            break;
        }
    }
out:
    if (f != stdin) {
        fclose(f);
    }
    as_wipe(chunk, sizeof chunk);
    return r;
}

/* Prints why read_input failed; returns the exit code. */
static int input_error(const char *what, const char *path, enum as_err r, int errnum)
{
    const char *name = strcmp(path, "-") == 0 ? "standard input" : path;
    if (r == AS_ERR_TOO_LARGE) {
        fprintf(stderr, "Error: %s: %s is too large\n", what, name);
    } else if (errnum != 0) {
        fprintf(stderr, "Error: %s: cannot read %s: %s\n", what, name, strerror(errnum));
    } else {
        fprintf(stderr, "Error: %s: cannot read %s: %s\n", what, name, as_strerror(r));
    }
    return CTL_ERR;
}

static int usage_error(const struct command *cmd, const char *fmt, ...) AS_PRINTF(2, 3);

/* ---- usage ---- */

static const char usage_general[] =
    "Usage: authctl <command> [options] [args]\n"
    "\n"
    "Commands:\n"
    "    read PATH [K=V...]                 Read data (GET) at PATH; K=V become query parameters\n"
    "    write PATH [K=V...|-]              Write data (POST) to PATH\n"
    "    list PATH                          List keys (LIST) at PATH\n"
    "    delete PATH [K=V...]               Delete (DELETE) at PATH\n"
    "    bootstrap [-code=@FILE|-code=CODE] Create the root token with the one-time code\n"
    "    login -method=jwt|cert [options]   Log in with an auth method; store the token\n"
    "    token create [options]             Create a token\n"
    "    token lookup [-accessor] [TOKEN]   Show a token's properties\n"
    "    token renew [options] [TOKEN]      Renew a token\n"
    "    token revoke [options] [TOKEN]     Revoke a token\n"
    "    policy write NAME FILE|-           Upload an ACL policy\n"
    "    policy read NAME                   Print an ACL policy\n"
    "    policy list                        List ACL policies\n"
    "    policy delete NAME                 Delete an ACL policy\n"
    "    svid x509 -out-dir=DIR [options]   Obtain an X.509-SVID for a key made locally\n"
    "    svid jwt -audience=A [options]     Obtain a JWT-SVID\n"
    "    bundle [-format=pem|jwks]          Print the trust bundle\n"
    "    identities [options]               List the issued SVIDs (sys/identities)\n"
    "    agent -config=FILE [-once]         Keep SVID, key, bundle and JWT-SVID files fresh\n"
    "    audit verify [-head=HASH] FILE...  Check the audit log's hash chain (offline)\n"
    "\n"
    "K=V values: K=@FILE reads the value from FILE, K=- from standard input, K=\\@x is \"@x\";\n"
    "a key given twice becomes a list. A lone \"-\" (or \"@FILE\") merges a JSON object.\n";

static const char usage_globals[] =
    "\n"
    "Global options (before or after the command):\n"
    "    -address=URL        Server address (AUTHSVC_ADDR, default " DEFAULT_ADDR ")\n"
    "    -ca-cert=FILE       PEM CA file to verify an HTTPS server (AUTHSVC_CACERT)\n"
    "    -client-cert=FILE   PEM client certificate for HTTPS; -client-key=FILE its key\n"
    "    -format=table|json  Output format (default table)\n"
    "\n"
    "The token is AUTHSVC_TOKEN, else the first line of ~/" TOKEN_FILE_NAME ".\n"
    "Flags are -flag=value, -flag value or --flag; \"--\" ends the flags.\n"
    "Exit codes: 0 success, 1 error from the server or I/O, 2 usage error.\n";

static void print_usage(FILE *out, const struct command *cmd)
{
    fputs(cmd != NULL ? cmd->usage : usage_general, out);
    fputs(usage_globals, out);
}

static int usage_error(const struct command *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("Error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs("\n\n", stderr);
    va_end(ap);
    print_usage(stderr, cmd);
    return CTL_USAGE;
}

/* ---- output ---- */

static int print_json(json_t *v)
{
    if (json_dumpf(v, stdout, JSON_INDENT(2) | JSON_ENCODE_ANY) != 0 || putchar('\n') == EOF) {
        fprintf(stderr, "Error: cannot write the output\n");
        return CTL_ERR;
    }
    return CTL_OK;
}

/* Vault's looksLikeDuration: such integer fields are shown as durations. */
static bool looks_like_duration(const char *k)
{
    static const char *const exact[] = {"period", "ttl", "duration", "lease_max", "ttl_max"};
    static const char *const suffix[] = {"_period", "_ttl", "_duration"};
    size_t n = strlen(k);
    for (size_t i = 0; i < sizeof exact / sizeof exact[0]; i++) {
        if (strcmp(k, exact[i]) == 0) {
            return true;
        }
    }
    for (size_t i = 0; i < sizeof suffix / sizeof suffix[0]; i++) {
        size_t s = strlen(suffix[i]);
        if (n >= s && strcmp(k + n - s, suffix[i]) == 0) {
            return true;
        }
    }
    return false;
}

/*
 * Vault's humanDuration: Go's time.Duration.String() with a trailing "0s" after minutes and a
 * "0m" after hours dropped ("768h", "1h30m", "1m30s", "1h1s").
 */
static void human_duration(int64_t secs, char *out, size_t outlen)
{
    char go[48];
    if (secs < 0) {
        if (secs == INT64_MIN) {
            snprintf(out, outlen, "%" PRId64 "s", secs);
            return;
        }
        char pos[48];
        human_duration(-secs, pos, sizeof pos);
        snprintf(out, outlen, "-%s", pos);
        return;
    }
    as_duration_format(secs, go, sizeof go);
    size_t n = strlen(go);
    if (n >= 3 && strcmp(go + n - 3, "m0s") == 0) {
        go[n - 2] = '\0';
    }
    char *h0m = strstr(go, "h0m");
    if (h0m != NULL) {
        memmove(h0m + 1, h0m + 3, strlen(h0m + 3) + 1);
    }
    snprintf(out, outlen, "%s", go);
}

/* A JSON real as Go prints a float64: the shortest form that reads back the same. */
static enum as_err append_real(struct as_buf *b, double d)
{
    char s[64];
    snprintf(s, sizeof s, "%.15g", d);
    if (strtod(s, NULL) != d) {
        snprintf(s, sizeof s, "%.17g", d);
    }
    return as_buf_append(b, s, strlen(s));
}

/* Appends v as Go's %v prints what encoding/json decoded: maps as map[k:v ...] (keys sorted),
 * arrays as [a b c], null as <nil>. */
static enum as_err fmt_value(struct as_buf *b, json_t *v)
{
    enum as_err r = AS_OK;
    const char **keys = NULL;
    size_t n = 0;
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        if ((r = sorted_keys(v, &keys, &n)) != AS_OK ||
            (r = as_buf_append(b, "map[", 4)) != AS_OK) {
            goto out;
        }
        for (size_t i = 0; i < n; i++) {
            if ((i > 0 && (r = as_buf_append(b, " ", 1)) != AS_OK) ||
                (r = as_buf_printf(b, "%s:", keys[i])) != AS_OK ||
                (r = fmt_value(b, json_object_get(v, keys[i]))) != AS_OK) {
                goto out;
            }
        }
        r = as_buf_append(b, "]", 1);
        break;
    case JSON_ARRAY:
        if ((r = as_buf_append(b, "[", 1)) != AS_OK) {
            goto out;
        }
        for (size_t i = 0; i < json_array_size(v); i++) {
            if ((i > 0 && (r = as_buf_append(b, " ", 1)) != AS_OK) ||
                (r = fmt_value(b, json_array_get(v, i))) != AS_OK) {
                goto out;
            }
        }
        r = as_buf_append(b, "]", 1);
        break;
    case JSON_STRING:
        r = as_buf_append(b, json_string_value(v), json_string_length(v));
        break;
    case JSON_INTEGER:
        r = as_buf_printf(b, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        break;
    case JSON_REAL:
        r = append_real(b, json_real_value(v));
        break;
    case JSON_TRUE:
        r = as_buf_append(b, "true", 4);
        break;
    case JSON_FALSE:
        r = as_buf_append(b, "false", 5);
        break;
    case JSON_NULL:
        r = as_buf_append(b, "<nil>", 5);
        break;
    }
out:
    free(keys);
    return r;
}

/* Appends a string as Go's %q does (double quotes, backslash escapes). */
static enum as_err append_quoted(struct as_buf *b, const char *s, size_t n)
{
    enum as_err r = as_buf_append(b, "\"", 1);
    for (size_t i = 0; i < n && r == AS_OK; i++) {
        unsigned char ch = (unsigned char)s[i];
        switch (ch) {
        case '"':
            r = as_buf_append(b, "\\\"", 2);
            break;
        case '\\':
            r = as_buf_append(b, "\\\\", 2);
            break;
        case '\n':
            r = as_buf_append(b, "\\n", 2);
            break;
        case '\t':
            r = as_buf_append(b, "\\t", 2);
            break;
        case '\r':
            r = as_buf_append(b, "\\r", 2);
            break;
        default:
            if (ch < 0x20 || ch == 0x7f) {
                r = as_buf_printf(b, "\\x%02x", ch);
            } else {
                r = as_buf_append(b, &s[i], 1);
            }
        }
    }
    return r == AS_OK ? as_buf_append(b, "\"", 1) : r;
}

/* A string list as Go's %q prints a []string: ["a" "b"]; missing or null is []. */
static enum as_err fmt_quoted_list(struct as_buf *b, json_t *list)
{
    enum as_err r = as_buf_append(b, "[", 1);
    for (size_t i = 0; i < json_array_size(list) && r == AS_OK; i++) {
        json_t *e = json_array_get(list, i);
        if (i > 0 && (r = as_buf_append(b, " ", 1)) != AS_OK) {
            break;
        }
        r = json_is_string(e) ? append_quoted(b, json_string_value(e), json_string_length(e))
                              : fmt_value(b, e);
    }
    return r == AS_OK ? as_buf_append(b, "]", 1) : r;
}

/* A Key/Value table as Vault prints it (columnize with a 4-space glue, "n/a" for empty cells). */
struct row {
    char *key;
    char *val;
};

struct table {
    struct row *rows;
    size_t n;
    size_t cap;
};

/* Appends a row: key is copied, val's storage is taken over (val is left empty). */
static enum as_err table_add(struct table *t, const char *key, struct as_buf *val)
{
    if (t->n == t->cap) {
        size_t cap = t->cap > 0 ? t->cap * 2 : 16;
        struct row *rows = realloc(t->rows, cap * sizeof *rows);
        if (rows == NULL) {
            return AS_ERR_NOMEM;
        }
        t->rows = rows;
        t->cap = cap;
    }
    char *k = strdup(key);
    char *v = val->data != NULL ? val->data : strdup("");
    if (k == NULL || v == NULL) {
        free(k);
        return AS_ERR_NOMEM;
    }
    t->rows[t->n].key = k;
    t->rows[t->n].val = v;
    t->n++;
    as_buf_init(val, val->max);
    return AS_OK;
}

static enum as_err table_add_str(struct table *t, const char *key, const char *s)
{
    struct as_buf v;
    as_buf_init(&v, AS_CLIENT_MAX_RESPONSE);
    enum as_err r = as_buf_append(&v, s, strlen(s));
    if (r == AS_OK) {
        r = table_add(t, key, &v);
    }
    as_buf_free(&v, true);
    return r;
}

static void table_free(struct table *t)
{
    for (size_t i = 0; i < t->n; i++) {
        free(t->rows[i].key);
        /* Values may be tokens. */
        as_free_secret_str(t->rows[i].val);
    }
    free(t->rows);
    t->rows = NULL;
    t->n = 0;
    t->cap = 0;
}

static void print_cell_row(const char *key, const char *val, int width)
{
    const char *ks;
    const char *vs;
    size_t kn;
    size_t vn;
    trim_span(key, &ks, &kn);
    trim_span(val, &vs, &vn);
    if (kn == 0) {
        ks = "n/a";
        kn = 3;
    }
    if (vn == 0) {
        vs = "n/a";
        vn = 3;
    }
    int pad = width - (int)kn;
    printf("%.*s%*s    %.*s\n", (int)kn, ks, pad > 0 ? pad : 0, "", (int)vn, vs);
}

static void table_print(const struct table *t)
{
    size_t width = 3; /* "Key" */
    for (size_t i = 0; i < t->n; i++) {
        const char *s;
        size_t n;
        trim_span(t->rows[i].key, &s, &n);
        if (n > width) {
            width = n;
        }
    }
    int w = width > INT32_MAX ? INT32_MAX : (int)width;
    print_cell_row("Key", "Value", w);
    print_cell_row("---", "-----", w);
    for (size_t i = 0; i < t->n; i++) {
        print_cell_row(t->rows[i].key, t->rows[i].val, w);
    }
}

/* Vault prints the answer's warnings on stderr before a table. */
static void print_warnings(json_t *resp)
{
    json_t *w = json_object_get(resp, "warnings");
    if (json_array_size(w) == 0) {
        return;
    }
    fputs("WARNING! The following warnings were returned from authsvc:\n\n", stderr);
    for (size_t i = 0; i < json_array_size(w); i++) {
        json_t *e = json_array_get(w, i);
        if (json_is_string(e)) {
            fprintf(stderr, "  * %s\n\n", json_string_value(e));
        }
    }
}

static enum as_err add_duration_row(struct table *t, const char *key, json_int_t secs)
{
    char d[64];
    human_duration((int64_t)secs, d, sizeof d);
    return table_add_str(t, key, d);
}

/* Rows of an "auth" block, in Vault's order (token_duration "∞" for a token that never expires). */
static enum as_err add_auth_rows(struct table *t, json_t *auth)
{
    enum as_err r = AS_OK;
    struct as_buf v;
    struct as_buf key;
    const char **keys = NULL;
    size_t n = 0;
    as_buf_init(&v, AS_CLIENT_MAX_RESPONSE);
    as_buf_init(&key, AS_CLIENT_MAX_RESPONSE);
    json_t *token = json_object_get(auth, "client_token");
    json_t *acc = json_object_get(auth, "accessor");
    json_int_t dur = json_integer_value(json_object_get(auth, "lease_duration"));
    static const char *const lists[] = {"token_policies", "identity_policies", "policies"};

    /* A token is shown only where the answer carries one (create, bootstrap, login). */
    if (json_string_length(token) > 0 &&
        (r = table_add_str(t, "token", json_string_value(token))) != AS_OK) {
        goto out;
    }
    if ((r = table_add_str(t, "token_accessor",
                           json_is_string(acc) ? json_string_value(acc) : "")) != AS_OK) {
        goto out;
    }
    r = dur == 0 ? table_add_str(t, "token_duration", "∞")
                 : add_duration_row(t, "token_duration", dur);
    if (r != AS_OK ||
        (r = table_add_str(t, "token_renewable",
                           json_is_true(json_object_get(auth, "renewable")) ? "true" : "false")) !=
            AS_OK) {
        goto out;
    }
    for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++) {
        if ((r = fmt_quoted_list(&v, json_object_get(auth, lists[i]))) != AS_OK ||
            (r = table_add(t, lists[i], &v)) != AS_OK) {
            goto out;
        }
    }
    json_t *meta = json_object_get(auth, "metadata");
    if (json_is_object(meta)) {
        if ((r = sorted_keys(meta, &keys, &n)) != AS_OK) {
            goto out;
        }
        for (size_t i = 0; i < n; i++) {
            if ((r = as_buf_printf(&key, "token_meta_%s", keys[i])) != AS_OK ||
                (r = fmt_value(&v, json_object_get(meta, keys[i]))) != AS_OK ||
                (r = table_add(t, key.data, &v)) != AS_OK) {
                goto out;
            }
            key.len = 0;
        }
    }
out:
    free(keys);
    as_buf_free(&v, true);
    as_buf_free(&key, false);
    return r;
}

static enum as_err add_data_rows(struct table *t, json_t *data)
{
    enum as_err r = AS_OK;
    struct as_buf v;
    const char **keys = NULL;
    size_t n = 0;
    as_buf_init(&v, AS_CLIENT_MAX_RESPONSE);
    if ((r = sorted_keys(data, &keys, &n)) != AS_OK) {
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_object_get(data, keys[i]);
        if (json_is_integer(e) && looks_like_duration(keys[i])) {
            r = add_duration_row(t, keys[i], json_integer_value(e));
        } else if ((r = fmt_value(&v, e)) == AS_OK) {
            r = table_add(t, keys[i], &v);
        }
        if (r != AS_OK) {
            goto out;
        }
    }
out:
    free(keys);
    as_buf_free(&v, true);
    return r;
}

/* Whether resp is Vault's envelope (SPEC §2) rather than a bare object such as sys/health. */
static bool is_envelope(json_t *resp)
{
    static const char *const keys[] = {"request_id", "lease_id",  "lease_duration", "renewable",
                                       "data",       "wrap_info", "warnings",       "auth"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        if (json_object_get(resp, keys[i]) != NULL) {
            return true;
        }
    }
    return false;
}

/*
 * Prints an answer as Vault's OutputSecret does: the whole JSON with -format=json; otherwise the
 * warnings on stderr, then one table of the lease, the auth block and the data keys (sorted).
 * A bare object (not an envelope) is shown as the data. NULL prints nothing.
 */
static int output_secret(const struct ctl *x, json_t *resp)
{
    struct table t = {0};
    enum as_err r = AS_OK;
    if (resp == NULL) {
        return CTL_OK;
    }
    if (x->json) {
        return print_json(resp);
    }
    print_warnings(resp);
    json_t *data = is_envelope(resp) ? json_object_get(resp, "data") : resp;
    json_t *auth = json_object_get(resp, "auth");
    json_int_t lease = json_integer_value(json_object_get(resp, "lease_duration"));
    if (lease > 0) {
        json_t *id = json_object_get(resp, "lease_id");
        if (json_string_length(id) > 0) {
            if ((r = table_add_str(&t, "lease_id", json_string_value(id))) != AS_OK ||
                (r = add_duration_row(&t, "lease_duration", lease)) != AS_OK ||
                (r = table_add_str(&t, "lease_renewable",
                                   json_is_true(json_object_get(resp, "renewable")) ? "true"
                                                                                    : "false")) !=
                    AS_OK) {
                goto out;
            }
        } else if ((r = add_duration_row(&t, "refresh_interval", lease)) != AS_OK) {
            goto out;
        }
    }
    if (json_is_object(auth) && (r = add_auth_rows(&t, auth)) != AS_OK) {
        goto out;
    }
    if (json_is_object(data) && (r = add_data_rows(&t, data)) != AS_OK) {
        goto out;
    }
    if (t.n > 0) {
        table_print(&t);
    }
out:
    table_free(&t);
    if (r != AS_OK) {
        fprintf(stderr, "Error: cannot format the answer: %s\n", as_strerror(r));
        return CTL_ERR;
    }
    return CTL_OK;
}

/* ---- talking to the server ---- */

/* Prints errors[0] of an error answer (or the status when there is none); returns 1. */
static int api_error(long status, json_t *resp)
{
    json_t *e0 = json_array_get(json_object_get(resp, "errors"), 0);
    if (json_string_length(e0) > 0) {
        fprintf(stderr, "Error: %s\n", json_string_value(e0));
    } else {
        fprintf(stderr, "Error: HTTP %ld\n", status);
    }
    return CTL_ERR;
}

static bool ok_status(long status)
{
    return status >= 200 && status < 300;
}

/*
 * Loads the token (AUTHSVC_TOKEN, else the first line of ~/.authsvc-token) into the client. A
 * missing file means no token: the server answers "permission denied" where one is needed.
 */
static int load_token(struct ctl *x)
{
    int rc = CTL_OK;
    int errnum = 0;
    struct as_buf b;
    struct as_buf path;
    const char *from = "AUTHSVC_TOKEN";
    const char *env = getenv("AUTHSVC_TOKEN");
    const char *home = getenv("HOME");
    enum as_err r = AS_OK;
    as_buf_init(&b, MAX_TOKEN_FILE_BYTES);
    as_buf_init(&path, 4096);
    if (env != NULL && *env == '\0') {
        env = NULL;
    }
    if (env != NULL) {
        r = as_buf_append(&b, env, strlen(env));
    } else if (home != NULL && *home != '\0') {
        from = "~/" TOKEN_FILE_NAME;
        if ((r = as_buf_printf(&path, "%s/%s", home, TOKEN_FILE_NAME)) == AS_OK) {
            r = read_input(path.data, &b, &errnum);
            if (r == AS_ERR_NOT_FOUND) {
                r = AS_OK;
            } else if (r != AS_OK) {
                rc = input_error("token", path.data, r, errnum);
                goto out;
            }
        }
    }
    if (r != AS_OK) {
        fprintf(stderr, "Error: cannot load the token: %s\n", as_strerror(r));
        rc = CTL_ERR;
        goto out;
    }
    if (b.len > 0) {
        /* The file's first line only (SPEC §1); a newline inside AUTHSVC_TOKEN is refused below. */
        char *nl = memchr(b.data, '\n', b.len);
        if (nl != NULL && env == NULL) {
            *nl = '\0';
        }
        r = as_client_set_token(x->client, trim(b.data));
        if (r == AS_ERR_INVALID) {
            fprintf(stderr, "Error: the token in %s is not valid (printable ASCII only)\n", from);
            rc = CTL_USAGE;
        } else if (r != AS_OK) {
            fprintf(stderr, "Error: cannot load the token: %s\n", as_strerror(r));
            rc = CTL_ERR;
        }
    }
out:
    as_buf_free(&b, true);
    as_buf_free(&path, false);
    return rc;
}

/* Creates the client from the flags and the environment; with_token loads the token too. */
static int open_client(struct ctl *x, bool with_token)
{
    const char *addr = x->f[F_ADDRESS].str;
    const char *cacert = x->f[F_CA_CERT].str;
    if (addr == NULL) {
        addr = getenv("AUTHSVC_ADDR");
        if (addr == NULL || *addr == '\0') {
            addr = DEFAULT_ADDR;
        }
    }
    if (cacert == NULL) {
        cacert = getenv("AUTHSVC_CACERT");
    }
    enum as_err r = as_client_new(addr, cacert, &x->client);
    if (r == AS_ERR_CONFIG) {
        fprintf(stderr,
                "Error: invalid server address \"%s\" (want http://HOST:PORT or "
                "https://HOST:PORT)\n",
                addr);
        return CTL_USAGE;
    }
    if (r == AS_OK) {
        r = as_client_set_client_cert(x->client, x->f[F_CLIENT_CERT].str, x->f[F_CLIENT_KEY].str);
    }
    if (r != AS_OK) {
        fprintf(stderr, "Error: cannot create the client: %s\n", as_strerror(r));
        return CTL_ERR;
    }
    return with_token ? load_token(x) : CTL_OK;
}

/*
 * One request. Returns CTL_OK when an HTTP answer arrived (whatever its status); otherwise prints
 * why and returns the exit code. The caller frees *resp and raw (as_buf_free(raw, true)).
 */
static int call(struct ctl *x, const char *method, const char *path,
                const struct as_client_param *q, size_t nq, json_t *body, long *status,
                json_t **resp, struct as_buf *raw)
{
    enum as_err r =
        as_client_request_query(x->client, method, path, q, nq, body, status, resp, raw);
    if (r == AS_OK) {
        return CTL_OK;
    }
    if (r == AS_ERR_INVALID) {
        /* A path or argument the client refused before sending anything. */
        fprintf(stderr, "Error: %s\n", as_client_error(x->client));
        return CTL_USAGE;
    }
    const char *why = as_client_error(x->client);
    fprintf(stderr, "Error: %s\n", *why != '\0' ? why : as_strerror(r));
    return CTL_ERR;
}

/* ---- arguments ---- */

/*
 * Vault's sanitizePath plus our /v1/ rule: surrounding whitespace, leading '/' and "v1/", and
 * trailing '/' are dropped (an empty last segment is refused by the server). *out is NULL when
 * nothing is left. Caller frees *out.
 */
static enum as_err clean_path(const char *in, char **out)
{
    const char *p;
    size_t n;
    *out = NULL;
    trim_span(in, &p, &n);
    while (n > 0 && *p == '/') {
        p++;
        n--;
    }
    if (n >= 3 && strncmp(p, "v1/", 3) == 0) {
        p += 3;
        n -= 3;
        while (n > 0 && *p == '/') {
            p++;
            n--;
        }
    }
    while (n > 0 && p[n - 1] == '/') {
        n--;
    }
    if (n == 0) {
        return AS_OK;
    }
    *out = strndup(p, n);
    return *out != NULL ? AS_OK : AS_ERR_NOMEM;
}

/* Reads a whole file ("-": stdin) into *out as a JSON string value (must be UTF-8). */
static int read_string_value(const char *what, const char *path, json_t **out)
{
    struct as_buf b;
    int errnum = 0;
    int rc = CTL_OK;
    *out = NULL;
    as_buf_init(&b, MAX_INPUT_BYTES);
    enum as_err r = read_input(path, &b, &errnum);
    if (r != AS_OK) {
        rc = input_error(what, path, r, errnum);
        goto out;
    }
    *out = json_stringn(b.data != NULL ? b.data : "", b.len);
    if (*out == NULL) {
        fprintf(stderr, "Error: %s: %s is not valid UTF-8 text\n", what,
                strcmp(path, "-") == 0 ? "standard input" : path);
        rc = CTL_ERR;
    }
out:
    as_buf_free(&b, true);
    return rc;
}

/* Merges a JSON object read from path ("-": stdin) into obj, as Vault's "-" and "@FILE". */
static int merge_json(json_t *obj, const char *path)
{
    struct as_buf b;
    int errnum = 0;
    int rc = CTL_OK;
    json_t *in = NULL;
    char err[160];
    as_buf_init(&b, MAX_INPUT_BYTES);
    enum as_err r = read_input(path, &b, &errnum);
    if (r != AS_OK) {
        rc = input_error("data", path, r, errnum);
        goto out;
    }
    err[0] = '\0';
    r = as_json_parse_object(b.data != NULL ? b.data : "", b.len, &in, err, sizeof err);
    if (r != AS_OK) {
        fprintf(stderr, "Error: data from %s: %s\n",
                strcmp(path, "-") == 0 ? "standard input" : path,
                err[0] != '\0' ? err : as_strerror(r));
        rc = CTL_USAGE;
        goto out;
    }
    if (json_object_update(obj, in) != 0) {
        rc = CTL_ERR;
    }
out:
    json_decref(in);
    as_buf_free(&b, true);
    return rc;
}

/*
 * Adds one argument of a data list to obj, as Vault's kvbuilder does: "" is ignored; "-" and
 * "@FILE" merge a JSON object; K=V sets K, with V "@FILE" read from FILE verbatim, "-" read from
 * stdin, "\@..." the literal "@..."; a key given twice becomes a list of its values.
 */
static int kv_add(const struct command *cmd, json_t *obj, const char *arg, bool *stdin_used)
{
    json_t *val = NULL;
    int rc = CTL_OK;
    const char *eq = strchr(arg, '=');
    if (*arg == '\0') {
        return CTL_OK;
    }
    if (eq == NULL) {
        if (strcmp(arg, "-") == 0 || arg[0] == '@') {
            if (arg[0] == '-') {
                if (*stdin_used) {
                    return usage_error(cmd, "invalid key/value pair '-': stdin already consumed");
                }
                *stdin_used = true;
            }
            return merge_json(obj, arg[0] == '@' ? arg + 1 : arg);
        }
        return usage_error(cmd, "invalid key/value pair '%s': format must be key=value", arg);
    }
    const char *value = eq + 1;
    size_t klen = (size_t)(eq - arg);
    if (value[0] == '@') {
        rc = read_string_value(arg, value + 1, &val);
    } else if (value[0] == '\\' && value[1] == '@') {
        val = json_string(value + 1);
    } else if (strcmp(value, "-") == 0) {
        if (*stdin_used) {
            return usage_error(cmd, "invalid key/value pair '%s': stdin already consumed", arg);
        }
        *stdin_used = true;
        rc = read_string_value(arg, "-", &val);
    } else {
        val = json_string(value);
    }
    if (rc != CTL_OK) {
        return rc;
    }
    if (val == NULL) {
        return usage_error(cmd, "invalid key/value pair '%s': not valid UTF-8", arg);
    }
    json_t *old = json_object_getn(obj, arg, klen);
    if (old == NULL) {
        if (json_object_setn_new(obj, arg, klen, val) != 0) {
            return usage_error(cmd, "invalid key/value pair '%s': bad key", arg);
        }
        return CTL_OK;
    }
    if (!json_is_array(old)) {
        json_t *arr = json_array();
        if (arr == NULL || json_array_append(arr, old) != 0 ||
            json_object_setn_new(obj, arg, klen, arr) != 0) {
            json_decref(val);
            return CTL_ERR;
        }
        old = arr;
    }
    return json_array_append_new(old, val) == 0 ? CTL_OK : CTL_ERR;
}

/* Builds a JSON object from K=V arguments. Caller decrefs *out. */
static int kv_build(const struct command *cmd, const char **args, size_t n, json_t **out)
{
    bool stdin_used = false;
    *out = json_object();
    if (*out == NULL) {
        return CTL_ERR;
    }
    for (size_t i = 0; i < n; i++) {
        int rc = kv_add(cmd, *out, args[i], &stdin_used);
        if (rc != CTL_OK) {
            json_decref(*out);
            *out = NULL;
            return rc;
        }
    }
    return CTL_OK;
}

/*
 * Query parameters from K=V arguments (Vault sends read and delete data as the query string):
 * strings as they are, each element of a list as a repeated key, numbers and booleans as text.
 * The strings stay owned by *obj. Caller frees *params and decrefs *obj.
 */
static int kv_query(const struct command *cmd, const char **args, size_t n, json_t **obj,
                    struct as_client_param **params, size_t *nparams)
{
    int rc;
    size_t cnt = 0;
    const char *k;
    json_t *v;
    *params = NULL;
    *nparams = 0;
    if ((rc = kv_build(cmd, args, n, obj)) != CTL_OK) {
        return rc;
    }
    /* Non-string scalars are rewritten as strings in place so that every value is a C string. */
    json_object_foreach(*obj, k, v)
    {
        size_t items = json_is_array(v) ? json_array_size(v) : 1;
        for (size_t i = 0; i < items; i++) {
            json_t *e = json_is_array(v) ? json_array_get(v, i) : v;
            if (!json_is_string(e) && !json_is_number(e) && !json_is_boolean(e)) {
                return usage_error(cmd,
                                   "query parameter %s: only strings, numbers and "
                                   "booleans can be sent",
                                   k);
            }
        }
        cnt += items;
    }
    *params = calloc(cnt > 0 ? cnt : 1, sizeof **params);
    if (*params == NULL) {
        return CTL_ERR;
    }
    json_object_foreach(*obj, k, v)
    {
        size_t items = json_is_array(v) ? json_array_size(v) : 1;
        for (size_t i = 0; i < items; i++) {
            json_t *e = json_is_array(v) ? json_array_get(v, i) : v;
            if (!json_is_string(e)) {
                struct as_buf s;
                as_buf_init(&s, 64);
                json_t *str = NULL;
                if (fmt_value(&s, e) == AS_OK) {
                    str = json_string(s.data);
                }
                as_buf_free(&s, false);
                if (str == NULL || (json_is_array(v) ? json_array_set_new(v, i, str)
                                                     : json_object_set_new(*obj, k, str)) != 0) {
                    return CTL_ERR;
                }
                e = str;
            }
            (*params)[*nparams].key = k;
            (*params)[*nparams].value = json_string_value(e);
            (*nparams)++;
        }
    }
    return CTL_OK;
}

/* ---- generic commands ---- */

/* Vault's rule for a 404 on read, list and delete: an answer with data or warnings still counts. */
static bool has_content(json_t *resp)
{
    return json_object_size(json_object_get(resp, "data")) > 0 ||
           json_array_size(json_object_get(resp, "warnings")) > 0;
}

/* The command's PATH argument, cleaned; prints a usage error when nothing is left. */
static int path_arg(const struct ctl *x, char **path)
{
    if (clean_path(x->args[0], path) != AS_OK) {
        fprintf(stderr, "Error: out of memory\n");
        return CTL_ERR;
    }
    if (*path == NULL) {
        return usage_error(x->cmd, "missing PATH");
    }
    return CTL_OK;
}

static int run_read_delete(struct ctl *x, const char *method)
{
    char *path = NULL;
    json_t *data = NULL;
    json_t *resp = NULL;
    struct as_client_param *q = NULL;
    size_t nq = 0;
    long status = 0;
    struct as_buf raw;
    bool is_read = strcmp(method, "GET") == 0;
    int rc;
    as_buf_init(&raw, 0);
    if ((rc = path_arg(x, &path)) != CTL_OK ||
        (rc = kv_query(x->cmd, x->args + 1, x->nargs - 1, &data, &q, &nq)) != CTL_OK ||
        (rc = open_client(x, true)) != CTL_OK ||
        (rc = call(x, method, path, q, nq, NULL, &status, &resp, &raw)) != CTL_OK) {
        goto out;
    }
    if (is_read && (status == 404 || (ok_status(status) && raw.len == 0)) && !has_content(resp)) {
        fprintf(stderr, "No value found at %s\n", path);
        rc = CTL_USAGE;
        goto out;
    }
    if (!ok_status(status) && !(status == 404 && has_content(resp))) {
        rc = api_error(status, resp);
        goto out;
    }
    if (resp != NULL) {
        rc = output_secret(x, resp);
    } else if (raw.len > 0) {
        /* Not JSON (a PEM, the metrics text): printed as it came. */
        if (fwrite(raw.data, 1, raw.len, stdout) != raw.len) {
            rc = CTL_ERR;
        }
    } else if (!x->json) {
        printf("Success! Data deleted (if it existed) at: %s\n", path);
    }
out:
    json_decref(resp);
    json_decref(data);
    free(q);
    free(path);
    as_buf_free(&raw, true);
    return rc;
}

static int cmd_read(struct ctl *x)
{
    return run_read_delete(x, "GET");
}

static int cmd_delete(struct ctl *x)
{
    return run_read_delete(x, "DELETE");
}

static int cmd_write(struct ctl *x)
{
    char *path = NULL;
    json_t *data = NULL;
    json_t *resp = NULL;
    long status = 0;
    struct as_buf raw;
    int rc;
    as_buf_init(&raw, 0);
    if ((rc = path_arg(x, &path)) != CTL_OK) {
        goto out;
    }
    if (x->nargs < 2 && !x->f[F_FORCE].on) {
        rc = usage_error(x->cmd, "Must supply data or use -force");
        goto out;
    }
    if ((rc = kv_build(x->cmd, x->args + 1, x->nargs - 1, &data)) != CTL_OK ||
        (rc = open_client(x, true)) != CTL_OK ||
        (rc = call(x, "POST", path, NULL, 0, data, &status, &resp, &raw)) != CTL_OK) {
        goto out;
    }
    if (!ok_status(status)) {
        rc = api_error(status, resp);
    } else if (resp != NULL) {
        rc = output_secret(x, resp);
    } else if (raw.len > 0) {
        if (fwrite(raw.data, 1, raw.len, stdout) != raw.len) {
            rc = CTL_ERR;
        }
    } else if (!x->json) {
        printf("Success! Data written to: %s\n", path);
    }
out:
    json_decref(resp);
    json_decref(data);
    free(path);
    as_buf_free(&raw, true);
    return rc;
}

/* data.keys of a LIST answer, or NULL (Vault's extractListData). */
static json_t *list_keys(json_t *resp)
{
    json_t *keys = json_object_get(json_object_get(resp, "data"), "keys");
    return json_is_array(keys) ? keys : NULL;
}

/* Prints keys as Vault's list table: "Keys", "----", then one sorted key a line. */
static int print_keys_table(json_t *keys)
{
    size_t n = json_array_size(keys);
    const char **v = calloc(n > 0 ? n : 1, sizeof *v);
    if (v == NULL) {
        return CTL_ERR;
    }
    for (size_t i = 0; i < n; i++) {
        v[i] = json_string_value(json_array_get(keys, i));
        if (v[i] == NULL) {
            free(v);
            fprintf(stderr, "Error: the server listed a key that is not a string\n");
            return CTL_ERR;
        }
    }
    qsort(v, n, sizeof *v, cmp_str);
    printf("Keys\n----\n");
    for (size_t i = 0; i < n; i++) {
        printf("%s\n", v[i]);
    }
    free(v);
    return CTL_OK;
}

static int cmd_list(struct ctl *x)
{
    char *path = NULL;
    json_t *resp = NULL;
    long status = 0;
    int rc;
    if ((rc = path_arg(x, &path)) != CTL_OK || (rc = open_client(x, true)) != CTL_OK ||
        (rc = call(x, "LIST", path, NULL, 0, NULL, &status, &resp, NULL)) != CTL_OK) {
        goto out;
    }
    if (status == 404 && has_content(resp)) {
        status = 200;
    }
    if (!ok_status(status) && status != 404) {
        rc = api_error(status, resp);
        goto out;
    }
    /* Vault: a 404 or an empty answer is "nothing there" (exit 2), not an error. */
    json_t *keys = status == 404 ? NULL : list_keys(resp);
    if (x->json) {
        if (keys == NULL) {
            printf("{}\n");
            rc = CTL_USAGE;
        } else {
            rc = print_json(keys);
        }
        goto out;
    }
    if (status == 404 || resp == NULL) {
        fprintf(stderr, "No value found at %s\n", path);
        rc = CTL_USAGE;
        goto out;
    }
    if (!json_is_object(json_object_get(resp, "data"))) {
        rc = output_secret(x, resp); /* only warnings, perhaps */
        goto out;
    }
    if (keys == NULL) {
        fprintf(stderr, "No entries found at %s\n", path);
        rc = CTL_USAGE;
        goto out;
    }
    print_warnings(resp);
    rc = print_keys_table(keys);
out:
    json_decref(resp);
    free(path);
    return rc;
}

/* ---- bootstrap ---- */

static int cmd_bootstrap(struct ctl *x)
{
    const char *code_arg = x->f[F_CODE].str;
    const char *file = NULL;
    struct as_buf b;
    json_t *body = NULL;
    json_t *resp = NULL;
    long status = 0;
    int errnum = 0;
    int rc = CTL_OK;
    as_buf_init(&b, MAX_TOKEN_FILE_BYTES);
    enum as_err r = AS_OK;
    if (code_arg == NULL) {
        file = BOOTSTRAP_CODE_FILE;
    } else if (code_arg[0] == '@') {
        file = code_arg + 1;
    } else {
        r = as_buf_append(&b, code_arg, strlen(code_arg));
    }
    if (file != NULL) {
        r = read_input(file, &b, &errnum);
        if (r == AS_ERR_NOT_FOUND && code_arg == NULL) {
            rc = usage_error(x->cmd, "no -code given and %s does not exist", BOOTSTRAP_CODE_FILE);
            goto out;
        }
        if (r != AS_OK) {
            rc = input_error("bootstrap code", file, r, errnum);
            goto out;
        }
    }
    if (r != AS_OK) {
        rc = CTL_ERR;
        goto out;
    }
    const char *code = "";
    if (b.len > 0) {
        char *nl = memchr(b.data, '\n', b.len);
        if (nl != NULL) {
            *nl = '\0';
        }
        code = trim(b.data);
    }
    if (*code == '\0') {
        rc = usage_error(x->cmd, "the bootstrap code is empty");
        goto out;
    }
    body = json_pack("{s:s}", "code", code);
    if (body == NULL) {
        fprintf(stderr, "Error: the bootstrap code is not valid text\n");
        rc = CTL_ERR;
        goto out;
    }
    /* Bootstrap is unauthenticated: no token is sent. */
    if ((rc = open_client(x, false)) != CTL_OK ||
        (rc = call(x, "POST", "sys/bootstrap", NULL, 0, body, &status, &resp, NULL)) != CTL_OK) {
        goto out;
    }
    rc = ok_status(status) ? output_secret(x, resp) : api_error(status, resp);
out:
    json_decref(resp);
    json_decref(body);
    as_buf_free(&b, true);
    return rc;
}

/* ---- login ---- */

/*
 * The -jwt value: "@FILE" reads FILE ("@-" or "-": standard input), anything else is the token
 * itself. Surrounding whitespace (a file's trailing newline) is dropped. *out is a JSON string.
 */
static int jwt_value(struct ctl *x, const char *arg, json_t **out)
{
    struct as_buf b;
    int errnum = 0;
    int rc = CTL_OK;
    const char *file = NULL;
    const char *start = NULL;
    size_t len = 0;
    enum as_err r = AS_OK;
    *out = NULL;
    as_buf_init(&b, MAX_INPUT_BYTES);
    if (arg[0] == '@') {
        file = arg + 1;
    } else if (strcmp(arg, "-") == 0) {
        file = "-";
    }
    if (file != NULL) {
        if (*file == '\0') {
            rc = usage_error(x->cmd, "-jwt=@ needs a file name");
            goto out;
        }
        if ((r = read_input(file, &b, &errnum)) != AS_OK) {
            rc = input_error("jwt", file, r, errnum);
            goto out;
        }
    } else if ((r = as_buf_append(&b, arg, strlen(arg))) != AS_OK) {
        fprintf(stderr, "Error: -jwt: %s\n", as_strerror(r));
        rc = CTL_ERR;
        goto out;
    }
    if (b.len > 0 && memchr(b.data, '\0', b.len) != NULL) {
        rc = usage_error(x->cmd, "the JWT holds a NUL byte");
        goto out;
    }
    trim_span(b.data != NULL ? b.data : "", &start, &len);
    if (len == 0) {
        rc = usage_error(x->cmd, "the JWT is empty%s%s", file != NULL ? " in " : "",
                         file != NULL ? (strcmp(file, "-") == 0 ? "standard input" : file) : "");
        goto out;
    }
    *out = json_stringn(start, len);
    if (*out == NULL) {
        rc = usage_error(x->cmd, "the JWT is not valid UTF-8 text");
    }
out:
    as_buf_free(&b, true);
    return rc;
}

/* Stores token in ~/.authsvc-token (0600, atomically), as the first and only line. */
static int store_token(const char *token)
{
    const char *home = getenv("HOME");
    struct as_buf path;
    struct as_buf data;
    int rc = CTL_OK;
    if (home == NULL || *home == '\0') {
        fprintf(stderr, "Error: HOME is not set: cannot store the token (use -no-store)\n");
        return CTL_ERR;
    }
    as_buf_init(&path, AS_CLIENT_MAX_PATH);
    as_buf_init(&data, AS_CLIENT_MAX_TOKEN + 2);
    if (as_buf_printf(&path, "%s/%s", home, TOKEN_FILE_NAME) != AS_OK ||
        as_buf_printf(&data, "%s\n", token) != AS_OK) {
        fprintf(stderr, "Error: cannot store the token: path or token too long\n");
        rc = CTL_ERR;
    } else if (as_file_write_atomic(path.data, data.data, data.len, 0600) != AS_OK) {
        fprintf(stderr, "Error: cannot write %s\n", path.data);
        rc = CTL_ERR;
    }
    as_buf_free(&path, false);
    as_buf_free(&data, true);
    return rc;
}

/*
 * login -method=jwt|cert: POST auth/<mount>/login, then the token goes to ~/.authsvc-token
 * (unless -no-store) and the auth block is shown as Vault's login does, without the token
 * itself unless it was not stored. -format=json prints the whole answer.
 */
static int cmd_login(struct ctl *x)
{
    const char *method = x->f[F_METHOD].str;
    const char *mount_arg = x->f[F_MOUNT].str;
    const char *role = x->f[F_ROLE].str;
    bool no_store = x->f[F_NO_STORE].on;
    bool jwt = false;
    char *mount = NULL;
    char *token = NULL;
    json_t *body = NULL;
    json_t *val = NULL;
    json_t *resp = NULL;
    long status = 0;
    int rc = CTL_OK;
    struct as_buf path;
    as_buf_init(&path, AS_CLIENT_MAX_PATH);

    if (method == NULL || *method == '\0') {
        rc = usage_error(x->cmd, "-method is required (jwt or cert)");
        goto out;
    }
    if (strcmp(method, "jwt") == 0) {
        jwt = true;
    } else if (strcmp(method, "cert") != 0) {
        rc = usage_error(x->cmd, "unsupported -method=%s (want jwt or cert)", method);
        goto out;
    }
    if (clean_path(mount_arg != NULL ? mount_arg : method, &mount) != AS_OK) {
        rc = CTL_ERR;
        goto out;
    }
    if (mount == NULL || strchr(mount, '/') != NULL) {
        rc = usage_error(x->cmd, "-mount must name one mount path (like \"%s\")", method);
        goto out;
    }
    if (role != NULL && *role == '\0') {
        rc = usage_error(x->cmd, "-role needs a value");
        goto out;
    }
    if ((body = json_object()) == NULL) {
        rc = CTL_ERR;
        goto out;
    }
    if (jwt) {
        if (x->f[F_JWT].str == NULL) {
            rc = usage_error(x->cmd, "-method=jwt needs -jwt=@FILE or -jwt=TOKEN");
            goto out;
        }
        if ((rc = jwt_value(x, x->f[F_JWT].str, &val)) != CTL_OK) {
            goto out;
        }
        if (json_object_set_new(body, "jwt", val) != 0 ||
            (role != NULL && json_object_set_new(body, "role", json_string(role)) != 0)) {
            val = NULL;
            rc = usage_error(x->cmd, "-role is not valid UTF-8 text");
            goto out;
        }
        val = NULL;
    } else {
        const char *addr = x->f[F_ADDRESS].str;
        if (addr == NULL && ((addr = getenv("AUTHSVC_ADDR")) == NULL || *addr == '\0')) {
            addr = DEFAULT_ADDR;
        }
        if (x->f[F_JWT].str != NULL) {
            rc = usage_error(x->cmd, "-jwt is only for -method=jwt");
            goto out;
        }
        if (x->f[F_CLIENT_CERT].str == NULL || *x->f[F_CLIENT_CERT].str == '\0') {
            rc = usage_error(x->cmd, "-method=cert needs -client-cert=FILE (and -client-key=FILE)");
            goto out;
        }
        /* The certificate is presented in the TLS handshake: only the HTTPS listener sees it. */
        if (strncmp(addr, "https://", 8) != 0) {
            rc = usage_error(x->cmd,
                             "-method=cert needs an https:// server address (AUTHSVC_ADDR is "
                             "\"%s\"); AUTHSVC_CACERT names its CA",
                             addr);
            goto out;
        }
        if (role != NULL && json_object_set_new(body, "name", json_string(role)) != 0) {
            rc = usage_error(x->cmd, "-role is not valid UTF-8 text");
            goto out;
        }
    }
    if (as_buf_printf(&path, "auth/%s/login", mount) != AS_OK) {
        rc = usage_error(x->cmd, "-mount is too long");
        goto out;
    }
    /* A login is unauthenticated: no token is sent. */
    if ((rc = open_client(x, false)) != CTL_OK ||
        (rc = call(x, "POST", path.data, NULL, 0, body, &status, &resp, NULL)) != CTL_OK) {
        goto out;
    }
    if (!ok_status(status)) {
        rc = api_error(status, resp);
        goto out;
    }
    json_t *auth = json_object_get(resp, "auth");
    json_t *ct = json_object_get(auth, "client_token");
    if (json_string_length(ct) == 0) {
        fprintf(stderr, "Error: the server's answer holds no token (auth.client_token)\n");
        rc = CTL_ERR;
        goto out;
    }
    if ((token = strdup(json_string_value(ct))) == NULL) {
        rc = CTL_ERR;
        goto out;
    }
    if (!no_store && (rc = store_token(token)) != CTL_OK) {
        goto out;
    }
    const char *env = getenv("AUTHSVC_TOKEN");
    if (!no_store && env != NULL && *env != '\0') {
        fprintf(stderr, "WARNING! The AUTHSVC_TOKEN environment variable is set! It takes "
                        "precedence over the token stored by this command; unset it to use "
                        "the new one.\n\n");
    }
    if (x->json) {
        rc = print_json(resp);
        goto out;
    }
    if (no_store) {
        printf("Success! You are now authenticated. The token is NOT stored in ~/" TOKEN_FILE_NAME
               " (-no-store): pass it with AUTHSVC_TOKEN on each request.\n\n");
    } else {
        printf("Success! You are now authenticated. The token is stored in ~/" TOKEN_FILE_NAME
               " and future authctl requests will use it.\n\n");
        /* Stored: it is not printed (the jansson allocator wipes it on deletion). */
        json_object_del(auth, "client_token");
    }
    rc = output_secret(x, resp);
out:
    if (token != NULL) {
        as_wipe(token, strlen(token));
        free(token);
    }
    json_decref(val);
    json_decref(resp);
    json_decref(body);
    free(mount);
    as_buf_free(&path, false);
    return rc;
}

/* ---- token commands ---- */

/* Sets key to a flag's value when it was given and is a valid duration. */
static int put_duration(struct ctl *x, json_t *body, enum flag_id id, const char *key)
{
    int64_t secs;
    const char *v = x->f[id].str;
    if (v == NULL) {
        return CTL_OK;
    }
    if (as_duration_parse(v, &secs) != AS_OK) {
        return usage_error(x->cmd, "invalid duration for -%s: %s", flag_defs[id].name, v);
    }
    /* Sent as typed: the server accepts Go duration strings and integer seconds (SPEC §2). */
    return json_object_set_new(body, key, json_string(v)) == 0 ? CTL_OK : CTL_ERR;
}

static int put_list(struct ctl *x, json_t *body, enum flag_id id, const char *key)
{
    if (x->f[id].list == NULL) {
        return CTL_OK;
    }
    return json_object_set(body, key, x->f[id].list) == 0 ? CTL_OK : CTL_ERR;
}

static int build_create_body(struct ctl *x, json_t *body)
{
    int rc;
    if ((rc = put_list(x, body, F_POLICY, "policies")) != CTL_OK ||
        (rc = put_duration(x, body, F_TTL, "ttl")) != CTL_OK ||
        (rc = put_duration(x, body, F_EXPLICIT_MAX_TTL, "explicit_max_ttl")) != CTL_OK ||
        (rc = put_duration(x, body, F_PERIOD, "period")) != CTL_OK ||
        (rc = put_list(x, body, F_SPIFFE_ID, "spiffe_ids")) != CTL_OK ||
        (rc = put_list(x, body, F_ALLOWED_DNS_NAME, "allowed_dns_names")) != CTL_OK) {
        return rc;
    }
    if (x->f[F_DISPLAY_NAME].str != NULL &&
        json_object_set_new(body, "display_name", json_string(x->f[F_DISPLAY_NAME].str)) != 0) {
        return usage_error(x->cmd, "invalid -display-name");
    }
    if (x->f[F_NUM_USES].str != NULL) {
        const char *s = x->f[F_NUM_USES].str;
        char *end = NULL;
        errno = 0;
        long long n = strtoll(s, &end, 10);
        if (errno != 0 || end == s || *end != '\0' || n < 0) {
            return usage_error(x->cmd, "invalid -num-uses: %s", s);
        }
        if (json_object_set_new(body, "num_uses", json_integer((json_int_t)n)) != 0) {
            return CTL_ERR;
        }
    }
    if (x->f[F_RENEWABLE].seen &&
        json_object_set_new(body, "renewable", json_boolean(x->f[F_RENEWABLE].on)) != 0) {
        return CTL_ERR;
    }
    if (x->f[F_NO_DEFAULT_POLICY].on &&
        json_object_set_new(body, "no_default_policy", json_true()) != 0) {
        return CTL_ERR;
    }
    json_t *meta_list = x->f[F_METADATA].list;
    if (meta_list != NULL) {
        json_t *meta = json_object();
        if (meta == NULL || json_object_set_new(body, "meta", meta) != 0) {
            return CTL_ERR;
        }
        for (size_t i = 0; i < json_array_size(meta_list); i++) {
            const char *kv = json_string_value(json_array_get(meta_list, i));
            const char *eq = strchr(kv, '=');
            if (eq == NULL || eq == kv) {
                return usage_error(x->cmd, "invalid -metadata %s: want key=value", kv);
            }
            if (json_object_setn_new(meta, kv, (size_t)(eq - kv), json_string(eq + 1)) != 0) {
                return usage_error(x->cmd, "invalid -metadata %s: not UTF-8", kv);
            }
        }
    }
    return CTL_OK;
}

/*
 * Sends a token request and prints the answer. redact names a field that holds the caller's own
 * token ("data.id" of a lookup, "auth.client_token" of a renew): it is dropped before printing,
 * so authctl never shows a token it was given.
 */
static int token_call(struct ctl *x, const char *method, const char *path, json_t *body,
                      const char *redact_obj, const char *redact_key)
{
    json_t *resp = NULL;
    long status = 0;
    int rc;
    if ((rc = open_client(x, true)) != CTL_OK ||
        (rc = call(x, method, path, NULL, 0, body, &status, &resp, NULL)) != CTL_OK) {
        goto out;
    }
    if (!ok_status(status)) {
        rc = api_error(status, resp);
        goto out;
    }
    if (redact_obj != NULL) {
        json_object_del(json_object_get(resp, redact_obj), redact_key);
    }
    rc = output_secret(x, resp);
out:
    json_decref(resp);
    return rc;
}

static int cmd_token_create(struct ctl *x)
{
    json_t *body = json_object();
    int rc = CTL_ERR;
    if (body != NULL && (rc = build_create_body(x, body)) == CTL_OK) {
        rc = token_call(x, "POST",
                        x->f[F_ORPHAN].on ? "auth/token/create-orphan" : "auth/token/create", body,
                        NULL, NULL);
    }
    json_decref(body);
    return rc;
}

static int cmd_token_lookup(struct ctl *x)
{
    json_t *body = NULL;
    int rc;
    if (x->f[F_ACCESSOR].on && x->nargs == 0) {
        return usage_error(x->cmd, "-accessor needs an ACCESSOR argument");
    }
    if (x->nargs == 0) {
        return token_call(x, "GET", "auth/token/lookup-self", NULL, "data", "id");
    }
    bool acc = x->f[F_ACCESSOR].on;
    body = json_pack("{s:s}", acc ? "accessor" : "token", x->args[0]);
    if (body == NULL) {
        return usage_error(x->cmd, "invalid %s", acc ? "accessor" : "token");
    }
    rc = token_call(x, "POST", acc ? "auth/token/lookup-accessor" : "auth/token/lookup", body,
                    "data", "id");
    json_decref(body);
    return rc;
}

static int cmd_token_renew(struct ctl *x)
{
    bool acc = x->f[F_ACCESSOR].on;
    const char *path = "auth/token/renew-self";
    int rc;
    json_t *body = json_object();
    if (body == NULL) {
        return CTL_ERR;
    }
    if (acc && x->nargs == 0) {
        rc = usage_error(x->cmd, "-accessor needs an ACCESSOR argument");
        goto out;
    }
    if ((rc = put_duration(x, body, F_INCREMENT, "increment")) != CTL_OK) {
        goto out;
    }
    if (x->nargs == 1) {
        path = acc ? "auth/token/renew-accessor" : "auth/token/renew";
        if (json_object_set_new(body, acc ? "accessor" : "token", json_string(x->args[0])) != 0) {
            rc = usage_error(x->cmd, "invalid %s", acc ? "accessor" : "token");
            goto out;
        }
    }
    rc = token_call(x, "POST", path, body, "auth", "client_token");
out:
    json_decref(body);
    return rc;
}

static int cmd_token_revoke(struct ctl *x)
{
    bool self = x->f[F_SELF].on;
    bool acc = x->f[F_ACCESSOR].on;
    const char *mode = x->f[F_MODE].str;
    const char *path;
    json_t *body = NULL;
    json_t *resp = NULL;
    long status = 0;
    int rc;
    if (mode != NULL && strcmp(mode, "orphan") != 0) {
        return usage_error(x->cmd, "unsupported -mode=%s (only \"orphan\")", mode);
    }
    if (self && (acc || mode != NULL || x->nargs > 0)) {
        return usage_error(x->cmd, "-self takes no TOKEN, -accessor or -mode");
    }
    if (acc && mode != NULL) {
        return usage_error(x->cmd, "cannot use -accessor with -mode=orphan");
    }
    if (!self && x->nargs == 0) {
        return usage_error(x->cmd, "Not enough arguments (expected 1, got 0)");
    }
    if (self) {
        path = "auth/token/revoke-self";
    } else {
        path = acc ? "auth/token/revoke-accessor"
                   : (mode != NULL ? "auth/token/revoke-orphan" : "auth/token/revoke");
        body = json_pack("{s:s}", acc ? "accessor" : "token", x->args[0]);
        if (body == NULL) {
            return usage_error(x->cmd, "invalid %s", acc ? "accessor" : "token");
        }
    }
    if ((rc = open_client(x, true)) != CTL_OK ||
        (rc = call(x, "POST", path, NULL, 0, body, &status, &resp, NULL)) != CTL_OK) {
        goto out;
    }
    if (!ok_status(status)) {
        rc = api_error(status, resp);
        goto out;
    }
    printf("Success! Revoked token (if it existed)\n");
out:
    json_decref(resp);
    json_decref(body);
    return rc;
}

/* ---- policy commands ---- */

/* sys/policies/acl/<name>: Vault lower-cases policy names; a name is one path segment. */
static int policy_path(struct ctl *x, char **path, const char **name_out)
{
    char *name = NULL;
    struct as_buf b;
    int rc = CTL_OK;
    *path = NULL;
    as_buf_init(&b, AS_CLIENT_MAX_PATH);
    const char *s;
    size_t n;
    trim_span(x->args[0], &s, &n);
    if (n == 0 || memchr(s, '/', n) != NULL) {
        return usage_error(x->cmd, "invalid policy name \"%s\"", x->args[0]);
    }
    name = strndup(s, n);
    if (name == NULL) {
        return CTL_ERR;
    }
    for (char *p = name; *p != '\0'; p++) {
        if (*p >= 'A' && *p <= 'Z') {
            *p = (char)(*p - 'A' + 'a');
        }
    }
    if (as_buf_printf(&b, "sys/policies/acl/%s", name) != AS_OK) {
        rc = usage_error(x->cmd, "policy name too long");
        goto out;
    }
    *path = b.data;
    as_buf_init(&b, 0);
    /* The name is the tail of the path, which lives as long as *path. */
    *name_out = *path + strlen("sys/policies/acl/");
out:
    free(name);
    as_buf_free(&b, false);
    return rc;
}

static int cmd_policy_write(struct ctl *x)
{
    char *path = NULL;
    const char *name = NULL;
    json_t *text = NULL;
    json_t *body = NULL;
    json_t *resp = NULL;
    long status = 0;
    int rc;
    if ((rc = policy_path(x, &path, &name)) != CTL_OK ||
        (rc = read_string_value("policy", x->args[1], &text)) != CTL_OK) {
        goto out;
    }
    body = json_pack("{s:O}", "policy", text);
    if (body == NULL) {
        rc = CTL_ERR;
        goto out;
    }
    if ((rc = open_client(x, true)) != CTL_OK ||
        (rc = call(x, "POST", path, NULL, 0, body, &status, &resp, NULL)) != CTL_OK) {
        goto out;
    }
    if (!ok_status(status)) {
        rc = api_error(status, resp);
        goto out;
    }
    printf("Success! Uploaded policy: %s\n", name);
out:
    json_decref(resp);
    json_decref(body);
    json_decref(text);
    free(path);
    return rc;
}

static int cmd_policy_read(struct ctl *x)
{
    char *path = NULL;
    const char *name = NULL;
    json_t *resp = NULL;
    json_t *out = NULL;
    long status = 0;
    int rc;
    if ((rc = policy_path(x, &path, &name)) != CTL_OK || (rc = open_client(x, true)) != CTL_OK ||
        (rc = call(x, "GET", path, NULL, 0, NULL, &status, &resp, NULL)) != CTL_OK) {
        goto out;
    }
    json_t *rules = json_object_get(json_object_get(resp, "data"), "policy");
    if (status == 404 || (ok_status(status) && !json_is_string(rules))) {
        fprintf(stderr, "No policy named: %s\n", name);
        rc = CTL_USAGE;
        goto out;
    }
    if (!ok_status(status)) {
        rc = api_error(status, resp);
        goto out;
    }
    if (x->json) {
        /* Vault prints {"policy": <text>} here, not the whole answer. */
        out = json_pack("{s:O}", "policy", rules);
        rc = out != NULL ? print_json(out) : CTL_ERR;
        goto out;
    }
    const char *s;
    size_t n;
    trim_span(json_string_value(rules), &s, &n);
    printf("%.*s\n", (int)(n > INT32_MAX ? INT32_MAX : n), s);
out:
    json_decref(out);
    json_decref(resp);
    free(path);
    return rc;
}

static int cmd_policy_list(struct ctl *x)
{
    json_t *resp = NULL;
    json_t *empty = NULL;
    long status = 0;
    int rc;
    if ((rc = open_client(x, true)) != CTL_OK ||
        (rc = call(x, "LIST", "sys/policies/acl", NULL, 0, NULL, &status, &resp, NULL)) != CTL_OK) {
        goto out;
    }
    if (!ok_status(status)) {
        rc = api_error(status, resp);
        goto out;
    }
    json_t *keys = list_keys(resp);
    if (x->json) {
        empty = json_array();
        rc = print_json(keys != NULL ? keys : empty);
        goto out;
    }
    for (size_t i = 0; i < json_array_size(keys); i++) {
        const char *k = json_string_value(json_array_get(keys, i));
        if (k != NULL) {
            printf("%s\n", k);
        }
    }
out:
    json_decref(empty);
    json_decref(resp);
    return rc;
}

static int cmd_policy_delete(struct ctl *x)
{
    char *path = NULL;
    const char *name = NULL;
    json_t *resp = NULL;
    long status = 0;
    int rc;
    if ((rc = policy_path(x, &path, &name)) != CTL_OK || (rc = open_client(x, true)) != CTL_OK ||
        (rc = call(x, "DELETE", path, NULL, 0, NULL, &status, &resp, NULL)) != CTL_OK) {
        goto out;
    }
    if (!ok_status(status)) {
        rc = api_error(status, resp);
        goto out;
    }
    printf("Success! Deleted policy: %s\n", name);
out:
    json_decref(resp);
    free(path);
    return rc;
}

/* ---- SVID, bundle and inventory commands ---- */

#define SVID_FILE "svid.pem"
#define SVID_KEY_FILE "svid_key.pem"
#define BUNDLE_FILE "bundle.pem"
/* sys/identities paging: a bound on the pages followed and on the rows gathered, so that a
 * misbehaving server cannot keep authctl looping or growing forever. */
#define MAX_IDENTITY_PAGES 100000
#define MAX_IDENTITY_ROWS 1000000

/*
 * The value of a list flag that takes one value here (-spiffe-id on the svid and identities
 * commands). *out is NULL when the flag was not given.
 */
static int single_value(struct ctl *x, enum flag_id id, const char **out)
{
    json_t *l = x->f[id].list;
    *out = NULL;
    if (l == NULL) {
        return CTL_OK;
    }
    if (json_array_size(l) != 1) {
        return usage_error(x->cmd, "-%s may be given only once here", flag_defs[id].name);
    }
    *out = json_string_value(json_array_get(l, 0));
    if (*out == NULL || **out == '\0') {
        return usage_error(x->cmd, "-%s needs a value", flag_defs[id].name);
    }
    return CTL_OK;
}

/* The -spiffe-id and -ttl flags of the svid commands into body. */
static int put_svid_common(struct ctl *x, json_t *body)
{
    const char *id = NULL;
    int rc;
    if ((rc = single_value(x, F_SPIFFE_ID, &id)) != CTL_OK ||
        (rc = put_duration(x, body, F_TTL, "ttl")) != CTL_OK) {
        return rc;
    }
    if (id != NULL && json_object_set_new(body, "spiffe_id", json_string(id)) != 0) {
        return CTL_ERR;
    }
    return CTL_OK;
}

/* Creates dir (0700) when missing; it must be a directory. */
static int ensure_dir(const char *dir)
{
    struct stat st;
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "Error: cannot create %s: %s\n", dir, strerror(errno));
        return CTL_ERR;
    }
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        fprintf(stderr, "Error: %s is not a directory\n", dir);
        return CTL_ERR;
    }
    return CTL_OK;
}

/* Writes data to dir/name atomically with mode; prints why on failure. */
static int write_out_file(const char *dir, const char *name, const char *data, size_t len,
                          unsigned mode)
{
    struct as_buf path;
    int rc = CTL_OK;
    as_buf_init(&path, AS_CLIENT_MAX_PATH);
    if (as_buf_printf(&path, "%s/%s", dir, name) != AS_OK) {
        fprintf(stderr, "Error: the path %s/%s is too long\n", dir, name);
        rc = CTL_ERR;
    } else if (as_file_write_atomic(path.data, data, len, mode) != AS_OK) {
        fprintf(stderr, "Error: cannot write %s\n", path.data);
        rc = CTL_ERR;
    }
    as_buf_free(&path, false);
    return rc;
}

/* Appends a PEM block, adding the newline that separates it from the next one if it lacks it. */
static enum as_err append_pem(struct as_buf *b, const char *pem)
{
    size_t n = strlen(pem);
    enum as_err r = as_buf_append(b, pem, n);
    if (r == AS_OK && n > 0 && pem[n - 1] != '\n') {
        r = as_buf_append(b, "\n", 1);
    }
    return r;
}

static enum as_err add_time_row(struct table *t, const char *key, json_t *v)
{
    char ts[64];
    if (!json_is_integer(v)) {
        return table_add_str(t, key, json_is_string(v) ? json_string_value(v) : "");
    }
    as_time_rfc3339((int64_t)json_integer_value(v), ts, sizeof ts);
    return table_add_str(t, key, ts);
}

static const char *str_or_empty(json_t *v)
{
    return json_is_string(v) ? json_string_value(v) : "";
}

static int cmd_svid_x509(struct ctl *x)
{
    const char *dir = x->f[F_OUT_DIR].str;
    char *key_pem = NULL;
    size_t key_len = 0;
    char *csr_pem = NULL;
    json_t *body = NULL;
    json_t *resp = NULL;
    long status = 0;
    struct as_buf chain;
    struct table t = {0};
    enum as_err r = AS_OK;
    int rc;
    as_buf_init(&chain, AS_CLIENT_MAX_RESPONSE);
    if (dir == NULL || *dir == '\0') {
        return usage_error(x->cmd, "-out-dir is required");
    }
    if ((body = json_object()) == NULL) {
        return CTL_ERR;
    }
    if ((rc = put_svid_common(x, body)) != CTL_OK ||
        (rc = put_list(x, body, F_DNS, "dns_names")) != CTL_OK ||
        (rc = ensure_dir(dir)) != CTL_OK || (rc = open_client(x, true)) != CTL_OK) {
        goto out;
    }
    /* The key never leaves this process except into svid_key.pem: only the CSR is sent. */
    if ((r = as_csr_new_p256(&key_pem, &key_len, &csr_pem)) != AS_OK) {
        fprintf(stderr, "Error: cannot generate the key and CSR: %s\n", as_strerror(r));
        rc = CTL_ERR;
        goto out;
    }
    if (json_object_set_new(body, "csr", json_string(csr_pem)) != 0) {
        rc = CTL_ERR;
        goto out;
    }
    if ((rc = call(x, "POST", "svid/x509", NULL, 0, body, &status, &resp, NULL)) != CTL_OK) {
        goto out;
    }
    if (!ok_status(status)) {
        rc = api_error(status, resp);
        goto out;
    }
    json_t *data = json_object_get(resp, "data");
    json_t *cert = json_object_get(data, "certificate");
    json_t *bundle = json_object_get(data, "bundle");
    json_t *ca_chain = json_object_get(data, "ca_chain");
    if (json_string_length(cert) == 0 || json_string_length(bundle) == 0 ||
        (ca_chain != NULL && !json_is_array(ca_chain) && !json_is_null(ca_chain))) {
        fprintf(stderr, "Error: the server's answer lacks the certificate or the bundle\n");
        rc = CTL_ERR;
        goto out;
    }
    if (as_csr_cert_matches(json_string_value(cert), csr_pem) != AS_OK) {
        fprintf(stderr, "Error: the certificate from the server is not for the key sent\n");
        rc = CTL_ERR;
        goto out;
    }
    /* svid.pem: the leaf, then the intermediates up to (not including) a bundle root. */
    r = append_pem(&chain, json_string_value(cert));
    for (size_t i = 0; r == AS_OK && i < json_array_size(ca_chain); i++) {
        json_t *e = json_array_get(ca_chain, i);
        r = json_is_string(e) ? append_pem(&chain, json_string_value(e)) : AS_ERR_INVALID;
    }
    if (r != AS_OK) {
        fprintf(stderr, "Error: cannot assemble %s: %s\n", SVID_FILE, as_strerror(r));
        rc = CTL_ERR;
        goto out;
    }
    /* The key first, so that a reader never finds a certificate without its key (SPEC §9). */
    if ((rc = write_out_file(dir, SVID_KEY_FILE, key_pem, key_len, 0600)) != CTL_OK ||
        (rc = write_out_file(dir, SVID_FILE, chain.data, chain.len, 0644)) != CTL_OK ||
        (rc = write_out_file(dir, BUNDLE_FILE, json_string_value(bundle),
                             json_string_length(bundle), 0644)) != CTL_OK) {
        goto out;
    }
    /* Nothing was generated by the server, but never print a private key even if sent one. */
    json_object_del(data, "private_key");
    if (x->json) {
        rc = print_json(resp);
        goto out;
    }
    print_warnings(resp);
    struct as_buf path;
    as_buf_init(&path, AS_CLIENT_MAX_PATH);
    if ((r = table_add_str(&t, "spiffe_id", str_or_empty(json_object_get(data, "spiffe_id")))) !=
            AS_OK ||
        (r = table_add_str(&t, "serial_number",
                           str_or_empty(json_object_get(data, "serial_number")))) != AS_OK ||
        (r = add_time_row(&t, "expiration", json_object_get(data, "expiration"))) != AS_OK ||
        (r = as_buf_printf(&path, "%s/%s", dir, SVID_FILE)) != AS_OK ||
        (r = table_add(&t, "svid_file", &path)) != AS_OK ||
        (r = as_buf_printf(&path, "%s/%s", dir, SVID_KEY_FILE)) != AS_OK ||
        (r = table_add(&t, "key_file", &path)) != AS_OK ||
        (r = as_buf_printf(&path, "%s/%s", dir, BUNDLE_FILE)) != AS_OK ||
        (r = table_add(&t, "bundle_file", &path)) != AS_OK) {
        as_buf_free(&path, false);
        fprintf(stderr, "Error: cannot format the answer: %s\n", as_strerror(r));
        rc = CTL_ERR;
        goto out;
    }
    as_buf_free(&path, false);
    table_print(&t);
out:
    table_free(&t);
    as_free_secret_str(key_pem);
    free(csr_pem);
    as_buf_free(&chain, false);
    json_decref(resp);
    json_decref(body);
    return rc;
}

static int cmd_svid_jwt(struct ctl *x)
{
    json_t *aud = x->f[F_AUDIENCE].list;
    json_t *body = NULL;
    json_t *resp = NULL;
    long status = 0;
    struct table t = {0};
    enum as_err r;
    int rc;
    if (json_array_size(aud) == 0) {
        return usage_error(x->cmd, "-audience is required");
    }
    for (size_t i = 0; i < json_array_size(aud); i++) {
        if (json_string_length(json_array_get(aud, i)) == 0) {
            return usage_error(x->cmd, "-audience needs a value");
        }
    }
    /* One audience is sent as a string, several as a list (both are accepted, SPEC §6). */
    body = json_array_size(aud) == 1 ? json_pack("{s:O}", "audience", json_array_get(aud, 0))
                                     : json_pack("{s:O}", "audience", aud);
    if (body == NULL) {
        return CTL_ERR;
    }
    if ((rc = put_svid_common(x, body)) != CTL_OK || (rc = open_client(x, true)) != CTL_OK ||
        (rc = call(x, "POST", "svid/jwt", NULL, 0, body, &status, &resp, NULL)) != CTL_OK) {
        goto out;
    }
    if (!ok_status(status)) {
        rc = api_error(status, resp);
        goto out;
    }
    if (x->json) {
        rc = print_json(resp);
        goto out;
    }
    json_t *data = json_object_get(resp, "data");
    print_warnings(resp);
    if ((r = table_add_str(&t, "token", str_or_empty(json_object_get(data, "token")))) != AS_OK ||
        (r = table_add_str(&t, "spiffe_id", str_or_empty(json_object_get(data, "spiffe_id")))) !=
            AS_OK ||
        (r = add_time_row(&t, "expiration", json_object_get(data, "expiration"))) != AS_OK) {
        fprintf(stderr, "Error: cannot format the answer: %s\n", as_strerror(r));
        rc = CTL_ERR;
        goto out;
    }
    table_print(&t);
out:
    table_free(&t);
    json_decref(resp);
    json_decref(body);
    return rc;
}

/* bundle's -format: pem (also "table", the default) or jwks (also "json"). */
static bool bundle_format_jwks(const char *format, bool *jwks)
{
    if (format == NULL || strcmp(format, "pem") == 0 || strcmp(format, "table") == 0) {
        *jwks = false;
        return true;
    }
    if (strcmp(format, "jwks") == 0 || strcmp(format, "json") == 0) {
        *jwks = true;
        return true;
    }
    return false;
}

static int cmd_bundle(struct ctl *x)
{
    json_t *resp = NULL;
    long status = 0;
    struct as_buf raw;
    bool jwks = false;
    int rc;
    as_buf_init(&raw, 0);
    if (!bundle_format_jwks(x->f[F_FORMAT].str, &jwks)) {
        return usage_error(x->cmd, "Invalid format: %s (want pem or jwks)", x->f[F_FORMAT].str);
    }
    /* Both bundles are public: no token is sent. */
    if ((rc = open_client(x, false)) != CTL_OK ||
        (rc = call(x, "GET", jwks ? "svid/bundle" : "pki/bundle/pem", NULL, 0, NULL, &status, &resp,
                   &raw)) != CTL_OK) {
        goto out;
    }
    if (!ok_status(status)) {
        rc = api_error(status, resp);
        goto out;
    }
    if (jwks) {
        if (!json_is_array(json_object_get(resp, "keys"))) {
            fprintf(stderr, "Error: the server's bundle is not a SPIFFE bundle\n");
            rc = CTL_ERR;
            goto out;
        }
        rc = print_json(resp);
        goto out;
    }
    if (raw.len == 0 || memchr(raw.data, '\0', raw.len) != NULL ||
        strstr(raw.data, "-----BEGIN CERTIFICATE-----") == NULL) {
        fprintf(stderr, "Error: the server's bundle is not PEM\n");
        rc = CTL_ERR;
        goto out;
    }
    if (fwrite(raw.data, 1, raw.len, stdout) != raw.len) {
        rc = CTL_ERR;
    }
out:
    json_decref(resp);
    as_buf_free(&raw, false);
    return rc;
}

/* The identities table: a header and one row of cells per identity. */
#define ID_COLS 10

static const char *const id_headers[ID_COLS] = {
    "Serial", "SPIFFE ID",      "Kind",       "Issued", "Expires",
    "State",  "Token Accessor", "Auth Mount", "Role",   "Login Subject"};

/* One cell as text: strings (control characters shown as '?', as they may come from a login
 * claim and must not drive the terminal), times as RFC 3339, lists joined with ','. */
static enum as_err id_cell(struct as_buf *b, json_t *v, bool is_time)
{
    enum as_err r = AS_OK;
    char ts[64];
    if (is_time && json_is_integer(v)) {
        if (json_integer_value(v) == 0) {
            return AS_OK;
        }
        as_time_rfc3339((int64_t)json_integer_value(v), ts, sizeof ts);
        return as_buf_append(b, ts, strlen(ts));
    }
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        size_t n = json_string_length(v);
        for (size_t i = 0; i < n && r == AS_OK; i++) {
            unsigned char ch = (unsigned char)s[i];
            r = as_buf_append(b, ch < 0x20 || ch == 0x7f ? "?" : &s[i], 1);
        }
        return r;
    }
    if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v) && r == AS_OK; i++) {
            if (i > 0) {
                r = as_buf_append(b, ",", 1);
            }
            if (r == AS_OK) {
                r = id_cell(b, json_array_get(v, i), false);
            }
        }
        return r;
    }
    if (v == NULL || json_is_null(v)) {
        return AS_OK;
    }
    return fmt_value(b, v);
}

static int print_identities_table(json_t *all)
{
    static const char *const fields[ID_COLS] = {
        "serial", "spiffe_id",      "kind",       "issued", "expires",
        "state",  "token_accessor", "auth_mount", "role",   "login_subject"};
    size_t n = json_array_size(all);
    size_t width[ID_COLS];
    char **cells = NULL;
    struct as_buf b;
    enum as_err r = AS_OK;
    int rc = CTL_OK;
    as_buf_init(&b, AS_CLIENT_MAX_RESPONSE);
    if (n > SIZE_MAX / ID_COLS / sizeof *cells) {
        return CTL_ERR;
    }
    cells = calloc(n * ID_COLS + 1, sizeof *cells);
    if (cells == NULL) {
        return CTL_ERR;
    }
    for (size_t c = 0; c < ID_COLS; c++) {
        width[c] = strlen(id_headers[c]);
    }
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(all, i);
        for (size_t c = 0; c < ID_COLS; c++) {
            bool is_time = c == 3 || c == 4;
            b.len = 0;
            if ((r = id_cell(&b, json_object_get(e, fields[c]), is_time)) != AS_OK) {
                goto out;
            }
            cells[i * ID_COLS + c] = strdup(b.len > 0 ? b.data : "n/a");
            if (cells[i * ID_COLS + c] == NULL) {
                r = AS_ERR_NOMEM;
                goto out;
            }
            size_t w = strlen(cells[i * ID_COLS + c]);
            if (w > width[c]) {
                width[c] = w;
            }
        }
    }
    for (size_t i = 0; i <= n; i++) {
        for (size_t c = 0; c < ID_COLS; c++) {
            const char *s = i == 0 ? id_headers[c] : cells[(i - 1) * ID_COLS + c];
            if (c + 1 == ID_COLS) {
                printf("%s\n", s);
            } else {
                int pad = (int)(width[c] > INT32_MAX ? INT32_MAX : width[c]) - (int)strlen(s);
                printf("%s%*s    ", s, pad > 0 ? pad : 0, "");
            }
        }
    }
out:
    for (size_t i = 0; cells != NULL && i < n * ID_COLS; i++) {
        free(cells[i]);
    }
    free(cells);
    as_buf_free(&b, false);
    if (r != AS_OK) {
        fprintf(stderr, "Error: cannot format the answer: %s\n", as_strerror(r));
        rc = CTL_ERR;
    }
    return rc;
}

static int cmd_identities(struct ctl *x)
{
    const char *glob = NULL;
    const char *state = x->f[F_STATE].str;
    const char *limit = x->f[F_LIMIT].str;
    struct as_client_param q[4];
    json_t *all = NULL;
    json_t *resp = NULL;
    char *after = NULL;
    long status = 0;
    int rc;
    if ((rc = single_value(x, F_SPIFFE_ID, &glob)) != CTL_OK) {
        return rc;
    }
    if (state != NULL && strcmp(state, "active") != 0 && strcmp(state, "expired") != 0 &&
        strcmp(state, "revoked") != 0) {
        return usage_error(x->cmd, "invalid -state=%s (want active, expired or revoked)", state);
    }
    if (limit != NULL) {
        char *end = NULL;
        errno = 0;
        long long v = strtoll(limit, &end, 10);
        if (errno != 0 || end == limit || *end != '\0' || v <= 0) {
            return usage_error(x->cmd, "invalid -limit=%s (want a positive integer)", limit);
        }
    }
    if ((all = json_array()) == NULL) {
        return CTL_ERR;
    }
    if ((rc = open_client(x, true)) != CTL_OK) {
        goto out;
    }
    /* Every page, following the opaque "next" cursor into "after" (SPEC §8). */
    for (size_t page = 0;; page++) {
        size_t nq = 0;
        if (page >= MAX_IDENTITY_PAGES) {
            fprintf(stderr, "Error: more than %d pages of identities\n", MAX_IDENTITY_PAGES);
            rc = CTL_ERR;
            goto out;
        }
        if (glob != NULL) {
            q[nq++] = (struct as_client_param){"spiffe_id", glob};
        }
        if (state != NULL) {
            q[nq++] = (struct as_client_param){"state", state};
        }
        if (limit != NULL) {
            q[nq++] = (struct as_client_param){"limit", limit};
        }
        if (after != NULL) {
            q[nq++] = (struct as_client_param){"after", after};
        }
        json_decref(resp);
        resp = NULL;
        if ((rc = call(x, "GET", "sys/identities", q, nq, NULL, &status, &resp, NULL)) != CTL_OK) {
            goto out;
        }
        if (!ok_status(status)) {
            rc = api_error(status, resp);
            goto out;
        }
        json_t *data = json_object_get(resp, "data");
        json_t *ids = json_object_get(data, "identities");
        json_t *next = json_object_get(data, "next");
        if (!json_is_array(ids)) {
            fprintf(stderr, "Error: the server's answer lacks data.identities\n");
            rc = CTL_ERR;
            goto out;
        }
        if (json_array_size(all) + json_array_size(ids) > MAX_IDENTITY_ROWS) {
            fprintf(stderr, "Error: more than %d identities\n", MAX_IDENTITY_ROWS);
            rc = CTL_ERR;
            goto out;
        }
        if (json_array_extend(all, ids) != 0) {
            rc = CTL_ERR;
            goto out;
        }
        if (json_string_length(next) == 0 || json_array_size(ids) == 0) {
            break;
        }
        /* The same cursor twice would loop forever. */
        if (after != NULL && strcmp(after, json_string_value(next)) == 0) {
            fprintf(stderr, "Error: the server repeated the page cursor %s\n", after);
            rc = CTL_ERR;
            goto out;
        }
        free(after);
        if ((after = strdup(json_string_value(next))) == NULL) {
            rc = CTL_ERR;
            goto out;
        }
    }
    rc = x->json ? print_json(all) : print_identities_table(all);
out:
    free(after);
    json_decref(resp);
    json_decref(all);
    return rc;
}

/* ---- agent ---- */

/* The agent takes everything from its config file (SPEC §9), the global flags included. */
static int cmd_agent(struct ctl *x)
{
    static const enum flag_id unused[] = {F_FORMAT, F_ADDRESS, F_CA_CERT, F_CLIENT_CERT,
                                          F_CLIENT_KEY};
    for (size_t i = 0; i < sizeof unused / sizeof unused[0]; i++) {
        if (x->f[unused[i]].seen) {
            return usage_error(x->cmd, "-%s is not used by agent: set it in the config file",
                               flag_defs[unused[i]].name);
        }
    }
    if (x->f[F_CONFIG].str == NULL || *x->f[F_CONFIG].str == '\0') {
        return usage_error(x->cmd, "-config is required");
    }
    return as_agent_run(x->f[F_CONFIG].str, x->f[F_ONCE].on);
}

/* ---- audit ---- */

/* Offline: reads only the files named, never the server (SPEC §8). */
static int cmd_audit_verify(struct ctl *x)
{
    static const enum flag_id unused[] = {F_FORMAT, F_ADDRESS, F_CA_CERT, F_CLIENT_CERT,
                                          F_CLIENT_KEY};
    struct as_audit_point from;
    struct as_audit_point head;
    for (size_t i = 0; i < sizeof unused / sizeof unused[0]; i++) {
        if (x->f[unused[i]].seen) {
            return usage_error(x->cmd, "-%s is not used by audit verify",
                               flag_defs[unused[i]].name);
        }
    }
    const char *from_s = x->f[F_FROM_HASH].str;
    const char *head_s = x->f[F_HEAD].str;
    if (from_s != NULL && as_audit_point_parse(from_s, &from) != AS_OK) {
        return usage_error(x->cmd, "invalid -from-hash \"%s\" (want 64 hex digits[:LINE])", from_s);
    }
    if (head_s != NULL && as_audit_point_parse(head_s, &head) != AS_OK) {
        return usage_error(x->cmd, "invalid -head \"%s\" (want 64 hex digits[:LINE])", head_s);
    }
    /* Without the starting line's number the lines cannot be counted as the head counts them. */
    if (from_s != NULL && !from.has_line && head_s != NULL && head.has_line) {
        return usage_error(x->cmd, "-head=HASH:LINE with -from-hash needs -from-hash=HASH:LINE");
    }
    return as_audit_verify((const char *const *)x->args, x->nargs, from_s != NULL ? &from : NULL,
                           head_s != NULL ? &head : NULL);
}

/* ---- the command table ---- */

#define ANY SIZE_MAX

static const struct command commands[] = {
    {"read", NULL, cmd_read, 0, 1, ANY,
     "Usage: authctl read [options] PATH [K=V...]\n"
     "\n"
     "  Reads data at PATH (GET /v1/PATH); K=V pairs are sent as query parameters.\n"
     "  A 404 prints \"No value found at PATH\" and exits 2.\n"},
    {"write", NULL, cmd_write, FM(F_FORCE), 1, ANY,
     "Usage: authctl write [options] PATH [K=V...|-]\n"
     "\n"
     "  Writes data to PATH (POST /v1/PATH). \"-\" reads a JSON object from standard input.\n"
     "\n"
     "    -force     Write even without data (alias -f).\n"},
    {"list", NULL, cmd_list, 0, 1, 1,
     "Usage: authctl list [options] PATH\n"
     "\n"
     "  Lists the keys at PATH (LIST /v1/PATH).\n"},
    {"delete", NULL, cmd_delete, 0, 1, ANY,
     "Usage: authctl delete [options] PATH [K=V...]\n"
     "\n"
     "  Deletes at PATH (DELETE /v1/PATH).\n"},
    {"bootstrap", NULL, cmd_bootstrap, FM(F_CODE), 0, 0,
     "Usage: authctl bootstrap [-code=@FILE|-code=CODE]\n"
     "\n"
     "  Creates the root token with the one-time bootstrap code (POST sys/bootstrap) and\n"
     "  prints it. Without -code the code is read from " BOOTSTRAP_CODE_FILE ".\n"},
    {"login", NULL, cmd_login, FM(F_METHOD) | FM(F_MOUNT) | FM(F_ROLE) | FM(F_JWT) | FM(F_NO_STORE),
     0, 0,
     "Usage: authctl login -method=jwt [-mount=jwt] [-role=R] -jwt=@FILE|-jwt=TOKEN [options]\n"
     "       authctl login -method=cert [-mount=cert] [-role=R] -client-cert=FILE\n"
     "                     -client-key=FILE [options]\n"
     "\n"
     "  Logs in with an auth method (POST auth/MOUNT/login) and stores the token in\n"
     "  ~/" TOKEN_FILE_NAME " (mode 0600), where later commands find it. The jwt method sends\n"
     "  {role, jwt}; the cert method sends {name} and presents the client certificate in the\n"
     "  TLS handshake, so the address must be https:// (AUTHSVC_CACERT: the server's CA).\n"
     "  The token is printed only with -no-store; -format=json prints the whole answer.\n"
     "\n"
     "    -method=M       jwt or cert (required).\n"
     "    -mount=PATH     The mount (alias -path; default: the method's name).\n"
     "    -role=R         The role (jwt; optional with the mount's default_role) or the\n"
     "                    certificate role name (cert; optional).\n"
     "    -jwt=@FILE      The JWT, read from FILE (\"-\" or \"@-\": standard input), or\n"
     "    -jwt=TOKEN      given directly.\n"
     "    -no-store       Do not store the token; print it instead.\n"},
    {"token", "create", cmd_token_create,
     FM(F_POLICY) | FM(F_TTL) | FM(F_EXPLICIT_MAX_TTL) | FM(F_DISPLAY_NAME) | FM(F_NUM_USES) |
         FM(F_RENEWABLE) | FM(F_ORPHAN) | FM(F_NO_DEFAULT_POLICY) | FM(F_PERIOD) | FM(F_METADATA) |
         FM(F_SPIFFE_ID) | FM(F_ALLOWED_DNS_NAME),
     0, 0,
     "Usage: authctl token create [options]\n"
     "\n"
     "  Creates a child token of the caller's token (POST auth/token/create).\n"
     "\n"
     "    -policy=P              Policy of the token (repeatable).\n"
     "    -ttl=D                 Initial TTL (\"1h\", \"30m\", seconds).\n"
     "    -explicit-max-ttl=D    Hard limit of the token's life.\n"
     "    -period=D              Make a periodic token.\n"
     "    -display-name=N        Display name.\n"
     "    -num-uses=N            Number of uses (alias -use-limit); 0 is unlimited.\n"
     "    -renewable=true|false  Whether the token can be renewed.\n"
     "    -orphan                Create a token without parent (auth/token/create-orphan).\n"
     "    -no-default-policy     Do not attach the default policy.\n"
     "    -metadata=K=V          Metadata (repeatable).\n"
     "    -spiffe-id=ID          A SPIFFE ID the token may obtain SVIDs for (repeatable).\n"
     "    -allowed-dns-name=G    A DNS name glob allowed on its X.509-SVIDs (repeatable).\n"},
    {"token", "lookup", cmd_token_lookup, FM(F_ACCESSOR), 0, 1,
     "Usage: authctl token lookup [options] [TOKEN | -accessor ACCESSOR]\n"
     "\n"
     "  Shows a token's properties: the caller's own without argument (lookup-self).\n"
     "\n"
     "    -accessor    The argument is an accessor (lookup-accessor).\n"},
    {"token", "renew", cmd_token_renew, FM(F_ACCESSOR) | FM(F_INCREMENT), 0, 1,
     "Usage: authctl token renew [options] [TOKEN | -accessor ACCESSOR]\n"
     "\n"
     "  Renews a token: the caller's own without argument (renew-self).\n"
     "\n"
     "    -increment=D   Requested new TTL (alias -i).\n"
     "    -accessor      The argument is an accessor (renew-accessor).\n"},
    {"token", "revoke", cmd_token_revoke, FM(F_ACCESSOR) | FM(F_SELF) | FM(F_MODE), 0, 1,
     "Usage: authctl token revoke [options] [TOKEN | -accessor ACCESSOR | -self]\n"
     "\n"
     "  Revokes a token and its children.\n"
     "\n"
     "    -self          Revoke the caller's own token (revoke-self).\n"
     "    -accessor      The argument is an accessor (revoke-accessor).\n"
     "    -mode=orphan   Revoke only the token; its children become orphans (revoke-orphan).\n"},
    {"policy", "write", cmd_policy_write, 0, 2, 2,
     "Usage: authctl policy write [options] NAME FILE|-\n"
     "\n"
     "  Uploads the ACL policy in FILE (\"-\": standard input) as NAME\n"
     "  (POST sys/policies/acl/NAME).\n"},
    {"policy", "read", cmd_policy_read, 0, 1, 1,
     "Usage: authctl policy read [options] NAME\n"
     "\n"
     "  Prints the ACL policy NAME.\n"},
    {"policy", "list", cmd_policy_list, 0, 0, 0,
     "Usage: authctl policy list [options]\n"
     "\n"
     "  Lists the ACL policies.\n"},
    {"policy", "delete", cmd_policy_delete, 0, 1, 1,
     "Usage: authctl policy delete [options] NAME\n"
     "\n"
     "  Deletes the ACL policy NAME.\n"},
    {"svid", "x509", cmd_svid_x509, FM(F_SPIFFE_ID) | FM(F_TTL) | FM(F_DNS) | FM(F_OUT_DIR), 0, 0,
     "Usage: authctl svid x509 -out-dir=DIR [options]\n"
     "\n"
     "  Obtains an X.509-SVID (POST svid/x509). An ECDSA P-256 key is generated here and only a\n"
     "  certificate request is sent. Writes DIR/" SVID_KEY_FILE " (PKCS#8, mode 0600) first, then\n"
     "  DIR/" SVID_FILE " (the leaf, then any intermediates) and DIR/" BUNDLE_FILE " (every\n"
     "  trusted CA), each atomically; DIR is created (0700) if missing. Prints the SPIFFE ID,\n"
     "  serial and expiration (-format=json: the answer); never the private key.\n"
     "\n"
     "    -out-dir=DIR    Where to write the files (required).\n"
     "    -spiffe-id=ID   The identity; optional when the token holds exactly one.\n"
     "    -ttl=D          Requested lifetime (default 1h; the server caps it).\n"
     "    -dns=NAME       A DNS name to add to the SAN (repeatable).\n"},
    {"svid", "jwt", cmd_svid_jwt, FM(F_SPIFFE_ID) | FM(F_TTL) | FM(F_AUDIENCE), 0, 0,
     "Usage: authctl svid jwt -audience=A [-audience=B...] [options]\n"
     "\n"
     "  Obtains a JWT-SVID (POST svid/jwt) and prints it with its SPIFFE ID and expiration\n"
     "  (-format=json: the answer).\n"
     "\n"
     "    -audience=A     An audience of the token (required, repeatable).\n"
     "    -spiffe-id=ID   The identity; optional when the token holds exactly one.\n"
     "    -ttl=D          Requested lifetime (default 5m, at most 1h).\n"},
    {"bundle", NULL, cmd_bundle, 0, 0, 0,
     "Usage: authctl bundle [-format=pem|jwks]\n"
     "\n"
     "  Prints the trust bundle: every trusted CA certificate as PEM (pki/bundle/pem, the\n"
     "  default), or the SPIFFE bundle JSON (svid/bundle) with -format=jwks (or json).\n"
     "  No token is needed or sent.\n"},
    {"identities", NULL, cmd_identities, FM(F_SPIFFE_ID) | FM(F_STATE) | FM(F_LIMIT), 0, 0,
     "Usage: authctl identities [-spiffe-id=GLOB] [-state=S] [-limit=N]\n"
     "\n"
     "  Lists the recorded SVIDs, newest first (GET sys/identities; needs sudo), following\n"
     "  every page. -format=json prints them as a JSON array.\n"
     "\n"
     "    -spiffe-id=GLOB   Only SPIFFE IDs matching GLOB ('*' matches any run of characters).\n"
     "    -state=S          Only active, expired or revoked SVIDs.\n"
     "    -limit=N          Page size asked of the server.\n"},
    {"audit", "verify", cmd_audit_verify, FM(F_HEAD) | FM(F_FROM_HASH), 1, ANY,
     "Usage: authctl audit verify [-from-hash=HASH[:LINE]] [-head=HASH[:LINE]] FILE...\n"
     "\n"
     "  Checks the hash chain of audit log files (SPEC section 8) without the server. Give the\n"
     "  files oldest first (e.g. audit.log.2 audit.log.1 audit.log; \"-\" is standard input):\n"
     "  the chain continues from the last line of one file to the first line of the next.\n"
     "  Reports the first line where the chain breaks as FILE:LINE (an edited, dropped,\n"
     "  inserted or reordered line shows at the first line after it whose prev_hash no longer\n"
     "  matches), then exits 1. Prints \"OK: N lines, head HASH\" and exits 0 when it holds.\n"
     "\n"
     "    -head=HASH[:LINE]       The recorded head (sys/audit/head): the last line's hash\n"
     "                            must be HASH, and LINE the number of lines; catches a\n"
     "                            truncated tail and an edited last line.\n"
     "    -from-hash=HASH[:LINE]  The hash (and number) of the line before the first one\n"
     "                            given, when older files were deleted; without it the first\n"
     "                            line must carry the genesis hash (64 zeros).\n"},
    {"agent", NULL, cmd_agent, FM(F_CONFIG) | FM(F_ONCE), 0, 0,
     "Usage: authctl agent -config=FILE [-once]\n"
     "\n"
     "  Runs the workload agent: keeps an X.509-SVID (key made here), its key, the trust bundle,\n"
     "  optionally the CRLs and JWT-SVIDs fresh in the config's out_dir, renewing them before\n"
     "  they expire and running a reload command (or signal) after each change. Stops cleanly\n"
     "  on SIGTERM or SIGINT; SIGHUP refreshes everything now. The config keys are described in\n"
     "  the README (SPEC section 9); unknown keys are an error (exit 2).\n"
     "\n"
     "    -config=FILE   The JSON config (required).\n"
     "    -once          Write every file once, run the reload, and exit (0 on success).\n"},
};

#define NCOMMANDS (sizeof commands / sizeof commands[0])

/* ---- parsing ---- */

static int find_flag(const char *name, size_t len, enum flag_id *out)
{
    for (int i = 0; i < F_COUNT; i++) {
        const struct flag_def *d = &flag_defs[i];
        if ((strlen(d->name) == len && strncmp(d->name, name, len) == 0) ||
            (d->alias != NULL && strlen(d->alias) == len && strncmp(d->alias, name, len) == 0)) {
            *out = (enum flag_id)i;
            return 0;
        }
    }
    return -1;
}

/* One flag argument at argv[*i]; may consume argv[*i + 1] as its value. */
static int parse_flag(struct ctl *x, int argc, char **argv, int *i)
{
    const char *a = argv[*i];
    const char *name = a[1] == '-' ? a + 2 : a + 1;
    const char *eq = strchr(name, '=');
    size_t len = eq != NULL ? (size_t)(eq - name) : strlen(name);
    enum flag_id id;
    if (len == 0 || find_flag(name, len, &id) != 0) {
        return usage_error(NULL, "flag provided but not defined: -%.*s", (int)len, name);
    }
    struct flag_val *v = &x->f[id];
    v->seen = true;
    if (flag_defs[id].kind == FK_BOOL) {
        v->on = true;
        if (eq != NULL && as_parse_bool(eq + 1, &v->on) != AS_OK) {
            return usage_error(NULL, "invalid boolean value \"%s\" for -%s", eq + 1,
                               flag_defs[id].name);
        }
        return CTL_OK;
    }
    const char *val;
    if (eq != NULL) {
        val = eq + 1;
    } else if (*i + 1 < argc) {
        val = argv[++*i];
    } else {
        return usage_error(NULL, "flag needs an argument: -%s", flag_defs[id].name);
    }
    if (flag_defs[id].kind == FK_STRING) {
        v->str = val;
        return CTL_OK;
    }
    if (v->list == NULL && (v->list = json_array()) == NULL) {
        return CTL_ERR;
    }
    json_t *s = json_string(val);
    if (s == NULL) {
        return usage_error(NULL, "invalid value for -%s (not UTF-8)", flag_defs[id].name);
    }
    return json_array_append_new(v->list, s) == 0 ? CTL_OK : CTL_ERR;
}

/* Finds the command named by the first positional arguments. */
static int find_command(struct ctl *x)
{
    const char *name = x->pos[0];
    const char *sub = x->npos > 1 ? x->pos[1] : NULL;
    bool group = false;
    for (size_t i = 0; i < NCOMMANDS; i++) {
        const struct command *c = &commands[i];
        if (strcmp(c->name, name) != 0) {
            continue;
        }
        if (c->sub == NULL) {
            x->cmd = c;
            x->args = x->pos + 1;
            x->nargs = x->npos - 1;
            return CTL_OK;
        }
        group = true;
        if (sub != NULL && strcmp(c->sub, sub) == 0) {
            x->cmd = c;
            x->args = x->pos + 2;
            x->nargs = x->npos - 2;
            return CTL_OK;
        }
    }
    if (group) {
        if (sub == NULL && x->f[F_HELP].on) {
            print_usage(stdout, NULL);
            return CTL_HELP;
        }
        if (sub == NULL) {
            return usage_error(NULL, "missing %s subcommand", name);
        }
        return usage_error(NULL, "unknown %s subcommand: %s", name, sub);
    }
    return usage_error(NULL, "unknown command: %s", name);
}

static int parse_args(struct ctl *x, int argc, char **argv)
{
    int rc;
    bool flags_done = false;
    x->pos = calloc((size_t)argc + 1, sizeof *x->pos);
    if (x->pos == NULL) {
        return CTL_ERR;
    }
    /* Flags may come anywhere (Vault puts them before the arguments; we accept both). */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!flags_done && a[0] == '-' && a[1] != '\0') {
            if (strcmp(a, "--") == 0) {
                flags_done = true;
                continue;
            }
            if ((rc = parse_flag(x, argc, argv, &i)) != CTL_OK) {
                return rc;
            }
            continue;
        }
        x->pos[x->npos++] = a;
    }
    if (x->npos == 0 || strcmp(x->pos[0], "help") == 0) {
        if (x->f[F_HELP].on || x->npos > 0) {
            print_usage(stdout, NULL);
            return CTL_HELP;
        }
        return usage_error(NULL, "no command given");
    }
    if ((rc = find_command(x)) != CTL_OK) {
        return rc;
    }
    const struct command *c = x->cmd;
    if (x->f[F_HELP].on) {
        print_usage(stdout, c);
        return CTL_HELP;
    }
    uint64_t allowed = GLOBAL_FLAGS | c->flags;
    for (int i = 0; i < F_COUNT; i++) {
        if (x->f[i].seen && (allowed & FM(i)) == 0) {
            return usage_error(c, "flag provided but not defined for this command: -%s",
                               flag_defs[i].name);
        }
    }
    if (x->nargs < c->min_args) {
        return usage_error(c, "Not enough arguments (expected %zu, got %zu)", c->min_args,
                           x->nargs);
    }
    if (x->nargs > c->max_args) {
        return usage_error(c, "Too many arguments (expected %zu, got %zu)", c->max_args, x->nargs);
    }
    const char *format = x->f[F_FORMAT].str;
    /* bundle has formats of its own (pem, jwks) and checks them itself. */
    if (c->run != cmd_bundle && format != NULL && strcmp(format, "json") != 0 &&
        strcmp(format, "table") != 0) {
        return usage_error(c, "Invalid output format: %s (want table or json)", format);
    }
    x->json = format != NULL && strcmp(format, "json") == 0;
    return CTL_OK;
}

static void ctl_free(struct ctl *x)
{
    for (int i = 0; i < F_COUNT; i++) {
        json_decref(x->f[i].list);
    }
    free(x->pos);
    as_client_free(x->client);
}

int main(int argc, char **argv)
{
    struct ctl x;
    int rc;
    memset(&x, 0, sizeof x);
    /* The token lives in this process: keep it out of core dumps and away from ptrace. */
    (void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    as_json_wipe_on_free();
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "Error: cannot initialise libcurl\n");
        return CTL_ERR;
    }
    rc = parse_args(&x, argc, argv);
    if (rc == CTL_OK) {
        rc = x.cmd->run(&x);
    } else if (rc == CTL_HELP) {
        rc = CTL_OK;
    }
    ctl_free(&x);
    curl_global_cleanup();
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "Error: cannot write the output\n");
        if (rc == CTL_OK) {
            rc = CTL_ERR;
        }
    }
    return rc;
}
