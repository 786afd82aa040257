#ifndef PROVIUM_TOML_H
#define PROVIUM_TOML_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
typedef enum { TOML_TABLE, TOML_ARRAY, TOML_STRING, TOML_INT, TOML_FLOAT, TOML_BOOL, TOML_DATETIME } toml_type;
typedef struct toml_value toml_value;
/* Parse text (len bytes, need not be NUL-terminated). filename is used only in
 * error messages. On failure returns NULL and writes "file:line:col: message"
 * into err (always NUL-terminated when errlen>0). The returned root is a TABLE. */
toml_value *toml_parse(const char *text, size_t len, const char *filename, char *err, size_t errlen);
/* Reads and parses a file; I/O errors are reported as "file: strerror". */
toml_value *toml_parse_file(const char *path, char *err, size_t errlen);
void toml_free(toml_value *v);
toml_type toml_type_of(const toml_value *v);
const char *toml_type_name(toml_type t);          /* "table", "array", "string", ... */
int toml_line(const toml_value *v);                /* 1-based line where the value started */
int toml_col(const toml_value *v);                 /* 1-based column */
/* tables: keys kept in insertion order */
size_t toml_table_size(const toml_value *t);
const char *toml_table_key(const toml_value *t, size_t i);
const toml_value *toml_table_value(const toml_value *t, size_t i);
const toml_value *toml_get(const toml_value *t, const char *key);   /* NULL if absent or t not a table */
/* arrays */
size_t toml_array_len(const toml_value *a);
const toml_value *toml_array_at(const toml_value *a, size_t i);
/* scalars; string values are NUL-terminated (embedded NULs via \u0000 are rejected) */
const char *toml_string(const toml_value *v);     /* STRING or DATETIME, else NULL */
int64_t toml_int(const toml_value *v);
double toml_float(const toml_value *v);            /* FLOAT, or INT converted */
bool toml_bool(const toml_value *v);
#endif
