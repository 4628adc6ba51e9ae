/*
 * fuzz_jsonw: as_json_write (common/jsonw.c), the serializer of HTTP answers and audit lines,
 * against jansson's json_dumps(JSON_COMPACT) on whatever jansson parses from the input.
 *
 * Invariants: within AS_MAX_JSON_DEPTH the bytes are exactly json_dumps's, and they parse back
 * to an equal value; deeper, the writer refuses with AS_ERR_INVALID and the buffer as it was;
 * redacting with a replacement that writes the string unchanged gives the same bytes whatever
 * the clear keys; one byte less of room is AS_ERR_TOO_LARGE with the buffer untouched.
 */
#include <stdbool.h>

#include "common/common.h"
#include "fuzz.h"

#define MAX_OUT ((size_t)64 * 1024 * 1024)

static int depth_of(json_t *v)
{
    int deepest = 0;
    if (json_is_object(v)) {
        for (void *it = json_object_iter(v); it != NULL; it = json_object_iter_next(v, it)) {
            int d = depth_of(json_object_iter_value(it));
            deepest = d > deepest ? d : deepest;
        }
    } else if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++) {
            int d = depth_of(json_array_get(v, i));
            deepest = d > deepest ? d : deepest;
        }
    }
    return 1 + deepest;
}

/* Keys with an odd length are "clear": any rule will do, the output must not depend on it. */
static bool odd_key(void *ctx, const char *key, size_t keylen)
{
    (void)ctx;
    (void)key;
    return keylen % 2 == 1;
}

static enum as_err unchanged(void *ctx, struct as_buf *b, const char *s, size_t n)
{
    (*(size_t *)ctx)++;
    return as_json_write_string(b, s, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_error_t je;
    json_t *v = json_loadb((const char *)data, size, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    if (v == NULL) {
        return 0;
    }
    struct as_buf b;
    as_buf_init(&b, MAX_OUT);
    if (depth_of(v) > AS_MAX_JSON_DEPTH) {
        FUZZ_CHECK(as_buf_append(&b, "x", 1) == AS_OK);
        FUZZ_CHECK(as_json_write(&b, v) == AS_ERR_INVALID);
        FUZZ_CHECK(b.len == 1 && strcmp(b.data, "x") == 0);
        as_buf_free(&b, false);
        json_decref(v);
        return 0;
    }

    char *want = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    FUZZ_CHECK(want != NULL); /* parsed strings are UTF-8: jansson can always write them */
    size_t n = strlen(want);
    FUZZ_CHECK(as_json_write(&b, v) == AS_OK);
    FUZZ_CHECK(b.len == n && memcmp(b.data, want, n) == 0 && b.data[n] == '\0');

    json_t *back = json_loadb(b.data, b.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    FUZZ_CHECK(back != NULL && json_equal(back, v));
    json_decref(back);

    size_t replaced = 0;
    struct as_json_redactor rd = {odd_key, unchanged, &replaced};
    struct as_buf r;
    as_buf_init(&r, MAX_OUT);
    FUZZ_CHECK(as_json_write_redacted(&r, v, 1, false, &rd) == AS_OK);
    FUZZ_CHECK(r.len == n && memcmp(r.data, want, n) == 0);
    FUZZ_CHECK(!json_is_string(v) || replaced == 1);
    as_buf_free(&r, false);

    /* One byte short of room. */
    struct as_buf small;
    as_buf_init(&small, n - 1);
    FUZZ_CHECK(as_json_write(&small, v) == AS_ERR_TOO_LARGE);
    FUZZ_CHECK(small.len == 0);
    as_buf_free(&small, false);

    free(want);
    as_buf_free(&b, false);
    json_decref(v);
    return 0;
}
