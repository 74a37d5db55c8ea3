// The merge loop shared by every BPE tokenizer here: repeatedly merge the
// adjacent pair with the best priority, leftmost on ties, until no pair merges.
// llama2.c/SentencePiece use priority = the merged piece's score; Hugging Face
// BPE uses priority = -rank of the pair in its merges list.
#pragma once
#include <functional>
#include <vector>

namespace condense {

struct MergeCandidate {
  bool ok = false;
  float priority = 0;  // higher merges first
  int merged = -1;     // id of the merged token
};

// Rewrites `ids` in place. A heap ordered by (priority desc, position asc) picks
// the same pair a full rescan would: merged symbols keep their left position, so
// positions stay ordered, and entries whose symbols changed are skipped.
void bpe_merge(std::vector<int>& ids, const std::function<MergeCandidate(int left, int right)>& candidate);

}  // namespace condense
