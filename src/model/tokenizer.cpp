#include "model/tokenizer.h"

namespace condense {

std::string Tokenizer::decode(const std::vector<int>& ids, int prev) const {
  std::string out;
  for (int id : ids) {
    out += decode_token(prev, id);
    prev = id;
  }
  return out;
}

}  // namespace condense
