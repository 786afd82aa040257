/* provium lsp-setup [DIR]: writes the API's type stubs for lua-language-server
 * and a .luarc.json that points at them, so editors complete `provium`, `vm`
 * and `t` methods and stop flagging the framework's globals. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../util/util.h"
#include "../vmm/embedded.h"
#include "tools.h"

int lsp_setup_main(const char *dir)
{
    if (!dir)
        dir = ".";
    char *types_dir = xasprintf("%s/.provium/types", dir);
    char *stubs = xasprintf("%s/provium.lua", types_dir);
    char *luarc = xasprintf("%s/.luarc.json", dir);
    int rc = 0;
    if (mkdir_p(types_dir, 0755) != 0 ||
        write_whole_file(stubs, provium_types_lua, EMBEDDED_SIZE(provium_types_lua), 0644) != 0) {
        fprintf(stderr, "provium lsp-setup: cannot write %s: %s\n", stubs, strerror(errno));
        rc = 2;
    } else if (file_exists(luarc)) {
        printf("wrote %s\n%s exists and was left alone; add \".provium/types\" to its workspace.library\n", stubs,
               luarc);
    } else {
        const char *cfg = "{\n"
                          "  \"runtime.version\": \"Lua 5.4\",\n"
                          "  \"workspace.library\": [\".provium/types\"],\n"
                          "  \"diagnostics.globals\": [\"provium\", \"test\", \"todo\", \"wait_until\", \"assert_eq\",\n"
                          "                          \"assert_contains\", \"json\"]\n"
                          "}\n";
        if (write_whole_file(luarc, cfg, strlen(cfg), 0644) != 0) {
            fprintf(stderr, "provium lsp-setup: cannot write %s: %s\n", luarc, strerror(errno));
            rc = 2;
        } else {
            printf("wrote %s and %s\n", stubs, luarc);
        }
    }
    free(types_dir);
    free(stubs);
    free(luarc);
    return rc;
}
