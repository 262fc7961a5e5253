// Sudoku engine: exact solver, puzzle generator and human-strategy grader.
//
// Grids are 81 int8 cells in row-major order, 0 = blank, 1..9 = digit. Candidate sets are
// 9-bit masks, bit d-1 for digit d. Everything here is single-threaded and allocation-free per
// puzzle; the batch drivers in module.cpp spread indices over std::threads.
#pragma once

#include <cstdint>

namespace sudoku {

// Bit counts of 9-bit masks. A table, because without -mpopcnt (portable x86-64 builds)
// __builtin_popcount is a library call, and candidate counting is the hot loop.
struct PopcountTable {
    uint8_t v[512];
    constexpr PopcountTable() : v() {
        for (int i = 0; i < 512; ++i) v[i] = uint8_t((i & 1) + ((i >> 1) & 1) + ((i >> 2) & 1) + ((i >> 3) & 1) +
                                                     ((i >> 4) & 1) + ((i >> 5) & 1) + ((i >> 6) & 1) +
                                                     ((i >> 7) & 1) + ((i >> 8) & 1));
    }
};
inline constexpr PopcountTable kPopcountTable{};
inline constexpr const uint8_t* kPopcount9 = kPopcountTable.v;

// Strategy indices, in difficulty order (the seven of Shah et al. 2024), plus kGuess: a cell the
// seven strategies could not reach, filled from the solution to let the grader go on.
enum Strategy : int8_t {
    kNakedSingle = 0,
    kHiddenSingle = 1,
    kNakedPair = 2,
    kNakedTriple = 3,
    kLockedCandidate = 4,
    kXYWing = 5,
    kUniqueRectangle = 6,
    kGuess = 7,
    kNumStrategies = 7,
};

// Deterministic generator: splitmix64. Small, fast, and fully specified, so the same seed gives the
// same puzzles on every platform and compiler.
struct Rng {
    uint64_t s;
    explicit Rng(uint64_t seed) : s(seed) {}
    uint64_t next() {
        uint64_t z = (s += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        return z ^ (z >> 31);
    }
    // Uniform integer in [0, n), n > 0 (Lemire's multiply-shift; the bias is below 2^-32 for n <= 81).
    uint32_t below(uint32_t n) { return uint32_t(((next() >> 32) * uint64_t(n)) >> 32); }
};

// Mixes (seed, stream, index) into one 64-bit seed; puzzles depend only on these, never on threads.
uint64_t derive_seed(uint64_t seed, uint64_t stream, uint64_t index);

// Counts the solutions of `puzzle` up to `limit` (stops early). Writes the first solution found to
// `solution` when it is not null and a solution exists. Contradictory givens give 0.
int count_solutions(const int8_t* puzzle, int limit, int8_t* solution);

// The same count by a plain depth-first search without propagation (a second, independent
// implementation, for tests).
int count_solutions_plain(const int8_t* puzzle, int limit, int8_t* solution);

// True when `puzzle` has a solution whose cell `cell` differs from `value`.
bool has_other_solution(const int8_t* puzzle, int cell, int value);

// Fills `grid` with a random complete grid.
void random_grid(Rng& rng, int8_t* grid);

// Removes clues of the complete grid `solution` in random order while the puzzle stays unique,
// stopping once `min_clues` remain. Writes the puzzle; returns its clue count.
int remove_clues(Rng& rng, const int8_t* solution, int min_clues, int8_t* puzzle);

// Human-strategy grader. Fills `order` (the step at which each cell was filled, -1 for clues) and
// `strategy` (the strategy that filled it: the single that placed it, or the hardest elimination
// strategy used since the previous placement when that is harder; -1 for clues).
// If `solution` is not null and the seven strategies get stuck, the most constrained blank is
// filled from `solution` (strategy kGuess) and grading goes on; otherwise it stops there and the
// remaining blanks keep order -1 and strategy -1.
// Returns the hardest strategy used (kGuess if a guess was needed, -1 if there were no blanks),
// -2 if the candidates became contradictory (the puzzle has no solution), or -3 if a placement
// disagreed with `solution` (the puzzle has several solutions).
// `max_strategy` < 6 restricts the grader to the easiest strategies (to show a puzzle needs one).
int grade(const int8_t* puzzle, const int8_t* solution, int8_t* order, int8_t* strategy,
          int max_strategy = kUniqueRectangle);

// Per-cell hardness of a board (0 = blank; e.g. a puzzle with some blanks filled by a model).
// hardness[c] of a blank c: the smallest s such that grade(board, nullptr, ..., max_strategy = s)
// places c (the grader propagates: other placements may come first), or kGuess (7) when the seven
// strategies do not place it; -1 for filled cells; kHardnessContradiction (-2) on every blank when
// grading the board hits contradictory candidates (possible only if a filled digit is wrong).
// Computed from one grade with all seven: grade(max_strategy = s) takes the same steps as the full
// grader until the full one first needs a strategy harder than s, so the class of a cell is the
// hardest strategy the full grader used up to and including the step that placed it.
// immediate (may be null): per blank, 0 if it is a naked single on the board as given, 1 if a
// hidden single there (and not naked), 2 if neither; -1 for filled cells; -2 on every blank when
// the board itself is contradictory (two equal digits in a unit, a blank with no candidate, or a
// digit with no place left in a unit). Returns grade's code (-2 when contradictory).
constexpr int8_t kHardnessContradiction = -2;
int cell_hardness(const int8_t* board, int8_t* hardness, int8_t* immediate);
// The `immediate` part of cell_hardness alone (no grading).
void immediate_singles(const int8_t* board, int8_t* immediate);

// Applies strategy `s` once to a hand-built position: `grid` (0 = blank) and candidate masks
// `cand` (ignored for filled cells). Updates both; returns 1 on progress, 0 on none, -1 if the
// candidates became contradictory. For tests of the single strategies.
int apply_strategy(int8_t* grid, uint16_t* cand, int s);

// One puzzle of a split. split 0 = standard (the seven strategies finish it), 1 = hard (they do
// not). Clue counts kept in [min_clues, max_clues]. Returns the number of candidate puzzles drawn,
// or -1 if none of kMaxAttempts fitted (clue bounds that the split almost never meets).
constexpr int kMaxAttempts = 20000;
int generate_one(uint64_t seed, int split, int min_clues, int max_clues, int8_t* puzzle,
                 int8_t* solution, int8_t* order, int8_t* strategy, int8_t* difficulty);

}  // namespace sudoku
