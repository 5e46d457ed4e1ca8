#!/usr/bin/env bash
# kiln runs report in a real browser: three tiny runs (two optimizers, two learning rates, two
# lengths) compared on one page, which headless Chromium loads. The test checks the DOM Chromium
# built (a curve per run in each learning-curve plot, a line per run in the parallel
# coordinates with an axis per differing parameter, the differing-parameters table) and that the
# page logged nothing to the console (a page that does log is caught: a negative control), and
# keeps a screenshot (runs-report.png in the build folder). The errors of report come first.
# usage: test_runs_report.sh PATH_TO_KILN BUILD_DIR   (77: no chromium that can be installed)
set -uo pipefail
kiln="$1"
build="$2"
[[ $kiln == */* && $kiln != /* ]] && kiln="$PWD/$kiln"
name=test_runs_report
# shellcheck source=expect.sh
source "$(dirname "${BASH_SOURCE[0]}")/expect.sh"
tmp="$(mktemp -d)"
out="$tmp/out"
trap 'rm -rf "$tmp"' EXIT
cd "$tmp" || exit 1
if ! command -v chromium >/dev/null; then
    echo "chromium is not installed: installing Debian's package"
    { [ "$(id -u)" = 0 ] && apt-get update -q &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium; } \
        >apt.txt 2>&1
    command -v chromium >/dev/null || {
        tail -n 5 apt.txt
        echo "$name: skipped: no chromium (apt-get install chromium)"
        exit 77
    }
fi
browser() { # chromium's headless run of a page: its DOM on stdout, its log in $1.log
    local page="$1"
    shift
    timeout 120 chromium --headless --no-sandbox --disable-gpu --hide-scrollbars \
        --enable-logging=stderr --v=0 "$@" "file://$tmp/$page" 2>"$tmp/$page.log"
}

printf 'a,b,label\n' >d.csv
awk 'BEGIN { srand(3); for (i = 0; i < 200; i++) { a = rand(); b = rand();
     printf "%.4f,%.4f,%d\n", a, b, (a + b > 1) } }' >>d.csv
cat >tiny.yaml <<'EOF2'
model:
  layers:
    - dense: {units: 8, activation: relu}
data: {train: {format: csv, path: d.csv}, val_fraction: 0.2}
optimizer: {name: adam, lr: 1e-2}
train: {epochs: 3, batch_size: 16}
EOF2
expect 0 'done' -- train tiny.yaml --name adam-fast -q
expect 0 'done' -- train tiny.yaml --name adam-slow -q --set optimizer.lr=0.001
expect 0 'done' -- train tiny.yaml --name sgd-long -q --set optimizer.name=sgd \
    --set optimizer.lr=0.05 --set train.epochs=5

expect 2 'report: where to\? -o compare.html' -- runs report adam-fast
expect 2 'report needs a RUN or more' -- runs report -o x.html
expect 2 "report: unknown option '--bogus'" -- runs report adam-fast --bogus -o x.html
expect 1 "no run 'nope'" -- runs report adam-fast nope -o x.html
expect 1 'cannot write /nonexistent/x.html' -- runs report adam-fast -o /nonexistent/x.html
expect 0 'wrote compare.html: 3 runs' -- runs report adam-fast adam-slow sgd-long -o compare.html

browser compare.html --dump-dom >dom.html
check "chromium loaded the page" grep -q '<h1>Runs compared</h1>' dom.html
# DOM counts, from Chromium's serialisation of the page it built.
count() { grep -o "$1" dom.html | wc -l; }
for m in val_loss val_accuracy train_loss train_accuracy; do
    n=$(python3 - "$m" <<'EOF2'
import re, sys
dom = open("dom.html").read()
svg = re.search(r'<svg[^>]*id="curves-%s".*?</svg>' % sys.argv[1], dom, re.S)
print(len(re.findall(r'<polyline class="curve" data-run="[^"]+"[^>]*points="[0-9., ]{8,}"', svg.group(0))) if svg else -1)
EOF2
)
    check "curves-$m: a curve per run (got $n)" [ "$n" = 3 ]
done
check "no val_mae plot (no run has it)" [ "$(count 'id="curves-val_mae"')" = 0 ]
check "sgd-long's curve has 5 points" python3 -c "
import re; dom = open('dom.html').read()
m = re.search(r'id=\"curves-val_loss\".*?data-run=\"sgd-long\"[^>]*points=\"([^\"]*)\"', dom, re.S)
assert m and len(m.group(1).split()) == 5, m and m.group(1)"
check "parallel: a line per run" [ "$(grep -o '<polyline class="pc" data-run=' dom.html | wc -l)" = 3 ]
check "parallel: axes for lr, the optimizer and the metric" python3 -c "
import re; dom = open('dom.html').read()
svg = re.search(r'<svg[^>]*id=\"parallel\".*?</svg>', dom, re.S).group(0)
axes = re.findall(r'<g class=\"pc-axis\">.*?<text[^>]*text-anchor=\"middle\">([^<]*)</text></g>', svg, re.S)
assert {'optimizer.lr', 'optimizer.name', 'train.epochs', 'val_loss'} <= set(axes), axes"
check "table: differing params" grep -Eq '<tr class="param"><th>optimizer.lr</th><td class="n">0.01</td><td class="n">0.001</td><td class="n">0.05</td></tr>' dom.html
check "table: same params left out" bash -c "! grep -q '<th>train.batch_size</th>' dom.html"
check "table: metrics" grep -q '<tr class="metric"><th>val_accuracy (best)</th>' dom.html
check "no console messages" bash -c "! grep -q ':CONSOLE' '$tmp/compare.html.log'"
printf '<!DOCTYPE html><html><body><script>console.error("negative control")</script></body></html>' >neg.html
browser neg.html --dump-dom >/dev/null
check "a console error is caught" grep -q ':CONSOLE.*negative control' "$tmp/neg.html.log"
browser compare.html --window-size=1280,2400 --screenshot="$build/runs-report.png" >/dev/null
check "screenshot kept in $build/runs-report.png" [ -s "$build/runs-report.png" ]

echo "$name: $passed passed, $failed failed"
[[ $failed == 0 ]]
