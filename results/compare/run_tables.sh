#!/usr/bin/env bash
# Re-create the comparison tables under results/compare/ (the summation papers' claims, re-measured).
#
#   bash results/compare/run_tables.sh JOB [JOB ...]     # e.g. nanogpt-64 lm-tinyshakespeare
#   bash results/compare/run_tables.sh all
#
# Every job is one `linmix compare` invocation; its run directories (checkpoints, metrics) go to
# runs/tables/JOB and its table, CSV, per-run JSON and validation curves are copied to results/compare/JOB
# with the exact command in command.txt. A job whose results already exist is skipped, so the script can be
# rerun after an interruption. Needs the datasets: set LINMIX_DATA (or pass DATA_DIR=...).
# Threads: OMP_NUM_THREADS (the committed tables used 1 thread per job, two jobs at a time on 2 cores: two
# sequences of jobs side by side, so every timing shares the machine with one other job).
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" MPLBACKEND=Agg
DATA_ARGS=()
if [[ -n "${DATA_DIR:-}" ]]; then DATA_ARGS=(--data-dir "$DATA_DIR"); fi

CLASSIFIERS=(--layers attention@bare --layers summation@bare --layers summation,attention@bare
             --layers linear_attention@bare --layers fnet@bare --layers spectral@bare)
LM7=(--layers "attention*4" --layers "summation*4" --layers "summation*3,attention" --layers "spectral*4"
     --layers "topological*4" --layers "aggregation*4" --layers "linear_attention*4")
# nanoGPT's CPU "baby GPT" (README of karpathy/nanoGPT): 4 layers, 4 heads, d 128, batch 12, lr 1e-3 with
# 100 warmup steps and cosine decay to 1e-4 over all iterations, AdamW beta2 0.99, weight decay 0.1 on
# matrices only, grad clip 1.0, no dropout.
NANOGPT=(--dataset tinyshakespeare --tokenizer char --d-model 128 --n-heads 4 --batch-size 12 --lr 1e-3
         --warmup 100 --min-lr-ratio 0.1 --beta2 0.99 --weight-decay 0.1 --eval-every 250 --eval-batches 20)
# long context: WikiText-2 BPE, 8192 tokens per step, the same training-time budget for every model
LONG=(--dataset wikitext2 --tokenizer bpe --layers "attention*4" --layers "summation*4"
      --layers "summation*3,attention" --layers "spectral*4" --time-budget 240 --warmup 20 --eval-every 100000
      --final-eval-batches 64)

# steps per epoch at batch 32 (drop_last): imdb 781, ag_news 625, 20newsgroups 344, reuters 204; epochs are
# chosen so every dataset gets about 1,250-1,650 optimizer steps (2, 2, 4 and 8 epochs)
declare -A EPOCH_STEPS=([imdb]=781 [ag_news]=625 [20newsgroups]=344 [reuters]=204)
declare -A EPOCHS=([imdb]=2 [ag_news]=2 [20newsgroups]=4 [reuters]=8)

job_args() {
  local job=$1
  case $job in
    classify-*-[0-9]*)
      local rest=${job#classify-} ; local len=${rest##*-} ; local ds=${rest%-*}
      echo classify --dataset "$ds" "${CLASSIFIERS[@]}" --max-len "$len" --vocab-size 10000 --epochs "${EPOCHS[$ds]}" \
           --eval-every "${EPOCH_STEPS[$ds]}" --eval-batches 100000 ;;
    lm-tinyshakespeare) echo lm --dataset tinyshakespeare --tokenizer char "${LM7[@]}" --steps 400 \
                             --eval-every 100 ;;
    lm-wikitext2) echo lm --dataset wikitext2 --tokenizer bpe "${LM7[@]}" --steps 400 --eval-every 100 ;;
    lm-imdb) echo lm --dataset imdb --tokenizer bpe "${LM7[@]}" --steps 400 --eval-every 100 \
                  --final-eval-batches 200 ;;
    nanogpt-64) echo lm "${NANOGPT[@]}" --max-len 64 --steps 2000 --layers "attention*4" --layers "summation*4" \
                     --layers "summation*3,attention" --layers "linear_attention*4" ;;
    nanogpt-256) echo lm "${NANOGPT[@]}" --max-len 256 --steps 1000 --layers "attention*4" \
                      --layers "summation*4" --layers "summation*3,attention" ;;
    nanogpt-1024) echo lm "${NANOGPT[@]}" --max-len 1024 --steps 250 --layers "attention*4" \
                       --layers "summation*4" --layers "summation*3,attention" ;;
    seeds-tinyshakespeare) echo lm --dataset tinyshakespeare --tokenizer char --layers "attention*4" \
                                --layers "summation*3,attention" --layers "spectral*4" --steps 400 --eval-every 100 \
                                --seeds 3 ;;
    seeds-ag_news) echo classify --dataset ag_news --layers attention@bare --layers summation@bare --max-len 256 \
                        --vocab-size 10000 --epochs 2 --eval-every 625 --eval-batches 100000 --seeds 3 ;;
    lrgrid-*) local rest=${job#lrgrid-}  # the classification job with the same LR grid for every candidate
               echo "$(job_args "classify-$rest")" --lr 3e-4 --lr 1e-3 --lr 3e-3 ;;
    longer-20newsgroups-256) echo classify --dataset 20newsgroups --layers attention@bare --layers summation@bare \
                                  --max-len 256 --vocab-size 10000 --epochs 16 --eval-every 344 --eval-batches 100000 \
                                  --lr 3e-3 ;;  # 4x the epochs of the 20 Newsgroups row, at the LR the grid found best
    long-2048) echo lm "${LONG[@]}" --max-len 2048 --batch-size 4 ;;
    long-8192) echo lm "${LONG[@]}" --max-len 8192 --batch-size 1 ;;
    *) echo "unknown job $job" >&2; return 1 ;;
  esac
}

ALL=(nanogpt-64 long-2048 long-8192 nanogpt-256 nanogpt-1024 seeds-tinyshakespeare classify-20newsgroups-512
     classify-imdb-512 classify-reuters-512
     lm-tinyshakespeare classify-ag_news-256 classify-20newsgroups-256 classify-imdb-256 lm-wikitext2 lm-imdb
     classify-reuters-256 seeds-ag_news classify-ag_news-512)
ALL+=(lrgrid-20newsgroups-256 longer-20newsgroups-256)

samples() {  # a short sample from every model of a nanoGPT job, greedy-free (temperature 0.8, seed 0)
  local job=$1 ; local out=results/compare/$job/samples.md
  echo "# Samples (temperature 0.8, top-k 40, seed 0, prompt: newline)" > "$out"
  for run in runs/tables/"$job"/*/seed0*; do
    [[ -f $run/config.json ]] || continue
    { echo; echo "## $(basename "$(dirname "$run")")"; echo; echo '```'
      python -m linmix sample --checkpoint "$run" --max-new-tokens 300 --top-k 40 --seed 0
      echo '```'; } >> "$out"
  done
}

run_job() {
  local job=$1 ; local dest=results/compare/$job
  if [[ -f $dest/results.md ]]; then echo "skip $job (results exist)"; return 0; fi
  read -r -a args <<< "$(job_args "$job")"
  local cmd=(python -m linmix compare "${args[@]}" "${DATA_ARGS[@]}" --out "runs/tables/$job" --quiet)
  local t0=$SECONDS
  if [[ -f runs/tables/$job/results.md ]]; then
    echo "[$(date -u +%H:%M:%S)] $job: its compare run finished earlier; collecting it"
  else
    rm -rf "runs/tables/$job"
    echo "[$(date -u +%H:%M:%S)] $job: ${cmd[*]}"
    "${cmd[@]}" > "runs/tables/$job.log" 2>&1 || { echo "$job failed, see runs/tables/$job.log"; return 1; }
  fi
  mkdir -p "$dest"
  cp runs/tables/"$job"/{results.md,results.csv,runs.json,val_curves.png} "$dest"/
  if [[ -f runs/tables/$job/loss_vs_time.png ]]; then cp "runs/tables/$job/loss_vs_time.png" "$dest"/; fi
  { echo "OMP_NUM_THREADS=$OMP_NUM_THREADS ${cmd[*]}"
    grep -m1 "total wall time" "runs/tables/$job/results.md" | sed 's/^- /# /'; } > "$dest/command.txt"
  if [[ $job == nanogpt-* ]]; then samples "$job"; fi
  echo "[$(date -u +%H:%M:%S)] $job done in $((SECONDS - t0)) s"
}

mkdir -p runs/tables
jobs=("$@")
if [[ ${#jobs[@]} -eq 0 ]]; then echo "usage: $0 JOB... | all  (jobs: ${ALL[*]})" >&2; exit 2; fi
if [[ ${jobs[0]} == all ]]; then jobs=("${ALL[@]}"); fi
status=0
for job in "${jobs[@]}"; do run_job "$job" || status=1; done
exit $status
