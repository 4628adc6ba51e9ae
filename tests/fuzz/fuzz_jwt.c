/*
 * fuzz_jwt: the jwt auth method's parsers: as_jwks_parse (JWKS documents from an issuer) and
 * as_jwt_verify (platform JWTs) against a key set made once from fixed keys.
 *
 * The first input byte picks the mode: even → the rest is a JWKS document; odd → the rest is a
 * token. Invariants: a parsed JWKS has at least one key; a token is only ever accepted when it
 * verifies (there is no private key here, so an accepted token must come from the corpus'
 * unsigned forms — it cannot: nothing may be accepted), and a refusal always names a reason.
 */
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "common/common.h"
#include "fuzz.h"
#include "pki/pki.h"

static struct as_jwks *keys;

/* A fixed JWKS with an RSA and an EC key (public parts of keys generated at start). */
static void init_keys(void)
{
    EVP_PKEY *rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    FUZZ_CHECK(rsa != NULL && ec != NULL);
    json_t *pems = json_array();
    EVP_PKEY *list[2] = {rsa, ec};
    for (int i = 0; i < 2; i++) {
        unsigned char *der = NULL;
        int n = i2d_PUBKEY(list[i], &der);
        FUZZ_CHECK(n > 0);
        char *pem = as_pem_encode("PUBLIC KEY", der, (size_t)n);
        FUZZ_CHECK(pem != NULL);
        json_array_append_new(pems, json_string(pem));
        free(pem);
        OPENSSL_free(der);
    }
    char why[256];
    FUZZ_CHECK(as_jwks_from_pems(pems, &keys, why, sizeof why) == AS_OK);
    json_decref(pems);
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(ec);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    as_log_set_level(AS_LOG_ERROR);
    if (keys == NULL) {
        init_keys();
    }
    if (size == 0) {
        return 0;
    }
    char why[256] = "";
    if ((data[0] & 1) == 0) {
        struct as_jwks *k = NULL;
        enum as_err r = as_jwks_parse((const char *)data + 1, size - 1, &k, why, sizeof why);
        FUZZ_CHECK(r == AS_OK || r == AS_ERR_INVALID || r == AS_ERR_TOO_LARGE);
        FUZZ_CHECK(r != AS_OK || as_jwks_count(k) > 0);
        FUZZ_CHECK(r == AS_OK || k == NULL);
        as_jwks_free(k);
        return 0;
    }
    char *token = fuzz_strndup(data + 1, size - 1);
    json_t *header = NULL;
    json_t *claims = NULL;
    enum as_jwt_fail fail = AS_JWT_OK;
    enum as_err r =
        as_jwt_verify(token, keys, AS_JWT_ALGS_ALL, &header, &claims, &fail, why, sizeof why);
    /* Without the private keys no input can carry a valid signature. */
    FUZZ_CHECK(r == AS_ERR_INVALID);
    FUZZ_CHECK(fail != AS_JWT_OK && why[0] != '\0');
    FUZZ_CHECK(header == NULL && claims == NULL);
    free(token);
    return 0;
}
