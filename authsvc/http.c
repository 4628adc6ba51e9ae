/*
 * http.c: the libmicrohttpd layer. Turns a connection's request into a struct as_req with one
 * canonical path, hands it to as_dispatch, and renders the struct as_resp (Vault envelope or
 * errors). Bodies are bounded; an oversize Content-Length is refused before the body is read.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdatomic.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <microhttpd.h>

#include "authsvc/server.h"

/*
 * libmicrohttpd's per-connection memory pool (request line, headers, read buffer; our bodies are
 * copied out as they arrive). Its default of 32 KiB is zeroed for every request, which cost
 * more than our whole handling of a check; 16 KiB still holds the largest header we take
 * (X-Client-Cert, a URL-encoded chain, up to MAX_CERT_HEADER).
 */
#define CONN_MEMORY (16 * 1024)
/* Far above any answer we give (a LIST of every serial included): only a runaway is refused. */
#define MAX_RESPONSE_BYTES ((size_t)256 * 1024 * 1024)

/*
 * A write request's answer waits for its audit lines and store commits to be on disk. Instead
 * of holding its worker thread meanwhile (which also held up every other connection of that
 * thread), the answer is built, the connection suspended, and one of the audit device's sync
 * threads resumes it (durable_done); libmicrohttpd then calls access_cb again, which queues the
 * answer. Exactly one of the handler (after suspending) and durable_done resumes: whichever
 * comes second (dstate).
 */
enum { D_NONE, D_RUNNING, D_SUSPENDED, D_DONE };

struct conn_state {
    struct as_buf body;
    bool too_large;
    bool responded;
    struct MHD_Connection *conn; /* this request's connection, set before anything can use it */
    _Atomic int dstate;
    _Atomic bool dfailed;          /* the lines could not be made durable: answer 500 */
    bool suspended;                /* counted in g_suspended until access_cb sees it resumed */
    struct MHD_Response *deferred; /* the answer, built before suspending */
    unsigned deferred_status;
    char request_id[40];
};

/* Connections suspended and not yet seen resumed; as_http_stop waits for none (libmicrohttpd
 * aborts when stopped with a suspended connection). g_stopping: no more suspending. */
static _Atomic long g_suspended;
static _Atomic bool g_stopping;
/* While set (render of a deferred answer), send_response keeps the answer here. */
static _Thread_local struct conn_state *t_defer;

/* Queues r (or keeps it for a deferred answer) and releases the caller's reference. */
static enum MHD_Result send_response(struct MHD_Connection *conn, unsigned status,
                                     struct MHD_Response *r)
{
    if (t_defer != NULL) {
        t_defer->deferred = r;
        t_defer->deferred_status = status;
        return MHD_YES;
    }
    enum MHD_Result ret = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ret;
}

static int status_of(enum as_err e)
{
    switch (e) {
    case AS_OK:
        return 200;
    case AS_ERR_INVALID:
    case AS_ERR_EXISTS:
        return 400;
    case AS_ERR_PERMISSION:
    case AS_ERR_EXPIRED:
        return 403;
    case AS_ERR_NOT_FOUND:
        return 404;
    case AS_ERR_METHOD:
        return 405;
    case AS_ERR_TOO_LARGE:
        return 413;
    case AS_ERR_RATE:
        return 429;
    case AS_ERR_STORE:
        return 503;
    case AS_ERR_NOMEM:
    case AS_ERR_INTERNAL:
    case AS_ERR_CRYPTO:
    case AS_ERR_IO:
    case AS_ERR_CONFIG:
        return 500;
    }
    return 500;
}

static const char *public_message(int status)
{
    switch (status) {
    case 400:
        return "invalid request";
    case 403:
        return "permission denied";
    case 404:
        return "unsupported path";
    case 405:
        return "unsupported operation";
    case 413:
        return "request body too large";
    case 429:
        return "rate limit exceeded";
    case 503:
        return "store unavailable";
    default:
        return "internal error";
    }
}

enum as_err as_resp_keys(struct as_resp *resp, char **names, size_t n)
{
    json_t *keys = n > 0 ? json_array() : NULL;
    for (size_t i = 0; keys != NULL && i < n; i++) {
        json_array_append_new(keys, json_string(names[i]));
    }
    as_store_strv_free(names, n);
    if (n == 0) {
        return AS_ERR_NOT_FOUND;
    }
    resp->data = keys != NULL ? json_pack("{s:o}", "keys", keys) : NULL;
    resp->status = 200;
    return resp->data != NULL ? AS_OK : AS_ERR_NOMEM;
}

enum as_err as_fail(struct as_resp *resp, enum as_err err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(resp->err, sizeof resp->err, fmt, ap);
    va_end(ap);
    /* Messages quote input; a precision like %.200s may cut a character in two. */
    as_utf8_sanitize(resp->err);
    return err;
}

/*
 * Queues an answer whose body is b's data (none when b is NULL), handed over to MHD: b is
 * released either way. hname/hvalue: one extra header, or NULL.
 */
static enum MHD_Result queue_buf(struct MHD_Connection *conn, int status, struct as_buf *b,
                                 const char *request_id, const char *hname, const char *hvalue)
{
    bool has_body = b != NULL && b->data != NULL;
    struct MHD_Response *r =
        has_body ? MHD_create_response_from_buffer(b->len, b->data, MHD_RESPMEM_MUST_FREE)
                 : MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    if (r == NULL) {
        if (b != NULL) {
            as_buf_free(b, false);
        }
        return MHD_NO;
    }
    if (has_body) {
        /* MHD owns the data now and frees it with free() (as_buf's storage is malloc'd). */
        as_buf_init(b, b->max);
        MHD_add_response_header(r, "Content-Type", "application/json");
    }
    MHD_add_response_header(r, "Cache-Control", "no-store");
    if (request_id && *request_id) {
        MHD_add_response_header(r, "X-Request-Id", request_id);
    }
    if (hname != NULL && hvalue != NULL && *hvalue) {
        MHD_add_response_header(r, hname, hvalue);
    }
    return send_response(conn, (unsigned)status, r);
}

static enum MHD_Result queue_json_h(struct MHD_Connection *conn, int status, json_t *body,
                                    const char *request_id, const char *hname, const char *hvalue)
{
    struct as_buf b;
    if (body == NULL) {
        return queue_buf(conn, status, NULL, request_id, hname, hvalue);
    }
    as_buf_init(&b, MAX_RESPONSE_BYTES);
    enum as_err r = as_json_write(&b, body);
    if (r == AS_ERR_INVALID) {
        /* Deeper than AS_MAX_JSON_DEPTH, which the writer refuses to protect audit lines and its
         * own stack: nothing we answer nests so deep unless stored data did, and then the answer
         * is what it always was, jansson's. */
        char *text = json_dumps(body, JSON_COMPACT);
        r = text != NULL ? as_buf_append(&b, text, strlen(text)) : AS_ERR_NOMEM;
        free(text);
    }
    if (r != AS_OK) {
        /* As when json_dumps failed here: the status, without a body. */
        as_error("cannot render the answer: %s", as_strerror(r));
        as_buf_free(&b, false);
    }
    return queue_buf(conn, status, &b, request_id, hname, hvalue);
}

static enum MHD_Result queue_json(struct MHD_Connection *conn, int status, json_t *body,
                                  const char *request_id)
{
    return queue_json_h(conn, status, body, request_id, NULL, NULL);
}

static enum MHD_Result queue_error_h(struct MHD_Connection *conn, int status, const char *msg,
                                     const char *request_id, int retry_after)
{
    static const char open[] = "{\"errors\":[";
    struct as_buf b;
    char ra[16] = "";
    as_buf_init(&b, MAX_RESPONSE_BYTES);
    /* {"errors":[msg]}, as json_pack("{s:[s]}") made it. */
    enum as_err r = as_buf_add(&b, open, sizeof open - 1);
    if (r == AS_OK) {
        r = as_json_write_string(&b, msg, strlen(msg));
    }
    if (r == AS_OK) {
        r = as_buf_add(&b, "]}", 2);
    }
    if (r != AS_OK) {
        as_buf_free(&b, false);
        return MHD_NO;
    }
    if (retry_after > 0) {
        snprintf(ra, sizeof ra, "%d", retry_after);
    }
    return queue_buf(conn, status, &b, request_id, "Retry-After", ra);
}

static enum MHD_Result queue_error(struct MHD_Connection *conn, int status, const char *msg,
                                   const char *request_id)
{
    return queue_error_h(conn, status, msg, request_id, 0);
}

/* MHD would percent-decode the URL before we see it (PERF-NOTES trap 7); we keep it raw and
 * decode each segment ourselves so %2F can never become a path separator. */
static size_t keep_escaped(void *cls, struct MHD_Connection *c, char *s)
{
    (void)cls;
    (void)c;
    return strlen(s);
}

static enum as_method method_of(const char *m)
{
    if (strcmp(m, "GET") == 0) {
        return AS_M_GET;
    }
    if (strcmp(m, "POST") == 0 || strcmp(m, "PUT") == 0) {
        return AS_M_POST;
    }
    if (strcmp(m, "DELETE") == 0) {
        return AS_M_DELETE;
    }
    if (strcmp(m, "LIST") == 0) {
        return AS_M_LIST;
    }
    if (strcmp(m, "HEAD") == 0) {
        return AS_M_HEAD;
    }
    return AS_M_OTHER;
}

/*
 * A request id in UUID form: 8 random bytes per thread, drawn once, then a per-thread counter.
 * Ids only need to be unique (they link log and audit lines), not unpredictable, and a
 * RAND_bytes per request cost a tenth of a check's CPU.
 */
static void request_id(char out[40])
{
    static _Thread_local unsigned char prefix[8];
    static _Thread_local uint64_t counter;
    if (counter == 0 && as_rand_bytes(prefix, sizeof prefix) != AS_OK) {
        memset(prefix, 0, sizeof prefix);
    }
    counter++;
    unsigned char b[16];
    memcpy(b, prefix, 8);
    for (int i = 0; i < 8; i++) {
        b[8 + i] = (unsigned char)(counter >> (56 - 8 * i));
    }
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    /* 8-4-4-4-12 hex digits: the groups of bytes 0-3, 4-5, 6-7, 8-9 and 10-15. */
    static const unsigned char group_end[] = {4, 6, 8, 10, 16};
    size_t at = 0;
    size_t from = 0;
    for (size_t g = 0; g < sizeof group_end; g++) {
        if (g > 0) {
            out[at++] = '-';
        }
        as_hex(b + from, group_end[g] - from, out + at);
        at += 2 * (group_end[g] - from);
        from = group_end[g];
    }
    out[at] = '\0';
}

static void remote_of(struct MHD_Connection *conn, char *out, size_t outlen)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    const struct sockaddr *sa = ci != NULL ? ci->client_addr : NULL;
    const char *ok = NULL;
    if (sa != NULL && sa->sa_family == AF_INET) {
        ok = inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, out,
                       (socklen_t)outlen);
    } else if (sa != NULL && sa->sa_family == AF_INET6) {
        ok = inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, out,
                       (socklen_t)outlen);
    }
    if (ok == NULL) {
        snprintf(out, outlen, "unknown");
    }
}

/* The "list" query parameter, decoded: GET ?list=<ParseBool true> is a LIST (Vault). */
static bool list_param(struct MHD_Connection *conn)
{
    const char *v = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "list");
    char dec[16];
    size_t n = 0;
    bool b = false;
    if (v == NULL || !as_pct_decode(v, strlen(v), dec, sizeof dec, &n)) {
        return false;
    }
    return as_parse_bool(dec, &b) == AS_OK && b;
}

const char *as_req_header(const struct as_req *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

bool as_req_query(const struct as_req *req, const char *key, char *out, size_t outlen)
{
    const char *v = MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, key);
    size_t n = 0;
    return v != NULL && as_pct_decode(v, strlen(v), out, outlen, &n);
}

static const char *token_of(struct MHD_Connection *conn)
{
    const char *t = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Vault-Token");
    if (t != NULL && *t != '\0') {
        return t;
    }
    const char *a = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
    if (a != NULL && strncasecmp(a, "Bearer ", 7) == 0) {
        a += 7;
        while (*a == ' ') {
            a++;
        }
        return *a ? a : NULL;
    }
    return NULL;
}

static json_t *envelope(const struct as_req *req, struct as_resp *resp)
{
    json_t *o = json_object();
    json_object_set_new(o, "request_id", json_string(req->request_id));
    json_object_set_new(o, "lease_id", json_string(""));
    json_object_set_new(o, "renewable", json_false());
    json_object_set_new(o, "lease_duration", json_integer(0));
    json_object_set(o, "data", resp->data ? resp->data : json_null());
    json_object_set_new(o, "wrap_info", json_null());
    json_object_set(o, "warnings",
                    resp->warnings && json_array_size(resp->warnings) ? resp->warnings
                                                                      : json_null());
    json_object_set(o, "auth", resp->auth ? resp->auth : json_null());
    if (resp->copy_data_top && json_is_object(resp->data)) {
        const char *k;
        json_t *v;
        json_object_foreach(resp->data, k, v)
        {
            json_object_set(o, k, v);
        }
    }
    return o;
}

/* What envelope() holds, written straight into b (without copy_data_top, whose keys would be
 * merged into the top level): the same bytes, without building the tree first. */
static enum as_err write_envelope(struct as_buf *b, const struct as_req *req,
                                  const struct as_resp *resp)
{
    static const char head[] = "{\"request_id\":";
    static const char mid[] =
        ",\"lease_id\":\"\",\"renewable\":false,\"lease_duration\":0,\"data\":";
    static const char warn[] = ",\"wrap_info\":null,\"warnings\":";
    static const char auth[] = ",\"auth\":";
    json_t *warnings = resp->warnings && json_array_size(resp->warnings) ? resp->warnings : NULL;
    const struct {
        const char *lead;
        size_t len;
        json_t *v;
    } parts[] = {{mid, sizeof mid - 1, resp->data},
                 {warn, sizeof warn - 1, warnings},
                 {auth, sizeof auth - 1, resp->auth}};
    enum as_err r = as_buf_add(b, head, sizeof head - 1);
    if (r == AS_OK) {
        r = as_json_write_string(b, req->request_id, strlen(req->request_id));
    }
    for (size_t i = 0; i < sizeof parts / sizeof parts[0] && r == AS_OK; i++) {
        r = as_buf_add(b, parts[i].lead, parts[i].len);
        if (r == AS_OK) {
            r = parts[i].v != NULL ? as_json_write(b, parts[i].v) : as_buf_add(b, "null", 4);
        }
    }
    return r == AS_OK ? as_buf_add(b, "}", 1) : r;
}

/* The public error text of a failed request ("" for Vault's empty 404 of a LIST). */
static const char *error_text(const struct as_req *req, const struct as_resp *resp, enum as_err err)
{
    int status = status_of(err);
    if (err == AS_ERR_NOT_FOUND && req->method == AS_M_LIST && resp->err[0] == '\0') {
        return "";
    }
    return (status != 500 && resp->err[0]) ? resp->err : public_message(status);
}

/* Whether this request is audited (SPEC §8, enum as_audit_mode). */
static bool audited(const struct as_server *srv, const struct as_req *req,
                    const struct as_resp *resp, int status)
{
    if (!as_audit_enabled(srv->audit)) {
        return false;
    }
    if (req->route == NULL) {
        return true; /* unknown paths and methods: someone probing is worth a line */
    }
    switch (req->route->audit) {
    case AS_AUDIT_ALL:
    case AS_AUDIT_READS:
        return true;
    case AS_AUDIT_NEVER:
        return false;
    case AS_AUDIT_CHECKS:
        return status != 200 || !resp->check_allowed || as_audit_log_allowed_checks(srv->audit);
    case AS_AUDIT_FAILURES:
        return status >= 400;
    }
    return true;
}

static enum MHD_Result render(struct MHD_Connection *conn, struct as_req *req, struct as_resp *resp,
                              enum as_err err)
{
    if (err != AS_OK) {
        int status = status_of(err);
        if (status == 500) {
            as_error("request %s %s %s failed: %s", req->request_id, req->method_name, req->path,
                     as_strerror(err));
        }
        /* An empty LIST is a 404 with no message, as in Vault. */
        if (err == AS_ERR_NOT_FOUND && req->method == AS_M_LIST && resp->err[0] == '\0') {
            json_t *body = json_pack("{s:[]}", "errors");
            enum MHD_Result ret = queue_json(conn, 404, body, req->request_id);
            json_decref(body);
            return ret;
        }
        /* 500s never carry details to the peer; those stay in the log. */
        return queue_error_h(conn, status, error_text(req, resp, err), req->request_id,
                             status == 429 ? (resp->retry_after > 0 ? resp->retry_after : 1) : 0);
    }
    if (resp->raw != NULL) {
        struct MHD_Response *r =
            MHD_create_response_from_buffer(resp->raw_len, resp->raw, MHD_RESPMEM_MUST_COPY);
        if (r == NULL) {
            return MHD_NO;
        }
        MHD_add_response_header(r, "Content-Type",
                                resp->content_type ? resp->content_type : "text/plain");
        MHD_add_response_header(r, "X-Request-Id", req->request_id);
        return send_response(conn, (unsigned)(resp->status ? resp->status : 200), r);
    }
    if (resp->raw_json != NULL) {
        return queue_json(conn, resp->status ? resp->status : 200, resp->raw_json, req->request_id);
    }
    if (resp->status == 204) {
        return queue_json(conn, 204, NULL, req->request_id);
    }
    int status = resp->status ? resp->status : 200;
    if (!resp->copy_data_top) {
        struct as_buf b;
        as_buf_init(&b, MAX_RESPONSE_BYTES);
        if (write_envelope(&b, req, resp) == AS_OK) {
            return queue_buf(conn, status, &b, req->request_id, resp->hdr_name, resp->hdr_value);
        }
        /* Too deep for the writer (or out of memory): the tree below says what happens. */
        as_buf_free(&b, false);
    }
    json_t *env = envelope(req, resp);
    enum MHD_Result ret =
        queue_json_h(conn, status, env, req->request_id, resp->hdr_name, resp->hdr_value);
    json_decref(env);
    return ret;
}

/*
 * The client certificate chain of a request on the HTTPS listener, straight from the GnuTLS
 * session (PERF-NOTES trap 4). GnuTLS checked only that the client holds the leaf's key (the
 * CertificateVerify signature); no chain verification of GnuTLS's is asked for or trusted.
 */
static void peer_chain(struct MHD_Connection *conn, struct as_req *req)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_GNUTLS_SESSION);
    if (ci == NULL || ci->tls_session == NULL) {
        return;
    }
    gnutls_session_t s = (gnutls_session_t)ci->tls_session;
    unsigned int n = 0;
    req->tls = true;
    if (gnutls_certificate_type_get2(s, GNUTLS_CTYPE_CLIENT) != GNUTLS_CRT_X509) {
        return;
    }
    const gnutls_datum_t *d = gnutls_certificate_get_peers(s, &n);
    if (d == NULL) {
        return;
    }
    req->npeer = n;
    for (unsigned int i = 0; i < n && i < AS_CLIENTCERT_MAX_CHAIN; i++) {
        req->peer_der[i] = d[i].data;
        req->peer_len[i] = d[i].size;
    }
}

/*
 * Called by an audit sync thread once a suspended answer's lines are on disk (or failed). It can
 * run before handle has even returned from registering it: the sync may finish while the worker
 * is preempted. So cs->conn is set when cs is made (access_cb), never later; it was once set
 * only just before suspending, and a call that read it in between, then found the connection
 * suspended, resumed NULL (a segfault in MHD_resume_connection, seen once under bench load).
 */
static void durable_done(void *arg, bool ok)
{
    struct conn_state *cs = arg;
    atomic_store(&cs->dfailed, !ok);
    if (atomic_exchange(&cs->dstate, D_DONE) == D_SUSPENDED) {
        /* cs stays valid: a suspended connection is not closed */
        MHD_resume_connection(cs->conn);
    }
}

static enum MHD_Result handle(struct as_server *srv, struct MHD_Connection *conn, const char *url,
                              const char *method, struct conn_state *cs)
{
    struct as_req req;
    struct as_resp resp;
    enum as_err err = AS_OK;
    bool pending = false;
    memset(&req, 0, sizeof req);
    memset(&resp, 0, sizeof resp);
    req.conn = conn;
    req.method_name = method;
    req.start_ns = as_mono_ns();
    req.store_mark = as_store_my_commit(srv->store);
    request_id(req.request_id);
    as_log_request(req.request_id);
    remote_of(conn, req.remote, sizeof req.remote);
    peer_chain(conn, &req);
    req.method = method_of(method);
    if (req.method == AS_M_GET && list_param(conn)) {
        req.method = AS_M_LIST;
    }
    const char *ns = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Vault-Namespace");
    if (ns != NULL && *ns != '\0') {
        err = as_fail(&resp, AS_ERR_INVALID, "namespaces are not supported");
        goto done;
    }
    if ((err = as_url_path_canonical(url, req.path, sizeof req.path)) != AS_OK) {
        if (err == AS_ERR_INVALID) {
            as_fail(&resp, err, "invalid request path");
        }
        goto done;
    }
    req.raw_body = cs->body.data ? cs->body.data : "";
    req.raw_len = cs->body.len;
    req.token = token_of(conn);
    err = as_dispatch(srv, &req, &resp);
done:;
    int shown = err != AS_OK ? status_of(err) : (resp.status ? resp.status : 200);
    /* The response line is written before the answer; when the log cannot take it (or the
     * request line of a check) the answer is a 500 (SPEC §8). */
    if (audited(srv, &req, &resp, shown)) {
        const char *etext = err != AS_OK ? error_text(&req, &resp, err) : NULL;
        enum as_err ar = AS_OK;
        /* Wait for the disk only when the request changed something (SPEC §8: lines are synced
         * with the store's group commit), and without holding this thread when the connection
         * can be suspended meanwhile. The request line goes with the response line when it
         * was not written before the handler. */
        bool changed = as_store_my_commit(srv->store) > req.store_mark;
        if (changed && !atomic_load(&g_stopping)) {
            atomic_store(&cs->dstate, D_RUNNING);
            atomic_store(&cs->dfailed, false);
            ar = as_audit_response_async(srv->audit, &req, &resp, shown, etext, durable_done, cs,
                                         &pending);
        } else {
            ar = as_audit_response(srv->audit, &req, &resp, shown, etext, changed);
        }
        if (ar != AS_OK) {
            as_metrics_audit_failure();
            as_error("the audit log did not take the request; answering 500");
            err = AS_ERR_IO;
            resp.err[0] = '\0';
            shown = 500;
        }
    }
    /* Nothing is acknowledged before it is on disk: the audit sync above covered this thread's
     * store commits when there was one (or will, for a pending answer: its sync covers them);
     * otherwise (an unaudited check that spent a token use, auditing off) the store's group
     * commit does. */
    if (!pending && as_store_sync_mine(srv->store) != AS_OK && err == AS_OK) {
        as_error("the store could not sync; answering 503");
        err = AS_ERR_STORE;
        resp.err[0] = '\0';
        shown = 503;
    }
    enum MHD_Result ret;
    if (pending) {
        /* Build the answer now, send it when durable_done has resumed the connection. */
        snprintf(cs->request_id, sizeof cs->request_id, "%s", req.request_id);
        t_defer = cs;
        (void)render(conn, &req, &resp, err);
        t_defer = NULL;
        MHD_suspend_connection(conn);
        cs->suspended = true;
        atomic_fetch_add(&g_suspended, 1);
        if (atomic_exchange(&cs->dstate, D_SUSPENDED) == D_DONE) {
            MHD_resume_connection(conn); /* already decided while the answer was built */
        }
        ret = MHD_YES;
    } else {
        ret = render(conn, &req, &resp, err);
    }
    as_metrics_request(req.route, shown, as_mono_ns() - req.start_ns);
    if (req.login_mount[0] != '\0') {
        as_metrics_login(req.login_mount, shown);
    }
    /* One line per request is the audit log's job; here only at debug (Vault's server log has
     * none), or when the server itself failed. At info it cost a locked stderr write per check. */
    as_log(shown >= 500 ? AS_LOG_INFO : AS_LOG_DEBUG, "%s /v1/%s %d %s", method, req.path, shown,
           req.remote);
    as_log_request(NULL);
    json_decref(req.body);
    json_decref(resp.data);
    json_decref(resp.auth);
    json_decref(resp.warnings);
    json_decref(resp.raw_json);
    json_decref(resp.audit_data);
    as_buf_free(&req.audit_blocks, false);
    free(resp.raw);
    as_token_rec_free(req.auth);
    as_acl_free(req.acl);
    return ret;
}

static enum MHD_Result access_cb(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version, const char *upload_data,
                                 size_t *upload_data_size, void **con_cls)
{
    struct as_server *srv = cls;
    struct conn_state *cs = *con_cls;
    (void)version;
    if (cs == NULL) {
        cs = calloc(1, sizeof *cs);
        if (cs == NULL) {
            return MHD_NO;
        }
        as_buf_init(&cs->body, (size_t)srv->cfg.max_body_bytes);
        cs->conn = conn;
        *con_cls = cs;
        /* Refuse an oversize body from its Content-Length, before reading it, so clients that
         * sent "Expect: 100-continue" get the 413 instead of a 100. */
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
        if (cl != NULL) {
            char *end = NULL;
            unsigned long long n = strtoull(cl, &end, 10);
            if (end == cl || *end != '\0' || n > (unsigned long long)srv->cfg.max_body_bytes) {
                cs->responded = true;
                return queue_error(conn, 413, "request body too large", NULL);
            }
        }
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        if (!cs->too_large && as_buf_append(&cs->body, upload_data, *upload_data_size) != AS_OK) {
            /* A chunked body that grows past the limit: libmicrohttpd 0.9.75 cannot answer in
             * the middle of an upload, so drop what came and discard the rest, then say 413. */
            cs->too_large = true;
            as_buf_free(&cs->body, true);
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (cs->suspended) {
        /* Resumed by durable_done (or by handle itself): the deferred answer goes out now. */
        cs->suspended = false;
        atomic_fetch_sub(&g_suspended, 1);
        struct MHD_Response *r = cs->deferred;
        cs->deferred = NULL;
        if (atomic_load(&cs->dfailed)) {
            if (r != NULL) {
                MHD_destroy_response(r);
            }
            as_metrics_audit_failure();
            as_error("the audit log did not take the request; answering 500");
            return queue_error(conn, 500, public_message(500), cs->request_id);
        }
        if (r == NULL) {
            return MHD_NO; /* the answer could not be built: as when render fails */
        }
        enum MHD_Result ret = MHD_queue_response(conn, cs->deferred_status, r);
        MHD_destroy_response(r);
        return ret;
    }
    if (cs->responded) {
        return MHD_YES;
    }
    if (cs->too_large) {
        cs->responded = true;
        return queue_error(conn, 413, "request body too large", NULL);
    }
    cs->responded = true;
    return handle(srv, conn, url, method, cs);
}

static void completed_cb(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)conn;
    (void)toe;
    struct conn_state *cs = *con_cls;
    if (cs != NULL) {
        if (cs->suspended) {
            atomic_fetch_sub(&g_suspended, 1); /* closed after its resume, before access_cb */
        }
        if (cs->deferred != NULL) {
            MHD_destroy_response(cs->deferred);
        }
        /* Bodies may hold secrets (tokens in lookup/revoke requests). */
        as_buf_free(&cs->body, true);
        free(cs);
        *con_cls = NULL;
    }
}

static void mhd_log(void *cls, const char *fmt, va_list ap) AS_PRINTF(2, 0);
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    as_warn("http: %s", msg);
}

static enum as_err parse_addr(const char *s, struct sockaddr_storage *ss, bool *v6)
{
    char host[128];
    const char *colon = strrchr(s, ':');
    memset(ss, 0, sizeof *ss);
    if (colon == NULL || colon == s || (size_t)(colon - s) >= sizeof host) {
        return AS_ERR_CONFIG;
    }
    char *end = NULL;
    long port = strtol(colon + 1, &end, 10);
    if (*(colon + 1) == '\0' || *end != '\0' || port < 0 || port > 65535) {
        return AS_ERR_CONFIG;
    }
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = '\0';
    if (host[0] == '[') {
        size_t hl = strlen(host);
        if (hl < 3 || host[hl - 1] != ']') {
            return AS_ERR_CONFIG;
        }
        memmove(host, host + 1, hl - 2);
        host[hl - 2] = '\0';
    }
    struct sockaddr_in *a4 = (struct sockaddr_in *)(void *)ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)(void *)ss;
    if (strcmp(host, "localhost") == 0) {
        snprintf(host, sizeof host, "127.0.0.1");
    }
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        *v6 = false;
        return AS_OK;
    }
    if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        *v6 = true;
        return AS_OK;
    }
    return AS_ERR_CONFIG;
}

/*
 * The HTTPS listener's certificate, swappable while serving (it is re-issued when a new CA
 * generation becomes active). GnuTLS keeps using the credentials it was handed for the rest of
 * a handshake, so replaced ones are kept until shutdown rather than freed under its feet.
 */
struct tls_cred {
    gnutls_pcert_st pcerts[8];
    unsigned int npcerts;
    gnutls_privkey_t key;
    struct tls_cred *older;
};
static pthread_mutex_t cred_lock = PTHREAD_MUTEX_INITIALIZER;
static struct tls_cred *cred_current;

static void cred_free_all(void)
{
    pthread_mutex_lock(&cred_lock);
    struct tls_cred *c = cred_current;
    cred_current = NULL;
    pthread_mutex_unlock(&cred_lock);
    while (c != NULL) {
        struct tls_cred *next = c->older;
        for (unsigned i = 0; i < c->npcerts; i++) {
            gnutls_pcert_deinit(&c->pcerts[i]);
        }
        gnutls_privkey_deinit(c->key);
        free(c);
        c = next;
    }
}

enum as_err as_http_set_cert(const char *cert_pem, const char *key_pem)
{
    struct tls_cred *c = calloc(1, sizeof *c);
    if (c == NULL) {
        return AS_ERR_NOMEM;
    }
    gnutls_datum_t cd = {(unsigned char *)cert_pem, (unsigned int)strlen(cert_pem)};
    gnutls_datum_t kd = {(unsigned char *)key_pem, (unsigned int)strlen(key_pem)};
    c->npcerts = 8;
    if (gnutls_pcert_list_import_x509_raw(c->pcerts, &c->npcerts, &cd, GNUTLS_X509_FMT_PEM, 0) <
        0) {
        free(c);
        as_error("tls: cannot import the listener certificate");
        return AS_ERR_CRYPTO;
    }
    if (gnutls_privkey_init(&c->key) < 0 ||
        gnutls_privkey_import_x509_raw(c->key, &kd, GNUTLS_X509_FMT_PEM, NULL, 0) < 0) {
        for (unsigned i = 0; i < c->npcerts; i++) {
            gnutls_pcert_deinit(&c->pcerts[i]);
        }
        gnutls_privkey_deinit(c->key);
        free(c);
        as_error("tls: cannot import the listener key");
        return AS_ERR_CRYPTO;
    }
    pthread_mutex_lock(&cred_lock);
    c->older = cred_current;
    cred_current = c;
    pthread_mutex_unlock(&cred_lock);
    return AS_OK;
}

static int cert_cb(gnutls_session_t session, const gnutls_datum_t *req_ca_dn, int nreqs,
                   const gnutls_pk_algorithm_t *algos, int nalgos, gnutls_pcert_st **pcert,
                   unsigned int *pcert_length, gnutls_privkey_t *pkey)
{
    (void)req_ca_dn;
    (void)nreqs;
    (void)algos;
    (void)nalgos;
    /* The CertificateRequest is sent after this callback (it runs while the ClientHello is
     * processed). Advertise no CA names: the trust that MHD_OPTION_HTTPS_MEM_TRUST loaded is only
     * the bundle as it was at start, while cert roles trust other CAs and the bundle rotates, and
     * clients that filter by the list (Go's crypto/tls) would then send no certificate at all. */
    gnutls_certificate_send_x509_rdn_sequence(session, 1);
    pthread_mutex_lock(&cred_lock);
    struct tls_cred *c = cred_current;
    pthread_mutex_unlock(&cred_lock);
    if (c == NULL) {
        return -1;
    }
    *pcert = c->pcerts;
    *pcert_length = c->npcerts;
    *pkey = c->key;
    return 0;
}

static struct MHD_Daemon *start_one(struct as_server *srv, const char *addr, bool tls)
{
    struct sockaddr_storage ss;
    bool v6 = false;
    if (parse_addr(addr, &ss, &v6) != AS_OK) {
        as_error("listen address \"%s\" is not ADDR:PORT", addr);
        return NULL;
    }
    /* Four threads per core, at least 8. A write request no longer holds its thread while its
     * group commit syncs (the connection is suspended, see conn_state), so the pool only has to
     * cover CPU work and short waits (the store's write mutex, a sync when auditing is off).
     * Measured on 2 cores: 16 threads cost the checks 10-15% (more threads waking per request)
     * and 4 slowed the writes; 8 was the best of both. */
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned pool = cores > 0 ? (unsigned)cores * 4 : 8;
    if (pool < 8) {
        pool = 8;
    }
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG |
                     MHD_ALLOW_SUSPEND_RESUME;
    if (v6) {
        flags |= MHD_USE_IPv6;
    }
    if (tls) {
        flags |= MHD_USE_TLS;
        /* With a trust list MHD makes every session *request* a client certificate
         * (GNUTLS_CERT_REQUEST: clients without one are still served, PERF-NOTES trap 4). GnuTLS
         * is never asked to verify against it; the cert auth method judges the chain itself
         * (peer_chain, pki/clientcert.c). Any valid PEM would do; the bundle is at hand. */
        char *trust = as_caset_bundle_pem(srv->caset);
        if (trust == NULL || *trust == '\0') {
            free(trust);
            as_error("tls: no CA bundle to request client certificates with");
            return NULL;
        }
        struct MHD_Daemon *d = MHD_start_daemon(
            flags, 0, NULL, NULL, access_cb, srv, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
            MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss, MHD_OPTION_THREAD_POOL_SIZE, pool,
            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)30, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
            (size_t)CONN_MEMORY, MHD_OPTION_NOTIFY_COMPLETED, completed_cb, NULL,
            MHD_OPTION_UNESCAPE_CALLBACK, keep_escaped, NULL, MHD_OPTION_HTTPS_MEM_TRUST, trust,
            MHD_OPTION_HTTPS_CERT_CALLBACK, cert_cb, MHD_OPTION_END);
        free(trust);
        return d;
    }
    return MHD_start_daemon(flags, 0, NULL, NULL, access_cb, srv, MHD_OPTION_EXTERNAL_LOGGER,
                            mhd_log, NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
                            MHD_OPTION_THREAD_POOL_SIZE, pool, MHD_OPTION_CONNECTION_TIMEOUT,
                            (unsigned)30, MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CONN_MEMORY,
                            MHD_OPTION_NOTIFY_COMPLETED, completed_cb, NULL,
                            MHD_OPTION_UNESCAPE_CALLBACK, keep_escaped, NULL, MHD_OPTION_END);
}

enum as_err as_http_start(struct as_server *srv)
{
    srv->http = start_one(srv, srv->cfg.listen, false);
    if (srv->http == NULL) {
        as_error("cannot listen on %s", srv->cfg.listen);
        return AS_ERR_IO;
    }
    as_info("listening on http://%s", srv->cfg.listen);
    if (srv->cfg.tls_listen != NULL && *srv->cfg.tls_listen != '\0') {
        srv->https = start_one(srv, srv->cfg.tls_listen, true);
        if (srv->https == NULL) {
            as_error("cannot listen on %s (TLS)", srv->cfg.tls_listen);
            as_http_stop(srv);
            return AS_ERR_IO;
        }
        as_info("listening on https://%s", srv->cfg.tls_listen);
    }
    return AS_OK;
}

void as_http_stop(struct as_server *srv)
{
    /* libmicrohttpd aborts when stopped with a suspended connection: no new ones, and the
     * audit's sync threads (running until the audit device is freed, after this) resume the
     * rest within a sync or two. */
    atomic_store(&g_stopping, true);
    for (int i = 0; i < 10000 && atomic_load(&g_suspended) > 0; i++) {
        struct timespec ms = {0, 1000 * 1000};
        nanosleep(&ms, NULL);
    }
    if (srv->http != NULL) {
        MHD_stop_daemon(srv->http);
        srv->http = NULL;
    }
    if (srv->https != NULL) {
        MHD_stop_daemon(srv->https);
        srv->https = NULL;
        cred_free_all();
    }
}
