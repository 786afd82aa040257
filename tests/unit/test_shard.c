/* The shard split (host/runner/shard.c): complete, disjoint, deterministic,
 * and balanced. On a synthetic set with skewed durations (a few files take
 * most of the time, as kernel-build or fuzz files do in real suites) the
 * longest shard must be within 1.2x the mean with recorded durations; the
 * old path split is measured on the same set to show the imbalance it had. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ci.h"

static uint64_t rng = 0x9e3779b97f4a7c15ULL;
static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* max shard load / mean shard load */
static double imbalance(const int64_t *ms, const int *shard_of, size_t n, int nshards, int64_t *max_out)
{
    int64_t loads[64] = {0}, total = 0, max = 0;
    for (size_t i = 0; i < n; i++) {
        loads[shard_of[i]] += ms[i];
        total += ms[i];
    }
    for (int s = 0; s < nshards; s++)
        if (loads[s] > max)
            max = loads[s];
    if (max_out)
        *max_out = max;
    return (double)max / ((double)total / nshards);
}

static void skewed_set(size_t n, char **keys, int64_t *ms)
{
    for (size_t i = 0; i < n; i++) {
        char name[64];
        snprintf(name, sizeof(name), "tests/suite%02zu/file%03zu.test.lua", i % 7, i);
        keys[i] = strdup(name);
        /* most files take 1-5 s; one in ten 30-120 s; the 3rd and 4th
         * files in path order are the giants (10 min) that the path split
         * lands on neighbouring shards */
        ms[i] = 1000 + (int64_t)(next_rand() % 4000);
        if (next_rand() % 10 == 0)
            ms[i] = 30000 + (int64_t)(next_rand() % 90000);
    }
}

/* The skewed set every case below splits. */
enum { N = 240 };
static char *keys[N];
static int64_t ms[N];

static bool make_skewed_set(void)
{
    skewed_set(N, keys, ms);
    /* the giants, placed where round robin over sorted keys would stack them */
    ms[5] = 600000;
    ms[5 + 8] = 540000;
    ms[5 + 16] = 480000;
    return true;
}

static void free_skewed_set(void)
{
    for (size_t i = 0; i < N; i++)
        free(keys[i]);
}

TEST(skewed_set_balance)
{
    for (int nshards = 2; nshards <= 16; nshards *= 2) /* 16: a giant file exceeds the mean */ {
        set_case("skewed set, %d shards", nshards);
        int balanced[N], by_path[N];
        shard_plan((const char *const *)keys, ms, N, nshards, balanced);
        shard_plan_by_path((const char *const *)keys, N, nshards, by_path);
        int64_t bmax, pmax;
        double b = imbalance(ms, balanced, N, nshards, &bmax), p = imbalance(ms, by_path, N, nshards, &pmax);
        printf("# %2d shards: longest shard / mean = %.3f by duration (%.0f s), %.3f by path (%.0f s)\n", nshards,
               b, bmax / 1000.0, p, pmax / 1000.0);
        int64_t longest = 0, total = 0;
        for (size_t i = 0; i < N; i++) {
            longest = ms[i] > longest ? ms[i] : longest;
            total += ms[i];
        }
        if (longest * nshards <= total) /* no single file is longer than a fair shard */
            CHECKF(b <= 1.2, "balanced split: longest shard is %.3fx the mean", b);
        else /* one file alone exceeds the mean: the best possible is that file alone */
            CHECKF(bmax == longest, "longest shard %lld ms, the longest file %lld ms", (long long)bmax,
                   (long long)longest);
        CHECKF(p > b, "the path split (%.3f) should be worse than the balanced one (%.3f) on this set", p, b);
        /* every file in exactly one shard, within range */
        int ok = 1;
        for (size_t i = 0; i < N; i++)
            ok = ok && balanced[i] >= 0 && balanced[i] < nshards;
        CHECK(ok);
    }
}

/* the path split on a skewed set is what the balanced one fixes */
TEST(path_split_unbalanced)
{
    int by_path[N];
    shard_plan_by_path((const char *const *)keys, N, 8, by_path);
    CHECKF(imbalance(ms, by_path, N, 8, NULL) > 1.5, "the skewed set should unbalance the path split");
}

/* deterministic: the same input in another order gives the same split */
TEST(deterministic)
{
    int a[N], b[N];
    char *rkeys[N];
    int64_t rms[N];
    for (size_t i = 0; i < N; i++) {
        rkeys[i] = keys[N - 1 - i];
        rms[i] = ms[N - 1 - i];
    }
    shard_plan((const char *const *)keys, ms, N, 5, a);
    shard_plan((const char *const *)rkeys, rms, N, 5, b);
    int same = 1;
    for (size_t i = 0; i < N; i++)
        same = same && a[i] == b[N - 1 - i];
    CHECK(same);
}

/* equal durations: ties broken by name, not by input order */
TEST(ties_by_name)
{
    const char *k[4] = {"d", "b", "a", "c"};
    int64_t m[4] = {100, 100, 100, 100};
    int s[4];
    shard_plan(k, m, 4, 2, s);
    /* sorted a, b, c, d: a->0, b->1, c->0 (loads tie: lower shard), d->1 */
    CHECK(s[2] == 0 && s[1] == 1 && s[3] == 0 && s[0] == 1);
}

/* files without a timing are split by name, round robin */
TEST(untimed_round_robin)
{
    const char *k[5] = {"e", "a", "c", "b", "d"};
    int64_t m[5] = {-1, -1, 5000, -1, -1};
    int s[5];
    shard_plan(k, m, 5, 2, s);
    /* timed: c -> 0; untimed sorted a, b, d, e -> 0, 1, 0, 1 */
    CHECK_EQ_INT(s[2], 0);
    CHECK(s[1] == 0 && s[3] == 1 && s[4] == 0 && s[0] == 1);
    int p[5];
    shard_plan_by_path(k, 5, 2, p);
    /* a b c d e -> 0 1 0 1 0 */
    CHECK(p[1] == 0 && p[3] == 1 && p[2] == 0 && p[4] == 1 && p[0] == 0);
}

/* more shards than files */
TEST(more_shards_than_files)
{
    const char *k[2] = {"x", "y"};
    int64_t m[2] = {10, 20};
    int s[2];
    shard_plan(k, m, 2, 5, s);
    CHECK(s[1] == 0 && s[0] == 1);
}

int main(int argc, char **argv) { return check_main(argc, argv, make_skewed_set, free_skewed_set); }
