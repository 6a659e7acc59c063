"""Training GoogLeNet: the trainer with its config, presets and events (:mod:`.trainer`), the run folder
(:mod:`.runs`), TensorBoard logs, gradient norms and fine-tuning a loaded model to new classes."""
