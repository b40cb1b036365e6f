"""Experiment tracking in MLflow: parameters, the loss curve, evaluation metrics, artifacts.

By default runs go to a local store under ``<state>/mlflow``: an SQLite database
(``mlflow.db``, MLflow 3's default backend; the old ``./mlruns`` file store is deprecated) and
an artifact folder beside it. ``settings.mlflow_tracking_uri`` points it anywhere else (an
MLflow server, ``databricks``, another database). Nothing here needs the network for the local
store, and MLflow's usage telemetry is switched off unless the operator set it explicitly.

A run is driven through ``MlflowClient`` with an explicit run id rather than MLflow's global
"active run", so two jobs in one process (or a worker thread) never write into each other's run.
A run that raises is ended as FAILED; one that returns, FINISHED.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.common.config import Settings, get_settings
from services.common.logs import log
from services.finetune.config import finetune_settings

logger = logging.getLogger(__name__)
MAX_PARAM_CHARS = 6000  # MLflow's limit on a parameter value


def tracking_uri(settings: Settings) -> str:
    """The configured URI, else the local SQLite store under ``<state>/mlflow``."""
    configured = finetune_settings().mlflow_tracking_uri
    if configured:
        return configured
    return f"sqlite:///{local_root(settings) / 'mlflow.db'}"


def local_root(settings: Settings) -> Path:
    return settings.state_path / "mlflow"


def _quiet() -> None:
    # Telemetry would try the network; setdefault keeps an operator's explicit choice.
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)


@dataclass
class RunHandle:
    """One MLflow run; every call names the run explicitly (see module docstring)."""

    client: Any
    run_id: str
    experiment_id: str
    tracking_uri: str

    def log_metric(self, key: str, value: float, step: int | None = None) -> None:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return  # "no value" is not a point on the curve
        self.client.log_metric(self.run_id, key, float(value), step=step or 0)

    def log_metrics(self, metrics: Mapping[str, float | None], step: int | None = None) -> None:
        for key, value in metrics.items():
            if value is not None:
                self.log_metric(key, value, step)

    def log_param(self, key: str, value: Any) -> None:
        self.client.log_param(self.run_id, key, _param(value))

    def log_artifact(self, path: Path | str, artifact_path: str | None = None) -> None:
        """A file, or a folder's files (e.g. the adapter) under ``artifact_path``."""
        path = Path(path)
        if path.is_dir():
            self.client.log_artifacts(self.run_id, str(path), artifact_path or path.name)
        else:
            self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_text(self, text: str, artifact_file: str) -> None:
        self.client.log_text(self.run_id, text, artifact_file)

    def log_dict(self, data: Mapping[str, Any], artifact_file: str) -> None:
        self.client.log_dict(self.run_id, dict(data), artifact_file)

    def set_tag(self, key: str, value: str) -> None:
        self.client.set_tag(self.run_id, key, value)


def _param(value: Any) -> str:
    text = ",".join(map(str, value)) if isinstance(value, list | tuple) else str(value)
    return text[:MAX_PARAM_CHARS]


def _experiment(client: Any, name: str, settings: Settings, uri: str) -> str:
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = None
    if not finetune_settings().mlflow_tracking_uri:
        # The SQLite store's default artifact root is ./mlartifacts in the working directory;
        # keep artifacts next to the database instead.
        location = (local_root(settings) / "artifacts").as_uri()
    try:
        return client.create_experiment(name, artifact_location=location)
    except Exception:  # noqa: BLE001 - another process created it first: use theirs
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


@contextmanager
def mlflow_run(experiment: str, run_name: str, params: Mapping[str, Any],
               tags: Mapping[str, str], *, settings: Settings | None = None
               ) -> Iterator[RunHandle]:
    """A run in ``experiment`` (created when missing) with ``params`` and ``tags`` logged."""
    settings = settings or get_settings()
    _quiet()
    from mlflow.tracking import MlflowClient

    uri = tracking_uri(settings)
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    client = MlflowClient(tracking_uri=uri)
    experiment_id = _experiment(client, experiment, settings, uri)
    run = client.create_run(experiment_id, run_name=run_name,
                            tags={k: str(v) for k, v in tags.items()})
    handle = RunHandle(client, run.info.run_id, experiment_id, uri)
    for key, value in params.items():
        handle.log_param(key, value)
    log(logger, logging.INFO, "mlflow run started", run_id=handle.run_id, experiment=experiment,
        tracking_uri=uri)
    try:
        yield handle
    except BaseException:
        client.set_terminated(handle.run_id, status="FAILED")
        raise
    client.set_terminated(handle.run_id, status="FINISHED")


def log_training(handle: RunHandle, result: Any, *, card: Mapping[str, Any] | None = None,
                 card_markdown: str | None = None, log_adapter: bool = True) -> None:
    """A finished :class:`~services.finetune.training.TrainingResult` into the run: the loss
    curve (``train_loss`` by step), summary metrics, the adapter folder and the data card."""
    for step, loss in result.loss_curve:
        handle.log_metric("train_loss", loss, step=step)
    handle.log_metrics({
        "final_loss": result.final_loss, "steps": float(result.steps),
        "duration_s": result.duration_s, "tokens_per_s": result.tokens_per_s,
        "peak_memory_mb": result.peak_memory_mb,
    })
    if log_adapter:
        handle.log_artifact(result.adapter_dir, "adapter")
    if card is not None:
        handle.log_dict(card, "data_card.json")
    if card_markdown is not None:
        handle.log_text(card_markdown, "data_card.md")
