/*
 * fuzz_template: spiffe_id_template checking and expansion. The input is split at the first
 * NUL: the template, then a JSON object of claims.
 *
 * Invariants: a template that expands was accepted by the check; every expansion is a valid
 * SPIFFE ID of the trust domain, so no claim value can ever change the shape of an identity.
 */
#include <string.h>

#include "common/common.h"
#include "fuzz.h"
#include "pki/pki.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    as_log_set_level(AS_LOG_ERROR);
    const uint8_t *nul = memchr(data, 0, size);
    size_t tlen = nul ? (size_t)(nul - data) : size;
    char *tmpl = fuzz_strndup(data, tlen);
    json_t *claims = NULL;
    if (nul != NULL) {
        char err[160];
        if (as_json_parse_object((const char *)nul + 1, size - tlen - 1, &claims, err,
                                 sizeof err) != AS_OK) {
            claims = NULL;
        }
    }
    char why[256];
    for (int jwt = 0; jwt < 2; jwt++) {
        enum as_err checked = as_spiffe_template_check(tmpl, jwt == 1, why, sizeof why);
        FUZZ_CHECK(checked == AS_OK || checked == AS_ERR_INVALID);
        struct as_template_ctx ctx = {
            .trust_domain = "example.org",
            .role = "web",
            .claims = jwt ? claims : NULL,
            .cert_cn = jwt ? NULL : "cn-1",
            .cert_uri = jwt ? NULL : "spiffe://example.org/ns/a",
        };
        char *out = NULL;
        enum as_err r = as_spiffe_template_expand(tmpl, &ctx, &out, why, sizeof why);
        FUZZ_CHECK(r == AS_OK || r == AS_ERR_INVALID);
        if (r == AS_OK) {
            FUZZ_CHECK(checked == AS_OK);
            FUZZ_CHECK(as_spiffe_id_check(out, "example.org", why, sizeof why) == AS_OK);
        } else {
            FUZZ_CHECK(out == NULL);
        }
        free(out);
    }
    json_decref(claims);
    free(tmpl);
    return 0;
}
