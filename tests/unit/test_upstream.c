/*
 * Unit tests for pki/upstream.c: an upstream CA above authsvc's CA generations. The upstream
 * PKIs are made here with OpenSSL: a self-signed P-256 root ("A"), a two-level one (RSA-2048 root
 * -> P-256 intermediate, "B"), the RSA root alone ("C", an RSA signing key) and B without its
 * root ("D", an anchor that is not self-signed). Every positive case has a negative twin.
 * Leaves are validated with X509_STORE (the anchor trusted, the intermediates untrusted) and,
 * when /usr/bin/openssl exists, with the CLI. Files live in one mkdtemp directory.
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
#define HOUR 3600
#define DAY (24 * 3600)
#define OPENSSL_CLI "/usr/bin/openssl"

/* ---- files ---- */

static char g_dir[64];

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static void path_of(char *out, size_t len, const char *name)
{
    snprintf(out, len, "%s/%s", g_dir, name);
}

static void spit(const char *name, const char *data, size_t len, mode_t mode)
{
    char p[256];
    path_of(p, sizeof p, name);
    unlink(p);
    int fd = open(p, O_CREAT | O_EXCL | O_WRONLY, 0600);
    if (fd < 0 || write(fd, data, len) != (ssize_t)len || fchmod(fd, mode) != 0) {
        perror(p);
        exit(2);
    }
    close(fd);
}

static void spit_str(const char *name, const char *data, mode_t mode)
{
    spit(name, data, strlen(data), mode);
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return NULL;
    }
    char *buf = calloc(1, 1 << 16);
    size_t n = buf ? fread(buf, 1, (1 << 16) - 1, f) : 0;
    (void)n;
    fclose(f);
    return buf;
}

static bool have_cli(void)
{
    return access(OPENSSL_CLI, X_OK) == 0;
}

static int run(const char *cmd)
{
    char full[1024];
    snprintf(full, sizeof full, "%s >/dev/null 2>&1", cmd);
    int st = system(full);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* ---- capturing the module's log (stderr) ---- */

static int g_saved_stderr = -1;
static char g_log_path[64];

static void capture_start(void)
{
    fflush(stderr);
    snprintf(g_log_path, sizeof g_log_path, "/tmp/test_upstream_log.XXXXXX");
    int fd = mkstemp(g_log_path);
    g_saved_stderr = dup(2);
    if (fd < 0 || g_saved_stderr < 0 || dup2(fd, 2) < 0) {
        perror("capture");
        exit(2);
    }
    close(fd);
}

static char *capture_end(void)
{
    fflush(stderr);
    dup2(g_saved_stderr, 2);
    close(g_saved_stderr);
    g_saved_stderr = -1;
    char *s = slurp(g_log_path);
    unlink(g_log_path);
    return s;
}

static void check_log_has(const char *log, const char *why, int line)
{
    bool found = log != NULL && strstr(log, why) != NULL;
    if (!found) {
        fprintf(stderr, "line %d: log lacks \"%s\": %s\n", line, why, log ? log : "(none)");
    }
    CHECK(found);
}

/* ---- building the upstream PKIs with OpenSSL ---- */

static EVP_PKEY *key_ec(const char *curve)
{
    return EVP_PKEY_Q_keygen(NULL, NULL, "EC", curve);
}

static EVP_PKEY *key_rsa(size_t bits)
{
    return EVP_PKEY_Q_keygen(NULL, NULL, "RSA", bits);
}

struct cert_opts {
    const char *bc;     /* basicConstraints value, NULL to omit */
    const char *ku;     /* keyUsage value, NULL to omit */
    bool skid;          /* add a subjectKeyIdentifier */
    const char *nc;     /* nameConstraints value, NULL to omit */
    int64_t not_after;  /* 0: ten days from now */
    int64_t not_before; /* 0: an hour ago */
};

static const struct cert_opts CA_OPTS = {
    "critical,CA:TRUE", "critical,keyCertSign,cRLSign", true, NULL, 0, 0};

static void add_ext_conf(X509 *x, X509V3_CTX *ctx, int nid, const char *value)
{
    X509_EXTENSION *e = X509V3_EXT_nconf_nid(NULL, ctx, nid, value);
    if (e == NULL || X509_add_ext(x, e, -1) != 1) {
        fprintf(stderr, "cannot add extension %s = %s\n", OBJ_nid2sn(nid), value);
        exit(2);
    }
    X509_EXTENSION_free(e);
}

/* A v3 certificate for key named CN=cn, O=Upstream Test, issued by issuer (NULL: self-signed)
 * and signed with SHA-256 (nothing for Ed25519). */
static X509 *make_cert(const char *cn, EVP_PKEY *key, X509 *issuer, EVP_PKEY *issuer_key,
                       const struct cert_opts *o)
{
    static long serial = 1000;
    int64_t now = as_now();
    X509 *x = X509_new();
    X509_set_version(x, X509_VERSION_3);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"Upstream Test", -1,
                               -1, 0);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, issuer != NULL ? X509_get_subject_name(issuer) : name);
    ASN1_TIME_set(X509_getm_notBefore(x),
                  (time_t)(o->not_before != 0 ? o->not_before : now - HOUR));
    ASN1_TIME_set(X509_getm_notAfter(x),
                  (time_t)(o->not_after != 0 ? o->not_after : now + 10 * DAY));
    X509_set_pubkey(x, key);
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, issuer != NULL ? issuer : x, x, NULL, NULL, 0);
    if (o->bc != NULL) {
        add_ext_conf(x, &ctx, NID_basic_constraints, o->bc);
    }
    if (o->ku != NULL) {
        add_ext_conf(x, &ctx, NID_key_usage, o->ku);
    }
    if (o->skid) {
        add_ext_conf(x, &ctx, NID_subject_key_identifier, "hash");
    }
    if (issuer != NULL && X509_get0_subject_key_id(issuer) != NULL) {
        add_ext_conf(x, &ctx, NID_authority_key_identifier, "keyid:always");
    }
    if (o->nc != NULL) {
        add_ext_conf(x, &ctx, NID_name_constraints, o->nc);
    }
    EVP_PKEY *signer = issuer_key != NULL ? issuer_key : key;
    const EVP_MD *md = EVP_PKEY_is_a(signer, "ED25519") ? NULL : EVP_sha256();
    if (X509_sign(x, signer, md) <= 0) {
        fprintf(stderr, "cannot sign test certificate %s\n", cn);
        exit(2);
    }
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

static char *cert_pem(X509 *x)
{
    BIO *b = BIO_new(BIO_s_mem());
    PEM_write_bio_X509(b, x);
    char *s = bio_string(b);
    BIO_free(b);
    return s;
}

static char *key_pem(EVP_PKEY *k, const char *pass)
{
    BIO *b = BIO_new(BIO_s_mem());
    if (pass != NULL) {
        PEM_write_bio_PrivateKey(b, k, EVP_aes_256_cbc(), (const unsigned char *)pass,
                                 (int)strlen(pass), NULL, NULL);
    } else {
        PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL);
    }
    char *s = bio_string(b);
    BIO_free(b);
    return s;
}

/* Writes name with the PEMs of the given certificates (NULL-terminated) in order, mode 0644. */
static void write_certs(const char *name, X509 *const *certs)
{
    char buf[1 << 15] = "";
    size_t len = 0;
    for (size_t i = 0; certs[i] != NULL; i++) {
        char *p = cert_pem(certs[i]);
        len += (size_t)snprintf(buf + len, sizeof buf - len, "%s", p);
        free(p);
    }
    spit(name, buf, len, 0644);
}

static void write_key(const char *name, EVP_PKEY *k, mode_t mode)
{
    char *p = key_pem(k, NULL);
    spit_str(name, p, mode);
    free(p);
}

static X509 *x509_from_pem(const char *pem)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
    BIO_free(b);
    return x;
}

static X509 *ca_x509(const struct as_ca *ca)
{
    size_t len = 0;
    const unsigned char *der = as_ca_cert_der(ca, &len);
    return d2i_X509(NULL, &der, (long)len);
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

static int count_substr(const char *s, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(s, needle); p != NULL; p = strstr(p + 1, needle)) {
        n++;
    }
    return n;
}

/* ---- the fixtures ---- */

static struct {
    EVP_PKEY *a_key; /* A: self-signed P-256 root, the upstream itself */
    X509 *a;
    EVP_PKEY *rsa_key; /* B's root, RSA-2048, self-signed; alone it is upstream C */
    X509 *rsa_root;
    EVP_PKEY *b_key; /* B: P-256 intermediate under the RSA root */
    X509 *b;
    char *a_pem;
    char *rsa_root_pem;
    char *b_pem;
} g;

static void fixtures_make(void)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/test_upstream.XXXXXX");
    if (mkdtemp(g_dir) == NULL) {
        perror("mkdtemp");
        exit(2);
    }
    g.a_key = key_ec("P-256");
    g.a = make_cert("Upstream Root A", g.a_key, NULL, NULL, &CA_OPTS);
    g.rsa_key = key_rsa(2048);
    g.rsa_root = make_cert("Upstream Root RSA", g.rsa_key, NULL, NULL, &CA_OPTS);
    g.b_key = key_ec("P-256");
    g.b = make_cert("Upstream Intermediate B", g.b_key, g.rsa_root, g.rsa_key, &CA_OPTS);
    g.a_pem = cert_pem(g.a);
    g.rsa_root_pem = cert_pem(g.rsa_root);
    g.b_pem = cert_pem(g.b);
    write_certs("a.pem", (X509 *[]){g.a, NULL});
    write_key("a-key.pem", g.a_key, 0600);
    write_certs("b.pem", (X509 *[]){g.b, g.rsa_root, NULL});
    write_key("b-key.pem", g.b_key, 0600);
    write_certs("c.pem", (X509 *[]){g.rsa_root, NULL});
    write_key("c-key.pem", g.rsa_key, 0600);
    write_certs("d.pem", (X509 *[]){g.b, NULL});
}

static void fixtures_free(void)
{
    EVP_PKEY_free(g.a_key);
    X509_free(g.a);
    EVP_PKEY_free(g.rsa_key);
    X509_free(g.rsa_root);
    EVP_PKEY_free(g.b_key);
    X509_free(g.b);
    free(g.a_pem);
    free(g.rsa_root_pem);
    free(g.b_pem);
    nftw(g_dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

static enum as_err load(const char *cert, const char *key, struct as_upstream **u)
{
    char c[256];
    char k[256];
    path_of(c, sizeof c, cert);
    path_of(k, sizeof k, key);
    return as_upstream_load(c, k, u);
}

static struct as_upstream *must_load(const char *cert, const char *key)
{
    struct as_upstream *u = NULL;
    enum as_err r = load(cert, key, &u);
    CHECK_INT(r, AS_OK);
    if (u == NULL) {
        fprintf(stderr, "cannot load upstream %s/%s, stopping\n", cert, key);
        exit(1);
    }
    return u;
}

/* Loading cert + key fails with AS_ERR_CONFIG, no object, and a log line containing why. */
static void expect_refused(const char *cert, const char *key, const char *why, int line)
{
    static char sentinel;
    struct as_upstream *u = (struct as_upstream *)&sentinel;
    capture_start();
    enum as_err r = load(cert, key, &u);
    char *log = capture_end();
    if (r != AS_ERR_CONFIG) {
        fprintf(stderr, "line %d: expected AS_ERR_CONFIG, got %s\n", line, as_strerror(r));
    }
    CHECK_INT(r, AS_ERR_CONFIG);
    if (u == (struct as_upstream *)&sentinel) {
        CHECK(!"*out was not cleared");
        u = NULL;
    }
    CHECK(u == NULL);
    check_log_has(log, why, line);
    free(log);
    as_upstream_free(u);
}

static struct as_ca *must_generate_under(const struct as_upstream *u, int64_t ttl)
{
    struct as_ca *ca = NULL;
    CHECK_INT(as_ca_generate_under(u, TD, ttl, &ca), AS_OK);
    if (ca == NULL) {
        fprintf(stderr, "cannot generate a CA under an upstream, stopping\n");
        exit(1);
    }
    return ca;
}

/*
 * X509_V_OK when leaf validates up to anchor (the only trusted certificate) with the PEMs of
 * inter (a JSON array, may be NULL) as untrusted intermediates; else the verify error.
 */
static int verify_with(X509 *anchor, const json_t *inter, X509 *leaf, int purpose, X509_CRL *crl,
                       unsigned long flags)
{
    X509_STORE *store = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    STACK_OF(X509) *untrusted = sk_X509_new_null();
    int err = -1;
    for (size_t i = 0; inter != NULL && i < json_array_size(inter); i++) {
        sk_X509_push(untrusted, x509_from_pem(json_string_value(json_array_get(inter, i))));
    }
    if (store != NULL && ctx != NULL && X509_STORE_add_cert(store, anchor) == 1 &&
        (crl == NULL || X509_STORE_add_crl(store, crl) == 1) &&
        X509_STORE_CTX_init(ctx, store, leaf, untrusted) == 1 &&
        X509_STORE_CTX_set_purpose(ctx, purpose) == 1) {
        X509_STORE_CTX_set_flags(ctx, flags | (crl != NULL ? X509_V_FLAG_CRL_CHECK : 0));
        err = X509_verify_cert(ctx) == 1 ? X509_V_OK : X509_STORE_CTX_get_error(ctx);
    }
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    sk_X509_pop_free(untrusted, X509_free);
    ERR_clear_error();
    return err;
}

/* A P-256 CSR as a workload makes it, parsed by pki. */
static struct as_csr *p256_csr(void)
{
    EVP_PKEY *key = key_ec("P-256");
    X509_REQ *req = X509_REQ_new();
    X509_REQ_set_version(req, X509_REQ_VERSION_1);
    X509_NAME_add_entry_by_txt(X509_REQ_get_subject_name(req), "CN", MBSTRING_ASC,
                               (const unsigned char *)"workload", -1, -1, 0);
    X509_REQ_set_pubkey(req, key);
    X509_REQ_sign(req, key, EVP_sha256());
    BIO *b = BIO_new(BIO_s_mem());
    PEM_write_bio_X509_REQ(b, req);
    char *pem = bio_string(b);
    BIO_free(b);
    X509_REQ_free(req);
    EVP_PKEY_free(key);
    struct as_csr *csr = NULL;
    char why[128] = "";
    CHECK_INT(as_csr_parse(pem, strlen(pem), &csr, why, sizeof why), AS_OK);
    free(pem);
    return csr;
}

/* base64url without padding -> bytes; -1 on a bad encoding. */
static int b64url_decode(const char *in, unsigned char *out, size_t outlen)
{
    size_t n = strlen(in);
    if (n % 4 == 1 || n > 4096) {
        return -1;
    }
    char buf[4100];
    for (size_t i = 0; i < n; i++) {
        if (in[i] == '=' || in[i] == '+' || in[i] == '/') {
            return -1;
        }
        buf[i] = in[i] == '-' ? '+' : in[i] == '_' ? '/' : in[i];
    }
    size_t pad = (4 - n % 4) % 4;
    memset(buf + n, '=', pad);
    unsigned char tmp[3100];
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

/* The JWK's x5c[0] is exactly x's DER (standard base64, padded). */
static bool x5c_is(json_t *jwk, X509 *x)
{
    json_t *x5c = json_object_get(jwk, "x5c");
    const char *s = json_string_value(json_array_get(x5c, 0));
    if (json_array_size(x5c) != 1 || s == NULL) {
        return false;
    }
    unsigned char *der = NULL;
    int dlen = i2d_X509(x, &der);
    unsigned char *dec = malloc(strlen(s));
    int n = EVP_DecodeBlock(dec, (const unsigned char *)s, (int)strlen(s));
    size_t pad = strlen(s) >= 2 ? (s[strlen(s) - 1] == '=') + (s[strlen(s) - 2] == '=') : 0;
    bool ok = n >= 0 && n - (int)pad == dlen && memcmp(dec, der, (size_t)dlen) == 0;
    free(dec);
    OPENSSL_free(der);
    return ok;
}

/* The JWK member name decodes to the big-endian value of param of pk (padded to pad bytes). */
static bool bn_member_is(json_t *jwk, const char *member, EVP_PKEY *pk, const char *param, int pad)
{
    const char *s = json_string_value(json_object_get(jwk, member));
    unsigned char got[600];
    unsigned char want[600];
    BIGNUM *bn = NULL;
    if (s == NULL || EVP_PKEY_get_bn_param(pk, param, &bn) != 1) {
        return false;
    }
    int n = b64url_decode(s, got, sizeof got);
    int wn = pad > 0 ? BN_bn2binpad(bn, want, pad) : BN_bn2bin(bn, want);
    BN_free(bn);
    return n > 0 && n == wn && memcmp(got, want, (size_t)n) == 0 && strchr(s, '=') == NULL;
}

/* ---- tests ---- */

static void test_load(void)
{
    /* A: one self-signed P-256 root, which is both the upstream CA and the anchor. */
    struct as_upstream *a = must_load("a.pem", "a-key.pem");
    CHECK_STR(as_upstream_roots_pem(a), g.a_pem);
    CHECK_INT(as_upstream_not_after(a), unix_of(X509_get0_notAfter(g.a)));
    json_t *jwks = as_upstream_x509_jwks(a);
    CHECK(json_is_array(jwks) && json_array_size(jwks) == 1);
    json_t *jwk = json_array_get(jwks, 0);
    CHECK_STR(json_string_value(json_object_get(jwk, "use")), "x509-svid");
    CHECK_STR(json_string_value(json_object_get(jwk, "kty")), "EC");
    CHECK_STR(json_string_value(json_object_get(jwk, "crv")), "P-256");
    CHECK(bn_member_is(jwk, "x", g.a_key, OSSL_PKEY_PARAM_EC_PUB_X, 32));
    CHECK(bn_member_is(jwk, "y", g.a_key, OSSL_PKEY_PARAM_EC_PUB_Y, 32));
    CHECK(x5c_is(jwk, g.a));
    CHECK(json_object_get(jwk, "kid") == NULL && json_object_get(jwk, "d") == NULL);
    CHECK_INT(json_object_size(jwk), 6);
    /* Negative twin: not the RSA root's certificate or key. */
    CHECK(!x5c_is(jwk, g.rsa_root));
    CHECK(!bn_member_is(jwk, "x", g.b_key, OSSL_PKEY_PARAM_EC_PUB_X, 32));
    /* A new array each time: changing one leaves the next untouched. */
    json_array_clear(jwks);
    json_decref(jwks);
    jwks = as_upstream_x509_jwks(a);
    CHECK_INT(json_array_size(jwks), 1);
    json_decref(jwks);

    /* B: intermediate then its RSA root; the anchor is the root, and the bundle entry is RSA. */
    struct as_upstream *b = must_load("b.pem", "b-key.pem");
    CHECK_STR(as_upstream_roots_pem(b), g.rsa_root_pem);
    CHECK(strstr(as_upstream_roots_pem(b), g.b_pem) == NULL);
    int64_t na_b = unix_of(X509_get0_notAfter(g.b));
    int64_t na_root = unix_of(X509_get0_notAfter(g.rsa_root));
    CHECK_INT(as_upstream_not_after(b), na_b < na_root ? na_b : na_root);
    jwks = as_upstream_x509_jwks(b);
    CHECK(json_is_array(jwks) && json_array_size(jwks) == 1);
    jwk = json_array_get(jwks, 0);
    CHECK_STR(json_string_value(json_object_get(jwk, "use")), "x509-svid");
    CHECK_STR(json_string_value(json_object_get(jwk, "kty")), "RSA");
    CHECK_STR(json_string_value(json_object_get(jwk, "e")), "AQAB");
    CHECK(bn_member_is(jwk, "n", g.rsa_key, OSSL_PKEY_PARAM_RSA_N, 0));
    CHECK(bn_member_is(jwk, "e", g.rsa_key, OSSL_PKEY_PARAM_RSA_E, 0));
    CHECK(x5c_is(jwk, g.rsa_root));
    CHECK(json_object_get(jwk, "crv") == NULL && json_object_get(jwk, "x") == NULL);
    CHECK_INT(json_object_size(jwk), 5);
    /* Negative twin: the intermediate is not an anchor. */
    CHECK(!x5c_is(jwk, g.b));
    json_decref(jwks);

    /* D: the intermediate alone; it is then what peers trust, self-signed or not. */
    struct as_upstream *d = must_load("d.pem", "b-key.pem");
    CHECK_STR(as_upstream_roots_pem(d), g.b_pem);
    jwks = as_upstream_x509_jwks(d);
    CHECK(x5c_is(json_array_get(jwks, 0), g.b));
    CHECK_STR(json_string_value(json_object_get(json_array_get(jwks, 0), "crv")), "P-256");
    json_decref(jwks);

    as_upstream_free(a);
    as_upstream_free(b);
    as_upstream_free(d);
    as_upstream_free(NULL);
}

static void test_load_refused(void)
{
    int64_t now = as_now();

    /* Mismatched key: B's key with A's certificate (twin: A's own key loads, test_load). */
    expect_refused("a.pem", "b-key.pem", "does not match", __LINE__);
    /* The chain in the wrong order: the root first does not match the intermediate's key. */
    write_certs("rev.pem", (X509 *[]){g.rsa_root, g.b, NULL});
    expect_refused("rev.pem", "b-key.pem", "does not match", __LINE__);
    /* ... nor, with the root's key, does the intermediate sign the root. */
    expect_refused("rev.pem", "c-key.pem", "is not signed by certificate 2", __LINE__);

    /* Not a CA: CA:FALSE, and no basicConstraints at all. */
    EVP_PKEY *k = key_ec("P-256");
    struct cert_opts leaf = {"critical,CA:FALSE", "critical,digitalSignature", true, NULL, 0, 0};
    X509 *x = make_cert("Not A CA", k, g.a, g.a_key, &leaf);
    write_certs("leaf.pem", (X509 *[]){x, g.a, NULL});
    write_key("k-key.pem", k, 0600);
    expect_refused("leaf.pem", "k-key.pem", "is not a CA", __LINE__);
    X509_free(x);
    struct cert_opts nobc = {NULL, "critical,keyCertSign", true, NULL, 0, 0};
    x = make_cert("No BC", k, g.a, g.a_key, &nobc);
    write_certs("nobc.pem", (X509 *[]){x, g.a, NULL});
    expect_refused("nobc.pem", "k-key.pem", "is not a CA", __LINE__);
    X509_free(x);
    /* A CA whose keyUsage lacks keyCertSign. */
    struct cert_opts noks = {
        "critical,CA:TRUE", "critical,cRLSign,digitalSignature", true, NULL, 0, 0};
    x = make_cert("No keyCertSign", k, g.a, g.a_key, &noks);
    write_certs("noks.pem", (X509 *[]){x, g.a, NULL});
    expect_refused("noks.pem", "k-key.pem", "keyCertSign", __LINE__);
    X509_free(x);
    /* pathLenConstraint 0 leaves no room for our CA; its twin, pathlen 1, loads. */
    struct cert_opts pl0 = CA_OPTS;
    pl0.bc = "critical,CA:TRUE,pathlen:0";
    x = make_cert("Pathlen 0", k, g.a, g.a_key, &pl0);
    write_certs("pl0.pem", (X509 *[]){x, g.a, NULL});
    expect_refused("pl0.pem", "k-key.pem", "pathLenConstraint 0", __LINE__);
    X509_free(x);
    struct cert_opts pl1 = CA_OPTS;
    pl1.bc = "critical,CA:TRUE,pathlen:1";
    x = make_cert("Pathlen 1", k, g.a, g.a_key, &pl1);
    write_certs("pl1.pem", (X509 *[]){x, g.a, NULL});
    struct as_upstream *u = NULL;
    CHECK_INT(load("pl1.pem", "k-key.pem", &u), AS_OK);
    as_upstream_free(u);
    X509_free(x);

    /* Expired, and not yet valid: the upstream CA itself, then its root. */
    struct cert_opts old = CA_OPTS;
    old.not_before = now - 10 * DAY;
    old.not_after = now - DAY;
    x = make_cert("Expired", k, NULL, NULL, &old);
    write_certs("old.pem", (X509 *[]){x, NULL});
    expect_refused("old.pem", "k-key.pem", "has expired", __LINE__);
    X509_free(x);
    struct cert_opts future = CA_OPTS;
    future.not_before = now + DAY;
    x = make_cert("Future", k, NULL, NULL, &future);
    write_certs("future.pem", (X509 *[]){x, NULL});
    expect_refused("future.pem", "k-key.pem", "not valid yet", __LINE__);
    X509_free(x);
    EVP_PKEY *rk = key_ec("P-256");
    X509 *old_root = make_cert("Expired Root", rk, NULL, NULL, &old);
    x = make_cert("Under Expired Root", k, old_root, rk, &CA_OPTS);
    write_certs("oldroot.pem", (X509 *[]){x, old_root, NULL});
    expect_refused("oldroot.pem", "k-key.pem", "certificate 2", __LINE__);
    X509_free(x);
    X509_free(old_root);

    /* A chain whose second certificate did not sign the first: an impostor root with the
     * same name as B's root, without SKID so that only the signature tells them apart. */
    struct cert_opts noskid = CA_OPTS;
    noskid.skid = false;
    X509 *impostor = make_cert("Upstream Root RSA", rk, NULL, NULL, &noskid);
    write_certs("impostor.pem", (X509 *[]){g.b, impostor, NULL});
    expect_refused("impostor.pem", "b-key.pem", "is not signed by certificate 2", __LINE__);
    X509_free(impostor);
    /* ... and A's root after B: another name, another key. */
    write_certs("mixed.pem", (X509 *[]){g.b, g.a, NULL});
    expect_refused("mixed.pem", "b-key.pem", "is not signed by certificate 2", __LINE__);
    EVP_PKEY_free(rk);

    /* The key file readable by group or others; its twin 0600 loads (test_load). */
    write_key("a-key-0644.pem", g.a_key, 0644);
    expect_refused("a.pem", "a-key-0644.pem", "has mode 0644", __LINE__);
    write_key("a-key-0640.pem", g.a_key, 0640);
    expect_refused("a.pem", "a-key-0640.pem", "has mode 0640", __LINE__);
    write_key("a-key-0400.pem", g.a_key, 0400);
    CHECK_INT(load("a.pem", "a-key-0400.pem", &u), AS_OK);
    as_upstream_free(u);

    /* Garbage, truncation, a key in the certificate file, an encrypted key, a missing file, a
     * file over 64 KiB. */
    spit_str("garbage.pem", "this is not a certificate\n", 0644);
    expect_refused("garbage.pem", "a-key.pem", "holds no PEM certificate", __LINE__);
    spit_str("garbage-key.pem", "this is not a key\n", 0600);
    expect_refused("a.pem", "garbage-key.pem", "not an unencrypted PEM private key", __LINE__);
    char trunc[4096];
    snprintf(trunc, sizeof trunc, "%.*s", (int)(strlen(g.a_pem) - 30), g.a_pem);
    spit_str("trunc.pem", trunc, 0644);
    expect_refused("trunc.pem", "a-key.pem", "malformed or truncated", __LINE__);
    char *kp = key_pem(g.a_key, NULL);
    char both[8192];
    snprintf(both, sizeof both, "%s%s", g.a_pem, kp);
    spit_str("withkey.pem", both, 0644);
    expect_refused("withkey.pem", "a-key.pem", "not a plain CERTIFICATE", __LINE__);
    free(kp);
    kp = key_pem(g.a_key, "secret passphrase");
    spit_str("enc-key.pem", kp, 0600);
    expect_refused("a.pem", "enc-key.pem", "not an unencrypted PEM private key", __LINE__);
    free(kp);
    expect_refused("missing.pem", "a-key.pem", "cannot open", __LINE__);
    expect_refused("a.pem", "missing-key.pem", "cannot open", __LINE__);
    size_t big_len = 64 * 1024 + 1;
    char *big = malloc(big_len);
    memset(big, '\n', big_len);
    memcpy(big, g.a_pem, strlen(g.a_pem));
    spit("big.pem", big, big_len, 0644);
    expect_refused("big.pem", "a-key.pem", "larger than", __LINE__);
    /* Its twin: the same certificate padded to exactly 64 KiB loads. */
    spit("big.pem", big, big_len - 1, 0644);
    CHECK_INT(load("big.pem", "a-key.pem", &u), AS_OK);
    as_upstream_free(u);
    free(big);

    /* Keys we neither sign with nor publish: Ed25519, and RSA under 2048 bits. */
    EVP_PKEY *ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    x = make_cert("Ed25519 Root", ed, NULL, NULL, &CA_OPTS);
    write_certs("ed.pem", (X509 *[]){x, NULL});
    write_key("ed-key.pem", ed, 0600);
    expect_refused("ed.pem", "ed-key.pem", "neither RSA nor EC", __LINE__);
    X509_free(x);
    EVP_PKEY_free(ed);
    EVP_PKEY *small = key_rsa(1024);
    x = make_cert("RSA 1024 Root", small, NULL, NULL, &CA_OPTS);
    write_certs("small.pem", (X509 *[]){x, NULL});
    write_key("small-key.pem", small, 0600);
    expect_refused("small.pem", "small-key.pem", "2048 to 16384", __LINE__);
    X509_free(x);
    EVP_PKEY_free(small);

    /* NULL arguments. */
    u = NULL;
    capture_start();
    CHECK_INT(as_upstream_load(NULL, "x", &u), AS_ERR_CONFIG);
    free(capture_end());
    CHECK(u == NULL);

    EVP_PKEY_free(k);
}

/* Profile of a CA generation issued by upstream certificate up (key up_key). */
static void check_under_profile(const struct as_ca *ca, X509 *up, EVP_PKEY *up_key, int sig_nid)
{
    X509 *x = ca_x509(ca);
    CHECK(x != NULL);
    if (x == NULL) {
        return;
    }
    CHECK_INT(X509_get_version(x), X509_VERSION_3);
    /* Issuer = the upstream's subject; never self-issued. */
    CHECK(X509_NAME_cmp(X509_get_issuer_name(x), X509_get_subject_name(up)) == 0);
    CHECK(X509_NAME_cmp(X509_get_issuer_name(x), X509_get_subject_name(x)) != 0);
    CHECK_INT(X509_check_issued(up, x), X509_V_OK);
    /* Signed by the upstream key with SHA-256; not by its own key. */
    CHECK_INT(X509_get_signature_nid(x), sig_nid);
    CHECK_INT(X509_verify(x, up_key), 1);
    CHECK(X509_verify(x, X509_get0_pubkey(x)) != 1);
    ERR_clear_error();
    /* AKID = the upstream's SKID (keyIdentifier only, non-critical); SKID its own. */
    const ASN1_OCTET_STRING *akid = X509_get0_authority_key_id(x);
    const ASN1_OCTET_STRING *up_skid = X509_get0_subject_key_id(up);
    if (up_skid != NULL) {
        CHECK(akid != NULL && ASN1_OCTET_STRING_cmp(akid, up_skid) == 0);
    } else {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int mdlen = 0;
        CHECK(X509_pubkey_digest(up, EVP_sha1(), md, &mdlen) == 1);
        CHECK(akid != NULL && ASN1_STRING_length(akid) == (int)mdlen &&
              memcmp(ASN1_STRING_get0_data(akid), md, mdlen) == 0);
    }
    CHECK(X509_get0_authority_issuer(x) == NULL && X509_get0_authority_serial(x) == NULL);
    CHECK_INT(ext_critical(x, NID_authority_key_identifier), 0);
    CHECK(X509_get0_subject_key_id(x) != NULL &&
          ASN1_OCTET_STRING_cmp(X509_get0_subject_key_id(x), akid) != 0);
    /* basicConstraints critical CA:TRUE without pathlen; keyUsage critical keyCertSign+cRLSign. */
    int crit = -1;
    BASIC_CONSTRAINTS *bc = X509_get_ext_d2i(x, NID_basic_constraints, &crit, NULL);
    CHECK(bc != NULL && bc->ca && bc->pathlen == NULL);
    CHECK_INT(crit, 1);
    BASIC_CONSTRAINTS_free(bc);
    CHECK_INT(ext_critical(x, NID_key_usage), 1);
    CHECK_INT(X509_get_key_usage(x), KU_KEY_CERT_SIGN | KU_CRL_SIGN);
    /* SAN: exactly one URI, spiffe://<td>. */
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, &crit, NULL);
    CHECK(gens != NULL && sk_GENERAL_NAME_num(gens) == 1);
    if (gens != NULL && sk_GENERAL_NAME_num(gens) == 1) {
        const GENERAL_NAME *gn = sk_GENERAL_NAME_value(gens, 0);
        CHECK_INT(gn->type, GEN_URI);
        CHECK(gn->type == GEN_URI &&
              ASN1_STRING_length(gn->d.uniformResourceIdentifier) == (int)strlen("spiffe://" TD) &&
              memcmp(ASN1_STRING_get0_data(gn->d.uniformResourceIdentifier), "spiffe://" TD,
                     strlen("spiffe://" TD)) == 0);
    }
    GENERAL_NAMES_free(gens);
    /* The CA's own key is ECDSA P-256, so its bundle JWK works as for a root. */
    json_t *jwk = as_ca_x509_jwk(ca);
    CHECK(jwk != NULL);
    json_decref(jwk);
    CHECK(strstr(as_ca_subject(ca), "CN=authsvc CA " TD " ") != NULL);
    CHECK(!as_ca_is_root(ca));
    X509_free(x);
}

static void test_generate_under(void)
{
    struct as_upstream *a = must_load("a.pem", "a-key.pem");
    struct as_upstream *b = must_load("b.pem", "b-key.pem");
    struct as_upstream *c = must_load("c.pem", "c-key.pem");

    int64_t before = as_now();
    struct as_ca *ca_a = must_generate_under(a, DAY);
    struct as_ca *ca_a2 = must_generate_under(a, DAY);
    struct as_ca *ca_b = must_generate_under(b, DAY);
    struct as_ca *ca_c = must_generate_under(c, DAY);
    int64_t after = as_now();

    check_under_profile(ca_a, g.a, g.a_key, NID_ecdsa_with_SHA256);
    check_under_profile(ca_b, g.b, g.b_key, NID_ecdsa_with_SHA256);
    /* An RSA upstream key signs sha256WithRSAEncryption. */
    check_under_profile(ca_c, g.rsa_root, g.rsa_key, NID_sha256WithRSAEncryption);
    /* Negative twin: A's generation is not B's. */
    X509 *xa = ca_x509(ca_a);
    CHECK(X509_verify(xa, g.b_key) != 1);
    CHECK(X509_check_issued(g.b, xa) != X509_V_OK);
    ERR_clear_error();
    X509_free(xa);

    /* Distinct subjects for each generation, under the same upstream too. */
    CHECK(strcmp(as_ca_subject(ca_a), as_ca_subject(ca_a2)) != 0);
    CHECK(strcmp(as_ca_subject(ca_a), as_ca_subject(ca_b)) != 0);

    /* notAfter = now + ttl (the upstream lives ten days), notBefore backdated 10 s. */
    CHECK(as_ca_not_after(ca_a) >= before + DAY && as_ca_not_after(ca_a) <= after + DAY);
    CHECK(as_ca_not_before(ca_a) >= before - 10 && as_ca_not_before(ca_a) <= after - 10);
    /* ... capped at the upstream's notAfter when ttl reaches past it. */
    struct as_ca *long_ca = must_generate_under(a, 30LL * DAY);
    CHECK_INT(as_ca_not_after(long_ca), as_upstream_not_after(a));
    CHECK(as_ca_not_after(long_ca) < as_now() + 30LL * DAY);
    as_ca_free(long_ca);

    /* An upstream two hours from expiry caps a day-long CA at two hours. */
    int64_t now = as_now();
    EVP_PKEY *k = key_ec("P-256");
    struct cert_opts soon = CA_OPTS;
    soon.not_after = now + 2 * HOUR;
    X509 *x = make_cert("Expiring Upstream", k, NULL, NULL, &soon);
    write_certs("soon.pem", (X509 *[]){x, NULL});
    write_key("soon-key.pem", k, 0600);
    struct as_upstream *s = must_load("soon.pem", "soon-key.pem");
    CHECK_INT(as_upstream_not_after(s), now + 2 * HOUR);
    struct as_ca *capped = must_generate_under(s, DAY);
    CHECK_INT(as_ca_not_after(capped), now + 2 * HOUR);
    X509 *cx = ca_x509(capped);
    CHECK_INT(unix_of(X509_get0_notAfter(cx)), now + 2 * HOUR);
    X509_free(cx);
    as_ca_free(capped);
    as_upstream_free(s);
    X509_free(x);

    /* An upstream that expires within 60 s loads (it is still valid) but makes no CA. */
    soon.not_after = as_now() + 30;
    x = make_cert("Nearly Expired Upstream", k, NULL, NULL, &soon);
    write_certs("soon.pem", (X509 *[]){x, NULL});
    s = must_load("soon.pem", "soon-key.pem");
    static char sentinel;
    struct as_ca *none = (struct as_ca *)&sentinel;
    capture_start();
    CHECK_INT(as_ca_generate_under(s, TD, DAY, &none), AS_ERR_CONFIG);
    char *log = capture_end();
    CHECK(none == NULL);
    check_log_has(log, "expires in", __LINE__);
    free(log);
    as_upstream_free(s);
    X509_free(x);
    /* Its twin at 120 s makes a CA capped there. */
    soon.not_after = as_now() + 120;
    x = make_cert("Nearly Expired Upstream", k, NULL, NULL, &soon);
    write_certs("soon.pem", (X509 *[]){x, NULL});
    s = must_load("soon.pem", "soon-key.pem");
    capped = must_generate_under(s, DAY);
    CHECK_INT(as_ca_not_after(capped), as_upstream_not_after(s));
    as_ca_free(capped);
    as_upstream_free(s);
    X509_free(x);

    /* An upstream without SKID: the AKID is computed from its key. */
    struct cert_opts noskid = CA_OPTS;
    noskid.skid = false;
    x = make_cert("Upstream Without SKID", k, NULL, NULL, &noskid);
    write_certs("noskid.pem", (X509 *[]){x, NULL});
    s = must_load("noskid.pem", "soon-key.pem");
    capped = must_generate_under(s, DAY);
    check_under_profile(capped, x, k, NID_ecdsa_with_SHA256);
    as_ca_free(capped);
    as_upstream_free(s);
    X509_free(x);

    /* Name constraints of the upstream are honoured: spiffe://example.org is outside
     * ".other.org" and inside "example.org". */
    struct cert_opts nc = CA_OPTS;
    nc.nc = "critical,permitted;URI:.other.org";
    x = make_cert("Constrained Upstream", k, NULL, NULL, &nc);
    write_certs("nc.pem", (X509 *[]){x, NULL});
    s = must_load("nc.pem", "soon-key.pem");
    none = (struct as_ca *)&sentinel;
    capture_start();
    CHECK_INT(as_ca_generate_under(s, TD, DAY, &none), AS_ERR_CONFIG);
    log = capture_end();
    CHECK(none == NULL);
    check_log_has(log, "does not validate up to the upstream trust anchor", __LINE__);
    free(log);
    as_upstream_free(s);
    X509_free(x);
    nc.nc = "critical,permitted;URI:example.org";
    x = make_cert("Constrained Upstream", k, NULL, NULL, &nc);
    write_certs("nc.pem", (X509 *[]){x, NULL});
    s = must_load("nc.pem", "soon-key.pem");
    capped = must_generate_under(s, DAY);
    as_ca_free(capped);
    as_upstream_free(s);
    X509_free(x);
    EVP_PKEY_free(k);

    /* Bad arguments: trust domain, ttl, no upstream. */
    capture_start();
    none = (struct as_ca *)&sentinel;
    CHECK_INT(as_ca_generate_under(a, "Bad..TD", DAY, &none), AS_ERR_CONFIG);
    CHECK(none == NULL);
    CHECK_INT(as_ca_generate_under(a, TD, 0, &none), AS_ERR_CONFIG);
    CHECK_INT(as_ca_generate_under(NULL, TD, DAY, &none), AS_ERR_INVALID);
    free(capture_end());

    as_ca_free(ca_a);
    as_ca_free(ca_a2);
    as_ca_free(ca_b);
    as_ca_free(ca_c);
    as_upstream_free(a);
    as_upstream_free(b);
    as_upstream_free(c);
}

static void test_save_load_under(void)
{
    struct as_upstream *a = must_load("a.pem", "a-key.pem");
    struct as_upstream *b = must_load("b.pem", "b-key.pem");
    struct as_ca *ca = must_generate_under(b, DAY);
    CHECK_INT(as_ca_save(ca, g_dir, "gen-b"), AS_OK);

    struct as_ca *back = NULL;
    CHECK_INT(as_ca_load_under(b, g_dir, "gen-b", TD, &back), AS_OK);
    CHECK(back != NULL);
    if (back != NULL) {
        size_t l1 = 0;
        size_t l2 = 0;
        const unsigned char *d1 = as_ca_cert_der(ca, &l1);
        const unsigned char *d2 = as_ca_cert_der(back, &l2);
        CHECK(l1 == l2 && memcmp(d1, d2, l1) == 0);
        CHECK_STR(as_ca_chain_pem(back), as_ca_chain_pem(ca));
        CHECK(!as_ca_is_root(back));
        json_t *i1 = as_ca_intermediates_json(ca);
        json_t *i2 = as_ca_intermediates_json(back);
        CHECK(json_equal(i1, i2));
        json_decref(i1);
        json_decref(i2);
        CHECK_INT(as_ca_not_after(back), as_ca_not_after(ca));
    }
    as_ca_free(back);

    /* Negative twins: the generation is not A's; nor is it an impostor's that shares B's name
     * (another key, no SKID, so only the signature can tell). */
    static char sentinel;
    back = (struct as_ca *)&sentinel;
    capture_start();
    CHECK_INT(as_ca_load_under(a, g_dir, "gen-b", TD, &back), AS_ERR_CONFIG);
    char *log = capture_end();
    CHECK(back == NULL);
    check_log_has(log, "is not signed by the upstream CA", __LINE__);
    free(log);

    EVP_PKEY *k = key_ec("P-256");
    struct cert_opts noskid = CA_OPTS;
    noskid.skid = false;
    X509 *impostor = make_cert("Upstream Intermediate B", k, g.rsa_root, g.rsa_key, &noskid);
    write_certs("impostor-b.pem", (X509 *[]){impostor, g.rsa_root, NULL});
    write_key("impostor-b-key.pem", k, 0600);
    struct as_upstream *imp = must_load("impostor-b.pem", "impostor-b-key.pem");
    back = (struct as_ca *)&sentinel;
    capture_start();
    CHECK_INT(as_ca_load_under(imp, g_dir, "gen-b", TD, &back), AS_ERR_CONFIG);
    log = capture_end();
    CHECK(back == NULL);
    check_log_has(log, "is not signed by the upstream CA", __LINE__);
    free(log);
    /* The impostor's own generation does load under it, and not under B. */
    struct as_ca *ca_imp = must_generate_under(imp, DAY);
    CHECK_INT(as_ca_save(ca_imp, g_dir, "gen-imp"), AS_OK);
    CHECK_INT(as_ca_load_under(imp, g_dir, "gen-imp", TD, &back), AS_OK);
    as_ca_free(back);
    capture_start();
    CHECK_INT(as_ca_load_under(b, g_dir, "gen-imp", TD, &back), AS_ERR_CONFIG);
    free(capture_end());
    CHECK(back == NULL);
    as_ca_free(ca_imp);
    as_upstream_free(imp);
    X509_free(impostor);
    EVP_PKEY_free(k);

    /* A self-signed generation does not load under an upstream; it does load on its own. */
    struct as_ca *self = NULL;
    CHECK_INT(as_ca_generate(TD, DAY, &self), AS_OK);
    CHECK_INT(as_ca_save(self, g_dir, "gen-self"), AS_OK);
    capture_start();
    CHECK_INT(as_ca_load_under(a, g_dir, "gen-self", TD, &back), AS_ERR_CONFIG);
    free(capture_end());
    CHECK(back == NULL);
    CHECK_INT(as_ca_load(g_dir, "gen-self", TD, &back), AS_OK);
    CHECK(back != NULL && as_ca_is_root(back));
    as_ca_free(back);
    as_ca_free(self);

    /* The checks of as_ca_load still apply: another trust domain, a missing generation. */
    capture_start();
    CHECK_INT(as_ca_load_under(b, g_dir, "gen-b", "other.org", &back), AS_ERR_CONFIG);
    CHECK(as_ca_load_under(b, g_dir, "gen-none", TD, &back) != AS_OK);
    CHECK_INT(as_ca_load_under(NULL, g_dir, "gen-b", TD, &back), AS_ERR_INVALID);
    free(capture_end());
    CHECK(back == NULL);

    /* Without its upstream, as_ca_load still reads the generation, but knows no chain above
     * it: not a root, the chain is the CA alone, and the CA is the one intermediate. */
    CHECK_INT(as_ca_load(g_dir, "gen-b", TD, &back), AS_OK);
    if (back != NULL) {
        CHECK(!as_ca_is_root(back));
        CHECK_STR(as_ca_chain_pem(back), as_ca_cert_pem(back));
        json_t *inter = as_ca_intermediates_json(back);
        CHECK(json_array_size(inter) == 1 &&
              strcmp(json_string_value(json_array_get(inter, 0)), as_ca_cert_pem(back)) == 0);
        json_decref(inter);
    }
    as_ca_free(back);

    as_ca_free(ca);
    as_upstream_free(a);
    as_upstream_free(b);
}

static void test_chain_and_intermediates(void)
{
    /* Self-signed: the chain is the CA, no intermediates, a root. */
    struct as_ca *self = NULL;
    CHECK_INT(as_ca_generate(TD, DAY, &self), AS_OK);
    CHECK_STR(as_ca_chain_pem(self), as_ca_cert_pem(self));
    CHECK(as_ca_is_root(self));
    json_t *inter = as_ca_intermediates_json(self);
    CHECK(json_is_array(inter) && json_array_size(inter) == 0);
    json_decref(inter);

    /* Under A (a root alone): chain = CA + A; intermediates = [CA]. */
    struct as_upstream *a = must_load("a.pem", "a-key.pem");
    struct as_ca *ca_a = must_generate_under(a, DAY);
    char want[16384];
    snprintf(want, sizeof want, "%s%s", as_ca_cert_pem(ca_a), g.a_pem);
    CHECK_STR(as_ca_chain_pem(ca_a), want);
    CHECK(!as_ca_is_root(ca_a));
    inter = as_ca_intermediates_json(ca_a);
    CHECK(json_is_array(inter) && json_array_size(inter) == 1);
    CHECK_STR(json_string_value(json_array_get(inter, 0)), as_ca_cert_pem(ca_a));
    json_decref(inter);

    /* Under B: chain = CA + intermediate + root; intermediates = [CA, intermediate]. */
    struct as_upstream *b = must_load("b.pem", "b-key.pem");
    struct as_ca *ca_b = must_generate_under(b, DAY);
    snprintf(want, sizeof want, "%s%s%s", as_ca_cert_pem(ca_b), g.b_pem, g.rsa_root_pem);
    CHECK_STR(as_ca_chain_pem(ca_b), want);
    CHECK_INT(count_substr(as_ca_chain_pem(ca_b), "-----BEGIN CERTIFICATE-----"), 3);
    inter = as_ca_intermediates_json(ca_b);
    CHECK(json_is_array(inter) && json_array_size(inter) == 2);
    CHECK_STR(json_string_value(json_array_get(inter, 0)), as_ca_cert_pem(ca_b));
    CHECK_STR(json_string_value(json_array_get(inter, 1)), g.b_pem);
    /* Negative twin: the anchor is never among the intermediates. */
    for (size_t i = 0; i < json_array_size(inter); i++) {
        CHECK(strcmp(json_string_value(json_array_get(inter, i)), g.rsa_root_pem) != 0);
    }
    json_decref(inter);

    /* Under D (the intermediate alone, the anchor): intermediates = [CA]. */
    struct as_upstream *d = must_load("d.pem", "b-key.pem");
    struct as_ca *ca_d = must_generate_under(d, DAY);
    snprintf(want, sizeof want, "%s%s", as_ca_cert_pem(ca_d), g.b_pem);
    CHECK_STR(as_ca_chain_pem(ca_d), want);
    inter = as_ca_intermediates_json(ca_d);
    CHECK(json_array_size(inter) == 1);
    json_decref(inter);
    CHECK(as_ca_intermediates_json(NULL) == NULL);

    as_ca_free(self);
    as_ca_free(ca_a);
    as_ca_free(ca_b);
    as_ca_free(ca_d);
    as_upstream_free(a);
    as_upstream_free(b);
    as_upstream_free(d);
}

static int cli_verify(const char *root, const char *untrusted, const char *purpose)
{
    char cmd[768];
    char u[300] = "";
    if (untrusted != NULL) {
        snprintf(u, sizeof u, "-untrusted %s/%s", g_dir, untrusted);
    }
    snprintf(cmd, sizeof cmd, OPENSSL_CLI " verify -CAfile %s/%s %s -purpose %s %s/leaf.pem", g_dir,
             root, u, purpose, g_dir);
    return run(cmd);
}

/* Writes the intermediates of ca as intermediates.pem, the leaf as leaf.pem. */
static void write_leaf_files(const struct as_ca *ca, const char *leaf_pem)
{
    json_t *inter = as_ca_intermediates_json(ca);
    char buf[16384] = "";
    size_t len = 0;
    for (size_t i = 0; i < json_array_size(inter); i++) {
        len += (size_t)snprintf(buf + len, sizeof buf - len, "%s",
                                json_string_value(json_array_get(inter, i)));
    }
    json_decref(inter);
    spit("intermediates.pem", buf, len, 0644);
    spit_str("leaf.pem", leaf_pem, 0644);
}

/* Issues an SVID from a P-256 CSR under ca and validates it up to anchor. */
static void check_issue_under(struct as_upstream *u, X509 *anchor, X509 *wrong_anchor, bool partial)
{
    struct as_ca *ca = must_generate_under(u, DAY);
    struct as_csr *csr = p256_csr();
    int64_t now = as_now();
    const char *dns[] = {"api.example.org"};
    struct as_leaf_req req = {ID, dns, 1, now - 10, now + HOUR};
    struct as_leaf *leaf = NULL;
    CHECK_INT(as_ca_issue_svid(ca, csr, &req, &leaf), AS_OK);
    if (leaf == NULL) {
        goto out;
    }
    X509 *x = x509_from_pem(leaf->cert_pem);
    X509 *cax = ca_x509(ca);
    CHECK(X509_NAME_cmp(X509_get_issuer_name(x), X509_get_subject_name(cax)) == 0);
    CHECK(ASN1_OCTET_STRING_cmp(X509_get0_authority_key_id(x), X509_get0_subject_key_id(cax)) == 0);
    json_t *inter = as_ca_intermediates_json(ca);
    unsigned long fl = partial ? X509_V_FLAG_PARTIAL_CHAIN : 0;
    CHECK_INT(verify_with(anchor, inter, x, X509_PURPOSE_SSL_CLIENT, NULL, fl), X509_V_OK);
    CHECK_INT(verify_with(anchor, inter, x, X509_PURPOSE_SSL_SERVER, NULL, fl), X509_V_OK);
    /* RFC 5280 strictness as OpenSSL checks it (AKID/SKID presence, CA profile). */
    CHECK_INT(
        verify_with(anchor, inter, x, X509_PURPOSE_SSL_CLIENT, NULL, fl | X509_V_FLAG_X509_STRICT),
        X509_V_OK);
    /* Negative twins: without the intermediates, against another anchor, for a purpose the
     * leaf lacks. */
    CHECK(verify_with(anchor, NULL, x, X509_PURPOSE_SSL_CLIENT, NULL, fl) != X509_V_OK);
    CHECK(verify_with(wrong_anchor, inter, x, X509_PURPOSE_SSL_CLIENT, NULL, fl) != X509_V_OK);
    CHECK(verify_with(anchor, inter, x, X509_PURPOSE_SMIME_SIGN, NULL, fl) != X509_V_OK);

    /* The server-generated key path too. */
    struct as_leaf *gen = NULL;
    CHECK_INT(as_ca_issue_svid(ca, NULL, &req, &gen), AS_OK);
    X509 *gx = gen != NULL ? x509_from_pem(gen->cert_pem) : NULL;
    CHECK(gx != NULL &&
          verify_with(anchor, inter, gx, X509_PURPOSE_SSL_SERVER, NULL, fl) == X509_V_OK);
    X509_free(gx);
    as_leaf_free(gen);

    if (have_cli() && !partial) {
        write_leaf_files(ca, leaf->cert_pem);
        char *anchor_pem = cert_pem(anchor);
        char *wrong_pem = cert_pem(wrong_anchor);
        spit_str("root.pem", anchor_pem, 0644);
        spit_str("wrong-root.pem", wrong_pem, 0644);
        free(anchor_pem);
        free(wrong_pem);
        CHECK_INT(cli_verify("root.pem", "intermediates.pem", "sslclient"), 0);
        CHECK_INT(cli_verify("root.pem", "intermediates.pem", "sslserver"), 0);
        CHECK(cli_verify("root.pem", NULL, "sslclient") != 0);
        CHECK(cli_verify("wrong-root.pem", "intermediates.pem", "sslclient") != 0);
        /* The upstream's roots_pem is the file peers put in -CAfile. */
        spit_str("roots.pem", as_upstream_roots_pem(u), 0644);
        CHECK_INT(cli_verify("roots.pem", "intermediates.pem", "sslserver"), 0);
    }
    json_decref(inter);
    X509_free(x);
    X509_free(cax);
out:
    as_leaf_free(leaf);
    as_csr_free(csr);
    as_ca_free(ca);
}

static void test_issue_and_verify(void)
{
    if (!have_cli()) {
        printf("skipped: %s is missing, no cross-check with the openssl CLI\n", OPENSSL_CLI);
    }
    struct as_upstream *a = must_load("a.pem", "a-key.pem");
    struct as_upstream *b = must_load("b.pem", "b-key.pem");
    struct as_upstream *c = must_load("c.pem", "c-key.pem");
    struct as_upstream *d = must_load("d.pem", "b-key.pem");
    check_issue_under(a, g.a, g.rsa_root, false);
    check_issue_under(b, g.rsa_root, g.a, false);
    check_issue_under(c, g.rsa_root, g.a, false);
    /* D's anchor is B's intermediate, trusted as a partial chain. */
    check_issue_under(d, g.b, g.a, true);

    /* A self-signed CA validates with itself as the anchor and no intermediates (twin). */
    struct as_ca *self = NULL;
    CHECK_INT(as_ca_generate(TD, DAY, &self), AS_OK);
    struct as_csr *csr = p256_csr();
    int64_t now = as_now();
    struct as_leaf_req req = {ID, NULL, 0, now - 10, now + HOUR};
    struct as_leaf *leaf = NULL;
    CHECK_INT(as_ca_issue_svid(self, csr, &req, &leaf), AS_OK);
    X509 *x = leaf != NULL ? x509_from_pem(leaf->cert_pem) : NULL;
    X509 *sx = ca_x509(self);
    json_t *inter = as_ca_intermediates_json(self);
    CHECK_INT(verify_with(sx, inter, x, X509_PURPOSE_SSL_CLIENT, NULL, 0), X509_V_OK);
    CHECK(verify_with(g.a, inter, x, X509_PURPOSE_SSL_CLIENT, NULL, 0) != X509_V_OK);
    json_decref(inter);
    X509_free(x);
    X509_free(sx);
    as_leaf_free(leaf);
    as_csr_free(csr);
    as_ca_free(self);

    as_upstream_free(a);
    as_upstream_free(b);
    as_upstream_free(c);
    as_upstream_free(d);
}

static void test_crl_under(void)
{
    struct as_upstream *b = must_load("b.pem", "b-key.pem");
    struct as_ca *ca = must_generate_under(b, DAY);
    int64_t now = as_now();
    struct as_leaf_req req = {ID, NULL, 0, now - 10, now + HOUR};
    struct as_leaf *revoked = NULL;
    struct as_leaf *kept = NULL;
    CHECK_INT(as_ca_issue_svid(ca, NULL, &req, &revoked), AS_OK);
    CHECK_INT(as_ca_issue_svid(ca, NULL, &req, &kept), AS_OK);
    if (revoked == NULL || kept == NULL) {
        goto out;
    }
    struct as_revoked rv = {revoked->serial, now - 5};
    unsigned char *der = NULL;
    size_t der_len = 0;
    char *pem = NULL;
    CHECK_INT(as_ca_crl(ca, &rv, 1, now, now + HOUR, 1, &der, &der_len, &pem), AS_OK);
    const unsigned char *p = der;
    X509_CRL *crl = der != NULL ? d2i_X509_CRL(NULL, &p, (long)der_len) : NULL;
    CHECK(crl != NULL);
    X509 *cax = ca_x509(ca);
    if (crl != NULL) {
        /* Signed by the intermediate's own key, named after it; not by the upstream. */
        CHECK_INT(X509_CRL_verify(crl, X509_get0_pubkey(cax)), 1);
        CHECK(X509_CRL_verify(crl, g.b_key) != 1);
        ERR_clear_error();
        CHECK(X509_NAME_cmp(X509_CRL_get_issuer(crl), X509_get_subject_name(cax)) == 0);
        /* Path validation with the CRL: the revoked leaf fails, the other passes. */
        json_t *inter = as_ca_intermediates_json(ca);
        X509 *rx = x509_from_pem(revoked->cert_pem);
        X509 *kx = x509_from_pem(kept->cert_pem);
        CHECK_INT(verify_with(g.rsa_root, inter, kx, X509_PURPOSE_SSL_CLIENT, crl, 0), X509_V_OK);
        CHECK_INT(verify_with(g.rsa_root, inter, rx, X509_PURPOSE_SSL_CLIENT, crl, 0),
                  X509_V_ERR_CERT_REVOKED);
        X509_free(rx);
        X509_free(kx);
        json_decref(inter);
    }
    X509_CRL_free(crl);
    X509_free(cax);
    free(der);
    free(pem);
out:
    as_leaf_free(revoked);
    as_leaf_free(kept);
    as_ca_free(ca);
    as_upstream_free(b);
}

/* The certificates of a PEM bundle, in order. */
static STACK_OF(X509) * pem_certs(const char *pem)
{
    STACK_OF(X509) *sk = sk_X509_new_null();
    BIO *bio = BIO_new_mem_buf(pem, -1);
    for (X509 *x = PEM_read_bio_X509(bio, NULL, NULL, NULL); x != NULL;
         x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) {
        sk_X509_push(sk, x);
    }
    ERR_clear_error();
    BIO_free(bio);
    return sk;
}

static void check_server_cert(const struct as_ca *ca, X509 *anchor, int want_certs)
{
    const char *names[] = {"localhost", "127.0.0.1"};
    char *cpem = NULL;
    char *kpem = NULL;
    CHECK_INT(as_ca_issue_server_cert(ca, names, 2, HOUR, &cpem, &kpem), AS_OK);
    if (cpem == NULL || kpem == NULL) {
        free(cpem);
        as_free_secret_str(kpem);
        return;
    }
    STACK_OF(X509) *sk = pem_certs(cpem);
    CHECK_INT(sk_X509_num(sk), want_certs);
    /* The leaf first, then what as_ca_intermediates_json lists, never the anchor. */
    json_t *inter = as_ca_intermediates_json(ca);
    CHECK_INT(json_array_size(inter), want_certs - 1);
    for (size_t i = 0; i < json_array_size(inter); i++) {
        X509 *want = x509_from_pem(json_string_value(json_array_get(inter, i)));
        CHECK(X509_cmp(sk_X509_value(sk, (int)i + 1), want) == 0);
        X509_free(want);
    }
    for (int i = 0; i < sk_X509_num(sk); i++) {
        CHECK(X509_cmp(sk_X509_value(sk, i), anchor) != 0);
    }
    X509 *leaf = sk_X509_value(sk, 0);
    CHECK_INT(verify_with(anchor, inter, leaf, X509_PURPOSE_SSL_SERVER, NULL, 0), X509_V_OK);
    CHECK_INT(X509_check_host(leaf, "localhost", 0, 0, NULL), 1);
    CHECK(verify_with(anchor, inter, leaf, X509_PURPOSE_SSL_CLIENT, NULL, 0) != X509_V_OK);
    /* The key is the leaf's. */
    BIO *kb = BIO_new_mem_buf(kpem, -1);
    EVP_PKEY *k = PEM_read_bio_PrivateKey(kb, NULL, NULL, NULL);
    BIO_free(kb);
    CHECK(k != NULL && X509_check_private_key(leaf, k) == 1);
    EVP_PKEY_free(k);
    json_decref(inter);
    sk_X509_pop_free(sk, X509_free);
    free(cpem);
    as_free_secret_str(kpem);
}

static void test_server_cert(void)
{
    struct as_upstream *a = must_load("a.pem", "a-key.pem");
    struct as_upstream *b = must_load("b.pem", "b-key.pem");
    struct as_ca *ca_a = must_generate_under(a, DAY);
    struct as_ca *ca_b = must_generate_under(b, DAY);
    struct as_ca *self = NULL;
    CHECK_INT(as_ca_generate(TD, DAY, &self), AS_OK);
    /* Under B: leaf, CA, B's intermediate. Under A: leaf, CA. Self-signed: the leaf alone. */
    check_server_cert(ca_b, g.rsa_root, 3);
    check_server_cert(ca_a, g.a, 2);
    X509 *sx = ca_x509(self);
    check_server_cert(self, sx, 1);
    X509_free(sx);
    as_ca_free(self);
    as_ca_free(ca_a);
    as_ca_free(ca_b);
    as_upstream_free(a);
    as_upstream_free(b);
}

int main(void)
{
    as_log_set_level(AS_LOG_WARN);
    fixtures_make();
    test_load();
    test_load_refused();
    test_generate_under();
    test_save_load_under();
    test_chain_and_intermediates();
    test_issue_and_verify();
    test_crl_under();
    test_server_cert();
    fixtures_free();
    return check_done();
}
