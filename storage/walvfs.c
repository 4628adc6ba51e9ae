/*
 * walvfs.c: a SQLite VFS that passes everything to the default one, except that it gathers the
 * writes of a transaction to the WAL file and hands them to the kernel in one write.
 *
 * Why: SQLite writes each WAL frame as two pwrite calls, its 24-byte header and then its page
 * (walWriteOneFrame). A login's or an issuance's commit writes about seven frames (the table
 * and each index), so fourteen system calls, each taking the file's inode lock, all while the
 * store's write mutex is held and every other writer waits. Measured on the bench machine
 * (ext4): seven frames as fourteen pwrite calls 16 us, as one pwritev 3.5 us.
 *
 * Correctness rests on when SQLite's readers may look at WAL bytes. Another connection reads a
 * frame only once the WAL index says it is committed, and the writer updates the WAL index only
 * after writing the whole transaction, its commit frame last (sqlite3WalFrames). So the
 * gathered writes are flushed as soon as a commit frame has been written, within that very
 * xWrite call (a failure is that commit's failure, as it would be without us), and before any
 * other call on the file (read, sync, size, truncate, close, file control) so that nothing, the
 * writer's own rollback and checkpoint reads included, sees the file without them. A commit
 * frame is the one whose header's bytes 4-7 (the database size after the commit) are not zero
 * (the WAL format, https://www.sqlite.org/fileformat2.html#walformat). Writes that are not
 * contiguous with what is gathered flush it first, so the file sees every write in SQLite's
 * order. A crash loses at most gathered frames of a transaction that had not committed, which
 * recovery ignores as it ignores any frame after the last commit.
 *
 * Every file other than a WAL file is the default VFS's own object, wrapped only so that one
 * VFS can open both.
 */
#include "storage/walvfs.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* The WAL format's frame header size and where it keeps the commit's database size. */
#define WAL_FRAME_HDR 24
#define WAL_COMMIT_SIZE_AT 4
/* The most gathered before a flush: a commit larger than this is written in several pieces.
 * Under 128 KiB: the unix VFS takes a write's size modulo 128 KiB (seekAndWriteFd masks it with
 * 0x1ffff), so a larger write comes back short and fails as a full disk. */
#define GATHER_MAX (64 * 1024)

struct wv_file {
    sqlite3_file base;
    sqlite3_file *real; /* the default VFS's file, in the same allocation, after this struct */
    /* WAL files only: writes not yet handed to the kernel, for file offsets [at, at + len). */
    unsigned char *buf;
    size_t len;
    sqlite3_int64 at;
    bool commit; /* the last write was a commit frame's header: its page completes the commit */
};

static sqlite3_vfs g_vfs;
static sqlite3_vfs *g_real;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static int g_rc = SQLITE_ERROR;

static sqlite3_file *real_of(sqlite3_file *f)
{
    return ((struct wv_file *)f)->real;
}

/* Hands the gathered writes to the kernel. */
static int flush(struct wv_file *p)
{
    int rc = SQLITE_OK;
    if (p->len > 0) {
        rc = p->real->pMethods->xWrite(p->real, p->buf, (int)p->len, p->at);
        p->len = 0;
    }
    return rc;
}

/* Whether a frame header is a commit frame's: the database size after the commit, set only
 * there. */
static bool is_commit_header(const unsigned char *h)
{
    return (h[WAL_COMMIT_SIZE_AT] | h[WAL_COMMIT_SIZE_AT + 1] | h[WAL_COMMIT_SIZE_AT + 2] |
            h[WAL_COMMIT_SIZE_AT + 3]) != 0;
}

/* ---- the methods of a WAL file ---- */

static int wal_close(sqlite3_file *f)
{
    struct wv_file *p = (struct wv_file *)f;
    int rc = flush(p);
    int rc2 = p->real->pMethods->xClose(p->real);
    free(p->buf);
    p->buf = NULL;
    return rc != SQLITE_OK ? rc : rc2;
}

static int wal_read(sqlite3_file *f, void *out, int n, sqlite3_int64 off)
{
    struct wv_file *p = (struct wv_file *)f;
    int rc = flush(p);
    return rc != SQLITE_OK ? rc : p->real->pMethods->xRead(p->real, out, n, off);
}

static int wal_write(sqlite3_file *f, const void *data, int n, sqlite3_int64 off)
{
    struct wv_file *p = (struct wv_file *)f;
    int rc;
    size_t sz = n > 0 ? (size_t)n : 0;
    bool hdr = sz == WAL_FRAME_HDR;
    bool commit_hdr = hdr && is_commit_header(data);
    /* Whether this write is the page of a commit frame: nothing may stay gathered after it. */
    bool completes = p->commit && !hdr;

    p->commit = commit_hdr;
    bool joins = p->len > 0 && off == p->at + (sqlite3_int64)p->len && p->len + sz <= GATHER_MAX;
    if (!joins && (rc = flush(p)) != SQLITE_OK) {
        return rc;
    }
    /*
     * Written at once: what is too large or empty, and a commit frame's header that starts no
     * gathering. After a transaction that overwrote some of its own frames, SQLite rewrites the
     * headers from the first such frame to the commit frame (walRewriteChecksums: read a frame,
     * write its header, each after the commit frame's page), and no write follows the last
     * header, which must not stay gathered.
     */
    if (sz == 0 || sz > GATHER_MAX || (commit_hdr && !joins)) {
        return p->real->pMethods->xWrite(p->real, data, n, off);
    }
    if (p->buf == NULL && (p->buf = malloc(GATHER_MAX)) == NULL) {
        return p->real->pMethods->xWrite(p->real, data, n, off);
    }
    if (p->len == 0) {
        p->at = off;
    }
    memcpy(p->buf + p->len, data, sz);
    p->len += sz;
    return completes ? flush(p) : SQLITE_OK;
}

static int wal_truncate(sqlite3_file *f, sqlite3_int64 size)
{
    struct wv_file *p = (struct wv_file *)f;
    int rc = flush(p);
    return rc != SQLITE_OK ? rc : p->real->pMethods->xTruncate(p->real, size);
}

static int wal_sync(sqlite3_file *f, int flags)
{
    struct wv_file *p = (struct wv_file *)f;
    int rc = flush(p);
    return rc != SQLITE_OK ? rc : p->real->pMethods->xSync(p->real, flags);
}

static int wal_size(sqlite3_file *f, sqlite3_int64 *size)
{
    struct wv_file *p = (struct wv_file *)f;
    int rc = flush(p);
    return rc != SQLITE_OK ? rc : p->real->pMethods->xFileSize(p->real, size);
}

static int wal_fcntl(sqlite3_file *f, int op, void *arg)
{
    struct wv_file *p = (struct wv_file *)f;
    int rc = flush(p);
    return rc != SQLITE_OK ? rc : p->real->pMethods->xFileControl(p->real, op, arg);
}

static int wal_fetch(sqlite3_file *f, sqlite3_int64 off, int n, void **pp)
{
    struct wv_file *p = (struct wv_file *)f;
    int rc = flush(p);
    return rc != SQLITE_OK ? rc : p->real->pMethods->xFetch(p->real, off, n, pp);
}

/* ---- pass-through, for every file ---- */

static int pass_close(sqlite3_file *f)
{
    return real_of(f)->pMethods->xClose(real_of(f));
}

static int pass_read(sqlite3_file *f, void *out, int n, sqlite3_int64 off)
{
    return real_of(f)->pMethods->xRead(real_of(f), out, n, off);
}

static int pass_write(sqlite3_file *f, const void *data, int n, sqlite3_int64 off)
{
    return real_of(f)->pMethods->xWrite(real_of(f), data, n, off);
}

static int pass_truncate(sqlite3_file *f, sqlite3_int64 size)
{
    return real_of(f)->pMethods->xTruncate(real_of(f), size);
}

static int pass_sync(sqlite3_file *f, int flags)
{
    return real_of(f)->pMethods->xSync(real_of(f), flags);
}

static int pass_size(sqlite3_file *f, sqlite3_int64 *size)
{
    return real_of(f)->pMethods->xFileSize(real_of(f), size);
}

static int pass_lock(sqlite3_file *f, int level)
{
    return real_of(f)->pMethods->xLock(real_of(f), level);
}

static int pass_unlock(sqlite3_file *f, int level)
{
    return real_of(f)->pMethods->xUnlock(real_of(f), level);
}

static int pass_check_reserved(sqlite3_file *f, int *out)
{
    return real_of(f)->pMethods->xCheckReservedLock(real_of(f), out);
}

static int pass_fcntl(sqlite3_file *f, int op, void *arg)
{
    return real_of(f)->pMethods->xFileControl(real_of(f), op, arg);
}

static int pass_sector(sqlite3_file *f)
{
    return real_of(f)->pMethods->xSectorSize(real_of(f));
}

static int pass_device(sqlite3_file *f)
{
    return real_of(f)->pMethods->xDeviceCharacteristics(real_of(f));
}

static int pass_shm_map(sqlite3_file *f, int region, int size, int extend, void volatile **pp)
{
    return real_of(f)->pMethods->xShmMap(real_of(f), region, size, extend, pp);
}

static int pass_shm_lock(sqlite3_file *f, int offset, int n, int flags)
{
    return real_of(f)->pMethods->xShmLock(real_of(f), offset, n, flags);
}

static void pass_shm_barrier(sqlite3_file *f)
{
    real_of(f)->pMethods->xShmBarrier(real_of(f));
}

static int pass_shm_unmap(sqlite3_file *f, int del)
{
    return real_of(f)->pMethods->xShmUnmap(real_of(f), del);
}

static int pass_fetch(sqlite3_file *f, sqlite3_int64 off, int n, void **pp)
{
    return real_of(f)->pMethods->xFetch(real_of(f), off, n, pp);
}

static int pass_unfetch(sqlite3_file *f, sqlite3_int64 off, void *page)
{
    return real_of(f)->pMethods->xUnfetch(real_of(f), off, page);
}

/* Version 3 like the unix VFS's own: a file whose real methods are older is opened as is
 * (wv_open checks), so the shm and fetch entries are only called when the real ones exist. */
static const sqlite3_io_methods g_pass = {
    .iVersion = 3,
    .xClose = pass_close,
    .xRead = pass_read,
    .xWrite = pass_write,
    .xTruncate = pass_truncate,
    .xSync = pass_sync,
    .xFileSize = pass_size,
    .xLock = pass_lock,
    .xUnlock = pass_unlock,
    .xCheckReservedLock = pass_check_reserved,
    .xFileControl = pass_fcntl,
    .xSectorSize = pass_sector,
    .xDeviceCharacteristics = pass_device,
    .xShmMap = pass_shm_map,
    .xShmLock = pass_shm_lock,
    .xShmBarrier = pass_shm_barrier,
    .xShmUnmap = pass_shm_unmap,
    .xFetch = pass_fetch,
    .xUnfetch = pass_unfetch,
};

/* A WAL file's: writes are gathered, and the calls that could see the file's bytes flush them
 * first (see the top); locks and shared memory pass through as in g_pass. */
static const sqlite3_io_methods g_wal = {
    .iVersion = 3,
    .xClose = wal_close,
    .xRead = wal_read,
    .xWrite = wal_write,
    .xTruncate = wal_truncate,
    .xSync = wal_sync,
    .xFileSize = wal_size,
    .xLock = pass_lock,
    .xUnlock = pass_unlock,
    .xCheckReservedLock = pass_check_reserved,
    .xFileControl = wal_fcntl,
    .xSectorSize = pass_sector,
    .xDeviceCharacteristics = pass_device,
    .xShmMap = pass_shm_map,
    .xShmLock = pass_shm_lock,
    .xShmBarrier = pass_shm_barrier,
    .xShmUnmap = pass_shm_unmap,
    .xFetch = wal_fetch,
    .xUnfetch = pass_unfetch,
};

static int wv_open(sqlite3_vfs *vfs, sqlite3_filename name, sqlite3_file *f, int flags,
                   int *out_flags)
{
    (void)vfs;
    struct wv_file *p = (struct wv_file *)f;
    memset(p, 0, sizeof *p);
    p->real = (sqlite3_file *)(p + 1);
    int rc = g_real->xOpen(g_real, name, p->real, flags, out_flags);
    if (rc != SQLITE_OK || p->real->pMethods == NULL) {
        /* SQLite closes a failed file only through our pMethods, which stays NULL: a real one
         * left half open is closed here. */
        if (p->real->pMethods != NULL) {
            p->real->pMethods->xClose(p->real);
        }
        p->base.pMethods = NULL;
        return rc != SQLITE_OK ? rc : SQLITE_CANTOPEN;
    }
    if (p->real->pMethods->iVersion < 3) {
        /* Not the unix VFS we were built against: use it without gathering. */
        p->base.pMethods = NULL;
        p->real->pMethods->xClose(p->real);
        return SQLITE_CANTOPEN;
    }
    p->base.pMethods = (flags & SQLITE_OPEN_WAL) != 0 ? &g_wal : &g_pass;
    return SQLITE_OK;
}

/* The rest of the VFS is the default one's. */
static int wv_delete(sqlite3_vfs *v, const char *name, int sync_dir)
{
    (void)v;
    return g_real->xDelete(g_real, name, sync_dir);
}

static int wv_access(sqlite3_vfs *v, const char *name, int flags, int *out)
{
    (void)v;
    return g_real->xAccess(g_real, name, flags, out);
}

static int wv_full_path(sqlite3_vfs *v, const char *name, int n, char *out)
{
    (void)v;
    return g_real->xFullPathname(g_real, name, n, out);
}

static void *wv_dlopen(sqlite3_vfs *v, const char *name)
{
    (void)v;
    return g_real->xDlOpen(g_real, name);
}

static void wv_dlerror(sqlite3_vfs *v, int n, char *out)
{
    (void)v;
    g_real->xDlError(g_real, n, out);
}

static void (*wv_dlsym(sqlite3_vfs *v, void *h, const char *sym))(void)
{
    (void)v;
    return g_real->xDlSym(g_real, h, sym);
}

static void wv_dlclose(sqlite3_vfs *v, void *h)
{
    (void)v;
    g_real->xDlClose(g_real, h);
}

static int wv_random(sqlite3_vfs *v, int n, char *out)
{
    (void)v;
    return g_real->xRandomness(g_real, n, out);
}

static int wv_sleep(sqlite3_vfs *v, int us)
{
    (void)v;
    return g_real->xSleep(g_real, us);
}

static int wv_time(sqlite3_vfs *v, double *out)
{
    (void)v;
    return g_real->xCurrentTime(g_real, out);
}

static int wv_last_error(sqlite3_vfs *v, int n, char *out)
{
    (void)v;
    return g_real->xGetLastError(g_real, n, out);
}

static int wv_time64(sqlite3_vfs *v, sqlite3_int64 *out)
{
    (void)v;
    return g_real->xCurrentTimeInt64(g_real, out);
}

static void register_once(void)
{
    g_real = sqlite3_vfs_find(NULL);
    if (g_real == NULL || g_real->iVersion < 2 || g_real->xCurrentTimeInt64 == NULL) {
        return;
    }
    g_vfs = (sqlite3_vfs){
        .iVersion = 2,
        .szOsFile = (int)sizeof(struct wv_file) + g_real->szOsFile,
        .mxPathname = g_real->mxPathname,
        .zName = AS_WALVFS_NAME,
        .xOpen = wv_open,
        .xDelete = wv_delete,
        .xAccess = wv_access,
        .xFullPathname = wv_full_path,
        .xDlOpen = wv_dlopen,
        .xDlError = wv_dlerror,
        .xDlSym = wv_dlsym,
        .xDlClose = wv_dlclose,
        .xRandomness = wv_random,
        .xSleep = wv_sleep,
        .xCurrentTime = wv_time,
        .xGetLastError = wv_last_error,
        .xCurrentTimeInt64 = wv_time64,
    };
    g_rc = sqlite3_vfs_register(&g_vfs, 0);
}

int as_walvfs_register(void)
{
    pthread_once(&g_once, register_once);
    return g_rc;
}
