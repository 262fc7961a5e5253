// L&O-NAE-SAT: clause structure, sequence generation, the exact checker and exact completion counts.
#include "nae.h"

#include <algorithm>
#include <string>
#include <unordered_set>
#include <vector>

#include "sudoku.h"  // the project's splitmix64 Rng and derive_seed

namespace nae {
namespace {

// Uniform integer in [0, n) from 64 random bits (multiply-shift; the bias is below n / 2^64).
inline uint32_t below(sudoku::Rng& rng, uint32_t n) {
    return uint32_t((static_cast<unsigned __int128>(rng.next()) * n) >> 64);
}

// NAE predicate of one clause: 1 unless its k latents are all equal. Branch-free over the clause (the
// outcome is random, so an early exit would mispredict often); the paper's width 3 gets its own path.
inline int8_t nae_of(const int8_t* latents, const int32_t* c, int k) {
    const int first = latents[c[0]];
    if (k == 3) return int8_t(((latents[c[1]] ^ first) | (latents[c[2]] ^ first)) != 0);
    int diff = 0;
    for (int t = 1; t < k; ++t) diff |= latents[c[t]] ^ first;
    return int8_t(diff != 0);
}

struct Counter {
    int n_latents, n_obs, k;
    const int32_t* clauses;
    std::vector<int32_t> free;        // masked latents, in index order (the search order)
    std::vector<int32_t> start, ids;  // CSR: the visible clauses completed at each search level
    std::vector<int8_t> vals;         // latents (visible ones fixed, masked ones set by the search)
    const int8_t* tokens;
    int64_t limit, count = 0;
    int64_t* ones;

    void leaf() {
        ++count;
        if (!ones) return;
        for (int p = 0; p < n_latents; ++p) ones[p] += vals[p];
        for (int j = 0; j < n_obs; ++j) ones[n_latents + j] += nae_of(vals.data(), clauses + size_t(j) * k, k);
    }

    void search(size_t level) {
        if (level == free.size()) {
            leaf();
            return;
        }
        for (int8_t v = 0; v <= 1; ++v) {
            vals[free[level]] = v;
            bool ok = true;
            for (int32_t e = start[level]; e < start[level + 1] && ok; ++e) {
                const int j = ids[e];
                ok = nae_of(vals.data(), clauses + size_t(j) * k, k) == tokens[n_latents + j];
            }
            if (ok) search(level + 1);
            if (!ones && count >= limit) return;
        }
    }
};

}  // namespace

uint64_t binomial(int n, int k) {
    constexpr uint64_t kCap = uint64_t(1) << 62;
    if (k < 0 || k > n) return 0;
    k = std::min(k, n - k);
    uint64_t c = 1;
    for (int i = 1; i <= k; ++i) {  // c = C(n - k + i, i), exact at every step
        const unsigned __int128 next = static_cast<unsigned __int128>(c) * uint64_t(n - k + i) / uint64_t(i);
        if (next >= kCap) return kCap;
        c = uint64_t(next);
    }
    return c;
}

bool clauses(uint64_t structure_seed, int n_latents, int k, size_t n_obs, int32_t* out) {
    if (uint64_t(n_obs) > binomial(n_latents, k)) return false;
    std::unordered_set<std::string> taken;
    taken.reserve(n_obs);
    for (size_t j = 0; j < n_obs; ++j) {
        sudoku::Rng rng(sudoku::derive_seed(structure_seed, kClauseStream, j));
        int32_t* c = out + size_t(k) * j;
        for (;;) {
            for (int t = 0; t < k; ++t) {
                int32_t x;
                bool seen;
                do {  // rejection of repeats within the clause: k is small, so a handful of draws
                    x = int32_t(below(rng, uint32_t(n_latents)));
                    seen = false;
                    for (int u = 0; u < t; ++u) seen |= c[u] == x;
                } while (seen);
                int u = t;  // insertion into the sorted prefix
                while (u > 0 && c[u - 1] > x) {
                    c[u] = c[u - 1];
                    --u;
                }
                c[u] = x;
            }
            if (taken.emplace(reinterpret_cast<const char*>(c), sizeof(int32_t) * size_t(k)).second) break;
        }
    }
    return true;
}

void generate_one(uint64_t seed, uint64_t index, int n_latents, int n_obs, int k, const int32_t* clauses,
                  int8_t* tokens) {
    sudoku::Rng rng(sudoku::derive_seed(seed, kLatentStream, index));
    uint64_t bits = 0;
    for (int i = 0; i < n_latents; ++i) {
        if ((i & 63) == 0) bits = rng.next();
        tokens[i] = int8_t((bits >> (i & 63)) & 1u);
    }
    int8_t* obs = tokens + n_latents;
    for (int j = 0; j < n_obs; ++j) obs[j] = nae_of(tokens, clauses + size_t(j) * k, k);
}

int check_one(const int8_t* tokens, int n_latents, int n_obs, int k, const int32_t* clauses, uint8_t* ok_tokens) {
    int bad = 0;
    for (int p = 0; p < n_latents; ++p) {
        ok_tokens[p] = uint8_t(tokens[p] == 0 || tokens[p] == 1);
        bad += !ok_tokens[p];
    }
    for (int j = 0; j < n_obs; ++j) {
        const int32_t* c = clauses + size_t(j) * k;
        const int8_t y = tokens[n_latents + j];
        bool ok = y == 0 || y == 1;
        for (int t = 0; t < k && ok; ++t) ok = ok_tokens[c[t]] != 0;
        ok = ok && nae_of(tokens, c, k) == y;
        ok_tokens[n_latents + j] = uint8_t(ok);
        bad += !ok;
    }
    return bad;
}

int64_t count_completions(const int8_t* tokens, int n_latents, int n_obs, int k, const int32_t* clauses,
                          int64_t limit, int64_t* ones) {
    const int length = n_latents + n_obs;
    for (int p = 0; p < length; ++p)
        if (tokens[p] != 0 && tokens[p] != 1 && tokens[p] != kMask) return -1;
    if (ones)
        for (int p = 0; p < length; ++p) ones[p] = 0;
    Counter c{n_latents, n_obs, k, clauses, {}, {}, {}, {}, tokens, limit, 0, ones};
    std::vector<int32_t> level(size_t(n_latents), -1);
    c.vals.assign(tokens, tokens + n_latents);
    for (int p = 0; p < n_latents; ++p)
        if (tokens[p] == kMask) {
            level[p] = int32_t(c.free.size());
            c.free.push_back(p);
        }
    // Each visible observation is checked at the level of its last masked latent, or now if it has none.
    std::vector<int32_t> at(size_t(n_obs), -1);
    std::vector<int32_t> per_level(c.free.size() + 1, 0);
    for (int j = 0; j < n_obs; ++j) {
        if (tokens[n_latents + j] == kMask) continue;
        const int32_t* cl = clauses + size_t(j) * k;
        int32_t last = -1;
        for (int t = 0; t < k; ++t) last = std::max(last, level[cl[t]]);
        if (last < 0) {
            if (nae_of(c.vals.data(), cl, k) != tokens[n_latents + j]) return 0;
            continue;
        }
        at[j] = last;
        ++per_level[size_t(last) + 1];
    }
    c.start.assign(c.free.size() + 1, 0);
    for (size_t d = 0; d < c.free.size(); ++d) c.start[d + 1] = c.start[d] + per_level[d + 1];
    c.ids.assign(size_t(c.start.back()), 0);
    std::vector<int32_t> fill(c.start.begin(), c.start.end() - 1);
    for (int j = 0; j < n_obs; ++j)
        if (at[j] >= 0) c.ids[size_t(fill[size_t(at[j])]++)] = j;
    if (limit <= 0 && !ones) return 0;
    c.search(0);
    return c.count;
}

}  // namespace nae
