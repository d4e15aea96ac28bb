"""Just enough NIfTI-1 for the GPU check's scripts, with the standard library only:
read a single-file volume (.nii or .nii.gz) as raw voxels, and write a cropped copy.

Used by scripts/gpu_check.py (a small volume for the CPU mode's inference) and by
scripts/pytorch_unet3d.py (the training data of the PyTorch baseline). niftyhost's own
reader (host/core/src/io) is the real one; this one knows 3D NIfTI-1 files without scaling
extensions, which is what data/ holds.
"""

import gzip
import struct

# NIfTI datatype code -> (struct format character, bytes per voxel).
DATATYPES = {
    2: ("B", 1),  # uint8
    4: ("h", 2),  # int16
    8: ("i", 4),  # int32
    16: ("f", 4),  # float32
    64: ("d", 8),  # float64
    256: ("b", 1),  # int8
    512: ("H", 2),  # uint16
    768: ("I", 4),  # uint32
}


class Volume:
    """A 3D NIfTI-1 volume: its header bytes, shape (i, j, k), datatype code, endianness
    ('<' or '>'), scaling and its voxels as raw bytes in file order (i fastest)."""

    def __init__(self, header, shape, datatype, endian, slope, inter, data):
        self.header = header
        self.shape = shape
        self.datatype = datatype
        self.endian = endian
        self.slope = slope
        self.inter = inter
        self.data = data


def _open(path, mode):
    return gzip.open(path, mode) if str(path).endswith(".gz") else open(path, mode)


def read(path):
    """Reads a single-file 3D NIfTI-1 volume; raises ValueError naming the file for
    anything else (NIfTI-2, 4D, an unknown datatype)."""
    with _open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 348:
        raise ValueError(f"{path}: {len(raw)} bytes, shorter than a NIfTI-1 header")
    endian = "<" if struct.unpack("<i", raw[:4])[0] == 348 else ">"
    if struct.unpack(endian + "i", raw[:4])[0] != 348:
        raise ValueError(f"{path}: not a NIfTI-1 file (sizeof_hdr is not 348)")
    dim = struct.unpack(endian + "8h", raw[40:56])
    datatype = struct.unpack(endian + "h", raw[70:72])[0]
    vox_offset = int(struct.unpack(endian + "f", raw[108:112])[0])
    slope, inter = struct.unpack(endian + "2f", raw[112:120])
    if dim[0] < 3 or any(d > 1 for d in dim[4 : dim[0] + 1]):
        raise ValueError(f"{path}: expected a 3D volume, got dim {dim}")
    if datatype not in DATATYPES:
        raise ValueError(f"{path}: datatype {datatype} is not one of {sorted(DATATYPES)}")
    shape = tuple(dim[1:4])
    size = shape[0] * shape[1] * shape[2] * DATATYPES[datatype][1]
    data = raw[vox_offset : vox_offset + size]
    if len(data) != size:
        raise ValueError(f"{path}: {len(data)} bytes of voxels, expected {size} for shape {shape}")
    return Volume(raw[:348], shape, datatype, endian, slope, inter, data)


def write_crop(src, dst, start, size):
    """Writes the box of `size` voxels from `start` (both (i, j, k)) of the volume in
    `src` to `dst` (.nii.gz), with the source's header but the new shape (its affine is
    left as it was: the crop is for timing, not for geometry)."""
    vol = read(src)
    for a in range(3):
        if start[a] < 0 or size[a] < 1 or start[a] + size[a] > vol.shape[a]:
            raise ValueError(f"{src}: crop {start} + {size} leaves the volume {vol.shape}")
    width = DATATYPES[vol.datatype][1]
    ni, nj = vol.shape[0], vol.shape[1]
    rows = []
    for k in range(start[2], start[2] + size[2]):
        for j in range(start[1], start[1] + size[1]):
            first = ((k * nj + j) * ni + start[0]) * width
            rows.append(vol.data[first : first + size[0] * width])
    header = bytearray(vol.header)
    struct.pack_into(vol.endian + "8h", header, 40, 3, size[0], size[1], size[2], 1, 1, 1, 1)
    struct.pack_into(vol.endian + "f", header, 108, 352.0)
    with gzip.open(dst, "wb") as f:
        f.write(bytes(header) + b"\0\0\0\0" + b"".join(rows))
