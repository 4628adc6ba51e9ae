/*
 * main.c: "authsvc server": configuration, the data directory, the store, the CA, bootstrap,
 * the listeners, and a signal loop (SPEC §1).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "authsvc/server.h"

#define SETTING_BOOTSTRAPPED "bootstrapped"
#define SETTING_BOOTSTRAP_CODE "bootstrap_code_hash"
#define PURGE_INTERVAL_SECONDS 60

static void usage(void)
{
    fprintf(stderr, "usage: authsvc server [--dev] [--config FILE] [--data-dir DIR] "
                    "[--listen ADDR:PORT] [--tls-listen ADDR:PORT] [--log-level LEVEL]\n"
                    "       authsvc version\n");
}

static enum as_err data_path(const struct as_server *srv, const char *name, char *out,
                             size_t outlen)
{
    if ((size_t)snprintf(out, outlen, "%s/%s", srv->cfg.data_dir, name) >= outlen) {
        return AS_ERR_CONFIG;
    }
    return AS_OK;
}

static enum as_err ensure_data_dir(const char *dir)
{
    struct stat st;
    if (mkdir(dir, 0700) == 0) {
        return AS_OK;
    }
    if (errno != EEXIST) {
        as_error("cannot create data dir %s: %s", dir, strerror(errno));
        return AS_ERR_CONFIG;
    }
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        as_error("data dir %s is not a directory", dir);
        return AS_ERR_CONFIG;
    }
    if ((st.st_mode & 077) != 0) {
        as_warn("data dir %s is accessible to group or others; it should be 0700", dir);
    }
    return AS_OK;
}

static bool is_bootstrapped(struct as_server *srv, enum as_err *err)
{
    unsigned char *v = NULL;
    size_t n = 0;
    *err = as_store_setting_get(srv->store, SETTING_BOOTSTRAPPED, &v, &n);
    free(v);
    if (*err == AS_ERR_NOT_FOUND) {
        *err = AS_OK;
        return false;
    }
    return *err == AS_OK;
}

void as_server_wake(struct as_server *srv)
{
    pthread_kill(srv->main_thread, SIGUSR1);
}

enum as_err as_server_bootstrap(struct as_server *srv, char **secret, struct as_token_rec **out)
{
    enum as_err r;
    /* The marker and the root token commit together: a crash leaves both or neither. */
    if ((r = as_store_begin(srv->store)) != AS_OK) {
        return r;
    }
    r = as_store_setting_insert(srv->store, SETTING_BOOTSTRAPPED, "1", 1);
    if (r == AS_OK) {
        r = as_tokens_create_root(srv->tokens, secret, out);
    }
    if (r == AS_OK) {
        r = as_store_commit(srv->store);
        if (r != AS_OK) {
            as_free_secret_str(*secret);
            *secret = NULL;
            as_token_rec_free(*out);
            *out = NULL;
        }
    } else {
        as_store_rollback(srv->store);
    }
    if (r == AS_OK) {
        pthread_mutex_lock(&srv->lock);
        srv->initialized = true;
        pthread_mutex_unlock(&srv->lock);
    }
    return r;
}

/* --dev: create the root token, keep it in <data_dir>/root-token (0600), print it on stdout. */
static enum as_err dev_bootstrap(struct as_server *srv)
{
    char *secret = NULL;
    struct as_token_rec *root = NULL;
    char path[4096];
    enum as_err r = as_server_bootstrap(srv, &secret, &root);
    if (r != AS_OK) {
        return r;
    }
    struct as_buf line;
    as_buf_init(&line, 256);
    if ((r = data_path(srv, "root-token", path, sizeof path)) == AS_OK &&
        (r = as_buf_printf(&line, "%s\n", secret)) == AS_OK &&
        (r = as_file_write_atomic(path, line.data, line.len, 0600)) == AS_OK) {
        fputs(line.data, stdout);
        fflush(stdout);
        as_info("dev mode: root token written to %s (accessor %s)", path, root->accessor);
    }
    as_buf_free(&line, true);
    as_free_secret_str(secret);
    as_token_rec_free(root);
    return r;
}

/* Without --dev: a fresh one-time code each start until bootstrap, hash in the store. */
static enum as_err write_bootstrap_code(struct as_server *srv)
{
    unsigned char raw[24];
    char code[40];
    unsigned char hash[32];
    char path[4096];
    enum as_err r;
    if ((r = as_rand_bytes(raw, sizeof raw)) != AS_OK) {
        return r;
    }
    as_b64url(raw, sizeof raw, code);
    as_wipe(raw, sizeof raw);
    if ((r = as_tokens_hmac(srv->tokens, code, strlen(code), hash)) == AS_OK &&
        (r = as_store_setting_put(srv->store, SETTING_BOOTSTRAP_CODE, hash, sizeof hash)) ==
            AS_OK &&
        (r = data_path(srv, "bootstrap-code", path, sizeof path)) == AS_OK) {
        size_t n = strlen(code);
        code[n] = '\n';
        r = as_file_write_atomic(path, code, n + 1, 0600);
        if (r == AS_OK) {
            as_info("not bootstrapped: one-time code written to %s; POST it to /v1/sys/bootstrap",
                    path);
        }
    }
    as_wipe(code, sizeof code);
    as_wipe(hash, sizeof hash);
    return r;
}

/*
 * The HTTPS listener's certificate: the configured files, or one issued by the active CA for
 * localhost, 127.0.0.1, ::1 and the configured tls_names (SPEC §1). Called at start and whenever
 * a new CA generation becomes active.
 */
static enum as_err tls_material(struct as_server *srv)
{
    enum as_err r;
    char *cert = NULL;
    char *key = NULL;
    if (srv->cfg.tls_listen == NULL || *srv->cfg.tls_listen == '\0') {
        return AS_OK;
    }
    if (srv->cfg.tls_cert_file != NULL) {
        if ((r = as_file_read(srv->cfg.tls_cert_file, 1 << 20, &cert, NULL)) != AS_OK ||
            (r = as_file_read(srv->cfg.tls_key_file, 1 << 20, &key, NULL)) != AS_OK) {
            as_error("cannot read tls_cert_file/tls_key_file");
            r = AS_ERR_CONFIG;
            goto out;
        }
    } else {
        struct as_signing s;
        size_t extra = json_array_size(srv->cfg.tls_names);
        const char **names = calloc(3 + extra, sizeof *names);
        if (names == NULL) {
            return AS_ERR_NOMEM;
        }
        names[0] = "localhost";
        names[1] = "127.0.0.1";
        names[2] = "::1";
        for (size_t i = 0; i < extra; i++) {
            names[3 + i] = json_string_value(json_array_get(srv->cfg.tls_names, i));
        }
        r = as_caset_active(srv->caset, &s);
        if (r == AS_OK) {
            r = as_ca_issue_server_cert(s.ca, names, 3 + extra, srv->cfg.ca_ttl, &cert, &key);
        }
        free(names);
        if (r != AS_OK) {
            goto out;
        }
    }
    r = as_http_set_cert(cert, key);
out:
    free(cert);
    as_free_secret_str(key);
    return r;
}

static int run(struct as_server *srv)
{
    enum as_err r;
    char path[4096];
    sigset_t sigs;

    /* No core dumps or ptrace peeks at keys and secrets. */
    (void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    umask(077);

    /* Signals are taken synchronously by this thread; every thread started later inherits the
     * mask, so no handler ever runs inside a worker. */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    sigaddset(&sigs, SIGUSR1); /* as_server_wake: the rotation schedule changed */
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    if ((r = ensure_data_dir(srv->cfg.data_dir)) != AS_OK) {
        return 2;
    }
    if (srv->cfg.storage_path != NULL) {
        snprintf(path, sizeof path, "%s", srv->cfg.storage_path);
    } else if (data_path(srv, "authsvc.db", path, sizeof path) != AS_OK) {
        return 2;
    }
    if ((r = as_store_open(path, &srv->store)) != AS_OK) {
        as_error("cannot open store %s: %s", path, as_strerror(r));
        return 1;
    }
    if ((r = as_tokens_new(srv->store, &srv->tokens)) != AS_OK) {
        as_error("cannot initialize tokens: %s", as_strerror(r));
        return 1;
    }
    /* Parsed check bodies: 256 of up to 2 KiB (a body with a client certificate's PEM fits),
     * at most about 0.8 MB with their objects. */
    if ((srv->bodies = as_json_cache_new(256, 2048)) == NULL) {
        as_error("cannot initialize the body cache: out of memory");
        return 1;
    }
    /* The audit device opens before anything can be asked of the server (SPEC §8). */
    const char *audit_path = srv->cfg.audit_path;
    char default_audit[4096];
    if (audit_path == NULL) {
        if (data_path(srv, "audit.log", default_audit, sizeof default_audit) != AS_OK) {
            return 2;
        }
        audit_path = default_audit;
    }
    if ((r = as_audit_open(srv->store, audit_path, srv->cfg.audit_log_allowed_checks,
                           &srv->audit)) != AS_OK) {
        as_error("cannot open the audit log %s: %s", audit_path, as_strerror(r));
        return 1;
    }
    if ((r = as_caset_open(srv, &srv->caset)) != AS_OK) {
        as_error("cannot load or create the CA in %s: %s", srv->cfg.data_dir, as_strerror(r));
        return r == AS_ERR_CONFIG ? 2 : 1;
    }
    int64_t next_event = 0;
    bool activated = false;
    if ((r = as_caset_tick(srv->caset, as_now(), &next_event, &activated)) != AS_OK) {
        as_error("CA rotation failed: %s", as_strerror(r));
        return 1;
    }
    if ((r = tls_material(srv)) != AS_OK) {
        as_error("cannot prepare the TLS listener certificate: %s", as_strerror(r));
        return r == AS_ERR_CONFIG ? 2 : 1;
    }
    bool boot = is_bootstrapped(srv, &r);
    if (r != AS_OK) {
        return 1;
    }
    srv->initialized = boot;
    if (!boot) {
        r = srv->cfg.dev ? dev_bootstrap(srv) : write_bootstrap_code(srv);
        if (r != AS_OK) {
            as_error("bootstrap failed: %s", as_strerror(r));
            return 1;
        }
    }
    /* Listeners open only after bootstrap has finished (SPEC §1). */
    if ((r = as_http_start(srv)) != AS_OK) {
        return 1;
    }
    as_info("authsvc %s ready (trust domain %s)", AS_VERSION, srv->cfg.trust_domain);

    int rc = 0;
    int64_t next_purge = as_now() + PURGE_INTERVAL_SECONDS;
    for (;;) {
        int64_t now = as_now();
        int64_t wake = next_event < next_purge ? next_event : next_purge;
        if (wake > now + 1) {
            wake = now + 1; /* the audit head goes to the store once a second */
        }
        struct timespec ts = {wake > now ? wake - now : 0, 0};
        if (ts.tv_sec == 0) {
            ts.tv_nsec = 200 * 1000 * 1000;
        }
        int sig = sigtimedwait(&sigs, NULL, &ts);
        if (sig == SIGTERM || sig == SIGINT) {
            as_info("signal %d: stopping", sig);
            break;
        }
        if (sig == SIGHUP) {
            /* Log rotation: the chain continues in whatever file is at the path now. A failure
             * is logged and makes audited requests fail until a later reopen works. */
            as_info("SIGHUP: reopening the audit log");
            if (as_audit_reopen(srv->audit) != AS_OK) {
                as_metrics_audit_failure();
            }
            /* ...and a configured listener certificate is read again (SPEC §1). */
            if (srv->cfg.tls_cert_file != NULL && (r = tls_material(srv)) != AS_OK) {
                as_error("SIGHUP: keeping the old listener certificate: %s", as_strerror(r));
            }
            continue;
        }
        if (sig == SIGUSR1) {
            next_event = as_now(); /* re-plan the rotation schedule now */
        }
        if (sig < 0 && errno != EAGAIN && errno != EINTR) {
            as_error("sigtimedwait: %s", strerror(errno));
            rc = 1;
            break;
        }
        if (as_audit_flush(srv->audit) != AS_OK) {
            as_metrics_audit_failure();
        }
        now = as_now();
        if (now >= next_event) {
            r = as_caset_tick(srv->caset, now, &next_event, &activated);
            if (r != AS_OK) {
                /* Keep serving with the current generation; try again shortly. */
                as_error("CA rotation step failed: %s", as_strerror(r));
                next_event = now + 5;
            } else if (activated && (r = tls_material(srv)) != AS_OK) {
                as_error("cannot re-issue the listener certificate: %s", as_strerror(r));
            }
        }
        if (now >= next_purge) {
            size_t purged = 0;
            if (as_store_token_purge_expired(srv->store, now, &purged) == AS_OK && purged) {
                as_info("purged %zu expired tokens", purged);
            }
            /* A full batch: more are waiting; take the next one soon, not in a minute. */
            next_purge = now + (purged >= AS_STORE_PURGE_BATCH ? 1 : PURGE_INTERVAL_SECONDS);
        }
    }
    as_http_stop(srv);
    return rc;
}

int main(int argc, char **argv)
{
    struct as_server srv;
    memset(&srv, 0, sizeof srv);
    if (argc >= 2 && strcmp(argv[1], "version") == 0) {
        printf("authsvc %s\n", AS_VERSION);
        return 0;
    }
    if (argc < 2 || strcmp(argv[1], "server") != 0) {
        usage();
        return 2;
    }
    if (as_config_load(argc - 2, argv + 2, &srv.cfg) != AS_OK) {
        as_config_free(&srv.cfg);
        return 2;
    }
    as_log_set_level(srv.cfg.log_level);
    pthread_mutex_init(&srv.lock, NULL);
    srv.main_thread = pthread_self();
    int rc = run(&srv);
    as_http_stop(&srv);
    as_connect_shutdown();
    as_json_parsed_free_all();
    as_rows_cache_free_all();
    as_caset_free(srv.caset);
    as_audit_free(srv.audit);
    as_tokens_free(srv.tokens);
    as_json_cache_free(srv.bodies);
    as_store_close(srv.store);
    as_config_free(&srv.cfg);
    pthread_mutex_destroy(&srv.lock);
    return rc;
}
