#!/bin/sh
# Builds the libFuzzer targets (clang with ASan + UBSan):
#   tests/fuzz/build.sh [OUT_DIR]        default OUT_DIR: build-fuzz
# (the parsers of src/io, src/tasks, src/tokenizer and the server's requests)
# Extra compiler flags may be given in FUZZ_CFLAGS; CC defaults to clang.
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:-build-fuzz}
cc=${CC:-clang}
mkdir -p "$out"
cjson=$(pkg-config --cflags --libs libcjson 2>/dev/null || echo -lcjson)
for t in safetensors config; do
    # shellcheck disable=SC2086  # flag lists are split on purpose
    $cc -std=gnu11 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
        -I"$root/include" -I"$root/src" -D_GNU_SOURCE ${FUZZ_CFLAGS:-} \
        -o "$out/fuzz_$t" "$root/tests/fuzz/fuzz_$t.c" "$root/src/core/status.c" "$root/src/core/fileio.c" \
        "$root/src/io/safetensors.c" "$root/src/io/hugemap.c" "$root/src/io/config.c" \
        $cjson -lm
    echo "built $out/fuzz_$t"
done
# shellcheck disable=SC2086
$cc -std=gnu11 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -I"$root/include" -I"$root/src" -D_GNU_SOURCE ${FUZZ_CFLAGS:-} \
    -o "$out/fuzz_tasks" "$root/tests/fuzz/fuzz_tasks.c" "$root/src/core/status.c" "$root/src/core/fileio.c" "$root"/src/tasks/*.c $cjson -lm
echo "built $out/fuzz_tasks"
# shellcheck disable=SC2086
$cc -std=gnu11 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -I"$root/include" -I"$root/src" -D_GNU_SOURCE ${FUZZ_CFLAGS:-} \
    -o "$out/fuzz_json_schema" "$root/tests/fuzz/fuzz_json_schema.c" "$root/src/core/status.c" \
    "$root/src/runtime/json_schema.c" "$root/src/runtime/json_regex.c" $cjson -lm
echo "built $out/fuzz_json_schema"
for t in tokenizer tokenizer_json json_mode; do
    # shellcheck disable=SC2086
    $cc -std=gnu11 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
        -I"$root/include" -I"$root/src" -D_GNU_SOURCE ${FUZZ_CFLAGS:-} \
        -o "$out/fuzz_$t" "$root/tests/fuzz/fuzz_$t.c" "$root/src/core/status.c" "$root/src/core/fileio.c" \
        "$root"/src/tokenizer/*.c "$root/src/runtime/json_mode.c" "$root/src/runtime/json_schema.c" "$root/src/runtime/json_regex.c" \
        $cjson -lpcre2-8 -lm
    echo "built $out/fuzz_$t"
done
# shellcheck disable=SC2086
$cc -std=gnu11 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -I"$root/include" -I"$root/src" -D_GNU_SOURCE ${FUZZ_CFLAGS:-} \
    -o "$out/fuzz_dsml" "$root/tests/fuzz/fuzz_dsml.c" "$root/src/core/status.c" "$root/src/core/fileio.c" \
    "$root/src/runtime/chat.c" "$root/src/runtime/pyjson.c" "$root"/src/tokenizer/*.c $cjson -lpcre2-8 -lm
echo "built $out/fuzz_dsml"
# shellcheck disable=SC2086
$cc -std=gnu11 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -I"$root/include" -I"$root/src" -I"$root/src/server" -D_GNU_SOURCE ${FUZZ_CFLAGS:-} \
    -o "$out/fuzz_request" "$root/tests/server/fuzz_request.c" "$root/src/server/api.c" "$root/src/server/anthropic.c" "$root/src/server/responses.c" "$root/src/server/util.c" \
    "$root/src/runtime/sampler.c" "$root/src/runtime/json_schema.c" "$root/src/runtime/json_regex.c" "$root/src/runtime/pyjson.c" "$root/src/core/status.c" "$root/src/core/fileio.c" $cjson -lm
echo "built $out/fuzz_request"
