// L&O-NAE-SAT engine: the latents-and-observations distribution of Kim et al. (ICML 2025, section 3.3)
// with not-all-equal observations. A task is (N latents, P observations, clause width k, structure
// seed); a sequence is N binary latents followed by P observations, observation j being 1 when the
// latents of clause j are not all equal and 0 when they are.
//
// Tokens are int8: 0 and 1 are values, kMask (2) a masked position (only in partial sequences).
// Clauses are int32 [P, k], k distinct latent indices in ascending order. Everything here is
// single-threaded per sequence; the batch drivers in module.cpp spread sequences over std::threads.
#pragma once

#include <cstddef>
#include <cstdint>

namespace nae {

constexpr int8_t kMask = 2;
constexpr int kMaxArity = 32;
// Streams of derive_seed (sudoku.h): clause j of a structure seed, latents of sequence i of a seed.
constexpr uint64_t kClauseStream = 0x4E41455F434C41ull;  // "NAE_CLA"
constexpr uint64_t kLatentStream = 0x4E41455F4C4154ull;  // "NAE_LAT"

// The P clauses of the structure `structure_seed`, into out [P, k]: each a set of k distinct indices of
// [0, n_latents), written in ascending order, and no two clauses the same set. Clause j is drawn
// uniformly from derive_seed(structure_seed, kClauseStream, j), redrawn while it repeats an earlier
// clause, so it is uniform over the sets not yet taken and depends only on (structure_seed, n_latents,
// k, j): a task with more observations keeps the clauses of one with fewer. Needs
// 2 <= k <= min(n_latents, kMaxArity); returns false (writing nothing) if P > C(n_latents, k).
bool clauses(uint64_t structure_seed, int n_latents, int k, std::size_t n_obs, int32_t* out);

// C(n, k), saturated at 2^62.
uint64_t binomial(int n, int k);

// Sequence `index` of the stream `seed`: N uniform bits (from derive_seed(seed, kLatentStream,
// index), 64 latents per draw), then the P observations of `clauses` [P, k].
void generate_one(uint64_t seed, uint64_t index, int n_latents, int n_obs, int k, const int32_t* clauses,
                  int8_t* tokens);

// Checks one completed sequence. ok_tokens[p] is 1 when position p holds a value (0 or 1) and, for an
// observation, its clause's latents all hold values and the observation equals their NAE predicate.
// Returns the number of positions that are not ok (0: the sequence is consistent).
int check_one(const int8_t* tokens, int n_latents, int n_obs, int k, const int32_t* clauses, uint8_t* ok_tokens);

// Exact completion count of one partial sequence (kMask at masked positions, 0/1 elsewhere): the
// number of assignments of the masked latents under which every visible observation equals its NAE
// predicate (masked observations then follow from the latents, so each assignment is one completion).
// Depth-first search over the masked latents in index order, each visible clause checked as soon as
// its last masked latent is set; exponential in the worst case, for small sizes. Stops at `limit`
// unless `ones` is not null: then the search is complete and ones[p] counts the completions in which
// position p is 1 (for every position, visible or not), which gives the exact posterior marginals.
// Returns -1 if a token is not 0, 1 or kMask.
int64_t count_completions(const int8_t* tokens, int n_latents, int n_obs, int k, const int32_t* clauses,
                          int64_t limit, int64_t* ones);

}  // namespace nae
