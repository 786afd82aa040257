/* The tiny check harness shared by the unit tests: each failed check prints
 * "FAIL [case] file:line: message"; main() reports n_pass/n_fail. */
#ifndef PROVIUM_TEST_CHECK_H
#define PROVIUM_TEST_CHECK_H
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

static int n_pass, n_fail;
static char current[200] = "?";

__attribute__((format(printf, 1, 2), unused)) static void set_case(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(current, sizeof(current), fmt, ap);
    va_end(ap);
}

__attribute__((format(printf, 4, 5))) static bool check_(bool ok, const char *file, int line, const char *fmt, ...)
{
    if (ok) {
        n_pass++;
        return true;
    }
    n_fail++;
    const char *base = strrchr(file, '/');
    printf("FAIL [%s] %s:%d: ", current, base ? base + 1 : file, line);
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    return false;
}
#define CHECK(c) check_((c), __FILE__, __LINE__, "%s", #c)
#define CHECKF(c, ...) check_((c), __FILE__, __LINE__, __VA_ARGS__)
#endif
