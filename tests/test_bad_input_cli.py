"""Bad input through the command line: every case exits with code 2 and one line on stderr,
``refine-fast <command>: error: ...``, that names the option or the file at fault. Most cases run
in this process (``cli.main``); a few run the real command in a subprocess."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from refine_fast import cli

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def files(tmp_path_factory, ba3_small):
    """Good and bad inputs: a model, its explainer, a graph set, a finished run, and broken copies."""
    from torch_geometric.data import OnDiskDataset

    from refine_fast.datasets import write_graphs
    from refine_fast.explain import ReFine
    from refine_fast.models import BA3MotifNet, save_model

    d = tmp_path_factory.mktemp("bad_input")
    torch.manual_seed(0)
    model = BA3MotifNet().eval()
    f = {"dir": d, "model": save_model(model, d / "model.pt"), "explainer": d / "refine.pt"}
    ReFine(model, 3, 4, hidden=8, batch_size=16, seed=1).save(f["explainer"])
    torch.manual_seed(1)
    f["other_model"] = save_model(BA3MotifNet().eval(), d / "other.pt")
    f["wide_model"] = save_model(BA3MotifNet(in_channels=5).eval(), d / "wide.pt")
    f["cut_model"] = d / "cut_model.pt"
    f["cut_model"].write_bytes(f["model"].read_bytes()[:400])
    f["empty_model"] = d / "empty.pt"
    f["empty_model"].write_bytes(b"")
    f["cut_explainer"] = d / "cut_refine.pt"
    f["cut_explainer"].write_bytes(f["explainer"].read_bytes()[:400])
    f["graphs"] = d / "graphs"
    write_graphs(f["graphs"], (ba3_small[i] for i in range(60))).close()
    f["reversed"] = d / "reversed"
    write_graphs(f["reversed"], (ba3_small[59 - i] for i in range(60))).close()
    pickled = OnDiskDataset(str(d / "pickled"), log=False)
    pickled.extend([ba3_small[i] for i in range(3)])
    pickled.close()
    f["pickled"] = d / "pickled"
    f["run"] = d / "run"
    threads = torch.get_num_threads()
    try:
        assert cli.main([str(a) for a in ["explain", "--graphs", f["graphs"], "--model", f["model"], "--explainer",
                                          f["explainer"], "--out", f["run"], "--steps", 1, "--chunk-size", 16,
                                          "--threads", 1, "--no-progress"]]) == 0
    finally:
        torch.set_num_threads(threads)
    f["cut_run"] = d / "cut_run"
    f["cut_run"].mkdir()
    (f["cut_run"] / "explanations.pt").write_bytes((f["run"] / "explanations.pt").read_bytes()[:-200])
    return f


def _explain(f, *extra, out="out"):
    return ["explain", "--graphs", f["graphs"], "--model", f["model"], "--explainer", f["explainer"],
            "--out", f["dir"] / out, "--steps", 1, "--chunk-size", 16, "--threads", 1, *extra]


def _evaluate(f, *extra):
    return ["evaluate", "--model", f["model"], "--threads", 1, *extra]


def _pretrain(f, *extra, model="model"):
    model = f[model] if model in f else f["dir"] / model
    return ["pretrain", "--dataset", "ba3", "--model", model, "--out", f["dir"] / "e.pt", "--cache-dir",
            f["dir"] / "cache", *extra]


# (id, argv from the files, what the one-line message must say)
CASES = [
    # train-gnn
    ("train-gnn epochs -1", lambda f: ["train-gnn", "--dataset", "ba3", "--out", f["dir"] / "g", "--epochs=-1"],
     "argument --epochs: expected an integer >= 1, got '-1'"),
    ("train-gnn epochs 0", lambda f: ["train-gnn", "--dataset", "ba3", "--out", f["dir"] / "g", "--epochs", 0],
     "argument --epochs: expected an integer >= 1, got '0'"),
    ("train-gnn epochs 2.5", lambda f: ["train-gnn", "--dataset", "ba3", "--out", f["dir"] / "g", "--epochs", 2.5],
     "argument --epochs: expected an integer >= 1, got '2.5'"),
    ("train-gnn threads 0", lambda f: ["train-gnn", "--dataset", "ba3", "--out", f["dir"] / "g", "--threads", 0],
     "argument --threads: expected an integer >= 1, got '0'"),
    ("train-gnn seed -1", lambda f: ["train-gnn", "--dataset", "ba3", "--out", f["dir"] / "g", "--seed=-1"],
     "argument --seed: expected an integer in \\[0, 2\\*\\*63\\), got '-1'"),
    ("train-gnn no data root", lambda f: ["train-gnn", "--dataset", "mutag", "--out", f["dir"] / "g"],
     "--data-root is required for --dataset mutag"),
    ("train-gnn missing data root", lambda f: ["train-gnn", "--dataset", "mutag", "--data-root", f["dir"] / "nope",
                                               "--out", f["dir"] / "g"], "--data-root .*nope: no such directory"),
    ("train-gnn data root without files", lambda f: ["train-gnn", "--dataset", "mutag", "--data-root", f["dir"],
                                                     "--out", f["dir"] / "g"],
     "--data-root .*: Mutagenicity: the TU raw files .* were not found"),
    ("train-gnn unknown dataset", lambda f: ["train-gnn", "--dataset", "vg", "--out", f["dir"] / "g"],
     "argument --dataset: invalid choice: 'vg'"),
    # pretrain
    ("pretrain missing model", lambda f: _pretrain(f, model="none.pt"), "argument --model: no file at .*none.pt"),
    ("pretrain truncated model", lambda f: _pretrain(f, model="cut_model"),
     "--model: load_model: .*cut_model.pt is not a readable model file \\(truncated or corrupt\\?\\)"),
    ("pretrain empty model", lambda f: _pretrain(f, model="empty_model"),
     "--model: load_model: .*empty.pt is not a readable model file: the file is empty"),
    ("pretrain explainer as model", lambda f: _pretrain(f, model="explainer"),
     "--model: load_model: .*refine.pt is not a model file written by save_model"),
    ("pretrain hidden 0", lambda f: _pretrain(f, "--hidden", 0), "argument --hidden: expected an integer >= 1"),
    ("pretrain epochs x", lambda f: _pretrain(f, "--epochs", "x"),
     "argument --epochs: expected an integer >= 1, got 'x'"),
    ("pretrain epochs -1", lambda f: _pretrain(f, "--epochs=-1"), "argument --epochs: expected an integer >= 1"),
    ("pretrain model directory", lambda f: _pretrain(f, model="."),
     "argument --model: no file at .* \\(a directory\\)"),
    # explain: numbers
    ("explain ratio 0", lambda f: _explain(f, "--ratio", 0),
     "argument --ratio: expected a number in \\(0, 1\\], got '0'"),
    ("explain ratio 1.5", lambda f: _explain(f, "--ratio", 1.5), "argument --ratio: expected a number in \\(0, 1\\]"),
    ("explain ratio nan", lambda f: _explain(f, "--ratio", "nan"), "argument --ratio: .*got 'nan'"),
    ("explain lr 0", lambda f: _explain(f, "--lr", 0), "argument --lr: expected a finite number > 0, got '0'"),
    ("explain lr -1", lambda f: _explain(f, "--lr=-1"), "argument --lr: expected a finite number > 0, got '-1'"),
    ("explain lr inf", lambda f: _explain(f, "--lr", "inf"), "argument --lr: expected a finite number > 0, got 'inf'"),
    ("explain steps -1", lambda f: _explain(f, "--steps=-1"), "argument --steps: expected an integer >= 0, got '-1'"),
    ("explain batch size 0", lambda f: _explain(f, "--batch-size", 0),
     "argument --batch-size: expected an integer >= 1"),
    ("explain chunk size 0", lambda f: _explain(f, "--chunk-size", 0),
     "argument --chunk-size: expected an integer >= 1"),
    ("explain threads -2", lambda f: _explain(f, "--threads=-2"), "argument --threads: expected an integer >= 1"),
    ("explain id range 3", lambda f: _explain(f, "--id-range", 3), "argument --id-range: expected START:STOP"),
    ("explain id range 9:2", lambda f: _explain(f, "--id-range", "9:2"),
     "argument --id-range: expected 0 <= START <= STOP, got '9:2'"),
    ("explain id range 0:999", lambda f: _explain(f, "--id-range", "0:999"),
     "--id-range 0:999 is outside the 60 graphs of --graphs"),
    ("explain unknown option", lambda f: _explain(f, "--bogus"), "unrecognized arguments: --bogus"),
    # explain: files
    ("explain missing explainer", lambda f: _explain(f)[:5] + ["--explainer", f["dir"] / "none.pt"] + _explain(f)[7:],
     "argument --explainer: no file at .*none.pt"),
    ("explain truncated explainer", lambda f: _explain(f)[:5] + ["--explainer", f["cut_explainer"]] + _explain(f)[7:],
     "--explainer: ReFine.load: .*cut_refine.pt is not a readable explainer file"),
    ("explain model as explainer", lambda f: _explain(f)[:5] + ["--explainer", f["model"]] + _explain(f)[7:],
     "--explainer: ReFine.load: .*model.pt is not a refine_fast ReFine file"),
    ("explain explainer of another model", lambda f: _explain(f)[:3] + ["--model", f["other_model"]] + _explain(f)[5:],
     "--explainer: ReFine.load: .*refine.pt was pre-trained for another model .*pass --allow-other-model"),
    ("explain model for other features", lambda f: _explain(f)[:3] + ["--model", f["wide_model"]] + _explain(f)[5:],
     "--model: a BA3MotifNet for 5 node features, but the graphs of --graphs .* have 4"),
    ("explain pickled graph set", lambda f: ["explain", "--graphs", f["pickled"]] + _explain(f)[3:],
     "--graphs .*pickled: open_graphs: .* stores pickled rows"),
    ("explain graphs not a folder", lambda f: ["explain", "--graphs", f["model"]] + _explain(f)[3:],
     "--graphs .*model.pt: open_graphs: root .* is not a directory"),
    ("explain dataset and graphs", lambda f: _explain(f, "--dataset", "ba3"),
     "give exactly one of --dataset NAME or --graphs DIR"),
    ("explain split with graphs", lambda f: _explain(f, "--split", "test"), "--split applies only to --dataset"),
    ("explain other settings in out", lambda f: ["explain", "--graphs", f["graphs"], "--model", f["model"],
                                                 "--explainer", f["explainer"], "--out", f["run"], "--steps", 2,
                                                 "--chunk-size", 16, "--threads", 1],
     "ExplanationStore: .*run holds a run with other settings: steps 1 there, 2 now; pass .*--overwrite"),
    # evaluate
    ("evaluate seeds 0", lambda f: ["evaluate", "--table", "--out", f["dir"] / "t", "--seeds", 0],
     "argument --seeds: expected an integer >= 1, got '0'"),
    ("evaluate steps -1", lambda f: _evaluate(f, "--steps=-1"), "argument --steps: expected an integer >= 0"),
    ("evaluate no model", lambda f: ["evaluate", "--explanations", f["run"]], "--model is required"),
    ("evaluate missing model", lambda f: ["evaluate", "--model", f["dir"] / "none.pt"], "argument --model: no file at"),
    ("evaluate missing explanations", lambda f: _evaluate(f, "--explanations", f["dir"] / "none"),
     "--explanations: load_explanations: no explanations file at .*none"),
    ("evaluate truncated explanations", lambda f: _evaluate(f, "--explanations", f["cut_run"]),
     "--explanations: .*cut_run/explanations.pt is not a readable explanations file"),
    ("evaluate explanations of other graphs", lambda f: _evaluate(f, "--explanations", f["run"], "--graphs",
                                                                  f["reversed"]),
     "--graphs .*reversed: not the graphs the explanations were made from"),
    ("evaluate explainer without dataset", lambda f: _evaluate(f, "--explainer", f["explainer"]),
     "--explainer needs --dataset"),
    ("evaluate explainer of another model", lambda f: ["evaluate", "--dataset", "ba3", "--model", f["other_model"],
                                                       "--explainer", f["explainer"],
                                                       "--cache-dir", f["dir"] / "cache"],
     "--explainer: .*pre-trained for another model"),
    ("evaluate table without out", lambda f: ["evaluate", "--table"], "--table needs --out"),
    ("evaluate missing model dir", lambda f: ["evaluate", "--table", "--out", f["dir"] / "t", "--model-dir",
                                              f["dir"] / "nope"], "argument --model-dir: no directory at .*nope"),
    ("evaluate both sources", lambda f: _evaluate(f, "--explanations", f["run"], "--explainer", f["explainer"]),
     "give exactly one of --explanations DIR or --explainer FILE"),
    # demo
    ("demo gnn epochs 0", lambda f: ["demo", "--out", f["dir"] / "demo", "--gnn-epochs", 0],
     "argument --gnn-epochs: expected an integer >= 1"),
    ("demo epochs -3", lambda f: ["demo", "--out", f["dir"] / "demo", "--epochs=-3"],
     "argument --epochs: expected an integer >= 1, got '-3'"),
]


@pytest.mark.parametrize("argv,message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_user_error_is_one_line_naming_the_option(files, capsys, argv, message):
    argv = [str(a) for a in argv(files)]
    threads = torch.get_num_threads()
    try:
        assert cli.main(argv) == 2
    finally:
        torch.set_num_threads(threads)
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert out == "" and len(lines) == 1, err
    assert lines[0].startswith(f"refine-fast {argv[0]}: error: ") and re.search(message, lines[0]), lines[0]


def test_no_output_is_left_by_refused_runs(files):
    """None of the refused commands above wrote an output (a manifest would refuse the corrected command)."""
    for name in ("out", "g", "e.pt", "t", "demo", "cache"):
        assert not (files["dir"] / name).exists(), name


def _cli(*argv, timeout=120):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
               OMP_WAIT_POLICY="PASSIVE")
    return subprocess.run([sys.executable, "-m", "refine_fast.cli", *map(str, argv)], capture_output=True, text=True,
                          env=env, timeout=timeout)


def test_real_command_user_errors(files):
    """The installed command behaves the same: exit code 2, one line, no traceback (unless --debug)."""
    bad_ratio = _cli(*_explain(files, "--ratio", 0))
    assert bad_ratio.returncode == 2 and bad_ratio.stdout == ""
    assert bad_ratio.stderr.strip() == ("refine-fast explain: error: argument --ratio: expected a number in (0, 1], "
                                        "got '0' (see refine-fast explain --help)")
    other = _cli(*_explain(files)[:3], "--model", files["other_model"], *_explain(files)[5:])
    assert other.returncode == 2 and len(other.stderr.strip().splitlines()) == 1
    assert "Traceback" not in other.stderr and "--allow-other-model" in other.stderr
    debug = _cli(*_explain(files)[:3], "--model", files["other_model"], *_explain(files)[5:], "--debug")
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "UsageError" in debug.stderr
