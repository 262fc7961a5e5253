"""pytest setup of the microbenchmarks (`pytest benchmarks --benchmark-only`).

pyproject.toml's addopts pass --benchmark-disable so that the test suite never spends time on timing loops;
collecting this folder means the timings are wanted, so benchmarks are switched back on here unless
--benchmark-disable was typed on the command line itself.
"""


def pytest_configure(config):
    # pytest-benchmark reads these options in its own pytest_configure, which runs last (trylast)
    if "--benchmark-disable" not in config.invocation_params.args:
        config.option.benchmark_enable = True
