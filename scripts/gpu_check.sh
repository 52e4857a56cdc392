#!/usr/bin/env bash
# The GPU check (README "Training on GPUs"): on one CUDA GPU, in under 8 minutes, run
#   1. the `cuda` tests (tests/test_cuda.py and every other test marked cuda),
#   2. the benchmarks on CUDA (python -m benchmarks.report --device cuda: BENCHMARKS_CUDA.md),
#   3. run-suite --profile paper --estimate for every suite with paper tables (the paper-scale cost).
# Everything goes into one folder: $OUT if set, else ./gpu_check_out (one log per step, summary.txt).
# Each step is bounded by `timeout`; the script exits non-zero if any step failed or timed out.
set -u
cd "$(dirname "$0")/.."
out_dir="${OUT:-./gpu_check_out}"
mkdir -p "$out_dir"
python="${PYTHON:-python3}"
failed=0

step() {  # step NAME SECONDS COMMAND...: run COMMAND under `timeout SECONDS`, output in NAME.log
    local name=$1 limit=$2
    shift 2
    local started=$SECONDS
    timeout "$limit" "$@" >"$out_dir/$name.log" 2>&1
    local rc=$?
    local verdict=ok
    if [ "$rc" -eq 124 ]; then verdict="timed out after ${limit}s"; elif [ "$rc" -ne 0 ]; then verdict="failed (exit $rc)"; fi
    [ "$rc" -eq 0 ] || failed=1
    printf '%-32s %-24s %4ss\n' "$name" "$verdict" "$((SECONDS - started))" | tee -a "$out_dir/summary.txt"
}

: >"$out_dir/summary.txt"
{ nvidia-smi || echo "nvidia-smi: not available"; } >"$out_dir/nvidia-smi.txt" 2>&1
"$python" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())" \
    >"$out_dir/torch.txt" 2>&1

# 1. the cuda tests (skipped, with the reason, where torch.cuda.is_available() is False): 200 s
step cuda_tests 200 "$python" -m pytest -q -rs -p no:cacheprovider -m cuda tests \
    --junitxml="$out_dir/cuda_tests.xml"

# 2. the benchmarks on CUDA, short rounds: 150 s
step benchmarks_cuda 150 "$python" -m benchmarks.report --device cuda --max-time 0.1 --min-rounds 3 \
    --out "$out_dir/BENCHMARKS_CUDA.md" --json "$out_dir/benchmarks_cuda.json"

# 3. the paper-scale estimate of every paper table suite: 20 s each
for suite in table1_vqvae table2_vqgan table3_ldm table4_vit_vqgan table5_video appendix_a9; do
    step "estimate_$suite" 20 run-suite "$suite" --profile paper --estimate
done

echo "gpu check: results in $out_dir (summary.txt)"
exit "$failed"
