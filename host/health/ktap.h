/* KTAP v1 (and the TAP 13/14 that kselftest and older KUnit print): pure
 * text in, a tree of results and a flat list of cases out. No I/O, so it is
 * unit tested on real outputs and fuzzed (tests/fuzz/fuzz_ktap.c).
 *
 * Nesting is by prefix: a subtest is indented (spaces or tabs, as KTAP and
 * TAP 14 do) or, as run_kselftest.sh prints each binary's output, prefixed
 * with "# " and opened by a "TAP version" / "KTAP version" line. Kernel
 * timestamps ("[    1.234567] ") are stripped from every line. Lines that
 * are not KTAP (printk noise, a test's own output) are kept as diagnostics
 * of the next result at their level, or ignored when at no level. */
#ifndef PROVIUM_KTAP_H
#define PROVIUM_KTAP_H
#include <stdbool.h>
#include <stddef.h>

typedef enum {
    KTAP_DIR_NONE,
    KTAP_DIR_SKIP,
    KTAP_DIR_TODO,
    KTAP_DIR_XFAIL,   /* kselftest: an expected failure, counts as a pass */
    KTAP_DIR_TIMEOUT, /* run_kselftest.sh: the binary ran out of time */
    KTAP_DIR_OTHER,   /* any other "# text" after a result (e.g. "exit=1") */
} ktap_directive;

typedef struct ktap_node {
    char *name;           /* the result line's description, else the "# Subtest:" name; may be NULL */
    long number;          /* the result line's number, -1 when it had none */
    bool has_result;      /* a result line closed this test (always true for leaves) */
    bool ok;              /* "ok" rather than "not ok" */
    ktap_directive directive;
    char *directive_text; /* the reason after SKIP/TODO/...; for OTHER the whole comment; may be NULL */
    char *diag;           /* diagnostics and other lines of its level just before its result line */
    char *trailer;        /* for a subtest: diagnostics after its last result (e.g. "# Totals: ...") */
    int version;          /* 0: no version line at this level */
    long plan;            /* -1: no plan line; several top-level documents add up */
    char *plan_skip;      /* the reason of "1..0 # SKIP reason" */
    bool bailed;
    char *bail_reason;
    bool found;           /* root only: any KTAP line (version, plan, result, bail out) was seen */
    struct ktap_node *kids;
    size_t nkids, cap;
} ktap_node;

/* Parses text (len bytes, NULs allowed). Returns the root: a node without a
 * result whose kids are the top-level tests. Never NULL. */
ktap_node *ktap_parse(const char *text, size_t len);
void ktap_free(ktap_node *root);
/* Whether any KTAP/TAP line (version, plan, result, bail out) was seen. */
bool ktap_found(const ktap_node *root);

typedef enum { KTAP_PASS, KTAP_FAIL, KTAP_SKIP, KTAP_TODO } ktap_status;

typedef struct {
    char *name;    /* "suite / case" (levels joined by " / ") */
    ktap_status status;
    char *message; /* why it failed or was skipped; NULL for a plain pass */
    char *diag;    /* its diagnostics; may be NULL */
} ktap_case;

typedef struct {
    ktap_case *v;
    size_t n, cap;
} ktap_cases;

/* One case per leaf test; a subtest that says "not ok" although none of its
 * cases failed, lacks its result line, falls short of its plan or bailed out
 * adds a failed case of its own ("<suite>", "<suite> / (plan)",
 * "<suite> / (bail out)"). suite (may be NULL) prefixes every name, for
 * flat outputs such as one kselftest binary's. */
void ktap_flatten(const ktap_node *root, const char *suite, ktap_cases *out);
void ktap_cases_free(ktap_cases *c);
const char *ktap_status_name(ktap_status s); /* "passed", "failed", "skipped", "todo" */
#endif
