/*
 * fuzz_policy: as_policy_parse over JSON, HCL and the legacy shorthand, then the ACL built from
 * what parsed.
 *
 * Invariants: a refusal leaves *out NULL and says why; a parsed policy always builds an ACL,
 * alone and merged with itself; merging a policy with itself changes no answer (copies of a
 * pattern are a union); an answer never carries AS_CAP_DENY or unknown bits; leading slashes of
 * the request path do not matter; the root ACL grants everything.
 */
#include <stdbool.h>

#include "acl/acl.h"
#include "common/common.h"
#include "fuzz.h"

#define MAX_QUERIES 24
#define MAX_QUERY_LEN 256

/* Paths every policy is asked about: the API's own, and some shapes that stress the globs. */
static const char *const fixed_paths[] = {
    "sys/policy/default",
    "sys/policies/acl/admin",
    "auth/token/create",
    "auth/token/lookup-self",
    "svid/x509",
    "svid/jwt",
    "pki/ca",
    "secret/data/app/config",
    "secret/",
    "secret",
    "",
    "+",
    "*",
    "a/b/c/d/e/f",
};

static size_t n_queries;
static char queries[MAX_QUERIES][MAX_QUERY_LEN];

static void add_query(const char *s, size_t n)
{
    if (n_queries < MAX_QUERIES && n < MAX_QUERY_LEN && memchr(s, '\0', n) == NULL) {
        memcpy(queries[n_queries], s, n);
        queries[n_queries][n] = '\0';
        n_queries++;
    }
}

/*
 * Paths taken from the input itself: each quoted string (a pattern, most likely), as is and
 * with a trailing '*' replaced by a suffix, so that exact and prefix rules are actually hit.
 */
static void collect_queries(const char *text, size_t len)
{
    n_queries = 0;
    size_t i = 0;
    while (i < len && n_queries + 2 <= MAX_QUERIES) {
        if (text[i] != '"') {
            i++;
            continue;
        }
        size_t j = i + 1;
        while (j < len && text[j] != '"' && j - i < MAX_QUERY_LEN) {
            j++;
        }
        if (j >= len || text[j] != '"') {
            break;
        }
        const char *s = text + i + 1;
        size_t n = j - i - 1;
        add_query(s, n);
        if (n > 0 && s[n - 1] == '*' && n + 8 < MAX_QUERY_LEN) {
            char buf[MAX_QUERY_LEN];
            memcpy(buf, s, n - 1);
            memcpy(buf + n - 1, "x/y", 3);
            add_query(buf, n + 2);
        }
        i = j + 1;
    }
}

static void check_answer(const struct as_acl *one, const struct as_acl *twice, const char *path)
{
    uint32_t caps = as_acl_caps(one, path);
    FUZZ_CHECK((caps & ~(uint32_t)AS_CAP_ALL) == 0);
    FUZZ_CHECK(as_acl_caps(twice, path) == caps);

    char slashed[MAX_QUERY_LEN + 2];
    snprintf(slashed, sizeof slashed, "//%s", path);
    FUZZ_CHECK(as_acl_caps(one, slashed) == caps);

    json_t *arr = json_array();
    FUZZ_CHECK(arr != NULL);
    as_caps_to_json(caps, arr);
    FUZZ_CHECK(json_array_size(arr) == (size_t)__builtin_popcount(caps));
    json_decref(arr);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct as_policy *p = NULL;
    struct as_acl *one = NULL;
    struct as_acl *twice = NULL;
    struct as_acl *root = NULL;
    char err[160];
    const char *text = (const char *)data;

    as_log_set_level(AS_LOG_ERROR);
    enum as_err r = as_policy_parse(size > 0 ? text : NULL, size, &p, err, sizeof err);
    if (r != AS_OK) {
        FUZZ_CHECK(p == NULL);
        FUZZ_CHECK(r == AS_ERR_INVALID || r == AS_ERR_TOO_LARGE || r == AS_ERR_NOMEM);
        FUZZ_CHECK(memchr(err, '\0', sizeof err) != NULL);
        FUZZ_CHECK(r == AS_ERR_NOMEM || err[0] != '\0');
        /* A refusal without the error buffer must behave the same. */
        FUZZ_CHECK(as_policy_parse(size > 0 ? text : NULL, size, &p, NULL, 0) == r);
        FUZZ_CHECK(p == NULL);
        return 0;
    }
    FUZZ_CHECK(p != NULL);

    const struct as_policy *pols[2] = {p, p};
    FUZZ_CHECK(as_acl_new(pols, 1, false, &one) == AS_OK && one != NULL);
    FUZZ_CHECK(as_acl_new(pols, 2, false, &twice) == AS_OK && twice != NULL);
    FUZZ_CHECK(as_acl_new(pols, 2, true, &root) == AS_OK && root != NULL);

    collect_queries(text, size);
    for (size_t i = 0; i < sizeof fixed_paths / sizeof fixed_paths[0]; i++) {
        check_answer(one, twice, fixed_paths[i]);
        FUZZ_CHECK(as_acl_caps(root, fixed_paths[i]) == AS_CAP_ALL);
    }
    for (size_t i = 0; i < n_queries; i++) {
        check_answer(one, twice, queries[i]);
    }

    as_acl_free(root);
    as_acl_free(twice);
    as_acl_free(one);
    as_policy_free(p);
    return 0;
}
