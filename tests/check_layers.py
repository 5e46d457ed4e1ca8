#!/usr/bin/env python3
"""Checks that kiln's dependencies point down the layer table.

The table lives in docs/architecture.md, between the lines `<!-- layers -->` and
`<!-- /layers -->`: a Markdown table whose rows are `| layer | rank | paths |`, the paths in
backticks (a folder ends with `/`). A source file or public header belongs to the layer whose path
matches it most specifically. A file may include headers of its own layer and of layers of a lower
rank; layers of the same rank (trainers and serve) may not include each other. A layer named
FAMILY.PART (serve.http) is a part of layer FAMILY: between parts of one family the whole rank
counts (2.5 may use 2.3), between families only its integer part (serve.http, 2.5, may not use
trainers, 2). Every header under
include/kiln/ must be in the table, so that a new one cannot slip past the check. A private
header (a name ending in _impl.h) may be included only from its own folder and the folders below
it: an internal API other folders use gets a name of its own.

With --objects BUILD_DIR it also checks the calls themselves, which an include cannot show (a
function declared in a low layer's header but defined in a higher layer's file): every symbol an
object file of libkiln uses and another of its object files defines must be defined in the same
layer or a lower one (read with nm).

usage: tests/check_layers.py [--objects BUILD_DIR] [ROOT]   (exit 0: every dependency points down;
1: the violations, one per line; 2: the table could not be read)
"""
import subprocess
import os
import re
import sys

SOURCES = ("ops", "runtime", "trainers", "serve", "tune", "cli", "include/kiln")


def read_table(root):
    path = os.path.join(root, "docs", "architecture.md")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    m = re.search(r"<!-- layers -->\n(.*?)<!-- /layers -->", text, re.S)
    if not m:
        sys.exit(f"{path}: no layer table between <!-- layers --> and <!-- /layers -->")
    layers = []  # (path, layer, rank)
    for line in m.group(1).splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not re.fullmatch(r"\d+(\.\d+)?", cells[1]):
            continue  # the header row and its rule
        name, rank = cells[0].strip("`"), float(cells[1])
        for p in re.findall(r"`([^`]+)`", cells[2]):
            layers.append((p, name, rank))
    if not layers:
        sys.exit(f"{path}: the layer table has no rows")
    return layers


def layer_of(rel, table):
    """The (layer, rank) of a path relative to the root: the longest matching table path."""
    best = None
    for p, name, rank in table:
        hit = rel == p or (p.endswith("/") and rel.startswith(p))
        if hit and (best is None or len(p) > len(best[0])):
            best = (p, name, rank)
    return (best[1], best[2]) if best else None


def points_up(mine, theirs):
    """Whether a file of layer mine (name, rank) may not use one of layer theirs."""
    if theirs[0] == mine[0]:
        return False
    if theirs[0].split(".")[0] == mine[0].split(".")[0]:
        return theirs[1] >= mine[1]
    return int(theirs[1]) >= int(mine[1])


def resolve(inc, src_rel, root):
    """The path (relative to the root) an #include "..." names, or None outside the tree."""
    candidates = [os.path.normpath(os.path.join(os.path.dirname(src_rel), inc)), inc]
    if inc.startswith("kiln/"):
        candidates.insert(0, os.path.join("include", inc))
    for c in candidates:
        for name in (c, c + ".in"):  # kiln/version.h is made from version.h.in
            if os.path.exists(os.path.join(root, name)):
                return name
    return None


def nm(objs, *flags):
    """{object file: [symbol, ...]} from one nm call over all of objs (-A names each line's
    file), not a call per file: a few hundred processes took a minute on a loaded machine."""
    out = subprocess.run(["nm", "-A", *flags, *objs], capture_output=True, text=True,
                         check=True).stdout
    syms = {obj: [] for obj in objs}
    for line in out.splitlines():
        where, sep, rest = line.partition(".o:")
        if sep and rest.split():
            syms.setdefault(where + ".o", []).append(rest.split()[-1])
    return syms


def check_objects(build, root, table):
    """Calls that point up: (symbol user, user's layer, definer, definer's layer) as messages."""
    objdir = os.path.join(build, "CMakeFiles", "libkiln.dir")
    # The library's sources as CMakeLists.txt lists them: an object file of a source that moved
    # away stays in the build folder and must not count.
    with open(os.path.join(root, "CMakeLists.txt"), encoding="utf-8") as f:
        m = re.search(r"add_library\(libkiln(.*?)\)", f.read(), re.S)
    srcs = re.findall(r"[\w/]+\.(?:c|cu)\b", m.group(1)) if m else []
    objs = {src: os.path.join(objdir, src + ".o") for src in srcs
            if os.path.exists(os.path.join(objdir, src + ".o"))}
    if not objs:
        sys.exit(f"check_layers: no object files of libkiln under {objdir}")
    paths = sorted(objs.values())
    defined_in, undefined_in = nm(paths, "--defined-only", "-g"), nm(paths, "-u")
    defined = {}
    for src, obj in objs.items():
        for sym in defined_in[obj]:
            defined[sym] = src
    bad = []
    for src, obj in sorted(objs.items()):
        mine = layer_of(src, table)
        for sym in sorted(set(undefined_in[obj])):
            where = defined.get(sym)
            if not where or not mine:
                continue
            theirs = layer_of(where, table)
            if theirs and points_up(mine, theirs):
                bad.append(f"{src}: {mine[0]} (rank {mine[1]:g}) calls {sym}, defined in {where} "
                           f"of {theirs[0]} (rank {theirs[1]:g}): dependencies point down only")
    return bad


def main():
    args = sys.argv[1:]
    build = None
    if args[:1] == ["--objects"]:
        build, args = args[1], args[2:]
    root = os.path.abspath(args[0] if args else os.path.join(os.path.dirname(__file__), ".."))
    table = read_table(root)
    bad = check_objects(build, root, table) if build else []
    for top in SOURCES:
        for dirpath, _, files in os.walk(os.path.join(root, top)):
            for fn in sorted(files):
                if not fn.endswith((".c", ".h", ".cu", ".h.in")):
                    continue
                full = os.path.join(dirpath, fn)
                rel = os.path.relpath(full, root)
                mine = layer_of(rel, table)
                if mine is None:
                    bad.append(f"{rel}: not in the layer table of docs/architecture.md")
                    continue
                with open(full, encoding="utf-8", errors="replace") as f:
                    for no, line in enumerate(f, 1):
                        m = re.match(r'\s*#\s*include\s+"([^"]+)"', line)
                        if not m:
                            continue
                        target = resolve(m.group(1), rel, root)
                        if target is None:
                            continue  # generated into the build folder (kiln/version.h)
                        theirs = layer_of(target, table)
                        home = os.path.dirname(target) + "/"
                        if target.endswith("_impl.h") and not rel.startswith(home):
                            bad.append(f"{rel}:{no}: includes {target}, private to {home}")
                        if theirs is None:
                            bad.append(f"{rel}:{no}: includes {target}, which is in no layer")
                        elif points_up(mine, theirs):
                            bad.append(f"{rel}:{no}: {mine[0]} (rank {mine[1]:g}) includes "
                                       f"{target}, of {theirs[0]} (rank {theirs[1]:g}): "
                                       f"dependencies point down only")
    for b in bad:
        print(b)
    if bad:
        print(f"check_layers: {len(bad)} dependencies against the layer table "
              "(docs/architecture.md)", file=sys.stderr)
        return 1
    print("check_layers: every include%s points down the layer table" %
          (" and every call" if build else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
