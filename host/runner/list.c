/* provium list: the files and their tests (or fixtures) without running
 * anything. Tests come from loading each file in a child where VMs are
 * inert proxies, so top-level code registers its tests but boots nothing. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../util/util.h"
#include "ci.h"
#include "run.h"

int runner_list(const pv_config *cfg, const file_list *files, const run_opts *o, bool json)
{
    int rc = 0;
    const shard_summary *sh = o && o->shard_n ? shard_last() : NULL;
    if (sh && !json)
        printf("shard %d/%d: %zu files balanced by their recorded durations (%.1fs in all), %zu without a timing "
               "split by path; timings: %s\n",
               o->shard_k, o->shard_n, sh->timed, sh->timed_ms / 1000.0, sh->untimed, sh->timings);
    for (size_t i = 0; i < files->n; i++) {
        const char *s = shown_path(files->paths[i]);
        int64_t ms = sh ? shard_file_ms(files->paths[i]) : -1;
        if (!o) { /* fixtures: just the files */
            if (json) {
                json_t *j = json_pack("{s:s}", "path", s);
                char *t = json_dumps(j, JSON_COMPACT);
                printf("%s\n", t);
                free(t);
                json_decref(j);
            } else {
                printf("%s\n", s);
            }
            continue;
        }
        bool path_hit = o->filter && strstr(s, o->filter);
        test_select sel = o->sel;
        if (path_hit)
            sel.filter = NULL;
        char *text = NULL;
        json_t *r = NULL;
        if (list_file(cfg, files->paths[i], s, &sel, &text) == 0) {
            json_error_t je;
            r = json_loads(text, 0, &je);
        }
        free(text);
        if (!json_is_object(r)) {
            json_decref(r);
            r = json_pack("{s:s}", "chunk_error", "the file could not be listed (its loader crashed or hung)");
        }
        json_t *tests = json_object_get(r, "tests");
        if (!json_is_array(tests)) {
            tests = json_array();
            json_object_set_new(r, "tests", tests);
        }
        /* with a name filter, a file none of whose tests match is left out */
        size_t k;
        json_t *tc;
        bool any = false;
        json_array_foreach(tests, k, tc)
        {
            any = any || json_is_true(json_object_get(tc, "selected"));
        }
        const char *chunk_error = json_string_value(json_object_get(r, "chunk_error"));
        if (o->filter && !path_hit && !any && !chunk_error) {
            json_decref(r);
            continue;
        }
        if (chunk_error)
            rc = 1;
        json_object_set_new(r, "path", json_string(s));
        if (sh) /* seconds the split counted, null: split by path */
            json_object_set_new(r, "shard_duration", ms >= 0 ? json_real(ms / 1000.0) : json_null());
        if (json) {
            char *t = json_dumps(r, JSON_COMPACT);
            printf("%s\n", t);
            free(t);
        } else {
            if (!sh)
                printf("%s\n", s);
            else if (ms >= 0)
                printf("%s  (recorded %.2fs)\n", s, ms / 1000.0);
            else
                printf("%s  (no timing: split by path)\n", s);
            json_array_foreach(tests, k, tc)
            {
                const char *reason = json_string_value(json_object_get(tc, "reason"));
                printf("    %s%s%s%s\n", json_string_value(json_object_get(tc, "name")), reason ? "  (skip: " : "",
                       reason ? reason : "", reason ? ")" : "");
            }
            if (chunk_error) {
                const char *nl = strchr(chunk_error, '\n');
                printf("    ! cannot list every test: %.*s\n", nl ? (int)(nl - chunk_error) : (int)strlen(chunk_error),
                       chunk_error);
            }
        }
        json_decref(r);
    }
    fflush(stdout);
    return rc;
}
