/* threadpool.c - fixed pool of workers for parallel for-loops (see threadpool.h). */
#include "threadpool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

/* A job's indices are claimed in runs of `grain` with one atomic add (a
 * mutex per index made a job of thousands of small tasks slower at 16
 * threads than at 2); the mutex guards the job's start and end only. */
struct ss_pool {
    int n_threads;                 /* workers + the calling thread            */
    pthread_t *workers;            /* n_threads - 1 worker threads            */
    pthread_mutex_t mu;            /* guards the fields up to `stop`          */
    pthread_cond_t wake;           /* a new job or shutdown                   */
    pthread_cond_t done;           /* the job's indices all ran, no worker in it */
    void (*fn)(void *, int64_t);   /* current job                             */
    void *arg;                     /* its argument                            */
    int64_t n;                     /* its size                                */
    int64_t grain;                 /* indices per claim                       */
    int active;                    /* workers inside the current job          */
    uint64_t generation;           /* bumped per job so workers see new ones  */
    int stop;                      /* shutdown requested                      */
    _Atomic int64_t next;          /* next index to hand out                  */
    _Atomic int64_t finished;      /* indices completed                       */
};

int ss_cpu_count(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

/* Run claimed runs of indices of job (fn, arg, n) until none are left. */
static void pool_drain(ss_pool *p, void (*fn)(void *, int64_t), void *arg, int64_t n, int64_t grain)
{
    for (;;) {
        int64_t i0 = atomic_fetch_add_explicit(&p->next, grain, memory_order_relaxed);
        if (i0 >= n)
            return;
        int64_t i1 = n - i0 < grain ? n : i0 + grain;
        for (int64_t i = i0; i < i1; i++)
            fn(arg, i);
        atomic_fetch_add_explicit(&p->finished, i1 - i0, memory_order_acq_rel);
    }
}

static void *pool_worker(void *self)
{
    ss_pool *p = self;
    uint64_t seen = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->stop && p->generation == seen)
            pthread_cond_wait(&p->wake, &p->mu);
        if (p->stop)
            break;
        seen = p->generation;
        if (!p->fn)             /* woke after that job ended: no index is left to claim */
            continue;
        void (*fn)(void *, int64_t) = p->fn;
        void *arg = p->arg;
        int64_t n = p->n, grain = p->grain;
        p->active++;
        pthread_mutex_unlock(&p->mu);
        pool_drain(p, fn, arg, n, grain);
        pthread_mutex_lock(&p->mu);
        /* the caller returns (and may reset next) only once no worker can claim */
        if (--p->active == 0 && atomic_load_explicit(&p->finished, memory_order_acquire) == p->n)
            pthread_cond_broadcast(&p->done);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

ss_pool *ss_pool_new(int threads)
{
    if (threads <= 0)
        threads = ss_cpu_count();
    ss_pool *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->n_threads = threads;
    if (pthread_mutex_init(&p->mu, NULL) != 0) {
        free(p);
        return NULL;
    }
    if (pthread_cond_init(&p->wake, NULL) != 0 || pthread_cond_init(&p->done, NULL) != 0) {
        pthread_mutex_destroy(&p->mu);
        free(p);
        return NULL;
    }
    if (threads > 1) {
        p->workers = calloc((size_t)threads - 1, sizeof *p->workers);
        if (!p->workers) {
            p->n_threads = 1;
            ss_pool_free(p);
            return NULL;
        }
        for (int i = 0; i < threads - 1; i++) {
            if (pthread_create(&p->workers[i], NULL, pool_worker, p) != 0) {
                p->n_threads = i + 1;   /* only join the ones that started */
                ss_pool_free(p);
                return NULL;
            }
        }
    }
    return p;
}

void ss_pool_free(ss_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n_threads - 1 && p->workers; i++)
        pthread_join(p->workers[i], NULL);
    free(p->workers);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->done);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

int ss_pool_threads(const ss_pool *p) { return p ? p->n_threads : 1; }

void ss_pool_for(ss_pool *p, int64_t n, void (*fn)(void *arg, int64_t i), void *arg)
{
    if (n <= 0)
        return;
    if (!p || p->n_threads <= 1 || n == 1) {
        for (int64_t i = 0; i < n; i++)
            fn(arg, i);
        return;
    }
    int64_t grain = n / (8 * (int64_t)p->n_threads);
    if (grain < 1)
        grain = 1;
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->arg = arg;
    p->n = n;
    p->grain = grain;
    atomic_store_explicit(&p->next, 0, memory_order_relaxed);
    atomic_store_explicit(&p->finished, 0, memory_order_relaxed);
    p->generation++;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    pool_drain(p, fn, arg, n, grain);
    pthread_mutex_lock(&p->mu);
    while (atomic_load_explicit(&p->finished, memory_order_acquire) < n || p->active > 0)
        pthread_cond_wait(&p->done, &p->mu);
    p->fn = NULL;
    pthread_mutex_unlock(&p->mu);
}
