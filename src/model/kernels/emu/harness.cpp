// Runs one launch of ossterm's CUDA kernels on the CPU (see include/cuda_emu.h), for the
// tests in src/model/kernels/emu.rs:
//
//   kernel-emu SPEC
//
// SPEC has one item per line: `kernel NAME`, `grid X Y Z`, `block X Y Z`, then the kernel's
// arguments in order: `in FILE ELEMENT_BYTES OFFSET` (a pointer OFFSET elements into FILE's
// bytes), `out FILE BYTES` (written to FILE afterwards), `inout FILE` (read from FILE and
// written back: scratch an earlier launch filled), `scratch BYTES`, `i32 V`, `i64 V`,
// `f32 BITS`. Each argument is checked against the kernel's C signature (pointer or value,
// size and kind) before anything runs. The launch runs twice, with the threads and blocks
// scheduled in opposite orders; outputs that differ (a race) or inputs that changed are errors.
// Exit status: 0 ok, 2 a bad spec, argument or result, 3 a fault while running (see stderr).

#include <algorithm>
#include <fstream>
#include <functional>
#include <iostream>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>

#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include "cuda_emu.h"

// Each file in its own namespace: both define their small helpers (load_f, store_f).
namespace moe {
#include "../q4_0_moe.cu"
}
namespace attention {
#include "../attention.cu"
}
namespace dense {
#include "../dense.cu"
}

namespace {

[[noreturn]] void bad(const std::string& what) {
    std::cerr << "kernel emulator: " << what << "\n";
    exit(2);
}

enum class Kind { Input, Output, InOut, Scratch, I32, I64, F32 };

struct Param {
    Kind kind;
    std::string file;
    size_t element_bytes = 1, offset = 0, bytes = 0;
    uint64_t value = 0;  // scalar bits
};

// One buffer, placed so that it ends next to an inaccessible page (reads past its end fault:
// see `on_fault`) and starts 256-byte aligned, as cudaMalloc's do.
struct Region {
    uint8_t* data = nullptr;
    size_t size = 0;
};

Region map_region(size_t size) {
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    const size_t pages = (size + 256 + page - 1) / page + 1;
    uint8_t* base = (uint8_t*)mmap(nullptr, pages * page, PROT_READ | PROT_WRITE,
                                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) bad("out of memory");
    uint8_t* guard = base + (pages - 1) * page;
    mprotect(guard, page, PROT_NONE);
    return Region{(uint8_t*)((uintptr_t)(guard - size) & ~(uintptr_t)255), size};
}

std::vector<uint8_t> read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) bad("cannot read " + path);
    return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

// Buffers of one run: inputs copied from their files, outputs and scratch filled with 0xFF
// (NaN for floats) so that values a kernel forgets to write show.
struct Buffers {
    std::vector<Region> regions;
    std::vector<void*> pointers;  // per parameter, null for scalars
};

bool is_buffer(Kind kind) {
    return kind == Kind::Input || kind == Kind::Output || kind == Kind::InOut || kind == Kind::Scratch;
}

Buffers allocate(const std::vector<Param>& params) {
    Buffers b;
    for (const Param& p : params) {
        void* pointer = nullptr;
        if (is_buffer(p.kind)) {
            if (p.kind == Kind::Input || p.kind == Kind::InOut) {
                const std::vector<uint8_t> bytes = read_file(p.file);
                if (p.offset * p.element_bytes > bytes.size()) bad("offset past the end of " + p.file);
                Region r = map_region(bytes.size());
                memcpy(r.data, bytes.data(), bytes.size());
                b.regions.push_back(r);
                pointer = r.data + p.offset * p.element_bytes;
            } else {
                Region r = map_region(p.bytes);
                memset(r.data, 0xFF, p.bytes);
                b.regions.push_back(r);
                pointer = r.data;
            }
        }
        b.pointers.push_back(pointer);
    }
    return b;
}

void on_fault(int) {
    static const char message[] =
        "kernel emulator: a kernel read or wrote outside its buffers (segmentation fault)\n";
    (void)!write(2, message, sizeof message - 1);
    _exit(3);
}

// One kernel argument of C type A from a parameter: checks, then converts.
template <typename A>
void check(const Param& p, size_t i) {
    const bool pointer = is_buffer(p.kind);
    std::string want;
    if (std::is_pointer<A>::value) {
        if (!pointer) want = "a pointer";
    } else if (std::is_same<A, int>::value) {
        if (p.kind != Kind::I32) want = "an i32";
    } else if (std::is_same<A, long long>::value) {
        if (p.kind != Kind::I64) want = "an i64";
    } else if (std::is_same<A, float>::value) {
        if (p.kind != Kind::F32) want = "an f32";
    } else {
        want = "a type the emulator does not know";
    }
    if (!want.empty()) bad("argument " + std::to_string(i) + ": the kernel takes " + want);
}

template <typename A>
A convert(const Param& p, void* pointer) {
    if constexpr (std::is_pointer<A>::value) {
        return reinterpret_cast<A>(pointer);
    } else {
        A value;
        memcpy(&value, &p.value, sizeof(A));
        return value;
    }
}

struct Kernel {
    std::function<void(const std::vector<Param>&)> check;
    std::function<void(const std::vector<Param>&, const std::vector<void*>&)> call;
};

template <typename... A, size_t... I>
Kernel make_kernel(void (*f)(A...), std::index_sequence<I...>) {
    return Kernel{
        [](const std::vector<Param>& p) {
            if (p.size() != sizeof...(A)) {
                bad("the kernel takes " + std::to_string(sizeof...(A)) + " arguments, the launch has " +
                    std::to_string(p.size()));
            }
            (check<A>(p[I], I), ...);
        },
        [f](const std::vector<Param>& p, const std::vector<void*>& ptr) {
            f(convert<A>(p[I], ptr[I])...);
        }};
}

template <typename... A>
Kernel make_kernel(void (*f)(A...)) {
    return make_kernel(f, std::index_sequence_for<A...>{});
}

#define KERNEL(file, f) {#f, make_kernel(file::f)}

const std::vector<std::pair<std::string, Kernel>>& kernels() {
    static const std::vector<std::pair<std::string, Kernel>> table = {
        KERNEL(moe, q4_0_indexed_matvec_f32),
        KERNEL(moe, q4_0_indexed_matvec_bf16),
        KERNEL(moe, q4_0_dequantize_expert_f32),
        KERNEL(moe, q4_0_dequantize_expert_bf16),
        KERNEL(moe, moe_route_top_k_f32),
        KERNEL(moe, moe_route_top_k_bf16),
        KERNEL(moe, moe_swiglu_f32),
        KERNEL(moe, moe_combine_f32),
        KERNEL(moe, moe_combine_bf16),
        KERNEL(attention, attention_decode_f32),
        KERNEL(attention, attention_decode_bf16),
        KERNEL(attention, attention_decode_f32_bf16),
        KERNEL(attention, attention_decode_split_f32_bf16),
        KERNEL(attention, attention_decode_split_f32),
        KERNEL(attention, attention_decode_split_bf16),
        KERNEL(attention, attention_decode_combine_f32),
        KERNEL(attention, attention_decode_combine_bf16),
        KERNEL(dense, bf16_matvec_f32),
    };
    return table;
}

// The launch's body, which every fiber runs.
std::function<void()> body;

void trampoline() {
    body();
    emu::threads[emu::current].wait = emu::Wait::Done;
}

constexpr size_t STACK_BYTES = 64 * 1024;

// Runs every block of the launch, threads and blocks in reverse order when `reverse`.
void run(dim3 grid, dim3 block, bool reverse) {
    const unsigned n = block.x * block.y * block.z;
    static std::vector<std::vector<uint8_t>> stacks;
    stacks.resize(n);
    for (auto& s : stacks) s.resize(STACK_BYTES);
    emu::threads.assign(n, emu::Thread{});
    gridDim = grid;
    blockDim = block;
    const size_t blocks = (size_t)grid.x * grid.y * grid.z;
    for (size_t step = 0; step < blocks; step++) {
        const size_t b = reverse ? blocks - 1 - step : step;
        blockIdx = dim3{(unsigned)(b % grid.x), (unsigned)(b / grid.x % grid.y),
                        (unsigned)(b / ((size_t)grid.x * grid.y))};
        for (unsigned i = 0; i < n; i++) {
            emu::Thread& t = emu::threads[i];
            t.index = dim3{i % block.x, i / block.x % block.y, i / (block.x * block.y)};
            t.linear = i;
            t.wait = emu::Wait::Running;
            getcontext(&t.context);
            t.context.uc_stack.ss_sp = stacks[i].data();
            t.context.uc_stack.ss_size = STACK_BYTES;
            t.context.uc_link = &emu::scheduler;
            makecontext(&t.context, trampoline, 0);
        }
        for (;;) {
            for (unsigned k = 0; k < n; k++) {
                const unsigned i = reverse ? n - 1 - k : k;
                if (emu::threads[i].wait != emu::Wait::Running) continue;
                emu::current = i;
                threadIdx = emu::threads[i].index;
                swapcontext(&emu::scheduler, &emu::threads[i].context);
            }
            // Every thread now waits at a barrier or is done: release what can be released.
            bool live = false, released = false, all_at_block = true;
            for (unsigned w = 0; w * 32 < n; w++) {
                const unsigned end = std::min(n, w * 32 + 32);
                bool any = false, all = true;
                for (unsigned i = w * 32; i < end; i++) {
                    any |= emu::threads[i].wait == emu::Wait::Warp;
                    all &= emu::threads[i].wait == emu::Wait::Warp;
                }
                if (any && (!all || end - w * 32 != 32)) {
                    if (std::none_of(emu::threads.begin() + w * 32, emu::threads.begin() + end,
                                     [](const emu::Thread& t) { return t.wait == emu::Wait::Block; })) {
                        emu::fail("a warp shuffle without all 32 lanes");
                    }
                }
                if (any && all && end - w * 32 == 32) {
                    for (unsigned i = w * 32; i < end; i++) emu::threads[i].wait = emu::Wait::Running;
                    released = true;
                }
            }
            for (const emu::Thread& t : emu::threads) {
                live |= t.wait != emu::Wait::Done;
                all_at_block &= t.wait == emu::Wait::Block || t.wait == emu::Wait::Done;
            }
            if (!live) break;
            if (!released && all_at_block) {
                for (emu::Thread& t : emu::threads) {
                    if (t.wait == emu::Wait::Block) t.wait = emu::Wait::Running;
                }
                released = true;
            }
            if (!released) emu::fail("deadlock: threads wait at barriers that can never release");
        }
    }
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) bad("usage: kernel-emu SPEC");
    std::ifstream spec(argv[1]);
    if (!spec) bad(std::string("cannot read ") + argv[1]);
    std::string name, line;
    dim3 grid, block;
    std::vector<Param> params;
    while (std::getline(spec, line)) {
        std::istringstream words(line);
        std::string key;
        if (!(words >> key)) continue;
        Param p;
        if (key == "kernel") {
            words >> name;
            continue;
        } else if (key == "grid") {
            words >> grid.x >> grid.y >> grid.z;
            continue;
        } else if (key == "block") {
            words >> block.x >> block.y >> block.z;
            continue;
        } else if (key == "in") {
            p.kind = Kind::Input;
            words >> p.file >> p.element_bytes >> p.offset;
        } else if (key == "out") {
            p.kind = Kind::Output;
            words >> p.file >> p.bytes;
        } else if (key == "inout") {
            p.kind = Kind::InOut;
            words >> p.file;
        } else if (key == "scratch") {
            p.kind = Kind::Scratch;
            words >> p.bytes;
        } else if (key == "i32") {
            p.kind = Kind::I32;
            int32_t v;
            words >> v;
            memcpy(&p.value, &v, 4);
        } else if (key == "i64") {
            p.kind = Kind::I64;
            int64_t v;
            words >> v;
            memcpy(&p.value, &v, 8);
        } else if (key == "f32") {
            p.kind = Kind::F32;
            uint32_t bits;
            words >> bits;
            memcpy(&p.value, &bits, 4);
        } else {
            bad("unknown spec line: " + line);
        }
        if (words.fail()) bad("bad spec line: " + line);
        params.push_back(p);
    }
    const auto& table = kernels();
    const auto entry = std::find_if(table.begin(), table.end(),
                                    [&](const auto& e) { return e.first == name; });
    if (entry == table.end()) bad("no kernel named '" + name + "'");
    const Kernel& kernel = entry->second;
    kernel.check(params);
    // CUDA's limits: a launch past them fails on the GPU, so it fails here.
    const unsigned long long threads = (unsigned long long)block.x * block.y * block.z;
    if (threads == 0 || threads > 1024 || block.z > 64 || grid.x == 0 || grid.y == 0 ||
        grid.z == 0 || grid.y > 65535 || grid.z > 65535) {
        bad("launch configuration outside CUDA's limits");
    }

    signal(SIGSEGV, on_fault);
    signal(SIGBUS, on_fault);
    Buffers runs[2] = {allocate(params), allocate(params)};
    for (int r = 0; r < 2; r++) {
        const std::vector<void*>& pointers = runs[r].pointers;
        body = [&kernel, &params, &pointers] { kernel.call(params, pointers); };
        run(grid, block, r == 1);
    }
    size_t buffer = 0;
    for (const Param& p : params) {
        if (!is_buffer(p.kind)) continue;
        const Region a = runs[0].regions[buffer], b = runs[1].regions[buffer];
        buffer++;
        if (p.kind == Kind::Input) {
            const std::vector<uint8_t> original = read_file(p.file);
            if (memcmp(a.data, original.data(), a.size) || memcmp(b.data, original.data(), b.size)) {
                bad("the kernel wrote to an input");
            }
        } else if (p.kind == Kind::Output || p.kind == Kind::InOut) {
            if (memcmp(a.data, b.data, a.size)) {
                bad("the result depends on the order threads run in (a race)");
            }
            std::ofstream out(p.file, std::ios::binary);
            out.write(reinterpret_cast<const char*>(a.data), (std::streamsize)a.size);
            if (!out) bad("cannot write " + p.file);
        }
    }
    return 0;
}
