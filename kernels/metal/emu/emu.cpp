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
// AddressSanitizer's detect_stack_use_after_return gives every fiber a fake
// stack of its own (~14 MB for a 1 MB stack): a thousand fibers per OS thread
// would take gigabytes.  A program linked with the emulator runs without it
// (heap, stack and shared-memory overruns are still found); the instrumented
// code reads this flag at every call.
extern "C" int __asan_option_detect_stack_use_after_return;
__attribute__((constructor)) static void ss_emu_no_fake_stacks(void)
{
    __asan_option_detect_stack_use_after_return = 0;
}
#endif

// x86-64: fibers switch by a few instructions of our own (callee-saved
// registers and the stack pointer), with or without AddressSanitizer (which is
// told of each switch); elsewhere ucontext + _setjmp/_longjmp, or swapcontext
// under AddressSanitizer.
#if defined(__x86_64__) && !defined(SS_EMU_NO_ASM)
#define SS_EMU_ASM 1
extern "C" void ss_emu_ctx_switch(void **save_sp, void *load_sp);
asm(R"(
    .text
    .globl ss_emu_ctx_switch
    .hidden ss_emu_ctx_switch
    .type ss_emu_ctx_switch, @function
ss_emu_ctx_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size ss_emu_ctx_switch, .-ss_emu_ctx_switch
)");
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

// Switching: each lane fiber is started once and then lives across
// threadgroups and dispatches, running the kernel in a loop.  On x86-64 every
// switch is ss_emu_ctx_switch (above), with the fiber annotations under
// AddressSanitizer.  Elsewhere a fiber is started with setcontext() (ucontext)
// and later switches use _setjmp/_longjmp, which save no signal mask (no system
// call); under AddressSanitizer there every switch goes through swapcontext()
// with the fiber annotations instead.
struct Lane {
    ucontext_t ctx;
    void *sp;                // SS_EMU_ASM: the suspended fiber's stack pointer
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
    void *main_sp = nullptr;
    std::vector<Lane> lanes;
    unsigned n = 0, cur = 0;
    bool coop = false;
    ss_emu_fn fn = nullptr;
    void *const *bufs = nullptr;
    const void *params = nullptr;
    std::string err;
    long long barriers = 0, simd_ops = 0;
    std::vector<unsigned char> table;       // ss_emu_simd_gather: 2 x kMaxLanes x 64 bytes
    unsigned gen[kMaxLanes / kSimd] = {};   // gathers released per simdgroup
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
#if defined(SS_EMU_ASM)
    (void)exiting;
#ifdef SS_EMU_ASAN
    __sanitizer_start_switch_fiber(&l.fake, g->main_bottom, g->main_size);
#endif
    ss_emu_ctx_switch(&l.sp, g->main_sp);
#ifdef SS_EMU_ASAN
    __sanitizer_finish_switch_fiber(l.fake, &g->main_bottom, &g->main_size);
#endif
#elif defined(SS_EMU_ASAN)
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
#if defined(SS_EMU_ASAN) && !defined(SS_EMU_ASM)
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
#if defined(SS_EMU_ASM)
#ifdef SS_EMU_ASAN
    __sanitizer_start_switch_fiber(&g->main_fake, l.stack, kStack);
#endif
    l.started = true;
    ss_emu_ctx_switch(&g->main_sp, l.sp);
#ifdef SS_EMU_ASAN
    __sanitizer_finish_switch_fiber(g->main_fake, nullptr, nullptr);
#endif
#elif defined(SS_EMU_ASAN)
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
        if (op == SS_EMU_SIMD_GATHER) {
            for (unsigned i = s0; i < s1; i++)
                if (g->lanes[i].state == WAIT_SIMD)
                    g->lanes[i].state = RUNNABLE;
            g->gen[s0 / kSimd]++;
            g->simd_ops++;
            any = true;
            continue;
        }
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
#if defined(SS_EMU_ASM)
    // the first switch pops six registers and returns into lane_entry, whose
    // frame then starts 8 bytes below a 16-byte boundary, as after a call
    void **sp = (void **)(((uintptr_t)l.stack + kStack) & ~(uintptr_t)15);
    *--sp = nullptr;
    *--sp = (void *)lane_entry;
    for (int r = 0; r < 6; r++)
        *--sp = nullptr;
    l.sp = sp;
#else
    getcontext(&l.ctx);
    l.ctx.uc_stack.ss_sp = l.stack;
    l.ctx.uc_stack.ss_size = kStack;
    l.ctx.uc_link = nullptr;
    makecontext(&l.ctx, lane_entry, 0);
#endif
}

void run_coop_group(Group *g)
{
    for (unsigned i = 0; i < g->n; i++) {
        Lane &l = g->lanes[i];
#if !defined(SS_EMU_ASAN) || defined(SS_EMU_ASM)
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

extern "C" const void *ss_emu_simd_gather(const void *in, size_t bytes)
{
    Group *g = tl_group;
    if (!g || !g->coop || bytes > 64) {
        if (g)
            note(g, bytes > 64 ? "simdgroup exchange of more than 64 bytes" : "simd function in a kernel dispatched as not cooperative");
        static thread_local unsigned char none[kSimd * 64];
        return none;
    }
    if (g->table.empty())
        g->table.resize(2 * (size_t)kMaxLanes * 64);
    unsigned sg = g->cur / kSimd;
    unsigned char *t = g->table.data() + (size_t)(g->gen[sg] & 1) * kMaxLanes * 64;
    memcpy(t + (size_t)g->cur * 64, in, bytes);
    Lane &l = g->lanes[g->cur];
    l.state = WAIT_SIMD;
    l.op = SS_EMU_SIMD_GATHER;
    yield_to_main(g, l, false);
    return t + (size_t)sg * kSimd * 64;
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
