/*
 * agent.h: the workload agent, `authctl agent -config=FILE [-once]` (SPEC §9).
 *
 * The agent keeps a workload's identity files fresh in one directory: an X.509-SVID and its key
 * (the key made locally, only a CSR is sent), the trust bundle, optionally the CRLs, and
 * JWT-SVIDs for configured audiences. It logs in (static token, token file, jwt or cert method,
 * and once it holds an SVID, optionally the cert method with that SVID), keeps its token alive,
 * renews the SVID at a jittered fraction of its life, refreshes the bundle and CRLs every
 * spiffe_refresh_hint, writes every file atomically (key before certificate) and runs a reload
 * command or signals a process once all files of a change are in place. While the server is
 * away it backs off (1 s doubling to 60 s) and keeps the current files.
 *
 * It is a single-threaded event loop: each task (token, bundle/CRL, X.509-SVID, JWT-SVIDs) has
 * a next deadline on the monotonic clock, and the loop sleeps in sigtimedwait() until the
 * earliest one or until SIGTERM/SIGINT (clean stop) or SIGHUP (refresh everything now).
 *
 * Call after curl_global_init(); the caller should have installed a wiping jansson allocator
 * (authctl does), since answers carry tokens.
 */
#ifndef AS_AGENT_H
#define AS_AGENT_H

#include <stdbool.h>

/* Process exit statuses of as_agent_run. */
#define AS_AGENT_EXIT_OK 0     /* -once wrote everything, or a clean stop on SIGTERM/SIGINT */
#define AS_AGENT_EXIT_FAIL 1   /* -once could not obtain or write something */
#define AS_AGENT_EXIT_CONFIG 2 /* the config file is unreadable or invalid (message names it) */

/*
 * Runs the agent with the JSON config at config_path. once: obtain and write every file one
 * time, run the reload, and return. Otherwise runs until SIGTERM or SIGINT. Logs go to stderr,
 * one line per event, never a token, JWT or private key. Returns an AS_AGENT_EXIT_* status.
 */
int as_agent_run(const char *config_path, bool once);

#endif
