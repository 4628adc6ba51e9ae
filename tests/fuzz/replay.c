/*
 * replay.c: the fuzz targets' main() in ordinary builds (no libFuzzer).
 *
 * Runs LLVMFuzzerTestOneInput once over each file named on the command line and over every
 * regular file of each directory named there (not recursive, dot files skipped, in name order so
 * that a run is reproducible). This is how `meson test --suite fuzz` replays the seed corpora
 * and the reproducers of fixed bugs in the normal and the sanitizer builds (STYLE.md §10).
 *
 * A target reports a bug by crashing (abort(), a sanitizer report); what this driver counts as a
 * failure is an input it cannot read or a target returning something libFuzzer does not accept.
 * Each input's name is printed before it runs, so a crash names its input. Prints
 * "N passed, N failed" and exits non-zero on a failure or when no input was found at all.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

/* Larger than any seed; libFuzzer's own -max_len defaults to 4 KiB. */
#define REPLAY_MAX_INPUT (16 * 1024 * 1024)

static unsigned passed;
static unsigned failed;

/* Reads a whole file into an exactly sized buffer, so that ASan sees any read past the input. */
static int read_input(const char *path, uint8_t **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf = NULL;
    size_t n = 0;
    size_t cap = 0;
    if (f == NULL) {
        return -1;
    }
    for (;;) {
        if (n == cap) {
            size_t ncap = cap != 0 ? cap * 2 : 4096;
            if (ncap > REPLAY_MAX_INPUT) {
                goto fail;
            }
            uint8_t *nb = realloc(buf, ncap);
            if (nb == NULL) {
                goto fail;
            }
            buf = nb;
            cap = ncap;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) {
            break;
        }
    }
    if (ferror(f)) {
        goto fail;
    }
    fclose(f);
    /* Exactly n bytes (one for an empty file: malloc(0) may return NULL). */
    uint8_t *exact = fuzz_xmalloc(n);
    if (n > 0) {
        memcpy(exact, buf, n);
    }
    free(buf);
    *out = exact;
    *len = n;
    return 0;
fail:
    free(buf);
    fclose(f);
    return -1;
}

static void run_file(const char *path)
{
    uint8_t *data = NULL;
    size_t len = 0;
    if (read_input(path, &data, &len) != 0) {
        fprintf(stderr, "replay: cannot read %s: %s\n", path, strerror(errno));
        failed++;
        return;
    }
    fprintf(stderr, "replay: %s (%zu bytes)\n", path, len);
    fflush(stderr);
    int rc = LLVMFuzzerTestOneInput(data, len);
    free(data);
    /* libFuzzer accepts 0, and -1 for "do not add this input to the corpus". */
    if (rc != 0 && rc != -1) {
        fprintf(stderr, "replay: %s: target returned %d\n", path, rc);
        failed++;
        return;
    }
    passed++;
}

static int not_dotfile(const struct dirent *e)
{
    return e->d_name[0] != '.';
}

static void run_dir(const char *dir)
{
    struct dirent **names = NULL;
    int n = scandir(dir, &names, not_dotfile, alphasort);
    if (n < 0) {
        fprintf(stderr, "replay: cannot list %s: %s\n", dir, strerror(errno));
        failed++;
        return;
    }
    for (int i = 0; i < n; i++) {
        size_t len = strlen(dir) + 1 + strlen(names[i]->d_name) + 1;
        char *path = fuzz_xmalloc(len);
        struct stat st;
        snprintf(path, len, "%s/%s", dir, names[i]->d_name);
        if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
            run_file(path);
        }
        free(path);
        free(names[i]);
    }
    free(names);
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) {
            fprintf(stderr, "replay: %s: %s\n", argv[i], strerror(errno));
            failed++;
        } else if (S_ISDIR(st.st_mode)) {
            run_dir(argv[i]);
        } else {
            run_file(argv[i]);
        }
    }
    if (passed + failed == 0) {
        fprintf(stderr, "replay: no input found (usage: %s DIR|FILE...)\n", argv[0]);
        failed++;
    }
    printf("%u passed, %u failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
