/*
 * fuzz_json_body: as_json_parse_object, the parser of every request body, then the typed getters
 * the handlers use, on the keys handlers read and on the keys the input itself has.
 *
 * Invariants: a refusal leaves *out NULL (with a reason when it is AS_ERR_INVALID); a parsed
 * body is an object; a missing or null key is AS_OK with present=false and *out untouched; a
 * duration is never negative; a string list is an array of non-empty strings, and one split from
 * a comma string holds no comma and no blank at either end.
 */
#include <ctype.h>
#include <stdbool.h>

#include "common/common.h"
#include "fuzz.h"

/* What the handlers read (authsvc/h_*.c), so that the fuzzer's dictionary of keys is realistic. */
static const char *const handler_keys[] = {
    "ttl",       "explicit_max_ttl",  "period",        "num_uses", "renewable",
    "policies",  "no_default_policy", "display_name",  "meta",     "spiffe_id",
    "dns_names", "audience",          "csr",           "format",   "increment",
    "token",     "accessor",          "serial_number", "policy",   "no_parent",
};

#define MAX_INPUT_KEYS 16
#define UNTOUCHED_INT ((int64_t)0x5a5a5a5a5a5a5a5a)

static void check_strlist(json_t *list, bool from_string)
{
    FUZZ_CHECK(json_is_array(list));
    size_t i;
    json_t *it;
    json_array_foreach(list, i, it)
    {
        FUZZ_CHECK(json_is_string(it));
        size_t n = json_string_length(it);
        const char *s = json_string_value(it);
        FUZZ_CHECK(n > 0);
        if (from_string) {
            FUZZ_CHECK(memchr(s, ',', n) == NULL);
            FUZZ_CHECK(!isspace((unsigned char)s[0]) && !isspace((unsigned char)s[n - 1]));
        }
    }
}

static void check_key(json_t *obj, const char *key)
{
    json_t *raw = json_object_get(obj, key);
    bool expect_present = raw != NULL && !json_is_null(raw);
    bool present = !expect_present;
    enum as_err r;

    const char *s = NULL;
    r = as_json_get_string(obj, key, &s, &present);
    FUZZ_CHECK(present == expect_present);
    FUZZ_CHECK(r == AS_OK || r == AS_ERR_INVALID);
    FUZZ_CHECK(r == AS_OK || present);
    FUZZ_CHECK((r == AS_OK && present) == (s != NULL));
    FUZZ_CHECK(r != AS_OK || !present || json_is_string(raw));

    int64_t d = UNTOUCHED_INT;
    r = as_json_get_duration(obj, key, &d, &present);
    FUZZ_CHECK(present == expect_present);
    FUZZ_CHECK(r == AS_OK || present);
    if (r == AS_OK) {
        FUZZ_CHECK(present ? d >= 0 : d == UNTOUCHED_INT);
    }

    bool b = false;
    r = as_json_get_bool(obj, key, &b, &present);
    FUZZ_CHECK(present == expect_present);
    FUZZ_CHECK(r == AS_OK || present);

    int64_t n = UNTOUCHED_INT;
    r = as_json_get_int(obj, key, &n, NULL);
    FUZZ_CHECK(r == AS_OK || expect_present);
    FUZZ_CHECK(r != AS_OK || expect_present || n == UNTOUCHED_INT);

    json_t *list = NULL;
    r = as_json_get_strlist(obj, key, &list, &present);
    FUZZ_CHECK(present == expect_present);
    FUZZ_CHECK(r == AS_OK || present);
    if (r == AS_OK && present) {
        check_strlist(list, json_is_string(raw));
    } else {
        FUZZ_CHECK(list == NULL);
    }
    json_decref(list);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *obj = NULL;
    char err[160];
    err[0] = '\0';

    as_log_set_level(AS_LOG_ERROR);
    enum as_err r = as_json_parse_object((const char *)data, size, &obj, err, sizeof err);
    if (r != AS_OK) {
        FUZZ_CHECK(obj == NULL);
        FUZZ_CHECK(r == AS_ERR_INVALID || r == AS_ERR_TOO_LARGE || r == AS_ERR_NOMEM);
        FUZZ_CHECK(r != AS_ERR_INVALID || err[0] != '\0');
        FUZZ_CHECK(memchr(err, '\0', sizeof err) != NULL);
        return 0;
    }
    FUZZ_CHECK(json_is_object(obj));

    for (size_t i = 0; i < sizeof handler_keys / sizeof handler_keys[0]; i++) {
        check_key(obj, handler_keys[i]);
    }
    /* The input's own keys reach the type-dependent branches of every getter. */
    size_t seen = 0;
    const char *key;
    json_t *val;
    json_object_foreach(obj, key, val)
    {
        if (seen++ == MAX_INPUT_KEYS) {
            break;
        }
        check_key(obj, key);
    }
    /* The getters on a NULL object: nothing is present. */
    check_key(NULL, "ttl");

    json_decref(obj);
    return 0;
}
