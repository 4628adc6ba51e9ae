/* auth_cert.c: the cert auth method (SPEC §5). Being written; see issue 4. */
#include <stdio.h>

#include "authsvc/server.h"

enum as_err as_cert_role_parse(struct as_server *srv, json_t *body, json_t **out, char *why,
                               size_t whylen)
{
    (void)srv;
    (void)body;
    (void)out;
    snprintf(why, whylen, "the cert method is not available yet");
    return AS_ERR_INVALID;
}

enum as_err as_cert_login(struct as_server *srv, const struct as_mount_rec *m, struct as_req *req,
                          struct as_resp *resp)
{
    (void)srv;
    (void)m;
    (void)req;
    return as_fail(resp, AS_ERR_INVALID, "the cert method is not available yet");
}
