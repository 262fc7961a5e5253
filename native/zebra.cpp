// Zebra puzzles: clue propagation, the counting and ordered solvers, generation of minimal puzzles, the checker.
#include "zebra.h"

#include <cstring>
#include <utility>

#include "sudoku.h"  // the project's splitmix64 Rng and derive_seed

namespace zebra {
namespace {

inline uint32_t below(sudoku::Rng& rng, uint32_t n) {
    return uint32_t((static_cast<unsigned __int128>(rng.next()) * n) >> 64);
}

inline bool single(uint8_t x) { return x && !(x & (x - 1)); }
inline int low_bit(uint8_t x) { return __builtin_ctz(x); }
inline int high_bit(uint8_t x) { return 31 - __builtin_clz(uint32_t(x)); }
// Bit counts of 8-bit masks by table: without -mpopcnt (portable x86-64 builds) __builtin_popcount is a
// library call, and domain sizes are counted at every search node.
struct Popcount8 {
    uint8_t v[256];
    constexpr Popcount8() : v() {
        for (int i = 0; i < 256; ++i) v[i] = uint8_t((i & 1) + (i >> 1 & 1) + (i >> 2 & 1) + (i >> 3 & 1) + (i >> 4 & 1) +
                                                     (i >> 5 & 1) + (i >> 6 & 1) + (i >> 7 & 1));
    }
};
inline constexpr Popcount8 kPopcount8{};
inline int popcount8(uint8_t x) { return kPopcount8.v[x]; }

struct Ctx {
    int m, n, items;
    uint8_t full;
    const Clue* clues;
    int nc;
    uint64_t masks[kMaxItems * 4];  // the items of clue i (bit a * m + v), so a round skips untouched clues
};

// Where the ordered solve writes down placements; the counting search passes none.
struct Recorder {
    int8_t* order;
    int8_t* technique;
    int8_t* clue;
    int step;
};

struct Prop {
    const Ctx& c;
    uint8_t* P;  // domain (house mask) of item a * m + v
    Recorder* rec;
    uint64_t touched = 0;  // items whose domain changed (bit e), since the last reset

    // P[e] &= mask; false on an empty domain. Records a new placement.
    bool narrow(int e, uint8_t mask, int tech, int clue_index) {
        const uint8_t old = P[e], now = uint8_t(old & mask);
        if (now == old) return true;
        P[e] = now;
        touched |= uint64_t(1) << e;
        if (!now) return false;
        if (rec && single(now)) {
            const int a = e / c.m, cell = low_bit(now) * c.n + a;
            if (rec->technique[cell] < 0) {
                rec->order[cell] = int8_t(rec->step++);
                rec->technique[cell] = int8_t(tech);
                rec->clue[cell] = int8_t(clue_index);
            }
        }
        return true;
    }

    bool apply(const Clue& k, int index) {
        const int x = k.a1 * c.m + k.v1;
        const int t = k.rel;
        if (t == kAt) return narrow(x, uint8_t(1u << k.a2), t, index);
        if (t == kNotAt) return narrow(x, uint8_t(c.full & ~(1u << k.a2)), t, index);
        const int y = k.a2 * c.m + k.v2;
        switch (t) {
            case kSame: {
                const uint8_t both = P[x] & P[y];
                return narrow(x, both, t, index) && narrow(y, both, t, index);
            }
            case kNotSame:
                if (single(P[x]) && !narrow(y, uint8_t(~P[x]), t, index)) return false;
                if (single(P[y]) && !narrow(x, uint8_t(~P[y]), t, index)) return false;
                return true;
            case kImmLeft:
                return narrow(y, uint8_t((P[x] << 1) & c.full), t, index) && narrow(x, uint8_t(P[y] >> 1), t, index);
            case kLeftOf: {
                if (!narrow(y, uint8_t(c.full & ~((2u << low_bit(P[x])) - 1)), t, index)) return false;
                return narrow(x, uint8_t((1u << high_bit(P[y])) - 1), t, index);
            }
            case kNextTo: {
                if (!narrow(y, uint8_t(((P[x] << 1) | (P[x] >> 1)) & c.full), t, index)) return false;
                return narrow(x, uint8_t(((P[y] << 1) | (P[y] >> 1)) & c.full), t, index);
            }
            default:
                return false;
        }
    }

    // All-different within attribute a: a placed value's house leaves the others (exclusion), and a house
    // that only one value can still take gets it (only place).
    bool all_different(int a) {
        uint8_t* D = P + a * c.m;
        uint8_t placed = 0;
        for (int v = 0; v < c.m; ++v)
            if (single(D[v])) {
                if (placed & D[v]) return false;  // two values in one house
                placed |= D[v];
            }
        if (placed)
            for (int w = 0; w < c.m; ++w)
                if (!single(D[w]) && !narrow(a * c.m + w, uint8_t(~placed), kExclusion, -1)) return false;
        uint8_t once = 0, twice = 0;
        for (int v = 0; v < c.m; ++v) {
            twice |= once & D[v];
            once |= D[v];
        }
        if (once != c.full) return false;  // a house no value can take
        const uint8_t lone = uint8_t(once & ~twice);
        if (lone)
            for (int v = 0; v < c.m; ++v) {
                const uint8_t mine = D[v] & lone;
                if (mine && D[v] != mine) {
                    if (!single(mine)) return false;  // one value, the only candidate of two houses
                    if (!narrow(a * c.m + v, mine, kOnlyPlace, -1)) return false;
                }
            }
        return true;
    }

    // Rounds of (every clue in order, then all-different by attribute) until a round changes nothing. A
    // clue or attribute none of whose items changed since it was last applied is skipped: applying it again
    // would change nothing. `dirty`: the items changed before the call (all of them for fresh domains).
    bool run(int* rounds, uint64_t dirty = ~uint64_t(0)) {
        const uint64_t attr_mask = c.m == 8 ? 0xFFull : (uint64_t(1) << c.m) - 1;
        uint64_t prev = dirty;
        for (;;) {
            touched = 0;
            for (int i = 0; i < c.nc; ++i)
                if ((c.masks[i] & (prev | touched)) && !apply(c.clues[i], i)) return false;
            for (int a = 0; a < c.n; ++a)
                if (((prev | touched) & (attr_mask << (a * c.m))) && !all_different(a)) return false;
            if (!touched) return true;
            if (rounds) ++*rounds;
            prev = touched;
        }
    }
};

void make_ctx(Ctx& c, const Clue* clues, int nc, int m, int n) {
    c.m = m;
    c.n = n;
    c.items = m * n;
    c.full = uint8_t((1u << m) - 1);
    c.clues = clues;
    c.nc = nc;
    for (int i = 0; i < nc; ++i) {
        const Clue& k = clues[i];
        const uint64_t x = uint64_t(1) << (k.a1 * m + k.v1);
        c.masks[i] = k.rel == kAt || k.rel == kNotAt ? x : x | uint64_t(1) << (k.a2 * m + k.v2);
    }
}

bool all_placed(const Ctx& c, const uint8_t* P) {
    for (int e = 0; e < c.items; ++e)
        if (!single(P[e])) return false;
    return true;
}

void grid_of(const Ctx& c, const uint8_t* P, int8_t* grid) {
    for (int e = 0; e < c.items; ++e) grid[low_bit(P[e]) * c.n + e / c.m] = int8_t(e % c.m);
}

// Depth-first count from domains P (modified), up to limit.
int search(const Ctx& c, uint8_t* P, int limit, int8_t* solution, int& found, uint64_t dirty = ~uint64_t(0)) {
    Prop p{c, P, nullptr};
    if (!p.run(nullptr, dirty)) return 0;
    int best = -1, best_count = 99;
    for (int e = 0; e < c.items; ++e) {
        const int k = popcount8(P[e]);
        if (k > 1 && k < best_count) {
            best = e;
            best_count = k;
            if (k == 2) break;
        }
    }
    if (best < 0) {
        if (found == 0 && solution) grid_of(c, P, solution);
        ++found;
        return 1;
    }
    int total = 0;
    for (uint8_t rest = P[best]; rest && total < limit; rest &= uint8_t(rest - 1)) {
        uint8_t Q[kMaxItems];
        std::memcpy(Q, P, size_t(c.items));
        Q[best] = uint8_t(rest & -rest);
        total += search(c, Q, limit - total, solution, found, uint64_t(1) << best);
    }
    return total;
}

// Whether the domains P (modified) admit a solution other than `sol` (house of item e: sol_house[e]). The
// search tries the other houses of the branched item first and its solution house last, so a second
// solution, when there is one, tends to come early; a unique puzzle is searched through either way.
bool has_other(const Ctx& c, uint8_t* P, const int8_t* sol_house, uint64_t dirty) {
    Prop p{c, P, nullptr};
    if (!p.run(nullptr, dirty)) return false;
    int best = -1, best_count = 99;
    for (int e = 0; e < c.items; ++e) {
        const int k = popcount8(P[e]);
        if (k > 1 && k < best_count) {
            best = e;
            best_count = k;
            if (k == 2) break;
        }
    }
    if (best < 0) {
        for (int e = 0; e < c.items; ++e)
            if (P[e] != uint8_t(1u << sol_house[e])) return true;
        return false;
    }
    const uint8_t at = uint8_t(1u << sol_house[best]);
    uint8_t Q[kMaxItems];
    for (uint8_t rest = uint8_t(P[best] & ~at); rest; rest &= uint8_t(rest - 1)) {
        std::memcpy(Q, P, size_t(c.items));
        Q[best] = uint8_t(rest & -rest);
        if (has_other(c, Q, sol_house, uint64_t(1) << best)) return true;
    }
    if (!(P[best] & at)) return false;
    std::memcpy(Q, P, size_t(c.items));
    Q[best] = at;
    return has_other(c, Q, sol_house, uint64_t(1) << best);
}

void init_domains(const Ctx& c, uint8_t* P) { std::memset(P, c.full, size_t(c.items)); }

// Applies the given cells (-1 = unknown) of grid; false if two givens clash.
bool apply_givens(const Ctx& c, const int8_t* grid, uint8_t* P, Recorder* rec) {
    if (!grid) return true;
    for (int h = 0; h < c.m; ++h)
        for (int a = 0; a < c.n; ++a) {
            const int v = grid[h * c.n + a];
            if (v < 0) continue;
            const int e = a * c.m + v;
            if (!(P[e] & (1u << h))) return false;
            P[e] = uint8_t(1u << h);
            if (rec) rec->technique[h * c.n + a] = kGiven;
        }
    return true;
}

int count_from(const Ctx& c, const int8_t* grid, int limit, int8_t* solution) {
    uint8_t P[kMaxItems];
    init_domains(c, P);
    if (!apply_givens(c, grid, P, nullptr)) return 0;
    int found = 0;
    return search(c, P, limit, solution, found);
}

int parse_slot(const int8_t* t, int m, int n, Clue* out) {
    bool pad = true, any_pad = false;
    for (int i = 0; i < kClueTokens; ++i) {
        pad = pad && t[i] == kPad;
        any_pad = any_pad || t[i] == kPad;
    }
    if (pad) return 0;
    const int rel = t[0] - kRelationBase, a1 = t[1] - kAttributeBase, v1 = t[2] - kValueBase;
    if (rel < 0 || rel >= kNumRelations || a1 < 0 || a1 >= n || v1 < 0 || v1 >= m) return -1;
    Clue k{int8_t(rel), int8_t(a1), int8_t(v1), 0, -1};
    if (rel == kAt || rel == kNotAt) {
        const int h = t[3] - kHouseBase;
        if (h < 0 || h >= m || t[4] != kPad) return -1;
        k.a2 = int8_t(h);
    } else {
        if (any_pad) return -1;
        const int a2 = t[3] - kAttributeBase, v2 = t[4] - kValueBase;
        if (a2 < 0 || a2 >= n || v2 < 0 || v2 >= m) return -1;
        if ((rel == kSame || rel == kNotSame) && a1 == a2) return -1;
        if (a1 == a2 && v1 == v2) return -1;
        k.a2 = int8_t(a2);
        k.v2 = int8_t(v2);
    }
    *out = k;
    return 1;
}

void write_slot(const Clue& k, int8_t* t) {
    t[0] = int8_t(kRelationBase + k.rel);
    t[1] = int8_t(kAttributeBase + k.a1);
    t[2] = int8_t(kValueBase + k.v1);
    if (k.rel == kAt || k.rel == kNotAt) {
        t[3] = int8_t(kHouseBase + k.a2);
        t[4] = kPad;
    } else {
        t[3] = int8_t(kAttributeBase + k.a2);
        t[4] = int8_t(kValueBase + k.v2);
    }
}

int house_of(const int8_t* grid, int m, int n, int a, int v) {
    for (int h = 0; h < m; ++h)
        if (grid[h * n + a] == v) return h;
    return -1;
}

inline void swap_items(Clue& k) {
    int8_t a = k.a1, v = k.v1;
    k.a1 = k.a2;
    k.v1 = k.v2;
    k.a2 = a;
    k.v2 = v;
}

// A clue true of `sol`, relation drawn by kRelationWeights; symmetric relations in canonical item order.
Clue draw_clue(sudoku::Rng& rng, const int8_t* sol, int m, int n) {
    int total = 0;
    for (int w : kRelationWeights) total += w;
    int r = int(below(rng, uint32_t(total))), rel = 0;
    while (r >= kRelationWeights[rel]) r -= kRelationWeights[rel++];
    auto cell = [&](int h, int a) { return sol[h * n + a]; };
    auto other = [&](int x, int size) {
        int y = int(below(rng, uint32_t(size - 1)));
        return y >= x ? y + 1 : y;
    };
    Clue k{int8_t(rel), 0, 0, 0, -1};
    switch (rel) {
        case kSame: case kNotSame: {
            const int h1 = int(below(rng, uint32_t(m)));
            const int h2 = rel == kSame ? h1 : other(h1, m);
            const int a1 = int(below(rng, uint32_t(n))), a2 = other(a1, n);
            k = Clue{int8_t(rel), int8_t(a1), cell(h1, a1), int8_t(a2), cell(h2, a2)};
            if (k.a1 > k.a2) swap_items(k);
            break;
        }
        case kImmLeft: case kLeftOf: case kNextTo: {
            int h1, h2;
            if (rel == kLeftOf) {
                h1 = int(below(rng, uint32_t(m)));
                h2 = other(h1, m);
                if (h1 > h2) std::swap(h1, h2);
            } else {
                h1 = int(below(rng, uint32_t(m - 1)));
                h2 = h1 + 1;
            }
            const int a1 = int(below(rng, uint32_t(n))), a2 = int(below(rng, uint32_t(n)));
            k = Clue{int8_t(rel), int8_t(a1), cell(h1, a1), int8_t(a2), cell(h2, a2)};
            if (rel == kNextTo && (k.a1 > k.a2 || (k.a1 == k.a2 && k.v1 > k.v2))) swap_items(k);
            break;
        }
        default: {  // kAt, kNotAt
            const int h = int(below(rng, uint32_t(m))), a = int(below(rng, uint32_t(n)));
            const int where = rel == kAt ? h : other(h, m);
            k = Clue{int8_t(rel), int8_t(a), cell(h, a), int8_t(where), -1};
        }
    }
    return k;
}

inline bool same_clue(const Clue& x, const Clue& y) {
    return x.rel == y.rel && x.a1 == y.a1 && x.v1 == y.v1 && x.a2 == y.a2 && x.v2 == y.v2;
}

constexpr int kPool = 4 * kMaxItems;  // clues drawn for one solution at most, before pruning
constexpr int kMaxDraws = 16 * kPool;

}  // namespace

int parse_clues(const int8_t* tokens, int m, int n, int max_clues, Clue* out) {
    int count = 0;
    for (int s = 0; s < max_clues; ++s) {
        const int r = parse_slot(tokens + s * kClueTokens, m, n, out + count);
        if (r < 0) return -1 - s;
        count += r;
    }
    return count;
}

void write_clues(const Clue* clues, int count, int max_clues, int8_t* tokens) {
    for (int s = 0; s < max_clues; ++s) {
        int8_t* t = tokens + s * kClueTokens;
        if (s < count) {
            write_slot(clues[s], t);
        } else {
            for (int i = 0; i < kClueTokens; ++i) t[i] = kPad;
        }
    }
}

bool clue_holds(const Clue& k, const int8_t* grid, int m, int n) {
    const int x = house_of(grid, m, n, k.a1, k.v1);
    if (x < 0) return false;
    if (k.rel == kAt) return x == k.a2;
    if (k.rel == kNotAt) return x != k.a2;
    const int y = house_of(grid, m, n, k.a2, k.v2);
    if (y < 0) return false;
    switch (k.rel) {
        case kSame: return x == y;
        case kNotSame: return x != y;
        case kImmLeft: return x + 1 == y;
        case kLeftOf: return x < y;
        case kNextTo: return x + 1 == y || y + 1 == x;
        default: return false;
    }
}

int count_solutions(const Clue* clues, int nc, int m, int n, const int8_t* grid, int limit, int8_t* solution) {
    if (limit <= 0) return 0;
    Ctx c;
    make_ctx(c, clues, nc, m, n);
    return count_from(c, grid, limit, solution);
}

int ordered_solve(const Clue* clues, int nc, int m, int n, const int8_t* grid, const int8_t* solution,
                  int8_t* order, int8_t* technique, int8_t* clue, int* rounds) {
    Ctx c;
    make_ctx(c, clues, nc, m, n);
    for (int i = 0; i < c.items; ++i) order[i] = technique[i] = clue[i] = -1;
    *rounds = 0;
    Recorder rec{order, technique, clue, 0};
    uint8_t P[kMaxItems];
    init_domains(c, P);
    if (!apply_givens(c, grid, P, &rec)) return -1;
    int guesses = 0;
    uint64_t dirty = ~uint64_t(0);
    for (;;) {
        Prop p{c, P, &rec};
        if (!p.run(rounds, dirty)) return -1;
        int best = -1, best_count = 99;
        for (int e = 0; e < c.items; ++e) {
            const int k = popcount8(P[e]);
            if (k > 1 && k < best_count) {
                best = e;
                best_count = k;
            }
        }
        if (best < 0) break;
        const int a = best / m, h = house_of(solution, m, n, a, best % m);
        if (h < 0 || !p.narrow(best, uint8_t(1u << h), kGuess, -1)) return -1;
        dirty = uint64_t(1) << best;
        ++guesses;
    }
    int8_t got[kMaxItems];
    grid_of(c, P, got);
    return std::memcmp(got, solution, size_t(c.items)) == 0 ? guesses : -1;
}

void generate_one(uint64_t seed, uint64_t index, int m, int n, int max_clues, bool logic_only, int8_t* tokens,
                  int8_t* order, int8_t* technique, int8_t* clue, Stats* stats) {
    sudoku::Rng rng(sudoku::derive_seed(seed, kPuzzleStream, index));
    const int items = m * n;
    int8_t sol[kMaxItems], sol_house[kMaxItems];
    Clue pool[kPool], kept[kPool];
    Ctx c, ck;
    for (int attempt = 1; attempt <= kMaxAttempts; ++attempt) {
        for (int a = 0; a < n; ++a) {  // attribute a: a uniform permutation of its values over the houses
            int8_t perm[kMaxHouses];
            for (int h = 0; h < m; ++h) perm[h] = int8_t(h);
            for (int h = m - 1; h > 0; --h) std::swap(perm[h], perm[below(rng, uint32_t(h + 1))]);
            for (int h = 0; h < m; ++h) {
                sol[h * n + a] = perm[h];
                sol_house[a * m + perm[h]] = int8_t(h);
            }
        }
        // Draw clues true of sol until the solver proves the solution unique. A clue that changes nothing in
        // the propagated domains is dropped (pruning would drop nearly all of them anyway).
        int nc = 0;
        bool unique = false;
        make_ctx(c, pool, 0, m, n);
        uint8_t P[kMaxItems], Q[kMaxItems];
        std::memset(P, (1u << m) - 1, size_t(items));
        for (int draws = 0; draws < kMaxDraws && nc < kPool && !unique; ++draws) {
            const Clue k = draw_clue(rng, sol, m, n);
            bool dup = false;
            for (int i = 0; i < nc && !dup; ++i) dup = same_clue(pool[i], k);
            if (dup) continue;
            pool[nc] = k;
            c.clues = pool;
            c.nc = nc + 1;
            {
                const uint64_t x = uint64_t(1) << (k.a1 * m + k.v1);
                c.masks[nc] = k.rel == kAt || k.rel == kNotAt ? x : x | uint64_t(1) << (k.a2 * m + k.v2);
            }
            std::memcpy(Q, P, size_t(items));
            Prop p{c, Q, nullptr};
            p.run(nullptr, c.masks[nc]);  // P is a fixpoint of the other clues; k is true of sol: no contradiction
            if (std::memcmp(P, Q, size_t(items)) == 0) continue;
            ++nc;
            std::memcpy(P, Q, size_t(items));
            if (all_placed(c, P)) {
                unique = true;
            } else {
                unique = !has_other(c, Q, sol_house, 0);  // Q is already a fixpoint
            }
        }
        if (!unique) continue;
        // Prune to a minimal set: try dropping each clue once, in random order. Adding clues only removes
        // solutions, so a clue kept because dropping it from a superset broke uniqueness stays needed.
        int8_t perm[kPool];
        bool on[kPool];
        for (int i = 0; i < nc; ++i) {
            perm[i] = int8_t(i);
            on[i] = true;
        }
        for (int i = nc - 1; i > 0; --i) std::swap(perm[i], perm[below(rng, uint32_t(i + 1))]);
        int left = nc;
        for (int t = 0; t < nc; ++t) {
            on[perm[t]] = false;
            int k = 0;
            for (int i = 0; i < nc; ++i)
                if (on[i]) kept[k++] = pool[i];
            make_ctx(ck, kept, k, m, n);
            init_domains(ck, Q);
            if (!has_other(ck, Q, sol_house, ~uint64_t(0))) {
                --left;
            } else {
                on[perm[t]] = true;
            }
        }
        if (left > max_clues) continue;
        int k = 0;
        for (int i = 0; i < nc; ++i)
            if (on[i]) kept[k++] = pool[i];
        for (int i = k - 1; i > 0; --i) std::swap(kept[i], kept[below(rng, uint32_t(i + 1))]);
        int rounds = 0;
        const int guesses = ordered_solve(kept, k, m, n, nullptr, sol, order, technique, clue, &rounds);
        if (guesses < 0 || (logic_only && guesses > 0)) continue;
        write_clues(kept, k, max_clues, tokens);
        std::memcpy(tokens + max_clues * kClueTokens, sol, size_t(items));
        *stats = Stats{attempt, k, guesses, rounds};
        return;
    }
    std::memset(tokens, kPad, size_t(max_clues * kClueTokens));
    std::memset(tokens + max_clues * kClueTokens, kMask, size_t(items));
    std::memset(order, -1, size_t(items));
    std::memset(technique, -1, size_t(items));
    std::memset(clue, -1, size_t(items));
    *stats = Stats{-1, 0, 0, 0};
}

int check_one(const int8_t* tokens, int m, int n, int max_clues, uint8_t* cell_ok, uint8_t* clue_ok,
              uint8_t* consistent) {
    Clue clues[kMaxClues];
    int8_t slot_of[kMaxClues];
    int nc = 0;
    for (int s = 0; s < max_clues; ++s) {
        const int r = parse_slot(tokens + s * kClueTokens, m, n, clues + nc);
        if (r < 0) return -1 - s;
        if (r) slot_of[nc++] = int8_t(s);
    }
    const int items = m * n;
    const int8_t* cells = tokens + max_clues * kClueTokens;
    int8_t grid[kMaxItems], sol[kMaxItems];
    bool values = true;
    for (int i = 0; i < items; ++i) {
        const int t = cells[i] - kValueBase;
        grid[i] = int8_t(t >= 0 && t < m ? t : -1);
        values = values && grid[i] >= 0;
    }
    const int count = count_solutions(clues, nc, m, n, nullptr, 2, sol);
    for (int i = 0; i < items; ++i) cell_ok[i] = uint8_t(count > 0 && grid[i] == sol[i]);
    bool ok = values;
    for (int a = 0; a < n && ok; ++a) {
        unsigned seen = 0;
        for (int h = 0; h < m; ++h) seen |= 1u << grid[h * n + a];
        ok = seen == (1u << m) - 1;
    }
    for (int s = 0; s < max_clues; ++s) clue_ok[s] = 1;
    for (int i = 0; i < nc; ++i) {
        const bool holds = values && clue_holds(clues[i], grid, m, n);
        clue_ok[slot_of[i]] = uint8_t(holds);
        ok = ok && holds;
    }
    *consistent = uint8_t(ok);
    return count;
}

}  // namespace zebra
