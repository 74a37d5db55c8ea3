#include "io/train_state.h"

#include "io/atomic_writer.h"
#include "io/file_view.h"

#include <hdf5.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "core/error.h"
#include "io/crc32c.h"

namespace condense {

namespace {
// Closes an HDF5 handle on scope exit.
struct H5Handle {
  hid_t id;
  herr_t (*close)(hid_t);
  ~H5Handle() {
    if (id >= 0) close(id);
  }
};

void quiet() { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); }

// The file starts with a 512-byte HDF5 user block (HDF5 finds its superblock
// after it) that condense fills with a magic, the length of the rest and its
// CRC-32C. A reader checks them before HDF5 parses anything, so a damaged or
// foreign file is refused by condense, not handed to libhdf5's parser.
constexpr size_t kUserBlock = 512;
constexpr char kStateMagic[16] = {'C', 'O', 'N', 'D', 'E', 'N', 'S', 'E', '-', 'S', 'T', 'A', 'T', 'E', '\x1a', '\n'};

void seal(const std::string& tmp) {
  uint64_t len = 0;
  uint32_t crc = 0;
  {
    FileView f(tmp);
    if (f.size() < kUserBlock) fail(tmp, "the training state is shorter than its header block");
    len = f.size() - kUserBlock;
    crc = crc32c(f.data() + kUserBlock, len);
  }
  char head[kUserBlock] = {};
  std::memcpy(head, kStateMagic, 16);
  const uint32_t version = 1;
  std::memcpy(head + 16, &version, 4);
  std::memcpy(head + 24, &len, 8);
  std::memcpy(head + 32, &crc, 4);
  std::FILE* f = std::fopen(tmp.c_str(), "r+b");
  const bool ok = f && std::fwrite(head, 1, kUserBlock, f) == kUserBlock;
  const int err = errno;
  if (f && std::fclose(f) != 0 && ok) fail(tmp, std::string("cannot write the state's header block: ") + std::strerror(errno));
  if (!ok) fail(tmp, std::string("cannot write the state's header block: ") + std::strerror(err));
}

void verify(const std::string& path) {
  if (!std::filesystem::exists(path)) fail(path, "training state file not found");
  FileView f(path);
  if (f.size() < kUserBlock || std::memcmp(f.data(), kStateMagic, 16) != 0) {
    fail(path, "is not a condense training state (no CONDENSE-STATE header; states from before condense 0.1's checksums are not read)",
         "Point --resume at a state written by this condense, or start again without --resume");
  }
  uint64_t len = 0;
  uint32_t version = 0, crc = 0;
  std::memcpy(&version, f.data() + 16, 4);
  std::memcpy(&len, f.data() + 24, 8);
  std::memcpy(&crc, f.data() + 32, 4);
  if (version != 1) fail(path, "training state format version " + std::to_string(version) + " is not readable by this condense");
  if (len != f.size() - kUserBlock) fail(path, "is truncated: its header says " + std::to_string(len + kUserBlock) + " bytes, the file has " + std::to_string(f.size()));
  if (crc32c(f.data() + kUserBlock, len) != crc) fail(path, "checksum mismatch: the training state is damaged", "Resume from an intact state or start again");
}
}  // namespace

void write_train_state(const std::string& path, const std::string& meta, const NamedTensors& tensors) {
  quiet();
  const std::string tmp = temporary_path(path);
  {
    H5Handle fcpl{H5Pcreate(H5P_FILE_CREATE), H5Pclose};
    H5Pset_userblock(fcpl.id, kUserBlock);
    H5Handle f{H5Fcreate(tmp.c_str(), H5F_ACC_TRUNC, fcpl.id, H5P_DEFAULT), H5Fclose};
    if (f.id < 0) fail(path, "cannot create the training state file " + tmp, "Check the folder exists and is writable");
    H5Handle lcpl{H5Pcreate(H5P_LINK_CREATE), H5Pclose};
    H5Pset_create_intermediate_group(lcpl.id, 1);
    auto bad = [&](const std::string& what) {
      std::filesystem::remove(tmp);
      fail(path, "writing the training state failed at " + what, "Check free disk space");
    };
    {
      H5Handle type{H5Tcopy(H5T_C_S1), H5Tclose};
      H5Tset_size(type.id, std::max<size_t>(1, meta.size()));
      H5Handle space{H5Screate(H5S_SCALAR), H5Sclose};
      H5Handle attr{H5Acreate2(f.id, "meta", type.id, space.id, H5P_DEFAULT, H5P_DEFAULT), H5Aclose};
      if (attr.id < 0 || H5Awrite(attr.id, type.id, meta.data()) < 0) bad("the metadata");
    }
    for (const auto& [name, t] : tensors) {
      hsize_t dims[H5S_MAX_RANK] = {1};
      const int nd = std::max(1, t->ndim());
      for (int i = 0; i < t->ndim(); ++i) dims[i] = hsize_t(t->dim(i));
      H5Handle space{H5Screate_simple(nd, dims, nullptr), H5Sclose};
      H5Handle ds{H5Dcreate2(f.id, name.c_str(), H5T_IEEE_F32LE, space.id, lcpl.id, H5P_DEFAULT, H5P_DEFAULT), H5Dclose};
      if (ds.id < 0 || H5Dwrite(ds.id, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, t->f32()) < 0) bad("tensor " + name);
    }
    if (H5Fflush(f.id, H5F_SCOPE_GLOBAL) < 0) bad("flush");
    const hid_t id = f.id;
    f.id = -1;
    if (H5Fclose(id) < 0) bad("close");  // a full disk may show only here
  }
  try {
    seal(tmp);
    sync_file(tmp);
  } catch (...) {
    std::filesystem::remove(tmp);
    throw;
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::filesystem::remove(tmp);
    fail(path, "cannot rename the new training state into place: " + ec.message());
  }
}

std::string read_train_state_meta(const std::string& path) {
  quiet();
  verify(path);
  H5Handle f{H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose};
  if (f.id < 0) fail(path, "is not an HDF5 file (or is damaged)", "Point --resume at a state written by condense");
  H5Handle attr{H5Aopen(f.id, "meta", H5P_DEFAULT), H5Aclose};
  if (attr.id < 0) fail(path, "has no 'meta' attribute: not a condense training state");
  H5Handle type{H5Aget_type(attr.id), H5Tclose};
  if (H5Tget_class(type.id) != H5T_STRING) fail(path, "'meta' is not a string");
  std::string s(H5Tget_size(type.id), '\0');
  H5Handle mem{H5Tcopy(H5T_C_S1), H5Tclose};
  H5Tset_size(mem.id, s.size());
  if (H5Aread(attr.id, mem.id, s.data()) < 0) fail(path, "cannot read 'meta'");
  while (!s.empty() && s.back() == '\0') s.pop_back();
  return s;
}

void read_train_state_tensors(const std::string& path, const NamedTensors& tensors) {
  quiet();
  verify(path);
  H5Handle f{H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose};
  if (f.id < 0) fail(path, "is not an HDF5 file (or is damaged)");
  for (const auto& [name, t] : tensors) {
    if (H5Lexists(f.id, name.c_str(), H5P_DEFAULT) <= 0) {
      fail(path, "has no tensor '" + name + "'", "The state was written by a different model or recipe");
    }
    H5Handle ds{H5Dopen2(f.id, name.c_str(), H5P_DEFAULT), H5Dclose};
    H5Handle space{H5Dget_space(ds.id), H5Sclose};
    const int nd = H5Sget_simple_extent_ndims(space.id);
    hsize_t dims[H5S_MAX_RANK] = {};
    if (nd < 0 || H5Sget_simple_extent_dims(space.id, dims, nullptr) < 0) fail(path, "cannot read the shape of '" + name + "'");
    Shape got;
    for (int i = 0; i < nd; ++i) got.push_back(int64_t(dims[i]));
    Shape want = t->shape().empty() ? Shape{1} : t->shape();
    if (got != want) fail(path, "tensor '" + name + "' is " + shape_str(got) + ", expected " + shape_str(want));
    if (H5Dread(ds.id, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, t->f32()) < 0) fail(path, "cannot read tensor '" + name + "'");
  }
}

}  // namespace condense
