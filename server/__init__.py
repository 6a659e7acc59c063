"""The shared server's policy: who may see which model (:mod:`.hub`), who owns a run (:mod:`.owners`),
the training job queue (:mod:`.jobs`), visitors' identities, upload quotas, the operator's settings and
ZeroGPU durations. No Gradio here: each rule is tested without a browser."""
