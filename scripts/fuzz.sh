#!/usr/bin/env bash
# Runs a fuzz campaign: every fuzz target in the module, one after the
# other, for the given seconds each (default 60), with one worker, each
# bounded in time. Targets are found by `go test -list`, so new ones join
# the campaign without a change here.
#
#   scripts/fuzz.sh [seconds]
#
# FUZZ_ONLY, a regular expression, picks the targets whose "package.Name"
# matches it. FUZZ_MINIMIZE_TIME (default 5s) bounds the minimisation of
# each new input: Go's default, 60 s, lets a target with large inputs
# spend most of a short campaign minimising. FUZZ_LOG_DIR keeps the logs.
#
# It prints a table: target, package, execs, new coverage (the "new
# interesting" count of the fuzzer) and result. A crasher is written by
# Go's fuzzer under the package's testdata/fuzz/<Target>/, where every
# `go test` runs it as a seed: the script lists the ones not yet
# committed, and they must be. It exits 1 when a target failed.
set -euo pipefail
cd "$(dirname "$0")/.."
export GOFLAGS="${GOFLAGS:-} -mod=readonly"

seconds="${1:-60}"
case "$seconds" in
  '' | *[!0-9]*) echo "usage: $0 [seconds]" >&2; exit 2 ;;
esac
minimize="${FUZZ_MINIMIZE_TIME:-5s}"
only="${FUZZ_ONLY:-.}"
logs="${FUZZ_LOG_DIR:-$(mktemp -d -t authsidecar-fuzz.XXXXXX)}"
mkdir -p "$logs"
# Building, the baseline run over the corpus, and minimising a crasher
# come on top of the fuzzing time.
limit=$((seconds + 240))

# `go test -list` prints a package's matching names, then "ok <package>".
targets=()
names=()
while read -r first second _; do
  case "$first" in
    Fuzz*) names+=("$first") ;;
    ok)
      for n in "${names[@]}"; do targets+=("$second $n"); done
      names=()
      ;;
    *) names=() ;;
  esac
done < <(go test -list '^Fuzz' ./... 2>/dev/null)

selected=()
for t in "${targets[@]}"; do
  read -r pkg name <<<"$t"
  if [[ "${pkg#github.com/authsidecar/authsidecar/}.$name" =~ $only ]]; then
    selected+=("$t")
  fi
done
if [ "${#selected[@]}" = 0 ]; then
  echo "no fuzz target matches FUZZ_ONLY=$only" >&2
  exit 2
fi
printf 'fuzzing %d targets for %ss each, one worker; logs in %s\n' "${#selected[@]}" "$seconds" "$logs"

rows=()
failed=0
for t in "${selected[@]}"; do
  read -r pkg name <<<"$t"
  short="${pkg#github.com/authsidecar/authsidecar/}"
  log="$logs/${short//\//_}.$name.log"
  cmd=(go test -run '^$' -fuzz "^${name}\$" -fuzztime "${seconds}s" -fuzzminimizetime "$minimize" -parallel 1 "./$short/")
  printf '\n== %s\n' "${cmd[*]}"
  set +e
  timeout --kill-after=30 "$limit" "${cmd[@]}" >"$log" 2>&1
  rc=$?
  set -e
  last=$(grep -E '^fuzz: elapsed: .*execs: ' "$log" | tail -n 1 || true)
  execs=$(sed -nE 's/.*execs: ([0-9]+).*/\1/p' <<<"$last")
  newcov=$(sed -nE 's/.*new interesting: ([0-9]+).*/\1/p' <<<"$last")
  crasher=$(sed -nE 's/.*Failing input written to (testdata\/fuzz\/[^ ]+).*/\1/p' "$log" | tail -n 1)
  case "$rc" in
    0) result=ok ;;
    124 | 137) result="timeout after ${limit}s"; failed=1 ;;
    *)
      failed=1
      if [ -n "$crasher" ]; then
        result="FAIL: $short/$crasher"
      else
        result="FAIL (see $log)"
      fi
      ;;
  esac
  tail -n 3 "$log"
  rows+=("$name|$short|${execs:-0}|${newcov:-0}|$result")
done

printf '\n%-40s %-12s %12s %13s  %s\n' target package execs "new coverage" result
for r in "${rows[@]}"; do
  IFS='|' read -r name short execs newcov result <<<"$r"
  printf '%-40s %-12s %12s %13s  %s\n' "$name" "$short" "$execs" "$newcov" "$result"
done

uncommitted=$(git status --porcelain --untracked-files=all -- '*testdata/fuzz/*' | sed 's/^...//')
if [ -n "$uncommitted" ]; then
  printf '\nCrashers not yet committed (every go test runs them as seeds; commit them with the fix):\n%s\n' "$uncommitted"
fi
exit "$failed"
