/*
 * ca.c: authsvc's certificate authority (pki.h). Bootstraps a self-signed ECDSA P-256 CA kept in
 * the data dir and issues the HTTPS listener's certificate.
 *
 * Only this file touches a CA private key. On disk: ca.pem (the certificate, 0644) and ca-key.pem
 * (PKCS#8 PEM, 0600; unencrypted until the config's ca.kek_file is implemented).
 *
 * Certificates are built from OpenSSL's extension structures rather than from config strings:
 * names that reach a SAN never pass through a string parser where a comma could add an entry.
 */
#include "pki/pki.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#define CA_CERT_FILE "ca.pem"
#define CA_KEY_FILE "ca-key.pem"
/* A PEM certificate or P-256 key is about 1 KiB; a file near this cap is not ours. */
#define PKI_MAX_FILE_BYTES (64 * 1024)
/* SPIFFE-ID §2.3: a trust domain is at most 255 bytes. */
#define TD_MAX_LEN 255
/* RFC 5280 §4.1.2.2: positive, at most 20 octets. 128 random bits with the top bit clear. */
#define SERIAL_BYTES 16
/* Clock skew allowance for relying parties; SPEC §6 backdates SVIDs by the same 10 s. */
#define BACKDATE_SECS 10
/* A century keeps now + ttl far from time_t and ASN1_TIME limits. */
#define PKI_MAX_TTL_SECS (100LL * 365 * 24 * 3600)
/* RFC 5280 Appendix A: ub-common-name and ub-organization-name are both 64. */
#define UB_NAME_LEN 64
/* RFC 1035 §2.3.4 and RFC 1123 §2.1: a DNS name is at most 253 characters in text form. */
#define DNS_NAME_MAX_LEN 253
/* The listener's names come from config (tls_names); a handful is normal. */
#define SERVER_CERT_MAX_NAMES 64
/* "YYYYMMDDhhmmssZ" plus NUL. */
#define CN_TIME_LEN 16
#define CN_RAND_BYTES 4

struct as_ca {
    X509 *cert;
    EVP_PKEY *key;
    /* Fetched once: implicit fetches per signature cost time and take a global lock
     * (PERF-NOTES trap 1). */
    EVP_MD *sha256;
    /* The CA's subject key identifier, copied into each leaf's AKID (RFC 5280 §4.2.1.1). */
    ASN1_OCTET_STRING *skid;
    char *cert_pem;
    unsigned char *cert_der;
    size_t cert_der_len;
    char *chain_pem;
    int64_t not_after;
    bool self_signed;
};

/* ---- small helpers ---- */

/* Logs what failed and drains OpenSSL's error queue, so a stale error never blames a later call. */
static void log_ssl_errors(const char *what)
{
    unsigned long e = ERR_get_error();
    if (e == 0) {
        as_error("pki: %s failed", what);
        return;
    }
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    as_error("pki: %s failed: %s", what, buf);
    ERR_clear_error();
}

/*
 * SPIFFE-ID §2.1: a trust domain is lowercase letters, digits, '.', '-' and '_'; §2.3: at most
 * 255 bytes. Empty labels ("a..b", ".a", "a.") are refused as a DNS-like name would be.
 */
static bool trust_domain_valid(const char *td)
{
    if (td == NULL) {
        return false;
    }
    size_t len = strnlen(td, TD_MAX_LEN + 1);
    if (len == 0 || len > TD_MAX_LEN) {
        return false;
    }
    char prev = '.';
    for (size_t i = 0; i < len; i++) {
        char c = td[i];
        bool ok =
            (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_';
        if (!ok || (c == '.' && prev == '.')) {
            return false;
        }
        prev = c;
    }
    return prev != '.';
}

/* Text form of a DNS name for a SAN dNSName (an IA5String, RFC 5280 §4.2.1.6). Letters of both
 * cases, digits, '-', '_', '.' and a '*' label; no empty labels. */
static bool dns_name_valid(const char *name)
{
    size_t len = strnlen(name, DNS_NAME_MAX_LEN + 1);
    if (len == 0 || len > DNS_NAME_MAX_LEN) {
        return false;
    }
    char prev = '.';
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '-' || c == '_' || c == '*';
        if (!ok || (c == '.' && prev == '.')) {
            return false;
        }
        prev = c;
    }
    return prev != '.';
}

static enum as_err asn1_time_to_unix(const ASN1_TIME *t, int64_t *out)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1) {
        return AS_ERR_CRYPTO;
    }
    time_t secs = timegm(&tm);
    if (secs == (time_t)-1) {
        return AS_ERR_CRYPTO;
    }
    *out = (int64_t)secs;
    return AS_OK;
}

/* Cleanses a memory BIO's contents, then frees it. NULL is fine. */
static void bio_free_wiped(BIO *bio)
{
    char *data = NULL;
    long n = bio != NULL ? BIO_get_mem_data(bio, &data) : 0;
    if (n > 0 && data != NULL) {
        OPENSSL_cleanse(data, (size_t)n);
    }
    BIO_free(bio);
}

/*
 * Copies the contents of a memory BIO into a new NUL-terminated string and frees the BIO. With
 * secret, the BIO's buffer is cleansed before it is freed (the caller wipes the copy).
 */
static enum as_err bio_take_string(BIO **bio, bool secret, char **out, size_t *outlen)
{
    enum as_err r = AS_OK;
    char *data = NULL;
    long n = BIO_get_mem_data(*bio, &data);
    char *s = NULL;
    if (n <= 0 || data == NULL) {
        r = AS_ERR_CRYPTO;
        goto out;
    }
    s = malloc((size_t)n + 1);
    if (s == NULL) {
        r = AS_ERR_NOMEM;
        goto out;
    }
    memcpy(s, data, (size_t)n);
    s[n] = '\0';
    *out = s;
    if (outlen != NULL) {
        *outlen = (size_t)n;
    }
out:
    if (secret) {
        bio_free_wiped(*bio);
    } else {
        BIO_free(*bio);
    }
    *bio = NULL;
    return r;
}

static enum as_err cert_to_pem(X509 *x, char **out)
{
    BIO *bio = BIO_new(BIO_s_mem());
    if (bio == NULL) {
        return AS_ERR_NOMEM;
    }
    if (PEM_write_bio_X509(bio, x) != 1) {
        log_ssl_errors("PEM_write_bio_X509");
        BIO_free(bio);
        return AS_ERR_CRYPTO;
    }
    return bio_take_string(&bio, false, out, NULL);
}

/* PEM_write_bio_PrivateKey writes PKCS#8 ("BEGIN PRIVATE KEY") in OpenSSL 3, which GnuTLS reads.
 * The caller wipes *out (*outlen bytes). */
static enum as_err key_to_pem(EVP_PKEY *key, char **out, size_t *outlen)
{
    BIO *bio = BIO_new(BIO_s_mem());
    if (bio == NULL) {
        return AS_ERR_NOMEM;
    }
    if (PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL) != 1) {
        log_ssl_errors("PEM_write_bio_PrivateKey");
        /* A failure may come after part of the key was written. */
        bio_free_wiped(bio);
        return AS_ERR_CRYPTO;
    }
    return bio_take_string(&bio, true, out, outlen);
}

static enum as_err gen_p256(EVP_PKEY **out)
{
    *out = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    if (*out == NULL) {
        log_ssl_errors("P-256 key generation");
        return AS_ERR_CRYPTO;
    }
    return AS_OK;
}

/* RFC 5280 §4.1.2.2: unique, positive, at most 20 octets. 128 random bits with the top bit
 * cleared stay positive in 16 DER content octets; zero is drawn again. */
static enum as_err set_random_serial(X509 *x)
{
    enum as_err r = AS_OK;
    unsigned char b[SERIAL_BYTES];
    BIGNUM *bn = NULL;
    do {
        if ((r = as_rand_bytes(b, sizeof b)) != AS_OK) {
            goto out;
        }
        b[0] &= 0x7f;
        BN_free(bn);
        bn = BN_bin2bn(b, (int)sizeof b, NULL);
        if (bn == NULL) {
            r = AS_ERR_NOMEM;
            goto out;
        }
    } while (BN_is_zero(bn));
    if (BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) == NULL) {
        log_ssl_errors("BN_to_ASN1_INTEGER");
        r = AS_ERR_CRYPTO;
        goto out;
    }
out:
    BN_free(bn);
    return r;
}

/* ASN1_TIME_set picks UTCTime before 2050 and GeneralizedTime after, as RFC 5280 §4.1.2.5
 * requires. */
static enum as_err set_validity(X509 *x, int64_t not_before, int64_t not_after)
{
    if (ASN1_TIME_set(X509_getm_notBefore(x), (time_t)not_before) == NULL ||
        ASN1_TIME_set(X509_getm_notAfter(x), (time_t)not_after) == NULL) {
        log_ssl_errors("ASN1_TIME_set");
        return AS_ERR_CRYPTO;
    }
    return AS_OK;
}

static enum as_err add_ext(X509 *x, int nid, void *value, int crit)
{
    if (X509_add1_ext_i2d(x, nid, value, crit, X509V3_ADD_DEFAULT) != 1) {
        log_ssl_errors(OBJ_nid2sn(nid));
        return AS_ERR_CRYPTO;
    }
    return AS_OK;
}

/* RFC 5280 §4.2.1.9: critical in CA certificates; no pathLenConstraint. */
static enum as_err add_basic_constraints(X509 *x, bool ca)
{
    enum as_err r = AS_OK;
    BASIC_CONSTRAINTS *bc = BASIC_CONSTRAINTS_new();
    if (bc == NULL) {
        r = AS_ERR_NOMEM;
        goto out;
    }
    bc->ca = ca ? 0xff : 0;
    r = add_ext(x, NID_basic_constraints, bc, 1);
out:
    BASIC_CONSTRAINTS_free(bc);
    return r;
}

/* RFC 5280 §4.2.1.3: bit numbers of KeyUsage; conforming CAs mark the extension critical. */
enum { KU_BIT_DIGITAL_SIGNATURE = 0, KU_BIT_KEY_CERT_SIGN = 5, KU_BIT_CRL_SIGN = 6 };

static enum as_err add_key_usage(X509 *x, const int *bits, size_t n)
{
    enum as_err r = AS_OK;
    ASN1_BIT_STRING *ku = ASN1_BIT_STRING_new();
    if (ku == NULL) {
        r = AS_ERR_NOMEM;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        if (ASN1_BIT_STRING_set_bit(ku, bits[i], 1) != 1) {
            r = AS_ERR_NOMEM;
            goto out;
        }
    }
    r = add_ext(x, NID_key_usage, ku, 1);
out:
    ASN1_BIT_STRING_free(ku);
    return r;
}

/* RFC 5280 §4.2.1.12: id-kp-serverAuth only; the listener's certificate is no client identity. */
static enum as_err add_eku_server_auth(X509 *x)
{
    enum as_err r = AS_OK;
    EXTENDED_KEY_USAGE *eku = sk_ASN1_OBJECT_new_null();
    if (eku == NULL || sk_ASN1_OBJECT_push(eku, OBJ_nid2obj(NID_server_auth)) <= 0) {
        r = AS_ERR_NOMEM;
        goto out;
    }
    r = add_ext(x, NID_ext_key_usage, eku, 0);
out:
    /* OBJ_nid2obj returns a static object; ASN1_OBJECT_free leaves it alone. */
    sk_ASN1_OBJECT_pop_free(eku, ASN1_OBJECT_free);
    return r;
}

/* RFC 5280 §4.2.1.2 method (1): SHA-1 of the subjectPublicKey BIT STRING. Call after
 * X509_set_pubkey. *out (may be NULL) receives a copy the caller frees. */
static enum as_err add_skid(X509 *x, ASN1_OCTET_STRING **out)
{
    enum as_err r = AS_OK;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    ASN1_OCTET_STRING *skid = NULL;
    if (X509_pubkey_digest(x, EVP_sha1(), md, &mdlen) != 1) {
        log_ssl_errors("X509_pubkey_digest");
        r = AS_ERR_CRYPTO;
        goto out;
    }
    skid = ASN1_OCTET_STRING_new();
    if (skid == NULL || ASN1_OCTET_STRING_set(skid, md, (int)mdlen) != 1) {
        r = AS_ERR_NOMEM;
        goto out;
    }
    if ((r = add_ext(x, NID_subject_key_identifier, skid, 0)) != AS_OK) {
        goto out;
    }
    if (out != NULL) {
        *out = skid;
        skid = NULL;
    }
out:
    ASN1_OCTET_STRING_free(skid);
    return r;
}

/* RFC 5280 §4.2.1.1: keyIdentifier only, equal to the issuer's SKID; never critical. */
static enum as_err add_akid(X509 *x, const ASN1_OCTET_STRING *issuer_skid)
{
    enum as_err r = AS_OK;
    AUTHORITY_KEYID *akid = AUTHORITY_KEYID_new();
    if (akid == NULL || (akid->keyid = ASN1_OCTET_STRING_dup(issuer_skid)) == NULL) {
        r = AS_ERR_NOMEM;
        goto out;
    }
    r = add_ext(x, NID_authority_key_identifier, akid, 0);
out:
    AUTHORITY_KEYID_free(akid);
    return r;
}

/* Appends one GeneralName of type GEN_URI, GEN_DNS (IA5String) or GEN_IPADD (OCTET STRING). */
static enum as_err san_push(GENERAL_NAMES *gens, int type, const void *data, size_t len)
{
    enum as_err r = AS_OK;
    GENERAL_NAME *gen = GENERAL_NAME_new();
    ASN1_STRING *s = type == GEN_IPADD ? ASN1_OCTET_STRING_new() : ASN1_IA5STRING_new();
    if (gen == NULL || s == NULL || len > INT32_MAX || ASN1_STRING_set(s, data, (int)len) != 1) {
        r = AS_ERR_NOMEM;
        goto out;
    }
    GENERAL_NAME_set0_value(gen, type, s);
    s = NULL;
    if (sk_GENERAL_NAME_push(gens, gen) <= 0) {
        r = AS_ERR_NOMEM;
        goto out;
    }
    gen = NULL;
out:
    ASN1_STRING_free(s);
    GENERAL_NAME_free(gen);
    return r;
}

static enum as_err x509_new_v3(X509 **out)
{
    *out = X509_new();
    if (*out == NULL) {
        return AS_ERR_NOMEM;
    }
    if (X509_set_version(*out, X509_VERSION_3) != 1) {
        X509_free(*out);
        *out = NULL;
        return AS_ERR_CRYPTO;
    }
    return AS_OK;
}

static enum as_err sign(X509 *x, EVP_PKEY *key, const EVP_MD *md)
{
    /* X509_sign returns the signature length, 0 on error. */
    if (X509_sign(x, key, md) <= 0) {
        log_ssl_errors("X509_sign");
        return AS_ERR_CRYPTO;
    }
    return AS_OK;
}

/* ---- files ---- */

static enum as_err write_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t w = write(fd, data, len);
        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            return AS_ERR_IO;
        }
        data += w;
        len -= (size_t)w;
    }
    return AS_OK;
}

/*
 * Writes name in dirfd atomically: a temp file created O_EXCL with mode 0600 (so a key is never
 * readable by others, even briefly), written, fsync'd, then chmod'd to mode and renamed over
 * name; the directory is fsync'd so the rename itself survives a crash.
 */
static enum as_err write_file_atomic(int dirfd, const char *dir, const char *name, const char *data,
                                     size_t len, mode_t mode)
{
    enum as_err r = AS_OK;
    char tmp[64];
    int fd = -1;
    bool created = false;
    unsigned char rnd[8];
    char hex[2 * sizeof rnd + 1];
    if ((r = as_rand_bytes(rnd, sizeof rnd)) != AS_OK) {
        goto out;
    }
    as_hex(rnd, sizeof rnd, hex);
    snprintf(tmp, sizeof tmp, ".%s.%s.tmp", name, hex);
    fd = openat(dirfd, tmp, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        as_error("pki: cannot create %s/%s: %s", dir, tmp, strerror(errno));
        r = AS_ERR_IO;
        goto out;
    }
    created = true;
    /* fchmod, not the open mode, decides: the umask must not change what we promise. */
    if (write_all(fd, data, len) != AS_OK || fchmod(fd, mode) != 0 || fsync(fd) != 0) {
        as_error("pki: cannot write %s/%s: %s", dir, tmp, strerror(errno));
        r = AS_ERR_IO;
        goto out;
    }
    if (close(fd) != 0) {
        fd = -1;
        as_error("pki: cannot close %s/%s: %s", dir, tmp, strerror(errno));
        r = AS_ERR_IO;
        goto out;
    }
    fd = -1;
    if (renameat(dirfd, tmp, dirfd, name) != 0) {
        as_error("pki: cannot rename %s/%s to %s: %s", dir, tmp, name, strerror(errno));
        r = AS_ERR_IO;
        goto out;
    }
    created = false;
    if (fsync(dirfd) != 0) {
        as_error("pki: cannot fsync %s: %s", dir, strerror(errno));
        r = AS_ERR_IO;
        goto out;
    }
out:
    if (fd >= 0) {
        close(fd);
    }
    if (created) {
        unlinkat(dirfd, tmp, 0);
    }
    return r;
}

/*
 * Reads name from dirfd into a new NUL-terminated buffer (at most PKI_MAX_FILE_BYTES). With
 * is_key, a file that group or others may access is refused before a byte is read: the mode is
 * taken from the open descriptor, so it is the file we read that was checked. The caller wipes
 * and frees *out.
 */
static enum as_err read_file_at(int dirfd, const char *dir, const char *name, bool is_key,
                                char **out, size_t *outlen)
{
    enum as_err r = AS_OK;
    char *buf = NULL;
    size_t len = 0;
    struct stat st;
    int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        as_error("pki: cannot open %s/%s: %s", dir, name, strerror(errno));
        r = AS_ERR_IO;
        goto out;
    }
    if (fstat(fd, &st) != 0) {
        as_error("pki: cannot stat %s/%s: %s", dir, name, strerror(errno));
        r = AS_ERR_IO;
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        as_error("pki: %s/%s is not a regular file", dir, name);
        r = AS_ERR_CONFIG;
        goto out;
    }
    if (is_key && (st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
        as_error("pki: %s/%s has mode %04o, readable or writable by group or others; "
                 "run chmod 600 %s/%s",
                 dir, name, (unsigned)(st.st_mode & 07777), dir, name);
        r = AS_ERR_CONFIG;
        goto out;
    }
    if (st.st_size > PKI_MAX_FILE_BYTES) {
        as_error("pki: %s/%s is larger than %d bytes", dir, name, PKI_MAX_FILE_BYTES);
        r = AS_ERR_CONFIG;
        goto out;
    }
    /* One spare byte detects a file that grew past the cap after fstat. */
    buf = malloc(PKI_MAX_FILE_BYTES + 2);
    if (buf == NULL) {
        r = AS_ERR_NOMEM;
        goto out;
    }
    for (;;) {
        ssize_t n = read(fd, buf + len, PKI_MAX_FILE_BYTES + 1 - len);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            as_error("pki: cannot read %s/%s: %s", dir, name, strerror(errno));
            r = AS_ERR_IO;
            goto out;
        }
        if (n == 0) {
            break;
        }
        len += (size_t)n;
        if (len > PKI_MAX_FILE_BYTES) {
            as_error("pki: %s/%s is larger than %d bytes", dir, name, PKI_MAX_FILE_BYTES);
            r = AS_ERR_CONFIG;
            goto out;
        }
    }
    buf[len] = '\0';
    *out = buf;
    *outlen = len;
    buf = NULL;
out:
    if (buf != NULL) {
        as_wipe(buf, PKI_MAX_FILE_BYTES + 2);
        free(buf);
    }
    if (fd >= 0) {
        close(fd);
    }
    return r;
}

/* Sets *present from fstatat; a missing file is not an error, any other failure is. */
static enum as_err file_present(int dirfd, const char *dir, const char *name, bool *present)
{
    struct stat st;
    if (fstatat(dirfd, name, &st, 0) == 0) {
        *present = true;
        return AS_OK;
    }
    if (errno == ENOENT) {
        *present = false;
        return AS_OK;
    }
    as_error("pki: cannot stat %s/%s: %s", dir, name, strerror(errno));
    return AS_ERR_IO;
}

/* ---- the CA object ---- */

void as_ca_free(struct as_ca *ca)
{
    if (ca == NULL) {
        return;
    }
    X509_free(ca->cert);
    /* EVP_PKEY_free clears the private scalar (BN_clear_free in the EC key). */
    EVP_PKEY_free(ca->key);
    EVP_MD_free(ca->sha256);
    ASN1_OCTET_STRING_free(ca->skid);
    free(ca->cert_pem);
    free(ca->cert_der);
    free(ca->chain_pem);
    free(ca);
}

const char *as_ca_cert_pem(const struct as_ca *ca)
{
    return ca->cert_pem;
}

const unsigned char *as_ca_cert_der(const struct as_ca *ca, size_t *len)
{
    *len = ca->cert_der_len;
    return ca->cert_der;
}

const char *as_ca_chain_pem(const struct as_ca *ca)
{
    return ca->chain_pem;
}

int64_t as_ca_not_after(const struct as_ca *ca)
{
    return ca->not_after;
}

static enum as_err ca_alloc(struct as_ca **out)
{
    struct as_ca *ca = calloc(1, sizeof *ca);
    if (ca == NULL) {
        return AS_ERR_NOMEM;
    }
    ca->sha256 = EVP_MD_fetch(NULL, "SHA2-256", NULL);
    if (ca->sha256 == NULL) {
        log_ssl_errors("EVP_MD_fetch SHA2-256");
        as_ca_free(ca);
        return AS_ERR_CRYPTO;
    }
    *out = ca;
    return AS_OK;
}

/* Fills the values derived from ca->cert: PEM, DER, chain, notAfter, SKID, self_signed. */
static enum as_err ca_derive(struct as_ca *ca)
{
    enum as_err r = AS_OK;
    int n = i2d_X509(ca->cert, NULL);
    if (n <= 0) {
        log_ssl_errors("i2d_X509");
        r = AS_ERR_CRYPTO;
        goto out;
    }
    ca->cert_der = malloc((size_t)n);
    if (ca->cert_der == NULL) {
        r = AS_ERR_NOMEM;
        goto out;
    }
    unsigned char *p = ca->cert_der;
    if (i2d_X509(ca->cert, &p) != n) {
        r = AS_ERR_CRYPTO;
        goto out;
    }
    ca->cert_der_len = (size_t)n;
    if ((r = cert_to_pem(ca->cert, &ca->cert_pem)) != AS_OK) {
        goto out;
    }
    /* A root CA has no upstream: the issuing chain is the CA alone. */
    ca->chain_pem = strdup(ca->cert_pem);
    if (ca->chain_pem == NULL) {
        r = AS_ERR_NOMEM;
        goto out;
    }
    if ((r = asn1_time_to_unix(X509_get0_notAfter(ca->cert), &ca->not_after)) != AS_OK) {
        as_error("pki: cannot read the CA certificate's notAfter");
        goto out;
    }
    const ASN1_OCTET_STRING *skid = X509_get0_subject_key_id(ca->cert);
    if (skid != NULL) {
        ca->skid = ASN1_OCTET_STRING_dup(skid);
    } else {
        /* A CA from elsewhere may lack the SKID; leaves still get an AKID (RFC 5280 §4.2.1.1)
         * computed by the same method (1) we use for our own. */
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int mdlen = 0;
        if (X509_pubkey_digest(ca->cert, EVP_sha1(), md, &mdlen) != 1) {
            r = AS_ERR_CRYPTO;
            goto out;
        }
        ca->skid = ASN1_OCTET_STRING_new();
        if (ca->skid != NULL && ASN1_OCTET_STRING_set(ca->skid, md, (int)mdlen) != 1) {
            r = AS_ERR_NOMEM;
            goto out;
        }
    }
    if (ca->skid == NULL) {
        r = AS_ERR_NOMEM;
        goto out;
    }
    ca->self_signed = (X509_get_extension_flags(ca->cert) & EXFLAG_SS) != 0;
out:
    return r;
}

/* True when x carries exactly one URI SAN and it is spiffe://<td> (SPIFFE X509-SVID §2). */
static bool cert_has_td_uri(X509 *x, const char *td)
{
    int crit = -1;
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, &crit, NULL);
    if (gens == NULL) {
        return false;
    }
    static const char scheme[] = "spiffe://";
    size_t tdlen = strlen(td);
    int uris = 0;
    bool match = false;
    for (int i = 0; i < sk_GENERAL_NAME_num(gens); i++) {
        const GENERAL_NAME *gen = sk_GENERAL_NAME_value(gens, i);
        if (gen->type != GEN_URI) {
            continue;
        }
        uris++;
        const unsigned char *u = ASN1_STRING_get0_data(gen->d.uniformResourceIdentifier);
        size_t ulen = (size_t)ASN1_STRING_length(gen->d.uniformResourceIdentifier);
        /* Compared with lengths, so an embedded NUL cannot shorten the URI we think we saw. */
        match = ulen == sizeof scheme - 1 + tdlen && memcmp(u, scheme, sizeof scheme - 1) == 0 &&
                memcmp(u + sizeof scheme - 1, td, tdlen) == 0;
    }
    GENERAL_NAMES_free(gens);
    return uris == 1 && match;
}

/* An encrypted key must fail to load, not prompt on the terminal as OpenSSL's default
 * callback would: a server has no one at the terminal. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1;
}

/* Parses the two files and checks they form a CA for td. Every refusal says why in the log. */
static enum as_err ca_load(int dirfd, const char *dir, const char *td, struct as_ca *ca)
{
    enum as_err r = AS_OK;
    char *cert_buf = NULL;
    char *key_buf = NULL;
    size_t cert_len = 0;
    size_t key_len = 0;
    BIO *bio = NULL;

    /* The key first: its mode check must not wait on a certificate that fails to parse. */
    if ((r = read_file_at(dirfd, dir, CA_KEY_FILE, true, &key_buf, &key_len)) != AS_OK) {
        goto out;
    }
    if ((r = read_file_at(dirfd, dir, CA_CERT_FILE, false, &cert_buf, &cert_len)) != AS_OK) {
        goto out;
    }
    bio = BIO_new_mem_buf(cert_buf, (int)cert_len);
    if (bio == NULL) {
        r = AS_ERR_NOMEM;
        goto out;
    }
    ca->cert = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    BIO_free(bio);
    bio = NULL;
    if (ca->cert == NULL) {
        log_ssl_errors("reading " CA_CERT_FILE);
        as_error("pki: %s/%s is not a PEM certificate", dir, CA_CERT_FILE);
        r = AS_ERR_CONFIG;
        goto out;
    }
    bio = BIO_new_mem_buf(key_buf, (int)key_len);
    if (bio == NULL) {
        r = AS_ERR_NOMEM;
        goto out;
    }
    ca->key = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);
    if (ca->key == NULL) {
        log_ssl_errors("reading " CA_KEY_FILE);
        as_error("pki: %s/%s is not an unencrypted PEM private key", dir, CA_KEY_FILE);
        r = AS_ERR_CONFIG;
        goto out;
    }
    if (X509_check_private_key(ca->cert, ca->key) != 1) {
        ERR_clear_error();
        as_error("pki: %s/%s does not match the certificate in %s/%s", dir, CA_KEY_FILE, dir,
                 CA_CERT_FILE);
        r = AS_ERR_CONFIG;
        goto out;
    }
    if (X509_check_ca(ca->cert) != 1) {
        as_error("pki: %s/%s is not a CA certificate (RFC 5280 §4.2.1.9)", dir, CA_CERT_FILE);
        r = AS_ERR_CONFIG;
        goto out;
    }
    if (!cert_has_td_uri(ca->cert, td)) {
        as_error("pki: %s/%s is not a CA for trust domain %s (its SAN lacks exactly one URI "
                 "spiffe://%s); point data_dir elsewhere or fix trust_domain",
                 dir, CA_CERT_FILE, td, td);
        r = AS_ERR_CONFIG;
        goto out;
    }
    if ((r = ca_derive(ca)) != AS_OK) {
        goto out;
    }
    if (ca->not_after <= as_now()) {
        /* Loading still succeeds: rotation, not bootstrap, decides what replaces it. */
        as_warn("pki: the CA in %s/%s has expired", dir, CA_CERT_FILE);
    }
out:
    BIO_free(bio);
    if (key_buf != NULL) {
        as_wipe(key_buf, key_len);
        free(key_buf);
    }
    free(cert_buf);
    return r;
}

/*
 * Builds the self-signed CA certificate for td. Profile (SPIFFE X509-SVID §4.1, RFC 5280 §4.2):
 * v3, random serial, SHA-256, subject O=<td>, CN="authsvc CA <td> <UTC time> <8 hex>" so each
 * generation has a distinct subject (a relying party's chain building keys on the name),
 * basicConstraints critical CA:TRUE, keyUsage critical keyCertSign+cRLSign, SKID, AKID = SKID,
 * SAN URI spiffe://<td>.
 */
static enum as_err build_ca_cert(const char *td, int64_t ttl, EVP_PKEY *key, const EVP_MD *md,
                                 X509 **out)
{
    enum as_err r = AS_OK;
    X509 *x = NULL;
    ASN1_OCTET_STRING *skid = NULL;
    GENERAL_NAMES *gens = NULL;
    char *uri = NULL;
    int64_t now = as_now();

    if ((r = x509_new_v3(&x)) != AS_OK || (r = set_random_serial(x)) != AS_OK ||
        (r = set_validity(x, now - BACKDATE_SECS, now + ttl)) != AS_OK) {
        goto out;
    }

    char ts[CN_TIME_LEN];
    time_t t = (time_t)now;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(ts, sizeof ts, "%Y%m%d%H%M%SZ", &tm);
    unsigned char rnd[CN_RAND_BYTES];
    char hex[2 * CN_RAND_BYTES + 1];
    if ((r = as_rand_bytes(rnd, sizeof rnd)) != AS_OK) {
        goto out;
    }
    as_hex(rnd, sizeof rnd, hex);
    /* RFC 5280 Appendix A bounds CN and O at 64 characters. The time and the random suffix make
     * the subject distinct; the trust domain is shortened in the name to fit. The SAN URI, not
     * the subject, carries the full trust domain. */
    char cn[UB_NAME_LEN + 1];
    int fixed = (int)strlen("authsvc CA ") + 1 + (CN_TIME_LEN - 1) + 1 + 2 * CN_RAND_BYTES;
    snprintf(cn, sizeof cn, "authsvc CA %.*s %s %s", UB_NAME_LEN - fixed, td, ts, hex);
    char org[UB_NAME_LEN + 1];
    snprintf(org, sizeof org, "%.*s", UB_NAME_LEN, td);
    X509_NAME *name = X509_get_subject_name(x);
    if (X509_NAME_add_entry_by_NID(name, NID_organizationName, MBSTRING_UTF8,
                                   (const unsigned char *)org, -1, -1, 0) != 1 ||
        X509_NAME_add_entry_by_NID(name, NID_commonName, MBSTRING_UTF8, (const unsigned char *)cn,
                                   -1, -1, 0) != 1 ||
        X509_set_issuer_name(x, name) != 1) {
        log_ssl_errors("building the CA subject");
        r = AS_ERR_CRYPTO;
        goto out;
    }
    if (X509_set_pubkey(x, key) != 1) {
        log_ssl_errors("X509_set_pubkey");
        r = AS_ERR_CRYPTO;
        goto out;
    }

    static const int ku[] = {KU_BIT_KEY_CERT_SIGN, KU_BIT_CRL_SIGN};
    if ((r = add_basic_constraints(x, true)) != AS_OK ||
        (r = add_key_usage(x, ku, sizeof ku / sizeof ku[0])) != AS_OK ||
        (r = add_skid(x, &skid)) != AS_OK || (r = add_akid(x, skid)) != AS_OK) {
        goto out;
    }

    size_t urilen = strlen("spiffe://") + strlen(td);
    uri = malloc(urilen + 1);
    gens = sk_GENERAL_NAME_new_null();
    if (uri == NULL || gens == NULL) {
        r = AS_ERR_NOMEM;
        goto out;
    }
    snprintf(uri, urilen + 1, "spiffe://%s", td);
    if ((r = san_push(gens, GEN_URI, uri, urilen)) != AS_OK ||
        (r = add_ext(x, NID_subject_alt_name, gens, 0)) != AS_OK) {
        goto out;
    }

    if ((r = sign(x, key, md)) != AS_OK) {
        goto out;
    }
    *out = x;
    x = NULL;
out:
    X509_free(x);
    ASN1_OCTET_STRING_free(skid);
    GENERAL_NAMES_free(gens);
    free(uri);
    return r;
}

/* Creates a new CA and writes the key, then the certificate: a crash in between leaves a key
 * without a certificate, which the next start refuses rather than trusting a half-made CA. */
static enum as_err ca_create(int dirfd, const char *dir, const char *td, int64_t ttl,
                             struct as_ca *ca)
{
    enum as_err r = AS_OK;
    char *key_pem = NULL;
    size_t key_len = 0;
    bool key_written = false;

    if ((r = gen_p256(&ca->key)) != AS_OK ||
        (r = build_ca_cert(td, ttl, ca->key, ca->sha256, &ca->cert)) != AS_OK ||
        (r = ca_derive(ca)) != AS_OK || (r = key_to_pem(ca->key, &key_pem, &key_len)) != AS_OK) {
        goto out;
    }
    if ((r = write_file_atomic(dirfd, dir, CA_KEY_FILE, key_pem, key_len, 0600)) != AS_OK) {
        goto out;
    }
    key_written = true;
    if ((r = write_file_atomic(dirfd, dir, CA_CERT_FILE, ca->cert_pem, strlen(ca->cert_pem),
                               0644)) != AS_OK) {
        goto out;
    }
    key_written = false;
    as_info("pki: created a new CA for trust domain %s in %s/%s", td, dir, CA_CERT_FILE);
out:
    if (key_written) {
        /* The pair is incomplete or not durable: remove both (the certificate may have been
         * renamed into place before the directory fsync failed) so the next start creates a
         * new CA instead of refusing a half-present pair. */
        unlinkat(dirfd, CA_CERT_FILE, 0);
        if (unlinkat(dirfd, CA_KEY_FILE, 0) != 0 || fsync(dirfd) != 0) {
            as_error("pki: cannot remove %s/%s after a failed bootstrap: %s", dir, CA_KEY_FILE,
                     strerror(errno));
        }
    }
    if (key_pem != NULL) {
        as_wipe(key_pem, key_len);
        free(key_pem);
    }
    return r;
}

enum as_err as_ca_load_or_create(const char *dir, const char *trust_domain, int64_t ttl,
                                 struct as_ca **out, bool *created)
{
    enum as_err r = AS_OK;
    struct as_ca *ca = NULL;
    int dirfd = -1;
    bool have_cert = false;
    bool have_key = false;

    *out = NULL;
    *created = false;
    if (dir == NULL) {
        r = AS_ERR_CONFIG;
        goto out;
    }
    if (!trust_domain_valid(trust_domain)) {
        as_error("pki: invalid trust domain: expected 1 to %d bytes of [a-z0-9._-] without "
                 "empty labels",
                 TD_MAX_LEN);
        r = AS_ERR_CONFIG;
        goto out;
    }
    if (ttl <= 0 || ttl > PKI_MAX_TTL_SECS) {
        as_error("pki: invalid CA ttl %lld s: expected 1 s to 100 years", (long long)ttl);
        r = AS_ERR_CONFIG;
        goto out;
    }
    dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0) {
        as_error("pki: cannot open data dir %s: %s", dir, strerror(errno));
        r = AS_ERR_IO;
        goto out;
    }
    if ((r = file_present(dirfd, dir, CA_CERT_FILE, &have_cert)) != AS_OK ||
        (r = file_present(dirfd, dir, CA_KEY_FILE, &have_key)) != AS_OK) {
        goto out;
    }
    if (have_cert != have_key) {
        const char *here = have_cert ? CA_CERT_FILE : CA_KEY_FILE;
        const char *missing = have_cert ? CA_KEY_FILE : CA_CERT_FILE;
        as_error("pki: %s/%s exists but %s does not (an interrupted bootstrap or a lost file); "
                 "restore %s, or remove %s to create a new CA",
                 dir, here, missing, missing, here);
        r = AS_ERR_CONFIG;
        goto out;
    }
    if ((r = ca_alloc(&ca)) != AS_OK) {
        goto out;
    }
    if (have_cert) {
        if ((r = ca_load(dirfd, dir, trust_domain, ca)) != AS_OK) {
            goto out;
        }
    } else {
        if ((r = ca_create(dirfd, dir, trust_domain, ttl, ca)) != AS_OK) {
            goto out;
        }
        *created = true;
    }
    *out = ca;
    ca = NULL;
out:
    as_ca_free(ca);
    if (dirfd >= 0) {
        close(dirfd);
    }
    return r;
}

/* ---- the listener's certificate ---- */

/*
 * Leaf profile (RFC 5280 §4.2, CA/B-style TLS server): subject CN = first name (clients use the
 * SAN, RFC 6125 §6.4.4, so a name too long for a CN falls back to "authsvc"), SAN of DNS names
 * and IP addresses, basicConstraints critical CA:FALSE, keyUsage critical digitalSignature
 * (ECDHE with an ECDSA key needs nothing else), extKeyUsage serverAuth, SKID, AKID = CA SKID.
 */
static enum as_err build_server_cert(const struct as_ca *ca, const char *const *names, size_t n,
                                     int64_t not_after, EVP_PKEY *key, X509 **out)
{
    enum as_err r = AS_OK;
    X509 *x = NULL;
    GENERAL_NAMES *gens = NULL;
    int64_t now = as_now();

    if ((r = x509_new_v3(&x)) != AS_OK || (r = set_random_serial(x)) != AS_OK ||
        (r = set_validity(x, now - BACKDATE_SECS, not_after)) != AS_OK) {
        goto out;
    }
    const char *cn = n > 0 && strlen(names[0]) <= UB_NAME_LEN ? names[0] : "authsvc";
    if (X509_NAME_add_entry_by_NID(X509_get_subject_name(x), NID_commonName, MBSTRING_UTF8,
                                   (const unsigned char *)cn, -1, -1, 0) != 1 ||
        X509_set_issuer_name(x, X509_get_subject_name(ca->cert)) != 1 ||
        X509_set_pubkey(x, key) != 1) {
        log_ssl_errors("building the server certificate");
        r = AS_ERR_CRYPTO;
        goto out;
    }

    static const int ku[] = {KU_BIT_DIGITAL_SIGNATURE};
    if ((r = add_basic_constraints(x, false)) != AS_OK ||
        (r = add_key_usage(x, ku, sizeof ku / sizeof ku[0])) != AS_OK ||
        (r = add_eku_server_auth(x)) != AS_OK || (r = add_skid(x, NULL)) != AS_OK ||
        (r = add_akid(x, ca->skid)) != AS_OK) {
        goto out;
    }

    if (n > 0) {
        gens = sk_GENERAL_NAME_new_null();
        if (gens == NULL) {
            r = AS_ERR_NOMEM;
            goto out;
        }
        for (size_t i = 0; i < n; i++) {
            /* RFC 5280 §4.2.1.6: iPAddress is the address in network byte order, 4 or 16
             * octets; anything that is not an IP literal is a dNSName. */
            unsigned char ip[16];
            if (inet_pton(AF_INET, names[i], ip) == 1) {
                r = san_push(gens, GEN_IPADD, ip, 4);
            } else if (inet_pton(AF_INET6, names[i], ip) == 1) {
                r = san_push(gens, GEN_IPADD, ip, 16);
            } else {
                r = san_push(gens, GEN_DNS, names[i], strlen(names[i]));
            }
            if (r != AS_OK) {
                goto out;
            }
        }
        if ((r = add_ext(x, NID_subject_alt_name, gens, 0)) != AS_OK) {
            goto out;
        }
    }

    if ((r = sign(x, ca->key, ca->sha256)) != AS_OK) {
        goto out;
    }
    *out = x;
    x = NULL;
out:
    X509_free(x);
    GENERAL_NAMES_free(gens);
    return r;
}

enum as_err as_ca_issue_server_cert(const struct as_ca *ca, const char *const *names, size_t n,
                                    int64_t ttl, char **cert_pem, char **key_pem)
{
    enum as_err r = AS_OK;
    EVP_PKEY *key = NULL;
    X509 *x = NULL;
    char *leaf_pem = NULL;
    char *kpem = NULL;
    size_t kpem_len = 0;

    *cert_pem = NULL;
    *key_pem = NULL;
    if (ca == NULL || (n > 0 && names == NULL) || n > SERVER_CERT_MAX_NAMES || ttl <= 0) {
        r = AS_ERR_INVALID;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char ip[16];
        if (names[i] == NULL ||
            (inet_pton(AF_INET, names[i], ip) != 1 && inet_pton(AF_INET6, names[i], ip) != 1 &&
             !dns_name_valid(names[i]))) {
            as_error("pki: server certificate name %zu is neither a DNS name nor an IP address", i);
            r = AS_ERR_INVALID;
            goto out;
        }
    }
    int64_t now = as_now();
    if (ca->not_after <= now) {
        as_error("pki: cannot issue a server certificate: the CA has expired");
        r = AS_ERR_EXPIRED;
        goto out;
    }
    /* A certificate outliving its issuer would fail path validation (RFC 5280 §6.1.3 (a)(2)). */
    int64_t not_after = ttl < ca->not_after - now ? now + ttl : ca->not_after;

    if ((r = gen_p256(&key)) != AS_OK ||
        (r = build_server_cert(ca, names, n, not_after, key, &x)) != AS_OK ||
        (r = cert_to_pem(x, &leaf_pem)) != AS_OK) {
        goto out;
    }
    if (!ca->self_signed) {
        /* An intermediate CA: the peer needs the chain up to its root. A self-signed root is
         * left out; the client must already trust it (RFC 8446 §4.4.2). */
        size_t a = strlen(leaf_pem);
        size_t b = strlen(ca->chain_pem);
        char *both = realloc(leaf_pem, a + b + 1);
        if (both == NULL) {
            r = AS_ERR_NOMEM;
            goto out;
        }
        memcpy(both + a, ca->chain_pem, b + 1);
        leaf_pem = both;
    }
    if ((r = key_to_pem(key, &kpem, &kpem_len)) != AS_OK) {
        goto out;
    }
    *cert_pem = leaf_pem;
    leaf_pem = NULL;
    *key_pem = kpem;
    kpem = NULL;
out:
    EVP_PKEY_free(key);
    X509_free(x);
    free(leaf_pem);
    if (kpem != NULL) {
        as_wipe(kpem, kpem_len);
        free(kpem);
    }
    return r;
}
