/*
 * test_scan.c - unit tests for host/runner/scan.c: what a test file declares
 * (fixture references and a file-scope claim) read without running it, for
 * the file_discovered event. Names in comments and strings never count.
 */
#include "runner.h"

#include <stdio.h>
#include <string.h>

#include "check.h"

static file_decl scan(const char *src)
{
    file_decl d;
    scan_source_decl(src, strlen(src), &d);
    return d;
}

static bool has_fixture(const file_decl *d, const char *name)
{
    for (size_t i = 0; i < d->nfixtures; i++)
        if (strcmp(d->fixtures[i], name) == 0)
            return true;
    return false;
}

TEST(fixture_refs)
{
    set_case("fixture references");
    file_decl d = scan("local a = provium:vm_fixture(\"base\")\n"
                       "local b = provium:lab_fixture 'fixtures/pair'\n"
                       "local c = provium.fixture([[classic]])\n"
                       "test('x', function(t) provium:vm_fixture(\"in_test\") end)\n"
                       "local again = provium:vm_fixture(\"base\")\n");
    CHECK_EQ_INT(d.nfixtures, 4);
    CHECK(has_fixture(&d, "base") && has_fixture(&d, "fixtures/pair") && has_fixture(&d, "classic"));
    CHECK(has_fixture(&d, "in_test"));
    CHECK(!d.has_claim);
    file_decl_free(&d);

    set_case("names in comments and strings do not count");
    d = scan("-- provium:vm_fixture(\"commented\")\n"
             "--[[ provium:vm_fixture(\"long comment\") ]]\n"
             "--[==[ provium:vm_fixture(\"level 2\") ]] still comment ]==]\n"
             "local s = \"provium:vm_fixture('in a string')\"\n"
             "local l = [=[ provium:vm_fixture(\"long string\") ]=]\n"
             "vm:write_file(\"/etc/marker\", \"fixture\")\n"
             "local real = provium:vm_fixture(\"real\")\n");
    CHECKF(d.nfixtures == 1 && has_fixture(&d, "real"), "%zu fixtures, first %s", d.nfixtures,
           d.nfixtures ? d.fixtures[0] : "-");
    file_decl_free(&d);

    set_case("a fixture name is the string's value, escapes decoded as Lua does");
    d = scan("#!/usr/bin/env provium\n"
             "local a = provium:vm_fixture(\"pa\\x74h\\u{2F}b\")\n"
             "local s = 'it\\'s provium:vm_fixture(\"quoted\")'\n");
    CHECKF(d.nfixtures == 1 && has_fixture(&d, "path/b"), "%zu fixtures, first %s", d.nfixtures,
           d.nfixtures ? d.fixtures[0] : "-");
    file_decl_free(&d);
}

TEST(claims)
{
    set_case("a file-scope claim with literal fields");
    file_decl d = scan("provium:claim({memory = \"512M\", cpus = 2})\n");
    CHECK(d.has_claim && d.claim_mem == 512LL << 20 && d.claim_cpus == 2);
    file_decl_free(&d);

    set_case("memory_bytes as a product, no parentheses");
    d = scan("provium:claim{memory_bytes = 64 * 1024 * 1024; cpus = 0.5}\n");
    CHECK(d.has_claim && d.claim_mem == 64LL << 20 && d.claim_cpus == 0.5);
    file_decl_free(&d);

    set_case("claims inside functions and blocks are not the file's");
    d = scan("local function f() provium:claim({cpus = 1}) end\n"
             "if x then provium:claim({cpus = 2}) end\n"
             "for i = 1, 2 do provium:claim({cpus = 3}) end\n"
             "test('t', function(t) provium:claim({cpus = 4}) end)\n");
    CHECK(!d.has_claim);
    file_decl_free(&d);

    set_case("after the blocks end, a claim at file scope counts");
    d = scan("local function f() if a then return 1 end end\n"
             "repeat x = x + 1 until x > 3\n"
             "provium:claim({memory = \"1G\"})\n");
    CHECK(d.has_claim && d.claim_mem == 1LL << 30 && d.claim_cpus == 0);
    file_decl_free(&d);

    set_case("a claim computed at run time is not declared");
    d = scan("provium:claim({memory = size, cpus = 1})\n");
    CHECK(!d.has_claim);
    file_decl_free(&d);
}

CHECK_MAIN()
