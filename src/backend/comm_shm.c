/*
 * comm_shm.c - the communicator of ranks that are processes of one host
 * (comm_shm_open), over a file every rank maps shared: the CPU backend's
 * process groups (`kiln run --tp-rank R --tp-world N --tp-id FILE` on the
 * CPU, and the processes `--tp-launch processes` spawns).
 *
 * The file: a header (below) and one slot of SHM_SLOT_ELEMS floats per
 * rank.  A collective goes through the slots in chunks: each rank copies
 * its chunk into its own slot, a barrier, each rank reads every slot
 * (summing in rank order 0, 1, ..., world - 1, as the threads communicator
 * does, so the two give the same bits), a barrier, and the next chunk.
 *
 * Synchronisation: one process-shared robust mutex and condition variable
 * in the header.  A rank that dies holding the mutex marks the group
 * aborted (EOWNERDEAD); a rank that dies elsewhere is noticed by the
 * group's watch (comm_watch.c), which calls comm_abort.  Waits are timed
 * (SHM_POLL_S) so an abort is seen even without a wakeup.
 *
 * Rank 0 creates the file - replacing one an earlier group left - and sets
 * the magic last; the others map it once the magic and the group match.
 */
#include "backend/comm_impl.h"

#include "base/alloc.h"
#include "base/clock.h"
#include "base/error.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SHM_MAGIC 0x316d68736e6c696bull /* "kilnshm1" */
#define SHM_MAX_WORLD 64
#define SHM_SLOT_ELEMS ((int64_t)1 << 20) /* floats a rank's slot holds: 4 MB */
#define SHM_POLL_S 0.2

typedef struct shm_hdr {
    _Atomic uint64_t magic;  /* SHM_MAGIC once rank 0 has set up the rest */
    uint64_t group;
    int32_t world;
    int32_t arrived;         /* ranks at the current barrier               */
    uint64_t gen;            /* barriers completed                         */
    int32_t aborted;         /* stays set                                  */
    int32_t abort_rank;
    int64_t slot_elems;
    int64_t n[SHM_MAX_WORLD]; /* each rank's element count, this collective */
    pthread_mutex_t mu;
    pthread_cond_t cv;
} shm_hdr;

typedef struct comm_shm {
    comm base;
    char *path;              /* removed by rank 0 on free */
    shm_hdr *h;
    float *slots;            /* (world, slot_elems)       */
    size_t bytes;            /* of the mapping            */
} comm_shm;

static size_t shm_slots_off(void)
{
    return (sizeof(shm_hdr) + 63) / 64 * 64;
}

static size_t shm_bytes(int32_t world)
{
    return shm_slots_off() + (size_t)world * (size_t)SHM_SLOT_ELEMS * sizeof(float);
}

static kiln_status shm_aborted_err(const shm_hdr *h)
{
    return kiln_err_set(KILN_ERR_DEVICE, "comm: rank %d of %d failed; the group is aborted",
                        (int)h->abort_rank, (int)h->world);
}

/* Lock the group's mutex; a rank that died holding it aborts the group. */
static void shm_lock(shm_hdr *h)
{
    if (pthread_mutex_lock(&h->mu) == EOWNERDEAD) {
        pthread_mutex_consistent(&h->mu);
        if (!h->aborted) {
            h->aborted = 1;
            h->abort_rank = -1;
        }
        pthread_cond_broadcast(&h->cv);
    }
}

/* Wait until every rank has arrived; KILN_ERR_DEVICE once aborted. */
static kiln_status shm_barrier(shm_hdr *h)
{
    kiln_status st = KILN_OK;

    shm_lock(h);
    if (h->aborted) {
        st = shm_aborted_err(h);
    } else if (++h->arrived == h->world) {
        h->arrived = 0;
        h->gen++;
        pthread_cond_broadcast(&h->cv);
    } else {
        uint64_t gen = h->gen;
        while (h->gen == gen && !h->aborted) {
            struct timespec ts;
            clock_deadline(&ts, SHM_POLL_S);
            if (pthread_cond_timedwait(&h->cv, &h->mu, &ts) == EOWNERDEAD) {
                pthread_mutex_consistent(&h->mu);
                h->aborted = 1;
                h->abort_rank = -1;
            }
        }
        if (h->gen == gen)
            st = shm_aborted_err(h);
    }
    pthread_mutex_unlock(&h->mu);
    return st;
}

/* What a rank does with the slots in one round: chunk [off, off + m) of
 * the collective, every rank's chunk in its slot. */
typedef void (*shm_read_fn)(const comm_shm *k, int64_t off, int64_t m, void *arg);

/* A collective of n floats per rank (mine) in slot-sized rounds: publish
 * this rank's chunk, a barrier, read (unless the ranks disagree on n), a
 * barrier; at least one round, so every rank checks the others' n. */
static kiln_status shm_rounds(comm_shm *k, const float *mine, int64_t n, const char *op,
                              shm_read_fn read, void *arg)
{
    shm_hdr *h = k->h;
    const int32_t r = k->base.rank;
    kiln_status st;
    int64_t off = 0;

    h->n[r] = n;
    do {
        int64_t m = n - off < h->slot_elems ? n - off : h->slot_elems;
        memcpy(k->slots + (size_t)r * (size_t)h->slot_elems, mine + off, (size_t)m * sizeof *mine);
        if ((st = shm_barrier(h)))
            return st;
        kiln_status bad = comm_counts_agree(h->n, h->world, op);
        if (!bad)
            read(k, off, m, arg);
        if ((st = shm_barrier(h)))
            return st;
        if (bad)
            return bad;
        off += m;
    } while (off < n);
    return KILN_OK;
}

/* all-reduce: the chunk's sum over the ranks, in rank order, into x */
static void shm_read_sum(const comm_shm *k, int64_t off, int64_t m, void *arg)
{
    const size_t se = (size_t)k->h->slot_elems;
    float *x = (float *)arg + off;
    for (int64_t i = 0; i < m; i++) {
        float s = k->slots[i];
        for (int32_t q = 1; q < k->base.world; q++)
            s += k->slots[(size_t)q * se + (size_t)i];
        x[i] = s;
    }
}

typedef struct shm_gather {
    float *recv; /* (world, n) */
    int64_t n;
} shm_gather;

/* all-gather: every rank's chunk to its row of recv */
static void shm_read_rows(const comm_shm *k, int64_t off, int64_t m, void *arg)
{
    const shm_gather *g = arg;
    for (int32_t q = 0; q < k->base.world; q++)
        memcpy(g->recv + (size_t)q * (size_t)g->n + (size_t)off,
               k->slots + (size_t)q * (size_t)k->h->slot_elems, (size_t)m * sizeof(float));
}

static kiln_status comm_shm_all_reduce(comm *c, void *buf, int64_t n, kiln_dtype dtype)
{
    kiln_status st = comm_f32_only(dtype, "all-reduce", "process group");
    return st ? st : shm_rounds((comm_shm *)c, buf, n, "all-reduce", shm_read_sum, buf);
}

static kiln_status comm_shm_all_gather(comm *c, const void *send, int64_t n, kiln_dtype dtype,
                                       void *recv)
{
    shm_gather g = {recv, n};
    kiln_status st = comm_f32_only(dtype, "all-gather", "process group");
    return st ? st : shm_rounds((comm_shm *)c, send, n, "all-gather", shm_read_rows, &g);
}

static void comm_shm_abort(comm *c)
{
    shm_hdr *h = ((comm_shm *)c)->h;
    shm_lock(h);
    if (!h->aborted) {
        h->aborted = 1;
        h->abort_rank = c->rank;
    }
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
}

static kiln_status comm_shm_check(comm *c)
{
    shm_hdr *h = ((comm_shm *)c)->h;
    kiln_status st = KILN_OK;
    shm_lock(h);
    if (h->aborted)
        st = shm_aborted_err(h);
    pthread_mutex_unlock(&h->mu);
    return st;
}

static void comm_shm_free(comm *c)
{
    comm_shm *k = (comm_shm *)c;
    if (k->h)
        munmap(k->h, k->bytes);
    if (c->rank == 0 && k->path)
        unlink(k->path);
    kiln_free(k->path);
    kiln_free(k);
}

static const comm_ops comm_shm_ops = {
    .kind = "shm",
    .free = comm_shm_free,
    .all_reduce_sum = comm_shm_all_reduce,
    .all_gather = comm_shm_all_gather,
    .abort = comm_shm_abort,
    .check = comm_shm_check,
};

/* Rank 0: a fresh file at k->path, set up, magic last. */
static kiln_status shm_create(comm_shm *k, uint64_t group)
{
    pthread_mutexattr_t ma;
    pthread_condattr_t ca;
    int fd;

    unlink(k->path); /* an earlier group's */
    if ((fd = open(k->path, O_RDWR | O_CREAT | O_EXCL, 0600)) < 0)
        return kiln_err_set(KILN_ERR_IO, "comm: %s: %s", k->path, strerror(errno));
    if (ftruncate(fd, (off_t)k->bytes)) {
        int e = errno;
        close(fd);
        return kiln_err_set(KILN_ERR_IO, "comm: %s: %s", k->path, strerror(e));
    }
    void *p = mmap(NULL, k->bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (p == MAP_FAILED)
        return kiln_err_set(KILN_ERR_IO, "comm: mmap %s: %s", k->path, strerror(errno));
    k->h = p;
    k->slots = (float *)((char *)p + shm_slots_off());
    k->h->group = group;
    k->h->world = k->base.world;
    k->h->slot_elems = SHM_SLOT_ELEMS;
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&ma, PTHREAD_MUTEX_ROBUST);
    pthread_mutex_init(&k->h->mu, &ma);
    pthread_mutexattr_destroy(&ma);
    pthread_condattr_init(&ca);
    pthread_condattr_setpshared(&ca, PTHREAD_PROCESS_SHARED);
    pthread_cond_init(&k->h->cv, &ca);
    pthread_condattr_destroy(&ca);
    atomic_store_explicit(&k->h->magic, SHM_MAGIC, memory_order_release);
    return KILN_OK;
}

/* Ranks 1..: map the file once rank 0 has set it up for this group. */
static kiln_status shm_join(comm_shm *k, uint64_t group, double timeout_s)
{
    uint64_t t0 = clock_now_ns();

    for (;;) {
        int fd = open(k->path, O_RDWR);
        struct stat sb;
        if (fd >= 0 && !fstat(fd, &sb) && (size_t)sb.st_size == k->bytes) {
            void *p = mmap(NULL, k->bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
            close(fd);
            fd = -1;
            if (p != MAP_FAILED) {
                shm_hdr *h = p;
                if (atomic_load_explicit(&h->magic, memory_order_acquire) == SHM_MAGIC &&
                    h->group == group && h->world == k->base.world) {
                    k->h = h;
                    k->slots = (float *)((char *)p + shm_slots_off());
                    return KILN_OK;
                }
                munmap(p, k->bytes); /* not set up yet, or an earlier group's */
            }
        }
        if (fd >= 0)
            close(fd);
        if ((double)(clock_now_ns() - t0) * 1e-9 > timeout_s)
            return kiln_err_set(KILN_ERR_IO, "comm: no process group of %d ranks at %s from "
                                "rank 0 after %.1f s", (int)k->base.world, k->path, timeout_s);
        usleep(20 * 1000);
    }
}

kiln_status comm_shm_open(const char *path, uint64_t group, int32_t rank, int32_t world,
                          double timeout_s, comm **out)
{
    comm_shm *k;
    kiln_status st;

    *out = NULL;
    if (!path || !*path || world < 2 || world > SHM_MAX_WORLD || rank < 0 || rank >= world ||
        !(timeout_s >= 0))
        return kiln_err_set(KILN_ERR_INVALID_ARG, "comm: rank %d of %d at '%s' (world 2..%d, "
                            "rank below it, a path)", (int)rank, (int)world,
                            path ? path : "(null)", SHM_MAX_WORLD);
    if (!(k = kiln_calloc(1, sizeof *k)) || !(k->path = kiln_strdup(path))) {
        kiln_free(k);
        return kiln_err_set(KILN_ERR_OOM, "comm: out of memory");
    }
    k->base.ops = &comm_shm_ops;
    k->base.rank = rank;
    k->base.world = world;
    k->bytes = shm_bytes(world);
    st = rank == 0 ? shm_create(k, group) : shm_join(k, group, timeout_s);
    if (st) {
        if (rank == 0 && !k->h)
            unlink(k->path);
        comm_shm_free(&k->base);
        return st;
    }
    *out = &k->base;
    return KILN_OK;
}
