"""The training loop: one run of one dataset × split, written into one run folder.

``Trainer(cfg, run_dir).fit()`` trains for ``optim.epochs`` epochs (AdamW groups, StepLR,
gradient clipping), evaluates every ``trainer.eval_every`` epochs (and after the last), selects the
reported epoch (``trainer.selection``), and writes into ``run_dir``: ``config.yaml``,
``metrics.json``, ``predictions.json``, ``checkpoints/{last,selected}.pt`` and ``tb/``.

Model selection (``trainer.selection``):

* ``last`` (default, honest): the last epoch;
* ``val``: the best epoch on a held-out part of the *training* videos (seen classes only);
* ``test_best``: the best epoch on the evaluation set itself — what the released code reports
  (docs/fidelity.md §8); an oracle, labelled so everywhere.

The document's fields and the selection rule are :mod:`tp2detr.engine.run_document`'s; what
``trainer.resume`` does with the run folder is :mod:`tp2detr.engine.resume`'s; ``trainer.compile``
is :mod:`tp2detr.engine.compilation`'s.

Exact resume: data order comes from a sampler seeded by (seed, epoch); every RNG state is in the
checkpoint; an interruption (SIGINT/SIGTERM) saves a checkpoint with the number of steps already
taken in the epoch, and a resumed run skips exactly those batches.
"""

from __future__ import annotations

import logging
import math
import signal
import time
from contextlib import contextmanager, nullcontext
from functools import partial
from pathlib import Path
from typing import Any, Iterator

import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader, Sampler
from torch.utils.data.distributed import DistributedSampler
from tqdm import tqdm

from tp2detr.data.bundle import DataBundle, hold_out_validation, load_data
from tp2detr.data.feature_setup import build_dataset, check_features_up_front, open_features
from tp2detr.data.dataset import collate_samples
from tp2detr.engine.compilation import compile_for_training, uses_cuda_graphs
from tp2detr.engine.checkpoint import check_architecture, checkpoint_bytes, load_checkpoint, save_checkpoint
from tp2detr.engine.distributed import (
    barrier,
    broadcast_flag,
    gather_to_all,
    init_distributed,
    shard,
)
from tp2detr.engine.divergence import DivergenceGuard
from tp2detr.engine.loss_check import LossCheck, resolve_loss_check
from tp2detr.evaluation.evaluate import evaluate_proposals
from tp2detr.evaluation.map_by_length import length_bins_for
from tp2detr.engine.device import resolve_precision, select_device
from tp2detr.engine.proposal_inference import predict_batches, video_proposals
from tp2detr.engine.optim import build_optimizer, build_scheduler
from tp2detr.engine.resume import SkipFirst, resume_mode, supersede_previous
from tp2detr.engine.run_document import SELECTION_LABELS, new_document, record_failure, selects
from tp2detr.engine.run_identity import resume_changes
from tp2detr.engine.seeding import rng_state, seed_everything, set_rng_state
from tp2detr.errors import ConfigError, MissingDataError, OutputWriteError, TrainingDiverged
from tp2detr.evaluation.results_io import predictions_to_json
from tp2detr.io import atomic_open, atomic_write_group, atomic_write_json, json_bytes
from tp2detr.losses.criterion import build_criterion
from tp2detr.models.builder import build_model, parameter_breakdown
from tp2detr.ops.registry import resolve_backend

log = logging.getLogger(__name__)

class Trainer:
    """Trains and evaluates one configuration; see the module docstring."""

    def __init__(self, cfg: DictConfig, run_dir: str | Path) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.trainer_cfg = cfg.trainer
        if str(self.trainer_cfg.selection) not in SELECTION_LABELS:
            raise ConfigError(
                f"trainer.selection is {self.trainer_cfg.selection!r}, expected one of {sorted(SELECTION_LABELS)}"
            )
        if self.trainer_cfg.get("num_threads"):
            torch.set_num_threads(int(self.trainer_cfg.num_threads))
        self.device = select_device(str(self.trainer_cfg.device))
        self.amp_dtype = resolve_precision(str(self.trainer_cfg.precision), self.device)
        self.dist = init_distributed(self.device.type)
        if self.dist.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
        self._stop_requested = False
        self._partial: dict[str, Any] | None = None  # loss sums of an interrupted epoch
        self.writer = None
        self.divergence = DivergenceGuard((self.trainer_cfg.get("divergence") or {}).get("factor"))
        self._config_changes: list[tuple[str, Any, Any]] = []

    # -- setup -----------------------------------------------------------------------------------
    def setup(self) -> None:
        """Seed, read the data, build datasets, model, loss, optimizer and sampler (no training)."""
        cfg = self.cfg
        seed_everything(int(cfg.seed))
        bundle = load_data(cfg)
        if str(self.trainer_cfg.selection) == "val":
            bundle = hold_out_validation(bundle, cfg, float(self.trainer_cfg.val_fraction), int(cfg.seed))
        self.bundle: DataBundle = bundle
        store = open_features(cfg, bundle)
        self.train_set = build_dataset(cfg, bundle, training=True, store=store)
        self.eval_set = build_dataset(cfg, bundle, training=False, store=store)
        self.val_set = (
            build_dataset(cfg, bundle, training=False, samples=bundle.val_samples, store=store)
            if bundle.val_samples is not None else None
        )
        check_features_up_front(cfg, [d for d in (self.train_set, self.eval_set, self.val_set) if d is not None])
        self.model = build_model(cfg).to(self.device)
        self.criterion = build_criterion(cfg.loss)
        self.optimizer = build_optimizer(self.model, cfg.optim, self.device)
        loss_check = resolve_loss_check(
            str(self.trainer_cfg.get("loss_check", "auto")), self.device,
            bool(self.optimizer.defaults.get("fused")), self.dist.enabled,
        )
        self.loss_check = LossCheck(self.divergence, loss_check, self.optimizer)
        self.scheduler = build_scheduler(self.optimizer, cfg.optim)
        self.train_model: torch.nn.Module = compile_for_training(self.model, self.trainer_cfg.compile, self.device)
        self.marks_cudagraph_steps = uses_cuda_graphs(self.trainer_cfg.compile)
        if self.dist.enabled:
            self.train_model = torch.nn.parallel.DistributedDataParallel(
                self.train_model,
                device_ids=[self.dist.local_rank] if self.device.type == "cuda" else None,
                find_unused_parameters=not bool(cfg.loss.aux_loss),
            )
        world = self.dist.world_size
        batch_size = int(cfg.optim.batch_size)
        if batch_size % world:
            raise ConfigError(f"optim.batch_size={batch_size} is not divisible by the {world} processes")
        self.per_rank_batch = batch_size // world
        if len(self.train_set) < batch_size:
            raise ConfigError(
                f"{len(self.train_set)} training samples cannot fill one batch of optim.batch_size={batch_size}; "
                "expected a smaller optim.batch_size"
            )
        self.collate = partial(collate_samples, pad_multiple=self.model.length_multiple)
        self.sampler = DistributedSampler(
            self.train_set, num_replicas=world, rank=self.dist.rank, shuffle=True, seed=int(cfg.seed)
        )
        self.steps_per_epoch = len(self.sampler) // self.per_rank_batch
        backend = resolve_backend(str(cfg.model.attn_backend), self.device.type)
        params = parameter_breakdown(self.model)["total"]
        log.info(
            "model: tfpn=%s, %d parameters, deformable attention backend %r, device %s, precision %s",
            cfg.tfpn.name, params, backend, self.device, self.amp_dtype or "fp32",
        )
        log.info(
            "data: %d training samples (%d steps/epoch at batch %d), %d evaluation samples%s",
            len(self.train_set), self.steps_per_epoch, batch_size, len(self.eval_set),
            f", {len(self.val_set)} validation samples" if self.val_set is not None else "",
        )

    def train_loader(self, epoch: int, skip_steps: int) -> DataLoader:
        """The training batches of ``epoch`` (a seeded, rank-aware order), without the first ``skip_steps``."""
        self.sampler.set_epoch(epoch)
        sampler: Sampler = self.sampler
        if skip_steps:
            sampler = SkipFirst(self.sampler, skip_steps * self.per_rank_batch)
        return DataLoader(
            self.train_set, batch_size=self.per_rank_batch, sampler=sampler, drop_last=True,
            collate_fn=self.collate, num_workers=int(self.cfg.data.num_workers),
            generator=torch.Generator().manual_seed(int(self.cfg.seed)),  # never touch the global RNG
            pin_memory=self.device.type == "cuda",
        )

    # -- metrics document ------------------------------------------------------------------------
    def _write_document(self) -> None:
        if self.dist.is_main:
            atomic_write_json(self.run_dir / "metrics.json", self.doc)

    # -- checkpoints -----------------------------------------------------------------------------
    def _state(self, epoch: int, step_in_epoch: int) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": None,
            "epoch": epoch,
            "step_in_epoch": step_in_epoch,
            "rng": rng_state(),
            "config": OmegaConf.to_container(self.cfg, resolve=True),
            "metrics": self.doc,
            "partial_epoch": self._partial if step_in_epoch else None,
            "loss_reference": self.divergence.reference,
        }

    def _save(self, name: str, epoch: int, step_in_epoch: int = 0) -> None:
        if self.dist.is_main:
            save_checkpoint(self.run_dir / "checkpoints" / name, self._state(epoch, step_in_epoch))

    def _resume_checkpoint(self) -> dict[str, Any] | None:
        """The checkpoint to resume from per ``trainer.resume`` (None: start from scratch), its
        configuration checked against this one (:func:`tp2detr.engine.run_identity.resume_changes`)
        before any data is read."""
        path = self.run_dir / "checkpoints" / "last.pt"
        mode = resume_mode(self.trainer_cfg.resume)
        if mode == "false":
            if self.dist.is_main:
                supersede_previous(self.run_dir)
            return None
        if not path.exists():
            if mode == "true":
                raise MissingDataError(f"{path}: trainer.resume=true but there is no checkpoint to resume")
            return None
        state = load_checkpoint(path, map_location="cpu")
        self._config_changes = resume_changes(
            state["config"], OmegaConf.to_container(self.cfg, resolve=True), str(path)
        )
        for key, old, new in self._config_changes:
            log.info("resume: %s changed from %r to %r (a key that may change mid-run)", key, old, new)
        return state

    def _resume(self, state: dict[str, Any] | None) -> tuple[int, int]:
        """Restore ``state`` (from :meth:`_resume_checkpoint`); (start epoch, steps to skip)."""
        if state is None:
            return 0, 0
        path = self.run_dir / "checkpoints" / "last.pt"
        check_architecture(self.model, state["model"], source=str(path))
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        self.doc = state["metrics"]
        self.doc["status"] = "running"
        self.doc["error"] = None
        self.doc.setdefault("config_changes", []).extend(
            {"epoch": int(state["epoch"]), "key": key, "from": old, "to": new}
            for key, old, new in self._config_changes
        )
        self._partial = state.get("partial_epoch")
        self.divergence.reference = state.get("loss_reference")
        log.info("resumed from %s: epoch %d, step %d", path, state["epoch"], state.get("step_in_epoch", 0))
        return int(state["epoch"]), int(state.get("step_in_epoch", 0))

    def _commit_epoch(self, doc: dict[str, Any], epoch: int, predictions: dict | None) -> None:
        """Make ``doc`` (with epoch ``epoch`` recorded) the run's state and write it: the checkpoint
        first (``selected.pt`` and ``predictions.json`` too when ``predictions`` is given, i.e. this
        epoch is the newly selected one), then ``last.pt`` and ``metrics.json`` — all or nothing
        (:func:`tp2detr.io.atomic_write_group`), so the files always agree. On a failed write the
        previous document is kept and the error names the file."""
        previous, self.doc = self.doc, doc
        try:
            if self.dist.is_main:
                ckpt = checkpoint_bytes(self._state(epoch + 1, 0))
                folder = self.run_dir / "checkpoints"
                files: list[tuple[Path, bytes]] = []
                if predictions is not None:
                    files += [(folder / "selected.pt", ckpt),
                              (self.run_dir / "predictions.json", json_bytes(predictions_to_json(predictions), None))]
                files += [(folder / "last.pt", ckpt), (self.run_dir / "metrics.json", json_bytes(doc))]
                atomic_write_group(files)
        except OutputWriteError as err:
            self.doc = previous
            kept = f"after epoch {len(previous['epochs']) - 1}" if previous["epochs"] else "before the first epoch"
            raise OutputWriteError(
                f"{err}; the run folder still holds its state {kept} (metrics.json, predictions.json "
                "and the checkpoints agree): free space and re-run the same command to resume"
            ) from err
        except BaseException:
            self.doc = previous
            raise

    # -- evaluation ------------------------------------------------------------------------------
    def evaluate(self, dataset, ground_truth, durations) -> tuple[dict[str, Any], dict]:
        """Predict on this rank's share of ``dataset``, gather, and evaluate on the main rank."""
        ds_cfg = self.cfg.dataset
        indices = list(shard(len(dataset), self.dist))
        loader = DataLoader(
            torch.utils.data.Subset(dataset, indices), batch_size=int(self.trainer_cfg.eval_batch_size),
            shuffle=False, collate_fn=self.collate, num_workers=int(self.cfg.data.num_workers),
            generator=torch.Generator(),
        )
        windows = predict_batches(self.model, loader, self.device, self.amp_dtype)
        gathered = [w for part in gather_to_all(windows, self.dist) for w in part]
        dedupe = bool(ds_cfg.evaluation.get("stitch_deduplicate", False))  # absent in an older run's config
        predictions = video_proposals(gathered, ds_cfg.evaluation.get("nms_threshold"), dedupe)
        absolute_bins, relative_bins = length_bins_for(str(ds_cfg.name))
        metrics = evaluate_proposals(
            predictions,
            ground_truth,
            durations,
            tiou_thresholds=list(ds_cfg.evaluation.tiou_thresholds),
            ar_tiou_thresholds=list(ds_cfg.evaluation.ar_tiou_thresholds) if bool(self.trainer_cfg.ar) else None,
            breakdown=bool(self.trainer_cfg.breakdown),
            absolute_bins=absolute_bins,
            relative_bins=relative_bins,
            source=f"{ds_cfg.name} evaluation",
            drop_log_level=logging.INFO,  # the protocol evaluates only the videos with unseen ground truth
        )
        return metrics, predictions

    # -- training --------------------------------------------------------------------------------
    def _request_stop(self, signum, frame) -> None:  # noqa: ARG002 - signal handler signature
        log.warning("received signal %d: finishing the current step, saving a checkpoint", signum)
        self._stop_requested = True

    def train_step(self, batch: dict[str, Any], step: int = 0) -> dict[str, torch.Tensor]:
        """One optimizer step on a collated batch (``step``: its index in the epoch, which names
        it in a divergence message); returns the detached loss terms (+ ``loss``).

        Host synchronisations: the matcher's one copy of the cost matrices, and with
        ``trainer.loss_check=immediate`` reading the total loss, which is then checked before it
        reaches the weights (:class:`tp2detr.engine.divergence.DivergenceGuard`: a non-finite or
        exploding loss raises FloatingPointError). ``deferred`` checks it one step later
        (:mod:`tp2detr.engine.loss_check`); call ``self.loss_check.settle`` after the step.
        """
        feats = batch["feats"].to(self.device, non_blocking=True)
        mask = batch["mask"].to(self.device, non_blocking=True)
        targets = [{"segments": t["segments"].to(self.device, non_blocking=True)} for t in batch["targets"]]
        autocast = torch.autocast(self.device.type, dtype=self.amp_dtype) if self.amp_dtype else nullcontext()
        if self.marks_cudagraph_steps:
            torch.compiler.cudagraph_mark_step_begin()
        with autocast:
            outputs = self.train_model(feats, mask)
        outputs = {
            "boxes": outputs["boxes"].float(),
            "actionness": outputs["actionness"].float(),
            "salient": {k: (v.float() if v is not None else None) for k, v in outputs["salient"].items()},
        }
        loss = self.criterion(
            outputs, targets,
            salient_target=batch["salient_target"].to(self.device, non_blocking=True),
            salient_valid=batch["salient_valid"].to(self.device, non_blocking=True),
        )
        terms = {k: v.detach() for k, v in {"loss": loss.total, **loss.terms}.items()}
        self.loss_check.submit(step, loss.total, terms)
        self.optimizer.zero_grad(set_to_none=True)
        loss.total.backward()
        clip = self.cfg.optim.clip_max_norm
        if clip is not None and float(clip) > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), float(clip))
        self.optimizer.step()
        return terms

    def _train_epoch(
        self, epoch: int, skip_steps: int, partial: dict[str, Any] | None
    ) -> tuple[dict[str, float], bool]:
        """One epoch (or its remainder after ``skip_steps``); returns the mean of every loss term
        and whether it was interrupted. ``partial`` carries the sums of an interrupted epoch.
        Loss sums stay on the device (float64) and are read once per epoch."""
        self.train_model.train()
        sums: dict[str, torch.Tensor] = {
            k: torch.tensor(v, dtype=torch.float64, device=self.device) for k, v in (partial or {}).get("sums", {}).items()
        }
        steps = int(partial["steps"]) if partial else 0
        bar = tqdm(self.train_loader(epoch, skip_steps), total=self.steps_per_epoch - skip_steps,
                   desc=f"epoch {epoch}", leave=False, disable=not (self.dist.is_main and bool(self.trainer_cfg.progress)))
        interrupted = False
        for batch in bar:
            with self._stop_on_divergence(epoch, steps):
                terms = self.train_step(batch, steps)
                self._passed(epoch, self.loss_check.settle(wait=False))
            steps += 1
            for key, value in terms.items():
                sums[key] = sums[key] + value if key in sums else value.to(torch.float64)
            global_step = epoch * self.steps_per_epoch + steps
            if self.writer is not None and global_step % int(self.trainer_cfg.log_every) == 0:
                for key, value in terms.items():
                    self.writer.add_scalar(f"train_step/{key}", float(value), global_step)
            if broadcast_flag(self._stop_requested, self.dist):
                self._settle_losses(epoch, steps)
                interrupted = True
                self._partial = {"sums": {k: float(v) for k, v in sums.items()}, "steps": steps}
                self._save("last.pt", epoch, steps)
                break
        bar.close()
        self._settle_losses(epoch, steps)
        means = {k: float(v) / max(steps, 1) for k, v in sums.items()}
        return means, interrupted

    @contextmanager
    def _stop_on_divergence(self, epoch: int, step: int) -> Iterator[None]:
        """Turn a FloatingPointError (a non-finite or exploding loss, non-finite outputs) into the
        run's :class:`TrainingDiverged`, naming the failing step (``step`` unless the loss check
        names an earlier one)."""
        try:
            yield
        except FloatingPointError as err:
            failed = self.loss_check.failed_step
            raise self.divergence.diverged(
                epoch, step if failed is None else failed, err, self.optimizer.param_groups,
                self.run_dir / "checkpoints" / "last.pt", len(self.doc["epochs"]),
            ) from err

    def _passed(self, epoch: int, checked: list[tuple[int, float]]) -> None:
        for step, value in checked:
            self.divergence.passed(epoch, step, value)

    def _settle_losses(self, epoch: int, steps: int) -> None:
        """Check every step's loss still pending (before an epoch's record or a checkpoint)."""
        with self._stop_on_divergence(epoch, steps):
            self._passed(epoch, self.loss_check.settle(wait=True))

    def fit(self) -> dict[str, Any]:
        """Train (or resume) to the end; returns the metrics document."""
        started = time.perf_counter()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.doc = new_document(self.cfg)
        try:
            state = self._resume_checkpoint()  # before reading any data: a refused resume is quick
            self.setup()
            start_epoch, skip_steps = self._resume(state)
            del state
        except BaseException as err:
            # Record the failure for sweep summaries, unless that would overwrite an earlier
            # run's metrics (e.g. its checkpoint turned out to be corrupt).
            if self.dist.is_main:
                record_failure(self.cfg, self.run_dir, err)
            raise
        elapsed_before = float(self.doc.get("wall_time_s") or 0.0)
        if self.dist.is_main:
            with atomic_open(self.run_dir / "config.yaml") as handle:  # what actually runs
                handle.write(OmegaConf.to_yaml(self.cfg, resolve=True))
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.run_dir / "tb"), purge_step=start_epoch * self.steps_per_epoch + skip_steps)
        previous = {s: signal.signal(s, self._request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
        epochs = int(self.cfg.optim.epochs)
        eval_every = max(int(self.trainer_cfg.eval_every), 1)
        protocol = self.bundle.protocol
        try:
            if bool(self.trainer_cfg.eval_untrained) and start_epoch == 0 and skip_steps == 0:
                self.doc["untrained"], _ = self.evaluate(self.eval_set, protocol.eval_ground_truth,
                                                          protocol.eval_durations)
                log.info("untrained model: eval mAP %.2f", 100 * self.doc["untrained"]["mAP"])
            for epoch in tqdm(range(start_epoch, epochs), desc="epochs", initial=start_epoch, total=epochs,
                              disable=not (self.dist.is_main and bool(self.trainer_cfg.progress))):
                epoch_started = time.perf_counter()
                if self.device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(self.device)
                lrs = {g.get("name", str(i)): g["lr"] for i, g in enumerate(self.optimizer.param_groups)}
                train_means, interrupted = self._train_epoch(epoch, skip_steps, self._partial)
                train_seconds, train_steps = time.perf_counter() - epoch_started, self.steps_per_epoch - skip_steps
                skip_steps, self._partial = 0, None
                if interrupted:
                    self.doc["status"] = "interrupted"
                    break
                self.scheduler.step()
                record: dict[str, Any] = {"epoch": epoch, "lr": lrs, "train": train_means, "eval": None, "val": None}
                last = epoch == epochs - 1
                if last or (epoch + 1) % eval_every == 0:
                    metrics, predictions = self.evaluate(self.eval_set, protocol.eval_ground_truth,
                                                          protocol.eval_durations)
                    record["eval"] = metrics
                    if self.val_set is not None:
                        record["val"], _ = self.evaluate(self.val_set, self.bundle.val_ground_truth,
                                                          self.bundle.val_durations)
                record["seconds"] = time.perf_counter() - epoch_started
                record["timing"] = {
                    "train_s": train_seconds,
                    "train_steps": train_steps,
                    "eval_s": record["seconds"] - train_seconds,
                    "peak_gpu_memory_mb": (torch.cuda.max_memory_allocated(self.device) / 2**20
                                           if self.device.type == "cuda" else None),
                }
                selected = record["eval"] is not None and selects(str(self.trainer_cfg.selection), self.doc, record)
                doc = {
                    **self.doc,
                    "epochs": [*self.doc["epochs"], record],
                    "selected": {"epoch": epoch, "eval": record["eval"]} if selected else self.doc["selected"],
                    "wall_time_s": elapsed_before + time.perf_counter() - started,
                    "status": "finished" if last else "running",
                }
                self._commit_epoch(doc, epoch, predictions if selected else None)
                self._log_epoch(record)
                barrier(self.dist)
            else:
                if start_epoch >= epochs:
                    log.info("nothing to train: %s already holds %d epochs", self.run_dir, epochs)
                self.doc["status"] = "finished"
        except BaseException as err:
            self.doc["status"] = "diverged" if isinstance(err, TrainingDiverged) else "failed"
            self.doc["error"] = f"{type(err).__name__}: {err}"
            raise
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.doc["wall_time_s"] = elapsed_before + time.perf_counter() - started
            try:
                self._write_document()
            except OSError as err:  # e.g. the disk is still full: keep the error that stopped the run
                log.error("could not record the run's status in %s: %s", self.run_dir / "metrics.json", err)
            if self.writer is not None:
                self.writer.close()
        return self.doc

    def _log_epoch(self, record: dict[str, Any]) -> None:
        epoch = record["epoch"]
        parts = [f"epoch {epoch}: loss {record['train'].get('loss', math.nan):.4f}"]
        for split in ("eval", "val"):
            metrics = record[split]
            if metrics is not None:
                aps = " ".join(f"{float(k):.2f}:{100 * v:.2f}" for k, v in metrics["ap"].items())
                parts.append(f"{split} mAP {100 * metrics['mAP']:.2f} ({aps})")
        log.info("; ".join(parts))
        if self.writer is None:
            return
        for key, value in record["train"].items():
            self.writer.add_scalar(f"train/{key}", value, epoch)
        for name, lr in record["lr"].items():
            self.writer.add_scalar(f"lr/{name}", lr, epoch)
        for split in ("eval", "val"):
            metrics = record[split]
            if metrics is None:
                continue
            self.writer.add_scalar(f"{split}/mAP", metrics["mAP"], epoch)
            for k, v in metrics["ap"].items():
                self.writer.add_scalar(f"{split}/mAP@{k}", v, epoch)
            for k, v in (metrics.get("ar") or {}).items():
                self.writer.add_scalar(f"{split}/{k}", v, epoch)
        self.writer.flush()

