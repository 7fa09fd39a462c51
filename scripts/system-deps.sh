#!/usr/bin/env bash
# Makes sure the system programs GradLab uses are present, installing them with
# apt-get when it can. Usage: scripts/system-deps.sh [--require] PROGRAM...
# PROGRAM is `dot` (Debian package graphviz) or `chromium` (Debian package chromium).
# Without --require a program that cannot be installed is reported and skipped;
# with --require it is an error.
set -u
require=0
if [ "${1:-}" = "--require" ]; then require=1; shift; fi

declare -A package=([dot]=graphviz [chromium]=chromium)
declare -A why=(
  [dot]="Graphviz's dot draws SVG and PNG exports"
  [chromium]="the browser tests drive Debian's chromium"
)

missing=()
for prog in "$@"; do
  command -v "$prog" >/dev/null 2>&1 || missing+=("$prog")
done
[ ${#missing[@]} -eq 0 ] && exit 0

pkgs=()
for prog in "${missing[@]}"; do pkgs+=("${package[$prog]}"); done

sudo=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then sudo="sudo"; fi
if command -v apt-get >/dev/null 2>&1 && { [ "$(id -u)" -eq 0 ] || [ -n "$sudo" ]; }; then
  echo "Installing ${pkgs[*]} with apt-get..."
  $sudo apt-get update -qq >/dev/null && \
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${pkgs[@]}" >/dev/null
fi

status=0
for prog in "${missing[@]}"; do
  if ! command -v "$prog" >/dev/null 2>&1; then
    echo "GradLab: '$prog' is missing (${why[$prog]})." >&2
    echo "         Install it with: sudo apt-get install ${package[$prog]}" >&2
    [ $require -eq 1 ] && status=1
  fi
done
exit $status
