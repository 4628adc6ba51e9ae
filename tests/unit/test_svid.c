/*
 * Unit tests for pki/svid.c and the CA generations of pki/ca.c: CSR parsing and key policy,
 * the X.509-SVID profile (SPIFFE X509-SVID §4, SPEC §6) checked field by field on the parsed
 * result, path validation with OpenSSL and the openssl CLI, server-generated keys, serial
 * normalization, CRLs (RFC 5280 §5), and CA generations with their bundle JWK.
 *
 * With AS_BENCH=1 in the environment it also times issuance and prints µs per SVID.
 */
#include <fcntl.h>
#include <ftw.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "check.h"
#include "common/common.h"
#include "pki/pki.h"

#define TD "example.org"
#define ID "spiffe://example.org/ns/prod/sa/web"
#define DAY (24 * 3600)
#define HOUR 3600
#define OPENSSL_CLI "/usr/bin/openssl"

/* ---- small helpers ---- */

static void make_dir(char *path, size_t len)
{
    snprintf(path, len, "/tmp/test_svid.XXXXXX");
    if (mkdtemp(path) == NULL) {
        perror("mkdtemp");
        exit(2);
    }
}

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static void rm_dir(const char *path)
{
    nftw(path, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

static void spit(const char *dir, const char *name, const char *data)
{
    char p[256];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    if (f == NULL || fwrite(data, 1, strlen(data), f) != strlen(data)) {
        perror(p);
        exit(2);
    }
    fclose(f);
}

static int mode_of(const char *dir, const char *name)
{
    char p[256];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return stat(p, &st) == 0 ? (int)(st.st_mode & 07777) : -1;
}

/* Runs a shell command quietly; its exit status, or -1. */
static int run(const char *cmd)
{
    char full[1024];
    snprintf(full, sizeof full, "%s >/dev/null 2>&1", cmd);
    int st = system(full);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static bool have_cli(void)
{
    return access(OPENSSL_CLI, X_OK) == 0;
}

static int64_t unix_of(const ASN1_TIME *t)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1) {
        return -1;
    }
    return (int64_t)timegm(&tm);
}

static int ext_critical(X509 *x, int nid)
{
    int i = X509_get_ext_by_NID(x, nid, -1);
    return i < 0 ? -1 : X509_EXTENSION_get_critical(X509_get_ext(x, i)) ? 1 : 0;
}

static X509 *ca_x509(const struct as_ca *ca)
{
    size_t len = 0;
    const unsigned char *der = as_ca_cert_der(ca, &len);
    return d2i_X509(NULL, &der, (long)len);
}

static X509 *x509_from_pem(const char *pem)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
    BIO_free(b);
    return x;
}

static char *bio_string(BIO *b)
{
    char *data = NULL;
    long n = BIO_get_mem_data(b, &data);
    char *s = calloc(1, (size_t)n + 1);
    memcpy(s, data, (size_t)n);
    return s;
}

static struct as_ca *must_generate(int64_t ttl)
{
    struct as_ca *ca = NULL;
    if (as_ca_generate(TD, ttl, &ca) != AS_OK || ca == NULL) {
        fprintf(stderr, "cannot generate a CA, stopping\n");
        exit(1);
    }
    return ca;
}

/* Lowercase colon hex of an ASN1_INTEGER's magnitude, as issuance prints serials. */
static void serial_of(X509 *x, char *out, size_t len)
{
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    unsigned char b[32];
    int n = BN_bn2bin(bn, b);
    size_t o = 0;
    out[0] = '\0';
    for (int i = 0; i < n && o + 4 < len; i++) {
        o += (size_t)snprintf(out + o, len - o, i > 0 ? ":%02x" : "%02x", b[i]);
    }
    BN_free(bn);
}

/* ---- keys and CSRs made with OpenSSL, as a workload would ---- */

static EVP_PKEY *key_ec(const char *curve)
{
    return EVP_PKEY_Q_keygen(NULL, NULL, "EC", curve);
}

/* An RSA-2048 key with public exponent e (3 is a valid RSA key that our policy refuses). */
static EVP_PKEY *key_rsa_e(unsigned long e)
{
    EVP_PKEY *k = NULL;
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    BIGNUM *bn = BN_new();
    if (c != NULL && bn != NULL && BN_set_word(bn, e) == 1 && EVP_PKEY_keygen_init(c) == 1 &&
        EVP_PKEY_CTX_set_rsa_keygen_bits(c, 2048) == 1 &&
        EVP_PKEY_CTX_set1_rsa_keygen_pubexp(c, bn) == 1) {
        if (EVP_PKEY_keygen(c, &k) != 1) {
            k = NULL;
        }
    }
    BN_free(bn);
    EVP_PKEY_CTX_free(c);
    return k;
}

static EVP_PKEY *key_rsa(size_t bits)
{
    return EVP_PKEY_Q_keygen(NULL, NULL, "RSA", bits);
}

struct csr_opts {
    const char *san_uri; /* a SAN URI to ask for, or NULL */
    const char *san_dns; /* a SAN DNS name to ask for, or NULL */
    bool ask_ca;         /* basicConstraints CA:TRUE in the requested extensions */
    const char *md;      /* digest name, "SHA256" by default; "" for Ed25519 */
    bool compressed;     /* EC point in compressed form */
};

static void push_ext(STACK_OF(X509_EXTENSION) * exts, int nid, int crit, void *value)
{
    X509_EXTENSION *e = X509V3_EXT_i2d(nid, crit, value);
    if (e == NULL || sk_X509_EXTENSION_push(exts, e) <= 0) {
        fprintf(stderr, "cannot build a requested extension\n");
        exit(2);
    }
}

/* A PEM CSR for key with subject CN=workload and the requested extensions of o. */
static char *make_csr(EVP_PKEY *key, const struct csr_opts *o)
{
    static const struct csr_opts none = {NULL, NULL, false, NULL, false};
    if (o == NULL) {
        o = &none;
    }
    if (o->compressed) {
        EVP_PKEY_set_utf8_string_param(key, OSSL_PKEY_PARAM_EC_POINT_CONVERSION_FORMAT,
                                       "compressed");
    }
    X509_REQ *req = X509_REQ_new();
    X509_REQ_set_version(req, X509_REQ_VERSION_1);
    X509_NAME_add_entry_by_txt(X509_REQ_get_subject_name(req), "CN", MBSTRING_ASC,
                               (const unsigned char *)"workload", -1, -1, 0);
    X509_REQ_set_pubkey(req, key);
    STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
    if (o->san_uri != NULL || o->san_dns != NULL) {
        GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
        if (o->san_uri != NULL) {
            GENERAL_NAME *g = GENERAL_NAME_new();
            ASN1_IA5STRING *s = ASN1_IA5STRING_new();
            ASN1_STRING_set(s, o->san_uri, -1);
            GENERAL_NAME_set0_value(g, GEN_URI, s);
            sk_GENERAL_NAME_push(gens, g);
        }
        if (o->san_dns != NULL) {
            GENERAL_NAME *g = GENERAL_NAME_new();
            ASN1_IA5STRING *s = ASN1_IA5STRING_new();
            ASN1_STRING_set(s, o->san_dns, -1);
            GENERAL_NAME_set0_value(g, GEN_DNS, s);
            sk_GENERAL_NAME_push(gens, g);
        }
        push_ext(exts, NID_subject_alt_name, 0, gens);
        GENERAL_NAMES_free(gens);
    }
    if (o->ask_ca) {
        BASIC_CONSTRAINTS *bc = BASIC_CONSTRAINTS_new();
        bc->ca = 0xff;
        push_ext(exts, NID_basic_constraints, 1, bc);
        BASIC_CONSTRAINTS_free(bc);
    }
    if (sk_X509_EXTENSION_num(exts) > 0) {
        X509_REQ_add_extensions(req, exts);
    }
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    const char *mdname = o->md != NULL ? o->md : "SHA256";
    EVP_MD *md = mdname[0] != '\0' ? EVP_MD_fetch(NULL, mdname, NULL) : NULL;
    if (X509_REQ_sign(req, key, md) <= 0) {
        fprintf(stderr, "cannot sign a test CSR\n");
        exit(2);
    }
    EVP_MD_free(md);
    BIO *b = BIO_new(BIO_s_mem());
    PEM_write_bio_X509_REQ(b, req);
    char *pem = bio_string(b);
    BIO_free(b);
    X509_REQ_free(req);
    return pem;
}

/* The same CSR with one byte of its signature flipped, re-encoded as PEM. */
static char *tamper_csr(const char *pem)
{
    BIO *in = BIO_new_mem_buf(pem, -1);
    X509_REQ *req = PEM_read_bio_X509_REQ(in, NULL, NULL, NULL);
    BIO_free(in);
    unsigned char *der = NULL;
    int n = i2d_X509_REQ(req, &der);
    X509_REQ_free(req);
    /* The DER ends with the signature BIT STRING: its last byte is signature content. */
    der[n - 1] ^= 0x01;
    BIO *out = BIO_new(BIO_s_mem());
    PEM_write_bio(out, "CERTIFICATE REQUEST", "", der, n);
    char *s = bio_string(out);
    BIO_free(out);
    OPENSSL_free(der);
    return s;
}

/* ---- the leaf profile ---- */

struct expect {
    const char *id;
    const char *const *dns;
    size_t ndns;
    int64_t not_before;
    int64_t not_after;
    bool rsa;
};

static int verify_chain(X509 *ca_cert, X509 *leaf, int purpose, X509_CRL *crl)
{
    X509_STORE *store = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    int err = -1;
    if (store != NULL && ctx != NULL && X509_STORE_add_cert(store, ca_cert) == 1 &&
        (crl == NULL || X509_STORE_add_crl(store, crl) == 1) &&
        X509_STORE_CTX_init(ctx, store, leaf, NULL) == 1 &&
        X509_STORE_CTX_set_purpose(ctx, purpose) == 1) {
        if (crl != NULL) {
            X509_STORE_CTX_set_flags(ctx, X509_V_FLAG_CRL_CHECK);
        }
        err = X509_verify_cert(ctx) == 1 ? X509_V_OK : X509_STORE_CTX_get_error(ctx);
    }
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    ERR_clear_error();
    return err;
}

/* Checks every field of the SPEC §6 profile on leaf, parsed back from its PEM and DER. */
static void check_profile(const struct as_ca *ca, const struct as_leaf *leaf, EVP_PKEY *key,
                          const struct expect *e)
{
    X509 *cax = ca_x509(ca);
    X509 *x = x509_from_pem(leaf->cert_pem);
    CHECK(x != NULL && cax != NULL);
    if (x == NULL || cax == NULL) {
        X509_free(x);
        X509_free(cax);
        return;
    }
    /* PEM and DER are the same certificate. */
    const unsigned char *p = leaf->der;
    X509 *xd = d2i_X509(NULL, &p, (long)leaf->der_len);
    CHECK(xd != NULL && X509_cmp(x, xd) == 0);
    X509_free(xd);
    CHECK(strncmp(leaf->cert_pem, "-----BEGIN CERTIFICATE-----\n", 28) == 0);

    CHECK_INT(X509_get_version(x), X509_VERSION_3);
    /* Empty subject; issuer = CA subject. */
    CHECK_INT(X509_NAME_entry_count(X509_get_subject_name(x)), 0);
    CHECK(X509_NAME_cmp(X509_get_issuer_name(x), X509_get_subject_name(cax)) == 0);

    /* Serial: positive, non-zero, at most 16 bytes, printed as issuance printed it. */
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    CHECK(bn != NULL && !BN_is_negative(bn) && !BN_is_zero(bn) && BN_num_bytes(bn) <= 16);
    CHECK_INT(ASN1_STRING_type(X509_get0_serialNumber(x)), V_ASN1_INTEGER);
    BN_free(bn);
    char serial[64];
    serial_of(x, serial, sizeof serial);
    CHECK_STR(leaf->serial, serial);

    /* Validity exactly as requested (after capping). */
    CHECK_INT(unix_of(X509_get0_notBefore(x)), e->not_before);
    CHECK_INT(unix_of(X509_get0_notAfter(x)), e->not_after);
    CHECK_INT(leaf->not_before, e->not_before);
    CHECK_INT(leaf->not_after, e->not_after);

    /* Six extensions and nothing else. */
    CHECK_INT(X509_get_ext_count(x), 6);

    /* SAN: critical, exactly one URI (the ID), then the DNS names in order. */
    CHECK_INT(ext_critical(x, NID_subject_alt_name), 1);
    int crit = -1;
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, &crit, NULL);
    CHECK(gens != NULL && sk_GENERAL_NAME_num(gens) == (int)(1 + e->ndns));
    int uris = 0;
    for (int i = 0; gens != NULL && i < sk_GENERAL_NAME_num(gens); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        if (i == 0) {
            CHECK_INT(g->type, GEN_URI);
        } else {
            CHECK_INT(g->type, GEN_DNS);
        }
        const ASN1_STRING *s = g->type == GEN_URI ? g->d.uniformResourceIdentifier : g->d.dNSName;
        const char *want = i == 0 ? e->id : e->dns[i - 1];
        uris += g->type == GEN_URI;
        CHECK(ASN1_STRING_length(s) == (int)strlen(want) &&
              memcmp(ASN1_STRING_get0_data(s), want, strlen(want)) == 0);
    }
    CHECK_INT(uris, 1);
    GENERAL_NAMES_free(gens);
    for (size_t i = 0; i < e->ndns; i++) {
        CHECK_INT(X509_check_host(x, e->dns[i], 0, 0, NULL), 1);
    }
    CHECK(X509_check_host(x, "not-granted.example.org", 0, 0, NULL) != 1);

    /* basicConstraints critical CA:FALSE. */
    BASIC_CONSTRAINTS *bc = X509_get_ext_d2i(x, NID_basic_constraints, &crit, NULL);
    CHECK(bc != NULL && !bc->ca && bc->pathlen == NULL);
    CHECK_INT(crit, 1);
    BASIC_CONSTRAINTS_free(bc);
    CHECK_INT(X509_check_ca(x), 0);

    /* keyUsage critical: digitalSignature, + keyEncipherment for RSA only. */
    CHECK_INT(ext_critical(x, NID_key_usage), 1);
    ASN1_BIT_STRING *ku = X509_get_ext_d2i(x, NID_key_usage, &crit, NULL);
    CHECK(ku != NULL && ASN1_BIT_STRING_get_bit(ku, 0));
    CHECK(ku != NULL && ASN1_BIT_STRING_get_bit(ku, 2) == (e->rsa ? 1 : 0));
    for (int bit = 1; ku != NULL && bit < 9; bit++) {
        if (bit != 2) {
            CHECK(!ASN1_BIT_STRING_get_bit(ku, bit));
        }
    }
    ASN1_BIT_STRING_free(ku);
    CHECK_INT(X509_get_key_usage(x),
              e->rsa ? (KU_DIGITAL_SIGNATURE | KU_KEY_ENCIPHERMENT) : KU_DIGITAL_SIGNATURE);

    /* extKeyUsage serverAuth + clientAuth, exactly two, non-critical. */
    CHECK_INT(ext_critical(x, NID_ext_key_usage), 0);
    EXTENDED_KEY_USAGE *eku = X509_get_ext_d2i(x, NID_ext_key_usage, &crit, NULL);
    CHECK(eku != NULL && sk_ASN1_OBJECT_num(eku) == 2);
    CHECK(eku != NULL && OBJ_obj2nid(sk_ASN1_OBJECT_value(eku, 0)) == NID_server_auth);
    CHECK(eku != NULL && OBJ_obj2nid(sk_ASN1_OBJECT_value(eku, 1)) == NID_client_auth);
    sk_ASN1_OBJECT_pop_free(eku, ASN1_OBJECT_free);
    CHECK_INT(X509_get_extended_key_usage(x), XKU_SSL_SERVER | XKU_SSL_CLIENT);

    /* SKID = SHA-1 of the subjectPublicKey bits (RFC 5280 §4.2.1.2 (1)), non-critical. */
    CHECK_INT(ext_critical(x, NID_subject_key_identifier), 0);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    CHECK(X509_pubkey_digest(x, EVP_sha1(), md, &mdlen) == 1 && mdlen == 20);
    const ASN1_OCTET_STRING *skid = X509_get0_subject_key_id(x);
    CHECK(skid != NULL && ASN1_STRING_length(skid) == 20 &&
          memcmp(ASN1_STRING_get0_data(skid), md, 20) == 0);
    /* AKID = CA SKID, keyIdentifier only, non-critical. */
    CHECK_INT(ext_critical(x, NID_authority_key_identifier), 0);
    CHECK(ASN1_OCTET_STRING_cmp(X509_get0_authority_key_id(x), X509_get0_subject_key_id(cax)) == 0);
    CHECK(X509_get0_authority_issuer(x) == NULL && X509_get0_authority_serial(x) == NULL);

    /* The CSR's key, bit for bit. */
    if (key != NULL) {
        CHECK_INT(EVP_PKEY_eq(X509_get0_pubkey(x), key), 1);
        unsigned char *a = NULL;
        unsigned char *b = NULL;
        int alen = i2d_PUBKEY(key, &a);
        int blen = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(x), &b);
        CHECK(alen > 0 && alen == blen && memcmp(a, b, (size_t)alen) == 0);
        OPENSSL_free(a);
        OPENSSL_free(b);
    }

    /* SHA-256 ECDSA by the CA; chains for both TLS purposes. */
    CHECK_INT(X509_get_signature_nid(x), NID_ecdsa_with_SHA256);
    CHECK_INT(X509_verify(x, X509_get0_pubkey(cax)), 1);
    bool valid_now = e->not_before <= as_now() && as_now() < e->not_after;
    if (valid_now) {
        CHECK_INT(verify_chain(cax, x, X509_PURPOSE_SSL_CLIENT, NULL), X509_V_OK);
        CHECK_INT(verify_chain(cax, x, X509_PURPOSE_SSL_SERVER, NULL), X509_V_OK);
    }
    ERR_clear_error();
    X509_free(x);
    X509_free(cax);
}

static struct as_leaf *must_issue(const struct as_ca *ca, const struct as_csr *csr,
                                  const struct as_leaf_req *req)
{
    struct as_leaf *leaf = NULL;
    enum as_err r = as_ca_issue_svid(ca, csr, req, &leaf);
    CHECK_INT(r, AS_OK);
    CHECK(leaf != NULL);
    if (leaf == NULL) {
        fprintf(stderr, "issuance failed (%s), stopping\n", as_strerror(r));
        exit(1);
    }
    return leaf;
}

/* ---- tests ---- */

static void test_csr_accepted(void)
{
    struct as_ca *ca = must_generate(DAY);
    struct as_ca *other = must_generate(DAY);
    X509 *otherx = ca_x509(other);
    static const struct {
        const char *type;
        const char *curve;
        size_t bits;
        bool rsa;
    } keys[] = {
        {"EC", "P-256", 0, false},
        {"EC", "P-384", 0, false},
        {"RSA", NULL, 2048, true},
        {"RSA", NULL, 3072, true},
    };
    const char *dns[] = {"web.example.org", "Web-2.prod.example.org"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        EVP_PKEY *key = keys[i].rsa ? key_rsa(keys[i].bits) : key_ec(keys[i].curve);
        char *pem = make_csr(key, NULL);
        struct as_csr *csr = NULL;
        char why[128] = "";
        CHECK_INT(as_csr_parse(pem, strlen(pem), &csr, why, sizeof why), AS_OK);
        CHECK(csr != NULL);
        CHECK_STR(why, "");
        if (csr == NULL) {
            fprintf(stderr, "%s key %zu refused: %s\n", keys[i].type, i, why);
            EVP_PKEY_free(key);
            free(pem);
            continue;
        }
        int64_t now = as_now();
        struct as_leaf_req req = {ID, dns, 2, now - 10, now + HOUR};
        struct as_leaf *leaf = must_issue(ca, csr, &req);
        struct expect e = {ID, dns, 2, now - 10, now + HOUR, keys[i].rsa};
        check_profile(ca, leaf, key, &e);
        CHECK(leaf->key_pem == NULL);

        /* Negative twin: another CA of the same trust domain does not anchor it. */
        X509 *x = x509_from_pem(leaf->cert_pem);
        CHECK_INT(verify_chain(otherx, x, X509_PURPOSE_SSL_CLIENT, NULL),
                  X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);
        X509_free(x);

        /* Without DNS names: the SAN holds the URI alone. */
        struct as_leaf_req bare = {ID, NULL, 0, now - 10, now + HOUR};
        struct as_leaf *leaf2 = must_issue(ca, csr, &bare);
        struct expect e2 = {ID, NULL, 0, now - 10, now + HOUR, keys[i].rsa};
        check_profile(ca, leaf2, key, &e2);
        /* Two issuances from one CSR: distinct serials and signatures, the same SKID. */
        CHECK(strcmp(leaf->serial, leaf2->serial) != 0);
        as_leaf_free(leaf2);
        as_leaf_free(leaf);
        as_csr_free(csr);
        EVP_PKEY_free(key);
        free(pem);
    }
    X509_free(otherx);
    as_ca_free(other);
    as_ca_free(ca);
}

struct refusal {
    const char *name;
    char *pem;
    size_t len;
    enum as_err err;
    const char *why;
};

static void test_csr_refused(void)
{
    EVP_PKEY *rsa1024 = key_rsa(1024);
    EVP_PKEY *p192 = key_ec("prime192v1");
    EVP_PKEY *ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    EVP_PKEY *p256 = key_ec("P-256");
    EVP_PKEY *p256c = key_ec("P-256");
    EVP_PKEY *k1 = key_ec("secp256k1");
    EVP_PKEY *rsa_e3 = key_rsa_e(3);
    CHECK(rsa_e3 != NULL);
    CHECK(rsa1024 != NULL && p192 != NULL && ed != NULL && p256 != NULL && p256c != NULL);
    struct as_ca *ca = must_generate(DAY);

    char *good = make_csr(p256, NULL);
    size_t good_len = strlen(good);
    char *trunc = strndup(good, good_len / 2);
    char *no_end = strndup(good, good_len - strlen("-----END CERTIFICATE REQUEST-----\n"));
    struct csr_opts sha1 = {NULL, NULL, false, "SHA1", false};
    struct csr_opts ed_opts = {NULL, NULL, false, "", false};
    struct csr_opts comp = {NULL, NULL, false, NULL, true};
    char *big = malloc(AS_MAX_CSR_BYTES + 2);
    memset(big, 'A', AS_MAX_CSR_BYTES + 1);
    big[AS_MAX_CSR_BYTES + 1] = '\0';
    /* An "encrypted" PEM must fail without a passphrase prompt. */
    char *enc = NULL;
    {
        BIO *in = BIO_new_mem_buf(good, -1);
        X509_REQ *req = PEM_read_bio_X509_REQ(in, NULL, NULL, NULL);
        unsigned char *der = NULL;
        int n = i2d_X509_REQ(req, &der);
        BIO *out = BIO_new(BIO_s_mem());
        PEM_write_bio(
            out, "CERTIFICATE REQUEST",
            "Proc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00112233445566778899AABBCCDDEEFF\n", der,
            n);
        enc = bio_string(out);
        BIO_free(out);
        BIO_free(in);
        X509_REQ_free(req);
        OPENSSL_free(der);
    }
    struct refusal cases[] = {
        {"RSA-1024", make_csr(rsa1024, NULL), 0, AS_ERR_INVALID,
         "RSA key of 1024 bits is too small"},
        {"RSA-2048 with e = 3", make_csr(rsa_e3, NULL), 0, AS_ERR_INVALID,
         "RSA public exponent must be odd"},
        {"P-192", make_csr(p192, NULL), 0, AS_ERR_INVALID, "EC curve prime192v1 is not allowed"},
        {"secp256k1", make_csr(k1, NULL), 0, AS_ERR_INVALID, "EC curve secp256k1 is not allowed"},
        {"Ed25519", make_csr(ed, &ed_opts), 0, AS_ERR_INVALID, "key type ED25519 is not allowed"},
        {"garbage", strdup("hello, I am not a CSR\n"), 0, AS_ERR_INVALID,
         "not a PEM certificate request"},
        {"truncated", trunc, 0, AS_ERR_INVALID, "not a PEM certificate request"},
        {"no END line", no_end, 0, AS_ERR_INVALID, "not a PEM certificate request"},
        {"tampered", tamper_csr(good), 0, AS_ERR_INVALID, "CSR signature does not verify"},
        {"SHA-1 signed", make_csr(p256, &sha1), 0, AS_ERR_INVALID,
         "signature algorithm is not allowed"},
        {"compressed point", make_csr(p256c, &comp), 0, AS_ERR_INVALID, "uncompressed point"},
        {"empty", strdup(""), 0, AS_ERR_INVALID, "CSR is empty"},
        {"a certificate, not a CSR", strdup(as_ca_cert_pem(ca)), 0, AS_ERR_INVALID,
         "not a PEM certificate request"},
        {"encrypted", enc, 0, AS_ERR_INVALID, "not a PEM certificate request"},
        {"oversize", big, 0, AS_ERR_TOO_LARGE, "larger than 65536 bytes"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct as_csr *csr = (struct as_csr *)cases; /* a sentinel: must become NULL */
        char why[128] = "";
        size_t len = cases[i].len > 0 ? cases[i].len : strlen(cases[i].pem);
        enum as_err r = as_csr_parse(cases[i].pem, len, &csr, why, sizeof why);
        bool ok = r == cases[i].err && csr == NULL && strstr(why, cases[i].why) != NULL;
        if (!ok) {
            fprintf(stderr, "%s: got %s \"%s\", expected \"%s\"\n", cases[i].name, as_strerror(r),
                    why, cases[i].why);
        }
        CHECK(ok);
        if (csr != (struct as_csr *)cases) {
            as_csr_free(csr);
        }
        CHECK(ERR_peek_error() == 0);
        free(cases[i].pem);
    }
    /* Positive twins: the untampered CSR parses; so does an exact-length slice of a longer
     * buffer (len, not a NUL, bounds the input); SHA-384 and SHA-512 signatures are fine. */
    struct as_csr *csr = NULL;
    char why[128];
    CHECK_INT(as_csr_parse(good, good_len, &csr, why, sizeof why), AS_OK);
    as_csr_free(csr);
    char *two = malloc(2 * good_len + 1);
    memcpy(two, good, good_len);
    memcpy(two + good_len, "garbage after the CSR", 22);
    CHECK_INT(as_csr_parse(two, good_len, &csr, why, sizeof why), AS_OK);
    as_csr_free(csr);
    free(two);
    static const char *mds[] = {"SHA384", "SHA512"};
    for (size_t i = 0; i < 2; i++) {
        struct csr_opts o = {NULL, NULL, false, mds[i], false};
        char *pem = make_csr(p256, &o);
        CHECK_INT(as_csr_parse(pem, strlen(pem), &csr, why, sizeof why), AS_OK);
        as_csr_free(csr);
        free(pem);
    }
    /* A CSR exactly at the cap is not refused for its size (it is padded after the END line). */
    char *at_cap = malloc(AS_MAX_CSR_BYTES + 1);
    memset(at_cap, '\n', AS_MAX_CSR_BYTES);
    memcpy(at_cap, good, good_len);
    at_cap[AS_MAX_CSR_BYTES] = '\0';
    CHECK_INT(as_csr_parse(at_cap, AS_MAX_CSR_BYTES, &csr, why, sizeof why), AS_OK);
    as_csr_free(csr);
    free(at_cap);
    /* NULL input and NULL why. */
    CHECK_INT(as_csr_parse(NULL, 10, &csr, why, sizeof why), AS_ERR_INVALID);
    CHECK(csr == NULL);
    CHECK_INT(as_csr_parse("x", 1, &csr, NULL, 0), AS_ERR_INVALID);
    as_csr_free(NULL);

    free(good);
    as_ca_free(ca);
    EVP_PKEY_free(rsa1024);
    EVP_PKEY_free(p192);
    EVP_PKEY_free(ed);
    EVP_PKEY_free(p256);
    EVP_PKEY_free(p256c);
    EVP_PKEY_free(k1);
    EVP_PKEY_free(rsa_e3);
}

/* A CSR that asks for another identity, a DNS name and CA:TRUE gets none of it. */
static void test_csr_requests_ignored(void)
{
    struct as_ca *ca = must_generate(DAY);
    EVP_PKEY *key = key_ec("P-256");
    struct csr_opts greedy = {"spiffe://example.org/admin", "evil.example.com", true, NULL, false};
    char *pem = make_csr(key, &greedy);
    struct as_csr *csr = NULL;
    char why[128];
    CHECK_INT(as_csr_parse(pem, strlen(pem), &csr, why, sizeof why), AS_OK);
    int64_t now = as_now();
    struct as_leaf_req req = {ID, NULL, 0, now - 10, now + HOUR};
    struct as_leaf *leaf = must_issue(ca, csr, &req);
    struct expect e = {ID, NULL, 0, now - 10, now + HOUR, false};
    check_profile(ca, leaf, key, &e);
    X509 *x = x509_from_pem(leaf->cert_pem);
    CHECK(X509_check_host(x, "evil.example.com", 0, 0, NULL) != 1);
    CHECK(strstr(leaf->cert_pem, "admin") == NULL);
    BASIC_CONSTRAINTS *bc = X509_get_ext_d2i(x, NID_basic_constraints, NULL, NULL);
    CHECK(bc != NULL && !bc->ca);
    BASIC_CONSTRAINTS_free(bc);
    CHECK_INT(X509_NAME_entry_count(X509_get_subject_name(x)), 0);
    /* Negative twin: the CSR itself does carry those requests. */
    BIO *b = BIO_new_mem_buf(pem, -1);
    X509_REQ *r = PEM_read_bio_X509_REQ(b, NULL, NULL, NULL);
    STACK_OF(X509_EXTENSION) *exts = X509_REQ_get_extensions(r);
    CHECK_INT(sk_X509_EXTENSION_num(exts), 2);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    X509_REQ_free(r);
    BIO_free(b);
    X509_free(x);
    as_leaf_free(leaf);
    as_csr_free(csr);
    free(pem);
    EVP_PKEY_free(key);
    as_ca_free(ca);
}

static int cli_verify(const char *dir, const char *ca_file, const char *purpose)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, OPENSSL_CLI " verify -CAfile %s/%s -purpose %s %s/leaf.pem", dir,
             ca_file, purpose, dir);
    return run(cmd);
}

/* Cross-check with the real CLI: what OpenSSL's library accepts, its tool accepts too. */
static void test_cli_verify(void)
{
    if (!have_cli()) {
        printf("skipped: %s is missing, no cross-check with the openssl CLI\n", OPENSSL_CLI);
        return;
    }
    char dir[64];
    make_dir(dir, sizeof dir);
    struct as_ca *ca = must_generate(DAY);
    struct as_ca *other = must_generate(DAY);
    EVP_PKEY *key = key_rsa(2048);
    char *pem = make_csr(key, NULL);
    struct as_csr *csr = NULL;
    char why[128];
    CHECK_INT(as_csr_parse(pem, strlen(pem), &csr, why, sizeof why), AS_OK);
    const char *dns[] = {"api.example.org"};
    int64_t now = as_now();
    struct as_leaf_req req = {ID, dns, 1, now - 10, now + HOUR};
    struct as_leaf *leaf = must_issue(ca, csr, &req);
    spit(dir, "ca.pem", as_ca_cert_pem(ca));
    spit(dir, "other.pem", as_ca_cert_pem(other));
    spit(dir, "leaf.pem", leaf->cert_pem);
    CHECK_INT(cli_verify(dir, "ca.pem", "sslclient"), 0);
    CHECK_INT(cli_verify(dir, "ca.pem", "sslserver"), 0);
    /* Negative twins: another CA, and a purpose the leaf lacks. */
    CHECK(cli_verify(dir, "other.pem", "sslclient") != 0);
    CHECK(cli_verify(dir, "ca.pem", "smimesign") != 0);

    /* The generated-key path, through the CLI too. */
    struct as_leaf *gen = must_issue(ca, NULL, &req);
    spit(dir, "leaf.pem", gen->cert_pem);
    CHECK_INT(cli_verify(dir, "ca.pem", "sslclient"), 0);
    CHECK_INT(cli_verify(dir, "ca.pem", "sslserver"), 0);
    as_leaf_free(gen);

    as_leaf_free(leaf);
    as_csr_free(csr);
    free(pem);
    EVP_PKEY_free(key);
    as_ca_free(other);
    as_ca_free(ca);
    rm_dir(dir);
}

static void test_generated_key(void)
{
    struct as_ca *ca = must_generate(DAY);
    int64_t now = as_now();
    const char *dns[] = {"a.example.org"};
    struct as_leaf_req req = {ID, dns, 1, now - 10, now + HOUR};
    struct as_leaf *leaf = must_issue(ca, NULL, &req);
    struct as_leaf *leaf2 = must_issue(ca, NULL, &req);
    CHECK(leaf->key_pem != NULL &&
          strncmp(leaf->key_pem, "-----BEGIN PRIVATE KEY-----\n", 28) == 0);
    BIO *b = BIO_new_mem_buf(leaf->key_pem, -1);
    EVP_PKEY *key = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
    BIO_free(b);
    CHECK(key != NULL && EVP_PKEY_is_a(key, "EC") && EVP_PKEY_get_bits(key) == 256);
    char group[32] = "";
    CHECK(key != NULL && EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group,
                                                        sizeof group, NULL) == 1);
    CHECK_STR(group, "prime256v1");
    struct expect e = {ID, dns, 1, now - 10, now + HOUR, false};
    check_profile(ca, leaf, key, &e);
    X509 *x = x509_from_pem(leaf->cert_pem);
    X509 *x2 = x509_from_pem(leaf2->cert_pem);
    CHECK_INT(X509_check_private_key(x, key), 1);
    /* Negative twin: each issuance has its own key. */
    CHECK(X509_check_private_key(x2, key) != 1);
    CHECK(strcmp(leaf->key_pem, leaf2->key_pem) != 0);
    ERR_clear_error();
    X509_free(x);
    X509_free(x2);
    EVP_PKEY_free(key);
    as_leaf_free(leaf);
    as_leaf_free(leaf2);
    as_ca_free(ca);
}

static void test_issue_limits(void)
{
    struct as_ca *ca = must_generate(2 * HOUR);
    EVP_PKEY *key = key_ec("P-256");
    char *pem = make_csr(key, NULL);
    struct as_csr *csr = NULL;
    char why[128];
    CHECK_INT(as_csr_parse(pem, strlen(pem), &csr, why, sizeof why), AS_OK);
    int64_t now = as_now();
    int64_t ca_end = as_ca_not_after(ca);

    /* not_after past the CA's notAfter is capped at it. */
    struct as_leaf_req req = {ID, NULL, 0, now - 10, now + 10 * DAY};
    struct as_leaf *leaf = must_issue(ca, csr, &req);
    struct expect e = {ID, NULL, 0, now - 10, ca_end, false};
    check_profile(ca, leaf, key, &e);
    as_leaf_free(leaf);
    /* Positive twin: one second inside the CA's life is kept as asked. */
    req.not_after = ca_end - 1;
    leaf = must_issue(ca, csr, &req);
    CHECK_INT(leaf->not_after, ca_end - 1);
    as_leaf_free(leaf);

    /* Requested times exactly as given, even in the past (the caller decides). */
    struct as_leaf_req past = {ID, NULL, 0, now - 2 * HOUR, now - HOUR};
    leaf = must_issue(ca, csr, &past);
    struct expect ep = {ID, NULL, 0, now - 2 * HOUR, now - HOUR, false};
    check_profile(ca, leaf, key, &ep);
    as_leaf_free(leaf);

    /* Refusals: the output stays NULL. */
    const char *bad_dns[] = {"ok.example.org", "bad_name.example.org"};
    const char *dns_101[101];
    for (size_t i = 0; i < 101; i++) {
        dns_101[i] = "a.example.org";
    }
    struct {
        struct as_leaf_req req;
        enum as_err err;
    } bad[] = {
        {{"spiffe://other.org/web", NULL, 0, now - 10, now + HOUR}, AS_ERR_INVALID},
        {{"spiffe://example.org", NULL, 0, now - 10, now + HOUR}, AS_ERR_INVALID},
        {{"spiffe://example.org/a/../b", NULL, 0, now - 10, now + HOUR}, AS_ERR_INVALID},
        {{NULL, NULL, 0, now - 10, now + HOUR}, AS_ERR_INVALID},
        {{ID, bad_dns, 2, now - 10, now + HOUR}, AS_ERR_INVALID},
        {{ID, NULL, 1, now - 10, now + HOUR}, AS_ERR_INVALID},
        {{ID, dns_101, 101, now - 10, now + HOUR}, AS_ERR_INVALID},
        {{ID, NULL, 0, now + 10, now + 10}, AS_ERR_INVALID},
        {{ID, NULL, 0, now + 10, now}, AS_ERR_INVALID},
        {{ID, NULL, 0, -5, now}, AS_ERR_INVALID},
        /* Starts when the CA has ended: nothing valid can be issued. */
        {{ID, NULL, 0, ca_end, ca_end + HOUR}, AS_ERR_EXPIRED},
        {{ID, NULL, 0, ca_end + 5, ca_end + HOUR}, AS_ERR_EXPIRED},
    };
    as_log_set_level(AS_LOG_ERROR);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct as_leaf *l = (struct as_leaf *)bad; /* sentinel */
        enum as_err r = as_ca_issue_svid(ca, csr, &bad[i].req, &l);
        if (r != bad[i].err) {
            fprintf(stderr, "bad request %zu: got %s\n", i, as_strerror(r));
        }
        CHECK_INT(r, bad[i].err);
        CHECK(l == NULL);
    }
    /* Positive twin of the DNS refusals: 100 names are fine. */
    struct as_leaf_req hundred = {ID, dns_101, 100, now - 10, now + HOUR};
    leaf = NULL;
    CHECK_INT(as_ca_issue_svid(ca, csr, &hundred, &leaf), AS_OK);
    as_leaf_free(leaf);
    CHECK_INT(as_ca_issue_svid(NULL, csr, &hundred, &leaf), AS_ERR_INVALID);
    CHECK_INT(as_ca_issue_svid(ca, csr, NULL, &leaf), AS_ERR_INVALID);
    as_log_set_level(AS_LOG_WARN);
    as_leaf_free(NULL);

    /* Serials never repeat. */
    enum { N = 200 };
    char(*serials)[64] = calloc(N, 64);
    for (size_t i = 0; i < N; i++) {
        struct as_leaf *l = must_issue(ca, csr, &req);
        memcpy(serials[i], l->serial, 64);
        as_leaf_free(l);
    }
    int dups = 0;
    for (size_t i = 0; i < N; i++) {
        for (size_t j = i + 1; j < N; j++) {
            dups += strcmp(serials[i], serials[j]) == 0;
        }
    }
    CHECK_INT(dups, 0);
    free(serials);

    as_csr_free(csr);
    free(pem);
    EVP_PKEY_free(key);
    as_ca_free(ca);
}

static void test_serial_normalize(void)
{
    static const struct {
        const char *in;
        const char *out; /* NULL: refused */
    } cases[] = {
        {"3a:0f:ff", "3a:0f:ff"},
        {"3A:0F:FF", "3a:0f:ff"},
        {"3a-0f-ff", "3a:0f:ff"},
        {"3A0FFF", "3a:0f:ff"},
        {"a0fff", "0a:0f:ff"},
        {"1", "01"},
        {"00", "00"},
        {"00:3a", "3a"},
        {"00-00-3a", "3a"},
        {"0001", "01"},
        {"0102030405060708090a0b0c0d0e0f1011121314",
         "01:02:03:04:05:06:07:08:09:0a:0b:0c:0d:0e:0f:10:11:12:13:14"},
        {"01:02:03:04:05:06:07:08:09:0a:0b:0c:0d:0e:0f:10:11:12:13:14",
         "01:02:03:04:05:06:07:08:09:0a:0b:0c:0d:0e:0f:10:11:12:13:14"},
        /* Refused twins. */
        {"", NULL},
        {"0102030405060708090a0b0c0d0e0f101112131415", NULL},
        {"01:02:03:04:05:06:07:08:09:0a:0b:0c:0d:0e:0f:10:11:12:13:14:15", NULL},
        {"3a:0f-ff", NULL},
        {"3a::0f", NULL},
        {":3a:0f", NULL},
        {"3a:0f:", NULL},
        {"3a:f", NULL},
        {"3a:0g", NULL},
        {"xyz", NULL},
        {"3a 0f", NULL},
        {" 3a0f", NULL},
        {"0x3a0f", NULL},
        {"3a.0f", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[64] = "untouched";
        enum as_err r = as_serial_normalize(cases[i].in, out, sizeof out);
        if (cases[i].out != NULL) {
            CHECK_INT(r, AS_OK);
            CHECK_STR(out, cases[i].out);
        } else {
            if (r != AS_ERR_INVALID) {
                fprintf(stderr, "serial \"%s\" accepted as \"%s\"\n", cases[i].in, out);
            }
            CHECK_INT(r, AS_ERR_INVALID);
        }
    }
    char out[64];
    char small[16];
    CHECK_INT(as_serial_normalize(NULL, out, sizeof out), AS_ERR_INVALID);
    CHECK_INT(as_serial_normalize("3a", small, sizeof small), AS_ERR_INVALID);
    char huge[4096];
    memset(huge, 'a', sizeof huge - 1);
    huge[sizeof huge - 1] = '\0';
    CHECK_INT(as_serial_normalize(huge, out, sizeof out), AS_ERR_INVALID);
}

static int64_t crl_number_of(X509_CRL *crl, int *crit)
{
    ASN1_INTEGER *num = X509_CRL_get_ext_d2i(crl, NID_crl_number, crit, NULL);
    int64_t v = -1;
    if (num == NULL || ASN1_INTEGER_get_int64(&v, num) != 1) {
        v = -1;
    }
    ASN1_INTEGER_free(num);
    return v;
}

static void test_crl(void)
{
    char dir[64];
    make_dir(dir, sizeof dir);
    struct as_ca *ca = must_generate(DAY);
    struct as_ca *other = must_generate(DAY);
    X509 *cax = ca_x509(ca);
    X509 *otherx = ca_x509(other);
    int64_t now = as_now();
    struct as_leaf_req req = {ID, NULL, 0, now - 10, now + HOUR};
    struct as_leaf *leaves[4];
    for (size_t i = 0; i < 4; i++) {
        leaves[i] = must_issue(ca, NULL, &req);
    }
    /* Three revoked (given in upper case with dashes for one), the fourth not. */
    char dashed[64];
    snprintf(dashed, sizeof dashed, "%s", leaves[2]->serial);
    for (char *p = dashed; *p != '\0'; p++) {
        *p = *p == ':' ? '-' : (char)(*p >= 'a' && *p <= 'f' ? *p - 'a' + 'A' : *p);
    }
    struct as_revoked rv[3] = {
        {leaves[0]->serial, now - 300},
        {leaves[1]->serial, now - 200},
        {dashed, now - 100},
    };
    unsigned char *der = NULL;
    size_t der_len = 0;
    char *pem = NULL;
    CHECK_INT(as_ca_crl(ca, rv, 3, now, now + HOUR, 42, &der, &der_len, &pem), AS_OK);
    CHECK(der != NULL && der_len > 0 && pem != NULL);
    if (der == NULL || pem == NULL) {
        goto out;
    }
    CHECK(strncmp(pem, "-----BEGIN X509 CRL-----\n", 25) == 0);
    const unsigned char *p = der;
    X509_CRL *crl = d2i_X509_CRL(NULL, &p, (long)der_len);
    CHECK(crl != NULL && p == der + der_len);
    BIO *b = BIO_new_mem_buf(pem, -1);
    X509_CRL *crl_pem = PEM_read_bio_X509_CRL(b, NULL, NULL, NULL);
    BIO_free(b);
    CHECK(crl_pem != NULL && X509_CRL_cmp(crl, crl_pem) == 0);
    unsigned char *der2 = NULL;
    int der2_len = crl_pem != NULL ? i2d_X509_CRL(crl_pem, &der2) : 0;
    CHECK(der2_len == (int)der_len && memcmp(der, der2, der_len) == 0);
    OPENSSL_free(der2);
    X509_CRL_free(crl_pem);

    CHECK_INT(X509_CRL_get_version(crl), X509_CRL_VERSION_2);
    CHECK(X509_NAME_cmp(X509_CRL_get_issuer(crl), X509_get_subject_name(cax)) == 0);
    CHECK_INT(unix_of(X509_CRL_get0_lastUpdate(crl)), now);
    CHECK_INT(unix_of(X509_CRL_get0_nextUpdate(crl)), now + HOUR);
    CHECK_INT(X509_CRL_get_signature_nid(crl), NID_ecdsa_with_SHA256);
    CHECK_INT(X509_CRL_verify(crl, X509_get0_pubkey(cax)), 1);
    /* Negative twin: another CA's key does not verify it. */
    CHECK(X509_CRL_verify(crl, X509_get0_pubkey(otherx)) != 1);
    ERR_clear_error();
    int crit = -1;
    CHECK_INT(crl_number_of(crl, &crit), 42);
    CHECK_INT(crit, 0);
    AUTHORITY_KEYID *akid = X509_CRL_get_ext_d2i(crl, NID_authority_key_identifier, &crit, NULL);
    CHECK(akid != NULL && ASN1_OCTET_STRING_cmp(akid->keyid, X509_get0_subject_key_id(cax)) == 0);
    CHECK_INT(crit, 0);
    AUTHORITY_KEYID_free(akid);
    CHECK_INT(X509_CRL_get_ext_count(crl), 2);

    STACK_OF(X509_REVOKED) *revs = X509_CRL_get_REVOKED(crl);
    CHECK_INT(sk_X509_REVOKED_num(revs), 3);
    for (size_t i = 0; i < 3; i++) {
        X509 *lx = x509_from_pem(leaves[i]->cert_pem);
        X509_REVOKED *entry = NULL;
        CHECK_INT(X509_CRL_get0_by_serial(crl, &entry, X509_get0_serialNumber(lx)), 1);
        CHECK(entry != NULL &&
              unix_of(X509_REVOKED_get0_revocationDate(entry)) == rv[i].revoked_at);
        CHECK(entry != NULL && X509_REVOKED_get_ext_count(entry) == 0);
        /* Path validation with the CRL refuses the revoked leaf. */
        CHECK_INT(verify_chain(cax, lx, X509_PURPOSE_SSL_CLIENT, crl), X509_V_ERR_CERT_REVOKED);
        X509_free(lx);
    }
    /* Negative twin: the fourth leaf is not listed and validates with the CRL. */
    X509 *l4 = x509_from_pem(leaves[3]->cert_pem);
    X509_REVOKED *none = NULL;
    CHECK(X509_CRL_get0_by_serial(crl, &none, X509_get0_serialNumber(l4)) != 1);
    CHECK_INT(verify_chain(cax, l4, X509_PURPOSE_SSL_CLIENT, crl), X509_V_OK);
    X509_free(l4);

    if (have_cli()) {
        spit(dir, "ca.pem", as_ca_cert_pem(ca));
        spit(dir, "other.pem", as_ca_cert_pem(other));
        spit(dir, "crl.pem", pem);
        char cmd[512];
        snprintf(cmd, sizeof cmd, OPENSSL_CLI " crl -in %s/crl.pem -CAfile %s/ca.pem -noout", dir,
                 dir);
        CHECK_INT(run(cmd), 0);
        snprintf(cmd, sizeof cmd, OPENSSL_CLI " crl -in %s/crl.pem -CAfile %s/other.pem -noout",
                 dir, dir);
        CHECK(run(cmd) != 0);
    }
    X509_CRL_free(crl);
    free(der);
    free(pem);
    der = NULL;
    pem = NULL;

    /* An empty CRL is fine: no revokedCertificates at all (RFC 5280 §5.1.2.6). */
    CHECK_INT(as_ca_crl(ca, NULL, 0, now, now + HOUR, 0, &der, &der_len, &pem), AS_OK);
    p = der;
    crl = der != NULL ? d2i_X509_CRL(NULL, &p, (long)der_len) : NULL;
    CHECK(crl != NULL && sk_X509_REVOKED_num(X509_CRL_get_REVOKED(crl)) <= 0);
    CHECK(crl != NULL && crl_number_of(crl, NULL) == 0);
    CHECK(crl != NULL && X509_CRL_verify(crl, X509_get0_pubkey(cax)) == 1);
    X509_CRL_free(crl);
    free(der);
    free(pem);

    /* Refusals leave the outputs NULL. */
    struct as_revoked dup[2] = {{leaves[0]->serial, now}, {leaves[0]->serial, now - 1}};
    struct as_revoked bad_serial[1] = {{"zz:01", now}};
    struct as_revoked bad_time[1] = {{"01", -1}};
    struct {
        const struct as_revoked *rv;
        size_t n;
        int64_t this_u;
        int64_t next_u;
        int64_t num;
    } bad[] = {
        {dup, 2, now, now + HOUR, 1},
        {bad_serial, 1, now, now + HOUR, 1},
        {bad_time, 1, now, now + HOUR, 1},
        {NULL, 1, now, now + HOUR, 1},
        {rv, 3, now, now, 1},
        {rv, 3, now, now - 1, 1},
        {rv, 3, now, now + HOUR, -1},
        {rv, 3, -1, now + HOUR, 1},
    };
    as_log_set_level(AS_LOG_ERROR);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        der = (unsigned char *)"x";
        pem = (char *)"x";
        CHECK_INT(as_ca_crl(ca, bad[i].rv, bad[i].n, bad[i].this_u, bad[i].next_u, bad[i].num, &der,
                            &der_len, &pem),
                  AS_ERR_INVALID);
        CHECK(der == NULL && pem == NULL);
    }
    as_log_set_level(AS_LOG_WARN);
    der = NULL;
    pem = NULL;
out:
    free(der);
    free(pem);
    for (size_t i = 0; i < 4; i++) {
        as_leaf_free(leaves[i]);
    }
    X509_free(cax);
    X509_free(otherx);
    as_ca_free(ca);
    as_ca_free(other);
    rm_dir(dir);
}

/* Decodes base64url without padding; the length, or -1. */
static int b64url_decode(const char *in, unsigned char *out, size_t outlen)
{
    size_t n = strlen(in);
    if (n % 4 == 1 || n + 4 > 256) {
        return -1;
    }
    char buf[260];
    for (size_t i = 0; i < n; i++) {
        buf[i] = in[i] == '-' ? '+' : in[i] == '_' ? '/' : in[i];
        if (in[i] == '=' || in[i] == '+' || in[i] == '/') {
            return -1;
        }
    }
    size_t pad = (4 - n % 4) % 4;
    memset(buf + n, '=', pad);
    unsigned char tmp[200];
    int len = EVP_DecodeBlock(tmp, (const unsigned char *)buf, (int)(n + pad));
    if (len < 0) {
        return -1;
    }
    len -= (int)pad;
    if ((size_t)len > outlen) {
        return -1;
    }
    memcpy(out, tmp, (size_t)len);
    return len;
}

static void test_ca_generations(void)
{
    char dir[64];
    make_dir(dir, sizeof dir);
    int64_t before = as_now();
    struct as_ca *g1 = must_generate(30LL * DAY);
    struct as_ca *g2 = must_generate(30LL * DAY);
    int64_t after = as_now();
    CHECK(strcmp(as_ca_subject(g1), as_ca_subject(g2)) != 0);
    CHECK(strstr(as_ca_subject(g1), "CN=authsvc CA " TD " ") != NULL);
    CHECK(strstr(as_ca_subject(g1), "O=" TD) != NULL);
    CHECK(as_ca_not_before(g1) >= before - 10 && as_ca_not_before(g1) <= after - 10);
    CHECK(as_ca_not_after(g1) >= before + 30LL * DAY && as_ca_not_after(g1) <= after + 30LL * DAY);
    X509 *x1 = ca_x509(g1);
    X509 *x2 = ca_x509(g2);
    CHECK(X509_NAME_cmp(X509_get_subject_name(x1), X509_get_subject_name(x2)) != 0);
    CHECK_INT(X509_check_ca(x1), 1);

    /* Round trip: save, load, identical; the key file is private. Nothing else in the dir. */
    CHECK_INT(as_ca_save(g1, dir, "gen-1"), AS_OK);
    CHECK_INT(as_ca_save(g2, dir, "gen-2"), AS_OK);
    CHECK_INT(mode_of(dir, "gen-1-key.pem"), 0600);
    CHECK_INT(mode_of(dir, "gen-1.pem"), 0644);
    struct as_ca *l1 = NULL;
    CHECK_INT(as_ca_load(dir, "gen-1", TD, &l1), AS_OK);
    CHECK(l1 != NULL);
    if (l1 != NULL) {
        size_t a_len = 0;
        size_t b_len = 0;
        const unsigned char *a = as_ca_cert_der(g1, &a_len);
        const unsigned char *bb = as_ca_cert_der(l1, &b_len);
        CHECK(a_len == b_len && memcmp(a, bb, a_len) == 0);
        CHECK_STR(as_ca_subject(l1), as_ca_subject(g1));
        CHECK_INT(as_ca_not_before(l1), as_ca_not_before(g1));
        CHECK_INT(as_ca_not_after(l1), as_ca_not_after(g1));
        /* A leaf issued by the loaded generation chains to the saved certificate. */
        int64_t now = as_now();
        struct as_leaf_req req = {ID, NULL, 0, now - 10, now + HOUR};
        struct as_leaf *leaf = must_issue(l1, NULL, &req);
        X509 *lx = x509_from_pem(leaf->cert_pem);
        CHECK_INT(verify_chain(x1, lx, X509_PURPOSE_SSL_CLIENT, NULL), X509_V_OK);
        /* Negative twin: not to the other generation. */
        CHECK(verify_chain(x2, lx, X509_PURPOSE_SSL_CLIENT, NULL) != X509_V_OK);
        X509_free(lx);
        as_leaf_free(leaf);
    }
    struct as_ca *l2 = NULL;
    CHECK_INT(as_ca_load(dir, "gen-2", TD, &l2), AS_OK);
    CHECK(l2 != NULL && strcmp(as_ca_subject(l2), as_ca_subject(g2)) == 0);
    as_ca_free(l2);

    /* The first generation of as_ca_load_or_create is base "ca" and loads the same way. */
    char dir2[64];
    make_dir(dir2, sizeof dir2);
    struct as_ca *first = NULL;
    bool created = false;
    as_log_set_level(AS_LOG_WARN);
    CHECK_INT(as_ca_load_or_create(dir2, TD, DAY, &first, &created), AS_OK);
    CHECK(created);
    struct as_ca *first_again = NULL;
    CHECK_INT(as_ca_load(dir2, "ca", TD, &first_again), AS_OK);
    CHECK(first != NULL && first_again != NULL &&
          strcmp(as_ca_cert_pem(first), as_ca_cert_pem(first_again)) == 0);
    as_ca_free(first);
    as_ca_free(first_again);
    rm_dir(dir2);

    /* Refusals: another trust domain, a missing generation, half a pair, bad base names. */
    as_log_set_level((enum as_log_level)(AS_LOG_ERROR + 1)); /* silence the expected refusals */
    struct as_ca *bad = (struct as_ca *)dir;
    CHECK_INT(as_ca_load(dir, "gen-1", "other.org", &bad), AS_ERR_CONFIG);
    CHECK(bad == NULL);
    CHECK_INT(as_ca_load(dir, "gen-3", TD, &bad), AS_ERR_NOT_FOUND);
    CHECK(bad == NULL);
    char p[256];
    snprintf(p, sizeof p, "%s/gen-2.pem", dir);
    CHECK_INT(unlink(p), 0);
    CHECK_INT(as_ca_load(dir, "gen-2", TD, &bad), AS_ERR_CONFIG);
    CHECK(bad == NULL);
    snprintf(p, sizeof p, "%s/gen-1-key.pem", dir);
    CHECK_INT(chmod(p, 0644), 0);
    CHECK_INT(as_ca_load(dir, "gen-1", TD, &bad), AS_ERR_CONFIG);
    CHECK_INT(chmod(p, 0600), 0);
    static const char *bad_bases[] = {
        "",        ".",        "..",
        ".hidden", "../gen-1", "a/b",
        "a b",     NULL,       "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"};
    for (size_t i = 0; i < sizeof bad_bases / sizeof bad_bases[0]; i++) {
        CHECK_INT(as_ca_load(dir, bad_bases[i], TD, &bad), AS_ERR_INVALID);
        CHECK_INT(as_ca_save(g1, dir, bad_bases[i]), AS_ERR_INVALID);
    }
    CHECK_INT(as_ca_save(g1, "/nonexistent/dir", "gen-9"), AS_ERR_IO);
    CHECK_INT(as_ca_save(NULL, dir, "gen-9"), AS_ERR_INVALID);
    CHECK_INT(as_ca_generate("Bad.TD", DAY, &bad), AS_ERR_CONFIG);
    CHECK(bad == NULL);
    CHECK_INT(as_ca_generate(TD, 0, &bad), AS_ERR_CONFIG);
    as_log_set_level(AS_LOG_WARN);
    /* Positive twin: gen-1 still loads once its key is private again. */
    CHECK_INT(as_ca_load(dir, "gen-1", TD, &bad), AS_OK);
    as_ca_free(bad);

    /* The bundle JWK (SPIFFE Trust Domain and Bundle §4.1). */
    json_t *jwk = as_ca_x509_jwk(g1);
    CHECK(jwk != NULL && json_object_size(jwk) == 6);
    CHECK_STR(json_string_value(json_object_get(jwk, "use")), "x509-svid");
    CHECK_STR(json_string_value(json_object_get(jwk, "kty")), "EC");
    CHECK_STR(json_string_value(json_object_get(jwk, "crv")), "P-256");
    CHECK(json_object_get(jwk, "kid") == NULL);
    EVP_PKEY *pub = X509_get0_pubkey(x1);
    BIGNUM *bx = NULL;
    BIGNUM *by = NULL;
    unsigned char want_x[32];
    unsigned char want_y[32];
    CHECK(EVP_PKEY_get_bn_param(pub, OSSL_PKEY_PARAM_EC_PUB_X, &bx) == 1 &&
          BN_bn2binpad(bx, want_x, 32) == 32);
    CHECK(EVP_PKEY_get_bn_param(pub, OSSL_PKEY_PARAM_EC_PUB_Y, &by) == 1 &&
          BN_bn2binpad(by, want_y, 32) == 32);
    BN_free(bx);
    BN_free(by);
    const char *xs = json_string_value(json_object_get(jwk, "x"));
    const char *ys = json_string_value(json_object_get(jwk, "y"));
    unsigned char got[64];
    CHECK(xs != NULL && strlen(xs) == 43 && b64url_decode(xs, got, sizeof got) == 32 &&
          memcmp(got, want_x, 32) == 0);
    CHECK(ys != NULL && strlen(ys) == 43 && b64url_decode(ys, got, sizeof got) == 32 &&
          memcmp(got, want_y, 32) == 0);
    json_t *x5c = json_object_get(jwk, "x5c");
    CHECK(json_is_array(x5c) && json_array_size(x5c) == 1);
    const char *c = json_string_value(json_array_get(x5c, 0));
    size_t der_len = 0;
    const unsigned char *der = as_ca_cert_der(g1, &der_len);
    CHECK(c != NULL && strlen(c) == 4 * ((der_len + 2) / 3));
    CHECK(c != NULL && strchr(c, '-') == NULL && strchr(c, '_') == NULL && strchr(c, '\n') == NULL);
    if (c != NULL) {
        unsigned char *dec = malloc(strlen(c));
        int n = EVP_DecodeBlock(dec, (const unsigned char *)c, (int)strlen(c));
        /* EVP_DecodeBlock counts the padding as zero bytes. */
        size_t pad = (size_t)(strlen(c) >= 2 && c[strlen(c) - 1] == '=') +
                     (size_t)(strlen(c) >= 2 && c[strlen(c) - 2] == '=');
        CHECK(n >= 0 && (size_t)n - pad == der_len && memcmp(dec, der, der_len) == 0);
        free(dec);
    }
    /* Negative twin: the other generation's JWK differs in x5c and coordinates. */
    json_t *jwk2 = as_ca_x509_jwk(g2);
    CHECK(jwk2 != NULL && !json_equal(jwk, jwk2));
    CHECK(jwk2 != NULL && strcmp(json_string_value(json_object_get(jwk2, "x")), xs) != 0);
    json_decref(jwk);
    json_decref(jwk2);
    CHECK(as_ca_x509_jwk(NULL) == NULL);

    X509_free(x1);
    X509_free(x2);
    as_ca_free(l1);
    as_ca_free(g1);
    as_ca_free(g2);
    rm_dir(dir);
}

/* ---- micro-benchmark (AS_BENCH=1) ---- */

static double mono_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

static void bench(void)
{
    enum { N = 2000 };
    struct as_ca *ca = must_generate(DAY);
    int64_t now = as_now();
    const char *dns[] = {"web.example.org"};
    struct as_leaf_req req = {ID, dns, 1, now - 10, now + HOUR};

    char **pems = calloc(N, sizeof *pems);
    for (size_t i = 0; i < N; i++) {
        EVP_PKEY *k = key_ec("P-256");
        pems[i] = make_csr(k, NULL);
        EVP_PKEY_free(k);
    }
    struct as_csr *csr = NULL;
    char why[128];
    if (as_csr_parse(pems[0], strlen(pems[0]), &csr, why, sizeof why) != AS_OK) {
        fprintf(stderr, "bench: %s\n", why);
        exit(1);
    }
    double t0 = mono_us();
    for (size_t i = 0; i < N; i++) {
        struct as_leaf *l = NULL;
        if (as_ca_issue_svid(ca, csr, &req, &l) != AS_OK) {
            exit(1);
        }
        as_leaf_free(l);
    }
    double one = (mono_us() - t0) / N;

    t0 = mono_us();
    for (size_t i = 0; i < N; i++) {
        struct as_csr *c = NULL;
        if (as_csr_parse(pems[i], strlen(pems[i]), &c, why, sizeof why) != AS_OK) {
            exit(1);
        }
        as_csr_free(c);
    }
    double parse = (mono_us() - t0) / N;

    t0 = mono_us();
    for (size_t i = 0; i < N; i++) {
        struct as_csr *c = NULL;
        struct as_leaf *l = NULL;
        if (as_csr_parse(pems[i], strlen(pems[i]), &c, why, sizeof why) != AS_OK ||
            as_ca_issue_svid(ca, c, &req, &l) != AS_OK) {
            exit(1);
        }
        as_leaf_free(l);
        as_csr_free(c);
    }
    double distinct = (mono_us() - t0) / N;

    enum { NG = 500 };
    t0 = mono_us();
    for (size_t i = 0; i < NG; i++) {
        struct as_leaf *l = NULL;
        if (as_ca_issue_svid(ca, NULL, &req, &l) != AS_OK) {
            exit(1);
        }
        as_leaf_free(l);
    }
    double generated = (mono_us() - t0) / NG;

    printf("bench: issue from one parsed P-256 CSR: %.1f us per SVID (%d)\n", one, N);
    printf("bench: parse + verify of a P-256 CSR alone: %.1f us per CSR (%d)\n", parse, N);
    printf("bench: parse + issue from distinct P-256 CSRs: %.1f us per SVID (%d)\n", distinct, N);
    printf("bench: issue with a server-generated P-256 key: %.1f us per SVID (%d)\n", generated,
           NG);
    for (size_t i = 0; i < N; i++) {
        free(pems[i]);
    }
    free(pems);
    as_csr_free(csr);
    as_ca_free(ca);
}

int main(void)
{
    as_log_set_level(AS_LOG_WARN);
    const char *b = getenv("AS_BENCH");
    if (b != NULL && strcmp(b, "1") == 0) {
        bench();
        return 0;
    }
    test_csr_accepted();
    test_csr_refused();
    test_csr_requests_ignored();
    test_cli_verify();
    test_generated_key();
    test_issue_limits();
    test_serial_normalize();
    test_crl();
    test_ca_generations();
    return check_done();
}
