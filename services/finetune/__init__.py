"""Fine-tuning: supervision sets (review, PII scrubbing, snapshots, data cards), LoRA/QLoRA
training of adapters on the served base model, and experiment tracking in MLflow."""
