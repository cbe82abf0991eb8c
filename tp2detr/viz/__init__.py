"""Figures of the paper's kind (PNG, matplotlib without pyplot), one module per figure:

* :mod:`~tp2detr.viz.proposal_timelines` — one video's proposals vs ground truth: top-k by score and by
  matching cost (Figs. 4/6); a plain proposal timeline.
* :mod:`~tp2detr.viz.confidence` — confidence vs best tIoU scatter with correlations (Fig. 5).
* :mod:`~tp2detr.viz.precision_recall` — precision–recall curves per tIoU, the evaluator's points (Fig. 7).
* :mod:`~tp2detr.viz.saliency` — the salient heads along one input vs its foreground mask (Fig. 8).
* :mod:`~tp2detr.viz.durations` — action-duration histograms, seconds and relative (Figs. 9/10).
* :mod:`~tp2detr.viz.map_by_length_figure` — mAP by action-length bin, runs side by side.
* :mod:`~tp2detr.viz.report` — all of them for one ``eval.py ... plots=true`` run.
* :mod:`~tp2detr.viz.canvas` — a pyplot-free figure and its atomic PNG save.
"""
