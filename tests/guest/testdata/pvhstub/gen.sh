#!/bin/sh
# Assemble stub32.S and print it as Go assembler BYTE lines, each
# instruction commented with its i386 disassembly.
set -eu
cd "$(dirname "$0")"
tmp=$(mktemp -d)
as --32 -o "$tmp/s.o" stub32.S
objcopy -O binary -j .text "$tmp/s.o" "$tmp/s.bin"
objdump -D -M i386 -b binary -m i386 "$tmp/s.bin" | awk -F'\t' '/^ *[0-9a-f]+:\t/ {
	n = split($2, b, " "); line = "\tBYTE "; sep = ""
	for (i = 1; i <= n; i++) { if (b[i] == "") continue; line = line sep "$0x" b[i]; sep = "; BYTE " }
	gsub(/ +$/, "", $3); printf "%s\t// %s %s\n", line, $1, $3 }'
rm -rf "$tmp"
