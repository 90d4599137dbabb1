"""The bounded, class-free readers under the formats: a pickle never runs what it names; a zip is judged by its end."""

from __future__ import annotations

import pickle
import zipfile

from healthkit.formats.safepickle import Stub, field_of, safe_loads
from healthkit.formats.torchzip import read_pickle, zip_problem


class Evil:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_naming_os_system_builds_a_stand_in_and_runs_nothing(tmp_path):
    marker = tmp_path / "ran"
    raw = pickle.dumps({"global_step": 7, "payload": Evil(str(marker))})
    data = safe_loads(raw)
    assert not marker.exists()
    assert data["global_step"] == 7 and isinstance(data["payload"], Stub)
    assert data["payload"].qualname.endswith(".system") and data["payload"].args == (f"touch {marker}",)


def test_object_state_is_read_as_fields():
    data = safe_loads(pickle.dumps(_Args(3, "steps")))
    assert isinstance(data, Stub)  # the class is never imported, only named
    assert field_of(data, "save_total_limit") == 3 and field_of(data, "eval_strategy") == "steps"
    assert field_of({"a": 1}, "a") == 1 and field_of(None, "a", "d") == "d"


def test_zip_judged_whole_cut_and_not_a_zip(tmp_path):
    whole = tmp_path / "whole.ckpt"
    with zipfile.ZipFile(whole, "w") as zf:
        zf.writestr("archive/data.pkl", pickle.dumps({"global_step": 5}))
        zf.writestr("archive/data/0", b"\0" * 4096)
    assert zip_problem(whole) is None
    assert read_pickle(whole) == ({"global_step": 5}, None)
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(whole.read_bytes()[:-30])  # the end record is gone
    assert "cut short" in zip_problem(cut)
    data, why = read_pickle(cut)
    assert data is None and why
    (tmp_path / "empty.ckpt").write_bytes(b"")
    assert "empty" in zip_problem(tmp_path / "empty.ckpt")
    (tmp_path / "text.ckpt").write_text("hello")
    assert "not a torch.save file" in zip_problem(tmp_path / "text.ckpt")


class _Args:
    def __init__(self, save_total_limit, eval_strategy):
        self.save_total_limit = save_total_limit
        self.eval_strategy = eval_strategy
