/* h_pki.c: pki/ca, pki/ca/pem and pki/ca_chain (SPEC §3): the active CA, unauthenticated. */
#include <stdlib.h>
#include <string.h>

#include "authsvc/server.h"

enum as_err h_pki_ca(struct as_server *srv, struct as_req *req, struct as_resp *resp)
{
    const char *src = NULL;
    size_t len = 0;
    if (strcmp(req->path, "pki/ca") == 0) {
        src = (const char *)as_ca_cert_der(srv->ca, &len);
        resp->content_type = "application/pkix-cert";
    } else if (strcmp(req->path, "pki/ca/pem") == 0) {
        src = as_ca_cert_pem(srv->ca);
        len = strlen(src);
        resp->content_type = "application/pem-certificate-chain";
    } else {
        src = as_ca_chain_pem(srv->ca);
        len = strlen(src);
        resp->content_type = "application/pem-certificate-chain";
    }
    resp->raw = malloc(len ? len : 1);
    if (resp->raw == NULL) {
        return AS_ERR_NOMEM;
    }
    memcpy(resp->raw, src, len);
    resp->raw_len = len;
    resp->status = 200;
    return AS_OK;
}
