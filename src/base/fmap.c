/* fmap.c - read-only mmap of a whole file; see fmap.h. */
#include "base/fmap.h"

#include "base/alloc.h"
#include "base/error.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

struct fmap {
    const uint8_t *data; /* NULL when size == 0 */
    size_t size;
    char *path;          /* owned copy */
};

kiln_status fmap_open(const char *path, fmap **out)
{
    struct stat sb;
    void *p = NULL;
    fmap *m;
    int fd;

    *out = NULL;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return kiln_err_set(KILN_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return kiln_err_set(KILN_ERR_IO, "%s: %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return kiln_err_set(KILN_ERR_IO, "%s: %s", path,
                            S_ISDIR(sb.st_mode) ? "is a directory" : "not a regular file");
    }
    if (sb.st_size > 0) {
        p = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            int e = errno;
            close(fd);
            return kiln_err_set(KILN_ERR_IO, "%s: mmap of %lld bytes failed: %s", path,
                                (long long)sb.st_size, strerror(e));
        }
    }
    close(fd); /* the mapping keeps the file alive */
    m = kiln_calloc(1, sizeof *m);
    if (!m || !(m->path = kiln_strdup(path))) {
        if (p)
            munmap(p, (size_t)sb.st_size);
        kiln_free(m);
        return kiln_err_set(KILN_ERR_OOM, "%s: out of memory", path);
    }
    m->data = p;
    m->size = (size_t)sb.st_size;
    *out = m;
    return KILN_OK;
}

void fmap_close(fmap *m)
{
    if (!m)
        return;
    if (m->data)
        munmap((void *)m->data, m->size);
    kiln_free(m->path);
    kiln_free(m);
}

const uint8_t *fmap_data(const fmap *m) { return m->data; }
size_t fmap_size(const fmap *m) { return m->size; }
const char *fmap_path(const fmap *m) { return m->path; }

void fmap_prefetch(const fmap *m, size_t off, size_t len)
{
    long pg = sysconf(_SC_PAGESIZE);
    if (!m->data || off >= m->size || pg <= 0)
        return;
    if (len > m->size - off)
        len = m->size - off;
    size_t start = off - off % (size_t)pg;
    madvise((void *)(m->data + start), len + (off - start), MADV_WILLNEED);
}
