/* One static binary, two roles chosen by argv[0]. */
#include <string.h>

#include "agent.h"

int main(int argc, char **argv)
{
    const char *slash = argv[0] ? strrchr(argv[0], '/') : NULL;
    const char *name = slash ? slash + 1 : (argv[0] ? argv[0] : "");
    if (strcmp(name, "provium-wrapper") == 0)
        return wrapper_main(argc, argv);
    return agent_main(argc, argv);
}
