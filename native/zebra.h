// Zebra (Einstein) puzzle engine: random solution grids, clues true of them, a propagating solver that
// counts solutions and records its deduction order, minimal-puzzle generation and the exact checker.
//
// A task is m houses x n attributes (2 <= m, n <= 8). A solution gives every attribute a permutation of
// its m values over the houses: grid[h * n + a] = the value of attribute a in house h. The solver works on
// "items" (a, v), attribute a's value v, each with a domain: the bit mask of the houses it may be in
// (bit h = house h). An item is placed when its domain is one house; cell (h, a) is then known to hold v.
//
// Clues relate items (X = (a1, v1), Y = (a2, v2)); pos(X) is the house of X:
//   kSame      pos(X) == pos(Y)        (a1 != a2)   "the Englishman lives in the red house"
//   kNotSame   pos(X) != pos(Y)        (a1 != a2)
//   kImmLeft   pos(X) + 1 == pos(Y)                  "X is immediately left of Y" (right-of: swap X, Y)
//   kLeftOf    pos(X) <  pos(Y)                      "X is somewhere left of Y"
//   kNextTo    |pos(X) - pos(Y)| == 1
//   kAt        pos(X) == h                           (the clue's second slot is a house, v2 = -1)
//   kNotAt     pos(X) != h
//
// Token encoding (int8, the same vocabulary for every size): a sequence is max_clues clue slots of 5
// tokens, then the m * n cells in house-major order. A clue slot is [relation, attribute a1, value v1,
// attribute a2 (or house h), value v2 (kPad for kAt/kNotAt)]; an unused slot is 5 x kPad. A cell is a
// value token (its value id). Everything here is single-threaded per puzzle; module.cpp spreads puzzles
// over std::threads.
#pragma once

#include <cstddef>
#include <cstdint>

namespace zebra {

constexpr int kMaxHouses = 8;
constexpr int kMaxAttributes = 8;
constexpr int kMaxItems = kMaxHouses * kMaxAttributes;
constexpr int kMaxClues = 120;
constexpr int kClueTokens = 5;

// Token ids.
constexpr int8_t kValueBase = 0;       // values 0..7
constexpr int8_t kAttributeBase = 8;   // attributes 0..7
constexpr int8_t kHouseBase = 16;      // houses 0..7
constexpr int8_t kRelationBase = 24;   // relations 0..6
constexpr int8_t kPad = 31;            // an unused clue slot, and the empty fifth token of kAt/kNotAt
constexpr int8_t kMask = 32;           // a masked position (model input)
constexpr int kVocabSize = 33;

enum Relation : int8_t {
    kSame = 0,
    kNotSame = 1,
    kImmLeft = 2,
    kLeftOf = 3,
    kNextTo = 4,
    kAt = 5,
    kNotAt = 6,
    kNumRelations = 7,
};

// How the solver placed a cell. 0..6: a clue of that relation narrowed the item to one house.
enum Technique : int8_t {
    kExclusion = 7,  // all-different: the other values of the attribute took the other houses of its domain
    kOnlyPlace = 8,  // all-different: the house can hold no other value of the attribute
    kGuess = 9,      // propagation was stuck; the solver fixed the most constrained item (from the solution)
    kGiven = 10,     // the cell was visible in the input (solve of a partial grid)
};

struct Clue {
    int8_t rel, a1, v1, a2, v2;  // kAt/kNotAt: a2 is the house, v2 = -1
};

// Streams of derive_seed (sudoku.h).
constexpr uint64_t kPuzzleStream = 0x5A45425F50555Aull;  // "ZEB_PUZ"

// Weights of the relations when drawing a clue (in Relation order), out of their sum.
constexpr int kRelationWeights[kNumRelations] = {3, 2, 2, 2, 2, 2, 1};

// Parses the clue section (max_clues slots). Returns the number of clues written to out, or -1 - s when
// slot s is malformed (a token out of range for the size, a kSame/kNotSame with a1 == a2, a partly padded
// slot, or a kNotSame/kImmLeft/... naming the same item twice).
int parse_clues(const int8_t* tokens, int m, int n, int max_clues, Clue* out);

// Writes clues (count <= max_clues) into the clue section, padding the unused slots.
void write_clues(const Clue* clues, int count, int max_clues, int8_t* tokens);

// Whether the grid (m * n value ids) satisfies clue c.
bool clue_holds(const Clue& c, const int8_t* grid, int m, int n);

// Counts the solutions of the clues (and of the given cells of `grid`, -1 = unknown; may be null) up to
// `limit`; writes the first found to `solution` (m * n value ids) when not null and one exists.
int count_solutions(const Clue* clues, int nc, int m, int n, const int8_t* grid, int limit, int8_t* solution);

// The ordered solve: propagation to a fixpoint (rounds of every clue, then all-different by attribute),
// fixing the most constrained item from `solution` when stuck. Per cell: order (the step at which it was
// placed, 0-based; -1 for a given cell), technique (Technique, or the relation of the clue), clue (the
// index of that clue, -1 otherwise). Returns the number of guesses, or -1 if the clues contradict
// `solution`; *rounds gets the number of propagation rounds that changed a domain.
int ordered_solve(const Clue* clues, int nc, int m, int n, const int8_t* grid, const int8_t* solution,
                  int8_t* order, int8_t* technique, int8_t* clue, int* rounds);

// Puzzle `index` of the stream `seed`: a random solution, clues drawn until unique, pruned to a minimal
// set, kept if it has at most max_clues clues (and, with logic_only, if propagation alone solves it),
// else redrawn. Writes tokens [max_clues * 5 + m * n] (clues in random order, then the solution) and the
// ordered solve. Returns the number of draws, or -1 if none of kMaxAttempts fitted.
constexpr int kMaxAttempts = 10000;
struct Stats {
    int32_t attempts, clues, guesses, rounds;
};
void generate_one(uint64_t seed, uint64_t index, int m, int n, int max_clues, bool logic_only, int8_t* tokens,
                  int8_t* order, int8_t* technique, int8_t* clue, Stats* stats);

// Checks one sequence. cell_ok[c]: cell c holds the value of the puzzle's first solution (the unique one
// for a generated puzzle); clue_ok[s]: clue slot s holds for the grid (1 for a padding slot; 0 for every
// slot when a cell is not a value). Returns the puzzle's solution count (0, 1, or 2 meaning "2 or more"),
// or -1 - s when clue slot s is malformed. *consistent: every cell is a value, each attribute a
// permutation, and every clue holds.
int check_one(const int8_t* tokens, int m, int n, int max_clues, uint8_t* cell_ok, uint8_t* clue_ok,
              uint8_t* consistent);

}  // namespace zebra
