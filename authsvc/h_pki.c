/*
 * h_pki.c: the pki/ endpoints (SPEC §3, §6): CA certificates and chains, the trust bundle in
 * PEM, CRLs, issued-certificate records, revocation and CA rotation.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "authsvc/server.h"

static enum as_err raw_copy(struct as_resp *resp, const void *src, size_t len, const char *type)
{
    resp->raw = malloc(len ? len : 1);
    if (resp->raw == NULL) {
        return AS_ERR_NOMEM;
    }
    memcpy(resp->raw, src, len);
    resp->raw_len = len;
    resp->content_type = type;
    resp->status = 200;
    return AS_OK;
}

static enum as_err raw_take(struct as_resp *resp, char *src, size_t len, const char *type)
{
    resp->raw = src;
    resp->raw_len = len;
    resp->content_type = type;
    resp->status = 200;
    return AS_OK;
}

enum as_err h_pki_ca(struct as_server *srv, struct as_req *req, struct as_resp *resp)
{
    struct as_signing s;
    enum as_err r = as_caset_active(srv->caset, &s);
    if (r != AS_OK) {
        return r;
    }
    if (strcmp(req->path, "pki/ca") == 0) {
        size_t len = 0;
        const unsigned char *der = as_ca_cert_der(s.ca, &len);
        return raw_copy(resp, der, len, "application/pkix-cert");
    }
    const char *pem =
        strcmp(req->path, "pki/ca/pem") == 0 ? as_ca_cert_pem(s.ca) : as_ca_chain_pem(s.ca);
    return raw_copy(resp, pem, strlen(pem), "application/pem-certificate-chain");
}

enum as_err h_pki_bundle_pem(struct as_server *srv, struct as_req *req, struct as_resp *resp)
{
    (void)req;
    char *pem = as_caset_bundle_pem(srv->caset);
    if (pem == NULL) {
        return AS_ERR_NOMEM;
    }
    return raw_take(resp, pem, strlen(pem), "application/pem-certificate-chain");
}

enum as_err h_pki_crl(struct as_server *srv, struct as_req *req, struct as_resp *resp)
{
    enum as_err r;
    if (strcmp(req->path, "pki/crl") == 0) {
        unsigned char *der = NULL;
        size_t len = 0;
        if ((r = as_caset_crl_der(srv->caset, &der, &len)) != AS_OK) {
            return r;
        }
        return raw_take(resp, (char *)der, len, "application/pkix-crl");
    }
    char *pem = NULL;
    if ((r = as_caset_crl_pem(srv->caset, &pem)) != AS_OK) {
        return r;
    }
    return raw_take(resp, pem, strlen(pem), "application/x-pem-file");
}

enum as_err h_pki_cert(struct as_server *srv, struct as_req *req, struct as_resp *resp)
{
    char serial[64];
    struct as_cert_rec *c = NULL;
    if (as_serial_normalize(req->params[0], serial, sizeof serial) != AS_OK) {
        return as_fail(resp, AS_ERR_INVALID, "invalid serial number");
    }
    enum as_err r = as_store_cert_get(srv->store, serial, &c);
    if (r == AS_ERR_NOT_FOUND || (r == AS_OK && strcmp(c->kind, "x509") != 0)) {
        as_cert_rec_free(c);
        return as_fail(resp, AS_ERR_NOT_FOUND, "certificate not found");
    }
    if (r != AS_OK) {
        return r;
    }
    char *pem = as_pem_encode("CERTIFICATE", c->der, c->der_len);
    char when[40] = "";
    if (c->revoked_at > 0) {
        as_time_rfc3339(c->revoked_at, when, sizeof when);
    }
    resp->data = json_pack("{s:s,s:I,s:s,s:s}", "certificate", pem ? pem : "", "revocation_time",
                           (json_int_t)c->revoked_at, "revocation_time_rfc3339", when, "spiffe_id",
                           c->spiffe_id);
    free(pem);
    as_cert_rec_free(c);
    resp->status = 200;
    return resp->data ? AS_OK : AS_ERR_NOMEM;
}

enum as_err h_pki_certs(struct as_server *srv, struct as_req *req, struct as_resp *resp)
{
    char **serials = NULL;
    size_t n = 0;
    bool revoked = strcmp(req->path, "pki/certs/revoked") == 0;
    enum as_err r = as_store_cert_list(srv->store, revoked, &serials, &n);
    return r != AS_OK ? r : as_resp_keys(resp, serials, n);
}

enum as_err h_pki_revoke(struct as_server *srv, struct as_req *req, struct as_resp *resp)
{
    const char *in = NULL;
    char serial[64];
    int64_t at = 0;
    bool was = false;
    if (as_json_get_string(req->body, "serial_number", &in, NULL) != AS_OK || in == NULL ||
        as_serial_normalize(in, serial, sizeof serial) != AS_OK) {
        return as_fail(resp, AS_ERR_INVALID, "invalid or missing serial_number");
    }
    enum as_err r = as_store_cert_revoke(srv->store, serial, as_now(), &at, &was);
    if (r == AS_ERR_NOT_FOUND) {
        return as_fail(resp, AS_ERR_INVALID, "certificate with serial %s not found", serial);
    }
    if (r != AS_OK) {
        return r;
    }
    if (!was) {
        as_info("certificate %s revoked", serial);
        as_metrics_revocation(AS_METRIC_REVOKE_CERT);
    }
    char when[40];
    as_time_rfc3339(at, when, sizeof when);
    resp->data =
        json_pack("{s:I,s:s}", "revocation_time", (json_int_t)at, "revocation_time_rfc3339", when);
    resp->status = 200;
    return resp->data ? AS_OK : AS_ERR_NOMEM;
}

enum as_err h_pki_rotate(struct as_server *srv, struct as_req *req, struct as_resp *resp)
{
    int64_t after = srv->cfg.bundle_refresh_hint;
    int64_t activate_at = 0;
    if (as_json_get_duration(req->body, "activate_after", &after, NULL) != AS_OK) {
        return as_fail(resp, AS_ERR_INVALID, "\"activate_after\" must be a duration");
    }
    enum as_err r = as_caset_rotate_now(srv->caset, after, &activate_at);
    if (r != AS_OK) {
        return r;
    }
    as_server_wake(srv);
    char when[40];
    as_time_rfc3339(activate_at, when, sizeof when);
    resp->data =
        json_pack("{s:I,s:s,s:I}", "activate_at", (json_int_t)activate_at, "activate_at_rfc3339",
                  when, "spiffe_sequence", (json_int_t)as_caset_sequence(srv->caset));
    resp->status = 200;
    return resp->data ? AS_OK : AS_ERR_NOMEM;
}
