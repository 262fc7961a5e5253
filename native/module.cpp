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

#include "nae.h"
#include "sudoku.h"

namespace nb = nanobind;

namespace {

using Grids = nb::ndarray<int8_t, nb::shape<-1, 81>, nb::c_contig, nb::device::cpu>;
using Bytes = nb::ndarray<int8_t, nb::shape<-1>, nb::c_contig, nb::device::cpu>;
using Ints = nb::ndarray<int32_t, nb::shape<-1>, nb::c_contig, nb::device::cpu>;
using Tokens = nb::ndarray<int8_t, nb::ndim<2>, nb::c_contig, nb::device::cpu>;
using Clauses = nb::ndarray<const int32_t, nb::ndim<2>, nb::c_contig, nb::device::cpu>;
using ClausesOut = nb::ndarray<int32_t, nb::ndim<2>, nb::c_contig, nb::device::cpu>;
using TokensIn = nb::ndarray<const int8_t, nb::ndim<2>, nb::c_contig, nb::device::cpu>;
using Flags = nb::ndarray<uint8_t, nb::ndim<2>, nb::c_contig, nb::device::cpu>;
using Int64s = nb::ndarray<int64_t, nb::shape<-1>, nb::c_contig, nb::device::cpu>;
using Int64Table = nb::ndarray<int64_t, nb::ndim<2>, nb::c_contig, nb::device::cpu>;

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

// The shape of an L&O-NAE-SAT task, read from its clause table [P, k]; checks `tokens` [n, N + P].
struct NaeShape {
    int n_latents, n_obs, k;
};

NaeShape nae_shape(int n_latents, const Clauses& clauses, size_t columns, const char* name) {
    const size_t p = clauses.shape(0), k = clauses.shape(1);
    if (n_latents < 2) throw std::invalid_argument("n_latents must be at least 2");
    if (k < 2 || k > size_t(nae::kMaxArity) || k > size_t(n_latents))
        throw std::invalid_argument("clauses must have between 2 and min(n_latents, 32) columns");
    if (columns != size_t(n_latents) + p)
        throw std::invalid_argument(std::string(name) + " has " + std::to_string(columns) + " columns, expected " +
                                    std::to_string(size_t(n_latents) + p) + " (latents + observations)");
    const int32_t* c = clauses.data();
    for (size_t i = 0; i < p * k; ++i)
        if (c[i] < 0 || c[i] >= n_latents) throw std::invalid_argument("clause index out of [0, n_latents)");
    return {n_latents, int(p), int(k)};
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

    m.def(
        "nae_clauses",
        [](ClausesOut clauses, int n_latents, uint64_t structure_seed) {
            const size_t p = clauses.shape(0), k = clauses.shape(1);
            if (k < 2 || k > size_t(nae::kMaxArity) || n_latents < 0 || k > size_t(n_latents))
                throw std::invalid_argument("clauses must have between 2 and min(n_latents, 32) columns");
            int32_t* c = clauses.data();
            bool ok;
            {
                nb::gil_scoped_release release;
                ok = nae::clauses(structure_seed, n_latents, int(k), p, c);
            }
            if (!ok)
                throw std::invalid_argument("more clauses than distinct sets of k latents (C(n_latents, k))");
        },
        nb::arg("clauses"), nb::arg("n_latents"), nb::arg("structure_seed"),
        "Fill clauses [P, k] with the clauses 0..P-1 of a structure seed (k distinct latents each, ascending; "
        "no two alike).");

    m.def("nae_binomial", [](int n, int k) { return nae::binomial(n, k); }, nb::arg("n"), nb::arg("k"),
          "C(n, k), saturated at 2**62.");

    m.def(
        "nae_generate",
        [](Tokens tokens, Clauses clauses, int n_latents, uint64_t start, uint64_t seed, int threads) {
            const NaeShape s = nae_shape(n_latents, clauses, tokens.shape(1), "tokens");
            const size_t n = tokens.shape(0), len = tokens.shape(1);
            int8_t* t = tokens.data();
            const int32_t* c = clauses.data();
            nb::gil_scoped_release release;
            parallel_for(n, threads, [&](size_t i) {
                nae::generate_one(seed, start + i, s.n_latents, s.n_obs, s.k, c, t + len * i);
            });
        },
        nb::arg("tokens"), nb::arg("clauses"), nb::arg("n_latents"), nb::arg("start"), nb::arg("seed"),
        nb::arg("threads"), "Fill rows [0, n) of tokens [n, N + P] with sequences start..start+n-1 of a seed.");

    m.def(
        "nae_check",
        [](TokensIn tokens, Clauses clauses, int n_latents, Flags ok_tokens, Ints bad, int threads) {
            const NaeShape s = nae_shape(n_latents, clauses, tokens.shape(1), "tokens");
            const size_t n = tokens.shape(0), len = tokens.shape(1);
            check_rows(n, ok_tokens.shape(0), "ok_tokens");
            check_rows(n, bad.shape(0), "bad");
            if (ok_tokens.shape(1) != len) throw std::invalid_argument("ok_tokens must have the shape of tokens");
            const int8_t* t = tokens.data();
            const int32_t* c = clauses.data();
            uint8_t* o = ok_tokens.data();
            int32_t* b = bad.data();
            nb::gil_scoped_release release;
            parallel_for(n, threads, [&](size_t i) {
                b[i] = nae::check_one(t + len * i, s.n_latents, s.n_obs, s.k, c, o + len * i);
            });
        },
        nb::arg("tokens"), nb::arg("clauses"), nb::arg("n_latents"), nb::arg("ok_tokens"), nb::arg("bad"),
        nb::arg("threads"),
        "Check completed sequences: ok_tokens [n, L] (1 where a position is consistent), bad [n] (positions not ok).");

    m.def(
        "nae_count",
        [](TokensIn tokens, Clauses clauses, int n_latents, int64_t limit, Int64s counts, std::optional<Int64Table> ones,
           int threads) {
            const NaeShape s = nae_shape(n_latents, clauses, tokens.shape(1), "tokens");
            const size_t n = tokens.shape(0), len = tokens.shape(1);
            check_rows(n, counts.shape(0), "counts");
            if (ones && (ones->shape(0) != n || ones->shape(1) != len))
                throw std::invalid_argument("ones must have the shape of tokens");
            const int8_t* t = tokens.data();
            const int32_t* c = clauses.data();
            int64_t* out = counts.data();
            int64_t* o = ones ? ones->data() : nullptr;
            nb::gil_scoped_release release;
            parallel_for(n, threads, [&](size_t i) {
                out[i] = nae::count_completions(t + len * i, s.n_latents, s.n_obs, s.k, c, limit,
                                                o ? o + len * i : nullptr);
            });
        },
        nb::arg("tokens"), nb::arg("clauses"), nb::arg("n_latents"), nb::arg("limit"), nb::arg("counts"),
        nb::arg("ones").none(), nb::arg("threads"),
        "Exact completion counts of partial sequences (mask 2), up to limit; with ones [n, L], the full count "
        "and per position the completions in which it is 1. -1 for a token outside 0, 1, 2.");
}
