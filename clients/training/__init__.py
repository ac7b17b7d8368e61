"""Local training behind one hook: ``Trainer(model, round) -> LocalUpdate``."""
