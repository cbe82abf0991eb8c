"""Every config composes and instantiates: each experiment preset and each option of each group
builds the model (and runs it on one window) and the zero-shot data protocol. The presets say what
the paper's table rows say; Hydra's run/sweep folders, the summary callback and the launchers."""

from __future__ import annotations

import importlib
import importlib.util
import itertools
from pathlib import Path

import pytest
import torch
import yaml
from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import MissingConfigException
from hydra.experimental.callback import Callback
from omegaconf import OmegaConf

from tp2detr.config import CONFIG_DIR, compose, normalise_overrides, repo_root
from tp2detr.data.bundle import load_data
from tp2detr.models.builder import build_model

PRESETS = sorted(p.stem for p in (CONFIG_DIR / "experiment").glob("*.yaml"))
GROUPS = ["data", "dataset", "split", "model", "tfpn", "salient", "loss", "optim", "trainer", "paths"]
#: Shrinks any preset for instantiation: the width follows the feature dimension.
SMALL = ["dataset.features.dim=32", "model.dim_feedforward=64", "tfpn.sgp_mlp_dim=48"]

TABLE1 = {"direct": "direct", "cnn": "cnn", "sgp": "sgp", "transformer": "transformer"}
FIDELITY_SWITCHES = {
    "loss.weight_actionness": 2,
    "loss.salient_loss_form": "bce",
    "loss.salient_fpn_weight": 1,
    "loss.salient_enc_weight": 1,
    "salient.upsample": "linear",
    "tfpn.qkv_norm": False,
    "model.box_refine": False,
    "optim.clip_max_norm": None,
}


def train_cfg(*overrides: str):
    return compose(list(overrides), config_name="train")


def plain(cfg) -> dict:
    return OmegaConf.to_container(cfg, resolve=True)


def without(cfg, *keys: str) -> dict:
    """The resolved config as a dict, without the dotted ``keys``."""
    out = plain(cfg)
    for key in keys:
        *parents, leaf = key.split(".")
        node = out
        for p in parents:
            node = node[p]
        node.pop(leaf)
    return out


def flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def protocols():
    """load_data per (dataset, split, id): the presets share a handful."""
    cache: dict[tuple, object] = {}

    def get(cfg):
        key = (str(cfg.dataset.name), str(cfg.split.setting), int(cfg.split.id))
        if key not in cache:
            cache[key] = load_data(cfg)
        return cache[key]

    return get


def _check_instantiates(cfg, protocols) -> None:
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    size = int(cfg.dataset.windowing.size)
    feats = torch.randn(1, size, int(cfg.dataset.features.dim))
    mask = torch.zeros(1, size, dtype=torch.bool)
    with torch.no_grad():
        out = model(feats, mask)
    n_dec, q = int(cfg.model.decoder_layers), int(cfg.model.num_queries)
    assert out["boxes"].shape == (n_dec, 1, q, 2)
    assert out["actionness"].shape == (n_dec, 1, q)
    assert torch.isfinite(out["boxes"]).all()
    bundle = protocols(cfg)
    assert bundle.train_samples and bundle.eval_samples
    split = bundle.protocol.split
    assert (split.setting, split.split_id) == (str(cfg.split.setting), int(cfg.split.id))
    assert split.seen and split.unseen and set(split.seen).isdisjoint(split.unseen)


def test_presets_are_found() -> None:
    expected = {
        *(f"table1_{ds}_{v}" for ds in ("thumos14", "anet13") for v in TABLE1),
        "table3_cnn_max", "table3_cnn_mean", "table3_cnn_adaptive", "table3_mlp_encoder", "table3_mlp_both",
        "table4_baseline", "table4_tfpn", "table4_deep_supervision", "table4_early_supervision",
        "paper_thumos14", "paper_anet13", "paper_text", "demo",
    }
    assert expected <= set(PRESETS)


def _preset_defaults(preset: str) -> list:
    """The defaults list of ``configs/experiment/<preset>.yaml`` as written (no composition)."""
    return yaml.safe_load((CONFIG_DIR / "experiment" / f"{preset}.yaml").read_text()).get("defaults") or []


def _group_overrides(preset: str) -> dict[str, str]:
    """``override /<group>: <option>`` entries of a preset's defaults list: group -> option."""
    out = {}
    for entry in _preset_defaults(preset):
        if isinstance(entry, dict):
            for key, value in entry.items():
                if key.startswith("override "):
                    out[key.removeprefix("override ").strip().lstrip("/")] = str(value)
    return out


def _bases(preset: str) -> list[str]:
    """The presets of the experiment group that ``preset`` includes in its defaults list."""
    out = []
    for entry in _preset_defaults(preset):
        if isinstance(entry, str) and entry != "_self_":
            name = entry.removeprefix("/experiment/").removeprefix("experiment/")
            if (CONFIG_DIR / "experiment" / f"{name}.yaml").is_file():
                out.append(name)
    return out


def _ancestors(preset: str) -> set[str]:
    seen: set[str] = set()
    todo = _bases(preset)
    while todo:
        base = todo.pop()
        assert base != preset, f"{preset} includes itself"
        if base not in seen:
            seen.add(base)
            todo.extend(_bases(base))
    return seen


def test_presets_do_not_repeat_single_option_groups() -> None:
    """A group with one option is selected by configs/config.yaml already: overriding it is noise."""
    single = {p.name for p in CONFIG_DIR.iterdir()
              if p.is_dir() and len(list(p.glob("*.yaml"))) == 1}
    assert {"loss", "model", "optim"} <= single  # the check bites on the groups that prompted it
    repeated = {preset: sorted(set(_group_overrides(preset)) & single) for preset in PRESETS}
    assert not {p: groups for p, groups in repeated.items() if groups}, "override of a single-option group"


def test_activitynet_presets_build_on_paper_anet13() -> None:
    """The ActivityNet1.3 settings live in paper_anet13 only; every *anet13* preset includes it."""
    anet = [p for p in PRESETS if "anet13" in p]
    assert "paper_anet13" in anet and len(anet) > 1
    missing = [p for p in anet if p != "paper_anet13" and "paper_anet13" not in _ancestors(p)]
    assert not missing, f"not built on paper_anet13: {missing}"


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_composes_and_instantiates(preset: str, protocols) -> None:
    text = (CONFIG_DIR / "experiment" / f"{preset}.yaml").read_text().splitlines()
    assert text[0] == "# @package _global_"
    assert text[1].startswith("# ") and len(text[1]) > 20  # names its table row
    cfg = train_cfg(f"experiment={preset}", *SMALL)
    assert cfg.name == preset
    _check_instantiates(cfg, protocols)


@pytest.mark.parametrize("preset", ["paper_thumos14", "paper_anet13"])
def test_full_size_paper_models_build(preset: str) -> None:
    cfg = train_cfg(f"experiment={preset}")
    assert cfg.model.d_model == 512
    model = build_model(cfg)
    assert sum(p.numel() for p in model.parameters()) > 20_000_000


def _group_options():
    for group in GROUPS:
        for path in sorted((CONFIG_DIR / group).glob("*.yaml")):
            yield group, path.stem


@pytest.mark.parametrize(("group", "option"), list(_group_options()))
def test_every_group_option_composes_and_instantiates(group: str, option: str, protocols) -> None:
    cfg = train_cfg(f"{group}={option}", *SMALL)
    assert OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves
    _check_instantiates(cfg, protocols)


def test_paper_thumos14_is_the_default_configuration() -> None:
    assert without(train_cfg("experiment=paper_thumos14"), "name") == without(train_cfg(), "name")


@pytest.mark.parametrize("preset", ["table1_thumos14_transformer", "table3_mlp_both", "table4_early_supervision"])
def test_main_model_rows_equal_paper_thumos14(preset: str) -> None:
    assert without(train_cfg(f"experiment={preset}"), "name") == without(train_cfg("experiment=paper_thumos14"), "name")


@pytest.mark.parametrize("dataset", ["thumos14", "anet13"])
@pytest.mark.parametrize("variant", sorted(TABLE1))
def test_table1_rows_differ_from_the_paper_model_only_in_the_tfpn(dataset: str, variant: str) -> None:
    base = train_cfg(f"experiment=paper_{dataset}")
    row = train_cfg(f"experiment=table1_{dataset}_{variant}")
    assert row.tfpn.name == TABLE1[variant]
    reference = train_cfg(f"experiment=paper_{dataset}", f"tfpn={variant}",
                          *(["tfpn.window_size=17"] if dataset == "anet13" else []))
    assert without(row, "name") == without(reference, "name")
    assert row.dataset.name == base.dataset.name == dataset


def test_paper_anet13_has_the_table2_settings() -> None:
    cfg = train_cfg("experiment=paper_anet13")
    assert cfg.dataset.name == "anet13"
    assert (cfg.tfpn.name, cfg.tfpn.num_levels, cfg.tfpn.window_size) == ("transformer", 4, 17)
    assert (cfg.model.encoder_layers, cfg.model.decoder_layers) == (2, 3)
    assert (cfg.model.encoder_points, cfg.model.decoder_points) == (4, 6)
    assert cfg.model.num_queries == 30
    assert cfg.loss.weight_salient == 2
    assert cfg.salient.upsample == "linear"
    assert (cfg.optim.epochs, cfg.optim.lr_drop_epoch) == (35, 30)


def test_table4_rows() -> None:
    rows = {name: train_cfg(f"experiment={name}") for name in
            ("table4_baseline", "table4_tfpn", "table4_deep_supervision", "table4_early_supervision")}
    want = {  # tfpn, levels, deep supervision, salient mode
        "table4_baseline": ("none", 1, False, "off"),
        "table4_tfpn": ("transformer", 4, False, "off"),
        "table4_deep_supervision": ("transformer", 4, True, "off"),
        "table4_early_supervision": ("transformer", 4, True, "both"),
    }
    for name, cfg in rows.items():
        assert (cfg.tfpn.name, cfg.tfpn.num_levels, cfg.loss.aux_loss, cfg.salient.mode) == want[name], name
        assert cfg.split.setting == "50_50"
    # consecutive rows add one component each
    names = list(want)
    for before, after in itertools.pairwise(names):
        diff = {k for k, v in flat(plain(rows[after])).items() if flat(plain(rows[before])).get(k) != v}
        assert diff - {"name"}, (before, after)
        assert diff <= {"name", "tfpn.name", "tfpn.num_levels", "loss.aux_loss", "salient.mode"}, diff


def test_table3_rows() -> None:
    want = {  # mode, design, fusion
        "table3_cnn_max": ("both", "cnn", "max"),
        "table3_cnn_mean": ("both", "cnn", "mean"),
        "table3_cnn_adaptive": ("both", "cnn", "adaptive"),
        "table3_mlp_encoder": ("encoder_only", "mlp", None),
        "table3_mlp_both": ("both", "mlp", None),
    }
    main = flat(plain(train_cfg("experiment=paper_thumos14")))
    for name, (mode, design, fusion) in want.items():
        cfg = train_cfg(f"experiment={name}")
        assert (cfg.salient.mode, cfg.salient.design) == (mode, design), name
        if fusion is not None:
            assert cfg.salient.fusion == fusion
        assert cfg.split.setting == "50_50" and cfg.tfpn.name == "transformer"
        diff = {k for k, v in flat(plain(cfg)).items() if main.get(k) != v}
        assert diff <= {"name", "salient.mode", "salient.design", "salient.fusion"}, (name, diff)


def test_paper_text_flips_exactly_the_fidelity_switches() -> None:
    main = flat(plain(train_cfg("experiment=paper_thumos14")))
    text = flat(plain(train_cfg("experiment=paper_text")))
    for key, value in FIDELITY_SWITCHES.items():
        assert text[key] == value, key
        assert main[key] != value, key
    diff = {k for k, v in text.items() if main.get(k) != v}
    assert diff == {"name", *FIDELITY_SWITCHES}


def test_demo_is_a_small_model_on_the_semi_synthetic_store() -> None:
    cfg = train_cfg("experiment=demo")
    assert cfg.dataset.name == "thumos14_synth"
    assert cfg.model.d_model == cfg.dataset.features.dim == cfg.dataset.synthetic.dim < 512
    assert cfg.optim.epochs < 35
    assert cfg.trainer.selection == "last"
    n_params = sum(p.numel() for p in build_model(cfg).parameters())
    assert n_params < 5_000_000


@pytest.mark.parametrize("preset", ["table4_baseline", "table1_thumos14_transformer", "table3_cnn_max", "paper_text"])
def test_the_study_scale_changes_width_schedule_and_op_only(preset: str) -> None:
    full = train_cfg(f"experiment={preset}", "dataset=thumos14_synth")
    study = train_cfg(f"experiment={preset}", "dataset=thumos14_synth", "scale=study")
    full_flat, study_flat = flat(plain(full)), flat(plain(study))
    changed = {k for k, v in study_flat.items() if full_flat.get(k) != v}
    assert changed <= {"dataset.synthetic.dim", "dataset.features.dim", "dataset.features.path", "model.d_model", "model.dim_feedforward",
                       "model.attn_backend", "optim.epochs", "optim.lr_drop_epoch", "optim.lr", "optim.lr_tfpn",
                       "trainer.eval_every", "trainer.eval_untrained", "trainer.selection"}
    assert study.tfpn == full.tfpn and study.salient == full.salient and study.loss == full.loss
    assert study.optim.lr_drop_epoch < study.optim.epochs  # the step-down stays inside the schedule


def test_the_activitynet_study_scale_keeps_the_width_and_shortens_the_schedule() -> None:
    thumos = train_cfg("experiment=table1_thumos14_transformer", "dataset=thumos14_synth", "scale=study")
    anet = train_cfg("experiment=table1_anet13_transformer", "dataset=anet13_synth", "scale=study_anet13")
    assert anet.model.d_model == thumos.model.d_model == 64
    assert anet.model.num_queries == 30 and anet.tfpn.window_size == 17  # the ActivityNet preset's settings stay
    assert (anet.optim.lr, anet.optim.lr_tfpn) == (thumos.optim.lr, thumos.optim.lr_tfpn)
    assert 0 < anet.optim.lr_drop_epoch < anet.optim.epochs < thumos.optim.epochs
    assert anet.trainer.eval_every == anet.optim.epochs


def test_command_line_overrides_win_over_the_preset() -> None:
    cfg = train_cfg("experiment=table1_anet13_sgp", "dataset=anet13_synth", "split=75_25", "split.id=4")
    assert (cfg.name, cfg.dataset.name, cfg.split.setting, cfg.split.id) == ("table1_anet13_sgp", "anet13_synth", "75_25", 4)
    assert cfg.tfpn.window_size == 17 and cfg.model.num_queries == 30  # the preset's ANet settings stay
    cfg = train_cfg("experiment=table4_baseline", "tfpn=direct", "model.num_queries=12", "loss.aux_loss=true")
    assert (cfg.tfpn.name, cfg.model.num_queries, cfg.loss.aux_loss) == ("direct", 12, True)


@pytest.mark.parametrize(
    ("override", "group", "listed"),
    [
        ("experiment=table9_nothing", "experiment", ["paper_thumos14", "table4_baseline", "demo"]),
        ("tfpn=transfromer", "tfpn", ["transformer", "sgp", "direct"]),
        ("salient=cnn_maximum", "salient", ["cnn_max", "mlp_encoder"]),
        ("split=60_40", "split", ["50_50", "75_25"]),
    ],
)
def test_unknown_names_list_the_choices(override: str, group: str, listed: list[str]) -> None:
    with pytest.raises(MissingConfigException) as info:
        train_cfg(override)
    message = str(info.value)
    assert f"Available options in '{group}'" in message
    for option in listed:
        assert option in message


# -- Hydra's own settings ---------------------------------------------------------------------------


def hydra_cfg(*overrides: str):
    """The composed config including the ``hydra`` node (run/sweep dirs, launcher, callbacks)."""
    if GlobalHydra.instance().is_initialized():
        GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return hydra_compose("train", overrides=normalise_overrides(overrides), return_hydra_config=True)


def test_run_and_sweep_folders(tmp_path: Path) -> None:
    cfg = hydra_cfg("experiment=table1_thumos14_sgp", "split=75_25", "split.id=3", f"paths.output_dir={tmp_path}")
    assert cfg.hydra.run.dir == f"{tmp_path}/runs/table1_thumos14_sgp/thumos14/75_25_split3"
    assert str(cfg.hydra.sweep.dir).startswith(f"{tmp_path}/sweeps/table1_thumos14_sgp/")
    raw = OmegaConf.to_container(cfg.hydra.sweep, resolve=False)
    assert raw["subdir"] == "${name}/${dataset.name}/${split.setting}_split${split.id}${tp2detr_variant:${hydra.overrides.task}}"
    variant = hydra_cfg("tfpn=direct", "split.id=3", "model.dropout=0.2", "trainer.progress=false", f"paths.output_dir={tmp_path}")
    assert variant.hydra.run.dir == f"{tmp_path}/runs/tp2detr/thumos14/50_50_split3__tfpn=direct,model.dropout=0.2"
    assert cfg.hydra.job.chdir is False
    assert cfg.hydra.launcher._target_.endswith("BasicLauncher")
    default = hydra_cfg()
    assert default.hydra.run.dir == f"{repo_root()}/outputs/runs/{default.name}/thumos14/50_50_split0"
    assert Path(default.hydra.run.dir).is_absolute()  # no dependence on the working directory


def test_the_summary_callback_is_registered_and_importable() -> None:
    callbacks = hydra_cfg().hydra.callbacks
    target = callbacks.sweep_summary._target_
    module, _, name = target.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    assert issubclass(cls, Callback)


def test_basic_launcher_preset() -> None:
    assert hydra_cfg("+launcher=basic").hydra.launcher._target_.endswith("BasicLauncher")


@pytest.mark.skipif(
    importlib.util.find_spec("hydra_plugins.hydra_joblib_launcher") is None,
    reason="hydra-joblib-launcher is not installed (optional: pip install hydra-joblib-launcher)",
)
def test_joblib_launcher_preset_composes() -> None:
    cfg = hydra_cfg("+launcher=joblib", "experiment=demo", "hydra.launcher.n_jobs=3")
    assert cfg.hydra.launcher._target_.endswith("JoblibLauncher")
    assert cfg.hydra.launcher.n_jobs == 3 and cfg.hydra.launcher.prefer == "processes"
    assert cfg.name == "demo"


@pytest.mark.skipif(
    importlib.util.find_spec("hydra_plugins.hydra_joblib_launcher") is None,
    reason="hydra-joblib-launcher is not installed (optional: pip install hydra-joblib-launcher)",
)
def test_one_gpu_launcher_runs_the_ten_splits_at_once_on_cuda() -> None:
    cfg = hydra_cfg("+launcher=one_gpu", "experiment=paper_thumos14")
    assert cfg.hydra.launcher._target_.endswith("JoblibLauncher")
    assert cfg.hydra.launcher.n_jobs == 10 and cfg.hydra.launcher.prefer == "processes"
    assert (cfg.trainer.device, cfg.trainer.num_threads, cfg.trainer.progress) == ("cuda", 1, False)
    assert cfg.optim.epochs == 35  # the experiment's schedule is untouched


@pytest.mark.skipif(
    importlib.util.find_spec("hydra_plugins.hydra_submitit_launcher") is None,
    reason="hydra-submitit-launcher is not installed (optional: pip install hydra-submitit-launcher)",
)
def test_slurm_launcher_preset_composes(tmp_path: Path) -> None:
    cfg = hydra_cfg("+launcher=slurm", "hydra.launcher.partition=gpu", f"paths.output_dir={tmp_path}")
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.partition, launcher.gpus_per_node, launcher.tasks_per_node) == ("gpu", 1, 1)
    assert launcher.timeout_min > 0 and launcher.cpus_per_task > 0
    assert str(launcher.submitit_folder).startswith(f"{tmp_path}/sweeps/")
