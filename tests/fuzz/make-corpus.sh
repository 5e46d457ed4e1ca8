#!/usr/bin/env bash
# Writes the seed inputs of the fuzz targets' corpora (tests/fuzz/corpus-{idx,csv,config,onnx}) and the
# real files the HDF5 targets' recipes start from (tests/fuzz/seeds-{hdf5,modelfile}, with their
# recipes in corpus-{hdf5,modelfile}: see fuzz_h5.h), with kiln itself (kiln data convert, kiln
# train, kiln export) and, for HDF5 files as other writers make them, h5py. Run it when a format
# changes; the corpora and seeds are committed.
# usage: tests/fuzz/make-corpus.sh PATH_TO_KILN
set -euo pipefail
kiln="$(cd "$(dirname "${1:?usage: make-corpus.sh PATH_TO_KILN}")" && pwd)/$(basename "$1")"
fuzz="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"

# IDX: the target's input is a 2-byte big-endian length, the images file, then the labels file.
idx_pair() { # OUT GZIP(0/1) N ROWS COLS
    local out="$1" gz="$2" n="$3" rows="$4" cols="$5"
    /usr/bin/python3 - "$n" "$rows" "$cols" <<'PY'
import struct, sys
n, r, c = map(int, sys.argv[1:])
open("img", "wb").write(struct.pack(">IIII", 0x803, n, r, c) + bytes((i * 37) % 256 for i in range(n * r * c)))
open("lab", "wb").write(struct.pack(">II", 0x801, n) + bytes(i % 3 for i in range(n)))
PY
    if [[ $gz == 1 ]]; then
        gzip -9 -n -f img lab && mv img.gz img && mv lab.gz lab
    fi
    local len
    len="$(stat -c %s img)"
    {
        printf "\\x$(printf %02x $((len >> 8)))\\x$(printf %02x $((len & 255)))"
        cat img lab
    } >"$fuzz/corpus-idx/$out"
}
mkdir -p "$fuzz"/corpus-{idx,csv,hdf5,config,modelfile} "$fuzz"/seeds-{hdf5,modelfile}
idx_pair raw-3x4x4 0 3 4 4
idx_pair gzip-5x3x2 1 5 3 2
idx_pair raw-1x1x1 0 1 1 1

# CSV: what the training loader reads; the classification set also trains the seed models.
printf 'a,b,label,c\n0.5,-1,0,3\n1e-3,2,1,"4"\n\n-7,0,2,1.25\n' >"$fuzz/corpus-csv/class.csv"
printf 'x, label\r\n1,0.5\r\n2,-1.5\r\n3, 2.25\r\n' >"$fuzz/corpus-csv/crlf.csv"
printf '\n\nlabel,f\n 1 , 2 \n0,3' >"$fuzz/corpus-csv/blank-lines.csv"
awk 'BEGIN { OFS = ","; print "a,b,c,d,label"
             for (i = 0; i < 60; i++) print (i % 7) / 3, (i % 5) - 2, (i % 3) * 0.5, i % 4, (i + (i % 7 > 3)) % 3 }' \
    >train.csv
awk 'BEGIN { OFS = ","; print "a,b,label"; for (i = 0; i < 60; i++) print (i % 7) / 3, (i % 5) - 2, (i % 7) / 3 - (i % 5) }' \
    >reg.csv

# HDF5: kiln's own layout (chunked, shuffled, deflated) and h5py's defaults.
"$kiln" data convert train.csv -o "$fuzz/seeds-hdf5/kiln-dataset.h5" >/dev/null
"$kiln" data convert reg.csv --task regression -o "$fuzz/seeds-hdf5/kiln-regression.h5" >/dev/null
/usr/bin/python3 - "$fuzz/seeds-hdf5" <<'PY'
import sys, h5py, numpy as np
d = sys.argv[1]
with h5py.File(d + "/h5py-f64-i64.h5", "w") as f:
    f["x"] = np.arange(30, dtype="f8").reshape(5, 2, 3) / 7
    f["y"] = np.arange(5, dtype="i8") % 2
with h5py.File(d + "/h5py-u8-gzip.h5", "w") as f:
    f.create_dataset("x", data=np.arange(48, dtype="u1").reshape(4, 12), chunks=(2, 12), compression="gzip")
    f.create_dataset("y", data=np.array([[0], [1], [1], [0]], dtype="i4"))
    f.attrs["classes"] = 2
with h5py.File(d + "/h5py-regression.h5", "w") as f:
    f["x"] = np.linspace(-1, 1, 12, dtype="f4").reshape(6, 2)
    f["y"] = np.linspace(0, 5, 12, dtype="f4").reshape(6, 2)
PY

# Configs: the examples, and one with overrides after NUL bytes (the target's format).
cp "$fuzz/../../examples/fashion-mnist/mlp.yaml" "$fuzz/corpus-config/mlp.yaml"
cp "$fuzz/../../examples/fashion-mnist/cnn.yaml" "$fuzz/corpus-config/cnn.yaml"
printf 'model: {layers: [{dense: {units: 8}}]}\ndata: {train: {format: csv, path: a.csv}}\n\0train.epochs=3\0model.layers.1={dropout: {rate: 0.5}}\0optimizer={name: sgd, lr: 0.1, momentum: 0.9}' \
    >"$fuzz/corpus-config/overrides.yaml"

# Model files: a small classifier and a regressor, trained here and exported.
cat >class.yaml <<YAML
name: class
model: {layers: [{dense: {units: 3, activation: tanh}}]}
data: {train: {format: csv, path: $work/train.csv}, standardize: feature}
train: {epochs: 1, batch_size: 20}
YAML
cat >reg.yaml <<YAML
name: reg
model: {layers: [{dense: {units: 2}}]}
data: {train: {format: csv, path: $work/reg.csv, label_column: label}, task: regression}
train: {epochs: 1, batch_size: 20}
YAML
"$kiln" train class.yaml --quiet >/dev/null
"$kiln" train reg.yaml --quiet >/dev/null
"$kiln" export runs/class -o "$fuzz/seeds-modelfile/classifier.h5" >/dev/null
"$kiln" export runs/reg -o "$fuzz/seeds-modelfile/regressor.h5" --no-reference >/dev/null
# Recipes (fuzz_h5.h): the first byte picks a seed in name order (hdf5: 0 h5py-f64-i64, 1
# h5py-regression, 2 h5py-u8-gzip, 3 kiln-dataset, 4 kiln-regression, 5 an empty file; modelfile:
# 0 classifier, 1 regressor), then ops of an op byte, a which byte and their arguments.
recipe() { printf "$2" >"$fuzz/corpus-$1/$3"; }
for k in 0 1 2 3 4; do recipe hdf5 "\x0$k" "seed-$k"; done
# An empty file given x f32 (4, 3) contiguous and y i32 (4) chunked and deflated.
recipe hdf5 '\x05\x00\x00\x08\x02\x04\x01\x03\x01\x00\x00\xff\x08\x00\x00\x80\x3f\x00\x00\x00\x40\x01\x01\x04\x01\x04\x04\x01\x02\xff\x04\x01\x00\x00\x00' from-scratch
# kiln's data set with a NaN poked into row 2 of x, and with format_version 2.
recipe hdf5 '\x03\x05\x00\x02\x7f\xc0\x00\x00' nan-row
recipe hdf5 '\x03\x02\x01\x00\x00\x00\x00\x02' format-version-2
# x replaced by a chunked, deflated (2^20 x 65536) f32 dataset that stores nothing.
recipe hdf5 '\x03\x00\x00\x08\x02\x94\x00\x00\x00\x01\x01\x90\x00\x00\x00\x01\x01\x01\x02\x00' huge-x
for k in 0 1; do recipe modelfile "\x0$k" "seed-$k"; done
# The classifier with a NaN input edge, with format_version 0, and with its config spliced at 40.
recipe modelfile '\x00\x06\x80\x01\x7f\xc0\x00\x00' nan-edge
recipe modelfile '\x00\x00\x00\x00\x00\x00\x00\x00' format-version-0
recipe modelfile '\x00\x03\x00\x00\x28\x02\x0ainputs: 9' config-splice
# ONNX: small models of the importer's tests (import_cases.py, which needs python3-onnx) and
# PyTorch's residual block at opset 13 (torch_peer.py, which needs python3-torch).
/usr/bin/python3 "$fuzz/../onnx/import_cases.py" "$kiln" onnx >/dev/null
for m in Softmax11 LogSoftmax13 clip9 clip13 unsq11 unsq13 raw typed bcast bn9 bn15 group flat \
    cycle dangle unsup; do
    cp "onnx/$m.onnx" "$fuzz/corpus-onnx/$m.onnx"
done
/usr/bin/python3 "$fuzz/../onnx/torch_peer.py" "$kiln" torch >/dev/null
cp torch/residual_opset13.onnx "$fuzz/corpus-onnx/residual.onnx"
ls -l "$fuzz"/corpus-{idx,csv,hdf5,config,modelfile,onnx} "$fuzz"/seeds-{hdf5,modelfile}
