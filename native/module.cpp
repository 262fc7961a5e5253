// Python bindings of the native engine (fastmdm._native). Batch functions take preallocated
// C-contiguous numpy arrays, release the GIL, and spread puzzles over std::threads; every puzzle
// depends only on its own inputs (and its global index, for generation), never on the threads.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "sudoku.h"

namespace nb = nanobind;

namespace {

using Grids = nb::ndarray<int8_t, nb::shape<-1, 81>, nb::c_contig, nb::device::cpu>;
using Bytes = nb::ndarray<int8_t, nb::shape<-1>, nb::c_contig, nb::device::cpu>;
using Ints = nb::ndarray<int32_t, nb::shape<-1>, nb::c_contig, nb::device::cpu>;

int resolve_threads(int threads, size_t n) {
    if (threads <= 0) threads = int(std::max(1u, std::thread::hardware_concurrency()));
    return int(std::max<size_t>(1, std::min<size_t>(size_t(threads), n)));
}

// Runs fn(i) for i in [0, n) on `threads` threads, handing out small chunks dynamically.
template <class F>
void parallel_for(size_t n, int threads, F fn) {
    threads = resolve_threads(threads, n);
    if (threads == 1) {
        for (size_t i = 0; i < n; ++i) fn(i);
        return;
    }
    std::atomic<size_t> next{0};
    const size_t chunk = 8;
    auto work = [&]() {
        for (;;) {
            size_t lo = next.fetch_add(chunk);
            if (lo >= n) return;
            size_t hi = std::min(n, lo + chunk);
            for (size_t i = lo; i < hi; ++i) fn(i);
        }
    };
    std::vector<std::thread> pool;
    pool.reserve(size_t(threads - 1));
    for (int t = 1; t < threads; ++t) pool.emplace_back(work);
    work();
    for (auto& t : pool) t.join();
}

void check_rows(size_t n, size_t m, const char* name) {
    if (n != m)
        throw std::invalid_argument(std::string(name) + " has " + std::to_string(m) +
                                    " rows, expected " + std::to_string(n));
}

}  // namespace

NB_MODULE(_native, m) {
    m.doc() = "fastmdm native engine (C++17)";
    m.def("compiler", []() {
#if defined(__clang__)
        return std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
        return std::string("gcc ") + __VERSION__;
#else
        return std::string("unknown");
#endif
    }, "The compiler that built this module.");

    m.def(
        "sudoku_generate",
        [](Grids puzzles, Grids solutions, Grids order, Grids strategy, Bytes difficulty, Ints attempts,
           uint64_t start, uint64_t seed, int split, int min_clues, int max_clues, int threads) {
            const size_t n = puzzles.shape(0);
            check_rows(n, solutions.shape(0), "solutions");
            check_rows(n, order.shape(0), "order");
            check_rows(n, strategy.shape(0), "strategy");
            check_rows(n, difficulty.shape(0), "difficulty");
            check_rows(n, attempts.shape(0), "attempts");
            if (split != 0 && split != 1) throw std::invalid_argument("split must be 0 or 1");
            int8_t* p = puzzles.data();
            int8_t* s = solutions.data();
            int8_t* o = order.data();
            int8_t* g = strategy.data();
            int8_t* d = difficulty.data();
            int32_t* a = attempts.data();
            nb::gil_scoped_release release;
            parallel_for(n, threads, [&](size_t i) {
                const uint64_t sd = sudoku::derive_seed(seed, uint64_t(split), start + i);
                a[i] = sudoku::generate_one(sd, split, min_clues, max_clues, p + 81 * i, s + 81 * i,
                                            o + 81 * i, g + 81 * i, d + i);
            });
        },
        nb::arg("puzzles"), nb::arg("solutions"), nb::arg("order"), nb::arg("strategy"),
        nb::arg("difficulty"), nb::arg("attempts"), nb::arg("start"), nb::arg("seed"), nb::arg("split"),
        nb::arg("min_clues"), nb::arg("max_clues"), nb::arg("threads"),
        "Fill rows [0, n) with puzzles start..start+n-1 of a split (0 standard, 1 hard).");

    m.def("sudoku_max_attempts", []() { return sudoku::kMaxAttempts; },
          "Candidate puzzles drawn per requested puzzle before sudoku_generate gives up (attempts -1).");

    m.def(
        "sudoku_count",
        [](Grids puzzles, int limit, Ints counts, Grids solutions, int threads, bool plain) {
            const size_t n = puzzles.shape(0);
            check_rows(n, counts.shape(0), "counts");
            check_rows(n, solutions.shape(0), "solutions");
            const int8_t* p = puzzles.data();
            int32_t* c = counts.data();
            int8_t* s = solutions.data();
            nb::gil_scoped_release release;
            parallel_for(n, threads, [&](size_t i) {
                std::fill(s + 81 * i, s + 81 * (i + 1), int8_t(0));
                c[i] = plain ? sudoku::count_solutions_plain(p + 81 * i, limit, s + 81 * i)
                             : sudoku::count_solutions(p + 81 * i, limit, s + 81 * i);
            });
        },
        nb::arg("puzzles"), nb::arg("limit"), nb::arg("counts"), nb::arg("solutions"), nb::arg("threads"), nb::arg("plain") = false,
        "Count solutions up to `limit` (0 for clashing givens); write the first one found (zeros if none). plain: the search without propagation.");

    m.def(
        "sudoku_grade",
        [](Grids puzzles, std::optional<Grids> solutions, Grids order, Grids strategy, Bytes difficulty,
           int max_strategy, int threads) {
            const size_t n = puzzles.shape(0);
            if (solutions) check_rows(n, solutions->shape(0), "solutions");
            check_rows(n, order.shape(0), "order");
            check_rows(n, strategy.shape(0), "strategy");
            check_rows(n, difficulty.shape(0), "difficulty");
            const int8_t* p = puzzles.data();
            const int8_t* s = solutions ? solutions->data() : nullptr;
            int8_t* o = order.data();
            int8_t* g = strategy.data();
            int8_t* d = difficulty.data();
            nb::gil_scoped_release release;
            parallel_for(n, threads, [&](size_t i) {
                d[i] = int8_t(sudoku::grade(p + 81 * i, s ? s + 81 * i : nullptr, o + 81 * i, g + 81 * i, max_strategy));
            });
        },
        nb::arg("puzzles"), nb::arg("solutions").none(), nb::arg("order"), nb::arg("strategy"),
        nb::arg("difficulty"), nb::arg("max_strategy"), nb::arg("threads"),
        "Grade puzzles with the strategies up to max_strategy (guessing from `solutions` when stuck, if given).");

    m.def(
        "sudoku_hardness",
        [](Grids boards, std::optional<Grids> hardness, std::optional<Grids> immediate, int threads) {
            const size_t n = boards.shape(0);
            if (hardness) check_rows(n, hardness->shape(0), "hardness");
            if (immediate) check_rows(n, immediate->shape(0), "immediate");
            const int8_t* b = boards.data();
            int8_t* h = hardness ? hardness->data() : nullptr;
            int8_t* im = immediate ? immediate->data() : nullptr;
            nb::gil_scoped_release release;
            parallel_for(n, threads, [&](size_t i) {
                if (h) {
                    sudoku::cell_hardness(b + 81 * i, h + 81 * i, im ? im + 81 * i : nullptr);
                } else if (im) {
                    sudoku::immediate_singles(b + 81 * i, im + 81 * i);
                }
            });
        },
        nb::arg("boards"), nb::arg("hardness").none(), nb::arg("immediate").none(), nb::arg("threads"),
        "Per-cell hardness class (the easiest max_strategy whose propagating grader places the blank; 7 "
        "beyond the seven; -1 filled; -2 contradictory board) and/or immediate singles (0 naked, 1 hidden, "
        "2 neither on the board as given).");

    m.def(
        "sudoku_apply_strategy",
        [](nb::ndarray<int8_t, nb::shape<81>, nb::c_contig, nb::device::cpu> grid,
           nb::ndarray<uint16_t, nb::shape<81>, nb::c_contig, nb::device::cpu> cand, int strategy) {
            if (strategy < 0 || strategy >= sudoku::kNumStrategies)
                throw std::invalid_argument("strategy must be in [0, 7)");
            return sudoku::apply_strategy(grid.data(), cand.data(), strategy);
        },
        nb::arg("grid"), nb::arg("cand"), nb::arg("strategy"),
        "Apply one strategy once to a hand-built candidate position (in place): 1 progress, 0 none, -1 contradiction.");
}
