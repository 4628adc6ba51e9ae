/*
 * sqlite.c: the SQLite backend of store.h.
 *
 * Durability: WAL with synchronous=NORMAL plus a group commit of our own. A COMMIT (explicit, or
 * the implicit one of an autocommit statement) has written its frames to the WAL file when the
 * call returns AS_OK, so it survives kill -9 of this process; it is on the disk (surviving a
 * power loss) once as_store_sync or as_store_sync_mine has returned, and those make many
 * commits share one fdatasync of the WAL file (SQLite's FULL would sync once per commit, which
 * caps durable writes at the disk's sync rate). Inserts outside a transaction are the exception:
 * they wait in the group transaction (below) for the sync that commits them. The WAL file is
 * kept (SQLITE_FCNTL_PERSIST_WAL) so the descriptor we sync stays the file SQLite writes.
 *
 * Checkpoints: no connection checkpoints as it commits. SQLite's auto-checkpoint made the
 * committing thread, usually one holding write_mu, copy a thousand frames' pages and sync both
 * files while every writer waited. A thread of the store's own (ckpt_main) runs a PASSIVE
 * checkpoint, which waits for no reader or writer, whenever a commit leaves AS_STORE_CKPT_FRAMES
 * more frames in the WAL than the last checkpoint saw. SQLite starts the WAL over only when a
 * write transaction begins with every frame checkpointed, which never happens while groups
 * follow each other; so once the WAL holds AS_STORE_WAL_RESTART_FRAMES, the next writer to take
 * write_mu copies the frames the thread has not yet (usually a few) before it begins, and starts
 * the WAL over (wal_restart_locked). as_store_close checkpoints everything and empties the WAL.
 *
 * Concurrency: every thread gets its own connection, opened lazily and remembered in a
 * pthread_key_t of the store. Writers of this process queue on write_mu (wlock) before SQLite's
 * write lock, and single-row inserts outside a transaction go into one open transaction (the
 * group transaction, group_insert) on one more connection, the store's writer, whose page cache
 * thus stays warm; the next sync or the next other write commits it. Waiting is bounded by
 * AS_STORE_BUSY_MS. Multi-statement writes always start with BEGIN IMMEDIATE (or run
 * inside the caller's BEGIN IMMEDIATE), because a deferred transaction that upgrades from read to
 * write can fail with SQLITE_BUSY_SNAPSHOT without the busy handler ever being consulted.
 *
 * SQL: only the static strings in this file, with bound parameters; nothing is built from input.
 */
#include "storage/store.h"
#include "storage/walvfs.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>
#include <stdatomic.h>

/* Frames added to the WAL between checkpoints (SQLite's default auto-checkpoint), and the WAL
 * size, in frames (32 MiB of 4 KiB pages), past which it is started over (see Checkpoints). */
#define AS_STORE_CKPT_FRAMES 1000
#define AS_STORE_WAL_RESTART_FRAMES 8000

/* How long a connection waits for another writer before giving up with AS_ERR_STORE. */
#define AS_STORE_BUSY_MS 5000
#define BUSY_SLEEP_US 50

/*
 * Waiting for another connection's write lock. SQLite's own busy_timeout sleeps 1, 2, 5, 10 ...
 * 100 ms between tries: with a writer per worker thread, holding the lock for tens of
 * microseconds (commits do not sync, see as_store_sync), that turned every collision into
 * milliseconds of idle. Short sleeps, bounded by AS_STORE_BUSY_MS in all.
 */
static int busy_wait(void *arg, int count)
{
    (void)arg;
    if ((int64_t)count * BUSY_SLEEP_US >= (int64_t)AS_STORE_BUSY_MS * 1000) {
        return 0;
    }
    struct timespec ts = {0, BUSY_SLEEP_US * 1000};
    nanosleep(&ts, NULL);
    return 1;
}

/* The number of elements of an array (an array, not a pointer). */
#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

/* ---- schema migrations ---- */

/*
 * Migration n takes the schema from user_version n-1 to n. Append new entries; never edit an
 * entry that has shipped, since databases in the field have already applied it.
 */
static const struct as_migration {
    int version;
    const char *sql;
} migrations[] = {
    {1, "CREATE TABLE settings ("
        "  key TEXT PRIMARY KEY,"
        "  value BLOB"
        ");"
        "CREATE TABLE tokens ("
        "  accessor TEXT PRIMARY KEY,"
        "  secret_hash BLOB UNIQUE NOT NULL,"
        "  parent TEXT,"
        "  policies TEXT,"
        "  meta TEXT,"
        "  display_name TEXT,"
        "  path TEXT,"
        "  spiffe_ids TEXT,"
        "  allowed_dns TEXT,"
        "  mount TEXT,"
        "  creation_time INTEGER,"
        "  expire_time INTEGER,"
        "  creation_ttl INTEGER,"
        "  explicit_max_ttl INTEGER,"
        "  period INTEGER,"
        "  num_uses INTEGER,"
        "  renewable INTEGER,"
        "  orphan INTEGER"
        ");"
        "CREATE INDEX tokens_parent ON tokens(parent);"
        "CREATE INDEX tokens_expire_time ON tokens(expire_time);"
        "CREATE TABLE policies ("
        "  name TEXT PRIMARY KEY,"
        "  text TEXT NOT NULL"
        ");"},
    /*
     * Issued SVIDs (SPEC §6, §8) and CA generations. AUTOINCREMENT keeps seq and id from ever
     * being reused, so an inventory cursor (seq) and a generation number stay unambiguous even
     * after the newest row is gone.
     */
    {2, "CREATE TABLE certs ("
        "  seq INTEGER PRIMARY KEY AUTOINCREMENT,"
        "  serial TEXT UNIQUE NOT NULL,"
        "  kind TEXT NOT NULL CHECK (kind IN ('x509', 'jwt')),"
        "  spiffe_id TEXT NOT NULL,"
        "  dns TEXT,"
        "  token_accessor TEXT,"
        "  mount TEXT,"
        "  role TEXT,"
        "  subject TEXT,"
        "  ca_gen INTEGER NOT NULL,"
        "  not_before INTEGER NOT NULL,"
        "  not_after INTEGER NOT NULL,"
        "  revoked_at INTEGER NOT NULL DEFAULT 0,"
        "  der BLOB,"
        "  issued_at INTEGER NOT NULL DEFAULT 0"
        ");"
        "CREATE INDEX certs_token_accessor ON certs(token_accessor);"
        "CREATE INDEX certs_ca_gen_revoked ON certs(ca_gen, revoked_at);"
        "CREATE INDEX certs_spiffe_id ON certs(spiffe_id);"
        "CREATE INDEX certs_not_after ON certs(not_after);"
        "CREATE TABLE ca_gens ("
        "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
        "  base TEXT NOT NULL,"
        "  jwt_kid TEXT,"
        "  state TEXT NOT NULL CHECK (state IN ('prepared', 'active', 'retired')),"
        "  not_before INTEGER,"
        "  not_after INTEGER,"
        "  published_at INTEGER,"
        "  activate_at INTEGER"
        ");"},
    /*
     * Auth mounts and their roles (SPEC §3 sys/auth, §5), and the certificate a token logged in
     * with, so that revoking that certificate finds the token (SPEC §5). The index on
     * tokens(mount) serves unmounting, which deletes every token of the mount. Rows of older
     * versions get login_cert NULL: they were not issued by a certificate login that we tracked.
     */
    {3, "ALTER TABLE tokens ADD COLUMN login_cert TEXT;"
        "CREATE INDEX tokens_login_cert ON tokens(login_cert);"
        "CREATE INDEX tokens_mount ON tokens(mount);"
        "CREATE TABLE auth_mounts ("
        "  path TEXT PRIMARY KEY,"
        "  type TEXT NOT NULL CHECK (type IN ('jwt', 'cert')),"
        "  accessor TEXT UNIQUE NOT NULL,"
        "  description TEXT,"
        "  config TEXT,"
        "  created INTEGER NOT NULL"
        ");"
        "CREATE TABLE auth_roles ("
        "  mount TEXT NOT NULL,"
        "  name TEXT NOT NULL,"
        "  json TEXT NOT NULL,"
        "  PRIMARY KEY (mount, name)"
        ");"},
    /*
     * Service-to-service intentions (SPEC §7). Patterns are opaque text here: acl/intentions.c
     * owns their syntax. The change counter lives in settings (AS_INTENTIONS_VERSION_KEY) and
     * needs no row yet: absent reads as version 0.
     */
    {4, "CREATE TABLE intentions ("
        "  id TEXT PRIMARY KEY,"
        "  source TEXT NOT NULL,"
        "  destination TEXT NOT NULL,"
        "  action TEXT NOT NULL CHECK (action IN ('allow', 'deny')),"
        "  description TEXT,"
        "  created INTEGER NOT NULL,"
        "  updated INTEGER NOT NULL"
        ");"},
    /*
     * Most tokens have no parent (every login) and no login certificate (every JWT login), and
     * a full index files each of them under NULL: a page written at every commit for entries
     * no query asks for. Every query on these columns compares them with = (SUBTREE_WHERE, the
     * orphaning update), which SQLite's planner takes to imply IS NOT NULL, so the partial
     * indexes serve them all.
     */
    {5, "DROP INDEX tokens_parent;"
        "CREATE INDEX tokens_parent ON tokens(parent) WHERE parent IS NOT NULL;"
        "DROP INDEX tokens_login_cert;"
        "CREATE INDEX tokens_login_cert ON tokens(login_cert) WHERE login_cert IS NOT NULL;"},
    /*
     * The networks a token may be used from (a role's token_bound_cidrs, SPEC §5, as Vault
     * binds its tokens): a JSON array, NULL for none. Tokens of older versions get NULL: no
     * earlier version bound a token to a network.
     */
    {6, "ALTER TABLE tokens ADD COLUMN bound_cidrs TEXT;"},
};

#define N_MIGRATIONS (sizeof migrations / sizeof migrations[0])

/* ---- prepared statements, cached per connection ---- */

enum stmt_id {
    ST_BEGIN,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_SAVEPOINT,
    ST_RELEASE,
    ST_ROLLBACK_TO,
    ST_SETTING_GET,
    ST_SETTING_PUT,
    ST_SETTING_INSERT,
    ST_TOKEN_INSERT,
    ST_TOKEN_BY_HASH,
    ST_TOKEN_BY_ACCESSOR,
    ST_TOKEN_SET_EXPIRY,
    ST_TOKEN_USE,
    ST_TOKEN_USES_LEFT,
    ST_TOKEN_DELETE_TREE,
    ST_TOKEN_DELETE_ONE,
    ST_TOKEN_DELETE_LOGIN,
    ST_TOKEN_DELETE_MOUNT,
    ST_TOKEN_ORPHAN_CHILDREN,
    ST_TOKEN_LIST,
    ST_TOKEN_PURGE,
    ST_POLICY_PUT,
    ST_POLICY_GET,
    ST_POLICY_DELETE,
    ST_POLICY_LIST,
    ST_TOKEN_REVOKE_CERTS,
    ST_CERT_INSERT,
    ST_CERT_GET,
    ST_CERT_REVOKE,
    ST_CERT_REVOKED_AT,
    ST_CERT_LIST,
    ST_CERT_LIST_REVOKED,
    ST_CERT_CRL,
    ST_CERT_MAX_NOT_AFTER,
    ST_CERT_QUERY,
    ST_CA_GEN_INSERT,
    ST_CA_GEN_LIST,
    ST_CA_GEN_UPDATE,
    ST_MOUNT_INSERT,
    ST_MOUNT_GET,
    ST_MOUNT_LIST,
    ST_MOUNT_SET_CONFIG,
    ST_MOUNT_DELETE,
    ST_ROLE_PUT,
    ST_ROLE_GET,
    ST_ROLE_DELETE,
    ST_ROLE_DELETE_MOUNT,
    ST_ROLE_LIST,
    ST_INTENTION_PUT,
    ST_INTENTION_GET,
    ST_INTENTION_DELETE,
    ST_INTENTION_LIST,
    ST_INTENTION_BUMP,
    ST_INTENTION_VERSION,
    ST_COUNT
};

/* The column order read_token() expects. */
#define TOKEN_COLS                                                                    \
    "accessor, secret_hash, parent, policies, meta, display_name, path, spiffe_ids, " \
    "allowed_dns, mount, login_cert, creation_time, expire_time, creation_ttl, "      \
    "explicit_max_ttl, period, num_uses, renewable, orphan, bound_cidrs"

/* The column order read_cert() expects. */
#define CERT_COLS                                                                       \
    "seq, serial, kind, spiffe_id, dns, token_accessor, mount, role, subject, ca_gen, " \
    "not_before, not_after, revoked_at, der, issued_at"

/* The column order read_ca_gen() expects. */
#define CA_GEN_COLS "id, base, jwt_kid, state, not_before, not_after, published_at, activate_at"

/* The column order read_mount() expects. */
#define MOUNT_COLS "path, type, accessor, description, config, created"

/* The column order read_intention() expects. */
#define INTENTION_COLS "id, source, destination, action, description, created, updated"

/* The settings key of the intentions change counter (store.h: as_store_intention_version). */
#define AS_INTENTIONS_VERSION_KEY "intentions_version"

/*
 * The tokens matching cond (on ?1) and all their descendants. UNION (not UNION ALL) also stops
 * on a cycle.
 */
#define SUBTREE_WHERE(cond)                     \
    "WITH RECURSIVE sub(a) AS ("                \
    "  SELECT accessor FROM tokens WHERE " cond \
    "  UNION SELECT t.accessor FROM tokens t JOIN sub ON t.parent = sub.a) "

/* The subtree rooted at ?1, the root included. */
#define SUBTREE_CTE SUBTREE_WHERE("accessor = ?1")

static const char *const stmt_sql[] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_SAVEPOINT] = "SAVEPOINT as_op",
    [ST_RELEASE] = "RELEASE as_op",
    [ST_ROLLBACK_TO] = "ROLLBACK TO as_op",
    [ST_SETTING_GET] = "SELECT value FROM settings WHERE key = ?1",
    [ST_SETTING_PUT] = "INSERT INTO settings (key, value) VALUES (?1, ?2) "
                       "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    [ST_SETTING_INSERT] = "INSERT INTO settings (key, value) VALUES (?1, ?2)",
    [ST_TOKEN_INSERT] = "INSERT INTO tokens (" TOKEN_COLS ") VALUES "
                        "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, "
                        "?17, ?18, ?19, ?20)",
    [ST_TOKEN_BY_HASH] = "SELECT " TOKEN_COLS " FROM tokens WHERE secret_hash = ?1",
    [ST_TOKEN_BY_ACCESSOR] = "SELECT " TOKEN_COLS " FROM tokens WHERE accessor = ?1",
    [ST_TOKEN_SET_EXPIRY] = "UPDATE tokens SET expire_time = ?2, "
                            "creation_ttl = CASE WHEN ?3 >= 0 THEN ?3 ELSE creation_ttl END "
                            "WHERE accessor = ?1",
    /*
     * The last use leaves -1, not 0: 0 means "unlimited", and a used-up token must not turn
     * into an unlimited one in the window before the caller has revoked it.
     */
    [ST_TOKEN_USE] = "UPDATE tokens SET num_uses = "
                     "CASE WHEN num_uses = 1 THEN -1 ELSE num_uses - 1 END "
                     "WHERE accessor = ?1 AND num_uses > 0 RETURNING num_uses",
    [ST_TOKEN_USES_LEFT] = "SELECT num_uses FROM tokens WHERE accessor = ?1",
    [ST_TOKEN_DELETE_TREE] = SUBTREE_CTE "DELETE FROM tokens WHERE accessor IN sub "
                                         "RETURNING accessor",
    [ST_TOKEN_DELETE_ONE] = "DELETE FROM tokens WHERE accessor = ?1",
    /* The tokens that logged in with certificate ?1, with their subtrees (SPEC §5). */
    [ST_TOKEN_DELETE_LOGIN] = SUBTREE_WHERE("login_cert = ?1") "DELETE FROM tokens "
                                                               "WHERE accessor IN sub "
                                                               "RETURNING accessor",
    /* The tokens issued by auth mount ?1, with their subtrees (SPEC §3: unmount revokes). */
    [ST_TOKEN_DELETE_MOUNT] = SUBTREE_WHERE("mount = ?1") "DELETE FROM tokens "
                                                          "WHERE accessor IN sub "
                                                          "RETURNING accessor",
    [ST_TOKEN_ORPHAN_CHILDREN] = "UPDATE tokens SET parent = NULL, orphan = 1 WHERE parent = ?1",
    [ST_TOKEN_LIST] = "SELECT accessor FROM tokens ORDER BY accessor",
    /* At most AS_STORE_PURGE_BATCH expired tokens (with their subtrees) per call: one long
     * delete would hold the write lock, and every login and issuance waits for it. */
    [ST_TOKEN_PURGE] = "WITH RECURSIVE sub(a) AS ("
                       "  SELECT accessor FROM (SELECT accessor FROM tokens"
                       "    WHERE expire_time > 0 AND expire_time <= ?1 LIMIT ?2)"
                       "  UNION SELECT t.accessor FROM tokens t JOIN sub ON t.parent = sub.a) "
                       "DELETE FROM tokens WHERE accessor IN sub",
    [ST_POLICY_PUT] = "INSERT INTO policies (name, text) VALUES (?1, ?2) "
                      "ON CONFLICT (name) DO UPDATE SET text = excluded.text",
    [ST_POLICY_GET] = "SELECT text FROM policies WHERE name = ?1",
    [ST_POLICY_DELETE] = "DELETE FROM policies WHERE name = ?1",
    [ST_POLICY_LIST] = "SELECT name FROM policies ORDER BY name",
    /*
     * Both kinds: a revoked token takes its X.509- and its JWT-SVIDs with it (SPEC §6). Only the
     * records this statement revokes come back, which is what the cascade follows further.
     */
    [ST_TOKEN_REVOKE_CERTS] = "UPDATE certs SET revoked_at = ?2 "
                              "WHERE token_accessor = ?1 AND revoked_at = 0 RETURNING serial",
    [ST_CERT_INSERT] = "INSERT INTO certs (serial, kind, spiffe_id, dns, token_accessor, mount, "
                       "role, subject, ca_gen, not_before, not_after, revoked_at, der, issued_at) "
                       "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14) "
                       "RETURNING seq",
    [ST_CERT_GET] = "SELECT " CERT_COLS " FROM certs WHERE serial = ?1",
    [ST_CERT_REVOKE] = "UPDATE certs SET revoked_at = ?2 WHERE serial = ?1 AND revoked_at = 0",
    [ST_CERT_REVOKED_AT] = "SELECT revoked_at FROM certs WHERE serial = ?1",
    [ST_CERT_LIST] = "SELECT serial FROM certs WHERE kind = 'x509' ORDER BY serial",
    [ST_CERT_LIST_REVOKED] = "SELECT serial FROM certs WHERE kind = 'x509' AND revoked_at > 0 "
                             "ORDER BY serial",
    [ST_CERT_CRL] = "SELECT serial, revoked_at FROM certs WHERE kind = 'x509' AND ca_gen = ?1 "
                    "AND revoked_at > 0 AND not_after > ?2 ORDER BY serial",
    [ST_CERT_MAX_NOT_AFTER] = "SELECT coalesce(max(not_after), 0) FROM certs "
                              "WHERE ca_gen = ?1",
    /*
     * ?1 is the cursor (INT64_MAX for the first page), so the newest-first walk is a range scan
     * of the rowid. ?3 selects the state (enum cert_state_code); ?5..?6 bound not_before, with
     * the full int64 range standing for "no bound".
     */
    [ST_CERT_QUERY] = "SELECT " CERT_COLS " FROM certs WHERE seq < ?1 AND spiffe_id GLOB ?2 "
                      "AND CASE ?3 "
                      "  WHEN 1 THEN revoked_at = 0 AND not_after > ?4 "
                      "  WHEN 2 THEN revoked_at = 0 AND not_after <= ?4 "
                      "  WHEN 3 THEN revoked_at > 0 "
                      "  ELSE 1 END "
                      "AND issued_at BETWEEN ?5 AND ?6 ORDER BY seq DESC LIMIT ?7",
    [ST_CA_GEN_INSERT] = "INSERT INTO ca_gens (base, jwt_kid, state, not_before, not_after, "
                         "published_at, activate_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) "
                         "RETURNING id",
    [ST_CA_GEN_LIST] = "SELECT " CA_GEN_COLS " FROM ca_gens ORDER BY id",
    [ST_CA_GEN_UPDATE] = "UPDATE ca_gens SET state = ?2, activate_at = ?3 WHERE id = ?1",
    [ST_MOUNT_INSERT] = "INSERT INTO auth_mounts (" MOUNT_COLS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [ST_MOUNT_GET] = "SELECT " MOUNT_COLS " FROM auth_mounts WHERE path = ?1",
    [ST_MOUNT_LIST] = "SELECT " MOUNT_COLS " FROM auth_mounts ORDER BY path",
    [ST_MOUNT_SET_CONFIG] = "UPDATE auth_mounts SET config = ?2 WHERE path = ?1",
    [ST_MOUNT_DELETE] = "DELETE FROM auth_mounts WHERE path = ?1",
    [ST_ROLE_PUT] = "INSERT INTO auth_roles (mount, name, json) VALUES (?1, ?2, ?3) "
                    "ON CONFLICT (mount, name) DO UPDATE SET json = excluded.json",
    [ST_ROLE_GET] = "SELECT json FROM auth_roles WHERE mount = ?1 AND name = ?2",
    [ST_ROLE_DELETE] = "DELETE FROM auth_roles WHERE mount = ?1 AND name = ?2",
    [ST_ROLE_DELETE_MOUNT] = "DELETE FROM auth_roles WHERE mount = ?1",
    [ST_ROLE_LIST] = "SELECT name FROM auth_roles WHERE mount = ?1 ORDER BY name",
    /* An upsert, not INSERT OR REPLACE: REPLACE deletes the old row and would lose created. */
    [ST_INTENTION_PUT] = "INSERT INTO intentions (" INTENTION_COLS ") "
                         "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) "
                         "ON CONFLICT (id) DO UPDATE SET source = excluded.source, "
                         "destination = excluded.destination, action = excluded.action, "
                         "description = excluded.description, updated = excluded.updated",
    [ST_INTENTION_GET] = "SELECT " INTENTION_COLS " FROM intentions WHERE id = ?1",
    [ST_INTENTION_DELETE] = "DELETE FROM intentions WHERE id = ?1",
    [ST_INTENTION_LIST] = "SELECT " INTENTION_COLS " FROM intentions ORDER BY id",
    /*
     * ?1 is AS_INTENTIONS_VERSION_KEY. The settings column is untyped (BLOB affinity), so the
     * counter is stored as an INTEGER value; the CAST and coalesce keep a damaged value from
     * turning the counter into NULL, which would stop it from ever changing again.
     */
    [ST_INTENTION_BUMP] = "INSERT INTO settings (key, value) VALUES (?1, 1) "
                          "ON CONFLICT (key) DO UPDATE SET "
                          "value = coalesce(CAST(value AS INTEGER), 0) + 1",
    [ST_INTENTION_VERSION] = "SELECT coalesce(CAST(value AS INTEGER), 0) FROM settings "
                             "WHERE key = ?1",
};

_Static_assert(sizeof stmt_sql / sizeof stmt_sql[0] == ST_COUNT, "one SQL string per stmt_id");

/* ---- store and connections ---- */

struct as_conn {
    struct as_store *st;
    uint64_t last_commit; /* commit sequence number of this connection's latest write */
    bool invalidates;     /* the open write may change what callers cache (see as_store_epoch) */
    bool wlocked;         /* holds the store's write_mu */
    bool autolocked;      /* ...taken for one autocommit write statement (stmt_put releases) */
    sqlite3 *db;
    pthread_t owner;
    bool in_tx; /* the caller holds an explicit transaction (as_store_begin) */
    sqlite3_stmt *stmts[ST_COUNT];
    struct as_conn *prev;
    struct as_conn *next;
};

struct as_store {
    char *path;
    pthread_key_t key;
    bool key_ok;
    bool linked;
    struct as_conn *conns;
    /* The connection of the group transaction (group_insert), opened with the store and not in
     * conns: used only under write_mu, by whichever thread holds it. */
    struct as_conn *writer;
    struct as_store *prev;
    struct as_store *next;
    struct as_hist commit_hist; /* durations of commits (explicit, and of single writes) */
    /* Group commit: commits are numbered; synced is the last one known on disk. */
    _Atomic uint64_t commit_seq;
    _Atomic uint64_t epoch; /* bumped after every commit that may change a cached answer */
    pthread_mutex_t sync_mu;
    pthread_cond_t sync_cv;
    /* Writers of this process queue here rather than on SQLite's file lock (see wlock). */
    pthread_mutex_t write_mu;
    /* The commit number of the open group transaction, 0 when none is open. Written under
     * write_mu; read without it to tell whether a thread's latest insert is still uncommitted. */
    _Atomic uint64_t group_seq;
    /* Under sync_mu: numbers of group transactions that failed to commit (their rows are gone),
     * so that no sync of theirs reports them on disk. lost_broken: one could not be recorded,
     * and every later sync fails. */
    uint64_t *lost;
    size_t nlost;
    bool lost_broken;
    bool sync_init;
    bool syncing;
    uint64_t synced;
    int wal_fd;
    /* The checkpoint thread (ckpt_main), started by the first commit that needs it. wal_frames:
     * the WAL's size in frames after the latest commit (wal_hook); ckpt_at: its size when the
     * latest checkpoint ran. */
    _Atomic int wal_frames;
    _Atomic int ckpt_at;
    int restart_tried; /* under write_mu: wal_frames when wal_restart_locked last tried */
    pthread_mutex_t ckpt_mu;
    pthread_cond_t ckpt_cv;
    pthread_t ckpt_thread;
    bool ckpt_started;
    bool ckpt_want;
    bool ckpt_stop;
};

/*
 * One process-wide lock guards the list of open stores and each store's list of connections.
 * It is global rather than per store because a thread-exit destructor must be able to find out
 * whether its store still exists without touching memory that as_store_close may have freed.
 */
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static struct as_store *g_stores;

/* Maps a failed SQLite result code to our errors; logs the ones that are not routine. */
static enum as_err map_err(const struct as_conn *c, int rc, const char *what)
{
    /* SQLite's messages name tables and columns, never bound values, so they hold no secret. */
    const char *msg = c != NULL && c->db != NULL ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc);

    switch (rc & 0xff) {
    case SQLITE_CONSTRAINT:
        if (rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY) {
            return AS_ERR_EXISTS;
        }
        /* NOT NULL, CHECK or foreign-key violations are bad input, not a duplicate. */
        as_warn("store: %s: %s", what, msg);
        return AS_ERR_INVALID;
    case SQLITE_NOMEM:
        return AS_ERR_NOMEM;
    case SQLITE_TOOBIG:
        return AS_ERR_TOO_LARGE;
    default:
        as_error("store: %s failed: %s (%d)", what, msg, rc);
        return AS_ERR_STORE;
    }
}

static void conn_close(struct as_conn *c)
{
    if (c == NULL) {
        return;
    }
    for (size_t i = 0; i < ST_COUNT; i++) {
        sqlite3_finalize(c->stmts[i]);
    }
    if (c->db != NULL) {
        if (c->in_tx && !sqlite3_get_autocommit(c->db)) {
            as_warn("store: closing a connection inside a transaction; it is rolled back");
        }
        int rc = sqlite3_close(c->db);
        if (rc != SQLITE_OK) {
            as_error("store: close failed: %s", sqlite3_errstr(rc));
        }
    }
    free(c);
}

/* Unlinks c from its store's list. Caller holds g_mu. */
static void conn_unlink(struct as_conn *c)
{
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        c->st->conns = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    }
    c->prev = c->next = NULL;
}

/*
 * Thread-exit destructor of a store's key. It closes the connection only if the store still
 * lists it: when as_store_close got there first, the connection is already closed and freed,
 * and v is only compared, never dereferenced. The owner check keeps a recycled address that now
 * belongs to another thread's connection from being mistaken for ours.
 */
static void conn_destructor(void *v)
{
    struct as_conn *found = NULL;

    pthread_mutex_lock(&g_mu);
    for (struct as_store *s = g_stores; s != NULL && found == NULL; s = s->next) {
        for (struct as_conn *c = s->conns; c != NULL; c = c->next) {
            if (c == v && pthread_equal(c->owner, pthread_self())) {
                conn_unlink(c);
                found = c;
                break;
            }
        }
    }
    pthread_mutex_unlock(&g_mu);
    conn_close(found);
}

/* Runs static SQL (migrations, pragmas) that returns no rows we need. */
static enum as_err db_exec(struct as_conn *c, const char *sql, const char *what)
{
    int rc = sqlite3_exec(c->db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? AS_OK : map_err(c, rc, what);
}

static void ckpt_kick(struct as_store *st);

/* Called by SQLite after each commit in WAL mode with the WAL's size in frames. */
static int wal_hook(void *arg, sqlite3 *db, const char *name, int frames)
{
    (void)db;
    (void)name;
    struct as_store *st = arg;
    atomic_store(&st->wal_frames, frames);
    ckpt_kick(st);
    return SQLITE_OK;
}

static enum as_err conn_open(struct as_store *st, struct as_conn **out)
{
    enum as_err r = AS_OK;
    struct as_conn *c = NULL;
    int rc;

    c = calloc(1, sizeof *c);
    if (c == NULL) {
        r = AS_ERR_NOMEM;
        goto out;
    }
    c->st = st;
    c->owner = pthread_self();
    /*
     * No SQLITE_OPEN_CREATE: as_store_open has created the file with mode 0600, and a file that
     * vanished since must not silently come back empty. NOMUTEX because a connection is only ever
     * used by one thread at a time: its own, or for the writer, whichever thread holds write_mu
     * (as_store_close runs when no thread uses the store).
     */
    /* Through walvfs (a commit's WAL frames in one write), or the default VFS if it could not
     * be registered, which works the same, only slower. */
    rc = sqlite3_open_v2(st->path, &c->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
                         as_walvfs_register() == SQLITE_OK ? AS_WALVFS_NAME : NULL);
    if (rc != SQLITE_OK) {
        r = map_err(c, rc, "open");
        goto out;
    }
    sqlite3_extended_result_codes(c->db, 1);
    rc = sqlite3_busy_handler(c->db, busy_wait, NULL);
    if (rc != SQLITE_OK) {
        r = map_err(c, rc, "busy_handler");
        goto out;
    }
    /* Replaces SQLite's auto-checkpoint (see Checkpoints at the top). */
    sqlite3_wal_hook(c->db, wal_hook, st);
    /* Hardening: no writes to the schema behind SQLite's back, no functions run from schema. */
    sqlite3_db_config(c->db, SQLITE_DBCONFIG_DEFENSIVE, 1, (int *)NULL);
    sqlite3_db_config(c->db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, (int *)NULL);
    /* Both are per connection, unlike journal_mode which the file remembers. */
    /* Per connection, unlike journal_mode which the file remembers. NORMAL: the commit's
     * frames are written, the group commit (as_store_sync) makes them durable. A small page
     * cache per connection: each worker thread has one, and lookups are by index. */
    if ((r = db_exec(c,
                     "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; "
                     "PRAGMA cache_size = -1024;",
                     "pragmas")) != AS_OK) {
        goto out;
    }
    int persist = 1;
    if (sqlite3_file_control(c->db, "main", SQLITE_FCNTL_PERSIST_WAL, &persist) != SQLITE_OK) {
        r = AS_ERR_STORE;
        goto out;
    }
    *out = c;
    c = NULL;
out:
    conn_close(c);
    return r;
}

/* The calling thread's connection, opened on first use. */
static enum as_err conn_get(struct as_store *st, struct as_conn **out)
{
    enum as_err r = AS_OK;
    struct as_conn *c = pthread_getspecific(st->key);

    if (c != NULL) {
        *out = c;
        return AS_OK;
    }
    if ((r = conn_open(st, &c)) != AS_OK) {
        goto out;
    }
    pthread_mutex_lock(&g_mu);
    c->next = st->conns;
    if (st->conns != NULL) {
        st->conns->prev = c;
    }
    st->conns = c;
    pthread_mutex_unlock(&g_mu);
    if (pthread_setspecific(st->key, c) != 0) {
        pthread_mutex_lock(&g_mu);
        conn_unlink(c);
        pthread_mutex_unlock(&g_mu);
        r = AS_ERR_NOMEM;
        goto out;
    }
    *out = c;
    c = NULL;
out:
    conn_close(c);
    return r;
}

static enum as_err group_commit_upto(struct as_store *st, uint64_t seq);
static void group_commit_locked(struct as_store *st);

/*
 * The calling thread's connection, ready for a data call. Some failures (I/O, disk full, out of
 * memory) make SQLite roll back a whole transaction; if that happened to the caller's explicit
 * transaction, further statements would silently autocommit, so refuse until it is rolled back.
 */
static enum as_err conn_ready(struct as_store *st, struct as_conn **out)
{
    enum as_err r;
    struct as_conn *c = NULL;

    if ((r = conn_get(st, &c)) != AS_OK) {
        return r;
    }
    if (c->in_tx && sqlite3_get_autocommit(c->db)) {
        as_error("store: the transaction was aborted by an earlier error; roll it back");
        return AS_ERR_STORE;
    }
    /* A thread reads its own inserts: commit the group transaction if one of them is in it
     * (its own insert has finished, so group_seq shows that group). */
    if (!c->in_tx && !c->wlocked && c->last_commit != 0 &&
        c->last_commit == atomic_load(&c->st->group_seq) &&
        (r = group_commit_upto(c->st, c->last_commit)) != AS_OK) {
        return r;
    }
    *out = c;
    return AS_OK;
}

/* ---- the process' write lock ---- */

/*
 * Writers of this process take write_mu before SQLite's write lock: waiting threads are woken the
 * moment it is free instead of polling SQLite's lock (busy_wait), which under a write per worker
 * thread cost more CPU than the writes. A bounded wait: past AS_STORE_BUSY_MS the writer goes on
 * without it (SQLite's own lock still serializes), so a lock-order mistake elsewhere shows up as
 * slowness and a log line, never as a hang.
 */
/* Takes st->write_mu, waiting at most AS_STORE_BUSY_MS; false when that ran out. */
static bool write_mu_lock(struct as_store *st)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += AS_STORE_BUSY_MS / 1000;
    return pthread_mutex_timedlock(&st->write_mu, &until) == 0;
}

static int checkpoint(struct as_conn *c);

/*
 * Once the WAL has grown past AS_STORE_WAL_RESTART_FRAMES, checkpoints on c what the checkpoint
 * thread has not copied yet, so that the write transaction c begins next finds every frame in
 * the database file and SQLite writes the WAL from its start again (see Checkpoints at the top).
 * Caller holds write_mu, with no transaction open. A reader's old snapshot can keep frames from
 * being copied: then this is tried again only after AS_STORE_CKPT_FRAMES / 4 more frames.
 */
static void wal_restart_locked(struct as_store *st, struct as_conn *c)
{
    int frames = atomic_load(&st->wal_frames);
    if (frames < AS_STORE_WAL_RESTART_FRAMES) {
        st->restart_tried = 0;
        return;
    }
    if (st->restart_tried != 0 && frames >= st->restart_tried &&
        frames - st->restart_tried < AS_STORE_CKPT_FRAMES / 4) {
        return;
    }
    st->restart_tried = frames;
    (void)checkpoint(c);
}

static void wlock(struct as_conn *c)
{
    if (c->wlocked) {
        return;
    }
    if (write_mu_lock(c->st)) {
        c->wlocked = true;
        /* SQLite's write lock is the group transaction's while it is open. */
        group_commit_locked(c->st);
        wal_restart_locked(c->st, c);
    } else {
        as_warn("store: waited %d ms for the write lock; writing without it", AS_STORE_BUSY_MS);
    }
}

static void wunlock(struct as_conn *c)
{
    if (c->wlocked) {
        c->wlocked = false;
        c->autolocked = false;
        /* Whatever was written has been committed (note_commit moved the epoch) or undone. */
        c->invalidates = false;
        pthread_mutex_unlock(&c->st->write_mu);
    }
}

/* The connection whose autocommit write holds the lock, for stmt_put. */
static _Thread_local struct as_conn *t_autolocked;

static enum as_err stmt_get(struct as_conn *c, enum stmt_id id, sqlite3_stmt **out)
{
    if (c->stmts[id] == NULL) {
        int rc = sqlite3_prepare_v3(c->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT,
                                    &c->stmts[id], NULL);
        if (rc != SQLITE_OK) {
            return map_err(c, rc, "prepare");
        }
    }
    *out = c->stmts[id];
    /* Every write may change a cached answer except adding a token or a certificate (nothing
     * cached can have seen them yet) and settings (the audit head, sequences). Transaction
     * control reads as read-only here. */
    /* Transaction control is not a write of its own (BEGIN IMMEDIATE reads as one). */
    bool control = id == ST_BEGIN || id == ST_COMMIT || id == ST_ROLLBACK || id == ST_SAVEPOINT ||
                   id == ST_RELEASE || id == ST_ROLLBACK_TO;
    bool write = !control && !sqlite3_stmt_readonly(*out);
    if (id != ST_TOKEN_INSERT && id != ST_CERT_INSERT && id != ST_SETTING_PUT &&
        id != ST_SETTING_INSERT && write) {
        c->invalidates = true;
    }
    /* A write outside any transaction is one: it takes the write lock until stmt_put. */
    if (write && !c->wlocked) {
        wlock(c);
        if (c->wlocked) {
            c->autolocked = true;
            t_autolocked = c;
        }
    }
    return AS_OK;
}

/* Returns a cached statement to its idle state. Bindings are cleared so no pointer lingers. */
static void stmt_put(sqlite3_stmt *s)
{
    if (s != NULL) {
        sqlite3_reset(s);
        sqlite3_clear_bindings(s);
    }
    struct as_conn *c = t_autolocked;
    if (c != NULL && c->autolocked) {
        t_autolocked = NULL;
        wunlock(c);
    }
}

/* The calling thread's connection (see conn_ready) and its cached statement id, ready to bind. */
static enum as_err stmt_ready(struct as_store *st, enum stmt_id id, struct as_conn **c,
                              sqlite3_stmt **s)
{
    enum as_err r;

    if ((r = conn_ready(st, c)) != AS_OK) {
        return r;
    }
    return stmt_get(*c, id, s);
}

/* ---- stepping: each maps a failed step to our errors with map_err(what) ---- */

/*
 * A write outside an explicit transaction commits (and syncs) inside its step: its duration is a
 * commit's. Transaction control statements count as read-only here; as_store_commit times those.
 */
static void note_commit(struct as_conn *c)
{
    c->last_commit = atomic_fetch_add(&c->st->commit_seq, 1) + 1;
    if (c->invalidates) {
        atomic_fetch_add(&c->st->epoch, 1);
        c->invalidates = false;
    }
}

uint64_t as_store_epoch(struct as_store *st)
{
    return atomic_load(&st->epoch);
}

static void note_autocommit(struct as_conn *c, sqlite3_stmt *s, int64_t t0)
{
    if (!c->in_tx && !sqlite3_stmt_readonly(s) && sqlite3_get_autocommit(c->db)) {
        as_hist_observe(&c->st->commit_hist, as_mono_ns() - t0);
        note_commit(c);
    }
}

/* Steps a statement that returns no rows (a write, transaction control) to completion. */
static enum as_err step_done(struct as_conn *c, sqlite3_stmt *s, const char *what)
{
    int64_t t0 = as_mono_ns();
    int rc = sqlite3_step(s);
    if (rc == SQLITE_DONE) {
        note_autocommit(c, s, t0);
    }
    return rc == SQLITE_DONE ? AS_OK : map_err(c, rc, what);
}

/* step_done for an UPDATE or DELETE of one row: AS_ERR_NOT_FOUND if it changed nothing. */
static enum as_err step_change(struct as_conn *c, sqlite3_stmt *s, const char *what)
{
    enum as_err r = step_done(c, s, what);

    if (r == AS_OK && sqlite3_changes64(c->db) == 0) {
        r = AS_ERR_NOT_FOUND;
    }
    return r;
}

/* Steps a query to its first row: AS_OK with that row current, AS_ERR_NOT_FOUND if none. */
static enum as_err step_row(struct as_conn *c, sqlite3_stmt *s, const char *what)
{
    int rc = sqlite3_step(s);

    if (rc == SQLITE_ROW) {
        return AS_OK;
    }
    return rc == SQLITE_DONE ? AS_ERR_NOT_FOUND : map_err(c, rc, what);
}

/* step_row for a query of one integer: *out receives column 0 of the first row. */
static enum as_err step_int64(struct as_conn *c, sqlite3_stmt *s, const char *what, int64_t *out)
{
    enum as_err r = step_row(c, s, what);

    if (r == AS_OK) {
        *out = sqlite3_column_int64(s, 0);
    }
    return r;
}

/*
 * Steps a write with RETURNING of one integer to completion: the row is written once the
 * statement reaches SQLITE_DONE, not at its RETURNING row. A write that matched nothing is not
 * an error here; if a row came back, *out receives its column 0 and *returned (may be NULL) true.
 * Neither is touched on failure.
 */
static enum as_err step_returning(struct as_conn *c, sqlite3_stmt *s, const char *what,
                                  int64_t *out, bool *returned)
{
    int64_t v = 0;
    bool got = false;
    int64_t t0 = as_mono_ns();
    int rc = sqlite3_step(s);

    if (rc == SQLITE_ROW) {
        v = sqlite3_column_int64(s, 0);
        got = true;
        rc = sqlite3_step(s);
    }
    if (rc != SQLITE_DONE) {
        return map_err(c, rc, what);
    }
    note_autocommit(c, s, t0);
    if (got) {
        *out = v;
    }
    if (returned != NULL) {
        *returned = got;
    }
    return AS_OK;
}

/* Runs a statement without parameters or rows (transaction control). */
static enum as_err run_simple(struct as_conn *c, enum stmt_id id, const char *what)
{
    enum as_err r;
    sqlite3_stmt *s = NULL;

    if ((r = stmt_get(c, id, &s)) != AS_OK) {
        return r;
    }
    r = step_done(c, s, what);
    stmt_put(s);
    return r;
}

/* ---- binding parameters ---- */

static enum as_err bind_text(struct as_conn *c, sqlite3_stmt *s, int i, const char *v)
{
    /* SQLITE_STATIC is safe: every statement is reset and its bindings cleared before return. */
    int rc = v != NULL ? sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC) : sqlite3_bind_null(s, i);
    return rc == SQLITE_OK ? AS_OK : map_err(c, rc, "bind");
}

static enum as_err bind_blob(struct as_conn *c, sqlite3_stmt *s, int i, const void *v, size_t n)
{
    /* A zero-length value is stored as an empty blob, not NULL, so it reads back as set. */
    int rc = sqlite3_bind_blob64(s, i, n > 0 ? v : "", n, SQLITE_STATIC);
    return rc == SQLITE_OK ? AS_OK : map_err(c, rc, "bind");
}

static enum as_err bind_int64(struct as_conn *c, sqlite3_stmt *s, int i, int64_t v)
{
    int rc = sqlite3_bind_int64(s, i, v);
    return rc == SQLITE_OK ? AS_OK : map_err(c, rc, "bind");
}

/* Binds v[0..n-1] (NULL as SQL NULL) to parameters first, first + 1, ... */
static enum as_err bind_texts(struct as_conn *c, sqlite3_stmt *s, int first, const char *const *v,
                              size_t n)
{
    enum as_err r;

    for (size_t i = 0; i < n; i++) {
        if ((r = bind_text(c, s, first + (int)i, v[i])) != AS_OK) {
            return r;
        }
    }
    return AS_OK;
}

/* Binds v[0..n-1] to parameters first, first + 1, ... */
static enum as_err bind_int64s(struct as_conn *c, sqlite3_stmt *s, int first, const int64_t *v,
                               size_t n)
{
    enum as_err r;

    for (size_t i = 0; i < n; i++) {
        if ((r = bind_int64(c, s, first + (int)i, v[i])) != AS_OK) {
            return r;
        }
    }
    return AS_OK;
}

/* ---- reading columns ---- */

/* Copies text column i into a new string; a NULL column gives NULL. */
static enum as_err col_strdup(sqlite3_stmt *s, int i, char **out)
{
    *out = NULL;
    if (sqlite3_column_type(s, i) == SQLITE_NULL) {
        return AS_OK;
    }
    const unsigned char *t = sqlite3_column_text(s, i);
    if (t == NULL) {
        return AS_ERR_NOMEM; /* the column is not NULL, so only the conversion can have failed */
    }
    size_t n = (size_t)sqlite3_column_bytes(s, i);
    char *p = malloc(n + 1);
    if (p == NULL) {
        return AS_ERR_NOMEM;
    }
    memcpy(p, t, n);
    p[n] = '\0';
    *out = p;
    return AS_OK;
}

/* col_strdup of columns first, first + 1, ... into *dst[0..n-1]. */
static enum as_err col_strdups(sqlite3_stmt *s, int first, char **const *dst, size_t n)
{
    enum as_err r;

    for (size_t i = 0; i < n; i++) {
        if ((r = col_strdup(s, first + (int)i, dst[i])) != AS_OK) {
            return r;
        }
    }
    return AS_OK;
}

/*
 * Copies blob column i into a new buffer (*out, length *len), untouched on failure. Always a
 * real allocation, even for an empty value, so the caller can free (and wipe) without special
 * cases and an empty value stays distinct from an absent one.
 */
static enum as_err col_blobdup(sqlite3_stmt *s, int i, unsigned char **out, size_t *len)
{
    const void *p = sqlite3_column_blob(s, i);
    size_t n = (size_t)sqlite3_column_bytes(s, i);
    unsigned char *v;

    if (p == NULL && n > 0) {
        return AS_ERR_NOMEM;
    }
    v = malloc(n > 0 ? n : 1);
    if (v == NULL) {
        return AS_ERR_NOMEM;
    }
    if (n > 0) {
        memcpy(v, p, n);
    }
    *out = v;
    *len = n;
    return AS_OK;
}

/* ---- collecting rows ---- */

void as_store_strv_free(char **v, size_t n)
{
    if (v == NULL) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        free(v[i]);
    }
    free(v);
}

/*
 * Grows an array of elem-sized items to hold at least one more than *cap. Returns the new array
 * (and updates *cap), or NULL with v and *cap untouched.
 */
static void *grow_array(void *v, size_t *cap, size_t elem)
{
    size_t ncap = *cap > 0 ? *cap * 2 : 16;
    if (ncap < *cap || ncap > SIZE_MAX / elem) {
        return NULL;
    }
    void *nv = realloc(v, ncap * elem);
    if (nv != NULL) {
        *cap = ncap;
    }
    return nv;
}

/*
 * Fills the array element at elem from the current row of s, and leaves it untouched on
 * failure. ctx is whatever the caller passed to collect_rows.
 */
typedef enum as_err (*row_reader)(sqlite3_stmt *s, void *elem, void *ctx);

/*
 * Steps s to completion and appends one size-byte element per row, filled by read, to the
 * growing array *v of *n elements (NULL and 0 on entry). On failure too, *v and *n describe the
 * elements read so far: the caller frees them with the free function of their type.
 */
static enum as_err collect_rows(struct as_conn *c, sqlite3_stmt *s, const char *what,
                                row_reader read, size_t size, void *ctx, void **v, size_t *n)
{
    enum as_err r;
    size_t cap = 0;
    int rc;

    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (*n == cap) {
            void *nv = grow_array(*v, &cap, size);
            if (nv == NULL) {
                return AS_ERR_NOMEM;
            }
            *v = nv;
        }
        if ((r = read(s, (char *)*v + *n * size, ctx)) != AS_OK) {
            return r;
        }
        (*n)++;
    }
    return rc == SQLITE_DONE ? AS_OK : map_err(c, rc, what);
}

/* A row_reader: a copy of text column 0 into the char * at elem. */
static enum as_err read_text0(sqlite3_stmt *s, void *elem, void *ctx)
{
    enum as_err r;
    char *str = NULL;

    (void)ctx;
    if ((r = col_strdup(s, 0, &str)) != AS_OK) {
        return r;
    }
    if (str == NULL) {
        return AS_ERR_STORE; /* a key or NOT NULL column was NULL: the file is damaged */
    }
    *(char **)elem = str;
    return AS_OK;
}

/*
 * Collects text column 0 of every row of s into a new string vector (as_store_strv_free);
 * nothing is returned on failure. A RETURNING statement finishes its work only at SQLITE_DONE,
 * which collecting every row reaches.
 */
static enum as_err collect_strv(struct as_conn *c, sqlite3_stmt *s, const char *what, char ***out,
                                size_t *nout)
{
    void *v = NULL;
    size_t n = 0;
    enum as_err r = collect_rows(c, s, what, read_text0, sizeof(char *), NULL, &v, &n);

    if (r != AS_OK) {
        as_store_strv_free(v, n);
        return r;
    }
    *out = v;
    *nout = n;
    return AS_OK;
}

/*
 * Runs the cached query id with key bound to ?1 and reads its first row into dst with read
 * (ctx NULL). AS_ERR_NOT_FOUND if there is no row.
 */
static enum as_err row_by_key(struct as_store *st, enum stmt_id id, const char *key,
                              const char *what, row_reader read, void *dst)
{
    enum as_err r;
    struct as_conn *c = NULL;
    sqlite3_stmt *s = NULL;

    if ((r = stmt_ready(st, id, &c, &s)) != AS_OK || (r = bind_text(c, s, 1, key)) != AS_OK ||
        (r = step_row(c, s, what)) != AS_OK) {
        goto out;
    }
    r = read(s, dst, NULL);
out:
    stmt_put(s);
    return r;
}

/* ---- internal transactions for multi-statement writes ---- */

enum tx_kind { TX_OWN, TX_SAVEPOINT };

/*
 * Makes the following statements atomic: inside the caller's transaction a savepoint (so a
 * failure undoes only our part and leaves the caller's transaction usable), otherwise our own
 * BEGIN IMMEDIATE.
 */
static enum as_err tx_enter(struct as_conn *c, enum tx_kind *kind)
{
    enum as_err r;

    if (c->in_tx) {
        *kind = TX_SAVEPOINT;
        return run_simple(c, ST_SAVEPOINT, "savepoint");
    }
    *kind = TX_OWN;
    wlock(c);
    if ((r = run_simple(c, ST_BEGIN, "begin")) != AS_OK) {
        wunlock(c);
        return r;
    }
    return AS_OK;
}

/* The calling thread's connection (conn_ready) inside tx_enter; on AS_OK, end with tx_leave. */
static enum as_err tx_open(struct as_store *st, struct as_conn **c, enum tx_kind *kind)
{
    enum as_err r;

    if ((r = conn_ready(st, c)) != AS_OK) {
        return r;
    }
    return tx_enter(*c, kind);
}

/* Commits (r == AS_OK) or undoes what tx_enter started; returns the final result. */
static enum as_err tx_leave(struct as_conn *c, enum tx_kind kind, enum as_err r)
{
    enum as_err e;

    switch (kind) {
    case TX_OWN:
        if (r == AS_OK) {
            int64_t t0 = as_mono_ns();
            r = run_simple(c, ST_COMMIT, "commit");
            if (r == AS_OK) {
                as_hist_observe(&c->st->commit_hist, as_mono_ns() - t0);
                note_commit(c); /* for the group commit and the caches' epoch */
            }
        }
        if (r != AS_OK && !sqlite3_get_autocommit(c->db)) {
            (void)run_simple(c, ST_ROLLBACK, "rollback");
        }
        wunlock(c);
        break;
    case TX_SAVEPOINT:
        /* If SQLite already dropped the whole transaction, conn_ready reports it next time. */
        if (r != AS_OK && !sqlite3_get_autocommit(c->db)) {
            (void)run_simple(c, ST_ROLLBACK_TO, "rollback to savepoint");
        }
        if (!sqlite3_get_autocommit(c->db)) {
            e = run_simple(c, ST_RELEASE, "release savepoint");
            if (r == AS_OK) {
                r = e;
            }
        }
        break;
    }
    return r;
}

/* ---- open, close, migrate ---- */

/* Applies every migration newer than the file's user_version, in one transaction. */
static enum as_err migrate(struct as_conn *c)
{
    enum as_err r;
    sqlite3_stmt *s = NULL;
    int rc, version;
    char sql[64];

    if ((r = db_exec(c, "BEGIN IMMEDIATE", "migration begin")) != AS_OK) {
        return r;
    }
    rc = sqlite3_prepare_v2(c->db, "PRAGMA user_version", -1, &s, NULL);
    if (rc != SQLITE_OK || (rc = sqlite3_step(s)) != SQLITE_ROW) {
        r = map_err(c, rc, "read user_version");
        goto out;
    }
    version = sqlite3_column_int(s, 0);
    sqlite3_finalize(s);
    s = NULL;
    if (version < 0 || (size_t)version > N_MIGRATIONS) {
        as_error("store: schema version %d is not one this build knows (1..%zu)", version,
                 N_MIGRATIONS);
        r = AS_ERR_CONFIG;
        goto out;
    }
    for (size_t i = (size_t)version; i < N_MIGRATIONS; i++) {
        const struct as_migration *m = &migrations[i];
        if ((size_t)m->version != i + 1) {
            as_error("store: migration table out of order at entry %zu", i);
            r = AS_ERR_INTERNAL;
            goto out;
        }
        if ((r = db_exec(c, m->sql, "migration")) != AS_OK) {
            goto out;
        }
        /* PRAGMA takes no parameters; the number comes from the table above, not from input. */
        snprintf(sql, sizeof sql, "PRAGMA user_version = %d", m->version);
        if ((r = db_exec(c, sql, "set user_version")) != AS_OK) {
            goto out;
        }
        as_info("store: schema migrated to version %d", m->version);
    }
    r = db_exec(c, "COMMIT", "migration commit");
out:
    sqlite3_finalize(s);
    if (r != AS_OK && !sqlite3_get_autocommit(c->db)) {
        (void)db_exec(c, "ROLLBACK", "migration rollback");
    }
    return r;
}

/* WAL is a property of the file, so setting it once at open covers every later connection. */
static enum as_err set_wal(struct as_conn *c)
{
    enum as_err r = AS_OK;
    sqlite3_stmt *s = NULL;
    int rc;

    rc = sqlite3_prepare_v2(c->db, "PRAGMA journal_mode = WAL", -1, &s, NULL);
    if (rc != SQLITE_OK || (rc = sqlite3_step(s)) != SQLITE_ROW) {
        r = map_err(c, rc, "set journal_mode");
        goto out;
    }
    const unsigned char *mode = sqlite3_column_text(s, 0);
    if (mode == NULL || strcasecmp((const char *)mode, "wal") != 0) {
        as_error("store: the database refused WAL mode");
        r = AS_ERR_STORE;
        goto out;
    }
out:
    sqlite3_finalize(s);
    return r;
}

/*
 * Creates the file with mode 0600 (or tightens an existing one) before SQLite opens it.
 *
 * An existing file is handled by path (stat, chmod), never by opening and closing a descriptor:
 * closing any descriptor of a file drops every POSIX lock this process holds on it, including
 * the locks of connections another store in this process has open, and that corrupts databases.
 * A file we create with O_EXCL is new, so nobody can hold a lock on it yet.
 */
static enum as_err create_file(const char *path)
{
    struct stat sb;
    int fd;

    fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0) {
        close(fd);
        return AS_OK;
    }
    if (errno != EEXIST) {
        as_error("store: cannot create %s: %s", path, strerror(errno));
        return AS_ERR_IO;
    }
    if (stat(path, &sb) != 0) {
        as_error("store: cannot stat %s: %s", path, strerror(errno));
        return AS_ERR_IO;
    }
    if (!S_ISREG(sb.st_mode)) {
        as_error("store: %s is not a regular file", path);
        return AS_ERR_CONFIG;
    }
    /* The settings table holds server keys: the file must not be readable by anyone else. */
    if ((sb.st_mode & 077) != 0) {
        if (chmod(path, 0600) != 0) {
            as_error("store: %s is accessible to others and cannot be restricted: %s", path,
                     strerror(errno));
            return AS_ERR_PERMISSION;
        }
        as_warn("store: %s was accessible to others; mode set to 0600", path);
    }
    return AS_OK;
}

enum as_err as_store_open(const char *path, struct as_store **out)
{
    enum as_err r;
    struct as_store *st = NULL;

    if (path == NULL || out == NULL) {
        return AS_ERR_INVALID;
    }
    *out = NULL;
    if ((r = create_file(path)) != AS_OK) {
        goto out;
    }
    st = calloc(1, sizeof *st);
    if (st == NULL || (st->path = strdup(path)) == NULL) {
        r = AS_ERR_NOMEM;
        goto out;
    }
    st->wal_fd = -1;
    pthread_mutex_init(&st->sync_mu, NULL);
    pthread_cond_init(&st->sync_cv, NULL);
    pthread_mutex_init(&st->write_mu, NULL);
    pthread_mutex_init(&st->ckpt_mu, NULL);
    pthread_cond_init(&st->ckpt_cv, NULL);
    st->sync_init = true;
    if (pthread_key_create(&st->key, conn_destructor) != 0) {
        as_error("store: no thread-specific key left");
        r = AS_ERR_INTERNAL;
        goto out;
    }
    st->key_ok = true;
    pthread_mutex_lock(&g_mu);
    st->next = g_stores;
    if (g_stores != NULL) {
        g_stores->prev = st;
    }
    g_stores = st;
    st->linked = true;
    pthread_mutex_unlock(&g_mu);

    /* The writer connection sets up the file: no thread's own connection is opened just for it. */
    if ((r = conn_open(st, &st->writer)) != AS_OK) {
        goto out;
    }
    if ((r = set_wal(st->writer)) != AS_OK) {
        goto out;
    }
    if ((r = migrate(st->writer)) != AS_OK) {
        goto out;
    }
    note_commit(st->writer); /* whatever the migrations wrote */
    if ((r = as_store_sync(st)) != AS_OK) {
        goto out;
    }
    *out = st;
    st = NULL;
out:
    as_store_close(st);
    return r;
}

/*
 * The caller guarantees no thread uses st any more. Threads that have not exited yet keep a
 * stale key value; deleting the key means their destructor will not run for it, and a
 * destructor already running finds the store unlinked and leaves the connection to us.
 */
static enum as_err wal_sync(struct as_store *st);

/* ---- checkpoints (see Checkpoints at the top) ---- */

/* A PASSIVE checkpoint on c; returns the WAL's size in frames, or -1 when it failed. */
static int checkpoint(struct as_conn *c)
{
    int log = 0;
    int rc = sqlite3_wal_checkpoint_v2(c->db, "main", SQLITE_CHECKPOINT_PASSIVE, &log, NULL);
    if (rc != SQLITE_OK) {
        /* BUSY: another checkpoint runs; LOCKED: c has a statement open (a writer that took
         * write_mu in the middle of a read, see wal_restart_locked). The next one catches up. */
        if (rc != SQLITE_BUSY && rc != SQLITE_LOCKED) {
            as_error("store: checkpoint failed: %s", sqlite3_errstr(rc));
        }
        return -1;
    }
    return log;
}

/* The checkpoint thread, on a connection of its own. */
static void *ckpt_main(void *arg)
{
    struct as_store *st = arg;
    struct as_conn *c = NULL;
    pthread_mutex_lock(&st->ckpt_mu);
    for (;;) {
        while (!st->ckpt_want && !st->ckpt_stop) {
            pthread_cond_wait(&st->ckpt_cv, &st->ckpt_mu);
        }
        if (st->ckpt_stop) {
            break;
        }
        st->ckpt_want = false;
        pthread_mutex_unlock(&st->ckpt_mu);
        if (c == NULL && conn_open(st, &c) != AS_OK) {
            c = NULL; /* logged; the next request tries again */
        }
        int log = c != NULL ? checkpoint(c) : -1;
        if (log >= 0) {
            atomic_store(&st->ckpt_at, log);
        }
        pthread_mutex_lock(&st->ckpt_mu);
    }
    pthread_mutex_unlock(&st->ckpt_mu);
    conn_close(c);
    return NULL;
}

/* Asks the checkpoint thread for a checkpoint when the WAL has AS_STORE_CKPT_FRAMES frames more
 * than at the last one, or as many after it started over. */
static void ckpt_kick(struct as_store *st)
{
    int frames = atomic_load(&st->wal_frames);
    int at = atomic_load(&st->ckpt_at);
    if (frames < AS_STORE_CKPT_FRAMES || (frames >= at && frames - at < AS_STORE_CKPT_FRAMES)) {
        return;
    }
    pthread_mutex_lock(&st->ckpt_mu);
    if (!st->ckpt_started && !st->ckpt_stop) {
        st->ckpt_started = pthread_create(&st->ckpt_thread, NULL, ckpt_main, st) == 0;
        if (!st->ckpt_started) {
            as_error("store: cannot start the checkpoint thread; the WAL keeps growing");
        }
    }
    st->ckpt_want = true;
    pthread_cond_signal(&st->ckpt_cv);
    pthread_mutex_unlock(&st->ckpt_mu);
}

/* Stops the checkpoint thread, letting a running checkpoint finish. */
static void ckpt_stop(struct as_store *st)
{
    pthread_mutex_lock(&st->ckpt_mu);
    st->ckpt_stop = true;
    bool started = st->ckpt_started;
    st->ckpt_started = false;
    pthread_cond_signal(&st->ckpt_cv);
    pthread_mutex_unlock(&st->ckpt_mu);
    if (started) {
        pthread_join(st->ckpt_thread, NULL);
    }
}

void as_store_close(struct as_store *st)
{
    struct as_conn *conns;

    if (st == NULL) {
        return;
    }
    if (st->sync_init) {
        ckpt_stop(st);
    }
    if (st->writer != NULL) {
        /* The open group transaction holds rows callers were told are inserted. */
        pthread_mutex_lock(&st->write_mu);
        group_commit_locked(st);
        pthread_mutex_unlock(&st->write_mu);
    }
    pthread_mutex_lock(&g_mu);
    if (st->linked) {
        if (st->prev != NULL) {
            st->prev->next = st->next;
        } else {
            g_stores = st->next;
        }
        if (st->next != NULL) {
            st->next->prev = st->prev;
        }
        st->linked = false;
    }
    conns = st->conns;
    st->conns = NULL;
    pthread_mutex_unlock(&g_mu);
    if (st->key_ok) {
        pthread_key_delete(st->key);
    }
    while (conns != NULL) {
        struct as_conn *next = conns->next;
        conn_close(conns);
        conns = next;
    }
    /* With no other connection left, everything goes into the database file and the WAL is
     * emptied: the next start has no frames to read back (a WAL left full of valid frames made
     * the first open after a bulk load read hundreds of megabytes, and take a second). */
    if (st->writer != NULL) {
        int rc = sqlite3_wal_checkpoint_v2(st->writer->db, "main", SQLITE_CHECKPOINT_TRUNCATE, NULL,
                                           NULL);
        if (rc != SQLITE_OK) {
            as_warn("store: final checkpoint: %s", sqlite3_errstr(rc));
        }
    }
    conn_close(st->writer);
    if (st->sync_init) {
        /* A clean stop leaves every commit on disk. */
        if (atomic_load(&st->commit_seq) > st->synced && wal_sync(st) != AS_OK) {
            as_error("store: the last commits may not be on disk");
        }
        if (st->wal_fd >= 0) {
            close(st->wal_fd);
        }
        pthread_cond_destroy(&st->sync_cv);
        pthread_mutex_destroy(&st->sync_mu);
        pthread_mutex_destroy(&st->write_mu);
        pthread_cond_destroy(&st->ckpt_cv);
        pthread_mutex_destroy(&st->ckpt_mu);
    }
    free(st->lost);
    free(st->path);
    free(st);
}

/* ---- explicit transactions ---- */

enum as_err as_store_begin(struct as_store *st)
{
    enum as_err r;
    struct as_conn *c = NULL;

    if (st == NULL) {
        return AS_ERR_INVALID;
    }
    if ((r = conn_get(st, &c)) != AS_OK) {
        return r;
    }
    if (c->in_tx) {
        as_error("store: nested transaction on one thread");
        return AS_ERR_INTERNAL;
    }
    wlock(c);
    if ((r = run_simple(c, ST_BEGIN, "begin")) != AS_OK) {
        wunlock(c);
        return r;
    }
    c->in_tx = true;
    return AS_OK;
}

enum as_err as_store_commit(struct as_store *st)
{
    enum as_err r;
    struct as_conn *c = NULL;

    if (st == NULL) {
        return AS_ERR_INVALID;
    }
    if ((r = conn_get(st, &c)) != AS_OK) {
        return r;
    }
    if (!c->in_tx) {
        as_error("store: commit without a transaction");
        return AS_ERR_INTERNAL;
    }
    c->in_tx = false;
    if (sqlite3_get_autocommit(c->db)) {
        as_error("store: the transaction was aborted by an earlier error; nothing committed");
        wunlock(c);
        return AS_ERR_STORE;
    }
    int64_t t0 = as_mono_ns();
    r = run_simple(c, ST_COMMIT, "commit");
    if (r == AS_OK) {
        as_hist_observe(&st->commit_hist, as_mono_ns() - t0);
        note_commit(c);
    }
    /* A failed commit ends the transaction either way, so a later begin starts cleanly. */
    if (r != AS_OK && !sqlite3_get_autocommit(c->db)) {
        (void)run_simple(c, ST_ROLLBACK, "rollback");
    }
    wunlock(c);
    return r;
}

void as_store_rollback(struct as_store *st)
{
    struct as_conn *c;

    if (st == NULL) {
        return;
    }
    /* No connection on this thread means no transaction to undo: do not open one for it. */
    c = pthread_getspecific(st->key);
    if (c == NULL || !c->in_tx) {
        return;
    }
    c->in_tx = false;
    if (!sqlite3_get_autocommit(c->db)) {
        (void)run_simple(c, ST_ROLLBACK, "rollback");
    }
    wunlock(c);
}

/* ---- settings ---- */

enum as_err as_store_setting_get(struct as_store *st, const char *key, unsigned char **val,
                                 size_t *len)
{
    enum as_err r;
    struct as_conn *c = NULL;
    sqlite3_stmt *s = NULL;

    if (st == NULL || key == NULL || val == NULL || len == NULL) {
        return AS_ERR_INVALID;
    }
    *val = NULL;
    *len = 0;
    if ((r = stmt_ready(st, ST_SETTING_GET, &c, &s)) != AS_OK ||
        (r = bind_text(c, s, 1, key)) != AS_OK || (r = step_row(c, s, "setting get")) != AS_OK) {
        goto out;
    }
    r = col_blobdup(s, 0, val, len);
out:
    stmt_put(s);
    return r;
}

static enum as_err setting_write(struct as_store *st, enum stmt_id id, const char *key,
                                 const void *val, size_t len)
{
    enum as_err r;
    struct as_conn *c = NULL;
    sqlite3_stmt *s = NULL;

    if (st == NULL || key == NULL || (val == NULL && len > 0)) {
        return AS_ERR_INVALID;
    }
    if ((r = stmt_ready(st, id, &c, &s)) != AS_OK || (r = bind_text(c, s, 1, key)) != AS_OK ||
        (r = bind_blob(c, s, 2, val, len)) != AS_OK) {
        goto out;
    }
    r = step_done(c, s, "setting write");
out:
    stmt_put(s);
    return r;
}

enum as_err as_store_setting_put(struct as_store *st, const char *key, const void *val, size_t len)
{
    return setting_write(st, ST_SETTING_PUT, key, val, len);
}

enum as_err as_store_setting_insert(struct as_store *st, const char *key, const void *val,
                                    size_t len)
{
    return setting_write(st, ST_SETTING_INSERT, key, val, len);
}

/* ---- tokens ---- */

void as_token_rec_free(struct as_token_rec *t)
{
    if (t == NULL) {
        return;
    }
    if (!t->packed) {
        free(t->parent);
        free(t->policies_json);
        free(t->meta_json);
        free(t->display_name);
        free(t->path);
        free(t->spiffe_ids_json);
        free(t->allowed_dns_json);
        free(t->mount);
        free(t->login_cert);
        free(t->bound_cidrs_json);
    }
    free(t);
}

/* Builds a record from the current row of a SELECT TOKEN_COLS statement. */
static enum as_err read_token(sqlite3_stmt *s, struct as_token_rec **out)
{
    enum as_err r = AS_OK;
    struct as_token_rec *t = NULL;

    t = calloc(1, sizeof *t);
    if (t == NULL) {
        r = AS_ERR_NOMEM;
        goto out;
    }
    const unsigned char *acc = sqlite3_column_text(s, 0);
    size_t acclen = (size_t)sqlite3_column_bytes(s, 0);
    const void *hash = sqlite3_column_blob(s, 1);
    size_t hashlen = (size_t)sqlite3_column_bytes(s, 1);
    if (acc == NULL || acclen == 0 || acclen > AS_ACCESSOR_LEN || hash == NULL ||
        hashlen != sizeof t->secret_hash) {
        as_error("store: a token row has a malformed accessor or hash");
        r = AS_ERR_STORE;
        goto out;
    }
    memcpy(t->accessor, acc, acclen);
    t->accessor[acclen] = '\0';
    memcpy(t->secret_hash, hash, sizeof t->secret_hash);

    char **strs[] = {&t->parent,           &t->policies_json, &t->meta_json,
                     &t->display_name,     &t->path,          &t->spiffe_ids_json,
                     &t->allowed_dns_json, &t->mount,         &t->login_cert};
    if ((r = col_strdups(s, 2, strs, N_ELEMS(strs))) != AS_OK) {
        goto out;
    }
    t->creation_time = sqlite3_column_int64(s, 11);
    t->expire_time = sqlite3_column_int64(s, 12);
    t->creation_ttl = sqlite3_column_int64(s, 13);
    t->explicit_max_ttl = sqlite3_column_int64(s, 14);
    t->period = sqlite3_column_int64(s, 15);
    t->num_uses = sqlite3_column_int64(s, 16);
    t->renewable = sqlite3_column_int(s, 17) != 0;
    t->orphan = sqlite3_column_int(s, 18) != 0;
    if ((r = col_strdup(s, 19, &t->bound_cidrs_json)) != AS_OK) {
        goto out;
    }
    *out = t;
    t = NULL;
out:
    as_token_rec_free(t);
    return r;
}

/* Inserts t on connection c, inside a transaction of c (group_insert). */
static enum as_err token_insert_now(struct as_conn *c, const struct as_token_rec *t)
{
    enum as_err r;
    sqlite3_stmt *s = NULL;
    size_t acclen;

    acclen = strnlen(t->accessor, sizeof t->accessor);
    /*
     * A negative use count is the store's own "used up" marker; callers never create one. An
     * empty login_cert could never match a certificate, so it is a caller's mistake, not "none".
     */
    if (acclen == 0 || acclen == sizeof t->accessor || t->num_uses < 0 ||
        (t->login_cert != NULL && t->login_cert[0] == '\0')) {
        return AS_ERR_INVALID;
    }
    /* ?1 accessor, ?2 hash, ?3..?11 the strings, ?12..?19 the integers and ?20 the networks,
     * as in TOKEN_COLS. */
    const char *strs[] = {t->parent,           t->policies_json, t->meta_json,
                          t->display_name,     t->path,          t->spiffe_ids_json,
                          t->allowed_dns_json, t->mount,         t->login_cert};
    const int64_t ints[] = {t->creation_time,     t->expire_time,   t->creation_ttl,
                            t->explicit_max_ttl,  t->period,        t->num_uses,
                            t->renewable ? 1 : 0, t->orphan ? 1 : 0};
    if ((r = stmt_get(c, ST_TOKEN_INSERT, &s)) != AS_OK ||
        (r = bind_text(c, s, 1, t->accessor)) != AS_OK ||
        (r = bind_blob(c, s, 2, t->secret_hash, sizeof t->secret_hash)) != AS_OK ||
        (r = bind_texts(c, s, 3, strs, N_ELEMS(strs))) != AS_OK ||
        (r = bind_int64s(c, s, 12, ints, N_ELEMS(ints))) != AS_OK ||
        (r = bind_text(c, s, 20, t->bound_cidrs_json)) != AS_OK) {
        goto out;
    }
    r = step_done(c, s, "token insert");
out:
    stmt_put(s);
    return r;
}

static enum as_err token_lookup(struct as_store *st, enum stmt_id id, const void *key,
                                size_t keylen, struct as_token_rec **out)
{
    enum as_err r;
    struct as_conn *c = NULL;
    sqlite3_stmt *s = NULL;

    if ((r = stmt_ready(st, id, &c, &s)) != AS_OK) {
        goto out;
    }
    r = id == ST_TOKEN_BY_HASH ? bind_blob(c, s, 1, key, keylen) : bind_text(c, s, 1, key);
    if (r != AS_OK || (r = step_row(c, s, "token lookup")) != AS_OK) {
        goto out;
    }
    r = read_token(s, out);
out:
    stmt_put(s);
    return r;
}

enum as_err as_store_token_by_hash(struct as_store *st, const unsigned char hash[32],
                                   struct as_token_rec **out)
{
    if (st == NULL || hash == NULL || out == NULL) {
        return AS_ERR_INVALID;
    }
    *out = NULL;
    return token_lookup(st, ST_TOKEN_BY_HASH, hash, 32, out);
}

enum as_err as_store_token_by_accessor(struct as_store *st, const char *accessor,
                                       struct as_token_rec **out)
{
    if (st == NULL || accessor == NULL || out == NULL) {
        return AS_ERR_INVALID;
    }
    *out = NULL;
    return token_lookup(st, ST_TOKEN_BY_ACCESSOR, accessor, 0, out);
}

enum as_err as_store_token_set_expiry(struct as_store *st, const char *accessor,
                                      int64_t expire_time, int64_t ttl)
{
    enum as_err r;
    struct as_conn *c = NULL;
    sqlite3_stmt *s = NULL;

    if (st == NULL || accessor == NULL) {
        return AS_ERR_INVALID;
    }
    if ((r = stmt_ready(st, ST_TOKEN_SET_EXPIRY, &c, &s)) != AS_OK ||
        (r = bind_text(c, s, 1, accessor)) != AS_OK ||
        (r = bind_int64(c, s, 2, expire_time)) != AS_OK ||
        (r = bind_int64(c, s, 3, ttl)) != AS_OK) {
        goto out;
    }
    r = step_change(c, s, "token set expiry");
out:
    stmt_put(s);
    return r;
}

enum as_err as_store_token_use(struct as_store *st, const char *accessor, int64_t *remaining)
{
    enum as_err r;
    struct as_conn *c = NULL;
    sqlite3_stmt *s = NULL;
    int64_t left = 0;
    bool decremented = false;

    if (st == NULL || accessor == NULL || remaining == NULL) {
        return AS_ERR_INVALID;
    }
    *remaining = 0;
    /* The decrement and the check are one statement, so two users cannot both take a use. */
    if ((r = stmt_ready(st, ST_TOKEN_USE, &c, &s)) != AS_OK ||
        (r = bind_text(c, s, 1, accessor)) != AS_OK ||
        (r = step_returning(c, s, "token use", &left, &decremented)) != AS_OK) {
        goto out;
    }
    stmt_put(s);
    s = NULL;
    if (decremented) {
        *remaining = left > 0 ? left : 0;
        goto out;
    }
    /*
     * Nothing was decremented: the token is unlimited (0), used up (-1) or gone. A use count
     * never rises again, so this second read cannot contradict the update above.
     */
    if ((r = stmt_get(c, ST_TOKEN_USES_LEFT, &s)) != AS_OK ||
        (r = bind_text(c, s, 1, accessor)) != AS_OK ||
        (r = step_int64(c, s, "token use", &left)) != AS_OK) {
        goto out;
    }
    if (left != 0) {
        r = AS_ERR_NOT_FOUND; /* used up: another caller took the last use */
    }
out:
    stmt_put(s);
    return r;
}

static int strp_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * A growable vector of malloc'd strings: the tokens and certificates a revocation cascade has
 * reached so far. Freed with as_store_strv_free(v, n).
 */
struct strv {
    char **v;
    size_t n;
    size_t cap;
};

/*
 * Moves the n strings of src (a vector from collect_strv) to the end of dst and frees the array
 * src. src is consumed on failure too, so nothing leaks and nothing is freed twice.
 */
static enum as_err strv_take(struct strv *dst, char **src, size_t n)
{
    while (dst->cap - dst->n < n) {
        char **nv = grow_array(dst->v, &dst->cap, sizeof *dst->v);
        if (nv == NULL) {
            as_store_strv_free(src, n);
            return AS_ERR_NOMEM;
        }
        dst->v = nv;
    }
    if (n > 0) {
        memcpy(dst->v + dst->n, src, n * sizeof *src);
        dst->n += n;
    }
    free(src);
    return AS_OK;
}

/* Appends a copy of str to dst. */
static enum as_err strv_push(struct strv *dst, const char *str)
{
    char **one = calloc(1, sizeof *one);

    if (one == NULL || (one[0] = strdup(str)) == NULL) {
        free(one);
        return AS_ERR_NOMEM;
    }
    return strv_take(dst, one, 1);
}

/*
 * Runs the cached write id with key bound to ?1 (and, when at is not NULL, *at to ?2) and
 * appends the text its RETURNING clause yields for every row it changed to dst.
 */
static enum as_err write_collect(struct as_conn *c, enum stmt_id id, const char *key,
                                 const int64_t *at, const char *what, struct strv *dst)
{
    enum as_err r;
    sqlite3_stmt *s = NULL;
    char **v = NULL;
    size_t n = 0;

    if ((r = stmt_get(c, id, &s)) != AS_OK || (r = bind_text(c, s, 1, key)) != AS_OK) {
        goto out;
    }
    if (at != NULL && (r = bind_int64(c, s, 2, *at)) != AS_OK) {
        goto out;
    }
    if ((r = collect_strv(c, s, what, &v, &n)) != AS_OK) {
        goto out;
    }
    r = strv_take(dst, v, n);
out:
    stmt_put(s);
    return r;
}

/*
 * Rounds after which the cascade gives up. Each round follows one more link of the chain
 * "token obtained a certificate, another token logged in with it"; real chains are a handful of
 * links long, so reaching this means damaged data (or a bug), not a legitimate request.
 */
#define AS_CASCADE_MAX_ROUNDS 10000

/*
 * The revocation cascade (SPEC §5, §6), run inside the caller's tx_enter transaction. Deleting a
 * token revokes, at `at`, the SVIDs it obtained that are not revoked yet; revoking a certificate
 * deletes, with their subtrees, the tokens that logged in with it (login_cert); and so on until
 * a round reaches no new token and no new certificate.
 *
 * On entry toks holds tokens already deleted whose SVIDs are still to be revoked, and certs
 * certificates already revoked whose login tokens are still to be deleted. On return, failure
 * included, they hold everything the cascade reached (the entries given included), and the
 * caller frees both. Each token and certificate is handled once: a deleted token cannot be
 * deleted again and the revocation only matches records with revoked_at = 0, so every round
 * makes progress and a cycle in the data cannot loop.
 */
static enum as_err revoke_cascade(struct as_conn *c, int64_t at, struct strv *toks,
                                  struct strv *certs)
{
    enum as_err r;
    size_t tok_done = 0, cert_done = 0;

    for (unsigned round = 0; tok_done < toks->n || cert_done < certs->n; round++) {
        if (round == AS_CASCADE_MAX_ROUNDS) {
            as_error("store: revocation cascade still growing after %u rounds; nothing revoked",
                     round);
            return AS_ERR_INTERNAL;
        }
        for (; tok_done < toks->n; tok_done++) {
            if ((r = write_collect(c, ST_TOKEN_REVOKE_CERTS, toks->v[tok_done], &at,
                                   "revoke certs of token", certs)) != AS_OK) {
                return r;
            }
        }
        for (; cert_done < certs->n; cert_done++) {
            if ((r = write_collect(c, ST_TOKEN_DELETE_LOGIN, certs->v[cert_done], NULL,
                                   "delete tokens of cert", toks)) != AS_OK) {
                return r;
            }
        }
    }
    return AS_OK;
}

/*
 * The tree half of as_store_token_delete: deletes the subtree rooted at accessor. *v and *n
 * receive the deleted accessors, sorted; the caller frees them, on failure too.
 */
static enum as_err token_delete_tree(struct as_conn *c, const char *accessor, char ***v, size_t *n)
{
    enum as_err r;
    sqlite3_stmt *s = NULL;

    if ((r = stmt_get(c, ST_TOKEN_DELETE_TREE, &s)) != AS_OK ||
        (r = bind_text(c, s, 1, accessor)) != AS_OK ||
        (r = collect_strv(c, s, "token delete", v, n)) != AS_OK) {
        goto out;
    }
    if (*n == 0) {
        r = AS_ERR_NOT_FOUND;
        goto out;
    }
    qsort(*v, *n, sizeof **v, strp_cmp);
out:
    stmt_put(s);
    return r;
}

/*
 * The single half of as_store_token_delete: deletes one token and orphans its children. *v and
 * *n receive its accessor; the caller frees them, on failure too.
 */
static enum as_err token_delete_one(struct as_conn *c, const char *accessor, char ***v, size_t *n)
{
    enum as_err r;
    sqlite3_stmt *s = NULL;

    if ((r = stmt_get(c, ST_TOKEN_DELETE_ONE, &s)) != AS_OK ||
        (r = bind_text(c, s, 1, accessor)) != AS_OK ||
        (r = step_change(c, s, "token delete")) != AS_OK) {
        goto out;
    }
    stmt_put(s);
    s = NULL;
    if ((r = stmt_get(c, ST_TOKEN_ORPHAN_CHILDREN, &s)) != AS_OK ||
        (r = bind_text(c, s, 1, accessor)) != AS_OK ||
        (r = step_done(c, s, "token orphan children")) != AS_OK) {
        goto out;
    }
    *v = calloc(1, sizeof **v);
    if (*v == NULL) {
        r = AS_ERR_NOMEM;
        goto out;
    }
    *n = 1;
    if (((*v)[0] = strdup(accessor)) == NULL) {
        r = AS_ERR_NOMEM;
        goto out;
    }
out:
    stmt_put(s);
    return r;
}

enum as_err as_store_token_delete(struct as_store *st, const char *accessor, bool tree,
                                  char ***deleted, size_t *ndeleted)
{
    enum as_err r;
    struct as_conn *c = NULL;
    enum tx_kind kind = TX_OWN;
    struct strv toks = {NULL, 0, 0}, certs = {NULL, 0, 0};
    char **v = NULL;
    size_t n = 0, direct;

    if (st == NULL || accessor == NULL || accessor[0] == '\0') {
        return AS_ERR_INVALID;
    }
    if (deleted != NULL) {
        *deleted = NULL;
    }
    if (ndeleted != NULL) {
        *ndeleted = 0;
    }
    /*
     * The tree delete is one statement, but collecting its RETURNING rows can fail part way;
     * the transaction makes that failure undo the delete instead of losing the list, and keeps
     * the tokens, their SVIDs and everything the cascade reaches together.
     */
    if ((r = tx_open(st, &c, &kind)) != AS_OK) {
        return r;
    }
    r = tree ? token_delete_tree(c, accessor, &v, &n) : token_delete_one(c, accessor, &v, &n);
    if (r != AS_OK) {
        as_store_strv_free(v, n);
        goto out;
    }
    if ((r = strv_take(&toks, v, n)) != AS_OK) {
        goto out;
    }
    direct = toks.n;
    /* Expiry is not revocation: as_store_token_purge_expired deliberately does not do this. */
    if ((r = revoke_cascade(c, as_now(), &toks, &certs)) != AS_OK) {
        goto out;
    }
    /*
     * The named token's own deletions come first, as before; the tokens the cascade reached
     * follow, sorted, so that callers can drop every one of them from their caches.
     */
    qsort(toks.v + direct, toks.n - direct, sizeof *toks.v, strp_cmp);
out:
    r = tx_leave(c, kind, r);
    if (r == AS_OK) {
        if (ndeleted != NULL) {
            *ndeleted = toks.n;
        }
        if (deleted != NULL) {
            *deleted = toks.v;
            toks.v = NULL;
        }
    }
    as_store_strv_free(toks.v, toks.n);
    as_store_strv_free(certs.v, certs.n);
    return r;
}

static enum as_err name_list(struct as_store *st, enum stmt_id id, const char *what, char ***out,
                             size_t *n)
{
    enum as_err r;
    struct as_conn *c = NULL;
    sqlite3_stmt *s = NULL;

    if (st == NULL || out == NULL || n == NULL) {
        return AS_ERR_INVALID;
    }
    *out = NULL;
    *n = 0;
    if ((r = stmt_ready(st, id, &c, &s)) != AS_OK) {
        goto out;
    }
    r = collect_strv(c, s, what, out, n);
out:
    stmt_put(s);
    return r;
}

enum as_err as_store_token_list(struct as_store *st, char ***accessors, size_t *n)
{
    return name_list(st, ST_TOKEN_LIST, "token list", accessors, n);
}

enum as_err as_store_token_purge_expired(struct as_store *st, int64_t now, size_t *n)
{
    enum as_err r;
    struct as_conn *c = NULL;
    sqlite3_stmt *s = NULL;

    if (st == NULL || n == NULL) {
        return AS_ERR_INVALID;
    }
    *n = 0;
    /* One statement, hence atomic on its own: expired tokens and their subtrees go together. */
    if ((r = stmt_ready(st, ST_TOKEN_PURGE, &c, &s)) != AS_OK ||
        (r = bind_int64(c, s, 1, now)) != AS_OK ||
        (r = bind_int64(c, s, 2, AS_STORE_PURGE_BATCH)) != AS_OK ||
        (r = step_done(c, s, "token purge")) != AS_OK) {
        goto out;
    }
    *n = (size_t)sqlite3_changes64(c->db);
out:
    stmt_put(s);
    return r;
}

/* ---- policies ---- */

enum as_err as_store_policy_put(struct as_store *st, const char *name, const char *text)
{
    enum as_err r;
    struct as_conn *c = NULL;
    sqlite3_stmt *s = NULL;

    if (st == NULL || name == NULL || text == NULL) {
        return AS_ERR_INVALID;
    }
    if ((r = stmt_ready(st, ST_POLICY_PUT, &c, &s)) != AS_OK ||
        (r = bind_text(c, s, 1, name)) != AS_OK || (r = bind_text(c, s, 2, text)) != AS_OK) {
        goto out;
    }
    r = step_done(c, s, "policy put");
out:
    stmt_put(s);
    return r;
}

enum as_err as_store_policy_get(struct as_store *st, const char *name, char **text)
{
    if (st == NULL || name == NULL || text == NULL) {
        return AS_ERR_INVALID;
    }
    *text = NULL;
    return row_by_key(st, ST_POLICY_GET, name, "policy get", read_text0, text);
}

enum as_err as_store_policy_delete(struct as_store *st, const char *name)
{
    enum as_err r;
    struct as_conn *c = NULL;
    sqlite3_stmt *s = NULL;

    if (st == NULL || name == NULL) {
        return AS_ERR_INVALID;
    }
    if ((r = stmt_ready(st, ST_POLICY_DELETE, &c, &s)) != AS_OK ||
        (r = bind_text(c, s, 1, name)) != AS_OK) {
        goto out;
    }
    r = step_change(c, s, "policy delete");
out:
    stmt_put(s);
    return r;
}

enum as_err as_store_policy_list(struct as_store *st, char ***names, size_t *n)
{
    return name_list(st, ST_POLICY_LIST, "policy list", names, n);
}

/* ---- issued SVIDs ---- */

/*
 * Longest inventory glob accepted. A SPIFFE ID is at most 2048 bytes (SPIFFE-ID §2.3), so a
 * longer pattern cannot be needed; the cap also keeps the translated GLOB far below SQLite's
 * SQLITE_MAX_LIKE_PATTERN_LENGTH and bounds the matcher's work.
 */
#define AS_STORE_MAX_GLOB 2048

/* Largest and smallest inventory page (store.h: limit 1..1000). */
#define AS_STORE_QUERY_MIN 1
#define AS_STORE_QUERY_MAX 1000

void as_cert_rec_free(struct as_cert_rec *c)
{
    if (c == NULL) {
        return;
    }
    free(c->spiffe_id);
    free(c->dns_json);
    free(c->token_accessor);
    free(c->mount);
    free(c->role);
    free(c->subject);
    free(c->der);
    free(c);
}

void as_cert_recs_free(struct as_cert_rec **v, size_t n)
{
    if (v == NULL) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        as_cert_rec_free(v[i]);
    }
    free(v);
}

static bool cert_kind_ok(const char *kind)
{
    return strcmp(kind, "x509") == 0 || strcmp(kind, "jwt") == 0;
}

/*
 * Copies text column i into a fixed buffer of size cap. A NULL, empty or too long value means a
 * damaged row, since inserts never write one.
 */
static enum as_err col_copy(sqlite3_stmt *s, int i, char *buf, size_t cap)
{
    const unsigned char *t = sqlite3_column_text(s, i);
    size_t n = (size_t)sqlite3_column_bytes(s, i);

    if (t == NULL || n == 0 || n >= cap) {
        return AS_ERR_STORE;
    }
    memcpy(buf, t, n);
    buf[n] = '\0';
    return AS_OK;
}

/*
 * A row_reader: builds a record from the current row of a SELECT CERT_COLS statement into the
 * struct as_cert_rec * at elem.
 */
static enum as_err read_cert(sqlite3_stmt *s, void *elem, void *ctx)
{
    enum as_err r = AS_OK;
    struct as_cert_rec *c = NULL;

    (void)ctx;
    c = calloc(1, sizeof *c);
    if (c == NULL) {
        r = AS_ERR_NOMEM;
        goto out;
    }
    c->seq = sqlite3_column_int64(s, 0);
    if (col_copy(s, 1, c->serial, sizeof c->serial) != AS_OK ||
        col_copy(s, 2, c->kind, sizeof c->kind) != AS_OK) {
        as_error("store: a cert row has a malformed serial or kind");
        r = AS_ERR_STORE;
        goto out;
    }
    char **strs[] = {&c->spiffe_id, &c->dns_json, &c->token_accessor,
                     &c->mount,     &c->role,     &c->subject};
    if ((r = col_strdups(s, 3, strs, N_ELEMS(strs))) != AS_OK) {
        goto out;
    }
    if (c->spiffe_id == NULL) {
        r = AS_ERR_STORE; /* the column is NOT NULL: the file is damaged */
        goto out;
    }
    c->ca_gen = sqlite3_column_int64(s, 9);
    c->not_before = sqlite3_column_int64(s, 10);
    c->not_after = sqlite3_column_int64(s, 11);
    c->revoked_at = sqlite3_column_int64(s, 12);
    c->issued_at = sqlite3_column_int64(s, 14);
    /* A stored der, even an empty one, is a real allocation, so "stored" and "absent" differ. */
    if (sqlite3_column_type(s, 13) != SQLITE_NULL &&
        (r = col_blobdup(s, 13, &c->der, &c->der_len)) != AS_OK) {
        goto out;
    }
    *(struct as_cert_rec **)elem = c;
    c = NULL;
out:
    as_cert_rec_free(c);
    return r;
}

/* Inserts c on connection conn, inside a transaction of conn (group_insert); sets c->seq. */
static enum as_err cert_insert_now(struct as_conn *conn, struct as_cert_rec *c)
{
    enum as_err r;
    sqlite3_stmt *s = NULL;
    size_t slen, klen;
    int64_t seq = 0;

    if (c->spiffe_id == NULL || (c->der == NULL && c->der_len > 0)) {
        return AS_ERR_INVALID;
    }
    slen = strnlen(c->serial, sizeof c->serial);
    klen = strnlen(c->kind, sizeof c->kind);
    if (slen == 0 || slen == sizeof c->serial || klen == sizeof c->kind || !cert_kind_ok(c->kind) ||
        c->revoked_at < 0) {
        return AS_ERR_INVALID;
    }
    /*
     * ?1..?8 the strings, ?9..?12 the integers, ?13 der and ?14 issued_at. An absent der is SQL
     * NULL (what bind_text binds for a NULL pointer), an empty one an empty blob.
     */
    const char *strs[] = {c->serial,         c->kind,  c->spiffe_id, c->dns_json,
                          c->token_accessor, c->mount, c->role,      c->subject};
    const int64_t ints[] = {c->ca_gen, c->not_before, c->not_after, c->revoked_at};
    if ((r = stmt_get(conn, ST_CERT_INSERT, &s)) != AS_OK ||
        (r = bind_texts(conn, s, 1, strs, N_ELEMS(strs))) != AS_OK ||
        (r = bind_int64s(conn, s, 9, ints, N_ELEMS(ints))) != AS_OK ||
        (r = c->der != NULL ? bind_blob(conn, s, 13, c->der, c->der_len)
                            : bind_text(conn, s, 13, NULL)) != AS_OK ||
        (r = bind_int64(conn, s, 14, c->issued_at)) != AS_OK ||
        (r = step_returning(conn, s, "cert insert", &seq, NULL)) != AS_OK) {
        goto out;
    }
    c->seq = seq;
out:
    stmt_put(s);
    return r;
}

enum as_err as_store_cert_get(struct as_store *st, const char *serial, struct as_cert_rec **out)
{
    if (st == NULL || serial == NULL || out == NULL) {
        return AS_ERR_INVALID;
    }
    *out = NULL;
    return row_by_key(st, ST_CERT_GET, serial, "cert get", read_cert, out);
}

/* ---- the group transaction ---- */

/*
 * Logins and issuances each insert one row, and each insert alone is a transaction whose commit
 * writes a dozen WAL frames (the table's page and one of every index). Inserts outside a caller's
 * transaction instead go into one open transaction on the store's writer connection, the group
 * transaction, under write_mu: the caller waits only for the INSERT itself, and learns at once
 * whether its row conflicts (a uniqueness conflict fails that statement only, SQLite's default
 * ABORT). The transaction gets its commit number when it opens, and every caller whose row went
 * in records that number as its latest commit. It is committed by whichever comes first: the
 * group commit of a sync that covers the number (sync_upto), any other write of this process
 * (wlock: SQLite's write lock is the group transaction's until then), a read of a thread whose
 * own insert is still in it (conn_ready: a thread reads its own writes), or as_store_close. So
 * all the rows inserted between two syncs share one commit and one fdatasync, and nothing is
 * acknowledged before both, since callers sync before answering.
 *
 * The writer connection is used only under write_mu, so its page cache stays valid from one
 * group to the next unless another connection committed in between (in WAL mode a connection
 * drops its whole cache when it sees another's commit).
 */

/* Records that group transaction seq is lost. Caller holds write_mu. */
static void group_lost(struct as_store *st, uint64_t seq)
{
    as_error("store: a group of inserts (commit %llu) was rolled back", (unsigned long long)seq);
    pthread_mutex_lock(&st->sync_mu);
    uint64_t *v = realloc(st->lost, (st->nlost + 1) * sizeof *v);
    if (v == NULL) {
        st->lost_broken = true;
    } else {
        st->lost = v;
        st->lost[st->nlost++] = seq;
    }
    pthread_mutex_unlock(&st->sync_mu);
}

/* Whether commit seq is one of the lost group transactions. Caller holds sync_mu. */
static bool group_is_lost(const struct as_store *st, uint64_t seq)
{
    if (st->lost_broken) {
        return true;
    }
    for (size_t i = 0; i < st->nlost; i++) {
        if (st->lost[i] == seq) {
            return true;
        }
    }
    return false;
}

/* Commits the open group transaction, if any. Caller holds write_mu. */
static void group_commit_locked(struct as_store *st)
{
    uint64_t seq = atomic_load(&st->group_seq);
    if (seq == 0) {
        return;
    }
    struct as_conn *w = st->writer;
    int64_t t0 = as_mono_ns();
    if (run_simple(w, ST_COMMIT, "commit") == AS_OK) {
        as_hist_observe(&st->commit_hist, as_mono_ns() - t0);
    } else {
        if (!sqlite3_get_autocommit(w->db)) {
            (void)run_simple(w, ST_ROLLBACK, "rollback");
        }
        group_lost(st, seq);
    }
    atomic_store(&st->group_seq, 0);
}

/*
 * Commits the group transaction if it is open and numbered up to seq. Always under write_mu,
 * never from a glance at group_seq: a group takes its number from commit_seq a moment before
 * group_seq shows it (both under write_mu), so a sync that read commit_seq in that moment would
 * see no open group and call a commit on disk that was never made. AS_ERR_STORE when write_mu
 * stays taken past AS_STORE_BUSY_MS (a sync that waits for it must not hang).
 */
static enum as_err group_commit_upto(struct as_store *st, uint64_t seq)
{
    if (!write_mu_lock(st)) {
        as_error("store: waited %d ms for the write lock to commit a group", AS_STORE_BUSY_MS);
        return AS_ERR_STORE;
    }
    uint64_t g = atomic_load(&st->group_seq);
    if (g != 0 && g <= seq) {
        group_commit_locked(st);
    }
    pthread_mutex_unlock(&st->write_mu);
    return AS_OK;
}

/* Inserts a token or a certificate into the group transaction, opening it when none is. */
static enum as_err group_insert(struct as_store *st, const struct as_token_rec *t,
                                struct as_cert_rec *crt)
{
    enum as_err r;
    struct as_conn *c = NULL;

    /* The caller's connection records the commit for as_store_sync_mine. */
    if ((r = conn_ready(st, &c)) != AS_OK) {
        return r;
    }
    if (c->in_tx) {
        return t != NULL ? token_insert_now(c, t) : cert_insert_now(c, crt);
    }
    struct as_conn *w = st->writer;
    /* Unlike wlock, never without the lock: the writer connection is shared. */
    if (!write_mu_lock(st)) {
        as_warn("store: waited %d ms for the write lock; the insert fails", AS_STORE_BUSY_MS);
        return AS_ERR_STORE;
    }
    w->wlocked = true; /* so that its statements do not try to take write_mu again */
    uint64_t seq = atomic_load(&st->group_seq);
    bool opened = seq == 0;
    if (opened) {
        wal_restart_locked(st, w);
        if ((r = run_simple(w, ST_BEGIN, "begin")) != AS_OK) {
            goto out;
        }
        seq = atomic_fetch_add(&st->commit_seq, 1) + 1;
        atomic_store(&st->group_seq, seq);
    }
    r = t != NULL ? token_insert_now(w, t) : cert_insert_now(w, crt);
    if (sqlite3_get_autocommit(w->db)) {
        /* An error that ended the whole transaction (I/O, full disk) took the group's rows
         * with it. */
        if (!opened) {
            group_lost(st, seq);
        }
        atomic_store(&st->group_seq, 0);
        if (r == AS_OK) {
            r = AS_ERR_STORE;
        }
    } else if (r != AS_OK && opened) {
        /* Nothing in it: no open transaction keeps SQLite's write lock for no row (the number
         * is left unused, which no sync minds). */
        (void)run_simple(w, ST_ROLLBACK, "rollback");
        atomic_store(&st->group_seq, 0);
    }
    if (r == AS_OK && seq > c->last_commit) {
        c->last_commit = seq;
    }
out:
    w->wlocked = false;
    w->invalidates = false;
    pthread_mutex_unlock(&st->write_mu);
    return r;
}

enum as_err as_store_token_insert(struct as_store *st, const struct as_token_rec *t)
{
    if (st == NULL || t == NULL) {
        return AS_ERR_INVALID;
    }
    return group_insert(st, t, NULL);
}

enum as_err as_store_cert_insert(struct as_store *st, struct as_cert_rec *c)
{
    if (st == NULL || c == NULL) {
        return AS_ERR_INVALID;
    }
    return group_insert(st, NULL, c);
}

enum as_err as_store_cert_revoke(struct as_store *st, const char *serial, int64_t at,
                                 int64_t *at_out, bool *was_revoked)
{
    enum as_err r;
    struct as_conn *c = NULL;
    sqlite3_stmt *s = NULL;
    enum tx_kind kind = TX_OWN;
    struct strv toks = {NULL, 0, 0}, certs = {NULL, 0, 0};
    int64_t eff = 0;
    bool was = false;

    /* revoked_at = 0 means "not revoked", so a revocation time must be positive. */
    if (st == NULL || serial == NULL || serial[0] == '\0' || at <= 0) {
        return AS_ERR_INVALID;
    }
    if (at_out != NULL) {
        *at_out = 0;
    }
    if (was_revoked != NULL) {
        *was_revoked = false;
    }
    /*
     * The update and the read that explains a no-op are one transaction, so a row inserted
     * between them cannot be reported as "already revoked at 0"; so is the cascade, so a
     * certificate is never revoked while the tokens that logged in with it survive.
     */
    if ((r = tx_open(st, &c, &kind)) != AS_OK) {
        return r;
    }
    if ((r = stmt_get(c, ST_CERT_REVOKE, &s)) != AS_OK ||
        (r = bind_text(c, s, 1, serial)) != AS_OK || (r = bind_int64(c, s, 2, at)) != AS_OK ||
        (r = step_done(c, s, "cert revoke")) != AS_OK) {
        goto out;
    }
    if (sqlite3_changes64(c->db) > 0) {
        eff = at;
        stmt_put(s);
        s = NULL;
        /*
         * One event, one time: the SVIDs the cascade revokes carry the same revocation time.
         * An already revoked record (below) needs no cascade: it ran when it was revoked.
         */
        if ((r = strv_push(&certs, serial)) != AS_OK) {
            goto out;
        }
        r = revoke_cascade(c, at, &toks, &certs);
        goto out;
    }
    stmt_put(s);
    s = NULL;
    /* Nothing changed: absent, or revoked before, in which case the first time stands. */
    if ((r = stmt_get(c, ST_CERT_REVOKED_AT, &s)) != AS_OK ||
        (r = bind_text(c, s, 1, serial)) != AS_OK ||
        (r = step_int64(c, s, "cert revoke", &eff)) != AS_OK) {
        goto out;
    }
    was = true;
    if (eff <= 0) {
        as_error("store: cert %s neither revoked nor revocable", serial);
        r = AS_ERR_STORE;
        goto out;
    }
out:
    stmt_put(s);
    r = tx_leave(c, kind, r);
    if (r == AS_OK) {
        if (at_out != NULL) {
            *at_out = eff;
        }
        if (was_revoked != NULL) {
            *was_revoked = was;
        }
    }
    as_store_strv_free(toks.v, toks.n);
    as_store_strv_free(certs.v, certs.n);
    return r;
}

enum as_err as_store_cert_list(struct as_store *st, bool revoked_only, char ***serials, size_t *n)
{
    return name_list(st, revoked_only ? ST_CERT_LIST_REVOKED : ST_CERT_LIST, "cert list", serials,
                     n);
}

/* The revocation times of a CRL query, kept in step with the serials collect_rows gathers. */
struct crl_times {
    int64_t *v;
    size_t n;
    size_t cap;
};

/*
 * A row_reader of ST_CERT_CRL rows: the serial (column 0) into the char * at elem, and the
 * revocation time (column 1) appended to the struct crl_times at ctx.
 */
static enum as_err read_crl_entry(sqlite3_stmt *s, void *elem, void *ctx)
{
    struct crl_times *t = ctx;
    enum as_err r;

    if (t->n == t->cap) {
        int64_t *nv = grow_array(t->v, &t->cap, sizeof *t->v);
        if (nv == NULL) {
            return AS_ERR_NOMEM;
        }
        t->v = nv;
    }
    if ((r = read_text0(s, elem, NULL)) != AS_OK) {
        return r;
    }
    t->v[t->n++] = sqlite3_column_int64(s, 1);
    return AS_OK;
}

enum as_err as_store_cert_crl_entries(struct as_store *st, int64_t ca_gen, int64_t now,
                                      char ***serials, int64_t **revoked_at, size_t *n)
{
    enum as_err r;
    struct as_conn *c = NULL;
    sqlite3_stmt *s = NULL;
    void *sv = NULL;
    struct crl_times tv = {NULL, 0, 0};
    size_t cnt = 0;

    if (st == NULL || serials == NULL || revoked_at == NULL || n == NULL) {
        return AS_ERR_INVALID;
    }
    *serials = NULL;
    *revoked_at = NULL;
    *n = 0;
    if ((r = stmt_ready(st, ST_CERT_CRL, &c, &s)) != AS_OK ||
        (r = bind_int64(c, s, 1, ca_gen)) != AS_OK || (r = bind_int64(c, s, 2, now)) != AS_OK ||
        (r = collect_rows(c, s, "cert crl entries", read_crl_entry, sizeof(char *), &tv, &sv,
                          &cnt)) != AS_OK) {
        goto out;
    }
    *serials = sv;
    *revoked_at = tv.v;
    *n = cnt;
    sv = NULL;
    tv.v = NULL;
out:
    stmt_put(s);
    as_store_strv_free(sv, cnt);
    free(tv.v);
    return r;
}

enum as_err as_store_cert_max_not_after(struct as_store *st, int64_t ca_gen, int64_t *out)
{
    enum as_err r;
    struct as_conn *c = NULL;
    sqlite3_stmt *s = NULL;

    if (st == NULL || out == NULL) {
        return AS_ERR_INVALID;
    }
    *out = 0;
    if ((r = stmt_ready(st, ST_CERT_MAX_NOT_AFTER, &c, &s)) != AS_OK ||
        (r = bind_int64(c, s, 1, ca_gen)) != AS_OK) {
        goto out;
    }
    r = step_int64(c, s, "cert max not_after", out);
    if (r == AS_ERR_NOT_FOUND) {
        /* An aggregate always yields one row, so none is a failure, not an unknown generation. */
        r = map_err(c, SQLITE_DONE, "cert max not_after");
    }
out:
    stmt_put(s);
    return r;
}

/*
 * Translates an inventory glob (SPEC §8: `*` matches any run of characters, everything else is
 * literal and case-sensitive) into an SQLite GLOB pattern. GLOB has no escape character, so its
 * other metacharacters are put in one-character classes: `?` becomes `[?]` and `[` becomes `[[]`;
 * `]` is already literal outside a class. *out is malloc'd.
 */
static enum as_err glob_translate(const char *in, char **out)
{
    size_t len = strlen(in);
    size_t j = 0;
    char *p;

    *out = NULL;
    if (len > AS_STORE_MAX_GLOB) {
        return AS_ERR_TOO_LARGE;
    }
    /* Each input byte becomes at most 3; len is capped above, so this cannot overflow. */
    p = malloc(3 * len + 1);
    if (p == NULL) {
        return AS_ERR_NOMEM;
    }
    for (size_t i = 0; i < len; i++) {
        switch (in[i]) {
        case '?':
            memcpy(p + j, "[?]", 3);
            j += 3;
            break;
        case '[':
            memcpy(p + j, "[[]", 3);
            j += 3;
            break;
        default:
            p[j++] = in[i];
            break;
        }
    }
    p[j] = '\0';
    *out = p;
    return AS_OK;
}

/* The state codes of ST_CERT_QUERY's CASE. */
enum cert_state_code { CSC_ANY = 0, CSC_ACTIVE = 1, CSC_EXPIRED = 2, CSC_REVOKED = 3 };

static enum as_err cert_state_code(enum as_cert_state state, int *out)
{
    switch (state) {
    case AS_CERT_ANY:
        *out = CSC_ANY;
        return AS_OK;
    case AS_CERT_ACTIVE:
        *out = CSC_ACTIVE;
        return AS_OK;
    case AS_CERT_EXPIRED:
        *out = CSC_EXPIRED;
        return AS_OK;
    case AS_CERT_REVOKED:
        *out = CSC_REVOKED;
        return AS_OK;
    }
    return AS_ERR_INVALID; /* a value outside the enum */
}

enum as_err as_store_cert_query(struct as_store *st, const struct as_cert_query *q,
                                struct as_cert_rec ***out, size_t *n)
{
    enum as_err r;
    struct as_conn *c = NULL;
    sqlite3_stmt *s = NULL;
    char *pattern = NULL;
    void *v = NULL;
    size_t cnt = 0;
    int state = CSC_ANY;
    int64_t limit;

    if (st == NULL || q == NULL || out == NULL || n == NULL) {
        return AS_ERR_INVALID;
    }
    *out = NULL;
    *n = 0;
    if ((r = cert_state_code(q->state, &state)) != AS_OK) {
        return r;
    }
    if ((r = glob_translate(q->spiffe_glob != NULL ? q->spiffe_glob : "*", &pattern)) != AS_OK) {
        goto out;
    }
    limit = q->limit < AS_STORE_QUERY_MIN   ? AS_STORE_QUERY_MIN
            : q->limit > AS_STORE_QUERY_MAX ? AS_STORE_QUERY_MAX
                                            : q->limit;
    if ((r = stmt_ready(st, ST_CERT_QUERY, &c, &s)) != AS_OK ||
        (r = bind_int64(c, s, 1, q->after_seq > 0 ? q->after_seq : INT64_MAX)) != AS_OK ||
        (r = bind_text(c, s, 2, pattern)) != AS_OK || (r = bind_int64(c, s, 3, state)) != AS_OK ||
        (r = bind_int64(c, s, 4, q->now)) != AS_OK ||
        (r = bind_int64(c, s, 5, q->since != 0 ? q->since : INT64_MIN)) != AS_OK ||
        (r = bind_int64(c, s, 6, q->until != 0 ? q->until : INT64_MAX)) != AS_OK ||
        (r = bind_int64(c, s, 7, limit)) != AS_OK ||
        (r = collect_rows(c, s, "cert query", read_cert, sizeof(struct as_cert_rec *), NULL, &v,
                          &cnt)) != AS_OK) {
        goto out;
    }
    *out = v;
    *n = cnt;
    v = NULL;
out:
    /* The pattern is bound SQLITE_STATIC: clear the bindings before freeing it. */
    stmt_put(s);
    free(pattern);
    as_cert_recs_free(v, cnt);
    return r;
}

/* ---- CA generations ---- */

void as_ca_gen_rec_free(struct as_ca_gen_rec *g)
{
    if (g == NULL) {
        return;
    }
    free(g->base);
    free(g->jwt_kid);
    free(g->state);
    free(g);
}

void as_ca_gen_recs_free(struct as_ca_gen_rec **v, size_t n)
{
    if (v == NULL) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        as_ca_gen_rec_free(v[i]);
    }
    free(v);
}

static bool ca_gen_state_ok(const char *state)
{
    return state != NULL && (strcmp(state, "prepared") == 0 || strcmp(state, "active") == 0 ||
                             strcmp(state, "retired") == 0);
}

/*
 * A row_reader: builds a record from the current row of a SELECT CA_GEN_COLS statement into the
 * struct as_ca_gen_rec * at elem.
 */
static enum as_err read_ca_gen(sqlite3_stmt *s, void *elem, void *ctx)
{
    enum as_err r = AS_OK;
    struct as_ca_gen_rec *g = NULL;

    (void)ctx;
    g = calloc(1, sizeof *g);
    if (g == NULL) {
        r = AS_ERR_NOMEM;
        goto out;
    }
    g->id = sqlite3_column_int64(s, 0);
    char **strs[] = {&g->base, &g->jwt_kid, &g->state};
    if ((r = col_strdups(s, 1, strs, N_ELEMS(strs))) != AS_OK) {
        goto out;
    }
    if (g->base == NULL || g->state == NULL) {
        r = AS_ERR_STORE; /* the columns are NOT NULL: the file is damaged */
        goto out;
    }
    g->not_before = sqlite3_column_int64(s, 4);
    g->not_after = sqlite3_column_int64(s, 5);
    g->published_at = sqlite3_column_int64(s, 6);
    g->activate_at = sqlite3_column_int64(s, 7);
    *(struct as_ca_gen_rec **)elem = g;
    g = NULL;
out:
    as_ca_gen_rec_free(g);
    return r;
}

enum as_err as_store_ca_gen_insert(struct as_store *st, struct as_ca_gen_rec *g)
{
    enum as_err r;
    struct as_conn *c = NULL;
    sqlite3_stmt *s = NULL;
    int64_t id = 0;

    if (st == NULL || g == NULL || g->base == NULL || g->base[0] == '\0' ||
        !ca_gen_state_ok(g->state)) {
        return AS_ERR_INVALID;
    }
    /* ?1..?3 the strings and ?4..?7 the integers, as in ST_CA_GEN_INSERT. */
    const char *strs[] = {g->base, g->jwt_kid, g->state};
    const int64_t ints[] = {g->not_before, g->not_after, g->published_at, g->activate_at};
    if ((r = stmt_ready(st, ST_CA_GEN_INSERT, &c, &s)) != AS_OK ||
        (r = bind_texts(c, s, 1, strs, N_ELEMS(strs))) != AS_OK ||
        (r = bind_int64s(c, s, 4, ints, N_ELEMS(ints))) != AS_OK ||
        (r = step_returning(c, s, "ca_gen insert", &id, NULL)) != AS_OK) {
        goto out;
    }
    g->id = id;
out:
    stmt_put(s);
    return r;
}

enum as_err as_store_ca_gen_list(struct as_store *st, struct as_ca_gen_rec ***out, size_t *n)
{
    enum as_err r;
    struct as_conn *c = NULL;
    sqlite3_stmt *s = NULL;
    void *v = NULL;
    size_t cnt = 0;

    if (st == NULL || out == NULL || n == NULL) {
        return AS_ERR_INVALID;
    }
    *out = NULL;
    *n = 0;
    if ((r = stmt_ready(st, ST_CA_GEN_LIST, &c, &s)) != AS_OK ||
        (r = collect_rows(c, s, "ca_gen list", read_ca_gen, sizeof(struct as_ca_gen_rec *), NULL,
                          &v, &cnt)) != AS_OK) {
        goto out;
    }
    *out = v;
    *n = cnt;
    v = NULL;
out:
    stmt_put(s);
    as_ca_gen_recs_free(v, cnt);
    return r;
}

enum as_err as_store_ca_gen_update(struct as_store *st, int64_t id, const char *state,
                                   int64_t activate_at)
{
    enum as_err r;
    struct as_conn *c = NULL;
    sqlite3_stmt *s = NULL;

    if (st == NULL || !ca_gen_state_ok(state)) {
        return AS_ERR_INVALID;
    }
    if ((r = stmt_ready(st, ST_CA_GEN_UPDATE, &c, &s)) != AS_OK ||
        (r = bind_int64(c, s, 1, id)) != AS_OK || (r = bind_text(c, s, 2, state)) != AS_OK ||
        (r = bind_int64(c, s, 3, activate_at)) != AS_OK) {
        goto out;
    }
    r = step_change(c, s, "ca_gen update");
out:
    stmt_put(s);
    return r;
}

/* ---- auth mounts and roles ---- */

/* A required key (mount path, role name, ...): NULL and "" are the caller's mistake. */
static bool key_ok(const char *key)
{
    return key != NULL && key[0] != '\0';
}

static bool mount_type_ok(const char *type)
{
    return type != NULL && (strcmp(type, "jwt") == 0 || strcmp(type, "cert") == 0);
}

void as_mount_rec_free(struct as_mount_rec *m)
{
    if (m == NULL) {
        return;
    }
    free(m->path);
    free(m->type);
    free(m->accessor);
    free(m->description);
    free(m->config_json);
    free(m);
}

void as_mount_recs_free(struct as_mount_rec **v, size_t n)
{
    if (v == NULL) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        as_mount_rec_free(v[i]);
    }
    free(v);
}

/*
 * A row_reader: builds a record from the current row of a SELECT MOUNT_COLS statement into the
 * struct as_mount_rec * at elem.
 */
static enum as_err read_mount(sqlite3_stmt *s, void *elem, void *ctx)
{
    enum as_err r = AS_OK;
    struct as_mount_rec *m = NULL;

    (void)ctx;
    m = calloc(1, sizeof *m);
    if (m == NULL) {
        r = AS_ERR_NOMEM;
        goto out;
    }
    char **strs[] = {&m->path, &m->type, &m->accessor, &m->description, &m->config_json};
    if ((r = col_strdups(s, 0, strs, N_ELEMS(strs))) != AS_OK) {
        goto out;
    }
    if (m->path == NULL || m->type == NULL || m->accessor == NULL) {
        r = AS_ERR_STORE; /* key or NOT NULL columns: the file is damaged */
        goto out;
    }
    m->created = sqlite3_column_int64(s, 5);
    *(struct as_mount_rec **)elem = m;
    m = NULL;
out:
    as_mount_rec_free(m);
    return r;
}

enum as_err as_store_mount_insert(struct as_store *st, const struct as_mount_rec *m)
{
    enum as_err r;
    struct as_conn *c = NULL;
    sqlite3_stmt *s = NULL;

    /* A config, when given, is a JSON object: "" is neither that nor "not configured". */
    if (st == NULL || m == NULL || !key_ok(m->path) || !mount_type_ok(m->type) ||
        !key_ok(m->accessor) || (m->config_json != NULL && m->config_json[0] == '\0')) {
        return AS_ERR_INVALID;
    }
    /* ?1..?5 the strings and ?6 created, as in MOUNT_COLS. Both unique keys map to EXISTS. */
    const char *strs[] = {m->path, m->type, m->accessor, m->description, m->config_json};
    if ((r = stmt_ready(st, ST_MOUNT_INSERT, &c, &s)) != AS_OK ||
        (r = bind_texts(c, s, 1, strs, N_ELEMS(strs))) != AS_OK ||
        (r = bind_int64(c, s, 6, m->created)) != AS_OK) {
        goto out;
    }
    r = step_done(c, s, "mount insert");
out:
    stmt_put(s);
    return r;
}

enum as_err as_store_mount_get(struct as_store *st, const char *path, struct as_mount_rec **out)
{
    if (st == NULL || out == NULL) {
        return AS_ERR_INVALID;
    }
    *out = NULL;
    if (!key_ok(path)) {
        return AS_ERR_INVALID;
    }
    return row_by_key(st, ST_MOUNT_GET, path, "mount get", read_mount, out);
}

enum as_err as_store_mount_list(struct as_store *st, struct as_mount_rec ***out, size_t *n)
{
    enum as_err r;
    struct as_conn *c = NULL;
    sqlite3_stmt *s = NULL;
    void *v = NULL;
    size_t cnt = 0;

    if (st == NULL || out == NULL || n == NULL) {
        return AS_ERR_INVALID;
    }
    *out = NULL;
    *n = 0;
    if ((r = stmt_ready(st, ST_MOUNT_LIST, &c, &s)) != AS_OK ||
        (r = collect_rows(c, s, "mount list", read_mount, sizeof(struct as_mount_rec *), NULL, &v,
                          &cnt)) != AS_OK) {
        goto out;
    }
    *out = v;
    *n = cnt;
    v = NULL;
out:
    stmt_put(s);
    as_mount_recs_free(v, cnt);
    return r;
}

enum as_err as_store_mount_set_config(struct as_store *st, const char *path,
                                      const char *config_json)
{
    enum as_err r;
    struct as_conn *c = NULL;
    sqlite3_stmt *s = NULL;

    /* NULL returns the mount to "not configured"; "" is not a JSON object. */
    if (st == NULL || !key_ok(path) || (config_json != NULL && config_json[0] == '\0')) {
        return AS_ERR_INVALID;
    }
    if ((r = stmt_ready(st, ST_MOUNT_SET_CONFIG, &c, &s)) != AS_OK ||
        (r = bind_text(c, s, 1, path)) != AS_OK || (r = bind_text(c, s, 2, config_json)) != AS_OK) {
        goto out;
    }
    r = step_change(c, s, "mount set config");
out:
    stmt_put(s);
    return r;
}

/* Runs the cached write id with text ?1 = key to completion (no rows, any number changed). */
static enum as_err write_by_key(struct as_conn *c, enum stmt_id id, const char *key,
                                const char *what, bool must_change)
{
    enum as_err r;
    sqlite3_stmt *s = NULL;

    if ((r = stmt_get(c, id, &s)) != AS_OK || (r = bind_text(c, s, 1, key)) != AS_OK) {
        goto out;
    }
    r = must_change ? step_change(c, s, what) : step_done(c, s, what);
out:
    stmt_put(s);
    return r;
}

enum as_err as_store_mount_delete(struct as_store *st, const char *path, size_t *ntokens)
{
    enum as_err r;
    struct as_conn *c = NULL;
    enum tx_kind kind = TX_OWN;
    struct strv toks = {NULL, 0, 0}, certs = {NULL, 0, 0};

    if (st == NULL || !key_ok(path)) {
        return AS_ERR_INVALID;
    }
    if (ntokens != NULL) {
        *ntokens = 0;
    }
    /*
     * One transaction: a mount is never gone while its roles or tokens remain, nor the other
     * way round. The mount row goes first so that an absent mount fails before anything else.
     */
    if ((r = tx_open(st, &c, &kind)) != AS_OK) {
        return r;
    }
    if ((r = write_by_key(c, ST_MOUNT_DELETE, path, "mount delete", true)) != AS_OK ||
        (r = write_by_key(c, ST_ROLE_DELETE_MOUNT, path, "mount delete roles", false)) != AS_OK ||
        (r = write_collect(c, ST_TOKEN_DELETE_MOUNT, path, NULL, "mount delete tokens", &toks)) !=
            AS_OK) {
        goto out;
    }
    /* Unmounting revokes (SPEC §3), so the tokens' SVIDs and their login tokens follow. */
    r = revoke_cascade(c, as_now(), &toks, &certs);
out:
    r = tx_leave(c, kind, r);
    if (r == AS_OK && ntokens != NULL) {
        *ntokens = toks.n;
    }
    as_store_strv_free(toks.v, toks.n);
    as_store_strv_free(certs.v, certs.n);
    return r;
}

/* The calling thread's connection and cached statement id with ?1 = mount, ?2 = name bound. */
static enum as_err role_ready(struct as_store *st, enum stmt_id id, const char *mount,
                              const char *name, struct as_conn **c, sqlite3_stmt **s)
{
    enum as_err r;
    const char *keys[] = {mount, name};

    if ((r = stmt_ready(st, id, c, s)) != AS_OK) {
        return r;
    }
    return bind_texts(*c, *s, 1, keys, N_ELEMS(keys));
}

enum as_err as_store_role_put(struct as_store *st, const char *mount, const char *name,
                              const char *json)
{
    enum as_err r;
    struct as_conn *c = NULL;
    sqlite3_stmt *s = NULL;

    if (st == NULL || !key_ok(mount) || !key_ok(name) || !key_ok(json)) {
        return AS_ERR_INVALID;
    }
    if ((r = role_ready(st, ST_ROLE_PUT, mount, name, &c, &s)) != AS_OK ||
        (r = bind_text(c, s, 3, json)) != AS_OK) {
        goto out;
    }
    r = step_done(c, s, "role put");
out:
    stmt_put(s);
    return r;
}

enum as_err as_store_role_get(struct as_store *st, const char *mount, const char *name, char **json)
{
    enum as_err r;
    struct as_conn *c = NULL;
    sqlite3_stmt *s = NULL;

    if (st == NULL || json == NULL) {
        return AS_ERR_INVALID;
    }
    *json = NULL;
    if (!key_ok(mount) || !key_ok(name)) {
        return AS_ERR_INVALID;
    }
    if ((r = role_ready(st, ST_ROLE_GET, mount, name, &c, &s)) != AS_OK ||
        (r = step_row(c, s, "role get")) != AS_OK) {
        goto out;
    }
    r = read_text0(s, json, NULL);
out:
    stmt_put(s);
    return r;
}

enum as_err as_store_role_delete(struct as_store *st, const char *mount, const char *name)
{
    enum as_err r;
    struct as_conn *c = NULL;
    sqlite3_stmt *s = NULL;

    if (st == NULL || !key_ok(mount) || !key_ok(name)) {
        return AS_ERR_INVALID;
    }
    if ((r = role_ready(st, ST_ROLE_DELETE, mount, name, &c, &s)) != AS_OK) {
        goto out;
    }
    r = step_change(c, s, "role delete");
out:
    stmt_put(s);
    return r;
}

enum as_err as_store_role_list(struct as_store *st, const char *mount, char ***names, size_t *n)
{
    enum as_err r;
    struct as_conn *c = NULL;
    sqlite3_stmt *s = NULL;

    if (st == NULL || names == NULL || n == NULL) {
        return AS_ERR_INVALID;
    }
    *names = NULL;
    *n = 0;
    if (!key_ok(mount)) {
        return AS_ERR_INVALID;
    }
    if ((r = stmt_ready(st, ST_ROLE_LIST, &c, &s)) != AS_OK ||
        (r = bind_text(c, s, 1, mount)) != AS_OK) {
        goto out;
    }
    r = collect_strv(c, s, "role list", names, n);
out:
    stmt_put(s);
    return r;
}

/* ---- intentions ---- */

static bool intention_action_ok(const char *action)
{
    return action != NULL && (strcmp(action, "allow") == 0 || strcmp(action, "deny") == 0);
}

void as_intention_rec_free(struct as_intention_rec *i)
{
    if (i == NULL) {
        return;
    }
    free(i->source);
    free(i->destination);
    free(i->action);
    free(i->description);
    free(i);
}

void as_intention_recs_free(struct as_intention_rec **v, size_t n)
{
    if (v == NULL) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        as_intention_rec_free(v[i]);
    }
    free(v);
}

/*
 * A row_reader: builds a record from the current row of a SELECT INTENTION_COLS statement into
 * the struct as_intention_rec * at elem.
 */
static enum as_err read_intention(sqlite3_stmt *s, void *elem, void *ctx)
{
    enum as_err r = AS_OK;
    struct as_intention_rec *i = NULL;

    (void)ctx;
    i = calloc(1, sizeof *i);
    if (i == NULL) {
        r = AS_ERR_NOMEM;
        goto out;
    }
    if (col_copy(s, 0, i->id, sizeof i->id) != AS_OK) {
        as_error("store: an intention row has a malformed id");
        r = AS_ERR_STORE;
        goto out;
    }
    char **strs[] = {&i->source, &i->destination, &i->action, &i->description};
    if ((r = col_strdups(s, 1, strs, N_ELEMS(strs))) != AS_OK) {
        goto out;
    }
    if (i->source == NULL || i->destination == NULL || i->action == NULL) {
        r = AS_ERR_STORE; /* NOT NULL columns: the file is damaged */
        goto out;
    }
    i->created = sqlite3_column_int64(s, 5);
    i->updated = sqlite3_column_int64(s, 6);
    *(struct as_intention_rec **)elem = i;
    i = NULL;
out:
    as_intention_rec_free(i);
    return r;
}

/*
 * Bumps the change counter inside the caller's tx_enter transaction, so the counter and the
 * rows it describes commit (or roll back) together: a reader never sees a new version with old
 * rows, nor new rows under the old version.
 */
static enum as_err intention_bump(struct as_conn *c)
{
    return write_by_key(c, ST_INTENTION_BUMP, AS_INTENTIONS_VERSION_KEY, "intention version bump",
                        false);
}

enum as_err as_store_intention_put(struct as_store *st, const struct as_intention_rec *i)
{
    enum as_err r;
    struct as_conn *c = NULL;
    enum tx_kind kind = TX_OWN;
    sqlite3_stmt *s = NULL;
    size_t idlen;

    if (st == NULL || i == NULL) {
        return AS_ERR_INVALID;
    }
    /* The id must be NUL-terminated inside its array; patterns are checked by the caller. */
    idlen = strnlen(i->id, sizeof i->id);
    if (idlen == 0 || idlen == sizeof i->id || !key_ok(i->source) || !key_ok(i->destination) ||
        !intention_action_ok(i->action)) {
        return AS_ERR_INVALID;
    }
    /* ?1..?5 the strings and ?6..?7 the times, as in INTENTION_COLS. */
    const char *strs[] = {i->id, i->source, i->destination, i->action, i->description};
    const int64_t ints[] = {i->created, i->updated};
    if ((r = tx_open(st, &c, &kind)) != AS_OK) {
        return r;
    }
    if ((r = stmt_get(c, ST_INTENTION_PUT, &s)) != AS_OK ||
        (r = bind_texts(c, s, 1, strs, N_ELEMS(strs))) != AS_OK ||
        (r = bind_int64s(c, s, 6, ints, N_ELEMS(ints))) != AS_OK ||
        (r = step_done(c, s, "intention put")) != AS_OK) {
        goto out;
    }
    r = intention_bump(c);
out:
    stmt_put(s);
    return tx_leave(c, kind, r);
}

enum as_err as_store_intention_get(struct as_store *st, const char *id,
                                   struct as_intention_rec **out)
{
    if (st == NULL || out == NULL) {
        return AS_ERR_INVALID;
    }
    *out = NULL;
    if (!key_ok(id)) {
        return AS_ERR_INVALID;
    }
    return row_by_key(st, ST_INTENTION_GET, id, "intention get", read_intention, out);
}

enum as_err as_store_intention_delete(struct as_store *st, const char *id)
{
    enum as_err r;
    struct as_conn *c = NULL;
    enum tx_kind kind = TX_OWN;

    if (st == NULL || !key_ok(id)) {
        return AS_ERR_INVALID;
    }
    if ((r = tx_open(st, &c, &kind)) != AS_OK) {
        return r;
    }
    /* An absent id fails here, and tx_leave then undoes nothing: the version stays. */
    if ((r = write_by_key(c, ST_INTENTION_DELETE, id, "intention delete", true)) != AS_OK) {
        goto out;
    }
    r = intention_bump(c);
out:
    return tx_leave(c, kind, r);
}

enum as_err as_store_intention_list(struct as_store *st, struct as_intention_rec ***out, size_t *n)
{
    enum as_err r;
    struct as_conn *c = NULL;
    sqlite3_stmt *s = NULL;
    void *v = NULL;
    size_t cnt = 0;

    if (st == NULL || out == NULL || n == NULL) {
        return AS_ERR_INVALID;
    }
    *out = NULL;
    *n = 0;
    if ((r = stmt_ready(st, ST_INTENTION_LIST, &c, &s)) != AS_OK ||
        (r = collect_rows(c, s, "intention list", read_intention, sizeof(struct as_intention_rec *),
                          NULL, &v, &cnt)) != AS_OK) {
        goto out;
    }
    *out = v;
    *n = cnt;
    v = NULL;
out:
    stmt_put(s);
    as_intention_recs_free(v, cnt);
    return r;
}

/*
 * The counter only grows in committed history, so a cache that read version v before it read
 * the rows reloads whenever a write committed in between. (Read it first: reading the rows
 * first could pair old rows with a newer version.) A caller's own uncommitted transaction sees
 * its own bump; if that transaction is rolled back the number is reused by the next write, so
 * a cache must not be filled from inside a transaction that may still roll back.
 */
enum as_err as_store_intention_version(struct as_store *st, int64_t *out)
{
    enum as_err r;
    struct as_conn *c = NULL;
    sqlite3_stmt *s = NULL;
    int64_t v = 0;

    if (st == NULL || out == NULL) {
        return AS_ERR_INVALID;
    }
    *out = 0;
    if ((r = stmt_ready(st, ST_INTENTION_VERSION, &c, &s)) != AS_OK ||
        (r = bind_text(c, s, 1, AS_INTENTIONS_VERSION_KEY)) != AS_OK) {
        goto out;
    }
    r = step_int64(c, s, "intention version", &v);
    if (r == AS_ERR_NOT_FOUND) {
        r = AS_OK; /* no intention was ever written: version 0 */
    }
    if (r == AS_OK) {
        *out = v;
    }
out:
    stmt_put(s);
    return r;
}

const struct as_hist *as_store_commit_hist(const struct as_store *st)
{
    return &st->commit_hist;
}

/* ---- group commit ---- */

/* fdatasync of the WAL file, opened on first use (it exists once WAL mode is on). */
static enum as_err wal_sync(struct as_store *st)
{
    if (st->wal_fd < 0) {
        char wal[4096];
        if ((size_t)snprintf(wal, sizeof wal, "%s-wal", st->path) >= sizeof wal) {
            return AS_ERR_STORE;
        }
        st->wal_fd = open(wal, O_RDONLY | O_CLOEXEC);
        if (st->wal_fd < 0) {
            as_error("store: cannot open %s to sync it: %s", wal, strerror(errno));
            return AS_ERR_STORE;
        }
        /* The WAL file's own directory entry must be durable too. */
        char dir[4096];
        snprintf(dir, sizeof dir, "%s", st->path);
        char *slash = strrchr(dir, '/');
        if (slash == dir) {
            slash[1] = '\0';
        } else if (slash != NULL) {
            *slash = '\0';
        } else {
            snprintf(dir, sizeof dir, ".");
        }
        int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            (void)fsync(dfd);
            close(dfd);
        }
    }
    if (fdatasync(st->wal_fd) != 0) {
        as_error("store: cannot sync the WAL: %s", strerror(errno));
        return AS_ERR_STORE;
    }
    return AS_OK;
}

/* Waits until commit number target is on disk, leading a sync when none is running: one
 * fdatasync covers every commit made before it starts, the group transaction's too (committed
 * first when its number is among them). AS_ERR_STORE when target's group transaction was lost. */
static enum as_err sync_upto(struct as_store *st, uint64_t target)
{
    enum as_err r = AS_OK;
    if (target == 0) {
        return AS_OK;
    }
    pthread_mutex_lock(&st->sync_mu);
    while (st->synced < target) {
        if (st->syncing) {
            pthread_cond_wait(&st->sync_cv, &st->sync_mu);
            continue;
        }
        st->syncing = true;
        uint64_t upto = atomic_load(&st->commit_seq);
        pthread_mutex_unlock(&st->sync_mu);
        r = group_commit_upto(st, upto);
        if (r == AS_OK) {
            r = wal_sync(st);
        }
        pthread_mutex_lock(&st->sync_mu);
        st->syncing = false;
        if (r == AS_OK && upto > st->synced) {
            st->synced = upto;
        }
        pthread_cond_broadcast(&st->sync_cv);
        if (r != AS_OK) {
            break;
        }
    }
    if (r == AS_OK && group_is_lost(st, target)) {
        r = AS_ERR_STORE;
    }
    pthread_mutex_unlock(&st->sync_mu);
    return r;
}

uint64_t as_store_my_commit(struct as_store *st)
{
    struct as_conn *c = pthread_getspecific(st->key);
    return c != NULL ? c->last_commit : 0;
}

enum as_err as_store_sync_to(struct as_store *st, uint64_t seq)
{
    return sync_upto(st, seq);
}

enum as_err as_store_sync(struct as_store *st)
{
    return st != NULL ? sync_upto(st, atomic_load(&st->commit_seq)) : AS_ERR_INVALID;
}

enum as_err as_store_sync_mine(struct as_store *st)
{
    if (st == NULL) {
        return AS_ERR_INVALID;
    }
    struct as_conn *c = pthread_getspecific(st->key);
    return c != NULL ? sync_upto(st, c->last_commit) : AS_OK;
}
