/* threadpool.h - a fixed pool of worker threads for data-parallel loops.
 *
 * ss_pool_for(pool, n, fn, arg) calls fn(arg, i) for every i in [0, n) spread
 * over the workers and the calling thread, and returns when all are done.
 * A pool of 1 thread (or NULL) runs the loop inline.  Not re-entrant: fn must
 * not call ss_pool_for on the same pool.
 */
#ifndef SS_THREADPOOL_H
#define SS_THREADPOOL_H

#include <stdint.h>

typedef struct ss_pool ss_pool;

/* threads <= 0 means one per online core.  NULL on failure. */
ss_pool *ss_pool_new(int threads);
void ss_pool_free(ss_pool *pool);
int ss_pool_threads(const ss_pool *pool);
void ss_pool_for(ss_pool *pool, int64_t n, void (*fn)(void *arg, int64_t i), void *arg);

/* Number of online CPU cores (>= 1). */
int ss_cpu_count(void);

#endif
