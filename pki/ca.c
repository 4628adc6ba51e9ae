/*
 * ca.c: authsvc's certificate authority (pki.h). Creates, saves and loads ECDSA P-256 CA
 * generations kept in the data dir, self-signed or issued by an upstream CA (pki/upstream.c adds
 * the upstream chain), and issues the HTTPS listener's certificate. The helpers that pki/svid.c
 * and pki/upstream.c share are declared in pki/pki_internal.h.
 *
 * Only pki/ touches a CA private key. On disk, per generation: <base>.pem (the certificate, 0644)
 * and <base>-key.pem (PKCS#8 PEM, 0600; unencrypted until the config's ca.kek_file is
 * implemented). The first generation has base "ca".
 *
 * Certificates are built from OpenSSL's extension structures rather than from config strings:
 * names that reach a SAN never pass through a string parser where a comma could add an entry.
 */
#include "pki/pki.h"
#include "pki/pki_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

/* The first CA generation's base name: ca.pem and ca-key.pem. */
#define CA_FIRST_BASE "ca"
#define CA_CERT_SUFFIX ".pem"
#define CA_KEY_SUFFIX "-key.pem"
/* A generation's base name: short, one path component, never hidden (temp files start with '.'). */
#define CA_BASE_MAX_LEN 64
#define CA_FILE_NAME_LEN (CA_BASE_MAX_LEN + sizeof CA_KEY_SUFFIX)
/* A PEM certificate or P-256 key is about 1 KiB; a file near this cap is not ours. */
#define PKI_MAX_FILE_BYTES (64 * 1024)
/* SPIFFE-ID §2.3: a trust domain is at most 255 bytes. */
#define TD_MAX_LEN AS_SPIFFE_MAX_TD
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

/* ---- small helpers ---- */

/* Logs what failed and drains OpenSSL's error queue, so a stale error never blames a later call. */
void as_pki_log_ssl_errors(const char *what)
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

/* SPIFFE-ID §2.1, §2.3 (the rules live in pki/spiffe.c, shared with SPIFFE ID checks). */
static bool trust_domain_valid(const char *td)
{
    return td != NULL && as_pki_td_problem(td, strnlen(td, TD_MAX_LEN + 1)) == NULL;
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

enum as_err as_pki_asn1_time_to_unix(const ASN1_TIME *t, int64_t *out)
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
void as_pki_bio_free_wiped(BIO *bio)
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
enum as_err as_pki_bio_take_string(BIO **bio, bool secret, char **out, size_t *outlen)
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
        as_pki_bio_free_wiped(*bio);
    } else {
        BIO_free(*bio);
    }
    *bio = NULL;
    return r;
}

enum as_err as_pki_cert_to_pem(X509 *x, char **out)
{
    BIO *bio = BIO_new(BIO_s_mem());
    if (bio == NULL) {
        return AS_ERR_NOMEM;
    }
    if (PEM_write_bio_X509(bio, x) != 1) {
        as_pki_log_ssl_errors("PEM_write_bio_X509");
        BIO_free(bio);
        return AS_ERR_CRYPTO;
    }
    return as_pki_bio_take_string(&bio, false, out, NULL);
}

/* PEM_write_bio_PrivateKey writes PKCS#8 ("BEGIN PRIVATE KEY") in OpenSSL 3, which GnuTLS reads.
 * The caller wipes *out (*outlen bytes). */
enum as_err as_pki_key_to_pem(EVP_PKEY *key, char **out, size_t *outlen)
{
    BIO *bio = BIO_new(BIO_s_mem());
    if (bio == NULL) {
        return AS_ERR_NOMEM;
    }
    if (PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL) != 1) {
        as_pki_log_ssl_errors("PEM_write_bio_PrivateKey");
        /* A failure may come after part of the key was written. */
        as_pki_bio_free_wiped(bio);
        return AS_ERR_CRYPTO;
    }
    return as_pki_bio_take_string(&bio, true, out, outlen);
}

enum as_err as_pki_gen_p256(EVP_PKEY **out)
{
    *out = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    if (*out == NULL) {
        as_pki_log_ssl_errors("P-256 key generation");
        return AS_ERR_CRYPTO;
    }
    return AS_OK;
}

/* RFC 5280 §4.1.2.2: unique, positive, at most 20 octets. 128 random bits with the top bit
 * cleared stay positive in 16 DER content octets; zero is drawn again. */
enum as_err as_pki_random_serial(ASN1_INTEGER *dst, unsigned char *mag, size_t *maglen)
{
    enum as_err r = AS_OK;
    unsigned char b[AS_PKI_SERIAL_BYTES];
    size_t skip = 0;
    BIGNUM *bn = NULL;
    do {
        if ((r = as_rand_bytes(b, sizeof b)) != AS_OK) {
            goto out;
        }
        b[0] &= 0x7f;
        skip = 0;
        while (skip < sizeof b && b[skip] == 0) {
            skip++;
        }
    } while (skip == sizeof b);
    bn = BN_bin2bn(b + skip, (int)(sizeof b - skip), NULL);
    if (bn == NULL) {
        r = AS_ERR_NOMEM;
        goto out;
    }
    if (BN_to_ASN1_INTEGER(bn, dst) == NULL) {
        as_pki_log_ssl_errors("BN_to_ASN1_INTEGER");
        r = AS_ERR_CRYPTO;
        goto out;
    }
    if (mag != NULL) {
        memcpy(mag, b + skip, sizeof b - skip);
        *maglen = sizeof b - skip;
    }
out:
    BN_free(bn);
    return r;
}

static enum as_err set_random_serial(X509 *x)
{
    return as_pki_random_serial(X509_get_serialNumber(x), NULL, NULL);
}

/* ASN1_TIME_set picks UTCTime before 2050 and GeneralizedTime after, as RFC 5280 §4.1.2.5
 * requires. */
enum as_err as_pki_set_validity(X509 *x, int64_t not_before, int64_t not_after)
{
    if (ASN1_TIME_set(X509_getm_notBefore(x), (time_t)not_before) == NULL ||
        ASN1_TIME_set(X509_getm_notAfter(x), (time_t)not_after) == NULL) {
        as_pki_log_ssl_errors("ASN1_TIME_set");
        return AS_ERR_CRYPTO;
    }
    return AS_OK;
}

static enum as_err add_ext(X509 *x, int nid, void *value, int crit)
{
    if (X509_add1_ext_i2d(x, nid, value, crit, X509V3_ADD_DEFAULT) != 1) {
        as_pki_log_ssl_errors(OBJ_nid2sn(nid));
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
enum {
    KU_BIT_DIGITAL_SIGNATURE = 0,
    KU_BIT_KEY_ENCIPHERMENT = 2,
    KU_BIT_KEY_CERT_SIGN = 5,
    KU_BIT_CRL_SIGN = 6
};

/* Encodes value as extension nid into *out. */
static enum as_err ext_new(int nid, int crit, void *value, X509_EXTENSION **out)
{
    *out = X509V3_EXT_i2d(nid, crit, value);
    if (*out == NULL) {
        as_pki_log_ssl_errors(OBJ_nid2sn(nid));
        return AS_ERR_CRYPTO;
    }
    return AS_OK;
}

static enum as_err ku_ext_new(const int *bits, size_t n, X509_EXTENSION **out)
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
    /* RFC 5280 §4.2.1.3: conforming CAs mark keyUsage critical. */
    r = ext_new(NID_key_usage, 1, ku, out);
out:
    ASN1_BIT_STRING_free(ku);
    return r;
}

static enum as_err add_key_usage(X509 *x, const int *bits, size_t n)
{
    X509_EXTENSION *ext = NULL;
    enum as_err r = ku_ext_new(bits, n, &ext);
    if (r == AS_OK && X509_add_ext(x, ext, -1) != 1) {
        as_pki_log_ssl_errors("keyUsage");
        r = AS_ERR_CRYPTO;
    }
    X509_EXTENSION_free(ext);
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
        as_pki_log_ssl_errors("X509_pubkey_digest");
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
enum as_err as_pki_san_push(GENERAL_NAMES *gens, int type, const void *data, size_t len)
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

enum as_err as_pki_x509_new_v3(X509 **out)
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
        as_pki_log_ssl_errors("X509_sign");
        return AS_ERR_CRYPTO;
    }
    return AS_OK;
}

/* A copy of the CA's DigestSign template, for one signature. */
static enum as_err sign_ctx_copy(const struct as_ca *ca, EVP_MD_CTX **out)
{
    *out = EVP_MD_CTX_new();
    if (*out == NULL) {
        return AS_ERR_NOMEM;
    }
    if (EVP_MD_CTX_copy_ex(*out, ca->sign_tmpl) != 1) {
        as_pki_log_ssl_errors("EVP_MD_CTX_copy_ex");
        EVP_MD_CTX_free(*out);
        *out = NULL;
        return AS_ERR_CRYPTO;
    }
    return AS_OK;
}

enum as_err as_pki_sign_x509(const struct as_ca *ca, X509 *x)
{
    EVP_MD_CTX *ctx = NULL;
    enum as_err r = sign_ctx_copy(ca, &ctx);
    /* X509_sign_ctx returns the signature length, 0 on error. */
    if (r == AS_OK && X509_sign_ctx(x, ctx) <= 0) {
        as_pki_log_ssl_errors("X509_sign_ctx");
        r = AS_ERR_CRYPTO;
    }
    EVP_MD_CTX_free(ctx);
    return r;
}

enum as_err as_pki_sign_crl(const struct as_ca *ca, X509_CRL *crl)
{
    EVP_MD_CTX *ctx = NULL;
    enum as_err r = sign_ctx_copy(ca, &ctx);
    if (r == AS_OK && X509_CRL_sign_ctx(crl, ctx) <= 0) {
        as_pki_log_ssl_errors("X509_CRL_sign_ctx");
        r = AS_ERR_CRYPTO;
    }
    EVP_MD_CTX_free(ctx);
    return r;
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
    /* "." name "." 16 hex ".tmp" NUL; names are at most CA_FILE_NAME_LEN. */
    char tmp[CA_FILE_NAME_LEN + 32];
    int fd = -1;
    bool created = false;
    unsigned char rnd[8];
    char hex[2 * sizeof rnd + 1];
    if ((r = as_rand_bytes(rnd, sizeof rnd)) != AS_OK) {
        goto out;
    }
    as_hex(rnd, sizeof rnd, hex);
    if ((size_t)snprintf(tmp, sizeof tmp, ".%s.%s.tmp", name, hex) >= sizeof tmp) {
        r = AS_ERR_INTERNAL;
        goto out;
    }
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
        /* A missing file is for the caller to judge (it may create one); other errors are not. */
        if (errno == ENOENT) {
            as_debug("pki: %s/%s does not exist", dir, name);
            r = AS_ERR_NOT_FOUND;
            goto out;
        }
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

/*
 * read_file_at for a path from config. The directory part is opened O_PATH, which needs only the
 * search permission a plain open of the path needs too (a key under /etc/ssl/private, mode 0710,
 * stays readable to its group), and the logs name the path as given.
 */
enum as_err as_pki_read_file(const char *path, bool is_key, char **out, size_t *outlen)
{
    enum as_err r = AS_OK;
    char dir[PATH_MAX];
    int dirfd = -1;
    const char *slash = path != NULL ? strrchr(path, '/') : NULL;
    const char *name = slash != NULL ? slash + 1 : path;

    if (path == NULL || name[0] == '\0') {
        as_error("pki: no file name in \"%s\"", path != NULL ? path : "");
        r = AS_ERR_CONFIG;
        goto out;
    }
    if (slash == NULL) {
        snprintf(dir, sizeof dir, ".");
        dirfd = AT_FDCWD;
    } else {
        size_t dlen = (size_t)(slash - path);
        if (dlen >= sizeof dir) {
            as_error("pki: path too long: %.64s...", path);
            r = AS_ERR_CONFIG;
            goto out;
        }
        /* "/k.pem" is shown as dir "" and name "k.pem", that is as "/k.pem". */
        memcpy(dir, path, dlen);
        dir[dlen] = '\0';
        dirfd = open(dlen > 0 ? dir : "/", O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (dirfd < 0) {
            as_error("pki: cannot open the directory of %s: %s", path, strerror(errno));
            r = AS_ERR_IO;
            goto out;
        }
    }
    r = read_file_at(dirfd, dir, name, is_key, out, outlen);
out:
    if (dirfd >= 0) {
        close(dirfd);
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
    /* EVP_PKEY_free clears the private scalar (BN_clear_free in the EC key). The signing
     * template holds a reference to the key and goes first. */
    EVP_MD_CTX_free(ca->sign_tmpl);
    EVP_PKEY_free(ca->key);
    EVP_MD_free(ca->sha256);
    EVP_MD_free(ca->sha1);
    ASN1_OCTET_STRING_free(ca->skid);
    X509_EXTENSION_free(ca->ext_leaf_bc);
    X509_EXTENSION_free(ca->ext_ku_ec);
    X509_EXTENSION_free(ca->ext_ku_rsa);
    X509_EXTENSION_free(ca->ext_eku_svid);
    X509_EXTENSION_free(ca->ext_akid);
    free(ca->cert_pem);
    free(ca->cert_der);
    free(ca->chain_pem);
    free(ca->intermediates_pem);
    free(ca->subject);
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

int64_t as_ca_not_before(const struct as_ca *ca)
{
    return ca->not_before;
}

const char *as_ca_subject(const struct as_ca *ca)
{
    return ca->subject;
}

static enum as_err ca_alloc(struct as_ca **out)
{
    struct as_ca *ca = calloc(1, sizeof *ca);
    if (ca == NULL) {
        return AS_ERR_NOMEM;
    }
    ca->sha256 = EVP_MD_fetch(NULL, "SHA2-256", NULL);
    ca->sha1 = EVP_MD_fetch(NULL, "SHA1", NULL);
    if (ca->sha256 == NULL || ca->sha1 == NULL) {
        as_pki_log_ssl_errors("EVP_MD_fetch");
        as_ca_free(ca);
        return AS_ERR_CRYPTO;
    }
    *out = ca;
    return AS_OK;
}

/*
 * The extensions every X.509-SVID and CRL of this CA carries, encoded once (PERF-NOTES trap 1):
 * SPIFFE X509-SVID §4.1-4.4 and RFC 5280 §4.2.1.1, §4.2.1.9, §4.2.1.12.
 */
static enum as_err build_constant_extensions(struct as_ca *ca)
{
    enum as_err r = AS_OK;
    BASIC_CONSTRAINTS *bc = BASIC_CONSTRAINTS_new();
    EXTENDED_KEY_USAGE *eku = sk_ASN1_OBJECT_new_null();
    AUTHORITY_KEYID *akid = AUTHORITY_KEYID_new();
    static const int ku_ec[] = {KU_BIT_DIGITAL_SIGNATURE};
    /* keyEncipherment only where the key can encipher: RSA (SPIFFE X509-SVID §4.3). */
    static const int ku_rsa[] = {KU_BIT_DIGITAL_SIGNATURE, KU_BIT_KEY_ENCIPHERMENT};

    if (bc == NULL || eku == NULL || akid == NULL ||
        sk_ASN1_OBJECT_push(eku, OBJ_nid2obj(NID_server_auth)) <= 0 ||
        sk_ASN1_OBJECT_push(eku, OBJ_nid2obj(NID_client_auth)) <= 0 ||
        (akid->keyid = ASN1_OCTET_STRING_dup(ca->skid)) == NULL) {
        r = AS_ERR_NOMEM;
        goto out;
    }
    bc->ca = 0;
    if ((r = ext_new(NID_basic_constraints, 1, bc, &ca->ext_leaf_bc)) != AS_OK ||
        (r = ku_ext_new(ku_ec, sizeof ku_ec / sizeof ku_ec[0], &ca->ext_ku_ec)) != AS_OK ||
        (r = ku_ext_new(ku_rsa, sizeof ku_rsa / sizeof ku_rsa[0], &ca->ext_ku_rsa)) != AS_OK ||
        (r = ext_new(NID_ext_key_usage, 0, eku, &ca->ext_eku_svid)) != AS_OK ||
        (r = ext_new(NID_authority_key_identifier, 0, akid, &ca->ext_akid)) != AS_OK) {
        goto out;
    }
out:
    BASIC_CONSTRAINTS_free(bc);
    /* OBJ_nid2obj returns static objects; ASN1_OBJECT_free leaves them alone. */
    sk_ASN1_OBJECT_pop_free(eku, ASN1_OBJECT_free);
    AUTHORITY_KEYID_free(akid);
    return r;
}

/* The one-line RFC 2253 form of the CA's subject, for logs. */
static enum as_err subject_string(X509 *x, char **out)
{
    BIO *bio = BIO_new(BIO_s_mem());
    if (bio == NULL) {
        return AS_ERR_NOMEM;
    }
    if (X509_NAME_print_ex(bio, X509_get_subject_name(x), 0, XN_FLAG_RFC2253) < 0) {
        as_pki_log_ssl_errors("X509_NAME_print_ex");
        BIO_free(bio);
        return AS_ERR_CRYPTO;
    }
    return as_pki_bio_take_string(&bio, false, out, NULL);
}

/*
 * The key identifier the certificates issued by x carry in their AKID (RFC 5280 §4.2.1.1): x's
 * SKID, or, for a CA from elsewhere that lacks one, the SHA-1 of its subjectPublicKey (method (1)
 * of §4.2.1.2, as for our own).
 */
enum as_err as_pki_skid_of(X509 *x, const EVP_MD *sha1, ASN1_OCTET_STRING **out)
{
    const ASN1_OCTET_STRING *skid = X509_get0_subject_key_id(x);
    if (skid != NULL) {
        *out = ASN1_OCTET_STRING_dup(skid);
        return *out != NULL ? AS_OK : AS_ERR_NOMEM;
    }
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (X509_pubkey_digest(x, sha1, md, &mdlen) != 1) {
        as_pki_log_ssl_errors("X509_pubkey_digest");
        return AS_ERR_CRYPTO;
    }
    *out = ASN1_OCTET_STRING_new();
    if (*out == NULL || ASN1_OCTET_STRING_set(*out, md, (int)mdlen) != 1) {
        ASN1_OCTET_STRING_free(*out);
        *out = NULL;
        return AS_ERR_NOMEM;
    }
    return AS_OK;
}

/* Fills what is derived from ca->cert and ca->key: PEM, DER, chain, subject, validity, SKID,
 * is_root, the signing template and the constant extensions. */
static enum as_err ca_derive(struct as_ca *ca)
{
    enum as_err r = AS_OK;
    int n = i2d_X509(ca->cert, NULL);
    if (n <= 0) {
        as_pki_log_ssl_errors("i2d_X509");
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
    if ((r = as_pki_cert_to_pem(ca->cert, &ca->cert_pem)) != AS_OK ||
        (r = subject_string(ca->cert, &ca->subject)) != AS_OK) {
        goto out;
    }
    /* The chain as far as this certificate knows it: the CA alone. Under an upstream CA,
     * pki/upstream.c appends the upstream chain to both. */
    ca->is_root = (X509_get_extension_flags(ca->cert) & EXFLAG_SS) != 0;
    ca->chain_pem = strdup(ca->cert_pem);
    if (ca->chain_pem == NULL) {
        r = AS_ERR_NOMEM;
        goto out;
    }
    if (!ca->is_root) {
        ca->intermediates_pem = strdup(ca->cert_pem);
        if (ca->intermediates_pem == NULL) {
            r = AS_ERR_NOMEM;
            goto out;
        }
    }
    if ((r = as_pki_asn1_time_to_unix(X509_get0_notAfter(ca->cert), &ca->not_after)) != AS_OK ||
        (r = as_pki_asn1_time_to_unix(X509_get0_notBefore(ca->cert), &ca->not_before)) != AS_OK) {
        as_error("pki: cannot read the CA certificate's validity");
        goto out;
    }
    if ((r = as_pki_skid_of(ca->cert, ca->sha1, &ca->skid)) != AS_OK) {
        goto out;
    }
    ca->sign_tmpl = EVP_MD_CTX_new();
    if (ca->sign_tmpl == NULL) {
        r = AS_ERR_NOMEM;
        goto out;
    }
    if (EVP_DigestSignInit(ca->sign_tmpl, NULL, ca->sha256, NULL, ca->key) != 1) {
        as_pki_log_ssl_errors("EVP_DigestSignInit");
        r = AS_ERR_CRYPTO;
        goto out;
    }
    r = build_constant_extensions(ca);
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
int as_pki_no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1;
}

/* The two file names of a generation. */
struct ca_files {
    char cert[CA_FILE_NAME_LEN];
    char key[CA_FILE_NAME_LEN];
};

/* A base is one path component of [A-Za-z0-9._-], 1..64 bytes, not starting with '.' (so never
 * "." or "..", and never one of our hidden temp files). */
static enum as_err ca_files_of(const char *base, struct ca_files *f)
{
    size_t len = base != NULL ? strnlen(base, CA_BASE_MAX_LEN + 1) : 0;
    bool ok = len > 0 && len <= CA_BASE_MAX_LEN && base[0] != '.';
    for (size_t i = 0; ok && i < len; i++) {
        char c = base[i];
        ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
             c == '.' || c == '-' || c == '_';
    }
    if (!ok) {
        as_error("pki: invalid CA file base name: expected 1 to %d bytes of [A-Za-z0-9._-] not "
                 "starting with a dot",
                 CA_BASE_MAX_LEN);
        return AS_ERR_INVALID;
    }
    snprintf(f->cert, sizeof f->cert, "%s" CA_CERT_SUFFIX, base);
    snprintf(f->key, sizeof f->key, "%s" CA_KEY_SUFFIX, base);
    return AS_OK;
}

/* Parses the two files and checks they form a CA for td. Every refusal says why in the log. */
static enum as_err ca_load(int dirfd, const char *dir, const char *td, const struct ca_files *f,
                           struct as_ca *ca)
{
    enum as_err r = AS_OK;
    char *cert_buf = NULL;
    char *key_buf = NULL;
    size_t cert_len = 0;
    size_t key_len = 0;
    BIO *bio = NULL;

    /* The key first: its mode check must not wait on a certificate that fails to parse. */
    if ((r = read_file_at(dirfd, dir, f->key, true, &key_buf, &key_len)) != AS_OK) {
        goto out;
    }
    if ((r = read_file_at(dirfd, dir, f->cert, false, &cert_buf, &cert_len)) != AS_OK) {
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
        as_pki_log_ssl_errors(f->cert);
        as_error("pki: %s/%s is not a PEM certificate", dir, f->cert);
        r = AS_ERR_CONFIG;
        goto out;
    }
    bio = BIO_new_mem_buf(key_buf, (int)key_len);
    if (bio == NULL) {
        r = AS_ERR_NOMEM;
        goto out;
    }
    ca->key = PEM_read_bio_PrivateKey(bio, NULL, as_pki_no_passphrase, NULL);
    if (ca->key == NULL) {
        as_pki_log_ssl_errors(f->key);
        as_error("pki: %s/%s is not an unencrypted PEM private key", dir, f->key);
        r = AS_ERR_CONFIG;
        goto out;
    }
    if (X509_check_private_key(ca->cert, ca->key) != 1) {
        ERR_clear_error();
        as_error("pki: %s/%s does not match the certificate in %s/%s", dir, f->key, dir, f->cert);
        r = AS_ERR_CONFIG;
        goto out;
    }
    if (X509_check_ca(ca->cert) != 1) {
        as_error("pki: %s/%s is not a CA certificate (RFC 5280 §4.2.1.9)", dir, f->cert);
        r = AS_ERR_CONFIG;
        goto out;
    }
    if (!cert_has_td_uri(ca->cert, td)) {
        as_error("pki: %s/%s is not a CA for trust domain %s (its SAN lacks exactly one URI "
                 "spiffe://%s); point data_dir elsewhere or fix trust_domain",
                 dir, f->cert, td, td);
        r = AS_ERR_CONFIG;
        goto out;
    }
    snprintf(ca->td, sizeof ca->td, "%s", td);
    if ((r = ca_derive(ca)) != AS_OK) {
        goto out;
    }
    if (ca->not_after <= as_now()) {
        /* Loading still succeeds: rotation, not bootstrap, decides what replaces it. */
        as_warn("pki: the CA in %s/%s has expired", dir, f->cert);
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
 * Builds the CA certificate for td, self-signed when iss is NULL, else issued by iss. Profile
 * (SPIFFE X509-SVID §4.1, RFC 5280 §4.2): v3, random serial, SHA-256, subject O=<td>,
 * CN="authsvc CA <td> <UTC time> <8 hex>" so each generation has a distinct subject (a relying
 * party's chain building keys on the name), basicConstraints critical CA:TRUE, keyUsage critical
 * keyCertSign+cRLSign, SKID, AKID = the issuer's SKID (our own when self-signed), SAN URI
 * spiffe://<td>.
 */
static enum as_err build_ca_cert(const char *td, int64_t ttl, EVP_PKEY *key, const EVP_MD *md,
                                 const struct as_pki_issuer *iss, X509 **out)
{
    enum as_err r = AS_OK;
    X509 *x = NULL;
    ASN1_OCTET_STRING *skid = NULL;
    GENERAL_NAMES *gens = NULL;
    char *uri = NULL;
    int64_t now = as_now();
    /* RFC 5280 §6.1.3 (a)(2): a CA outliving its issuer fails path validation from then on. */
    int64_t not_after = iss != NULL && iss->not_after < now + ttl ? iss->not_after : now + ttl;

    if (not_after <= now) {
        as_error("pki: cannot issue a CA certificate: its issuer has expired");
        r = AS_ERR_EXPIRED;
        goto out;
    }
    if ((r = as_pki_x509_new_v3(&x)) != AS_OK || (r = set_random_serial(x)) != AS_OK ||
        (r = as_pki_set_validity(x, now - BACKDATE_SECS, not_after)) != AS_OK) {
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
        X509_set_issuer_name(x, iss != NULL ? X509_get_subject_name(iss->cert) : name) != 1) {
        as_pki_log_ssl_errors("building the CA subject");
        r = AS_ERR_CRYPTO;
        goto out;
    }
    if (X509_set_pubkey(x, key) != 1) {
        as_pki_log_ssl_errors("X509_set_pubkey");
        r = AS_ERR_CRYPTO;
        goto out;
    }

    static const int ku[] = {KU_BIT_KEY_CERT_SIGN, KU_BIT_CRL_SIGN};
    if ((r = add_basic_constraints(x, true)) != AS_OK ||
        (r = add_key_usage(x, ku, sizeof ku / sizeof ku[0])) != AS_OK ||
        (r = add_skid(x, &skid)) != AS_OK ||
        (r = add_akid(x, iss != NULL ? iss->skid : skid)) != AS_OK) {
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
    if ((r = as_pki_san_push(gens, GEN_URI, uri, urilen)) != AS_OK ||
        (r = add_ext(x, NID_subject_alt_name, gens, 0)) != AS_OK) {
        goto out;
    }

    if ((r = sign(x, iss != NULL ? iss->key : key, md)) != AS_OK) {
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

/* The checks shared by every entry point that names a trust domain (and a ttl, when not 0). */
static enum as_err check_td_ttl(const char *td, bool with_ttl, int64_t ttl)
{
    if (!trust_domain_valid(td)) {
        as_error("pki: invalid trust domain: expected 1 to %d bytes of [a-z0-9._-] without "
                 "empty labels",
                 TD_MAX_LEN);
        return AS_ERR_CONFIG;
    }
    if (with_ttl && (ttl <= 0 || ttl > PKI_MAX_TTL_SECS)) {
        as_error("pki: invalid CA ttl %lld s: expected 1 s to 100 years", (long long)ttl);
        return AS_ERR_CONFIG;
    }
    return AS_OK;
}

enum as_err as_pki_ca_generate(const char *trust_domain, int64_t ttl,
                               const struct as_pki_issuer *iss, struct as_ca **out)
{
    enum as_err r = AS_OK;
    struct as_ca *ca = NULL;

    *out = NULL;
    if ((r = check_td_ttl(trust_domain, true, ttl)) != AS_OK || (r = ca_alloc(&ca)) != AS_OK) {
        goto out;
    }
    snprintf(ca->td, sizeof ca->td, "%s", trust_domain);
    if ((r = as_pki_gen_p256(&ca->key)) != AS_OK ||
        (r = build_ca_cert(trust_domain, ttl, ca->key, ca->sha256, iss, &ca->cert)) != AS_OK ||
        (r = ca_derive(ca)) != AS_OK) {
        goto out;
    }
    *out = ca;
    ca = NULL;
out:
    as_ca_free(ca);
    return r;
}

enum as_err as_ca_generate(const char *trust_domain, int64_t ttl, struct as_ca **out)
{
    return as_pki_ca_generate(trust_domain, ttl, NULL, out);
}

/*
 * Writes the key, then the certificate: a crash in between leaves a key without a certificate,
 * which every load refuses rather than trusting a half-made CA. On failure after the key is in
 * place both names are removed, so a retry starts from nothing.
 */
static enum as_err save_pair(int dirfd, const char *dir, const struct ca_files *f,
                             const struct as_ca *ca)
{
    enum as_err r = AS_OK;
    char *key_pem = NULL;
    size_t key_len = 0;
    bool key_written = false;

    if ((r = as_pki_key_to_pem(ca->key, &key_pem, &key_len)) != AS_OK) {
        goto out;
    }
    if ((r = write_file_atomic(dirfd, dir, f->key, key_pem, key_len, 0600)) != AS_OK) {
        goto out;
    }
    key_written = true;
    if ((r = write_file_atomic(dirfd, dir, f->cert, ca->cert_pem, strlen(ca->cert_pem), 0644)) !=
        AS_OK) {
        goto out;
    }
    key_written = false;
out:
    if (key_written) {
        /* The pair is incomplete or not durable: the certificate may have been renamed into
         * place before the directory fsync failed. */
        unlinkat(dirfd, f->cert, 0);
        if (unlinkat(dirfd, f->key, 0) != 0 || fsync(dirfd) != 0) {
            as_error("pki: cannot remove %s/%s after a failed write: %s", dir, f->key,
                     strerror(errno));
        }
    }
    if (key_pem != NULL) {
        as_wipe(key_pem, key_len);
        free(key_pem);
    }
    return r;
}

static enum as_err open_dir(const char *dir, int *fd)
{
    *fd = -1;
    if (dir == NULL) {
        as_error("pki: no CA directory given");
        return AS_ERR_CONFIG;
    }
    *fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (*fd < 0) {
        as_error("pki: cannot open data dir %s: %s", dir, strerror(errno));
        return AS_ERR_IO;
    }
    return AS_OK;
}

enum as_err as_ca_save(const struct as_ca *ca, const char *dir, const char *base)
{
    enum as_err r = AS_OK;
    struct ca_files f;
    int dirfd = -1;

    if (ca == NULL) {
        r = AS_ERR_INVALID;
        goto out;
    }
    if ((r = ca_files_of(base, &f)) != AS_OK || (r = open_dir(dir, &dirfd)) != AS_OK ||
        (r = save_pair(dirfd, dir, &f, ca)) != AS_OK) {
        goto out;
    }
out:
    if (dirfd >= 0) {
        close(dirfd);
    }
    return r;
}

/*
 * Checks that both files of a generation are present. Both absent is AS_ERR_NOT_FOUND (nothing
 * logged above debug: the caller decides whether that is normal); one without the other is
 * AS_ERR_CONFIG, because guessing would either trust a half-made CA or overwrite a key.
 */
static enum as_err pair_present(int dirfd, const char *dir, const struct ca_files *f)
{
    enum as_err r = AS_OK;
    bool have_cert = false;
    bool have_key = false;
    if ((r = file_present(dirfd, dir, f->cert, &have_cert)) != AS_OK ||
        (r = file_present(dirfd, dir, f->key, &have_key)) != AS_OK) {
        return r;
    }
    if (!have_cert && !have_key) {
        as_debug("pki: no CA in %s/%s", dir, f->cert);
        return AS_ERR_NOT_FOUND;
    }
    if (have_cert != have_key) {
        const char *here = have_cert ? f->cert : f->key;
        const char *missing = have_cert ? f->key : f->cert;
        as_error("pki: %s/%s exists but %s does not (an interrupted bootstrap or a lost file); "
                 "restore %s, or remove %s to create a new CA",
                 dir, here, missing, missing, here);
        return AS_ERR_CONFIG;
    }
    return AS_OK;
}

/* Loads the generation named by f from the open directory; *out is set only on success. */
static enum as_err load_at(int dirfd, const char *dir, const struct ca_files *f, const char *td,
                           struct as_ca **out)
{
    enum as_err r = AS_OK;
    struct as_ca *ca = NULL;
    if ((r = ca_alloc(&ca)) != AS_OK || (r = ca_load(dirfd, dir, td, f, ca)) != AS_OK) {
        goto out;
    }
    *out = ca;
    ca = NULL;
out:
    as_ca_free(ca);
    return r;
}

enum as_err as_ca_load(const char *dir, const char *base, const char *trust_domain,
                       struct as_ca **out)
{
    enum as_err r = AS_OK;
    struct ca_files f;
    int dirfd = -1;

    *out = NULL;
    if ((r = ca_files_of(base, &f)) != AS_OK ||
        (r = check_td_ttl(trust_domain, false, 0)) != AS_OK ||
        (r = open_dir(dir, &dirfd)) != AS_OK || (r = pair_present(dirfd, dir, &f)) != AS_OK ||
        (r = load_at(dirfd, dir, &f, trust_domain, out)) != AS_OK) {
        goto out;
    }
out:
    if (dirfd >= 0) {
        close(dirfd);
    }
    return r;
}

enum as_err as_ca_load_or_create(const char *dir, const char *trust_domain, int64_t ttl,
                                 struct as_ca **out, bool *created)
{
    enum as_err r = AS_OK;
    struct as_ca *ca = NULL;
    struct ca_files f;
    int dirfd = -1;

    *out = NULL;
    *created = false;
    if ((r = ca_files_of(CA_FIRST_BASE, &f)) != AS_OK ||
        (r = check_td_ttl(trust_domain, true, ttl)) != AS_OK ||
        (r = open_dir(dir, &dirfd)) != AS_OK) {
        goto out;
    }
    r = pair_present(dirfd, dir, &f);
    if (r == AS_OK) {
        r = load_at(dirfd, dir, &f, trust_domain, out);
        goto out;
    }
    if (r != AS_ERR_NOT_FOUND) {
        goto out;
    }
    if ((r = as_ca_generate(trust_domain, ttl, &ca)) != AS_OK ||
        (r = save_pair(dirfd, dir, &f, ca)) != AS_OK) {
        goto out;
    }
    as_info("pki: created a new CA for trust domain %s in %s/%s", trust_domain, dir, f.cert);
    *created = true;
    *out = ca;
    ca = NULL;
out:
    as_ca_free(ca);
    if (dirfd >= 0) {
        close(dirfd);
    }
    return r;
}

/*
 * SPIFFE Trust Domain and Bundle §4.1 (x509-svid JWK): the EC coordinates of the CA's public key
 * as RFC 7518 §6.2.1 wants them (base64url of the 32-byte big-endian values), and x5c holding
 * exactly this CA certificate (RFC 7517 §4.7: standard base64 of the DER, with padding).
 */
json_t *as_ca_x509_jwk(const struct as_ca *ca)
{
    json_t *jwk = NULL;
    BIGNUM *bx = NULL;
    BIGNUM *by = NULL;
    char *x5c = NULL;
    enum { COORD = 32 };
    unsigned char xb[COORD];
    unsigned char yb[COORD];
    char x[4 * ((COORD + 2) / 3) + 1];
    char y[sizeof x];
    char group[32] = "";

    if (ca == NULL || ca->cert_der_len == 0 || ca->cert_der_len > INT32_MAX / 2) {
        goto out;
    }
    EVP_PKEY *pub = X509_get0_pubkey(ca->cert);
    if (pub == NULL || !EVP_PKEY_is_a(pub, "EC") ||
        EVP_PKEY_get_utf8_string_param(pub, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group,
                                       NULL) != 1 ||
        strcmp(group, "prime256v1") != 0) {
        as_error("pki: the CA key is not ECDSA P-256; no x509-svid JWK");
        goto out;
    }
    if (EVP_PKEY_get_bn_param(pub, OSSL_PKEY_PARAM_EC_PUB_X, &bx) != 1 ||
        EVP_PKEY_get_bn_param(pub, OSSL_PKEY_PARAM_EC_PUB_Y, &by) != 1 ||
        BN_bn2binpad(bx, xb, COORD) != COORD || BN_bn2binpad(by, yb, COORD) != COORD) {
        as_pki_log_ssl_errors("reading the CA's EC coordinates");
        goto out;
    }
    as_b64url(xb, COORD, x);
    as_b64url(yb, COORD, y);
    x5c = malloc(4 * ((ca->cert_der_len + 2) / 3) + 1);
    if (x5c == NULL) {
        goto out;
    }
    EVP_EncodeBlock((unsigned char *)x5c, ca->cert_der, (int)ca->cert_der_len);
    jwk = json_pack("{s:s, s:s, s:s, s:s, s:s, s:[s]}", "use", "x509-svid", "kty", "EC", "crv",
                    "P-256", "x", x, "y", y, "x5c", x5c);
out:
    BN_free(bx);
    BN_free(by);
    free(x5c);
    return jwk;
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

    if ((r = as_pki_x509_new_v3(&x)) != AS_OK || (r = set_random_serial(x)) != AS_OK ||
        (r = as_pki_set_validity(x, now - BACKDATE_SECS, not_after)) != AS_OK) {
        goto out;
    }
    const char *cn = n > 0 && strlen(names[0]) <= UB_NAME_LEN ? names[0] : "authsvc";
    if (X509_NAME_add_entry_by_NID(X509_get_subject_name(x), NID_commonName, MBSTRING_UTF8,
                                   (const unsigned char *)cn, -1, -1, 0) != 1 ||
        X509_set_issuer_name(x, X509_get_subject_name(ca->cert)) != 1 ||
        X509_set_pubkey(x, key) != 1) {
        as_pki_log_ssl_errors("building the server certificate");
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
                r = as_pki_san_push(gens, GEN_IPADD, ip, 4);
            } else if (inet_pton(AF_INET6, names[i], ip) == 1) {
                r = as_pki_san_push(gens, GEN_IPADD, ip, 16);
            } else {
                r = as_pki_san_push(gens, GEN_DNS, names[i], strlen(names[i]));
            }
            if (r != AS_OK) {
                goto out;
            }
        }
        if ((r = add_ext(x, NID_subject_alt_name, gens, 0)) != AS_OK) {
            goto out;
        }
    }

    if ((r = as_pki_sign_x509(ca, x)) != AS_OK) {
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

    if ((r = as_pki_gen_p256(&key)) != AS_OK ||
        (r = build_server_cert(ca, names, n, not_after, key, &x)) != AS_OK ||
        (r = as_pki_cert_to_pem(x, &leaf_pem)) != AS_OK) {
        goto out;
    }
    if (ca->intermediates_pem != NULL) {
        /* An intermediate CA: the peer needs the chain up to its trust anchor. The anchor is
         * left out; the client must already trust it (RFC 8446 §4.4.2). */
        size_t a = strlen(leaf_pem);
        size_t b = strlen(ca->intermediates_pem);
        char *both = realloc(leaf_pem, a + b + 1);
        if (both == NULL) {
            r = AS_ERR_NOMEM;
            goto out;
        }
        memcpy(both + a, ca->intermediates_pem, b + 1);
        leaf_pem = both;
    }
    if ((r = as_pki_key_to_pem(key, &kpem, &kpem_len)) != AS_OK) {
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
