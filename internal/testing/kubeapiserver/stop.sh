#!/bin/sh
# Stops what start.sh STATE_DIR started (by its pid files, apiserver first so it does not log a storm
# of etcd errors) and waits for each process to exit. Leaves STATE_DIR for the logs.
set -u
STATE=${1:?usage: stop.sh STATE_DIR}
for name in kube-apiserver etcd; do
	f="$STATE/$name.pid"
	[ -f "$f" ] || continue
	pid=$(cat "$f")
	kill "$pid" 2>/dev/null
	i=0
	# A zombie (state Z, parent gone and not yet reaped) has exited even though kill -0 succeeds.
	while kill -0 "$pid" 2>/dev/null && ! grep -q '^[0-9]* ([^)]*) Z' "/proc/$pid/stat" 2>/dev/null; do
		i=$((i + 1))
		if [ "$i" -eq 40 ]; then kill -9 "$pid" 2>/dev/null; fi
		if [ "$i" -gt 80 ]; then echo "$name (pid $pid) did not exit" >&2; break; fi
		sleep 0.25
	done
	rm -f "$f"
done
