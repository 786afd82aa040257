/* CI support: recorded file durations (timings), the shard split that uses
 * them, --shard auto, and the timings / cache subcommands. */
#ifndef PROVIUM_CI_H
#define PROVIUM_CI_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../config/config.h"

/* ---- the split (host/runner/shard.c; pure, no I/O) ----
 * keys: the files' stable names; ms[i] >= 0 a recorded duration in
 * milliseconds, < 0 none. Files with a duration are dealt longest first
 * (ties by key) to the shard with the least load so far (ties: the lower
 * shard); files without one are sorted by key and dealt round-robin. Writes
 * each file's shard (0-based) to shard_of. Identical input, identical split. */
void shard_plan(const char *const *keys, const int64_t *ms, size_t n, int nshards, int *shard_of);
/* The split before timings existed: sorted by key, file i to shard i mod N. */
void shard_plan_by_path(const char *const *keys, size_t n, int nshards, int *shard_of);

/* "K/N" with 1 <= K <= N: 0, else -1. */
int shard_parse(const char *s, int *k, int *n);
/* --shard auto: K/N from PROVIUM_SHARD ("K/N"), GitLab (CI_NODE_INDEX,
 * CI_NODE_TOTAL) or Buildkite (BUILDKITE_PARALLEL_JOB, ..._COUNT). 0, or -1
 * with err naming the variables it looked for. */
int shard_from_env(int *k, int *n, char *err, size_t errlen);

/* ---- timings (host/runner/timings.c) ---- */
/* <cache root>/KIND/<hash of the project directory>.json: one file per
 * project (the directory of its provium.toml). */
char *project_state_path(const pv_config *cfg, const char *kind);
/* --timings FILE, else <cache root>/timings/<project hash>.json. */
char *timings_path(const pv_config *cfg, const char *given);
/* The name a file has in the timings file and in the split: its path
 * relative to the project directory (the one holding provium.toml) when
 * below it, so every checkout location agrees. Caller frees. */
char *timings_key(const pv_config *cfg, const char *abs_path);
/* Recorded duration in ms of key, or -1. The table is loaded once per
 * process from path (missing file: empty). -1 with err on a broken file. */
int timings_load(const char *path, char *err, size_t errlen);
int64_t timings_ms(const char *key);
/* Merges measured durations (seconds) into the file under a lock: into
 * "pending" for a sharded run, else into "files" (folding "pending" in). */
int timings_record(const char *path, char *const *keys, const double *seconds, size_t n, bool pending, char *err,
                   size_t errlen);
/* provium timings merge FILE...; argv starts after "timings". */
int timings_cli(int argc, char **argv);

/* What the split did to a file that stayed in the shard, for `list --shard`:
 * its recorded duration in ms, or -1 when it was split by path. */
typedef struct {
    char *timings; /* the file the split read */
    size_t timed, untimed;
    int64_t timed_ms; /* sum over the shard's timed files */
} shard_summary;
const shard_summary *shard_last(void);
int64_t shard_file_ms(const char *abs_path);
/* Applies --shard to the discovered files (keep[i] set for the shard's). */
int shard_select(const pv_config *cfg, const char *timings_file, char *const *paths, size_t n, int k, int nshards,
                 bool *keep, char *err, size_t errlen);

/* ---- provium junit merge FILE... (host/runner/junit_merge.c) ---- */
int junit_cli(int argc, char **argv);

/* ---- the HTML report (host/runner/report.c) ---- */
/* Writes the report of the run whose events are in events_path. */
int report_html(const char *events_path, const char *html_path, char *err, size_t errlen);
/* The usage of `provium timings`, `provium junit` and `provium report`. */
extern const char timings_usage[];
extern const char junit_usage[];
extern const char report_usage[];
/* provium report EVENTS.jsonl -o FILE.html; argv starts after "report". */
int report_cli(int argc, char **argv);

/* ---- provium cache export|import (host/fixtures/cache_archive.c) ---- */
int cache_cli(const pv_config *cfg, int argc, char **argv);
#endif
