/*
 * mintjwt: signs the platform JWTs of the login benchmarks with a static key.
 *
 *   mintjwt RS256|ES256 KEY.pem AUDIENCE COUNT
 *
 * Prints COUNT compact JWTs, one per line, with claims sub "bench-<i>", aud AUDIENCE, iat now and
 * exp now + 2h (longer than any full run). RS256 needs an RSA private key, ES256 a P-256 key; the
 * ES256 signature is the raw 64-byte R||S of JWS (RFC 7518 §3.4), not OpenSSL's DER, which is why
 * this is C and not `openssl dgst` in the shell script.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

static int die(const char *what)
{
    fprintf(stderr, "mintjwt: %s failed\n", what);
    ERR_print_errors_fp(stderr);
    return 1;
}

/* base64url without padding of in[0..n) into out (room for 4*(n+2)/3+1); returns the length. */
static size_t b64url(const unsigned char *in, size_t n, char *out)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0;
    size_t i = 0;
    for (; i + 2 < n; i += 3) {
        unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8 | in[i + 2];
        out[o++] = tab[v >> 18 & 63];
        out[o++] = tab[v >> 12 & 63];
        out[o++] = tab[v >> 6 & 63];
        out[o++] = tab[v & 63];
    }
    if (n - i == 1) {
        unsigned v = (unsigned)in[i] << 16;
        out[o++] = tab[v >> 18 & 63];
        out[o++] = tab[v >> 12 & 63];
    } else if (n - i == 2) {
        unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8;
        out[o++] = tab[v >> 18 & 63];
        out[o++] = tab[v >> 12 & 63];
        out[o++] = tab[v >> 6 & 63];
    }
    out[o] = '\0';
    return o;
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: mintjwt RS256|ES256 KEY.pem AUDIENCE COUNT\n");
        return 2;
    }
    const char *alg = argv[1];
    int es256 = strcmp(alg, "ES256") == 0;
    if (!es256 && strcmp(alg, "RS256") != 0) {
        fprintf(stderr, "mintjwt: algorithm must be RS256 or ES256\n");
        return 2;
    }
    const char *aud = argv[3];
    long count = strtol(argv[4], NULL, 10);
    if (count <= 0 || strlen(aud) > 200) {
        fprintf(stderr, "mintjwt: COUNT must be positive and AUDIENCE short\n");
        return 2;
    }
    FILE *kf = fopen(argv[2], "r");
    if (kf == NULL) {
        perror(argv[2]);
        return 1;
    }
    EVP_PKEY *key = PEM_read_PrivateKey(kf, NULL, NULL, NULL);
    fclose(kf);
    if (key == NULL) {
        return die("reading the private key");
    }
    if (EVP_PKEY_is_a(key, es256 ? "EC" : "RSA") != 1) {
        fprintf(stderr, "mintjwt: %s needs an %s key\n", alg, es256 ? "EC P-256" : "RSA");
        return 2;
    }

    char hdr_json[64];
    snprintf(hdr_json, sizeof hdr_json, "{\"alg\":\"%s\",\"typ\":\"JWT\"}", alg);
    char hdr[128];
    b64url((const unsigned char *)hdr_json, strlen(hdr_json), hdr);
    long now = (long)time(NULL);

    for (long i = 0; i < count; i++) {
        char claims[512];
        int cl = snprintf(claims, sizeof claims,
                          "{\"sub\":\"bench-%ld\",\"aud\":\"%s\",\"iat\":%ld,\"exp\":%ld}", i, aud,
                          now, now + 7200);
        char input[1024];
        size_t in_len = (size_t)snprintf(input, sizeof input, "%s.", hdr);
        in_len += b64url((const unsigned char *)claims, (size_t)cl, input + in_len);

        unsigned char sig[1024];
        size_t sig_len = sizeof sig;
        EVP_MD_CTX *md = EVP_MD_CTX_new();
        if (md == NULL || EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key) != 1 ||
            EVP_DigestSign(md, sig, &sig_len, (const unsigned char *)input, in_len) != 1) {
            return die("signing");
        }
        EVP_MD_CTX_free(md);
        if (es256) {
            /* DER ECDSA-Sig-Value -> fixed-width R||S. */
            const unsigned char *p = sig;
            ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)sig_len);
            if (es == NULL || BN_bn2binpad(ECDSA_SIG_get0_r(es), sig, 32) != 32 ||
                BN_bn2binpad(ECDSA_SIG_get0_s(es), sig + 32, 32) != 32) {
                return die("converting the ECDSA signature");
            }
            ECDSA_SIG_free(es);
            sig_len = 64;
        }
        char sig64[1400];
        b64url(sig, sig_len, sig64);
        printf("%s.%s\n", input, sig64);
    }
    EVP_PKEY_free(key);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        perror("mintjwt: stdout");
        return 1;
    }
    return 0;
}
