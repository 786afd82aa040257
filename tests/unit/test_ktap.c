/* The KTAP parser (host/health/ktap.c) on real outputs: tests/unit/ktap-corpus/
 * holds KUnit logs from the kernel's own kunit_tool test data (linux 6.1,
 * tools/testing/kunit/test_data) and kselftest output captured in the
 * default guest (kselftest-*.ktap), plus hand-written edge cases below. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../host/health/ktap.h"
#include "check.h"

#define CORPUS "tests/unit/ktap-corpus/"

static char *slurp(const char *name, size_t *len)
{
    char path[512];
    snprintf(path, sizeof(path), CORPUS "%s", name);
    FILE *f = fopen(path, "rb");
    if (!f) {
        CHECKF(0, "cannot open %s (run from the repository root)", path);
        *len = 0;
        return calloc(1, 1);
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    *len = fread(s, 1, (size_t)n, f);
    s[*len] = 0;
    fclose(f);
    return s;
}

typedef struct {
    int pass, fail, skip, todo;
} tally;

static tally count(const ktap_cases *c)
{
    tally t = {0};
    for (size_t i = 0; i < c->n; i++) {
        switch (c->v[i].status) {
        case KTAP_PASS:
            t.pass++;
            break;
        case KTAP_FAIL:
            t.fail++;
            break;
        case KTAP_SKIP:
            t.skip++;
            break;
        case KTAP_TODO:
            t.todo++;
            break;
        }
    }
    return t;
}

static const ktap_case *find(const ktap_cases *c, const char *name)
{
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->v[i].name, name) == 0)
            return &c->v[i];
    return NULL;
}

static void parse_text(const char *text, size_t len, const char *suite, ktap_node **root, ktap_cases *cases)
{
    *root = ktap_parse(text, len);
    memset(cases, 0, sizeof(*cases));
    ktap_flatten(*root, suite, cases);
}

static void dump(const ktap_cases *c)
{
    for (size_t i = 0; i < c->n; i++)
        printf("    %-8s %s%s%s\n", ktap_status_name(c->v[i].status), c->v[i].name, c->v[i].message ? " :: " : "",
               c->v[i].message ? c->v[i].message : "");
}

/* A corpus file: the tally and, optionally, one case that must be there with its status. */
static void corpus(const char *file, const char *suite, tally want, const char *name, ktap_status st)
{
    set_case("corpus %s", file);
    size_t len;
    char *text = slurp(file, &len);
    ktap_node *root;
    ktap_cases c;
    parse_text(text, len, suite, &root, &c);
    CHECK(ktap_found(root));
    tally t = count(&c);
    bool ok = CHECKF(t.pass == want.pass && t.fail == want.fail && t.skip == want.skip && t.todo == want.todo,
                     "got %d/%d/%d/%d (pass/fail/skip/todo), want %d/%d/%d/%d", t.pass, t.fail, t.skip, t.todo,
                     want.pass, want.fail, want.skip, want.todo);
    if (name) {
        const ktap_case *k = find(&c, name);
        ok &= CHECKF(k != NULL, "no case named '%s'", name);
        if (k)
            ok &= CHECKF(k->status == st, "'%s' is %s, want %s", name, ktap_status_name(k->status),
                         ktap_status_name(st));
    }
    if (!ok)
        dump(&c);
    ktap_cases_free(&c);
    ktap_free(root);
    free(text);
}

TEST(corpus)
{
    corpus("kunit-test_is_test_passed-all_passed.log", NULL, (tally){10, 0, 0, 0},
           "sysctl_test / sysctl_test_dointvec_single_greater_int_max", KTAP_PASS);
    corpus("kunit-test_is_test_passed-all_passed_nested.log", NULL, (tally){7, 0, 0, 0},
           "sysctl_test / example / example_mock_test", KTAP_PASS);
    corpus("kunit-test_is_test_passed-failure.log", NULL, (tally){9, 1, 0, 0}, "example / example_simple_test",
           KTAP_FAIL);
    corpus("kunit-test_is_test_passed-kselftest.log", NULL, (tally){4, 0, 0, 0},
           "selftests: membarrier: membarrier_test_multi_thread / sys_membarrier available", KTAP_PASS);
    corpus("kunit-test_is_test_passed-missing_plan.log", NULL, (tally){10, 0, 0, 0}, NULL, KTAP_PASS);
    corpus("kunit-test_parse_ktap_output.log", NULL, (tally){3, 0, 0, 0}, "suite / case_2", KTAP_PASS);
    corpus("kunit-test_parse_subtest_header.log", NULL, (tally){1, 0, 0, 0}, "suite / test", KTAP_PASS);
    corpus("kunit-test_skip_tests.log", NULL, (tally){4, 0, 1, 0}, "example / example_skip_test", KTAP_SKIP);
    corpus("kunit-test_skip_all_tests.log", NULL, (tally){0, 0, 5, 0}, NULL, KTAP_SKIP);
    corpus("kunit-test_strip_hyphen.log", NULL, (tally){2, 0, 0, 0}, "example / example_simple_test", KTAP_PASS);
    corpus("kunit-test_pound_sign.log", NULL, (tally){10, 0, 0, 0}, NULL, KTAP_PASS);
    /* timestamps on every line, other kernel output in between */
    corpus("kunit-test_config_printk_time.log", NULL, (tally){10, 0, 0, 0},
           "kunit-try-catch-test / kunit_test_try_catch_successful_try_no_catch", KTAP_PASS);
    corpus("kunit-test_interrupted_tap_output.log", NULL, (tally){10, 0, 0, 0}, NULL, KTAP_PASS);
    /* the kernel panicked in the third suite: 1 of its 3 cases reported */
    /* the default guest: debugfs results of the kernel's example suite and
     * of examples/kmod's KUnit suite, and the console (dmesg) of both loads
     * after a boot-time "1..0" */
    corpus("kunit-debugfs-example.ktap", NULL, (tally){2, 0, 2, 0}, "example / example_all_expect_macros_test",
           KTAP_PASS);
    corpus("kunit-debugfs-provium_demo_xform.ktap", NULL, (tally){6, 0, 0, 0},
           "provium_demo_xform / reverse_one_byte", KTAP_PASS);
    corpus("kunit-kmsg-load.log", NULL, (tally){8, 0, 2, 0}, "provium_demo_xform / upper_of_nothing", KTAP_PASS);
    corpus("kunit-test_kernel_panic_interrupt.log", NULL, (tally){8, 1, 0, 0}, "string-stream-test / (plan)",
           KTAP_FAIL);
}

/* the diagnostics before a failed case reach it */
TEST(failure_diag)
{
    set_case("failure diagnostics");
    size_t len;
    char *text = slurp("kunit-test_is_test_passed-failure.log", &len);
    ktap_node *root;
    ktap_cases c;
    parse_text(text, len, NULL, &root, &c);
    const ktap_case *k = find(&c, "example / example_simple_test");
    CHECK(k && k->diag && strstr(k->diag, "EXPECTATION FAILED at lib/kunit/example-test.c:30"));
    CHECK(k && k->diag && strstr(k->diag, "Expected 1 + 1 == 3, but"));
    CHECK(k && k->message && strstr(k->message, "not ok 1 example_simple_test"));
    /* the tree: two suites, the second not ok */
    CHECK(root->plan == 2 && root->nkids == 2 && root->version == 14);
    CHECK(root->nkids == 2 && !root->kids[1].ok && root->kids[1].has_result && root->kids[1].nkids == 2);
    ktap_cases_free(&c);
    ktap_free(root);
    free(text);
}

static void inline_case(const char *what, const char *text, const char *suite, tally want)
{
    set_case("%s", what);
    ktap_node *root;
    ktap_cases c;
    parse_text(text, strlen(text), suite, &root, &c);
    tally t = count(&c);
    if (!CHECKF(t.pass == want.pass && t.fail == want.fail && t.skip == want.skip && t.todo == want.todo,
                "got %d/%d/%d/%d (pass/fail/skip/todo), want %d/%d/%d/%d", t.pass, t.fail, t.skip, t.todo, want.pass,
                want.fail, want.skip, want.todo))
        dump(&c);
    ktap_cases_free(&c);
    ktap_free(root);
}

TEST(directives)
{
    const char *t = "KTAP version 1\n"
                    "1..6\n"
                    "ok 1 plain\n"
                    "ok 2 skipped_ok # SKIP no device\n"
                    "not ok 3 skipped_notok # SKIP not here\n"
                    "not ok 4 todo_fails # TODO later\n"
                    "ok 5 todo_passes # TODO later\n"
                    "ok 6 expected # XFAIL known bug\n";
    ktap_node *root;
    ktap_cases c;
    inline_case("directives", t, "s", (tally){3, 0, 2, 1});
    /* kselftest: a skipped case named only by its reason */
    set_case("skip named by its reason");
    const char *named = "1..1\nok 1 # SKIP CLOCK_TAI   \n";
    parse_text(named, strlen(named), NULL, &root, &c);
    CHECK(c.n == 1 && strcmp(c.v[0].name, "CLOCK_TAI") == 0 && c.v[0].status == KTAP_SKIP);
    ktap_cases_free(&c);
    ktap_free(root);
    set_case("directives");
    parse_text(t, strlen(t), "s", &root, &c);
    const ktap_case *k = find(&c, "s / skipped_ok");
    CHECK(k && k->message && strcmp(k->message, "no device") == 0);
    k = find(&c, "s / todo_fails");
    CHECK(k && k->status == KTAP_TODO && k->message && strcmp(k->message, "TODO later") == 0);
    CHECK(root->kids[1].directive == KTAP_DIR_SKIP && strcmp(root->kids[1].directive_text, "no device") == 0);
    CHECK(root->kids[5].directive == KTAP_DIR_XFAIL);
    ktap_cases_free(&c);
    ktap_free(root);
    /* run_kselftest.sh's verdict comments */
    inline_case("timeout and exit status", "TAP version 13\n1..2\nnot ok 1 selftests: a: b # TIMEOUT 45 seconds\n"
                                           "not ok 2 selftests: a: c # exit=1\n",
                NULL, (tally){0, 2, 0, 0});
    /* a description with '#' inside a word, and an empty description */
    t = "1..2\nok 1 test#3 works\nok 2\n";
    parse_text(t, strlen(t), NULL, &root, &c);
    set_case("description with #");
    CHECK(c.n == 2 && strcmp(c.v[0].name, "test#3 works") == 0 && strcmp(c.v[1].name, "test 2") == 0);
    ktap_cases_free(&c);
    ktap_free(root);
}

TEST(plans_and_bail)
{
    inline_case("short of the plan", "KTAP version 1\n1..3\nok 1 a\nok 2 b\n", NULL, (tally){2, 1, 0, 0});
    inline_case("more than planned", "KTAP version 1\n1..1\nok 1 a\nok 2 b\n", NULL, (tally){2, 1, 0, 0});
    inline_case("skip all", "TAP version 13\n1..0 # SKIP no membarrier here\n", "membarrier", (tally){0, 0, 1, 0});
    inline_case("bail out", "TAP version 13\n1..4\nok 1 a\nBail out! cannot open /dev/x\n", NULL,
                (tally){1, 2, 0, 0});
    ktap_node *root;
    ktap_cases c;
    const char *t = "TAP version 13\n1..4\nok 1 a\nBail out! cannot open /dev/x\n";
    parse_text(t, strlen(t), "bin", &root, &c);
    set_case("bail out reason");
    const ktap_case *k = find(&c, "bin / (bail out)");
    CHECK(k && k->status == KTAP_FAIL && strcmp(k->message, "Bail out! cannot open /dev/x") == 0);
    CHECK(find(&c, "bin / (plan)") != NULL);
    CHECK(root->bailed);
    ktap_cases_free(&c);
    ktap_free(root);
    inline_case("no plan at all", "ok 1 a\nnot ok 2 b\n", NULL, (tally){1, 1, 0, 0});
    /* a nested suite skipped as a whole */
    inline_case("nested skip all", "KTAP version 1\n1..1\n    KTAP version 1\n    # Subtest: s\n    1..0 # SKIP off\n"
                                   "ok 1 s # SKIP off\n",
                NULL, (tally){0, 0, 1, 0});
}

TEST(nesting)
{
    /* KTAP v1 with spaces, a parameterised case three levels deep */
    const char *t = "KTAP version 1\n"
                    "1..1\n"
                    "    KTAP version 1\n"
                    "    # Subtest: suite\n"
                    "    1..2\n"
                    "        KTAP version 1\n"
                    "        # Subtest: param_case\n"
                    "        ok 1 param-0\n"
                    "        not ok 2 param-1\n"
                    "    not ok 1 param_case\n"
                    "    ok 2 simple\n"
                    "# suite: pass:1 fail:1 skip:0 total:2\n"
                    "not ok 1 suite\n";
    ktap_node *root;
    ktap_cases c;
    parse_text(t, strlen(t), NULL, &root, &c);
    set_case("three levels");
    CHECK_EQ_INT(c.n, 3);
    const ktap_case *k = find(&c, "suite / param_case / param-1");
    CHECK(k && k->status == KTAP_FAIL);
    CHECK(find(&c, "suite / param_case / param-0") && find(&c, "suite / simple"));
    CHECK(root->nkids == 1 && root->kids[0].nkids == 2 && root->kids[0].kids[0].nkids == 2);
    CHECK(root->kids[0].kids[0].plan == -1 && root->kids[0].plan == 2);
    ktap_cases_free(&c);
    ktap_free(root);

    /* the suite says not ok but no case failed: the suite is a failed case itself */
    inline_case("suite not ok, cases ok",
                "KTAP version 1\n1..1\n    KTAP version 1\n    # Subtest: s\n    1..1\n    ok 1 a\n"
                "# s: initialization failed\nnot ok 1 s\n",
                NULL, (tally){1, 1, 0, 0});
    /* output cut inside a suite: no result line */
    inline_case("cut output", "KTAP version 1\n1..1\n    KTAP version 1\n    # Subtest: s\n    1..2\n    ok 1 a\n",
                NULL, (tally){1, 1, 0, 0});
    /* a debugfs results file: the suite's lines, then its result, no header */
    inline_case("debugfs results", "    KTAP version 1\n    # Subtest: s\n    1..2\n    ok 1 a\n    ok 2 b\nok 1 s\n",
                NULL, (tally){2, 0, 0, 0});
    /* run_kselftest.sh: each binary's TAP behind "# ", the binary's own
     * diagnostics behind "# # "; a non-TAP binary is just text */
    t = "TAP version 13\n"
        "1..3\n"
        "# selftests: timers: nanosleep\n"
        "# TAP version 13\n"
        "# 1..2\n"
        "# # Testing CLOCK_REALTIME\n"
        "# ok 1 CLOCK_REALTIME\n"
        "# not ok 2 CLOCK_TAI\n"
        "# # Totals: pass:1 fail:1 xfail:0 xpass:0 skip:0 error:0\n"
        "not ok 1 selftests: timers: nanosleep # exit=1\n"
        "# selftests: size: get_size\n"
        "# plain output\n"
        "ok 2 selftests: size: get_size\n"
        "# selftests: kcmp: kcmp_test\n"
        "# TAP version 13\n"
        "# 1..1\n"
        "# ok 1 kcmp\n"
        "ok 3 selftests: kcmp: kcmp_test\n";
    parse_text(t, strlen(t), NULL, &root, &c);
    set_case("run_kselftest.sh collection");
    CHECK_EQ_INT(c.n, 4);
    k = find(&c, "selftests: timers: nanosleep / CLOCK_TAI");
    CHECK(k && k->status == KTAP_FAIL);
    k = find(&c, "selftests: size: get_size");
    CHECK(k && k->status == KTAP_PASS);
    CHECK(find(&c, "selftests: kcmp: kcmp_test / kcmp") != NULL);
    CHECK(root->nkids == 3 && root->kids[0].trailer && strstr(root->kids[0].trailer, "Totals: pass:1 fail:1"));
    k = find(&c, "selftests: timers: nanosleep / CLOCK_REALTIME");
    CHECK(k && k->diag && strcmp(k->diag, "Testing CLOCK_REALTIME") == 0);
    ktap_cases_free(&c);
    ktap_free(root);
    /* tabs (TAP 14 KUnit), CRLF line ends */
    inline_case("tabs and CRLF", "TAP version 14\r\n1..1\r\n\t# Subtest: s\r\n\t1..1\r\n\tok 1 - a\r\nok 1 - s\r\n", NULL,
                (tally){1, 0, 0, 0});
}

TEST(no_ktap)
{
    set_case("no KTAP");
    ktap_node *root = ktap_parse("hello\nworld\n", 12);
    CHECK(!ktap_found(root));
    ktap_free(root);
    root = ktap_parse(NULL, 0);
    CHECK(!ktap_found(root) && root->nkids == 0);
    ktap_free(root);
    /* NUL bytes inside a name do not cut it */
    static const char nul[] = "1..1\nok 1 a\0b\n";
    root = ktap_parse(nul, sizeof(nul) - 1);
    CHECK(root->nkids == 1 && strcmp(root->kids[0].name, "a?b") == 0);
    ktap_free(root);
    /* deeper than the parser follows: still no crash, and cases come out */
    char deep[4096] = "KTAP version 1\n1..1\n";
    for (int d = 1; d <= 20; d++) {
        char line[128];
        snprintf(line, sizeof(line), "%*sKTAP version 1\n", d * 2, "");
        strcat(deep, line);
    }
    strcat(deep, "ok 1 x\n");
    root = ktap_parse(deep, strlen(deep));
    ktap_cases c = {0};
    ktap_flatten(root, NULL, &c);
    CHECK(c.n >= 1);
    ktap_cases_free(&c);
    ktap_free(root);
}

/* kselftest binaries' output captured in the default guest (see the corpus README) */
TEST(kselftest_corpus)
{
    static const struct {
        const char *file, *name;
        tally want;
    } files[] = {
#include "ktap-corpus/kselftest.inc"
    };
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
        corpus(files[i].file, "bin", files[i].want, files[i].name, KTAP_PASS);
}

CHECK_MAIN()
