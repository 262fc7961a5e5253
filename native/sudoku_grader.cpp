// Human-strategy grader: the seven strategies of Shah et al. (2024), easiest first.
//
// The grader keeps a candidate mask per blank. Each round it applies the easiest strategy that makes
// progress and starts again from the easiest: the singles place one digit, the other five only
// remove candidates. A placement is one step of the solver order.
#include "sudoku.h"

#include <algorithm>
#include <cstring>

namespace sudoku {
namespace {

constexpr uint16_t kAll = 0x1FF;

struct Geometry {
    uint8_t units[27][9];   // 9 rows, 9 columns, 9 boxes
    uint8_t cell_units[81][3];
    uint8_t peers[81][20];
    bool sees[81][81];      // distinct cells sharing a unit
    Geometry() {
        for (int i = 0; i < 9; ++i)
            for (int j = 0; j < 9; ++j) {
                units[i][j] = uint8_t(i * 9 + j);
                units[9 + i][j] = uint8_t(j * 9 + i);
                units[18 + i][j] = uint8_t(((i / 3) * 3 + j / 3) * 9 + (i % 3) * 3 + j % 3);
            }
        for (int c = 0; c < 81; ++c) {
            cell_units[c][0] = uint8_t(c / 9);
            cell_units[c][1] = uint8_t(9 + c % 9);
            cell_units[c][2] = uint8_t(18 + (c / 27) * 3 + (c % 9) / 3);
        }
        std::memset(sees, 0, sizeof sees);
        for (int u = 0; u < 27; ++u)
            for (int a : units[u])
                for (int b : units[u])
                    if (a != b) sees[a][b] = true;
        for (int c = 0; c < 81; ++c) {
            int n = 0;
            for (int p = 0; p < 81; ++p)
                if (sees[c][p]) peers[c][n++] = uint8_t(p);
        }
    }
};
const Geometry G;

inline int popcount(unsigned x) { return kPopcount9[x & 0x1FF]; }

struct Grader {
    int8_t grid[81];
    uint16_t cand[81];
    int8_t* order;
    int8_t* strategy;
    const int8_t* solution;
    int step = 0;
    int blanks = 0;
    int pending = -1;  // hardest elimination strategy since the last placement
    int hardest = -1;
    bool contradiction = false;
    bool wrong = false;  // a placement disagreed with the given solution

    void note(int s) {
        pending = std::max(pending, s);
        hardest = std::max(hardest, s);
    }

    void place(int c, int d, int s) {
        const uint16_t b = uint16_t(1u << (d - 1));
        if (!(cand[c] & b)) contradiction = true;
        if (solution && solution[c] != d) wrong = true;
        grid[c] = int8_t(d);
        cand[c] = 0;
        for (int p : G.peers[c]) cand[p] &= uint16_t(~b);
        note(s);
        order[c] = int8_t(step++);
        strategy[c] = int8_t(pending);
        pending = -1;
        --blanks;
    }

    bool init(const int8_t* puzzle) {
        for (int c = 0; c < 81; ++c) {
            grid[c] = puzzle[c];
            cand[c] = puzzle[c] ? 0 : kAll;
            order[c] = -1;
            strategy[c] = -1;
            if (!puzzle[c]) ++blanks;
        }
        for (int c = 0; c < 81; ++c) {
            if (!puzzle[c]) continue;
            const uint16_t b = uint16_t(1u << (puzzle[c] - 1));
            for (int p : G.peers[c]) {
                if (grid[p] == puzzle[c]) return false;
                cand[p] &= uint16_t(~b);
            }
        }
        return true;
    }

    // Removes `mask` from blank `c`; true if anything was removed.
    bool eliminate(int c, uint16_t mask, int s) {
        if (grid[c] || !(cand[c] & mask)) return false;
        cand[c] &= uint16_t(~mask);
        if (!cand[c]) contradiction = true;
        note(s);
        return true;
    }

    bool naked_single() {
        for (int c = 0; c < 81; ++c) {
            if (grid[c]) continue;
            if (!cand[c]) {
                contradiction = true;
                return false;
            }
            if (popcount(cand[c]) == 1) {
                place(c, __builtin_ctz(cand[c]) + 1, kNakedSingle);
                return true;
            }
        }
        return false;
    }

    bool hidden_single() {
        for (int u = 0; u < 27; ++u) {
            uint16_t once = 0, more = 0, placed = 0;
            for (int c : G.units[u]) {
                more |= uint16_t(once & cand[c]);
                once |= cand[c];
                if (grid[c]) placed |= uint16_t(1u << (grid[c] - 1));
            }
            if ((once | placed) != kAll) {
                contradiction = true;  // some digit has no place left in this unit
                return false;
            }
            const uint16_t exactly = uint16_t(once & ~more);
            if (!exactly) continue;
            const uint16_t b = uint16_t(exactly & -exactly);
            for (int c : G.units[u])
                if (cand[c] & b) {
                    place(c, __builtin_ctz(b) + 1, kHiddenSingle);
                    return true;
                }
        }
        return false;
    }

    bool naked_pair() {
        for (int u = 0; u < 27; ++u) {
            const auto& cells = G.units[u];
            for (int i = 0; i < 9; ++i) {
                const uint16_t m = cand[cells[i]];
                if (popcount(m) != 2) continue;
                for (int j = i + 1; j < 9; ++j) {
                    if (cand[cells[j]] != m) continue;
                    bool changed = false;
                    for (int k = 0; k < 9; ++k)
                        if (k != i && k != j) changed |= eliminate(cells[k], m, kNakedPair);
                    if (changed) return true;
                }
            }
        }
        return false;
    }

    bool naked_triple() {
        for (int u = 0; u < 27; ++u) {
            const auto& cells = G.units[u];
            int idx[9], n = 0;
            for (int i = 0; i < 9; ++i) {
                const int pc = popcount(cand[cells[i]]);
                if (pc == 2 || pc == 3) idx[n++] = i;
            }
            for (int a = 0; a < n; ++a)
                for (int b = a + 1; b < n; ++b) {
                    const uint16_t ab = uint16_t(cand[cells[idx[a]]] | cand[cells[idx[b]]]);
                    if (popcount(ab) > 3) continue;
                    for (int c = b + 1; c < n; ++c) {
                        const uint16_t m = uint16_t(ab | cand[cells[idx[c]]]);
                        if (popcount(m) != 3) continue;
                        bool changed = false;
                        for (int k = 0; k < 9; ++k)
                            if (k != idx[a] && k != idx[b] && k != idx[c])
                                changed |= eliminate(cells[k], m, kNakedTriple);
                        if (changed) return true;
                    }
                }
        }
        return false;
    }

    bool locked_candidate() {
        // Pointing: a digit confined to one row or column of a box leaves the rest of that line.
        for (int bx = 0; bx < 9; ++bx) {
            const auto& cells = G.units[18 + bx];
            for (int d = 0; d < 9; ++d) {
                const uint16_t b = uint16_t(1u << d);
                int rows = 0, cols = 0, n = 0;
                for (int c : cells)
                    if (cand[c] & b) {
                        rows |= 1 << (c / 9);
                        cols |= 1 << (c % 9);
                        ++n;
                    }
                if (n < 2) continue;
                bool changed = false;
                if (popcount(unsigned(rows)) == 1) {
                    const int r = __builtin_ctz(unsigned(rows));
                    for (int c : G.units[r])
                        if (G.cell_units[c][2] != 18 + bx) changed |= eliminate(c, b, kLockedCandidate);
                }
                if (popcount(unsigned(cols)) == 1) {
                    const int k = __builtin_ctz(unsigned(cols));
                    for (int c : G.units[9 + k])
                        if (G.cell_units[c][2] != 18 + bx) changed |= eliminate(c, b, kLockedCandidate);
                }
                if (changed) return true;
            }
        }
        // Claiming: a digit confined to one box within a row or column leaves the rest of that box.
        for (int u = 0; u < 18; ++u) {
            const auto& cells = G.units[u];
            for (int d = 0; d < 9; ++d) {
                const uint16_t b = uint16_t(1u << d);
                int boxes = 0, n = 0;
                for (int c : cells)
                    if (cand[c] & b) {
                        boxes |= 1 << (G.cell_units[c][2] - 18);
                        ++n;
                    }
                if (n < 2 || popcount(unsigned(boxes)) != 1) continue;
                const int bx = __builtin_ctz(unsigned(boxes));
                bool changed = false;
                for (int c : G.units[18 + bx])
                    if (G.cell_units[c][0] != u && G.cell_units[c][1] != u)
                        changed |= eliminate(c, b, kLockedCandidate);
                if (changed) return true;
            }
        }
        return false;
    }

    bool xy_wing() {
        // Pivot {x,y} sees pincers {x,z} and {y,z}: z leaves every cell that sees both pincers.
        for (int p = 0; p < 81; ++p) {
            const uint16_t pm = cand[p];
            if (popcount(pm) != 2) continue;
            for (int a : G.peers[p]) {
                const uint16_t am = cand[a];
                if (popcount(am) != 2 || popcount(unsigned(am & pm)) != 1) continue;
                const uint16_t z = uint16_t(am & ~pm);
                const uint16_t want = uint16_t((pm & ~am) | z);
                for (int b : G.peers[p]) {
                    if (b == a || cand[b] != want) continue;
                    bool changed = false;
                    for (int c : G.peers[a])
                        if (c != b && G.sees[b][c]) changed |= eliminate(c, z, kXYWing);
                    if (changed) return true;
                }
            }
        }
        return false;
    }

    bool unique_rectangle() {
        // Type 1: four blanks on two rows, two columns and two boxes; three hold the same pair
        // {a,b}. The fourth cannot be a or b either, or the puzzle would have two solutions.
        for (int r1 = 0; r1 < 9; ++r1)
            for (int r2 = r1 + 1; r2 < 9; ++r2)
                for (int c1 = 0; c1 < 9; ++c1)
                    for (int c2 = c1 + 1; c2 < 9; ++c2) {
                        if ((r1 / 3 == r2 / 3) == (c1 / 3 == c2 / 3)) continue;  // need exactly two boxes
                        const int cells[4] = {r1 * 9 + c1, r1 * 9 + c2, r2 * 9 + c1, r2 * 9 + c2};
                        uint16_t pair = 0;
                        int bivalue = 0, other = -1;
                        bool ok = true;
                        for (int i = 0; i < 4 && ok; ++i) {
                            const uint16_t m = cand[cells[i]];
                            if (!m) ok = false;
                            else if (popcount(m) == 2 && (!pair || m == pair)) {
                                pair = m;
                                ++bivalue;
                            } else if (other < 0) other = cells[i];
                            else ok = false;
                        }
                        if (!ok || bivalue != 3 || other < 0) continue;
                        if ((cand[other] & pair) != pair) continue;
                        if (eliminate(other, pair, kUniqueRectangle)) return true;
                    }
        return false;
    }

    void guess() {
        int best = -1, best_n = 10;
        for (int c = 0; c < 81; ++c)
            if (!grid[c] && popcount(cand[c]) < best_n) {
                best = c;
                best_n = popcount(cand[c]);
            }
        place(best, solution[best], kGuess);
    }
};

}  // namespace

static bool Grader_apply(Grader& g, int s) {
    switch (s) {
        case kNakedSingle: return g.naked_single();
        case kHiddenSingle: return g.hidden_single();
        case kNakedPair: return g.naked_pair();
        case kNakedTriple: return g.naked_triple();
        case kLockedCandidate: return g.locked_candidate();
        case kXYWing: return g.xy_wing();
        case kUniqueRectangle: return g.unique_rectangle();
        default: return false;
    }
}

int grade(const int8_t* puzzle, const int8_t* solution, int8_t* order, int8_t* strategy, int max_strategy) {
    Grader g;
    g.order = order;
    g.strategy = strategy;
    g.solution = solution;
    if (!g.init(puzzle)) return -2;
    while (g.blanks > 0) {
        bool progress = false;
        for (int s = 0; s <= max_strategy && s < kNumStrategies && !progress; ++s) progress = Grader_apply(g, s);
        if (g.contradiction) return -2;
        if (g.wrong) return -3;
        if (progress) continue;
        if (!solution) break;
        g.guess();
        if (g.contradiction) return -2;
    }
    return g.hardest;
}

int apply_strategy(int8_t* grid, uint16_t* cand, int s) {
    Grader g;
    int8_t order[81], strategy[81];
    g.order = order;
    g.strategy = strategy;
    g.solution = nullptr;
    for (int c = 0; c < 81; ++c) {
        g.grid[c] = grid[c];
        g.cand[c] = grid[c] ? 0 : uint16_t(cand[c] & kAll);
        if (!grid[c]) ++g.blanks;
    }
    const bool progress = Grader_apply(g, s);
    for (int c = 0; c < 81; ++c) {
        grid[c] = g.grid[c];
        cand[c] = g.cand[c];
    }
    return g.contradiction ? -1 : int(progress);
}

}  // namespace sudoku

namespace sudoku {

void immediate_singles(const int8_t* board, int8_t* out) {
    uint16_t cand[81];
    bool ok = true;
    for (int c = 0; c < 81; ++c) cand[c] = board[c] ? 0 : kAll;
    for (int c = 0; c < 81 && ok; ++c) {
        if (!board[c]) continue;
        for (int p : G.peers[c]) {
            if (board[p] == board[c]) ok = false;
            cand[p] &= uint16_t(~(1u << (board[c] - 1)));
        }
    }
    for (int c = 0; c < 81; ++c) {
        out[c] = board[c] ? int8_t(-1) : int8_t(2);
        if (!board[c] && !cand[c]) ok = false;
        if (!board[c] && popcount(cand[c]) == 1) out[c] = kNakedSingle;
    }
    for (int u = 0; u < 27 && ok; ++u) {
        uint16_t once = 0, more = 0, placed = 0;
        for (int c : G.units[u]) {
            more |= uint16_t(once & cand[c]);
            once |= cand[c];
            if (board[c]) placed |= uint16_t(1u << (board[c] - 1));
        }
        if ((once | placed) != kAll) ok = false;
        const uint16_t exactly = uint16_t(once & ~more);
        for (int c : G.units[u])
            if ((cand[c] & exactly) && out[c] == 2) out[c] = kHiddenSingle;
    }
    if (!ok)
        for (int c = 0; c < 81; ++c)
            if (!board[c]) out[c] = kHardnessContradiction;
}

int cell_hardness(const int8_t* board, int8_t* hardness, int8_t* immediate) {
    if (immediate) immediate_singles(board, immediate);
    int8_t order[81], strategy[81];
    const int rc = grade(board, nullptr, order, strategy, kUniqueRectangle);
    if (rc == -2) {
        for (int c = 0; c < 81; ++c) hardness[c] = board[c] ? int8_t(-1) : kHardnessContradiction;
        return rc;
    }
    int8_t at_step[81];
    int placed = 0;
    for (int c = 0; c < 81; ++c) {
        hardness[c] = board[c] ? int8_t(-1) : int8_t(kGuess);
        if (order[c] >= 0) {
            at_step[int(order[c])] = int8_t(c);
            ++placed;
        }
    }
    int hardest = -1;
    for (int t = 0; t < placed; ++t) {
        const int c = at_step[t];
        hardest = std::max(hardest, int(strategy[c]));
        hardness[c] = int8_t(hardest);
    }
    return rc;
}

}  // namespace sudoku
