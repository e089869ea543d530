"""Conformance suites that users run on their own canonizers and metrics, as Optuna ships optuna.testing."""
