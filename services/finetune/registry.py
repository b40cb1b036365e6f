"""The adapter registry now lives in :mod:`services.common.adapter_registry`, shared with the
CLI and the web console; this module keeps the name the fine-tuning worker imports."""

from services.common.adapter_registry import (  # noqa: F401 - re-exported
    MARKER,
    PEFT_FILES,
    AdapterDecision,
    AdapterVersion,
    RegistryError,
    decisions,
    get,
    link_promoted,
    list_versions,
    promote,
    promoted,
    record_evaluation,
    register,
    retire,
    set_card,
    version_folder,
    version_label,
)
