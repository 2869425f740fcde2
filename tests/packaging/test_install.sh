#!/usr/bin/env bash
# Installs the build into a temporary prefix (cmake --install) and runs the installed programs
# from there: `fec predict` on a shipped sample with the shipped default model (no flags), and
# `fec-explorer --screenshot`. Checks the desktop integration files, and validates them with
# desktop-file-validate / appstreamcli when those are installed.
#   test_install.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1
source=$2
prefix=$(mktemp -d /tmp/fec-install.XXXXXX)
trap 'rm -rf "$prefix"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

cmake --install "$build" --prefix "$prefix" >"$prefix.log" 2>&1 || { cat "$prefix.log"; fail "cmake --install"; }
rm -f "$prefix.log"
share=$prefix/share/fec-explorer
for f in bin/fec bin/fec-explorer share/fec-explorer/labels/imagenet1k.txt share/fec-explorer/labels/fashion_mnist.txt \
         share/applications/fec-explorer.desktop share/metainfo/io.github.fec_explorer.FecExplorer.metainfo.xml \
         share/icons/hicolor/scalable/apps/fec-explorer.svg share/fec-explorer/samples/README.md \
         share/fec-explorer/models/README.md; do
  [ -e "$prefix/$f" ] || fail "$f was not installed"
done
model=$(ls "$share"/models/*.pth.tar 2>/dev/null | head -1)
[ -n "$model" ] || fail "no default model installed in $share/models"
# The `dataset` ablation baseline ships beside the default model (`fec evidence-stats`).
[ -e "$model.evidence-stats.json" ] || fail "$model.evidence-stats.json was not installed beside the model"
sample=$(ls "$share"/samples/fashion-*.png | head -1)
[ -n "$sample" ] || fail "no Fashion-MNIST sample installed"

# The installed programs must not need the source tree: hide its resources and models from
# them by running from an unrelated folder with the compiled-in source path still valid, and
# check that what they report comes from the prefix.
cd "$prefix"
out=$("$prefix/bin/fec" --threads 2 predict --topk 3 "$sample") || fail "fec predict: $out"
echo "$out"
echo "$out" | grep -q "$share/models" || fail "fec predict did not use the installed default model"
# The sample's class is in its file name (fashion-<class>-<index>.png); it must be the top-1.
class=$(basename "$sample" .png | sed -E 's/^fashion-(.*)-[0-9]+$/\1/')
echo "$out" | grep -E "^ +1\. " | head -1 | tr 'A-Z' 'a-z' | tr -c 'a-z0-9\n' ' ' | grep -q "$(echo "$class" | tr 'A-Z' 'a-z' | tr -c 'a-z0-9\n' ' ')" \
  || fail "top-1 of $sample is not its class ($class)"

# The installed statistics belong to the installed model: explain with the dataset baseline.
"$prefix/bin/fec" --threads 2 explain --evidence --baseline dataset --format "" --out "$prefix/evidence" "$sample" \
  >"$prefix/evidence.log" 2>&1 || { cat "$prefix/evidence.log"; fail "fec explain --evidence --baseline dataset"; }
grep -q '"baseline": "dataset"' "$prefix"/evidence/*/summary.json || fail "explain did not use the dataset baseline"

if [ -n "${DISPLAY:-}" ]; then
  QT_QPA_PLATFORM=${QT_QPA_PLATFORM:-xcb} "$prefix/bin/fec-explorer" --screenshot "$prefix/shot.png" \
    >"$prefix/explorer.log" 2>&1 || { cat "$prefix/explorer.log"; fail "fec-explorer --screenshot"; }
else
  QT_QPA_PLATFORM=offscreen "$prefix/bin/fec-explorer" --screenshot "$prefix/shot.png" \
    >"$prefix/explorer.log" 2>&1 || { cat "$prefix/explorer.log"; fail "fec-explorer --screenshot"; }
fi
[ "$(stat -c %s "$prefix/shot.png")" -gt 20000 ] || fail "the explorer's screenshot is (nearly) empty"

if command -v desktop-file-validate >/dev/null; then
  desktop-file-validate "$prefix/share/applications/fec-explorer.desktop" || fail "desktop-file-validate"
fi
if command -v appstreamcli >/dev/null; then
  appstreamcli validate --no-net "$prefix/share/metainfo/io.github.fec_explorer.FecExplorer.metainfo.xml" \
    || fail "appstreamcli validate"
fi
echo "installed layout, fec predict and fec-explorer --screenshot: OK"
