/* cmd_info.c - `kiln info MODEL`: describe a model file or directory. */
#include "cli/cli.h"

#include <stdio.h>

int cmd_info(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "kiln info: not built yet\n");
    return 1;
}
