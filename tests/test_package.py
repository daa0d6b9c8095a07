"""The installable package: the wheel's contents, the ``spiking-ddim`` command outside the
checkout, every subcommand's help, the layering of the modules, convert / calibrate /
bench."""

import ast
import json
import math
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from spiking_ddim.cli import main

ROOT = Path(__file__).resolve().parents[1]
LIBRARIES = ("fs_neurons", "spiking_ddim")
SUBCOMMANDS = [["sample"], ["convert"], ["calibrate"], ["train"], ["train", "fs"], ["train", "bank"], ["train", "ann"],
               ["train", "snn"], ["metrics"], ["bench"]]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from a copy of the sources (so no stale build/ of the checkout gets in)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for pkg in LIBRARIES:
        shutil.copytree(ROOT / pkg, src / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path_factory.mktemp("wheel")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                        str(src)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    (found,) = out.glob("spiking_ddim-*.whl")
    return found


@pytest.mark.integration
def test_the_wheel_ships_the_model_bank_and_feature_network_and_no_top_level_eval(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for shipped in ("spiking_ddim/default_model/model_index.json",
                    "spiking_ddim/default_model/scheduler/scheduler_config.json",
                    "spiking_ddim/default_model/unet/config.json",
                    "spiking_ddim/default_model/unet/diffusion_pytorch_model.safetensors",
                    "fs_neurons/bank/swish.json", "fs_neurons/bank/swish_unet_inputs.json", "fs_neurons/bank/gelu.json",
                    "spiking_ddim/metrics/assets/digits_cnn.safetensors",
                    "spiking_ddim/metrics/generation.py", "spiking_ddim/cli/__init__.py"):
        assert shipped in names, shipped
    assert {n.split("/")[0] for n in names if "dist-info" not in n} == set(LIBRARIES)
    (entry_points,) = [n for n in names if n.endswith("entry_points.txt")]
    assert "spiking-ddim = spiking_ddim.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


@pytest.mark.integration
def test_the_installed_command_runs_the_main_job_outside_the_checkout(wheel, tmp_path):
    target = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target), "OMP_NUM_THREADS": "1"}
    where = subprocess.run([sys.executable, "-c", "import spiking_ddim, fs_neurons; print(spiking_ddim.__file__); "
                            "print(fs_neurons.__file__)"], capture_output=True, text=True, cwd=work, env=env)
    assert where.returncode == 0 and all(line.startswith(str(target)) for line in where.stdout.split()), where.stdout
    r = subprocess.run([str(target / "bin" / "spiking-ddim"), "sample", "--num-images", "4", "--steps", "2",
                        "--out", "run"], capture_output=True, text=True, cwd=work, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((work / "run" / "metrics.json").read_text())
    assert m["num_images"] == 4 and m["steps"] == 2 and m["model"].startswith(str(target))
    assert math.isfinite(m["psnr"]) and m["kid"]["fs"]["label"] == "KID (digits features)"
    assert 0 < m["energy"]["ratio"] < 2 and "PSNR" in r.stdout


@pytest.mark.parametrize("command", SUBCOMMANDS, ids=" ".join)
def test_every_subcommand_explains_itself(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([*command, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: spiking-ddim " + " ".join(command)) and "--help" in out
    assert "``" not in out and ":mod:`" not in out and ":func:`" not in out  # plain text, no reST markup


@pytest.mark.integration
def test_the_top_level_scripts_are_the_same_commands():
    for script, first_flag in (("sample.py", "--num-images"), ("train.py", "snn")):
        r = subprocess.run([sys.executable, str(ROOT / script), "--help"], capture_output=True, text=True, cwd=ROOT)
        assert r.returncode == 0 and first_flag in r.stdout, r.stderr


def _imports(path: Path, package: str) -> set[str]:
    """Modules of this project that ``path``, a module of ``package``, imports anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            parts = package.split(".")
            base = parts[: len(parts) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            found.add(module)
            found.update(f"{module}.{a.name}" for a in node.names)
    return {m for m in found if m.split(".")[0] in LIBRARIES}


def _module_graph() -> dict[str, set[str]]:
    """Every module of the libraries (packages named as such) -> the project modules it imports."""
    paths = {}
    for pkg in LIBRARIES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            paths[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return {name: {m for m in _imports(path, name if path.name == "__init__.py" else name.rpartition(".")[0])
                   if m in paths and m != name}
            for name, path in paths.items()}


def test_the_layers_read_top_down_with_no_import_cycle():
    graph = _module_graph()
    cli = {m for m in graph if m == "spiking_ddim.cli" or m.startswith("spiking_ddim.cli.")}
    packages = {m for m in graph if (ROOT / m.replace(".", "/") / "__init__.py").exists()}
    for name, deps in graph.items():
        if name not in cli:
            assert not deps & cli, f"{name} imports the command-line layer: {deps & cli}"
        if name.startswith("fs_neurons"):
            assert not [d for d in deps if d.startswith("spiking_ddim")], f"{name} imports spiking_ddim"
    # among modules (a package's __init__ only re-exports), no module imports one that imports it back
    modules = {n: deps - packages for n, deps in graph.items() if n not in packages}
    state: dict[str, str] = {}

    def visit(n: str, trail: list[str]) -> None:
        state[n] = "open"
        for d in modules[n]:
            assert state.get(d) != "open", f"import cycle: {' -> '.join(trail + [n, d])}"
            if d not in state:
                visit(d, trail + [n])
        state[n] = "done"

    for n in modules:
        if n not in state:
            visit(n, [])
    assert "spiking_ddim.modeling" in modules["spiking_ddim.convert"]  # convert -> modeling, never back


def test_no_test_file_imports_another_shared_helpers_live_in_their_own_modules():
    tests = sorted((ROOT / "tests").glob("test_*.py"))
    names = {path.stem for path in tests}
    for path in tests:
        for node in ast.walk(ast.parse(path.read_text())):
            imported = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
            assert not names & set(imported), f"{path.name} imports {sorted(names & set(imported))}: move the " \
                                              "shared pieces to tests/conftest.py or a helper module"


def test_convert_and_calibrate_save_pipelines_that_load_back(tmp_path, capsys):
    from spiking_ddim import load_pipeline

    assert main(["convert", "--K", "4", "--out", str(tmp_path / "fs")]) == 0
    assert "converted 19 modules, 53 call sites to FS neurons (K=4, method=ours-unet)" in capsys.readouterr().out
    fs = load_pipeline(tmp_path / "fs")
    assert fs.unet.fs_config.K == 4 and not fs.unet.fs_config.calibrated
    with pytest.raises(SystemExit, match="pass --overwrite"):
        main(["convert", "--K", "4", "--out", str(tmp_path / "fs")])
    with pytest.raises(SystemExit, match="already converted; calibrate it with `spiking-ddim calibrate`"):
        main(["convert", "--model", str(tmp_path / "fs"), "--out", str(tmp_path / "again")])
    with pytest.raises(SystemExit, match="has no FS neurons to calibrate; convert it first"):
        main(["calibrate", "--model", str(ROOT / "spiking_ddim" / "default_model"), "--out", str(tmp_path / "c0")])
    with pytest.raises(SystemExit, match="K \\(time steps\\) must be an integer >= 1"):
        main(["convert", "--K", "0", "--out", str(tmp_path / "k0")])

    assert main(["calibrate", "--model", str(tmp_path / "fs"), "--calibration-images", "2", "--steps", "3",
                 "--out", str(tmp_path / "cal")]) == 0
    cal = load_pipeline(tmp_path / "cal")
    sites = json.loads((tmp_path / "cal" / "calibration.json").read_text())
    assert cal.unet.fs_config.calibrated and len(sites) == 53
    assert all(s["mse_after"] <= s["mse_before"] for s in sites)
    assert sum(s["mse_after"] for s in sites) < 0.9 * sum(s["mse_before"] for s in sites)
    before, after = fs.unet.state_dict(), cal.unet.state_dict()
    changed = [k for k in before if k.endswith(".T") and not before[k].equal(after[k])]
    assert changed and all(before[k].equal(after[k]) for k in before if "neurons" not in k)


@pytest.mark.integration
def test_the_gpu_check_runs_every_check_on_the_cpu(tmp_path):
    out = tmp_path / "gpu_check.json"
    r = subprocess.run([sys.executable, str(ROOT / "eval" / "gpu_check.py"), "--device", "cpu", "--K", "4",
                        "--num-images", "6", "--steps", "2", "--calibration-images", "2", "--train-steps", "2",
                        "--batch", "4", "--repeats", "1", "--out", str(out)],
                       capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    checks = json.loads(out.read_text())["checks"]
    assert list(checks) == ["environment", "sample", "calibrate", "train", "speed"]
    assert all(c["ok"] for c in checks.values())
    assert math.isfinite(checks["sample"]["psnr_bf16"]) and checks["sample"]["autocast_dtype"] == "bf16"
    assert checks["calibrate"]["summed_mse_after"] < checks["calibrate"]["summed_mse_before"]
    assert checks["train"]["all_finite"] and checks["train"]["mixed_precision"] == "bf16"
    assert checks["speed"]["simulate_seconds"] > 0 and checks["speed"]["lookup_seconds"] > 0
    again = subprocess.run([sys.executable, str(ROOT / "eval" / "gpu_check.py"), "--device", "cpu", "--out", str(out)],
                           capture_output=True, text=True, cwd=tmp_path)
    assert again.returncode != 0 and "pass --overwrite" in again.stderr


def test_no_function_of_the_library_the_command_or_the_benchmarks_is_longer_than_sixty_lines():
    """Small functions with one job: every function body (its docstring aside) of the
    libraries, the command line and eval/ fits in 60 lines."""
    long = []
    for path in [*(p for pkg in LIBRARIES for p in (ROOT / pkg).rglob("*.py")), *(ROOT / "eval").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                first = node.body[0]
                docstring = isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and \
                    isinstance(first.value.value, str)
                lines = node.end_lineno - node.lineno + 1 - ((first.end_lineno - first.lineno + 1) if docstring else 0)
                if lines > 60:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, "split these: " + ", ".join(long)


def test_every_name_a_package_exports_resolves():
    import importlib

    for package in ("fs_neurons", "spiking_ddim", "spiking_ddim.codings", "spiking_ddim.calibration",
                    "spiking_ddim.energy", "spiking_ddim.metrics"):
        module = importlib.import_module(package)
        missing = [name for name in module.__all__ if not hasattr(module, name)]
        assert not missing, f"{package} exports names it cannot give: {missing}"
