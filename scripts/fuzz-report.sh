#!/usr/bin/env bash
# The figures of the last fuzz run of each target (fuzz/logs/TARGET.log) as a Markdown
# table for docs/reliability.md.
# usage: scripts/fuzz-report.sh
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
echo "| target | seconds | executions | exec/s | coverage (edges) | features | corpus (files) | peak RSS | crashes in the run |"
echo "|---|---|---|---|---|---|---|---|---|"
for log in logs/*.log; do
    t=$(basename "$log" .log)
    stat() { grep -a "^stat::$1:" "$log" | awk '{print $2}' || true; }
    done_line=$(grep -a -E "^#[0-9]+[[:space:]]+DONE" "$log" | tail -1 || true)
    [ -n "$done_line" ] || continue  # still running
    cov=$(sed -E 's/.*cov: ([0-9]+).*/\1/' <<<"$done_line")
    ft=$(sed -E 's/.*ft: ([0-9]+).*/\1/' <<<"$done_line")
    execs=$(stat number_of_executed_units)
    rate=$(stat average_exec_per_sec)
    secs=$(( rate > 0 ? execs / rate : 0 ))
    corpus=$(ls "corpus/$t" 2>/dev/null | wc -l)
    crashes=$(grep -a -c -E "^==[0-9]+== ERROR|deadly signal|panicked at" "$log" || true)
    echo "| \`$t\` | $secs | $execs | $rate | $cov | $ft | $corpus | $(stat peak_rss_mb) MB | $crashes |"
done
