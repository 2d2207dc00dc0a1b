#!/bin/sh
# test_cli.sh — `dsc tasks`: every family and format, line counts,
# determinism, checking its own solutions, and bad arguments.
#
#   tests/tasks/test_cli.sh DSC
set -u
DSC=${1:?usage: test_cli.sh DSC}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
lines() { wc -l < "$1" | tr -d ' '; }

for fam in add mul countdown all; do
  for fmt in problems sft text; do
    out=$T/$fam.$fmt
    if ! "$DSC" tasks --family $fam --n 30 --seed 7 --format $fmt -o "$out" 2> "$T/err"; then
      bad "$fam $fmt: exit $? ($(cat "$T/err"))"; continue
    fi
    if [ $fmt = text ]; then
      # one block per problem: the question, "<think>", the trace, "\boxed{...}", a blank line
      n=$(grep -c '^\\boxed{.*}$' "$out"); q=$(grep -c '^<think>$' "$out")
      [ "$n" = 30 ] && [ "$q" = 30 ] && ok || bad "$fam text: $n boxes, $q <think> lines"
    else
      [ "$(lines "$out")" = 30 ] && ok || bad "$fam $fmt: $(lines "$out") lines, wanted 30"
    fi
    "$DSC" tasks --family $fam --n 30 --seed 7 --format $fmt > "$T/again" 2>/dev/null
    cmp -s "$out" "$T/again" && ok || bad "$fam $fmt: -o and stdout or two runs differ"
    "$DSC" tasks --family $fam --n 30 --seed 8 --format $fmt > "$T/other" 2>/dev/null
    cmp -s "$out" "$T/other" && bad "$fam $fmt: seeds 7 and 8 give the same output" || ok
  done
done

# the shapes of a line
grep -q '^{"question":"What is [0-9]* + [0-9]*?","answer":"[0-9]*"}$' "$T/add.problems" && ok || bad "add problems line"
grep -q '^{"question":"Using the numbers \[.*\], each at most once, with + - \* and /, make [0-9]*\.","numbers":\[[0-9,]*\],"target":[0-9]*}$' \
  "$T/countdown.problems" && ok || bad "countdown problems line"
grep -q '^{"messages":\[{"role":"user","content":"What is [0-9]* \* [0-9]*?"},{"role":"assistant","content":"<think>\\n[0-9]*\*[0-9]*\\n.*\\n</think>\\n\\n\\\\boxed{[0-9]*}"}\]}$' \
  "$T/mul.sft" && ok || bad "mul sft line"
[ "$(grep -c 'What is .* + ' "$T/all.problems")" = 10 ] && [ "$(grep -c 'Using the numbers' "$T/all.problems")" = 10 ] \
  && ok || bad "--family all: not a third of each"
"$DSC" tasks --family add --n 200 --level 2 | grep -q '"What is [0-9]\{3\}' && bad "--level 2 gave 3 digits" || ok
head -c 2 "$T/add.problems" | grep -q '{' && ok || bad "problems start with {"

# the worked solutions pass the checker
sed -n 's/.*"content":\("<think>\\n[^"]*"\)}\]}$/\1/p' "$T/all.sft" | sed 's/^"<think>\\n/"/' > "$T/completions"
if "$DSC" tasks --check "$T/all.problems" --completions "$T/completions" -o "$T/verdicts" 2> "$T/err"; then
  [ "$(grep -c '"format_ok":true,"correct":true' "$T/verdicts")" = 30 ] && ok || bad "--check: not all solutions pass"
  grep -q '30 checked: 30 correct, 30 well formatted' "$T/err" && ok || bad "--check totals: $(cat "$T/err")"
else
  bad "--check: exit $? ($(cat "$T/err"))"
fi
printf '%s\n' '"r\n</think>\n\n\\boxed{1}"' > "$T/one"
head -n 1 "$T/add.problems" > "$T/oneprob"
"$DSC" tasks --check "$T/oneprob" --completions "$T/one" 2>/dev/null | grep -q '"format_ok":true,"correct":false' \
  && ok || bad "--check: a wrong answer"

# bad arguments: exit 1, one line on stderr starting "dsc: tasks: " (and
# nothing on stdout, but for --check, which stops at the first bad line)
expect_die() {
  "$DSC" tasks "$@" > "$T/out" 2> "$T/err"
  rc=$?
  if [ $rc = 1 ] && [ "$(lines "$T/err")" = 1 ] && grep -q '^dsc: tasks: ' "$T/err" &&
     { [ "${1:-}" = --check ] || [ ! -s "$T/out" ]; }; then ok
  else bad "tasks $*: exit $rc, stderr: $(cat "$T/err")"; fi
}
expect_die
expect_die --family add
expect_die --n 5
expect_die --family div --n 5
expect_die --family add --n 0
expect_die --family add --n x
expect_die --family add --n 5 --level 6
expect_die --family mul --n 5 --level 4
expect_die --family all --n 5 --level 3
expect_die --family add --n 5 --level 0
expect_die --family add --n 5 --format csv
expect_die --family add --n 5 --seed -1
expect_die --family add --n 5 --seed 1x
expect_die --family add --n 5 --seed " -1"
expect_die --family add --n 5 --seed " 7"
expect_die --family add --n 5 --bogus 1
expect_die --family add --n
expect_die --family add --n 5 extra
expect_die --family add --n 5 -o "$T/no/such/dir/file"
expect_die --check "$T/add.problems"
expect_die --check "$T/missing" --completions "$T/completions"
expect_die --check "$T/add.problems" --completions "$T/one"
echo '{"completion": 5}' > "$T/notext"
expect_die --check "$T/oneprob" --completions "$T/notext"
echo '{"question": "What is 2 + 2?", "answer": "5"}' > "$T/badprob"
expect_die --check "$T/badprob" --completions "$T/one"
printf '"\\\\boxed{4}\\u0000junk"\n' > "$T/nul"
expect_die --check "$T/oneprob" --completions "$T/nul"
printf '"a" trailing\n' > "$T/trail"
expect_die --check "$T/oneprob" --completions "$T/trail"
printf '{"completion": "a", "completion": "b"}\n' > "$T/dupc"
expect_die --check "$T/oneprob" --completions "$T/dupc"
# -o is emptied only once the inputs are open, and never when it is one of them
cp "$T/add.problems" "$T/keep.problems"
expect_die --check "$T/keep.problems" --completions "$T/completions" -o "$T/keep.problems"
cmp -s "$T/add.problems" "$T/keep.problems" && ok || bad "--check -o INPUT emptied the input"
echo keep > "$T/keepout"
expect_die --check "$T/missing" --completions "$T/completions" -o "$T/keepout"
[ "$(cat "$T/keepout")" = keep ] && ok || bad "--check with a missing input emptied -o"
mkfifo "$T/fifo"
timeout 20 "$DSC" tasks --family add --n 2 -o "$T/fifo" > /dev/null 2> "$T/err"
[ $? = 1 ] && grep -q 'a FIFO that nothing reads' "$T/err" && ok || bad "-o FIFO: $(cat "$T/err")"
# blank lines at the end of either file are not problems
{ cat "$T/oneprob"; printf '\n\n'; } > "$T/oneprob_blank"
"$DSC" tasks --check "$T/oneprob_blank" --completions "$T/one" > /dev/null 2> "$T/err" && grep -q '1 checked' "$T/err" \
  && ok || bad "--check with blank lines at the end: $(cat "$T/err")"
"$DSC" tasks --help > "$T/out" 2> "$T/err" && grep -q '^usage: dsc tasks' "$T/out" && [ ! -s "$T/err" ] \
  && ok || bad "--help: usage on stdout, exit 0"

echo "$pass passed, $fail failed"
[ $fail = 0 ]
