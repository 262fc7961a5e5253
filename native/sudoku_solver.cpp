// Exact solver (depth-first search over bitmask candidates, most constrained cell first), random
// complete grids, and clue removal.
#include "sudoku.h"

#include <algorithm>
#include <cstring>

namespace sudoku {
namespace {

constexpr uint16_t kAll = 0x1FF;

struct Tables {
    uint8_t row[81], col[81], box[81];
    Tables() {
        for (int c = 0; c < 81; ++c) {
            row[c] = uint8_t(c / 9);
            col[c] = uint8_t(c % 9);
            box[c] = uint8_t((c / 27) * 3 + (c % 9) / 3);
        }
    }
};
const Tables T;

inline int popcount(unsigned x) { return kPopcount9[x & 0x1FF]; }

// Search state. `used_*` hold the digits already placed in each unit; `forbid` removes digits from
// single cells (used to ask "is there a solution where this cell is not v?").
struct Search {
    uint16_t used_row[9], used_col[9], used_box[9];
    uint16_t forbid[81];
    int8_t grid[81];
    uint8_t empties[81];
    int nempty = 0;
    int count = 0;
    int limit = 1;
    int8_t* solution = nullptr;
    Rng* rng = nullptr;  // when set, candidate digits are tried in random order

    // Loads the givens; false if two givens clash.
    bool load(const int8_t* puzzle) {
        std::memset(used_row, 0, sizeof used_row);
        std::memset(used_col, 0, sizeof used_col);
        std::memset(used_box, 0, sizeof used_box);
        std::memset(forbid, 0, sizeof forbid);
        nempty = 0;
        for (int c = 0; c < 81; ++c) {
            int v = puzzle[c];
            grid[c] = int8_t(v);
            if (v == 0) {
                empties[nempty++] = uint8_t(c);
                continue;
            }
            uint16_t b = uint16_t(1u << (v - 1));
            if ((used_row[T.row[c]] | used_col[T.col[c]] | used_box[T.box[c]]) & b) return false;
            used_row[T.row[c]] |= b;
            used_col[T.col[c]] |= b;
            used_box[T.box[c]] |= b;
        }
        return true;
    }

    inline uint16_t candidates(int c) const {
        return uint16_t(kAll & ~(used_row[T.row[c]] | used_col[T.col[c]] | used_box[T.box[c]] | forbid[c]));
    }

    void run() {
        if (nempty == 0) {
            if (count == 0 && solution) std::memcpy(solution, grid, 81);
            ++count;
            return;
        }
        // Most constrained blank; a forced cell (one candidate) ends the scan at once.
        int best = 0, best_n = 10;
        uint16_t best_m = 0;
        for (int i = 0; i < nempty; ++i) {
            uint16_t m = candidates(empties[i]);
            int n = popcount(m);
            if (n < best_n) {
                best = i;
                best_n = n;
                best_m = m;
                if (n <= 1) break;
            }
        }
        if (best_n == 0) return;
        const int c = empties[best];
        empties[best] = empties[nempty - 1];
        empties[nempty - 1] = uint8_t(c);
        --nempty;
        const int r = T.row[c], k = T.col[c], x = T.box[c];
        uint16_t bits[9];
        int nb = 0;
        for (uint16_t m = best_m; m; m &= uint16_t(m - 1)) bits[nb++] = uint16_t(m & -m);
        if (rng && nb > 1) {
            for (int i = nb - 1; i > 0; --i) std::swap(bits[i], bits[rng->below(uint32_t(i + 1))]);
        }
        for (int i = 0; i < nb && count < limit; ++i) {
            const uint16_t b = bits[i];
            used_row[r] |= b;
            used_col[k] |= b;
            used_box[x] |= b;
            grid[c] = int8_t(__builtin_ctz(b) + 1);
            run();
            used_row[r] &= uint16_t(~b);
            used_col[k] &= uint16_t(~b);
            used_box[x] &= uint16_t(~b);
        }
        grid[c] = 0;
        ++nempty;  // `c` is still at empties[nempty - 1]; order of empties does not matter
    }
};


// Propagating solver for counting: candidate masks with naked and hidden singles propagated after
// every assignment, copy-on-branch at the most constrained cell. Much smaller search trees than the
// plain search above, which matters for the uniqueness proofs of clue removal.
struct Peers {
    uint8_t peers[81][20];
    uint8_t units[27][9];
    Peers() {
        for (int c = 0; c < 81; ++c) {
            int n = 0;
            for (int p = 0; p < 81; ++p)
                if (p != c && (T.row[p] == T.row[c] || T.col[p] == T.col[c] || T.box[p] == T.box[c]))
                    peers[c][n++] = uint8_t(p);
        }
        int fill[27] = {0};
        for (int c = 0; c < 81; ++c) {
            units[T.row[c]][fill[T.row[c]]++] = uint8_t(c);
            units[9 + T.col[c]][fill[9 + T.col[c]]++] = uint8_t(c);
            units[18 + T.box[c]][fill[18 + T.box[c]]++] = uint8_t(c);
        }
    }
};
const Peers P;

struct Board {
    uint16_t cand[81];  // a solved cell holds exactly its digit's bit
    uint8_t solved[81];
    uint16_t done[27];  // digits placed in each unit
    int nsolved;
};

// Places `bit` at `c` and propagates naked singles; false on a contradiction.
bool assign(Board& b, int c, uint16_t bit) {
    if (!(b.cand[c] & bit)) return false;
    if (b.solved[c]) return true;
    b.cand[c] = bit;
    b.solved[c] = 1;
    ++b.nsolved;
    b.done[T.row[c]] |= bit;
    b.done[9 + T.col[c]] |= bit;
    b.done[18 + T.box[c]] |= bit;
    for (int p : P.peers[c]) {
        if (!(b.cand[p] & bit)) continue;
        if (b.solved[p]) return false;
        b.cand[p] = uint16_t(b.cand[p] & ~bit);
        const uint16_t m = b.cand[p];
        if (!m) return false;
        if (!(m & (m - 1)) && !assign(b, p, m)) return false;
    }
    return true;
}

// Hidden singles until nothing changes; false on a contradiction (a digit with no place).
bool propagate(Board& b) {
    for (bool changed = true; changed;) {
        changed = false;
        for (int u = 0; u < 27; ++u) {
            const uint16_t done = b.done[u];
            if (done == kAll) continue;
            uint16_t once = 0, more = 0;
            for (int c : P.units[u]) {
                const uint16_t m = b.cand[c];
                more |= uint16_t(once & m);
                once |= m;
            }
            if (once != kAll) return false;
            uint16_t exactly = uint16_t(once & ~more & ~done);
            while (exactly) {
                const uint16_t bit = uint16_t(exactly & -exactly);
                exactly = uint16_t(exactly & (exactly - 1));
                for (int c : P.units[u])
                    if (b.cand[c] & bit) {
                        if (!assign(b, c, bit)) return false;
                        break;
                    }
                changed = true;
            }
        }
    }
    return true;
}

struct Counter {
    int count = 0;
    int limit = 1;
    int8_t* solution = nullptr;

    void run(Board& b) {
        if (!propagate(b)) return;
        if (b.nsolved == 81) {
            if (count == 0 && solution)
                for (int c = 0; c < 81; ++c) solution[c] = int8_t(__builtin_ctz(b.cand[c]) + 1);
            ++count;
            return;
        }
        int best = -1, best_n = 10;
        for (int c = 0; c < 81; ++c) {
            if (b.solved[c]) continue;
            const int n = popcount(b.cand[c]);
            if (n < best_n) {
                best = c;
                best_n = n;
                if (n == 2) break;
            }
        }
        for (uint16_t m = b.cand[best]; m && count < limit; m = uint16_t(m & (m - 1))) {
            Board next = b;
            if (assign(next, best, uint16_t(m & -m))) run(next);
        }
    }
};

// Loads givens (with an optional forbidden digit mask at one cell); false on a clash. Candidates
// come from unit masks in one pass; only then are naked singles propagated.
bool load_board(Board& b, const int8_t* puzzle, int forbid_cell, uint16_t forbid_mask) {
    uint16_t row[9] = {0}, col[9] = {0}, box[9] = {0};
    b.nsolved = 0;
    for (int c = 0; c < 81; ++c) {
        if (!puzzle[c]) continue;
        const uint16_t bit = uint16_t(1u << (puzzle[c] - 1));
        if ((row[T.row[c]] | col[T.col[c]] | box[T.box[c]]) & bit) return false;
        row[T.row[c]] |= bit;
        col[T.col[c]] |= bit;
        box[T.box[c]] |= bit;
    }
    for (int u = 0; u < 9; ++u) {
        b.done[u] = row[u];
        b.done[9 + u] = col[u];
        b.done[18 + u] = box[u];
    }
    for (int c = 0; c < 81; ++c) {
        if (puzzle[c]) {
            b.cand[c] = uint16_t(1u << (puzzle[c] - 1));
            b.solved[c] = 1;
            ++b.nsolved;
        } else {
            b.cand[c] = uint16_t(kAll & ~(row[T.row[c]] | col[T.col[c]] | box[T.box[c]]));
            b.solved[c] = 0;
        }
    }
    if (forbid_cell >= 0 && !puzzle[forbid_cell]) b.cand[forbid_cell] &= uint16_t(~forbid_mask);
    for (int c = 0; c < 81; ++c) {
        if (b.solved[c]) continue;
        const uint16_t m = b.cand[c];
        if (!m) return false;
        if (!(m & (m - 1))) {
            if (!assign(b, c, m)) return false;
        }
    }
    return true;
}

int count_board(const int8_t* puzzle, int forbid_cell, uint16_t forbid_mask, int limit, int8_t* solution) {
    Board b;
    if (!load_board(b, puzzle, forbid_cell, forbid_mask)) return 0;
    Counter k;
    k.limit = limit < 1 ? 1 : limit;
    k.solution = solution;
    k.run(b);
    return k.count;
}

}  // namespace

uint64_t derive_seed(uint64_t seed, uint64_t stream, uint64_t index) {
    Rng a(seed ^ 0x5DEECE66Dull);
    uint64_t h = a.next();
    Rng b(h ^ (stream * 0xD1B54A32D192ED03ull));
    h = b.next();
    Rng c(h ^ (index * 0x9E3779B97F4A7C15ull) ^ (index >> 17));
    return c.next();
}

int count_solutions(const int8_t* puzzle, int limit, int8_t* solution) {
    for (int c = 0; c < 81; ++c)
        if (puzzle[c] < 0 || puzzle[c] > 9) return 0;
    return count_board(puzzle, -1, 0, limit, solution);
}

int count_solutions_plain(const int8_t* puzzle, int limit, int8_t* solution) {
    for (int c = 0; c < 81; ++c)
        if (puzzle[c] < 0 || puzzle[c] > 9) return 0;
    Search s;
    if (!s.load(puzzle)) return 0;
    s.limit = limit < 1 ? 1 : limit;
    s.solution = solution;
    s.run();
    return s.count;
}

bool has_other_solution(const int8_t* puzzle, int cell, int value) {
    return count_board(puzzle, cell, uint16_t(1u << (value - 1)), 1, nullptr) > 0;
}

void random_grid(Rng& rng, int8_t* grid) {
    // Independent random permutations in the three diagonal boxes, then a randomized search fills
    // the rest; a random relabeling, band/stack and row/column shuffle and transpose spread the
    // result over the symmetry class.
    int8_t start[81];
    std::memset(start, 0, 81);
    for (int b = 0; b < 3; ++b) {
        int8_t d[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
        for (int i = 8; i > 0; --i) std::swap(d[i], d[rng.below(uint32_t(i + 1))]);
        for (int i = 0; i < 9; ++i) start[(b * 3 + i / 3) * 9 + b * 3 + i % 3] = d[i];
    }
    Search s;
    s.load(start);
    s.limit = 1;
    s.rng = &rng;
    int8_t full[81];
    s.solution = full;
    s.run();  // always succeeds: the diagonal boxes never clash
    int rows[9], cols[9], bands[3], stacks[3];
    for (int i = 0; i < 3; ++i) bands[i] = stacks[i] = i;
    for (int i = 2; i > 0; --i) std::swap(bands[i], bands[rng.below(uint32_t(i + 1))]);
    for (int i = 2; i > 0; --i) std::swap(stacks[i], stacks[rng.below(uint32_t(i + 1))]);
    for (int b = 0; b < 3; ++b) {
        int rr[3] = {0, 1, 2}, cc[3] = {0, 1, 2};
        for (int i = 2; i > 0; --i) std::swap(rr[i], rr[rng.below(uint32_t(i + 1))]);
        for (int i = 2; i > 0; --i) std::swap(cc[i], cc[rng.below(uint32_t(i + 1))]);
        for (int i = 0; i < 3; ++i) {
            rows[b * 3 + i] = bands[b] * 3 + rr[i];
            cols[b * 3 + i] = stacks[b] * 3 + cc[i];
        }
    }
    int8_t relabel[10] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
    for (int i = 9; i > 1; --i) std::swap(relabel[i], relabel[1 + rng.below(uint32_t(i))]);
    const bool transpose = rng.below(2) != 0;
    for (int r = 0; r < 9; ++r)
        for (int c = 0; c < 9; ++c) {
            int src = transpose ? cols[c] * 9 + rows[r] : rows[r] * 9 + cols[c];
            grid[r * 9 + c] = relabel[full[src]];
        }
}

int remove_clues(Rng& rng, const int8_t* solution, int min_clues, int8_t* puzzle) {
    std::memcpy(puzzle, solution, 81);
    uint8_t cells[81];
    for (int i = 0; i < 81; ++i) cells[i] = uint8_t(i);
    for (int i = 80; i > 0; --i) std::swap(cells[i], cells[rng.below(uint32_t(i + 1))]);
    int clues = 81;
    int i = 0;
    // Greedy removal in `cells` order keeps a clue exactly when the puzzle without it has another
    // solution. Uniqueness is monotone in the clue set, so if dropping a whole prefix of the order
    // at once leaves the puzzle unique, greedy removal would drop every cell of it: one check
    // replaces many, with the very same result.
    for (int k : {48, 36}) {
        if (81 - k < min_clues) continue;
        for (int j = 0; j < k; ++j) puzzle[cells[j]] = 0;
        if (count_board(puzzle, -1, 0, 2, nullptr) == 1) {
            clues = 81 - k;
            i = k;
            break;
        }
        for (int j = 0; j < k; ++j) puzzle[cells[j]] = solution[cells[j]];
    }
    for (; i < 81 && clues > min_clues; ++i) {
        const int c = cells[i];
        const int v = puzzle[c];
        puzzle[c] = 0;
        if (has_other_solution(puzzle, c, v)) {
            puzzle[c] = int8_t(v);  // this clue is needed for uniqueness
        } else {
            --clues;
        }
    }
    return clues;
}

int generate_one(uint64_t seed, int split, int min_clues, int max_clues, int8_t* puzzle,
                 int8_t* solution, int8_t* order, int8_t* strategy, int8_t* difficulty) {
    Rng rng(seed);
    for (int attempt = 1; attempt <= kMaxAttempts; ++attempt) {
        random_grid(rng, solution);
        const int clues = remove_clues(rng, solution, min_clues, puzzle);
        if (clues > max_clues) continue;
        const int d = grade(puzzle, solution, order, strategy);
        // d is kGuess when the seven got stuck, -2/-3 never for a unique puzzle (sound strategies)
        if ((split == 0 && d >= 0 && d < kGuess) || (split == 1 && d == kGuess)) {
            *difficulty = int8_t(d);
            return attempt;
        }
    }
    return -1;
}

}  // namespace sudoku
