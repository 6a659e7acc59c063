"""The Microscope: what a channel responds to, by feature visualization (:mod:`.featureviz`) and by dataset
examples (:mod:`.examples`, from the reference images :mod:`.reference` finds), per branch."""
