// emu.cpp - the grid emulator behind emu.h: threadgroups of cooperative
// fibers (ucontext) with a barrier/simdgroup scheduler, spread over OS threads.
#include "emu.h"

#include <setjmp.h>
#include <sys/mman.h>
#include <ucontext.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#define SS_EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SS_EMU_ASAN 1
#endif
#endif
#ifdef SS_EMU_ASAN
#include <sanitizer/common_interface_defs.h>
#endif

namespace {

#ifdef SS_EMU_ASAN
const size_t kStack = 1u << 20;   // ASan frames are larger
#else
const size_t kStack = 256u << 10;
#endif
const unsigned kSimd = 32;
const unsigned kMaxLanes = 1024;

enum LaneState { RUNNABLE, WAIT_BARRIER, WAIT_SIMD, DONE };

// Switching: each lane fiber is started once with setcontext() (ucontext) and
// then lives across threadgroups and dispatches, running the kernel in a loop;
// later switches use _setjmp/_longjmp, which save no signal mask (no system
// call), so a barrier costs a few nanoseconds per thread.  Under AddressSanitizer
// every switch goes through swapcontext() with the fiber annotations instead.
struct Lane {
    ucontext_t ctx;
    jmp_buf env;
    bool started;
    LaneState state;
    int op;
    float val, res;
    ss_emu_ids ids;
    void *stack;
    void *fake;
};

struct Group {
    ucontext_t main;
    jmp_buf menv;
    std::vector<Lane> lanes;
    unsigned n = 0, cur = 0;
    bool coop = false;
    ss_emu_fn fn = nullptr;
    void *const *bufs = nullptr;
    const void *params = nullptr;
    std::string err;
    long long barriers = 0, simd_ops = 0;
    void *main_fake = nullptr;
    const void *main_bottom = nullptr;
    size_t main_size = 0;
    ~Group()
    {
        for (Lane &l : lanes)
            if (l.stack)
                munmap(l.stack, kStack);
    }
};

thread_local Group *tl_group;
std::atomic<long long> st_dispatches{0}, st_groups{0}, st_threads{0}, st_barriers{0}, st_simd{0};

void note(Group *g, const std::string &msg)
{
    if (g->err.empty())
        g->err = msg;
}

// lane -> scheduler
__attribute__((noinline)) void yield_to_main(Group *g, Lane &l, bool exiting)
{
#ifdef SS_EMU_ASAN
    __sanitizer_start_switch_fiber(exiting ? nullptr : &l.fake, g->main_bottom, g->main_size);
    swapcontext(&l.ctx, &g->main);
    __sanitizer_finish_switch_fiber(l.fake, &g->main_bottom, &g->main_size);
#else
    (void)exiting;
    if (!_setjmp(l.env))
        _longjmp(g->menv, 1);
#endif
}

void lane_entry()
{
    Group *g = tl_group;
#ifdef SS_EMU_ASAN
    __sanitizer_finish_switch_fiber(nullptr, &g->main_bottom, &g->main_size);
#endif
#ifdef SS_EMU_ASAN
    Lane &l = g->lanes[g->cur];
    g->fn(g->bufs, g->params, &l.ids);
    l.state = DONE;
    yield_to_main(g, l, true);
#else
    for (;;) {                       // one threadgroup per turn, forever
        Lane &l = g->lanes[g->cur];
        g->fn(g->bufs, g->params, &l.ids);
        l.state = DONE;
        yield_to_main(g, l, false);
    }
#endif
}

// scheduler -> lane
__attribute__((noinline)) void resume(Group *g, unsigned i)
{
    Lane &l = g->lanes[i];
    g->cur = i;
#ifdef SS_EMU_ASAN
    __sanitizer_start_switch_fiber(&g->main_fake, l.stack, kStack);
    swapcontext(&g->main, &l.ctx);
    __sanitizer_finish_switch_fiber(g->main_fake, nullptr, nullptr);
#else
    if (!_setjmp(g->menv)) {
        if (!l.started) {
            l.started = true;
            setcontext(&l.ctx);
        }
        _longjmp(l.env, 1);
    }
#endif
}

void set_ids(ss_emu_ids &id, unsigned lin, const unsigned tgp[3], const unsigned tg[3], const unsigned groups[3])
{
    unsigned lx = lin % tg[0], ly = (lin / tg[0]) % tg[1], lz = lin / (tg[0] * tg[1]);
    unsigned l3[3] = {lx, ly, lz};
    for (int d = 0; d < 3; d++) {
        id.lid[d] = l3[d];
        id.tgp[d] = tgp[d];
        id.tgs[d] = tg[d];
        id.ngrp[d] = groups[d];
        id.gid[d] = tgp[d] * tg[d] + l3[d];
    }
    id.sl = lin % kSimd;
    id.sg = lin / kSimd;
}

// Release the simdgroups whose live lanes all wait at a simd function.
bool resolve_simd(Group *g)
{
    bool any = false;
    for (unsigned s0 = 0; s0 < g->n; s0 += kSimd) {
        unsigned s1 = std::min(g->n, s0 + kSimd);
        bool all = true, some = false;
        int op = -1;
        for (unsigned i = s0; i < s1; i++) {
            Lane &l = g->lanes[i];
            if (l.state == DONE)
                continue;
            if (l.state != WAIT_SIMD) {
                all = false;
                break;
            }
            if (op >= 0 && l.op != op) {
                note(g, "simdgroup lanes called different simd functions at the same time");
                all = false;
                break;
            }
            op = l.op;
            some = true;
        }
        if (!all || !some)
            continue;
        float r = op == SS_EMU_SIMD_SUM ? 0.0f : op == SS_EMU_SIMD_MAX ? -INFINITY : INFINITY;
        for (unsigned i = s0; i < s1; i++) {
            Lane &l = g->lanes[i];
            if (l.state != WAIT_SIMD)
                continue;
            if (op == SS_EMU_SIMD_SUM)
                r += l.val;
            else if (op == SS_EMU_SIMD_MAX)
                r = l.val > r ? l.val : r;
            else
                r = l.val < r ? l.val : r;
        }
        for (unsigned i = s0; i < s1; i++)
            if (g->lanes[i].state == WAIT_SIMD) {
                g->lanes[i].res = r;
                g->lanes[i].state = RUNNABLE;
            }
        g->simd_ops++;
        any = true;
    }
    return any;
}

__attribute__((noinline)) void make_lane(Lane &l)
{
    getcontext(&l.ctx);
    l.ctx.uc_stack.ss_sp = l.stack;
    l.ctx.uc_stack.ss_size = kStack;
    l.ctx.uc_link = nullptr;
    makecontext(&l.ctx, lane_entry, 0);
}

void run_coop_group(Group *g)
{
    for (unsigned i = 0; i < g->n; i++) {
        Lane &l = g->lanes[i];
#ifndef SS_EMU_ASAN
        if (!l.started)
#endif
            make_lane(l);
        l.state = RUNNABLE;
        l.fake = nullptr;
    }
    for (;;) {
        for (unsigned i = 0; i < g->n; i++)
            if (g->lanes[i].state == RUNNABLE)
                resume(g, i);
        unsigned done = 0, bar = 0;
        for (unsigned i = 0; i < g->n; i++) {
            done += g->lanes[i].state == DONE;
            bar += g->lanes[i].state == WAIT_BARRIER;
        }
        if (done == g->n)
            return;
        if (resolve_simd(g))
            continue;
        if (bar == g->n) {
            for (Lane &l : g->lanes)
                l.state = RUNNABLE;
            g->barriers++;
            continue;
        }
        char msg[200];
        snprintf(msg, sizeof msg,
                 "threadgroup (%u,%u,%u): %u of %u threads wait at a barrier, %u have returned: "
                 "divergent barrier or simd function",
                 g->lanes[0].ids.tgp[0], g->lanes[0].ids.tgp[1], g->lanes[0].ids.tgp[2], bar, g->n, done);
        note(g, msg);
        // unwind: let every waiting lane run on (results are void anyway)
        for (Lane &l : g->lanes)
            if (l.state != DONE)
                l.state = RUNNABLE;
        for (int guard = 0; guard < 1000000; guard++) {
            bool live = false;
            for (unsigned i = 0; i < g->n; i++)
                if (g->lanes[i].state != DONE) {
                    g->lanes[i].state = RUNNABLE;
                    resume(g, i);
                    live = true;
                }
            if (!live)
                return;
        }
        return;
    }
}

struct Job {
    ss_emu_fn fn;
    void *const *bufs;
    const void *params;
    unsigned groups[3], tg[3];
    bool coop;
    std::atomic<unsigned long long> next{0};
    unsigned long long total;
    std::mutex mu;
    std::string err;
};

// The calling thread keeps its fibers (and their stacks) across dispatches;
// helper threads started for one dispatch make their own.
thread_local std::unique_ptr<Group> tl_keep;

void worker(Job *job, bool keep)
{
    Group local;
    if (keep && !tl_keep) {
        tl_keep.reset(new Group);
        tl_keep->lanes.reserve(kMaxLanes);   // lanes never move: fibers hold references
    }
    Group &g = keep ? *tl_keep : local;
    if (!keep)
        g.lanes.reserve(kMaxLanes);
    g.n = job->tg[0] * job->tg[1] * job->tg[2];
    g.coop = job->coop;
    g.fn = job->fn;
    g.bufs = job->bufs;
    g.params = job->params;
    g.err.clear();
    g.barriers = g.simd_ops = 0;
    if (g.lanes.size() < g.n)
        g.lanes.resize(g.n);
    if (g.coop) {
        for (unsigned i = 0; i < g.n; i++) {
            Lane &l = g.lanes[i];
            if (l.stack)
                continue;
            l.stack = mmap(nullptr, kStack, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
            if (l.stack == MAP_FAILED) {
                l.stack = nullptr;
                std::lock_guard<std::mutex> lk(job->mu);
                job->err = "cannot map fiber stacks";
                return;
            }
        }
    }
    tl_group = &g;
    long long groups_done = 0;
    for (;;) {
        unsigned long long t = job->next.fetch_add(1);
        if (t >= job->total || !g.err.empty())
            break;
        unsigned tgp[3] = {unsigned(t % job->groups[0]), unsigned((t / job->groups[0]) % job->groups[1]),
                           unsigned(t / ((unsigned long long)job->groups[0] * job->groups[1]))};
        for (unsigned i = 0; i < g.n; i++)
            set_ids(g.lanes[i].ids, i, tgp, job->tg, job->groups);
        if (g.coop) {
            run_coop_group(&g);
        } else {
            for (unsigned i = 0; i < g.n; i++) {
                g.cur = i;
                job->fn(job->bufs, job->params, &g.lanes[i].ids);
            }
        }
        groups_done++;
    }
    tl_group = nullptr;
    st_groups += groups_done;
    st_threads += groups_done * g.n;
    st_barriers += g.barriers;
    st_simd += g.simd_ops;
    if (!g.err.empty()) {
        std::lock_guard<std::mutex> lk(job->mu);
        if (job->err.empty())
            job->err = g.err;
    }
}

}  // namespace

extern "C" void ss_emu_barrier(void)
{
    Group *g = tl_group;
    if (!g)
        return;
    if (!g->coop) {
        note(g, "threadgroup_barrier() in a kernel dispatched as not cooperative");
        return;
    }
    Lane &l = g->lanes[g->cur];
    l.state = WAIT_BARRIER;
    yield_to_main(g, l, false);
}

extern "C" float ss_emu_simd(int op, float v)
{
    Group *g = tl_group;
    if (!g)
        return v;
    if (!g->coop) {
        note(g, "simd function in a kernel dispatched as not cooperative");
        return v;
    }
    Lane &l = g->lanes[g->cur];
    l.state = WAIT_SIMD;
    l.op = op;
    l.val = v;
    yield_to_main(g, l, false);
    return l.res;
}

extern "C" int ss_emu_run(ss_emu_fn fn, void *const *bufs, const void *params, const unsigned groups[3],
                          const unsigned tg[3], int cooperative, int max_threads, char *why, size_t why_size)
{
    unsigned long long lanes = (unsigned long long)tg[0] * tg[1] * tg[2];
    if (lanes == 0 || lanes > kMaxLanes) {
        snprintf(why, why_size, "threadgroup of %llu threads (1 .. %u allowed)", lanes, kMaxLanes);
        return -1;
    }
    st_dispatches++;
    Job job;
    job.fn = fn;
    job.bufs = bufs;
    job.params = params;
    for (int d = 0; d < 3; d++) {
        job.groups[d] = groups[d];
        job.tg[d] = tg[d];
    }
    job.coop = cooperative != 0;
    job.total = (unsigned long long)groups[0] * groups[1] * groups[2];
    if (job.total == 0)
        return 0;
    unsigned long long work = job.total * lanes;
    int nt = max_threads > 1 && job.total > 1 && work >= 8192 ? (int)std::min<unsigned long long>(job.total, (unsigned)max_threads) : 1;
    std::vector<std::thread> extra;
    for (int i = 1; i < nt; i++)
        extra.emplace_back(worker, &job, false);
    worker(&job, true);
    for (std::thread &t : extra)
        t.join();
    if (!job.err.empty()) {
        snprintf(why, why_size, "%s", job.err.c_str());
        return -1;
    }
    return 0;
}

extern "C" void ss_emu_get_stats(ss_emu_stats *out)
{
    out->dispatches = st_dispatches;
    out->threadgroups = st_groups;
    out->threads = st_threads;
    out->barriers = st_barriers;
    out->simd_ops = st_simd;
}
