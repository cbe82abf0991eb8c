#!/usr/bin/env bash
# The study's sweeps (docs/RESULTS.md), at the study scale on the semi-synthetic THUMOS14 benchmark.
# Each sweep is one command with a fixed folder under outputs/study/: re-running this script resumes
# every sweep where it stopped (a finished run trains nothing; an interrupted one continues from its
# checkpoint). Two runs at a time with one thread each (the joblib launcher), which on 2 cores gives
# more runs per hour than one run with two threads.
#
#   bash scripts/study_sweeps.sh                 # every sweep, in order
#   bash scripts/study_sweeps.sh table3 seeds    # only these
# THUMOS14 sweeps use scale=study; the ActivityNet1.3 ones scale=study_anet13 (configs/scale/).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
COMMON=(trainer.progress=false +launcher=joblib hydra.launcher.n_jobs=2)
THUMOS=(dataset=thumos14_synth scale=study)
ANET=(dataset=anet13_synth scale=study_anet13)

sweep() {  # sweep NAME OVERRIDES... (THUMOS14 study setting unless the overrides name a dataset)
  local name=$1
  shift
  local setting=("${THUMOS[@]}")
  case " $* " in *" dataset="*) setting=() ;; esac
  echo "== $name: ${setting[*]} $*"
  "$PY" train.py -m "${COMMON[@]}" "${setting[@]}" "$@" "hydra.sweep.dir=outputs/study/$name"
}

run_section() {
  case $1 in
    table1_50_50)  # Table 1 (and Table 4's first and last rows): the four TFPNs and the baseline, ten splits
      sweep table1_thumos14_50_50 \
        experiment=table4_baseline,table1_thumos14_direct,table1_thumos14_cnn,table1_thumos14_sgp,table1_thumos14_transformer \
        split=50_50 'split.id=range(10)' ;;
    table1_75_25)
      sweep table1_thumos14_75_25 \
        experiment=table4_baseline,table1_thumos14_direct,table1_thumos14_cnn,table1_thumos14_sgp,table1_thumos14_transformer \
        split=75_25 'split.id=range(5)' ;;
    table4)  # the middle rows of Table 4 (the first and last are in table1_50_50, same splits)
      sweep table4_thumos14_50_50 experiment=table4_tfpn,table4_deep_supervision split=50_50 'split.id=range(5)' ;;
    table3)  # the five salient-head designs
      sweep table3_thumos14_50_50 \
        experiment=table3_cnn_max,table3_cnn_mean,table3_cnn_adaptive,table3_mlp_encoder,table3_mlp_both \
        split=50_50 'split.id=range(5)' ;;
    paper_text)  # the main model as the paper's text describes it
      sweep paper_text_thumos14_50_50 experiment=paper_text split=50_50 'split.id=range(5)' ;;
    paper_text_ablation)  # which of paper_text's switches costs the most: the main model with one switch flipped
      local row switches
      for row in "text_actionness_weight:loss.weight_actionness=2" \
          "text_salient_loss:loss.salient_loss_form=bce loss.salient_fpn_weight=1 loss.salient_enc_weight=1" \
          "text_linear_upsample:salient.upsample=linear" "text_no_qkv_norm:tfpn.qkv_norm=false" \
          "text_no_box_refine:model.box_refine=false" "text_no_clipping:optim.clip_max_norm=null"; do
        switches=${row#*:}
        # shellcheck disable=SC2086  # one switch may be several overrides
        sweep paper_text_ablation_thumos14_50_50 experiment=table1_thumos14_transformer "name=${row%%:*}" $switches \
          split=50_50 'split.id=range(3)'
      done ;;
    seeds)  # seed noise of the main model on split 0 (seed 3552 is in table1_50_50)
      sweep seeds_thumos14_50_50 experiment=table1_thumos14_transformer split=50_50 split.id=0 seed=1,2,3 ;;
    anet13)  # the main comparison on ActivityNet1.3 (baseline vs transformer TFPN), both settings, splits 0-2
      sweep table1_anet13_50_50 "${ANET[@]}" experiment=table4_anet13_baseline,table1_anet13_transformer \
        split=50_50 'split.id=range(3)'
      sweep table1_anet13_75_25 "${ANET[@]}" experiment=table4_anet13_baseline,table1_anet13_transformer \
        split=75_25 'split.id=range(3)' ;;
    *) echo "unknown section $1 (table1_50_50 table1_75_25 table4 table3 paper_text seeds anet13 paper_text_ablation)" >&2; exit 2 ;;
  esac
}

sections=("$@")
[ ${#sections[@]} -gt 0 ] || sections=(table1_50_50 table1_75_25 table4 table3 paper_text seeds anet13 paper_text_ablation)
for section in "${sections[@]}"; do
  run_section "$section"
done
