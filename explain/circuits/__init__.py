"""How a channel and a class are built (the Distill Circuits thread, on any layout here): expanded
weights between consecutive modules (:mod:`.expanded`) and one channel's inputs on one image
(:mod:`.channel`)."""
