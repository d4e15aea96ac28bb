#!/usr/bin/env python3
"""Writes a synthetic int16 NIfTI-1 volume (default 512x512x400, 1 mm) for memory and
speed measurements of `niftyhost inference`. Standard library only.

    python3 scripts/synthetic_volume.py /tmp/big.nii 512 512 400
"""
import array
import struct
import sys


def main():
    path = sys.argv[1]
    ni, nj, nk = (int(v) for v in sys.argv[2:5]) if len(sys.argv) >= 5 else (512, 512, 400)
    header = bytearray(348)
    struct.pack_into("<i", header, 0, 348)
    struct.pack_into("<8h", header, 40, 3, ni, nj, nk, 1, 1, 1, 1)
    struct.pack_into("<hh", header, 70, 4, 16)  # datatype int16, bitpix
    struct.pack_into("<8f", header, 76, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0)
    struct.pack_into("<f", header, 108, 352.0)  # vox_offset
    struct.pack_into("<f", header, 112, 1.0)  # scl_slope
    struct.pack_into("<b", header, 123, 2)  # xyzt_units: mm
    struct.pack_into("<hh", header, 252, 0, 2)  # qform_code 0, sform_code 2 (aligned)
    struct.pack_into("<4f", header, 280, 1.0, 0.0, 0.0, -ni / 2)
    struct.pack_into("<4f", header, 296, 0.0, 1.0, 0.0, -nj / 2)
    struct.pack_into("<4f", header, 312, 0.0, 0.0, 1.0, -nk / 2)
    header[344:348] = b"n+1\0"
    with open(path, "wb") as f:
        f.write(header)
        f.write(b"\0" * 4)
        # A smooth ball of "tissue" on a noisy background, slice by slice.
        ci, cj, ck, r2 = ni / 2, nj / 2, nk / 2, (min(ni, nj, nk) * 0.4) ** 2
        for k in range(nk):
            dk = (k - ck) ** 2
            row = array.array("h")
            for j in range(nj):
                dj = (j - cj) ** 2 + dk
                row.extend(
                    (1000 if (i - ci) ** 2 + dj < r2 else 100) + ((i * 7 + j * 13 + k * 3) % 50) for i in range(ni)
                )
            f.write(row.tobytes())


if __name__ == "__main__":
    main()
