/* JUnit XML and TAP 14 writers (host/runner/output.c). */
#ifndef PROVIUM_OUTPUT_H
#define PROVIUM_OUTPUT_H
#include <jansson.h>
#include <stddef.h>
#include <stdio.h>

/* results[i] is a file's --json object (NULL: the file did not run);
 * file_logs[i] its captured output, for crashed/timed-out files. */
int junit_write(const char *path, json_t *const *results, const char *const *file_logs, size_t n, double total_s);

void tap_begin(FILE *out);
/* Prints the test points of one file, numbered from n + 1; returns the new n. */
int tap_file(FILE *out, json_t *result, int n);
void tap_end(FILE *out, int n);
#endif
