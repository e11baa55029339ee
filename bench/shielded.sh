#!/usr/bin/env bash
# Run a benchmark shielded from other work on the machine, under the benchmark lock:
#
#     bench/shielded.sh .venv/bin/python bench/fleet.py
#
# The command runs in a cgroup whose CPU weight is 256 times the default (cgroup v1 cpu.shares 262144, or v2
# cpu.weight 10000), so other processes (another session's test suite, an editor) get the cores only when the
# benchmark leaves them idle: it stands in for a quiet machine. Everything the benchmark starts (the server, its
# workers and Redis, the load generators) is in the cgroup and still competes with itself, so the figures keep
# what they measure: one server and its clients on the machine's cores. Needs root and a cpu controller; without
# them it says so and runs the command as it is. Timed benchmarks take /tmp/flagsvc-bench.lock, one at a time.
set -euo pipefail
[ $# -gt 0 ] || { echo "usage: bench/shielded.sh COMMAND [ARGS...]" >&2; exit 2; }
joined=""
if [ -d /sys/fs/cgroup/cpu ] && [ -w /sys/fs/cgroup/cpu ]; then  # cgroup v1
    group=/sys/fs/cgroup/cpu/flagsvc-bench
    mkdir -p "$group" && echo 262144 > "$group/cpu.shares" && echo $$ > "$group/cgroup.procs" && joined="v1 cpu.shares 262144"
elif [ -f /sys/fs/cgroup/cgroup.controllers ] && grep -qw cpu /sys/fs/cgroup/cgroup.controllers \
        && [ -w /sys/fs/cgroup ]; then  # cgroup v2
    group=/sys/fs/cgroup/flagsvc-bench
    mkdir -p "$group" && echo 10000 > "$group/cpu.weight" && echo $$ > "$group/cgroup.procs" && joined="v2 cpu.weight 10000"
fi
if [ -n "$joined" ]; then
    echo "bench/shielded.sh: in cgroup $group ($joined)" >&2
else
    echo "bench/shielded.sh: no writable cpu cgroup here: running unshielded" >&2
fi
exec flock /tmp/flagsvc-bench.lock "$@"
