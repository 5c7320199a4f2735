"""Every Python example in the README runs as written."""
import re
import runpy

import pytest

import adams
from analysis.figures import README

BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_readme_has_examples():
    assert BLOCKS


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index, tmp_path):
    script = tmp_path / f"readme_example_{index}.py"
    script.write_text(BLOCKS[index])
    names = runpy.run_path(str(script), run_name="__main__")
    opt = names.get("opt")
    if isinstance(opt, adams.AdamS):  # the training example: what its comments claim holds
        params = [p for g in opt.param_groups for p in g["params"]]
        assert adams.state_bytes(opt) == adams.param_bytes(params) + 4 * len(params)
        assert all(set(opt.state[p]) == {"step", "exp_avg"} for p in params)
