"""``linmix bench`` on the command line: a tiny run writes its files; bad input is one line and exit 2."""
from __future__ import annotations

from linmix.cli import main


def test_bench_ops_cli_writes_results(tmp_path, capsys):
    out = tmp_path / "ops"
    code = main(["bench", "ops", "--lengths", "16,32", "--mixers", "aggregation", "--modes", "causal",
                 "--repeats", "1", "--d-model", "16", "--no-memory", "--no-progress", "--device", "cpu",
                 "--threads", "1",
                 "--out", str(out)])
    assert code == 0
    assert (out / "ops.csv").exists() and (out / "ops_time.png").exists()
    readme = (out / "README.md").read_text()
    assert "linmix bench ops --d-model 16 --device cpu --threads 1 --out" in readme
    assert "--mixers aggregation" in readme
    assert "wrote" in capsys.readouterr().out


def test_bench_errors_are_one_line_exit_2(tmp_path, capsys):
    code = main(["bench", "ops", "--mixers", "nope", "--no-progress", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "unknown mixer 'nope'" in err and len(err.strip().splitlines()) == 1
    code = main(["bench", "ops", "--lengths", "x:y", "--no-progress", "--out", str(tmp_path)])
    assert code == 2 and "lengths" in capsys.readouterr().err
