/* provium junit merge FILE... : the JUnit reports of N shard jobs as one
 * <testsuites> document (libxml2). Every <testsuite> of every input is kept
 * as it is; the totals on <testsuites> are the sums over them. */
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ci.h"

static double attr_num(xmlNode *n, const char *name)
{
    xmlChar *v = xmlGetProp(n, (const xmlChar *)name);
    double d = v ? strtod((const char *)v, NULL) : 0;
    xmlFree(v);
    return d;
}

static bool named(xmlNode *n, const char *name)
{
    return n && n->type == XML_ELEMENT_NODE && strcmp((const char *)n->name, name) == 0;
}

const char junit_usage[] = "usage: provium junit merge FILE... > MERGED.xml\n"
                           "\n"
                           "One JUnit report from several (e.g. one per CI shard): every <testsuite>\n"
                           "of the inputs, with the totals summed. An input that is not a JUnit\n"
                           "report exits 2 naming it.\n";

int junit_cli(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[0], "merge") != 0) {
        fputs(junit_usage, stderr);
        return 2;
    }
    xmlDoc *out = xmlNewDoc((const xmlChar *)"1.0");
    xmlNode *root = xmlNewNode(NULL, (const xmlChar *)"testsuites");
    xmlDocSetRootElement(out, root);
    double sums[5] = {0};
    static const char *const keys[5] = {"tests", "failures", "errors", "skipped", "time"};
    int rc = 0;
    for (int i = 1; i < argc && rc == 0; i++) {
        xmlDoc *in = xmlReadFile(argv[i], NULL, XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
        xmlNode *top = in ? xmlDocGetRootElement(in) : NULL;
        if (!named(top, "testsuites") && !named(top, "testsuite")) {
            const xmlError *e = in ? NULL : xmlGetLastError();
            const char *why = e && e->message ? e->message : in ? "the root is neither <testsuites> nor <testsuite>"
                                                                : "cannot read or parse it";
            fprintf(stderr, "provium junit merge: %s: not a JUnit report: %.*s", argv[i], (int)strcspn(why, "\n"),
                    why);
            if (e && e->line > 0)
                fprintf(stderr, " (line %d)", e->line);
            fputc('\n', stderr);
            rc = 2;
        }
        /* a report may be one bare <testsuite> */
        xmlNode *first = named(top, "testsuite") ? top : top ? top->children : NULL;
        for (xmlNode *n = first; rc == 0 && n; n = n == top ? NULL : n->next) {
            if (!named(n, "testsuite"))
                continue;
            for (int k = 0; k < 5; k++)
                sums[k] += attr_num(n, keys[k]);
            xmlAddChild(root, xmlDocCopyNode(n, out, 1));
        }
        if (in)
            xmlFreeDoc(in);
    }
    if (rc == 0) {
        xmlNewProp(root, (const xmlChar *)"name", (const xmlChar *)"provium");
        for (int k = 0; k < 5; k++) {
            char v[64];
            snprintf(v, sizeof(v), k == 4 ? "%.3f" : "%.0f", sums[k]);
            xmlNewProp(root, (const xmlChar *)keys[k], (const xmlChar *)v);
        }
        if (xmlSaveFormatFileEnc("-", out, "UTF-8", 1) < 0) {
            fprintf(stderr, "provium junit merge: cannot write the merged report\n");
            rc = 2;
        }
    }
    xmlFreeDoc(out);
    return rc;
}
