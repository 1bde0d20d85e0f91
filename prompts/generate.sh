#!/usr/bin/env bash
# Regenerates prompts/<language>/<name>.wav from prompts/prompts.yaml with espeak-ng and sox:
# 8 kHz, mono, 16-bit PCM WAV, trimmed of leading/trailing silence; no dither, so reruns
# give byte-identical files.
# Usage: prompts/generate.sh            (every prompt)
#        prompts/generate.sh welcome    (only the named prompts)
set -euo pipefail
cd "$(dirname "$0")"
command -v espeak-ng >/dev/null || { echo "generate.sh needs espeak-ng (apt-get install espeak-ng)" >&2; exit 1; }
command -v sox >/dev/null || { echo "generate.sh needs sox (apt-get install sox)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "generate.sh needs python3 to read prompts.yaml" >&2; exit 1; }

declare -A VOICE=([tr]=tr [en]=en-us)
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# prompts.yaml is flat (name: {lang: text}); print "name<TAB>lang<TAB>text" lines.
python3 - "$@" > "$tmp/list" <<'PY'
import re, sys
wanted = set(sys.argv[1:])
name = None
for raw in open("prompts.yaml", encoding="utf-8"):
    line = raw.rstrip("\n")
    if not line.strip() or line.lstrip().startswith("#"):
        continue
    m = re.match(r'^([A-Za-z0-9_-]+):\s*\{(.*)\}\s*$', line)
    if m:
        for lang, text in re.findall(r'(\w+):\s*"((?:[^"\\]|\\.)*)"', m.group(2)):
            if not wanted or m.group(1) in wanted:
                print(f"{m.group(1)}\t{lang}\t{text}")
        continue
    m = re.match(r'^([A-Za-z0-9_-]+):\s*$', line)
    if m:
        name = m.group(1)
        continue
    m = re.match(r'^\s+(\w+):\s*"((?:[^"\\]|\\.)*)"\s*$', line)
    if m and name and (not wanted or name in wanted):
        print(f"{name}\t{m.group(1)}\t{m.group(2)}")
PY

count=0
while IFS=$'\t' read -r name lang text; do
  voice="${VOICE[$lang]:-$lang}"
  mkdir -p "$lang"
  espeak-ng -v "$voice" -s 170 -w "$tmp/raw.wav" "$text"
  sox -D "$tmp/raw.wav" -r 8000 -c 1 -b 16 -e signed-integer "$lang/$name.wav" \
    silence 1 0.02 0.5% reverse silence 1 0.02 0.5% reverse pad 0.05 0.1
  count=$((count + 1))
done < "$tmp/list"
echo "generated $count prompts"
