/* The shard split: longest-first greedy over recorded durations, round
 * robin by name for files without one. Pure: unit-tested and benchmarked
 * on its own (tests/unit/test_shard.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ci.h"

typedef struct {
    const char *key;
    int64_t ms;
    size_t index;
} item;

static int longest_first(const void *a, const void *b)
{
    const item *x = a, *y = b;
    if (x->ms != y->ms)
        return x->ms > y->ms ? -1 : 1;
    return strcmp(x->key, y->key);
}

static int by_key(const void *a, const void *b) { return strcmp(((const item *)a)->key, ((const item *)b)->key); }

/* Sorts the chosen files and deals them: greedily when loads is given,
 * round-robin otherwise. */
static void deal(const char *const *keys, const int64_t *ms, size_t n, bool timed, int nshards, int64_t *loads,
                 int *shard_of)
{
    item *it = calloc(n ? n : 1, sizeof(item));
    if (!it)
        abort();
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (!ms || (ms[i] >= 0) == timed)
            it[m++] = (item){keys[i], ms ? ms[i] : -1, i};
    qsort(it, m, sizeof(item), timed ? longest_first : by_key);
    for (size_t r = 0; r < m; r++) {
        int s = (int)(r % (size_t)nshards);
        if (timed) {
            s = 0;
            for (int j = 1; j < nshards; j++)
                if (loads[j] < loads[s])
                    s = j;
            loads[s] += it[r].ms;
        }
        shard_of[it[r].index] = s;
    }
    free(it);
}

void shard_plan_by_path(const char *const *keys, size_t n, int nshards, int *shard_of)
{
    deal(keys, NULL, n, false, nshards, NULL, shard_of);
}

void shard_plan(const char *const *keys, const int64_t *ms, size_t n, int nshards, int *shard_of)
{
    int64_t *loads = calloc((size_t)nshards, sizeof(int64_t));
    if (!loads)
        abort();
    deal(keys, ms, n, true, nshards, loads, shard_of);
    deal(keys, ms, n, false, nshards, NULL, shard_of);
    free(loads);
}

static int parse_pair(const char *k, const char *n, int base, int *ko, int *no)
{
    char *e1, *e2;
    long kv = strtol(k, &e1, 10), nv = strtol(n, &e2, 10);
    if (!*k || !*n || *e1 || *e2)
        return -1;
    kv += 1 - base;
    if (nv < 1 || kv < 1 || kv > nv || nv > 100000)
        return -1;
    *ko = (int)kv;
    *no = (int)nv;
    return 0;
}

int shard_parse(const char *s, int *k, int *n)
{
    int used = 0;
    return sscanf(s, "%d/%d%n", k, n, &used) == 2 && !s[used] && *n >= 1 && *k >= 1 && *k <= *n ? 0 : -1;
}

int shard_from_env(int *k, int *n, char *err, size_t errlen)
{
    static const struct {
        const char *index, *total, *ci;
        int base;
    } vars[] = {
        {"CI_NODE_INDEX", "CI_NODE_TOTAL", "GitLab CI", 1},
        {"BUILDKITE_PARALLEL_JOB", "BUILDKITE_PARALLEL_JOB_COUNT", "Buildkite", 0},
    };
    const char *own = getenv("PROVIUM_SHARD");
    if (own && *own) {
        if (shard_parse(own, k, n) != 0) {
            snprintf(err, errlen, "--shard auto: PROVIUM_SHARD must be K/N with 1 <= K <= N, not '%s'", own);
            return -1;
        }
        return 0;
    }
    for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++) {
        const char *iv = getenv(vars[i].index), *tv = getenv(vars[i].total);
        if (!iv && !tv)
            continue;
        /* GitLab sets CI_NODE_TOTAL=1 (and no index) for a job without parallel: */
        if (!iv && tv && strcmp(tv, "1") == 0) {
            *k = *n = 1;
            return 0;
        }
        if (!iv || !tv || parse_pair(iv, tv, vars[i].base, k, n) != 0) {
            snprintf(err, errlen, "--shard auto: %s variables %s='%s' %s='%s' do not make a shard", vars[i].ci,
                     vars[i].index, iv ? iv : "(unset)", vars[i].total, tv ? tv : "(unset)");
            return -1;
        }
        return 0;
    }
    snprintf(err, errlen,
             "--shard auto: no CI shard variables are set (looked for PROVIUM_SHARD=K/N, GitLab's "
             "CI_NODE_INDEX/CI_NODE_TOTAL, Buildkite's BUILDKITE_PARALLEL_JOB/BUILDKITE_PARALLEL_JOB_COUNT; "
             "GitHub Actions has none: set PROVIUM_SHARD from the matrix)");
    return -1;
}
