"""Step time, measured honestly on shared machines: paired, interleaved rounds and their ratios.

* :mod:`~analysis.timing.steptime`: one optimizer step of AdamS's three paths, the fused kernel alone,
  and torch's AdamW and SGD with momentum, timed in one process against the memory-traffic floor;
* :mod:`~analysis.timing.ratios`: ratios of paired timings with bootstrap intervals;
* :mod:`~analysis.timing.machine`: the machine a number was measured on, recorded beside it.

Speed goals are judged by these ratios in ``benchmarks/`` and the ``optimizer_cost`` notebook,
never by timed assertions in tests.
"""
