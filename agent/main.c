/* One static binary, two roles chosen by argv[0]. */
#include <string.h>

#include "agent.h"

int main(int argc, char **argv)
{
    const char *slash = argv[0] ? strrchr(argv[0], '/') : NULL;
    const char *name = slash ? slash + 1 : (argv[0] ? argv[0] : "");
    /* "init": the shim's /init of a disk boot (agent/rootfs.c) */
    if (strcmp(name, "provium-wrapper") == 0 || strcmp(name, "init") == 0)
        return wrapper_main(argc, argv);
    return agent_main(argc, argv);
}
