/* lua_scan_calls: the calls with a literal first argument that the fixture
 * cache key follows, and everything it must not mistake for one. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "lua_scan.h"

typedef struct {
    char text[4096]; /* "callee=arg;" per call, '.' before a field callee */
} seen;

static void collect(const lua_call *c, void *ctx)
{
    seen *s = ctx;
    size_t l = strlen(s->text);
    snprintf(s->text + l, sizeof(s->text) - l, "%s%s=%.*s;", c->field ? "." : "", c->callee, (int)c->arglen, c->arg);
}

static void line_of(const lua_call *c, void *ctx) { *(int *)ctx = c->line; }

static const char *scan(const char *src)
{
    static seen s;
    s.text[0] = 0;
    lua_scan_calls(src, strlen(src), collect, &s);
    return s.text;
}

#define EXPECT(src, want)                                                                                          \
    do {                                                                                                           \
        const char *got_ = scan(src);                                                                              \
        CHECKF(strcmp(got_, want) == 0, "source %s\n  expected [%s]\n  got      [%s]", #src, want, got_);          \
    } while (0)

TEST(call_forms)
{
    EXPECT("local vm = provium:vm_fixture(\"base\")", ".vm_fixture=base;");
    EXPECT("provium.fixture('classic')", ".fixture=classic;");
    EXPECT("provium:fixture\"x\" provium:fixture'y'", ".fixture=x;.fixture=y;");
    EXPECT("provium:lab_fixture [[lab]]", ".lab_fixture=lab;");
    EXPECT("local h = require(\"helpers.net\")", "require=helpers.net;");
    EXPECT("local h = require 'helper'", "require=helper;");
    EXPECT("provium:vm_fixture(\"a\", {x = 1})", ".vm_fixture=a;");
    EXPECT("provium:vm_fixture ( \"spaced\" )", ".vm_fixture=spaced;");
    EXPECT("x = f(\n  \"multi\"\n)", "f=multi;");
}

TEST(not_a_literal)
{
    EXPECT("provium:vm_fixture(name)", "");
    EXPECT("provium:vm_fixture(\"a\" .. suffix)", "");
    EXPECT("provium:vm_fixture((\"paren\"))", "");
    EXPECT("local t = {fixture = \"x\"}", "");
    EXPECT("function provium.fixture(name) end", "");
    EXPECT("return \"fixture\"", "");
    EXPECT("local s = fixture_name", "");
}

TEST(the_string_of_the_issue)
{
    EXPECT("local vm = provium:vm(\"f\", \"default\"):boot()\n"
           "vm:write_file(\"/etc/marker\", \"from-fixture\")\n"
           "vm:run(\"cat /etc/marker\"):assert_ok()\n"
           "return vm:snapshot()\n",
           ".vm=f;.write_file=/etc/marker;.run=cat /etc/marker;");
}

TEST(names_in_strings)
{
    EXPECT("vm:run('echo fixture\"x\"')", ".run=echo fixture\"x\";");
    EXPECT("vm:run(\"lua -e 'require(\\\"evil\\\")'\")", ".run=lua -e 'require(\"evil\")';");
    EXPECT("local s = \"provium:vm_fixture('inner')\"", "");
    EXPECT("local s = 'it\\'s require(\"x\")' provium:fixture('real')", ".fixture=real;");
    EXPECT("local s = \"a\\\\\" provium:fixture('after_backslash')", ".fixture=after_backslash;");
    EXPECT("local s = \"line\\\ncontinued require('no')\" require('yes')", "require=yes;");
    EXPECT("local s = \"\\z\n   skipped require('no')\" require'yes'", "require=yes;");
}

TEST(long_brackets)
{
    EXPECT("local s = [[ provium:vm_fixture(\"no\") ]] provium:vm_fixture(\"yes\")", ".vm_fixture=yes;");
    EXPECT("local s = [==[ ]] provium:vm_fixture(\"no\") ]=] ]==] require(\"yes\")", "require=yes;");
    EXPECT("f [==[\nfirst newline dropped]==]", "f=first newline dropped;");
    EXPECT("local t = a[b[1]] provium:fixture'x'", ".fixture=x;");
    EXPECT("local s = [=[ unterminated require('no')", "");
}

TEST(comments)
{
    EXPECT("-- provium:vm_fixture(\"no\")\nprovium:vm_fixture(\"yes\")", ".vm_fixture=yes;");
    EXPECT("--[[ require(\"no\")\n provium:fixture('no') ]] require('yes')", "require=yes;");
    EXPECT("--[==[ ]] require(\"no\") ]==] require('yes')", "require=yes;");
    EXPECT("--[ not long: require('no')\nrequire('yes')", "require=yes;");
    EXPECT("x = 1 - -1 require('minus')", "require=minus;");
    EXPECT("#!/usr/bin/env provium require('shebang')\nrequire('after')", "require=after;");
}

TEST(escapes_decode)
{
    EXPECT("f('\\x41\\66\\u{48}\\n')", "f=ABH\n;");
    EXPECT("f'\\u{20AC}'", "f=\xE2\x82\xAC;");
    EXPECT("f\"tab\\tq\\\"\"", "f=tab\tq\";");
}

TEST(numbers_and_operators)
{
    EXPECT("x = 1e-5 + 0x1p+4 .. require('n')", "require=n;");
    EXPECT("local a = b..require('concat')", "require=concat;");
    EXPECT("goto done ::done:: require('label')", "require=label;");
    EXPECT("print(...) require('vararg')", "require=vararg;");
}

TEST(line_numbers)
{
    {
        const char *src = "--[[ one\ntwo ]]\nlocal s = [[\nthree\n]]\nlocal t = 'a\\\nb'\nrequire('eight')";
        int line = 0;
        lua_scan_calls(src, strlen(src), line_of, &line);
        CHECKF(line == 8, "require('eight') reported on line %d", line);
    }
}

CHECK_MAIN()
