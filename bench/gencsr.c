/*
 * gencsr: writes N certificate signing requests for the issuance benchmarks, one per line.
 *
 *   gencsr COUNT
 *
 * Each CSR has its own fresh ECDSA P-256 key (so a server cannot answer from a cache), an empty
 * subject, no extensions and a SHA-256 signature, as `authctl svid x509` sends them. A line is the
 * PEM with its newlines written as the two characters `\n`: a JSON string body without the quotes,
 * ready to drop into {"csr":"..."} (authsvc) or {"certificate_request":"..."} (cfssl). The keys are
 * thrown away. bench/run runs one process per core and concatenates their output.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

static int die(const char *what)
{
    fprintf(stderr, "gencsr: %s failed\n", what);
    ERR_print_errors_fp(stderr);
    return 1;
}

/* Writes the PEM in buf (len bytes) with every newline escaped for a JSON string, then "\n". */
static void put_escaped(const char *buf, long len, FILE *out)
{
    for (long i = 0; i < len; i++) {
        if (buf[i] == '\n') {
            fputs("\\n", out);
        } else {
            fputc(buf[i], out);
        }
    }
    fputc('\n', out);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: gencsr COUNT\n");
        return 2;
    }
    char *end = NULL;
    long count = strtol(argv[1], &end, 10);
    if (end == argv[1] || *end != '\0' || count <= 0) {
        fprintf(stderr, "gencsr: COUNT must be a positive integer\n");
        return 2;
    }

    EVP_PKEY_CTX *kctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    if (kctx == NULL || EVP_PKEY_keygen_init(kctx) <= 0 ||
        EVP_PKEY_CTX_set_group_name(kctx, "P-256") <= 0) {
        return die("P-256 key context");
    }
    BIO *mem = BIO_new(BIO_s_mem());
    if (mem == NULL) {
        return die("BIO_new");
    }
    for (long i = 0; i < count; i++) {
        EVP_PKEY *key = NULL;
        X509_REQ *req = X509_REQ_new();
        if (req == NULL || EVP_PKEY_keygen(kctx, &key) <= 0) {
            return die("key generation");
        }
        /*
         * The SubjectPublicKeyInfo is set from the raw point: X509_REQ_set_pubkey goes through
         * OpenSSL 3's encoders and costs ~290 us, four times the rest together (PERF-NOTES trap 1),
         * which matters when making 200k of them.
         */
        unsigned char *point = OPENSSL_malloc(65);
        size_t point_len = 0;
        if (point == NULL ||
            EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, point, 65,
                                            &point_len) != 1 ||
            X509_PUBKEY_set0_param(X509_REQ_get_X509_PUBKEY(req),
                                   OBJ_nid2obj(NID_X9_62_id_ecPublicKey), V_ASN1_OBJECT,
                                   OBJ_nid2obj(NID_X9_62_prime256v1), point, (int)point_len) != 1) {
            return die("setting the public key");
        }
        /* Version 1 (value 0), empty subject: the SPIFFE ID travels in the request body. */
        if (X509_REQ_set_version(req, 0) != 1 || X509_REQ_sign(req, key, EVP_sha256()) <= 0) {
            return die("X509_REQ_sign");
        }
        (void)BIO_reset(mem);
        if (PEM_write_bio_X509_REQ(mem, req) != 1) {
            return die("PEM_write_bio_X509_REQ");
        }
        char *pem = NULL;
        long len = BIO_get_mem_data(mem, &pem);
        put_escaped(pem, len, stdout);
        X509_REQ_free(req);
        EVP_PKEY_free(key);
    }
    BIO_free(mem);
    EVP_PKEY_CTX_free(kctx);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        perror("gencsr: stdout");
        return 1;
    }
    return 0;
}
