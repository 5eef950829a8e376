/*
 * bulk.c - bulk file reads through io_uring, with a pread fallback; see
 * bulk.h.
 *
 * A request (one bulk_submit() or bulk_read()) lives in a slot of reqs[];
 * slot BULK_MAX_PENDING is reserved for bulk_read() so that it works even
 * when every other slot is taken.  A request is cut into chunk reads
 * (ops[], at most `depth` in flight); the user_data of each SQE is the
 * index of its op.
 *
 *   slot:  free --bulk_submit--> queued --fill--> in flight --complete-->
 *          done --bulk_wait--> free
 *
 * Invariants:
 *   1. A slot is free iff seq == 0.  For a used slot:
 *      done <= queued <= len, and inflight is the number of ops pointing
 *      at it.  It is complete iff queued == len && inflight == 0; then
 *      either err != 0 or done == len.
 *   2. ops_used <= depth <= the ring's SQ size, and every used op holds
 *      exactly one SQE or CQE, so io_uring_get_sqe() cannot run out and
 *      the CQ cannot overflow.
 *   3. A failed chunk stops its request: queued is set to len, so no new
 *      chunk starts, and the request completes once the chunks already in
 *      flight have come back (they may still write into dst until then).
 *   4. On the pread path no op is ever used: requests complete inside
 *      bulk_submit().
 */
#include "base/bulk.h"

#include "base/alloc.h"
#include "base/checked.h"
#include "base/error.h"
#include "base/log.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <liburing.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* err value of a request that met the end of the file mid-read. */
#define BULK_ERR_EOF (-1)
/* Largest single pread() on the fallback path. */
#define BULK_PREAD_MAX ((size_t)1 << 30)
#define BULK_SYNC_SLOT BULK_MAX_PENDING

typedef struct bulk_req {
    uint64_t seq;      /* submission order, from 1; 0: slot free */
    uint64_t tag;
    uint8_t *dst;
    uint64_t off;      /* file offset of dst[0] */
    uint64_t len;
    uint64_t queued;   /* bytes handed to chunk reads */
    uint64_t done;     /* bytes read */
    int inflight;      /* chunk reads in flight */
    int err;           /* 0, a positive errno, or BULK_ERR_EOF */
    uint64_t err_off;  /* where the first error happened */
} bulk_req;

typedef struct bulk_op {
    int req;           /* slot index; -1: op free */
    uint8_t *dst;
    uint64_t off;
    uint32_t len;      /* bytes still to read */
} bulk_op;

struct bulk_reader {
    int fd;
    char *path;
    uint64_t size;
    bool uring;        /* the ring is set up and used */
    bool broken;       /* io_uring_enter failed: every call fails */
    bool closing;      /* bulk_close() is draining: no re-issue */
    int broken_errno;
    struct io_uring ring;
    int depth;
    int ops_used;
    bulk_op *ops;      /* [depth] */
    int pending;       /* slots used by bulk_submit() */
    uint64_t next_seq;
    bulk_req reqs[BULK_MAX_PENDING + 1];
};

/* ---- errors ------------------------------------------------------------------ */

static kiln_status bulk_req_status(const bulk_reader *r, const bulk_req *q)
{
    if (!q->err)
        return KILN_OK;
    if (q->err == BULK_ERR_EOF)
        return kiln_err_set(KILN_ERR_IO, "%s: unexpected end of file at offset %" PRIu64
                            " (file shorter than its %" PRIu64 " bytes at open)",
                            r->path, q->err_off, r->size);
    return kiln_err_set(KILN_ERR_IO, "%s: read at offset %" PRIu64 " failed: %s", r->path,
                        q->err_off, strerror(q->err));
}

static kiln_status bulk_broken_status(const bulk_reader *r)
{
    return kiln_err_set(KILN_ERR_IO, "%s: io_uring failed: %s", r->path,
                        strerror(r->broken_errno));
}

/* Arguments shared by bulk_read() and bulk_submit(). */
static kiln_status bulk_check(const bulk_reader *r, uint64_t off, const void *dst, size_t len)
{
    if (!dst && len > 0)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "%s: read of %zu bytes into NULL",
                            r->path, len);
    if (!ck_range(off, len, r->size))
        return kiln_err_set(KILN_ERR_IO, "%s: read of %zu bytes at offset %" PRIu64
                            " is past the end of the file (%" PRIu64 " bytes)",
                            r->path, len, off, r->size);
    if (r->broken)
        return bulk_broken_status(r);
    return KILN_OK;
}

/* ---- pread path ------------------------------------------------------------- */

/* Read [off, off+len) into dst; on failure fill q->err / q->err_off. */
static void bulk_pread_all(const bulk_reader *r, bulk_req *q)
{
    while (q->done < q->len) {
        size_t want = q->len - q->done;
        uint64_t at = q->off + q->done;
        ssize_t got;

        if (want > BULK_PREAD_MAX)
            want = BULK_PREAD_MAX;
        got = pread(r->fd, q->dst + q->done, want, (off_t)at);
        if (got < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (got <= 0) {
            q->err = got < 0 ? errno : BULK_ERR_EOF;
            q->err_off = at;
            return;
        }
        q->done += (uint64_t)got;
    }
}

/* ---- io_uring path: ops ----------------------------------------------------- */

static void bulk_op_issue(bulk_reader *r, int idx)
{
    bulk_op *op = &r->ops[idx];
    struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);

    KILN_ASSERT(sqe != NULL); /* invariant 2 */
    io_uring_prep_read(sqe, r->fd, op->dst, op->len, op->off);
    io_uring_sqe_set_data64(sqe, (uint64_t)idx);
}

static int bulk_op_find_free(const bulk_reader *r)
{
    for (int i = 0; i < r->depth; i++)
        if (r->ops[i].req < 0)
            return i;
    return -1;
}

/* The oldest request with bytes not yet handed to a chunk read, or -1. */
static int bulk_req_next_to_queue(const bulk_reader *r)
{
    int best = -1;

    for (int i = 0; i <= BULK_SYNC_SLOT; i++) {
        const bulk_req *q = &r->reqs[i];
        if (q->seq && q->queued < q->len && (best < 0 || q->seq < r->reqs[best].seq))
            best = i;
    }
    return best;
}

/* Start chunk reads until the queue is full or nothing is left to read. */
static void bulk_ring_fill(bulk_reader *r)
{
    int qi, oi;

    while (r->ops_used < r->depth && (qi = bulk_req_next_to_queue(r)) >= 0) {
        bulk_req *q = &r->reqs[qi];
        uint64_t left = q->len - q->queued;
        bulk_op *op;

        oi = bulk_op_find_free(r);
        KILN_ASSERT(oi >= 0);
        op = &r->ops[oi];
        op->req = qi;
        op->dst = q->dst + q->queued;
        op->off = q->off + q->queued;
        op->len = (uint32_t)(left < BULK_CHUNK ? left : BULK_CHUNK);
        q->queued += op->len;
        q->inflight++;
        r->ops_used++;
        bulk_op_issue(r, oi);
    }
}

static void bulk_op_release(bulk_reader *r, bulk_op *op)
{
    r->reqs[op->req].inflight--;
    op->req = -1;
    r->ops_used--;
}

/* Invariant 3: the first error sticks and stops the request. */
static void bulk_req_fail(bulk_req *q, int err, uint64_t off)
{
    if (!q->err) {
        q->err = err;
        q->err_off = off;
    }
    q->queued = q->len;
}

/* Account one CQE: retry, advance a short read, finish or fail the op. */
static void bulk_op_complete(bulk_reader *r, const struct io_uring_cqe *cqe)
{
    uint64_t idx = io_uring_cqe_get_data64(cqe);
    bulk_op *op;
    bulk_req *q;
    int res = cqe->res;

    KILN_ASSERT(idx < (uint64_t)r->depth);
    op = &r->ops[idx];
    q = &r->reqs[op->req];
    if ((res == -EINTR || res == -EAGAIN) && !r->closing) {
        bulk_op_issue(r, (int)idx);
        return;
    }
    if (res > 0 && (uint32_t)res < op->len && !r->closing) {
        op->dst += res;
        op->off += (uint64_t)res;
        op->len -= (uint32_t)res;
        q->done += (uint64_t)res;
        bulk_op_issue(r, (int)idx);
        return;
    }
    if (res <= 0)
        bulk_req_fail(q, res < 0 ? -res : BULK_ERR_EOF, op->off);
    else
        q->done += (uint64_t)res;
    bulk_op_release(r, op);
}

/* ---- io_uring path: driving the ring --------------------------------------- */

static void bulk_ring_reap(bulk_reader *r)
{
    struct io_uring_cqe *cqe;

    while (io_uring_peek_cqe(&r->ring, &cqe) == 0) {
        bulk_op_complete(r, cqe);
        io_uring_cqe_seen(&r->ring, cqe);
    }
}

/* Fill the queue, submit, optionally wait for one completion, reap.
 * Errors: KILN_ERR_IO when io_uring_enter fails for good (the reader is
 * marked broken). */
static kiln_status bulk_ring_step(bulk_reader *r, bool wait)
{
    int ret;

    bulk_ring_fill(r);
    if (wait && r->ops_used > 0)
        ret = io_uring_submit_and_wait(&r->ring, 1);
    else
        ret = io_uring_submit(&r->ring);
    if (ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY) {
        r->broken = true;
        r->broken_errno = -ret;
        return bulk_broken_status(r);
    }
    bulk_ring_reap(r);
    return KILN_OK;
}

/* Wait for every chunk read in flight; used by bulk_close(). */
static void bulk_ring_drain(bulk_reader *r)
{
    struct io_uring_cqe *cqe;
    int ret;

    r->closing = true;
    while (r->ops_used > 0) {
        ret = io_uring_submit_and_wait(&r->ring, 1);
        if (ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY)
            return; /* ring exit below cancels what is left */
        while (io_uring_peek_cqe(&r->ring, &cqe) == 0) {
            bulk_op_complete(r, cqe);
            io_uring_cqe_seen(&r->ring, cqe);
        }
    }
}

/* One small read through the ring proves setup, submission and
 * IORING_OP_READ all work here.  Returns 0 or a negative errno. */
static int bulk_ring_probe(bulk_reader *r)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);
    struct io_uring_cqe *cqe;
    unsigned char byte;
    unsigned want = r->size > 0;
    int ret;

    if (!sqe)
        return -EBUSY;
    io_uring_prep_read(sqe, r->fd, &byte, want, 0);
    do {
        ret = io_uring_submit_and_wait(&r->ring, 1);
    } while (ret == -EINTR);
    if (ret < 0)
        return ret;
    if ((ret = io_uring_peek_cqe(&r->ring, &cqe)) != 0)
        return ret;
    ret = cqe->res;
    io_uring_cqe_seen(&r->ring, cqe);
    if (ret < 0)
        return ret;
    return (unsigned)ret == want ? 0 : -EIO;
}

/* Decide between io_uring and pread; log why at debug level. */
static void bulk_ring_setup(bulk_reader *r, unsigned flags)
{
    const char *env = getenv("KILN_BULK_IO");
    int ret;

    if (flags & BULK_OPEN_PREAD) {
        KILN_LOG_D("bulk: %s: pread (asked by the caller)", r->path);
        return;
    }
    if (env && !strcmp(env, "pread")) {
        KILN_LOG_D("bulk: %s: pread (KILN_BULK_IO=pread)", r->path);
        return;
    }
    if ((ret = io_uring_queue_init((unsigned)r->depth, &r->ring, 0)) < 0) {
        KILN_LOG_D("bulk: %s: pread (io_uring setup failed: %s)", r->path, strerror(-ret));
        return;
    }
    if ((ret = bulk_ring_probe(r)) < 0) {
        io_uring_queue_exit(&r->ring);
        KILN_LOG_D("bulk: %s: pread (io_uring read failed: %s)", r->path, strerror(-ret));
        return;
    }
    r->uring = true;
    KILN_LOG_D("bulk: %s: io_uring, queue depth %d", r->path, r->depth);
}

/* ---- open / close ------------------------------------------------------------- */

static kiln_status bulk_open_file(bulk_reader *r)
{
    struct stat sb;

    r->fd = open(r->path, O_RDONLY | O_CLOEXEC);
    if (r->fd < 0)
        return kiln_err_set(KILN_ERR_IO, "%s: cannot open: %s", r->path, strerror(errno));
    if (fstat(r->fd, &sb) != 0)
        return kiln_err_set(KILN_ERR_IO, "%s: %s", r->path, strerror(errno));
    if (!S_ISREG(sb.st_mode))
        return kiln_err_set(KILN_ERR_IO, "%s: %s", r->path,
                            S_ISDIR(sb.st_mode) ? "is a directory" : "not a regular file");
    r->size = (uint64_t)sb.st_size;
    return KILN_OK;
}

kiln_status bulk_open_flags(const char *path, int queue_depth, unsigned flags,
                            bulk_reader **out)
{
    kiln_status st = KILN_OK;
    bulk_reader *r;

    *out = NULL;
    if (queue_depth > BULK_MAX_DEPTH || (flags & ~BULK_OPEN_PREAD))
        return kiln_err_set(KILN_ERR_INVALID_ARG, "%s: bad queue depth %d or flags %#x",
                            path, queue_depth, flags);
    r = kiln_calloc(1, sizeof *r);
    if (!r)
        return kiln_err_set(KILN_ERR_OOM, "%s: out of memory", path);
    r->fd = -1;
    r->depth = queue_depth > 0 ? queue_depth : BULK_DEFAULT_DEPTH;
    r->ops = kiln_calloc((size_t)r->depth, sizeof *r->ops);
    r->path = kiln_strdup(path);
    if (!r->ops || !r->path) {
        st = kiln_err_set(KILN_ERR_OOM, "%s: out of memory", path);
        goto err;
    }
    for (int i = 0; i < r->depth; i++)
        r->ops[i].req = -1;
    if ((st = bulk_open_file(r)))
        goto err;
    bulk_ring_setup(r, flags);
    *out = r;
    return KILN_OK;
err:
    bulk_close(r);
    return st;
}

kiln_status bulk_open(const char *path, int queue_depth, bulk_reader **out)
{
    return bulk_open_flags(path, queue_depth, 0, out);
}

void bulk_close(bulk_reader *r)
{
    if (!r)
        return;
    if (r->uring) {
        bulk_ring_drain(r);
        io_uring_queue_exit(&r->ring);
    }
    if (r->fd >= 0)
        close(r->fd);
    kiln_free(r->ops);
    kiln_free(r->path);
    kiln_free(r);
}

uint64_t bulk_size(const bulk_reader *r) { return r->size; }
const char *bulk_path(const bulk_reader *r) { return r->path; }
bool bulk_uses_io_uring(const bulk_reader *r) { return r->uring; }
int bulk_pending(const bulk_reader *r) { return r->pending; }

/* ---- requests ----------------------------------------------------------------- */

static bool bulk_req_complete(const bulk_req *q)
{
    return q->seq && q->queued == q->len && q->inflight == 0;
}

static void bulk_req_start(bulk_reader *r, int slot, uint64_t off, void *dst, size_t len,
                           uint64_t tag)
{
    bulk_req *q = &r->reqs[slot];

    memset(q, 0, sizeof *q);
    q->seq = ++r->next_seq;
    q->tag = tag;
    q->dst = dst;
    q->off = off;
    q->len = len;
    if (!r->uring) {
        bulk_pread_all(r, q); /* invariant 4 */
        q->queued = q->len;
    }
}

/* Drive the ring until slot `slot` is complete. */
static kiln_status bulk_ring_finish(bulk_reader *r, int slot)
{
    kiln_status st;

    while (!bulk_req_complete(&r->reqs[slot]))
        if ((st = bulk_ring_step(r, true)))
            return st;
    return KILN_OK;
}

kiln_status bulk_read(bulk_reader *r, uint64_t offset, void *dst, size_t len)
{
    bulk_req *q = &r->reqs[BULK_SYNC_SLOT];
    kiln_status st;

    if ((st = bulk_check(r, offset, dst, len)) || len == 0)
        return st;
    bulk_req_start(r, BULK_SYNC_SLOT, offset, dst, len, 0);
    if (r->uring && (st = bulk_ring_finish(r, BULK_SYNC_SLOT)))
        return st; /* broken ring: the slot stays used, every call fails */
    st = bulk_req_status(r, q);
    q->seq = 0;
    return st;
}

kiln_status bulk_submit(bulk_reader *r, uint64_t offset, void *dst, size_t len,
                        uint64_t user_tag)
{
    kiln_status st;
    int slot = 0;

    if ((st = bulk_check(r, offset, dst, len)))
        return st;
    if (r->pending >= BULK_MAX_PENDING)
        return kiln_err_set(KILN_ERR_RANGE, "%s: %d requests pending, collect some with "
                            "bulk_wait first", r->path, r->pending);
    while (r->reqs[slot].seq)
        slot++;
    bulk_req_start(r, slot, offset, dst, len, user_tag);
    r->pending++;
    if (r->uring)
        return bulk_ring_step(r, false);
    return KILN_OK;
}

/* The earliest submitted complete request of bulk_submit(), or -1. */
static int bulk_req_first_complete(const bulk_reader *r)
{
    int best = -1;

    for (int i = 0; i < BULK_SYNC_SLOT; i++) {
        const bulk_req *q = &r->reqs[i];
        if (bulk_req_complete(q) && (best < 0 || q->seq < r->reqs[best].seq))
            best = i;
    }
    return best;
}

kiln_status bulk_wait(bulk_reader *r, uint64_t *user_tag)
{
    kiln_status st;
    int slot;

    if (r->pending == 0)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "%s: bulk_wait with nothing pending",
                            r->path);
    while ((slot = bulk_req_first_complete(r)) < 0) {
        KILN_ASSERT(r->uring); /* invariant 4 */
        if (r->broken)
            return bulk_broken_status(r);
        if ((st = bulk_ring_step(r, true)))
            return st;
    }
    *user_tag = r->reqs[slot].tag;
    st = bulk_req_status(r, &r->reqs[slot]);
    r->reqs[slot].seq = 0;
    r->pending--;
    return st;
}

kiln_status bulk_poll(bulk_reader *r)
{
    if (r->broken)
        return bulk_broken_status(r);
    if (!r->uring)
        return KILN_OK;
    return bulk_ring_step(r, false);
}
