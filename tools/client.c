/*
 * client.c: the authsvc HTTP client over libcurl (see client.h for the contract).
 */
#include "tools/client.h"

#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#ifndef AS_VERSION
#define AS_VERSION "dev"
#endif

#define CLIENT_MAX_METHOD 16
#define CLIENT_ERR_SIZE 1024

struct as_client {
    CURL *curl;
    char *addr;      /* scheme://authority[/prefix], no trailing '/' */
    char *cacert;    /* NULL: the system store */
    char *token;     /* NULL: no token; wiped whenever it is replaced */
    char *cert_file; /* NULL: no client certificate */
    char *key_file;  /* NULL: the key is in cert_file */
    /* State of the request in flight, for the body callback. */
    struct as_buf *sink;
    enum as_err sink_err;
    char curl_err[CURL_ERROR_SIZE];
    char err[CLIENT_ERR_SIZE];
};

/*
 * Sets a libcurl option or fails the request (uses the caller's c, r and out: label): an option
 * libcurl refuses means a bug or no memory.
 */
#define SETOPT(h, opt, val)                                                     \
    do {                                                                        \
        if (curl_easy_setopt((h), (opt), (val)) != CURLE_OK) {                  \
            snprintf(c->err, sizeof c->err, "libcurl refused option %s", #opt); \
            r = AS_ERR_INTERNAL;                                                \
            goto out;                                                           \
        }                                                                       \
    } while (0)

static void free_secret_str(char **s)
{
    as_free_secret_str(*s);
    *s = NULL;
}

static enum as_err dup_opt(const char *s, char **out)
{
    *out = NULL;
    if (s == NULL || *s == '\0') {
        return AS_OK;
    }
    *out = strdup(s);
    return *out != NULL ? AS_OK : AS_ERR_NOMEM;
}

/* "http://" or "https://", an authority, no whitespace, control characters, query or fragment. */
static bool addr_ok(const char *addr, size_t len)
{
    size_t skip;
    if (len > 7 && strncasecmp(addr, "http://", 7) == 0) {
        skip = 7;
    } else if (len > 8 && strncasecmp(addr, "https://", 8) == 0) {
        skip = 8;
    } else {
        return false;
    }
    if (addr[skip] == '/') {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)addr[i];
        if (ch <= 0x20 || ch >= 0x7f || ch == '?' || ch == '#') {
            return false;
        }
    }
    return true;
}

enum as_err as_client_new(const char *addr, const char *cacert, struct as_client **out)
{
    enum as_err r = AS_OK;
    struct as_client *c = NULL;
    *out = NULL;
    if (addr == NULL) {
        return AS_ERR_CONFIG;
    }
    size_t len = strnlen(addr, AS_CLIENT_MAX_ADDR + 1);
    if (len > AS_CLIENT_MAX_ADDR || !addr_ok(addr, len)) {
        return AS_ERR_CONFIG;
    }
    while (len > 0 && addr[len - 1] == '/') {
        len--;
    }
    c = calloc(1, sizeof *c);
    if (c == NULL) {
        return AS_ERR_NOMEM;
    }
    c->addr = strndup(addr, len);
    if (c->addr == NULL) {
        r = AS_ERR_NOMEM;
        goto out;
    }
    if ((r = dup_opt(cacert, &c->cacert)) != AS_OK) {
        goto out;
    }
    c->curl = curl_easy_init();
    if (c->curl == NULL) {
        r = AS_ERR_INTERNAL;
        goto out;
    }
    *out = c;
    c = NULL;
out:
    as_client_free(c);
    return r;
}

enum as_err as_client_set_token(struct as_client *c, const char *token)
{
    free_secret_str(&c->token);
    if (token == NULL || *token == '\0') {
        return AS_OK;
    }
    size_t len = strnlen(token, AS_CLIENT_MAX_TOKEN + 1);
    if (len > AS_CLIENT_MAX_TOKEN) {
        return AS_ERR_INVALID;
    }
    /* The token goes into a header line: CR, LF or any other control byte could forge headers. */
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)token[i];
        if (ch <= 0x20 || ch >= 0x7f) {
            return AS_ERR_INVALID;
        }
    }
    c->token = strdup(token);
    return c->token != NULL ? AS_OK : AS_ERR_NOMEM;
}

enum as_err as_client_set_client_cert(struct as_client *c, const char *cert_file,
                                      const char *key_file)
{
    enum as_err r = AS_OK;
    free(c->cert_file);
    free(c->key_file);
    c->cert_file = NULL;
    c->key_file = NULL;
    if (cert_file == NULL || *cert_file == '\0') {
        return AS_OK;
    }
    if ((r = dup_opt(cert_file, &c->cert_file)) != AS_OK ||
        (r = dup_opt(key_file, &c->key_file)) != AS_OK) {
        free(c->cert_file);
        c->cert_file = NULL;
    }
    return r;
}

const char *as_client_error(const struct as_client *c)
{
    return c->err;
}

void as_client_free(struct as_client *c)
{
    if (c == NULL) {
        return;
    }
    if (c->curl != NULL) {
        curl_easy_cleanup(c->curl);
    }
    free(c->addr);
    free(c->cacert);
    free_secret_str(&c->token);
    free(c->cert_file);
    free(c->key_file);
    free(c);
}

static bool method_ok(const char *method)
{
    size_t len = strnlen(method, CLIENT_MAX_METHOD + 1);
    if (len == 0 || len > CLIENT_MAX_METHOD) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if (method[i] < 'A' || method[i] > 'Z') {
            return false;
        }
    }
    return true;
}

/* Appends s[0..n) percent-encoded: everything outside RFC 3986's unreserved set is escaped. */
static enum as_err append_escaped(CURL *curl, struct as_buf *b, const char *s, size_t n)
{
    if (n == 0) {
        return AS_OK;
    }
    if (n > INT_MAX) {
        return AS_ERR_TOO_LARGE;
    }
    char *e = curl_easy_escape(curl, s, (int)n);
    if (e == NULL) {
        return AS_ERR_NOMEM;
    }
    enum as_err r = as_buf_append(b, e, strlen(e));
    curl_free(e);
    return r;
}

/*
 * addr + "/v1/" + the path escaped segment by segment + the query. An empty, "." or ".." segment
 * is refused: the server refuses them too (they would name a path other than the one routed),
 * and libcurl would otherwise squash dot segments on its own.
 */
static enum as_err build_url(struct as_client *c, const char *path,
                             const struct as_client_param *query, size_t nquery, struct as_buf *url)
{
    enum as_err r;
    size_t plen = strnlen(path, AS_CLIENT_MAX_PATH + 1);
    if (plen == 0 || plen > AS_CLIENT_MAX_PATH) {
        snprintf(c->err, sizeof c->err, "path is empty or longer than %d bytes",
                 AS_CLIENT_MAX_PATH);
        return AS_ERR_INVALID;
    }
    if ((r = as_buf_printf(url, "%s/v1/", c->addr)) != AS_OK) {
        return r;
    }
    const char *seg = path;
    for (;;) {
        const char *slash = strchr(seg, '/');
        size_t n = slash != NULL ? (size_t)(slash - seg) : strlen(seg);
        if (n == 0 || (n == 1 && seg[0] == '.') || (n == 2 && seg[0] == '.' && seg[1] == '.')) {
            snprintf(c->err, sizeof c->err,
                     "invalid path: empty, \".\" or \"..\" segments are not allowed");
            return AS_ERR_INVALID;
        }
        if ((r = append_escaped(c->curl, url, seg, n)) != AS_OK) {
            return r;
        }
        if (slash == NULL) {
            break;
        }
        if ((r = as_buf_append(url, "/", 1)) != AS_OK) {
            return r;
        }
        seg = slash + 1;
    }
    for (size_t i = 0; i < nquery; i++) {
        const char *k = query[i].key;
        const char *v = query[i].value != NULL ? query[i].value : "";
        if (k == NULL || *k == '\0') {
            snprintf(c->err, sizeof c->err, "invalid query parameter: empty name");
            return AS_ERR_INVALID;
        }
        if ((r = as_buf_append(url, i == 0 ? "?" : "&", 1)) != AS_OK ||
            (r = append_escaped(c->curl, url, k, strlen(k))) != AS_OK ||
            (r = as_buf_append(url, "=", 1)) != AS_OK ||
            (r = append_escaped(c->curl, url, v, strlen(v))) != AS_OK) {
            return r;
        }
    }
    return AS_OK;
}

struct dump_sink {
    struct as_buf *buf;
    enum as_err err;
};

static int dump_to_buf(const char *p, size_t n, void *data)
{
    struct dump_sink *d = data;
    d->err = as_buf_append(d->buf, p, n);
    return d->err == AS_OK ? 0 : -1;
}

static size_t on_body(char *p, size_t size, size_t nmemb, void *data)
{
    struct as_client *c = data;
    /* libcurl documents size as always 1. */
    size_t n = size * nmemb;
    enum as_err r = as_buf_append(c->sink, p, n);
    if (r != AS_OK) {
        c->sink_err = r;
        return 0; /* makes libcurl abort with CURLE_WRITE_ERROR */
    }
    return n;
}

/* Wipes every header line (one carries the token) before freeing the list. */
static void free_headers(struct curl_slist *h)
{
    for (struct curl_slist *p = h; p != NULL; p = p->next) {
        as_wipe(p->data, strlen(p->data));
    }
    curl_slist_free_all(h);
}

/*
 * Parses an answer body. The server's answers may be larger than what as_json_parse_object
 * accepts from untrusted requests (AS_MAX_BODY_BYTES), so this calls jansson directly with the
 * same duplicate-key rule; jansson 2.14 bounds nesting itself (2048 levels). Anything that is not
 * a JSON object (PEM, DER, metrics text) leaves *out NULL.
 */
static void parse_answer(const struct as_buf *b, json_t **out)
{
    *out = NULL;
    if (b->len == 0) {
        return;
    }
    json_error_t je;
    json_t *v = json_loadb(b->data, b->len, JSON_REJECT_DUPLICATES, &je);
    if (json_is_object(v)) {
        *out = v;
        return;
    }
    json_decref(v);
}

enum as_err as_client_request_query(struct as_client *c, const char *method, const char *path,
                                    const struct as_client_param *query, size_t nquery,
                                    json_t *body, long *status, json_t **resp, struct as_buf *raw)
{
    enum as_err r = AS_OK;
    struct as_buf url;
    struct as_buf payload;
    struct as_buf hdr;
    struct as_buf answer;
    struct dump_sink dump = {&payload, AS_OK};
    struct curl_slist *headers = NULL;
    bool is_get = false;
    bool is_head = false;
    bool has_body = false; /* POST and PUT always carry one, an empty one without body */
    CURLcode cc;
    long code = 0;
    as_buf_init(&url, AS_CLIENT_MAX_URL);
    as_buf_init(&payload, AS_CLIENT_MAX_REQUEST);
    as_buf_init(&hdr, AS_CLIENT_MAX_TOKEN + 32);
    as_buf_init(&answer, AS_CLIENT_MAX_RESPONSE);
    *status = 0;
    if (resp != NULL) {
        *resp = NULL;
    }
    if (raw != NULL) {
        as_buf_init(raw, AS_CLIENT_MAX_RESPONSE);
    }
    c->err[0] = '\0';
    c->curl_err[0] = '\0';
    c->sink = &answer;
    c->sink_err = AS_OK;

    if (method == NULL || !method_ok(method)) {
        snprintf(c->err, sizeof c->err, "invalid HTTP method");
        r = AS_ERR_INVALID;
        goto out;
    }
    is_get = strcmp(method, "GET") == 0;
    is_head = strcmp(method, "HEAD") == 0;
    has_body = body != NULL || strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0;
    if (body != NULL && (is_get || is_head || !json_is_object(body))) {
        snprintf(c->err, sizeof c->err, "a request body must be a JSON object, not sent with %s",
                 method);
        r = AS_ERR_INVALID;
        goto out;
    }
    if (path == NULL || path[0] == '/') {
        snprintf(c->err, sizeof c->err, "path must be relative to /v1/");
        r = AS_ERR_INVALID;
        goto out;
    }
    if ((r = build_url(c, path, query, nquery, &url)) != AS_OK) {
        if (r == AS_ERR_TOO_LARGE) {
            snprintf(c->err, sizeof c->err, "request URL longer than %d bytes", AS_CLIENT_MAX_URL);
        }
        goto out;
    }
    if (body != NULL) {
        /* The body may carry secrets (a token to look up, a bootstrap code): payload is wiped. */
        if (json_dump_callback(body, dump_to_buf, &dump, JSON_COMPACT) != 0) {
            r = dump.err != AS_OK ? dump.err : AS_ERR_NOMEM;
            if (r == AS_ERR_TOO_LARGE) {
                snprintf(c->err, sizeof c->err, "request body larger than %d bytes",
                         AS_CLIENT_MAX_REQUEST);
            }
            goto out;
        }
    }
    if (has_body) {
        /* libcurl would label even an empty POST as a form; bodies here are JSON or nothing. */
        headers = curl_slist_append(headers, body != NULL ? "Content-Type: application/json"
                                                          : "Content-Type:");
        if (headers == NULL) {
            r = AS_ERR_NOMEM;
            goto out;
        }
    }
    if (c->token != NULL) {
        struct curl_slist *h;
        if ((r = as_buf_printf(&hdr, "X-Vault-Token: %s", c->token)) != AS_OK) {
            goto out;
        }
        h = curl_slist_append(headers, hdr.data);
        if (h == NULL) {
            r = AS_ERR_NOMEM;
            goto out;
        }
        headers = h;
    }

    /* Every option is set again for each request: nothing of the previous one may leak into it. */
    curl_easy_reset(c->curl);
    SETOPT(c->curl, CURLOPT_URL, url.data);
    SETOPT(c->curl, CURLOPT_PROTOCOLS_STR, "http,https");
    SETOPT(c->curl, CURLOPT_FOLLOWLOCATION, 0L);
    SETOPT(c->curl, CURLOPT_PATH_AS_IS, 1L);
    SETOPT(c->curl, CURLOPT_NOSIGNAL, 1L);
    SETOPT(c->curl, CURLOPT_CONNECTTIMEOUT, AS_CLIENT_CONNECT_TIMEOUT_S);
    SETOPT(c->curl, CURLOPT_TIMEOUT, AS_CLIENT_TIMEOUT_S);
    SETOPT(c->curl, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)AS_CLIENT_MAX_RESPONSE);
    SETOPT(c->curl, CURLOPT_USERAGENT, "authsvc-client/" AS_VERSION);
    SETOPT(c->curl, CURLOPT_ERRORBUFFER, c->curl_err);
    SETOPT(c->curl, CURLOPT_WRITEFUNCTION, on_body);
    SETOPT(c->curl, CURLOPT_WRITEDATA, c);
    SETOPT(c->curl, CURLOPT_SSL_VERIFYPEER, 1L);
    SETOPT(c->curl, CURLOPT_SSL_VERIFYHOST, 2L);
    if (c->cacert != NULL) {
        SETOPT(c->curl, CURLOPT_CAINFO, c->cacert);
    }
    if (c->cert_file != NULL) {
        SETOPT(c->curl, CURLOPT_SSLCERT, c->cert_file);
        if (c->key_file != NULL) {
            SETOPT(c->curl, CURLOPT_SSLKEY, c->key_file);
        }
    }
    if (headers != NULL) {
        SETOPT(c->curl, CURLOPT_HTTPHEADER, headers);
    }
    if (is_head) {
        SETOPT(c->curl, CURLOPT_NOBODY, 1L);
    } else if (has_body) {
        /* An empty POST body is an empty object (SPEC §2). */
        SETOPT(c->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)payload.len);
        SETOPT(c->curl, CURLOPT_POSTFIELDS, payload.data != NULL ? payload.data : "");
        if (strcmp(method, "POST") != 0) {
            SETOPT(c->curl, CURLOPT_CUSTOMREQUEST, method);
        }
    } else if (!is_get) {
        SETOPT(c->curl, CURLOPT_CUSTOMREQUEST, method);
    }

    cc = curl_easy_perform(c->curl);
    if (cc != CURLE_OK) {
        if (c->sink_err != AS_OK || cc == CURLE_FILESIZE_EXCEEDED) {
            r = c->sink_err == AS_ERR_NOMEM ? AS_ERR_NOMEM : AS_ERR_TOO_LARGE;
            snprintf(c->err, sizeof c->err, "%s %s/v1/%s: answer larger than %d bytes", method,
                     c->addr, path, AS_CLIENT_MAX_RESPONSE);
        } else {
            r = AS_ERR_IO;
            snprintf(c->err, sizeof c->err, "%s %s/v1/%s: %s", method, c->addr, path,
                     c->curl_err[0] != '\0' ? c->curl_err : curl_easy_strerror(cc));
        }
        goto out;
    }
    if (curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &code) != CURLE_OK) {
        r = AS_ERR_INTERNAL;
        goto out;
    }
    *status = code;
    if (resp != NULL) {
        parse_answer(&answer, resp);
    }
    if (raw != NULL) {
        /* Hand the answer over; the out: label then frees an empty buffer. */
        *raw = answer;
        as_buf_init(&answer, AS_CLIENT_MAX_RESPONSE);
    }
out:
    c->sink = NULL;
    free_headers(headers);
    as_buf_free(&url, false);
    as_buf_free(&payload, true);
    as_buf_free(&hdr, true);
    as_buf_free(&answer, true);
    return r;
}

enum as_err as_client_request(struct as_client *c, const char *method, const char *path,
                              json_t *body, long *status, json_t **resp, struct as_buf *raw)
{
    return as_client_request_query(c, method, path, NULL, 0, body, status, resp, raw);
}
