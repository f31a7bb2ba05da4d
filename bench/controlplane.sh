#!/usr/bin/env bash
# Control plane scale benchmark: 1,000 services x 10 endpoints, 1,000 delta
# ADS clients over loopback TCP (see docs/performance.md, "Control plane
# scale"). Usage: bench/controlplane.sh [changes]   (default 100)
#
# Each iteration of BenchmarkScaleConvergence is one endpoint change, so
# -benchtime=<changes>x sets how many changes the percentiles cover. The
# run needs ~3 GB of RAM and a few minutes on 2 vCPUs.
# BenchmarkScaleControlPlaneProcess builds cmd/trellis and measures the
# control plane's RSS (VmRSS in sync, VmHWM peak) and CPU per change in its
# own process, edits going through the folder watch. With
# TRELLIS_BENCH_PROFILE_DIR=<dir> it also saves the child's heap profiles
# (every second while clients connect, in sync, after the edits) and a CPU
# profile of the edits there; the forced GCs of a profiled run lower its RSS.
set -euo pipefail
cd "$(dirname "$0")/.."
changes=${1:-100}
go test ./internal/xds/ -run '^$' -timeout 60m \
	-bench '^(BenchmarkScaleConvergence|BenchmarkScaleTranslate|BenchmarkScalePush|BenchmarkScaleControlPlaneProcess)$' \
	-benchtime="${changes}x" |
	awk '/^Benchmark/ { printf "%s\n", $1; for (i = 3; i < NF; i += 2) printf "    %14s  %s\n", $i, $(i+1); next } { print }'
