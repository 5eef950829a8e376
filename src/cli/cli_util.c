/* cli_util.c - helpers shared by the subcommands; see cli.h. */
#include "cli/cli.h"

#include "base/error.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

int cli_fail(void)
{
    fprintf(stderr, "kiln: %s\n", kiln_last_error());
    return 1;
}

kiln_status cli_read_all(FILE *f, kiln_buf *out)
{
    char chunk[1 << 16];
    size_t n;
    kiln_status st;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        if ((st = buf_append(out, chunk, n)))
            return st;
    if (ferror(f))
        return kiln_err_set(KILN_ERR_IO, "reading input: %s", strerror(errno));
    return KILN_OK;
}

kiln_status cli_json_string(kiln_buf *out, const char *lead, const char *s, size_t n)
{
    kiln_status st = buf_append_str(out, lead);
    if (!st)
        st = buf_append_char(out, '"');
    for (size_t i = 0; i < n && !st; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            st = buf_printf(out, "\\%c", c);
        else if (c == '\n')
            st = buf_append(out, "\\n", 2);
        else if (c == '\r')
            st = buf_append(out, "\\r", 2);
        else if (c == '\t')
            st = buf_append(out, "\\t", 2);
        else if (c < 0x20)
            st = buf_printf(out, "\\u%04x", c);
        else
            st = buf_append_char(out, (char)c);
    }
    return st ? st : buf_append_char(out, '"');
}
