/*
 * check.h - the small check harness shared by the C unit tests, in the manner
 * of the kernel's kselftest_harness.h.
 *
 * A test file defines its cases with TEST(name) { ... }; each case registers
 * itself before main() runs (a constructor), so a case exists exactly where it
 * is written and nothing else needs to list it. Cases run in the order they
 * appear in the file. Inside a case, CHECK(cond) and CHECKF(cond, fmt, ...)
 * test a condition; CHECK_EQ_INT, CHECK_EQ_UINT and CHECK_EQ_STR compare two
 * values and print both when they differ. set_case(fmt, ...) names the part
 * of the case that follows, so a failure inside a loop says which item failed.
 *
 * A failed check prints "FAIL [case: part] file:line: message" and the case
 * goes on (checks do not stop the case). main() is usually CHECK_MAIN(); a
 * file that needs set-up around all its cases (a child process, a temporary
 * directory) calls check_main() itself with the two hooks.
 *
 * The binary's command line:
 *     test_x             run every case
 *     test_x NAME...     run only the cases named (exact names)
 *     test_x -l          list the case names, one a line
 *     test_x -v          print "ok NAME" / "not ok NAME" for every case
 * It ends with "test_x: N passed, N failed" and exits 1 if a check failed,
 * 2 on a bad command line.
 */
#ifndef PROVIUM_TEST_CHECK_H
#define PROVIUM_TEST_CHECK_H
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK_MAX_CASES 128

typedef struct {
    const char *name;
    void (*fn)(void);
    int line; /* where TEST() stands: the run order */
} check_case;

static check_case check_cases[CHECK_MAX_CASES];
static int check_ncases;
static int n_pass, n_fail;
static const char *check_case_name = "-"; /* the registered case now running */
static char current[200];                /* the part named by set_case, or "" */

/* Called by the constructor TEST() writes; a full table is a bug in the test
 * file, so it stops the binary before any case runs. */
__attribute__((unused)) static void check_register(const char *name, void (*fn)(void), int line)
{
    if (check_ncases == CHECK_MAX_CASES) {
        fprintf(stderr, "check.h: more than %d cases; raise CHECK_MAX_CASES\n", CHECK_MAX_CASES);
        exit(2);
    }
    check_cases[check_ncases++] = (check_case){name, fn, line};
}

#define TEST(name)                                                                                                     \
    static void test_##name(void);                                                                                     \
    __attribute__((constructor)) static void check_register_##name(void)                                               \
    {                                                                                                                  \
        check_register(#name, test_##name, __LINE__);                                                                  \
    }                                                                                                                  \
    static void test_##name(void)

__attribute__((format(printf, 1, 2), unused)) static void set_case(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(current, sizeof(current), fmt, ap);
    va_end(ap);
}

__attribute__((unused)) static void check_pass(void) { n_pass++; }

/* Records a failure at file:line with a printf-style message. */
__attribute__((format(printf, 3, 4), unused)) static void check_fail(const char *file, int line, const char *fmt, ...)
{
    n_fail++;
    const char *base = strrchr(file, '/');
    printf("FAIL [%s%s%s] %s:%d: ", check_case_name, current[0] ? ": " : "", current, base ? base + 1 : file, line);
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
}

__attribute__((format(printf, 4, 5), unused)) static bool check_(bool ok, const char *file, int line, const char *fmt,
                                                                  ...)
{
    if (ok) {
        n_pass++;
        return true;
    }
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    check_fail(file, line, "%s", msg);
    return false;
}
#define CHECK(c) check_((c), __FILE__, __LINE__, "%s", #c)
#define CHECKF(c, ...) check_((c), __FILE__, __LINE__, __VA_ARGS__)

__attribute__((unused)) static bool check_eq_int_(intmax_t got, intmax_t want, const char *expr, const char *file,
                                                  int line)
{
    return check_(got == want, file, line, "%s: got %" PRIdMAX ", want %" PRIdMAX, expr, got, want);
}
__attribute__((unused)) static bool check_eq_uint_(uintmax_t got, uintmax_t want, const char *expr, const char *file,
                                                   int line)
{
    return check_(got == want, file, line, "%s: got %" PRIuMAX ", want %" PRIuMAX, expr, got, want);
}
/* NULL equals only NULL; a NULL is printed as (null), never dereferenced. */
__attribute__((unused)) static bool check_eq_str_(const char *got, const char *want, const char *expr,
                                                  const char *file, int line)
{
    bool same = got && want ? strcmp(got, want) == 0 : got == want;
    return check_(same, file, line, "%s: got %s%s%s, want %s%s%s", expr, got ? "\"" : "", got ? got : "(null)",
                  got ? "\"" : "", want ? "\"" : "", want ? want : "(null)", want ? "\"" : "");
}
#define CHECK_EQ_INT(got, want) check_eq_int_((intmax_t)(got), (intmax_t)(want), #got, __FILE__, __LINE__)
#define CHECK_EQ_UINT(got, want) check_eq_uint_((uintmax_t)(got), (uintmax_t)(want), #got, __FILE__, __LINE__)
#define CHECK_EQ_STR(got, want) check_eq_str_((got), (want), #got, __FILE__, __LINE__)

static int check_by_line(const void *a, const void *b)
{
    return ((const check_case *)a)->line - ((const check_case *)b)->line;
}

static const check_case *check_find(const char *name)
{
    for (int i = 0; i < check_ncases; i++)
        if (strcmp(check_cases[i].name, name) == 0)
            return &check_cases[i];
    return NULL;
}

static void check_run_one(const check_case *c, bool verbose)
{
    int failed_before = n_fail;
    check_case_name = c->name;
    current[0] = '\0';
    c->fn();
    if (verbose)
        printf("%s %s\n", n_fail == failed_before ? "ok" : "not ok", c->name);
    fflush(stdout);
}

/* Runs the cases argv selects (see the header comment). setup, when given,
 * runs once before the first case and may refuse (false: nothing runs, the
 * binary fails); teardown, when given, runs after the last case. */
__attribute__((unused)) static int check_main(int argc, char **argv, bool (*setup)(void), void (*teardown)(void))
{
    const char *prog = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
    bool list = false, verbose = false;
    int first_name = argc;
    qsort(check_cases, (size_t)check_ncases, sizeof(check_cases[0]), check_by_line);
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-l") == 0) {
            list = true;
        } else if (strcmp(argv[i], "-v") == 0) {
            verbose = true;
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "%s: unknown option %s (usage: %s [-l] [-v] [CASE...])\n", prog, argv[i], prog);
            return 2;
        } else if (!check_find(argv[i])) {
            fprintf(stderr, "%s: no case named \"%s\" (%s -l lists them)\n", prog, argv[i], prog);
            return 2;
        } else if (first_name == argc) {
            first_name = i;
        }
    }
    if (list) {
        for (int i = 0; i < check_ncases; i++)
            printf("%s\n", check_cases[i].name);
        return 0;
    }
    if (setup && !setup()) {
        printf("%s: set-up failed, no case ran\n", prog);
        return 1;
    }
    if (first_name == argc) {
        for (int i = 0; i < check_ncases; i++)
            check_run_one(&check_cases[i], verbose);
    } else {
        for (int i = first_name; i < argc; i++)
            if (argv[i][0] != '-')
                check_run_one(check_find(argv[i]), verbose);
    }
    check_case_name = "-";
    current[0] = '\0';
    if (teardown)
        teardown();
    printf("%s: %d passed, %d failed\n", prog, n_pass, n_fail);
    return n_fail ? 1 : 0;
}

#define CHECK_MAIN()                                                                                                   \
    int main(int argc, char **argv) { return check_main(argc, argv, NULL, NULL); }
#endif
