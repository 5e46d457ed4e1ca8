#!/usr/bin/env bash
# kiln export and kiln predict as a user runs them, on a model trained here on a Fashion-MNIST
# slice: predict's loss and accuracy equal the test metrics kiln train reported; IDX, HDF5 and
# CSV inputs (with and without answers) give the same probabilities; h5py, the peer reader,
# finds the documented layout in the model file (signature, labels, parameter shapes as kiln
# reports them, reference statistics that numpy recomputes); and bad input gets a clear error.
# Skipped (exit 77) without Fashion-MNIST.
# usage: test_export_predict.sh PATH_TO_KILN
set -uo pipefail
kiln="$1"
[[ $kiln == */* && $kiln != /* ]] && kiln="$PWD/$kiln"
examples="$(cd "$(dirname "$0")/../../examples" && pwd)"
fm=/usr/share/datasets/fashion-mnist
py=/usr/bin/python3
# shellcheck source=../skip.sh
source "$(dirname "${BASH_SOURCE[0]}")/../skip.sh"
[[ -e $fm/train-images-idx3-ubyte.gz ]] ||
    skip_missing test_export_predict "Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)"
"$py" -c 'import h5py, numpy' 2>/dev/null ||
    skip_missing test_export_predict "no python3-h5py (h5py, the peer reader, checks the files)"
# shellcheck source=expect.sh
source "$(dirname "${BASH_SOURCE[0]}")/expect.sh"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cd "$tmp" || exit 1
out="$tmp/out"


# The data through a folder of links, so that it can be taken away later (export without data).
mkdir data && ln -s "$fm"/*.gz data/
images="$fm/t10k-images-idx3-ubyte.gz"
labels="$fm/t10k-labels-idx1-ubyte.gz"

# A model trained on the first 600 images (no validation split, so that the reference
# statistics describe exactly those 600, which numpy recomputes below).
"$kiln" train "$examples/fashion-mnist/mlp.yaml" --set data.limit=600 --set train.epochs=1 \
    --set train.batch_size=50 --set schedule.warmup_steps=0 --set data.val_fraction=0 \
    --set data.dir="$tmp/data" --set train.threads=1 --name ep --json >train.json 2>train.err
check "kiln train exits 0" test $? -eq 0
check "kiln train writes runs/ep/checkpoints/final.h5" test -s runs/ep/checkpoints/final.h5
ckpt=runs/ep/checkpoints/final.h5

# Export from the run folder; it says what it wrote.
"$kiln" export runs/ep -o model.h5 >export.out 2>&1
check "kiln export runs/ep exits 0" test $? -eq 0
check "kiln export names what it wrote" grep -q "^wrote model.h5 (kiln-model) from $ckpt" export.out
check "kiln export prints the signature" \
    grep -q '^  input:  input FP32 \[-1, 1, 28, 28\], standardised inside' export.out
check "kiln export prints the output" grep -q '^  output: probabilities FP32 \[-1, 10\]' export.out
check "kiln export prints the labels" grep -q '^  labels: T-shirt/top, Trouser, .*, Ankle boot$' \
    export.out
check "kiln export prints the reference" grep -q '^  reference: 600 training samples' export.out
check "kiln export leaves no temporary file" test -z "$(ls | grep '\.tmp\.')"
[[ -s model.h5 ]] || sed 's/^/    /' export.out

# The peer reader: h5py finds the documented layout, and numpy recomputes the reference.
check "h5py reads model.h5 as documented in docs/formats.md" "$py" - model.h5 export.out \
    "$fm" <<'EOF'
import gzip, re, sys
import h5py, numpy as np
f = h5py.File(sys.argv[1], "r")
assert f.attrs["format"] == "kiln-model" and f.attrs["format_version"] == 1, dict(f.attrs)
assert "kiln_version" in f.attrs and "created" in f.attrs
sig = f["signature"]
assert sig.attrs["task"] == "classification"
inp, outp = sig["inputs/input"], sig["outputs/probabilities"]
assert list(inp.attrs["shape"]) == [-1, 1, 28, 28] and inp.attrs["datatype"] == "FP32"
assert list(outp.attrs["shape"]) == [-1, 10] and outp.attrs["datatype"] == "FP32"
names = list(f["labels"].asstr()[:])
assert names == ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                 "Sneaker", "Bag", "Ankle boot"], names
assert f["preprocessing"].attrs["standardize"] == "global" and f["preprocessing/mean"].shape == (1,)
# Parameter shapes: what kiln export printed, line by line.
printed = dict(re.findall(r"^    (\S+) +\[([0-9, ]+)\]$", open(sys.argv[2]).read(), re.M))
assert set(printed) == set(f["params"]), (sorted(printed), sorted(f["params"]))
for name, shape in printed.items():
    assert f["params"][name].shape == tuple(int(d) for d in shape.split(",")), name
# Reference statistics over the 600 training images (all of them: fewer than 10000).
ref = f["reference"]
assert ref.attrs["samples"] == 600 and ref.attrs["bins"] == 10
edges, props = ref["input/edges"][:], ref["input/proportions"][:]
assert edges.shape == (784, 11) and props.shape == (784, 10)
with gzip.open(sys.argv[3] + "/train-images-idx3-ubyte.gz") as g:
    x = np.frombuffer(g.read(), np.uint8, offset=16).reshape(-1, 784)[:600]
x = x.astype(np.float32) / np.float32(255)
want = np.quantile(x.astype(np.float64), np.linspace(0, 1, 11), axis=0).T
assert np.abs(edges - want).max() < 1e-6, np.abs(edges - want).max()
bins = np.array([np.searchsorted(edges[j, 1:10], x[:, j], side="right") for j in range(784)])
counts = np.stack([np.bincount(b, minlength=10) for b in bins]) / 600.0
assert np.abs(props - counts).max() < 1e-6, np.abs(props - counts).max()
with gzip.open(sys.argv[3] + "/train-labels-idx1-ubyte.gz") as g:
    y = np.frombuffer(g.read(), np.uint8, offset=8)[:600]
lp, pp = ref["labels/proportions"][:], ref["predictions/proportions"][:]
assert np.abs(lp - np.bincount(y, minlength=10) / 600.0).max() < 1e-6
assert pp.shape == (10,) and abs(pp.sum() - 1) < 1e-5
EOF

# The numbers: predict on the test set equals the evaluation kiln train reported.
metrics() { # FILE: prints "loss accuracy" from kiln predict's output
    sed -nE 's/^loss ([0-9.e+-]+)  accuracy ([0-9.e+-]+) .*/\1 \2/p' "$1"
}
same_as_training() { # FILE: loss and accuracy within 1e-6 of train.json's test metrics
    "$py" -c '
import json, sys
t = json.loads(open(sys.argv[1]).read().splitlines()[-1])
loss, acc = map(float, sys.argv[2].split())
ok = abs(loss - t["test_loss"]) <= 1e-6 and abs(acc - t["test_accuracy"]) <= 1e-6
if not ok:
    print("predict %s %s vs train %s %s" % (loss, acc, t["test_loss"], t["test_accuracy"]))
sys.exit(0 if ok else 1)' train.json "$(metrics "$1")"
}
expect 0 '^loss [0-9.]+  accuracy 0\.[0-9]+ \([0-9]+ of 10000\)$' -- \
    predict model.h5 --input "$images" --labels "$labels" -o preds.h5
cp "$out" predict.out
check "predict (batch 256) gives train's test loss and accuracy" same_as_training predict.out
check "predict says how fast it went" \
    grep -Eq '^scored 10000 samples of .* in [0-9.]+ s \([0-9]+ samples/s, batch 256, CPU\)$' predict.out
check "predict off a terminal draws no progress line" test "$(grep -c $'\r' predict.out)" -eq 0
expect 0 '^loss' -- predict model.h5 --input "$images" --labels "$labels" --batch-size 50
check "predict (batch 50, training's) gives train's test loss and accuracy" same_as_training "$out"
expect 0 '^loss' -- predict model.h5 --input "$images" --labels "$labels" --batch-size 7 --quiet \
    -o p7.csv
check "predict --quiet prints only the metrics" test "$(wc -l <"$out")" -eq 1
check "predict (batch 7) gives train's test loss and accuracy" same_as_training "$out"
expect 2 "--device 'gpu': use cpu, cuda or auto" -- predict model.h5 --input "$images" --device gpu
if ! nvidia-smi -L >/dev/null 2>&1; then
    expect 1 'kiln predict: device: cuda was asked for, but' -- \
        predict model.h5 --input "$images" --device cuda
    expect 0 'batch 256, CPU\)$' -- predict model.h5 --input "$images" --device auto
fi

# The same inputs as HDF5 (with y), and without answers as IDX, HDF5 and CSV.
expect 0 'wrote test.h5' -- data convert "$fm/t10k-images-idx3-ubyte.gz" --labels "$labels" \
    -o test.h5
expect 0 'accuracy' -- predict model.h5 --input test.h5 -o preds_h5.h5
check "predict on HDF5 with y gives train's test loss and accuracy" same_as_training "$out"
expect 0 'wrote preds.csv' -- predict model.h5 --input "$images" -o preds.csv
check "predict without answers prints no metrics" test "$(grep -c '^loss' "$out")" -eq 0
# Any number of threads: kiln's loops give the same bits, OpenBLAS's GEMMs may differ in the
# last ones (docs/config.md), so the same labels and probabilities within 1e-6.
expect 0 'wrote preds_t1.csv' -- predict model.h5 --input "$images" -o preds_t1.csv --threads 1
expect 0 'wrote preds_t3.csv' -- predict model.h5 --input "$images" -o preds_t3.csv --threads 3
same_predictions() { # A.csv B.csv
    "$py" - "$1" "$2" <<'EOF2'
import csv, sys
a, b = (list(csv.reader(open(f))) for f in sys.argv[1:3])
assert a[0] == b[0] and len(a) == len(b) == 10001, "headers or row counts differ"
worst = 0.0
for ra, rb in zip(a[1:], b[1:]):
    assert ra[:2] == rb[:2], "labels differ: %s vs %s" % (ra[:2], rb[:2])
    worst = max(worst, max(abs(float(x) - float(y)) for x, y in zip(ra[2:], rb[2:])))
assert worst <= 1e-6, "probabilities differ by %g" % worst
EOF2
}
check "predict --threads 1 and 3 give the same labels, probabilities within 1e-6" \
    same_predictions preds_t1.csv preds_t3.csv
check "and the default threads too" same_predictions preds.csv preds_t1.csv
expect 2 "--threads 'x': give a number from 0 to 4096" -- predict model.h5 --input "$images" --threads x
"$py" - "$fm" <<'EOF'
import gzip, sys
import h5py, numpy as np
with gzip.open(sys.argv[1] + "/t10k-images-idx3-ubyte.gz") as g:
    x = np.frombuffer(g.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28)[:64]
x = x.astype(np.float32) / np.float32(255)
with h5py.File("x64.h5", "w") as f:
    f["x"] = x
    f["bad"] = np.where(np.arange(x.size).reshape(x.shape) == 3000, np.nan, x)
with open("x64.csv", "w") as f:
    f.write(",".join("px%d" % i for i in range(784)) + "\n")
    for row in x.reshape(64, 784):
        f.write(",".join("%.9g" % v for v in row) + "\n")
EOF
expect 0 'wrote p64_h5.csv' -- predict model.h5 --input x64.h5 -o p64_h5.csv
expect 0 'wrote p64_csv.h5' -- predict model.h5 --input x64.csv -o p64_csv.h5
# Without -o: the predictions as CSV on standard output, the other lines on standard error.
"$kiln" predict model.h5 --input x64.h5 >stdout.csv 2>stderr.txt
check "predict without -o exits 0" test $? -eq 0
check "and writes the CSV predictions to standard output" cmp -s stdout.csv p64_h5.csv
check "and its summary to standard error" grep -q '^scored 64 samples' stderr.txt
# An output name that says no format: refused as a usage error before any work (the model is
# not even opened).
expect 2 "-o out.txt: name the predictions file .h5, .hdf5 or .csv" -- \
    predict absent.h5 --input x64.h5 -o out.txt
check "nothing written" test ! -e out.txt
check "IDX, HDF5 and CSV inputs and outputs agree, labels are the argmax" "$py" - <<'EOF'
import csv
import h5py, numpy as np
a = h5py.File("preds.h5", "r")
assert a.attrs["format"] == "kiln-predictions" and a.attrs["format_version"] == 1
p, lab = a["probabilities"][:], a["labels"][:]
assert p.shape == (10000, 10) and p.dtype == np.float32 and lab.dtype == np.int32
assert np.abs(p.sum(1) - 1).max() < 1e-5 and (lab == p.argmax(1)).all()
assert list(a["label_names"].asstr()[:])[0] == "T-shirt/top"
b = h5py.File("preds_h5.h5", "r")
assert np.array_equal(b["probabilities"][:], p) and np.array_equal(b["labels"][:], lab)
rows = list(csv.reader(open("preds.csv")))
assert rows[0][:3] == ["label", "label_name", "p_T-shirt/top"] and len(rows) == 10001, rows[0]
c = np.array([[float(v) for v in r[2:]] for r in rows[1:]], np.float32)
assert np.abs(c - p).max() < 1e-7 and [int(r[0]) for r in rows[1:]] == list(lab)
assert rows[1][1] == ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                      "Sneaker", "Bag", "Ankle boot"][lab[0]]
# Another batch size (64 rows, not 256) may move a probability by an ulp or two.
q = np.array([[float(v) for v in r[2:]] for r in list(csv.reader(open("p64_h5.csv")))[1:]])
assert np.abs(q - p[:64]).max() < 1e-6
assert np.abs(h5py.File("p64_csv.h5", "r")["probabilities"][:] - p[:64]).max() < 1e-6
EOF

# On a terminal the progress line redraws itself; script(1) gives one where a pseudo-terminal
# can be opened (not in a container without /dev/pts).
if script -qec true /dev/null >/dev/null 2>&1; then
    script -qc "'$kiln' predict model.h5 --input x64.h5 --batch-size 16" /dev/null >tty.out 2>&1
    check "predict on a terminal draws a progress line" \
        grep -q $'\r\033\\[Kpredict: 64/64 samples  [0-9]* samples/s' tty.out
    script -qc "'$kiln' predict model.h5 --input x64.h5 --quiet -o tty.csv" /dev/null >tty.out 2>&1
    check "predict --quiet on a terminal draws none" test ! -s tty.out
else
    echo "skipped: the progress line on a terminal (no pseudo-terminal can be opened here)"
fi

# Bad input gets a clear error that names the thing.
printf 'a,b,c\n1,2,3\n' >three.csv
expect 1 'three.csv has samples of shape \[3\], but the model model.h5 takes input of shape \[1, 28, 28\] \(784 values per sample\)' -- \
    predict model.h5 --input three.csv
printf 'a,b\n1,nan\n' >nan.csv
expect 1 "nan.csv:2: column 'b': 'nan' is not a finite number" -- predict model.h5 --input nan.csv
printf 'a,label\n1,0\nnan,1\n' >nanl.csv
expect 1 "nanl.csv:3: column 'a': 'nan' is not a finite number" -- \
    predict model.h5 --input nanl.csv
expect 1 "x64.h5: dataset 'bad': sample 3 \(counting from 0\) holds nan; NaN and Inf are refused" -- \
    predict model.h5 --input x64.h5 --x bad
head -n 2 x64.csv | sed '2s/^[^,]*,/,/' >empty.csv
expect 1 "empty.csv:2: column 'px0': '' is not a finite number" -- predict model.h5 --input empty.csv
(head -n 1 x64.csv | sed 's/^/label,/' && tail -n +2 x64.csv | head -n 3 | sed 's/^/12,/') >l12.csv
expect 1 'label 12 of record 0 .* out of range: the model model.h5 has 10 classes' -- \
    predict model.h5 --input l12.csv
expect 1 "is a kiln-checkpoint file, not a kiln-model \(export it first: kiln export CKPT -o model.h5\)" -- \
    predict "$ckpt" --input x64.h5
expect 1 'model.h5 is a kiln-model file, not input data' -- predict model.h5 --input model.h5
expect 1 'cannot open nope.h5: No such file or directory' -- predict nope.h5 --input x64.h5
expect 1 'cannot open nope.csv: No such file or directory' -- predict model.h5 --input nope.csv
expect 1 'is an IDX labels file, not images' -- predict model.h5 --input "$labels"
gzip -dc "$images" | head -c 3000 >cut-idx3-ubyte
expect 1 'cut-idx3-ubyte: truncated: the data ends at image 3 \(counting from 0\) of the 10000' -- \
    predict model.h5 --input cut-idx3-ubyte
expect 1 'not an HDF5 file' -- predict model.h5 --input three.csv --format hdf5
expect 1 'is not an HDF5 file' -- predict three.csv --input x64.h5
head -c 20000 model.h5 >truncated.h5
expect 1 'truncated.h5 cannot be opened as HDF5: the file is truncated or damaged' -- \
    predict truncated.h5 --input x64.h5
expect 2 'name the predictions file .h5, .hdf5 or .csv' -- \
    predict model.h5 --input x64.h5 -o preds.txt
expect 2 "cannot tell the format of 'x64.txt'" -- predict model.h5 --input x64.txt
expect 2 'give --input FILE' -- predict model.h5
expect 2 'which model' -- predict
expect 2 "--batch-size '0'" -- predict model.h5 --input x64.h5 --batch-size 0
expect 2 "--format 'xml'" -- predict model.h5 --input x64.h5 --format xml
expect 2 "unknown option '--fast'" -- predict model.h5 --input x64.h5 --fast
expect 0 'usage: kiln predict' -- predict --help
expect 0 'usage: kiln predict' -- help predict

# export: class names, --no-reference, missing data, and its errors. A failed export leaves
# neither the file nor a temporary one.
printf 'zero\none\ntwo\nthree\nfour\nfive\nsix\nseven\neight\nnine\n' >names.txt
expect 0 'labels: zero, one, two' -- export "$ckpt" -o named.h5 --labels names.txt
expect 0 'wrote named.csv' -- predict named.h5 --input x64.h5 -o named.csv
check "predict writes the class names into its CSV header" grep -q '^label,label_name,p_zero,p_one' \
    named.csv
head -n 9 names.txt >nine.txt
expect 1 'nine.txt has 9 class names but the model has 10 classes' -- \
    export "$ckpt" -o bad.h5 --labels nine.txt
check "a failed export writes nothing" test -z "$(ls | grep -e '^bad\.h5' -e '\.tmp\.')"
expect 0 'reference: 100 training samples' -- export "$ckpt" -o small.h5 --reference-samples 100
rm -r data
expect 1 'need the training data .* cannot be loaded here: .*pass --no-reference' -- \
    export "$ckpt" -o nodata.h5
check "an export without data writes nothing" test ! -e nodata.h5
expect 0 'reference: none \(--no-reference\)' -- export "$ckpt" -o noref.h5 --no-reference
check "--no-reference writes no /reference" "$py" -c '
import h5py; f = h5py.File("noref.h5", "r"); assert "reference" not in f and "signature" in f'
expect 0 '^loss' -- predict noref.h5 --input test.h5 --quiet
check "a model without reference predicts the same" same_as_training "$out"
mkdir -p empty
expect 1 'empty has no checkpoint' -- export empty -o x.h5
expect 1 'three.csv is not an HDF5 file' -- export three.csv -o x.h5
expect 1 'is a kiln-model file, not a kiln-checkpoint' -- export model.h5 -o x.h5
expect 1 'cannot create' -- export "$ckpt" -o nodir/x.h5 --no-reference
expect 2 'give -o MODEL.h5' -- export "$ckpt"
expect 2 'which checkpoint' -- export -o x.h5
expect 2 "reference-samples 'many'" -- export "$ckpt" -o x.h5 --reference-samples many
expect 0 'usage: kiln export' -- export --help

echo "test_export_predict: $passed passed, $failed failed"
((failed == 0))
