#!/usr/bin/env bash
# Bring a wheel larger than one device call can carry (onnxruntime-gpu 1.31.1 for cp312: 255.6 MB, a call carries
# 64 MiB with the working tree) onto the lent machine in parts, one part per call, and put it together there.
#
#   benchmarks/ort_gpu_wheel.sh download DIR         here: pip download the cp312 manylinux wheel into DIR
#   benchmarks/ort_gpu_wheel.sh split WHEEL PARTS    here: PARTS/NAME.part-00, -01, ... of at most PART_MIB (60)
#                                                    MiB each, equal sizes, and PARTS/NAME.sha256 (the whole file
#                                                    and every part); one part per call, the manifest with each
#   benchmarks/ort_gpu_wheel.sh check PARTS          there: which parts arrived and whether each is intact
#   benchmarks/ort_gpu_wheel.sh join PARTS DEST      there: every part verified, joined to DEST/NAME, verified
#
# Exit codes: 0 done, 1 a checksum differs or a part is missing, 2 wrong arguments or no such file.
# benchmarks/README.md gives the device calls; `make ort-gpu-wheel` runs download and split.
set -euo pipefail

VERSION=${ORT_GPU_VERSION:-1.31.1}
PART_MIB=${PART_MIB:-60}

usage() { sed -n '5,11p' "$0" >&2; exit 2; }
die() { echo "$1" >&2; exit "${2:-1}"; }
manifest() { # the one NAME.sha256 in PARTS
    local found=("$1"/*.sha256)
    [ -f "${found[0]}" ] || die "no manifest (*.sha256) in $1" 2
    [ ${#found[@]} -eq 1 ] || die "more than one manifest in $1: keep one wheel's parts there" 2
    echo "${found[0]}"
}
# check PARTS: every part line of the manifest that is present is verified; prints what is missing
check() {
    local list missing=0 line sum file
    list=$(manifest "$1")
    while read -r sum file; do
        [[ $file == *.part-* ]] || continue
        if [ ! -f "$1/$file" ]; then
            echo "missing  $file"; missing=1
        elif [ "$(sha256sum "$1/$file" | cut -d' ' -f1)" = "$sum" ]; then
            echo "ok       $file"
        else
            die "corrupt  $file (sha256 differs from $(basename "$list"))"
        fi
    done <"$list"
    return $missing
}

case ${1:-} in
    download)
        [ $# -eq 2 ] || usage
        mkdir -p "$2"
        "${PYTHON:-python3}" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
            --platform manylinux_2_28_x86_64 "onnxruntime-gpu==$VERSION" -d "$2"
        ;;
    split)
        [ $# -eq 3 ] || usage
        wheel=$2 parts=$3 name=$(basename "$2")
        [ -f "$wheel" ] || die "no such file: $wheel" 2
        size=$(stat -c %s "$wheel") limit=$((PART_MIB * 1024 * 1024))
        count=$(((size + limit - 1) / limit))
        each=$(((size + count - 1) / count))
        rm -rf "$parts" && mkdir -p "$parts"
        split --bytes="$each" --numeric-suffixes=0 --suffix-length=2 "$wheel" "$parts/$name.part-"
        (cd "$(dirname "$wheel")" && sha256sum "$name") >"$parts/$name.sha256"
        (cd "$parts" && sha256sum "$name".part-*) >>"$parts/$name.sha256"
        ls -l "$parts" | tail -n +2
        echo "$count parts of at most $each bytes; carry $parts/$name.sha256 and one part per call"
        ;;
    check)
        [ $# -eq 2 ] || usage
        check "$2"
        ;;
    join)
        [ $# -eq 3 ] || usage
        list=$(manifest "$2")
        check "$2" >/dev/null || die "parts missing in $2: $(check "$2" | grep missing | tr '\n' ' ')"
        read -r sum name <"$list"
        mkdir -p "$3"
        cat "$2/$name".part-* >"$3/$name.joining"
        [ "$(sha256sum "$3/$name.joining" | cut -d' ' -f1)" = "$sum" ] || {
            rm -f "$3/$name.joining"
            die "the joined $name does not match its sha256"
        }
        mv "$3/$name.joining" "$3/$name"
        echo "$3/$name: sha256 ok"
        ;;
    *) usage ;;
esac
