"""The benchmark harnesses behind `secagg bench …`: one module per bench, suite, report."""
