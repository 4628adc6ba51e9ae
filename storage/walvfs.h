/*
 * walvfs.h: internal to storage/ (not part of store.h): the SQLite VFS through which the store
 * opens its database, the default VFS with a transaction's WAL writes gathered into one
 * (walvfs.c says why and when they are flushed).
 */
#ifndef AS_STORAGE_WALVFS_H
#define AS_STORAGE_WALVFS_H

#include <sqlite3.h>

/* The name to pass to sqlite3_open_v2 once as_walvfs_register has returned SQLITE_OK. */
#define AS_WALVFS_NAME "as-walvfs"

/*
 * Registers the VFS (not as the default) the first time; later calls return the first call's
 * result. SQLITE_OK, or an SQLite error when the default VFS is missing or too old to wrap.
 */
int as_walvfs_register(void);

#endif
