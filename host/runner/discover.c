/* Test discovery: explicit files run as given; directories are searched
 * recursively for the suffix, skipping hidden directories. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../util/util.h"
#include "runner.h"

static void push(file_list *l, char *path)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->paths[i], path) == 0) {
            free(path);
            return;
        }
    l->paths = xrealloc(l->paths, (l->n + 1) * sizeof(char *));
    l->paths[l->n++] = path;
}

static bool has_suffix(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a > b && strcmp(s + a - b, suffix) == 0;
}

static void walk(const char *dir, const char *suffix, file_list *out)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char *p = xasprintf("%s/%s", dir, e->d_name);
        struct stat st;
        if (stat(p, &st) != 0) {
            free(p);
            continue;
        }
        if (S_ISDIR(st.st_mode)) {
            walk(p, suffix, out);
            free(p);
        } else if (S_ISREG(st.st_mode) && has_suffix(e->d_name, suffix)) {
            push(out, p);
        } else {
            free(p);
        }
    }
    closedir(d);
}

static int by_path(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int discover_files(char *const *paths, size_t npaths, const char *suffix, file_list *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < npaths; i++) {
        struct stat st;
        if (stat(paths[i], &st) != 0) {
            snprintf(err, errlen, "%s: %s", paths[i], strerror(errno));
            file_list_free(out);
            return -1;
        }
        char *abs = path_absolute(paths[i]);
        if (S_ISDIR(st.st_mode)) {
            file_list found = {0};
            walk(abs, suffix, &found);
            if (found.n)
                qsort(found.paths, found.n, sizeof(char *), by_path);
            for (size_t k = 0; k < found.n; k++)
                push(out, found.paths[k]);
            free(found.paths);
            free(abs);
        } else {
            push(out, abs);
        }
    }
    return 0;
}

void file_list_free(file_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->paths[i]);
    free(l->paths);
    memset(l, 0, sizeof(*l));
}
