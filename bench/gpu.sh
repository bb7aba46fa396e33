#!/usr/bin/env bash
# The default run on a GPU: Tübingen x The Starry Night at the default settings, at 512 px (bf16 convolutions and
# float32 everywhere), at 1024 px, and with the Gram loss alone. Prints each run's summary line (seconds, steps,
# median s/step, the memory estimate) and its wall time from process start.
#     DATA=/path/to/sample/images bash bench/gpu.sh OUTDIR
set -u
out=${1:-out/gpu}
mkdir -p "$out"
for args in "--size 512" "--size 512 --precision float32" "--size 1024" "--size 512 --style-loss gram"; do
  name=$(echo "$args" | tr ' ' '_' | tr -d '-')
  echo "== $args"
  /usr/bin/time -f "wall %e s" python3 -m stylelab run "$DATA/content/tubingen.jpg" "$DATA/styles/starry_night.jpg" \
    -o "$out/$name.png" $args 2>&1 | tr '\r' '\n' | grep -E "wrote|wall|error" | tail -3
done
