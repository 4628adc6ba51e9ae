/* config.c: "authsvc server" flags and the JSON config file (SPEC §1, §10). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "authsvc/server.h"

/* Known keys of the config file; each nested object lists its own. */
static const char *const top_keys[] = {
    "trust_domain", "data_dir",  "listen",  "tls_listen", "tls_cert_file",
    "tls_key_file", "tls_names", "storage", "ca",         "svid",
    "crl",          "connect",   "audit",   "limits",     NULL};
static const char *const storage_keys[] = {"type", "path", NULL};
static const char *const ca_keys[] = {"key_type",          "ttl",      "upstream_cert_file",
                                      "upstream_key_file", "kek_file", NULL};
static const char *const svid_keys[] = {
    "default_ttl", "max_ttl", "jwt_default_ttl", "jwt_max_ttl", "bundle_refresh_hint", NULL};
static const char *const crl_keys[] = {"ttl", NULL};
static const char *const connect_keys[] = {"default_action", NULL};
static const char *const audit_keys[] = {"path", "log_allowed_checks", NULL};
static const char *const limits_keys[] = {"max_body_bytes", "login_per_second", NULL};

static bool known(const char *const *keys, const char *k)
{
    for (; *keys; keys++) {
        if (strcmp(*keys, k) == 0) {
            return true;
        }
    }
    return false;
}

static enum as_err bad(const char *field, const char *why)
{
    fprintf(stderr, "authsvc: config: %s: %s\n", field, why);
    return AS_ERR_CONFIG;
}

static enum as_err check_keys(json_t *obj, const char *prefix, const char *const *keys)
{
    const char *k;
    json_t *v;
    json_object_foreach(obj, k, v)
    {
        if (!known(keys, k)) {
            char field[256];
            snprintf(field, sizeof field, "%s%s%s", prefix, *prefix ? "." : "", k);
            return bad(field, "unknown key");
        }
    }
    return AS_OK;
}

static enum as_err set_str(char **dst, json_t *obj, const char *key, const char *field)
{
    const char *s = NULL;
    bool present = false;
    if (as_json_get_string(obj, key, &s, &present) != AS_OK) {
        return bad(field, "must be a string");
    }
    if (present) {
        free(*dst);
        *dst = strdup(s);
        if (*dst == NULL) {
            return AS_ERR_NOMEM;
        }
    }
    return AS_OK;
}

static enum as_err set_dur(int64_t *dst, json_t *obj, const char *key, const char *field)
{
    if (as_json_get_duration(obj, key, dst, NULL) != AS_OK) {
        return bad(field, "must be a duration (seconds or a string like \"1h\")");
    }
    return AS_OK;
}

static enum as_err section(json_t *root, const char *name, const char *const *keys, json_t **out)
{
    *out = json_object_get(root, name);
    if (*out == NULL || json_is_null(*out)) {
        *out = NULL;
        return AS_OK;
    }
    if (!json_is_object(*out)) {
        return bad(name, "must be an object");
    }
    return check_keys(*out, name, keys);
}

static enum as_err load_file(const char *path, struct as_config *cfg)
{
    enum as_err r = AS_OK;
    json_error_t je;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    json_t *s = NULL;
    if (root == NULL) {
        fprintf(stderr, "authsvc: config: %s: line %d: %s\n", path, je.line, je.text);
        return AS_ERR_CONFIG;
    }
    if (!json_is_object(root)) {
        r = bad(path, "must be a JSON object");
        goto out;
    }
    if ((r = check_keys(root, "", top_keys)) != AS_OK ||
        (r = set_str(&cfg->trust_domain, root, "trust_domain", "trust_domain")) != AS_OK ||
        (r = set_str(&cfg->data_dir, root, "data_dir", "data_dir")) != AS_OK ||
        (r = set_str(&cfg->listen, root, "listen", "listen")) != AS_OK ||
        (r = set_str(&cfg->tls_listen, root, "tls_listen", "tls_listen")) != AS_OK ||
        (r = set_str(&cfg->tls_cert_file, root, "tls_cert_file", "tls_cert_file")) != AS_OK ||
        (r = set_str(&cfg->tls_key_file, root, "tls_key_file", "tls_key_file")) != AS_OK) {
        goto out;
    }
    json_t *names = NULL;
    if (as_json_get_strlist(root, "tls_names", &names, NULL) != AS_OK) {
        r = bad("tls_names", "must be a list of strings");
        goto out;
    }
    if (names != NULL) {
        json_decref(cfg->tls_names);
        cfg->tls_names = names;
    }
    if ((r = section(root, "storage", storage_keys, &s)) != AS_OK) {
        goto out;
    }
    if (s != NULL) {
        const char *type = "sqlite";
        if (as_json_get_string(s, "type", &type, NULL) != AS_OK || strcmp(type, "sqlite") != 0) {
            r = bad("storage.type", "only \"sqlite\" is supported");
            goto out;
        }
        if ((r = set_str(&cfg->storage_path, s, "path", "storage.path")) != AS_OK) {
            goto out;
        }
    }
    if ((r = section(root, "ca", ca_keys, &s)) != AS_OK) {
        goto out;
    }
    if (s != NULL) {
        const char *kt = "ec-p256";
        if (as_json_get_string(s, "key_type", &kt, NULL) != AS_OK || strcmp(kt, "ec-p256") != 0) {
            r = bad("ca.key_type", "only \"ec-p256\" is supported");
            goto out;
        }
        if ((r = set_dur(&cfg->ca_ttl, s, "ttl", "ca.ttl")) != AS_OK) {
            goto out;
        }
        if ((r = set_str(&cfg->upstream_cert_file, s, "upstream_cert_file",
                         "ca.upstream_cert_file")) != AS_OK ||
            (r = set_str(&cfg->upstream_key_file, s, "upstream_key_file",
                         "ca.upstream_key_file")) != AS_OK) {
            goto out;
        }
        if ((cfg->upstream_cert_file == NULL) != (cfg->upstream_key_file == NULL)) {
            r = bad("ca.upstream_cert_file",
                    "upstream_cert_file and upstream_key_file go together");
            goto out;
        }
        if (json_object_get(s, "kek_file")) {
            r = bad("ca.kek_file", "key-encryption keys are not supported yet");
            goto out;
        }
    }
    if ((r = section(root, "svid", svid_keys, &s)) != AS_OK) {
        goto out;
    }
    if (s != NULL &&
        ((r = set_dur(&cfg->svid_default_ttl, s, "default_ttl", "svid.default_ttl")) != AS_OK ||
         (r = set_dur(&cfg->svid_max_ttl, s, "max_ttl", "svid.max_ttl")) != AS_OK ||
         (r = set_dur(&cfg->jwt_default_ttl, s, "jwt_default_ttl", "svid.jwt_default_ttl")) !=
             AS_OK ||
         (r = set_dur(&cfg->jwt_max_ttl, s, "jwt_max_ttl", "svid.jwt_max_ttl")) != AS_OK ||
         (r = set_dur(&cfg->bundle_refresh_hint, s, "bundle_refresh_hint",
                      "svid.bundle_refresh_hint")) != AS_OK)) {
        goto out;
    }
    if ((r = section(root, "crl", crl_keys, &s)) != AS_OK) {
        goto out;
    }
    if (s != NULL && (r = set_dur(&cfg->crl_ttl, s, "ttl", "crl.ttl")) != AS_OK) {
        goto out;
    }
    if ((r = section(root, "connect", connect_keys, &s)) != AS_OK) {
        goto out;
    }
    if (s != NULL) {
        if ((r = set_str(&cfg->default_action, s, "default_action", "connect.default_action")) !=
            AS_OK) {
            goto out;
        }
        if (strcmp(cfg->default_action, "allow") != 0 && strcmp(cfg->default_action, "deny") != 0) {
            r = bad("connect.default_action", "must be \"allow\" or \"deny\"");
            goto out;
        }
    }
    if ((r = section(root, "audit", audit_keys, &s)) != AS_OK) {
        goto out;
    }
    if (s != NULL) {
        if ((r = set_str(&cfg->audit_path, s, "path", "audit.path")) != AS_OK) {
            goto out;
        }
        if (as_json_get_bool(s, "log_allowed_checks", &cfg->audit_log_allowed_checks, NULL) !=
            AS_OK) {
            r = bad("audit.log_allowed_checks", "must be a boolean");
            goto out;
        }
    }
    if ((r = section(root, "limits", limits_keys, &s)) != AS_OK) {
        goto out;
    }
    if (s != NULL) {
        if (as_json_get_int(s, "max_body_bytes", &cfg->max_body_bytes, NULL) != AS_OK ||
            cfg->max_body_bytes < 1 || cfg->max_body_bytes > AS_MAX_BODY_BYTES) {
            r = bad("limits.max_body_bytes", "must be an integer from 1 to 1048576");
            goto out;
        }
        if (as_json_get_int(s, "login_per_second", &cfg->login_per_second, NULL) != AS_OK ||
            cfg->login_per_second < 1) {
            r = bad("limits.login_per_second", "must be a positive integer");
            goto out;
        }
    }
out:
    json_decref(root);
    return r;
}

static enum as_err set_arg(char **dst, const char *v)
{
    free(*dst);
    *dst = strdup(v);
    return *dst ? AS_OK : AS_ERR_NOMEM;
}

static void usage(void)
{
    fprintf(stderr, "usage: authsvc server [--dev] [--config FILE] [--data-dir DIR] "
                    "[--listen ADDR:PORT] [--tls-listen ADDR:PORT] [--log-level LEVEL]\n");
}

/* Vault's spellings (-log-level, VAULT_LOG_LEVEL); "trace" is Vault's level below debug. */
static bool log_level_of(const char *s, enum as_log_level *out)
{
    static const struct {
        const char *name;
        enum as_log_level level;
    } levels[] = {{"trace", AS_LOG_DEBUG},
                  {"debug", AS_LOG_DEBUG},
                  {"info", AS_LOG_INFO},
                  {"warn", AS_LOG_WARN},
                  {"error", AS_LOG_ERROR}};
    for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++) {
        if (strcmp(s, levels[i].name) == 0) {
            *out = levels[i].level;
            return true;
        }
    }
    return false;
}

enum as_err as_config_load(int argc, char **argv, struct as_config *cfg)
{
    enum as_err r = AS_OK;
    const char *config_file = NULL;
    const char *data_dir = NULL;
    const char *listen = NULL;
    const char *tls_listen = NULL;
    const char *log_level = getenv("AUTHSVC_LOG_LEVEL");
    const char *log_level_from = "AUTHSVC_LOG_LEVEL";
    memset(cfg, 0, sizeof *cfg);
    cfg->log_level = AS_LOG_INFO;
    cfg->ca_ttl = 720 * 3600;
    cfg->max_body_bytes = AS_MAX_BODY_BYTES;
    cfg->login_per_second = 100;
    cfg->svid_default_ttl = 3600;
    cfg->svid_max_ttl = 24 * 3600;
    cfg->jwt_default_ttl = 300;
    cfg->jwt_max_ttl = 3600;
    cfg->bundle_refresh_hint = 300;
    cfg->crl_ttl = 3600;
    cfg->tls_names = json_array();

    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        /* Accept -flag, --flag, -flag=value, --flag=value and "-flag value". */
        while (*a == '-') {
            a++;
        }
        if (a == argv[i]) {
            fprintf(stderr, "authsvc: unexpected argument \"%s\"\n", argv[i]);
            usage();
            return AS_ERR_CONFIG;
        }
        char name[64];
        const char *eq = strchr(a, '=');
        size_t nlen = eq ? (size_t)(eq - a) : strlen(a);
        if (nlen >= sizeof name) {
            fprintf(stderr, "authsvc: unknown flag \"%s\"\n", argv[i]);
            return AS_ERR_CONFIG;
        }
        memcpy(name, a, nlen);
        name[nlen] = '\0';
        if (strcmp(name, "dev") == 0 && eq == NULL) {
            cfg->dev = true;
            continue;
        }
        const char **slot = NULL;
        if (strcmp(name, "config") == 0) {
            slot = &config_file;
        } else if (strcmp(name, "data-dir") == 0) {
            slot = &data_dir;
        } else if (strcmp(name, "listen") == 0) {
            slot = &listen;
        } else if (strcmp(name, "tls-listen") == 0) {
            slot = &tls_listen;
        } else if (strcmp(name, "log-level") == 0) {
            slot = &log_level;
            log_level_from = "--log-level";
        } else {
            fprintf(stderr, "authsvc: unknown flag \"%s\"\n", argv[i]);
            usage();
            return AS_ERR_CONFIG;
        }
        if (eq != NULL) {
            *slot = eq + 1;
        } else if (i + 1 < argc) {
            *slot = argv[++i];
        } else {
            fprintf(stderr, "authsvc: flag \"%s\" needs a value\n", argv[i]);
            return AS_ERR_CONFIG;
        }
    }
    if (log_level != NULL && *log_level != '\0' && !log_level_of(log_level, &cfg->log_level)) {
        fprintf(stderr, "authsvc: %s: \"%s\" is not one of trace, debug, info, warn, error\n",
                log_level_from, log_level);
        return AS_ERR_CONFIG;
    }
    if (config_file != NULL && (r = load_file(config_file, cfg)) != AS_OK) {
        return r;
    }
    if (config_file == NULL && !cfg->dev) {
        fprintf(stderr, "authsvc: a config file (--config FILE) is required without --dev\n");
        usage();
        return AS_ERR_CONFIG;
    }
    if ((data_dir && (r = set_arg(&cfg->data_dir, data_dir)) != AS_OK) ||
        (listen && (r = set_arg(&cfg->listen, listen)) != AS_OK) ||
        (tls_listen && (r = set_arg(&cfg->tls_listen, tls_listen)) != AS_OK)) {
        return r;
    }
    if (cfg->dev) {
        if ((!cfg->data_dir && (r = set_arg(&cfg->data_dir, "./authsvc-data")) != AS_OK) ||
            (!cfg->trust_domain && (r = set_arg(&cfg->trust_domain, "example.org")) != AS_OK)) {
            return r;
        }
    }
    if (cfg->trust_domain == NULL) {
        return bad("trust_domain", "is required");
    }
    if (cfg->data_dir == NULL || *cfg->data_dir == '\0') {
        return bad("data_dir", "is required");
    }
    if ((!cfg->listen && (r = set_arg(&cfg->listen, "127.0.0.1:8200")) != AS_OK) ||
        (!cfg->tls_listen && (r = set_arg(&cfg->tls_listen, "127.0.0.1:8201")) != AS_OK) ||
        (!cfg->default_action && (r = set_arg(&cfg->default_action, "deny")) != AS_OK)) {
        return r;
    }
    /* Seconds are allowed so tests can watch rotations happen (SPEC §6). */
    if (cfg->ca_ttl < 10) {
        return bad("ca.ttl", "must be at least 10 seconds");
    }
    if (cfg->svid_default_ttl < 1 || cfg->svid_max_ttl < cfg->svid_default_ttl ||
        cfg->jwt_default_ttl < 1 || cfg->jwt_max_ttl < cfg->jwt_default_ttl) {
        return bad("svid", "default TTLs must be positive and not above their max");
    }
    if (cfg->crl_ttl < 10) {
        return bad("crl.ttl", "must be at least 10 seconds");
    }
    if (cfg->tls_cert_file || cfg->tls_key_file) {
        if (!cfg->tls_cert_file || !cfg->tls_key_file) {
            return bad("tls_cert_file", "tls_cert_file and tls_key_file go together");
        }
    }
    return AS_OK;
}

void as_config_free(struct as_config *cfg)
{
    free(cfg->trust_domain);
    free(cfg->data_dir);
    free(cfg->listen);
    free(cfg->tls_listen);
    free(cfg->tls_cert_file);
    free(cfg->tls_key_file);
    json_decref(cfg->tls_names);
    free(cfg->storage_path);
    free(cfg->upstream_cert_file);
    free(cfg->upstream_key_file);
    free(cfg->audit_path);
    free(cfg->default_action);
    memset(cfg, 0, sizeof *cfg);
}
