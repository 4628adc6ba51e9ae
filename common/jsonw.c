/*
 * jsonw.c: a serializer of jansson trees into a bounded buffer (common.h, "Serializing").
 *
 * Why not json_dumps: it writes through a callback per piece, iterates strings code point by code
 * point (about 60 instructions a byte; a PEM chain is kilobytes), duplicates the result and keeps
 * a hash table of the containers on the way down to detect cycles. Here a string is copied in
 * runs between the bytes that need an escape, numbers are formatted by hand, and the depth bound
 * replaces the cycle check (a cycle is infinitely deep).
 *
 * The output must stay byte for byte what jansson 2.14's json_dumps(v, JSON_COMPACT) writes
 * (src/dump.c there): HTTP answers and audit lines did not change when this replaced it, and
 * tests/unit/test_jsonw.c and tests/fuzz/fuzz_jsonw.c compare the two.
 */
#include "common/common.h"

/*
 * 1 for the bytes a string holds as they are: printable ASCII but '"' and '\\'. Control bytes
 * and those two get an escape; bytes from 0x80 start a UTF-8 sequence that is checked and copied.
 */
static const unsigned char plain[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x00 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x10 */
    1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x20: '"' */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x30 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x40 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, /* 0x50: '\\' */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x60 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x70: 0x7f (DEL) is raw in jansson */
};

/* The escape of an ASCII byte that is not plain, into e (6 bytes); returns its length. */
static size_t escape(unsigned char c, char e[6])
{
    static const char hex[] = "0123456789ABCDEF";
    e[0] = '\\';
    switch (c) {
    case '"':
    case '\\':
        e[1] = (char)c;
        return 2;
    case '\b':
        e[1] = 'b';
        return 2;
    case '\f':
        e[1] = 'f';
        return 2;
    case '\n':
        e[1] = 'n';
        return 2;
    case '\r':
        e[1] = 'r';
        return 2;
    case '\t':
        e[1] = 't';
        return 2;
    default:
        /* jansson: "\\u%04X", uppercase. */
        e[1] = 'u';
        e[2] = '0';
        e[3] = '0';
        e[4] = hex[c >> 4];
        e[5] = hex[c & 0xf];
        return 6;
    }
}

/*
 * Whether the eight bytes at p are all plain, tested together (SWAR): none is 0x80 or above,
 * below 0x20, '"' or '\\'. The "below n" and "zero byte" tests are the classic exact ones (true
 * iff some byte qualifies; "Bit Twiddling Hacks", hasless and haszero). Audit lines and answers
 * are mostly runs of plain bytes (hex HMACs, PEM), which the byte loop took one table lookup at a
 * time: put_string was 5.5% of the server's CPU under lookup-self load.
 */
static inline bool plain8(const unsigned char *p)
{
    const uint64_t ones = 0x0101010101010101ULL;
    const uint64_t high = 0x8080808080808080ULL;
    uint64_t v;
    memcpy(&v, p, sizeof v);
    uint64_t q = v ^ (ones * '"');
    uint64_t bs = v ^ (ones * '\\');
    uint64_t below = (v - ones * 0x20) & ~v;
    return ((v | below | ((q - ones) & ~q) | ((bs - ones) & ~bs)) & high) == 0;
}

static enum as_err put_string(struct as_buf *b, const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t run = 0; /* start of the bytes not yet appended */
    size_t i = 0;
    enum as_err r = as_buf_add(b, "\"", 1);
    while (r == AS_OK && i < n) {
        while (n - i >= 8 && plain8(u + i)) {
            i += 8;
        }
        if (i >= n) {
            break;
        }
        if (plain[u[i]]) {
            i++;
            continue;
        }
        if (u[i] >= 0x80) {
            /* json_dumps fails on a string that is not UTF-8 (utf8_iterate); so does this. */
            size_t l = as_utf8_seq(s + i, n - i);
            if (l == 0) {
                return AS_ERR_INVALID;
            }
            i += l;
            continue;
        }
        char e[6];
        size_t el = escape(u[i], e);
        if ((r = as_buf_add(b, s + run, i - run)) == AS_OK) {
            r = as_buf_add(b, e, el);
        }
        run = ++i;
    }
    if (r == AS_OK) {
        r = as_buf_add(b, s + run, n - run);
    }
    return r == AS_OK ? as_buf_add(b, "\"", 1) : r;
}

static enum as_err put_integer(struct as_buf *b, json_int_t v)
{
    /* JSON_INTEGER_FORMAT is plain decimal; INT64_MIN is negated in unsigned arithmetic. */
    char tmp[24];
    char *p = tmp + sizeof tmp;
    unsigned long long m = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    do {
        *--p = (char)('0' + m % 10);
        m /= 10;
    } while (m != 0);
    if (v < 0) {
        *--p = '-';
    }
    return as_buf_add(b, p, (size_t)(tmp + sizeof tmp - p));
}

static enum as_err put_real(struct as_buf *b, json_t *v)
{
    /* Rare in our trees, and jansson's format ("%.17g", then a ".0" added when it reads as an
     * integer, the exponent's '+' and leading zeros dropped) is its own: jansson writes them.
     * It needs at most 100 bytes (MAX_REAL_STR_LENGTH in its dump.c). */
    char tmp[128];
    size_t n = json_dumpb(v, tmp, sizeof tmp, JSON_COMPACT | JSON_ENCODE_ANY);
    if (n == 0 || n > sizeof tmp) {
        return AS_ERR_INVALID;
    }
    return as_buf_add(b, tmp, n);
}

static enum as_err put_value(struct as_buf *b, json_t *v, int depth, bool clear,
                             const struct as_json_redactor *rd)
{
    enum as_err r = AS_OK;
    if (v == NULL || depth > AS_MAX_JSON_DEPTH) {
        return AS_ERR_INVALID;
    }
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        r = as_buf_add(b, "{", 1);
        for (void *it = json_object_iter(v); it != NULL && r == AS_OK;) {
            const char *key = json_object_iter_key(it);
            size_t klen = json_object_iter_key_len(it);
            json_t *m = json_object_iter_value(it);
            bool member_clear = rd == NULL || rd->clear_key(rd->ctx, key, klen);
            if ((r = put_string(b, key, klen)) == AS_OK && (r = as_buf_add(b, ":", 1)) == AS_OK &&
                (r = put_value(b, m, depth + 1, member_clear, rd)) == AS_OK) {
                it = json_object_iter_next(v, it);
                if (it != NULL) {
                    r = as_buf_add(b, ",", 1);
                }
            }
        }
        return r == AS_OK ? as_buf_add(b, "}", 1) : r;
    }
    case JSON_ARRAY: {
        size_t n = json_array_size(v);
        r = as_buf_add(b, "[", 1);
        for (size_t i = 0; i < n && r == AS_OK; i++) {
            if (i > 0) {
                r = as_buf_add(b, ",", 1);
            }
            if (r == AS_OK) {
                r = put_value(b, json_array_get(v, i), depth + 1, clear, rd);
            }
        }
        return r == AS_OK ? as_buf_add(b, "]", 1) : r;
    }
    case JSON_STRING:
        if (rd != NULL && !clear) {
            return rd->replace(rd->ctx, b, json_string_value(v), json_string_length(v));
        }
        return put_string(b, json_string_value(v), json_string_length(v));
    case JSON_INTEGER:
        return put_integer(b, json_integer_value(v));
    case JSON_REAL:
        return put_real(b, v);
    case JSON_TRUE:
        return as_buf_add(b, "true", 4);
    case JSON_FALSE:
        return as_buf_add(b, "false", 5);
    case JSON_NULL:
        return as_buf_add(b, "null", 4);
    }
    return AS_ERR_INVALID;
}

enum as_err as_json_write_redacted(struct as_buf *b, json_t *v, int depth, bool clear,
                                   const struct as_json_redactor *rd)
{
    size_t mark = b->len;
    enum as_err r = depth >= 1 ? put_value(b, v, depth, clear, rd) : AS_ERR_INVALID;
    if (r != AS_OK) {
        as_buf_truncate(b, mark);
    }
    return r;
}

enum as_err as_json_write(struct as_buf *b, json_t *v)
{
    return as_json_write_redacted(b, v, 1, true, NULL);
}

enum as_err as_json_write_string(struct as_buf *b, const char *s, size_t n)
{
    size_t mark = b->len;
    enum as_err r = put_string(b, s, n);
    if (r != AS_OK) {
        as_buf_truncate(b, mark);
    }
    return r;
}
