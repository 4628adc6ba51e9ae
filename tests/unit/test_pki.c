/*
 * Unit tests for pki/: CA bootstrap (create, reload, refusals) and the listener's certificate.
 * Certificates are parsed back with OpenSSL and, when /usr/bin/openssl exists, cross-checked with
 * the real CLI. Every case works in its own mkdtemp directory, removed at the end.
 */
#include <dirent.h>
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
#define DAY (24 * 3600)
#define OPENSSL_CLI "/usr/bin/openssl"

/* ---- file system helpers ---- */

static void make_dir(char *path, size_t len)
{
    snprintf(path, len, "/tmp/test_pki.XXXXXX");
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

static void path_of(char *out, size_t len, const char *dir, const char *name)
{
    snprintf(out, len, "%s/%s", dir, name);
}

/* Mode bits of dir/name, or -1 when it does not exist. */
static int mode_of(const char *dir, const char *name)
{
    char p[256];
    struct stat st;
    path_of(p, sizeof p, dir, name);
    if (stat(p, &st) != 0) {
        return -1;
    }
    return (int)(st.st_mode & 07777);
}

/* Entries in dir besides "." and "..". */
static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        return -1;
    }
    int n = 0;
    for (struct dirent *e = readdir(d); e != NULL; e = readdir(d)) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            n++;
        }
    }
    closedir(d);
    return n;
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

static char *slurp_at(const char *dir, const char *name)
{
    char p[256];
    path_of(p, sizeof p, dir, name);
    return slurp(p);
}

static void spit_at(const char *dir, const char *name, const char *data, mode_t mode)
{
    char p[256];
    path_of(p, sizeof p, dir, name);
    unlink(p);
    int fd = open(p, O_CREAT | O_EXCL | O_WRONLY, mode);
    if (fd < 0 || write(fd, data, strlen(data)) != (ssize_t)strlen(data) || fchmod(fd, mode) != 0) {
        perror(p);
        exit(2);
    }
    close(fd);
}

/* ---- capturing the module's log (stderr) to check that a refusal says why ---- */

static int g_saved_stderr = -1;
static char g_log_path[64];

static void capture_start(void)
{
    fflush(stderr);
    snprintf(g_log_path, sizeof g_log_path, "/tmp/test_pki_log.XXXXXX");
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

/* Loads dir and expects AS_ERR_CONFIG, no CA, and a log line containing why. */
static void expect_config_refusal(const char *dir, const char *td, int64_t ttl, const char *why,
                                  int line)
{
    /* A sentinel, to see that the function clears *out on failure. */
    static char sentinel;
    struct as_ca *ca = (struct as_ca *)&sentinel;
    bool created = true;
    capture_start();
    enum as_err r = as_ca_load_or_create(dir, td, ttl, &ca, &created);
    char *log = capture_end();
    if (ca == (struct as_ca *)&sentinel) {
        CHECK(!"*out was not cleared");
        ca = NULL;
    }
    if (r != AS_ERR_CONFIG || ca != NULL || created) {
        fprintf(stderr, "line %d: expected AS_ERR_CONFIG, got %s\n", line, as_strerror(r));
    }
    CHECK_INT(r, AS_ERR_CONFIG);
    CHECK(ca == NULL);
    CHECK(!created);
    if (why != NULL) {
        bool found = log != NULL && strstr(log, why) != NULL;
        if (!found) {
            fprintf(stderr, "line %d: log lacks \"%s\": %s\n", line, why, log ? log : "(none)");
        }
        CHECK(found);
    }
    free(log);
    as_ca_free(ca);
}

/* ---- certificate helpers ---- */

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

static int64_t unix_of(const ASN1_TIME *t)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    if (ASN1_TIME_to_tm(t, &tm) != 1) {
        return -1;
    }
    return (int64_t)timegm(&tm);
}

/* 1 critical, 0 not, -1 absent. */
static int ext_critical(X509 *x, int nid)
{
    int i = X509_get_ext_by_NID(x, nid, -1);
    if (i < 0) {
        return -1;
    }
    return X509_EXTENSION_get_critical(X509_get_ext(x, i)) ? 1 : 0;
}

/* Copies the first entry of nid in name into out, "" when absent. */
static void name_entry(const X509_NAME *name, int nid, char *out, size_t len)
{
    out[0] = '\0';
    int i = X509_NAME_get_index_by_NID(name, nid, -1);
    if (i < 0) {
        return;
    }
    const ASN1_STRING *s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i));
    snprintf(out, len, "%.*s", ASN1_STRING_length(s), (const char *)ASN1_STRING_get0_data(s));
}

/* RFC 5280 §4.1.2.2: positive, non-zero, and here 128 bits fit in 16 content octets. */
static void check_serial(X509 *x)
{
    const ASN1_INTEGER *serial = X509_get0_serialNumber(x);
    BIGNUM *bn = ASN1_INTEGER_to_BN(serial, NULL);
    CHECK(bn != NULL);
    CHECK(bn != NULL && !BN_is_negative(bn) && !BN_is_zero(bn));
    CHECK(bn != NULL && BN_num_bytes(bn) <= 16);
    /* The DER encoding: tag, length, at most 16 content octets (no 0x00 pad needed). */
    int der_len = i2d_ASN1_INTEGER(serial, NULL);
    CHECK(der_len > 2 && der_len - 2 <= 16);
    CHECK_INT(ASN1_STRING_type(serial), V_ASN1_INTEGER);
    BN_free(bn);
}

static bool is_p256(EVP_PKEY *pk)
{
    char group[64] = "";
    return pk != NULL && EVP_PKEY_is_a(pk, "EC") &&
           EVP_PKEY_get_utf8_string_param(pk, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group,
                                          NULL) == 1 &&
           strcmp(group, "prime256v1") == 0 && EVP_PKEY_get_bits(pk) == 256;
}

/* X509_V_OK when leaf chains to ca_cert under purpose, else the verify error. */
static int verify_leaf(X509 *ca_cert, X509 *leaf, int purpose)
{
    X509_STORE *store = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    int err = -1;
    if (store != NULL && ctx != NULL && X509_STORE_add_cert(store, ca_cert) == 1 &&
        X509_STORE_CTX_init(ctx, store, leaf, NULL) == 1 &&
        X509_STORE_CTX_set_purpose(ctx, purpose) == 1) {
        err = X509_verify_cert(ctx) == 1 ? X509_V_OK : X509_STORE_CTX_get_error(ctx);
    }
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    ERR_clear_error();
    return err;
}

static int count_substr(const char *s, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(s, needle); p != NULL; p = strstr(p + 1, needle)) {
        n++;
    }
    return n;
}

static struct as_ca *must_create(const char *dir, const char *td, int64_t ttl)
{
    struct as_ca *ca = NULL;
    bool created = false;
    enum as_err r = as_ca_load_or_create(dir, td, ttl, &ca, &created);
    CHECK_INT(r, AS_OK);
    CHECK(created);
    if (ca == NULL) {
        fprintf(stderr, "cannot create a CA in %s, stopping\n", dir);
        exit(1);
    }
    return ca;
}

/* ---- tests ---- */

static void test_create_and_reload(void)
{
    char dir[64];
    make_dir(dir, sizeof dir);
    struct as_ca *ca = must_create(dir, TD, DAY);

    CHECK_INT(mode_of(dir, "ca-key.pem"), 0600);
    CHECK_INT(mode_of(dir, "ca.pem"), 0644);
    /* Exactly the two files: no temp file left behind. */
    CHECK_INT(count_entries(dir), 2);
    char *key_file = slurp_at(dir, "ca-key.pem");
    char *cert_file = slurp_at(dir, "ca.pem");
    CHECK(key_file != NULL && strncmp(key_file, "-----BEGIN PRIVATE KEY-----\n", 28) == 0);
    CHECK(cert_file != NULL && strcmp(cert_file, as_ca_cert_pem(ca)) == 0);
    CHECK_STR(as_ca_chain_pem(ca), as_ca_cert_pem(ca));

    struct as_ca *again = NULL;
    bool created = true;
    CHECK_INT(as_ca_load_or_create(dir, TD, DAY, &again, &created), AS_OK);
    CHECK(!created);
    CHECK(again != NULL);
    if (again != NULL) {
        size_t a_len = 0;
        size_t b_len = 0;
        const unsigned char *a = as_ca_cert_der(ca, &a_len);
        const unsigned char *b = as_ca_cert_der(again, &b_len);
        CHECK(a_len > 0 && a_len == b_len && memcmp(a, b, a_len) == 0);
        CHECK_STR(as_ca_cert_pem(again), as_ca_cert_pem(ca));
        CHECK_INT(as_ca_not_after(again), as_ca_not_after(ca));
    }
    /* Reloading rewrote nothing. */
    char *key_after = slurp_at(dir, "ca-key.pem");
    CHECK(key_file != NULL && key_after != NULL && strcmp(key_file, key_after) == 0);
    as_free_secret_str(key_after);

    /* Negative twin: a fresh directory is not the old CA. */
    char dir2[64];
    make_dir(dir2, sizeof dir2);
    struct as_ca *other = must_create(dir2, TD, DAY);
    size_t a_len = 0;
    size_t b_len = 0;
    const unsigned char *a = as_ca_cert_der(ca, &a_len);
    const unsigned char *b = as_ca_cert_der(other, &b_len);
    CHECK(a_len != b_len || memcmp(a, b, a_len) != 0);

    as_free_secret_str(key_file);
    free(cert_file);
    as_ca_free(ca);
    as_ca_free(again);
    as_ca_free(other);
    as_ca_free(NULL);
    rm_dir(dir);
    rm_dir(dir2);
}

static void test_distinct_generations(void)
{
    char d1[64];
    char d2[64];
    make_dir(d1, sizeof d1);
    make_dir(d2, sizeof d2);
    struct as_ca *c1 = must_create(d1, TD, DAY);
    struct as_ca *c2 = must_create(d2, TD, DAY);
    X509 *x1 = ca_x509(c1);
    X509 *x2 = ca_x509(c2);
    CHECK(x1 != NULL && x2 != NULL);
    CHECK(X509_NAME_cmp(X509_get_subject_name(x1), X509_get_subject_name(x2)) != 0);
    CHECK(ASN1_INTEGER_cmp(X509_get0_serialNumber(x1), X509_get0_serialNumber(x2)) != 0);

    /* Negative twin: the same generation reloaded keeps its subject and serial. */
    struct as_ca *c1b = NULL;
    bool created = true;
    CHECK_INT(as_ca_load_or_create(d1, TD, DAY, &c1b, &created), AS_OK);
    X509 *x1b = c1b ? ca_x509(c1b) : NULL;
    CHECK(x1b != NULL);
    if (x1b != NULL) {
        CHECK(X509_NAME_cmp(X509_get_subject_name(x1), X509_get_subject_name(x1b)) == 0);
        CHECK(ASN1_INTEGER_cmp(X509_get0_serialNumber(x1), X509_get0_serialNumber(x1b)) == 0);
    }
    X509_free(x1);
    X509_free(x2);
    X509_free(x1b);
    as_ca_free(c1);
    as_ca_free(c2);
    as_ca_free(c1b);
    rm_dir(d1);
    rm_dir(d2);
}

static void test_ca_profile(void)
{
    char dir[64];
    make_dir(dir, sizeof dir);
    const int64_t ttl = 30LL * DAY;
    int64_t before = as_now();
    struct as_ca *ca = must_create(dir, TD, ttl);
    int64_t after = as_now();
    X509 *x = ca_x509(ca);
    CHECK(x != NULL);
    if (x == NULL) {
        as_ca_free(ca);
        rm_dir(dir);
        return;
    }
    /* The PEM and the DER are the same certificate. */
    X509 *from_pem = x509_from_pem(as_ca_cert_pem(ca));
    CHECK(from_pem != NULL && X509_cmp(x, from_pem) == 0);
    X509_free(from_pem);

    CHECK_INT(X509_get_version(x), X509_VERSION_3);
    CHECK_INT(X509_get_signature_nid(x), NID_ecdsa_with_SHA256);

    /* Subject: O=<td>, CN="authsvc CA <td> <YYYYMMDDhhmmssZ> <8 hex>"; issuer = subject. */
    char o[128];
    char cn[128];
    name_entry(X509_get_subject_name(x), NID_organizationName, o, sizeof o);
    name_entry(X509_get_subject_name(x), NID_commonName, cn, sizeof cn);
    CHECK_STR(o, TD);
    const char *prefix = "authsvc CA " TD " ";
    CHECK(strncmp(cn, prefix, strlen(prefix)) == 0);
    const char *rest = cn + strlen(prefix);
    bool shape = strlen(rest) == 15 + 1 + 8 && rest[14] == 'Z' && rest[15] == ' ';
    for (int i = 0; shape && i < 14; i++) {
        shape = rest[i] >= '0' && rest[i] <= '9';
    }
    for (int i = 16; shape && i < 24; i++) {
        shape = strchr("0123456789abcdef", rest[i]) != NULL;
    }
    if (!shape) {
        fprintf(stderr, "unexpected CA CN \"%s\"\n", cn);
    }
    CHECK(shape);
    CHECK(X509_NAME_cmp(X509_get_subject_name(x), X509_get_issuer_name(x)) == 0);

    check_serial(x);

    /* Validity: notBefore backdated 10 s, notAfter = now + ttl. */
    int64_t nb = unix_of(X509_get0_notBefore(x));
    int64_t na = unix_of(X509_get0_notAfter(x));
    CHECK(nb >= before - 10 && nb <= after - 10);
    CHECK(na >= before + ttl && na <= after + ttl);
    CHECK_INT(as_ca_not_after(ca), na);

    /* basicConstraints critical CA:TRUE, no path length. */
    int crit = -1;
    BASIC_CONSTRAINTS *bc = X509_get_ext_d2i(x, NID_basic_constraints, &crit, NULL);
    CHECK(bc != NULL && bc->ca && bc->pathlen == NULL);
    CHECK_INT(crit, 1);
    BASIC_CONSTRAINTS_free(bc);
    CHECK_INT(X509_check_ca(x), 1);

    /* keyUsage critical keyCertSign + cRLSign and nothing else. */
    ASN1_BIT_STRING *ku = X509_get_ext_d2i(x, NID_key_usage, &crit, NULL);
    CHECK_INT(crit, 1);
    CHECK(ku != NULL && ASN1_BIT_STRING_get_bit(ku, 5) && ASN1_BIT_STRING_get_bit(ku, 6));
    CHECK(ku != NULL && !ASN1_BIT_STRING_get_bit(ku, 0) && !ASN1_BIT_STRING_get_bit(ku, 2));
    ASN1_BIT_STRING_free(ku);
    CHECK_INT(X509_get_key_usage(x), KU_KEY_CERT_SIGN | KU_CRL_SIGN);
    CHECK_INT(ext_critical(x, NID_ext_key_usage), -1);

    /* SKID = SHA-1 of the public key bits (RFC 5280 §4.2.1.2 (1)); AKID keyid = SKID. */
    const ASN1_OCTET_STRING *skid = X509_get0_subject_key_id(x);
    const ASN1_OCTET_STRING *akid = X509_get0_authority_key_id(x);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    CHECK(X509_pubkey_digest(x, EVP_sha1(), md, &mdlen) == 1);
    CHECK(skid != NULL && ASN1_STRING_length(skid) == (int)mdlen &&
          memcmp(ASN1_STRING_get0_data(skid), md, mdlen) == 0);
    CHECK(akid != NULL && skid != NULL && ASN1_OCTET_STRING_cmp(akid, skid) == 0);
    CHECK_INT(ext_critical(x, NID_authority_key_identifier), 0);
    CHECK((X509_get_extension_flags(x) & EXFLAG_SS) != 0);

    /* SAN: exactly URI:spiffe://<td>. */
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, &crit, NULL);
    CHECK(gens != NULL && sk_GENERAL_NAME_num(gens) == 1);
    if (gens != NULL && sk_GENERAL_NAME_num(gens) == 1) {
        GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, 0);
        CHECK_INT(g->type, GEN_URI);
        ASN1_IA5STRING *u = g->d.uniformResourceIdentifier;
        CHECK(g->type == GEN_URI && ASN1_STRING_length(u) == (int)strlen("spiffe://" TD) &&
              memcmp(ASN1_STRING_get0_data(u), "spiffe://" TD, strlen("spiffe://" TD)) == 0);
    }
    GENERAL_NAMES_free(gens);

    /* EC P-256 key; the self-signature verifies. */
    EVP_PKEY *pub = X509_get0_pubkey(x);
    CHECK(is_p256(pub));
    CHECK_INT(X509_verify(x, pub), 1);
    CHECK_INT(verify_leaf(x, x, X509_PURPOSE_ANY), X509_V_OK);

    /* Negative twin: a flipped signature byte, or another CA's key, does not verify. */
    size_t len = 0;
    const unsigned char *der = as_ca_cert_der(ca, &len);
    unsigned char *bad = malloc(len);
    memcpy(bad, der, len);
    bad[len - 1] ^= 0x01;
    const unsigned char *p = bad;
    X509 *tampered = d2i_X509(NULL, &p, (long)len);
    CHECK(tampered == NULL || X509_verify(tampered, pub) != 1);
    X509_free(tampered);
    free(bad);
    char dir2[64];
    make_dir(dir2, sizeof dir2);
    struct as_ca *other = must_create(dir2, TD, ttl);
    X509 *ox = ca_x509(other);
    CHECK(ox != NULL && X509_verify(x, X509_get0_pubkey(ox)) != 1);
    ERR_clear_error();

    /* The key file is PKCS#8 P-256 and matches the certificate. */
    char *key_pem = slurp_at(dir, "ca-key.pem");
    BIO *kb = BIO_new_mem_buf(key_pem, -1);
    EVP_PKEY *key = PEM_read_bio_PrivateKey(kb, NULL, NULL, NULL);
    CHECK(is_p256(key));
    CHECK_INT(X509_check_private_key(x, key), 1);
    CHECK(X509_check_private_key(ox, key) != 1);
    ERR_clear_error();
    EVP_PKEY_free(key);
    BIO_free(kb);
    as_free_secret_str(key_pem);

    X509_free(ox);
    as_ca_free(other);
    X509_free(x);
    as_ca_free(ca);
    rm_dir(dir);
    rm_dir(dir2);
}

static void test_key_mode(void)
{
    char dir[64];
    char key[256];
    make_dir(dir, sizeof dir);
    as_ca_free(must_create(dir, TD, DAY));
    path_of(key, sizeof key, dir, "ca-key.pem");

    CHECK_INT(chmod(key, 0644), 0);
    expect_config_refusal(dir, TD, DAY, "chmod 600", __LINE__);
    CHECK_INT(chmod(key, 0640), 0);
    expect_config_refusal(dir, TD, DAY, "chmod 600", __LINE__);
    CHECK_INT(chmod(key, 0602), 0);
    expect_config_refusal(dir, TD, DAY, "chmod 600", __LINE__);
    /* The refusal left the file alone. */
    CHECK_INT(mode_of(dir, "ca-key.pem"), 0602);

    /* Positive twins: owner-only modes load. */
    static const mode_t ok[] = {0600, 0400};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        CHECK_INT(chmod(key, ok[i]), 0);
        struct as_ca *ca = NULL;
        bool created = true;
        CHECK_INT(as_ca_load_or_create(dir, TD, DAY, &ca, &created), AS_OK);
        CHECK(ca != NULL && !created);
        as_ca_free(ca);
    }
    rm_dir(dir);
}

static void test_half_present(void)
{
    char dir[64];
    char p[256];
    make_dir(dir, sizeof dir);
    struct as_ca *ca = must_create(dir, TD, DAY);
    char *cert = slurp_at(dir, "ca.pem");
    char *key = slurp_at(dir, "ca-key.pem");

    /* Key without certificate: refused, and nothing is recreated over the key. */
    path_of(p, sizeof p, dir, "ca.pem");
    CHECK_INT(unlink(p), 0);
    expect_config_refusal(dir, TD, DAY, "ca.pem does not", __LINE__);
    CHECK_INT(mode_of(dir, "ca.pem"), -1);
    char *key_now = slurp_at(dir, "ca-key.pem");
    CHECK(key_now != NULL && strcmp(key_now, key) == 0);
    as_free_secret_str(key_now);

    /* Certificate without key: refused too. */
    spit_at(dir, "ca.pem", cert, 0644);
    path_of(p, sizeof p, dir, "ca-key.pem");
    CHECK_INT(unlink(p), 0);
    expect_config_refusal(dir, TD, DAY, "ca-key.pem does not", __LINE__);
    CHECK_INT(mode_of(dir, "ca-key.pem"), -1);

    /* Positive twin: both restored, the same CA loads. */
    spit_at(dir, "ca-key.pem", key, 0600);
    struct as_ca *again = NULL;
    bool created = true;
    CHECK_INT(as_ca_load_or_create(dir, TD, DAY, &again, &created), AS_OK);
    CHECK(again != NULL && !created);
    CHECK(again != NULL && strcmp(as_ca_cert_pem(again), as_ca_cert_pem(ca)) == 0);

    /* Garbage in either file is refused, not replaced. */
    spit_at(dir, "ca.pem", "not a certificate\n", 0644);
    expect_config_refusal(dir, TD, DAY, "not a PEM certificate", __LINE__);
    spit_at(dir, "ca.pem", cert, 0644);
    spit_at(dir, "ca-key.pem", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            0600);
    expect_config_refusal(dir, TD, DAY, "not an unencrypted PEM private key", __LINE__);

    as_ca_free(again);
    as_ca_free(ca);
    free(cert);
    as_free_secret_str(key);
    rm_dir(dir);
}

static void test_mismatched_key(void)
{
    char d1[64];
    char d2[64];
    make_dir(d1, sizeof d1);
    make_dir(d2, sizeof d2);
    as_ca_free(must_create(d1, TD, DAY));
    as_ca_free(must_create(d2, TD, DAY));
    char *k1 = slurp_at(d1, "ca-key.pem");
    char *k2 = slurp_at(d2, "ca-key.pem");

    spit_at(d1, "ca-key.pem", k2, 0600);
    expect_config_refusal(d1, TD, DAY, "does not match", __LINE__);

    /* An encrypted key is refused without a passphrase prompt. */
    BIO *in = BIO_new_mem_buf(k1, -1);
    EVP_PKEY *pk = PEM_read_bio_PrivateKey(in, NULL, NULL, NULL);
    BIO *enc = BIO_new(BIO_s_mem());
    CHECK(pk != NULL &&
          PEM_write_bio_PrivateKey(enc, pk, EVP_aes_256_cbc(), (const unsigned char *)"password", 8,
                                   NULL, NULL) == 1);
    char *enc_data = NULL;
    long enc_len = BIO_get_mem_data(enc, &enc_data);
    char *enc_pem = calloc(1, (size_t)enc_len + 1);
    memcpy(enc_pem, enc_data, (size_t)enc_len);
    CHECK(strstr(enc_pem, "ENCRYPTED PRIVATE KEY") != NULL);
    spit_at(d1, "ca-key.pem", enc_pem, 0600);
    expect_config_refusal(d1, TD, DAY, "not an unencrypted PEM private key", __LINE__);
    free(enc_pem);
    BIO_free(enc);
    BIO_free(in);
    EVP_PKEY_free(pk);

    /* Positive twin: the original key loads. */
    spit_at(d1, "ca-key.pem", k1, 0600);
    struct as_ca *ca = NULL;
    bool created = true;
    CHECK_INT(as_ca_load_or_create(d1, TD, DAY, &ca, &created), AS_OK);
    CHECK(ca != NULL && !created);
    as_ca_free(ca);

    as_free_secret_str(k1);
    as_free_secret_str(k2);
    rm_dir(d1);
    rm_dir(d2);
}

static void test_wrong_trust_domain(void)
{
    char dir[64];
    make_dir(dir, sizeof dir);
    as_ca_free(must_create(dir, TD, DAY));
    expect_config_refusal(dir, "other.org", DAY, "not a CA for trust domain other.org", __LINE__);
    /* Prefixes and extensions of the name are other trust domains too. */
    expect_config_refusal(dir, "example.or", DAY, "not a CA for trust domain", __LINE__);
    expect_config_refusal(dir, "example.org.evil", DAY, "not a CA for trust domain", __LINE__);
    expect_config_refusal(dir, "sub.example.org", DAY, "not a CA for trust domain", __LINE__);
    struct as_ca *ca = NULL;
    bool created = true;
    CHECK_INT(as_ca_load_or_create(dir, TD, DAY, &ca, &created), AS_OK);
    CHECK(ca != NULL && !created);
    as_ca_free(ca);
    rm_dir(dir);
}

static void test_bad_trust_domains(void)
{
    char dir[64];
    make_dir(dir, sizeof dir);
    char long_td[300];
    memset(long_td, 'a', 256);
    long_td[256] = '\0';
    const char *bad[] = {
        "",      "UPPER", "Example.org",          "a..b", ".a", "a.", ".", "a b", "a/b", "a:1",
        "é.org", long_td, "spiffe://example.org", NULL};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        expect_config_refusal(dir, bad[i], DAY, "invalid trust domain", __LINE__);
    }
    expect_config_refusal(dir, TD, 0, "invalid CA ttl", __LINE__);
    expect_config_refusal(dir, TD, -1, "invalid CA ttl", __LINE__);
    /* Nothing was written for any refusal. */
    CHECK_INT(count_entries(dir), 0);

    /* Positive twins: the whole alphabet, and 255 bytes. Long names still fit RFC 5280's
     * 64-character CN and O; the SAN keeps the whole trust domain. */
    const char *good[] = {"a", "a_b-c.d9", "0.example.org", long_td};
    long_td[255] = '\0';
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        char d[64];
        make_dir(d, sizeof d);
        struct as_ca *ca = must_create(d, good[i], DAY);
        X509 *x = ca_x509(ca);
        char cn[128];
        char o[128];
        name_entry(X509_get_subject_name(x), NID_commonName, cn, sizeof cn);
        name_entry(X509_get_subject_name(x), NID_organizationName, o, sizeof o);
        CHECK(strlen(cn) > 36 && strlen(cn) <= 64 && strncmp(cn, "authsvc CA ", 11) == 0);
        CHECK(strlen(o) > 0 && strlen(o) <= 64 && strncmp(o, good[i], strlen(o)) == 0);
        as_ca_free(ca);
        /* And it reloads under its full name. */
        bool created = true;
        CHECK_INT(as_ca_load_or_create(d, good[i], DAY, &ca, &created), AS_OK);
        CHECK(!created);
        as_ca_free(ca);
        X509_free(x);
        rm_dir(d);
    }
    rm_dir(dir);
}

/* Finds a SAN entry of type with exactly these bytes. */
static bool san_has(GENERAL_NAMES *gens, int type, const void *data, size_t len)
{
    for (int i = 0; gens != NULL && i < sk_GENERAL_NAME_num(gens); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        if (g->type != type) {
            continue;
        }
        const ASN1_STRING *s = type == GEN_IPADD ? g->d.iPAddress : g->d.dNSName;
        if (ASN1_STRING_length(s) == (int)len && memcmp(ASN1_STRING_get0_data(s), data, len) == 0) {
            return true;
        }
    }
    return false;
}

static int run_openssl_verify(const char *ca_dir, const char *leaf_dir, const char *purpose)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd,
             OPENSSL_CLI " verify -CAfile %s/ca.pem -purpose %s %s/leaf.pem >/dev/null 2>&1",
             ca_dir, purpose, leaf_dir);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_server_cert(void)
{
    char dir[64];
    char dir2[64];
    make_dir(dir, sizeof dir);
    make_dir(dir2, sizeof dir2);
    struct as_ca *ca = must_create(dir, TD, DAY);
    struct as_ca *other = must_create(dir2, TD, DAY);
    X509 *cax = ca_x509(ca);
    X509 *otherx = ca_x509(other);
    const char *names[] = {"localhost", "127.0.0.1", "::1"};
    char *cert_pem = NULL;
    char *key_pem = NULL;
    int64_t before = as_now();
    CHECK_INT(as_ca_issue_server_cert(ca, names, 3, 3600, &cert_pem, &key_pem), AS_OK);
    int64_t after = as_now();
    CHECK(cert_pem != NULL && key_pem != NULL);
    if (cert_pem == NULL || key_pem == NULL) {
        goto out;
    }
    /* A root CA is not sent: the PEM holds the leaf alone. */
    CHECK_INT(count_substr(cert_pem, "-----BEGIN CERTIFICATE-----"), 1);
    CHECK(strncmp(key_pem, "-----BEGIN PRIVATE KEY-----\n", 28) == 0);

    X509 *leaf = x509_from_pem(cert_pem);
    CHECK(leaf != NULL);
    if (leaf == NULL) {
        goto out;
    }
    CHECK_INT(X509_get_version(leaf), X509_VERSION_3);
    CHECK_INT(X509_get_signature_nid(leaf), NID_ecdsa_with_SHA256);
    CHECK_INT(verify_leaf(cax, leaf, X509_PURPOSE_SSL_SERVER), X509_V_OK);
    /* Negative twins: another CA, or the client purpose, fails. */
    CHECK_INT(verify_leaf(otherx, leaf, X509_PURPOSE_SSL_SERVER),
              X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);
    CHECK_INT(verify_leaf(cax, leaf, X509_PURPOSE_SSL_CLIENT), X509_V_ERR_INVALID_PURPOSE);

    char cn[128];
    name_entry(X509_get_subject_name(leaf), NID_commonName, cn, sizeof cn);
    CHECK_STR(cn, "localhost");
    CHECK(X509_NAME_cmp(X509_get_issuer_name(leaf), X509_get_subject_name(cax)) == 0);
    check_serial(leaf);

    int crit = -1;
    GENERAL_NAMES *gens = X509_get_ext_d2i(leaf, NID_subject_alt_name, &crit, NULL);
    static const unsigned char v4[4] = {127, 0, 0, 1};
    static const unsigned char v6[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    CHECK(gens != NULL && sk_GENERAL_NAME_num(gens) == 3);
    CHECK(san_has(gens, GEN_DNS, "localhost", 9));
    CHECK(san_has(gens, GEN_IPADD, v4, 4));
    CHECK(san_has(gens, GEN_IPADD, v6, 16));
    /* Negative twins: the IP literal is not also a DNS name, and ::2 is absent. */
    CHECK(!san_has(gens, GEN_DNS, "127.0.0.1", 9));
    static const unsigned char v6b[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2};
    CHECK(!san_has(gens, GEN_IPADD, v6b, 16));
    GENERAL_NAMES_free(gens);
    CHECK_INT(X509_check_host(leaf, "localhost", 0, 0, NULL), 1);
    CHECK_INT(X509_check_ip_asc(leaf, "127.0.0.1", 0), 1);
    CHECK_INT(X509_check_ip_asc(leaf, "::1", 0), 1);
    CHECK(X509_check_host(leaf, "example.com", 0, 0, NULL) != 1);
    CHECK(X509_check_ip_asc(leaf, "127.0.0.2", 0) != 1);

    BASIC_CONSTRAINTS *bc = X509_get_ext_d2i(leaf, NID_basic_constraints, &crit, NULL);
    CHECK(bc != NULL && !bc->ca);
    CHECK_INT(crit, 1);
    BASIC_CONSTRAINTS_free(bc);
    CHECK(X509_check_ca(leaf) == 0);
    CHECK_INT(ext_critical(leaf, NID_key_usage), 1);
    CHECK_INT(X509_get_key_usage(leaf), KU_DIGITAL_SIGNATURE);
    CHECK_INT(ext_critical(leaf, NID_ext_key_usage), 0);
    CHECK_INT(X509_get_extended_key_usage(leaf), XKU_SSL_SERVER);
    CHECK(X509_get0_subject_key_id(leaf) != NULL);
    CHECK(ASN1_OCTET_STRING_cmp(X509_get0_authority_key_id(leaf), X509_get0_subject_key_id(cax)) ==
          0);
    CHECK(ASN1_OCTET_STRING_cmp(X509_get0_subject_key_id(leaf), X509_get0_subject_key_id(cax)) !=
          0);
    int64_t nb = unix_of(X509_get0_notBefore(leaf));
    int64_t na = unix_of(X509_get0_notAfter(leaf));
    CHECK(nb >= before - 10 && nb <= after - 10);
    CHECK(na >= before + 3600 && na <= after + 3600);
    CHECK(na < as_ca_not_after(ca));

    /* The key is P-256, loads, and matches the leaf (and not the CA). */
    BIO *kb = BIO_new_mem_buf(key_pem, -1);
    EVP_PKEY *key = PEM_read_bio_PrivateKey(kb, NULL, NULL, NULL);
    BIO_free(kb);
    CHECK(is_p256(key));
    CHECK_INT(X509_check_private_key(leaf, key), 1);
    CHECK(X509_check_private_key(cax, key) != 1);
    ERR_clear_error();
    EVP_PKEY_free(key);

    /* Cross-check with the real openssl CLI. */
    if (access(OPENSSL_CLI, X_OK) == 0) {
        spit_at(dir, "leaf.pem", cert_pem, 0644);
        CHECK_INT(run_openssl_verify(dir, dir, "sslserver"), 0);
        CHECK(run_openssl_verify(dir, dir, "sslclient") != 0);
        CHECK(run_openssl_verify(dir2, dir, "sslserver") != 0);
    } else {
        printf("skipped: %s is missing, no cross-check with the openssl CLI\n", OPENSSL_CLI);
    }
    X509_free(leaf);

    /* A ttl beyond the CA's life is capped at the CA's notAfter. */
    char *c2 = NULL;
    char *k2 = NULL;
    CHECK_INT(as_ca_issue_server_cert(ca, names, 3, 10LL * 365 * DAY, &c2, &k2), AS_OK);
    X509 *capped = c2 ? x509_from_pem(c2) : NULL;
    CHECK(capped != NULL && unix_of(X509_get0_notAfter(capped)) == as_ca_not_after(ca));
    CHECK(capped != NULL &&
          ASN1_TIME_compare(X509_get0_notAfter(capped), X509_get0_notAfter(cax)) == 0);
    CHECK(capped != NULL && verify_leaf(cax, capped, X509_PURPOSE_SSL_SERVER) == X509_V_OK);
    X509_free(capped);
    free(c2);
    as_free_secret_str(k2);

    /* No names: CN "authsvc" and no SAN. A name too long for a CN falls back the same way. */
    CHECK_INT(as_ca_issue_server_cert(ca, NULL, 0, 3600, &c2, &k2), AS_OK);
    X509 *bare = c2 ? x509_from_pem(c2) : NULL;
    CHECK(bare != NULL);
    if (bare != NULL) {
        name_entry(X509_get_subject_name(bare), NID_commonName, cn, sizeof cn);
        CHECK_STR(cn, "authsvc");
        CHECK_INT(ext_critical(bare, NID_subject_alt_name), -1);
    }
    X509_free(bare);
    free(c2);
    as_free_secret_str(k2);
    const char *long_name[] = {"a-very-long-host-name-that-does-not-fit-in-a-common-name."
                               "example.org"};
    CHECK_INT(as_ca_issue_server_cert(ca, long_name, 1, 3600, &c2, &k2), AS_OK);
    X509 *lx = c2 ? x509_from_pem(c2) : NULL;
    CHECK(lx != NULL && X509_check_host(lx, long_name[0], 0, 0, NULL) == 1);
    if (lx != NULL) {
        name_entry(X509_get_subject_name(lx), NID_commonName, cn, sizeof cn);
        CHECK_STR(cn, "authsvc");
    }
    X509_free(lx);
    free(c2);
    as_free_secret_str(k2);

    /* Refusals: bad names, a non-positive ttl. Outputs stay NULL. */
    const char *bad_names[][1] = {{""},           {"bad name"}, {"a..b"},
                                  {"a,DNS:evil"}, {NULL},       {"1.2.3.4/8"}};
    capture_start();
    for (size_t i = 0; i < sizeof bad_names / sizeof bad_names[0]; i++) {
        c2 = k2 = (char *)"x";
        CHECK_INT(as_ca_issue_server_cert(ca, bad_names[i], 1, 3600, &c2, &k2), AS_ERR_INVALID);
        CHECK(c2 == NULL && k2 == NULL);
    }
    CHECK_INT(as_ca_issue_server_cert(ca, names, 3, 0, &c2, &k2), AS_ERR_INVALID);
    CHECK_INT(as_ca_issue_server_cert(ca, names, 3, -5, &c2, &k2), AS_ERR_INVALID);
    free(capture_end());

out:
    free(cert_pem);
    as_free_secret_str(key_pem);
    X509_free(cax);
    X509_free(otherx);
    as_ca_free(ca);
    as_ca_free(other);
    rm_dir(dir);
    rm_dir(dir2);
}

static void test_expired_ca(void)
{
    char dir[64];
    make_dir(dir, sizeof dir);
    /* 3 s of life: enough for the positive twin even under sanitizers on a loaded machine. */
    struct as_ca *ca = must_create(dir, TD, 3);
    char *c = NULL;
    char *k = NULL;
    /* Positive twin first: while the CA is valid it issues, capped at its life. */
    CHECK_INT(as_ca_issue_server_cert(ca, NULL, 0, 3600, &c, &k), AS_OK);
    free(c);
    as_free_secret_str(k);
    sleep(4);
    capture_start();
    CHECK_INT(as_ca_issue_server_cert(ca, NULL, 0, 3600, &c, &k), AS_ERR_EXPIRED);
    CHECK(c == NULL && k == NULL);
    /* An expired CA still loads (rotation decides what replaces it), with a warning. */
    struct as_ca *again = NULL;
    bool created = true;
    CHECK_INT(as_ca_load_or_create(dir, TD, DAY, &again, &created), AS_OK);
    char *log = capture_end();
    CHECK(again != NULL && !created);
    CHECK(log != NULL && strstr(log, "has expired") != NULL);
    free(log);
    as_ca_free(again);
    as_ca_free(ca);
    rm_dir(dir);
}

/* Later generations live next to the first in the same directory: as_ca_load_or_create still
 * loads "ca", each generation loads under its own base, and a save replaces atomically. */
static void test_generations_share_dir(void)
{
    char dir[64];
    make_dir(dir, sizeof dir);
    struct as_ca *first = must_create(dir, TD, DAY);
    struct as_ca *next = NULL;
    CHECK_INT(as_ca_generate(TD, DAY, &next), AS_OK);
    if (next == NULL) {
        as_ca_free(first);
        rm_dir(dir);
        return;
    }
    CHECK_INT(as_ca_save(next, dir, "ca-2"), AS_OK);
    CHECK_INT(count_entries(dir), 4);
    CHECK_INT(mode_of(dir, "ca-2-key.pem"), 0600);
    CHECK_INT(mode_of(dir, "ca-2.pem"), 0644);
    CHECK(strcmp(as_ca_subject(first), as_ca_subject(next)) != 0);

    struct as_ca *again = NULL;
    bool created = true;
    CHECK_INT(as_ca_load_or_create(dir, TD, DAY, &again, &created), AS_OK);
    CHECK(again != NULL && !created);
    CHECK(again != NULL && strcmp(as_ca_cert_pem(again), as_ca_cert_pem(first)) == 0);
    struct as_ca *next_again = NULL;
    CHECK_INT(as_ca_load(dir, "ca-2", TD, &next_again), AS_OK);
    CHECK(next_again != NULL && strcmp(as_ca_cert_pem(next_again), as_ca_cert_pem(next)) == 0);
    CHECK(next_again != NULL && strcmp(as_ca_subject(next_again), as_ca_subject(next)) == 0);

    /* The listener's certificate from the loaded second generation chains to it alone. */
    char *cert_pem = NULL;
    char *key_pem = NULL;
    if (next_again != NULL) {
        CHECK_INT(as_ca_issue_server_cert(next_again, NULL, 0, 3600, &cert_pem, &key_pem), AS_OK);
    }
    X509 *leaf = cert_pem != NULL ? x509_from_pem(cert_pem) : NULL;
    X509 *x1 = ca_x509(first);
    X509 *x2 = ca_x509(next);
    CHECK(leaf != NULL && verify_leaf(x2, leaf, X509_PURPOSE_SSL_SERVER) == X509_V_OK);
    CHECK(leaf != NULL && verify_leaf(x1, leaf, X509_PURPOSE_SSL_SERVER) != X509_V_OK);
    X509_free(leaf);
    X509_free(x1);
    X509_free(x2);
    free(cert_pem);
    as_free_secret_str(key_pem);

    /* Saving over a generation replaces both files; no temp file is left behind. */
    CHECK_INT(as_ca_save(first, dir, "ca-2"), AS_OK);
    CHECK_INT(count_entries(dir), 4);
    struct as_ca *replaced = NULL;
    CHECK_INT(as_ca_load(dir, "ca-2", TD, &replaced), AS_OK);
    CHECK(replaced != NULL && strcmp(as_ca_cert_pem(replaced), as_ca_cert_pem(first)) == 0);

    as_ca_free(replaced);
    as_ca_free(next_again);
    as_ca_free(again);
    as_ca_free(next);
    as_ca_free(first);
    rm_dir(dir);
}

int main(void)
{
    /* Keep "created a new CA" lines out of the output; refusals are captured and checked. */
    as_log_set_level(AS_LOG_WARN);
    test_create_and_reload();
    test_distinct_generations();
    test_ca_profile();
    test_key_mode();
    test_half_present();
    test_mismatched_key();
    test_wrong_trust_domain();
    test_bad_trust_domains();
    test_server_cert();
    test_expired_ca();
    test_generations_share_dir();
    return check_done();
}
