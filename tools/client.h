/*
 * client.h: a small HTTP client for the authsvc API (SPEC §2, Vault's wire conventions), shared by
 * authctl and the workload agent. One opaque handle holds the server address, the trust settings
 * (CA file, optional client certificate) and the token; each request sends a method, a path under
 * /v1/ and an optional JSON body, and returns the HTTP status and the parsed JSON answer.
 *
 * A handle reuses one libcurl easy handle (and so its kept-alive connection); it is not safe to
 * use one handle from two threads at once. Call curl_global_init(CURL_GLOBAL_DEFAULT) once at
 * program start, before any thread exists, and curl_global_cleanup() at the end.
 */
#ifndef AS_CLIENT_H
#define AS_CLIENT_H

#include <stddef.h>

#include <jansson.h>

#include "common/common.h"

/*
 * Hard caps. A response body over AS_CLIENT_MAX_RESPONSE, a request body over
 * AS_CLIENT_MAX_REQUEST or a URL over AS_CLIENT_MAX_URL is AS_ERR_TOO_LARGE. The request cap is
 * above the server's default 1 MiB (SPEC §2) because that limit is configurable; the server
 * answers 413 itself.
 */
#define AS_CLIENT_MAX_RESPONSE (4 * 1024 * 1024)
#define AS_CLIENT_MAX_REQUEST (4 * 1024 * 1024)
#define AS_CLIENT_MAX_URL (64 * 1024)
#define AS_CLIENT_MAX_ADDR 2048
#define AS_CLIENT_MAX_PATH 4096
#define AS_CLIENT_MAX_TOKEN 4096
#define AS_CLIENT_CONNECT_TIMEOUT_S 10L
#define AS_CLIENT_TIMEOUT_S 60L

struct as_client;

/* One query parameter; key and value are raw text, the client percent-encodes them. */
struct as_client_param {
    const char *key;
    const char *value;
};

/*
 * Creates a client for the server at addr ("http://HOST:PORT" or "https://...", optionally with a
 * path prefix; trailing slashes are ignored). cacert names a PEM file of CAs to trust for HTTPS
 * (NULL or "" for the system store). Both strings are copied.
 * Returns AS_OK, AS_ERR_CONFIG (addr is not an http(s) URL or is longer than AS_CLIENT_MAX_ADDR),
 * AS_ERR_NOMEM or AS_ERR_INTERNAL (libcurl could not be initialised).
 * The caller frees *out with as_client_free.
 */
enum as_err as_client_new(const char *addr, const char *cacert, struct as_client **out) AS_WUR;

/*
 * Sets the token sent as X-Vault-Token on every later request (copied; the previous copy is
 * wiped). NULL or "" means no token header. AS_ERR_INVALID if it holds anything but printable
 * ASCII without spaces (a newline would let it forge headers) or is longer than
 * AS_CLIENT_MAX_TOKEN; the previous token is then cleared.
 */
enum as_err as_client_set_token(struct as_client *c, const char *token) AS_WUR;

/*
 * Sets the TLS client certificate (PEM file) and its private key (PEM file; NULL means the key is
 * in cert_file) presented to HTTPS servers, e.g. for the cert auth method. cert_file NULL clears
 * both. The names are copied; the files are read at each request. AS_ERR_NOMEM on failure.
 */
enum as_err as_client_set_client_cert(struct as_client *c, const char *cert_file,
                                      const char *key_file) AS_WUR;

/*
 * Sends one request and waits for the answer.
 *   method  "GET", "POST", "PUT", "DELETE", "LIST", "HEAD" or another upper-case token
 *           (at most 16 letters). GET and HEAD take no body.
 *   path    relative to /v1/ ("sys/health", "auth/token/lookup-self"): no leading '/', no empty,
 *           "." or ".." segment, at most AS_CLIENT_MAX_PATH bytes. Each segment is sent
 *           percent-encoded (everything but ALPHA DIGIT - . _ ~ is escaped), so it is routed
 *           exactly as named.
 *   query   nquery parameters appended as ?k=v&k=v (query may be NULL when nquery is 0).
 *   body    borrowed; sent as compact JSON with Content-Type: application/json. NULL sends no
 *           body (POST and PUT then send an empty one).
 *   status  receives the HTTP status (0 when no answer arrived).
 *   resp    may be NULL. Receives the answer parsed as a JSON object (duplicate keys refused), or
 *           NULL when the body is empty or is not a JSON object (a PEM, DER or text answer:
 *           read it from raw). The caller json_decref's it.
 *   raw     may be NULL. Always initialised by this call; receives the body: raw->len bytes,
 *           NUL-terminated, possibly with NULs inside (DER); raw->data is NULL when the body is
 *           empty. The caller frees it with as_buf_free(raw, true) on every path: it may hold
 *           secrets.
 * Returns AS_OK whenever an HTTP answer arrived, whatever its status: check *status (4xx and 5xx
 * carry {"errors":[...]} in *resp). Otherwise AS_ERR_INVALID (bad method, path or body: not a
 * JSON object), AS_ERR_TOO_LARGE (a cap above was exceeded), AS_ERR_IO (connection, TLS or
 * timeout: as_client_error says why), AS_ERR_NOMEM or AS_ERR_INTERNAL (libcurl refused an option).
 * Connects within AS_CLIENT_CONNECT_TIMEOUT_S and gives up after AS_CLIENT_TIMEOUT_S; only http
 * and https are ever spoken and redirects are not followed (they would carry the token elsewhere).
 */
enum as_err as_client_request_query(struct as_client *c, const char *method, const char *path,
                                    const struct as_client_param *query, size_t nquery,
                                    json_t *body, long *status, json_t **resp,
                                    struct as_buf *raw) AS_WUR;

/* as_client_request_query without query parameters. */
enum as_err as_client_request(struct as_client *c, const char *method, const char *path,
                              json_t *body, long *status, json_t **resp, struct as_buf *raw) AS_WUR;

/*
 * A one-line description of why the last request failed (libcurl's message, or what was wrong
 * with the arguments); "" after a request that returned AS_OK. Borrowed until the next request
 * or as_client_free. Never contains the token.
 */
const char *as_client_error(const struct as_client *c);

/* Frees c, wiping the token. c may be NULL. */
void as_client_free(struct as_client *c);

#endif
