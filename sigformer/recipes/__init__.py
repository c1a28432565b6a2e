"""Training recipes: how a model is trained as published (optimiser, schedule, losses,
pretraining stages), kept out of the model files. Import a recipe module directly, e.g.
``from sigformer.recipes import tfm``; nothing heavy is imported here."""
