#!/bin/sh
# Replays a fuzz corpus through a plain driver (fuzz target + replay_main.c,
# no libFuzzer), e.g. under gcc + ASan in CI:
#   tests/fuzz/replay.sh DRIVER CORPUS_DIR...
# Exit 0 when every file ran cleanly; otherwise names the files that failed.
set -u
[ $# -ge 2 ] || { echo "usage: replay.sh DRIVER CORPUS_DIR..."; exit 2; }
drv=$1
shift
list=$(mktemp) || exit 2
trap 'rm -f "$list"' EXIT
find "$@" -type f ! -name '.*' ! -name README.md | LC_ALL=C sort >"$list"
n=$(wc -l <"$list" | tr -d ' ')
[ "$n" -gt 0 ] || { echo "replay.sh: no inputs in $*"; exit 2; }
# One process for the lot (file names never hold newlines here; they are ours).
tr '\n' '\0' <"$list" | xargs -0 "$drv" >/dev/null && { echo "$n inputs replayed cleanly"; exit 0; }
echo "replay.sh: the driver failed; rerunning file by file"
bad=0
while IFS= read -r f; do
    if ! "$drv" "$f" >/dev/null 2>&1; then
        echo "FAIL $f"
        bad=$((bad + 1))
    fi
done <"$list"
echo "$bad of $n inputs failed"
exit 1
