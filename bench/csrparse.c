/*
 * csrparse: µs per as_csr_parse (PEM in, verified key out) for P-256 and RSA-2048 CSRs, on one
 * thread and on two (throughput), as PERF-NOTES trap 1 measures issuance. Built with the other
 * bench programs (-Dbench=true, as bench/run configures build-bench):
 *
 *   build-bench/bench/csrparse [seconds per run, default 2] [runs, default 3]
 *
 * Each run parses distinct CSRs round-robin (64 keys of each kind, so no cache can help) for a
 * fixed time; "issue" times as_ca_issue_svid on the parsed P-256 CSRs (the certificate's
 * construction, its signature and its PEM, under a fresh P-256 CA). A line gives the median of the
 * runs and, for a machine shared with other work, the best run (the least disturbed one) too.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "common/common.h"
#include "pki/pki.h"

#define NCSR 64
#define MAX_RUNS 64

static char *g_pems[NCSR];
/* Issue mode: the parsed CSRs and the CA that signs them; NULL while parses are measured. */
static struct as_csr *g_csrs[NCSR];
static struct as_ca *g_ca;
static double g_seconds = 2.0;
static int g_runs = 3;

static double mono(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static char *make_csr(EVP_PKEY *key)
{
    X509_REQ *req = X509_REQ_new();
    X509_REQ_set_version(req, X509_REQ_VERSION_1);
    X509_NAME_add_entry_by_txt(X509_REQ_get_subject_name(req), "CN", MBSTRING_ASC,
                               (const unsigned char *)"workload", -1, -1, 0);
    X509_REQ_set_pubkey(req, key);
    if (X509_REQ_sign(req, key, EVP_sha256()) <= 0) {
        fprintf(stderr, "cannot sign a CSR\n");
        exit(1);
    }
    BIO *b = BIO_new(BIO_s_mem());
    PEM_write_bio_X509_REQ(b, req);
    char *data = NULL;
    long n = BIO_get_mem_data(b, &data);
    char *s = calloc(1, (size_t)n + 1);
    memcpy(s, data, (size_t)n);
    BIO_free(b);
    X509_REQ_free(req);
    return s;
}

struct worker {
    pthread_t t;
    unsigned long n;
    double cpu; /* seconds of this thread's CPU time */
};

static double thread_cpu(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* One X.509-SVID from a parsed CSR: the certificate's construction, signature and PEM. */
static void issue_one(const struct as_csr *csr)
{
    static const char *const dns[] = {"web.example.org"};
    int64_t now = (int64_t)time(NULL);
    struct as_leaf_req req = {.spiffe_id = "spiffe://example.org/bench/w",
                              .dns = dns,
                              .ndns = 1,
                              .not_before = now - 10,
                              .not_after = now + 3600};
    struct as_leaf *leaf = NULL;
    if (as_ca_issue_svid(g_ca, csr, &req, &leaf) != AS_OK) {
        fprintf(stderr, "as_ca_issue_svid failed\n");
        exit(1);
    }
    as_leaf_free(leaf);
}

static void *work(void *arg)
{
    struct worker *w = arg;
    char why[128];
    double end = mono() + g_seconds;
    double c0 = thread_cpu();
    unsigned long n = 0;
    while (mono() < end) {
        for (size_t i = 0; i < 16; i++, n++) {
            if (g_ca != NULL) {
                issue_one(g_csrs[n % NCSR]);
                continue;
            }
            const char *pem = g_pems[n % NCSR];
            struct as_csr *c = NULL;
            if (as_csr_parse(pem, strlen(pem), &c, why, sizeof why) != AS_OK) {
                fprintf(stderr, "as_csr_parse: %s\n", why);
                exit(1);
            }
            as_csr_free(c);
        }
    }
    w->n = n;
    w->cpu = thread_cpu() - c0;
    return NULL;
}

/* Parses per second with nthreads threads, over one run of g_seconds; *cpu_us gets the CPU
 * time per parse, which other load on the machine disturbs less than the wall clock. */
static double run(int nthreads, double *cpu_us)
{
    struct worker w[2];
    double t0 = mono();
    for (int i = 0; i < nthreads; i++) {
        pthread_create(&w[i].t, NULL, work, &w[i]);
    }
    unsigned long total = 0;
    double cpu = 0;
    for (int i = 0; i < nthreads; i++) {
        pthread_join(w[i].t, NULL);
        total += w[i].n;
        cpu += w[i].cpu;
    }
    *cpu_us = cpu * 1e6 / (double)total;
    return (double)total / (mono() - t0);
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void measure(const char *what)
{
    double one[MAX_RUNS], two[MAX_RUNS], cpu1[MAX_RUNS], cpu2[MAX_RUNS];
    int n = g_runs;
    /* Warm up: first-use costs (provider loading, fetch caches) are not the steady state. */
    g_seconds /= 4;
    (void)run(1, &cpu1[0]);
    g_seconds *= 4;
    for (int i = 0; i < n; i++) {
        one[i] = run(1, &cpu1[i]);
        two[i] = run(2, &cpu2[i]);
    }
    qsort(one, (size_t)n, sizeof one[0], cmp);
    qsort(two, (size_t)n, sizeof two[0], cmp);
    qsort(cpu1, (size_t)n, sizeof cpu1[0], cmp);
    qsort(cpu2, (size_t)n, sizeof cpu2[0], cmp);
    printf("%-9s median of %d: 1 thread %7.1f us/parse (%7.0f/s, %6.1f us CPU), 2 threads "
           "%7.0f/s (%6.1f us CPU), scaling %.2fx\n",
           what, n, 1e6 / one[n / 2], one[n / 2], cpu1[n / 2], two[n / 2], cpu2[n / 2],
           two[n / 2] / one[n / 2]);
    printf("%-9s best of %d:   1 thread %7.1f us/parse (%7.0f/s), 2 threads %7.0f/s, "
           "scaling %.2fx\n",
           what, n, 1e6 / one[n - 1], one[n - 1], two[n - 1], two[n - 1] / one[n - 1]);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    if (argc > 1) {
        g_seconds = atof(argv[1]);
    }
    if (argc > 2) {
        g_runs = atoi(argv[2]);
    }
    if (g_seconds <= 0 || g_runs < 1 || g_runs > MAX_RUNS) {
        fprintf(stderr, "usage: csrparse [seconds per run > 0] [runs 1..%d]\n", MAX_RUNS);
        return 2;
    }
    as_log_set_level(AS_LOG_ERROR);
    for (size_t i = 0; i < NCSR; i++) {
        EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
        g_pems[i] = make_csr(k);
        EVP_PKEY_free(k);
    }
    measure("P-256");
    char why[128];
    for (size_t i = 0; i < NCSR; i++) {
        if (as_csr_parse(g_pems[i], strlen(g_pems[i]), &g_csrs[i], why, sizeof why) != AS_OK) {
            fprintf(stderr, "as_csr_parse: %s\n", why);
            return 1;
        }
    }
    if (as_ca_generate("example.org", 86400, &g_ca) != AS_OK) {
        fprintf(stderr, "cannot generate a CA\n");
        return 1;
    }
    measure("issue");
    for (size_t i = 0; i < NCSR; i++) {
        as_csr_free(g_csrs[i]);
    }
    as_ca_free(g_ca);
    g_ca = NULL;
    for (size_t i = 0; i < NCSR; i++) {
        free(g_pems[i]);
        EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
        g_pems[i] = make_csr(k);
        EVP_PKEY_free(k);
    }
    measure("RSA-2048");
    for (size_t i = 0; i < NCSR; i++) {
        free(g_pems[i]);
    }
    return 0;
}
