/* Running test files: discovery, one child process per file, reporting. */
#ifndef PROVIUM_RUNNER_H
#define PROVIUM_RUNNER_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../config/config.h"

typedef struct {
    int jobs;            /* concurrent files; 0 = automatic */
    int64_t timeout_ms;  /* per file; 0 = none */
    bool verbose, quiet, json;
} run_opts;

typedef struct {
    char **paths;
    size_t n;
} file_list;

/* Expands paths (files and directories) into sorted *.test.lua files. */
int discover_files(char *const *paths, size_t npaths, const char *suffix, file_list *out, char *err, size_t errlen);
void file_list_free(file_list *l);

/* Runs one file in the current process, writing its JSON report to fd. */
int run_file_child(const pv_config *cfg, const char *scratch_root, const char *path, int report_fd);

/* Runs the files; returns the process exit code (0, 1, or 2). */
int runner_run(const pv_config *cfg, const file_list *files, const run_opts *opts);
#endif
