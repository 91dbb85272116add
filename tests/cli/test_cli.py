"""The engine's command line: import, identify and evaluate on real photos, and every user mistake."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fixtures.data import REPO
from fixtures.models import SMALL_ALIKED_CONF

from core.catalogue.manifest import read_manifest
from core.cli import main
from core.evaluation.protocol import manifest_photo, protocol_split, subset_identities

SMALL = ["--max-side", str(SMALL_ALIKED_CONF["max_side"]), "--keypoints", str(SMALL_ALIKED_CONF["max_keypoints"])]
SMALL += ["--device", "cpu"]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SCUTE_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _write_manifest(path: Path, rows, root: Path | None = None) -> Path:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "identity"])
        for r in rows:
            writer.writerow([str(root / r.path) if root else r.path, r.identity])
    return path


@pytest.fixture(scope="module")
def small_catalogue(data_dir: Path):
    root = data_dir / "turtles"
    rows = subset_identities(read_manifest(root / "manifest.csv"), 3)
    return root, rows, protocol_split(rows)


def test_import_identify_agrees_with_the_evaluation(
    small_catalogue, home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`identify` on a gallery built by `import` ranks exactly as the evaluation code does."""
    from core.engine.search import Engine

    root, _, split = small_catalogue
    manifest = _write_manifest(tmp_path / "gallery.csv", split.gallery)
    db = f"sqlite:///{tmp_path / 'gallery.db'}"
    assert main(["import", "--db", db, "--manifest", str(manifest), "--root", str(root), *SMALL]) == 0
    out = capsys.readouterr().out
    assert f"{len(split.gallery)} photos added" in out

    # Idempotent: a second run adds nothing.
    assert main(["import", "--db", db, "--manifest", str(manifest), "--root", str(root), *SMALL]) == 0
    assert f"0 photos added, {len(split.gallery)} already in the gallery" in capsys.readouterr().out

    known = next(r for r in split.queries if r.identity not in split.novel)
    assert main(["identify", str(root / known.path), "--db", db, "--json", "--top", "3", *SMALL]) == 0
    result = json.loads(capsys.readouterr().out)

    engine = Engine("aliked", dict(SMALL_ALIKED_CONF), device="cpu", cache_dir=tmp_path / "eval-cache")
    index = engine.build_index([manifest_photo(root, r) for r in split.gallery])
    expected = engine.identify(engine.photo_views(manifest_photo(root, known)), index, top_k=3)

    assert [c["identity"] for c in result["candidates"]] == [c.identity for c in expected.candidates]
    assert [c["matches"] for c in result["candidates"]] == [c.matches for c in expected.candidates]
    np.testing.assert_allclose(
        [c["probability"] for c in result["candidates"]], [c.probability for c in expected.candidates], atol=1e-6
    )
    assert result["new_individual_probability"] == pytest.approx(expected.new_individual_probability, abs=1e-6)
    first = result["candidates"][0]
    assert set(first) >= {"identity", "probability", "score", "matches", "photo"}
    total = sum(c["probability"] for c in result["candidates"]) + result["new_individual_probability"]
    assert total <= 1.0 + 1e-6


def test_import_reports_bad_rows_and_imports_the_rest(
    small_catalogue, home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, rows, _ = small_catalogue
    good = rows[:2]
    manifest = tmp_path / "mixed.csv"
    (tmp_path / "notes.jpg").write_text("this is not a photo")
    with manifest.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "identity", "side"])
        writer.writerow([str(root / good[0].path), good[0].identity, "left"])
        writer.writerow(["missing.jpg", "t999", ""])
        writer.writerow([str(tmp_path / "notes.jpg"), "t999", ""])
        writer.writerow([str(root / good[1].path), "", ""])
        writer.writerow([str(root / good[1].path), good[1].identity, "sideways"])
        writer.writerow([str(root / good[1].path), good[1].identity, "right"])
    db = f"sqlite:///{tmp_path / 'g.db'}"
    assert main(["import", "--db", db, "--manifest", str(manifest), "--root", "/", *SMALL]) == 0
    captured = capsys.readouterr()
    assert "2 photos added" in captured.out and "4 rows skipped" in captured.out
    # stderr also carries the progress bar (redrawn after carriage returns): keep the problem lines.
    problems = [line for line in re.split(r"[\r\n]", captured.err) if line.startswith("line ")]
    assert [p.split(":")[0] for p in problems] == ["line 3", "line 4", "line 5", "line 6"]
    assert "does not exist" in problems[0]
    assert "Traceback" not in captured.err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["identify", "{tmp}/nothing.jpg"], "does not exist"),
        (["identify", "{tmp}"], "is a folder"),
        (["identify", "{tmp}/text.jpg"], "not a photo"),
        (["identify", "{tmp}/empty.jpg"], "empty"),
        (["identify", "{photo}"], "gallery is empty"),
        (["identify", "{photo}", "--db", "nosuchdb://x"], ""),
        (["identify", "{photo}", "--turns", "45"], "multiples of 90 degrees"),
        (["evaluate", "--manifest", "{tmp}/nothing.csv"], "does not exist"),
        (["import", "--manifest", "{tmp}/nothing.csv"], "does not exist"),
        (["import", "--manifest", "{tmp}/bad.csv"], "needs the columns path and identity"),
    ],
)
def test_user_mistakes_print_one_clear_line(
    argv: list[str], message: str, home: Path, tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "text.jpg").write_text("hello")
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "bad.csv").write_text("file,name\na,b\n")
    photo = next((data_dir / "turtles" / "images").rglob("*.[jJ][pP]*[gG]"))
    args = [a.format(tmp=tmp_path, photo=photo) for a in argv]
    assert main([*args, *SMALL] if args[0] != "evaluate" else args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert message.lower() in err.lower()
    assert "Traceback" not in err


def test_every_command_has_help() -> None:
    for command in ["import", "identify", "evaluate"]:
        proc = subprocess.run(
            [sys.executable, "-m", "core", command, "--help"], cwd=REPO, capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 0, proc.stderr
        assert "usage: python -m core " + command in proc.stdout


def test_a_bad_photo_in_a_subprocess_shows_no_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    proc = subprocess.run(
        [sys.executable, "-m", "core", "identify", str(bad), *SMALL],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**__import__("os").environ, "SCUTE_HOME": str(tmp_path / "home")},
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr


def test_evaluate_reports_every_scoring_the_deployments_first(
    small_catalogue, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --scoring the deployment's scoring (SCUTE_SCORING) leads the table and the report."""
    root, rows, _ = small_catalogue
    two = [r for r in rows if r.identity in sorted({r.identity for r in rows})[:2]]
    manifest = _write_manifest(tmp_path / "manifest.csv", two)
    monkeypatch.setenv("SCUTE_SCORING", "auc")
    out = tmp_path / "report.json"
    argv = ["evaluate", "--manifest", str(manifest), "--root", str(root), "--extractor", "sift", "--folds", "2"]
    assert main([*argv, "--max-side", "256", "--device", "cpu", "--json", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("scoring"))
    labels = [line.split()[0] for line in lines[header + 1 : header + 6]]
    assert labels == ["auc", "confident", "wasserstein", "count", "search"]
    report = json.loads(out.read_text())[root.name]
    assert report["protocol"]["folds"] == 2 and len(report["folds"]) == 2
    assert report["folds"][0]["default_method"] == "auc" and report["folds"][0]["settings"]["extractor"] == "sift"
    assert report["folds"][0]["novel_identities"] != report["folds"][1]["novel_identities"]
