"""The README's Lasagne-style example runs as written, and its commands name
things that exist."""
import os
import re
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _readme():
    with open(os.path.join(REPO, "README.md")) as f:
        return f.read()


def test_porting_example_runs_as_written(tmp_path):
    text = _readme()
    section = text.split("## Porting a Lasagne script", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert len(code.strip().splitlines()) <= 10
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=tmp_path, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    assert float(p.stdout.strip().splitlines()[-1]) > 0  # a finite loss was printed


def test_readme_test_command_is_what_ci_runs():
    text = _readme()
    assert "python -m pytest -q" in text
    with open(os.path.join(REPO, ".ci", "run")) as f:
        assert "python -m pytest -q" in f.read()


def test_every_type_in_the_readme_table_is_registered():
    from lasres.models import available
    table = _readme().split("## Architectures", 1)[1].split("\n\n")[1]
    types = re.findall(r"^\| `([a-z-]+)` \|", table, re.M)
    assert sorted(types) == available()


def test_readme_python_snippets_use_existing_names():
    import lasres
    net = lasres.models.build("normal", 3)
    assert lasres.layers.count_params(net) > 0
    assert "normal" in lasres.models.available()
    assert callable(lasres.weights.load_pklz) and callable(lasres.data.load_cifar10)
