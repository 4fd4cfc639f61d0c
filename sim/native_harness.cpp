// bitplane native bulk-simulation harness (Verilator, C++).
//
// Streams whole files of frames through an accelerator top with the DESIGN.md section 5
// ports (clk, rst, s_axis_*, m_axis_*, s_axil_*) without Python in the loop:
//
//   harness --regs REGS --in IN --in-frame-words N --out OUT --out-frame-words M --frames F
//           [--weights W] [--seed S] [--gap-pct P] [--stall-pct Q] [--max-cycles C]
//           [--read-regs R] [--fst FILE] [--parent-pid PID] [--wait-clear OFF:MASK]
//
// --wait-clear: after the weights, read register OFF until (value & MASK) == 0 before the
// frames (the weight loader takes the image's last words after s_axis did; host/driver.py
// waits the same way, so the frames' timing is the same in both).
//
// REGS: text lines "w OFFSET VALUE" (AXI4-Lite writes before streaming, hex or decimal).
// IN / W / OUT: beats of the s_axis / m_axis tdata width (any width up to 512 bits), each as
// little-endian uint64 limbs (IN_LIMBS / OUT_LIMBS = tdata width rounded up to 64 bits); N and
// M count beats. W, when given, is sent as one frame (tlast on its last beat) after writing
// CTRL.LOAD_WEIGHTS via REGS. R: offsets read back over AXI4-Lite at the end.
// Random input gaps / output stalls (percent, seeded) exercise backpressure.
// Prints one JSON line: cycles, per-frame output completion cycles, register reads.
// PID (Linux): the harness is killed when that process, its parent, dies.
//
//   harness --serve [--seed S] [--gap-pct P] [--stall-pct Q] [--fst FILE]
//
// Device mode for the host driver's `sim` transport (sim/transport.py): commands on stdin,
// replies on stdout; the streams keep moving on every clock, also during register accesses.
//   w OFF VAL        AXI4-Lite write                        -> "ok"
//   r OFF            AXI4-Lite read                         -> "VAL"
//   s N <N x IN_LIMBS u64>   queue N s_axis beats (tlast on the last; the clock does not run) -> "ok"
//   g N C            run until N m_axis beats are buffered or C cycles passed, hand over
//                    up to N of them              -> "K" then K x (OUT_LIMBS u64 tdata, u64 tlast)
//   d                drop queued input and buffered output  -> "IN OUT" (beats dropped)
//   t N              run N cycles                           -> "ok"
//   c                cycle count and queued input beats     -> "CYCLES QUEUED"
//   q                quit
#include <array>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#ifdef __linux__
#include <csignal>
#include <sys/prctl.h>
#include <unistd.h>
#endif

#include "Vdut.h"
#include "verilated.h"
#ifdef BP_TRACE
#include "verilated_fst_c.h"
#endif

static Vdut* d;

// Beats of any tdata width as uint64 limbs: Verilator holds up to 64 bits in an integer,
// wider ports as VlWide (32-bit words).
constexpr size_t IN_LIMBS = (sizeof(Vdut::s_axis_tdata) + 7) / 8;
constexpr size_t OUT_LIMBS = (sizeof(Vdut::m_axis_tdata) + 7) / 8;
template <typename T> static void put_beat(T& port, const uint64_t* l) { port = (T)l[0]; }
template <std::size_t N> static void put_beat(VlWide<N>& port, const uint64_t* l) {
    for (size_t i = 0; i < N; i++) port.at(i) = (uint32_t)(l[i / 2] >> (32 * (i % 2)));
}
template <typename T> static void get_beat(const T& port, uint64_t* l) { l[0] = (uint64_t)port; }
template <std::size_t N> static void get_beat(const VlWide<N>& port, uint64_t* l) {
    for (size_t i = 0; i < (N + 1) / 2; i++) l[i] = 0;
    for (size_t i = 0; i < N; i++) l[i / 2] |= (uint64_t)port.at(i) << (32 * (i % 2));
}
static const uint64_t ZERO_BEAT[IN_LIMBS] = {0};
typedef std::array<uint64_t, IN_LIMBS> InBeat;
typedef std::array<uint64_t, OUT_LIMBS + 1> OutBeat;       // tdata limbs, then tlast
static uint64_t cycle = 0;
#ifdef BP_TRACE
static VerilatedFstC* tfp = nullptr;
#endif

static void tick() {
    d->clk = 1;
    d->eval();
#ifdef BP_TRACE
    if (tfp) tfp->dump(2 * cycle + 1);
#endif
    d->clk = 0;
    d->eval();
#ifdef BP_TRACE
    if (tfp) tfp->dump(2 * cycle + 2);
#endif
    cycle++;
}

// Serve mode: input queue and output buffer, advanced on every clock (also inside AXI4-Lite
// transactions).
static bool serving = false;
static std::deque<InBeat> inq;
static std::deque<bool> inlast;
static std::deque<OutBeat> outq;
static std::mt19937_64 srng;
static int sgap = 0, sstall = 0;

static void step() {
    if (!serving) { tick(); return; }
    std::uniform_int_distribution<int> pct(0, 99);
    bool offer = !inq.empty() && pct(srng) >= sgap;
    d->s_axis_tvalid = offer;
    put_beat(d->s_axis_tdata, offer ? inq.front().data() : ZERO_BEAT);
    d->s_axis_tlast = offer && inlast.front();
    d->m_axis_tready = pct(srng) >= sstall;
    d->eval();
    bool in_fire = offer && d->s_axis_tready;
    bool out_fire = d->m_axis_tvalid && d->m_axis_tready;
    OutBeat odata;
    get_beat(d->m_axis_tdata, odata.data());
    odata[OUT_LIMBS] = d->m_axis_tlast ? 1 : 0;
    tick();
    if (in_fire) { inq.pop_front(); inlast.pop_front(); }
    if (out_fire) outq.push_back(odata);
}

static void axil_write(uint32_t off, uint32_t val) {
    d->s_axil_awaddr = off; d->s_axil_awvalid = 1;
    d->s_axil_wdata = val; d->s_axil_wstrb = 0xF; d->s_axil_wvalid = 1;
    d->s_axil_bready = 1;
    bool aw = false, w = false;
    for (int i = 0; i < 1000 && !(aw && w); i++) {
        d->eval();
        bool awr = d->s_axil_awready, wr = d->s_axil_wready;
        step();
        if (awr) { aw = true; d->s_axil_awvalid = 0; }
        if (wr) { w = true; d->s_axil_wvalid = 0; }
    }
    for (int i = 0; i < 1000; i++) {
        d->eval();
        bool done = d->s_axil_bvalid;
        step();
        if (done) break;
    }
    d->s_axil_bready = 0;
}

static uint32_t axil_read(uint32_t off) {
    d->s_axil_araddr = off; d->s_axil_arvalid = 1; d->s_axil_rready = 1;
    for (int i = 0; i < 1000; i++) {
        d->eval();
        bool r = d->s_axil_arready;
        step();
        if (r) break;
    }
    d->s_axil_arvalid = 0;
    uint32_t v = 0;
    for (int i = 0; i < 1000; i++) {
        d->eval();
        bool ok = d->s_axil_rvalid;
        v = d->s_axil_rdata;
        step();
        if (ok) break;
    }
    d->s_axil_rready = 0;
    return v;
}

static std::vector<uint64_t> read_words(const char* path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) { fprintf(stderr, "harness: cannot open %s\n", path); exit(2); }
    std::vector<char> b((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    if (b.size() % 8) { fprintf(stderr, "harness: %s is not a whole number of 8-byte words\n", path); exit(2); }
    std::vector<uint64_t> w(b.size() / 8);
    memcpy(w.data(), b.data(), b.size());
    return w;
}

// Stream `words` (IN_LIMBS limbs a beat; frames of `frame_words` beats, tlast on each frame's
// last beat) while collecting output beats (OUT_LIMBS limbs each); returns false on timeout.
static bool stream(const std::vector<uint64_t>& words, uint64_t frame_words, std::vector<uint64_t>& out,
                   uint64_t out_frame_words, uint64_t expect_out, std::vector<uint64_t>* done_cycles,
                   std::mt19937_64& rng, int gap_pct, int stall_pct, uint64_t max_cycles) {
    size_t i = 0, nbeats = words.size() / IN_LIMBS, nout = 0;
    uint64_t start = cycle;
    std::uniform_int_distribution<int> pct(0, 99);
    uint64_t odata[OUT_LIMBS];
    while (i < nbeats || nout < expect_out) {
        if (cycle - start > max_cycles) return false;
        bool offer = i < nbeats && pct(rng) >= gap_pct;
        d->s_axis_tvalid = offer;
        put_beat(d->s_axis_tdata, offer ? &words[i * IN_LIMBS] : ZERO_BEAT);
        d->s_axis_tlast = offer && ((i + 1) % frame_words == 0);
        d->m_axis_tready = pct(rng) >= stall_pct;
        d->eval();
        bool in_fire = offer && d->s_axis_tready;
        bool out_fire = d->m_axis_tvalid && d->m_axis_tready;
        get_beat(d->m_axis_tdata, odata);
        bool olast = d->m_axis_tlast;
        tick();
        if (in_fire) i++;
        if (out_fire) {
            out.insert(out.end(), odata, odata + OUT_LIMBS);
            nout++;
            bool should_last = out_frame_words && (nout % out_frame_words == 0);
            if (out_frame_words && olast != should_last) {
                fprintf(stderr, "harness: m_axis_tlast %s at output beat %zu\n", olast ? "early" : "missing",
                        nout - 1);
                exit(3);
            }
            if (done_cycles && out_frame_words && nout % out_frame_words == 0) done_cycles->push_back(cycle);
        }
    }
    d->s_axis_tvalid = 0;
    return true;
}

static int serve() {
    serving = true;
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        char op = line[0];
        unsigned long long a = 0, b = 0;
        if (op == 'w') {
            sscanf(line + 1, "%llu %llu", &a, &b);
            axil_write((uint32_t)a, (uint32_t)b);
            printf("ok\n");
        } else if (op == 'r') {
            sscanf(line + 1, "%llu", &a);
            printf("%u\n", axil_read((uint32_t)a));
        } else if (op == 's') {
            sscanf(line + 1, "%llu", &a);
            std::vector<InBeat> w(a);
            if (a && fread(w.data(), 8 * IN_LIMBS, a, stdin) != a) {
                fprintf(stderr, "harness: short beat data\n");
                return 2;
            }
            for (uint64_t i = 0; i < a; i++) { inq.push_back(w[i]); inlast.push_back(i + 1 == a); }
            printf("ok\n");
        } else if (op == 'g') {
            sscanf(line + 1, "%llu %llu", &a, &b);
            for (uint64_t i = 0; i < b && outq.size() < a; i++) step();
            uint64_t k = outq.size() < a ? outq.size() : a;
            std::vector<OutBeat> w(outq.begin(), outq.begin() + k);
            outq.erase(outq.begin(), outq.begin() + k);
            printf("%llu\n", (unsigned long long)k);
            fflush(stdout);
            if (k) fwrite(w.data(), 8 * (OUT_LIMBS + 1), k, stdout);
        } else if (op == 'd') {
            printf("%zu %zu\n", inq.size(), outq.size());
            inq.clear(); inlast.clear(); outq.clear();
        } else if (op == 't') {
            sscanf(line + 1, "%llu", &a);
            for (uint64_t i = 0; i < a; i++) step();
            printf("ok\n");
        } else if (op == 'c') {
            printf("%llu %zu\n", (unsigned long long)cycle, inq.size());
        } else if (op == 'q') {
            break;
        } else {
            fprintf(stderr, "harness: unknown command %c\n", op);
            return 2;
        }
        fflush(stdout);
    }
    return 0;
}

int main(int argc, char** argv) {
    Verilated::commandArgs(argc, argv);
    bool serve_mode = false;
    for (int a = 1; a < argc; a++) {
        if (std::string(argv[a]) == "--serve") {
            serve_mode = true;
            for (int b = a; b + 1 < argc; b++) argv[b] = argv[b + 1];
            argc--;
            break;
        }
    }
    std::string regs, in, out_path, weights, read_regs, fst, wait_clear;
    uint64_t in_fw = 0, out_fw = 0, frames = 0, max_cycles = 2000000000ULL, seed = 1;
    int gap = 0, stall = 0;
    for (int a = 1; a + 1 < argc; a += 2) {
        std::string k = argv[a], v = argv[a + 1];
        if (k == "--regs") regs = v;
        else if (k == "--in") in = v;
        else if (k == "--out") out_path = v;
        else if (k == "--weights") weights = v;
        else if (k == "--read-regs") read_regs = v;
        else if (k == "--wait-clear") wait_clear = v;
        else if (k == "--fst") fst = v;
        else if (k == "--in-frame-words") in_fw = std::stoull(v);
        else if (k == "--out-frame-words") out_fw = std::stoull(v);
        else if (k == "--frames") frames = std::stoull(v);
        else if (k == "--seed") seed = std::stoull(v);
        else if (k == "--gap-pct") gap = std::stoi(v);
        else if (k == "--stall-pct") stall = std::stoi(v);
        else if (k == "--max-cycles") max_cycles = std::stoull(v);
        else if (k == "--parent-pid") {
            // Die with the process that started us (a Dask worker killed with its client would
            // otherwise leave a batch run computing for nobody). The check after prctl closes the
            // race of a parent that died before it.
#ifdef __linux__
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            if ((uint64_t)getppid() != std::stoull(v)) return 3;
#endif
        }
        else if (k.rfind("+", 0) == 0) { a -= 1; }
        else { fprintf(stderr, "harness: unknown option %s\n", k.c_str()); return 2; }
    }
    d = new Vdut;
#ifdef BP_TRACE
    if (!fst.empty()) {
        Verilated::traceEverOn(true);
        tfp = new VerilatedFstC;
        d->trace(tfp, 99);
        tfp->open(fst.c_str());
    }
#endif
    std::mt19937_64 rng(seed);
    d->clk = 0; d->rst = 1;
    d->s_axis_tvalid = 0; d->m_axis_tready = 0;
    d->s_axil_awvalid = 0; d->s_axil_wvalid = 0; d->s_axil_bready = 0; d->s_axil_arvalid = 0; d->s_axil_rready = 0;
    for (int i = 0; i < 4; i++) tick();
    d->rst = 0;
    tick();
    if (serve_mode) {
        srng.seed(seed);
        sgap = gap;
        sstall = stall;
        int rc = serve();
#ifdef BP_TRACE
        if (tfp) tfp->close();
#endif
        d->final();
        delete d;
        return rc;
    }
    if (!regs.empty()) {
        std::ifstream f(regs);
        std::string op;
        while (f >> op) {
            std::string so, sv;
            f >> so >> sv;
            uint32_t off = std::stoul(so, nullptr, 0), val = std::stoul(sv, nullptr, 0);
            if (op == "w") axil_write(off, val);
        }
    }
    uint64_t t_weights = 0;
    if (!weights.empty()) {
        std::vector<uint64_t> w = read_words(weights.c_str()), dummy;
        uint64_t t0 = cycle;
        if (!stream(w, w.size() / IN_LIMBS, dummy, 0, 0, nullptr, rng, 0, 0, max_cycles)) {
            fprintf(stderr, "harness: timeout while loading weights\n");
            return 4;
        }
        if (!wait_clear.empty()) {
            size_t colon = wait_clear.find(':');
            uint32_t off = std::stoul(wait_clear.substr(0, colon), nullptr, 0);
            uint32_t mask = std::stoul(wait_clear.substr(colon + 1), nullptr, 0);
            while (axil_read(off) & mask) {
                if (cycle - t0 > max_cycles) {
                    fprintf(stderr, "harness: timeout while the weight loader finishes\n");
                    return 4;
                }
            }
        }
        t_weights = cycle - t0;
    }
    std::vector<uint64_t> words = read_words(in.c_str());
    if (in_fw == 0 || words.size() != in_fw * frames * IN_LIMBS) {
        fprintf(stderr, "harness: %zu input limbs, expected %llu frames x %llu beats x %zu\n", words.size(),
                (unsigned long long)frames, (unsigned long long)in_fw, IN_LIMBS);
        return 2;
    }
    std::vector<uint64_t> out, done;
    uint64_t t0 = cycle;
    bool ok = stream(words, in_fw, out, out_fw, out_fw * frames, &done, rng, gap, stall, max_cycles);
    uint64_t t_stream = cycle - t0;
    std::ofstream fo(out_path, std::ios::binary);
    fo.write(reinterpret_cast<const char*>(out.data()), out.size() * 8);
    fo.close();
    std::ostringstream js;
    js << "{\"ok\": " << (ok ? "true" : "false") << ", \"weight_cycles\": " << t_weights
       << ", \"stream_cycles\": " << t_stream << ", \"frame_done\": [";
    for (size_t i = 0; i < done.size(); i++) js << (i ? ", " : "") << (done[i] - t0);
    js << "], \"regs\": {";
    if (!read_regs.empty()) {
        std::ifstream f(read_regs);
        std::string so;
        bool first = true;
        while (f >> so) {
            uint32_t off = std::stoul(so, nullptr, 0);
            js << (first ? "" : ", ") << "\"" << off << "\": " << axil_read(off);
            first = false;
        }
    }
    js << "}}";
    printf("%s\n", js.str().c_str());
#ifdef BP_TRACE
    if (tfp) tfp->close();
#endif
    d->final();
    delete d;
    return ok ? 0 : 5;
}
