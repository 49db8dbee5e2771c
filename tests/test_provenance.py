"""The code fingerprint: a hash of the files that compute a run's numbers, independent of git metadata."""

from __future__ import annotations

from train.provenance import changed_files, code_fingerprint, code_label


def _tree(root):
    for rel, text in {"setup.py": "setup()\n", "sinsim_ext/ops.py": "x = 1\n", "csrc/k.cu": "//k\n",
                      "train/engine.py": "step = 1\n", "train/recipes/methods/m.toml": "lr = 0.1\n",
                      "experiments/paper/report.py": "words\n", "train/notes.md": "not code\n"}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


def test_the_fingerprint_follows_the_computing_code_only(tmp_path):
    _tree(tmp_path)
    first, files = code_fingerprint(tmp_path)
    assert sorted(files) == ["csrc/k.cu", "setup.py", "sinsim_ext/ops.py", "train/engine.py",
                             "train/recipes/methods/m.toml"]
    (tmp_path / "experiments/paper/report.py").write_text("other words\n")  # the report computes no numbers
    (tmp_path / "train/notes.md").write_text("edited\n")
    (tmp_path / "train/__pycache__").mkdir()
    (tmp_path / "train/__pycache__/engine.py").write_text("stale\n")
    assert code_fingerprint(tmp_path)[0] == first
    (tmp_path / "train/engine.py").write_text("step = 2\n")
    second, after = code_fingerprint(tmp_path)
    assert second != first and len(second) == 16
    (tmp_path / "train/new.py").write_text("\n")
    (tmp_path / "csrc/k.cu").unlink()
    (tmp_path / "train/recipes/methods/m.toml").write_text("lr = 0.2\n")  # a recipe changes the numbers
    assert changed_files(files, code_fingerprint(tmp_path)[1]) == {
        "csrc/k.cu": "removed", "train/engine.py": "changed", "train/new.py": "added",
        "train/recipes/methods/m.toml": "changed"}


def test_code_label_names_the_fingerprint_with_or_without_git():
    assert code_label({"fingerprint": "ab12"}) == "code ab12"
    assert code_label({"commit": "c" * 40, "short": "ccccccc", "dirty": False, "fingerprint": "ab12"}) == \
        "ccccccc [code ab12]"
    assert code_label({"commit": "c" * 40, "short": "ccccccc", "dirty": True, "diff_sha256": "d1"}) == \
        "ccccccc + uncommitted changes (diff d1)"
    assert code_label(None) == "not recorded"
