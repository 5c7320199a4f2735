"""What the notebooks leave behind: figures, the numbers behind them, claims, and ``paper_repro.md``.

* :mod:`~analysis.report.results`: ``save_figure`` and ``save_results``, what a notebook ends with;
* :mod:`~analysis.report.claims`: the fields and verdicts of a claim, checked;
* :mod:`~analysis.report.runs`: quick or full, where outputs and caches go, what is fresh;
* :mod:`~analysis.report.files`: atomic writes; the machine measured on is :mod:`analysis.timing.machine`;
* :mod:`~analysis.report.repro`: ``paper_repro.md`` and the README's generated tables, rendered from
  the results JSON. ``python -m analysis.figures`` runs the notebooks and then this.

A notebook imports what it needs from here: ``from analysis.report import save_figure, save_results``.
"""
from analysis.report.claims import (CLAIM_FIELDS, VERDICTS, equivalence_verdict, format_pm, noninferiority_verdict,
                                     superiority_verdict, validate_claim)
from analysis.report.files import atomic_write_bytes, atomic_write_text, write_report
from analysis.timing.machine import cpu_model, hardware
from analysis.report.results import FIGURE_DPI, FLOAT_DIGITS, RESULTS_SCHEMA, save_figure, save_results, to_json
from analysis.report.runs import REPO_ROOT, cache_root, cached, command_for, is_fresh, output_dir, quick_mode

__all__ = ["save_figure", "save_results", "to_json", "format_pm", "validate_claim", "quick_mode", "output_dir",
           "cached", "cache_root", "is_fresh", "command_for", "hardware", "cpu_model", "atomic_write_bytes",
           "atomic_write_text", "write_report", "CLAIM_FIELDS", "VERDICTS", "FIGURE_DPI", "FLOAT_DIGITS",
           "RESULTS_SCHEMA", "REPO_ROOT", "equivalence_verdict", "superiority_verdict", "noninferiority_verdict"]
