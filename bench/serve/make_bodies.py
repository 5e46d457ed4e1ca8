#!/usr/bin/python3
"""Writes the request bodies of bench/run_serve.sh for one Fashion-MNIST test image.

    make_bodies.py IMAGES.gz INDEX OUTDIR

OUTDIR/request.json: the Open Inference Protocol v2 JSON request, {"inputs":[{"name":"input",
"shape":[1,784],"datatype":"FP32","data":[...]}]}, the 784 pixels scaled to [0, 1] as kiln's IDX
loader scales them (the model standardises inside), each written as the shortest decimal that
reads back as the same float32 (what a client holding float32 tensors sends: "0.0", "0.40392157").
OUTDIR/request.bin: Triton's binary tensor extension for the same tensor: the JSON header, with
"parameters":{"binary_data_size":3136} on the input and no data, then the 3136 bytes of the 784
little-endian float32s. OUTDIR/request.bin.hlen: the JSON header's length, for the
Inference-Header-Content-Length header. Prints the sizes. Standard library only.
"""
import gzip
import json
import struct
import sys


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def shortest(x):
    """The shortest %g form that reads back as float32 x, with a '.0' on whole numbers."""
    for p in range(1, 10):
        s = "%.*g" % (p, x)
        if f32(float(s)) == x:
            break
    if all(c in "-0123456789" for c in s):
        s += ".0"
    return s


def main():
    images, index, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    with gzip.open(images) as f:
        head = f.read(16)
        magic, count, rows, cols = struct.unpack(">IIII", head)
        if magic != 2051 or rows * cols != 784 or not 0 <= index < count:
            sys.exit(f"make_bodies.py: {images} is not 28x28 IDX images with an image {index}")
        f.read(784 * index)
        pixels = f.read(784)
    x = [f32(p / 255.0) for p in pixels]
    data = "[" + ",".join(shortest(v) for v in x) + "]"
    body = ('{"inputs":[{"name":"input","shape":[1,784],"datatype":"FP32","data":' + data + "}]}")
    json.loads(body)  # well-formed
    with open(f"{out}/request.json", "w") as f:
        f.write(body)
    header = json.dumps({"inputs": [{"name": "input", "shape": [1, 784], "datatype": "FP32",
                                     "parameters": {"binary_data_size": 4 * 784}}]},
                        separators=(",", ":")).encode()
    raw = struct.pack("<784f", *x)
    with open(f"{out}/request.bin", "wb") as f:
        f.write(header + raw)
    with open(f"{out}/request.bin.hlen", "w") as f:
        f.write(f"{len(header)}\n")
    print(f"request.json {len(body)} bytes, request.bin {len(header) + len(raw)} bytes "
          f"(JSON header {len(header)} + {len(raw)} tensor bytes)")


if __name__ == "__main__":
    main()
