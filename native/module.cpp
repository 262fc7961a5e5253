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
#include "zebra.h"

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
using Int32Table = nb::ndarray<int32_t, nb::ndim<2>, nb::c_contig, nb::device::cpu>;
using Cells = nb::ndarray<int8_t, nb::ndim<2>, nb::c_contig, nb::device::cpu>;
using FlagVec = nb::ndarray<uint8_t, nb::shape<-1>, nb::c_contig, nb::device::cpu>;

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

// The size of a Zebra task; checks a token table [rows, max_clues * 5 + m * n].
void zebra_size(int m, int n, int max_clues, size_t columns, const char* name) {
    if (m < 2 || m > zebra::kMaxHouses) throw std::invalid_argument("houses must be in [2, 8]");
    if (n < 2 || n > zebra::kMaxAttributes) throw std::invalid_argument("attributes must be in [2, 8]");
    if (max_clues < 1 || max_clues > zebra::kMaxClues) throw std::invalid_argument("max_clues must be in [1, 120]");
    const size_t want = size_t(max_clues) * zebra::kClueTokens + size_t(m) * size_t(n);
    if (columns != want)
        throw std::invalid_argument(std::string(name) + " has " + std::to_string(columns) + " columns, expected " +
                                    std::to_string(want) + " (max_clues * 5 + houses * attributes)");
}

void check_table(const char* name, size_t rows, size_t cols, size_t want_rows, size_t want_cols) {
    if (rows != want_rows || cols != want_cols)
        throw std::invalid_argument(std::string(name) + " must have shape [" + std::to_string(want_rows) + ", " +
                                    std::to_string(want_cols) + "]");
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

    m.def(
        "zebra_generate",
        [](Tokens tokens, Cells order, Cells technique, Cells clue, Int32Table stats, int m, int n, int max_clues,
           bool logic_only, uint64_t start, uint64_t seed, int threads) {
            zebra_size(m, n, max_clues, tokens.shape(1), "tokens");
            const size_t rows = tokens.shape(0), len = tokens.shape(1), cells = size_t(m) * size_t(n);
            check_table("order", order.shape(0), order.shape(1), rows, cells);
            check_table("technique", technique.shape(0), technique.shape(1), rows, cells);
            check_table("clue", clue.shape(0), clue.shape(1), rows, cells);
            check_table("stats", stats.shape(0), stats.shape(1), rows, 4);
            int8_t* t = tokens.data();
            int8_t* o = order.data();
            int8_t* g = technique.data();
            int8_t* c = clue.data();
            int32_t* st = stats.data();
            nb::gil_scoped_release release;
            parallel_for(rows, threads, [&](size_t i) {
                zebra::Stats s{};
                zebra::generate_one(seed, start + i, m, n, max_clues, logic_only, t + len * i, o + cells * i,
                                    g + cells * i, c + cells * i, &s);
                st[4 * i] = s.attempts;
                st[4 * i + 1] = s.clues;
                st[4 * i + 2] = s.guesses;
                st[4 * i + 3] = s.rounds;
            });
        },
        nb::arg("tokens"), nb::arg("order"), nb::arg("technique"), nb::arg("clue"), nb::arg("stats"), nb::arg("houses"),
        nb::arg("attributes"), nb::arg("max_clues"), nb::arg("logic_only"), nb::arg("start"), nb::arg("seed"),
        nb::arg("threads"),
        "Fill rows [0, n) with Zebra puzzles start..start+n-1 of a seed: tokens [n, L], the ordered solve per cell "
        "(order, technique, clue [n, m*n]) and stats [n, 4] (draws or -1, clues, guesses, propagation rounds).");

    m.def(
        "zebra_check",
        [](TokensIn tokens, int m, int n, int max_clues, Flags cell_ok, Flags clue_ok, FlagVec consistent,
           Ints solutions, int threads) {
            zebra_size(m, n, max_clues, tokens.shape(1), "tokens");
            const size_t rows = tokens.shape(0), len = tokens.shape(1), cells = size_t(m) * size_t(n);
            check_table("cell_ok", cell_ok.shape(0), cell_ok.shape(1), rows, cells);
            check_table("clue_ok", clue_ok.shape(0), clue_ok.shape(1), rows, size_t(max_clues));
            check_rows(rows, consistent.shape(0), "consistent");
            check_rows(rows, solutions.shape(0), "solutions");
            const int8_t* t = tokens.data();
            uint8_t* co = cell_ok.data();
            uint8_t* ko = clue_ok.data();
            uint8_t* cs = consistent.data();
            int32_t* so = solutions.data();
            nb::gil_scoped_release release;
            parallel_for(rows, threads, [&](size_t i) {
                so[i] = zebra::check_one(t + len * i, m, n, max_clues, co + cells * i, ko + size_t(max_clues) * i,
                                         cs + i);
            });
        },
        nb::arg("tokens"), nb::arg("houses"), nb::arg("attributes"), nb::arg("max_clues"), nb::arg("cell_ok"),
        nb::arg("clue_ok"), nb::arg("consistent"), nb::arg("solutions"), nb::arg("threads"),
        "Check completed puzzles: per cell whether it holds the (first) solution's value, per clue slot whether it "
        "holds, whether the grid is consistent; solutions [n]: 0, 1 or 2 (two or more), -1 - s for a bad clue slot s.");

    m.def(
        "zebra_solve",
        [](TokensIn tokens, int m, int n, int max_clues, Cells solution, Ints counts, Cells order, Cells technique,
           Cells clue, Int32Table stats, int threads) {
            zebra_size(m, n, max_clues, tokens.shape(1), "tokens");
            const size_t rows = tokens.shape(0), len = tokens.shape(1), cells = size_t(m) * size_t(n);
            check_table("solution", solution.shape(0), solution.shape(1), rows, cells);
            check_table("order", order.shape(0), order.shape(1), rows, cells);
            check_table("technique", technique.shape(0), technique.shape(1), rows, cells);
            check_table("clue", clue.shape(0), clue.shape(1), rows, cells);
            check_table("stats", stats.shape(0), stats.shape(1), rows, 2);
            check_rows(rows, counts.shape(0), "counts");
            const int8_t* t = tokens.data();
            int8_t* so = solution.data();
            int32_t* cn = counts.data();
            int8_t* o = order.data();
            int8_t* g = technique.data();
            int8_t* c = clue.data();
            int32_t* st = stats.data();
            nb::gil_scoped_release release;
            parallel_for(rows, threads, [&](size_t i) {
                const int8_t* row = t + len * i;
                int8_t* sol = so + cells * i;
                int8_t* oi = o + cells * i;
                int8_t* gi = g + cells * i;
                int8_t* ci = c + cells * i;
                std::fill(sol, sol + cells, int8_t(-1));
                std::fill(oi, oi + cells, int8_t(-1));
                std::fill(gi, gi + cells, int8_t(-1));
                std::fill(ci, ci + cells, int8_t(-1));
                st[2 * i] = -1;
                st[2 * i + 1] = 0;
                zebra::Clue clues[zebra::kMaxClues];
                const int nc = zebra::parse_clues(row, m, n, max_clues, clues);
                if (nc < 0) {
                    cn[i] = nc - 1;  // -2 - s: clue slot s is malformed (-1 is a bad cell token)
                    return;
                }
                int8_t given[zebra::kMaxItems];
                const int8_t* cell_tokens = row + size_t(max_clues) * zebra::kClueTokens;
                for (size_t k = 0; k < cells; ++k) {
                    const int v = cell_tokens[k];
                    if (v == zebra::kMask) {
                        given[k] = -1;
                    } else if (v >= 0 && v < m) {
                        given[k] = int8_t(v);
                    } else {
                        cn[i] = -1;
                        return;
                    }
                }
                cn[i] = zebra::count_solutions(clues, nc, m, n, given, 2, sol);
                if (cn[i] == 0) return;
                int rounds = 0;
                st[2 * i] = zebra::ordered_solve(clues, nc, m, n, given, sol, oi, gi, ci, &rounds);
                st[2 * i + 1] = rounds;
            });
        },
        nb::arg("tokens"), nb::arg("houses"), nb::arg("attributes"), nb::arg("max_clues"), nb::arg("solution"),
        nb::arg("counts"), nb::arg("order"), nb::arg("technique"), nb::arg("clue"), nb::arg("stats"),
        nb::arg("threads"),
        "Solve puzzles (visible cells are givens, mask 32 unknown): the first solution [n, m*n] (-1 if none), "
        "counts [n] (0, 1, 2 = two or more; -1 a bad cell token, -2 - s a bad clue slot s), the ordered solve per "
        "cell and stats [n, 2] (guesses, propagation rounds).");

    m.def("zebra_constants", []() {
        nb::dict d;
        d["max_houses"] = zebra::kMaxHouses;
        d["max_attributes"] = zebra::kMaxAttributes;
        d["max_clues"] = zebra::kMaxClues;
        d["clue_tokens"] = zebra::kClueTokens;
        d["value_base"] = zebra::kValueBase;
        d["attribute_base"] = zebra::kAttributeBase;
        d["house_base"] = zebra::kHouseBase;
        d["relation_base"] = zebra::kRelationBase;
        d["pad"] = zebra::kPad;
        d["mask"] = zebra::kMask;
        d["vocab_size"] = zebra::kVocabSize;
        d["relations"] = int(zebra::kNumRelations);
        d["max_attempts"] = zebra::kMaxAttempts;
        nb::list w;
        for (int x : zebra::kRelationWeights) w.append(x);
        d["relation_weights"] = w;
        return d;
    }, "The Zebra engine's token ids and limits (zebra.h).");
}
