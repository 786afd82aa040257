/* Interactive and editor helpers of the provium command. */
#ifndef PROVIUM_TOOLS_H
#define PROVIUM_TOOLS_H
#include "../config/config.h"

/* provium repl PROFILE [--name N]: a booted VM bound to `vm` at a Lua prompt. */
int repl_main(const pv_config *cfg, const char *profile, const char *name);
/* provium lsp-setup [DIR]: type stubs and .luarc.json for lua-language-server. */
int lsp_setup_main(const char *dir);
#endif
