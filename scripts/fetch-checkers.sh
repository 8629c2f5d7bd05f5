#!/usr/bin/env bash
# The site's accessibility and HTML checkers, fetched once into ~/.cache/deepmarket/checkers/:
#   axe-core (npm registry)         -> axe-core-<v>/node_modules/axe-core/axe.min.js
#   Nu Html Checker (Maven Central) -> vnu-<v>/*.jar  (run: java -cp 'vnu-<v>/*' nu.validator.client.SimpleCommandLineValidator)
# Needs npm, mvn and java 17 (scripts/install-system-deps.sh installs them). Idempotent.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
AXE_VERSION="${AXE_VERSION:-4.10.3}"
VNU_VERSION="$(sed -n 's:.*<vnu.version>\(.*\)</vnu.version>.*:\1:p' "$here/checkers/pom.xml")"
cache="${DEEPMARKET_CACHE:-$HOME/.cache/deepmarket}/checkers"
mkdir -p "$cache"

axe="$cache/axe-core-$AXE_VERSION"
if [ ! -f "$axe/node_modules/axe-core/axe.min.js" ]; then
  echo "fetching axe-core $AXE_VERSION (npm) into $axe" >&2
  tmp="$(mktemp -d "$cache/.axe.XXXXXX")"
  npm install --prefix "$tmp" --no-save --no-audit --no-fund --ignore-scripts --loglevel=error \
    "axe-core@$AXE_VERSION" >&2
  rm -rf "$axe" && mv "$tmp" "$axe"
fi

vnu="$cache/vnu-$VNU_VERSION"
if [ ! -f "$vnu/.complete" ]; then
  echo "fetching the Nu Html Checker $VNU_VERSION (Maven Central) into $vnu" >&2
  tmp="$(mktemp -d "$cache/.vnu.XXXXXX")"
  mvn -B -q -f "$here/checkers/pom.xml" dependency:copy-dependencies \
    -DoutputDirectory="$tmp" -Dmaven.repo.local="$cache/m2" >&2
  touch "$tmp/.complete"
  rm -rf "$vnu" && mv "$tmp" "$vnu"
fi
