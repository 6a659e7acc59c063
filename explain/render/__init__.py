"""Pictures of results, never recomputing them: the atlas and attribution figures, panels, snapshot
images, colour maps, training curves, per-class figures and the architecture diagram."""
