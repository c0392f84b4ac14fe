// metalsim.cc: runs the Metal build of the shared kernels on the CPU, one
// SIMT thread per fiber, behind a byte protocol on stdin/stdout that the Go
// Metal backend's tests drive through the same dispatch code the real Metal
// device gets (runtime/backend/metal/sim_test.go).
//
// Build (the Go test does this): write the Metal translation unit (prelude
// + bodies, with [[threadgroup(n)]] renamed, see metal_mock.h) to
// kernels.metal and the list of entry points as FM_KERNEL(name) lines to
// kernels.inc, then
//   g++ -std=c++17 -O1 -DFMOE_MOCK -I <dir of those> -I shaders/mock metalsim.cc
//
// It checks what a GPU would not report: every lane of a SIMD group
// reaching the same reduction, every thread of a threadgroup the same
// barrier (and none having exited before it) — the same meaning the same
// use in the source, which metal_mock.h passes in, as a compiler may copy
// one use into several places in the machine code —, the host's arguments against
// each kernel's signature (count, buffer vs scalar, int vs float), and
// dynamic threadgroup memory is filled with NaN so that reading an
// unwritten element shows up in the results.

// The fibers switch with _setjmp/_longjmp, which do not save the signal
// mask (swapcontext makes a system call per switch, most of the
// simulator's time); the fortified longjmp would take a jump to another
// stack for a corrupt one.
#undef _FORTIFY_SOURCE
#include <setjmp.h>
#include <ucontext.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "metal_mock.h"  // fm_site; kernels.metal includes it again (guarded)

namespace sim {

enum State { RUNNABLE, AT_BARRIER, AT_SIMD, DONE };

struct Fiber {
    ucontext_t ctx;  // only to start it
    jmp_buf jb;      // where it waits, once started
    bool started;
    State st;
    fm_site site;  // of the barrier or reduction it waits at
    int op;
    float val, res;
};

const size_t kStack = 64 << 10;
std::vector<Fiber> fibers;
std::vector<std::vector<char>> stacks;
int cur;
ucontext_t sched;
jmp_buf schedJB;  // where the scheduler resumes a fiber
std::function<void(int)> body;
std::string err;  // first error since the last sync

void fail(const std::string& m) {
    if (err.empty()) err = m;
}

std::string where(const fm_site& s) {
    const char* f = std::strrchr(s.file, '/');
    return std::string(f ? f + 1 : s.file) + ":" + std::to_string(s.line);
}

void entry() {
    body(cur);
    fibers[cur].st = DONE;
    _longjmp(schedJB, 1);  // never returns: its stack is reused
}

// resume runs fiber i until it waits or returns.
void resume(int i) {
    cur = i;
    if (_setjmp(schedJB)) return;
    if (fibers[i].started) _longjmp(fibers[i].jb, 1);
    fibers[i].started = true;
    swapcontext(&sched, &fibers[i].ctx);
}

// yield returns to the scheduler from the running fiber.
void yield() {
    if (!_setjmp(fibers[cur].jb)) _longjmp(schedJB, 1);
}

// runGroup runs n threads of one threadgroup to completion, resolving
// SIMD reductions and barriers once every thread is blocked or done.
bool runGroup(int n, const char* kname) {
    if ((int)fibers.size() < n) {
        fibers.resize(n);
        stacks.resize(n);
    }
    for (int i = 0; i < n; i++) {
        Fiber& f = fibers[i];
        if (stacks[i].empty()) stacks[i].resize(kStack);
        getcontext(&f.ctx);
        f.ctx.uc_stack.ss_sp = stacks[i].data();
        f.ctx.uc_stack.ss_size = kStack;
        f.ctx.uc_link = nullptr;  // entry never returns
        makecontext(&f.ctx, entry, 0);
        f.started = false;
        f.st = RUNNABLE;
    }
    for (;;) {
        for (int i = 0; i < n; i++) {
            if (fibers[i].st != RUNNABLE) continue;
            resume(i);
        }
        int done = 0, atBar = 0;
        for (int i = 0; i < n; i++) {
            done += fibers[i].st == DONE;
            atBar += fibers[i].st == AT_BARRIER;
        }
        if (done == n) return true;
        bool released = false;
        for (int g = 0; g < n; g += 32) {
            int e = g + 32 < n ? g + 32 : n, at = 0;
            for (int i = g; i < e; i++) at += fibers[i].st == AT_SIMD;
            if (at == 0) continue;
            if (at != e - g) {
                fail(std::string(kname) + ": SIMD group " + std::to_string(g / 32) + ": " + std::to_string(at) +
                     " of " + std::to_string(e - g) + " lanes reached a SIMD reduction, the rest exited or wait at a barrier");
                return false;
            }
            float r = fibers[g].op == 1 ? -INFINITY : 0.0f;
            for (int i = g; i < e; i++) {
                if (fibers[i].site.id != fibers[g].site.id || fibers[i].op != fibers[g].op) {
                    fail(std::string(kname) + ": lanes of SIMD group " + std::to_string(g / 32) +
                         " are in different SIMD reductions (divergent control flow): lane " + std::to_string(g % 32) +
                         " at " + where(fibers[g].site) + ", lane " + std::to_string(i % 32) + " at " +
                         where(fibers[i].site));
                    return false;
                }
                r = fibers[g].op == 1 ? std::fmax(r, fibers[i].val) : r + fibers[i].val;
            }
            for (int i = g; i < e; i++) {
                fibers[i].res = r;
                fibers[i].st = RUNNABLE;
            }
            released = true;
        }
        if (released) continue;
        if (atBar == 0) {
            fail(std::string(kname) + ": threads blocked with nothing to release (simulator bug)");
            return false;
        }
        if (done > 0) {
            fail(std::string(kname) + ": " + std::to_string(atBar) + " threads wait at a barrier that " +
                 std::to_string(done) + " threads that already returned will never reach");
            return false;
        }
        for (int i = 0; i < n; i++) {
            if (fibers[i].site.id != fibers[0].site.id) {
                fail(std::string(kname) + ": threads wait at different barriers (divergent control flow): thread 0 at " +
                     where(fibers[0].site) + ", thread " + std::to_string(i) + " at " + where(fibers[i].site));
                return false;
            }
        }
        for (int i = 0; i < n; i++) fibers[i].st = RUNNABLE;
    }
}

// ulp perturbation of transcendentals (FMOE_MOCK_ULP), deterministic.
int ulps;
uint64_t rng = 0x9E3779B97F4A7C15ull;

}  // namespace sim

float fm_sim_simd(float v, int op, fm_site site) {
    sim::Fiber& f = sim::fibers[sim::cur];
    f.st = sim::AT_SIMD;
    f.val = v;
    f.op = op;
    f.site = site;
    sim::yield();
    return f.res;
}

void fm_sim_barrier(fm_site site) {
    sim::Fiber& f = sim::fibers[sim::cur];
    f.st = sim::AT_BARRIER;
    f.site = site;
    sim::yield();
}

namespace metal {
float fm_sim_ulp(float r) {
    if (sim::ulps == 0 || !std::isfinite(r) || r == 0.0f) return r;
    sim::rng ^= sim::rng << 13;
    sim::rng ^= sim::rng >> 7;
    sim::rng ^= sim::rng << 17;
    int k = (int)(sim::rng % (uint64_t)(2 * sim::ulps + 1)) - sim::ulps;
    for (; k > 0; k--) r = std::nextafter(r, INFINITY);
    for (; k < 0; k++) r = std::nextafter(r, -INFINITY);
    return r;
}
}  // namespace metal

#include "kernels.metal"

#undef kernel
#undef thread
#undef device
#undef constant
#undef threadgroup

namespace sim {

struct Arg {
    bool buf;
    char kind;  // scalars: 'i' int32, 'f' float32
    char* ptr;
    uint32_t word;
};

struct Launch {
    const char* name;
    std::vector<Arg> args;
    char* shared;
    uint32_t sharedLen;
    uint3 ids[4];  // tid (unused: the fiber's index), bid, bdim, gdim: KERNEL_IDS order
};

template <class P>
bool check(Launch& L, size_t i, size_t nargs) {
    auto bad = [&](const std::string& m) {
        fail(std::string(L.name) + ": parameter " + std::to_string(i) + ": " + m);
        return false;
    };
    if constexpr (std::is_same<P, uint3>::value) {
        return i >= nargs ? true : bad("host passed an argument where the kernel takes a thread id");
    } else if constexpr (std::is_pointer<P>::value) {
        if (i == nargs) return L.sharedLen > 0 ? true : bad("threadgroup memory parameter but no threadgroup memory length set");
        if (!L.args[i].buf) return bad("kernel takes a buffer, host passed a scalar");
        return true;
    } else {
        using T = typename std::remove_reference<P>::type;
        static_assert(std::is_same<T, int>::value || std::is_same<T, float>::value, "scalar parameters are int or float");
        if (i >= nargs) return bad("missing scalar argument");
        if (L.args[i].buf) return bad("kernel takes a scalar, host passed a buffer");
        char want = std::is_same<T, int>::value ? 'i' : 'f';
        if (L.args[i].kind != want) return bad(std::string("kernel takes ") + (want == 'i' ? "int" : "float") + ", host passed the other");
        return true;
    }
}

template <class P>
P get(Launch& L, size_t i, size_t nargs) {
    if constexpr (std::is_same<P, uint3>::value) {
        size_t k = i - nargs - (L.sharedLen > 0 ? 1 : 0);
        return k == 0 ? uint3{(uint)cur, 0, 0} : L.ids[k];  // read as the fiber starts
    } else if constexpr (std::is_pointer<P>::value) {
        return reinterpret_cast<P>(i == nargs ? L.shared : L.args[i].ptr);
    } else {
        using T = typename std::remove_reference<P>::type;
        return *reinterpret_cast<T*>(&L.args[i].word);
    }
}

struct Kernel {
    std::function<bool(Launch&)> check;
    std::function<void(Launch&)> call;
};

template <class... P, size_t... I>
Kernel makeKernel(void (*fn)(P...), std::index_sequence<I...>) {
    Kernel k;
    k.check = [](Launch& L) {
        size_t n = L.args.size(), extra = sizeof...(P) - n;
        if (sizeof...(P) < n + 4 || extra > 5) {
            fail(std::string(L.name) + ": kernel takes " + std::to_string(sizeof...(P) - 4) +
                 " arguments (with threadgroup memory), host passed " + std::to_string(n));
            return false;
        }
        if ((extra == 5) != (L.sharedLen > 0)) {
            fail(std::string(L.name) + ": threadgroup memory length set for a kernel without a threadgroup parameter, or not set for one with it");
            return false;
        }
        return (check<P>(L, I, n) && ...);
    };
    k.call = [fn](Launch& L) { fn(get<P>(L, I, L.args.size())...); };
    return k;
}

template <class... P>
Kernel makeKernel(void (*fn)(P...)) {
    return makeKernel(fn, std::index_sequence_for<P...>{});
}

std::map<std::string, Kernel> kernels() {
    std::map<std::string, Kernel> m;
#define FM_KERNEL(name) m[#name] = makeKernel(&name);
#include "kernels.inc"
#undef FM_KERNEL
    return m;
}

struct Buf {
    char* p;
    uint64_t n;
};
std::map<uint64_t, Buf> bufs;

void rd(void* p, size_t n) {
    if (n && fread(p, 1, n, stdin) != n) exit(0);  // host went away
}
template <class T>
T rd() {
    T v;
    rd(&v, sizeof v);
    return v;
}
void wr(const void* p, size_t n) { fwrite(p, 1, n, stdout); }

char* at(uint64_t id, uint64_t off, uint64_t n, const char* what) {
    auto it = bufs.find(id);
    if (it == bufs.end() || off > it->second.n || n > it->second.n - off) {
        fail(std::string(what) + ": range outside buffer " + std::to_string(id));
        return nullptr;
    }
    return it->second.p + off;
}

}  // namespace sim

int main() {
    using namespace sim;
    if (const char* u = getenv("FMOE_MOCK_ULP")) ulps = atoi(u);
    std::map<std::string, Kernel> ks = kernels();
    std::vector<char> scratch;
    for (;;) {
        int op = getchar();
        if (op == EOF) return 0;
        switch (op) {
        case 'N': {  // list kernels
            std::string s;
            for (auto& k : ks) s += k.first + "\n";
            uint32_t n = s.size();
            wr(&n, 4);
            wr(s.data(), n);
            fflush(stdout);
            break;
        }
        case 'A': {  // alloc id bytes (zeroed, 16-aligned like a Metal buffer)
            uint64_t id = rd<uint64_t>(), n = rd<uint64_t>();
            size_t sz = (n + 15) / 16 * 16;
            char* p = (char*)aligned_alloc(16, sz ? sz : 16);
            memset(p, 0, sz);
            bufs[id] = Buf{p, n};
            break;
        }
        case 'F': {
            uint64_t id = rd<uint64_t>();
            auto it = bufs.find(id);
            if (it != bufs.end()) {
                free(it->second.p);
                bufs.erase(it);
            }
            break;
        }
        case 'W': {  // write id off n bytes
            uint64_t id = rd<uint64_t>(), off = rd<uint64_t>(), n = rd<uint64_t>();
            scratch.resize(n);
            rd(scratch.data(), n);
            if (char* p = at(id, off, n, "write")) memcpy(p, scratch.data(), n);
            break;
        }
        case 'R': {  // read id off n -> bytes
            uint64_t id = rd<uint64_t>(), off = rd<uint64_t>(), n = rd<uint64_t>();
            scratch.assign(n, 0);
            if (char* p = at(id, off, n, "read")) memcpy(scratch.data(), p, n);
            wr(scratch.data(), n);
            fflush(stdout);
            break;
        }
        case 'C': {  // blit copy dst doff src soff n
            uint64_t d = rd<uint64_t>(), doff = rd<uint64_t>(), s = rd<uint64_t>(), soff = rd<uint64_t>(),
                     n = rd<uint64_t>();
            char* dp = at(d, doff, n, "copy dst");
            char* sp = at(s, soff, n, "copy src");
            if (dp && sp) memmove(dp, sp, n);
            break;
        }
        case 'Z': {  // blit fill zero id off n
            uint64_t id = rd<uint64_t>(), off = rd<uint64_t>(), n = rd<uint64_t>();
            if (char* p = at(id, off, n, "fill")) memset(p, 0, n);
            break;
        }
        case 'D': {  // dispatch
            uint32_t nl = rd<uint32_t>();
            std::string name(nl, 0);
            rd(&name[0], nl);
            uint32_t gx = rd<uint32_t>(), gy = rd<uint32_t>(), tx = rd<uint32_t>(), sh = rd<uint32_t>(),
                     na = rd<uint32_t>();
            Launch L;
            L.name = name.c_str();
            L.sharedLen = sh;
            bool ok = true;
            for (uint32_t i = 0; i < na; i++) {
                Arg a{};
                char kind = (char)getchar();
                if (kind == 'b') {
                    uint64_t id = rd<uint64_t>(), off = rd<uint64_t>();
                    a.buf = true;
                    a.ptr = at(id, off, 0, "dispatch argument");
                    ok = ok && a.ptr;
                } else {
                    a.kind = kind;
                    a.word = rd<uint32_t>();
                }
                L.args.push_back(a);
            }
            auto k = ks.find(name);
            if (k == ks.end()) {
                fail("no kernel named " + name);
                break;
            }
            if (!ok || !k->second.check(L)) break;
            if (tx == 0 || tx > 1024 || gx == 0 || gy == 0) {
                fail(name + ": bad dispatch grid " + std::to_string(gx) + "x" + std::to_string(gy) + " of " +
                     std::to_string(tx) + " threads");
                break;
            }
            std::vector<float> shared((sh + 3) / 4 + 4, NAN);
            L.shared = (char*)(((uintptr_t)shared.data() + 15) & ~(uintptr_t)15);
            L.ids[2] = uint3{tx, 1, 1};
            L.ids[3] = uint3{gx, gy, 1};
            for (uint32_t by = 0; by < gy && err.empty(); by++) {
                for (uint32_t bx = 0; bx < gx && err.empty(); bx++) {
                    std::fill(shared.begin(), shared.end(), NAN);
                    L.ids[1] = uint3{bx, by, 0};
                    body = [&](int) { k->second.call(L); };
                    runGroup((int)tx, L.name);
                }
            }
            break;
        }
        case 'S': {  // sync -> status
            uint32_t n = err.size();
            wr(&n, 4);
            wr(err.data(), n);
            fflush(stdout);
            err.clear();
            break;
        }
        default:
            fprintf(stderr, "metalsim: unknown command %d\n", op);
            return 2;
        }
    }
}
