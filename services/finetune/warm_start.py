"""Starting a LoRA job from a registered adapter's weights (``init_adapter``).

A domain team has tens of examples, not thousands: trained from fresh LoRA weights on those,
an adapter learns little in the steps it gets (the demo's six-step adapter answered "team"
to "which company is the handbook for?"). Starting from the shipped answers adapter, which
already quotes and cites, those examples only have to move it towards the domain.

The starting adapter fixes the LoRA shape (rank, alpha, target modules, layers): its weights
only fit that shape. A request that sets one of them differently is refused with the value the
adapter has, never silently overridden; one that leaves them unset gets the adapter's, so the
job's recorded hyperparameters are the ones it trained with.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from services.common import adapter_registry
from services.finetune.handlers import FinetuneError, parse_ref

SHAPE_KEYS = ("lora_r", "lora_alpha", "target_modules", "lora_top_layers")


@dataclass(frozen=True)
class WarmStart:
    """The exact version training starts from and the LoRA shape that comes with it."""

    ref: str  # name@vN, even when the request named only the adapter
    folder: Path
    shape: dict[str, Any]

    def to_json(self) -> str:
        return json.dumps({"ref": self.ref, "folder": str(self.folder),
                           "shape": {**self.shape,
                                     "target_modules": list(self.shape["target_modules"])}})

    @classmethod
    def from_json(cls, text: str) -> WarmStart:
        data = json.loads(text)
        shape = {**data["shape"], "target_modules": tuple(data["shape"]["target_modules"])}
        return cls(ref=data["ref"], folder=Path(data["folder"]), shape=shape)


def lora_shape(adapter_config: Mapping[str, Any]) -> dict[str, Any]:
    """An adapter's ``adapter_config.json`` as this project's hyperparameters.

    A layer set is expressible only as "the top N layers" (``lora_top_layers``), so it must be
    contiguous here; that it ends at the model's last layer is checked once the base is loaded
    (:func:`services.finetune.training.train_adapter`)."""
    layers = adapter_config.get("layers_to_transform")
    top = None
    if layers is not None:
        chosen = sorted(int(x) for x in ([layers] if isinstance(layers, int) else layers))
        if not chosen or chosen != list(range(chosen[0], chosen[-1] + 1)):
            raise FinetuneError(f"the adapter adapts layers {chosen}, not a top block of "
                                "layers: this trainer cannot continue it")
        top = len(chosen)
    targets = adapter_config.get("target_modules") or ()
    return {"lora_r": int(adapter_config["r"]), "lora_alpha": int(adapter_config["lora_alpha"]),
            "target_modules": tuple(sorted([targets] if isinstance(targets, str) else targets)),
            "lora_top_layers": top}


def shape_conflicts(requested: Mapping[str, Any], shape: Mapping[str, Any]) -> list[str]:
    """Shape hyperparameters the request set to something the adapter does not have."""
    conflicts = []
    for key in SHAPE_KEYS:
        if key not in requested:
            continue
        value = requested[key]
        if key == "target_modules":
            parts = value.split(",") if isinstance(value, str) else value
            value = tuple(sorted(str(p).strip() for p in parts if str(p).strip()))
        elif value is not None:
            value = int(value)
        if value != shape[key]:
            shown = ",".join(shape[key]) if key == "target_modules" else shape[key]
            conflicts.append(f"{key}={shown}")
    return conflicts


def resolve(engine: Engine, ref_text: str, served_bases: set[str],
            requested: Mapping[str, Any]) -> WarmStart:
    """The registered version ``ref_text`` names (its promoted one for a bare name), checked
    against the served base and the request's own shape settings."""
    ref = parse_ref(ref_text)
    version = adapter_registry.get(engine, ref.name, ref.version)
    if version is None:
        known = sorted({v.name for v in adapter_registry.list_versions(
            engine, include_retired=False) if v.kind == "adapter"})
        raise FinetuneError(f"init_adapter {ref_text!r}: no such registered adapter "
                            f"(registered: {', '.join(known) or 'none'})")
    if version.kind != "adapter":
        raise FinetuneError(f"init_adapter {version.ref} is a whole model, not a LoRA adapter")
    if version.status == "retired":
        raise FinetuneError(f"init_adapter {version.ref} is retired")
    if version.base_model not in served_bases:
        raise FinetuneError(f"init_adapter {version.ref} was trained on {version.base_model}, "
                            f"not the served base ({', '.join(sorted(served_bases))})")
    folder = Path(version.path)
    try:
        config = json.loads((folder / "adapter_config.json").read_text())
    except (OSError, ValueError) as exc:
        raise FinetuneError(f"init_adapter {version.ref}: unreadable adapter_config.json "
                            f"under {folder} ({exc})") from exc
    shape = lora_shape(config)
    conflicts = shape_conflicts(requested, shape)
    if conflicts:
        raise FinetuneError(f"init_adapter {version.ref} fixes the LoRA shape; it has "
                            f"{'; '.join(conflicts)}: leave those unset or set them to that")
    return WarmStart(ref=version.ref, folder=folder, shape=shape)
